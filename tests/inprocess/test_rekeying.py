"""Her unshare's re-key of a file (vault/files/rekeying.py) while documents of that file reach her store,
in-process: what arrives is put in the store and taken in (absorbing.py ``absorb``) from inside the
re-seal, right after the file's contents were sealed again and before that version is committed (the
window a large file leaves open, attack round 36b (1))."""

from __future__ import annotations

import os
import stat

import pytest
import trio

from fusevault.vault.files import rekeying
from fusevault.vault.services.absorbing import absorb
from inprocess.conftest import ALICE_UID, ROOT
from inprocess.test_two_users import ALICE, _read, _share, _write


async def _shared_notes(shared):
    """alice's docs/notes.txt, shared READ with bob: (her Volume, its node, its key and epoch, its
    inode in the drive)."""
    drive = shared.drive
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    notes = await _write(drive, docs.st_ino, b"notes.txt", b"hers", ALICE)
    await _share(shared, "docs", "READ")
    volume = drive.seat_of(ALICE_UID).ops.session.volume
    node = volume.resolve(b"docs/notes.txt")
    return volume, node, (node.dek, node.epoch), notes.st_ino


def _during_the_re_seal(monkeypatch, node, arrive) -> None:
    """``arrive()`` run on the loop once the re-seal of ``node`` has first sealed its contents again."""
    real = rekeying._sealed_again
    tries = []

    def sealed_again(files, each, dek, epoch):
        fresh = real(files, each, dek, epoch)
        if each is node and not tries:
            tries.append(each)
            trio.from_thread.run_sync(arrive)
        return fresh

    monkeypatch.setattr(rekeying, "_sealed_again", sealed_again)


async def _unshare(shared) -> dict:
    requests = shared.drive.seat_of(ALICE_UID).ops.session.requests
    return await requests.handle({"cmd": "unshare", "path": "docs", "with": "bob"})


@pytest.mark.parametrize("refused", ["forged", "replayed", "replayed after a version came in"])
async def test_a_refused_revision_arriving_during_the_re_seal_is_committed_over(shared, monkeypatch, refused):
    """The server puts her node document back while the file is sealed again, with a broken signature
    (``forged``) or as it was before her last write (``replayed``, which the ledger refuses): refused,
    it is no newer state, and the new key is committed over it.  After another writer's version came
    in (the newest, to be sealed), the replay is not taken for it: her newest contents are sealed.
    Taken for another writer's version, the refused one made the re-key give up with no word, and the
    unshare said it was done."""
    volume, node, (dek, epoch), ino = await _shared_notes(shared)
    store = volume.store.inner
    older = store.get(node.fid)
    info = await shared.drive.open(ino, os.O_WRONLY | os.O_TRUNC, ALICE)
    await shared.drive.write(info.fh, 0, b"hers, again")
    await shared.drive.release(info.fh)
    assert store.get(node.fid)["_rev"] != older["_rev"]

    def refused_revision_arrives() -> None:
        if refused == "forged":
            doc = store.get(node.fid)
            doc["sig"] = "A" * len(str(doc["sig"]))
        else:
            doc = {**older, "_rev": store.get(node.fid)["_rev"]}
        (rev,) = store.put_many([doc])
        absorb(volume, [{**doc, "_rev": rev}], own=False)
        assert node.rev == rev and node.fid not in volume.sharing.awaiting  # refused
        if refused.endswith("came in"):
            # Another writer's version taken in too, held back while the file is busy (absorbing.py
            # ``_update``): the stored document is looked at again, and it is still the replay.
            volume.sharing.awaiting.add(node.fid)

    _during_the_re_seal(monkeypatch, node, refused_revision_arrives)
    answer = await _unshare(shared)
    assert "error" not in answer, answer
    assert node.epoch > epoch and node.dek != dek, "the unshare left notes.txt under the key bob holds"
    stored = store.get(node.fid)
    assert stored["_rev"] == node.rev and stored["sig"] not in ("A" * len(stored["sig"]), older["sig"])
    assert store.get(f"rotate-{volume.resolve(b'docs').fid}") is None
    assert await _read(shared.drive, ino, ALICE) == b"hers, again"


async def test_a_file_whose_document_went_missing_during_the_re_seal_is_not_said_re_keyed(shared,
                                                                                         monkeypatch):
    """Another writer's version comes in while the file is sealed again (it waits, ``awaiting``), and
    then a writer of the vault folder deletes the file's row from the store: the re-key cannot seal the
    newest version, and the tree never saw the file go.  The unshare fails in one line and keeps its
    request, which her next unlock finishes; it never says the key changed."""
    volume, node, (dek, epoch), _ = await _shared_notes(shared)
    store = volume.store.inner

    def row_deleted() -> None:
        volume.sharing.awaiting.add(node.fid)  # what absorbing.py ``_update`` does for a busy file
        store.db.execute("DELETE FROM docs WHERE id = ?", (node.fid,))

    _during_the_re_seal(monkeypatch, node, row_deleted)
    answer = await _unshare(shared)
    assert "was not given a new key" in str(answer.get("error")), answer
    assert (node.dek, node.epoch) == (dek, epoch)
    assert store.get(f"rotate-{volume.resolve(b'docs').fid}") is not None, "the re-key's request was dropped"
