"""links/owner.py ``collect_periodically``: the mount's drop-box collector's schedule (trio's MockClock)."""

from __future__ import annotations

import trio
import trio.testing

from fusevault.errors import VaultError
from fusevault.links.owner import collect_periodically
from fusevault.tasks import TaskState


def test_drops_are_collected_soon_after_the_mount_then_every_minute() -> None:
    runs: list[tuple[float, set[str] | None]] = []

    class Counting:  # stands in for Links: only the schedule is under test
        refused = False

        async def drop_boxes(self) -> set[str]:
            return {"box made before the mount"}

        async def collect(self, only: set[str] | None = None) -> dict:
            runs.append((trio.current_time(), only))
            return {"files": 0, "errors": []}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(collect_periodically, Counting(), 5, 60, TaskState("drop boxes"))
            await trio.sleep(5 + 3 * 60 + 1)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    # The first pass takes the boxes there were at the mount (one made since is its owner's to collect
    # now, and her `link collect` says what it took: tests/services/test_links.py); the others, all.
    assert runs == [(5, {"box made before the mount"}), (65, None), (125, None), (185, None)]


def test_a_failed_first_pass_leaves_no_box_out_of_the_next() -> None:
    asked: list[set[str] | None] = []

    class Failing:  # stands in for Links: its first collect fails (a box's server away)
        refused = False

        async def drop_boxes(self) -> set[str]:
            return {"box made before the mount"}

        async def collect(self, only: set[str] | None = None) -> dict:
            asked.append(only)
            if len(asked) == 1:
                raise VaultError("the link store is away")
            return {"files": 0, "errors": []}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(collect_periodically, Failing(), 5, 60, TaskState("drop boxes"))
            await trio.sleep(5 + 60 + 1)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert asked == [{"box made before the mount"}, None]
