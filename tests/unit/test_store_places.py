"""store/places.py: a ``places`` row is data to check (attack round 78c (1), (4)): one whose offset or
length is no place fusevault writes (a text, negative, a terabyte, a float) is left out where rows are
read (``arrived_of`` marks it damaged, ``of_version`` and ``since`` leave it out), never handed to a
read, and the rows after it are read on."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fusevault.store import places
from fusevault.store.places import PlaceRow
from fusevault.vault.format.manifest import FULL_RECORD

FID, VID, OWNER = "f" * 32, "1" * 32, "a" * 32

BAD = {"text": "abc", "negative": -5, "2**40": 2**40, "float": 5.5, "nan": float("nan"),
       "inf": float("inf"), "blob": b"\x00\x01", "null": None}


def test_the_block_bound_is_a_full_records() -> None:
    """The store does not import the vault: its copy of a block record's most is held equal here."""
    assert places._BLOCK_MOST == FULL_RECORD


def test_a_place_fusevault_writes_is_taken() -> None:
    assert places.checked_place(0, 64, FULL_RECORD)
    assert places.checked_place(-1, 64, 100_000)  # a manifest may be longer than a block
    assert places.checked_place(-9, 2**40, 5000)  # a node, far into a large .vf


@pytest.mark.parametrize("value", BAD.values(), ids=BAD.keys())
def test_a_length_that_is_no_records_is_refused(value: object) -> None:
    assert not places.checked_place(0, 64, value)
    assert not places.checked_place(-1, 64, value)


@pytest.mark.parametrize("value", [v for k, v in BAD.items() if k != "2**40"],
                         ids=[k for k in BAD if k != "2**40"])
def test_an_offset_that_is_no_place_is_refused(value: object) -> None:
    assert not places.checked_place(0, value, 100)


@pytest.mark.parametrize("value", [v for k, v in BAD.items() if k not in ("negative", "2**40")],
                         ids=[k for k in BAD if k not in ("negative", "2**40")])
def test_an_index_that_is_no_integer_is_refused(value: object) -> None:
    assert not places.checked_place(value, 64, 100)


def test_bounds_of_offset_and_length() -> None:
    assert not places.checked_place(0, 2**62 + 1, 100)  # a huge offset
    assert not places.checked_place(0, 64, FULL_RECORD + 1)  # a block longer than a block's record
    assert not places.checked_place(-1, 64, 2**31)  # no read returns it whole
    assert not places.checked_place(True, 64, 100)  # a bool is no index SQLite returns


def _store(tmp_path: Path, bad: object) -> Path:
    path = tmp_path / "store.sqlite"
    db = sqlite3.connect(path)
    db.executescript(places.SCHEMA)
    places.insert_own(db, [PlaceRow(FID, VID, idx, OWNER, 64 + 100 * (idx + 1), 100) for idx in range(-1, 3)])
    places.insert_arrived(db, [PlaceRow(FID, VID, 3, OWNER, 900, 100)])
    db.execute("UPDATE places SET length = ? WHERE idx = 1", (bad,))  # the attacker's one row
    db.execute("UPDATE places SET length = ?, arrived = 1 WHERE idx = 2", (bad,))
    db.commit()
    db.close()
    return path


@pytest.mark.parametrize("value", [v for k, v in BAD.items() if k not in ("null", "nan")],
                         ids=[k for k in BAD if k not in ("null", "nan")])
def test_bad_rows_are_left_out_where_rows_are_read(tmp_path: Path, value: object) -> None:
    # (NULL breaks the column's NOT NULL; SQLite keeps a NaN as NULL: neither can be planted.)
    path = _store(tmp_path, value)
    reader = places.Places(path)
    assert reader.arrived_of(FID) == {(VID, 2): None, (VID, 3): (900, 100)}  # None: damaged, refused
    assert [row.idx for row in reader.of_version(FID, VID)] == [-1, 0, 3]
    db = sqlite3.connect(path)
    assert [row.idx for _, row in places.since(db, 0, 100)] == [-1, 0, 3]


def test_since_reads_past_a_batch_of_bad_rows(tmp_path: Path) -> None:
    path = _store(tmp_path, "abc")
    db = sqlite3.connect(path)
    db.executemany("INSERT INTO places (fid, vid, idx, owner, offset, length) VALUES (?, ?, ?, ?, 0, ?)",
                   [(FID, "2" * 32, idx, OWNER, 2**40) for idx in range(10)])
    db.execute("INSERT INTO places (fid, vid, idx, owner, offset, length) VALUES (?, ?, 0, ?, 64, 100)",
               (FID, "3" * 32, OWNER))
    first = places.since(db, 0, 4)  # -1, 0 and two bad rows
    assert [row.idx for _, row in first] == [-1, 0]
    second = places.since(db, first[-1][0], 4)
    assert [row.idx for _, row in second] == [3]
    # After it: ten bad rows, more than a batch, then a good one: read on, not an empty answer.
    assert [(row.vid, row.idx) for _, row in places.since(db, second[-1][0], 4)] == [("3" * 32, 0)]
