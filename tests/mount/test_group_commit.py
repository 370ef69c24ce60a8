"""Group commit: a new file's document waits for its first commit, never past close.

A file made by create(2) is committed together with its first version (and
a fchmod/futimens made while it is open) when it is closed, flushed or
fsynced: one store transaction instead of two or three.  What close
acknowledged must survive ``kill -9``; what was never closed may be lost.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import force_unmount, mounted, server_pids

# Files made and closed in a tight loop, the way tar and cp make them: empty
# ones (nothing but the create to commit), written ones, ones given a mode
# and times while open, and folders; each logged only once close returned.
WRITER = textwrap.dedent("""
    import os, sys
    mnt, log = sys.argv[1], sys.argv[2]
    i = 0
    with open(log, "a") as journal:
        while True:
            folder = f"{mnt}/d{i // 50:03d}"
            if i % 50 == 0:
                os.mkdir(folder)
            name = f"{folder}/f{i:05d}"
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            if i % 4:
                os.write(fd, (f"{i}:" * (1 + i % 700)).encode())
            if i % 3 == 0:
                os.fchmod(fd, 0o600)
                os.utime(fd, ns=(i * 10**9, i * 10**9))
            os.close(fd)
            journal.write(f"{name}\\n"); journal.flush()
            i += 1
""")


def _expected(i: int) -> bytes:
    return (f"{i}:" * (1 + i % 700)).encode() if i % 4 else b""


def test_kill_9_right_after_many_creates_and_closes_keeps_every_closed_file(vault: Path,
                                                                           tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    journal = tmp_path / "journal"
    with mounted(vault, mnt):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(mnt), str(journal)],
                                  stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not journal.exists() or len(journal.read_text().splitlines()) < 400:
            assert time.monotonic() < deadline and writer.poll() is None
            time.sleep(0.01)
        for pid in server_pids(mnt):  # mid-loop: the writer is creating the next files
            os.kill(pid, 9)
        force_unmount(mnt)
        writer.wait(30)
    written = journal.read_text().splitlines()
    assert len(written) >= 400
    with mounted(vault, mnt):
        for name in written:
            i = int(Path(name).name[1:])
            path = Path(name)
            assert path.read_bytes() == _expected(i), name
            info = path.stat()
            if i % 3 == 0:
                assert stat.S_IMODE(info.st_mode) == 0o600, name
                assert info.st_mtime_ns == i * 10**9, name
            else:
                assert stat.S_IMODE(info.st_mode) == 0o644, name
        # A file being made when the server died: gone or whole, never a broken mount.
        assert sorted(os.listdir(mnt))


def test_a_new_file_is_seen_while_open_and_saved_by_close_and_unmount(vault: Path, tmp_path: Path) -> None:
    # Not yet committed while open, but there for everyone on this mount; saved
    # by close even with nothing written (only the create to commit), and by
    # unmount when still open then.
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        fd = os.open(mnt / "empty", os.O_WRONLY | os.O_CREAT, 0o640)
        try:
            assert "empty" in os.listdir(mnt)
            os.rename(mnt / "empty", mnt / "renamed")  # commits it early: still one file
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        (mnt / "touched").touch()
        os.mkdir(mnt / "dir")
    with mounted(vault, mnt):
        assert sorted(os.listdir(mnt)) == ["dir", "renamed", "touched"]
        assert stat.S_IMODE(os.stat(mnt / "renamed").st_mode) == 0o600
        assert (mnt / "touched").read_bytes() == b""
