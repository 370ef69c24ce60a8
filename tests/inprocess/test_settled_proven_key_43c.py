"""Round 43c (8), honest use, settled as a conflict (services/conflict_rules.py ``_newer_key``), in-process: a
WRITE member's state made over her other device's re-key, which this device has not heard of yet, beside
a state of hers made apart, is of her key when her proof proves it (``MasterKey.key_proof``: her re-key
writes it, his commit carries it over), not his claim.

Scene (tests/inprocess/test_member_newer_key_43c.py's harness): docs/ and docs/sub shared WRITE with bob;
her desktop unshares docs/sub (a re-key in place, epoch E+1, a key derived for the recipients left, her
proof of it in the node); bob's device takes it in and he chmods docs/sub over it.  Her laptop (this
seat) set an extended attribute on docs/sub meanwhile, over the state before the re-key: two branches.
Settled before her unshare arrives, rule 2 kept her laptop's state for its key and took bob's for a
claim above her epoch: said (a false forged-write alarm), her unshare's key dropped here.  Wanted: her
re-key's key and epoch (his state's), her attribute and his chmod merged, unsaid.  A key her proof does
not prove at his epoch, or one at the epoch held here, is a claim still; his values past a file's cap
on the state kept for her key are not merged into hers.  Rule 3 (his contents the newer, of a file her
desktop re-keyed) keeps his state under her proven key through the arrival's judgement."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

import pytest

from fusevault.encoding import b64e
from fusevault.store import replica
from fusevault.vault.files.rekeying import derived_dek
from fusevault.vault.model.nodes import note_change
from fusevault.vault.services import conflicts
from fusevault.vault.services.absorbing import absorb
from fusevault.vault.tree.arrivals import CONTENTS, Absorbed
from fusevault.vault.tree.attributes import XATTR_BYTES_MAX
from fusevault.vault.volume import Volume
from inprocess import conftest
from inprocess.conftest import ROOT
from inprocess.test_member_newer_key_43c import (
    _docs_sub_shared_twice,
    _her_desktops_key,
    _her_unshare_arrives,
    _said,
)
from inprocess.test_two_users import ALICE, _read, _share, _walk, _write

Key = tuple[bytes, int, "str | None"]
NAME, VALUE = b"user.laptop", b"hers"
HIS_MODE = stat.S_IFDIR | 0o775
DIR = stat.S_IFDIR | 0o755
BIG = {b"user.big%d" % n: b"x" * 4096 for n in range(32)}  # 128 KiB: past a file's cap


async def _beside_her_laptops_state(shared, monkeypatch, key_of: Callable[..., Key],
                                    his_xattrs: dict | None = None) -> tuple:
    """bob's chmod of docs/sub under the key ``key_of(alice, her node, the share of docs/sub)`` gives (a
    DEK, its epoch, the proof his state carries), with ``his_xattrs`` if given, a branch beside her
    laptop's change made over the state before it (a setxattr; a chmod where he set attributes);
    settled on her laptop.  (her volume, her node, the share, bob's key, the key she held, what the
    settling asked.)"""
    alice, bob, hers, his, grant = await _docs_sub_shared_twice(shared)
    local = replica.local_of(alice.store)
    assert local is not None
    before, history = local.get(hers.fid), replica.current_history(local, hers.fid)
    held = (hers.dek, hers.epoch)
    key = dek, epoch, proof = key_of(alice, hers, grant)

    def chmod() -> None:  # his client, over the state of her desktop's re-key (or his claim)
        his.dek, his.epoch, his.key_proof = dek, epoch, proof
        his.wrapped = {"en_file_dek": b64e(alice.key.wrap_dek(hers.fid, dek))}
        his.mode = HIS_MODE
        note_change(his, "mode")
        if his_xattrs is not None:
            his.xattrs = dict(his_xattrs)
            note_change(his, "xattrs")

    real = conftest.absorb
    monkeypatch.setattr(conftest, "absorb", lambda volume, docs, **how: (
        Absorbed() if volume is alice else real(volume, docs, **how)))  # her laptop hears it later
    await bob.tree.commit_node(his, chmod)
    monkeypatch.setattr(conftest, "absorb", real)
    # Her laptop's state before his, on top again (more saves of hers on her side): his a branch.
    ahead = [f"{len(history) + n}-{str(n) * 32}" for n in (2, 1)] + history
    replica.store_revisions(local, [{**before, "_rev": ahead[0], "_revisions": replica.revisions(ahead)}])
    absorb(alice, [local.get(hers.fid)], own=False)
    if his_xattrs is None:
        await alice.setxattr(hers.ino, NAME, VALUE)
    else:
        await alice.setattr(hers.ino, mode=stat.S_IFDIR | 0o700)
    assert replica.other_leaves(local, hers.fid), "no conflict to settle"
    conflicts.note_branches(alice, local, [hers.fid])
    out = await conflicts.settle(alice, local, [hers.fid])
    assert not replica.other_leaves(local, hers.fid)
    return alice, hers, grant, key, held, out


def _desktops(alice, hers, grant) -> Key:
    """Her desktop's unshare of docs/sub: its key at E+1 (derived for the recipients left), her proof."""
    epoch = hers.epoch + 1
    newer = _her_desktops_key(alice, hers, epoch, grant)
    return newer, epoch, alice.key.key_proof(hers.fid, epoch, newer)


