"""Attack round 80b, at a312a95 (rounds 78c and 79a's fixes: 30747e8, 68cd306, 91e8a55).  Attacker:
whoever writes the vault folder (store.sqlite; no key of anyone's).  In-process: the ``vault_copy``
fixture with the personal in-process mount (``_composed``), and the two-user ``shared`` fixture.

(1) medium (every unlock of every user of the vault fails; the load, ``check`` and the push raise
    ``sqlite3.OperationalError: malformed JSON``, as 79a (2) did).  Steps, either:
    [index_replaced] the folder's writer drops the store's indexes ``docs_kind`` and ``docs_fid`` and
    makes two of the same names on other columns (plain SQL: ``CREATE INDEX docs_kind ON docs(type)``),
    then inserts one row of any id whose body is no JSON (``{``).  The store's open runs
    ``CREATE INDEX IF NOT EXISTS``, which keeps the impostors (a name is all it checks), so
    ``iter_type``'s ``WHERE json_extract(body, '$.type') = ?`` scans the table and evaluates
    ``json_extract`` on the planted row: the query raises from users.find_user at her unlock.
    [stale_index] the folder's writer rewrites the body of her live file's node to ``{`` while the
    two index definitions are briefly changed (``PRAGMA writable_schema``), so the indexes keep their
    old entries: ``iter_type`` still selects the row and ``_readable`` leaves it out (said), then the
    ledger's ``_missing`` calls ``get``, whose query now evaluates ``json_extract`` over the body
    (30747e8) and raises: her unlock fails (any user's: the ledger checks each node this device saw).
    Expected: the row left out and said (``Unreadable``, as a body that is not JSON is in ``_doc``),
    the rest loaded.  Cause: store/local.py ``get`` (the ``{_KIND}, {_FID}`` columns of its SELECT),
    ``iter_type`` and ``by_file`` (their WHERE) evaluate SQLite's JSON functions over bodies the folder's
    writer wrote, which raise for a body that is not JSON; and ``LocalStore.__init__`` trusts indexes of
    the expected names (``CREATE INDEX IF NOT EXISTS``).  Before 78c (3)/79a, ``iter_type`` and ``get`` read
    only the clear columns.  Fix (suggested): guard each expression (``CASE WHEN json_valid(body) THEN
    json_extract(body, '$.type') END`` in ``get``, or catch ``sqlite3.OperationalError`` per row there
    as ``Unreadable``); at open, check ``sqlite_master``'s ``sql`` of the expected indexes and rebuild any
    other (a failing rebuild: the rows that are no JSON named and left out, or a clear error), or select
    by ``json_valid(body) AND ...`` where no index is sure.
    Test:
    ``test_80b_1_a_body_that_is_no_json_to_sqlite_does_not_stop_her_unlock[index_replaced|stale_index]``.

(2) low-medium (her grant to bob never reaches any peer while her sync status says nothing is pending;
    only a log line).  Steps: before alice shares D with bob, the folder's writer plants a row at each id
    the key documents of that share will have (``vfkey-u-<bob>-<alice>-<fid>``: every part is a clear id
    in the store), whose body does not read (a name given twice, refused since 30747e8; or not JSON), at
    a seq no push reads or counts (-1: outside ``WHOLE_SEQ``; ``get`` reads any seq).
    Alice shares D: the key files are written; the mirror's ``refresh`` reads each document through
    ``_current`` -> ``store.get``, which raises ``Unreadable``; ``_settle`` catches it (``CorruptData``),
    logs "left out" and records the look as done (``_cue``), so ``KeyMirror.unmirrored()`` is 0 and no
    key document is ever written: bob's devices never get the key, her ``fusevault sync`` says up 0.
    Expected: as for a malformed document (attack round 46c (3): "a genuine key file answers it"), her
    genuine key file replaces the row that does not read (its ``Unreadable.rev`` is what the put
    replaces), or the key counts as not mirrored (pending) and is said.  Cause: sync/key_mirror.py
    ``_settle`` (``except CorruptData``) around ``_settle_one``/``_current``; ``unmirrored`` counts only
    re-keys under way and the cue.
    Test: ``test_80b_2_a_key_document_that_does_not_read_is_answered_by_her_key_file``.

(4) medium (her live file, or folder and all under it, hidden at every unlock, unsaid; the ledger
    records it not live: 79a (1) again, by the index instead of the body).  Steps: the folder's writer
    changes victim.txt's node body to ``"type": "FilesMetaData"`` (SQLite updates ``docs_kind``'s entry
    to that kind), then, with the two index definitions briefly changed (``PRAGMA writable_schema``:
    ``WHERE deleted = 7``), writes her original body back and restores the definitions: the index keeps
    ``FilesMetaData`` for the row, the body (signed, intact) says ``node``.  At her next unlock
    ``iter_type('node')`` (the index) never selects it; ``get`` evaluates ``json_extract`` on the body
    itself, which agrees with Python, so the ledger's ``_missing`` hands it to ``_trashed_by_owner`` and
    ``record(fid, None, False)`` ("in the trash, or a share that no longer reaches this user"): no alarm.
    The same on a version row (``by_file`` by ``docs_fid``/``docs_kind``) gives back 79a (1b)/(1c)
    ("missing", and ``check --repair`` restoring the older version; not written as a test).  Expected:
    shown, or said.  Cause: store/local.py selects by index entries SQLite computed when the row was
    last written through an honest schema, and the folder's writer decides what they hold; ``get``
    compares the body with itself, never with the index.  Fix (suggested): ``REINDEX docs_kind;
    REINDEX docs_fid`` at each open (78c (3) measured a build at 80 ms for 10,000 versions), or check
    the indexes (``PRAGMA integrity_check(docs)``, slower); and/or in ledger.py ``_missing``, a live,
    genuine body of hers (not in her trash, owner hers) that the load did not hold is said.
    Test: ``test_80b_4_her_file_whose_index_entry_says_another_kind_is_shown_or_said``.

Tried and held: a peer cannot bring (1) or (2) (store/replica.py writes ``json.dumps`` of the parsed body:
a ``type``/``fid`` with ``\\u0000`` or a lone surrogate reads apart to SQLite and Python, and ``get`` and
``_readable`` refuse it alike); JSON readers bypassing ``loads_untrusted`` (marker_pins.py reads her own
state file; relay/state.py and fs/daemon.py read their own writes); ``places.since`` over a batch of bad
rows (reads on, n grows).
"""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest
import trio
from attack_scenes import ALICE, ask

