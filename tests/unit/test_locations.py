"""imports/locations.py: a file of the watched folder kept as its folder (shared) and its own name
(attack round 58c (1)); equal whoever made it, at a cost of one step when its folder is shared."""

from __future__ import annotations

import sys

from fusevault.imports.locations import TOP, Location, Place


def test_locations_made_apart_are_equal_and_hash_alike() -> None:
    walked = Location(Place(Place(TOP, "a"), "b"), "c.txt")
    assert walked == Location.of("a/b/c.txt") and hash(walked) == hash(Location.of("a/b/c.txt"))
    assert str(walked) == "a/b/c.txt" and str(Location.of("top.txt")) == "top.txt"
    assert walked != Location.of("a/c.txt") and walked != Location.of("b/a/c.txt") and walked != "a/b/c.txt"
    assert Location.of("a/b") != Location.of("a/b/")  # "a/b" a file; "a/b/" a bad name under a/b
    assert sorted([Location.of("b.txt"), Location.of("a.txt"), Location.of("a/z.txt")]) == [
        Location.of("a/z.txt"), Location.of("a.txt"), Location.of("b.txt")]  # name by name


def test_a_deep_location_costs_its_own_name_when_its_folder_is_shared() -> None:
    place = TOP
    for step in range(256):
        place = Place(place, f"{step:03d}" + "d" * 252)
    files = [Location(place, f"{number:06d}" + "f" * 249) for number in range(100)]
    each = sys.getsizeof(files[0]) + sys.getsizeof(files[0].name)
    assert each < 1024 and len(str(files[0])) > 65_000
    assert files[0] == Location.of(str(files[0]))  # equal to one made apart, all the way up
