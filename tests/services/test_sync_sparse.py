"""A big sparse file synced between two devices through pouchdb-server is byte-exact (issue 26):
its size, every extent, the zeros of its holes; and only its data crosses the wire."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from conftest import LONG, first_device, mounted, new_device, settled, sync_status, wait_for

SIZE = 1 << 40  # 1 TiB apparent size
# A few scattered extents: at the start, across a block boundary, in the middle, at the end.
EXTENTS = [(0, os.urandom(5000)), ((1 << 30) + 16384 - 7, os.urandom(100_000)),
           ((1 << 39) + 12345, os.urandom(70_000)), (SIZE - 3000, os.urandom(3000))]
WINDOW = 1 << 20  # read this much around each extent: the holes next to it must read as zeros


def expected(start: int, length: int, extents: list[tuple[int, bytes]]) -> bytes:
    out = bytearray(length)
    for offset, data in extents:
        lo, hi = max(offset, start), min(offset + len(data), start + length)
        if lo < hi:
            out[lo - start:hi - start] = data[lo - offset:hi - offset]
    return bytes(out)


def windows(extents: list[tuple[int, bytes]]) -> list[tuple[int, int]]:
    spots = [(max(0, o - WINDOW), min(SIZE, o + len(d) + WINDOW)) for o, d in extents]
    spots += [((1 << 35) + 999, (1 << 35) + 999 + WINDOW)]  # far from any extent
    return [(lo, hi - lo) for lo, hi in spots]


def same_bytes(path: Path, extents: list[tuple[int, bytes]]) -> bool:
    if path.stat().st_size != SIZE:
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        return all(hashlib.sha256(os.pread(fd, length, start)).digest()
                   == hashlib.sha256(expected(start, length, extents)).digest()
                   for start, length in windows(extents))
    finally:
        os.close(fd)


def write_sparse(path: Path, extents: list[tuple[int, bytes]], size: int | None = None) -> None:
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        for offset, data in extents:
            os.pwrite(fd, data, offset)
        if size is not None:
            os.ftruncate(fd, size)
    finally:
        os.close(fd)


def test_a_big_sparse_file_syncs_byte_exact_both_ways(couchdb_url: str, tmp_path: Path) -> None:
    laptop = first_device(couchdb_url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        wait_for(lambda: settled(a), "the laptop to reach the server")
        before = sync_status(a)["bytes_up"]
        write_sparse(a / "disk.img", EXTENTS)
        assert same_bytes(a / "disk.img", EXTENTS)
        wait_for(lambda: settled(a) and sync_status(a)["bytes_up"] > before, "the sparse file to be sent")
        sent = sync_status(a)["bytes_up"] - before
        # Its data (about 178 KB, padded) and some tree nodes and documents: the holes cost nothing.
        assert sent < 4 << 20, sent
        desktop = new_device(couchdb_url, tmp_path, "desktop")
        with mounted(desktop, tmp_path / "b") as b:
            wait_for(lambda: (b / "disk.img").exists() and same_bytes(b / "disk.img", EXTENTS),
                     "the sparse file to reach the desktop whole", LONG * 2)
            # The other way: an edit inside a hole and one at the end, made on the desktop.
            edits = [((1 << 38) + 1, os.urandom(20_000)), (SIZE - 10, os.urandom(10))]
            write_sparse(b / "disk.img", edits)
            now = EXTENTS + edits
            assert same_bytes(b / "disk.img", now)
            wait_for(lambda: same_bytes(a / "disk.img", now), "the desktop's edit to reach the laptop",
                     LONG * 2)