async def test_bobs_state_over_her_desktops_proven_re_key_beside_her_laptops_is_hers(shared, monkeypatch):
    alice, hers, grant, key, held, out = await _beside_her_laptops_state(shared, monkeypatch, _desktops)
    assert not _said(alice, hers.fid), "her other device's re-key taken for his claim"
    assert (hers.dek, hers.epoch, hers.key_proof) == key, "her desktop's re-key dropped for her older key"
    assert not out.rekey
    assert hers.mode == HIS_MODE and hers.xattrs.get(NAME) == VALUE, "a change made apart lost"
    stored = alice.store.get(hers.fid)
    assert stored["epoch"] == key[1] and stored["sig"]["by"] == alice.key.user_id
    _her_unshare_arrives(alice, grant)
    assert (hers.dek, hers.epoch) == key[:2] and not _said(alice, hers.fid)


# --- a member's claims beside her state: each still said, her key kept (his chmod merged)


def _proof_of_another_key(alice, hers, grant) -> Key:
    """Her key held here (his, too), claimed an epoch up with her proof of her desktop's key there."""
    return hers.dek, hers.epoch + 1, _desktops(alice, hers, grant)[2]


def _proof_from_another_epoch(alice, hers, grant) -> Key:
    """Her key held here, claimed an epoch up with her proof of it at her epoch (were one made)."""
    return hers.dek, hers.epoch + 1, alice.key.key_proof(hers.fid, hers.epoch, hers.dek)


def _garbage_proof(alice, hers, grant) -> Key:
    return hers.dek, hers.epoch + 1, os.urandom(16).hex()


def _proven_at_the_held_epoch(alice, hers, grant) -> Key:
    """Her key at the epoch held here for other recipients (her other device's re-key at once), proven:
    one epoch has one key of hers for what one device sees (one she removed may hold this one)."""
    other = _her_desktops_key(alice, hers, hers.epoch, grant)
    return other, hers.epoch, alice.key.key_proof(hers.fid, hers.epoch, other)


@pytest.mark.parametrize("key_of", [_proof_of_another_key, _proof_from_another_epoch, _garbage_proof,
                                    _proven_at_the_held_epoch])
async def test_a_claim_beside_her_laptops_state_is_said_and_her_key_kept(shared, monkeypatch, key_of):
    alice, hers, grant, key, held, out = await _beside_her_laptops_state(shared, monkeypatch, key_of)
    assert _said(alice, hers.fid), "his claim taken for her key unsaid"
    assert (hers.dek, hers.epoch) == held, "his claimed key or epoch kept"
    assert hers.mode == HIS_MODE and hers.xattrs.get(NAME) == VALUE, "his chmod or her change lost"


