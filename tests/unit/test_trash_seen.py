"""When a deletion counts from (round 9a, vault/model/trash_seen.py): the rules and this device's record.

The attack itself, through a real mount, is in tests/mount/test_trust_attack_round9a.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusevault.crypto.identity import Identity
from fusevault.crypto.keys import MasterKey
from fusevault.crypto.signing import sign_doc
from fusevault.vault.model.trash_seen import TrashSeen, deleted_at, state_path

ALICE = "a" * 32
BOB = "b" * 32
DAY = 86400 * 10**9
NOW = 1_800_000_000 * 10**9


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))


def _deletion(signer: Identity, enc: str = "sealed", doc_id: str = "n1") -> dict:
    return sign_doc(signer.user_id, signer.sign,
                    {"_id": doc_id, "type": "node", "owner": ALICE, "delete": True, "enc": enc})


def test_a_writers_date_never_counts_and_the_owners_is_never_in_the_future() -> None:
    alice, bob = Identity.new(ALICE), Identity.new(BOB)
    first = NOW
    assert deleted_at(_deletion(bob), 1, ALICE, first) == first  # 1970
    assert deleted_at(_deletion(bob), NOW + 100 * DAY, ALICE, first) == first  # the future
    assert deleted_at(_deletion(alice), NOW - 5 * DAY, ALICE, first) == NOW - 5 * DAY  # her own device's
    assert deleted_at(_deletion(alice), NOW + 100 * DAY, ALICE, first) == first
    assert deleted_at({"_id": "n1", "enc": "x"}, 1, ALICE, first) == first  # unsigned


def test_the_first_sight_is_remembered_and_a_new_deletion_is_a_new_sight(tmp_path: Path) -> None:
    bob, key = Identity.new(BOB), MasterKey(ALICE, b"\1" * 32)
    seen = TrashSeen.open(key, tmp_path)
    assert seen.first_seen(_deletion(bob), NOW) == NOW
    seen.save(keep=["n1"])
    again = TrashSeen.open(key, tmp_path)
    assert again.first_seen(_deletion(bob), NOW + 40 * DAY) == NOW  # the sight of 40 days ago
    # Restored and deleted again (or re-signed): a new enc, a new sight.
    assert again.first_seen(_deletion(bob, "sealed again"), NOW + 41 * DAY) == NOW + 41 * DAY
    # Asked without remembering (restore, on the trio loop): nothing written.
    assert again.first_seen(_deletion(bob, "other", "n2"), NOW + 42 * DAY, remember=False) == NOW + 42 * DAY
    assert "n2" not in again.seen
    again.save(keep=[])  # no longer deleted: forgotten
    assert TrashSeen.open(key, tmp_path).seen == {}
    assert state_path(tmp_path, ALICE)[0].is_relative_to(tmp_path / "state")  # the device's, not the vault's


def test_a_record_someone_else_wrote_is_ignored(tmp_path: Path) -> None:
    bob, key = Identity.new(BOB), MasterKey(ALICE, b"\1" * 32)
    mallory = TrashSeen.open(MasterKey(ALICE, b"\3" * 32), tmp_path)  # not alice's master key
    mallory.first_seen(_deletion(bob), 1)
    mallory.save()
    assert TrashSeen.open(key, tmp_path).first_seen(_deletion(bob), NOW) == NOW
