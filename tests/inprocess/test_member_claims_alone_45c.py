"""Round 45c (4), (5), limits (tests/unit/test_attack_45c.py, tests/unit/test_member_claims_45c.py),
in-process: a WRITE member's state of her file taken in alone (no conflict: services/absorbing.py)
never gives her node his claimed epoch, nor back the key she re-keyed away.

Scene: alice shares docs/ WRITE with bob; her unshare of another (carol) re-keys docs/notes.txt (a new
epoch, a new DEK sealed to the remaining recipients); bob took the new key in.  bob's client then signs
a state of it made of what he held before the re-key (her old version, the old DEK's wrapping she made,
which carol holds too) claiming her very epoch or one far above (2**40), a chmod of his.  Taken in as
it was, her node held the old key at his epoch, and her device's next commit (a chmod, a write) signed
it: carol read what she wrote next."""

from __future__ import annotations

import os
import stat

import pytest

from fusevault.crypto import aead
from fusevault.encoding import b64d, b64e
from fusevault.errors import CorruptData
from fusevault.store import replica
from fusevault.vault.files.rekeying import derived_dek
from fusevault.vault.model import alarms
from fusevault.vault.model.nodes import doc_dek
from fusevault.vault.services import conflicts
from fusevault.vault.services.absorbing import absorb, retry_awaiting
from fusevault.vault.tree.arrivals import CONTENTS, Absorbed
from inprocess import conftest
from inprocess.conftest import ROOT
from inprocess.test_two_users import ALICE, BOB, _read, _share, _walk, _write

FILE = stat.S_IFREG | 0o644


async def _notes_re_keyed(shared) -> tuple:
    """docs/notes.txt shared WRITE with bob, then re-keyed by her (her unshare of another): (her volume,
    bob's, her node, his node, his state before the re-key, the old DEK)."""
    drive = shared.drive
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, docs.st_ino, b"notes.txt", b"hers", ALICE)
    await _share(shared, "docs", "WRITE")
    alice, bob = shared.volumes["alice"], shared.volumes["bob"]
    hers = alice.resolve(b"docs/notes.txt")
    his = bob.tree.find(hers.fid)
    before = {name: getattr(his, name) for name in CONTENTS}
    old = his.dek
    await alice.rekey(hers)
    retry_awaiting(bob, Absorbed())  # her key sealed to him after her commit (fs/arrivals.py ``_rekey``)
    assert hers.dek != old and his.dek == hers.dek  # he took her new key in
    return alice, bob, hers, his, before, old


def _taken_rekeys(monkeypatch) -> list:
    """What her seat's taking in asks to re-key (fs/arrivals.py ``follow_up`` does it in a mount)."""
    asked: list = []
    real = conftest.absorb

    def absorb(volume, docs, **how):
        out = real(volume, docs, **how)
        asked.extend(node for node in out.rekey if node.owner == volume.key.user_id)
        return out

    monkeypatch.setattr(conftest, "absorb", absorb)
    return asked


def _said(volume, fid: str) -> bool:
    """A forged-write alarm of this file (the alarms are the process's, kept across tests)."""
    return any(each["kind"] == "forged-write" and each["subject"] == fid
               for each in alarms.for_user(volume.key.user_id).as_list())


def _opens_under(doc: dict, dek: bytes) -> bool:
    try:
        aead.unseal(dek, b64d(doc["enc"]), aead.ad("node", doc["_id"]))
    except CorruptData:
        return False
    return True


@pytest.mark.parametrize("claimed", ["hers", "far"])
async def test_a_members_state_claiming_an_epoch_under_the_old_key_alone_does_not_undo_her_re_key(
        shared, monkeypatch, claimed):
    alice, bob, hers, his, before, old = await _notes_re_keyed(shared)
    epoch = hers.epoch
    asked = _taken_rekeys(monkeypatch)

    def forged() -> None:  # his client: what he held before her re-key, at an epoch he claims
        for name, value in before.items():
            setattr(his, name, value)
        his.epoch = epoch if claimed == "hers" else 2**40
        his.mode = stat.S_IFREG | 0o664

    await bob.tree.commit_node(his, forged)
    assert hers.epoch == epoch and asked == [hers], "taken at his epoch (seen), not sealed again"
    for node in asked:
        await alice.rekey(node)  # her device seals his state again under a key of hers
    await alice.setattr(hers.ino, mode=stat.S_IFREG | 0o666)
    ino = (await _walk(shared.drive, b"docs/notes.txt", ALICE)).st_ino
    info = await shared.drive.open(ino, os.O_WRONLY, ALICE)
    await shared.drive.write(info.fh, 0, b"hers, after the unshare")
    await shared.drive.release(info.fh)
    doc = alice.store.get(hers.fid)
    assert doc_dek(doc, alice.key) != old and not _opens_under(doc, old), "carol reads her file again"
    assert doc["epoch"] <= epoch + 1 and hers.dek != old
    assert await _read(shared.drive, ino, ALICE) == b"hers, after the unshare"
    assert _said(alice, hers.fid), "his claim is said"


