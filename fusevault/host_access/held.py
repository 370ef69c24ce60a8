"""A descriptor of the mount's lent to calls in a user's threads, closed only once none of them runs.

A call on a user's host path is given up when its caller is cancelled (his hangup, a lock, an
unmount: host_access/threads.py), but its thread goes on, and may go on using the descriptor it was
given: ``exporting._write_all`` loops over ``pwrite``, a walk opens one name after another from its
folder.  Closed beside it, the descriptor's number is free: the mount's next ``open`` (another
user's temporary file, a store file) takes it, and the rest of the given-up call lands there, with
root's descriptor and not the user's rights (attack round 56a (1)).  So every call that uses a
descriptor holds it (``holding``), and ``close`` leaves it to the last call still under way; a call
that starts after the close is refused, and never sees the number.

A use that outlasts one call (a temporary file's removal, queued until a thread of the user's is free,
needs the folder it is in) holds a ``lent`` one: the thing stays open until that is closed too
(attack round 58a).
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Held(Generic[T]):
    """``thing`` (a descriptor, a file object) closed by ``close_it`` once no call holds it."""

    def __init__(self, thing: T, close_it: Callable[[T], Any]) -> None:
        self.thing = thing
        self._close_it = close_it
        self._lock = threading.Lock()
        self._busy = 0
        self._closed = False  # asked for: no new call may hold it
        self._gone = False  # done: closed, by ``close`` or by the last call holding it

    def holding(self, call: Callable[..., Any], *args: Any) -> Any:
        """``call(*args)`` (which uses the thing) with the thing kept open until it returns; refused
        (ECANCELED) once ``close`` was asked for: its number may be another file's by now."""
        self._take()
        try:
            return call(*args)
        finally:
            self._let_go()

    def lent(self) -> Held[T]:
        """The same thing, kept open (whoever closes this one) until the ``Held`` handed back is
        closed, and the calls holding that one are over; refused (ECANCELED) as ``holding`` is."""
        self._take()
        try:
            return Held(self.thing, lambda _thing: self._let_go())
        except BaseException:
            self._let_go()
            raise

    def _take(self) -> None:
        with self._lock:
            if self._closed:
                raise OSError(errno.ECANCELED, "given up: its file is closed")
            self._busy += 1

    def _let_go(self) -> None:
        with self._lock:
            self._busy -= 1
            last = self._closed and not self._busy and not self._gone
            self._gone = self._gone or last
        if last:
            self._close_it(self.thing)  # in the thread of the last call, which was the user's

    def close(self) -> None:
        """Closed now, or by the last call still holding it (a call given up, in its own thread)."""
        with self._lock:
            self._closed = True
            if self._busy or self._gone:
                return
            self._gone = True
        self._close_it(self.thing)

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._gone
