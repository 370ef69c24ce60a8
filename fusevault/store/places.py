"""The ``places`` table's one owner: where each content record sits in this replica's ``.vf`` files.

A manifest names each block by the version that wrote it and its index, and
its offset in the ``.vf`` of the replica that wrote it.  Records that came
from a peer are appended to this replica's ``.vf`` wherever it ends, so each
replica keeps one row per record of every committed version: written with
the version's documents (``insert_own``), or when records arrive from a peer
(``insert_arrived``, in the same transaction as the documents).  ``sha`` is
the SHA-256 of the record as it was sealed or came: a reader compares every
record it reads with it, once the version's signed digest vouched for the
list (vault/files/placements.py).  ``n`` orders rows for peers.

Its schema is part of store.sqlite's (store/local.py applies ``SCHEMA`` and
``migrate``); nothing else in the code base writes SQL against this table.
"""

from __future__ import annotations

import bisect
import logging
import math
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

SCHEMA = """
-- Where each content record of a version sits in this replica's .vf files
-- (store/places.py); idx -1 is the manifest.  n orders them for peers.
CREATE TABLE IF NOT EXISTS places (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    fid TEXT NOT NULL,
    vid TEXT NOT NULL,
    idx INTEGER NOT NULL,
    owner TEXT NOT NULL,
    offset INTEGER NOT NULL,
    length INTEGER NOT NULL,
    arrived INTEGER NOT NULL DEFAULT 0,
    sha TEXT,
    UNIQUE (fid, vid, idx)
);
-- Records whose bytes gc punched out of (or removed with) this replica's .vf,
-- one row per version: ``idxs`` their indices as runs ("-2:-1,0:9"); a peer's
-- version made before it saw the gc may still name one, which is then fetched
-- again (store/places.py ``forget``; vault/services/punched_wants.py ``inherits_punched``).
CREATE TABLE IF NOT EXISTS punched (
    fid TEXT NOT NULL,
    vid TEXT NOT NULL,
    owner TEXT NOT NULL,
    idxs TEXT NOT NULL,
    PRIMARY KEY (fid, vid)
) WITHOUT ROWID;
-- Each copy of a record placed again after gc punched it (``sha``: its SHA-256, hex): the first
-- also in ``places``, others beside it where the versions wanting it name other bytes and no
-- version of its writer's vouches for one (vault/services/punched_wants.py): a reader takes the
-- copy its version's manifest names (attack round 46a (3)).
CREATE TABLE IF NOT EXISTS copies (
    fid TEXT NOT NULL,
    vid TEXT NOT NULL,
    idx INTEGER NOT NULL,
    sha TEXT NOT NULL,
    offset INTEGER NOT NULL,
    length INTEGER NOT NULL,
    PRIMARY KEY (fid, vid, idx, sha)
) WITHOUT ROWID;
"""

_COLUMNS = "fid, vid, idx, owner, offset, length, arrived, sha"

# Files whose records placed by an arrival a reader may not have seen yet (``Places.note_arrival``):
# the newest this many kept by name, an older one counted as placed when the oldest kept was
# (a reader looks its rows up again once too often, never once too few).
_ARRIVALS_KEPT = 4096
# Bad ``copies`` rows said once each (``Places.copies_of``), at most this many named.
_BAD_COPIES_SAID = 1024

log = logging.getLogger(__name__)


def lenient_text(data: bytes) -> str:
    """A TEXT value as the store's connections read it: bytes that are no UTF-8 (a writer of the vault
    folder's, ``CAST(X'ff' AS TEXT)``) read with U+FFFD in their place, never an OperationalError out of a
    fetch that takes the whole query (every unlock, the push) down with one row (attack round 79a (2),
    (3)); what reads so then fails its own checks (JSON, a signature, a row's types)."""
    return data.decode("utf-8", "replace")


class PlaceRow(NamedTuple):
    """One record's place here.  ``idx``: a block's index, -1 the manifest, below
    it the manifest tree's nodes (vault/format/manifest_tree.py)."""

    fid: str
    vid: str
    idx: int
    owner: str
    offset: int
    length: int
    arrived: int = 0
    sha: str | None = None  # hex SHA-256 of the record; None in rows written before it was kept


def migrate(db: sqlite3.Connection) -> None:
    """Bring a store from before ``sha`` up to date (the schema itself is applied with the store's)."""
    if "sha" not in {row[1] for row in db.execute("PRAGMA table_info(places)")}:
        db.execute("ALTER TABLE places ADD COLUMN sha TEXT")


