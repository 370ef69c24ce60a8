"""``link get`` (links/content.py ``write_local``) reaches every folder from the destination's
descriptor, O_NOFOLLOW, and makes a link's symlink only where it stays inside its folder
(tests/mount/test_trust_attack_round24b.py, hole 5)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from fusevault.crypto import aead
from fusevault.encoding import b64e
from fusevault.errors import CorruptData
from fusevault.links import capability, content


class _Blocks:
    def __init__(self, dek: bytes, files: dict[int, bytes]) -> None:
        self.sealed = {f"b{i}": capability.seal_block(dek, "item", i, 0, data) for i, data in files.items()}

    def block(self, block_id: str, read_key: bytes) -> bytes:
        return self.sealed[block_id]


def _link(target: str) -> dict:
    return {"path": target, "type": "symlink", "mode": 0o777, "mtime_ns": 0}


def _get(dek: bytes, entries: list[dict], dest: Path, files: dict[int, bytes] | None = None,
         overwrite: bool = False) -> Path:
    manifest = {"name": "photos", "key": b64e(dek), "entries": [
        {"path": "photos", "type": "dir", "mode": 0o755, "mtime_ns": 0}, *entries]}
    return content.write_local(_Blocks(dek, files or {}), b"r" * 32, "item", manifest, dest,  # type: ignore[arg-type]
                               overwrite=overwrite)


def test_a_symlink_out_of_its_folder_is_not_made(tmp_path: Path) -> None:
    _get(aead.new_key(), [{**_link("photos/l"), "target": "../.ssh"},
                          {**_link("photos/in"), "target": "sub/x"},
                          {"path": "photos/sub", "type": "dir", "mode": 0o755, "mtime_ns": 0},
                          {"path": "photos/sub/x", "type": "dir", "mode": 0o755, "mtime_ns": 0}], tmp_path)
    assert not os.path.lexists(tmp_path / "photos" / "l")
    assert os.readlink(tmp_path / "photos" / "in") == "sub/x"


def test_a_chain_of_symlinks_leading_out_is_not_kept(tmp_path: Path) -> None:
    # Each inside by its text; resolved, "a" climbs out through "c" (which is "photos" itself).
    _get(aead.new_key(), [{**_link("photos/c"), "target": "."},
                          {**_link("photos/a"), "target": "c/../x"}], tmp_path)
    (tmp_path / "x").mkdir()
    assert os.readlink(tmp_path / "photos" / "c") == "."
    assert not os.path.lexists(tmp_path / "photos" / "a")


def test_overwrite_never_writes_through_a_symlink_on_disk(tmp_path: Path) -> None:
    (tmp_path / ".ssh").mkdir()
    (tmp_path / "photos").mkdir()
    os.symlink("../.ssh", tmp_path / "photos" / "l")  # whoever made it: an old version, or she
    data = b"the owner's key\n"
    dek = aead.new_key()
    entry = {"path": "photos/l/authorized_keys", "type": "file", "mode": 0o600, "mtime_ns": 0,
             "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "blocks": ["b1"]}
    with pytest.raises(CorruptData, match="not a folder here"):
        _get(dek, [entry], tmp_path, {1: data}, overwrite=True)
    assert os.listdir(tmp_path / ".ssh") == []


def test_overwrite_replaces_a_symlink_at_a_files_name_not_what_it_points_to(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "hers.txt").write_text("hers\n")
    os.symlink("../hers.txt", tmp_path / "photos" / "f")
    data = b"the link's file\n"
    dek = aead.new_key()
    entry = {"path": "photos/f", "type": "file", "mode": 0o644, "mtime_ns": 0,
             "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "blocks": ["b1"]}
    _get(dek, [entry], tmp_path, {1: data}, overwrite=True)
    assert (tmp_path / "hers.txt").read_text() == "hers\n"
    assert not (tmp_path / "photos" / "f").is_symlink()
    assert (tmp_path / "photos" / "f").read_bytes() == data
