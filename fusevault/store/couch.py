"""Metadata documents in a CouchDB database, through CouchDB-Python.

CouchDB-Python is synchronous; the mount calls this store from worker threads
(``inline = False``).  Credentials never live in vault.json: they come from
FUSEVAULT_COUCHDB_USER / FUSEVAULT_COUCHDB_PASSWORD.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import couchdb

from fusevault.errors import Conflict, InvalidInput, StoreUnavailable
from fusevault.store.places import PlaceRow, Places
from fusevault.urls import http_url, without_credentials


def split_url(url: str) -> tuple[str, str]:
    """``http://host:port/db`` -> (server URL, database name); credentials dropped."""
    parts = http_url(url, "CouchDB database URL", "http://host:port/database")  # host, port: 49t (4)
    db = parts.path.strip("/")
    if not db or "/" in db:
        raise InvalidInput(f"not a CouchDB database URL: {without_credentials(url)}")
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, "/", "", "")), db


def strip_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None:
        return url
    netloc = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


_NETWORK_ERRORS = (OSError, socket.error, couchdb.http.ServerError, couchdb.http.Unauthorized)


class CouchStore:
    inline = False

    def __init__(self, url: str, create: bool = False) -> None:
        server_url, name = split_url(url)
        self.url = f"{server_url}{name}"
        server = couchdb.Server(server_url)
        user = os.environ.get("FUSEVAULT_COUCHDB_USER")
        if user:
            server.resource.credentials = (user, os.environ.get("FUSEVAULT_COUCHDB_PASSWORD", ""))
        try:
            if create and name not in server:
                self._db = server.create(name)
            else:
                self._db = server[name]
        except couchdb.http.ResourceNotFound:
            raise StoreUnavailable(f"CouchDB database {self.url} does not exist") from None
        except _NETWORK_ERRORS as err:
            raise StoreUnavailable(f"cannot reach CouchDB at {self.url}: {_reason(err)}") from None

    def reading(self) -> contextlib.AbstractContextManager[None]:
        """Reads as they are (the store's ``read_call`` runs them as its ``store_call``)."""
        return contextlib.nullcontext()

    def get(self, doc_id: str) -> dict | None:
        try:
            doc = self._db.get(doc_id)
        except _NETWORK_ERRORS as err:
            raise StoreUnavailable(f"cannot reach CouchDB at {self.url}: {_reason(err)}") from None
        return None if doc is None else dict(doc)

    def deleted(self, doc_id: str) -> bool:
        # A plain GET answers 404 for a document deleted and one never written alike (pouchdb-server
        # gives both the reason "missing"); its leaves tell them apart: a deleted one has only deleted leaves.
        try:
            _, _, leaves = self._db.resource.get_json(doc_id, open_revs="all")
        except couchdb.http.ResourceNotFound:
            return False
        except _NETWORK_ERRORS as err:
            raise StoreUnavailable(f"cannot reach CouchDB at {self.url}: {_reason(err)}") from None
        found = [leaf["ok"] for leaf in leaves if isinstance(leaf, dict) and isinstance(leaf.get("ok"), dict)]
        return bool(found) and all(leaf.get("_deleted") is True for leaf in found)

    def put_many(self, docs: list[dict], places: Sequence[tuple] = ()) -> list[str]:
        # ``places`` serve peer sync, which a vault kept in CouchDB does not need.
        try:
            results = self._db.update([dict(d) for d in docs])
        except _NETWORK_ERRORS as err:
            raise StoreUnavailable(f"cannot reach CouchDB at {self.url}: {_reason(err)}") from None
        revs = []
        for ok, doc_id, rev in results:
            if not ok:
                raise Conflict(f"document {doc_id} was changed by someone else")
            revs.append(rev)
        return revs

    def iter_type(self, doc_type: str) -> Iterator[dict]:
        try:
            for row in self._db.iterview("_all_docs", 2000, include_docs=True):
                doc = row.doc
                if doc is not None and doc.get("type") == doc_type:
                    yield dict(doc)
        except _NETWORK_ERRORS as err:
            raise StoreUnavailable(f"cannot reach CouchDB at {self.url}: {_reason(err)}") from None

    def by_file(self, doc_type: str, fid: str) -> list[dict]:
        query = {"selector": {"type": doc_type, "fid": fid}, "limit": 1_000_000}
        try:
            # The server's answer is held to the question asked: a document of another file or kind
            # it slipped in was taken as this file's (attack round 57b (1)), as iter_type holds its own.
            return [dict(doc) for doc in self._db.find(query)
                    if doc.get("type") == doc_type and doc.get("fid") == fid]
        except _NETWORK_ERRORS as err:
            raise StoreUnavailable(f"cannot reach CouchDB at {self.url}: {_reason(err)}") from None

    def changes(self, since: int | str = 0) -> tuple[list[dict], int | str]:
        try:
            feed = self._db.changes(since=since)
        except _NETWORK_ERRORS as err:
            raise StoreUnavailable(f"cannot reach CouchDB at {self.url}: {_reason(err)}") from None
        results = [
            {"seq": r["seq"], "id": r["id"], "rev": r["changes"][-1]["rev"],
             "deleted": bool(r.get("deleted"))}
            for r in feed["results"]
        ]
        return results, feed["last_seq"]

    def sync(self) -> None:
        # CouchDB commits every write before answering (since 2.x); older
        # servers and PouchDB accept the explicit request.
        try:
            self._db.commit()
        except couchdb.http.ResourceNotFound:
            pass
        except _NETWORK_ERRORS as err:
            raise StoreUnavailable(f"cannot reach CouchDB at {self.url}: {_reason(err)}") from None

    def forget_places(self, fid: str, ranges: Sequence[tuple[int, int]] | None) -> None:
        pass  # no places table: records of a vault kept in CouchDB are where their writer put them

    def unhashed_places(self, after: int, limit: int) -> list:
        return []  # no places table (above)

    def set_place_shas(self, shas: Sequence[tuple[str, str, str, int]]) -> int:
        return 0

    def compact(self, rebuild: bool = False) -> bool:
        return False  # the server compacts its own database

    def close(self) -> None:
        pass


class CouchPlaces(Places):
    """What readers of file contents check records with in a vault kept in
    CouchDB.  There is no ``places`` table: records sit where their writer
    appended them and none arrive from peers, so vault/files/placements.py
    takes the records a version wrote from its manifest, and the version
    documents (the signed digests) from the database.  The refusals, the
    versions vouched for and the admission are kept as for a local store."""

    rows_kept = False

    def __init__(self, url: str) -> None:
        super().__init__(Path(os.devnull))  # no table: the SQL readers below are overridden
        self.url = url
        self._store: CouchStore | None = None
        self._lock = threading.Lock()

    @property
    def any_arrived(self) -> bool:
        return False

    def arrived_of(self, fid: str) -> dict[tuple[str, int], tuple[int, int] | None]:
        return {}

    def copies_of(self, fid: str) -> dict[tuple[str, int], dict[bytes, tuple[int, int]]]:
        return {}

    def of_version(self, fid: str, vid: str) -> list[PlaceRow]:
        return []

    def held(self, fid: str, vid: str) -> tuple[bool, int]:
        return True, 0

    def document_body(self, doc_id: str) -> str | None:
        with self._lock:  # opened once, on first use (many processes load a layout and read nothing)
            if self._store is None:
                self._store = CouchStore(self.url)
            store = self._store
        doc = store.get(doc_id)
        return None if doc is None or doc.get("_deleted") else json.dumps(doc)


def _reason(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__
