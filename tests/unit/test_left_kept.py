"""The grants this device keeps taken back (vault/model/left_kept.py, attack round 75a (2), (3)): sealed on
the device under her master key, merged (never lost to a later unlock's smaller finding), bounded (files per
grant, grants), dropped by her share here; a damaged or foreign record said, never fatal, set aside."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from fusevault import paths
from fusevault.crypto.keys import MasterKey
from fusevault.errors import VaultError
from fusevault.vault.model import device_file, left_kept

ALICE, BOB, CAROL = "a" * 32, "b" * 32, "c" * 32
DOCS, PLAN, OTHER = "d" * 32, "f" * 32, "e" * 32
SHARE, SHARE2 = f"share-{DOCS}-{BOB}", f"share-{OTHER}-{CAROL}"


def _key(user: str = ALICE, master: bytes = b"m" * 32) -> MasterKey:
    return MasterKey(user, master)


def _place(root: Path, user: str = ALICE) -> Path:
    return paths.confirmed_file(root, user, left_kept.SUFFIX)


def test_a_grant_left_out_is_kept_sealed_merged_and_dropped_only_when_resolved(tmp_path: Path) -> None:
    root, key = tmp_path / "vault", _key()
    assert left_kept.read(root, key) == {}
    left_kept.update(root, key, {(SHARE, BOB): {PLAN: 1, DOCS: 1}})
    assert left_kept.read(root, key) == {(SHARE, BOB): {PLAN: 1, DOCS: 1}}
    assert BOB.encode() not in _place(root).read_bytes()  # sealed: whom she took back does not show
    # A later unlock that finds less (her records rolled back) loses nothing; a newer epoch is kept.
    left_kept.update(root, key, {(SHARE, BOB): {PLAN: 2}, (SHARE2, CAROL): {OTHER: 0}})
    assert left_kept.read(root, key) == {(SHARE, BOB): {PLAN: 2, DOCS: 1}, (SHARE2, CAROL): {OTHER: 0}}
    left_kept.update(root, key, {}, [(SHARE2, CAROL)])  # her newer evidence resolved it
    assert left_kept.read(root, key) == {(SHARE, BOB): {PLAN: 2, DOCS: 1}}
    left_kept.given_again(root, key, SHARE)  # her share command here
    assert left_kept.read(root, key) == {}


def test_nothing_changed_writes_nothing(tmp_path: Path) -> None:
    root, key = tmp_path / "vault", _key()
    left_kept.update(root, key, {(SHARE, BOB): {PLAN: 1}})
    before = _place(root).stat().st_mtime_ns, _place(root).read_bytes()
    left_kept.update(root, key, {(SHARE, BOB): {PLAN: 1}})
    left_kept.update(root, key, {})
    assert (_place(root).stat().st_mtime_ns, _place(root).read_bytes()) == before


def test_witnesses_and_grants_are_bounded_the_newest_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    root, key = tmp_path / "vault", _key()
    many = {DOCS: 0, **{f"{n:032x}": n + 1 for n in range(3 * left_kept.WITNESSES)}}
    left_kept.update(root, key, {(SHARE, BOB): many})
    kept = left_kept.read(root, key)[(SHARE, BOB)]
    # The newest epochs, and the Share's own folder (DOCS) whatever its epoch: it stays while the Share
    # means anything, and her sharing again gives it a key.
    assert len(kept) == left_kept.WITNESSES and kept.pop(DOCS) == 0
    assert set(kept.values()) == set(range(3 * left_kept.WITNESSES - 2, 3 * left_kept.WITNESSES + 1))
    monkeypatch.setattr(left_kept, "KEEP", 3)
    grants = {(f"share-{DOCS}-{n:032x}", f"{n:032x}"): {PLAN: 1} for n in range(5)}
    with caplog.at_level(logging.ERROR):
        left_kept.update(root, key, grants)
    assert "oldest forgotten" in caplog.text
    assert list(left_kept.read(root, key)) == list(grants)[-3:]


def test_a_damaged_or_foreign_record_is_said_not_fatal_and_set_aside(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root, key = tmp_path / "vault", _key()
    left_kept.update(root, key, {(SHARE, BOB): {PLAN: 1}})
    with caplog.at_level(logging.ERROR):
        found = left_kept.read(root, _key(master=b"x" * 32))  # not her master key: opens nothing
    assert found == {} and found.damaged and "does not open" in caplog.text
    _place(root).write_bytes(b"garbage")
    found = left_kept.read(root, key)
    assert found == {} and found.damaged
    left_kept.update(root, key, {(SHARE2, CAROL): {OTHER: 3}})
    assert _place(root).with_name(_place(root).name + ".damaged").read_bytes() == b"garbage"
    assert left_kept.read(root, key) == {(SHARE2, CAROL): {OTHER: 3}}


@pytest.mark.parametrize("row", [
    {"share": "share-x", "recipient": BOB, "seen": {PLAN: 1}},  # not a Share id
    {"share": SHARE, "recipient": "bob", "seen": {PLAN: 1}},  # not a user id
    {"share": SHARE, "recipient": BOB, "seen": {}},  # no file
    {"share": SHARE, "recipient": BOB, "seen": {PLAN: -1}},
    {"share": SHARE, "recipient": BOB, "seen": {PLAN: True}},
    {"share": SHARE, "recipient": BOB, "seen": {"../x": 1}},
    {"share": SHARE, "recipient": BOB, "seen": {f"{n:032x}": 1 for n in range(left_kept.WITNESSES + 1)}},
    [SHARE, BOB]])
def test_a_malformed_entry_is_skipped_the_others_kept(tmp_path: Path, row: object) -> None:
    root, key = tmp_path / "vault", _key()
    path = _place(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    good = {"share": SHARE2, "recipient": CAROL, "seen": {OTHER: 2}}
    plain = json.dumps({"left": [row, good]}).encode()
    path.write_bytes(key.seal_device(left_kept.KIND, path.name, plain))
    found = left_kept.read(root, key)
    assert found == {(SHARE2, CAROL): {OTHER: 2}} and found.damaged


def test_given_again_that_cannot_be_recorded_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, key = tmp_path / "vault", _key()
    left_kept.update(root, key, {(SHARE, BOB): {PLAN: 1}})

    def full(*_: object, **__: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(device_file, "atomic_write", full)
    with pytest.raises(VaultError):  # her share stops: else the next unlock left out the grant she gives
        left_kept.given_again(root, key, SHARE)
    left_kept.given_again(root, key, SHARE2)  # none of it kept: nothing written, nothing raised
    left_kept.update(root, key, {(SHARE2, CAROL): {OTHER: 1}})  # an unlock's: said, not raised
    assert left_kept.read(root, key) == {(SHARE, BOB): {PLAN: 1}}
