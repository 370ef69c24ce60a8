"""Where a file of the watched folder lies, kept in bytes in proportion to its own name.

A walk of the watched folder (watcher.py) kept each file it found as its whole location, a string of
every folder's name on the way: a file 256 folders deep, each named with 255 bytes, cost root's
shared mount 64 KB, and ``MAX_NAMES`` of them gigabytes at every walk (attack round 58c (1)).  A
``Location`` is its folder (a ``Place``) and its own name; a ``Place`` is its parent and its name; the
files of a folder share its ``Place``, and a walk takes each ``Place`` of the walk before again, so a
file costs its own name and a few references, whatever its depth.  The whole location is joined
(``str``) only for a file taken, one at a time.

Equal places and locations compare equal whoever made them (by their names, up to the watched
folder); the hash is built up from the parent's, kept, so neither a hash nor a comparison of places
taken again costs more than one step.
"""

from __future__ import annotations

BAD_PARTS = ("", ".", "..")  # never a name in a folder: a location holding one leads nowhere


class Place:
    """A folder of the watched one (``TOP``: the watched folder itself)."""

    __slots__ = ("parent", "name", "_hash")
    _hash: int

    def __init__(self, parent: Place | None, name: str) -> None:
        self.parent, self.name = parent, name
        self._hash = hash((None if parent is None else parent._hash, name))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        mine: Place | None = self
        theirs: object = other
        while mine is not theirs:  # the same object: equal (a place taken again), at once
            if (not isinstance(theirs, Place) or mine is None or mine._hash != theirs._hash
                    or mine.name != theirs.name):
                return False
            mine, theirs = mine.parent, theirs.parent
        return True

    def parts(self) -> list[str]:
        """The names from the watched folder down to this one (O(depth): not for every file)."""
        names: list[str] = []
        place: Place | None = self
        while place is not None and place.parent is not None:
            names.append(place.name)
            place = place.parent
        names.reverse()
        return names

    def chain(self) -> list[Place]:
        """The places from the watched folder's first one down to this one (``TOP`` left out)."""
        places: list[Place] = []
        place: Place | None = self
        while place is not None and place.parent is not None:
            places.append(place)
            place = place.parent
        places.reverse()
        return places

    def __repr__(self) -> str:
        return f"Place({'/'.join(self.parts())!r})"


TOP = Place(None, "")


class Location:
    """A file of the watched folder: its folder and its own name."""

    __slots__ = ("place", "name", "_hash")

    def __init__(self, place: Place, name: str) -> None:
        self.place, self.name = place, name
        self._hash = hash((place._hash, name))

    @classmethod
    def of(cls, location: str) -> Location:
        """The location written as a path (``a/b/c.txt``) relative to the watched folder."""
        *folders, name = location.split("/")
        place = TOP
        for folder in folders:
            place = Place(place, folder)
        return cls(place, name)

    def parts(self) -> list[str]:
        return [*self.place.parts(), self.name]

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Location) and self._hash == other._hash and self.name == other.name
                and self.place == other.place)

    def __lt__(self, other: Location) -> bool:  # by their paths: O(depth), for a sort of a few
        return self.parts() < other.parts()

    def __str__(self) -> str:
        return "/".join(self.parts())

    def __repr__(self) -> str:
        return f"Location({str(self)!r})"
