"""imports/watcher.py ``walk``: the watched folder is walked as its user, never through a link and
never into another file system (attack round 53b (4), (5): a link to a big tree, or to the mount
itself, in his watched folder froze or deadlocked a shared mount whose inotify set-up followed them)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from fusevault.host_access import Direct
from fusevault.imports.watcher import walk, walked


class _Mounted(Direct):
    """``mounted`` (a folder's name) shows another device, as a file system mounted there does."""

    def __init__(self, mounted: str) -> None:
        super().__init__()
        self.mounted = mounted
        self.scanned: list[str] = []

    def scan(self, path, *, dir_fd=None):
        self.scanned.append(os.readlink(f"/proc/self/fd/{dir_fd}") if path == "." else path)
        entries = super().scan(path, dir_fd=dir_fd)
        return [(name, _other_device(st) if name == self.mounted else st) for name, st in entries]


def _other_device(st: os.stat_result) -> os.stat_result:
    return os.stat_result((*st[:2], st.st_dev + 1, *st[3:10]),
                          {"st_atime_ns": st.st_atime_ns, "st_mtime_ns": st.st_mtime_ns,
                           "st_ctime_ns": st.st_ctime_ns})


def test_a_walk_follows_no_link_and_enters_no_other_file_system(tmp_path: Path) -> None:
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "a.txt").write_text("a")
    (tmp_path / "mnt").mkdir()
    (tmp_path / "mnt" / "theirs.txt").write_text("not walked")
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "b.txt").write_text("b")
    (tmp_path / "link").symlink_to(tmp_path / "big")
    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        host = _Mounted("mnt")
        found = walk(host, root)
    finally:
        os.close(root)
    assert sorted(found) == ["big/b.txt", "kept/a.txt"]  # not mnt/..., nor link/...
    assert not any(p.endswith("mnt") or p.endswith("link") for p in host.scanned)


class _Failing(Direct):
    """A scan of ``failing`` fails with ``code`` (EIO: his helper gone and started again)."""

    def __init__(self, failing: str, code: int) -> None:
        super().__init__()
        self.failing, self.code = failing, code

    def scan(self, path, *, dir_fd=None):
        if path == "." and os.readlink(f"/proc/self/fd/{dir_fd}").endswith(self.failing):
            raise OSError(self.code, os.strerror(self.code))
        return super().scan(path, dir_fd=dir_fd)


def _walked(tmp_path: Path, code: int):
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("b")
    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        known = walk(Direct(), root)
        return known, walked(_Failing("sub", code), root, known)
    finally:
        os.close(root)


def test_a_walk_cut_short_by_his_helper_concludes_nothing(tmp_path: Path) -> None:
    """Review of round 53b's fix: an EIO from his helper gave a partial walk, taken as everything
    under the folder gone (the files waiting forgotten, their settling started again)."""
    with pytest.raises(OSError):
        _walked(tmp_path, errno.EIO)


def test_a_folder_he_may_not_read_is_passed_over(tmp_path: Path) -> None:
    known, (found, gone, changed) = _walked(tmp_path, errno.EACCES)
    assert sorted(known) == ["a.txt", "sub/b.txt"]
    assert sorted(found) == ["a.txt"] and gone == {"sub/b.txt"} and changed == {}
