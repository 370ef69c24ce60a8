"""JSON nested too deep to parse, forged where fusevault reads it: refused, and the service goes on.

``json.loads`` raises RecursionError, not ValueError, on deep nesting; every site that parses
what others wrote uses ``encoding.loads_untrusted`` (tests/unit/test_untrusted_json.py), which
turns it into the ValueError each caller handles.  Here the entry points themselves."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from conftest import mounted

from mount.test_trust_rollback import alarms
from mount.test_trust_writes import _node_fid

# Deeper than Python's json can parse, shallower than SQLite's limit (the store indexes bodies).
DEPTH = 1500
NESTED = "[" * DEPTH + "]" * DEPTH


def test_a_store_document_nested_too_deep_is_refused_and_the_mount_serves_on(vault: Path,
                                                                             tmp_path: Path) -> None:
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "kept.txt").write_text("kept\n")
        (mnt / "forged.txt").write_text("forged\n")
    fid = _node_fid(vault, "alice", "forged.txt")
    db = sqlite3.connect(vault / "store.sqlite")
    try:
        (body,) = db.execute("SELECT body FROM docs WHERE id = ?", (fid,)).fetchone()
        db.execute("UPDATE docs SET body = ? WHERE id = ?", (body[:-1] + ', "x": ' + NESTED + "}", fid))
        db.commit()
    finally:
        db.close()
    # Before, json.loads raised RecursionError from the store: the mount ended with a traceback.
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "kept.txt").read_text() == "kept\n"
        assert sorted(p.name for p in mnt.iterdir()) == ["kept.txt"]
        (found,) = [a for a in alarms(mnt) if a["kind"] == "malformed"]
        assert found["subject"] == fid
        (mnt / "new.txt").write_text("still writable\n")
        assert (mnt / "new.txt").read_text() == "still writable\n"
