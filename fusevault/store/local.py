"""The embedded document store: SQLite in WAL mode inside the vault directory.

A commit is one SQLite transaction, so ``kill -9`` leaves either all of a
batch or none of it.  Commits do not fsync (synchronous=NORMAL keeps the WAL
consistent after a process crash); ``sync()`` fsyncs the WAL when a program
asks for durability with fsync().

Nothing here opens ``store.sqlite`` itself outside SQLite.  SQLite's WAL mode
relies on POSIX advisory locks, and a process loses every such lock on a file
the moment it closes *any* descriptor of it: one stray ``open``/``close`` of
the database and the next program that opens and closes the vault
(``fusevault info``, ``sqlite3``) believes itself its last user, checkpoints
and deletes the WAL and shared-memory files under us, and every later commit
goes to an unlinked file.  ``check_linked`` is the tripwire for that.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from fusevault.encoding import RefusedJson, loads_untrusted
from fusevault.errors import Conflict, CorruptData, NoSpace, StoreUnavailable, VaultReadOnly
from fusevault.store import places as places_table
from fusevault.store import short_calls
from fusevault.store.revs import next_rev, well_formed
from fusevault.store.unreadable import Unreadable

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    id TEXT PRIMARY KEY,
    rev TEXT NOT NULL,
    seq INTEGER NOT NULL UNIQUE,
    deleted INTEGER NOT NULL DEFAULT 0,
    type TEXT,
    body TEXT NOT NULL
);
-- Revisions of other branches, after peers edited a document concurrently
-- (store/replica.py): kept so that every replica holds the same revisions.
CREATE TABLE IF NOT EXISTS leaves (
    id TEXT NOT NULL,
    rev TEXT NOT NULL,
    revs TEXT NOT NULL,
    deleted INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (id, rev)
);
-- This replica's own bookkeeping (sync checkpoints): never replicated.
CREATE TABLE IF NOT EXISTS local_docs (
    id TEXT PRIMARY KEY,
    body TEXT NOT NULL
);
""" + places_table.SCHEMA  # the places of content records: store/places.py owns that table
# The indexes of ``docs``, each exactly as ``sqlite_master`` keeps it (``_settle_indexes``).  Made apart
# from SCHEMA: ``CREATE INDEX IF NOT EXISTS`` checks a name only, and kept an impostor of that name (an
# index on other columns a writer of the vault folder made) under which the selections scanned the table
# and one body SQLite calls no JSON stopped every unlock (attack round 80b (1)).
# The JSON ones are partial over the bodies that are JSON: SQLite then never computes an entry of a body
# that is none, so no planted body can make them fail at a write or a REINDEX (which dropped the index,
# every selection by file a scan of the whole table, at every open: attack round 81a (5)); the selections
# say ``_JSON`` and ``deleted = 0`` too, for SQLite uses a partial index only where the query implies it.
INDEXES = {
    "docs_type": "CREATE INDEX docs_type ON docs(type) WHERE deleted = 0",
    "docs_fid": "CREATE INDEX docs_fid ON docs(json_extract(body, '$.fid')) WHERE deleted = 0 "
                "AND json_valid(body)",
    # A document's kind as its body says (``iter_type``, ``by_file``): the clear ``type`` column is kept
    # for older code only, never read (a writer of the vault folder may change it: attack round 78c (3)).
    "docs_kind": "CREATE INDEX docs_kind ON docs(json_extract(body, '$.type')) WHERE deleted = 0 "
                 "AND json_valid(body)",
}
# What an older fusevault made of them (before 81a (5)): made again at open, not said as a writer's.
OLDER_INDEXES = {
    "docs_fid": "CREATE INDEX docs_fid ON docs(json_extract(body, '$.fid')) WHERE deleted = 0",
    "docs_kind": "CREATE INDEX docs_kind ON docs(json_extract(body, '$.type')) WHERE deleted = 0",
}
# The indexes whose entries SQLite computes from the body: rebuilt at each open (``_settle_indexes``), for
# a writer of the schema (``PRAGMA writable_schema``) can leave their entries at what a body said before:
# her file selected as another kind, or a body that is no JSON still selected (attack round 80b (1), (4)).
JSON_INDEXES = ("docs_kind", "docs_fid")
# Every object fusevault makes in store.sqlite is a table of SCHEMA, an index of INDEXES, or an index
# SQLite makes for a table's PRIMARY KEY or UNIQUE (``sqlite_autoindex_<table>_<n>``, no SQL text).  Any
# other index, trigger or view, and the planner's statistics (``sqlite_stat1``, ``sqlite_stat4``), is a
# writer of the vault folder's, dropped at open, said: an index of another name on a body's kind, left
# stale, was chosen over ``docs_kind`` and hid her file (attack round 81a (1)); a trigger ran inside her
# own commits and moved her row below the push's checkpoint (81a (2)), or ran an endless query (81a (3)).
# (A table of another name is kept: no query of fusevault's reads it.)
_STATISTICS = "sqlite_stat"
# How to drop what holds an index's name in ``sqlite_master`` (any kind of schema object has one).
_DROPPABLE = {"index": "INDEX", "table": "TABLE", "view": "VIEW", "trigger": "TRIGGER"}
INCREMENTAL = 2  # PRAGMA auto_vacuum's value for step-by-step freeing
COMPACT_STEP = 256  # pages (1 MiB at 4 KiB) a compact() call gives back
COMPACT_MIN_PAGES = 64  # less free (256 KiB at 4 KiB pages) is not worth a step
WAL_LIMIT = 4 << 20

