"""Her own older states of THIS device's, judged at unlock (vault/model/ledger.py ``own_replay``,
``seen_live``, ``replays``; vault/tree/rebuilding.py ``replays_refused``, ``deletion_replayed``; attack
round 18 (7, 8)).  In-process, with the stand-in tree of test_ledger_writers.py."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from fusevault.crypto.keys import MasterKey
from fusevault.vault.model.alarms import Alarms
from fusevault.vault.model.ledger import Ledger
from unit.test_ledger_writers import Loaded, _node

ALICE = "a" * 32
HERE, DESKTOP = "this-device", "her-desktop"


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))
    made = Ledger(MasterKey(ALICE, b"m" * 32), tmp_path / "ledger", Alarms())
    made.device, made.counter = HERE, 10
    # f1: deleted here at 5, restored here at 7, and edited on her desktop (its 3) after: live.
    made.record("f1", (HERE, 5), False)
    made.record("f1", (HERE, 7), True)
    made.record("f1", (DESKTOP, 3), True)
    made.record("gone", (HERE, 8), False)  # deleted here last: in the trash
    return made


def test_an_older_state_this_device_gave_is_a_replay(ledger: Ledger) -> None:
    assert ledger.own_replay("f1", (HERE, 5))  # her deletion, before the restore


def test_the_newest_state_this_device_gave_is_no_replay(ledger: Ledger) -> None:
    assert not ledger.own_replay("f1", (HERE, 7))
    assert not ledger.own_replay("f1", (HERE, 9))  # newer than seen: a state committed, then lost (a crash)


def test_another_devices_older_state_is_never_judged_a_replay_here(ledger: Ledger) -> None:
    """Her desktop's numbers order only its own states: its older one is said by ``check_loaded``
    (shown older), never rebuilt here as a replay."""
    assert not ledger.own_replay("f1", (DESKTOP, 2))


def test_a_live_leaf_of_a_conflict_met_is_no_replay(ledger: Ledger) -> None:
    ledger.branches["f1"] = [(HERE, 5)]
    assert not ledger.own_replay("f1", (HERE, 5))


def test_no_seq_or_a_file_never_seen_is_no_replay(ledger: Ledger) -> None:
    assert not ledger.own_replay("f1", None)
    assert not ledger.own_replay("unseen", (HERE, 1))


def test_seen_live_is_the_newest_state_seen(ledger: Ledger) -> None:
    assert ledger.seen_live("f1")
    assert not ledger.seen_live("gone")  # an older live state put back stays shown older, not rebuilt
    assert not ledger.seen_live("unseen")


def _tree(ledger: Ledger, *fids: str) -> Loaded:
    root = _node(1, "root", ALICE, (HERE, 1))
    nodes = [root, *(_node(i + 2, fid, ALICE, (HERE, 7), parent=1) for i, fid in enumerate(fids))]
    tree = Loaded(ledger.key, nodes)
    tree.layout = SimpleNamespace(vault_id="v" * 32)  # type: ignore[assignment]
    return tree


def test_one_replay_rebuilt_is_said_as_not_taken_in(ledger: Ledger) -> None:
    ledger.replays = {"f1": "3-replayed"}
    ledger.check_loaded(_tree(ledger, "f1"), store=None)  # type: ignore[arg-type]
    (alarm,) = ledger.alarms.as_list()
    assert (alarm["kind"], alarm["subject"]) == ("rollback", "f1")
    assert "it is not taken in: rebuilt as this device last saw it" in alarm["text"]


def test_replays_rebuilt_count_with_the_stores_rollback(ledger: Ledger) -> None:
    """A restored store: her older states rebuilt count with those shown older, in one alarm."""
    ledger.record("f2", (HERE, 9), True)
    ledger.replays = {"f1": "3-replayed"}
    tree = _tree(ledger, "f1", "f2")  # f2 loaded at (HERE, 7): older, shown
    ledger.check_loaded(tree, store=None)  # type: ignore[arg-type]
    (alarm,) = ledger.alarms.as_list()
    assert alarm["kind"] == "store-rollback"
    assert "2 file(s) in an older state" in alarm["text"] and "1 of them" in alarm["text"]
