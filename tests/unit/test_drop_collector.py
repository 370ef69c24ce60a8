"""links/owner.py ``collect_periodically``: the mount's drop-box collector's schedule (trio's MockClock)."""

from __future__ import annotations

import trio
import trio.testing

from fusevault.links.owner import collect_periodically
from fusevault.tasks import TaskState


def test_drops_are_collected_soon_after_the_mount_then_every_minute() -> None:
    runs: list[float] = []

    class Counting:  # stands in for Links: only the schedule is under test
        refused = False

        async def collect(self) -> dict:
            runs.append(trio.current_time())
            return {"files": 0, "errors": []}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(collect_periodically, Counting(), 5, 60, TaskState("drop boxes"))
            await trio.sleep(5 + 3 * 60 + 1)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert runs == [5, 65, 125, 185]
