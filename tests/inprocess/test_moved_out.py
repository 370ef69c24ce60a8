"""A file of hers moved out of a share in a shared mount's seat, in-process: the tree notes it
(vault/tree/inodes.py ``note_moved``) and the session service (vault/services/rotation.py
``keep_moves_rekeyed``) takes the member's key back and re-keys it; locked before it ran, the service
still writes the request and takes the key back, and the next unlock re-keys (``resume``)."""

from __future__ import annotations

import stat

import trio
import trio.testing

from fusevault.vault.model import sharing
from fusevault.vault.services import rotation
from inprocess.conftest import ALICE_UID, ROOT
from inprocess.test_two_users import ALICE, _share, _write


async def _moved_out(shared):
    """alice's docs/notes.txt shared READ with bob, then moved into her private folder: (her Volume,
    notes.txt's node, bob's key file of it)."""
    drive = shared.drive
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    private = await drive.mkdir(ROOT, b"private", stat.S_IFDIR | 0o700, ALICE)
    await _write(drive, docs.st_ino, b"notes.txt", b"hers", ALICE)
    await _share(shared, "docs", "READ")
    volume = drive.seat_of(ALICE_UID).ops.session.volume
    node = volume.resolve(b"docs/notes.txt")
    bobs = [r for g in volume.covering(node) for r in volume.sharing.reaches(g)]
    assert len(bobs) == 1
    key = bobs[0].key_path(volume.layout, node.fid)
    assert key.exists()
    await drive.rename(docs.st_ino, b"notes.txt", private.st_ino, b"notes.txt", 0, ALICE)
    assert node.fid in volume.tree.moved_out  # noted for the service
    return volume, node, key


async def test_a_move_out_of_a_share_is_re_keyed_by_the_service(shared):
    volume, node, key = await _moved_out(shared)
    epoch = node.epoch
    async with trio.open_nursery() as nursery:
        await nursery.start(rotation.keep_moves_rekeyed, volume)
        with trio.fail_after(30):
            while node.epoch == epoch or volume.store.get(f"rotate-{node.fid}") is not None:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert not key.exists() and node.epoch > epoch


async def test_a_lock_right_after_a_move_out_leaves_the_request_and_takes_the_key_back(shared):
    volume, node, key = await _moved_out(shared)
    epoch = node.epoch
    async with trio.open_nursery() as nursery:
        await nursery.start(rotation.keep_moves_rekeyed, volume)
        nursery.cancel_scope.cancel()  # locked before the service ran
    assert not key.exists(), "bob's key of the file moved out stays until her next unshare"
    request = volume.store.get(f"rotate-{node.fid}")
    assert request is not None and request["epoch"] == epoch and node.epoch == epoch
    await rotation.resume(volume)  # her next unlock
    assert node.epoch > epoch and volume.store.get(f"rotate-{node.fid}") is None
    assert sharing.read_key(key) is None


async def test_a_storm_of_moves_noted_during_its_re_key_costs_no_more_re_keys(shared, monkeypatch):
    """A WRITE member moving her file again and again while it is re-keyed (each move taken in is
    noted): once the keys it lost are taken back, the moves noted meanwhile find nothing to take and
    cost no re-key, not one each."""
    volume, node, key = await _moved_out(shared)
    epoch, lost = node.epoch, list(volume.tree.moved_out[node.fid])
    calls = []
    real = rotation._rekey

    async def storm_during(volume_, request):
        calls.append(request["fid"])
        for _ in range(50):
            volume_.tree.note_moved(node, lost)
        await real(volume_, request)

    monkeypatch.setattr(rotation, "_rekey", storm_during)
    async with trio.open_nursery() as nursery:
        await nursery.start(rotation.keep_moves_rekeyed, volume)
        with trio.fail_after(30):
            while node.epoch == epoch or volume.store.get(f"rotate-{node.fid}") is not None:
                await trio.sleep(0.01)
        await trio.testing.wait_all_tasks_blocked()  # the noted storm taken and judged
        nursery.cancel_scope.cancel()
    assert calls == [node.fid] and node.epoch == epoch + 1 and not volume.tree.moved_out


async def test_a_file_moved_out_of_a_folder_that_left_a_share_before_its_re_key_is_re_keyed(shared):
    """docs/sub moved out of docs (shared READ with bob), then notes.txt out of sub, before the service
    got to sub: sub's re-key no longer reaches notes.txt, and notes.txt's own move left no share (sub
    was out of docs by then).  Noted with sub, it is re-keyed all the same (attack round 37b (1))."""
    drive = shared.drive
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    sub = await drive.mkdir(docs.st_ino, b"sub", stat.S_IFDIR | 0o755, ALICE)
    private = await drive.mkdir(ROOT, b"private", stat.S_IFDIR | 0o700, ALICE)
    await _write(drive, sub.st_ino, b"notes.txt", b"hers", ALICE)
    await _share(shared, "docs", "READ")
    volume = drive.seat_of(ALICE_UID).ops.session.volume
    node = volume.resolve(b"docs/sub/notes.txt")
    (bobs,) = [r for g in volume.covering(node) for r in volume.sharing.reaches(g)]
    key, epoch = bobs.key_path(volume.layout, node.fid), node.epoch
    assert key.exists()
    await drive.rename(docs.st_ino, b"sub", private.st_ino, b"sub", 0, ALICE)
    await drive.rename(sub.st_ino, b"notes.txt", private.st_ino, b"notes.txt", 0, ALICE)
    async with trio.open_nursery() as nursery:
        await nursery.start(rotation.keep_moves_rekeyed, volume)
        with trio.fail_after(30):
            while volume.tree.moved_out or node.epoch == epoch:
                await trio.sleep(0.01)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert not key.exists(), "bob keeps his key of notes.txt, which left docs with sub"
    assert node.epoch > epoch
