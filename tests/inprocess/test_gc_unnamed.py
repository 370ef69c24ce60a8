"""gc and the records no document names (attack round 80c (1)), in-process: what must go, and what must
never go.  The server's Record documents at file or version ids of its own were written into her ``.vf``
files by each pull (vault/files/placements.py ``append_arrived``) and kept for good; gc now removes a
``.vf`` nothing names and punches a named file's unnamed records, each once its ``.vf`` was left
unchanged for the grace while (a version's records arrive before its documents)."""

from __future__ import annotations

import os
import secrets
import time

from fusevault.store import places as places_table
from fusevault.store.places import PlaceRow
from fusevault.vault.files.placements import append_arrived
from fusevault.vault.model.retention import Policy
from fusevault.vault.services import gc
from fusevault.vault.services.gc import allocated
from inprocess.conftest import FILE, ME, ROOT, make, read_all

RECORD = 64 << 10
DAY_AGO = time.time() - 2 * gc.UNNAMED_GRACE_SECONDS


def _plant(volume, fid: str, vid: str, idx: int = -1) -> tuple[int, int]:
    """A peer's record of ``fid`` (noise) placed here as the pull places it; its (offset, end)."""
    owner = volume.key.user_id
    ((offset, length),) = append_arrived(volume.layout, owner, fid, [os.urandom(RECORD)])
    with volume.store.transaction() as db:
        places_table.insert_arrived(db, [PlaceRow(fid, vid, idx, owner, offset, length, 1, "00" * 32)])
    volume.layout.places.note_arrival([fid])
    return offset, offset + length


def _age(volume, fid: str) -> None:
    """Her ``.vf`` of ``fid`` left unchanged past the grace while."""
    os.utime(volume.layout.vf_path(volume.key.user_id, fid), (DAY_AGO, DAY_AGO))


def _on_disk(volume, fid: str, start: int, end: int) -> int:
    fd = os.open(volume.layout.vf_path(volume.key.user_id, fid), os.O_RDONLY)
    try:
        return allocated(fd, start, end)
    finally:
        os.close(fd)


async def test_a_vf_nothing_names_goes_after_the_grace_while_never_before(fs):
    volume = fs.volume
    fid = secrets.token_hex(16)
    _plant(volume, fid, secrets.token_hex(16))
    vf = volume.layout.vf_path(volume.key.user_id, fid)
    report = await gc.collect(volume, Policy(), time.time_ns())
    assert vf.exists() and report.unnamed_removed == 0, "records that may be a version's on its way in"
    _age(volume, fid)
    dry = await gc.collect(volume, Policy(), time.time_ns(), dry_run=True)
    assert vf.exists() and dry.unnamed_removed == 1 and dry.bytes_freed >= RECORD
    report = await gc.collect(volume, Policy(), time.time_ns())
    assert not vf.exists() and report.unnamed_removed == 1 and report.bytes_freed >= RECORD
    assert volume.layout.places.arrived_of(fid) == {}
    assert fid in volume.layout.places.punched_files(), "fetched again should a version name them later"


async def test_her_trashed_file_and_her_new_open_file_are_never_unnamed(fs):
    volume = fs.volume
    gone = await make(fs.ops, b"gone.txt", b"in the trash")
    gone_fid = volume.resolve(b"gone.txt").fid
    await fs.ops.unlink(ROOT, b"gone.txt", ME)
    await fs.ops.forget([(gone.st_ino, 1)])
    await volume.flush_pending()
    info, entry = await fs.ops.create(ROOT, b"new.txt", FILE, os.O_RDWR | os.O_CREAT, ME)
    assert await fs.ops.write(info.fh, 0, b"being written") == len(b"being written")
    new_fid = volume.resolve(b"new.txt").fid
    held = [fid for fid in (gone_fid, new_fid) if volume.layout.vf_path(volume.key.user_id, fid).exists()]
    assert gone_fid in held
    for fid in held:
        _age(volume, fid)
    report = await gc.collect(volume, Policy(), time.time_ns())
    assert report.unnamed_removed == 0
    assert all(volume.layout.vf_path(volume.key.user_id, fid).exists() for fid in held)
    await fs.ops.release(info.fh)
    assert await read_all(fs.ops, entry.st_ino) == b"being written"


async def test_records_no_version_of_her_file_names_are_punched_after_the_grace_while(fs):
    volume = fs.volume
    entry = await make(fs.ops, b"one.txt", b"first")
    node = volume.resolve(b"one.txt")
    planted = _plant(volume, node.fid, secrets.token_hex(16))
    named = _plant(volume, node.fid, node.head, 999)  # at her version's id: a version document names it
    on_disk = _on_disk(volume, node.fid, *planted), _on_disk(volume, node.fid, *named)
    assert on_disk[0] > RECORD // 2
    await gc.collect(volume, Policy(), time.time_ns())
    assert _on_disk(volume, node.fid, *planted) == on_disk[0], "within the grace while: kept"
    _age(volume, node.fid)
    report = await gc.collect(volume, Policy(), time.time_ns())
    assert report.versions_dropped == 0 and report.bytes_freed >= on_disk[0]
    assert _on_disk(volume, node.fid, *planted) == 0
    assert _on_disk(volume, node.fid, *named) == on_disk[1]
    arrived = volume.layout.places.arrived_of(node.fid)
    assert set(arrived) == {(node.head, 999)}
    assert await read_all(fs.ops, entry.st_ino) == b"first"