from fusevault.errors import CorruptData
from fusevault.store.local import LocalStore
from fusevault.sync import key_mirror
from fusevault.sync.key_mirror import KeyMirror
from fusevault.vault.model.alarms import for_user
from inprocess.conftest import ROOT, _composed, shared  # noqa: F401  (fixture)
from inprocess.test_attack_79a import _shown_or_said, _two_files
from inprocess.test_two_users import _write

NOT_JSON = "{"


def _stale_index(vault: Path, fid: str, body: str = NOT_JSON) -> None:
    """``fid``'s body made ``body`` while the JSON indexes skip it (their entries stay as they were)."""
    swap = "UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE name IN ('docs_kind', 'docs_fid')"
    for step in ("off", "write", "on"):
        db = sqlite3.connect(vault / "store.sqlite")
        try:
            if step == "write":
                assert db.execute("UPDATE docs SET body = ? WHERE id = ?", (body, fid)).rowcount == 1
            else:
                db.execute("PRAGMA writable_schema = ON")
                db.execute(swap, ("WHERE deleted = 0", "WHERE deleted = 7") if step == "off"
                           else ("WHERE deleted = 7", "WHERE deleted = 0"))
            db.commit()
        finally:
            db.close()


def _index_replaced(vault: Path, fid: str) -> None:
    """The two JSON indexes replaced by impostors of their names, then one row that is no JSON."""
    db = sqlite3.connect(vault / "store.sqlite")
    try:
        db.executescript("DROP INDEX docs_kind; DROP INDEX docs_fid;"
                         "CREATE INDEX docs_kind ON docs(type) WHERE deleted = 0;"
                         "CREATE INDEX docs_fid ON docs(id) WHERE deleted = 0;")
        db.execute("INSERT INTO docs (id, rev, seq, deleted, type, body) "
                   "VALUES ('planted', '1-a', 999999, 0, 'node', ?)", (NOT_JSON,))
        db.commit()
    finally:
        db.close()


PLANTS = {"index_replaced": _index_replaced, "stale_index": _stale_index}


