"""host_access/threads.py: a user's calls on his own folders that never answer hold only his threads.

The real scene (a FUSE file system of his whose flush never answers, under an export) is
tests/mount/test_trust_attack_51t.py; here the rules the export and the importer rely on, with a
call that blocks until the test lets it go."""

from __future__ import annotations

import threading

import trio
import trio.testing

from fusevault.host_access.threads import CLEAN_UP_WAIT, THREADS, HostThreads


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
