"""A receive's partial file is one it made, or an earlier run of hers made: never another's file
(tests/mount/test_trust_attack_round24b.py, hole 6, goes through the keyed name; these check the
descriptor's own checks, which hold even where the name were known)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fusevault.errors import AlreadyExists
from fusevault.transfer.receive import _open_partial


def test_a_new_partial_file_is_made_private(tmp_path: Path) -> None:
    fd = _open_partial(tmp_path / ".f.fvpart-x")
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    assert st.st_nlink == 1 and not st.st_mode & 0o077


def test_an_earlier_runs_partial_file_is_taken_again(tmp_path: Path) -> None:
    os.close(_open_partial(tmp_path / ".f.fvpart-x"))
    os.write(fd := _open_partial(tmp_path / ".f.fvpart-x"), b"more")
    os.close(fd)
    assert (tmp_path / ".f.fvpart-x").read_bytes() == b"more"


def _planted_by_another_user(path: Path) -> None:
    path.write_bytes(b"")
    os.chown(path, 4242, 4242)
    path.chmod(0o600)


def _with_a_second_link(path: Path) -> None:
    os.close(_open_partial(path))
    os.link(path, path.with_name("kept"))


def _readable_by_others(path: Path) -> None:
    os.close(_open_partial(path))
    path.chmod(0o644)


def _a_symlink(path: Path) -> None:
    os.symlink(path.with_name("elsewhere"), path)


def _a_fifo(path: Path) -> None:
    os.mkfifo(path, 0o600)


@pytest.mark.parametrize("plant", [_planted_by_another_user, _with_a_second_link, _readable_by_others,
                                   _a_symlink, _a_fifo])
def test_a_partial_file_not_made_by_her_receive_is_refused(tmp_path: Path, plant) -> None:
    path = tmp_path / ".f.fvpart-x"
    plant(path)
    with pytest.raises(AlreadyExists, match="no partial file of yours"):
        _open_partial(path)
    assert not (tmp_path / "elsewhere").exists()  # nothing made through a link
