"""host_access/threads.py: a user's calls on his own folders that never answer hold only his threads.

The real scene (a FUSE file system of his whose flush never answers, under an export) is
tests/mount/test_trust_attack_51t.py; here the rules the export and the importer rely on, with a
call that blocks until the test lets it go."""

from __future__ import annotations

import errno
import threading

import pytest
import trio
import trio.testing

from fusevault.host_access import threads as host_threads
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


def _held(threads: HostThreads, release: threading.Event, nursery: trio.Nursery) -> None:
    for _ in range(THREADS):  # every thread of his held (his FUSE, his stopped helper)
        nursery.start_soon(threads.run, release.wait)


def test_a_clean_up_that_could_not_start_runs_once_in_a_thread_of_his_when_one_is_free(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Attack round 55c (1): given up before it started, it was dropped (root's descriptor leaked)."""
    monkeypatch.setattr(host_threads, "CLEAN_UP_WAIT", 0.2)
    release, ran = threading.Event(), []

    async def main() -> None:
        threads = HostThreads()
        with trio.move_on_after(0.2):
            async with trio.open_nursery() as nursery:
                _held(threads, release, nursery)
        await threads.clean_up(lambda: ran.append(threading.get_ident()))
        assert ran == []  # not on the loop meanwhile, nor in a thread of anyone else's
        release.set()
        with trio.fail_after(5):
            while not ran or threads.limiter.borrowed_tokens:
                await trio.sleep(0.02)
        await trio.sleep(0.2)

    trio.run(main)
    assert len(ran) == 1 and ran[0] != threading.get_ident()  # once, in a worker thread


def test_queued_clean_ups_are_bounded_his_new_work_waits_for_them_and_hers_does_not(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host_threads, "CLEAN_UP_WAIT", 0.2)
    monkeypatch.setattr(host_threads, "QUEUED_CLEAN_UPS", 2)
    release, ran = threading.Event(), []

    def fails() -> None:
        raise OSError(errno.EBADF, "gone")

    async def main() -> None:
        his, hers = HostThreads(), HostThreads()
        with trio.move_on_after(0.2):
            async with trio.open_nursery() as nursery:
                _held(his, release, nursery)
        await his.clean_up(fails)  # a failed one leaves the others to run
        await his.clean_up(ran.append, "closed")
        with pytest.raises(OSError) as refused:
            await his.run(ran.append, "new work")  # it would hold one more thing of the mount's
        assert refused.value.errno == errno.EAGAIN
        with trio.fail_after(5):
            assert await hers.run(lambda: "hers answers") == "hers answers"
        release.set()
        with trio.fail_after(5):
            while ran != ["closed"]:
                await trio.sleep(0.02)
            await his.run(ran.append, "new work")  # taken again once they have run
        assert ran == ["closed", "new work"]

    trio.run(main)


def test_a_clean_up_that_started_and_never_answers_is_left_to_its_thread_not_run_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host_threads, "CLEAN_UP_WAIT", 0.2)
    release, ran = threading.Event(), []

    def closes() -> None:
        ran.append("started")
        release.wait()

    async def main() -> None:
        threads = HostThreads()
        await threads.clean_up(closes)  # his flush never answers: given up, left to its thread
        release.set()
        with trio.fail_after(5):
            while threads.limiter.borrowed_tokens:
                await trio.sleep(0.02)
        await trio.sleep(0.2)

    trio.run(main)
    assert ran == ["started"]
