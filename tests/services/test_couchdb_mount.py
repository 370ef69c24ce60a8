"""A vault whose metadata documents live in CouchDB (a real pouchdb-server)."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

from conftest import fusevault, mounted


def test_mount_with_couchdb_store(tmp_path: Path, couchdb_url: str) -> None:
    vault = tmp_path / "vault"
    result = fusevault("init", vault, "--user", "bob", "--couchdb", couchdb_url)
    assert result.returncode == 0, result.stderr
    assert json.loads((vault / "vault.json").read_text())["store"] == {"kind": "couchdb",
                                                                       "url": couchdb_url}
    payload = os.urandom(300_000)
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "Confidential Report").mkdir()
        (mnt / "Confidential Report" / "quarterly-numbers.bin").write_bytes(payload)
        os.rename(mnt / "Confidential Report", mnt / "Renamed Folder")
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "Renamed Folder" / "quarterly-numbers.bin").read_bytes() == payload
    with urllib.request.urlopen(f"{couchdb_url}/_all_docs?include_docs=true") as answer:
        everything = answer.read()
    assert b"UserDetails" in everything and b"FilesMetaData" in everything
    for secret in (b"Confidential", b"quarterly", b"Renamed", payload[:16]):
        assert secret not in everything
    assert not (vault / "store.sqlite").exists()


def test_couchdb_server_down_is_a_clear_error(tmp_path: Path) -> None:
    result = fusevault("init", tmp_path / "v", "--couchdb", "http://127.0.0.1:9/db")
    assert result.returncode == 10 and "cannot reach CouchDB" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "v").exists()
