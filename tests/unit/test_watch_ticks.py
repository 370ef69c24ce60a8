"""imports/watcher.py ``_take_settled``: the loop of ticks is held to a share of the time as the walk is
(attack round 58c (2)): files he touches again and again, each due at every tick, kept root's mount at
work one tick after another.  Times are trio's MockClock's: the looks "take" time by sleeping on it."""

from __future__ import annotations

import itertools

import trio
import trio.testing

from fusevault.imports import watcher
from fusevault.imports.failures_said import FailuresSaid
from fusevault.imports.import_records import Stamp
from fusevault.imports.importer import NEW, UNCHANGED
from fusevault.imports.watcher import ImportService, Pending
from fusevault.tasks import TaskState

LOOK = 1.0  # seconds a tick's looks take (mock clock)
RUN = 60.0


class _Importer:
    """Each look at the files due takes ``LOOK``; with ``changing`` they have changed each time (he
    touches them), so none is ever taken; else each take takes ``LOOK`` and ends as ``outcome``."""

    def __init__(self, changing: bool, outcome: str = UNCHANGED) -> None:
        self.changing, self.outcome = changing, outcome
        self.pending = Pending(0.2)  # a tick every 0.1 s
        self.looks = self.takes = 0
        self._times = itertools.count()

    async def in_source(self, call, due):
        self.looks += 1
        await trio.sleep(LOOK)
        stamp = next(self._times) if self.changing else 0
        return {location: Stamp(1, stamp, 1, 1) for location in due}

    async def take(self, location: str):
        self.takes += 1
        await trio.sleep(LOOK)
        self.pending.seen(location, Stamp(1, 0, 1, 1), trio.current_time())  # due again: touched again
        return self.outcome, 0, False


def _ticks(importer: _Importer) -> None:
    service = ImportService.__new__(ImportService)
    service.task = TaskState("import")
    service._said = FailuresSaid()

    async def main() -> None:
        importer.pending.seen("busy.txt", Stamp(1, 0, 1, 1), trio.current_time())
        with trio.move_on_after(RUN):
            await service._take_settled(importer, importer.pending)  # type: ignore[arg-type]

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_looks_at_files_he_keeps_touching_are_held_to_a_share_of_the_time() -> None:
    importer = _Importer(changing=True)
    _ticks(importer)
    print(f"{importer.looks} ticks with looks in {RUN:.0f} s")
    # Seen before: ~50 (a look every 1.2 s: 0.1 s tick, 1 s look, due again 0.2 s later).
    assert importer.looks <= RUN / (LOOK * (1 + watcher.POLL_SHARE)) + 1


def test_takes_that_bring_nothing_in_are_held_to_a_share_of_the_time() -> None:
    importer = _Importer(changing=False, outcome=UNCHANGED)
    _ticks(importer)
    print(f"{importer.takes} takes in {RUN:.0f} s")
    assert importer.takes <= RUN / (2 * LOOK * (1 + watcher.POLL_SHARE)) + 1


def test_control_takes_that_bring_files_in_are_not_held_back() -> None:
    importer = _Importer(changing=False, outcome=NEW)
    _ticks(importer)
    print(f"{importer.takes} takes in {RUN:.0f} s")
    # Only the look before each take is held: (1 s look + 4 s rest) + 1 s take a file.
    assert importer.takes >= RUN / (LOOK * (2 + watcher.POLL_SHARE)) - 1
