"""Alarms: what a reader refused because it did not hold, for the log and ``fusevault status``.

A forged signature, a key that changed since it was pinned, a document
rolled back: each is refused where it is met (the document is not acted
on) and reported here, once per thing, so the person sees it in
``fusevault status`` and in the mount's log without a flood when a server
keeps offering the same forgery.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

log = logging.getLogger("fusevault.alarms")

# Enough to show what is going on; a flood of forgeries must not grow memory.
LIMIT = 200


class Alarms:
    def __init__(self, user: str | None = None) -> None:
        # Named in each log line: a shared mount's log holds every unlocked user's (round 30c).
        self.user = user
        self._seen: OrderedDict[tuple[str, str], dict] = OrderedDict()
        # Raised on worker threads too (the trash and histories are judged off the loop, store
        # read_call) while the loop lists them for ``status``: one at a time.
        self._lock = threading.Lock()

    def warn(self, kind: str, subject: str, text: str) -> None:
        """Report ``text`` (one line, no secrets) about ``subject`` once; later ones count."""
        with self._lock:
            entry = self._seen.get((kind, subject))
            if entry is not None:
                entry["count"] += 1
                entry["last"] = time.time()
                return
            self._seen[(kind, subject)] = {"kind": kind, "subject": subject, "text": text,
                                           "first": time.time(), "last": time.time(), "count": 1}
            while len(self._seen) > LIMIT:
                self._seen.popitem(last=False)
        log.warning("%s%s", f"user {self.user}: " if self.user else "", text)

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, kind: str) -> bool:
        with self._lock:
            return any(k == kind for k, _ in self._seen)

    def as_list(self) -> list[dict]:
        with self._lock:
            return [dict(e) for e in self._seen.values()]


# One list per user for the life of the process: a lock and an unlock make a
# new Volume, but what was refused before is still worth showing.
_BY_USER: dict[str, Alarms] = {}


def for_user(user_id: str) -> Alarms:
    return _BY_USER.setdefault(user_id, Alarms(user_id))


def listed(user_ids: list[str]) -> list[dict]:
    """Every alarm of these users, for ``fusevault status`` (only the asker's own)."""
    return [dict(e, user=u) for u in user_ids if u in _BY_USER for e in _BY_USER[u].as_list()]
