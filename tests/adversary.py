"""An attacker with no key and no passphrase who can write what fusevault reads.

It writes arbitrary documents into a vault's embedded store (as anyone who
can write the vault folder can: a synced cloud folder, a stolen and returned
backup) and into the CouchDB database a vault syncs with (as the server
can), and reads them back.  It uses nothing but the files and the HTTP API:
what it forges is what a real attacker could, no more.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx

from fusevault.store.local import LocalStore


@contextlib.contextmanager
def store_of(vault: Path) -> Iterator[LocalStore]:
    """The vault's embedded store, opened as any program could (the vault must not be mounted)."""
    store = LocalStore(vault / "store.sqlite")
    try:
        yield store
    finally:
        store.close()


def docs(vault: Path, kind: str) -> list[dict]:
    with store_of(vault) as store:
        return list(store.iter_type(kind))


def get(vault: Path, doc_id: str) -> dict | None:
    with store_of(vault) as store:
        return store.get(doc_id)


def put(vault: Path, *new: dict) -> None:
    """Make each document the current revision of its id, whatever was there."""
    with store_of(vault) as store:
        for doc in new:
            current = store.get(doc["_id"])
            doc = {k: v for k, v in doc.items() if k != "_rev"}
            if current is not None:
                doc["_rev"] = current["_rev"]
            store.put_many([doc])


def delete_row(vault: Path, doc_id: str) -> None:
    """Remove a document's row outright (no tombstone: as if it never was)."""
    db = sqlite3.connect(vault / "store.sqlite")
    try:
        db.execute("DELETE FROM docs WHERE id = ?", (doc_id,))
        db.commit()
    finally:
        db.close()


def pulled_past(vault: Path, seq: int) -> bool:
    """Whether the vault's sync has taken in the server's changes up to ``seq`` (``Server.seq``): what a
    test waits for before asserting that a server's change was refused, so that it was offered at all."""
    with store_of(vault) as store:
        rows = store.db.execute("SELECT body FROM local_docs WHERE id LIKE 'sync-%'").fetchall()
    done = [json.loads(body).get("pull") for (body,) in rows]
    return any(isinstance(n, int) and n >= seq for n in done)


def snapshot(vault: Path, to: Path) -> None:
    """Copy the store as it is now (to be put back later: a rollback)."""
    to.mkdir(parents=True, exist_ok=True)
    for name in ("store.sqlite", "store.sqlite-wal", "store.sqlite-shm"):
        if (vault / name).exists():
            shutil.copy2(vault / name, to / name)


def roll_back(vault: Path, snap: Path) -> None:
    """Put a snapshot back in place of the current store."""
    for name in ("store.sqlite", "store.sqlite-wal", "store.sqlite-shm"):
        (vault / name).unlink(missing_ok=True)
        if (snap / name).exists():
            shutil.copy2(snap / name, vault / name)


class Server:
    """The CouchDB database a vault syncs with, as its server sees it (plain HTTP, no keys)."""

    def __init__(self, db_url: str) -> None:
        self.url = db_url.rstrip("/")

    def seq(self) -> int:
        """The database's newest change (pouchdb-server counts them)."""
        return int(httpx.get(self.url, timeout=30).raise_for_status().json()["update_seq"])

    def get(self, doc_id: str, **params: str) -> dict | None:
        r = httpx.get(f"{self.url}/{doc_id}", params=params, timeout=30)
        return None if r.status_code == 404 else r.raise_for_status().json()

    def all(self, kind: str | None = None) -> list[dict]:
        r = httpx.get(f"{self.url}/_all_docs", params={"include_docs": "true"}, timeout=60)
        rows = [row["doc"] for row in r.raise_for_status().json()["rows"]]
        return [d for d in rows if kind is None or d.get("type") == kind]

    def put(self, doc: dict) -> str:
        """Make ``doc`` the current revision of its id (a new revision over the current one)."""
        current = self.get(doc["_id"])
        body = {k: v for k, v in doc.items() if k != "_rev"}
        if current is not None:
            body["_rev"] = current["_rev"]
        r = httpx.put(f"{self.url}/{doc['_id']}", content=json.dumps(body), timeout=30,
                      headers={"Content-Type": "application/json"})
        return r.raise_for_status().json()["rev"]

    def delete(self, doc_id: str) -> None:
        current = self.get(doc_id)
        if current is not None:
            r = httpx.delete(f"{self.url}/{doc_id}", params={"rev": current["_rev"]}, timeout=30)
            r.raise_for_status()

    def compact(self) -> None:
        """Compact the database, as any CouchDB does now and then: the bodies of revisions that
        are no leaf any more are gone (only their ids stay in the histories)."""
        httpx.post(f"{self.url}/_compact", json={}, timeout=120).raise_for_status()
