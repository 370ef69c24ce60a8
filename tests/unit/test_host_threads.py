"""host_access/threads.py: a user's calls on his own folders that never answer hold only his threads.

The real scene (a FUSE file system of his whose flush never answers, under an export) is
tests/mount/test_trust_attack_51t.py; here the rules the export and the importer rely on, with a
call that blocks until the test lets it go."""

from __future__ import annotations

import threading

import trio
import trio.testing

from fusevault.host_access.threads import CLEAN_UP_WAIT, THREADS, HostThreads, _Handover


def test_a_call_that_never_answers_is_given_up_at_cancel_and_holds_only_his_threads() -> None:
    release = threading.Event()

    async def main() -> None:
        his, hers = HostThreads(), HostThreads()
        with trio.move_on_after(0.2) as scope:
            await his.run(release.wait)  # never answers while the test holds it
        assert scope.cancelled_caught  # given up: his request ends
        assert his.limiter.borrowed_tokens == 1  # the thread still runs, counted as his
        with trio.move_on_after(0.2):
            for _ in range(THREADS):
                await his.run(release.wait)
        assert his.limiter.borrowed_tokens == THREADS  # no more than his threads, however often he asks
        with trio.fail_after(5):
            assert await hers.run(lambda: "hers answers") == "hers answers"
        release.set()

    trio.run(main)


def test_a_clean_up_is_waited_for_whatever_cancelled_the_work_but_not_for_ever() -> None:
    release, done = threading.Event(), []

    async def main() -> None:
        threads = HostThreads()
        with trio.CancelScope() as scope:
            scope.cancel()
            await threads.clean_up(done.append, "closed")  # shielded: runs though cancelled
        assert done == ["closed"]
        start = trio.current_time()
        await threads.clean_up(release.wait)  # never answers: given up after CLEAN_UP_WAIT
        assert trio.current_time() - start >= CLEAN_UP_WAIT
        release.set()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0.05))


def test_a_result_made_after_its_caller_gave_up_is_discarded() -> None:
    """Attack round 53b (1): a descriptor opened by a call given up at his hangup was dropped open."""
    release, discarded = threading.Event(), []

    def opens() -> str:
        release.wait()
        return "a descriptor"

    async def main() -> None:
        threads = HostThreads()
        with trio.move_on_after(0.2) as scope:
            await threads.run(opens, discard=discarded.append)
        assert scope.cancelled_caught and discarded == []
        release.set()
        with trio.fail_after(5):
            while threads.limiter.borrowed_tokens:  # the late thread ends
                await trio.sleep(0.01)
        assert discarded == ["a descriptor"]
        # Delivered: the caller's to keep, nothing discarded.
        assert await threads.run(lambda: "kept", discard=discarded.append) == "kept"
        assert discarded == ["a descriptor"]

    trio.run(main)


def test_a_result_handed_over_to_a_caller_gone_meanwhile_is_discarded_by_exactly_one_side() -> None:
    """The thread offered its result, and the cancel came before trio delivered it: the caller's way
    out takes it (to discard); a thread offering after that way out keeps it (to discard)."""
    handover = _Handover()
    assert handover.offer("made") is True
    assert handover.refuse() == ["made"]  # never delivered: the caller discards it
    late = _Handover()
    assert late.refuse() == []
    assert late.offer("made late") is False  # the thread discards it
