"""Which user document bodies count as the newest this device saw (vault/model/confirmed.py): only
those record a safer value as confirmed (attack round 10b: a replayed older body must not)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusevault.crypto.keys import MasterKey
from fusevault.vault.model import confirmed, lineage
from fusevault.vault.model.alarms import Alarms

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


def _signed_on(device: Path, monkeypatch, root: Path, key: MasterKey, ttl: str, at: int) -> dict:
    """A body of her settings signed on ``device`` (its state directory), after all it saw."""
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(device))
    body = {**_body(ttl, at), lineage.FIELD: confirmed.next_vector(root, key)}
    assert confirmed._newest_seen(root, key, body)  # it reads its own body back at once
    return body


def _on(device: Path, monkeypatch) -> Path:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(device))
    return device


def test_bodies_made_apart_are_never_the_newest_whatever_their_stamps(tmp_path: Path, monkeypatch) -> None:
    key, root = MasterKey(ALICE, b"\1" * 32), tmp_path / "vault"
    laptop, desktop = tmp_path / "laptop", tmp_path / "desktop"
    laptops = _signed_on(laptop, monkeypatch, root, key, "10", 200)
    desktops = _signed_on(desktop, monkeypatch, root, key, "480", 100)  # clock behind, laptop's withheld
    _on(desktop, monkeypatch)
    alarms = Alarms()
    assert not confirmed._newest_seen(root, key, laptops, alarms)  # concurrent: not recorded as confirmed
    assert "concurrent-settings" in alarms, alarms.as_list()
    assert not confirmed._newest_seen(root, key, desktops)  # still two made apart
    again = _signed_on(desktop, monkeypatch, root, key, "480", 101)  # set again where both were seen
    assert not confirmed._newest_seen(root, key, laptops)
    _on(laptop, monkeypatch)
    assert confirmed._newest_seen(root, key, again)
    assert not confirmed._newest_seen(root, key, laptops)
    assert not confirmed._newest_seen(root, key, desktops)


def test_sequential_settings_from_two_devices_are_each_the_newest(tmp_path: Path, monkeypatch) -> None:
    key, root = MasterKey(ALICE, b"\1" * 32), tmp_path / "vault"
    laptop, desktop = tmp_path / "laptop", tmp_path / "desktop"
    bodies = []
    for n, (device, at) in enumerate([(laptop, 500), (desktop, 100), (laptop, 600), (desktop, 200)]):
        if bodies:  # the device sees her last body before she sets it there
            _on(device, monkeypatch)
            assert confirmed._newest_seen(root, key, bodies[-1], alarms := Alarms())
            assert not alarms.as_list()
        bodies.append(_signed_on(device, monkeypatch, root, key, str(n + 1), at))
    for device in (laptop, desktop):
        _on(device, monkeypatch)
        assert confirmed._newest_seen(root, key, bodies[-1])
        for older in bodies[:-1]:
            assert not confirmed._newest_seen(root, key, older)
