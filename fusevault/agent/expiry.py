"""When each unlocked user's passphrase TTL runs out.  No keys here: the
owner of the keys (``agent.sessions``) is called back to wipe them.

Deadlines are on trio's clock, so tests drive them with ``MockClock``;
the wall-clock time an unlock ends is kept only to show it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio


@dataclass
class Unlock:
    since: float  # wall clock, for people
    expires: float  # wall clock, for people
    deadline: float  # trio clock


class Expiry:
    def __init__(self, on_expire: Callable[[str], Awaitable[None]]) -> None:
        self._on_expire = on_expire
        self.unlocked: dict[str, Unlock] = {}
        self._changed = trio.Event()

    def start(self, user_id: str, ttl: float, since: float | None = None) -> Unlock:
        """Unlocked now for ``ttl`` seconds: a new unlock of the same user starts
        it over, and ``status`` shows that unlock's time (``since``: an earlier
        unlock's, kept when a lock that failed gives the user more time)."""
        now = time.time()
        self.unlocked[user_id] = Unlock(now if since is None else since, now + ttl,
                                        trio.current_time() + ttl)
        self._wake()
        return self.unlocked[user_id]

    def stop(self, user_id: str) -> None:
        """Locked by other means (``fusevault lock``): no expiry to wait for."""
        if self.unlocked.pop(user_id, None) is not None:
            self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            now = trio.current_time()
            due = [u for u, unlock in self.unlocked.items() if unlock.deadline <= now]
            for user_id in due:
                del self.unlocked[user_id]
                await self._on_expire(user_id)
            deadline = min((u.deadline for u in self.unlocked.values()), default=float("inf"))
            with trio.move_on_at(deadline):
                await self._changed.wait()
