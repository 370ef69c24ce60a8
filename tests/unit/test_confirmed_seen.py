"""Which user document bodies count as the newest this device saw (vault/model/confirmed.py): only
those record a safer value as confirmed (attack round 10b: a replayed older body must not)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusevault.crypto.keys import MasterKey
from fusevault.vault.model import confirmed

ALICE = "a" * 32


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))


def _body(ttl: str, at: int | None) -> dict:
    doc = {"_id": ALICE, "type": "UserDetails", "passphrase_expiry_ttl": {"ttl": ttl, "unit": "min"}}
    return doc if at is None else {**doc, "settings_at_us": at}


def test_a_body_seen_before_the_last_one_or_signed_before_it_is_older(tmp_path: Path) -> None:
    key, root = MasterKey(ALICE, b"\1" * 32), tmp_path / "vault"
    older, current = _body("10", 100), _body("480", 200)
    assert confirmed._newest_seen(root, key, older)
    assert confirmed._newest_seen(root, key, current)
    assert not confirmed._newest_seen(root, key, older)  # seen before the current one: a replay
    assert confirmed._newest_seen(root, key, {**current, "_rev": "9-z"})  # the current one, again
    assert not confirmed._newest_seen(root, key, _body("5", 150))  # never seen, signed before
    assert not confirmed._newest_seen(root, key, _body("5", None))  # never seen, from before the stamp
    assert confirmed._newest_seen(root, key, _body("5", 300))  # newer: counts
    assert not confirmed._newest_seen(root, key, current)


def test_a_device_that_saw_no_stamp_takes_bodies_from_before_it(tmp_path: Path) -> None:
    key, root = MasterKey(ALICE, b"\1" * 32), tmp_path / "vault"
    assert confirmed._newest_seen(root, key, _body("10", None))
    assert confirmed._newest_seen(root, key, _body("20", None))
