"""The folders on the way from a root folder down to the current one, a bounded number of them open.

An export makes folders one after the other, each before what it holds (a depth-first walk), and
needs the descriptor of the folder it is in.  Each one opened was kept until the end: a user's
vault folder of thousands of empty folders (or a chain as deep) took as many of root's descriptors
in the shared mount, and every open of the mount, any user's, met EMFILE (attack round 58a (1)).

Here only the folders on the way down to the current one count, and of those only a few are held:
the root, the current folder, and an ancestor ``a`` of the current folder ``q`` (depths) when ``a``
is a multiple of ``2 ** (bit_length(q - a) - 1)``: at most one per power of two of distance, so
``bit_length(q) + 2`` at most, whatever the tree (22 for a chain a million folders deep).  As the
way goes down, the rule only ever lets go (it needs no folder back); a folder let go is opened
again when the way comes back to it, name by name from the nearest one held, which is at most
about four times as far above it as the way went below it: coming back costs a few calls for each
one going down did (the watcher's walk, imports/watcher.py ``SPAN``, does the same within its
``MAX_DEPTH``).

Not thread-safe: its owner runs one move at a time, and ``close`` after the last (``Destination``
counts the calls under way).  A descriptor it lets go is closed once nothing holds it (``Held``): a
temporary file's clean-up holds its own folder's (``Held.lent``), never the rest of the way.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable

from fusevault.host_access.held import Held

# enter(parent, name, where): the descriptor of folder ``name`` in ``parent`` (made where missing, as
# the caller does); ``where()``, its location from the root, for an error (joined only if asked).
Enter = Callable[[int, str, Callable[[], str]], int]


def kept(depth: int, current: int) -> bool:
    """Whether the folder at ``depth`` on the way stays open while the way is at ``current``."""
    if depth in (0, current):
        return True
    return depth % (1 << ((current - depth).bit_length() - 1)) == 0


class Way:
    """From ``root`` (held until ``close``) down to the folder of the last ``to``."""

    def __init__(self, root: int, enter: Enter) -> None:
        self._enter = enter
        self._names: list[str] = []  # the folders below the root, in order
        self._open: list[Held[int] | None] = [Held(root, _close)]  # per depth: None when let go
        self._held = [0]  # the depths whose folder is open, in order

    @property
    def root(self) -> int:
        held = self._open[0]
        assert held is not None
        return held.thing

    def to(self, rel: str) -> Held[int]:
        """The folder ``rel`` (names from the root, by "/"), made where missing; open until the way
        moves past it, or longer for what holds it (``Held.lent``)."""
        names = rel.split("/") if rel else []
        common = 0
        while common < len(names) and common < len(self._names) and self._names[common] == names[common]:
            common += 1
        self._up(common)
        self._reopen()
        for name in names[common:]:
            parent = self._open[-1]
            assert parent is not None
            depth = len(self._names) + 1
            fd = self._enter(parent.thing, name, functools.partial(_joined, names, depth))
            self._names.append(name)
            self._open.append(Held(fd, _close))
            self._held.append(depth)
            self._thin()
        last = self._open[-1]
        assert last is not None
        return last

    def close(self) -> None:
        """Every folder still held let go (closed once nothing holds it); the way is over."""
        opened, self._open, self._names, self._held = self._open, [], [], []
        for held in opened:
            if held is not None:
                held.close()

    def _up(self, depth: int) -> None:
        """Back up to ``depth``: the folders below it let go."""
        while len(self._names) > depth:
            self._names.pop()
            gone = self._open.pop()
            if gone is not None:
                self._held.pop()
                gone.close()

    def _thin(self) -> None:
        """The folders the rule no longer keeps, the way one deeper, let go."""
        current = len(self._names)
        keep = []
        for depth in self._held:
            if kept(depth, current):
                keep.append(depth)
                continue
            gone = self._open[depth]
            assert gone is not None
            self._open[depth] = None
            gone.close()
        self._held = keep

    def _reopen(self) -> None:
        """The current folder open again, if it was let go: from the nearest one held, keeping on the
        way those the rule keeps."""
        current = len(self._names)
        if self._open[current] is not None:
            return
        start = self._held[-1]
        base = self._open[start]
        assert base is not None
        fd = base.thing
        passing: int | None = None  # opened only to go on: closed once the next one is open
        try:
            for depth in range(start + 1, current + 1):
                where = functools.partial(_joined, self._names, depth)
                inner = self._enter(fd, self._names[depth - 1], where)
                if passing is not None:
                    _close(passing)
                    passing = None
                if kept(depth, current):
                    self._open[depth] = Held(inner, _close)
                    self._held.append(depth)
                else:
                    passing = inner
                fd = inner
        finally:
            if passing is not None:
                _close(passing)


def _joined(names: list[str], depth: int) -> str:
    return "/".join(names[:depth])


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):  # a folder: nothing written through it to lose
        os.close(fd)
