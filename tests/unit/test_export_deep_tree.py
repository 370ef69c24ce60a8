"""exporting.tree (export, capability links) over a chain of folders deeper than Python's recursion
limit: walked with a list (attack round 24c (2)), each folder before what it holds, names in order;
its paths joined as they are asked for, not kept (a deep chain's paths held depth² bytes)."""

from __future__ import annotations

import stat
import sys
import tracemalloc

from fusevault.host_access.way import Step
from fusevault.vault.model.nodes import Node
from fusevault.vault.services.exporting import tree

OWNER = "a" * 32


class _Volume:
    def __init__(self, nodes: dict[int, Node]) -> None:
        self.nodes = nodes

    def node(self, ino: int) -> Node:
        return self.nodes[ino]

    def path_of(self, node: Node) -> bytes:
        return b"?"


def _dir(ino: int) -> Node:
    return Node(ino, f"d{ino}", OWNER, b"k" * 32, stat.S_IFDIR | 0o700, 0, 0)


def test_a_chain_deeper_than_the_recursion_limit_is_listed_in_order() -> None:
    depth = sys.getrecursionlimit() + 500
    nodes = {ino: _dir(ino) for ino in range(1, depth + 1)}
    for ino in range(1, depth):
        nodes[ino].children = {b"d": ino + 1}
    leaf = Node(depth + 1, "leaf", OWNER, b"k" * 32, stat.S_IFREG | 0o600, 0, 0)
    nodes[depth].children = {b"b.txt": depth + 1, b"a": depth + 2}
    nodes[depth + 1], nodes[depth + 2] = leaf, _dir(depth + 2)
    found = list(tree(_Volume(nodes), nodes[1], "top"))  # type: ignore[arg-type]
    assert [n.ino for _, n in found] == list(range(1, depth + 1)) + [depth + 2, depth + 1]
    assert found[-1][0] == "top" + "/d" * (depth - 1) + "/b.txt"


def _chain(depth: int, name: bytes) -> dict[int, Node]:
    nodes = {ino: _dir(ino) for ino in range(1, depth + 1)}
    for ino in range(1, depth):
        nodes[ino].children = {name: ino + 1, b"f": depth + ino}
        nodes[depth + ino] = Node(depth + ino, f"f{ino}", OWNER, b"k" * 32, stat.S_IFREG | 0o600, 0, 0)
    return nodes


def test_a_deep_chain_of_long_names_costs_its_names_once_not_a_path_per_file() -> None:
    """A member's chain 400 deep of 255-byte names, a file in each folder: its whole paths, kept,
    were 400²/2 names (~20 MB; 12 GB at 10,000 deep, in root's shared mount at its owner's export);
    the tree keeps each name once and joins a path as it is asked for."""
    depth, name = 400, b"n" * 255
    nodes = _chain(depth, name)
    tracemalloc.start()
    try:
        found = tree(_Volume(nodes), nodes[1], "top")  # type: ignore[arg-type]
        kept = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert kept < 2 * 2**20, f"{kept} bytes kept for {depth} folders"
    paths = dict((n.ino, rel) for rel, n in found)  # joined as asked: the same paths as before
    assert paths[depth] == "top" + "/" + "/".join(["n" * 255] * (depth - 1))
    assert paths[depth + depth - 1] == paths[depth - 1] + "/f"
    assert len(found) == 2 * depth - 1


def test_a_tree_from_the_root_names_its_top_nothing_and_is_walked_twice_the_same() -> None:
    nodes = _chain(3, b"d")
    found = tree(_Volume(nodes), nodes[1], "")  # type: ignore[arg-type]
    first = [rel for rel, _ in found]
    assert first == ["", "d", "d/d", "d/f", "f"]
    assert [rel for rel, _ in found] == first  # export checks, then copies: the same paths


def test_its_steps_share_their_folders_and_join_no_path(monkeypatch) -> None:
    """An export walks the tree as steps, each one name below its folder's (the same object): each
    entry's path joined, then split again by the way, was work quadratic in a chain's depth (attack
    round 63c (2))."""
    depth = sys.getrecursionlimit() + 500
    nodes = _chain(depth, b"n")
    found = tree(_Volume(nodes), nodes[1], "top")  # type: ignore[arg-type]

    def joined(self: Step) -> str:
        raise AssertionError("a whole path joined")

    with monkeypatch.context() as patched:
        patched.setattr(Step, "path", joined)
        steps = list(found.steps())
    folders = {n.ino: step for step, n in steps if n.is_dir}
    for step, node in steps:
        assert step.name == ("top" if node.ino == 1 else "f" if not node.is_dir else "n")
        assert step.up is (folders[node.ino - 1] if node.is_dir and node.ino > 1 else
                           folders[node.ino - depth] if not node.is_dir else None)
    assert [step.path() for step, _ in steps] == [rel for rel, _ in found]  # the same places
    small = _chain(3, b"d")
    root = tree(_Volume(small), small[1], "")  # type: ignore[arg-type]
    assert [(step.depth, step.path()) for step, _ in root.steps()] == [(1, "d"), (2, "d/d"), (2, "d/f"),
                                                                       (1, "f")]
