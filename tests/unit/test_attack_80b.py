"""Attack round 80b, at a312a95: the store's side (store/local.py).  Attacker: whoever writes the vault
folder (store.sqlite; no key).  The in-process holes are in tests/inprocess/test_attack_80b.py.

(1) the store side of tests/inprocess/test_attack_80b.py (1): ``LocalStore.get`` of a row whose body
    SQLite reads as no JSON (one written past the JSON indexes, ``PRAGMA writable_schema``) raises
    ``sqlite3.OperationalError: malformed JSON`` (its SELECT evaluates ``json_extract`` on the body,
    30747e8), not ``Unreadable`` as ``_doc`` says of a body that is not JSON; with the indexes replaced by
    impostors of their names, ``iter_type`` and ``by_file`` raise the same for one such row among all.
    Cause: store/local.py ``get``, ``iter_type``, ``by_file`` (the ``_KIND``/``_FID`` expressions), and
    ``__init__`` (``CREATE INDEX IF NOT EXISTS`` checks a name only).
    Test: ``test_80b_1_the_store_reads_a_body_sqlite_calls_no_json_as_unreadable[get|iter_type|by_file]``.

(3) low (one save of hers silently never pushed, "nothing pending"; every later commit fails).  Steps:
    the folder's writer inserts one row whose ``seq`` is exactly ``SEQ_LIMIT`` (2**62: "whole", so
    counted by ``next_seq``).  Her next commit is given seq 2**62 + 1: committed, shown to her, but no
    whole seq, so ``changes`` (the push) and ``count_after`` (the sync status) never count it: never sent,
    unsaid; every commit after it clashes on that seq (``UNIQUE constraint failed``).  (A row at
    2**62 - k: her next k commits are pushed, then the same.)  Expected: no commit of hers is given a seq
    ``changes`` does not read: ``next_seq`` past ``SEQ_LIMIT`` refuses the commit (said: the store holds
    a row of the folder's writer's at the limit), or the store renumbers it.  Cause: store/local.py
    ``next_seq`` (``MAX(seq) + 1`` of whole seqs, unbounded) against ``WHOLE_SEQ``'s upper bound (round
    14's fix: a row beyond the limit is left out of the counter, one AT it is not).
    Test: ``test_80b_3_a_row_at_the_seq_limit_never_hides_her_next_commit_from_the_push``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fusevault.errors import CorruptData, VaultError
from fusevault.store.local import SEQ_LIMIT, LocalStore

NODE = {"_id": "n" * 32, "type": "node", "fid": "f" * 32}


def _past_the_indexes(path: Path, doc_id: str, body: str) -> None:
    swap = "UPDATE sqlite_master SET sql = replace(sql, ?, ?) WHERE name IN ('docs_kind', 'docs_fid')"
    for step in ("off", "write", "on"):
        db = sqlite3.connect(path)
        try:
            if step == "write":
                assert db.execute("UPDATE docs SET body = ? WHERE id = ?", (body, doc_id)).rowcount == 1
            else:
                db.execute("PRAGMA writable_schema = ON")
                db.execute(swap, ("WHERE deleted = 0", "WHERE deleted = 7") if step == "off"
                           else ("WHERE deleted = 7", "WHERE deleted = 0"))
            db.commit()
        finally:
            db.close()


def _impostor_indexes(path: Path, doc_id: str, body: str) -> None:
    db = sqlite3.connect(path)
    try:
        db.executescript("DROP INDEX docs_kind; DROP INDEX docs_fid;"
                         "CREATE INDEX docs_kind ON docs(type) WHERE deleted = 0;"
                         "CREATE INDEX docs_fid ON docs(id) WHERE deleted = 0;")
        db.execute("UPDATE docs SET body = ? WHERE id = ?", (body, doc_id))
        db.commit()
    finally:
        db.close()


READS = {
    "get": (_past_the_indexes, lambda store: store.get(NODE["_id"])),
    "iter_type": (_impostor_indexes, lambda store: list(store.iter_type("node"))),
    "by_file": (_impostor_indexes, lambda store: store.by_file("node", NODE["fid"])),
}


@pytest.mark.parametrize("plant, read", READS.values(), ids=READS.keys())
def test_80b_1_the_store_reads_a_body_sqlite_calls_no_json_as_unreadable(tmp_path: Path, plant, read) -> None:
    path = tmp_path / "store.sqlite"
    store = LocalStore(path)
    store.put_many([dict(NODE), {"_id": "o" * 32, "type": "node", "fid": "e" * 32}])
    store.close()
    plant(path, NODE["_id"], "{")
    store = LocalStore(path)
    try:
        try:
            read(store)  # left out (iter_type, by_file) or refused as Unreadable (get)
        except CorruptData:
            pass
        except sqlite3.OperationalError as err:
            raise AssertionError(f"one planted body stops the read: {err!r}") from None
    finally:
        store.close()


def test_80b_3_a_row_at_the_seq_limit_never_hides_her_next_commit_from_the_push(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    store = LocalStore(path)
    store.put_many([{"_id": "a" * 32, "type": "node"}])
    pushed, _ = store.changes(0)
    store.close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO docs (id, rev, seq, deleted, type, body) "
               "VALUES ('planted', '1-a', ?, 0, 'x', '{}')", (SEQ_LIMIT,))
    db.commit()
    db.close()
    store = LocalStore(path)
    try:
        checkpoint = pushed[-1]["seq"]
        try:
            store.put_many([{"_id": "b" * 32, "type": "node"}])
        except VaultError:
            return  # refused, said: no save of hers held back in silence
        changes, _ = store.changes(checkpoint)
        pending = store.count_after(changes[-1]["seq"] if changes else checkpoint)  # once those are sent
        assert "b" * 32 in [c["id"] for c in changes], (
            f"her commit stored, never in the push's changes: {changes}; pending after them: {pending}")
    finally:
        store.close()
