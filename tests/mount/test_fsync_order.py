"""fsync of a file: its records reach the disk before the store's log names them.

A version is records appended to the file's ``.vf`` and documents committed to
the store's write-ahead log.  ``kill -9`` keeps both (the page cache survives
the process); a power cut keeps only what was flushed.  If the log's commit
were written (and so could reach the disk through the kernel's write-back)
before the ``.vf`` was flushed, a power cut in between could leave a durable
document naming records that never reached the disk: the file, fsynced
before, would read as EIO.  So at fsync the server flushes the ``.vf`` first,
then commits, then flushes the log.  The order is watched with strace on the
real server (the system calls themselves, no timing).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import mounted, server_pids

pytestmark = pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")

SYNCS = ("fsync(", "fdatasync(")
WRITES = ("pwrite64(", "pwritev(", "pwritev2(", "write(")


def _traced(pid: int, out: Path) -> subprocess.Popen:
    """strace on every thread of ``pid``, once it is attached to all of them."""
    tracer = subprocess.Popen(["strace", "-f", "-qq", "-y", "-s", "0", "-o", str(out), "-p", str(pid),
                               "-e", "trace=fsync,fdatasync,pwrite64,pwritev,pwritev2,write"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        tasks = os.listdir(f"/proc/{pid}/task")
        if all(_tracer_of(pid, task) for task in tasks):
            return tracer
        assert time.monotonic() < deadline and tracer.poll() is None, "strace did not attach"
        time.sleep(0.05)


def _tracer_of(pid: int, task: str) -> int:
    for line in Path(f"/proc/{pid}/task/{task}/status").read_text().splitlines():
        if line.startswith("TracerPid:"):
            return int(line.split()[1])
    return 0


def _events(out: Path) -> list[tuple[str, str]]:
    """(what, which file) of each traced call, in order: "sync"/"write", "vf"/"wal"."""
    events = []
    for line in out.read_text().splitlines():
        call = line.split(None, 1)[1] if " " in line else line
        what = "sync" if call.startswith(SYNCS) else "write" if call.startswith(WRITES) else None
        if what is None or "resumed>" in call:
            continue
        target = call[call.find("<") + 1: call.find(">")]
        which = "vf" if target.endswith(".vf") else "wal" if target.endswith("store.sqlite-wal") else None
        if which is not None:
            events.append((what, which))
    return events


def _check_order(events: list[tuple[str, str]]) -> None:
    first_vf = events.index(("write", "vf"))  # the version's records
    commit = next(i for i, e in enumerate(events) if i > first_vf and e == ("write", "wal"))
    last_vf = max(i for i, e in enumerate(events[:commit]) if e == ("write", "vf"))
    assert ("sync", "vf") in events[last_vf:commit], (
        f"the store's log was written before the .vf was flushed: {events}")
    last_wal = max(i for i, e in enumerate(events) if e == ("write", "wal"))
    assert ("sync", "wal") in events[last_wal:], f"the store's log was not flushed last: {events}"


@pytest.mark.parametrize("closed_first", [False, True], ids=["written", "closed-then-fsynced"])
def test_fsync_flushes_the_records_before_the_store_commits_the_documents_naming_them(
        mnt: Path, tmp_path: Path, closed_first: bool) -> None:
    path = mnt / "big.bin"
    data = bytearray(os.urandom(1 << 20))
    path.write_bytes(data)  # the first version (at close)
    (pid,) = server_pids(mnt)
    out = tmp_path / "strace.txt"
    fd = os.open(path, os.O_RDWR)
    tracer = None
    try:
        if closed_first:  # a version committed at close, unflushed: fsync of a new handle flushes it
            os.pwrite(fd, b"x" * 4096, 300 * 1024)
            os.close(fd)
            fd = os.open(path, os.O_RDWR)
            tracer = _traced(pid, out)
        else:
            tracer = _traced(pid, out)
            os.pwrite(fd, b"x" * 4096, 300 * 1024)
        os.fsync(fd)
    finally:
        os.close(fd)
        if tracer is not None:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(30)
    data[300 * 1024: 304 * 1024] = b"x" * 4096
    events = _events(out)
    if closed_first:
        # Nothing new to commit: the .vf flushed before the log (the close's commit is in it).
        assert ("sync", "vf") in events and ("sync", "wal") in events, events
        assert events.index(("sync", "vf")) < max(i for i, e in enumerate(events) if e == ("sync", "wal"))
    else:
        _check_order(events)
    assert path.read_bytes() == bytes(data)


def test_unmount_flushes_closed_files_before_the_stores_log(vault: Path, tmp_path: Path) -> None:
    # A close commits without flushing its records; unmount flushes the store's
    # log, which names them: the records of every closed file go to disk first
    # (before, unmount flushed the log alone, and a power cut after it could
    # leave durable documents naming records the page cache never wrote).
    mnt = tmp_path / "mnt"
    out = tmp_path / "strace.txt"
    with mounted(vault, mnt):
        (mnt / "closed.bin").write_bytes(os.urandom(40_000))
        (pid,) = server_pids(mnt)
        tracer = _traced(pid, out)
    try:
        tracer.wait(60)
    finally:
        if tracer.poll() is None:
            tracer.kill()
    events = _events(out)
    assert ("sync", "vf") in events, events
    assert events.index(("sync", "vf")) < max(i for i, e in enumerate(events) if e == ("sync", "wal")), events
    with mounted(vault, mnt):
        assert len((mnt / "closed.bin").read_bytes()) == 40_000
