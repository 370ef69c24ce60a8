"""The shared mount's FUSE boundary: each request goes to its caller's own tree.

Root mounts a vault with ``--allow-other``; each Linux user mapped to a vault
user (``user add --uid``) unlocks their own keys and gets a *seat*: their own
Volume and their own ``Operations`` (fs/operations.py), exactly as in a
personal mount.  The ``Drive`` routes each request by the caller's uid
(``ctx.uid``), and requests that carry no caller (read, write, release,
forget) by the seat number inside the handle or inode.

Inode and handle numbers of a seat carry its number in their top bits, so
the kernel never confuses two users' nodes, and a request for another
seat's inode is refused (EACCES): nobody reaches a node through someone
else's name for it.  Inode 1 is everyone's root, each seeing their own.
Entry and attribute timeouts are 0, so the kernel asks again for every path
walk and every stat, on behalf of whoever asks.  A uid mapped to no vault
user sees an empty root; a mapped user who has not unlocked gets EACCES.
"""

from __future__ import annotations

import errno
import os
import stat
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyfuse3
from pyfuse3 import (
    EntryAttributes,
    FileHandleT,
    FileInfo,
    InodeT,
    ReaddirToken,
    RequestContext,
    SetattrFields,
)

from fusevault.fs.numbers import BITS, Inode
from fusevault.fs.operations import Operations
from fusevault.vault.volume import ROOT_INODE

if TYPE_CHECKING:
    from fusevault.agent.sessions import Agent

SEAT_SHIFT = BITS.seat_shift  # below it: a Volume's inodes, its .versions view's and handles
LOCAL = BITS.local
MAX_SEATS = BITS.max_seats
RETIRED_PER_UID = 3  # users a uid may have had (each seat ever unlocked) before it gets no new seat
NOBODY_FH = 0  # the empty root's directory handle, for a uid that is no vault user


@dataclass
class Seat:
    """One Linux user's place in a shared mount (kept while they are locked)."""

    number: int
    uid: int
    gid: int
    user_id: str
    ops: Operations
    agent: Agent | None = None

    def ino_out(self, ino: int) -> int:
        return ino if ino == ROOT_INODE else BITS.seated(self.number, ino)

    def ino_in(self, ino: int) -> Inode:
        if ino == ROOT_INODE:
            return Inode(ino)
        if BITS.seat(ino) != self.number:
            raise pyfuse3.FUSEError(errno.EACCES)
        return Inode(ino & LOCAL)

    def fh_out(self, fh: int) -> int:
        return BITS.seated(self.number, fh)


def _deny() -> pyfuse3.FUSEError:
    return pyfuse3.FUSEError(errno.EACCES)


