"""Attack round 45t (3): the importer reads a sparse source for its data alone (imports/importer.py
``source_pieces``): holes come as lengths, never as bytes read, and the pieces add up to the file."""

from __future__ import annotations

import os
from pathlib import Path

from fusevault.imports.importer import source_pieces


def _joined(pieces: list[bytes | int]) -> bytes:
    return b"".join(bytes(p) if isinstance(p, int) else p for p in pieces)


def test_holes_come_as_lengths_and_the_pieces_are_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sparse.bin"
    with open(path, "wb") as f:
        f.write(b"head")
        f.seek(64 << 20)
        f.write(b"middle")
        f.truncate(256 << 20)  # a hole to the end
    fd = os.open(path, os.O_RDONLY)
    try:
        pieces = list(source_pieces(fd))
    finally:
        os.close(fd)
    assert _joined(pieces) == path.read_bytes()
    read = sum(len(p) for p in pieces if not isinstance(p, int))
    assert read < 8 << 20, f"{read} bytes read of a file of holes"
    assert isinstance(pieces[-1], int)  # the final hole is a length too


def test_a_file_without_holes_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "full.bin"
    path.write_bytes(os.urandom(3 << 20) + b"end")
    fd = os.open(path, os.O_RDONLY)
    try:
        pieces = list(source_pieces(fd))
    finally:
        os.close(fd)
    assert all(isinstance(p, bytes) for p in pieces)
    assert b"".join(p for p in pieces if isinstance(p, bytes)) == path.read_bytes()


def test_an_empty_file_has_no_pieces(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert list(source_pieces(fd)) == []
    finally:
        os.close(fd)