# --- writing (inside the store's transaction)

# SHA-256 (hex) of the records a Content sealed, by (fid, vid) and index, until
# the version's commit writes its place rows: the Volume builds those rows
# from ``Content.sealed`` alone.  Bounded: a version whose commit failed is
# sealed again under another id; a row written without its hash is hashed
# from the .vf when its version is first checked (vault/files/placements.py).
_WRITTEN: dict[tuple[str, str], dict[int, str]] = {}
_WRITTEN_LIMIT = 1024
_LOCK = threading.Lock()
# (fid, vid) of versions this process sealed: a node may name one as its head
# a moment before its document is committed.  Any other current version whose
# document is missing was taken away (vault/files/placements.py).
_SEALED_HERE: dict[tuple[str, str], None] = {}
_SEALED_LIMIT = 1 << 16


def note_written(fid: str, vid: str, shas: dict[int, str]) -> None:
    with _LOCK:
        while len(_WRITTEN) >= _WRITTEN_LIMIT:
            _WRITTEN.pop(next(iter(_WRITTEN)))
        _WRITTEN[(fid, vid)] = shas
        while len(_SEALED_HERE) >= _SEALED_LIMIT:
            _SEALED_HERE.pop(next(iter(_SEALED_HERE)))
        _SEALED_HERE[(fid, vid)] = None


def sealed_here(fid: str, vid: str) -> bool:
    """Whether this process sealed version ``vid`` of ``fid`` (its commit may be on its way)."""
    with _LOCK:
        return (fid, vid) in _SEALED_HERE


def insert_own(db: sqlite3.Connection, rows: Sequence[tuple]) -> None:
    """The places of the records a commit's versions wrote (``PlaceRow`` or its first 7 fields)."""
    out = []
    with _LOCK:
        taken: dict[tuple[str, str], dict[int, str]] = {}
        for row in rows:
            row = PlaceRow(*row)
            shas = taken.get((row.fid, row.vid))
            if shas is None:
                shas = taken[(row.fid, row.vid)] = _WRITTEN.pop((row.fid, row.vid), {})
            out.append(row._replace(sha=row.sha or shas.get(row.idx)))
    _insert(db, out)


def insert_arrived(db: sqlite3.Connection, rows: Sequence[PlaceRow], again: bool = False) -> None:
    """The places here of records a peer sent (each with its ``sha``): a punched one is placed again.
    ``again``: records gc punched here, fetched again (sync/punched_asks.py): each is noted in
    ``copies`` too, beside a copy placed already with other bytes (``places`` keeps the first)."""
    rows = [PlaceRow(*row)._replace(arrived=1) for row in rows]
    _insert(db, rows)
    if again:
        db.executemany("INSERT OR IGNORE INTO copies (fid, vid, idx, sha, offset, length) "
                       "VALUES (?, ?, ?, ?, ?, ?)",
                       [(row.fid, row.vid, row.idx, row.sha, row.offset, row.length)
                        for row in rows if row.sha is not None])
    placed: dict[tuple[str, str], set[int]] = {}
    for row in rows:
        placed.setdefault((row.fid, row.vid), set()).add(row.idx)
    for (fid, vid), idxs in placed.items():
        found = db.execute("SELECT idxs FROM punched WHERE fid = ? AND vid = ?", (fid, vid)).fetchone()
        if found is None or (runs := checked_runs(found[0])) is None:
            continue  # none, or not runs (``punched_of`` leaves such a row out)
        if left := _without(runs, idxs):
            db.execute("UPDATE punched SET idxs = ? WHERE fid = ? AND vid = ?", (_text(left), fid, vid))
        else:
            db.execute("DELETE FROM punched WHERE fid = ? AND vid = ?", (fid, vid))


