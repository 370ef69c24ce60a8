"""``link get`` into the root of a fusevault mount (links/content.py ``write_local``,
``away_from_root_views``): a top named, or looking like, a view's name arrives as ``NAME (2)``, as a
receive's does (attack round 55d (1)); the real-mount scene is tests/services/test_attack_55d.py."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from fusevault import mounts
from fusevault.crypto import aead
from fusevault.encoding import b64e
from fusevault.links import capability, content


class _Blocks:
    def __init__(self, dek: bytes, files: dict[int, bytes]) -> None:
        self.sealed = {f"b{i}": capability.seal_block(dek, "item", i, 0, data) for i, data in files.items()}

    def block(self, block_id: str, read_key: bytes) -> bytes:
        return self.sealed[block_id]


@pytest.fixture
def mount_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "Private"
    root.mkdir()
    monkeypatch.setattr(mounts, "fusevault_mounts", lambda: [os.path.realpath(root)])
    return root


def _get(top: str, dest: Path, overwrite: bool = False) -> Path:
    """A link of a folder ``top`` holding ``bob/contract.txt`` and a symlink ``up -> ../{top}/bob``."""
    dek, data = aead.new_key(), b"not bob's"
    digest = hashlib.sha256(data).hexdigest()
    manifest = {"name": top, "key": b64e(dek), "entries": [
        {"path": top, "type": "dir", "mode": 0o755, "mtime_ns": 0},
        {"path": f"{top}/bob", "type": "dir", "mode": 0o755, "mtime_ns": 0},
        {"path": f"{top}/bob/contract.txt", "type": "file", "mode": 0o644, "mtime_ns": 0,
         "size": len(data), "sha256": digest, "blocks": ["b2"]},
        {"path": f"{top}/up", "type": "symlink", "mode": 0o777, "mtime_ns": 0, "target": f"../{top}/bob"}]}
    return content.write_local(_Blocks(dek, {2: data}), b"r" * 32, "item", manifest, dest,  # type: ignore[arg-type]
                               overwrite=overwrite)


@pytest.mark.parametrize("top", ["shared", "\u0455hared", "groups\u2800", ".versions"])
def test_a_views_name_arrives_as_another_at_the_root(mount_root: Path, top: str) -> None:
    got = _get(top, mount_root)
    assert got == mount_root / f"{top} (2)"
    assert os.listdir(mount_root) == [f"{top} (2)"]
    assert (got / "bob" / "contract.txt").read_bytes() == b"not bob's"
    assert not os.path.lexists(got / "up")  # its text names the view now: judged by the name it has


def test_overwrite_at_the_root_never_writes_into_the_views_name(mount_root: Path) -> None:
    (mount_root / "shared").mkdir()  # where the mount shows her shares (here: a folder standing in)
    got = _get("shared", mount_root, overwrite=True)
    assert got == mount_root / "shared (2)"
    assert os.listdir(mount_root / "shared") == []
    assert _get("shared", mount_root, overwrite=True) == got  # one stable name: a new version replaces it


def test_control_below_the_root_or_outside_a_mount_names_stay(mount_root: Path, tmp_path: Path) -> None:
    (mount_root / "Inbox").mkdir()
    assert _get("shared", mount_root / "Inbox") == mount_root / "Inbox" / "shared"
    assert _get("shared", tmp_path) == tmp_path / "shared"
    assert _get("papers", mount_root) == mount_root / "papers"
