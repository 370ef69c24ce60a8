"""Attack round 79a, through the real command and mounts: the consequence of (1b) (see
tests/unit/test_attack_79a.py) on her newest version, 78c (3)'s case with the clear column untouched.

(1c) medium (her intact newest version called missing by ``fusevault check``; ``check --repair`` would
    restore her older version as the newest).  Attacker: whoever writes the vault folder.  Steps: plan.txt
    written twice (two versions); between mounts the head version's body gets a first ``"type": "node"``
    key put before its own ``"type": "FilesMetaData"`` (its signed fields the same: Python reads the last
    key).  Seen: the mount reads the newest contents; ``fusevault check``: "the document of its current
    version is missing", "1 damaged file(s)" (and a misleading "node document ... left out: its body says
    'FilesMetaData' twice"); run by hand, not kept: ``check --repair`` then "restored version ... as its
    newest version" and the next mount reads b"first": her newest edit rolled back under her own
    signature (the newest version's document is not in the file's history either: ``by_file``).
    Expected: as 78c (3)'s control (the column changed): the version found.  Cause:
    store/local.py ``by_file`` selects ``json_extract(body, '$.type')``, SQLite's reading of the first
    key (9c2064f).  Fixed: a name given twice is refused wherever JSON is read (encoding.py ``_unique``):
    the tampered version document reads EIO at the mount (said), and ``check`` says it does not read,
    never "missing" (check.py ``_head_unlisted``).  Test:
    ``test_79a_1c_a_version_body_with_two_type_keys_is_refused_and_said_not_called_missing``.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import adversary
import pytest
from conftest import fusevault, mounted


def _seq(vault: Path, doc_id: str) -> int:
    db = sqlite3.connect(vault / "store.sqlite")
    try:
        (seq,) = db.execute("SELECT seq FROM docs WHERE id = ?", (doc_id,)).fetchone()
    finally:
        db.close()
    return int(seq)


def test_79a_1c_a_version_body_with_two_type_keys_is_refused_and_said_not_called_missing(
        vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "plan.txt").write_bytes(b"first")
    with mounted(vault, mnt):
        (mnt / "plan.txt").write_bytes(b"second, the newest")
    versions = adversary.docs(vault, "FilesMetaData")
    assert len({v["fid"] for v in versions}) == 1 and len(versions) == 2, "the scene: plan.txt's two versions"
    head = max(versions, key=lambda v: _seq(vault, v["_id"]))
    db = sqlite3.connect(vault / "store.sqlite")
    try:  # the attacker: a key put first in the body; the column and every field Python reads the same
        (body,) = db.execute("SELECT body FROM docs WHERE id = ?", (head["_id"],)).fetchone()
        db.execute("UPDATE docs SET body = ? WHERE id = ?", ('{"type": "node", ' + body[1:], head["_id"]))
        db.commit()
    finally:
        db.close()
    with mounted(vault, mnt):
        with pytest.raises(OSError) as refused:  # a version document that reads two ways: EIO, said
            (mnt / "plan.txt").read_bytes()
        assert refused.value.errno == errno.EIO
    result = fusevault("check", vault)
    said = result.stdout + result.stderr
    assert "1 damaged file(s)" in said and "missing" not in said, (
        f"her newest version's document, tampered, is called missing: {said[-400:]}")
    assert "current version does not read" in said and "a name twice" in said, said[-400:]
