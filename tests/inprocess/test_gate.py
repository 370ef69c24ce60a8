"""The session gate (agent/gate.py), in-process: what the FUSE layer is told
while locked, locking and unlocked, and the kernel's lookup counts kept
across a lock."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fusevault.agent.gate import Gate
from fusevault.errors import Locked
from fusevault.fs.numbers import BITS


class FakeVolume:
    """What the gate asks of a Volume: its nodes, one by inode number, forget."""

    def __init__(self, inos: list[int]) -> None:
        self.by_ino = {ino: SimpleNamespace(ino=ino, lookups=0) for ino in inos}
        self.forgotten: list[tuple[int, int]] = []

    def nodes(self) -> list[SimpleNamespace]:
        return list(self.by_ino.values())

    def get(self, ino: int) -> SimpleNamespace | None:
        return self.by_ino.get(ino)

    def forget(self, ino: int, count: int) -> None:
        self.forgotten.append((ino, count))
        self.by_ino[ino].lookups -= count


def session(volume: FakeVolume) -> SimpleNamespace:
    return SimpleNamespace(volume=volume, view=SimpleNamespace(owns=BITS.in_view))


def test_locked_gate_refuses_everything_but_forget() -> None:
    gate = Gate()
    for ask in (gate.volume, gate.view, gate.held):
        with pytest.raises(Locked):
            ask()
    gate.forget([(5, 1)])  # nothing counted: nothing to count down


def test_locking_serves_open_handles_only() -> None:
    gate = Gate()
    unlocked = session(FakeVolume([1, 5]))
    gate.open(unlocked)
    assert gate.volume() is unlocked.volume
    gate.locking(True)
    with pytest.raises(Locked):
        gate.volume()
    with pytest.raises(Locked):
        gate.view()
    assert gate.held() is unlocked  # the kernel writes back through open handles
    gate.locking(False)  # a lock that could not save serves on
    assert gate.volume() is unlocked.volume


def test_lookup_counts_survive_a_lock() -> None:
    gate = Gate()
    volume = FakeVolume([1, 5, 7])
    volume.by_ino[5].lookups = 3
    volume.by_ino[7].lookups = 1
    gate.open(session(volume))
    gate.forget([(5, 1), (BITS.view_base + 5, 2)])  # the view's inodes keep no counts
    assert volume.forgotten == [(5, 1)]
    gate.close()
    assert gate.session is None
    gate.forget([(7, 1), (5, 1)])  # while locked: counted down here
    again = FakeVolume([1, 5, 7])
    gate.open(session(again))
    assert again.by_ino[5].lookups == 1
    assert again.by_ino[7].lookups == 0