REVS_LIMIT = 100  # revisions of history kept per document, as CouchDB's _revs_limit
# The store's change counter is this replica's own, one a document written: it never comes near this.
# A row whose ``seq`` is not a whole number in 1..SEQ_LIMIT - 1 was put there by a writer of the vault
# folder (``seq INTEGER`` is only an affinity: SQLite keeps 1e300 or "x" as they are, and 2**63-1 has no
# next): it is left out of the counter and of the changes, so it can neither give every later document one
# clashing seq nor stall a reader of the changes.  A row AT the limit too: counted, it gave her next commit
# a seq past it, which no push read nor the sync status counted, and every later commit a clashing one
# (attack round 80b (3)); a commit that would reach the limit is refused, said (``write_doc``).
SEQ_LIMIT = 1 << 62
# A row's kind, as its body says (the index ``docs_kind`` holds it): the expression must be written
# exactly as the index's for SQLite to use it.
_KIND = "json_extract(body, '$.type')"
_FID = "json_extract(body, '$.fid')"  # as the index ``docs_fid`` holds it
# Before either, in a selection: SQLite's JSON functions raise for a body that is no JSON (a writer of the
# vault folder's, past the indexes: ``PRAGMA writable_schema``), and one such row stopped the whole query,
# every unlock (attack round 80b (1)).  As the first term of the WHERE it is tested first on each row the
# table gives (a scan: no index, or one being rebuilt), and the index (``_KIND = ?``) is still used.
_JSON = "json_valid(body)"
WHOLE_SEQ = f"typeof(seq) = 'integer' AND seq BETWEEN 1 AND {SEQ_LIMIT - 1}"
# The rows of the changes after a seq (the ``?``, at least 0): a whole seq and an id that is text (a BLOB
# id is none of fusevault's either).  Its lower bound first: SQLite scans the seq index from it (with
# BETWEEN 1 too it scanned from 1: 50 ms a watcher's turn at 200,000 rows).
AFTER = f"seq > ? AND seq < {SEQ_LIMIT} AND typeof(seq) = 'integer' AND typeof(id) = 'text'"


