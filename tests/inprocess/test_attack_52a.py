"""Round 52a (at 51b (1)-(3)'s fix: the ledger's ``claimed``/``keys``, absorbing ``_claims_a_key`` before
``admit``, ``_claim_taken``, ``_claimed_re_keyed``), in-process.

Harness: 51b's (tests/inprocess/test_attack_51b.py ``_rotated``): docs/sub shared WRITE with bob twice;
her rotation of docs/sub (epoch E, bob's device takes it in; he keeps her older key of E-1 and its
wrapping); bob's chmod committed under a key and epoch of his choice, her seat not told.

(1) His claim walked up from BELOW her epoch: no claim, and his key's digest kept as hers.
Attack: bob commits docs/sub at E-1 (below hers) under her older key K(E-1) (an honest-looking write
"during a revoke"); her device takes it back at E-1 and asks a re-key (in memory only, not ``claimed``).
bob commits again at once at E, still under K(E-1), before her re-key lands (it fails on his commit,
"changed by someone else", or she locks / the mount stops meanwhile).
Seen: the second state is no claim (``key_not_hers``: ``fresh.dek == dek``, the key held is the one he
just put there), taken at E under K(E-1), nothing said, no re-key asked, ``claimed`` empty; the
ledger's ``saw_key`` records the digest of K(E-1) at E as HERS (``keys``).  Her unlock then takes
the state unsaid (``claims_judged``: ``key_known`` True), nothing rolled: her next commit signs
K(E-1) at E.  Her rotation (an unshare) undone, silently, for good.
Cause: the state taken "under an older key" (``fresh.epoch < node.epoch``, absorbing.py) leaves
her node holding HIS key (her older one) with nothing persisted saying so (51b's root, by the
other door: ``claimed`` is set only by a claim at or above her epoch); ``key_not_hers`` takes the
held key for hers; ``saw_key`` is called for any state of her file taken in.
Impact: medium-high: a WRITE member keeps a rotated-away key in force, unsaid (the 45c (4)/50b/51b
hole again), by two commits in a row racing her re-key, or one lock in the window.
Fix (suggested): a member's state taken in under a key older than the ledger's epoch marks the file
``claimed`` too (at the ledger's epoch, persisted; ``saw_key`` then records nothing); judge a
member's state against the ledger's epoch and key digest (``key_known``), not only the node's
held key; never ``saw_key`` a member's state whose key is not proven hers (derived, or the digest).
Tests: ``test_his_claim_from_below_her_epoch_is_not_taken_unsaid`` (strict xfail; the lock scene),
``test_his_claim_from_below_her_epoch_keeps_no_digest_of_his_key`` (strict xfail; the re-key failing),
control ``test_his_state_below_her_epoch_is_re_keyed``.

(2) A claimed file she removes before her re-key lands: re-keyed at every batch, claimed for good.
Scene: bob's claim at her epoch judged on arrival (``claimed``); she removes docs/sub (rmdir) before
her re-key lands (it failing on his commits, 51b (3), or simply first).
Seen: each batch of arrivals (any document) asks her re-key of the removed node again
(``_claimed_re_keyed`` checks no links), and each commits a new revision at a new epoch of the
removed folder (4 batches: epoch 1 -> 5, rev 4 -> 8), all synced out; ``claimed`` is never cleared
(``saw_key`` is not called for a commit of a gone node), so it stays in the ledger for good.
Cause: ``claimed`` ends only by ``saw_key`` above its epoch, which ``Ledger.record`` skips when
``gone``; ``_claimed_re_keyed`` asks for any node found, linked or not.
Impact: low: a commit (a new epoch, a document revision to every peer) per batch of arrivals while the
removed node stays in the tree (in-process: the harness's kernel never forgets it; in a mount: while
the kernel holds it, a cwd inside or an open handle; a regular file held open is asked each batch
and returns without a commit); a stale ``claimed`` entry per such file (bounded by her files).
Fix (suggested): drop ``claimed`` when the file is gone (a commit of its removal, or its leaving);
ask no re-key of a node with no links (or clear the claim on any commit of hers above its epoch).
Tests: ``test_a_removed_claimed_folder_is_not_re_keyed_at_every_batch`` (strict xfail), control
``test_a_removed_claimed_folder_is_re_keyed_by_a_batch``.

(3) A claim, her own commit before her re-key lands, kill -9 before the ledger's save: his key kept.
Scene: bob's claim at her epoch E under her older key judged on arrival (said, ``claimed`` in memory);
she commits the file (a chmod, a write) before her re-key lands; the process dies (kill -9, power)
within the ledger's 5 s save window.
Seen: her unlock loads HER signed state at E under her older key: not judged (hers), ``saw_key``
records its digest as her key at E (``claimed`` was never saved), nothing rolled, nothing said: the
rotation is undone for good (the alarm said before the crash promised a new key that never comes).
Without her commit the unlock judges his state again (control).
Cause: ``claimed`` is persisted only at the next 5 s save, while her commit signing his key is
stored at once; the load takes her signed state's key as hers.
Impact: low-medium (needs a crash in a 5 s window after a claim, her commit in it).
Fix (suggested): save the ledger (fsync) when ``claim`` first marks a file, before anything of hers is
committed; or refuse/hold her commits of a claimed node until the re-key (or have them re-key).
Tests: ``test_a_claim_her_commit_and_a_crash_leave_no_key_of_his_in_force`` (strict xfail), control
``test_a_claim_lost_by_a_crash_is_judged_again_at_unlock``.

(4) A member's state at an epoch above hers under the key her device holds: taken unsaid on arrival.
Scene: her desktop re-keys docs/sub (epoch E); bob's device takes that in; he commits at E under her
OLDER key K(E-1).  Her laptop, which had not synced the desktop's re-key (offline, or the store now
holds bob's state over it: the changes feed gives only his), holds K(E-1) at E-1.  bob's state
arrives (the laptop unlocked).
Seen: taken at E under K(E-1), nothing said, no re-key, the ledger's ``keys`` records K(E-1) as her
key at E; her unlock takes it again (``key_known`` True); her next commit from the laptop signs
K(E-1) at E, which her desktop takes as hers (signed by her).  The same state stored while her
laptop is locked IS judged by the unlock (control): the arrival path is weaker than the load.
Cause: ``key_not_hers`` returns False on ``fresh.dek == dek`` at any epoch: a raise of the epoch
under the same key is never a re-key of hers (each re-key of hers is a new derived key), yet is
taken (and the epoch his); (1) is the same gap after a take-back.
Impact: medium: the rotation undone unsaid on the laptop; whatever she writes there is sealed under
the key the revoked member holds until the desktop sees it (then said and re-keyed there).
Fix (suggested): in ``key_not_hers``, ``fresh.dek == dek`` is no claim only at the held epoch; above
it, judge (or lower the epoch to the held one as conflicts.py ``_no_claimed_epoch`` does, and ask
her re-key); ``saw_key`` only a key proven hers.
Tests: ``test_an_epoch_raised_under_the_held_key_is_said_on_arrival`` (strict xfail), control
``test_an_epoch_raised_under_the_held_key_is_said_at_unlock``.

Held (run or read): a claim lost by a kill -9 with no commit of hers in between is judged again at
unlock (``keys``; control of (3)); a crash after her re-key commits clears ``claimed`` at load (her
signed state above it); her other device's re-key arriving clears ``claimed``; a claim at or above
her epoch is judged before ``admit`` and the ledger keys her epoch; ``saw_key`` is skipped while
claimed at or below its epoch; ``claimed``/``keys`` grow one entry per file of hers (the ledger
forgets no file anyway).  Leads (read only): a re-key that fails for good (a record withheld by the
server) is now retried, reading the file, at every batch and unlock (bounded: one a batch); a new
device, or a ledger restored from before her rotation, takes a member's state walked back to
E-1 under K(E-1) as hers (the key files' epoch, ``sharing.key_epoch``, could tell).
Run 16:05 UTC, 2026-12-06: 4 passed, 5 xfailed; under --runxfail the 5 fail at their own assertion.

Fixed: (1), (4): ``her_keys.key_not_hers`` takes the key held at an epoch above the held one for a
claim (her re-key always gives a new key); a member's state taken back under an older key marks the
file ``claimed`` (absorbing.py), so her re-key is asked until it lands, at each batch and unlock.
(2): a claimed file removed is unclaimed (``Ledger.unclaim``), no re-key asked of it (the control
that showed a batch re-keying the removed folder is gone with that behaviour).  (3): a claim is saved
before a commit of hers of that file is stamped (``Ledger.stamp``), and within ``URGENT_LOOK`` by
``keep_saved`` otherwise.
"""