def _insert(db: sqlite3.Connection, rows: list[PlaceRow]) -> None:
    db.executemany(f"INSERT OR IGNORE INTO places ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)


def forget(db: sqlite3.Connection, fid: str, ranges: Sequence[tuple[int, int]] | None) -> int:
    """Drop the rows of ``fid``'s records whose bytes are gone: those lying
    wholly inside one of ``ranges`` (``(offset, end)`` of its ``.vf`` that gc
    punched out), or all of them when ``ranges`` is None (the file removed).
    A row only says where bytes sit; once the bytes are gone it is garbage
    (peers cannot be sent what is no longer here either).  Each is noted
    ``punched``: a peer's version made before it saw the gc may still name it
    (attack round 41b (1)), and it is then fetched from the peer again."""
    if ranges is None:
        db.execute("DELETE FROM copies WHERE fid = ?", (fid,))
        return _forget_where(db, "fid = ?", (fid,))
    for start, end in ranges:  # a copy's bytes gone: it is no copy (``places`` notes the record punched)
        db.execute("DELETE FROM copies WHERE fid = ? AND offset >= ? AND offset + length <= ?",
                   (fid, start, end))
    return sum(_forget_where(db, "fid = ? AND offset >= ? AND offset + length <= ?", (fid, start, end))
               for start, end in ranges)


def _forget_where(db: sqlite3.Connection, where: str, args: tuple) -> int:
    gone: dict[tuple[str, str], tuple[str, set[int]]] = {}
    for fid, vid, idx, owner in db.execute(f"SELECT fid, vid, idx, owner FROM places WHERE {where}", args):
        gone.setdefault((fid, vid), (owner, set()))[1].add(idx)
    for (fid, vid), (owner, idxs) in gone.items():
        found = db.execute("SELECT idxs FROM punched WHERE fid = ? AND vid = ?", (fid, vid)).fetchone()
        # Merged as runs, never expanded: the row is the store's, whoever writes the vault folder may
        # have made it one run of billions (attack round 42a (8)); one that is not runs is replaced.
        runs = (checked_runs(found[0]) if found else None) or []
        db.execute("INSERT OR REPLACE INTO punched (fid, vid, owner, idxs) VALUES (?, ?, ?, ?)",
                   (fid, vid, owner, _text(_union(runs, _as_runs(idxs)))))
    return db.execute(f"DELETE FROM places WHERE {where}", args).rowcount


Runs = list[tuple[int, int]]  # (first, last) of each run of indices, sorted and apart
# Bounds of an index a row may hold (SQLite's integers; a record's are far inside): a store
# writer's row outside them is refused, never taken for runs.
_LOWEST, _HIGHEST = -(1 << 62), 1 << 62


def _as_runs(idxs: set[int]) -> Runs:
    """``idxs`` (a set of indices of place rows: as many as the rows) as runs."""
    out: Runs = []
    for idx in sorted(idxs):
        if out and out[-1][1] == idx - 1:
            out[-1] = (out[-1][0], idx)
        else:
            out.append((idx, idx))
    return out


def _text(runs: Runs) -> str:
    """Runs as stored: ``first:last`` (or ``first`` alone), comma-separated: a whole version is one or two."""
    return ",".join(str(first) if first == last else f"{first}:{last}" for first, last in runs)


def _union(a: Runs, b: Runs) -> Runs:
    """The runs of indices in ``a`` or ``b``: a merge of runs, whatever their lengths."""
    out: Runs = []
    for first, last in sorted(a + b):
        if out and first <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], last))
        else:
            out.append((first, last))
    return out


def _without(runs: Runs, idxs: set[int]) -> Runs:
    """``runs`` less ``idxs``: each run cut where one of them lies (the work follows ``idxs`` and
    the number of runs, not the runs' lengths)."""
    taken = sorted(idxs)
    out: Runs = []
    for first, last in runs:
        at = bisect.bisect_left(taken, first)
        while at < len(taken) and taken[at] <= last:
            if taken[at] > first:
                out.append((first, taken[at] - 1))
            first = taken[at] + 1
            at += 1
        if first <= last:
            out.append((first, last))
    return out


def run_pairs(runs: str) -> list[tuple[int, int]]:
    """``(first, last)`` of each run in ``idxs``, in order (as stored: not checked)."""
    out = []
    for run in runs.split(","):
        first, _, last = run.partition(":")
        out.append((int(first), int(last or first)))
    return out


def checked_runs(text: object) -> Runs | None:
    """The runs of a stored ``idxs``, or None when it is not runs as ``forget`` writes them (sorted,
    apart, each first <= last, within the bounds of an index): a row written by whoever writes the
    vault folder is data to check, as every row of the store (attack round 42a (8))."""
    if not isinstance(text, str):
        return None
    try:
        runs = run_pairs(text)
    except ValueError:
        return None
    below = _LOWEST - 1
    for first, last in runs:
        if not below < first <= last <= _HIGHEST:
            return None
        below = last
    return runs


