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
The load's side is older than the hold: his claim committed while her seat is locked (a shared mount's
other seat, or a sync while she is locked) is taken the same way at her unlock, unsaid
(``test_a_claim_committed_while_she_is_locked_is_not_taken_unsaid_by_her_unlock``); the hold widens
it to any claim heard while she is unlocked, followed by a restart within the batches.
Tests: ``test_a_held_claim_is_not_taken_unsaid_by_her_unlock``,
``test_a_claim_committed_while_she_is_locked_is_not_taken_unsaid_by_her_unlock`` (strict xfails);
control ``test_a_held_claim_is_held_unsaid_before_the_unlock`` (the hold as documented).
"""

from __future__ import annotations

import pytest

from fusevault.vault.model import alarms
from fusevault.vault.services.absorbing import absorb_arrivals, retry_awaiting
from fusevault.vault.tree.arrivals import Absorbed
from fusevault.vault.volume import Volume
from inprocess.test_member_newer_key_43c import _bobs_chmod_under, _docs_sub_shared_twice


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


@pytest.mark.xfail(strict=True, reason="50b (1): a held key claim is taken unsaid by her next unlock")
async def test_a_held_claim_is_not_taken_unsaid_by_her_unlock(shared, monkeypatch):
    alice, hers, older, held = await _bobs_claim_held(shared, monkeypatch)
    assert not _taken_unsaid(alice, hers, older), (
        "his claim of her older key taken at his epoch, unsaid: her rotation undone")


@pytest.mark.xfail(strict=True, reason="50b (1): a key claim stored while she is locked is taken "
                                                "unsaid at unlock")
async def test_a_claim_committed_while_she_is_locked_is_not_taken_unsaid_by_her_unlock(shared, monkeypatch):
    alice, hers, older, held = await _bobs_claim(shared, monkeypatch)
    assert not _taken_unsaid(alice, hers, older), (
        "his claim of her older key taken at his epoch, unsaid: her rotation undone")