class Drive(pyfuse3.Operations):
    supports_dot_lookup = True
    # Written pages go back through the writer's own handle, so each version
    # names the user who wrote it.
    enable_writeback_cache = False

    def __init__(self, mapped: Callable[[int], bool], root_stat: Callable[[], os.stat_result],
                 statvfs: Callable[[], os.statvfs_result]) -> None:
        super().__init__()
        self.seats: dict[int, Seat] = {}  # by number
        self.by_uid: dict[int, Seat] = {}
        self._retired: dict[tuple[int, str], Seat] = {}  # by (uid, vault user): ever unlocked
        self._free: list[int] = []  # numbers of retired seats that never unlocked
        self._mapped = mapped
        self._root_stat = root_stat
        self._statvfs = statvfs

    def add_seat(self, uid: int, gid: int, user_id: str) -> Seat:
        """A seat for ``uid`` as vault user ``user_id``: the one retired from that pair if any (its
        inode numbers are its own), else a new number (one freed by a seat never unlocked first:
        ``unseat``).  OverflowError when all MAX_SEATS numbers are taken, or when ``uid`` has
        been given to RETIRED_PER_UID users before (then only that uid is refused: a local user
        and a writer of the store, trading claims of his uid, cannot use up the mount's numbers
        for everyone; attack round 20 (4))."""
        if (seat := self._retired.pop((uid, user_id), None)) is not None:
            self.by_uid[uid] = seat
            return seat
        if sum(1 for (owner, _) in self._retired if owner == uid) >= RETIRED_PER_UID:
            raise OverflowError(f"uid {uid} was given to {RETIRED_PER_UID} other users of the vault "
                                "since this shared mount began")
        if not self._free and len(self.seats) >= MAX_SEATS:
            raise OverflowError("too many users in one shared mount")
        # seats holds 1..len minus the free numbers, so with none free len + 1 is new.
        number = self._free.pop() if self._free else len(self.seats) + 1
        seat = Seat(number, uid, gid, user_id, Operations(timeout=0, shown=(uid, gid)))
        seat.ops.ino_out = seat.ino_out
        seat.ops.enable_writeback_cache = self.enable_writeback_cache  # the kernel this one talks to
        self.seats[number] = seat
        self.by_uid[uid] = seat
        return seat

    # --- whose request

    def _seat(self, ctx: pyfuse3.RequestContext) -> Seat:
        seat = self.by_uid.get(ctx.uid)
        if seat is None:
            raise _deny()
        return seat

    def _nobody(self, ctx: pyfuse3.RequestContext, inode: int) -> bool:
        """A caller who is no user of the vault, asking about the root."""
        return inode == ROOT_INODE and ctx.uid not in self.by_uid and not self._mapped(ctx.uid)

    def _by_fh(self, fh: int) -> Seat:
        seat = self.seats.get(BITS.seat(fh))
        if seat is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        return seat

    def _empty_root(self) -> pyfuse3.EntryAttributes:
        st = self._root_stat()
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = ROOT_INODE
        attr.st_mode = stat.S_IFDIR | 0o555
        attr.st_nlink = 2
        attr.st_atime_ns, attr.st_mtime_ns, attr.st_ctime_ns = st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns
        attr.entry_timeout = attr.attr_timeout = 0
        return attr

    # --- requests with a caller

    async def lookup(self, parent_inode: InodeT, name: bytes, ctx: RequestContext) -> EntryAttributes:
        seat = self._seat(ctx)
        return await seat.ops.lookup(seat.ino_in(parent_inode), name, ctx)

    async def getattr(self, inode: InodeT, ctx: RequestContext) -> EntryAttributes:
        if self._nobody(ctx, inode):
            return self._empty_root()
        seat = self._seat(ctx)
        return await seat.ops.getattr(seat.ino_in(inode), ctx)

    async def setattr(self, inode: InodeT, attr: EntryAttributes, fields: SetattrFields,
                      fh: FileHandleT | None, ctx: RequestContext) -> EntryAttributes:
        seat = self._seat(ctx)
        return await seat.ops.setattr(seat.ino_in(inode), attr, fields, None, ctx)

    async def readlink(self, inode: InodeT, ctx: RequestContext) -> bytes:
        seat = self._seat(ctx)
        return await seat.ops.readlink(seat.ino_in(inode), ctx)

    async def mknod(self, parent_inode: InodeT, name: bytes, mode: int, rdev: int,
                    ctx: RequestContext) -> EntryAttributes:
        seat = self._seat(ctx)
        return await seat.ops.mknod(seat.ino_in(parent_inode), name, mode, rdev, ctx)

    async def mkdir(self, parent_inode: InodeT, name: bytes, mode: int,
                    ctx: RequestContext) -> EntryAttributes:
        seat = self._seat(ctx)
        return await seat.ops.mkdir(seat.ino_in(parent_inode), name, mode, ctx)

    async def symlink(self, parent_inode: InodeT, name: bytes, target: bytes,
                      ctx: RequestContext) -> EntryAttributes:
        seat = self._seat(ctx)
        return await seat.ops.symlink(seat.ino_in(parent_inode), name, target, ctx)

    async def unlink(self, parent_inode: InodeT, name: bytes, ctx: RequestContext) -> None:
        seat = self._seat(ctx)
        await seat.ops.unlink(seat.ino_in(parent_inode), name, ctx)

    async def rmdir(self, parent_inode: InodeT, name: bytes, ctx: RequestContext) -> None:
        seat = self._seat(ctx)
        await seat.ops.rmdir(seat.ino_in(parent_inode), name, ctx)

    async def rename(self, parent_inode_old: InodeT, name_old: bytes, parent_inode_new: InodeT,
                     name_new: bytes, flags: int, ctx: RequestContext) -> None:
        seat = self._seat(ctx)
        await seat.ops.rename(seat.ino_in(parent_inode_old), name_old,
                              seat.ino_in(parent_inode_new), name_new, flags, ctx)

    async def link(self, inode: InodeT, new_parent_inode: InodeT, new_name: bytes,
                   ctx: RequestContext) -> EntryAttributes:
        seat = self._seat(ctx)
        return await seat.ops.link(seat.ino_in(inode), seat.ino_in(new_parent_inode), new_name, ctx)

    async def open(self, inode: InodeT, flags: int, ctx: RequestContext) -> FileInfo:
        seat = self._seat(ctx)
        info = await seat.ops.open(seat.ino_in(inode), flags, ctx)
        info.fh = seat.fh_out(info.fh)
        return info

    async def create(self, parent_inode: InodeT, name: bytes, mode: int, flags: int,
                     ctx: RequestContext) -> tuple[FileInfo, EntryAttributes]:
        seat = self._seat(ctx)
        info, entry = await seat.ops.create(seat.ino_in(parent_inode), name, mode, flags, ctx)
        info.fh = seat.fh_out(info.fh)
        return info, entry

    async def opendir(self, inode: InodeT, ctx: RequestContext) -> FileHandleT:
        if self._nobody(ctx, inode):
            return NOBODY_FH
        seat = self._seat(ctx)
        return seat.fh_out(await seat.ops.opendir(seat.ino_in(inode), ctx))

    async def statfs(self, ctx: RequestContext) -> pyfuse3.StatvfsData:
        if ctx.uid not in self.by_uid:
            st = self._statvfs()
            out = pyfuse3.StatvfsData()
            out.f_bsize, out.f_frsize, out.f_namemax = st.f_bsize, st.f_frsize, 255
            return out
        return await self._seat(ctx).ops.statfs(ctx)

    async def setxattr(self, inode: InodeT, name: bytes, value: bytes, ctx: RequestContext) -> None:
        seat = self._seat(ctx)
        await seat.ops.setxattr(seat.ino_in(inode), name, value, ctx)

    async def getxattr(self, inode: InodeT, name: bytes, ctx: RequestContext) -> bytes:
        if self._nobody(ctx, inode):
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        seat = self._seat(ctx)
        return await seat.ops.getxattr(seat.ino_in(inode), name, ctx)

    async def listxattr(self, inode: InodeT, ctx: RequestContext) -> Sequence[bytes]:
        if self._nobody(ctx, inode):
            return []
        seat = self._seat(ctx)
        return await seat.ops.listxattr(seat.ino_in(inode), ctx)

    async def removexattr(self, inode: InodeT, name: bytes, ctx: RequestContext) -> None:
        seat = self._seat(ctx)
        await seat.ops.removexattr(seat.ino_in(inode), name, ctx)

    async def access(self, inode: InodeT, mode: int, ctx: RequestContext) -> bool:
        if self._nobody(ctx, inode):
            return not mode & os.W_OK
        seat = self._seat(ctx)
        return await seat.ops.access(seat.ino_in(inode), mode, ctx)

    # --- requests on a handle or inode: the seat is in its number

    async def read(self, fh: FileHandleT, off: int, size: int) -> bytes:
        return await self._by_fh(fh).ops.read(fh & LOCAL, off, size)

    async def write(self, fh: FileHandleT, off: int, buf: bytes) -> int:
        return await self._by_fh(fh).ops.write(fh & LOCAL, off, buf)

    async def flush(self, fh: FileHandleT) -> None:
        await self._by_fh(fh).ops.flush(fh & LOCAL)

    async def release(self, fh: FileHandleT) -> None:
        await self._by_fh(fh).ops.release(fh & LOCAL)

    async def fsync(self, fh: FileHandleT, datasync: bool) -> None:
        await self._by_fh(fh).ops.fsync(fh & LOCAL, datasync)

    async def fallocate(self, fh: FileHandleT, mode: int, offset: int, length: int) -> None:
        await self._by_fh(fh).ops.fallocate(fh & LOCAL, mode, offset, length)

    async def readdir(self, fh: FileHandleT, start_id: int, token: ReaddirToken) -> None:
        if fh == NOBODY_FH:
            return
        await self._by_fh(fh).ops.readdir(fh & LOCAL, start_id, token)

    async def releasedir(self, fh: FileHandleT) -> None:
        if fh != NOBODY_FH:
            await self._by_fh(fh).ops.releasedir(fh & LOCAL)

    async def fsyncdir(self, fh: FileHandleT, datasync: bool) -> None:
        if fh != NOBODY_FH:
            await self._by_fh(fh).ops.fsyncdir(fh & LOCAL, datasync)

    async def forget(self, inode_list: Sequence[tuple[InodeT, int]]) -> None:
        by_seat: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for ino, count in inode_list:
            if ino != ROOT_INODE:
                by_seat[BITS.seat(ino)].append((ino & LOCAL, count))
        for number, inodes in by_seat.items():
            if (seat := self.seats.get(number)) is not None:
                await seat.ops.forget(inodes)

    def seat_of(self, uid: int) -> Seat | None:
        return self.by_uid.get(uid)

    def unseat(self, seat: Seat) -> None:
        """``seat``'s uid has no seat any more (its agent retired, fs/shared.py).  A seat ever
        unlocked stays in ``seats``, so that its number, and with it its inode numbers the kernel
        may still hold, are never handed to another user (a request naming them is refused:
        ``Seat.ino_in``); it comes back if the uid is given to that user again.  A seat never
        unlocked gave the kernel no inode or handle: its number is free for the next seat."""
        if self.by_uid.get(seat.uid) is seat:
            del self.by_uid[seat.uid]
        seat.agent = None
        if seat.ops.gate.opened:
            self._retired[(seat.uid, seat.user_id)] = seat
        else:
            del self.seats[seat.number]
            self._free.append(seat.number)

    def unlocked(self) -> list[Seat]:
        return [s for s in self.seats.values() if s.ops.gate.session is not None]
