"""The ``places`` table's owner: where each content record sits in this replica's ``.vf`` files.

One row per record of every committed version (vault/files/records.py says
why): written with the version's documents, or when records arrive from a
peer.  ``sha`` is the SHA-256 of the record as it was written or came; a
reader compares every record it reads with it, once the version's signed
digest vouched for the list.
"""

from __future__ import annotations

import threading

# SHA-256 (hex) of the records a Content sealed, by (fid, vid) and index, until
# the version's commit writes its place rows (put_many): the Volume builds
# those rows from ``Content.sealed`` alone.  Bounded: a version whose commit
# failed is sealed again under another id; a row written without its hash is
# hashed from the .vf when first read (vault/files/records.py).
_WRITTEN: dict[tuple[str, str], dict[int, str]] = {}
_WRITTEN_LIMIT = 1024
_LOCK = threading.Lock()


def note_written(fid: str, vid: str, shas: dict[int, str]) -> None:
    with _LOCK:
        while len(_WRITTEN) >= _WRITTEN_LIMIT:
            _WRITTEN.pop(next(iter(_WRITTEN)))
        _WRITTEN[(fid, vid)] = shas


def own_rows(rows: list[tuple]) -> list[tuple]:
    """(fid, vid, idx, owner, offset, length, arrived, sha) of the place rows a commit writes."""
    out = []
    with _LOCK:
        taken: dict[tuple[str, str], dict[int, str]] = {}
        for fid, vid, idx, owner, offset, length, arrived in rows:
            shas = taken.get((fid, vid))
            if shas is None:
                shas = taken[(fid, vid)] = _WRITTEN.pop((fid, vid), {})
            out.append((fid, vid, idx, owner, offset, length, arrived, shas.get(idx)))
    return out
