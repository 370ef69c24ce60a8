"""The embedded document store: SQLite in WAL mode inside the vault directory.

A commit is one SQLite transaction, so ``kill -9`` leaves either all of a
batch or none of it.  Commits do not fsync (synchronous=NORMAL keeps the WAL
consistent after a process crash); ``sync()`` fsyncs the WAL when a program
asks for durability with fsync().
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from fusevault.errors import Conflict, CorruptData, NoSpace, StoreUnavailable, VaultReadOnly
from fusevault.store.revs import next_rev

SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    id TEXT PRIMARY KEY,
    rev TEXT NOT NULL,
    seq INTEGER NOT NULL UNIQUE,
    deleted INTEGER NOT NULL DEFAULT 0,
    type TEXT,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS docs_type ON docs(type) WHERE deleted = 0;
CREATE INDEX IF NOT EXISTS docs_fid ON docs(json_extract(body, '$.fid')) WHERE deleted = 0;
"""


def _translate(err: sqlite3.Error) -> Exception:
    text = str(err).lower()
    if "full" in text:
        return NoSpace("the disk holding the vault is full")
    if "readonly" in text or "read-only" in text:
        return VaultReadOnly("the vault directory is read-only")
    if "malformed" in text or "not a database" in text:
        return CorruptData("the vault's document store is damaged")
    return StoreUnavailable(f"document store error: {err}")


class LocalStore:
    inline = True

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as err:
            raise _translate(err) from None

    def get(self, doc_id: str) -> dict | None:
        row = self._db.execute(
            "SELECT rev, body FROM docs WHERE id = ? AND deleted = 0", (doc_id,)
        ).fetchone()
        return None if row is None else self._doc(doc_id, row[0], row[1])

    @staticmethod
    def _doc(doc_id: str, rev: str, body: str) -> dict:
        try:
            doc = json.loads(body)
        except ValueError:
            raise CorruptData(f"document {doc_id} is not valid JSON") from None
        doc["_id"] = doc_id
        doc["_rev"] = rev
        return doc

    def put_many(self, docs: list[dict]) -> list[str]:
        revs = []
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                (seq,) = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM docs").fetchone()
                for doc in docs:
                    doc_id = doc["_id"]
                    row = self._db.execute(
                        "SELECT rev, deleted FROM docs WHERE id = ?", (doc_id,)
                    ).fetchone()
                    current = row[0] if row else None
                    expected = doc.get("_rev")
                    live = row is not None and not row[1]
                    if (live and expected != current) or (not live and expected not in (None, current)):
                        raise Conflict(f"document {doc_id} was changed by someone else")
                    rev = next_rev(current)
                    seq += 1
                    deleted = bool(doc.get("_deleted"))
                    body = {k: v for k, v in doc.items() if not k.startswith("_")}
                    self._db.execute(
                        "INSERT OR REPLACE INTO docs (id, rev, seq, deleted, type, body) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (doc_id, rev, seq, int(deleted), body.get("type"), json.dumps(body)),
                    )
                    revs.append(rev)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:  # SQLite already rolled back on a full disk
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as err:
            raise _translate(err) from None
        return revs

    def iter_type(self, doc_type: str) -> Iterator[dict]:
        # Streamed in batches: a vault of 100,000 files is never all in memory twice.
        cursor = self._db.execute(
            "SELECT id, rev, body FROM docs WHERE type = ? AND deleted = 0", (doc_type,))
        while rows := cursor.fetchmany(2000):
            for doc_id, rev, body in rows:
                yield self._doc(doc_id, rev, body)

    def by_file(self, doc_type: str, fid: str) -> list[dict]:
        rows = self._db.execute(
            "SELECT id, rev, body FROM docs WHERE json_extract(body, '$.fid') = ? AND deleted = 0 "
            "AND type = ?", (fid, doc_type)).fetchall()
        return [self._doc(doc_id, rev, body) for doc_id, rev, body in rows]

    def changes(self, since: int | str = 0) -> tuple[list[dict], int]:
        rows = self._db.execute(
            "SELECT seq, id, rev, deleted FROM docs WHERE seq > ? ORDER BY seq", (int(since),)
        ).fetchall()
        results = [{"seq": s, "id": i, "rev": r, "deleted": bool(d)} for s, i, r, d in rows]
        return results, (rows[-1][0] if rows else int(since))

    def sync(self) -> None:
        for suffix in ("-wal", ""):
            path = f"{self.path}{suffix}"
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def close(self) -> None:
        self._db.close()
