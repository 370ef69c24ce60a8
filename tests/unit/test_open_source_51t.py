"""importer.py ``open_source``: a source root may not ``fstat`` (attack round 51t, lead 2).

In a shared mount the user's helper opens the source and hands root's process the descriptor; on a
FUSE file system of the user's own, mounted without ``allow_other``, root's ``fstat`` of it fails
(EACCES).  The descriptor was then never closed: one more of root's descriptors at every retry."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from fusevault.host_access import Direct
from fusevault.imports import importer


def test_a_source_root_may_not_fstat_is_closed(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "in.txt").write_text("hers")
    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    opened: list[int] = []
    real_open, real_fstat = os.open, os.fstat

    def track(*args, **kwargs) -> int:
        fd = real_open(*args, **kwargs)
        opened.append(fd)
        return fd

    def refuse(fd: int) -> os.stat_result:
        if fd in opened:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_fstat(fd)

    monkeypatch.setattr(os, "open", track)
    monkeypatch.setattr(os, "fstat", refuse)
    try:
        with pytest.raises(PermissionError):
            importer.open_source(Direct(), root, "in.txt")
    finally:
        monkeypatch.undo()
        os.close(root)
    assert opened, "the scene: the source was opened"
    for fd in opened:
        with pytest.raises(OSError) as closed:
            os.fstat(fd)
        assert closed.value.errno == errno.EBADF, f"descriptor {fd} left open"
