"""Attack round 79a, at 141bf62: round 78c (1), (4)'s check of ``places`` rows (e24e4b7, store/places.py
``checked_place``/``checked_row``).

(3) medium (the fix of 78c (1), (4) bypassed: her push stops for good, as in 78c (4); the readers of a
    version's places raise instead of marking one record damaged).  Attacker: whoever writes the vault
    folder (store.sqlite, no key).  Steps: one ``places`` row of her version gets a ``length`` (or
    ``owner``, ``vid``...) that is TEXT not UTF-8 (``CAST(X'ff61' AS TEXT)``: SQLite keeps any bytes as
    TEXT).  Seen: ``places.since`` (the push's reader) and ``Places.of_version`` raise
    ``sqlite3.OperationalError: Could not decode to UTF-8 column 'length'``: the row never reaches
    ``checked_row``, the whole batch fails (every later push meets the same row first).  Expected: the
    row left out and said, as a text ``'abc'`` is since e24e4b7 (``test_store_places.py``), the rows
    after it read.  Cause: sqlite3 decodes TEXT as UTF-8 while fetching (no ``text_factory``), before
    store/places.py:318 ``checked_row`` sees the value (places.py:379 ``since``, ``of_version``).  Fix
    (suggested): select the columns as ``CAST(... AS BLOB)`` or set ``text_factory = bytes`` on the
    places reader and decode the text columns in ``checked_row`` (an undecodable id or length is a bad
    row); or select ``WHERE typeof(length) = 'integer' AND typeof(offset) = 'integer' ...`` and say
    the rest by ``n`` alone.  Test: ``test_79a_3_a_places_row_not_utf8_is_left_out[since|of_version]``
    (strict xfails); control ``test_79a_3_control_a_text_length_is_left_out`` (e24e4b7's own case).

(1b) the store side of tests/inprocess/test_attack_79a.py (1) (9c2064f, store/local.py ``iter_type``,
    ``by_file``, ``_readable``): a body with a key written twice, or spelt with an escape, reads one way
    to SQLite's ``json_extract`` (first key; escaped labels unmatched in SQLite 3.40) and another to
    Python (last key; escapes decoded), so ``get`` hands out a live document that ``iter_type`` and
    ``by_file`` never select, and ``by_file`` hands out a version whose ``fid`` is another file's:
    a version of file X with ``{"fid": Y, ..., "fid": X}`` is missing from X's history (78c (3)'s
    "called missing": ``check --repair`` would restore X's older version as its newest) and listed in
    Y's (``_readable`` checks only ``type``).  Test:
    ``test_79a_1b_get_and_the_kind_selections_agree[dup_type_node|escaped_type_node|dup_type_version|dup_fid_version]``
    (strict xfails).  Fix (suggested): refuse, in ``_doc``, a body with a duplicated key
    (``object_pairs_hook``) and one whose ``type``/``fid`` differ from SQLite's reading; ``_readable``
    checks ``fid`` as it checks ``type``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fusevault.errors import CorruptData
from fusevault.store import places
from fusevault.store.local import LocalStore
from fusevault.store.places import PlaceRow

FID, VID, OWNER = "f" * 32, "1" * 32, "a" * 32


def _store(tmp_path: Path, bad_sql: str) -> Path:
    path = tmp_path / "store.sqlite"
    db = sqlite3.connect(path)
    db.executescript(places.SCHEMA)
    places.insert_own(db, [PlaceRow(FID, VID, idx, OWNER, 64 + 100 * (idx + 1), 100) for idx in range(-1, 3)])
    db.execute(f"UPDATE places SET length = {bad_sql} WHERE idx = 1")  # the attacker's one row
    db.commit()
    db.close()
    return path


def _since(path: Path) -> list[int]:
    """The push's read (sync/replicator.py ``_records_since``: the store's own connection)."""
    store = LocalStore(path)
    try:
        return [row.idx for _, row in places.since(store.db, 0, 100)]
    finally:
        store.close()


READS = {"since": _since,
         "of_version": lambda path: [row.idx for row in places.Places(path).of_version(FID, VID)]}


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
def test_79a_3_a_places_row_not_utf8_is_left_out(tmp_path: Path, read) -> None:
    path = _store(tmp_path, "CAST(X'ff61' AS TEXT)")
    try:
        idxs = read(path)
    except sqlite3.OperationalError as err:
        raise AssertionError(f"one planted row stops the read: {err!r:.100}") from None
    assert idxs == [-1, 0, 2]


@pytest.mark.parametrize("read", READS.values(), ids=READS.keys())
def test_79a_3_control_a_text_length_is_left_out(tmp_path: Path, read) -> None:
    assert read(_store(tmp_path, "'abc'")) == [-1, 0, 2]


X, Y = "0" * 31 + "1", "0" * 31 + "2"
ODD = {
    "dup_type_node": ("node", X, lambda b: '{"type": "FilesMetaData", ' + b[1:]),
    "escaped_type_node": ("node", X, lambda b: b.replace('"type"', '"typ\\u0065"', 1)),
    "dup_type_version": ("FilesMetaData", "v" * 32, lambda b: '{"type": "node", ' + b[1:]),
    "dup_fid_version": ("FilesMetaData", "v" * 32, lambda b: f'{{"fid": "{Y}", ' + b[1:]),
}


@pytest.mark.parametrize("kind, doc_id, odd", ODD.values(), ids=ODD.keys())
def test_79a_1b_get_and_the_kind_selections_agree(tmp_path: Path, kind: str, doc_id: str, odd) -> None:
    path = tmp_path / "store.sqlite"
    store = LocalStore(path)
    store.put_many([{"_id": X, "type": "node", "fid": X, "enc": "x"},
                    {"_id": "v" * 32, "type": "FilesMetaData", "fid": X, "enc": "y"},
                    {"_id": Y, "type": "node", "fid": Y, "enc": "z"}])
    store.close()
    db = sqlite3.connect(path)  # the attacker: one body rewritten, its fields (and a signature) the same
    (body,) = db.execute("SELECT body FROM docs WHERE id = ?", (doc_id,)).fetchone()
    assert db.execute("UPDATE docs SET body = ? WHERE id = ?", (odd(body), doc_id)).rowcount == 1
    db.commit()
    db.close()
    store = LocalStore(path)
    try:
        try:
            got = store.get(doc_id)
        except CorruptData:  # refused by get, as the selections leave it out: they agree
            got = None
        if got is not None:  # handed out: then found where its kind and file are asked for
            assert (got["type"], got["fid"]) == (kind, X), "the scene: Python reads the original fields"
            selected = ([d["_id"] for d in store.iter_type(kind)] if kind == "node"
                        else [d["_id"] for d in store.by_file(kind, X)])
            assert doc_id in selected, f"{doc_id[:4]} handed out by get, not selected as {kind} of {X[-4:]}"
        assert all(d["fid"] == Y for d in store.by_file("FilesMetaData", Y)), "another file's version in Y's"
    finally:
        store.close()
