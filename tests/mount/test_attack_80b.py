"""Attack round 80b, through the real command and mounts: (4) of tests/inprocess/test_attack_80b.py on
her newest version (79a (1c) again, by the index instead of the body).

(4c) medium-high (her newest edit rolled back by ``check --repair``, under her own signature).  Attacker:
    whoever writes the vault folder (store.sqlite, no key).  Steps: plan.txt written twice (two
    versions); between mounts the head version's row is written through ``"type": "node"`` (SQLite sets
    its ``docs_kind`` entry to ``node``), then its own body written back while the two JSON index
    definitions are briefly changed (``PRAGMA writable_schema``), so the index keeps ``node``: every
    byte of the body is hers and as it was.  Seen: the mount reads the newest contents (``get`` by id);
    ``fusevault check`` says "the document of its current version is not its file's", "1 damaged
    file(s)" (``by_file`` selects by the index, never finds it; ``_head_unlisted``'s ``get`` finds it,
    agreeing with itself; the log says the version "left out: it reads as two kinds or files", which
    its intact body does not); ``check --repair`` restores the older version as the newest, and the next
    mount reads b"first".  Expected: the version found (the index rebuilt or not trusted), or at least
    nothing of hers replaced by a repair.  Cause: store/local.py ``by_file`` trusts index entries the
    folder's writer decides (``docs_kind``, ``docs_fid``); check.py ``_head_unlisted`` then calls an intact
    document "not its file's" and the repair treats the file as damaged.  Fix (suggested): ``REINDEX``
    the JSON indexes at open (or check them); in check, a current version ``get`` reads, genuine, naming
    this file, is its current version (no repair over it).
    Test: ``test_80b_4c_an_index_entry_left_at_another_kind_does_not_let_repair_roll_back_her_edit``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import adversary
import pytest
from conftest import fusevault, mounted

from mount.test_attack_79a import _seq


def _write_past_indexes(vault: Path, doc_id: str, body: str) -> None:
    swap = "UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE name IN ('docs_kind', 'docs_fid')"
    for step in ("off", "write", "on"):
        db = sqlite3.connect(vault / "store.sqlite")
        try:
            if step == "write":
                assert db.execute("UPDATE docs SET body = ? WHERE id = ?", (body, doc_id)).rowcount == 1
            else:
                db.execute("PRAGMA writable_schema = ON")
                db.execute(swap, ("WHERE deleted = 0", "WHERE deleted = 7") if step == "off"
                           else ("WHERE deleted = 7", "WHERE deleted = 0"))
            db.commit()
        finally:
            db.close()


@pytest.mark.xfail(strict=True, reason="80b (4c): a version's index entry left at another kind: check calls "
                   "it not its file's, --repair rolls back her newest edit")
def test_80b_4c_an_index_entry_left_at_another_kind_does_not_let_repair_roll_back_her_edit(
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
    try:
        (body,) = db.execute("SELECT body FROM docs WHERE id = ?", (head["_id"],)).fetchone()
        other = body.replace('"type": "FilesMetaData"', '"type": "node"', 1)
        assert other != body
        db.execute("UPDATE docs SET body = ? WHERE id = ?", (other, head["_id"]))  # docs_kind: node
        db.commit()
    finally:
        db.close()
    _write_past_indexes(vault, head["_id"], body)  # her body back, byte for byte; the index left
    with mounted(vault, mnt):
        assert (mnt / "plan.txt").read_bytes() == b"second, the newest", "the scene: the mount reads it"
    checked = fusevault("check", vault)
    repaired = fusevault("check", vault, "--repair")
    with mounted(vault, mnt):
        now = (mnt / "plan.txt").read_bytes()
    said = (checked.stdout + checked.stderr)[-300:], (repaired.stdout + repaired.stderr)[-300:]
    assert now == b"second, the newest", f"her newest edit rolled back: {said}"