from __future__ import annotations

import stat

import pytest

from fusevault.errors import VaultError
from fusevault.vault.model import alarms
from fusevault.vault.services.absorbing import absorb_arrivals
from fusevault.vault.volume import Volume
from inprocess.test_attack_51b import _rotated, _said, _unlock
from inprocess.test_member_newer_key_43c import _bobs_chmod_under, _docs_sub_shared_twice
from inprocess.test_two_users import ALICE, _walk


async def _from_below(shared, monkeypatch):
    """bob's state at E-1 under K(E-1) taken back (re-key asked), then his state at E under K(E-1)."""
    alice, bob, hers, his, older, wrapped, held = await _rotated(shared)
    await _bobs_chmod_under(shared, monkeypatch, his, older, held[1] - 1, wrapped)
    out = absorb_arrivals(alice, [alice.store.get(hers.fid)])
    assert hers in out.rekey and hers.epoch == held[1] - 1 and hers.dek == older
    await _bobs_chmod_under(shared, monkeypatch, his, older, held[1], wrapped)
    return alice, hers, older, held


async def test_his_state_below_her_epoch_is_re_keyed(shared, monkeypatch):
    """Control: his state under her older key at the epoch below hers asks her re-key."""
    alice, hers, older, held = await _from_below(shared, monkeypatch)
    assert held[1] >= 1


