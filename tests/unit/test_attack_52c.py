"""Attack round 52c, unit: 0ffc69f (50a (1): ``punched_wants.inherits_punched`` notes settled walks,
``Inodes.records_settled``, ``SETTLED_LIMIT`` = 4096, oldest first out).

Hole (2), medium (memory grows with honest use, for as long as the tree is unlocked): the note keeps, per
  version walked, the whole set of copies it was walked against (``_copies_seen``: a tuple of writer,
  index and SHA-256 for every ``copies`` row of another writer of the file), built anew at each walk.
  The cap counts notes, not what they hold, and nothing drops a note of a version superseded
  (``drop_superseded``, ``_forget`` leave ``records_settled`` alone).
  Scene: a big file whose inherited blocks gc punched here and a peer's version fetched back (41b's
    honest scene, 50a (1): every record fetched again is a ``copies`` row, the sole copy too), e.g. a
    4 GiB disk image (65,536 records of 64 KiB).  Each later version of it that arrives (her other
    device's saves, a WRITE member's edits: a few KB uploaded each) is walked once, wants nothing, and
    is noted with its own frozenset of all 65,536 copies.
  Seen: ``test_settled_notes_hold_no_more_than_the_cap_in_copies`` (run, fails: 16 versions of a file
    with 8,192 copies rows hold 131,072 copy entries, 29.4 MB by tracemalloc: 1.8 MB a version,
    ~225 bytes a copy).  The walk itself (``_inherited``) is stubbed to "wants nothing"
    (the version names the copies as placed), the rest of ``inherits_punched`` is the real one.
  Cause: punched_wants.py ``_note_settled`` stores ``seen`` per version; ``SETTLED_LIMIT`` bounds the
    count of notes only.
  Impact: the mount's memory grows by ~225 bytes x the file's copies rows per version of the file that
    arrives, up to 4,096 versions: ~60 GB for the 4 GiB image (15 MB a version), until her lock or the
    OOM killer; a WRITE member drives it at will (one small commit a version).  Before 0ffc69f each
    such arrival cost a manifest load and kept nothing.
  Fix (suggested): note a digest of the copies seen (SHA-256 over the sorted rows, or the ``copies``
    row count with a generation the store bumps at each ``insert_arrived(again=True)``/``forget``)
    instead of the set; or one note per file (the latest copies generation) with the versions settled
    under it; and drop the notes of superseded versions with their wants (``drop_superseded``).

Tests: those named above.  Run (-n 0, this file, ~16:20 UTC): with --runxfail the xfail fails at its own
  assertion; the control passes.
"""

from __future__ import annotations

import tracemalloc
from types import SimpleNamespace

from fusevault.vault.services import punched_wants

WRITER = "a" * 32  # the writer of the blocks gc punched here and a peer's version had fetched back


def _volume(copies_rows: int) -> SimpleNamespace:
    """A volume whose file ``f`` has ``copies_rows`` records of WRITER placed again once each (store
    rows read anew at each ``copies_of``, as store/places.py builds them)."""

    def copies_of(fid: str) -> dict:
        return {(f"{WRITER}", i): {bytes.fromhex(f"{i:064x}"): (4096 + i * 65_600, 65_600)}
                for i in range(copies_rows)}

    places = SimpleNamespace(rows_kept=True, punched_of=lambda fid: {}, copies_of=copies_of)
    tree = SimpleNamespace(records_asked={}, records_wanted={}, records_settled={}, records_rewalk={},
                           records_vouched={})
    return SimpleNamespace(layout=SimpleNamespace(places=places), tree=tree)


def _versions_arrive(monkeypatch, copies_rows: int, versions: int) -> tuple[SimpleNamespace, int]:
    """``versions`` versions of ``f`` arrive one after the other, each walked once and wanting nothing
    (it names the copies as placed).  (the volume, bytes traced as kept by the notes)."""
    monkeypatch.setattr(punched_wants, "_inherited", lambda volume, fresh, punched, copies: ({}, False))
    volume = _volume(copies_rows)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for n in range(versions):
            fresh = SimpleNamespace(fid="f", head=f"{n:032x}", manifest=(0, 100))
            assert not punched_wants.inherits_punched(volume, fresh)  # type: ignore[arg-type]
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return volume, kept


