"""sync/foreground.py: sync's batches wait for a pause in the mount's requests, never for ever.

Driven by trio's MockClock (no real waiting): the Foreground is given trio's clock.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from fusevault.sync.foreground import MOST, QUIET, Foreground


def _run(main) -> None:
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_drive_never_used_is_no_reason_to_wait() -> None:
    async def main() -> None:
        assert await Foreground(trio.current_time).quiet() == 0.0
        assert trio.current_time() == 0

    _run(main)


def test_a_batch_waits_until_the_requests_pause() -> None:
    """The last request at t=2: the batch goes at 2 + QUIET, not before."""
    async def main() -> None:
        fg = Foreground(trio.current_time)
        await trio.sleep(2)
        fg.served()
        waited = await fg.quiet()
        assert trio.current_time() == 2 + QUIET
        assert waited == pytest.approx(QUIET)

    _run(main)


def test_requests_that_never_pause_hold_a_batch_back_for_at_most_MOST_seconds() -> None:
    """A build that runs for minutes must not stop sync: each batch goes after MOST seconds."""
    async def main() -> None:
        fg = Foreground(trio.current_time)
        went: list[float] = []

        async def busy_user() -> None:
            while True:
                fg.served()
                await trio.sleep(QUIET / 5)

        async def batches() -> None:
            for _ in range(3):
                await fg.quiet()
                went.append(trio.current_time())

        async with trio.open_nursery() as nursery:
            fg.served()  # the first request, at 0 (the user's task may be scheduled after this one)
            nursery.start_soon(busy_user)
            await batches()
            nursery.cancel_scope.cancel()
        assert went == [MOST, 2 * MOST, 3 * MOST]

    _run(main)


def test_requests_that_stop_let_the_waiting_batch_go_at_once() -> None:
    async def main() -> None:
        fg = Foreground(trio.current_time)
        went: list[float] = []

        async def user_for_a_while() -> None:
            for _ in range(9):  # with the first, 10 requests 0.01 s apart: the last at 0.09
                await trio.sleep(0.01)
                fg.served()

        async with trio.open_nursery() as nursery:
            fg.served()
            nursery.start_soon(user_for_a_while)
            await fg.quiet()
            went.append(trio.current_time())
        assert went[0] == pytest.approx(0.09 + QUIET)

    _run(main)