def _checked_copy(sha: object, offset: object, length: object) -> bytes | None:
    """The SHA-256 of a stored ``copies`` row, or None when the row is not one ``insert_arrived``
    writes (64-hex text, non-negative int offset and length in bounds): a row in the vault folder
    is data to check, and one bad row must not stop an unlock or a read (attack round 50a (4))."""
    if not (isinstance(sha, str) and len(sha) == 64 and isinstance(offset, int) and isinstance(length, int)):
        return None
    if not (0 <= offset <= _HIGHEST and 0 <= length <= _HIGHEST):
        return None
    try:
        return bytes.fromhex(sha)
    except ValueError:
        return None


# What a row may place (attack round 78c (1), (4)): a block's record is at most the largest block size
# and its seal (vault/format/manifest.py ``FULL_RECORD``: the store does not import the vault,
# tests/unit/test_store_places.py holds them equal).  A manifest or a node of its tree has no smaller
# bound than what one read of Linux returns (a record longer could never be read back whole): past it a
# length is no record's.  (A length too short reads as a damaged record: no bound needed below.)
_BLOCK_MOST = 4 + 1 + 12 + 16 + (64 << 10)
_RECORD_MOST = 0x7FFFF000


def checked_place(idx: object, offset: object, length: object) -> bool:
    """Whether a stored row's ``idx``, ``offset`` and ``length`` are a place fusevault writes: integers,
    the offset in a ``.vf``'s bounds, the length a record's.  A row in the vault folder is data to check:
    its length goes to a read, which must not be a text, negative or a terabyte (attack round 78c (1))."""
    if not (type(idx) is int and type(offset) is int and type(length) is int):
        return False
    most = _BLOCK_MOST if idx >= 0 else _RECORD_MOST
    return _LOWEST <= idx <= _HIGHEST and 0 <= offset <= _HIGHEST and 0 <= length <= most


def checked_row(row: PlaceRow) -> bool:
    """Whether ``row`` is one fusevault writes: text ids, a place ``checked_place`` takes."""
    return (isinstance(row.fid, str) and isinstance(row.vid, str) and isinstance(row.owner, str)
            and checked_place(row.idx, row.offset, row.length))


# Bad ``places`` rows said (``_said_bad``), at most this many named: each said once, not at every look.
_BAD_PLACES_SAID = 1024
_BAD_PLACES: set[tuple[str, str, str]] = set()


def _said_bad(fid: object, vid: object, idx: object) -> None:
    key = (repr(fid)[:80], repr(vid)[:80], repr(idx)[:40])  # the row's own values may be large blobs
    with _LOCK:
        if key in _BAD_PLACES or len(_BAD_PLACES) > _BAD_PLACES_SAID:
            return
        _BAD_PLACES.add(key)
        full = len(_BAD_PLACES) > _BAD_PLACES_SAID
    if full:
        log.warning("more bad places rows: left out, not said again")
    else:
        log.warning("a places row of store.sqlite that fusevault never writes, left out (the record it "
                    "names reads as damaged): file %s, version %s, record %s", *key)


def in_runs(runs: list[tuple[int, int]], idx: int) -> bool:
    """Whether ``idx`` lies in one of ``runs`` (sorted, apart)."""
    at = bisect.bisect_right(runs, (idx, math.inf)) - 1
    return at >= 0 and runs[at][0] <= idx <= runs[at][1]


def overlap(runs: list[tuple[int, int]], first: int, last: int) -> Runs:
    """The parts of ``runs`` (sorted, apart) within ``first..last``, cut to it: a caller expands
    only indices it names itself (``last - first`` bounds the work), never a stored run."""
    at = max(bisect.bisect_right(runs, (first, math.inf)) - 1, 0)
    out: Runs = []
    while at < len(runs) and runs[at][0] <= last:
        low, high = max(runs[at][0], first), min(runs[at][1], last)
        if low <= high:
            out.append((low, high))
        at += 1
    return out


def set_shas(db: sqlite3.Connection, shas: Sequence[tuple[str, str, str, int]]) -> int:
    """Write the hashes ``(sha, fid, vid, idx)`` of rows kept without one (``fusevault upgrade``):
    a row that has one keeps it.  How many were written."""
    return sum(db.execute("UPDATE places SET sha = ? WHERE fid = ? AND vid = ? AND idx = ? AND sha IS NULL",
                          row).rowcount for row in shas)


# --- reading, with the store's connection (the sync service, on the trio thread)


