"""What a store call made on the trio loop may do: short work only (one commit, one document).

The local store's calls may run on the loop itself (``inline``: vault/tree/inodes.py ``store_call``),
the loop that serves every user's files in root's shared mount.  A read whose size the store's
contents set (every document of a kind, every change) is never one of them: a mapped user grew her
import records to 100,000 and each restart of her import service read them all there, seconds of a
frozen mount for every user (attack round 73b (1)).  Such reads go through ``read_call`` (a worker
thread, a snapshot).  ``store_call`` marks its inline run (``on_loop``), and a scan made inside it is
refused (``scan``) rather than made: any call site that still makes one fails at once, in the tests
that reach it, not only under a flood.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

_here = threading.local()  # ``inline``: this thread is inside an inline store call (the trio loop)


class LongCallOnLoop(RuntimeError):
    """A scan of the store asked for inside a store call run on the trio loop: a bug of the caller,
    which must use ``read_call``."""


def on_loop() -> contextlib.AbstractContextManager[None]:
    """The inline store call made inside: only short work (no ``scan``)."""
    return _inline(True)


def lifted() -> contextlib.AbstractContextManager[None]:
    """Work inside an inline store call that is not the caller's: the shared mount's listener, which
    takes a seat's commit into every other user's tree (store/watched.py), is judged on its own."""
    return _inline(False)


@contextlib.contextmanager
def _inline(value: bool) -> Iterator[None]:
    before = getattr(_here, "inline", False)
    _here.inline = value
    try:
        yield
    finally:
        _here.inline = before


def scan(what: str) -> None:
    """Refuse a scan of ``what`` (every document of a kind, the changes) inside an inline store call."""
    if getattr(_here, "inline", False):
        raise LongCallOnLoop(f"a read of {what} in a store call on the trio loop: its length is the store's "
                             "to set (use read_call: a worker thread, a snapshot)")
