"""Round 53t (3): the path a version names, for a file written after its last name was removed
(sqlite3's WAL -shm, a program's temporary file unlinked while open).

The save names the path the file had (its ``trashed``), and a version from before the fix (no
path at all) is shown as such without the warning a forged path gets
(tests/mount/test_attack_53t.py, end to end)."""

from __future__ import annotations

import json
import logging
import os
import stat

import pytest

from fusevault.crypto import aead
from fusevault.encoding import b64e
from fusevault.vault.files.open_files import _place_of
from fusevault.vault.model.history import NO_PATH, REFUSED_PATH, open_version_doc
from fusevault.vault.model.nodes import Node

FID, VID = "f" * 32, "v" * 32
DEK = os.urandom(32)
PLAIN = {"file_entry_ts": 5, "file_location": "", "file_name": "a.txt", "file_iv": "", "size": 5, "mtime": 2,
         "author": "alice", "manifest": [0, 10], "parents": []}


def _version(location: str, name: str):
    plain = {**PLAIN, "file_location": location, "file_name": name}
    sealed = aead.seal(DEK, json.dumps(plain).encode(), aead.ad("version", FID, VID))
    return open_version_doc({"_id": VID, "_rev": "1-a", "fid": FID, "enc": b64e(sealed)}, DEK)


def test_a_version_that_names_no_path_is_said_so_without_the_forged_path_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert _version("", "").path == NO_PATH
    assert caplog.records == []


@pytest.mark.parametrize("location,name", [("", ".."), ("a/../b", "c"), ("", "a/b"),
                                           ("docs", ""), ("", "x\x00y")])
def test_a_path_that_is_not_one_still_gets_the_warning(location: str, name: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert _version(location, name).path == REFUSED_PATH
    assert "names a path that is not one" in caplog.text


class _Tree:
    def __init__(self, path: bytes) -> None:
        self.path = path

    def path_of(self, node: Node) -> bytes:
        return self.path


def test_a_save_after_the_last_unlink_names_the_path_the_file_had() -> None:
    node = Node(5, FID, "a" * 32, DEK, stat.S_IFREG | 0o600, 1000, 1000)
    node.trashed = (b"docs/scratch", 7)
    assert _place_of(_Tree(b""), node) == b"docs/scratch"  # type: ignore[arg-type]
    node.links = [("p" * 32, b"scratch")]  # linked again (restored): its path, not the old one
    assert _place_of(_Tree(b"restored/scratch"), node) == b"restored/scratch"  # type: ignore[arg-type]
