"""A node's attributes and extended attributes, and the times saved lazily.

Each change is one commit of the node's document (vault/tree/inodes.py);
a size change is the files' job (vault/files/), which vault/volume.py does
before the rest of a setattr.
"""

from __future__ import annotations

import logging
import stat
from collections.abc import Mapping

from fusevault.errors import NoAttribute, NoSpace, NotSupported, VaultError
from fusevault.vault.model.nodes import Node, note_change, now_ns, xattr_bytes
from fusevault.vault.tree.access import Access
from fusevault.vault.tree.tx import Tx

log = logging.getLogger(__name__)

XATTR_PREFIX = b"user."
# What a node's extended attributes may hold in all, names and values (``xattr_bytes``), and how many
# there may be: each setxattr seals, signs and commits the whole node document again under the tree's
# one metadata lock, so without a bound another local user's own file with a hundred 60 KB values made
# each of his calls cost all he had set, and every user's requests waited behind it (attack round
# 49t (6)).  64 KiB is the kernel's bound on one value (XATTR_SIZE_MAX), here on all of a file's (ext4
# holds them in one block, 4 KiB most often); past it, ENOSPC, as ext4 answers.  The count bounds the
# entries of a document of many empty values.
XATTR_BYTES_MAX = 64 * 1024
XATTR_COUNT_MAX = 1024


class Attributes(Access):
    async def set_attrs(self, node: Node, now: int, *, mode: int | None = None, uid: int | None = None,
                        gid: int | None = None, atime: int | None = None, mtime: int | None = None,
                        ctime: int | None = None, group: bool = False) -> Node:
        """``group``: a request from the kernel, committed with the next
        commit or at the end of a short window (group commit: inodes.py);
        not for a file holding unsaved writes, whose mode a crash must not lose."""
        if (mode, uid, gid, atime, mtime, ctime) == (None,) * 6:
            return node
        pending = node.content is not None and node.content.changed
        if node.ino in self.unsaved and node.opens > 0:
            # A new file still open and not yet committed (create(2), then
            # fchmod or futimens before close): the change rides with the
            # file's first commit at close, flush or fsync.
            self._set(node, now, mode, uid, gid, atime, mtime, ctime)
            return node
        if (mode, uid, gid) == (None,) * 3 and (pending or self.is_deleted(node)):
            # The kernel writing back times it cached: at close(), the version
            # commit that follows saves them with the new contents; for a
            # removed file (rm -rf), there is nothing left to save them in.
            node.atime = atime if atime is not None else node.atime
            node.mtime = mtime if mtime is not None else node.mtime
            node.ctime = ctime if ctime is not None else now
            return node
        async with self.meta_lock:
            tx = Tx()
            tx.touch(node)
            self._set(node, now, mode, uid, gid, atime, mtime, ctime)
            await self.save(tx, group and not pending)
        return node

    @staticmethod
    def _set(node: Node, now: int, mode: int | None, uid: int | None, gid: int | None,
             atime: int | None, mtime: int | None, ctime: int | None) -> None:
        # Stamped only when it changes: a chmod to the mode it has must not outweigh her other
        # device's real change of it when the two are settled (vault/services/conflicts.py).
        if mode is not None and stat.S_IMODE(node.mode) != mode & 0o7777:
            node.mode = stat.S_IFMT(node.mode) | (mode & 0o7777)
            note_change(node, "mode")
        if (uid is not None and uid != node.uid) or (gid is not None and gid != node.gid):
            node.uid = node.uid if uid is None else uid
            node.gid = node.gid if gid is None else gid
            note_change(node, "owner")
        if atime is not None:
            node.atime = atime
        if mtime is not None:
            node.mtime = mtime
        node.ctime = ctime if ctime is not None else now

    async def save_node(self, node: Node) -> None:
        """Commit a node as it is in memory (a settled conflict: vault/services/conflicts.py)."""
        self.check(node, write=True)
        async with self.meta_lock:
            tx = Tx()
            tx.touch(node)
            await self.commit(tx)

    # --- xattrs (user.* only; values are sealed with the node document)

    async def setxattr(self, ino: int, name: bytes, value: bytes) -> None:
        if not _settable(name):
            raise NotSupported("only user.* extended attributes are supported")
        async with self.meta_lock:
            node = self.require(ino, write=True)
            _check_room(node.xattrs, name, value)
            tx = Tx()
            tx.touch(node)
            node.xattrs = {**node.xattrs, name: bytes(value)}
            node.ctime = now_ns()
            note_change(node, "xattrs")
            await self.commit(tx)

    # Served as set: user.* only.  A node document (a writer signs it) may hold any name;
    # security.capability, trusted.* or system.* from it would be the kernel's to act on.

    def getxattr(self, ino: int, name: bytes) -> bytes:
        try:
            if _settable(name):
                return self.node(ino).xattrs[name]
        except KeyError:
            pass
        raise NoAttribute("no such attribute")

    def listxattr(self, ino: int) -> list[bytes]:
        return [name for name in self.node(ino).xattrs if _settable(name)]

    async def removexattr(self, ino: int, name: bytes) -> None:
        async with self.meta_lock:
            node = self.require(ino, write=True)
            if not _settable(name) or name not in node.xattrs:
                raise NoAttribute("no such attribute")
            tx = Tx()
            tx.touch(node)
            node.xattrs = {k: v for k, v in node.xattrs.items() if k != name}
            node.ctime = now_ns()
            note_change(node, "xattrs")
            await self.commit(tx)

    async def commit_lazy(self) -> int:
        """Commit the lazily saved nodes and the new files still waiting for
        their first commit (``unsaved``); how many of the latter could not be
        saved (each logged)."""
        # Access times and directory times are saved lazily (with the node's
        # next commit, at fsyncdir, or at unmount): reading a file or creating
        # one must not cost a second write.  Best effort: a full disk must not
        # stop an unmount.
        nodes = [self._nodes[ino] for ino in self.lazy | self.unsaved if ino in self._nodes]
        # A folder of someone else's whose share ended meanwhile: its key is
        # gone from this tree, so its times are not ours to seal any more.
        self.lazy.difference_update(node.ino for node in nodes if not node.dek)
        nodes = [node for node in nodes if node.dek or node.ino in self.unsaved]
        if not nodes and not self.pending:
            return 0
        async with self.meta_lock:
            tx = Tx()
            for node in nodes:
                tx.touch(node)
            try:
                await self.commit(tx)
            except VaultError as err:
                new = [n for n in nodes if n.ino in self.unsaved]
                for node in new:
                    log.error("a new file (%s) could not be saved: %s", node.fid, err)
                changed = [node for ino, node in self.pending.items() if ino not in self.unsaved]
                for node in changed:
                    log.error("a change of %s could not be saved: %s", node.fid, err)
                log.warning("access and directory times not saved: %s", err)
                return len(new) + len(changed)
        self.pending_error = None  # what a window could not commit is saved now
        return 0


