"""Which node a name clash showed beside another, so that a refused holder gives its name back.

A clash (arrivals.py ``link_clashing``) shows one node under ``NAME (also ID).ext``.  When the holder's
name is later refused (a phantom made real: phantoms.py ``names_judged_again``), the name is free, and
the node it displaced was still shown beside it: her next save committed the made name, for good, on
every device (attack round 73d (4)).
So each clash is noted here, and a refusal gives the name back (``give_back``), as the load's
``_link_beside`` gives a name no node holds any more.

A note per name lost (the node, the folder, the name it wants there): a node named in two folders
lost both clashes and only the last one's note was kept, one note a node; a name lost in a folder the
node shows in under another name of its own already (not shown twice there: 73d (5)) was never noted
at all, and both stayed lost once the holder's names were refused (attack round 74b (1)).  Such a note
is *anchored* at the name the node shows under there (``replaced`` False: given back, the name is
added beside it); a clash's at the made name (``replaced``: given back, the made name goes).
Bounded by the names a node holds or its document gives it: an arrival drops the node's notes before
its names are decided again (arrivals.py ``relink``), a node leaving the table drops its own
(inodes.py ``purge_if_unused``), a note is dropped when used, and is checked against the tree when
read (the node may have been renamed, or have left, since).  Names are kept: wiped with the tree's keys.
"""

from __future__ import annotations


class Beside:
    """(folder inode, NAME) -> {inode of a node waiting for it there: (the name it shows under there,
    whether that name is the made one the name given back replaces)}."""

    __slots__ = ("_by_name", "_of")

    def __init__(self) -> None:
        self._by_name: dict[tuple[int, bytes], dict[int, tuple[bytes, bool]]] = {}
        self._of: dict[int, dict[int, set[bytes]]] = {}  # inode -> folder inode -> the names it waits for

    def note(self, parent_ino: int, name: bytes, ino: int, shown: bytes) -> None:
        """Node ``ino`` shown as ``shown`` in folder ``parent_ino``, where another holds ``name``."""
        self._put(parent_ino, name, ino, (shown, True))

    def wait(self, parent_ino: int, name: bytes, ino: int, anchor: bytes) -> None:
        """Node ``ino``, shown as ``anchor`` in folder ``parent_ino`` already, wants ``name`` there too,
        which another holds.  A clash's note of that name (the same name twice in one document) stays."""
        if ino not in self._by_name.get((parent_ino, name), {}):
            self._put(parent_ino, name, ino, (anchor, False))

    def _put(self, parent_ino: int, name: bytes, ino: int, note: tuple[bytes, bool]) -> None:
        self._by_name.setdefault((parent_ino, name), {})[ino] = note
        self._of.setdefault(ino, {}).setdefault(parent_ino, set()).add(name)

    def drop(self, ino: int) -> None:
        """Every note of node ``ino``: its names are decided again, or it left."""
        for parent_ino, wanted in self._of.pop(ino, {}).items():
            for name in wanted:
                self._unnote(parent_ino, name, ino)

    def drop_one(self, ino: int, parent_ino: int, name: bytes) -> None:
        if (folders := self._of.get(ino)) is None or name not in folders.get(parent_ino, ()):
            return
        folders[parent_ino].discard(name)
        if not folders[parent_ino]:
            del folders[parent_ino]
            if not folders:
                del self._of[ino]
        self._unnote(parent_ino, name, ino)

    def _unnote(self, parent_ino: int, name: bytes, ino: int) -> None:
        if (waiting := self._by_name.get((parent_ino, name))) is not None:
            waiting.pop(ino, None)
            if not waiting:
                del self._by_name[(parent_ino, name)]

    def renamed(self, ino: int, parent_ino: int, old: bytes, new: bytes) -> None:
        """Node ``ino``'s name ``old`` in the folder is ``new`` now (a made name given back): its other
        notes there, anchored at ``old``, are anchored at ``new`` (given back, each is added beside it)."""
        for name in self._of.get(ino, {}).get(parent_ino, ()):
            waiting = self._by_name[(parent_ino, name)]
            if waiting[ino][0] == old:
                waiting[ino] = (new, False)

    def moved(self, ino: int, parent_ino: int, old: bytes, new: bytes) -> bool:
        """Node ``ino`` lost its name ``old`` in the folder and shows as ``new`` there now (a clash's
        holder swapped out: arrivals.py ``link_clashing``): its notes shown at ``old`` are shown at
        ``new``, each keeping whether it replaces that name.  Left at ``old``, they were dropped as
        "renamed since" when read, and her name never came back (attack round 76b (1)).  Whether
        ``old`` was a made name of it (a note replacing it): no name it wants, so not noted again
        (each taking of it noted one more: 76b (2))."""
        made = False
        for name in self._of.get(ino, {}).get(parent_ino, ()):
            shown, replaced = self._by_name[(parent_ino, name)][ino]
            if shown == old:
                self._by_name[(parent_ino, name)][ino] = (new, replaced)
                made = made or replaced
        return made

    def made(self, ino: int, parent_ino: int, shown: bytes) -> bool:
        """Whether ``shown`` is a made name of node ``ino`` in the folder (a note replacing it)."""
        return any(self._by_name[(parent_ino, name)][ino] == (shown, True)
                   for name in self._of.get(ino, {}).get(parent_ino, ()))

    def waiting(self, parent_ino: int, name: bytes) -> list[tuple[int, bytes, bool]]:
        """The nodes noted as wanting ``name`` in the folder: (inode, the name it shows under there,
        replaced), first noted first (a copy: the caller drops)."""
        return [(ino, shown, replaced)
                for ino, (shown, replaced) in self._by_name.get((parent_ino, name), {}).items()]

    def __len__(self) -> int:
        """How many notes are held (every node's, every name's)."""
        return sum(len(waiting) for waiting in self._by_name.values())

    def clear(self) -> None:
        self._by_name.clear()
        self._of.clear()
