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


def test_a_planted_run_of_billions_is_cut_and_merged_never_expanded() -> None:
    """Attack round 42a (8): a row planted by whoever writes the vault folder, one run of four billion
    indices: a record placed again cuts it, gc's ``forget`` merges into it, both as runs (at once)."""
    db = _db()
    db.execute("INSERT INTO punched (fid, vid, owner, idxs) VALUES (?, ?, ?, ?)",
               (FID, V1, OWNER, "-4000000000:-3"))
    places.insert_arrived(db, [PlaceRow(FID, V1, -7, OWNER, 5000, 10)])
    assert _punched(db) == [(V1, OWNER, "-4000000000:-8,-6:-3")]
    places.forget(db, FID, [(0, 200)])  # V1's -2 and -1: adjacent to the last run
    assert _punched(db) == [(V1, OWNER, "-4000000000:-8,-6:-1")]


def test_a_punched_row_that_is_not_runs_is_left_out(tmp_path) -> None:
    """A row whose ``idxs`` is not runs as ``forget`` writes them (unsorted, overlapping, backwards,
    not numbers) is left out by readers, and replaced by what gc forgets next."""
    path = tmp_path / "store.sqlite"
    db = sqlite3.connect(path)
    db.executescript(places.SCHEMA)
    bad = {"3": "5:9,1:2", "4": "1:5,3:7", "5": "9:1", "6": "x", "7": "1:" + "9" * 30}
    db.executemany("INSERT INTO punched (fid, vid, owner, idxs) VALUES (?, ?, ?, ?)",
                   [(FID, vid * 32, OWNER, idxs) for vid, idxs in bad.items()]
                   + [(FID, V1, OWNER, "-2:-1,4,6:9")])
    db.commit()
    assert places.Places(path).punched_of(FID) == {V1: (OWNER, [(-2, -1), (4, 4), (6, 9)])}
    places.insert_own(db, [PlaceRow(FID, "3" * 32, 0, OWNER, 0, 10)])
    places.forget(db, FID, [(0, 10)])
    assert db.execute("SELECT idxs FROM punched WHERE vid = ?", ("3" * 32,)).fetchone() == ("0",)


def test_overlap_cuts_runs_to_the_indices_named() -> None:
    runs = [(-4_000_000_000, -8), (-6, -3), (5, 9), (20, 20)]
    assert places.overlap(runs, 0, 4) == []
    assert places.overlap(runs, -10, 6) == [(-10, -8), (-6, -3), (5, 6)]
    assert places.overlap(runs, 7, 100) == [(7, 9), (20, 20)]
    assert places.overlap(runs, -5, -5) == [(-5, -5)]
    assert places.overlap([], 0, 10) == []


def test_punched_among_names_the_punched_records_of_a_batch_in_one_query() -> None:
    """Attack round 45b (2): the pull leaves a punched record of its batch to the checked ask; a row
    that is not runs, or a planted run of billions, is read as runs (never expanded)."""
    db = _db()
    places.forget(db, FID, [(0, 400)])  # V1's -2, -1, 0, 1
    other = "e" * 32
    db.executemany("INSERT INTO punched (fid, vid, owner, idxs) VALUES (?, ?, ?, ?)",
                   [(other, V1, OWNER, "-4000000000:-3"), (other, V2, OWNER, "x")])
    asked = [(FID, V1, 1), (FID, V1, 2), (FID, V2, 4), (other, V1, -5), (other, V2, 0), ("d" * 32, V1, 0)]
    assert places.punched_among(db, asked) == {(FID, V1, 1), (other, V1, -5)}
    assert places.punched_among(db, []) == set()
    many = [(f"{n:032x}", V1, 0) for n in range(1200)] + [(FID, V1, 0)]  # more files than one query names
    assert places.punched_among(db, many) == {(FID, V1, 0)}


def test_a_judgement_made_now_caches_no_verdict(tmp_path) -> None:
    """``admits_now`` (the walk's look at a writer's old version, attack round 47a (1)) judges where no
    verdict is cached and caches none: a refusal made before the take that brings the writer's grant
    does not outlive it (46a (2)); a verdict cached by ``admits`` counts as given."""
    store = places.Places(tmp_path / "places.db")
    granted = {"ok": False}
    asked: list[str] = []

    def judge(doc: dict) -> bool:
        asked.append(doc["_id"])
        return granted["ok"]

    store.judge_as(OWNER, judge)
    doc = {"_id": V1, "owner": OWNER}
    assert not store.admits_now(FID, V1, doc)
    assert not store.judged(FID, V1)
    granted["ok"] = True  # the take brought his grant
    assert store.admits_now(FID, V1, doc) and store.admits(FID, V1, doc)
    assert asked == [V1, V1, V1] and store.judged(FID, V1)
    granted["ok"] = False
    assert store.admits_now(FID, V1, doc) and asked == [V1, V1, V1]  # the cached verdict counts


def test_an_arrival_is_seen_by_the_readers_of_its_files_alone(tmp_path, monkeypatch) -> None:
    """Attack round 51a (1): ``note_arrival`` counts arrivals and the last that placed records of each
    file; a reader looks its rows up again once one placed records of its file after it looked.  Past
    the files kept by name, a dropped one reads as placed when the oldest kept was: too often, never
    too few; ``note_arrival()`` (no files named) makes every reader look again."""
    monkeypatch.setattr(places, "_ARRIVALS_KEPT", 2)
    table = places.Places(tmp_path / "store.sqlite")
    seen = table.arrivals
    table.note_arrival([V1])
    assert table.placed_since(V1, seen) and not table.placed_since(FID, seen)
    seen = table.arrivals
    table.note_arrival(iter([FID, FID]))  # a generator of rows' fids, as the sync passes
    assert table.placed_since(FID, seen) and not table.placed_since(V1, seen)
    table.note_arrival([V2])  # three files named, two kept: V1 (the first arrival's) dropped
    assert table.placed_since(V1, 0) and not table.placed_since(V1, 1), "as when it was kept"
    assert table.placed_since(OWNER, 0), "a file never named, looked up before the first: once too often"
    assert not table.placed_since(OWNER, 1)
    assert table.placed_since(FID, 1) and table.placed_since(V2, 2) and not table.placed_since(FID, 2)
    seen = table.arrivals
    table.note_arrival()
    assert all(table.placed_since(fid, seen) for fid in (FID, V1, V2, OWNER))


def test_a_bad_copies_row_is_said_once_not_at_each_look_up(tmp_path, caplog) -> None:
    """Each reader of a file, and each arrival of its records, looks its copies up: a planted row is
    skipped each time (attack round 50a (4)) but said once (51a (1))."""
    path = tmp_path / "store.sqlite"
    db = sqlite3.connect(path)
    db.executescript(places.SCHEMA)
    db.executemany("INSERT INTO copies VALUES (?, ?, ?, ?, ?, ?)",
                   [(FID, V1, 0, b"\0" * 32, 0, 1), (FID, V1, 1, "not hex", 0, 1),
                    (FID, V1, 2, "ab" * 32, 10, 20)])
    db.commit()
    table = places.Places(path)
    for _ in range(3):
        assert table.copies_of(FID) == {(V1, 2): {bytes.fromhex("ab" * 32): (10, 20)}}
    said = [r.getMessage() for r in caplog.records if "bad copies row" in r.getMessage()]
    assert len(said) == 2, said
