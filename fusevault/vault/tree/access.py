"""Who may do what in a user's tree: the one place every entry point asks.

FUSE, the control socket, imports, drop boxes and restores all reach nodes
through these checks (via vault/volume.py), so none can skip them.  They
sit on the inode table because a guest node's rights come from the shares
on it or on a folder above it.
"""

from __future__ import annotations

from fusevault.errors import InvalidArgument, NameTooLong, NotADirectory, NotFound, PermissionDenied
from fusevault.vault.model.groups import can_write
from fusevault.vault.model.nodes import Node
from fusevault.vault.tree.guests import LIST
from fusevault.vault.tree.inodes import Inodes

NAME_MAX = 255


class Access(Inodes):
    def may(self, node: Node, write: bool = False) -> bool:
        """May this user read ``node`` (``write``: change it: its contents,
        name, mode bits or extended attributes, or, for a folder, what is in
        it)?  Their own nodes: always.  Another's: as the best share on it or
        a folder above it allows (READ reads, WRITE also writes); a share's
        virtual folder is only listed; a phantom parent, nothing."""
        if node.owner == self.key.user_id:
            return True
        perm = self.perm(node)
        if perm is None or not write:
            return perm is not None
        # A change is judged as every device of the owner judges the document it signs (authorship.py
        # ``may_write``): WRITE on every folder it sits in (or a grant on it), the ones this seat cannot
        # see too; the best share over one of its names let a writer of docs rename her file that sits in
        # her own folder too, and her unlock refused it (attack round 73d (6)).
        return can_write(perm) and self.sharing.writes_at(node, self.get, self.key.user_id, node.owner)

    def may_write(self, node: Node) -> bool:
        """May this user write here: change ``node``, or make or remove names in it."""
        return self.may(node, write=True)

    def writable(self, node: Node) -> bool:
        return self.may_write(node)

    def check(self, node: Node, write: bool = False) -> Node:
        """``node``, if ``may`` allows it; else PermissionDenied."""
        if not self.may(node, write):
            raise PermissionDenied("not allowed by the file's sharing: "
                                   + ("you may only read it" if write and self.may(node) else "no access"))
        if (node.owner != self.key.user_id and not node.dek and self.sharing is not None
                and self.perm(node) != LIST):
            # Its share ended while it was open here, and the share made
            # again has not given it back its key yet.
            raise PermissionDenied("the file's key is not shared with you (yet)")
        return node

    def require(self, ino: int, write: bool = False) -> Node:
        """The node of ``ino``, if this user may read it (``write``: change it); else PermissionDenied."""
        return self.check(self.node(ino), write)

    def owned(self, node: Node) -> Node:
        """Only the owner: key rotations and files out of the trash."""
        if node.owner != self.key.user_id:
            raise PermissionDenied("only the file's owner may do that")
        return node

    def directory(self, ino: int) -> Node:
        node = self.node(ino)
        if not node.is_dir:
            raise NotADirectory("not a directory")
        return node

    @staticmethod
    def check_name(name: bytes) -> None:
        if len(name) > NAME_MAX:
            raise NameTooLong("file name too long")
        if not name or b"/" in name or b"\0" in name or name in (b".", b".."):
            raise InvalidArgument("invalid file name")

    @staticmethod
    def child(parent: Node, name: bytes) -> int:
        if len(name) > NAME_MAX:
            raise NameTooLong("file name too long")
        ino = parent.children.get(name)
        if ino is None:
            raise NotFound("no such file")
        return ino