def _migrate(db: sqlite3.Connection) -> None:
    """Bring an older store's tables up to date (SCHEMA made the missing ones)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(docs)")}
    if "revs" not in columns:  # a vault from before sync: history starts now
        db.execute("ALTER TABLE docs ADD COLUMN revs TEXT")
    places_table.migrate(db)


@functools.cache
def _table_texts() -> dict[str, frozenset[str]]:
    """Each table's definition as ``sqlite_master`` keeps it when fusevault made it, by name: SCHEMA
    applied to an empty database, before and after ``_migrate``, and so a ``places`` from before ``sha``.
    The one test of a table (attack round 81a (3)): ``CREATE TABLE IF NOT EXISTS`` checks a name only,
    and kept a view in the place of ``docs`` whose endless query hung every open, or a table of other
    columns or constraints."""
    texts: dict[str, set[str]] = {}
    for schema in (SCHEMA, SCHEMA.replace("    sha TEXT,\n", "")):  # places before its sha column
        db = sqlite3.connect(":memory:", isolation_level=None)
        try:
            db.executescript(schema)
            for _ in range(2):
                for name, sql in db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"):
                    texts.setdefault(name, set()).add(sql)
                _migrate(db)
        finally:
            db.close()
    return {name: frozenset(sqls) for name, sqls in texts.items()}


def _ours(kind: str, name: str, table: str, sql: object) -> bool:
    """Whether a ``sqlite_master`` row is one fusevault makes (or settles itself: INDEXES' names)."""
    if name in INDEXES or name in _table_texts():
        return True
    if kind == "index":
        return sql is None and table in _table_texts() and name.startswith(f"sqlite_autoindex_{table}_")
    return kind == "table" and not name.startswith(_STATISTICS)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def history_of(rev: str, revs: str | None) -> list[str]:
    """A document's revisions, newest first (a document from before sync knows only its own).
    Both columns are the vault folder's writer's to set: a ``rev`` that is no revision has no
    history, and of ``revs`` only revisions count (none: ``rev`` alone)."""
    if not well_formed(rev):
        return []
    try:
        history = loads_untrusted(revs) if isinstance(revs, str) and revs else None
    except ValueError:
        history = None
    kept = [r for r in history if well_formed(r)] if isinstance(history, list) else []
    return kept or [rev]


def _translate(err: sqlite3.Error) -> Exception:
    text = str(err).lower()
    if "full" in text:
        return NoSpace("the disk holding the vault is full")
    if "readonly" in text or "read-only" in text:
        return VaultReadOnly("the vault directory is read-only")
    if "malformed" in text or "not a database" in text:
        return CorruptData("the vault's document store is damaged")
    return StoreUnavailable(f"document store error: {err}")


def _whole(seq: object) -> int:
    """``seq`` as a seq of this store, 0 if it is none (not a whole number in 0..SEQ_LIMIT - 1)."""
    if isinstance(seq, str) and seq.isascii() and seq.isdigit() and len(seq) < 20:
        seq = int(seq)
    return seq if isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq < SEQ_LIMIT else 0


def _agree(said: object, sql: object) -> bool:
    """Whether a body's kind or file as Python reads it (``said``) is SQLite's (``sql``, what the
    selections go by).  A value that is no text (a list, a number: a malformed document, judged where it
    is read) is none that selects it as any kind or file: only text and a missing key are compared."""
    return said == sql or not isinstance(said, str | None)


def _no_link(path: Path) -> None:
    """The store file is a regular file or none (SQLite makes it), never a link: SQLite follows one for
    the database (its -wal and -shm it opens O_NOFOLLOW itself), so ``store.sqlite -> /etc/nologin``,
    put there by whoever may write the vault folder, would have root's shared mount make and write that
    file.  (A link made between this check and SQLite's open is not caught.)"""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        raise CorruptData(f"refused the vault's document store {path}: not a regular file (a symbolic "
                          "link?), which fusevault never follows")


class LocalStore:
    inline = True
    # Write transactions committed by this process (all stores): a debug
    # counter, reported with FUSEVAULT_OP_STATS (fs/boundary.py, bench/ops.py).
    commits = 0

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.broken: str | None = None  # why commits are refused (check_linked)
        self._dir_synced = False
        # The store's descriptors the last full check found, each with its name and file (check_linked).
        self._known_files: list[tuple[int, str, tuple[int, int]]] = []
        # The read connection of a worker thread inside ``reading`` (none elsewhere).
        self._local = threading.local()
        _no_link(self.path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.text_factory = places_table.lenient_text
            # Before any table: a new store frees pages step by step (compact).
            # Only then: on an existing store even setting it writes (and a
            # full disk must not keep a vault from mounting).
            if self._db.execute("PRAGMA page_count").fetchone()[0] == 0:
                self._db.execute(f"PRAGMA auto_vacuum = {INCREMENTAL}")
            self._db.execute("PRAGMA journal_mode=WAL")
            # The WAL is cut back to this after each checkpoint, not left at its largest.
            self._db.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            self._settle_schema()
            # Out of range only (a TEXT or BLOB sorts above every number): two index
            # searches, not a scan at every open; a fraction such as 5.5 goes unsaid.
            (odd,) = self._db.execute(
                f"SELECT COUNT(*) FROM docs WHERE seq < 1 OR seq >= {SEQ_LIMIT}").fetchone()
        except sqlite3.Error as err:
            self._db.close()
            raise _translate(err) from None
        except CorruptData:
            self._db.close()
            raise
        if odd:
            log.warning("store %s: %d row(s) whose seq is none of fusevault's (a writer of the vault "
                        "folder's): left out of the changes", self.path, odd)
        self.check_linked()

    def _settle_schema(self) -> None:
        """The schema exactly fusevault's (attack round 81a): its tables as it makes them (else refused),
        every other index, trigger, view and the planner's statistics dropped, its indexes as INDEXES
        says and rebuilt.  Where a step cannot be done (a store she may read and not write), the indexes
        are not trusted: the selections read every row (``_docs``), said (81a (6))."""
        self._indexed = True
        self._refuse_other_tables()
        _migrate(self._db)
        self._drop_foreign()
        self._settle_indexes()
        if not self._indexed:
            log.warning("store %s: its indexes could not be checked or rebuilt (a store that cannot be "
                        "written?): the selections by kind and file read every row", self.path)

    def _refuse_other_tables(self) -> None:
        """Each table fusevault uses is a table as fusevault made it, or the store is refused, one line."""
        texts = _table_texts()
        marks = ",".join("?" * len(texts))
        found = {name: (kind, sql) for name, kind, sql in self._db.execute(
            f"SELECT name, type, sql FROM sqlite_master WHERE name IN ({marks})", tuple(texts))}
        for name, sqls in texts.items():
            kind, sql = found.get(name, ("none", None))
            if kind != "table" or sql not in sqls:
                what = "not the table fusevault makes" if kind == "table" else f"a {kind}, not a table"
                raise CorruptData(f"refused the vault's document store {self.path}: its {name} is {what} "
                                  "(a writer of the vault folder's?)")

    def _drop_foreign(self) -> None:
        """Drop every object of ``sqlite_master`` that fusevault never makes (``_ours``), each said once by
        its kind and name (never its SQL: the writer's text)."""
        rows = self._db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
        for kind, name, table, sql in rows:
            if _ours(kind, name, table, sql):
                continue
            log.warning("store %s: %s %r is none fusevault makes (a writer of the vault folder's): dropped",
                        self.path, kind, str(name)[:80])
            try:
                self._db.execute(f"DROP {_DROPPABLE[kind]} IF EXISTS {_quoted(name)}")
            except (KeyError, sqlite3.Error) as err:
                log.warning("store %s: %s %r not dropped (%s)", self.path, kind, str(name)[:80], err)
                self._indexed = False

    @property
    def _docs(self) -> str:
        """``docs`` as the selections by kind and file name it: ``NOT INDEXED`` where the open could not
        drop what is not fusevault's or rebuild its JSON indexes (a store she cannot write): a stale entry
        hid her file, unsaid (attack round 81a (6))."""
        return "docs" if self._indexed else "docs NOT INDEXED"

    def _settle_indexes(self) -> None:
        """Each index of ``docs`` exactly as INDEXES says (another of its name, an impostor a writer of
        the vault folder made, dropped and made again), and the JSON indexes rebuilt: their entries are
        SQLite's reading of each body when it was last written through an honest schema, which a writer
        of the schema can leave at another kind or file (attack round 80b (1), (4)).  An index that
        cannot be made or rebuilt (a full disk; a body that is no JSON no longer: the JSON indexes leave
        such bodies out, 81a (5)) is dropped, said: the selections then scan (``_JSON``), and the next open
        tries again; one that cannot be dropped either is not trusted (``_docs``, 81a (6))."""
        marks = ",".join("?" * len(INDEXES))
        found = {name: (kind, table, sql) for name, kind, table, sql in self._db.execute(
            f"SELECT name, type, tbl_name, sql FROM sqlite_master WHERE name IN ({marks})", tuple(INDEXES))}
        for name, sql in INDEXES.items():
            if found.get(name) == ("index", "docs", sql):
                if name in JSON_INDEXES:
                    self._index_step(name, f"REINDEX {name}")
                continue
            if found.get(name) == ("index", "docs", OLDER_INDEXES.get(name)):
                log.info("store %s: index %s made again as this version makes it", self.path, name)
            elif name in found:
                log.warning("store %s: %s is not the index fusevault makes (%r): made again", self.path, name,
                            str(found[name][2])[:200])
            if name in found:
                if not self._index_step(name, f"DROP {_DROPPABLE.get(found[name][0], 'INDEX')} {name}"):
                    continue
            self._index_step(name, sql)

    def _index_step(self, name: str, sql: str) -> bool:
        """One step of ``_settle_indexes``; on failure, the index dropped (a stale or half one is worse
        than none) and said.  Never a reason not to open: a full or read-only disk, a busy store."""
        try:
            self._db.execute(sql)
            return True
        except sqlite3.Error as err:
            bad = [row[0] for row in self._db.execute(
                f"SELECT id FROM docs WHERE deleted = 0 AND NOT {_JSON} LIMIT 5")] \
                if "JSON" in str(err) else []
            log.warning("store %s: index %s not made or rebuilt (%s)%s: left out, the selections scan",
                        self.path, name, err, f"; rows whose body is no JSON: {bad!r}" if bad else "")
        try:
            self._db.execute(f"DROP INDEX IF EXISTS {name}")
        except sqlite3.Error:  # still there, stale perhaps: not trusted (attack round 81a (6))
            self._indexed = False
        return False

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Reads on this thread, until the end, from a read-only connection of their own, in one read
        transaction: a snapshot of what was committed when it began.  For long reads on a worker thread
        (the trash, a history: vault/tree/inodes.py ``read_call``) while the loop goes on committing
        on the main connection: they never see half a transaction of it, nor hold the loop."""
        if getattr(self._local, "db", None) is not None:  # already reading on this thread
            yield
            return
        _no_link(self.path)  # as at open: never a link someone put in its place since
        try:
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
            db.text_factory = places_table.lenient_text
            db.execute("BEGIN")
        except sqlite3.Error as err:
            raise _translate(err) from None
        self._local.db = db
        try:
            yield
        finally:
            self._local.db = None
            db.close()  # ends the read transaction (nothing was written)

    @property
    def _reader(self) -> sqlite3.Connection:
        """The connection reads use: this thread's read connection inside ``reading``, else the main one."""
        return getattr(self._local, "db", None) or self._db

    @property
    def reader(self) -> sqlite3.Connection:
        """``_reader``, for a read of the replica's tables made on a worker thread inside ``reading``
        (store/replica.py ``conflicted``): never the main connection the loop writes on."""
        return self._reader

    def get(self, doc_id: str) -> dict | None:
        row = self._reader.execute(
            f"SELECT rev, body, CASE WHEN {_JSON} THEN {_KIND} END, CASE WHEN {_JSON} THEN {_FID} END "
            "FROM docs WHERE id = ? AND deleted = 0", (doc_id,)
        ).fetchone()
        if row is None:
            return None
        doc = self._doc(doc_id, row[0], row[1])
        if not (_agree(doc.get("type"), row[2]) and _agree(doc.get("fid"), row[3])):
            # Its kind or file as SQLite reads it (what ``iter_type`` and ``by_file`` select by) is not
            # Python's: a key written with an escape (``"typ\u0065"``), one document two readers see as
            # two; refused here as it is never selected there (attack round 79a (1)).
            raise Unreadable(f"document {doc_id} reads as two kinds or files", row[0])
        return doc

    def deleted(self, doc_id: str) -> bool:
        """Whether the row of ``doc_id`` is a deletion (rows never leave ``docs``: a tombstone stays)."""
        row = self._reader.execute("SELECT deleted FROM docs WHERE id = ?", (doc_id,)).fetchone()
        return row is not None and row[0] == 1

    @staticmethod
    def _doc(doc_id: str, rev: str, body: str) -> dict:
        # Every column is the vault folder's writer's to set, of any type SQLite keeps.
        if not isinstance(doc_id, str) or not isinstance(body, str | bytes):
            raise Unreadable(f"document {doc_id!r} is not text", rev)
        try:
            doc = loads_untrusted(body)
        except RefusedJson as err:  # says why: a name given twice, too deep, NaN (never a byte of it)
            raise Unreadable(f"document {doc_id} is refused: {err}", rev) from None
        except ValueError:
            raise Unreadable(f"document {doc_id} is not valid JSON", rev) from None
        if not isinstance(doc, dict):  # `[]`, `7`: JSON, but no document (a store writer's)
            raise Unreadable(f"document {doc_id} is not a JSON object", rev)
        doc["_id"] = doc_id
        doc["_rev"] = rev
        return doc

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it is committed, or none of it."""
        if self.broken:
            raise StoreUnavailable(self.broken)
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
                LocalStore.commits += 1
            except BaseException:
                if self._db.in_transaction:  # SQLite already rolled back on a full disk
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as err:
            raise _translate(err) from None

    def next_seq(self) -> int:
        """The seq of the next document written: after the largest whole one (WHOLE_SEQ)."""
        (seq,) = self._db.execute(f"SELECT COALESCE(MAX(seq), 0) FROM docs WHERE {WHOLE_SEQ}").fetchone()
        return int(seq) + 1

    def put_many(self, docs: list[dict], places: Sequence[tuple] = ()) -> list[str]:
        """Commit ``docs`` (and the places of the content records they need: ``PlaceRow``s)."""
        revs = []
        with self.transaction() as db:
            seq = self.next_seq()
            for doc in docs:
                doc_id = doc["_id"]
                row = db.execute("SELECT rev, deleted, revs FROM docs WHERE id = ?", (doc_id,)).fetchone()
                current = row[0] if row else None
                expected = doc.get("_rev")
                live = row is not None and not row[1]
                if (live and expected != current) or (not live and expected not in (None, current)):
                    raise Conflict(f"document {doc_id} was changed by someone else")
                rev = next_rev(current)
                history = [rev] + (history_of(row[0], row[2]) if row else [])
                self.write_doc(doc_id, rev, history[:REVS_LIMIT], seq, doc)
                seq += 1
                revs.append(rev)
            if places:
                places_table.insert_own(db, places)
        return revs

    def write_doc(self, doc_id: str, rev: str, history: list[str], seq: int, doc: dict) -> None:
        """Make ``doc`` the current revision (inside a transaction)."""
        if seq >= SEQ_LIMIT:
            # Never a seq the changes leave out: the commit was hers, never pushed, unsaid (attack round
            # 80b (3)).  Only a row of the folder's writer's just below the limit leads here.
            raise StoreUnavailable(f"the vault's document store holds a row at seq {seq - 1}, near its limit "
                                   f"({SEQ_LIMIT}): none fusevault wrote (the vault folder's writer's); "
                                   "nothing more can be saved into it")
        body = {k: v for k, v in doc.items() if not k.startswith("_")}
        # Its own row goes by id, then a plain INSERT: a seq another row holds
        # (a store writer's) fails the commit, where REPLACE would delete that row.
        self._db.execute("DELETE FROM docs WHERE id = ?", (doc_id,))
        self._db.execute(
            "INSERT INTO docs (id, rev, seq, deleted, type, body, revs) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (doc_id, rev, seq, int(bool(doc.get("_deleted"))), body.get("type"), json.dumps(body),
             json.dumps(history)))

    @property
    def db(self) -> sqlite3.Connection:
        return self._db

    @property
    def of_kind_sql(self) -> str:
        """The selection of the live documents of a kind (``?``): by ``docs_kind``, whose partial WHERE
        (``_JSON``, ``deleted = 0``) it implies (attack round 81a (5))."""
        return f"SELECT id, rev, body FROM {self._docs} WHERE {_JSON} AND {_KIND} = ? AND deleted = 0"

    @property
    def by_file_sql(self) -> str:
        """The selection of one file's (``?``) live documents of a kind (``?``), by ``docs_fid``."""
        return (f"SELECT id, rev, body FROM {self._docs} WHERE {_JSON} AND {_FID} = ? AND deleted = 0 "
                f"AND +{_KIND} = ?")

    def iter_type(self, doc_type: str) -> Iterator[dict]:
        # Streamed in batches: a vault of 100,000 files is never all in memory twice.  Every user's
        # documents of the kind: never inside a store call on the loop (short_calls.py).
        short_calls.scan(f"every {doc_type} document")
        # By the body's kind (its index ``docs_kind``), never the clear ``type`` column: one changed
        # column hid a live file of hers, unsaid, while ``get`` found its body (attack round 78c (3)).
        cursor = self._reader.execute(self.of_kind_sql, (doc_type,))
        while rows := cursor.fetchmany(2000):
            yield from self._readable(doc_type, rows)

    def by_file(self, doc_type: str, fid: str) -> list[dict]:
        # By ``docs_fid`` (a file's few rows): the unary ``+`` keeps SQLite off ``docs_kind``, which it
        # chose otherwise, testing the file of every row of the kind (8 ms at 10,000 documents, not 0.01).
        rows = self._reader.execute(self.by_file_sql, (fid, doc_type)).fetchall()
        return list(self._readable(doc_type, rows, fid))

    def _readable(self, doc_type: str, rows: Iterable[tuple[str, str, str]],
                  fid: str | None = None) -> Iterator[dict]:
        for doc_id, rev, body in rows:
            try:
                doc = self._doc(doc_id, rev, body)
            except CorruptData as err:
                # One forged body (nested too deep, not JSON, not an object) must not hide all
                # the others: it is left out, as a document that fails its checks is (get still refuses it).
                log.warning("%s document %s is left out: %s", doc_type, doc_id, err)
                continue
            if doc.get("type") == doc_type and (fid is None or doc.get("fid") == fid):
                yield doc
            else:  # SQLite read its kind or file otherwise (what it selected by): as ``get`` refuses it
                log.warning("%s document %s is left out: it reads as two kinds or files", doc_type, doc_id)

    def changes(self, since: int | str = 0, limit: int = -1) -> tuple[list[dict], int]:
        """The rows written after ``since``, whole seqs and text ids only (AFTER).  A ``since`` that is no
        whole number of ours (a sync checkpoint in the vault folder, set by its writer) reads as 0:
        everything again, never nothing ever after."""
        if limit < 0:
            short_calls.scan("every change")
        start = self._since(since)
        rows = self._db.execute(
            f"SELECT seq, id, rev, deleted FROM docs WHERE {AFTER} ORDER BY seq LIMIT ?",
            (start, limit)).fetchall()
        results = [{"seq": s, "id": i, "rev": r, "deleted": bool(d)} for s, i, r, d in rows]
        return results, (rows[-1][0] if rows else start)

    def count_after(self, since: object) -> int:
        """How many rows ``changes(since)`` has."""
        return int(self._db.execute(f"SELECT COUNT(*) FROM docs WHERE {AFTER}",
                                    (self._since(since),)).fetchone()[0])

    def _since(self, since: object) -> int:
        # Past the last seq there is nothing (no row ever leaves docs): such a
        # checkpoint is not this store's, and reads as 0.
        start = _whole(since)
        return start if start < self.next_seq() else 0

    def sync(self) -> None:
        """Make every commit so far durable: fdatasync the WAL.

        Only the WAL: SQLite fsyncs the database file itself after each
        checkpoint, and a descriptor of the database file opened and closed
        here would drop SQLite's locks (see the module's docstring).  SQLite
        puts no lock on the WAL, so its own descriptor here is harmless."""
        try:
            # O_NOFOLLOW | O_NONBLOCK: a pipe swapped in is not waited on (check_linked
            # then finds SQLite's own WAL removed), a link is not followed.
            fd = os.open(f"{self.path}-wal", os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = None  # everything is in the database file (checkpointed)
        except OSError as err:
            if err.errno not in (errno.ELOOP, errno.ENXIO):
                raise
            fd = None
        if fd is not None:
            try:
                # As SQLite syncs its own files: the WAL is mostly rewritten in
                # place, so only its data goes, without a journal commit for its times.
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    os.fdatasync(fd)
            finally:
                os.close(fd)
        if not self._dir_synced:  # the WAL's name, made when the store was opened
            dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            self._dir_synced = True
        self.check_linked()

    def check_linked(self) -> None:
        """Refuse further commits if another program unlinked our database
        files (WAL, shared memory) while we hold them open.

        Commits made since then went to a file nobody will read again; the
        ones SQLite has not yet checkpointed are lost at close.  Saving more
        into it would only lose more, so the store says so instead, loudly,
        and every later commit fails (the mount answers EIO, and unmount
        reports that it could not save).

        Every fsync checks (``sync``): listing ``/proc/self/fd`` and reading
        each link cost 0.3-0.4 ms, a tenth of a dense file's fsync.  So the
        descriptors the last full look found are remembered with the file
        each is, and while each still is the file its name names (same
        device and inode), nothing changed and a few ``stat`` calls suffice;
        anything else (a name gone or taken by another file, a descriptor
        closed or reused, SQLite holding another) looks again in full."""
        if self.broken:
            raise StoreUnavailable(self.broken)
        if self._known_files and self._still_linked():
            return
        prefix = str(self.path.resolve())
        gone, known = [], []
        try:
            descriptors = os.listdir("/proc/self/fd")
        except OSError:
            return  # no /proc: nothing to check with
        for fd in descriptors:
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                continue
            if not target.startswith(prefix):
                continue
            if target.endswith(" (deleted)"):
                gone.append(target[len(prefix.rsplit("/", 1)[0]) + 1:-len(" (deleted)")])
            else:
                known.append((int(fd), target))
        if gone:
            self.broken = (f"the vault's database files ({', '.join(sorted(set(gone)))}) were removed "
                           "while in use, by another program: unmount and mount again")
            log.critical("%s", self.broken)
            raise StoreUnavailable(self.broken)
        self._known_files = self._identify(known)

    @staticmethod
    def _identify(known: list[tuple[int, str]]) -> list[tuple[int, str, tuple[int, int]]]:
        """Each descriptor with its name and the file (device, inode) it is now."""
        files = []
        for fd, target in known:
            try:
                st = os.fstat(fd)
            except OSError:
                return []  # closed meanwhile: look in full next time
            files.append((fd, target, (st.st_dev, st.st_ino)))
        return files

    def _still_linked(self) -> bool:
        """Whether each remembered descriptor is still the file its name names.
        A descriptor of this store SQLite opened since is not seen: it opens
        its three files once, when the connection opens, before the first look."""
        for fd, target, file in self._known_files:
            try:
                held, named = os.fstat(fd), os.stat(target)
            except OSError:
                return False
            if (held.st_dev, held.st_ino) != file or (named.st_dev, named.st_ino) != file:
                return False
        return True

    def _checkpoint(self) -> None:
        """Fold the WAL into the database and truncate it, as far as no reader holds it back, without
        waiting: this runs on the loop, and a long read on a worker thread (``reading``: the trash, a
        history) would hold a TRUNCATE checkpoint for the whole busy timeout (5 s), and with it every
        FUSE request.  What is left is folded by the next checkpoint."""
        waits = self._db.execute("PRAGMA busy_timeout").fetchone()[0]
        self._db.execute("PRAGMA busy_timeout = 0")
        try:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            self._db.execute(f"PRAGMA busy_timeout = {int(waits)}")

    def forget_places(self, fid: str, ranges: Sequence[tuple[int, int]] | None) -> None:
        with self.transaction() as db:
            places_table.forget(db, fid, ranges)

    def unhashed_places(self, after: int, limit: int) -> list[tuple[int, places_table.PlaceRow]]:
        return places_table.unhashed(self._db, after, limit)

    def set_place_shas(self, shas: Sequence[tuple[str, str, str, int]]) -> int:
        with self.transaction() as db:
            return places_table.set_shas(db, shas)

    def compact(self, rebuild: bool = False) -> bool:
        """Give back to the disk a step of the pages deletions freed; True
        while there is more to give back (the caller yields between steps).

        A store made with ``auto_vacuum=INCREMENTAL`` (every new one) frees
        ``COMPACT_STEP`` pages a call, a short write transaction like any
        commit; an older store is rebuilt once by VACUUM (which also turns
        incremental vacuuming on for it), only when ``rebuild`` (nothing is
        mounted: a VACUUM holds every commit until it is done).  Worth it only when a good part of
        the file is free: gc (vault/services/gc.py) asks after it dropped
        versions, whose documents and place rows are most of the freed pages."""
        try:
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
            if free < COMPACT_MIN_PAGES or free * 5 < pages:
                self._checkpoint()
                return False
            if self._db.execute("PRAGMA auto_vacuum").fetchone()[0] == INCREMENTAL:
                self._db.execute(f"PRAGMA incremental_vacuum({COMPACT_STEP})")
                # More only while a step gives pages back: never a loop that frees nothing.
                return self._db.execute("PRAGMA freelist_count").fetchone()[0] < free
            if not rebuild:
                return False
            self._db.execute(f"PRAGMA auto_vacuum = {INCREMENTAL}")
            self._db.execute("VACUUM")
            log.info("store %s rebuilt: %d free pages of %d given back", self.path, free, pages)
            return True
        except sqlite3.OperationalError as err:  # busy (a reader mid-query): the next gc tries again
            log.debug("store %s not compacted now: %s", self.path, err)
            return False
        except sqlite3.Error as err:
            raise _translate(err) from None

    def close(self) -> None:
        self._db.close()
