"""pyfuse3 Operations: a thin boundary over the Volume.

Each handler calls the Volume and converts its result; domain errors become
errno values here and nowhere else.  Lookup counts live in the Volume.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pyfuse3

from fusevault import errors
from fusevault.vault.files.content import BLOCK_SIZE
from fusevault.vault.model.nodes import Node
from fusevault.vault.services.versions_view import NAME as VERSIONS
from fusevault.vault.services.versions_view import VersionsView
from fusevault.vault.volume import ROOT_INODE, Caller, Volume

if TYPE_CHECKING:
    from fusevault.agent.sessions import Session

log = logging.getLogger(__name__)
LOCKED = "the vault is locked: run `fusevault unlock`"

ERRNO: dict[type, int] = {
    errors.NotFound: errno.ENOENT,
    errors.Exists: errno.EEXIST,
    errors.NotEmpty: errno.ENOTEMPTY,
    errors.NotADirectory: errno.ENOTDIR,
    errors.IsADirectory: errno.EISDIR,
    errors.NameTooLong: errno.ENAMETOOLONG,
    errors.InvalidArgument: errno.EINVAL,
    errors.NoAttribute: pyfuse3.ENOATTR,
    errors.NotSupported: errno.EOPNOTSUPP,
    errors.PermissionDenied: errno.EACCES,
    errors.CrossOwner: errno.EXDEV,
    errors.Locked: errno.EACCES,
    errors.BadHandle: errno.EBADF,
    errors.FileTooLarge: errno.EFBIG,
    errors.CorruptData: errno.EIO,
    errors.NoSpace: errno.ENOSPC,
    errors.VaultReadOnly: errno.EROFS,
    errors.StoreUnavailable: errno.EIO,
    errors.Conflict: errno.EIO,
}


def errno_for(err: errors.VaultError) -> int:
    for cls in type(err).__mro__:
        if cls in ERRNO:
            return ERRNO[cls]
    return errno.EIO


# FUSEVAULT_OP_STATS=FILE: count every request and the time spent in its
# handler, written to FILE as JSON at unmount (bench/profile.py uses it).
# Decided once at import, so a mount without it pays nothing per request.
OP_STATS: dict[str, list[float]] | None = {} if os.environ.get("FUSEVAULT_OP_STATS") else None


def boundary(handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    if OP_STATS is not None:
        handler = _timed(handler)

    @functools.wraps(handler)
    async def wrapper(*args: Any) -> Any:
        try:
            return await handler(*args)
        except pyfuse3.FUSEError:
            raise
        except errors.VaultError as err:
            code = errno_for(err)
            if code == errno.EIO:
                log.error("%s: %s", handler.__name__, err)
            raise pyfuse3.FUSEError(code) from None
        except OSError as err:
            log.error("%s: %s", handler.__name__, err)
            raise pyfuse3.FUSEError(err.errno or errno.EIO) from None
        except Exception:
            log.exception("unexpected error in %s", handler.__name__)
            raise pyfuse3.FUSEError(errno.EIO) from None

    return wrapper


def _timed(handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    stats = OP_STATS.setdefault(handler.__name__, [0, 0.0])

    @functools.wraps(handler)
    async def timed(*args: Any) -> Any:
        start = time.perf_counter()
        try:
            return await handler(*args)
        finally:
            stats[0] += 1
            stats[1] += time.perf_counter() - start

    return timed


def write_op_stats() -> None:
    if OP_STATS:
        with open(os.environ["FUSEVAULT_OP_STATS"], "w") as out:
            json.dump({op: {"count": n, "seconds": t} for op, (n, t) in OP_STATS.items()}, out)


def caller(ctx: pyfuse3.RequestContext) -> Caller:
    return Caller(ctx.uid, ctx.gid)


class Operations(pyfuse3.Operations):
    supports_dot_lookup = True
    # The kernel gathers small and random writes in its page cache and sends
    # them in large batches; close() and fsync() still wait until they are here.
    enable_writeback_cache = True
    # A personal mount other uids may use (`mount --allow-other-users`): the
    # kernel checks each caller against the mode bits shown (default_permissions).
    allow_other = False

    def __init__(self, session: Session | None, timeout: float = 5.0, *,
                 ino_out: Callable[[int], int] | None = None,
                 shown: tuple[int, int] | None = None) -> None:
        super().__init__()
        # In a shared mount (fs/drive.py) this serves one Linux user: their
        # inode numbers are mapped into the drive's, everything is shown as
        # theirs (``shown``: uid, gid), and the kernel checks no modes (one
        # inode serves several users), so the owner's mode bits are checked here.
        self.ino_out = ino_out
        self.shown = shown
        # None while the user is locked (agent.sessions): every request but
        # forget is refused, and forget counts go to ``remnant`` until unlock.
        self.session = session
        # While locking: the kernel writes back and forgets, nothing new opens.
        self.locking = False
        self.remnant: dict[int, int] = {}
        self.timeout = timeout

    @property
    def vol(self) -> Volume:
        if self.session is None or self.locking:
            raise errors.Locked(LOCKED)
        return self.session.volume

    @property
    def view(self) -> VersionsView:
        if self.session is None or self.locking:
            raise errors.Locked(LOCKED)
        return self.session.view

    def held(self) -> Session:
        """The session, for requests on handles already open (also while locking)."""
        if self.session is None:
            raise errors.Locked(LOCKED)
        return self.session

    # The read-only .versions/ tree lives beside the Volume: requests for its
    # inodes and handles go to the view; changes in it are refused here.

    def _creating(self, parent_inode: int, name: bytes) -> None:
        if self.view.owns(parent_inode):
            raise errors.VaultReadOnly("the .versions tree is read-only")
        if parent_inode == ROOT_INODE and name == VERSIONS:
            raise errors.Exists(".versions is reserved for the version history")
        self._mode(self.vol.require(parent_inode, write=True), os.W_OK | os.X_OK)

    def _changing(self, parent_inode: int, name: bytes) -> None:
        if self.view.owns(parent_inode) or (parent_inode == ROOT_INODE and name == VERSIONS):
            raise errors.VaultReadOnly("the .versions tree is read-only")
        self._mode(self.vol.require(parent_inode, write=True), os.W_OK | os.X_OK)

    def _mode(self, node: Node, want: int) -> None:
        """In a shared mount: the owner's mode bits, as the kernel would check them."""
        if self.shown is not None and self.shown[0] != 0 and want & ~(node.mode >> 6) & 7:
            raise errors.PermissionDenied("not allowed by the file's mode")

    def entry(self, node: Node) -> pyfuse3.EntryAttributes:
        attr = pyfuse3.EntryAttributes()
        attr.st_ino = self.ino_out(node.ino) if self.ino_out else node.ino
        attr.generation = 0
        attr.entry_timeout = self.timeout
        attr.attr_timeout = self.timeout
        attr.st_mode = node.mode
        attr.st_nlink = node.nlink
        attr.st_uid = node.uid
        attr.st_gid = node.gid
        volume = self.session.volume if self.session else None
        if volume is not None and node.owner != volume.key.user_id:
            # Another's file shared with this user: shown as theirs to use,
            # without write bits when the share is READ.
            root = volume.root
            attr.st_uid, attr.st_gid = root.uid, root.gid
            if not volume.writable(node):
                attr.st_mode &= ~0o222
        if self.shown is not None:
            attr.st_uid, attr.st_gid = self.shown
        attr.st_rdev = node.rdev
        attr.st_size = node.size
        attr.st_blksize = BLOCK_SIZE
        # What the committed version holds, holes not counted (a sparse file
        # is small); the size while unsaved writes are pending.
        pending = node.allocated is None or (node.content is not None and node.content.changed)
        used = node.size if pending else min(node.size, node.allocated)
        attr.st_blocks = (used + 511) // 512
        attr.st_atime_ns = node.atime
        attr.st_mtime_ns = node.mtime
        attr.st_ctime_ns = node.ctime
        return attr

    @boundary
    async def lookup(self, parent_inode, name, ctx):
        if self.view.owns(parent_inode):
            node = await self.view.lookup(parent_inode, name)
            if not self.view.owns(node.ino):  # ".." of .versions: the real root
                self.vol.remember(node)
            return self.entry(node)
        if parent_inode == ROOT_INODE and name == VERSIONS:
            return self.entry(self.view.root())
        self._mode(self.vol.require(parent_inode), os.X_OK)
        return self.entry(self.vol.lookup(parent_inode, name))

    async def forget(self, inode_list):
        if self.session is None:
            for ino, count in inode_list:
                if (left := self.remnant.get(ino, 0) - count) > 0:
                    self.remnant[ino] = left
                else:
                    self.remnant.pop(ino, None)
            return
        for ino, count in inode_list:
            if not self.session.view.owns(ino):
                self.session.volume.forget(ino, count)

    @boundary
    async def getattr(self, inode, ctx):
        if self.view.owns(inode):
            return self.entry(await self.view.getattr(inode))
        return self.entry(self.vol.require(inode))

    @boundary
    async def setattr(self, inode, attr, fields, fh, ctx):
        if self.view.owns(inode):
            raise errors.VaultReadOnly("the .versions tree is read-only")
        node = self.vol.require(inode, write=True)
        mode = attr.st_mode if fields.update_mode else None
        uid = attr.st_uid if fields.update_uid else None
        gid = attr.st_gid if fields.update_gid else None
        if node.owner != self.vol.key.user_id:
            mode, uid, gid = self._guest_owning(node, mode, uid, gid)
        if fields.update_size:
            self._mode(node, os.W_OK)
        node = await self.vol.setattr(
            inode, mode=mode, uid=uid, gid=gid,
            size=attr.st_size if fields.update_size else None,
            atime=attr.st_atime_ns if fields.update_atime else None,
            mtime=attr.st_mtime_ns if fields.update_mtime else None,
            ctime=attr.st_ctime_ns if fields.update_ctime else None,
        )
        return self.entry(node)

    def _guest_owning(self, node: Node, mode: int | None, uid: int | None,
                      gid: int | None) -> tuple[int | None, None, None]:
        """A WRITE member changing a shared file's mode or owner (``require``
        has checked WRITE): ``cp -a``, ``rsync -a`` and ``mv`` set the modes of
        what they copy in, so the permission bits may change, but never
        setuid or setgid (the file is the owner's, and they are dropped
        silently, as chmod does for a group one is not in).  The owner and
        group stay: one the file already shows is accepted as no change,
        another is EPERM (as for anyone but root)."""
        if mode is not None:
            mode &= ~(stat.S_ISUID | stat.S_ISGID)
        shown = self.entry(node)
        if (uid is not None and uid != shown.st_uid) or (gid is not None and gid != shown.st_gid):
            raise pyfuse3.FUSEError(errno.EPERM)
        return mode, None, None

    @boundary
    async def readlink(self, inode, ctx):
        if self.view.owns(inode):
            raise errors.InvalidArgument("not a symbolic link")
        self.vol.require(inode)
        return self.vol.readlink(inode)

    @boundary
    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        self._creating(parent_inode, name)
        return self.entry(await self.vol.mknod(parent_inode, name, mode, rdev, caller(ctx)))

    @boundary
    async def mkdir(self, parent_inode, name, mode, ctx):
        self._creating(parent_inode, name)
        return self.entry(await self.vol.mkdir(parent_inode, name, mode, caller(ctx)))

    @boundary
    async def symlink(self, parent_inode, name, target, ctx):
        self._creating(parent_inode, name)
        return self.entry(await self.vol.symlink(parent_inode, name, target, caller(ctx)))

    @boundary
    async def unlink(self, parent_inode, name, ctx):
        self._changing(parent_inode, name)
        await self.vol.unlink(parent_inode, name)

    @boundary
    async def rmdir(self, parent_inode, name, ctx):
        self._changing(parent_inode, name)
        await self.vol.rmdir(parent_inode, name)

    @boundary
    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        if flags & ~(pyfuse3.RENAME_NOREPLACE | pyfuse3.RENAME_EXCHANGE):
            raise pyfuse3.FUSEError(errno.EINVAL)
        self._changing(parent_inode_old, name_old)
        self._changing(parent_inode_new, name_new)
        await self.vol.rename(parent_inode_old, name_old, parent_inode_new, name_new,
                              noreplace=bool(flags & pyfuse3.RENAME_NOREPLACE),
                              exchange=bool(flags & pyfuse3.RENAME_EXCHANGE))

    @boundary
    async def link(self, inode, new_parent_inode, new_name, ctx):
        self._creating(new_parent_inode, new_name)
        if self.view.owns(inode):
            raise errors.VaultReadOnly("the .versions tree is read-only")
        self.vol.require(inode, write=True)
        return self.entry(await self.vol.link(inode, new_parent_inode, new_name))

    @boundary
    async def open(self, inode, flags, ctx):
        # The page cache may be kept across opens: what changes a file from
        # inside fusevault (restore, imports) invalidates the kernel's copy.
        if self.view.owns(inode):
            fh = self.vol.new_fh()
            writing = (flags & os.O_ACCMODE) != os.O_RDONLY or bool(flags & os.O_TRUNC)
            self.view.open(inode, fh, writing)
            return pyfuse3.FileInfo(fh=fh, keep_cache=True)
        writing = (flags & os.O_ACCMODE) != os.O_RDONLY or bool(flags & os.O_TRUNC)
        node = self.vol.require(inode, write=writing)
        mode = flags & os.O_ACCMODE
        self._mode(node, (os.R_OK if mode != os.O_WRONLY else 0) | (os.W_OK if writing else 0))
        fh = self.vol.open(inode, write=writing)
        if flags & os.O_TRUNC and self.vol.node(inode).size:
            # libfuse asks for atomic O_TRUNC: the kernel truncates only its
            # own cache and leaves the stored file to us.
            try:
                await self.vol.setattr(inode, size=0)
            except BaseException:
                await self.vol.release(fh)
                raise
        return pyfuse3.FileInfo(fh=fh, keep_cache=True)

    @boundary
    async def create(self, parent_inode, name, mode, flags, ctx):
        self._creating(parent_inode, name)
        fh, node = await self.vol.create(parent_inode, name, mode, caller(ctx))
        return pyfuse3.FileInfo(fh=fh, keep_cache=True), self.entry(node)

    @boundary
    async def read(self, fh, off, size):
        session = self.held()
        if fh in session.view.handles:
            return await session.view.read(fh, off, size)
        return await session.volume.read(fh, off, size)

    @boundary
    async def write(self, fh, off, buf):
        return await self.held().volume.write(fh, off, buf)

    @boundary
    async def flush(self, fh):
        session = self.held()
        if fh not in session.view.handles:
            await session.volume.flush(fh)

    @boundary
    async def release(self, fh):
        session = self.held()
        if fh in session.view.handles:
            session.view.release(fh)
        else:
            await session.volume.release(fh)

    @boundary
    async def fsync(self, fh, datasync):
        session = self.held()
        if fh not in session.view.handles:
            await session.volume.fsync(fh)

    @boundary
    async def fallocate(self, fh, mode, offset, length):
        # Not a pyfuse3 handler: fs/fallocate.py calls it (a handle the kernel
        # opened for writing; .versions handles are read-only).
        session = self.held()
        if fh in session.view.handles:
            raise errors.VaultReadOnly("the .versions tree is read-only")
        await session.volume.fallocate(fh, mode, offset, length)

    @boundary
    async def opendir(self, inode, ctx):
        if self.view.owns(inode):
            fh = self.vol.new_fh()
            await self.view.opendir(inode, fh)
            return fh
        self._mode(self.vol.require(inode), os.R_OK)
        return self.vol.opendir(inode)

    @boundary
    async def readdir(self, fh, start_id, token):
        session = self.held()
        source = session.view if fh in session.view.dir_handles else session.volume
        index = start_id
        while (found := source.readdir_entry(fh, index)) is not None:
            position, name, node = found
            index = position + 1
            if not pyfuse3.readdir_reply(token, name, self.entry(node), index):
                break
            # The kernel takes no reference to "." and ".."; the view's
            # inodes keep no counts.
            if name not in (b".", b"..") and source is session.volume:
                session.volume.remember(node)

    @boundary
    async def releasedir(self, fh):
        session = self.held()
        if session.view.dir_handles.pop(fh, None) is None:
            session.volume.releasedir(fh)

    @boundary
    async def fsyncdir(self, fh, datasync):
        await self.vol.fsyncdir()

    @boundary
    async def statfs(self, ctx):
        st = self.vol.statfs()
        out = pyfuse3.StatvfsData()
        out.f_bsize = st.f_bsize
        out.f_frsize = st.f_frsize
        out.f_blocks = st.f_blocks
        out.f_bfree = st.f_bfree
        out.f_bavail = st.f_bavail
        out.f_files = st.f_files
        out.f_ffree = st.f_ffree
        out.f_favail = st.f_favail
        out.f_namemax = 255
        return out

    @boundary
    async def setxattr(self, inode, name, value, ctx):
        if self.view.owns(inode):
            raise errors.VaultReadOnly("the .versions tree is read-only")
        self.vol.require(inode, write=True)
        await self.vol.setxattr(inode, name, value)

    @boundary
    async def getxattr(self, inode, name, ctx):
        if self.view.owns(inode):
            raise errors.NoAttribute("no such attribute")
        self.vol.require(inode)
        return self.vol.getxattr(inode, name)

    @boundary
    async def listxattr(self, inode, ctx):
        if self.view.owns(inode):
            return []
        self.vol.require(inode)
        return self.vol.listxattr(inode)

    @boundary
    async def removexattr(self, inode, name, ctx):
        if self.view.owns(inode):
            raise errors.VaultReadOnly("the .versions tree is read-only")
        self.vol.require(inode, write=True)
        await self.vol.removexattr(inode, name)

    @boundary
    async def access(self, inode, mode, ctx):
        # A personal mount's kernel checks modes itself (default_permissions)
        # and never asks; a shared mount's asks here.  pyfuse3 wants a bool.
        if self.view.owns(inode):
            await self.view.getattr(inode)
            return not mode & os.W_OK
        self._mode(self.vol.require(inode, write=bool(mode & os.W_OK)), mode)
        return True

