"""vault/services/exporting.py ``Destination.check``: what an export without ``--overwrite`` would
replace, looked up folder by folder through the way (never a whole path from the destination: a file
past PATH_MAX refused the export, attack round 63c (3)), making nothing, following no link, and a
folder not there looked up once, not once per entry under it."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from fusevault.errors import AlreadyExists, InvalidInput
from fusevault.host_access import Direct
from fusevault.vault.model.nodes import Node
from fusevault.vault.services.exporting import Destination, tree

OWNER = "a" * 32


class _Counting(Direct):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def call(self, op: str, *args: Any, fd: int | None = None) -> tuple[Any, int | None]:
        self.calls.append((op, str(args[0])))
        return super().call(op, *args, fd=fd)


class _Volume:
    """A tree of folders (a dict of names) and files (None)."""

    def __init__(self, shape: dict) -> None:
        self.nodes: dict[int, Node] = {}
        self.top = self._add(shape)

    def _add(self, shape: dict | None) -> Node:
        ino = len(self.nodes) + 1
        mode = stat.S_IFDIR | 0o700 if shape is not None else stat.S_IFREG | 0o600
        node = Node(ino, f"f{ino}", OWNER, b"k" * 32, mode, 0, 0)
        self.nodes[ino] = node
        if shape is not None:
            node.children = {name.encode(): self._add(inner).ino for name, inner in shape.items()}
        return node

    def node(self, ino: int) -> Node:
        return self.nodes[ino]

    def path_of(self, node: Node) -> bytes:
        return b"?"


def _check(dest: Path, shape: dict, base: str = "top") -> _Counting:
    volume = _Volume(shape)
    host = _Counting()
    out = Destination(host, dest)
    host.calls.clear()
    try:
        out.check(tree(volume, volume.top, base).steps())  # type: ignore[arg-type]
    finally:
        out.close()
    return host


def test_an_export_into_an_empty_folder_looks_its_missing_top_up_once(tmp_path: Path) -> None:
    shape = {f"sub{n}": {f"file{m}": None for m in range(20)} for n in range(50)}
    host = _check(tmp_path, shape)
    assert host.calls == [("open", "top")]  # 1,000 files under it: none looked up (seen: 1,000 lstats)
    assert os.listdir(tmp_path) == []  # nothing made


def test_a_folder_missing_deep_down_is_passed_over_and_what_follows_is_still_refused(tmp_path: Path) -> None:
    (tmp_path / "top").mkdir()
    (tmp_path / "top" / "z.txt").write_text("his\n")
    shape = {"a": {"b": {f"file{m}": None for m in range(100)}}, "z.txt": None}
    volume = _Volume(shape)
    host = _Counting()
    out = Destination(host, tmp_path)
    host.calls.clear()
    try:
        with pytest.raises(AlreadyExists, match="z.txt exists"):
            out.check(tree(volume, volume.top, "top").steps())  # type: ignore[arg-type]
    finally:
        out.close()
    assert host.calls == [("open", "top"), ("open", "a"), ("lstat", "z.txt")]
    assert sorted(os.listdir(tmp_path / "top")) == ["z.txt"]  # "a" not made


def test_a_file_past_path_max_is_looked_up_in_its_own_folder(tmp_path: Path) -> None:
    names = [f"{n:03d}" + "d" * 247 for n in range(20)]  # ~5,000 bytes from the destination
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    for name in names:
        os.mkdir(name, dir_fd=fd)
        inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(os.open("deep.txt", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
    shape: dict = {"deep.txt": None}
    for name in reversed(names[1:]):
        shape = {name: shape}
    volume = _Volume(shape)
    out = Destination(Direct(), tmp_path)
    try:
        with pytest.raises(AlreadyExists, match="deep.txt exists"):  # seen: "File name too long"
            out.check(tree(volume, volume.top, names[0]).steps())  # type: ignore[arg-type]
        os.unlink("deep.txt", dir_fd=fd)
        out.check(tree(volume, volume.top, names[0]).steps())  # type: ignore[arg-type]
    finally:
        os.close(fd)
        out.close()


def test_a_link_on_the_way_is_not_followed(tmp_path: Path) -> None:
    elsewhere, dest = tmp_path / "elsewhere", tmp_path / "dest"
    elsewhere.mkdir()
    dest.mkdir()
    (elsewhere / "a.txt").write_text("theirs\n")
    (dest / "top").symlink_to(elsewhere)
    with pytest.raises(InvalidInput, match="links are not followed"):  # seen: "top/a.txt exists"
        _check(dest, {"a.txt": None})
    assert os.listdir(elsewhere) == ["a.txt"]
