"""What the importer has taken in: one sealed document per source file.

A record says which state of a source file (size, mtime, inode, ctime, SHA-256)
was imported into which vault file.  It is how nothing is imported twice, across
restarts and crashes, and how a rename inside the source is told from a new
file.  ``file_location`` is relative to ``source_dir_to_watch`` (seed 000).
The document id is a keyed hash of that path, so the store learns neither
the path nor anything it could guess it from; the body is sealed under the
user's private-document key.

A record names its file's whole location and vault path, so it costs the mount (and the store) what
those names cost: both are held to ``PATH_MAX`` bytes (``too_long``).  With no bound, empty files
imported from 256 folders of 255-byte names cost root's shared mount ~140 KB a file, kept for as long
as the watch ran and loaded again at each start (attack round 63c (1)).  A record found past it (one
written before the bound) is dropped, its document deleted; so is one whose vault file is gone and
whose source a whole walk of the watched folder no longer saw (``Importer.drop_unseen``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import asdict, dataclass

from fusevault.crypto.keys import MasterKey
from fusevault.errors import Conflict
from fusevault.store import Store
from fusevault.store.sealed import sealed_bodies, sealed_doc
from fusevault.vault.model import alarms, names

log = logging.getLogger(__name__)

RECORD = "ImportRecord"
# Bytes a record's location or vault path may have: Linux's PATH_MAX, a path no tool of hers could open
# whole (its own source is looked up name by name, from descriptors).
PATH_MAX = 4096


@dataclass(frozen=True)
class Stamp:
    """What tells a changed source file from an unchanged one without reading it.

    Size, mtime, inode and device alone were no identity: a new file saved at an imported (and
    removed) file's name, its mtime restored (``cp -p``, ``tar x``, a build's normalised stamps), got
    the freed inode number back and the old size, and was taken as unchanged and removed, never
    imported (attack round 58c (4)).  ``ctime_ns`` is what no one sets: the kernel sets it to now at
    every change of the file (contents, mode, owner, links, a rename, a restored mtime too).  -1: a
    record saved before it was kept, equal to no file's (such a file is read once, then restamped)."""

    size: int
    mtime_ns: int
    ino: int
    dev: int
    ctime_ns: int = -1

    @classmethod
    def of(cls, st: os.stat_result) -> Stamp:
        return cls(st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, st.st_ctime_ns)

    def kept_by_rename(self, other: Stamp) -> bool:
        """Whether ``other`` may be this file under another name: all but its ctime (a rename sets
        it) equal.  Not an identity: a new file with the freed inode number passes too."""
        return (self.size, self.mtime_ns, self.ino, self.dev) == (other.size, other.mtime_ns, other.ino,
                                                                  other.dev)


@dataclass(frozen=True)
class Record:
    file_location: str  # relative to source_dir_to_watch
    stamp: Stamp
    sha256: str
    fid: str  # the vault file it became
    vault_path: str
    imported_at: int


def record_id(key: MasterKey, location: str) -> str:
    return "import-" + key.name_id(RECORD, location)


def record_doc(key: MasterKey, record: Record, rev: str | None = None) -> dict:
    return sealed_doc(key, RECORD, record_id(key, record.file_location), asdict(record), rev)


def too_long(path: str | bytes) -> bool:
    """Whether ``path`` (a location or a vault path) is past what a record may name."""
    return len(os.fsencode(path)) > PATH_MAX


# Record documents one store call deletes (each in a commit of its own) before the loop serves others:
# a drop of 100,000 in one call froze root's shared mount as a read of them did (attack round 73b (1)).
DROP_BATCH = 64


def dropped_docs(store: Store, docs: list[tuple[str, str]]) -> None:
    """The record documents ``docs`` (id, revision) deleted from the store; one changed meanwhile (from
    a peer) is left to the next load.  At most ``DROP_BATCH`` a call (``Importer._delete``)."""
    for doc_id, rev in docs:
        with contextlib.suppress(Conflict):
            store.put_many([{"_id": doc_id, "_rev": rev, "_deleted": True}])


def load_records(store: Store, key: MasterKey) -> tuple[dict[str, tuple[Record, str]], list[tuple[str, str]]]:
    """Every record of this user: file_location -> (record, document revision); and the records naming
    a path past ``PATH_MAX`` (id, revision), which the caller drops (their documents deleted, said: the
    importer saves none, ``_save``): a source one named, if its own path is within the bound, is then
    imported again once, as a file no record names (beside the vault's file at its place).  A read only:
    it walks every record document of the store (every user's), so it runs on a worker thread from a
    snapshot (``read_call``), never on the loop (attack round 73b (1))."""
    found = {}
    past: list[tuple[str, str]] = []

    def refused(doc_id: str, why: str) -> None:
        alarms.for_user(key.user_id).warn("import-record", doc_id, f"import record {doc_id} refused: {why}; "
                                          "the others stand")

    for fields, doc_id, rev in sealed_bodies(store, key, RECORD, refused):
        try:
            record = Record(**{**fields, "stamp": Stamp(**fields["stamp"])})
            if not isinstance(record.file_location, str) or not isinstance(record.vault_path, str):
                raise TypeError("a path that is not a string")
        except (KeyError, TypeError, ValueError):
            refused(doc_id, "it is malformed")
            continue
        why = names.path_problem(record.vault_path) or names.path_problem(record.file_location)
        if why is not None or not record.file_location.strip("/"):
            log.warning("import record %s refused: %s", doc_id, why or "an empty path")
            continue
        if too_long(record.file_location) or too_long(record.vault_path):
            past.append((doc_id, rev))
            continue
        found[record.file_location] = (record, rev)
    return found, past
