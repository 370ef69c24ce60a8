"""gc (vault/services/gc.py) while sync writes the store, in-process: what the other device did arrives
between gc's read of a file's versions and its deletion of them (the window CI met: both devices of one
user collected the same old versions, the laptop's deletions reached the desktop mid-run, and its gc
failed whole with "document ... was changed by someone else")."""

from __future__ import annotations

import trio

from fusevault.vault.model.history import lineage as real_lineage
from fusevault.vault.model.retention import Policy
from fusevault.vault.services import gc
from inprocess.conftest import ME, ROOT, make, read_all, rewrite

LATER = 4102444800 * 10**9  # 2100-01-01: every old version is past every window
DROP_ALL_OLD = Policy(keep_all_days=0, daily_days=0, weekly_weeks=0, keep_all_minutes=0)


def _arriving_after_read(monkeypatch, arrive, nth: int = 2) -> None:
    """``arrive(links)`` run on the loop right after gc's ``nth`` read of a file's versions (the
    second: a live file's, under its lock; the first: a deleted file's)."""
    reads = []

    def lineage(*args, **kwargs):
        links = real_lineage(*args, **kwargs)
        reads.append(links)
        if len(reads) == nth:
            trio.from_thread.run(arrive, links)
        return links

    monkeypatch.setattr(gc, "lineage", lineage)


async def _notes_with_versions(fs, count: int = 4):
    entry = await make(fs.ops, b"notes.txt", b"version 0")
    for n in range(1, count):
        await rewrite(fs.ops, entry.st_ino, f"version {n}".encode())
    return entry


async def test_old_versions_the_other_device_dropped_meanwhile_count_as_dropped(fs, monkeypatch):
    """The other device's gc deleted two of the versions this one is dropping; its deletions arrive
    after this gc read them.  They are done: this gc drops the rest, frees their space, and succeeds."""
    volume = fs.volume
    entry = await _notes_with_versions(fs)

    async def peer_dropped(links):
        old = sorted(links[0].versions, key=lambda v: v.time)[:2]
        await volume.store_call(volume.store.put_many,
                                [{"_id": v.vid, "_rev": v.rev, "_deleted": True} for v in old])

    _arriving_after_read(monkeypatch, peer_dropped)
    report = await gc.collect(volume, DROP_ALL_OLD, LATER)
    assert report.kept_changed == 0
    assert report.versions_dropped == 3
    node = volume.resolve(b"notes.txt")
    left = real_lineage(volume.store, volume.key, node.fid, node.dek, node.previous, node.epoch, None)
    assert [v.vid for link in left for v in link.versions] == [node.head]
    assert await read_all(fs.ops, entry.st_ino) == b"version 3"


async def test_a_version_changed_meanwhile_leaves_the_file_for_a_later_run(fs, monkeypatch):
    """A version document that arrives changed (not deleted) after gc read it: nothing of the file is
    deleted over a state gc did not read; the run goes on, says so, and the next run collects it."""
    volume = fs.volume
    entry = await _notes_with_versions(fs)

    async def peer_changed(links):
        oldest = min(links[0].versions, key=lambda v: v.time)
        doc = await volume.store_call(volume.store.get, oldest.vid)
        await volume.store_call(volume.store.put_many, [doc])  # same body, a new revision

    _arriving_after_read(monkeypatch, peer_changed)
    report = await gc.collect(volume, DROP_ALL_OLD, LATER)
    assert (report.kept_changed, report.versions_dropped) == (1, 0)
    node = volume.resolve(b"notes.txt")
    left = real_lineage(volume.store, volume.key, node.fid, node.dek, node.previous, node.epoch, None)
    assert len([v for link in left for v in link.versions]) == 4
    monkeypatch.undo()
    again = await gc.collect(volume, DROP_ALL_OLD, LATER)
    assert (again.kept_changed, again.versions_dropped) == (0, 3)
    assert await read_all(fs.ops, entry.st_ino) == b"version 3"


async def test_a_deleted_file_restored_on_the_other_device_meanwhile_is_not_purged(fs, monkeypatch):
    """Past its time in the trash, a file is purged; its restore on the other device arrives after gc
    listed the trash.  Its documents and contents stay: the restore is not undone by a purge of what gc
    read."""
    volume = fs.volume
    entry = await _notes_with_versions(fs, 2)
    fid = volume.resolve(b"notes.txt").fid
    await fs.ops.unlink(ROOT, b"notes.txt", ME)
    await fs.ops.forget([(entry.st_ino, 1)])  # the kernel lets go of it: no longer held
    await volume.flush_pending()
    real = gc.deleted_nodes

    async def peer_restored():
        doc = await volume.store_call(volume.store.get, fid)
        await volume.store_call(volume.store.put_many, [doc])  # as her restore arrives: a new revision

    def deleted_nodes(*args):
        listed = real(*args)
        trio.from_thread.run(peer_restored)
        return listed

    monkeypatch.setattr(gc, "deleted_nodes", deleted_nodes)
    report = await gc.collect(volume, Policy(trash_days=0), LATER)
    assert (report.kept_changed, report.files_purged) == (1, 0), report
    assert volume.store.get(fid) is not None
    assert volume.layout.vf_path(volume.key.user_id, fid).exists()
