"""How many devices a file's entry in the ledger keeps (vault/model/ledger.py ``DEVICES``,
``_fewer``; vault/model/nodes.py ``device_ok``): a writer who names a new device in each document
he signs must not grow her ledger without bound (attack round 33b (2)); and what taking a newer
state with no conflict supersedes (``superseded``, attack round 33b (1)).  The mounts:
tests/mount/test_trust_attack_round33b.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusevault.vault.model.ledger import DEVICES, Ledger, apart
from fusevault.vault.model.nodes import device_ok
from unit.test_ledger_closed import _open

BOB, FID = "b" * 32, "f" * 32


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))
    return _open(tmp_path)


def test_a_writer_naming_a_new_device_each_time_keeps_a_bounded_entry(ledger: Ledger) -> None:
    ledger.record(FID, (ledger.device, 3), True)  # this device's own state: never forgotten
    for i in range(5 * DEVICES):
        seq = apart((f"{i:016x}", 1), BOB)
        ledger.superseded(FID, seq)
        ledger.record(FID, seq, True)
    seen = ledger.fids[FID][1]
    assert len(seen) == DEVICES
    assert seen[ledger.device] == 3
    assert f"{5 * DEVICES - 1:016x}/{BOB}" in seen  # the newest kept
    assert len(ledger.covered[FID]) <= DEVICES


def test_taking_a_newer_state_supersedes_what_was_seen_of_other_devices(ledger: Ledger) -> None:
    ledger.record(FID, ("1aptop0000000000", 5), True)  # her laptop's state
    bobs = apart(("b0b0000000000000", 1), BOB)
    assert ledger.newer(FID, bobs)
    ledger.superseded(FID, bobs)
    ledger.record(FID, bobs, True)
    assert ledger.older(FID, ("1aptop0000000000", 5)), "her state bob's edit replaced, put back, is a replay"
    assert not ledger.older(FID, ("1aptop0000000000", 6)), "her later edit is no replay"
    # Her next commit signs her laptop's number onward, never bob's (nodes.py refuses a "/").
    assert ledger.made_over(FID, None, bobs) == {"1aptop0000000000": 5}


@pytest.mark.parametrize("device", ["0123456789abcdef", "desk", "bobs-device"])
def test_a_device_id_as_fusevault_makes_one(device: str) -> None:
    assert device_ok(device)


@pytest.mark.parametrize("device", ["", "x" * 33, "a/b", "dev\x00", "é" * 4, "a b", 7, None])
def test_no_other_device_name(device: object) -> None:
    assert not device_ok(device)
