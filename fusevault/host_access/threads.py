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

import logging
import threading
from collections.abc import Callable
from typing import Any

import trio

log = logging.getLogger(__name__)

# Threads one user's calls on his host paths may hold at once; one that never answers keeps its own.
THREADS = 2
# Seconds a clean-up (a close, a temporary file's removal) is waited for after its work failed or was
# cancelled: then given up, its thread left to finish (still counted as his).
CLEAN_UP_WAIT = 10


class HostThreads:
    """One user's worker threads for calls on host paths of his choosing."""

    def __init__(self, threads: int = THREADS) -> None:
        self.limiter = trio.CapacityLimiter(threads)

    async def run(self, call: Callable[..., Any], *args: Any,
                  discard: Callable[[Any], None] | None = None) -> Any:
        """``call(*args)`` in one of his threads; given up (left to finish) when cancelled.

        ``discard``: for a call whose result holds something to let go of (a descriptor): a result
        nobody takes any more, its caller gone, is discarded (in the thread that made it, or in
        one of his when it came too late to be delivered).  Left to trio, it was dropped with
        root's descriptor of his folder open: one more per export he hung up on (attack round
        53b, (1))."""
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
        """``run``, whatever cancelled the work it cleans up after, waited ``CLEAN_UP_WAIT`` s at most."""
        with trio.CancelScope(shield=True, deadline=trio.current_time() + CLEAN_UP_WAIT) as scope:
            await self.run(call, *args)
        if scope.cancelled_caught:
            log.warning("a folder of the user's did not answer a clean-up within %ds: left to it",
                        CLEAN_UP_WAIT)


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
