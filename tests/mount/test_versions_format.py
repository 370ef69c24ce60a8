"""The format keeps every version: new id per change, shared blocks, nothing overwritten."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

from conftest import PASSPHRASE, mounted

from fusevault.crypto import aead
from fusevault.encoding import b64d
from fusevault.vault.files.content import Content
from fusevault.vault.services.opening import unlock_vault


def vault_bytes(vault: Path) -> int:
    return sum(p.stat().st_size for p in vault.rglob("*") if p.is_file())


def test_small_rewrite_of_a_large_file_shares_blocks(vault: Path, tmp_path: Path) -> None:
    with mounted(vault, tmp_path / "mnt") as mnt:
        with open(mnt / "large", "wb") as f:
            for _ in range(100):
                f.write(os.urandom(1 << 20))
    before = vault_bytes(vault)
    with mounted(vault, tmp_path / "mnt") as mnt:
        with open(mnt / "large", "r+b") as f:
            f.seek(50 * (1 << 20) + 12345)
            f.write(b"x" * 4096)
    grown = vault_bytes(vault) - before
    assert grown < 256 * 1024, grown  # two 64 KiB blocks, a manifest, two documents


def _versions(vault: Path) -> list[dict]:
    db = sqlite3.connect(vault / "store.sqlite")
    rows = db.execute("SELECT id, body FROM docs WHERE type = 'FilesMetaData' ORDER BY seq").fetchall()
    db.close()
    return [{"_id": i, **json.loads(b)} for i, b in rows]


def test_every_change_is_a_new_version_and_old_ones_stay_readable(vault: Path, tmp_path: Path) -> None:
    contents = [f"edit number {i}\n".encode() * (i * 3000 + 1) for i in range(5)]
    for data in contents:
        with mounted(vault, tmp_path / "mnt") as mnt:
            (mnt / "doc.txt").write_bytes(data)
    versions = _versions(vault)
    assert len(versions) == len(contents) and len({v["_id"] for v in versions}) == len(contents)
    unlocked = unlock_vault(vault, None, PASSPHRASE.encode())
    try:
        for version, expected in zip(versions, contents):
            dek = unlocked.key.unwrap_dek(version["fid"], b64d(version["en_file_dek"]))
            plain = json.loads(aead.unseal(dek, b64d(version["enc"]),
                                           aead.ad("version", version["fid"], version["_id"])))
            assert plain["file_name"] == "doc.txt" and plain["size"] == len(expected)
            content = Content(unlocked.layout, version["owner"], version["fid"], dek,
                              tuple(plain["manifest"]), version["_id"])
            assert content.read(0, len(expected) + 10, plain["size"]) == expected
            content.close()
    finally:
        unlocked.store.close()
