"""A metadata change applied in memory, committed as documents, undone on failure."""

from __future__ import annotations

from fusevault.vault.model.nodes import Node, note_change


class Tx:
    def __init__(self) -> None:
        self.saved: dict[int, tuple] = {}
        self.nodes: dict[int, Node] = {}
        self.entries: list[tuple[Node, bytes, int | None, int]] = []
        self.created: list[Node] = []

    def touch(self, node: Node) -> Node:
        """Mark a node as changed by this transaction (snapshotting it first)."""
        if node.ino not in self.saved:
            self.saved[node.ino] = node.save()
            self.nodes[node.ino] = node
        return node

    # A directory's document does not list its entries (each node lists its
    # own links), so linking changes the child's document, not the parent's.

    def attach(self, parent: Node, name: bytes, node: Node) -> None:
        self.touch(node)
        subdir = int(node.is_dir)
        self.entries.append((parent, name, parent.children.get(name), subdir))
        parent.children[name] = node.ino
        parent.subdirs += subdir
        node.links.append((parent.ino, name))
        if node.rev is not None:  # a name given to a node that had its own: a change (a new node's is none)
            note_change(node, "links")

    def detach(self, parent: Node, name: bytes, node: Node) -> None:
        self.touch(node)
        subdir = -int(node.is_dir)
        self.entries.append((parent, name, parent.children.get(name), subdir))
        del parent.children[name]
        parent.subdirs += subdir
        node.links.remove((parent.ino, name))
        note_change(node, "links")

    def rollback(self, nodes: dict[int, Node]) -> None:
        for parent, name, old, subdir in reversed(self.entries):
            parent.subdirs -= subdir
            if old is None:
                parent.children.pop(name, None)
            else:
                parent.children[name] = old
        for ino, saved in self.saved.items():
            self.nodes[ino].restore(saved)
        for node in self.created:
            nodes.pop(node.ino, None)
