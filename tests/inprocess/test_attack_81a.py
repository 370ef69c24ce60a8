"""Attack round 81a, at 2069958b (round 80b's fixes: e0458873, 26dc27f6).  Attacker: whoever writes the
vault folder (store.sqlite and its schema; no key of anyone's).  In-process: the ``vault_copy`` fixture
with the personal in-process mount (``_composed``).

(1) medium (her live file, or a folder and all under it, hidden at every unlock, unsaid: 80b (4) again,
    its fix bypassed).  Steps: the folder's writer adds one index of any other name with the very
    expression of ``docs_kind`` (``CREATE INDEX a_kind ON docs(json_extract(body, '$.type')) WHERE
    deleted = 0``: plain SQL), changes victim.txt's node body to ``"type": "FilesMetaData"`` (SQLite
    updates every index's entry), then, with the index definitions briefly changed (``PRAGMA
    writable_schema``), writes her original body back (signed, intact) and restores them.  At her next
    unlock ``_settle_indexes`` finds ``docs_kind`` and ``docs_fid`` as ``INDEXES`` says and rebuilds them
    (REINDEX), but leaves ``a_kind`` alone, stale; SQLite's planner, given two indexes on the same
    expression and no statistics, takes the one made last (``EXPLAIN QUERY PLAN``: ``SEARCH docs USING
    INDEX a_kind``), so ``iter_type('node')`` never selects her node; ``get`` agrees with the body, so
    the ledger's ``_missing`` takes it for a file in the trash or a share that ended: no alarm.  (One on
    ``$.fid`` may serve ``by_file`` the same way: not tried; ``sqlite_stat1``, the attacker's to write,
    steers the planner too.  One of another name on ``docs(id)`` or ``docs(seq)``
    is not chosen: SQLite prefers the UNIQUE autoindexes for ``get`` and ``changes``.)
    Expected: shown, or said.  Cause: store/local.py ``_settle_indexes``
    compares and rebuilds the indexes of its own names only; any other index on ``docs`` (or
    ``sqlite_stat1``) is kept.  Fix (suggested): drop every index on ``docs``, ``leaves``, ``local_docs``
    and ``places`` that ``sqlite_master`` lists and INDEXES / the schema does not name (and ``sqlite_stat1``
    / ``sqlite_stat4`` rows, or ``DROP TABLE sqlite_stat1``), or ``REINDEX docs`` (every index on the table).
    Test: ``test_81a_1_an_index_of_another_name_left_stale_does_not_hide_her_file``.

(2) through her mount: tests/unit/test_attack_81a.py (2)'s trigger planted between two mounts; her save of
    victim.txt through the mount commits its node and version, shown and read back, and not one of its
    rows is in the push's changes after the checkpoint she had reached; the sync status's count
    (replicator.py ``pending_up``: ``count_after``) is 0.
    Test: ``test_81a_2_her_save_through_the_mount_is_not_kept_from_the_push_by_a_trigger[trigger]``
    (``[control]``: no trigger, her save is in the changes).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio
from unit.test_attack_81a import TRIGGER

from inprocess.conftest import _composed, read_all, rewrite
from inprocess.test_attack_79a import _shown_or_said, _two_files

IMPOSTOR = "CREATE INDEX a_kind ON docs(json_extract(body, '$.type')) WHERE deleted = 0"


def _run(vault: Path, *steps: tuple[str, tuple]) -> None:
    db = sqlite3.connect(vault / "store.sqlite")
    try:
        for sql, args in steps:
            db.execute(sql, args)
        db.commit()
    finally:
        db.close()


def _stale_other_index(vault: Path, fid: str) -> None:
    """``fid``'s body as it was, the entry of an index of another name (same expression) at
    ``FilesMetaData``: written at that kind, then put back past every index."""
    db = sqlite3.connect(vault / "store.sqlite")
    try:
        (body,) = db.execute("SELECT body FROM docs WHERE id = ?", (fid,)).fetchone()
    finally:
        db.close()
    other = body.replace('"type": "node"', '"type": "FilesMetaData"', 1)
    assert other != body
    swap = "UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE type = 'index' AND tbl_name = 'docs'"
    _run(vault, (IMPOSTOR, ()), ("UPDATE docs SET body = ? WHERE id = ?", (other, fid)))
    _run(vault, ("PRAGMA writable_schema = ON", ()), (swap, ("WHERE deleted = 0", "WHERE deleted = 7")))
    _run(vault, ("UPDATE docs SET body = ? WHERE id = ?", (body, fid)))
    _run(vault, ("PRAGMA writable_schema = ON", ()), (swap, ("WHERE deleted = 7", "WHERE deleted = 0")))


def test_81a_1_an_index_of_another_name_left_stale_does_not_hide_her_file(vault_copy: Path) -> None:
    fid = _two_files(vault_copy)
    _stale_other_index(vault_copy, fid)
    shown, said = _shown_or_said(vault_copy, fid)
    assert shown or said, f"victim.txt ({fid}), its signed body intact and live, is hidden, unsaid"


def test_81a_1_control_without_the_other_index_her_file_is_shown(vault_copy: Path) -> None:
    """The same steps without the index of another name: 80b (4)'s fix (REINDEX) shows her file."""
    fid = _two_files(vault_copy)
    db = sqlite3.connect(vault_copy / "store.sqlite")
    try:
        (body,) = db.execute("SELECT body FROM docs WHERE id = ?", (fid,)).fetchone()
    finally:
        db.close()
    other = body.replace('"type": "node"', '"type": "FilesMetaData"', 1)
    swap = "UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE type = 'index' AND tbl_name = 'docs'"
    _run(vault_copy, ("UPDATE docs SET body = ? WHERE id = ?", (other, fid)))
    _run(vault_copy, ("PRAGMA writable_schema = ON", ()), (swap, ("WHERE deleted = 0", "WHERE deleted = 7")))
    _run(vault_copy, ("UPDATE docs SET body = ? WHERE id = ?", (body, fid)))
    _run(vault_copy, ("PRAGMA writable_schema = ON", ()), (swap, ("WHERE deleted = 7", "WHERE deleted = 0")))
    shown, _ = _shown_or_said(vault_copy, fid)
    assert shown


@pytest.mark.parametrize("planted", [
    True, False], ids=["trigger", "control"])
def test_81a_2_her_save_through_the_mount_is_not_kept_from_the_push_by_a_trigger(
        vault_copy: Path, planted: bool) -> None:
    fid = _two_files(vault_copy)
    with _composed(vault_copy) as fs:
        pushed = fs.store.next_seq() - 1  # as if every commit so far were pushed: the push's checkpoint
    if planted:
        _run(vault_copy, (TRIGGER, ()))
    with _composed(vault_copy) as fs:
        node = fs.volume.resolve(b"victim.txt")

        async def save() -> bytes:
            await rewrite(fs.ops, node.ino, b"her new words")
            await fs.volume.flush_pending()
            return await read_all(fs.ops, node.ino)

        assert trio.run(save) == b"her new words", "the scene: her save shown"
        head = fs.store.get(fid)["enc"]
        sent = [c["id"] for c in fs.store.changes(pushed)[0]]
        pending = fs.store.count_after(pushed)
    assert fid in sent and pending, (
        f"her save of victim.txt ({fid}, node now {head[:12]}...) never in the push: changes after "
        f"{pushed}: {sent}; pending: {pending}")
