"""Issue 22, attack round 14 (DRAFT docstring: filled in below as findings are confirmed)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from conftest import mounted


def _plant_seq(vault: Path, seq: object) -> None:
    """A row a store writer (no key) puts in the vault folder's SQLite store directly, whose ``seq``
    (the store's change counter) is not a whole number: SQLite keeps a column's value of another type
    as it is (``seq INTEGER`` is only an affinity)."""
    db = sqlite3.connect(vault / "store.sqlite", timeout=30)
    try:
        with db:
            db.execute("INSERT INTO docs (id, rev, seq, deleted, type, body, revs) "
                       "VALUES ('planted', '1-0', ?, 0, NULL, '{}', NULL)", (seq,))
    finally:
        db.close()


HOLE_SEQ = "hole (1): LocalStore.next_seq takes MAX(seq) of any type; write_doc's REPLACE drops the clash"


@pytest.mark.xfail(strict=True, reason=HOLE_SEQ)
@pytest.mark.parametrize("seq", [1e300, "x"], ids=["real", "text"])
def test_a_row_whose_seq_is_no_whole_number_loses_none_of_her_writes(
        vault: Path, tmp_path: Path, seq: object) -> None:
    """alice's notes.txt.  A store writer (no key) plants one row whose ``seq`` is 1e300 (a REAL, kept
    so by SQLite) or "x" (TEXT).  alice mounts, writes new.txt and notes.txt again, unmounts, mounts
    again.  Safe: both read what she wrote (the row is skipped or refused, never the end of her writes)."""
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "notes.txt").write_text("first")
    _plant_seq(vault, seq)
    with mounted(vault, mnt):
        (mnt / "new.txt").write_text("new file")
        (mnt / "notes.txt").write_text("second")
    with mounted(vault, mnt):
        listed = sorted(p.name for p in mnt.iterdir())
        print(listed)
        assert (mnt / "new.txt").read_text() == "new file"
        assert (mnt / "notes.txt").read_text() == "second"
