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

    async def run(self, call: Callable[..., Any], *args: Any) -> Any:
        """``call(*args)`` in one of his threads; given up (left to finish) when cancelled."""
        return await trio.to_thread.run_sync(call, *args, limiter=self.limiter, abandon_on_cancel=True)

    async def clean_up(self, call: Callable[..., Any], *args: Any) -> None:
        """``run``, whatever cancelled the work it cleans up after, waited ``CLEAN_UP_WAIT`` s at most."""
        with trio.CancelScope(shield=True, deadline=trio.current_time() + CLEAN_UP_WAIT) as scope:
            await self.run(call, *args)
        if scope.cancelled_caught:
            log.warning("a folder of the user's did not answer a clean-up within %ds: left to it",
                        CLEAN_UP_WAIT)
