"""Metadata documents shaped like CouchDB documents, behind one interface.

Two backends pass one shared test suite: ``LocalStore`` (SQLite in the vault
directory, the default, no server) and ``CouchStore`` (a CouchDB database
through the ``couchdb`` package).  The interface is synchronous; the mount
commits from a worker thread (both backends say ``inline = False``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Protocol


class Store(Protocol):
    #: True when calls are quick local writes that may run on the trio loop.
    inline: bool

    def reading(self) -> AbstractContextManager[None]:
        """Reads on this thread from a snapshot of their own until the end (a long read off the loop)."""

    def get(self, doc_id: str) -> dict | None:
        """The current document (with ``_id`` and ``_rev``), or None."""

    def deleted(self, doc_id: str) -> bool:
        """Whether the store holds the deletion of ``doc_id`` (a tombstone: not a document merely absent)."""

    def put_many(self, docs: list[dict], places: Sequence[tuple] = ()) -> list[str]:
        """Write documents atomically where the backend can; return new revs.

        A document whose ``_rev`` is not the current one raises Conflict and,
        for the local store, nothing is written.  ``places``: where the
        records of a new version sit (store/places.py), committed with it.
        """

    def iter_type(self, doc_type: str) -> Iterator[dict]:
        """Every live document whose ``type`` field equals doc_type."""

    def by_file(self, doc_type: str, fid: str) -> list[dict]:
        """Every live document of doc_type whose ``fid`` field equals fid (a file's versions)."""

    def changes(self, since: int | str = 0) -> tuple[list[dict], int | str]:
        """Changes after ``since``: [{"seq", "id", "rev", "deleted"}], last seq."""

    def sync(self) -> None:
        """Make every committed write durable (fsync)."""

    def forget_places(self, fid: str, ranges: Sequence[tuple[int, int]] | None) -> None:
        """Drop the places of ``fid``'s records whose bytes gc removed (in ``ranges``; None: all)."""

    def unhashed_places(self, after: int, limit: int) -> list:
        """(n, PlaceRow) of up to ``limit`` places after ``n`` kept without their record's SHA-256."""

    def set_place_shas(self, shas: Sequence[tuple[str, str, str, int]]) -> int:
        """Write ``(sha hex, fid, vid, idx)`` into places kept without one; how many were written."""

    def compact(self, rebuild: bool = False) -> bool:
        """Give back a step of the space deletions freed; True while there is more
        (``rebuild``: an old store may be rebuilt whole; only when nothing is mounted)."""

    def close(self) -> None: ...


def tombstone(doc: dict) -> dict:
    """The deletion of ``doc``; it keeps the type, so whoever watches writes
    (a shared mount's other users) knows what kind of thing went."""
    return {"_id": doc["_id"], "_rev": doc["_rev"], "_deleted": True, "type": doc.get("type")}


def open_store(vault_dir, config: dict) -> Store:
    kind = config.get("kind", "local")
    if kind == "local":
        from fusevault.store.local import LocalStore

        return LocalStore(vault_dir / "store.sqlite")
    if kind == "couchdb":
        from fusevault.store.couch import CouchStore

        return CouchStore(config["url"])
    from fusevault.errors import UnsupportedFormat

    raise UnsupportedFormat(f"unknown store kind {kind!r} in vault.json")
