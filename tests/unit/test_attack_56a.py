"""Attack round 56a: round 55's fixes of the shared mount's host calls (55c (1) queued clean-ups,
55c (4) ``remove_if``), of ``Links._save`` (55d (4)) and of the relay's index (55d (3)).

Hole (1), high (root's rights lent: a write into another user's file).  Attacker: a local user of
the shared mount with a FUSE file system of his own (he may mount one; round 51t's scene) as an
export destination.  Steps: he exports a file of his vault into a folder of his FUSE; his FUSE holds
the first ``pwrite`` of ``exporting._write_all`` (the in-flight call has file A, the export's
temporary file, in hand); he hangs up.  ``_write``'s ``finally`` runs ``threads.clean_up(_close, fd)``:
his second thread is free, so root's descriptor number N is closed at once while his first thread is
still inside ``_write_all`` on N (``HostThreads.clean_up``: "left to its thread if it started" for
the work, but the clean-up of what that work uses runs beside it).  Root's mount opens another file
(another user's export temporary file, her import source, a store) and gets the lowest free number,
N.  His FUSE then answers the held write short (1 byte, FUSE may); ``_write_all``'s loop writes the
rest with ``os.pwrite(N, ...)``: into the other file, with whatever bytes his vault file holds at the
offset he chose.  pwrite checks only the descriptor's mode, not the thread's fsuid (``as_user``
does not help).  Seen: her file holds his bytes.  Expected: a descriptor is closed only once no call
of his that uses it is still running (or the abandoned loop never touches the number again).
Cause: fusevault/vault/services/exporting.py:312 (``clean_up(_close, fd)`` while the given-up
``threads.run(out.as_user, _write_all, fd, ...)`` of line 307 still runs in its thread) with
``_write_all``'s loop (exporting.py:323) reusing the number; host_access/threads.py ``clean_up`` has
no notion of work still running on what it cleans up. The importer's reads (``_chunks``,
``_hash_next``) step one piece per thread call, so a given-up read ends with its in-flight syscall
(which holds the old file); ``_finish``'s ``fchmod``/``utime`` after a held ``ftruncate`` reach the
number as his fsuid with no capability (EPERM on another user's file): read, not run. Suggested fix:
tie the descriptor to the work: close it in the thread of the work itself when that work was given
up (as ``Destination`` does for its folders with ``_in_use``/``_busy``: a close deferred to the last
call still under way), or have every call on it hold a use count the clean-up waits for (queued, not
run beside it).
Test:
``test_56a_1_a_close_beside_his_given_up_write_lets_it_write_into_the_file_that_takes_its_number``;
control (held): ``test_control_56a_1_a_short_write_answered_in_time_lands_in_his_file_only`` (the
same FUSE, the export not given up: every byte in his exported file, hers untouched).  Not run on a
real mount with a FUSE file system answering short (the kernel frees the number at close(2) before
FUSE's flush, so the flush waiting on his held write does not keep it).

Read, not run (held as far as read): 55c (1)'s queue: a clean-up runs once (``_CleanUp.take`` under
a lock, popped once); a queued close holds its descriptor open until it runs, so its number cannot be
reused before; past 32 queued only ``run`` refuses, and his requests are at most 16 at once
(fs/control.py ``MAX_PER_UID``), so the descriptors held behind his held threads stay bounded; a queue
behind his own hung FUSE is the open list's limit.  55c (4)'s ``remove_if``: the private name is at most
224 bytes, ``copy_name`` at 255; a save landing at any step is put back (or beside), the folder is held
by descriptor (a rename of it changes nothing); a crash between the move and the put-back leaves the
file aside (ignored by the walk): not tried.  55d (3)'s ``_newest_live``: ``created_at`` and
``deleted`` are the relay's own, block ids random.  Not tried: 55d (4) ``Links._save`` over a record
with two devices (a stale kept copy's ``seq``/``collected`` saved over a newer honest record needs the
store to refuse it on one device only; before 55d that save was a Conflict after the publish anyway).
"""

from __future__ import annotations

import os
import threading
import types
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from fusevault.host_access import Direct
from fusevault.host_access.threads import HostThreads
from fusevault.host_access.way import Step
from fusevault.vault.services import exporting


