"""store/local.py: a document's kind is its body's, never the clear ``type`` column (attack round 78c
(3)): ``iter_type`` and ``by_file`` select by ``json_extract(body, '$.type')`` (its index
``docs_kind``), so a column set to NULL or another kind hides no live document."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fusevault.store.local import LocalStore

FID = "f" * 32


@pytest.mark.parametrize("column", [None, "FilesMetaData", "Share", 7],
                         ids=["null", "version", "share", "int"])
def test_a_changed_type_column_hides_no_document(tmp_path: Path, column: object) -> None:
    path = tmp_path / "store.sqlite"
    store = LocalStore(path)
    store.put_many([{"_id": FID, "type": "Node", "fid": FID, "enc": "x"},
                    {"_id": "v" * 32, "type": "FilesMetaData", "fid": FID, "enc": "y"}])
    store.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE docs SET type = ? WHERE id = ?", (column, FID))  # the attacker: one clear column
    db.execute("UPDATE docs SET type = ? WHERE id = ?", (column if column != "FilesMetaData" else "Node",
                                                          "v" * 32))
    db.commit()
    db.close()
    store = LocalStore(path)
    try:
        assert [d["_id"] for d in store.iter_type("Node")] == [FID]
        assert [d["_id"] for d in store.by_file("FilesMetaData", FID)] == ["v" * 32]
        assert [d["_id"] for d in store.by_file("Node", FID)] == [FID]
    finally:
        store.close()


def test_the_kind_is_read_through_its_index(tmp_path: Path) -> None:
    """The cost: a load reads its nodes by the index, as it did by the column's, never a scan of all."""
    store = LocalStore(tmp_path / "store.sqlite")
    try:
        # iter_type's own selection: the index is partial (81a (5)), used where the query implies its WHERE.
        plan = " ".join(str(row) for row in store.db.execute(f"EXPLAIN QUERY PLAN {store.of_kind_sql}",
                                                             ("Node",)))
        assert "docs_kind" in plan, plan
    finally:
        store.close()
