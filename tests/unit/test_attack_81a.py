"""Attack round 81a, at 2069958b: the store's side (store/local.py).  Attacker: whoever writes the vault
folder (store.sqlite and its schema: plain SQL; no key).  The in-process hole is in
tests/inprocess/test_attack_81a.py.

(2) low-medium (every save of hers, from then on, never pushed to any peer while her sync status says
    nothing pending; not a log line).  Steps: the folder's writer adds one trigger to ``docs`` (plain
    SQL, kept in store.sqlite; SQLite runs it inside HER process's own commits):
    ``CREATE TRIGGER AFTER INSERT ON docs WHEN <a free seq below the row's> BEGIN UPDATE docs SET seq =
    <that free seq> WHERE id = NEW.id; END``.  Free whole seqs below the push checkpoint are plenty: every
    document rewritten leaves its old seq free (``write_doc`` deletes its row and inserts one at the next
    seq).  Her commit (``put_many``) is stored, reads back, is shown; its row now sits at a whole seq the
    push already passed, so ``changes(checkpoint)`` (the push) and ``count_after`` (replicator.py's
    pending count) never see it: never sent, "0 pending"; and no open logs it (the seq is whole, in
    range, unlike 80b (3)'s).  Without a trigger the same move is plain SQL between two mounts on a save
    she made offline.  Expected: her commit is in the changes after the checkpoint, or refused, said.
    Cause: store/local.py ``LocalStore.__init__`` / ``_settle_indexes`` check the indexes of ``docs``
    only; triggers (and views) in ``sqlite_master`` are kept and run on her writes; and the push trusts
    the row's ``seq`` column as the order of her commits.  Fix (suggested): at open, drop every trigger
    and view in ``sqlite_master`` (fusevault makes none), said (``PRAGMA trusted_schema = OFF`` is not
    enough: it leaves a plain UPDATE in a trigger run); and/or check after ``write_doc`` that the row's
    seq is the one given.
    Test: ``test_81a_2_a_trigger_in_the_store_never_keeps_her_commit_from_the_push``.

(3) low-medium (every unlock, mount, ``check`` and push of every user of the vault hangs forever at full
    CPU, unsaid; or the mount's first save does, and with it the FUSE loop: every process touching the
    mount blocks).  Steps, either:
    [view] the folder's writer renames ``docs`` (``ALTER TABLE docs RENAME TO real_docs``) and makes a
    view of its name over a recursive CTE that never ends (``CREATE VIEW docs AS WITH RECURSIVE c(x) AS
    (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT r.* FROM real_docs r JOIN c ON c.x = r.rowid``).  The
    store's open runs ``CREATE TABLE IF NOT EXISTS docs`` (a name is all it checks: the view passes),
    ``_settle_indexes`` logs that views cannot be indexed and goes on, and the open's count of odd seqs
    never returns (SQLite's query has no time limit: no ``set_progress_handler``).  Through the view
    and ``INSTEAD OF`` triggers the writer also decides every row her process reads and writes.
    [trigger] a trigger on ``docs`` whose body runs the same endless CTE: the store opens, her first
    commit (``put_many``, on the mount's loop) never returns.
    Expected: the open refuses, or drops, what fusevault never makes (a view or trigger, ``docs`` no
    table), said; no store call runs without bound.  Cause: store/local.py ``LocalStore.__init__``
    (``SCHEMA``'s ``IF NOT EXISTS``, ``_settle_indexes`` looking at the indexes of its names only); the
    known limit "the tables' own definitions are not compared" says a redefined table is not caught, not
    that a view or trigger is kept and run.  Fix (suggested): at open, require ``sqlite_master``'s
    ``docs``, ``leaves``, ``local_docs`` and the places tables to be of type ``table`` (refuse, said,
    otherwise) and drop every trigger and view (fusevault makes none); a progress handler bounding a
    store call would turn any other endless query into an error.
    Test: ``test_81a_3_a_view_or_trigger_in_the_store_never_hangs_her_store[view|trigger]``.

(5) low (``fusevault check`` quadratic in the vault's size, for ever: 337 s at 10,000 files, not
    0.2 s; some 9 hours at 100,000; and every other per-file selection, ``history``, the unlock's
    ``authorship._wrapped_otherwise`` per foreign key, ``guests``, a scan of the whole table each).
    Steps: the folder's writer puts ONE row whose body is no JSON past the indexes (80b (1)'s
    ``PRAGMA writable_schema`` steps: any id, any seq, even one outside the changes).  At every open
    ``_settle_indexes``' ``REINDEX docs_fid`` fails on it, so the index is dropped ("the selections
    scan", a log line), and every ``by_file`` (one file's versions: ``check`` calls it for each file)
    evaluates ``json_valid``/``json_extract`` over every body in the store: O(files x documents); the
    next open fails the same, so it never ends.  Expected: one planted row costs a row, not the index:
    a selection by file stays an index search.  Cause: store/local.py ``_index_step`` (an index that
    cannot be rebuilt is dropped, not rebuilt without the row).  Fix (suggested): make the JSON indexes
    partial over readable bodies (``... WHERE deleted = 0 AND json_valid(body)``, the selections saying
    ``json_valid(body)`` as they do: SQLite then indexes no row that is no JSON and never raises at a
    write, a REINDEX or a query), so no planted body can make them unbuildable.
    Test: ``test_81a_5_one_body_that_is_no_json_keeps_a_selection_by_file_an_index_search``.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from fusevault.errors import VaultError
from fusevault.store.local import LocalStore

# Her new row moved to the lowest free whole seq below it (a gap a rewrite left): no log, no pending.
GAP = ("(SELECT d.seq - 1 FROM docs d WHERE d.seq > 1 AND d.seq < NEW.seq "
       "AND NOT EXISTS (SELECT 1 FROM docs e WHERE e.seq = d.seq - 1) ORDER BY d.seq LIMIT 1)")
TRIGGER = f"CREATE TRIGGER docs_log AFTER INSERT ON docs WHEN {GAP} IS NOT NULL " \
          f"BEGIN UPDATE docs SET seq = {GAP} WHERE id = NEW.id; END"


def test_81a_2_a_trigger_in_the_store_never_keeps_her_commit_from_the_push(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    store = LocalStore(path)
    store.put_many([{"_id": "a" * 32, "type": "node"}])
    store.put_many([dict(store.get("a" * 32) or {}, edited=1)])  # seq 1 left free, as any rewrite leaves one
    pushed, checkpoint = store.changes(0)  # all sent: the push's checkpoint
    store.close()
    db = sqlite3.connect(path)
    db.execute(TRIGGER)
    db.commit()
    db.close()
    store = LocalStore(path)
    try:
        try:
            store.put_many([{"_id": "b" * 32, "type": "node"}])
        except VaultError:
            return  # refused, said: no save of hers held back in silence
        assert store.get("b" * 32) is not None, "the scene: her commit is stored"
        changes, _ = store.changes(checkpoint)
        assert "b" * 32 in [c["id"] for c in changes], (
            f"her commit stored, never in the push's changes after {checkpoint}: {changes}; "
            f"pending: {store.count_after(checkpoint)}")
    finally:
        store.close()


def test_81a_2_control_without_the_trigger_her_commit_is_pushed(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    store = LocalStore(path)
    store.put_many([{"_id": "a" * 32, "type": "node"}])
    store.put_many([dict(store.get("a" * 32) or {}, edited=1)])
    _, checkpoint = store.changes(0)
    store.put_many([{"_id": "b" * 32, "type": "node"}])
    assert [c["id"] for c in store.changes(checkpoint)[0]] == ["b" * 32]
    assert store.count_after(checkpoint) == 1
    store.close()


ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)"
HANGS = {
    "view": "ALTER TABLE docs RENAME TO real_docs; "
            f"CREATE VIEW docs AS {ENDLESS} SELECT r.* FROM real_docs r JOIN c ON c.x = r.rowid;",
    "trigger": f"CREATE TRIGGER docs_log AFTER INSERT ON docs BEGIN "
               f"SELECT COUNT(*) FROM ({ENDLESS} SELECT x FROM c); END;",
}
# Her store opened, one commit, one read: what every unlock and the mount's first save do.
HER_USE = ("import sys; from fusevault.store.local import LocalStore; s = LocalStore(sys.argv[1]); "
           "s.put_many([{'_id': 'b' * 32, 'type': 'node'}]); s.get('a' * 32); s.close()")


@pytest.mark.parametrize("plant", HANGS.values(), ids=HANGS.keys())
def test_81a_3_a_view_or_trigger_in_the_store_never_hangs_her_store(tmp_path: Path, plant: str) -> None:
    path = tmp_path / "store.sqlite"
    store = LocalStore(path)
    store.put_many([{"_id": "a" * 32, "type": "node"}])
    store.close()
    db = sqlite3.connect(path)
    db.executescript(plant)
    db.close()
    try:
        done = subprocess.run([sys.executable, "-c", HER_USE, str(path)], timeout=20, capture_output=True,
                              text=True)
    except subprocess.TimeoutExpired:
        raise AssertionError("her store's open or first commit still runs after 20 s: it hangs") from None
    refused = "fusevault.errors" in done.stderr or "Vault" in done.stderr  # said, not a typo's ImportError
    assert done.returncode == 0 or refused, done.stderr[-500:]


FILES = 200


def _store_of_files(path: Path) -> None:
    """A store of FILES nodes, each with a version: a vault of FILES files."""
    store = LocalStore(path)
    pad = "x" * 600  # a version's size, roughly
    docs = []
    for i in range(FILES):
        fid = f"{i:032x}"
        docs += [{"_id": fid, "type": "node", "fid": fid, "pad": pad},
                 {"_id": f"{i:031x}v", "type": "FilesMetaData", "fid": fid, "pad": pad}]
    store.put_many(docs)
    store.close()


def _one_body_no_json(path: Path) -> None:
    """One row whose body is no JSON, put past the JSON indexes (``PRAGMA writable_schema``, 80b (1))."""
    swap = "UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE name IN ('docs_kind', 'docs_fid')"
    for step in ("off", "write", "on"):
        db = sqlite3.connect(path)
        try:
            if step == "write":
                db.execute("INSERT INTO docs (id, rev, seq, deleted, type, body) "
                           "VALUES ('planted', '1-a', -5, 0, 'x', '{')")
            else:
                db.execute("PRAGMA writable_schema = ON")
                db.execute(swap, ("WHERE deleted = 0", "WHERE deleted = 7") if step == "off"
                           else ("WHERE deleted = 7", "WHERE deleted = 0"))
            db.commit()
        finally:
            db.close()


def _by_file_plan(path: Path) -> list[str]:
    """One file's versions found (as ``check`` asks for each file), and SQLite's plan of that selection."""
    store = LocalStore(path)
    try:
        for i in range(0, FILES, FILES // 10):
            assert len(store.by_file("FilesMetaData", f"{i:032x}")) == 1
        plan = store.db.execute(f"EXPLAIN QUERY PLAN {store.by_file_sql}", ("f", "FilesMetaData")).fetchall()
        return [row[-1] for row in plan]
    finally:
        store.close()


def test_81a_5_one_body_that_is_no_json_keeps_a_selection_by_file_an_index_search(tmp_path: Path) -> None:
    """Fixed (81a (5)): the JSON indexes are partial over the bodies that are JSON, so the planted body
    is in none and the REINDEX at open succeeds; the plan, not a time, is what is asserted."""
    path = tmp_path / "store.sqlite"
    _store_of_files(path)
    _one_body_no_json(path)
    plan = _by_file_plan(path)
    assert any("USING INDEX docs_fid" in step for step in plan), (
        f"one file's versions are no index search ({plan}): a check quadratic in the vault's size")


def test_81a_every_object_fusevault_never_makes_is_dropped_said(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """The rule behind the fixes of 81a (1)-(3): other indexes, triggers, views and the planner's
    statistics are dropped at open, each said by kind and name; fusevault's own objects are kept."""
    path = tmp_path / "store.sqlite"
    LocalStore(path).close()
    db = sqlite3.connect(path)
    db.executescript("CREATE INDEX a_kind ON docs(json_extract(body, '$.type')) WHERE deleted = 0; "
                     "CREATE INDEX p_fid ON places(fid); CREATE VIEW v AS SELECT 1; ANALYZE; " + TRIGGER)
    db.close()
    LocalStore(path).close()
    db = sqlite3.connect(path)
    names = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE sql IS NOT NULL")}
    db.close()
    assert names & {"a_kind", "p_fid", "v", "docs_log", "sqlite_stat1"} == set(), names
    assert {"docs", "places", "docs_kind", "docs_fid", "docs_type"} <= names
    said = caplog.text
    assert all(f"'{name}'" in said for name in ("a_kind", "p_fid", "v", "docs_log", "sqlite_stat1")), said


def test_81a_a_table_not_as_fusevault_makes_it_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    LocalStore(path).close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE leaves ADD COLUMN x TEXT")
    db.close()
    with pytest.raises(VaultError, match="its leaves is not the table fusevault makes"):
        LocalStore(path)