@pytest.mark.parametrize("plant", PLANTS.values(), ids=PLANTS.keys())
def test_80b_1_a_body_that_is_no_json_to_sqlite_does_not_stop_her_unlock(vault_copy: Path, plant) -> None:
    fid = _two_files(vault_copy)
    plant(vault_copy, fid)
    try:
        with _composed(vault_copy) as fs:
            kept = fs.volume.resolve(b"keep.txt").fid
    except sqlite3.OperationalError as err:
        raise AssertionError(f"her unlock fails on one planted body: {err!r:.120}") from None
    assert kept != fid


def test_80b_1_control_a_body_that_is_no_json_with_honest_indexes_is_read_as_unreadable(
        vault_copy: Path) -> None:
    """Since 81a (5) the JSON indexes are partial over the bodies that are JSON: plain SQL writes such a
    body (no index step needed, none fails), and the store reads it as unreadable, said, never raising."""
    fid = _two_files(vault_copy)
    db = sqlite3.connect(vault_copy / "store.sqlite")
    try:
        db.execute("UPDATE docs SET body = ? WHERE id = ?", (NOT_JSON, fid))
        db.commit()
    finally:
        db.close()
    store = LocalStore(vault_copy / "store.sqlite")
    try:
        with pytest.raises(CorruptData):
            store.get(fid)
        assert fid not in [d["_id"] for d in store.iter_type("node")]
    finally:
        store.close()


def test_80b_2_a_key_document_that_does_not_read_is_answered_by_her_key_file(shared) -> None:  # noqa: F811
    async def scene() -> tuple[dict, int, list, list]:
        drive, alice = shared.drive, shared.volumes["alice"]
        d = await drive.mkdir(ROOT, b"D", stat.S_IFDIR | 0o755, ALICE)
        await _write(drive, d.st_ino, b"h.txt", b"her h\n", ALICE)
        await ask(shared, "share", "D", "READ")
        files = key_mirror.scan(alice.layout)  # the ids the attacker predicts from the store's clear ids
        assert files and all(shared.store.get(i) is None for i in files), "the scene: not mirrored yet"
        pushed = shared.store.next_seq() - 1  # as if all were pushed: what the sync status counts after
        # The folder's writer's rows (planted before the share, or now), at seqs no push reads or counts.
        for n, doc_id in enumerate(files):
            shared.store.db.execute(
                "INSERT INTO docs (id, rev, seq, deleted, type, body) VALUES (?, '1-a', ?, 0, 'FileKey', ?)",
                (doc_id, -1 - n, '{"type": "FileKey", "type": "FileKey"}'))
        mirror = KeyMirror(shared.store, alice.layout)
        await mirror.refresh()
        docs = []
        for doc_id in files:
            try:
                docs.append(shared.store.get(doc_id))
            except Exception as err:  # Unreadable
                docs.append(repr(err)[:60])
        said = [a for a in for_user(alice.key.user_id).as_list() if a["subject"] in files]
        return files, mirror.unmirrored() + shared.store.count_after(pushed), docs, said

    files, owed, docs, said = trio.run(scene)
    mirrored = all(isinstance(doc, dict) and key_mirror._key_of(doc) == files[doc["_id"]] for doc in docs)
    assert mirrored or (owed and said), (
        f"her keys for bob never mirrored ({docs}), {owed} pending, said: {said}")


def _index_says_other_kind(vault: Path, fid: str) -> None:
    """``fid``'s body as it was, its ``docs_kind`` entry ``FilesMetaData``: written at that kind, then put
    back past the indexes."""
    db = sqlite3.connect(vault / "store.sqlite")
    try:
        (body,) = db.execute("SELECT body FROM docs WHERE id = ?", (fid,)).fetchone()
        other = body.replace('"type": "node"', '"type": "FilesMetaData"', 1)
        assert other != body
        db.execute("UPDATE docs SET body = ? WHERE id = ?", (other, fid))
        db.commit()
    finally:
        db.close()
    _stale_index(vault, fid, body)


def test_80b_4_her_file_whose_index_entry_says_another_kind_is_shown_or_said(vault_copy: Path) -> None:
    fid = _two_files(vault_copy)
    _index_says_other_kind(vault_copy, fid)
    shown, said = _shown_or_said(vault_copy, fid)
    assert shown or said, f"victim.txt ({fid}), its signed body intact and live, is hidden, unsaid"
