"""The ledger's ``closed`` leaves (vault/model/ledger.py ``close_leaf``): the seq of a leaf a settling
closed is a replay when put back, though no older than seen, until a newer state of its device is seen.
The mounts: tests/services/test_sync.py, a settled edit put back as a branch."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusevault.crypto.keys import MasterKey
from fusevault.vault.model.alarms import Alarms
from fusevault.vault.model.ledger import Ledger

ALICE, FID = "a" * 32, "f" * 32


class _Tree:
    """The one call ``replayed`` makes of the tree (to name the file in the alarm)."""

    def find(self, fid: str) -> None:
        return None


def _open(tmp_path: Path) -> Ledger:
    # Its own alarms: the process-wide list of ALICE (alarms.for_user) is shared by every test
    # of this worker, and the replay alarm raised here is no concern of theirs.
    return Ledger.open(MasterKey(ALICE, b"m" * 32), tmp_path / "vault", "vault-id", Alarms())


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))
    return _open(tmp_path)


def test_a_closed_leaf_put_back_is_a_replay_and_never_noted_as_a_branch(ledger: Ledger) -> None:
    ledger.record(FID, ("desk", 5), True)
    assert not ledger.replayed(_Tree(), FID, ("desk", 5), "put back")  # the newest seen: not older
    ledger.close_leaf(FID, ("desk", 5))
    ledger.branch(FID, ("desk", 5))  # met again as a live leaf: not a concurrent edit
    assert ledger.branches.get(FID) is None
    assert ledger.replayed(_Tree(), FID, ("desk", 5), "put back")
    assert not ledger.replayed(_Tree(), FID, ("desk", 6), "a later edit")
    assert not ledger.replayed(_Tree(), "e" * 32, ("desk", 5), "another file")


def test_closed_leaves_are_saved_pruned_once_older_and_bounded(ledger: Ledger, tmp_path: Path) -> None:
    ledger.record(FID, ("desk", 5), True)
    ledger.close_leaf(FID, ("desk", 5))
    ledger.close_leaf(FID, ("lap", 9))
    ledger.save()
    assert _open(tmp_path).closed == {FID: [("desk", 5), ("lap", 9)]}
    ledger.record(FID, ("desk", 7), True)  # a newer state of the desk: ``older`` tells from now on
    ledger.close_leaf(FID, ("lap", 10))
    assert ledger.closed[FID] == [("lap", 9), ("lap", 10)]
    for n in range(11, 40):
        ledger.close_leaf(FID, ("lap", n))
    assert len(ledger.closed[FID]) == 8 and ledger.closed[FID][-1] == ("lap", 39)


def test_her_leaf_another_device_settled_already_is_closed_without_an_alarm(ledger: Ledger) -> None:
    """Two of her devices edited the file while apart; the laptop settled the conflict first and made
    its state over the desktop's leaf (its ``over``).  The desktop meets that state before the laptop's
    closing of the leaf (they travel apart): its own leaf is covered, so no branch, and closing it is no
    replay.  Said as one, the suite's two-device test raised a false "rollback" 1 run in 12 under load."""
    here = ledger.device
    ledger.record(FID, (here, 5), True)  # the desktop's edit while apart
    ledger.record(FID, ("lap", 9), True)  # the laptop's settled state arrives ...
    ledger.cover(FID, {here: 5})  # ... made over the desktop's leaf
    ledger.branch(FID, (here, 5))
    assert ledger.branches.get(FID) is None
    assert ledger.replayed(_Tree(), FID, (here, 5), "written back", {here: 5})  # closed, not taken in
    assert len(ledger.alarms) == 0
    # Not a licence for replays: an older state of the desktop's, the leaf judged without the other
    # side's word, a leaf this device closed itself, or another device's state, is said.
    ledger.close_leaf(FID, ("lap", 9))
    ledger.record(FID, ("lap", 10), True)
    ledger.cover(FID, {"lap": 10})
    for seq, over in (((here, 4), {here: 5}), ((here, 5), None), (("lap", 9), {"lap": 9}),
                      (("lap", 10), {"lap": 10})):  # another device's newest, put back under a state over it
        ledger.alarms = Alarms()
        assert ledger.replayed(_Tree(), FID, seq, "written back", over)
        assert "rollback" in ledger.alarms, seq
