"""Names made from names stay within a file system's 255 bytes (attack round 26b2, holes 1, 2, 4)."""

from __future__ import annotations

from fusevault.encoding import bytes_start, name_start
from fusevault.links.owner import NAME_MAX, unique_name

LONG = "日" * 85  # 255 bytes of UTF-8


def test_name_start_counts_bytes_and_cuts_no_character() -> None:
    start = name_start(LONG)
    assert start == "日" * 66 and len(start.encode()) == 198  # 200 would cut the 67th in two
    assert name_start("report.txt") == "report.txt"
    odd = b"\xff" * 300  # no UTF-8 at all: still a name, still cut
    assert len(name_start(odd.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")) == 200


def test_bytes_start() -> None:
    assert bytes_start("é".encode() * 3, 3) == "é".encode()
    assert bytes_start(b"abc", 10) == b"abc"


def test_a_numbered_name_fits_and_keeps_its_extension() -> None:
    name = (LONG[:83] + ".txt").encode()  # 253 bytes
    second = unique_name({name: 1}, name)
    assert len(second) <= NAME_MAX and second.endswith(b" (2).txt")
    second.decode()  # whole characters only
    third = unique_name({name: 1, second: 2}, name)
    assert len(third) <= NAME_MAX and third.endswith(b" (3).txt") and third != second


def test_a_long_extension_is_numbered_with_the_whole_name() -> None:
    name = b"a." + b"x" * 250
    assert len(unique_name({name: 1}, name)) <= NAME_MAX
