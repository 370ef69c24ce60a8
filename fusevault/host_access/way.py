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

The way goes to a ``Step`` (a name below the folder it is in, shared by what is under it), never a
whole path: it climbs the step's chain only as far as the first folder it holds, so a move costs the
folders it passes, whatever the depth.  Handed whole paths ("a/b/c"), split and compared name by name
from the root at every move, an export of a chain D deep did D²/2 names' worth of work (root's shared
mount, one GIL: 12 s of CPU for a chain 8,000 deep of 255-byte names; attack round 63c (2)).

Not thread-safe: its owner runs one move at a time, and ``close`` after the last (``Destination``
counts the calls under way).  A descriptor it lets go is closed once nothing holds it (``Held``): a
temporary file's clean-up holds its own folder's (``Held.lent``), never the rest of the way.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from fusevault.host_access.held import Held

# enter(parent, name, where): the descriptor of folder ``name`` in ``parent`` (made where missing, as
# the caller does); ``where()``, its location from the root, for an error (joined only if asked).
Enter = Callable[[int, str, Callable[[], str]], int]


class Step:
    """An entry below the way's root: the folder it is in (``up``, None for the root itself) and its
    name.  A folder's step is shared by every entry under it, so a location costs one name, and the
    way tells the folders it holds by identity, not by comparing names."""

    __slots__ = ("depth", "name", "up")

    def __init__(self, up: Step | None, name: str) -> None:
        self.up = up
        self.name = name
        self.depth: int = up.depth + 1 if up is not None else 1  # names from the root, its own included

    @classmethod
    def of(cls, rel: str) -> Step:
        """The step of a whole path (names by "/", at least one), each folder a step of its own."""
        step: Step | None = None
        for name in rel.split("/"):
            step = cls(step, name)
        assert step is not None
        return step

    def path(self) -> str:
        """Its whole path from the root, by "/": for a message only (its cost is its depth)."""
        names = []
        at: Step | None = self
        while at is not None:
            names.append(at.name)
            at = at.up
        return "/".join(reversed(names))


def kept(depth: int, current: int) -> bool:
    """Whether the folder at ``depth`` on the way stays open while the way is at ``current``."""
    if depth in (0, current):
        return True
    return depth % (1 << ((current - depth).bit_length() - 1)) == 0


class Way:
    """From ``root`` (held until ``close``) down to the folder of the last ``to``."""

    def __init__(self, root: int, enter: Enter) -> None:
        self._enter = enter
        self._steps: list[Step] = []  # the folders below the root, in order
        self._open: list[Held[int] | None] = [Held(root, _close)]  # per depth: None when let go
        self._held = [0]  # the depths whose folder is open, in order

    @property
    def root(self) -> int:
        held = self._open[0]
        assert held is not None
        return held.thing

    @property
    def depth(self) -> int:
        """How many folders below the root the way is."""
        return len(self._steps)

    def to(self, step: Step | None, enter: Enter | None = None) -> Held[int]:
        """The folder of ``step`` (None: the root), each folder on its way entered by ``enter`` (the
        way's own by default) where the way holds it not: open until the way moves past it, or longer
        for what holds it (``Held.lent``).  The way backs up to the first folder of the step's chain
        it is on (by identity: a step made again for the same name is entered again, never mistaken),
        then goes down one name at a time: a move costs the folders between the two."""
        enter = enter or self._enter
        down: list[Step] = []
        at = step
        while at is not None and not (at.depth <= len(self._steps) and self._steps[at.depth - 1] is at):
            down.append(at)
            at = at.up
        self._up(at.depth if at is not None else 0)
        self._reopen(enter)
        for each in reversed(down):
            parent = self._open[-1]
            assert parent is not None
            fd = enter(parent.thing, each.name, each.path)
            self._steps.append(each)
            self._open.append(Held(fd, _close))
            self._held.append(each.depth)
            self._thin()
        last = self._open[-1]
        assert last is not None
        return last

    def close(self) -> None:
        """Every folder still held let go (closed once nothing holds it); the way is over."""
        opened, self._open, self._steps, self._held = self._open, [], [], []
        for held in opened:
            if held is not None:
                held.close()

    def _up(self, depth: int) -> None:
        """Back up to ``depth``: the folders below it let go."""
        while len(self._steps) > depth:
            self._steps.pop()
            gone = self._open.pop()
            if gone is not None:
                self._held.pop()
                gone.close()

    def _thin(self) -> None:
        """The folders the rule no longer keeps, the way one deeper, let go."""
        current = len(self._steps)
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

    def _reopen(self, enter: Enter) -> None:
        """The current folder open again, if it was let go: from the nearest one held, keeping on the
        way those the rule keeps."""
        current = len(self._steps)
        if self._open[current] is not None:
            return
        start = self._held[-1]
        base = self._open[start]
        assert base is not None
        fd = base.thing
        passing: int | None = None  # opened only to go on: closed once the next one is open
        try:
            for depth in range(start + 1, current + 1):
                step = self._steps[depth - 1]
                inner = enter(fd, step.name, step.path)
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


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):  # a folder: nothing written through it to lose
        os.close(fd)
