"""Round 50b (at 43c (8)'s fix, services/absorbing.py ``_waits_for_her_re_key``), in-process.

(1) A member's key claim held back, then taken unsaid by her next unlock.

Attack: bob (WRITE member of her share) keeps her key from before a rotation of hers and commits a
state of her file sealing that older key at the epoch above hers (45c (4)/(5)'s claim).  Her device
hears it from the sync: 43c (8)'s fix holds it back (``Tree.incomplete``, unsaid) until
``HER_RE_KEY_BATCHES`` more batches arrive.  A server that sends nothing more (or only fewer than 8
batches) and her ordinary lock/unlock (or the mount's restart) meanwhile: the load reads the store's
current revision, his, and takes it as it is.
Seen: after the load her node holds HIS claimed key (her older one, which the member she rotated away
from holds) at his epoch, and nothing is said (no forged-write alarm); nothing asks a re-key.  Her
next commit signs that key: her rotation undone, the revoked one reads what she writes next (the very
hole of 45c (4)/(5) that ``_claims_a_key`` closes at arrival).  Before the fix the claim was judged at
arrival (said, sealed again under a new key of hers), so the store's current revision was hers by the
time of any unlock.
Cause: the hold keeps the judgement in memory only (``Tree.her_re_key_waits``, cleared at lock); the
load (vault/tree/loading.py) never checks a member's state of her file for a key claim
(``_claims_a_key`` runs only in ``absorb_node``); SECURITY.md says "an unlock meanwhile loads the
stored state as any unlock does" without saying that this takes the claim unsaid.
Impact: medium-high: a WRITE member + a quiet server (or just a restart inside the 8-batch window)
make her rotation/unshare undone silently: a key taken wrongly, the alarm silenced.
Fix (suggested): at load, judge a member's state of her file whose key is not the one her ledger
knows at that epoch / not derived for the recipients seen (as ``_claims_a_key``): take his contents
at her epoch, ask a re-key, and say it (or hold it again, with the batch count persisted).
Worse with her unshare (or rotation) of that file during the hold: its re-key fails (the store's
revision is his: "changed by someone else", exit 13), her signed Rotation request (epoch E) stays for
"the next unlock".  That unlock loads his claim at E+1, and ``rotation._carry_out`` takes the node's
epoch above the request's for "done already": the request is deleted, unsaid, and the file keeps her
older key for good (``test_her_unshare_failed_during_the_hold_is_carried_out_at_her_unlock``).  Her
next commit of the file then signs his claimed key (seen by a probe: the stored document at epoch
E+1 opening to the older key).
The load's side is older than the hold: his claim committed while her seat is locked (a shared mount's
other seat, or a sync while she is locked) is taken the same way at her unlock, unsaid
(``test_a_claim_committed_while_she_is_locked_is_not_taken_unsaid_by_her_unlock``); the hold widens
it to any claim heard while she is unlocked, followed by a restart within the batches.
Tests: ``test_a_held_claim_is_not_taken_unsaid_by_her_unlock``,
``test_her_unshare_failed_during_the_hold_is_carried_out_at_her_unlock``,
``test_a_claim_committed_while_she_is_locked_is_not_taken_unsaid_by_her_unlock`` (strict xfails);
control ``test_a_held_claim_is_held_unsaid_before_the_unlock`` (the hold as documented).

(2) Her unshare then share again on her desktop: a member's honest state over it said as a claim.

Attack (honest use, two devices): alice shares docs/ WRITE with bob and docs/sub WRITE with him
again.  Her desktop unshares docs/sub (re-keyed in place, epoch E+1, the key derived for the
recipients left: docs/ only) and then shares docs/sub with bob again (a share adds a grant and seals
the current key to it: no re-key).  bob's device takes both in and he chmods docs/sub over the E+1
key.  Her laptop, offline meanwhile, hears bob's state; the share of docs/sub it holds is as it was
(the same grant in force: the replication brings the share's newest revision), so the recipients it
sees never become those the desktop derived for.
Seen: bob's state is held for ``HER_RE_KEY_BATCHES`` batches (her own writes to docs/sub fail
meanwhile), then said as his claim (a ``forged-write`` alarm: a false one), taken in at her older
epoch and sealed again under a new key.
Cause: ``_waits_for_her_re_key`` / ``_key_not_hers_here`` tell her re-key only by deriving the key for
the recipients seen here now; her other device derived it for those it saw at the re-key, and any
later honest change of grants there (a grant added back, a member added to a group, a share
widened) makes them differ for good.  The fix's premise ("once her unshare arrives, the key is the
one this device derives") holds only when nothing was granted after the re-key.
Impact: low-medium: a false forged-write alarm naming an honest member, in plain two-device use, and
an unneeded re-key; nothing lost.
Fix (suggested): prove her key by her own material rather than by re-deriving it: her signed key
record of that epoch (the re-key's ``seal_keys`` for the grants, signed by her) or her re-keyed
node document (her signature, its epoch and key) in the store/history; or derive for the grants in
force at the re-key's seq.
Tests: ``test_her_unshare_and_share_again_on_her_desktop_is_no_claim_of_bobs`` (strict xfail).

Scenes use the 43c (8) fixer's harness (tests/inprocess/test_member_newer_key_43c.py); the unshare in
(1) removes bob's grant of docs/sub (he keeps WRITE through docs/): the harness has two users, and
what matters is that the re-key she asked is dropped; in use the revoked one is another (carol).
Run 12:17 UTC, 2026-12-06: 1 passed, 4 xfailed; under --runxfail the 4 fail at their own assertion.
Fixed (1): the load judges as the arrival does (vault/model/her_keys.py ``key_not_hers``,
vault/tree/key_claims.py ``claims_judged``), and ``rotation._carry_out`` takes a request as done only for
a key of hers (``_her_key``: ``test_her_request_is_not_dropped_for_a_claimed_epoch_the_load_let_through``).
Fixed (2), in part: a key above her epoch is hers if her master key derives it at that epoch for the
recipients seen here, or those less one grant or one recipient (vault/model/her_keys.py ``her_key_at``),
when the hold ends, at load and in ``_her_key``
(``test_her_desktops_key_over_a_share_made_again_is_taken_in_and_at_her_unlock``).
"""

