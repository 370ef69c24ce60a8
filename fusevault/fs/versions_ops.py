"""The ``.versions`` tree's requests, routed here in one place.

The read-only ``.versions`` tree (vault/services/versions_view.py) lives beside
the Volume.  ``by_inode`` and ``by_handle`` route each request of
fs/operations.py that is about one of its inodes or handles to the method of
the same name of ``VersionsOps``, or refuse it (``READ_ONLY``): the table is
this class, not a branch in every handler.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pyfuse3
from pyfuse3 import FileHandleT, InodeT, ReaddirToken, RequestContext

from fusevault import errors
from fusevault.agent.gate import Gate
from fusevault.fs.numbers import BITS, Handle
from fusevault.vault.model.nodes import Node
from fusevault.vault.services.versions_view import Reader

if TYPE_CHECKING:
    from fusevault.vault.services.versions_view import VersionsView
    from fusevault.vault.volume import Volume

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])
Entry = Callable[[Node], pyfuse3.EntryAttributes]

# What may not happen in the .versions tree, by handler name.
READ_ONLY = frozenset({"setattr", "mknod", "mkdir", "symlink", "unlink", "rmdir", "create",
                       "setxattr", "removexattr", "fallocate"})


def _read_only() -> errors.VaultReadOnly:
    return errors.VaultReadOnly("the .versions tree is read-only")


def by_inode(handler: Handler) -> Handler:
    """A request whose first argument is an inode: the view's go to ``VersionsOps``."""
    name = handler.__name__

    @functools.wraps(handler)
    async def route(self: Any, inode: InodeT, *args: Any) -> Any:
        if not BITS.in_view(inode):
            return await handler(self, inode, *args)
        if name in READ_ONLY:
            self.gate.view()  # locked: EACCES, as for any request
            raise _read_only()
        return await getattr(self.versions, name)(inode, *args)

    return cast(Handler, route)


def by_handle(table: str) -> Callable[[Handler], Handler]:
    """A request on a handle: the view's (``table`` names its dict of them) go to ``VersionsOps``."""

    def wrap(handler: Handler) -> Handler:
        name = handler.__name__

        @functools.wraps(handler)
        async def route(self: Any, fh: FileHandleT, *args: Any) -> Any:
            if fh not in getattr(self.gate.held().view, table):
                return await handler(self, fh, *args)
            if name in READ_ONLY:
                raise _read_only()
            return await getattr(self.versions, name)(fh, *args)

        return cast(Handler, route)

    return wrap


def _groups(pid: int) -> frozenset[int]:
    """The caller's supplementary groups (the kernel's request says its uid and gid only): from
    /proc; none if it is gone (the check is then stricter than the kernel's, never looser)."""
    try:
        with open(f"/proc/{int(pid)}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Groups:"):
                    return frozenset(int(g) for g in line.split()[1:][:65536] if g.isdigit())
    except (OSError, ValueError):
        pass
    return frozenset()


def reader_of(ctx: RequestContext) -> Reader:
    return Reader(ctx.uid, frozenset({ctx.gid}) | _groups(ctx.pid))


def writing(flags: int) -> bool:
    return (flags & os.O_ACCMODE) != os.O_RDONLY or bool(flags & os.O_TRUNC)


async def reply_entries(source: Volume | VersionsView, fh: Handle, start_id: int, token: ReaddirToken,
                        entry: Entry, remember: Callable[[Node], None] | None) -> None:
    """A directory's entries from ``start_id`` on, as many as the kernel takes."""
    index = start_id
    while (found := source.readdir_entry(fh, index)) is not None:
        position, name, node = found
        index = position + 1
        if not pyfuse3.readdir_reply(token, name, entry(node), index):
            break
        # The kernel takes no reference to "." and ".."; the view's inodes keep no counts.
        if name not in (b".", b"..") and remember is not None:
            remember(node)


class VersionsOps:
    """The view's answers; the request already went through fs/operations.py's boundary."""

    def __init__(self, gate: Gate, entry: Entry, others: Callable[[], bool] = lambda: False) -> None:
        self.gate = gate
        self.entry = entry
        # Whether other uids use the mount (``--allow-other-users``): each is then checked against a
        # version's own mode (``Reader``); else only the mount's user reaches it, as the kernel says.
        self.others = others

    def _reader(self, ctx: RequestContext) -> Reader | None:
        return reader_of(ctx) if self.others() else None

    async def lookup(self, parent_inode: InodeT, name: bytes, ctx: RequestContext) -> pyfuse3.EntryAttributes:
        view = self.gate.view()
        node = await view.lookup(parent_inode, name, self._reader(ctx))
        if not view.owns(node.ino):  # ".." of .versions: the real root
            self.gate.volume().remember(node)
        return self.entry(node)

    async def getattr(self, inode: InodeT, ctx: RequestContext) -> pyfuse3.EntryAttributes:
        return self.entry(await self.gate.view().getattr(inode))

    async def readlink(self, inode: InodeT, ctx: RequestContext) -> bytes:
        self.gate.view()
        raise errors.InvalidArgument("not a symbolic link")

    async def open(self, inode: InodeT, flags: int, ctx: RequestContext) -> pyfuse3.FileInfo:
        view = self.gate.view()
        fh = self.gate.volume().new_fh()
        await view.open(inode, fh, writing(flags), self._reader(ctx))
        return pyfuse3.FileInfo(fh=fh, keep_cache=True)

    async def opendir(self, inode: InodeT, ctx: RequestContext) -> FileHandleT:
        view = self.gate.view()
        fh = self.gate.volume().new_fh()
        await view.opendir(inode, fh, self._reader(ctx))
        return fh

    async def getxattr(self, inode: InodeT, name: bytes, ctx: RequestContext) -> bytes:
        self.gate.view()
        raise errors.NoAttribute("no such attribute")

    async def listxattr(self, inode: InodeT, ctx: RequestContext) -> list[bytes]:
        self.gate.view()
        return []

    async def access(self, inode: InodeT, mode: int, ctx: RequestContext) -> bool:
        await self.gate.view().getattr(inode)
        return not mode & os.W_OK

    # --- on handles the view gave out (also while locking)

    async def read(self, fh: FileHandleT, off: int, size: int) -> bytes:
        return await self.gate.held().view.read(fh, off, size)

    async def flush(self, fh: FileHandleT) -> None:
        pass

    async def fsync(self, fh: FileHandleT, datasync: bool) -> None:
        pass

    async def release(self, fh: FileHandleT) -> None:
        self.gate.held().view.release(fh)

    async def readdir(self, fh: FileHandleT, start_id: int, token: ReaddirToken) -> None:
        await reply_entries(self.gate.held().view, Handle(fh), start_id, token, self.entry, None)

    async def releasedir(self, fh: FileHandleT) -> None:
        self.gate.held().view.dir_handles.pop(fh, None)