def test_56a_1_a_close_beside_his_given_up_write_lets_it_write_into_the_file_that_takes_its_number(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "his-fuse-folder"
    dest.mkdir()
    hers = tmp_path / "her-file"
    hers.write_bytes(b"her own data, nobody else's")
    payload = b"X" + b"HIS BYTES" * 3
    real_pwrite = os.pwrite
    held, release, seen = threading.Event(), threading.Event(), {}

    def his_fuse_pwrite(fd: int, data: bytes, offset: int) -> int:
        # His FUSE: the first write of the export is held (the kernel has the temporary file in
        # hand: its first byte is written to it), then answered short.  Every other call is real.
        if "fd" in seen:
            return real_pwrite(fd, data, offset)
        seen["fd"] = fd
        seen["file"] = _identity(fd)
        real_pwrite(fd, bytes(data[:1]), offset)
        held.set()
        release.wait(10)
        return 1

    async def one_piece(volume: object, node: object) -> AsyncIterator[tuple[int, bytes]]:
        yield 0, payload

    monkeypatch.setattr(os, "pwrite", his_fuse_pwrite)
    monkeypatch.setattr(exporting, "read_data", one_piece)
    node = types.SimpleNamespace(size=len(payload), mode=0o100600, atime=0, mtime=0)
    kept: list[int] = []

    async def main() -> None:
        threads = HostThreads()
        out = exporting.Destination(Direct(), dest)
        try:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(exporting._write, None, node, out, threads, Step(None, "file"), False)
                    await trio.to_thread.run_sync(held.wait)
                    scope.cancel()  # his hangup: the export is given up, its clean-ups run
        finally:
            out.close()
        # Root's mount opens another user's file meanwhile: the lowest free number, his if closed.
        while True:
            kept.append(fd := os.open(hers, os.O_RDWR))
            if fd >= seen["fd"]:
                break
        # Fixed: his number is still his file's (the close is left to the write under way).
        assert _identity(seen["fd"]) == seen["file"]
        release.set()  # his FUSE answers the held write, short
        with trio.fail_after(10):
            while threads.limiter.borrowed_tokens:
                await trio.sleep(0.01)
        # ... and closed once the given-up write ended, in its thread: nothing kept.
        assert seen["file"] not in {_identity(int(each)) for each in os.listdir("/proc/self/fd")}

    try:
        trio.run(main)
    finally:
        release.set()
        for fd in kept:
            os.close(fd)
    assert hers.read_bytes() == b"her own data, nobody else's"


def test_control_56a_1_a_short_write_answered_in_time_lands_in_his_file_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "his-fuse-folder"
    dest.mkdir()
    hers = tmp_path / "her-file"
    hers.write_bytes(b"her own data, nobody else's")
    payload = b"X" + b"HIS BYTES" * 3
    real_pwrite, seen = os.pwrite, {}

    def his_fuse_pwrite(fd: int, data: bytes, offset: int) -> int:
        if "fd" in seen:
            return real_pwrite(fd, data, offset)
        seen["fd"] = fd
        return real_pwrite(fd, bytes(data[:1]), offset)  # short, at once

    async def one_piece(volume: object, node: object) -> AsyncIterator[tuple[int, bytes]]:
        yield 0, payload

    monkeypatch.setattr(os, "pwrite", his_fuse_pwrite)
    monkeypatch.setattr(exporting, "read_data", one_piece)
    node = types.SimpleNamespace(size=len(payload), mode=0o100600, atime=0, mtime=0)

    async def main() -> None:
        out = exporting.Destination(Direct(), dest)
        try:
            written = await exporting._write(None, node, out, HostThreads(), Step(None, "file"), False)
            assert written == len(payload)
        finally:
            out.close()

    fd = os.open(hers, os.O_RDWR)  # open beside the export all along
    try:
        trio.run(main)
    finally:
        os.close(fd)
    assert (dest / "file").read_bytes() == payload
    assert hers.read_bytes() == b"her own data, nobody else's"



def _identity(fd: int) -> tuple[int, int] | None:
    """(device, inode) of the file ``fd`` is open on, None if it is closed."""
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino
