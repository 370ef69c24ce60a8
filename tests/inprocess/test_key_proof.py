"""Her proof of her file's key at an epoch (crypto/keys.py ``MasterKey.key_proof``; vault/model/her_keys.py
``proven``): attack round 51b (4)-(6)'s fix, in-process.

Her re-key writes the proof into the node with the key; a member's commit under that key carries it over
unchanged; her device, judging a member's state above her epoch (on arrival, at load), takes a key her
proof proves as hers, whatever the recipients her re-key saw.  A member holds her keys and their proofs
(hers at her epoch, her older one he kept): none proves another key, epoch or file, nor does a proof of
his own, a garbage one, or one too large to be hers (refused as malformed).  Scenes: round 43c's and
51b's (docs/ and docs/sub shared WRITE with bob; her rotation of docs/sub, bob keeping her older key).
"""

from __future__ import annotations

import os

import pytest

from fusevault.encoding import b64e
from fusevault.vault.model.nodes import open_node_attrs
from fusevault.vault.services.absorbing import HER_RE_KEY_BATCHES, absorb_arrivals, retry_awaiting
from fusevault.vault.tree.arrivals import Absorbed
from fusevault.vault.volume import Volume
from inprocess.test_attack_51b import _docs_sub_read_in_docs_write, _rotated, _said
from inprocess.test_member_newer_key_43c import _bobs_chmod_under, _docs_sub_shared_twice, _her_desktops_key
from inprocess.test_two_users import _share


def _new_device(alice):
    """Her new device (or a ledger lost): no record of the file's epochs or keys."""
    alice.ledger.save()
    alice.ledger.path.unlink()
    return Volume.load(alice.layout, alice.store, alice.key, alice.tree.get(1).fid)


def _claimed_at_load(again, fid: str) -> bool:
    return _said(again, fid) and fid in again.ledger.rolled


async def test_her_re_key_gives_the_node_her_proof_and_bobs_commit_carries_it_over(shared, monkeypatch):
    alice, bob, hers, his, older, wrapped, held = await _rotated(shared)
    assert hers.key_proof == alice.key.key_proof(hers.fid, held[1], held[0])
    assert his.key_proof == hers.key_proof, "bob's device took her re-key in without her proof"
    await _bobs_chmod_under(shared, monkeypatch, his, *held, dict(his.wrapped or {}))  # honest
    stored = alice.store.get(hers.fid)
    assert stored["sig"]["by"] == bob.key.user_id
    assert open_node_attrs(stored, held[0])["key_proof"] == hers.key_proof, "his commit dropped her proof"


async def test_bobs_honest_state_is_hers_on_her_new_device_after_two_changes_of_grants(shared, monkeypatch):
    """50b (2) / 51b (4), (5): her re-key (real, here), then two changes of grants (a permission each); bob
    saves over it; her new device unlocks: her key, proven, taken unsaid, whatever the grants since."""
    alice, bob, hers, his = await _docs_sub_read_in_docs_write(shared)
    await alice.rekey(hers)  # her desktop's rotation of docs/sub
    retry_awaiting(bob, Absorbed())
    key = (hers.dek, hers.epoch)
    assert his.dek == key[0] and his.key_proof == hers.key_proof
    await _share(shared, "docs/sub", "WRITE")
    await _share(shared, "docs", "READ")
    assert hers.epoch == key[1], "a change of permission is no re-key"
    await _bobs_chmod_under(shared, monkeypatch, his, *key, dict(his.wrapped or {}))  # honest
    again = _new_device(alice)
    node = again.tree.find(hers.fid)
    assert not _said(again, hers.fid), "bob's honest state over her key said as his claim"
    assert (node.dek, node.epoch) == key and hers.fid not in again.ledger.rolled


