"""A metadata change applied in memory, committed as documents, undone on failure."""

from __future__ import annotations

from fusevault.vault.nodes import Node


class Tx:
    def __init__(self) -> None:
        self.saved: dict[int, tuple] = {}
        self.nodes: dict[int, Node] = {}
        self.entries: list[tuple[Node, bytes, int | None]] = []
        self.created: list[Node] = []

    def touch(self, node: Node) -> Node:
        """Mark a node as changed by this transaction (snapshotting it first)."""
        if node.ino not in self.saved:
            self.saved[node.ino] = node.save()
            self.nodes[node.ino] = node
        return node

    def attach(self, parent: Node, name: bytes, node: Node) -> None:
        self.touch(parent)
        self.touch(node)
        self.entries.append((parent, name, parent.children.get(name)))
        parent.children[name] = node.ino
        node.links.append((parent.ino, name))
        if node.is_dir:
            parent.subdirs += 1

    def detach(self, parent: Node, name: bytes, node: Node) -> None:
        self.touch(parent)
        self.touch(node)
        self.entries.append((parent, name, parent.children.get(name)))
        del parent.children[name]
        node.links.remove((parent.ino, name))
        if node.is_dir:
            parent.subdirs -= 1

    def rollback(self, nodes: dict[int, Node]) -> None:
        for parent, name, old in reversed(self.entries):
            if old is None:
                parent.children.pop(name, None)
            else:
                parent.children[name] = old
        for ino, saved in self.saved.items():
            self.nodes[ino].restore(saved)
        for node in self.created:
            nodes.pop(node.ino, None)