async def test_his_values_past_the_cap_on_her_proven_key_are_not_merged_into_hers(shared, monkeypatch):
    """52c (1)'s stall by the state kept for her key: his 128 KiB of values (set after hers, so they
    win the merge by their stamp) are refused, hers stand; her chmod made apart is kept."""
    alice, hers, grant, key, held, out = await _beside_her_laptops_state(shared, monkeypatch, _desktops, BIG)
    stored = alice.store.get(hers.fid)
    assert sum(len(v) for v in hers.xattrs.values()) <= XATTR_BYTES_MAX, "his values merged into her state"
    assert stored["sig"]["by"] == alice.key.user_id and not (set(hers.xattrs) & set(BIG))


async def test_bobs_edit_over_her_desktops_proven_re_key_kept_by_rule_3_is_hers(shared, monkeypatch):
    """Rule 3: her desktop's re-key of docs/notes.txt (its contents sealed again under the new key, her
    proof in the node), bob's chmod over it, her laptop's chmod made apart over the state before: his
    contents are the newer, kept under her desktop's key (the arrival's judgement, ``_claims_a_key``),
    unsaid and not re-keyed again.  (The re-keying desktop is her tree loaded apart, seeing no grant on
    the file as it re-keys: a key derived for other recipients than her laptop sees.)"""
    drive = shared.drive
    docs = await drive.mkdir(ROOT, b"docs", DIR, ALICE)
    await _write(drive, docs.st_ino, b"notes.txt", b"hers", ALICE)
    await _share(shared, "docs", "WRITE")
    await _share(shared, "docs/notes.txt", "WRITE")  # two grants: no derivation here finds the key
    alice, bob = shared.volumes["alice"], shared.volumes["bob"]
    hers = alice.resolve(b"docs/notes.txt")
    his, local = bob.tree.find(hers.fid), replica.local_of(alice.store)
    assert local is not None
    before, history = local.get(hers.fid), replica.current_history(local, hers.fid)
    desktop = Volume.load(alice.layout, local, alice.key, alice.tree.root.fid)
    on_desktop = desktop.find(hers.fid)
    with monkeypatch.context() as patch:  # her desktop's unshare of another: other recipients
        patch.setattr(desktop.tree, "covering", lambda node: [])
        await desktop.rekey(on_desktop)
    key = (on_desktop.dek, on_desktop.epoch, on_desktop.key_proof)
    assert key[0] != derived_dek(alice.tree, hers, key[1]) and key[2] is not None

    wrapped = local.get(hers.fid)["en_file_dek"]

    def chmod() -> None:  # his client took her desktop's state in, and chmods over it
        for name in CONTENTS:
            setattr(his, name, getattr(on_desktop, name))
        his.key_proof, his.rev = on_desktop.key_proof, on_desktop.rev
        his.wrapped = {"en_file_dek": wrapped}  # her wrapping, as her desktop's document carries it
        his.mode = stat.S_IFREG | 0o664
        note_change(his, "mode")

    real = conftest.absorb
    monkeypatch.setattr(conftest, "absorb", lambda volume, docs, **how: (
        Absorbed() if volume is alice else real(volume, docs, **how)))
    await bob.tree.commit_node(his, chmod)
    monkeypatch.setattr(conftest, "absorb", real)
    ahead = [f"{len(history) + n}-{str(n) * 32}" for n in (3, 2, 1)] + history
    replica.store_revisions(local, [{**before, "_rev": ahead[0], "_revisions": replica.revisions(ahead)}])
    absorb(alice, [local.get(hers.fid)], own=False)
    await alice.setattr(hers.ino, mode=stat.S_IFREG | 0o600)
    assert replica.other_leaves(local, hers.fid), "no conflict to settle"
    conflicts.note_branches(alice, local, [hers.fid])
    out = await conflicts.settle(alice, local, [hers.fid])
    assert not _said(alice, hers.fid), "her desktop's re-key taken for his claim"
    assert (hers.dek, hers.epoch, hers.key_proof) == key and hers not in out.rekey
    assert hers.head == on_desktop.head
    assert await _read(drive, (await _walk(drive, b"docs/notes.txt", ALICE)).st_ino, ALICE) == b"hers"
