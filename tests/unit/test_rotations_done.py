"""vault/model/rotations_done.py: a group owner's key-rotation request is carried out once per device,
whatever epoch it names (attack round 20 (3)); a damaged record only costs one more re-key."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusevault import paths
from fusevault.vault.model import rotations_done

HER = "a" * 32
REQUEST = {"_id": "rotate-f", "type": "Rotation", "owner": HER, "fid": "f", "epoch": 3, "sig": {"by": "bob"}}


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))


def test_a_request_done_here_is_known_whatever_its_revision(tmp_path: Path) -> None:
    assert not rotations_done.done(tmp_path, HER, REQUEST)
    rotations_done.remember(tmp_path, HER, {**REQUEST, "_rev": "1-a"})
    assert rotations_done.done(tmp_path, HER, {**REQUEST, "_rev": "7-b"})  # replayed under another revision
    assert not rotations_done.done(tmp_path, HER, {**REQUEST, "epoch": 4})  # another request
    assert not rotations_done.done(tmp_path, "b" * 32, REQUEST)  # another user's memory
    assert not rotations_done.done(tmp_path / "other vault", HER, REQUEST)


@pytest.mark.parametrize("content", [b"not json", b"5", b'{"x": 1}', b'[5, null]'])
def test_a_damaged_record_counts_as_none_and_is_written_again(tmp_path: Path, content: bytes) -> None:
    place = paths.confirmed_file(tmp_path, HER, ".rotations")
    place.parent.mkdir(parents=True)
    place.write_bytes(content)
    assert not rotations_done.done(tmp_path, HER, REQUEST)
    rotations_done.remember(tmp_path, HER, REQUEST)
    assert rotations_done.done(tmp_path, HER, REQUEST)


def test_the_members_a_share_was_sealed_to_are_kept_per_share_and_user(tmp_path: Path) -> None:
    assert rotations_done.sealed_members(tmp_path, HER) == {}
    rotations_done.remember_members(tmp_path, HER, {"s1": {"bob", "carol"}, "s2": {"bob"}})
    rotations_done.remember_members(tmp_path, HER, {"s1": {"bob"}})  # the others kept
    assert rotations_done.sealed_members(tmp_path, HER) == {"s1": {"bob"}, "s2": {"bob"}}
    assert rotations_done.sealed_members(tmp_path, "b" * 32) == {}  # another user's memory
    assert rotations_done.sealed_members(tmp_path / "other vault", HER) == {}


def test_the_oldest_shares_are_forgotten_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rotations_done, "SEALED_KEEP", 2)
    for sid in ("s1", "s2", "s3"):
        rotations_done.remember_members(tmp_path, HER, {sid: {"bob"}})
    rotations_done.remember_members(tmp_path, HER, {"s2": {"bob", "dave"}})  # the newest again
    assert list(rotations_done.sealed_members(tmp_path, HER)) == ["s3", "s2"]


@pytest.mark.parametrize("content", [b"not json", b"5", b'["s1"]', b'{"s1": "bob", "s2": [5, "bob"]}'])
def test_a_damaged_members_record_keeps_only_what_reads(tmp_path: Path, content: bytes) -> None:
    place = paths.confirmed_file(tmp_path, HER, ".sealed-members")
    place.parent.mkdir(parents=True)
    place.write_bytes(content)
    kept = rotations_done.sealed_members(tmp_path, HER)
    assert kept in ({}, {"s2": {"bob"}})
    rotations_done.remember_members(tmp_path, HER, {"s1": {"carol"}})
    assert rotations_done.sealed_members(tmp_path, HER)["s1"] == {"carol"}


def test_a_record_past_its_places_is_full_for_a_day(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """49b (2): more places than ``UNBOUND_KEEP`` re-keyed within a day: the record keeps the newest and is
    full (no further place counts: one forgotten costs nothing) until a day after the newest re-key."""
    monkeypatch.setattr(rotations_done, "UNBOUND_KEEP", 2)
    now = 1_000_000.0
    recent = rotations_done.unbound_rekeys(tmp_path, HER, now)
    assert recent == {} and recent.full_since is None
    recent.update({"p1": now, "p2": now + 1})
    rotations_done.remember_unbound(tmp_path, HER, recent)
    kept = rotations_done.unbound_rekeys(tmp_path, HER, now + 2)
    assert kept == {"p1": now, "p2": now + 1} and kept.full_since is None  # all held: not full
    kept["p3"] = now + 2
    rotations_done.remember_unbound(tmp_path, HER, kept)
    full = rotations_done.unbound_rekeys(tmp_path, HER, now + 3)
    assert list(full) == ["p2", "p3"] and full.full_since == now + 2  # p1 forgotten: full
    assert full.copy().full_since == now + 2
    rotations_done.remember_unbound(tmp_path, HER, full)  # written again: still full
    assert rotations_done.unbound_rekeys(tmp_path, HER, now + 4).full_since == now + 2
    later = rotations_done.unbound_rekeys(tmp_path, HER, now + 2 + rotations_done.UNBOUND_EVERY)
    assert later == {} and later.full_since is None  # the day over: every place counts again


def test_the_unbound_record_of_an_older_version_reads(tmp_path: Path) -> None:
    place = paths.confirmed_file(tmp_path, HER, ".unbound-rekeys")
    place.parent.mkdir(parents=True)
    place.write_bytes(b'{"groups/g/own/f/keys/b.vfkey": 1000.0, "x": "not a time"}')
    recent = rotations_done.unbound_rekeys(tmp_path, HER, 2000.0)
    assert recent == {"groups/g/own/f/keys/b.vfkey": 1000.0} and recent.full_since is None