def over_cap(xattrs: Mapping[bytes, bytes]) -> bool:
    """Whether ``xattrs`` hold more than a node's extended attributes may (XATTR_BYTES_MAX in all,
    XATTR_COUNT_MAX names)."""
    return len(xattrs) > XATTR_COUNT_MAX or xattr_bytes(xattrs) > XATTR_BYTES_MAX


def holds_no_more(xattrs: Mapping[bytes, bytes], held: Mapping[bytes, bytes]) -> bool:
    """Whether ``xattrs`` hold no more than ``held`` do, in bytes and in names (a node over the cap
    from before it may keep what it holds, or less: ``_check_room``, vault/tree/arrivals.py)."""
    return len(xattrs) <= len(held) and xattr_bytes(xattrs) <= xattr_bytes(held)


def _check_room(xattrs: Mapping[bytes, bytes], name: bytes, value: bytes) -> None:
    """Refuse (NoSpace: ENOSPC) a set of ``name`` to ``value`` that leaves ``xattrs`` over their cap
    (XATTR_BYTES_MAX, XATTR_COUNT_MAX).  A node over it already (a vault from before the cap, her other
    device's document from a version before it) keeps what it holds, and takes a set that makes it
    hold no more."""
    had, count = xattr_bytes(xattrs), len(xattrs)
    old = xattrs.get(name)
    size = had + len(name) + len(value) - (0 if old is None else len(name) + len(old))
    after = count + (old is None)
    if (size > XATTR_BYTES_MAX or after > XATTR_COUNT_MAX) and (size > had or after > count):
        raise NoSpace(f"a file's extended attributes may hold at most {XATTR_BYTES_MAX // 1024} KiB "
                      f"and {XATTR_COUNT_MAX} names in all")


def _settable(name: bytes) -> bool:
    """An extended attribute's name the mount serves: user.* (and not the bare prefix)."""
    return name.startswith(XATTR_PREFIX) and name != XATTR_PREFIX
