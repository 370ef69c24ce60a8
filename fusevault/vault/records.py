"""Where content records sit, so that versions can travel between replicas.

A manifest names each block by the version that wrote it and its index, and
its offset in the ``.vf`` of the replica that wrote it.  Records that came
from a peer are appended to this replica's ``.vf`` wherever it ends, so each
replica keeps a table of places (``places`` in store.sqlite): one row per
record of every committed version, written with the version's documents.
A record is named the same everywhere (``record_id``); rows of records that
arrived say where they went here, and a reader looks there first.  A vault
that never synced has no arrived rows and reads exactly as before.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

from fusevault.vault.content import HEADER, append_lock, header_for

MANIFEST_INDEX = -1


def record_id(fid: str, vid: str, idx: int) -> str:
    return f"rec-{fid}-{vid}-{'m' if idx == MANIFEST_INDEX else idx}"


def parse_record_id(doc_id: str) -> tuple[str, str, int]:
    _, fid, vid, idx = doc_id.split("-")
    return fid, vid, MANIFEST_INDEX if idx == "m" else int(idx)


def is_record(doc_id: str) -> bool:
    return doc_id.startswith("rec-")


class Placements:
    """Read access to the places of records that arrived from peers.

    Reads come from the trio thread and from worker threads: each thread has
    its own read-only SQLite connection (WAL lets them read while the mount writes).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._arrived: bool | None = None

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                                  check_same_thread=False)
        return db

    @property
    def any_arrived(self) -> bool:
        if self._arrived is None:
            try:
                self._arrived = self._db().execute(
                    "SELECT 1 FROM places WHERE arrived = 1 LIMIT 1").fetchone() is not None
            except sqlite3.Error:  # no store yet, or one from before sync
                return False
        return self._arrived

    def note_arrival(self) -> None:
        self._arrived = True

    def arrived_of(self, fid: str) -> dict[tuple[str, int], tuple[int, int]]:
        rows = self._db().execute(
            "SELECT vid, idx, offset, length FROM places WHERE fid = ? AND arrived = 1", (fid,))
        return {(vid, idx): (offset, length) for vid, idx, offset, length in rows}


def append_arrived(vf_path: Path, fid: str, records: list[bytes]) -> list[tuple[int, int]]:
    """Append records a peer sent to this replica's ``.vf``; their places here."""
    if not records:
        return []
    vf_path.parent.mkdir(parents=True, exist_ok=True)
    with append_lock(str(vf_path)):
        fd = os.open(vf_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            end = os.fstat(fd).st_size
            if end < HEADER.size:  # new here (or a crash left a torn header)
                os.pwrite(fd, header_for(fid), 0)
                end = HEADER.size
            places = []
            for record in records:
                places.append((end, len(record)))
                end += len(record)
            os.pwritev(fd, records, places[0][0])
            os.fsync(fd)
        finally:
            os.close(fd)
    return places