async def test_his_claim_from_below_her_epoch_is_not_taken_unsaid(shared, monkeypatch):
    alice, hers, older, held = await _from_below(shared, monkeypatch)
    absorb_arrivals(alice, [alice.store.get(hers.fid)])  # his state at E, under K(E-1)
    again = _unlock(alice)  # her lock before her re-key landed
    node = again.tree.find(hers.fid)
    assert not (node.dek == older and node.epoch == held[1] and not _said(again, hers.fid)
                and hers.fid not in again.ledger.rolled), (
        "his state at her epoch under her older key taken unsaid at her unlock, no re-key: rotation undone")


async def test_his_claim_from_below_her_epoch_keeps_no_digest_of_his_key(shared, monkeypatch):
    alice, hers, older, held = await _from_below(shared, monkeypatch)
    with pytest.raises(VaultError, match="changed by someone else"):
        await alice.rekey(hers)  # the mount's ``_rekey`` task, failing on his commit: logged, dropped
    out = absorb_arrivals(alice, [alice.store.get(hers.fid)])  # his state at E, under K(E-1)
    assert not alice.ledger.key_known(hers.fid, held[1], older), "his key's digest kept as hers at E"
    assert not (hers.dek == older and hers.epoch == held[1] and hers not in out.rekey
                and not alice.ledger.claimed), "his state at her epoch under her older key: no re-key"



async def _claimed_then_removed(shared, monkeypatch):
    """bob's claim at her epoch judged on arrival (``claimed``); she removes docs/sub before her re-key
    lands (her re-key failing on his commits, 51b (3))."""
    alice, bob, hers, his, older, wrapped, held = await _rotated(shared)
    await _bobs_chmod_under(shared, monkeypatch, his, older, held[1], wrapped)
    out = absorb_arrivals(alice, [alice.store.get(hers.fid)])
    assert hers in out.rekey and alice.ledger.claimed == {hers.fid: held[1]}
    await shared.drive.rmdir((await _walk(shared.drive, b"docs", ALICE)).st_ino, b"sub", ALICE)
    assert alice.store.get(hers.fid).get("delete") and alice.tree.find(hers.fid) is hers and not hers.links
    return alice, hers, held


async def test_a_removed_claimed_folder_is_not_re_keyed_at_every_batch(shared, monkeypatch):
    alice, hers, held = await _claimed_then_removed(shared, monkeypatch)
    docs = alice.resolve(b"docs")
    for _ in range(4):  # any four batches of arrivals (a server can send as many as it likes)
        for x in absorb_arrivals(alice, [alice.store.get(docs.fid)]).rekey:
            await alice.rekey(x)  # the mount's ``_rekey`` task
    rev = int(alice.store.get(hers.fid)["_rev"].split("-")[0])
    again = _unlock(alice)
    assert not (hers.epoch > held[1] + 1 or hers.fid in again.ledger.claimed), (
        f"her removed folder committed at a new epoch per batch (epoch {hers.epoch}, rev {rev}), "
        f"and ledger.claimed kept for good: {again.ledger.claimed}")