def unhashed(db: sqlite3.Connection, after: int, limit: int) -> list[tuple[int, PlaceRow]]:
    """Rows after ``n`` kept without their hash (written before ``sha`` was kept), each with its ``n``."""
    rows = db.execute(f"SELECT n, {_COLUMNS} FROM places WHERE n > ? AND sha IS NULL ORDER BY n LIMIT ?",
                      (after, limit))
    return [(row[0], PlaceRow(*row[1:])) for row in rows.fetchall()]


def since(db: sqlite3.Connection, n: int, limit: int) -> list[tuple[int, PlaceRow]]:
    """Rows after ``n`` in the order they were written, each with its ``n``: what peers are sent.
    A row fusevault never writes (``checked_row``) is said once and left out, never sent: one planted
    row stopped every later push (attack round 78c (4)); past a batch of them the next rows are read."""
    while True:
        rows = db.execute(f"SELECT n, {_COLUMNS} FROM places WHERE n > ? ORDER BY n LIMIT ?",
                          (n, limit)).fetchall()
        out = []
        for row in rows:
            place = PlaceRow(*row[1:])
            if checked_row(place):
                out.append((row[0], place))
            else:
                _said_bad(place.fid, place.vid, place.idx)
        if out or len(rows) < limit:
            return out
        n = rows[-1][0]


def count_since(db: sqlite3.Connection, n: int) -> int:
    (count,) = db.execute("SELECT COUNT(*) FROM places WHERE n > ?", (n,)).fetchone()
    return count


def find(db: sqlite3.Connection, fid: str, vid: str, idx: int) -> PlaceRow | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM places WHERE fid = ? AND vid = ? AND idx = ?",
                     (fid, vid, idx)).fetchone()
    return None if row is None else PlaceRow(*row)


PLACED_BATCH = 200  # records looked up per query by ``placed`` (3 parameters each: under SQLite's 999)


def placed(db: sqlite3.Connection, records: list[tuple[str, str, int]]) -> set[tuple[str, str, int]]:
    """Those of ``records`` (fid, vid, idx) that have a place here: one query per ``PLACED_BATCH``
    (each term a search of the unique index: SQLite's OR of indexed terms), not one per record."""
    out: set[tuple[str, str, int]] = set()
    for start in range(0, len(records), PLACED_BATCH):
        batch = records[start:start + PLACED_BATCH]
        terms = " OR ".join(["(fid = ? AND vid = ? AND idx = ?)"] * len(batch))
        params = [value for record in batch for value in record]
        out.update(db.execute(f"SELECT fid, vid, idx FROM places WHERE {terms}", params).fetchall())
    return out


def placed_shas(db: sqlite3.Connection, records: list[tuple[str, str, int]]
                ) -> dict[tuple[str, str, int], set[str | None]]:
    """Those of ``records`` (fid, vid, idx) that have a place here, each with the SHA-256s (hex) of
    its copies here: the one ``places`` keeps (None in a row from before ``sha``) and those in
    ``copies``.  One query per ``PLACED_BATCH`` and table (``placed``)."""
    out: dict[tuple[str, str, int], set[str | None]] = {}
    for table in ("places", "copies"):
        for start in range(0, len(records), PLACED_BATCH):
            batch = records[start:start + PLACED_BATCH]
            terms = " OR ".join(["(fid = ? AND vid = ? AND idx = ?)"] * len(batch))
            params = [value for record in batch for value in record]
            for fid, vid, idx, sha in db.execute(f"SELECT fid, vid, idx, sha FROM {table} WHERE {terms}",
                                                 params):
                out.setdefault((fid, vid, idx), set()).add(sha)
    return out


# Files named in one query of ``punched_among`` (under SQLite's least limit of bound variables).
_FIDS_PER_QUERY = 500


Record = tuple[str, str, int]  # (fid, vid, idx)


def punched_among(db: sqlite3.Connection, records: Sequence[Record]) -> set[Record]:
    """Which of ``records`` ((fid, vid, idx) each) are on the punched list: one query for a peer's
    batch (its files), not one per record.  A row that is not runs is left out (``punched_of``)."""
    fids = sorted({fid for fid, _, _ in records})
    runs: dict[tuple[str, str], Runs] = {}
    for start in range(0, len(fids), _FIDS_PER_QUERY):
        part = fids[start:start + _FIDS_PER_QUERY]
        query = f"SELECT fid, vid, idxs FROM punched WHERE fid IN ({', '.join('?' * len(part))})"
        for fid, vid, idxs in db.execute(query, part):
            if (checked := checked_runs(idxs)) is not None:
                runs[(fid, vid)] = checked
    return {(fid, vid, idx) for fid, vid, idx in records
            if (found := runs.get((fid, vid))) is not None and in_runs(found, idx)}


