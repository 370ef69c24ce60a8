"""vault/model/sharing.py: removing key files where a writer of the vault folder planted other things."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from fusevault.errors import CorruptData
from fusevault.vault.format import layout as layouts
from fusevault.vault.model import sharing


@pytest.fixture
def layout(tmp_path: Path) -> layouts.Layout:
    return layouts.create(tmp_path / "vault", {"kind": "local"})


def test_a_folder_planted_at_a_key_name_is_no_key(layout: layouts.Layout) -> None:
    path = sharing.user_key_path(layout, uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex)
    path.mkdir(parents=True, mode=0o700)
    with pytest.raises(CorruptData, match="no key file"):
        sharing.remove_key(path)
    sharing.discard_key(path)  # one of many: said and left
    assert path.is_dir()


def test_a_members_removal_takes_his_keys_past_a_folder_planted_at_one_and_keeps_the_trace(
        layout: layouts.Layout) -> None:
    """``group member remove``: a folder at bob's key name of one file does not stop the removal of his
    keys of the others (before: IsADirectoryError, and the removal refused), and each file's key folder
    stays, the trace its owner's re-key follows (share_ops ``_moved_out``)."""
    group, bob = uuid.uuid4().hex, uuid.uuid4().hex
    fids = [uuid.uuid4().hex for _ in range(3)]
    for fid in fids[1:]:
        sharing.write_key(sharing.group_key_path(layout, group, fid, bob), 0, b"k" * 32)
    planted = sharing.group_key_path(layout, group, fids[0], bob)
    planted.mkdir(parents=True, mode=0o700)
    sharing.drop_group_keys(layout, group, bob)
    assert planted.is_dir()
    for fid in fids[1:]:
        assert not sharing.group_key_path(layout, group, fid, bob).exists()
        assert sharing.group_keys_dir(layout, group, fid).is_dir()
