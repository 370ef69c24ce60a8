"""Two states of her file made apart on two of her devices: what she set as metadata, merged field by field.

Settling keeps one state's contents (vault/services/conflicts.py, rules 2 and 3).  What she sets as
metadata (``nodes.CHANGED``: the permission bits, the owner ids, the extended attributes, the names)
is taken field by field from the state that changed it; when both did, from the later change.  Each
such field carries the time it last changed (``Node.changed``, stamped by ``nodes.note_change``
greater than the stamp it had), so a state that did not touch a field carries the stamp of the state
both were made over, and one that did carries a greater one: no common ancestor's body is needed
(the replica keeps none).  A field neither side stamped (states from before the stamps) is the kept
state's, as before.

Only for two states of hers: a WRITE member's branch is judged whole as it is (``leaf_ok``), and
nothing of his is taken field by field.  Keys, epochs, heads and manifests are never mixed: they are
the kept state's.
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from dataclasses import dataclass

from fusevault.vault.model.nodes import CHANGED, Node


def stamp(node: Node, field: str) -> int:
    """When the node's ``field`` last changed (0: never since stamps were made)."""
    return (node.changed or {}).get(field, 0)


def changed_last(first: Node, second: Node, field: str) -> Node:
    """The state whose ``field`` stands: the one with the greater stamp; ``first`` on a tie (neither
    changed it since the state both were made over, so both hold the same)."""
    return second if stamp(second, field) > stamp(first, field) else first


@dataclass(frozen=True)
class Metadata:
    """The merged metadata to give the kept state."""

    perm: int
    uid: int
    gid: int
    xattrs: Mapping[bytes, bytes]
    changed: dict[str, int] | None

    def differs(self, node: Node) -> bool:
        """Whether the node shows other metadata.  Stamps alone are no reason for a commit: two
        devices settling at once would each make one more revision, a conflict again."""
        return (stat.S_IMODE(node.mode), node.uid, node.gid, dict(node.xattrs)) != (
            self.perm, self.uid, self.gid, dict(self.xattrs))

    def apply(self, node: Node) -> None:
        node.mode = stat.S_IFMT(node.mode) | self.perm
        node.uid, node.gid = self.uid, self.gid
        node.xattrs = self.xattrs
        node.changed = self.changed


def merged(keeper: Node, other: Node, named: Node) -> Metadata:
    """The keeper's metadata with each field the other state changed later taken from it; the names
    are ``named``'s (chosen by the caller, which also judges them), and so is their stamp."""
    mode = changed_last(keeper, other, "mode")
    owner = changed_last(keeper, other, "owner")
    xattrs = changed_last(keeper, other, "xattrs")
    stamps = {field: max(stamp(keeper, field), stamp(other, field)) for field in CHANGED - {"links"}}
    stamps["links"] = stamp(named, "links")
    return Metadata(stat.S_IMODE(mode.mode), owner.uid, owner.gid, xattrs.xattrs,
                    {field: n for field, n in stamps.items() if n} or None)
