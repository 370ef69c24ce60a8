"""imports/source_paths.py ``remove_if``: only the file imported is removed, whatever lands at its name.

Attack round 55c (4) (the scene: tests/unit/test_attack_55c.py): looked at, then unlinked by name, an
editor's save landing between the two was deleted, never imported.  Here the saves landing at each
step of the removal, and a helper gone halfway."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from fusevault.host_access import Direct
from fusevault.imports import source_paths
from fusevault.imports.import_records import Stamp


def _save(folder: Path, name: str, text: str) -> None:
    """An editor's save: a new file written beside, renamed over the name."""
    (folder / ".save.tmp").write_text(text)
    os.rename(folder / ".save.tmp", folder / name)


class _Steps(Direct):
    """Runs ``at[(op, private name in it?)]`` right after that step of the removal (once each)."""

    def __init__(self, at: dict[tuple[str, bool], Callable[[], None]]) -> None:
        super().__init__()
        self.at, self.ops = dict(at), []

    def call(self, op, *args, fd=None):
        result = super().call(op, *args, fd=fd)
        self.ops.append(op)
        step = self.at.pop((op, any(".fvpart-remove-" in str(arg) for arg in args)), None)
        if step is not None:
            step()
        return result


def _remove(tmp_path: Path, host: Direct, imported: Stamp) -> bool:
    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return source_paths.remove_if(host, root, "notes.txt", lambda st: Stamp.of(st) == imported)
    finally:
        os.close(root)


@pytest.fixture
def imported(tmp_path: Path) -> Stamp:
    (tmp_path / "notes.txt").write_text("the version imported")
    return Stamp.of(os.lstat(tmp_path / "notes.txt"))


def test_the_file_imported_is_removed_and_nothing_is_left(tmp_path: Path, imported: Stamp) -> None:
    assert _remove(tmp_path, _Steps({}), imported) is True
    assert os.listdir(tmp_path) == []


def test_a_file_changed_before_the_look_is_not_moved(tmp_path: Path, imported: Stamp) -> None:
    _save(tmp_path, "notes.txt", "changed")
    host = _Steps({})
    assert _remove(tmp_path, host, imported) is False
    assert host.ops == ["lstat"] and os.listdir(tmp_path) == ["notes.txt"]


def test_a_save_landing_while_the_imported_file_is_aside_is_kept(tmp_path: Path, imported: Stamp) -> None:
    host = _Steps({("rename", True): lambda: _save(tmp_path, "notes.txt", "saved meanwhile")})
    assert _remove(tmp_path, host, imported) is True  # the imported one, from its private name
    assert os.listdir(tmp_path) == ["notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "saved meanwhile"


def test_two_saves_around_the_move_are_both_kept(tmp_path: Path, imported: Stamp) -> None:
    """The first save is moved aside (not the file imported: put back); the second took the name
    meanwhile: the first is kept beside it under a copy's name, never removed, never hidden."""
    host = _Steps({("lstat", False): lambda: _save(tmp_path, "notes.txt", "first save"),
                   ("rename", True): lambda: _save(tmp_path, "notes.txt", "second save")})
    assert _remove(tmp_path, host, imported) is False
    names = sorted(os.listdir(tmp_path))
    assert len(names) == 2 and "notes.txt" in names, names
    [kept] = [name for name in names if name != "notes.txt"]
    assert kept.startswith("notes (conflict kept") and kept.endswith(".txt")
    assert (tmp_path / "notes.txt").read_text() == "second save"
    assert (tmp_path / kept).read_text() == "first save"


class _GoneAfterTheMove(Direct):
    """His helper gone right after the move: its look at the private name fails."""

    def lstat(self, path, *, dir_fd=None):
        if ".fvpart-remove-" in path:
            raise OSError(errno.EIO, "the helper is gone")
        return super().lstat(path, dir_fd=dir_fd)


def test_a_failure_after_the_move_puts_the_file_back(tmp_path: Path, imported: Stamp) -> None:
    with pytest.raises(OSError):
        _remove(tmp_path, _GoneAfterTheMove(), imported)
    assert os.listdir(tmp_path) == ["notes.txt"]
    assert (tmp_path / "notes.txt").read_text() == "the version imported"