async def _claimed_then_crash(shared, monkeypatch, *, her_commit: bool):
    """Her ledger saved (the 5 s save), bob's claim at her epoch judged on arrival (``claimed``, in
    memory), maybe her own commit of the file (a chmod) before her re-key lands, then kill -9 (no save):
    her next unlock."""
    alice, bob, hers, his, older, wrapped, held = await _rotated(shared)
    alice.ledger.save()  # her ledger on disk, as of its last save
    await _bobs_chmod_under(shared, monkeypatch, his, older, held[1], wrapped)
    out = absorb_arrivals(alice, [alice.store.get(hers.fid)])
    assert hers in out.rekey and alice.ledger.claimed == {hers.fid: held[1]}
    if her_commit:
        def chmod() -> None:
            hers.mode = stat.S_IFDIR | 0o770

        await alice.tree.commit_node(hers, chmod)  # signed by her: his key (her older one) at her epoch
        assert hers.dek == older and hers.epoch == held[1]
    said = len(alarms.for_user(alice.key.user_id).as_list())
    again = Volume.load(alice.layout, alice.store, alice.key, alice.tree.get(1).fid)  # kill -9: no save
    return again, again.tree.find(hers.fid), older, held, said


async def test_a_claim_lost_by_a_crash_is_judged_again_at_unlock(shared, monkeypatch):
    """Control: with no commit of hers in between, the unlock judges his state again (``keys``)."""
    again, node, older, held, said = await _claimed_then_crash(shared, monkeypatch, her_commit=False)
    assert node.fid in again.ledger.claimed and node.fid in again.ledger.rolled


async def test_a_claim_her_commit_and_a_crash_leave_no_key_of_his_in_force(shared, monkeypatch):
    again, node, older, held, said = await _claimed_then_crash(shared, monkeypatch, her_commit=True)
    assert not (node.dek == older and node.fid not in again.ledger.rolled
                and len(alarms.for_user(again.key.user_id).as_list()) == said), (
        f"his key (her older one) kept at her epoch after the crash, unsaid, no re-key; the ledger "
        f"now keeps its digest as hers: {again.ledger.key_known(node.fid, held[1], older)}")



async def _epoch_raised_under_the_held_key(shared, monkeypatch):
    """bob's state of docs/sub one epoch above her laptop's, under the key her laptop holds (her older
    one, once her desktop re-keyed it and his device took that in; here: the key held)."""
    alice, bob, hers, his, grant = await _docs_sub_shared_twice(shared)
    key, epoch = hers.dek, hers.epoch + 1
    alice.ledger.save()
    await _bobs_chmod_under(shared, monkeypatch, his, key, epoch, dict(his.wrapped or {}))
    return alice, hers, key, epoch


async def test_an_epoch_raised_under_the_held_key_is_said_at_unlock(shared, monkeypatch):
    """Control: stored while she is locked, her unlock judges it (``claims_judged``: above the
    ledger's epoch, no key of hers derived there): said, and re-keyed."""
    alice, hers, key, epoch = await _epoch_raised_under_the_held_key(shared, monkeypatch)
    again = Volume.load(alice.layout, alice.store, alice.key, alice.tree.get(1).fid)
    assert _said(again, hers.fid) and hers.fid in again.ledger.rolled


async def test_an_epoch_raised_under_the_held_key_is_said_on_arrival(shared, monkeypatch):
    alice, hers, key, epoch = await _epoch_raised_under_the_held_key(shared, monkeypatch)
    out = absorb_arrivals(alice, [alice.store.get(hers.fid)])
    digest = alice.ledger.key_known(hers.fid, epoch, key)
    again = _unlock(alice)
    node = again.tree.find(hers.fid)
    assert not (node.epoch == epoch and node.dek == key and hers not in out.rekey
                and not _said(again, hers.fid) and node.fid not in again.ledger.rolled), (
        f"his state at an epoch her device never saw, under her older key: taken on arrival at his "
        f"epoch, unsaid, no re-key, its digest kept as hers ({digest}), and again at her unlock")
