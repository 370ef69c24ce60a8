"""What this device's ``unshare`` took back (vault/model/freshness.py), kept across unlocks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fusevault.crypto.keys import MasterKey
from fusevault.vault.model.alarms import Alarms
from fusevault.vault.model.freshness import FIELD, Freshness

ALICE = "a" * 32
SHARE = {"_id": "share-f1-bob", "type": "Share", FIELD: 1000}


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))


def _open(tmp_path: Path, alarms: Alarms | None = None) -> Freshness:
    return Freshness.open(MasterKey(ALICE, b"\1" * 32), tmp_path / "vault", "v1", alarms or Alarms())


def test_a_grant_taken_back_here_is_no_longer_remembered_until_signed_again(tmp_path: Path) -> None:
    fresh = _open(tmp_path)
    assert not fresh.remembered("share-f1-bob")  # never seen
    fresh.saw(SHARE)
    fresh.deleted("share-f1-bob")  # gone from the store: still a share this device knew
    assert fresh.remembered("share-f1-bob")
    fresh.took_back("share-f1-bob")
    fresh.save()
    again = _open(tmp_path)
    assert not again.remembered("share-f1-bob")  # kept across unlocks
    again.saw({**SHARE, FIELD: 2000})  # shared again: a newer signing
    assert again.remembered("share-f1-bob")


def test_a_record_from_before_taken_back_opens_without_alarm(tmp_path: Path) -> None:
    fresh = _open(tmp_path)
    fresh.saw(SHARE)
    fresh.save()
    key = MasterKey(ALICE, b"\1" * 32)
    plain = json.dumps({"format": 1, "seen": {"share-f1-bob": ["Share", 1000, True]}}).encode()
    fresh.path.write_bytes(key.seal_device("grants", fresh.path.name, plain))
    alarms = Alarms()
    old = _open(tmp_path, alarms)
    assert not len(alarms)
    assert old.remembered("share-f1-bob") and old.taken_back == {}


def test_the_body_taken_back_is_the_one_marked_not_a_newer_signing_seen_since(tmp_path: Path) -> None:
    """``taken_back_stamp`` (a record of the build before stamps, rekeys_owed.py ``taken_at_load``): the
    body an unshare here marked taken back, not her re-share admitted after it (attack round 64a (2));
    the newest seen where nothing is marked; None where nothing is seen."""
    fresh = _open(tmp_path)
    assert fresh.taken_back_stamp("share-f1-bob") is None
    fresh.saw(SHARE)
    assert fresh.taken_back_stamp("share-f1-bob") == 1000  # nothing marked: the newest seen
    fresh.took_back("share-f1-bob")
    fresh.deleted("share-f1-bob")
    fresh.saw({**SHARE, FIELD: 2000})  # her re-share, seen after
    fresh.save()
    again = _open(tmp_path)
    assert again.newest_seen("share-f1-bob") == 2000
    assert again.taken_back_stamp("share-f1-bob") == 1000
