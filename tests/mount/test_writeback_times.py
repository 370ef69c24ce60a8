"""The kernel's writeback cache owns a regular file's size and times while it
caches the file, and sends its times by SETATTR when it writes back: the
version committed must carry the time the writer's ``stat`` showed."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from conftest import mounted

libc = ctypes.CDLL(None, use_errno=True)


def test_the_modification_time_a_writer_saw_is_the_one_saved(vault: Path, tmp_path: Path) -> None:
    # syncfs writes the pages and the times back; what is written next in
    # the same tick of the kernel's clock leaves its time as it is (no new
    # SETATTR), while the pages still go back at close.
    shown = {}
    with mounted(vault, tmp_path / "mnt") as mnt:
        for i in range(30):
            fd = os.open(mnt / f"f{i}", os.O_CREAT | os.O_WRONLY)
            os.write(fd, os.urandom(100_000))
            assert libc.syncfs(fd) == 0, ctypes.get_errno()
            os.write(fd, b"more")
            os.close(fd)
            shown[f"f{i}"] = os.stat(mnt / f"f{i}").st_mtime_ns
    with mounted(vault, tmp_path / "mnt") as mnt:  # the kernel knows nothing yet: what was saved
        saved = {name: os.stat(mnt / name).st_mtime_ns for name in shown}
    assert saved == shown