async def test_a_members_ordinary_edit_under_her_new_key_is_taken_unsaid(shared, monkeypatch):
    alice, bob, hers, his, before, old = await _notes_re_keyed(shared)
    key, asked = (hers.dek, hers.epoch), _taken_rekeys(monkeypatch)
    ino = (await _walk(shared.drive, b"shared/alice/docs/notes.txt", BOB)).st_ino
    info = await shared.drive.open(ino, os.O_WRONLY, BOB)
    await shared.drive.write(info.fh, 0, b"his")
    await shared.drive.release(info.fh)
    assert (hers.dek, hers.epoch) == key and not asked and hers.head == his.head
    assert not _said(alice, hers.fid)


async def test_a_members_state_under_her_key_of_a_newer_epoch_is_taken_unsaid(shared, monkeypatch):
    """Her other device re-keyed docs/sub (a folder) before this one heard of it, and bob took that key
    in: his state under it is of her key (derived from her master key: no member makes it)."""
    drive = shared.drive
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    await drive.mkdir(docs.st_ino, b"sub", stat.S_IFDIR | 0o755, ALICE)
    await _share(shared, "docs", "WRITE")
    alice, bob = shared.volumes["alice"], shared.volumes["bob"]
    hers = alice.resolve(b"docs/sub")
    his = bob.tree.find(hers.fid)
    epoch, asked = hers.epoch + 1, _taken_rekeys(monkeypatch)
    newer = derived_dek(alice.tree, hers, epoch)  # what her other device gave it

    def took_her_newer_key() -> None:
        his.dek, his.epoch = newer, epoch
        his.wrapped = {"en_file_dek": b64e(alice.key.wrap_dek(hers.fid, newer))}
        his.mode = stat.S_IFDIR | 0o775

    await bob.tree.commit_node(his, took_her_newer_key)
    assert (hers.dek, hers.epoch) == (newer, epoch) and not asked
    assert not _said(alice, hers.fid)


@pytest.mark.parametrize("claimed", [None, 2**40])
async def test_bobs_edit_kept_by_rule_4_beside_her_re_key_is_sealed_again_under_her_key(
        shared, monkeypatch, claimed):
    """(b): bob's edit of docs/notes.txt made over the state before her re-key, under the key he held
    (at its epoch, or claiming 2**40), a branch beside her re-key; his later mtime keeps it (rule 4:
    ``_adopt``).  Committed by her device as it was, her file went back to the old key (at his epoch)."""
    drive = shared.drive
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, docs.st_ino, b"notes.txt", b"hers", ALICE)
    await _share(shared, "docs", "WRITE")
    alice, bob = shared.volumes["alice"], shared.volumes["bob"]
    hers = alice.resolve(b"docs/notes.txt")
    his, old, local = bob.tree.find(hers.fid), hers.dek, replica.local_of(alice.store)
    assert local is not None
    before, history = local.get(hers.fid), replica.current_history(local, hers.fid)
    real = conftest.absorb
    monkeypatch.setattr(conftest, "absorb", lambda volume, docs, **how: (
        Absorbed() if volume is alice else real(volume, docs, **how)))  # made apart: not seen by her
    if claimed is not None:
        his.epoch = claimed
    ino = (await _walk(drive, b"shared/alice/docs/notes.txt", BOB)).st_ino
    info = await drive.open(ino, os.O_WRONLY | os.O_TRUNC, BOB)
    await drive.write(info.fh, 0, b"his words")
    await drive.release(info.fh)
    monkeypatch.setattr(conftest, "absorb", real)
    # Her state before his edit, on top again (two more saves of hers on her other side): his a branch.
    ahead = [f"{len(history) + n}-{str(n) * 32}" for n in (2, 1)] + history
    replica.store_revisions(local, [{**before, "_rev": ahead[0], "_revisions": replica.revisions(ahead)}])
    absorb(alice, [local.get(hers.fid)], own=False)
    epoch = hers.epoch
    await alice.rekey(hers)  # her unshare of another: a new key, her contents sealed again
    assert hers.dek != old and replica.other_leaves(local, hers.fid)
    conflicts.note_branches(alice, local, [hers.fid])
    await conflicts.settle(alice, local, [hers.fid])
    doc = local.get(hers.fid)
    assert doc_dek(doc, alice.key) != old and not _opens_under(doc, old), "carol reads her file again"
    assert doc["epoch"] <= epoch + 2 and hers.dek != old
    assert await _read(drive, (await _walk(drive, b"docs/notes.txt", ALICE)).st_ino, ALICE) == b"his words"
    assert _said(alice, hers.fid) == (claimed is not None)
