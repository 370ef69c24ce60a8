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
    key (9c2064f).  Fix: see the unit file (refuse duplicated keys in ``_doc``).  Test:
    ``test_79a_1c_a_version_body_with_two_type_keys_is_not_called_missing`` (strict xfail).
"""

from __future__ import annotations

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


@pytest.mark.xfail(strict=True, reason="79a (1c): a version body with two type keys is called missing "
                                       "by check")
def test_79a_1c_a_version_body_with_two_type_keys_is_not_called_missing(vault: Path, tmp_path: Path) -> None:
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
        assert (mnt / "plan.txt").read_bytes() == b"second, the newest", "the scene: the mount reads it"
    result = fusevault("check", vault)
    said = result.stdout + result.stderr
    assert "0 damaged file(s)" in said, f"her intact newest version is called missing: {said[-400:]}"