async def test_bobs_state_over_her_other_devices_proven_re_key_is_taken_at_once(shared, monkeypatch):
    """43c (8)'s hold, 50b (2): his state over her other device's re-key for recipients not seen here is
    taken in unsaid at once, her proof with it, no batches held (her writes there refused meanwhile)."""
    alice, bob, hers, his, grant = await _docs_sub_shared_twice(shared)
    epoch = hers.epoch + 1
    newer = _her_desktops_key(alice, hers, epoch, grant)  # her desktop's unshare, which bob's device took in
    proof = alice.key.key_proof(hers.fid, epoch, newer)
    await _bobs_chmod_under(shared, monkeypatch, his, newer, epoch,
                            {"en_file_dek": b64e(alice.key.wrap_dek(hers.fid, newer))}, proof)
    out = absorb_arrivals(alice, [alice.store.get(hers.fid)])
    assert (hers.dek, hers.epoch, hers.key_proof) == (newer, epoch, proof), "held back, or not taken"
    assert not out.rekey and not _said(alice, hers.fid) and hers.fid not in alice.tree.her_re_key_waits


# --- a member's abuse of her proofs: each still a claim (said, and her file re-keyed at unlock)


async def test_her_proof_copied_to_another_epoch_proves_nothing(shared, monkeypatch):
    """Her key at her epoch, and its proof (both his since her re-key), claimed one epoch up."""
    alice, bob, hers, his, older, wrapped, held = await _rotated(shared)
    proof = hers.key_proof
    await _bobs_chmod_under(shared, monkeypatch, his, held[0], held[1] + 1, dict(his.wrapped or {}), proof)
    again = _new_device(alice)
    assert _claimed_at_load(again, hers.fid), "her key walked up an epoch on her proof of it"


async def test_her_proof_of_her_key_proves_no_other_key_at_that_epoch(shared, monkeypatch):
    """Her older key (his, kept) at her epoch, with her proof of her newer key there."""
    alice, bob, hers, his, older, wrapped, held = await _rotated(shared)
    await _bobs_chmod_under(shared, monkeypatch, his, older, held[1], wrapped, hers.key_proof)
    again = _new_device(alice)
    assert _claimed_at_load(again, hers.fid), "her older key taken at her epoch on her proof of another"


async def test_her_proof_for_another_file_proves_nothing_here(shared, monkeypatch):
    """Her proof of the same key and epoch for another file of hers (docs/), were one made."""
    alice, bob, hers, his, older, wrapped, held = await _rotated(shared)
    other = alice.key.key_proof(alice.resolve(b"docs").fid, held[1] + 1, older)
    await _bobs_chmod_under(shared, monkeypatch, his, older, held[1] + 1, wrapped, other)
    again = _new_device(alice)
    assert _claimed_at_load(again, hers.fid), "another file's proof taken for this one's"


@pytest.mark.parametrize("whose", ["garbage", "his own"])
async def test_a_garbage_proof_or_one_of_his_own_proves_nothing(shared, monkeypatch, whose):
    """Judged on arrival (after the hold: no re-key of hers explains it): said, taken at her epoch."""
    alice, bob, hers, his, older, wrapped, held = await _rotated(shared)
    epoch = held[1] + 1
    proof = os.urandom(16).hex() if whose == "garbage" else bob.key.key_proof(hers.fid, epoch, older)
    await _bobs_chmod_under(shared, monkeypatch, his, older, epoch, wrapped, proof)
    docs = alice.resolve(b"docs")
    out = absorb_arrivals(alice, [alice.store.get(hers.fid)])
    for _ in range(HER_RE_KEY_BATCHES + 1):
        out.add(absorb_arrivals(alice, [alice.store.get(docs.fid)]))
    assert _said(alice, hers.fid) and hers in out.rekey and hers.epoch == held[1], "his key taken for hers"


async def test_a_proof_larger_than_hers_is_refused_as_malformed(shared, monkeypatch):
    """A proof of 8 MB in his state: refused (not taken, never sealed again at her commits)."""
    alice, bob, hers, his, older, wrapped, held = await _rotated(shared)
    mode = hers.mode
    await _bobs_chmod_under(shared, monkeypatch, his, *held, dict(his.wrapped or {}), "a" * 8_000_000)
    absorb_arrivals(alice, [alice.store.get(hers.fid)])
    assert hers.mode == mode and len(hers.key_proof or "") == 32, "his 8 MB proof taken into her node"