from __future__ import annotations

from fusevault.encoding import b64e
from fusevault.vault.files.rekeying import derived_dek
from fusevault.vault.model import alarms
from fusevault.vault.services import rotation
from fusevault.vault.services.absorbing import HER_RE_KEY_BATCHES, absorb_arrivals, retry_awaiting
from fusevault.vault.tree import loading
from fusevault.vault.tree.arrivals import Absorbed
from fusevault.vault.volume import Volume
from inprocess.test_member_newer_key_43c import _bobs_chmod_under, _docs_sub_shared_twice, _her_desktops_key
from inprocess.test_two_users import ALICE_UID


def _said(volume, fid: str) -> bool:
    return any(each["kind"] == "forged-write" and each["subject"] == fid
               for each in alarms.for_user(volume.key.user_id).as_list())


async def _bobs_claim(shared, monkeypatch):
    """bob's claim (her older key, sealed at the epoch above her rotation's), committed; her seat not
    told."""
    alice, bob, hers, his, grant = await _docs_sub_shared_twice(shared)
    older, wrapped = hers.dek, dict(his.wrapped or {})
    await alice.rekey(hers)  # her rotation: bob's device takes it in, he keeps the older key
    retry_awaiting(bob, Absorbed())
    held = (hers.dek, hers.epoch)
    assert held[0] != older and his.dek == held[0]
    await _bobs_chmod_under(shared, monkeypatch, his, older, held[1] + 1, wrapped)
    return alice, hers, older, held


def _taken_unsaid(alice, hers, older) -> bool:
    """Her unlock (a fresh load of her tree from the store): his claimed key held, nothing said."""
    again = Volume.load(alice.layout, alice.store, alice.key, alice.tree.get(1).fid)
    node = again.tree.find(hers.fid)
    assert node is not None
    return node.dek == older and not _said(again, hers.fid)


async def _bobs_claim_held(shared, monkeypatch):
    alice, hers, older, held = await _bobs_claim(shared, monkeypatch)
    absorb_arrivals(alice, [alice.store.get(hers.fid)])  # the one batch the server sends
    return alice, hers, older, held


async def test_a_held_claim_is_held_unsaid_before_the_unlock(shared, monkeypatch):
    alice, hers, older, held = await _bobs_claim_held(shared, monkeypatch)
    assert (hers.dek, hers.epoch) == held and hers.fid in alice.tree.her_re_key_waits
    assert not _said(alice, hers.fid)


async def test_a_held_claim_is_not_taken_unsaid_by_her_unlock(shared, monkeypatch):
    alice, hers, older, held = await _bobs_claim_held(shared, monkeypatch)
    assert not _taken_unsaid(alice, hers, older), (
        "his claim of her older key taken at his epoch, unsaid: her rotation undone")


