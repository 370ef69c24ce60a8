"""A commit of this device's supersedes the states seen before of other devices and writers, when the
store holds no other live branch of the file (vault/model/ledger.py ``committed``'s ``alone``,
``supersedes``; vault/tree/inodes.py ``_put``), as a state taken at arrival does (``superseded``):
a WRITE member's last state served again over her change made over it is a replay (attack round 76a
(2); in-process: tests/inprocess/test_attack_76a.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusevault.vault.model.ledger import Ledger
from fusevault.vault.model.nodes import Node
from unit.test_ledger_closed import _open, _Tree

ALICE, BOB, FID = "a" * 32, "b" * 32, "f" * 32
HIS = ("bobs-device/" + BOB, 1)  # a writer's seq, as the ledger keeps it (``writer_seq``)


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))
    return _open(tmp_path)


def _her_commit_over_his_state(ledger: Ledger, alone: bool) -> None:
    ledger.record(FID, HIS, True)  # bob's state, taken here
    ledger.record(FID, ("lap", 3), True)  # and one of her laptop's before it
    assert ledger.supersedes(FID), "states seen here that a commit of hers supersedes"
    node = Node(2, FID, ALICE, b"k" * 32, 0o100600, 0, 0)
    node.seq = HIS
    ledger.stamp([node])
    ledger.committed([node], [False], None, {FID} if alone else ())


def test_a_writers_state_served_again_over_her_commit_alone_is_a_replay(ledger: Ledger) -> None:
    _her_commit_over_his_state(ledger, alone=True)
    assert ledger.older(FID, HIS) and ledger.replayed(_Tree(), FID, HIS, "served again")
    assert ledger.older(FID, ("lap", 3))
    assert not ledger.supersedes(FID), "nothing more to supersede: the store is not asked again"
    # His (or her laptop's) genuinely newer state is no replay: a higher count of its device.
    assert not ledger.older(FID, ("bobs-device/" + BOB, 2)) and ledger.newer(FID, ("bobs-device/" + BOB, 2))
    assert not ledger.older(FID, ("lap", 4))


def test_a_commit_in_conflict_supersedes_nothing(ledger: Ledger) -> None:
    _her_commit_over_his_state(ledger, alone=False)  # another live branch: the settling judges them
    assert not ledger.older(FID, HIS) and ledger.supersedes(FID)


def test_what_her_commit_superseded_is_saved(ledger: Ledger, tmp_path: Path) -> None:
    _her_commit_over_his_state(ledger, alone=True)
    ledger.save()
    assert _open(tmp_path).older(FID, HIS)
