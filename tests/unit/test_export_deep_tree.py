"""exporting.tree (export, capability links) over a chain of folders deeper than Python's recursion
limit: walked with a list (attack round 24c (2)), each folder before what it holds, names in order."""

from __future__ import annotations

import stat
import sys

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
    found = tree(_Volume(nodes), nodes[1], "top")  # type: ignore[arg-type]
    assert [n.ino for _, n in found] == list(range(1, depth + 1)) + [depth + 2, depth + 1]
    assert found[-1][0] == "top" + "/d" * (depth - 1) + "/b.txt"
