"""Which node a name clash showed beside another, so that a refused holder gives its name back.

A clash (arrivals.py ``link_clashing``) shows one node under ``NAME (also ID).ext``.  When the holder's
name is later refused (a phantom made real: phantoms.py ``names_judged_again``), the name is free, and
the node it displaced was still shown beside it: her next save committed the made name, for good, on
every device (attack round 73d (4)).
So each clash is noted here, and a refusal gives the name back (``give_back``), as the load's
``_link_beside`` gives a name no node holds any more.

One note per node (its latest clash), in a map of the name it wants: a note costs a look, is dropped
when used or when the node clashes again, and is checked against the tree when read (the node may
have been renamed, or have left, since).  Names are kept: wiped with the tree's keys.
"""

from __future__ import annotations

from collections.abc import Iterator


class Beside:
    """(folder inode, NAME) -> {inode of a node shown beside it: the name it is shown under}."""

    __slots__ = ("_by_name", "_of")

    def __init__(self) -> None:
        self._by_name: dict[tuple[int, bytes], dict[int, bytes]] = {}
        self._of: dict[int, tuple[int, bytes]] = {}  # inode -> the key its note is under

    def note(self, parent_ino: int, name: bytes, ino: int, shown: bytes) -> None:
        """Node ``ino`` shown as ``shown`` in folder ``parent_ino``, where another holds ``name``."""
        self.drop(ino)
        self._by_name.setdefault((parent_ino, name), {})[ino] = shown
        self._of[ino] = (parent_ino, name)

    def drop(self, ino: int) -> None:
        if (key := self._of.pop(ino, None)) is not None and (waiting := self._by_name.get(key)) is not None:
            waiting.pop(ino, None)
            if not waiting:
                del self._by_name[key]

    def waiting(self, parent_ino: int, name: bytes) -> Iterator[tuple[int, bytes]]:
        """The nodes noted beside ``name`` in the folder, first noted first (a copy: the caller drops)."""
        yield from list(self._by_name.get((parent_ino, name), {}).items())

    def clear(self) -> None:
        self._by_name.clear()
        self._of.clear()
