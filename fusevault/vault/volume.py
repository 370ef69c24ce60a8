"""The mounted file tree of one user: the one API behind the FUSE operations.

A facade over two halves side by side: the Tree (vault/tree/: names, links,
attributes and who may do what, all in memory and committed as documents)
and the Files (vault/files/: the contents of open files and their versions).
The FUSE layer, the agent, sync, imports, links and vault/services call
this, so they need not know which half does what; it holds no state of its
own beyond the two.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Container
from contextlib import AbstractAsyncContextManager
from typing import Any

import trio

from fusevault.crypto.keys import MasterKey
from fusevault.errors import IsADirectory
from fusevault.store import Store
from fusevault.vault.files import rekeying
from fusevault.vault.files.open_files import Files
from fusevault.vault.format.layout import Layout
from fusevault.vault.model.ledger import Ledger
from fusevault.vault.model.nodes import ROOT_INODE, Node, now_ns
from fusevault.vault.model.sharing import Grant
from fusevault.vault.model.trust import Trust
from fusevault.vault.tree import arrivals, loading
from fusevault.vault.tree.access import NAME_MAX
from fusevault.vault.tree.authorship import Authorship
from fusevault.vault.tree.guests import Guests
from fusevault.vault.tree.namespace import XATTR_PREFIX, Caller, Tree

log = logging.getLogger(__name__)

__all__ = ["NAME_MAX", "ROOT_INODE", "XATTR_PREFIX", "Caller", "Volume"]


class Volume:
    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.files = Files(tree)
        tree.on_purge = self.files.forget_node
        tree.on_key_gone = self.files.cache.drop_file

    @classmethod
    def load(cls, layout: Layout, store: Store, key: MasterKey, root_fid: str,
             inodes: dict[str, int] | None = None) -> Volume:
        """Load and decrypt a user's tree (vault/tree/loading.py).  ``inodes``
        (fid -> inode) keeps the numbers of an earlier load, which the kernel
        may still hold (unlock after a lock)."""
        return cls(loading.load_tree(layout, store, key, root_fid, inodes))

    # --- what the tree holds (read; set only ``device``)

    @property
    def layout(self) -> Layout:
        return self.tree.layout

    @property
    def store(self) -> Store:
        return self.tree.store

    @property
    def key(self) -> MasterKey:
        return self.tree.key

    @property
    def sharing(self) -> Guests | None:
        return self.tree.sharing

    @property
    def trust(self) -> Trust | None:
        return self.tree.trust

    @property
    def authorship(self) -> Authorship | None:
        return self.tree.authorship

    @property
    def ledger(self) -> Ledger | None:
        return self.tree.ledger

    @property
    def device(self) -> str | None:
        return self.tree.device

    @device.setter
    def device(self, name: str | None) -> None:
        self.tree.device = name

    @property
    def retiring(self) -> set[str]:
        return self.tree.retiring

    @property
    def rotating(self) -> set[str]:
        return self.tree.rotating

    @property
    def meta_lock(self) -> trio.Lock:
        return self.tree.meta_lock

    @property
    def handles(self) -> dict[int, Node]:
        return self.files.handles

    @property
    def root(self) -> Node:
        return self.tree.root

    # --- asking for nodes

    def node(self, ino: int) -> Node:
        return self.tree.node(ino)

    def get(self, ino: int | None) -> Node | None:
        return self.tree.get(ino)

    def find(self, fid: str | None) -> Node | None:
        return self.tree.find(fid)

    def ino_of(self, fid: str | None) -> int | None:
        return self.tree.ino_of(fid)

    def holds(self, fid: str | None) -> bool:
        return self.tree.holds(fid)

    def nodes(self) -> list[Node]:
        return self.tree.nodes()

    def inode_numbers(self) -> dict[str, int]:
        return self.tree.inode_numbers()

    def fid_of(self, ino: int) -> str:
        return self.tree.fid_of(ino)

    def path_of(self, node: Node) -> bytes:
        return self.tree.path_of(node)

    def resolve(self, path: bytes) -> Node:
        return self.tree.resolve(path)

    def lookup(self, parent_ino: int, name: bytes) -> Node:
        return self.tree.lookup(parent_ino, name)

    def remember(self, node: Node) -> None:
        self.tree.remember(node)

    def forget(self, ino: int, count: int) -> None:
        self.tree.forget(ino, count)

    def readlink(self, ino: int) -> bytes:
        return self.tree.readlink(ino)

    def covering(self, node: Node) -> list[Grant]:
        return self.tree.covering(node)

    def acl(self, node: Node) -> list[str] | None:
        return self.tree.acl(node)

    def widening(self, node: Node, into: Node,
                 leaving: Container[tuple[int, bytes]] = ()) -> tuple[Node, list[Grant] | None] | None:
        return self.tree.widening(node, into, leaving)

    # --- who may do what (vault/tree/access.py)

    def may(self, node: Node, write: bool = False) -> bool:
        return self.tree.may(node, write)

    def may_write(self, node: Node) -> bool:
        return self.tree.may_write(node)

    def writable(self, node: Node) -> bool:
        return self.tree.writable(node)

    def check(self, node: Node, write: bool = False) -> Node:
        return self.tree.check(node, write)

    def require(self, ino: int, write: bool = False) -> Node:
        return self.tree.require(ino, write)

    # --- names, links and attributes (vault/tree/namespace.py)

    # ``group`` (the FUSE requests): committed with the next commit, at fsync
    # or fsyncdir, or at the end of a short window (group commit,
    # vault/tree/inodes.py); a window's commit that failed is raised first.

    async def mknod(self, parent_ino: int, name: bytes, mode: int, rdev: int, caller: Caller,
                    target: bytes | None = None, ident: tuple[str, bytes] | None = None,
                    group: bool = False) -> Node:
        self._grouping(group)
        return await self.tree.mknod(parent_ino, name, mode, rdev, caller, target, ident, group=group)

    async def mkdir(self, parent_ino: int, name: bytes, mode: int, caller: Caller,
                    group: bool = False) -> Node:
        self._grouping(group)
        return await self.tree.mknod(parent_ino, name, stat.S_IFDIR | (mode & 0o7777), 0, caller, group=group)

    async def symlink(self, parent_ino: int, name: bytes, target: bytes, caller: Caller,
                      group: bool = False) -> Node:
        self._grouping(group)
        return await self.tree.mknod(parent_ino, name, stat.S_IFLNK | 0o777, 0, caller, target=target,
                                     group=group)

    async def unlink(self, parent_ino: int, name: bytes, group: bool = False) -> None:
        self._grouping(group)
        await self.tree.unlink(parent_ino, name, group)

    async def rmdir(self, parent_ino: int, name: bytes, group: bool = False) -> None:
        self._grouping(group)
        await self.tree.rmdir(parent_ino, name, group)

    async def rename(self, old_ino: int, old_name: bytes, new_ino: int, new_name: bytes,
                     noreplace: bool, exchange: bool, group: bool = False,
                     over: Callable[[Node | None], bool] | None = None) -> None:
        self._grouping(group)
        await self.tree.rename(old_ino, old_name, new_ino, new_name, noreplace, exchange, group, over)

    async def link(self, ino: int, new_parent_ino: int, new_name: bytes, group: bool = False) -> Node:
        self._grouping(group)
        return await self.tree.link(ino, new_parent_ino, new_name, group)

    def _grouping(self, group: bool) -> None:
        if group:
            self.tree.check_pending()

    async def relink(self, node: Node, parent_ino: int, name: bytes) -> None:
        await self.tree.relink(node, parent_ino, name)

    def adopt(self, doc: dict) -> Node:
        return self.tree.adopt(doc)

    async def setattr(self, ino: int, *, mode: int | None = None, uid: int | None = None,
                      gid: int | None = None, size: int | None = None,
                      atime: int | None = None, mtime: int | None = None,
                      ctime: int | None = None, group: bool = False) -> Node:
        self._grouping(group)
        node = self.tree.require(ino, write=True)
        now = now_ns()
        if size is not None:
            if node.is_dir:
                raise IsADirectory("is a directory")
            await self.files.truncate(node, size, now)
        return await self.tree.set_attrs(node, now, mode=mode, uid=uid, gid=gid, atime=atime,
                                         mtime=mtime, ctime=ctime, group=group)

    async def save_node(self, node: Node) -> None:
        await self.tree.save_node(node)

    async def setxattr(self, ino: int, name: bytes, value: bytes) -> None:
        await self.tree.setxattr(ino, name, value)

    def getxattr(self, ino: int, name: bytes) -> bytes:
        return self.tree.getxattr(ino, name)

    def listxattr(self, ino: int) -> list[bytes]:
        return self.tree.listxattr(ino)

    async def removexattr(self, ino: int, name: bytes) -> None:
        await self.tree.removexattr(ino, name)

    def statfs(self) -> os.statvfs_result:
        return self.tree.statfs()

    def opendir(self, ino: int) -> int:
        return self.tree.opendir(ino)

    def readdir_entry(self, fh: int, index: int) -> tuple[int, bytes, Node] | None:
        return self.tree.readdir_entry(fh, index)

    def releasedir(self, fh: int) -> None:
        self.tree.releasedir(fh)

    def new_fh(self) -> int:
        return self.tree.new_fh()

    # --- file contents (vault/files/)

    @staticmethod
    def content_lock(node: Node) -> trio.Lock:
        return Files.content_lock(node)

    async def create(self, parent_ino: int, name: bytes, mode: int, caller: Caller,
                     ident: tuple[str, bytes] | None = None, defer: bool = False) -> tuple[int, Node]:
        """A new file, open; ``ident``: a given id and DEK (a conflict copy's are the
        same on every device that makes it).  ``defer`` (create(2)): its document
        is committed with its first version, at close, flush or fsync (group commit)."""
        node = await self.tree.mknod(parent_ino, name, stat.S_IFREG | (mode & 0o7777), 0, caller,
                                     ident=ident, defer=defer)
        return self.files.open(node.ino, write=True), node

    async def open(self, ino: int, write: bool = False) -> int:
        """A handle on the file, its contents opened first in a worker thread."""
        node = self.tree.require(ino, write)
        if node.is_reg:
            await self.files.load_content(node)
        return self.files.open(ino, write)

    async def read(self, fh: int, offset: int, size: int) -> bytes:
        return await self.files.read(fh, offset, size)

    async def data_ranges(self, fh: int, size: int) -> list[tuple[int, int]]:
        """Where the open file holds data below ``size`` (the rest are holes)."""
        return await self.files.data_ranges(fh, size)

    async def write(self, fh: int, offset: int, data: bytes, *, times: bool = True) -> int:
        return await self.files.write(fh, offset, data, times=times)

    async def fallocate(self, fh: int, mode: int, offset: int, length: int) -> None:
        await self.files.fallocate(fh, mode, offset, length)

    async def flush(self, fh: int) -> None:
        await self.files.flush(fh)

    async def fsync(self, fh: int) -> None:
        await self.files.fsync(fh)

    async def release(self, fh: int) -> None:
        await self.files.release(fh)

    def abandon(self, fh: int) -> None:
        """Close a new file never committed and take it back (vault/files/open_files.py)."""
        self.files.abandon(fh)

    async def commit_content(self, node: Node, durable: bool = False) -> None:
        await self.files.commit_content(node, durable)

    async def restore_contents(self, node: Node, place: tuple[int, int], vid: str) -> None:
        await self.files.restore_contents(node, place, vid)

    async def rekey(self, node: Node) -> None:
        """Give the node a new DEK (a new epoch) and seal its current contents
        under it (vault/files/rekeying.py); old versions keep theirs."""
        await rekeying.rekey(self.files, node, lambda n: arrivals.reopen(self.tree, n))

    def switch_content(self, node: Node) -> None:
        self.files.switch_content(node)

    # --- the store and worker threads

    async def store_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.tree.store_call(fn, *args)

    async def read_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.tree.read_call(fn, *args)

    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.tree.in_thread(fn, *args)

    # --- saving, locking, unmounting

    async def keep_flushed(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Commit grouped metadata changes at the end of their window (a session service)."""
        await self.tree.keep_flushed(task_status=task_status)

    async def flush_pending(self) -> None:
        """Commit grouped metadata changes now (before reading what the store holds)."""
        await self.tree.flush_pending()

    def settled(self) -> AbstractAsyncContextManager[None]:
        """Grouped metadata changes committed, and the metadata lock held, while
        sync's pull stores a peer's documents and takes them in (Inodes.settled)."""
        return self.tree.settled()

    async def commit_pending(self) -> None:
        """Grouped metadata changes committed now, for a reader of the store
        that must see them; a failure is raised and kept for the next request."""
        await self.tree.commit_pending()

    async def fsyncdir(self) -> None:
        await self.tree.flush_pending()
        await self.tree.commit_lazy()
        await self.tree.in_thread(self.tree.store.sync)

    async def save_all(self) -> int:
        """Commit whatever is still pending and make it durable (unmount, lock).

        Returns how many files could not be saved (each is logged); their
        contents stay in memory, so a lock that fails loses nothing."""
        self.tree.came_unsettled()  # what waits in memory only ends here unsettled: said (80a (2))
        failures = await self.files.save_changed()
        failures += await self.tree.commit_lazy()
        await self.files.flush_all_closed()  # records first: the log that names them is flushed next
        await self.tree.in_thread(self.tree.store.sync)
        if self.tree.ledger is not None:
            await self.tree.ledger.save_async()
        if self.tree.trust is not None and self.tree.trust.verified is not None:  # speed only: never fails
            await self.tree.in_thread(self.tree.trust.verified.save)
        if failures:
            log.error("%d file(s) could not be saved", failures)
        return failures

    def wipe(self) -> None:
        """Forget every key and name (after ``save_all``): the user locked."""
        self.files.wipe()
        self.tree.wipe()

    async def close(self) -> int:
        """Commit whatever is still pending (unmount) and close the store;
        how many things could not be saved (each is logged)."""
        try:
            failures = await self.save_all()
        except Exception:  # the store itself failed: nothing more can be saved
            log.exception("saving at unmount failed")
            failures = 1
        self.files.close_contents()
        self.tree.store.close()
        return failures
