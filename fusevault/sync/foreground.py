"""The drive's own users come first: sync's batches wait while the mount is serving requests.

The mount's FUSE boundary notes every request it serves (``Foreground.served``,
fs/boundary.py); the replicator asks before each batch it sends or fetches
(``Foreground.quiet``) and waits while requests keep coming, at most ``MOST``
seconds a batch.  So a ``cp``, a build or fio on the drive keeps the two cores
while a big push is under way (HTTP, JSON, base64 and the peer itself, when it
runs on the same machine), and sync still moves while the drive is never
idle, one batch per ``MOST`` seconds.  An idle drive waits ``QUIET`` at most,
so a change still reaches a peer in well under a second (bench/run.py's
"sync idle" row).

The replicator's own ``BUDGET`` (sync/replicator.py) bounds the share of the
trio thread sync takes; this bounds when its work runs at all.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import trio

QUIET = 0.05  # seconds with no request that count as a pause in the foreground
MOST = 1.0  # the longest one batch waits for such a pause


class Foreground:
    """When the mount last served a request, and a wait for a pause in them."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        # time.monotonic by default, not trio's clock: one process may run trio more
        # than once (tests), and each run's clock has an origin of its own.
        self.clock = clock
        self.last = -math.inf

    def served(self) -> None:
        """A request of the drive's user came in (called for every FUSE request: keep it cheap)."""
        self.last = self.clock()

    async def quiet(self, quiet: float = QUIET, most: float = MOST) -> float:
        """Wait until no request came for ``quiet`` seconds, or ``most`` seconds went by; the
        seconds waited."""
        waited = 0.0
        while waited < most and (gap := self.last + quiet - self.clock()) > 0:
            step = min(gap, most - waited)
            await trio.sleep(step)
            waited += step
        return waited


# The process's one: a mount server serves one mount, and its boundary is module-level.
FOREGROUND = Foreground()
