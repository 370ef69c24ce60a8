"""Worker threads for calls on host paths a user chose: one limiter per user.

A user's export destination and watched folder are his to choose, a FUSE file
system of his own among them, which may never answer (a close waits for its
flush, a read for its data).  Run on the mount's loop, or in the worker
threads every user shares, one such call froze the shared mount for every
user (attack round 51t).  Here each call runs in a thread counted against the
user's own limiter and is given up when its caller is cancelled (his hangup,
a lock, an unmount): a call that never answers holds at most ``THREADS``
threads of his, and nothing of anyone else's.
"""

from __future__ import annotations

import errno
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import trio

log = logging.getLogger(__name__)

# Threads one user's calls on his host paths may hold at once; one that never answers keeps its own.
THREADS = 2
# Seconds a clean-up (a close, a temporary file's removal) is waited for after its work failed or was
# cancelled: then given up, its thread left to finish (still counted as his).
CLEAN_UP_WAIT = 10
# Clean-ups given up before they started, waiting for a thread of his: each holds something of the
# mount's (a descriptor, a temporary file).  Past this many, new work of his is refused until they
# have run, so what his held threads keep from being cleaned up stays bounded.
QUEUED_CLEAN_UPS = 32


class HostThreads:
    """One user's worker threads for calls on host paths of his choosing."""

    def __init__(self, threads: int = THREADS) -> None:
        self.limiter = trio.CapacityLimiter(threads)
        self._queued: deque[_CleanUp] = deque()  # appended on the loop, taken in his threads
        self._draining = False  # a task of the loop waits for a thread of his to run them

    async def run(self, call: Callable[..., Any], *args: Any,
                  discard: Callable[[Any], None] | None = None) -> Any:
        """``call(*args)`` in one of his threads; given up (left to finish) when cancelled.

        ``discard``: for a call whose result holds something to let go of (a descriptor): a result
        nobody takes any more, its caller gone, is discarded (in the thread that made it, or in
        one of his when it came too late to be delivered).  Left to trio, it was dropped with
        root's descriptor of his folder open: one more per export he hung up on (attack round
        53b, (1)).  Refused (EAGAIN) while ``QUEUED_CLEAN_UPS`` clean-ups of his wait for a thread."""
        if len(self._queued) >= QUEUED_CLEAN_UPS:
            raise OSError(errno.EAGAIN, "the user's folders have not answered; clean-ups are waiting")
        return await self._run(call, *args, discard=discard)

    async def _run(self, call: Callable[..., Any], *args: Any,
                   discard: Callable[[Any], None] | None = None) -> Any:
        if discard is None:
            return await trio.to_thread.run_sync(call, *args, limiter=self.limiter, abandon_on_cancel=True)
        handover = _Handover()

        def guarded() -> Any:
            result = call(*args)
            if not handover.offer(result):
                discard(result)  # its caller is gone already
            return result

        try:
            return await trio.to_thread.run_sync(guarded, limiter=self.limiter, abandon_on_cancel=True)
        except BaseException:
            late = handover.refuse()  # made, but cancelled before it reached the caller
            if late:
                await self.clean_up(discard, late[0])
            raise

    async def clean_up(self, call: Callable[..., Any], *args: Any) -> None:
        """``call(*args)`` in a thread of his, whatever cancelled the work it cleans up after, waited
        ``CLEAN_UP_WAIT`` s at most: then left to its thread if it started, queued if it had not
        (every thread of his held): run by the first thread of his that is free."""
        job = _CleanUp(call, args)
        with trio.CancelScope(shield=True, deadline=trio.current_time() + CLEAN_UP_WAIT) as scope:
            await self._run(job.run_if_first)
        if not scope.cancelled_caught:
            return
        if job.take():  # never started (trio runs no call cancelled while it waits for a thread)
            self._queued.append(job)
            log.warning("no thread of the user's was free for a clean-up within %ds: queued", CLEAN_UP_WAIT)
            if not self._draining:
                self._draining = True
                trio.lowlevel.spawn_system_task(self._drain)
        else:
            log.warning("a folder of the user's did not answer a clean-up within %ds: left to it",
                        CLEAN_UP_WAIT)

    async def _drain(self) -> None:
        """The queued clean-ups, in the first thread of his that is free (a system task: the work
        that queued them is gone)."""
        try:
            while self._queued:
                await trio.to_thread.run_sync(self._run_queued, limiter=self.limiter, abandon_on_cancel=True)
        finally:
            self._draining = False

    def _run_queued(self) -> None:
        while True:
            try:
                job = self._queued.popleft()
            except IndexError:
                return
            try:
                job.call(*job.args)
            except Exception as err:  # one failed clean-up leaves the others to run
                said = getattr(err, "strerror", None) or type(err).__name__
                log.warning("a queued clean-up failed: %s", said)


class _CleanUp:
    """A clean-up run exactly once: by the thread it was given to, or, when that thread never
    started, by whoever takes it (the queue)."""

    def __init__(self, call: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.call, self.args = call, args
        self._lock = threading.Lock()
        self._taken = False

    def take(self) -> bool:
        with self._lock:
            taken, self._taken = self._taken, True
            return not taken

    def run_if_first(self) -> None:
        if self.take():
            self.call(*self.args)


class _Handover:
    """A result passed from a worker thread to a caller that may be gone: exactly one of them
    owns it (the caller if offered first, the thread if refused first)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refused = False
        self._offered: list[Any] = []

    def offer(self, result: Any) -> bool:
        """The thread's: False when the caller is gone (the result is the thread's to discard)."""
        with self._lock:
            if self._refused:
                return False
            self._offered.append(result)
            return True

    def refuse(self) -> list[Any]:
        """The caller's, on its way out: [a result offered but never delivered] or []."""
        with self._lock:
            self._refused = True
            offered, self._offered = self._offered, []
            return offered