def test_settled_notes_hold_no_more_than_the_cap_in_copies(monkeypatch) -> None:
    volume, kept = _versions_arrive(monkeypatch, 8192, 16)
    settled = volume.tree.records_settled
    held = sum(len(seen) for seen in settled.values())
    print(f"{len(settled)} notes hold {held} copy entries, {kept / 1e6:.1f} MB traced "
          f"({kept / held:.0f} bytes a copy); at the cap: {punched_wants.SETTLED_LIMIT} notes")
    assert held <= punched_wants.SETTLED_LIMIT, (
        f"{len(settled)} versions of one file noted hold {held} copy entries ({kept / 1e6:.1f} MB): "
        f"{punched_wants.SETTLED_LIMIT} such notes of a file with 65,536 copies hold "
        f"~{kept / held * 65_536 * punched_wants.SETTLED_LIMIT / 1e9:.0f} GB")


def test_a_settled_version_is_not_walked_again_control(monkeypatch) -> None:
    """What the note is for (50a (1)): a version walked once against these copies is not walked again."""
    walks = []
    monkeypatch.setattr(punched_wants, "_inherited",
                        lambda volume, fresh, punched, copies: walks.append(fresh.head) or ({}, False))
    volume = _volume(4)
    fresh = SimpleNamespace(fid="f", head="b" * 32, manifest=(0, 100))
    for _ in range(3):
        assert not punched_wants.inherits_punched(volume, fresh)  # type: ignore[arg-type]
    assert walks == ["b" * 32]


def test_a_walk_that_failed_is_not_noted_as_settled(monkeypatch) -> None:
    """52c (2)'s lead: a walk that raised (a record of its own unreadable) says nothing of what the
    version wants: not noted, it is walked again at the next look."""
    walks = []
    monkeypatch.setattr(punched_wants, "_inherited",
                        lambda volume, fresh, punched, copies: walks.append(fresh.head) or (None, False))
    volume = _volume(4)
    fresh = SimpleNamespace(fid="f", head="b" * 32, manifest=(0, 100))
    for _ in range(2):
        assert not punched_wants.inherits_punched(volume, fresh)  # type: ignore[arg-type]
    assert not volume.tree.records_settled
    assert walks == ["b" * 32] * 2


def test_a_failed_real_walk_is_not_noted_as_settled(monkeypatch) -> None:
    """The real ``_inherited`` on a manifest it cannot read answers None (failed), not {} (wants nothing)."""

    class Broken:
        def __init__(self, *args, **kwargs) -> None:
            pass

        def absent_manifest_nodes(self, *args):
            raise OSError("unreadable")

        def close(self) -> None:
            pass

    monkeypatch.setattr(punched_wants, "Content", Broken)
    volume = _volume(4)
    fresh = SimpleNamespace(fid="f", head="b" * 32, manifest=(0, 100), owner="o", dek=b"k")
    assert not punched_wants.inherits_punched(volume, fresh)  # type: ignore[arg-type]
    assert not volume.tree.records_settled


def test_the_notes_of_superseded_versions_are_dropped(monkeypatch) -> None:
    """52c (2): a note goes with its version once no node shown has it as its head (``drop_superseded``)."""
    monkeypatch.setattr(punched_wants, "_inherited", lambda volume, fresh, punched, copies: ({}, False))
    monkeypatch.setattr(punched_wants.replica, "local_of", lambda store: object())
    monkeypatch.setattr(punched_wants.replica, "in_conflict", lambda local, fid: False)
    volume = _volume(4)
    shown = SimpleNamespace(fid="f", head="c" * 32, manifest=(0, 100))
    volume.tree.find = lambda fid: shown if fid == "f" else None
    volume.tree.records_sealed = {}
    volume.store = None
    for head in ("b" * 32, "c" * 32):
        fresh = SimpleNamespace(fid="f", head=head, manifest=(0, 100))
        assert not punched_wants.inherits_punched(volume, fresh)  # type: ignore[arg-type]
    assert set(volume.tree.records_settled) == {("f", "b" * 32), ("f", "c" * 32)}
    punched_wants.drop_superseded(volume)  # type: ignore[arg-type]
    assert set(volume.tree.records_settled) == {("f", "c" * 32)}
