"""host_access/listing.py: a folder listed in bounded pages, each name once, resumed where the last
page ended (attack round 55c, (2): one answer for a whole folder passed the wire's cap)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from fusevault.host_access import Direct, listing, wire
from fusevault.host_access.operations import do


def _names(folder: Path, count: int, tail: bytes) -> set[str]:
    folder.mkdir()
    (folder / "first").write_bytes(b"x")
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for number in range(count):  # hard links: quick to make
            os.link("first", b"%05d" % number + tail, src_dir_fd=fd, dst_dir_fd=fd)
    finally:
        os.close(fd)
    return {"first"} | {os.fsdecode(b"%05d" % number + tail) for number in range(count)}


def test_a_folder_of_many_long_names_comes_in_pages_each_under_the_wire_cap(tmp_path: Path) -> None:
    names = _names(tmp_path / "many", 2 * listing.PAGE_ENTRIES + 100, b"\xff" * 250)
    fd = os.open(tmp_path / "many", os.O_RDONLY | os.O_DIRECTORY)
    try:
        seen: list[str] = []
        position, pages = 0, 0
        while position is not None:
            (entries, position), _ = do("scan_page", [position], fd)
            pages += 1
            assert len(json.dumps({"result": [entries, position]}).encode()) <= wire.MAX_TOTAL // 4
            seen += [name for name, _ in entries]
        assert os.lseek(fd, 0, os.SEEK_CUR) == 0  # the caller's descriptor never moved
    finally:
        os.close(fd)
    assert pages >= 3 and len(seen) == len(set(seen)) and set(seen) == names


def test_scan_is_made_of_pages_and_lists_a_folder_whole(tmp_path: Path) -> None:
    names = _names(tmp_path / "many", listing.PAGE_ENTRIES + 10, b"-" + b"x" * 60)
    found = Direct().scan(str(tmp_path / "many"))
    assert sorted(name for name, _ in found) == sorted(names)


class _Endless(Direct):
    """His helper (he may ptrace it) answering an empty page with a position: read as the end."""

    def call(self, op, *args, fd=None):
        if op == "scan_page":
            return [[], 12345], None
        return super().call(op, *args, fd=fd)


def test_an_empty_page_ends_the_listing_whatever_position_comes_with_it(tmp_path: Path) -> None:
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert _Endless().scan_page(fd, 0) == ([], None)
    finally:
        os.close(fd)
