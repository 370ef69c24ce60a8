"""One user's namespace in memory: the Tree, and its names, links and directory listings.

All nodes are held in memory (loaded and decrypted once at mount:
vault/tree/loading.py), so lookups, getattr and readdir never touch the disk.
Each metadata change is committed as documents (one store transaction,
undone in memory if the commit fails: vault/tree/tx.py), at once or, for
the kernel's requests, grouped with others (``group``: vault/tree/inodes.py).
The Tree is built in layers, each a module with one job: the inode table
(inodes.py), who may do what (access.py), attributes (attributes.py), and
names (here).  File contents are not kept here: vault/files/ holds them.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

from fusevault.crypto import aead
from fusevault.crypto.identity import seal_file_key
from fusevault.encoding import b64e, name_to_str
from fusevault.errors import (
    BadHandle,
    CrossOwner,
    Exists,
    InvalidArgument,
    IsADirectory,
    NameTooLong,
    NotADirectory,
    NotEmpty,
    NotFound,
    NotSupported,
    PermissionDenied,
)
from fusevault.vault.model.nodes import ROOT_INODE, Node, detached_node, new_id, now_ns
from fusevault.vault.model.sharing import Grant
from fusevault.vault.tree.access import NAME_MAX
from fusevault.vault.tree.attributes import XATTR_PREFIX, Attributes
from fusevault.vault.tree.tx import Tx


@dataclass
class Caller:
    uid: int
    gid: int


class Tree(Attributes):
    def __init__(self, *args, **kwargs) -> None:  # as Inodes
        super().__init__(*args, **kwargs)
        self.dir_handles: dict[int, tuple[Node, list[tuple[bytes, int]]]] = {}

    # --- lookups

    def lookup(self, parent_ino: int, name: bytes) -> Node:
        parent = self.directory(parent_ino)
        if name == b".":
            node = parent
        elif name == b"..":
            node = self.node(parent.links[0][0]) if parent.links else parent
        else:
            if len(name) > NAME_MAX:
                raise NameTooLong("file name too long")
            ino = parent.children.get(name)
            if ino is None or self._unshown(ino):
                raise NotFound("no such file")
            node = self._nodes[ino]
        self.remember(node)
        return node

    def _unshown(self, ino: int) -> bool:
        """A file being made whose bytes are not all written yet (``unshown``)."""
        return bool(self.unshown) and (node := self._nodes.get(ino)) is not None and node.fid in self.unshown

    def resolve(self, path: bytes) -> Node:
        """The node at a path relative to the root (no lookup count is taken)."""
        node = self.root
        for part in path.split(b"/"):
            if part in (b"", b"."):
                continue
            node = self._nodes[self.child(self.directory(node.ino), part)]
        return node

    def readlink(self, ino: int) -> bytes:
        node = self.node(ino)
        if node.target is None:
            raise InvalidArgument("not a symbolic link")
        return node.target

    # --- creating nodes

    def _make_node(self, tx: Tx, parent: Node, name: bytes, mode: int, caller: Caller,
                   rdev: int = 0, ident: tuple[str, bytes] | None = None) -> Node:
        self.check_name(name)
        self.check(parent, write=True)
        if name in parent.children:
            raise Exists("file exists")
        gid = caller.gid
        if parent.mode & stat.S_ISGID:
            gid = parent.gid
            if stat.S_ISDIR(mode):
                mode |= stat.S_ISGID
        fid, dek = ident or (new_id(), aead.new_key())
        # In a folder someone shared with this user, the file is the folder
        # owner's: sealed to their public key, since only they wrap it.
        owner = parent.owner
        if not owner or not parent.dek:
            raise PermissionDenied("nothing can be made here")
        node = Node(self.new_ino(), fid, owner, dek, mode, caller.uid, gid, rdev)
        if owner != self.key.user_id:
            public = self.sharing.public(owner) if self.sharing else None
            if public is None:
                raise PermissionDenied("the folder's owner has no key pair to receive this file")
            node.wrapped = {"owner_dek": b64e(seal_file_key(public, owner, owner, fid, 0, dek))}
        self._nodes[node.ino] = node
        self._by_fid[fid] = node.ino
        tx.created.append(node)
        tx.attach(parent, name, node)
        self._touch_dir(parent, node.ctime)
        return node

    def _touch_dir(self, parent: Node, when: int) -> None:
        parent.mtime = parent.ctime = when
        self.lazy.add(parent.ino)

    async def mknod(self, parent_ino: int, name: bytes, mode: int, rdev: int, caller: Caller,
                    target: bytes | None = None, ident: tuple[str, bytes] | None = None,
                    defer: bool = False, group: bool = False) -> Node:
        """A new node, committed now; with ``defer`` (a file created open,
        vault/volume.py) with its first commit instead (``unsaved``); with
        ``group`` with the next commit or the window's (group commit: inodes.py)."""
        async with self.meta_lock:
            tx = Tx()
            node = self._make_node(tx, self.directory(parent_ino), name, mode, caller, rdev, ident)
            if target is not None:
                node.target = target
                node.size = len(target)
            await self._share_new(node)
            if defer and self.defer_creates:
                self.unsaved.add(node.ino)
            else:
                await self.save(tx, group)
        self.remember(node)
        return node

    async def _share_new(self, node: Node) -> None:
        """Seal a new node's key for everyone a folder above it is shared with
        (before its document: a crash leaves an unused key, never a file a
        recipient cannot open)."""
        if self.sharing is None or not self.sharing.by_fid:
            return
        grants = self.covering(node)
        if grants:
            await self.in_thread(self.sharing.seal_keys, self.layout, node, grants, (node.dek, node.epoch))

    # --- removing, renaming, linking

    async def unlink(self, parent_ino: int, name: bytes, group: bool = False) -> None:
        async with self.meta_lock:
            parent = self.check(self.directory(parent_ino), write=True)
            node = self.check(self._nodes[self.child(parent, name)], write=True)
            if node.is_dir:
                raise IsADirectory("is a directory")
            tx = Tx()
            now = now_ns()
            before = self.covering(node) if len(node.links) > 1 else []
            self._detach(tx, parent, name, node, now)
            node.ctime = now
            self._touch_dir(parent, now)
            await self.save(tx, group)
            self.note_moved(node, before)  # one of a hard link's names gone from a shared folder
        self.purge_if_unused(node)

    def _detach(self, tx: Tx, parent: Node, name: bytes, node: Node, now: int) -> None:
        """Remove a link; the last link of a file sends it to the trash, noting where it was."""
        if len(node.links) == 1 and not node.is_dir:
            node.trashed = (self.path_of(node), now)
        tx.detach(parent, name, node)

    async def relink(self, node: Node, parent_ino: int, name: bytes) -> None:
        """Give a file back a name (out of the trash)."""
        async with self.meta_lock:
            self.owned(node)
            parent = self.check(self.directory(parent_ino), write=True)
            self.check_name(name)
            if parent.owner != node.owner:
                # A file is named only in its own owner's folders (authorship.py ``may_name``):
                # every other device refuses such a name (attack round 71a (3)).
                raise CrossOwner("a file goes back only into a folder of its owner")
            if name in parent.children:
                raise Exists(f"{name_to_str(name)} exists")
            tx = Tx()
            tx.attach(parent, name, node)
            now = now_ns()
            node.trashed = None
            node.ctime = now
            self._touch_dir(parent, now)
            try:
                await self.commit(tx)
            finally:
                self.purge_if_unused(node)

    def adopt(self, doc: dict) -> Node:
        """A node from the trash, by its document (the one in memory if it is still open)."""
        if doc.get("owner") != self.key.user_id:
            raise PermissionDenied("only its owner brings a file back from the trash")
        found = self.find(doc["_id"])
        if found is not None and self.sharing is not None and found.ino in self.sharing.phantoms:
            # A folder a shared node named at her file's id (any user names any id he replicates):
            # its owner was never known, her own trash entry says the id is hers; it gives way
            # (attack round 70a (3): the relink refused the phantom, her restore failed at every unlock).
            self.phantom_gives_way(found)
            found = None
        if found is not None:
            return found
        return self.add(detached_node(doc, self.key, self.new_ino()))

    async def rmdir(self, parent_ino: int, name: bytes, group: bool = False) -> None:
        async with self.meta_lock:
            parent = self.check(self.directory(parent_ino), write=True)
            node = self.check(self._nodes[self.child(parent, name)], write=True)
            if not node.is_dir:
                raise NotADirectory("not a directory")
            if node.children:
                raise NotEmpty("directory not empty")
            tx = Tx()
            tx.detach(parent, name, node)
            now = now_ns()
            node.ctime = now
            self._touch_dir(parent, now)
            await self.save(tx, group)
        self.purge_if_unused(node)

    async def rename(self, old_ino: int, old_name: bytes, new_ino: int, new_name: bytes,
                     noreplace: bool, exchange: bool, group: bool = False,
                     over: Callable[[Node | None], bool] | None = None) -> None:
        """``over``: the rename goes only if it accepts what is at the new name (None: nothing), judged
        here under the lock with no await before the change (a compare-and-place: placing.py
        ``write_file``); Exists else."""
        async with self.meta_lock:
            old_parent = self.check(self.directory(old_ino), write=True)
            new_parent = self.check(self.directory(new_ino), write=True)
            self.check_name(new_name)
            node = self.check(self._nodes[self.child(old_parent, old_name)], write=True)
            target = self.get(new_parent.children.get(new_name))
            if target is not None:
                self.check(target, write=True)
            if noreplace and target is not None:
                raise Exists("file exists")
            if over is not None and not over(target):
                raise Exists("another file is there now than the one judged")
            if exchange and target is None:
                raise NotFound("no such file")
            if node.is_dir and self.is_ancestor(node, new_parent):
                raise InvalidArgument("cannot move a directory into itself")
            if node.owner != new_parent.owner or (target is not None and target.owner != node.owner):
                raise CrossOwner("a move between your files and a shared folder copies")
            if target is node:
                return
            if old_parent is not new_parent:
                self._may_add_name(node, new_parent, (old_parent.ino, old_name))
                if exchange:
                    self._may_add_name(target, old_parent, (new_parent.ino, new_name))
            now = now_ns()
            tx = Tx()
            # Out of a shared folder, a file's shares are fewer (``note_moved``); a name changed in
            # its folder (an editor's save: write, then rename over) keeps them: not looked at.
            moving = [] if old_parent is new_parent else [(node, self.covering(node))]
            if exchange:
                moving += [(target, self.covering(target))] if old_parent is not new_parent else []
                if target.is_dir and self.is_ancestor(target, old_parent):
                    raise InvalidArgument("cannot move a directory into itself")
                tx.detach(old_parent, old_name, node)
                tx.detach(new_parent, new_name, target)
                tx.attach(old_parent, old_name, target)
                target.ctime = now
            elif target is not None:
                if node.is_dir and not target.is_dir:
                    raise NotADirectory("not a directory")
                if not node.is_dir and target.is_dir:
                    raise IsADirectory("is a directory")
                if target.is_dir and target.children:
                    raise NotEmpty("directory not empty")
                self._detach(tx, new_parent, new_name, target, now)
                if node.is_reg and target.is_reg and not target.links and node.previous is None:
                    # Saved by writing a new file and renaming it over the old
                    # one (editors, rsync): the old file's versions become this
                    # one's history instead of a trash entry.
                    tx.touch(node)
                    # The old file's document names its replacement: a writer's
                    # ``previous`` alone grafts no file into another's history.
                    node.previous, target.trashed, target.replaced_by = target.fid, None, node.fid
                target.ctime = now
            if not exchange:
                tx.detach(old_parent, old_name, node)
            tx.attach(new_parent, new_name, node)
            node.ctime = now
            self._touch_dir(old_parent, now)
            self._touch_dir(new_parent, now)
            await self.save(tx, group)
            for each, before in moving:
                self.note_moved(each, before)  # out of a shared folder: its keys taken back
        if target is not None and not exchange:
            self.purge_if_unused(target)

    async def link(self, ino: int, new_parent_ino: int, new_name: bytes, group: bool = False) -> Node:
        async with self.meta_lock:
            node = self.check(self.node(ino), write=True)
            parent = self.check(self.directory(new_parent_ino), write=True)
            self.check_name(new_name)
            if node.is_dir:
                raise NotSupported("hard links to directories are not allowed")
            if node.owner != parent.owner:
                raise CrossOwner("a hard link between your files and a shared folder")
            if new_name in parent.children:
                raise Exists("file exists")
            self._may_add_name(node, parent)
            tx = Tx()
            tx.attach(parent, new_name, node)
            now = now_ns()
            node.ctime = now
            self._touch_dir(parent, now)
            await self.save(tx, group)
        self.remember(node)
        return node

    def _may_add_name(self, node: Node, into: Node, leaving: tuple[int, bytes] | None = None) -> None:
        """A new name of another user's file in ``into`` by a writer (a ``link``; a move, leaving
        ``leaving``, that keeps another name of it, or of a file under the folder it moves): only if
        it gives the file to nobody its names do not already give it to (a user or a group, with as
        much: ``Inodes.widening``).  A file with several names is sealed to the shares above every
        one of them (round 31a): a name a member added in another share of the owner's gave that
        share's users the file and all its later versions, and kept them to him after his removal
        from the first (attack round 45t (1)).  Who reads her file is the owner's choice: hers, any
        name goes."""
        if node.owner == self.key.user_id:
            return
        found = self.widening(node, into, {leaving} if leaving is not None else ())
        if found is None:
            return
        each, added = found
        what = "the file" if each is node else f"the file {name_to_str(each.links[0][1])} under it"
        if added is None:
            raise PermissionDenied(f"a name there could give {what} to others than its shares do: "
                                   "only its owner may add it")
        who = ", ".join(sorted({self._grantee_label(g) for g in added}))
        raise PermissionDenied(f"a name there would give {what} to more than its shares do ({who}): "
                               "only its owner may add it")

    def _grantee_label(self, grant: Grant) -> str:
        """A share's grantee as the user reads it: a user's name, or a group's with ``@``."""
        known: dict[str, dict] = {}
        if self.sharing is not None:
            known = self.sharing.groups if grant.group else self.sharing.users
        name = known.get(grant.grantee, {}).get("groupname" if grant.group else "username")
        return ("@" if grant.group else "") + (name if isinstance(name, str) else grant.grantee)

    def statfs(self) -> os.statvfs_result:
        return os.statvfs(self.layout.root)

    # --- directories

    def opendir(self, ino: int) -> int:
        node = self.directory(ino)
        parent_ino = node.links[0][0] if node.links else node.ino
        # A snapshot taken at opendir gives stable positions however the
        # directory changes while it is listed (entries gone since are skipped).
        entries = [(b".", node.ino), (b"..", parent_ino), *node.children.items()]
        fh = self.new_fh()
        self.dir_handles[fh] = (node, entries)
        return fh

    def readdir_entry(self, fh: int, index: int) -> tuple[int, bytes, Node] | None:
        """The first live entry at or after ``index``: (its index, name, node), or None."""
        try:
            node, entries = self.dir_handles[fh]
        except KeyError:
            raise BadHandle("bad directory handle") from None
        while index < len(entries):
            name, ino = entries[index]
            if name in (b".", b"..") or (node.children.get(name) == ino and not self._unshown(ino)):
                child = self._nodes.get(ino)
                if child is not None:
                    return index, name, child
            index += 1
        return None

    def releasedir(self, fh: int) -> None:
        self.dir_handles.pop(fh, None)

    def wipe(self) -> None:
        self.dir_handles.clear()
        super().wipe()


__all__ = ["ROOT_INODE", "Caller", "Tree", "XATTR_PREFIX"]