# --- reading, from any thread (readers of file contents)


class Places:
    """Read access for the readers of file contents.

    Reads come from the trio thread and from worker threads: each thread has
    its own read-only SQLite connection (WAL lets them read while the mount
    writes).  ``alarms``: where refused records are reported (the Alarms of
    each user of the mount; vault/files/placements.py raises them)."""

    # Whether this replica keeps a row per record (a vault kept in CouchDB
    # does not: store/couch.py ``CouchPlaces``, vault/files/placements.py).
    rows_kept = True

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._arrived: bool | None = None
        # How many arrivals placed records (``note_arrival``), and the last of them that placed
        # records of each file: an open reader compares it with the count it looked its rows up at
        # (vault/files/content.py ``where``), so a record placed after it looked is seen (attack round
        # 51a (1)).  ``_placed_floor``: the arrival of the newest file dropped from ``_placed_at``.
        self._arrivals = 0
        self._placed_at: dict[str, int] = {}
        self._placed_floor = 0
        self._arrivals_lock = threading.Lock()
        self._bad_copies: set[tuple[str, str, str]] = set()  # said once each (``copies_of``)
        self.alarms: list = []
        # (fid, vid) of versions whose records were refused: for the life of the process.
        self.refused: set[tuple[str, str]] = set()
        # (fid, vid) -> the hashes its signed digest vouched for (None: a version
        # from before digests): each version is checked once per process.
        self.vouched: dict[tuple[str, str], dict[int, bytes] | None] = {}
        # Whether a version document may be trusted: its signature and author
        # (vault/tree/authorship.py ``version_ok``); set by the mount (``judge_as``).
        self.admit: Callable[[dict], bool] | None = None
        self._judges: dict[str, Callable[[dict], bool]] = {}
        # user -> (fid, vid) -> that user's judge's verdict on the version's document,
        # dropped when the user's tree loads again: ``vouched`` holds the record check
        # (the same for every reader), this which views admitted the document; one
        # user's stale view never vouches to another (``admits``, ``judged``).
        self._verdicts: dict[str, dict[tuple[str, str], bool]] = {}
        self._owners: dict[tuple[str, str], object] = {}  # (fid, vid) -> its document's clear owner

    def judge_as(self, user_id: str, judge: Callable[[dict], bool]) -> None:
        """``judge``: how user ``user_id``'s loaded tree admits a version document.
        A mount shared by several users holds one judge each (the latest load of
        each): a version is judged by its file's owner's, who knows the file and
        the grants on it; while the owner is not loaded here, every loaded user's
        judge must admit it (one that does not hold the file in its tree knows
        only that the writer holds WRITE on something of the owner's)."""
        self._judges[user_id] = judge
        self._verdicts[user_id] = {}
        self.admit = self._judge

    def forget_judge(self, user_id: str) -> None:
        """The user locked: their view judges nothing any more (and no longer holds
        their tree, and through it their keys).  With no judge left nothing is
        admitted until a user unlocks again."""
        self._judges.pop(user_id, None)
        self._verdicts.pop(user_id, None)

    def _judge(self, doc: dict) -> bool:
        judges = dict(self._judges)
        if not judges:
            return False
        owner = doc.get("owner")
        if isinstance(owner, str) and owner in judges:
            return judges[owner](doc)
        return all(judge(doc) for judge in judges.values())

    def _deciding(self, owner: object) -> dict[str, Callable[[dict], bool]]:
        judges = dict(self._judges)
        if isinstance(owner, str) and owner in judges:
            return {owner: judges[owner]}
        return judges

    def admits(self, fid: str, vid: str, doc: dict) -> bool:
        """Whether the judges that decide (``_judge``) admit version ``vid``'s document,
        each judge asked once per version (until its user's tree loads again)."""
        owner = doc.get("owner")
        self._owners[(fid, vid)] = owner
        deciding = self._deciding(owner)
        if not deciding:  # every user locked: no view to judge with
            return False
        for user_id, judge in deciding.items():
            verdicts = self._verdicts.setdefault(user_id, {})
            verdict = verdicts.get((fid, vid))
            if verdict is None:
                verdict = verdicts[(fid, vid)] = bool(judge(doc))
            if not verdict:
                return False
        return True

    def admits_now(self, fid: str, vid: str, doc: dict) -> bool:
        """Whether the judges that decide admit version ``vid``'s document now, a verdict cached
        (``admits``) counting as given; a verdict made here is not cached.  For a look that may run
        before the take of the revision that brings the writer's grant: a refusal cached then would
        outlive the take (attack round 46a (2)); the next look judges again (47a (1))."""
        owner = doc.get("owner")
        deciding = self._deciding(owner)
        if not deciding:  # every user locked: no view to judge with
            return False
        for user_id, judge in deciding.items():
            verdict = self._verdicts.get(user_id, {}).get((fid, vid))
            if not (bool(judge(doc)) if verdict is None else verdict):
                return False
        return True

    def judged(self, fid: str, vid: str) -> bool:
        """Whether every judge that decides now has admitted version ``vid`` (a version
        vouched for under other judges is judged again: ``version_shas``).  A version
        this process sealed needs none (its writer's rights were checked as it wrote)."""
        if sealed_here(fid, vid) or self.admit is None:  # sealed here, or no judging (no identities)
            return True
        if not self._judges:  # every user locked
            return False
        if (fid, vid) not in self._owners:
            return False
        return all(self._verdicts.get(user_id, {}).get((fid, vid)) is True
                   for user_id in self._deciding(self._owners[(fid, vid)]))

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                                  check_same_thread=False)
            db.text_factory = lenient_text
        return db

    @property
    def any_arrived(self) -> bool:
        """Whether any record came from a peer (a vault that never synced reads as before)."""
        if self._arrived is None:
            try:
                self._arrived = self._db().execute(
                    "SELECT 1 FROM places WHERE arrived = 1 LIMIT 1").fetchone() is not None
            except sqlite3.Error:  # no store yet, or one from before sync
                return False
        return self._arrived

    def note_arrival(self, fids: Iterable[str] | None = None) -> None:
        """Records came from a peer and their rows are committed (``insert_arrived``): of the files
        ``fids`` (None: of any file, every reader looks its rows up again)."""
        self._arrived = True
        with self._arrivals_lock:
            self._arrivals += 1
            if fids is None:
                self._placed_floor = self._arrivals
                self._placed_at.clear()
                return
            for fid in set(fids):
                self._placed_at.pop(fid, None)  # to the end: the dict stays in arrival order
                self._placed_at[fid] = self._arrivals
            while len(self._placed_at) > _ARRIVALS_KEPT:
                oldest = next(iter(self._placed_at))
                self._placed_floor = self._placed_at[oldest]  # raised before the pop: no reader misses it
                del self._placed_at[oldest]

    @property
    def arrivals(self) -> int:
        """How many arrivals placed records so far: what a reader looking its rows up now has seen."""
        return self._arrivals

    def placed_since(self, fid: str, seen: int) -> bool:
        """Whether an arrival after the ``seen``-th (``arrivals``) placed records of ``fid`` (or may
        have): one dict look-up, for every read of a file."""
        return self._placed_at.get(fid, self._placed_floor) > seen

    def arrived_of(self, fid: str) -> dict[tuple[str, int], tuple[int, int] | None]:
        """(vid, idx) -> (offset, length) here of the records of ``fid`` that came from peers; None for
        a row fusevault never writes (``checked_place``: said once): that record has no place here, its
        read is refused as damaged (attack round 78c (1): its length went to a read unchecked)."""
        rows = self._db().execute(
            "SELECT vid, idx, offset, length FROM places WHERE fid = ? AND arrived = 1", (fid,))
        out: dict[tuple[str, int], tuple[int, int] | None] = {}
        for vid, idx, offset, length in rows:
            if checked_place(idx, offset, length):
                out[(vid, idx)] = (offset, length)
            else:
                _said_bad(fid, vid, idx)
                out[(vid, idx)] = None
        return out

    def copies_of(self, fid: str) -> dict[tuple[str, int], dict[bytes, tuple[int, int]]]:
        """(vid, idx) -> SHA-256 -> (offset, length) of each copy of ``fid``'s records placed again
        after gc punched them (``copies``): a reader takes the one its manifest names."""
        try:
            rows = self._db().execute("SELECT vid, idx, sha, offset, length FROM copies WHERE fid = ?",
                                      (fid,))
            out: dict[tuple[str, int], dict[bytes, tuple[int, int]]] = {}
            for vid, idx, sha, offset, length in rows:
                digest = _checked_copy(sha, offset, length)
                if digest is None:  # a planted row: skip it, as ``checked_runs`` does (attack round 50a (4))
                    self._bad_copies_row(fid, vid, idx)
                    continue
                out.setdefault((vid, idx), {})[digest] = (offset, length)
        except sqlite3.OperationalError:  # a store from before the table (read-only)
            return {}
        return out

    def _bad_copies_row(self, fid: str, vid: object, idx: object) -> None:
        """Said once per row (up to ``_BAD_COPIES_SAID`` rows), not at every look-up of the file's
        copies: each reader of it, and each arrival, looks them up (attack round 51a (1))."""
        key = (fid, repr(vid)[:80], repr(idx)[:40])  # the row's own values may be large blobs
        if key in self._bad_copies or len(self._bad_copies) > _BAD_COPIES_SAID:
            return
        self._bad_copies.add(key)
        if len(self._bad_copies) > _BAD_COPIES_SAID:
            log.warning("more bad copies rows: skipped, not said again")
            return
        log.warning("skipping a bad copies row of %r (%s, %s)", fid, *key[1:])

    def placed_shas(self, records: list[tuple[str, str, int]]) -> dict[tuple[str, str, int], set[str | None]]:
        """``records`` placed here with the hashes of their copies (module ``placed_shas``), from any
        thread."""
        return placed_shas(self._db(), records)

    def placed(self, records: list[tuple[str, str, int]]) -> set[tuple[str, str, int]]:
        """Those of ``records`` (fid, vid, idx) that have a place here (module ``placed``), from any
        thread: a worker thread's lookups keep the loop free."""
        return placed(self._db(), records)

    def of_version(self, fid: str, vid: str) -> list[PlaceRow]:
        """Every record version ``vid`` of ``fid`` wrote, in index order.  A row fusevault never writes
        (``checked_row``) is said once and left out: its record is not here (attack round 78c (1))."""
        rows = self._db().execute(f"SELECT {_COLUMNS} FROM places WHERE fid = ? AND vid = ? ORDER BY idx",
                                  (fid, vid))
        out = []
        for row in rows:
            place = PlaceRow(*row)
            if checked_row(place):
                out.append(place)
            else:
                _said_bad(fid, vid, place.idx)
        return out

    def punched_of(self, fid: str) -> dict[str, tuple[str, list[tuple[int, int]]]]:
        """vid -> (owner, runs of indices) of ``fid``'s records gc punched out here and no peer sent
        again (runs, not indices: a dropped version of a large file is one or two)."""
        try:
            rows = self._db().execute("SELECT vid, owner, idxs FROM punched WHERE fid = ?", (fid,)).fetchall()
        except sqlite3.OperationalError:  # a store opened read-only before the table was made
            return {}
        out = {}
        for vid, owner, idxs in rows:
            if (runs := checked_runs(idxs)) is None:
                log.warning("file %s: a punched row of version %s is not runs of indices: left out", fid, vid)
            else:
                out[vid] = (owner, runs)
        return out

    def punched_files(self) -> list[str]:
        """Every file with records gc punched out here, or with a record placed again since in two or
        more copies (``copies``: something for a version to choose).  A record placed again once is
        read as ``places`` has it and is no reason to walk the file: listed, a file whose records were
        fetched back once had its manifest loaded at every unlock for as long as gc kept the copy
        (attack round 50a (1))."""
        try:
            return [fid for (fid,) in self._db().execute(
                "SELECT fid FROM punched UNION "
                "SELECT fid FROM copies GROUP BY fid, vid, idx HAVING COUNT(*) > 1")]
        except sqlite3.OperationalError:  # a store opened read-only before the table was made
            return []

    def came_from_peer(self, fid: str, vid: str) -> bool:
        """Whether version ``vid``'s manifest record arrived from a peer (was not written here)."""
        row = self._db().execute("SELECT arrived FROM places WHERE fid = ? AND vid = ? AND idx = -1",
                                 (fid, vid)).fetchone()
        return row is not None and bool(row[0])

    def held(self, fid: str, vid: str) -> tuple[bool, int]:
        """Whether version ``vid``'s manifest record is here, and how many of its other records."""
        manifest, others = self._db().execute(
            "SELECT COALESCE(SUM(idx = -1), 0), COALESCE(SUM(idx != -1), 0) FROM places "
            "WHERE fid = ? AND vid = ?", (fid, vid)).fetchone()
        return bool(manifest), others

    def document_body(self, doc_id: str) -> str | None:
        """The body of a live document of the same store (a version's, to check its records with)."""
        row = self._db().execute("SELECT body FROM docs WHERE id = ? AND deleted = 0", (doc_id,)).fetchone()
        return None if row is None else row[0]
