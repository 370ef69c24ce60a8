"""Which failed imports the log says: each file's failure once (until it is imported or gone), and at
most ``PER_WINDOW`` of them a ``WINDOW``.

A failed import is retried every minute; each retry wrote its line again, for as long as the file
stayed (a file of his mode 000: forever), and every file of a folder of them had its own line: with
names 256 folders deep, ~390 KB a line, one user filled root's shared mount log (attack round 58c
(5)).  What is not said one by one is counted in each batch's summary line (``N failed``) and shown
by ``fusevault status`` (the last error).  The files said are kept as 16-byte digests, at most
``KEPT`` of them (the oldest forgotten first: said once more if it fails again), so this costs the
mount a bounded memory whatever the names.
"""

from __future__ import annotations

import hashlib

PER_WINDOW = 20  # failures said one by one in a window, for all the files of one watch
WINDOW = 60.0  # seconds
KEPT = 10_000  # files whose failure was said, remembered (~1.5 MB at most)


def _key(location: str) -> bytes:
    return hashlib.blake2b(location.encode("utf-8", "surrogateescape"), digest_size=16).digest()


class FailuresSaid:
    def __init__(self) -> None:
        self._said: dict[bytes, None] = {}  # in the order said: the first is forgotten first
        self._window_start = float("-inf")
        self._in_window = 0

    def to_say(self, location: str, now: float) -> bool:
        """Whether the failure of ``location`` (at ``now``, seconds) is to be said in the log: not
        said since it last succeeded, and the window not full (then it is said at a later failure)."""
        key = _key(location)
        if key in self._said:
            return False
        if now - self._window_start >= WINDOW:
            self._window_start, self._in_window = now, 0
        if self._in_window >= PER_WINDOW:
            return False
        self._in_window += 1
        self._said[key] = None
        if len(self._said) > KEPT:
            del self._said[next(iter(self._said))]
        return True

    def done(self, location: str) -> None:
        """``location`` was imported (or is gone): a later failure of it is said again."""
        if self._said:
            self._said.pop(_key(location), None)