async def test_her_unshare_failed_during_the_hold_is_carried_out_at_her_unlock(shared, monkeypatch):
    alice, hers, older, held = await _bobs_claim_held(shared, monkeypatch)
    requests = shared.drive.seat_of(ALICE_UID).ops.session.requests
    answer = await requests.handle({"cmd": "unshare", "path": "docs/sub", "with": "bob"})
    assert "error" in answer, "her re-key of the held folder fails during the hold"
    request = alice.store.get(f"rotate-{hers.fid}")
    assert request is not None and request["epoch"] == held[1], "her request stays for the next unlock"
    again = Volume.load(alice.layout, alice.store, alice.key, alice.tree.get(1).fid)  # her next unlock
    await rotation.resume(again)
    node = again.tree.find(hers.fid)
    assert node.dek not in (older, held[0]) or alice.store.get(f"rotate-{hers.fid}") is not None, (
        "her unshare's request dropped as done, the file under her older key: her unshare never made")


async def test_her_request_is_not_dropped_for_a_claimed_epoch_the_load_let_through(shared, monkeypatch):
    """The carrying out's own check (rotation.py ``_her_key``): a claim the load does not judge (one it
    has no epoch of hers for, say: here the load's judging is switched off) still leaves her request
    at her epoch carried out, the claimed epoch above it being no key of hers."""
    alice, hers, older, held = await _bobs_claim_held(shared, monkeypatch)
    requests = shared.drive.seat_of(ALICE_UID).ops.session.requests
    assert "error" in await requests.handle({"cmd": "unshare", "path": "docs/sub", "with": "bob"})
    monkeypatch.setattr(loading, "claims_judged", lambda *args: None)
    again = Volume.load(alice.layout, alice.store, alice.key, alice.tree.get(1).fid)
    assert again.tree.find(hers.fid).epoch == held[1] + 1, "the load took his claimed epoch"
    await rotation.resume(again)
    node = again.tree.find(hers.fid)
    assert node.dek not in (older, held[0]) and alice.store.get(f"rotate-{hers.fid}") is None, (
        "her unshare's request dropped as done for his claimed epoch, the file under her older key")


async def test_a_claim_committed_while_she_is_locked_is_not_taken_unsaid_by_her_unlock(shared, monkeypatch):
    alice, hers, older, held = await _bobs_claim(shared, monkeypatch)
    assert not _taken_unsaid(alice, hers, older), (
        "his claim of her older key taken at his epoch, unsaid: her rotation undone")


async def test_her_unshare_and_share_again_on_her_desktop_is_no_claim_of_bobs(shared, monkeypatch):
    alice, bob, hers, his, grant = await _docs_sub_shared_twice(shared)
    epoch = hers.epoch + 1
    newer = _her_desktops_key(alice, hers, epoch, grant)  # her desktop's unshare (docs/ left)
    assert newer != derived_dek(alice.tree, hers, epoch), "her laptop sees docs/sub shared (shared again)"
    await _bobs_chmod_under(shared, monkeypatch, his, newer, epoch,
                            {"en_file_dek": b64e(alice.key.wrap_dek(hers.fid, newer))})
    docs = alice.resolve(b"docs")
    absorb_arrivals(alice, [alice.store.get(hers.fid)])
    for _ in range(HER_RE_KEY_BATCHES + 2):
        absorb_arrivals(alice, [alice.store.get(docs.fid)])  # the sync goes on
    assert not _said(alice, hers.fid), "bob's honest state over her own re-key said as his claim"


async def test_her_desktops_key_over_a_share_made_again_is_taken_in_and_at_her_unlock(shared, monkeypatch):
    """(2)'s scene: once the hold ends, bob's state is taken in under her desktop's key at its epoch (no
    new key asked), and her unlock loads it so too, unsaid (vault/model/her_keys.py ``her_key_at``:
    derived for the recipients seen here less the grant made again)."""
    alice, bob, hers, his, grant = await _docs_sub_shared_twice(shared)
    epoch = hers.epoch + 1
    newer = _her_desktops_key(alice, hers, epoch, grant)
    await _bobs_chmod_under(shared, monkeypatch, his, newer, epoch,
                            {"en_file_dek": b64e(alice.key.wrap_dek(hers.fid, newer))})
    again = Volume.load(alice.layout, alice.store, alice.key, alice.tree.get(1).fid)  # her unlock first
    node = again.tree.find(hers.fid)
    assert (node.dek, node.epoch) == (newer, epoch) and not _said(again, hers.fid)
    assert hers.fid not in again.ledger.rolled, "her own key given a new one at unlock"
    docs = alice.resolve(b"docs")
    outs = [absorb_arrivals(alice, [alice.store.get(hers.fid)])]
    for _ in range(HER_RE_KEY_BATCHES + 2):
        outs.append(absorb_arrivals(alice, [alice.store.get(docs.fid)]))
    assert (hers.dek, hers.epoch) == (newer, epoch) and not any(hers in out.rekey for out in outs)
    assert not _said(alice, hers.fid)
