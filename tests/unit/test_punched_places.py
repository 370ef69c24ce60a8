"""store/places.py: gc's ``forget`` notes what it punched (``punched``, one row per version, indices
as runs); a record placed again leaves it (attack round 41b (1))."""

from __future__ import annotations

import sqlite3

from fusevault.store import places
from fusevault.store.places import PlaceRow

FID, V1, V2, OWNER = "f" * 32, "1" * 32, "2" * 32, "a" * 32


def _db() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.executescript(places.SCHEMA)
    rows = [PlaceRow(FID, vid, idx, OWNER, 100 * n, 10) for n, (vid, idx) in
            enumerate([(V1, -2), (V1, -1), *((V1, i) for i in range(5)), (V2, -1), (V2, 4)])]
    places.insert_own(db, rows)
    return db


def _punched(db: sqlite3.Connection) -> list[tuple]:
    return db.execute("SELECT vid, owner, idxs FROM punched ORDER BY vid").fetchall()


def test_punched_ranges_are_noted_per_version_as_runs() -> None:
    db = _db()
    assert places.forget(db, FID, [(0, 400), (500, 700)]) == 6  # V1's -2, -1, 0, 1 and 3, 4
    assert _punched(db) == [(V1, OWNER, "-2:1,3:4")]
    assert places.forget(db, FID, None) == 3  # the file removed: V1's 2, V2's -1 and 4
    assert _punched(db) == [(V1, OWNER, "-2:4"), (V2, OWNER, "-1,4")]


def test_a_record_placed_again_is_no_longer_punched() -> None:
    db = _db()
    places.forget(db, FID, None)
    places.insert_arrived(db, [PlaceRow(FID, V1, i, OWNER, 2000 + 10 * i, 10) for i in (0, 1)])
    assert _punched(db) == [(V1, OWNER, "-2:-1,2:4"), (V2, OWNER, "-1,4")]
    places.insert_arrived(db, [PlaceRow(FID, V2, i, OWNER, 3000 + 10 * i, 10) for i in (-1, 4)])
    assert _punched(db) == [(V1, OWNER, "-2:-1,2:4")]
    assert places.find(db, FID, V2, 4).offset == 3040
