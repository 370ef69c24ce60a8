"""pyfuse3 Operations: a thin boundary over the Volume.

Each handler asks the session gate (agent/gate.py) for the unlocked Volume,
calls it and converts its result; domain errors become errno values at the
boundary (fs/boundary.py) and nowhere else.  Requests about the ``.versions``
tree are routed to fs/versions_ops.py by ``by_inode`` and ``by_handle``.
Lookup counts live in the Volume.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Sequence

import pyfuse3
from pyfuse3 import FileHandleT, InodeT, ReaddirToken, RequestContext, SetattrFields

from fusevault import errors
from fusevault.agent.gate import LOCKED, Gate, Unlocked
from fusevault.fs.boundary import boundary, write_op_stats
from fusevault.fs.numbers import BITS, Handle
from fusevault.fs.versions_ops import VersionsOps, by_handle, by_inode, reply_entries, writing
from fusevault.vault.files.content import BLOCK_SIZE
from fusevault.vault.model.nodes import Node
from fusevault.vault.services.versions_view import NAME as VERSIONS
from fusevault.vault.volume import ROOT_INODE, Caller, Volume

__all__ = ["LOCKED", "Operations", "write_op_stats"]


def caller(ctx: RequestContext) -> Caller:
    return Caller(ctx.uid, ctx.gid)


class Operations(pyfuse3.Operations):
    supports_dot_lookup = True
    # The kernel gathers small and random writes in its page cache and sends
    # them in large batches; close() and fsync() still wait until they are here.
    enable_writeback_cache = True
    # Metadata changes (unlink, rename, chmod, mkdir...) committed in groups:
    # with the next commit, at fsync/fsyncdir, or a moment later
    # (vault/tree/inodes.py).  Off with peers (fs/personal.py): a peer's
    # document must never meet a change of the same node not yet committed.
    group_commit = True
    # A personal mount other uids may use (`mount --allow-other-users`): the
    # kernel checks each caller against the mode bits shown (default_permissions).
    allow_other = False

    def __init__(self, gate: Gate | None = None, timeout: float = 5.0, *,
                 ino_out: Callable[[int], int] | None = None,
                 shown: tuple[int, int] | None = None) -> None:
        super().__init__()
        # In a shared mount (fs/drive.py) this serves one Linux user: their
        # inode numbers are mapped into the drive's, everything is shown as
        # theirs (``shown``: uid, gid), and the kernel checks no modes (one
        # inode serves several users), so the owner's mode bits are checked here.
        self.ino_out = ino_out
        self.shown = shown
        # Unlocked or not (agent/gate.py, opened and closed by the Agent):
        # while locked every request but forget is refused.
        self.gate = gate if gate is not None else Gate()
        self.timeout = timeout
        self.versions = VersionsOps(self.gate, self.entry, lambda: self.allow_other)

    @property
    def vol(self) -> Volume:
        return self.gate.volume()

    @property
    def session(self) -> Unlocked | None:
        """The unlocked session or None, to read (the Agent opens and closes the gate)."""
        return self.gate.session

    def _creating(self, parent_inode: int, name: bytes) -> None:
        self._changing(parent_inode, name, exists=True)

    def _changing(self, parent_inode: int, name: bytes, *, exists: bool = False) -> None:
        volume = self.gate.volume()
        if BITS.in_view(parent_inode):
            raise errors.VaultReadOnly("the .versions tree is read-only")
        if parent_inode == ROOT_INODE and name == VERSIONS:
            if exists:
                raise errors.Exists(".versions is reserved for the version history")
            raise errors.VaultReadOnly("the .versions tree is read-only")
        self._mode(volume.require(parent_inode, write=True), os.W_OK | os.X_OK)

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
        session = self.gate.session
        volume = session.volume if session is not None else None
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
        pending = node.content is not None and node.content.changed
        used = node.size if node.allocated is None or pending else min(node.size, node.allocated)
        attr.st_blocks = (used + 511) // 512
        attr.st_atime_ns = node.atime
        attr.st_mtime_ns = node.mtime
        attr.st_ctime_ns = node.ctime
        return attr

    @boundary
    @by_inode
    async def lookup(self, parent_inode: InodeT, name: bytes, ctx: RequestContext) -> pyfuse3.EntryAttributes:
        if parent_inode == ROOT_INODE and name == VERSIONS:
            return self.entry(self.gate.view().root())
        self._mode(self.vol.require(parent_inode), os.X_OK)
        return self.entry(self.vol.lookup(parent_inode, name))

    async def forget(self, inode_list: Sequence[tuple[InodeT, int]]) -> None:
        self.gate.forget(list(inode_list))

    @boundary
    @by_inode
    async def getattr(self, inode: InodeT, ctx: RequestContext) -> pyfuse3.EntryAttributes:
        return self.entry(self.vol.require(inode))

    @boundary
    @by_inode
    async def setattr(self, inode: InodeT, attr: pyfuse3.EntryAttributes, fields: SetattrFields,
                      fh: FileHandleT | None, ctx: RequestContext) -> pyfuse3.EntryAttributes:
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
            ctime=attr.st_ctime_ns if fields.update_ctime else None, group=self.group_commit,
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
    @by_inode
    async def readlink(self, inode: InodeT, ctx: RequestContext) -> bytes:
        self.vol.require(inode)
        return self.vol.readlink(inode)

    @boundary
    @by_inode
    async def mknod(self, parent_inode: InodeT, name: bytes, mode: int, rdev: int,
                    ctx: RequestContext) -> pyfuse3.EntryAttributes:
        self._creating(parent_inode, name)
        return self.entry(await self.vol.mknod(parent_inode, name, mode, rdev, caller(ctx),
                                               group=self.group_commit))

    @boundary
    @by_inode
    async def mkdir(self, parent_inode: InodeT, name: bytes, mode: int,
                    ctx: RequestContext) -> pyfuse3.EntryAttributes:
        self._creating(parent_inode, name)
        return self.entry(await self.vol.mkdir(parent_inode, name, mode, caller(ctx),
                                               group=self.group_commit))

    @boundary
    @by_inode
    async def symlink(self, parent_inode: InodeT, name: bytes, target: bytes,
                      ctx: RequestContext) -> pyfuse3.EntryAttributes:
        self._creating(parent_inode, name)
        return self.entry(await self.vol.symlink(parent_inode, name, target, caller(ctx),
                                                 group=self.group_commit))

    @boundary
    @by_inode
    async def unlink(self, parent_inode: InodeT, name: bytes, ctx: RequestContext) -> None:
        self._changing(parent_inode, name)
        await self.vol.unlink(parent_inode, name, group=self.group_commit)

    @boundary
    @by_inode
    async def rmdir(self, parent_inode: InodeT, name: bytes, ctx: RequestContext) -> None:
        self._changing(parent_inode, name)
        await self.vol.rmdir(parent_inode, name, group=self.group_commit)

    @boundary
    async def rename(self, parent_inode_old: InodeT, name_old: bytes, parent_inode_new: InodeT,
                     name_new: bytes, flags: int, ctx: RequestContext) -> None:
        if flags & ~(pyfuse3.RENAME_NOREPLACE | pyfuse3.RENAME_EXCHANGE):
            raise pyfuse3.FUSEError(errno.EINVAL)
        self._changing(parent_inode_old, name_old)
        self._changing(parent_inode_new, name_new)
        await self.vol.rename(parent_inode_old, name_old, parent_inode_new, name_new,
                              noreplace=bool(flags & pyfuse3.RENAME_NOREPLACE),
                              exchange=bool(flags & pyfuse3.RENAME_EXCHANGE),
                              group=self.group_commit)

    @boundary
    async def link(self, inode: InodeT, new_parent_inode: InodeT, new_name: bytes,
                   ctx: RequestContext) -> pyfuse3.EntryAttributes:
        self._creating(new_parent_inode, new_name)
        if BITS.in_view(inode):
            raise errors.VaultReadOnly("the .versions tree is read-only")
        self.vol.require(inode, write=True)
        return self.entry(await self.vol.link(inode, new_parent_inode, new_name, group=self.group_commit))

    @boundary
    @by_inode
    async def open(self, inode: InodeT, flags: int, ctx: RequestContext) -> pyfuse3.FileInfo:
        # The page cache may be kept across opens: what changes a file from
        # inside fusevault (restore, imports) invalidates the kernel's copy.
        write = writing(flags)
        node = self.vol.require(inode, write=write)
        mode = flags & os.O_ACCMODE
        self._mode(node, (os.R_OK if mode != os.O_WRONLY else 0) | (os.W_OK if write else 0))
        fh = await self.vol.open(inode, write=write)
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
    @by_inode
    async def create(self, parent_inode: InodeT, name: bytes, mode: int, flags: int,
                     ctx: RequestContext) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        self._creating(parent_inode, name)
        fh, node = await self.vol.create(parent_inode, name, mode, caller(ctx), defer=True)
        return pyfuse3.FileInfo(fh=fh, keep_cache=True), self.entry(node)

    # --- on handles: also while locking (the kernel writes back), so the
    # session is ``held``, not asked for as unlocked.

    @boundary
    @by_handle("handles")
    async def read(self, fh: FileHandleT, off: int, size: int) -> bytes:
        return await self.gate.held().volume.read(fh, off, size)

    @boundary
    async def write(self, fh: FileHandleT, off: int, buf: bytes) -> int:
        # With the writeback cache the kernel keeps the file's times and sends
        # them by SETATTR: the write leaves them to it.
        return await self.gate.held().volume.write(fh, off, buf, times=not self.enable_writeback_cache)

    @boundary
    @by_handle("handles")
    async def flush(self, fh: FileHandleT) -> None:
        await self.gate.held().volume.flush(fh)

    @boundary
    @by_handle("handles")
    async def release(self, fh: FileHandleT) -> None:
        await self.gate.held().volume.release(fh)

    @boundary
    @by_handle("handles")
    async def fsync(self, fh: FileHandleT, datasync: bool) -> None:
        await self.gate.held().volume.fsync(fh)

    @boundary
    @by_handle("handles")
    async def fallocate(self, fh: FileHandleT, mode: int, offset: int, length: int) -> None:
        # Not a pyfuse3 handler: fs/fallocate.py calls it (a handle the kernel
        # opened for writing).
        await self.gate.held().volume.fallocate(fh, mode, offset, length)

    @boundary
    @by_inode
    async def opendir(self, inode: InodeT, ctx: RequestContext) -> FileHandleT:
        self._mode(self.vol.require(inode), os.R_OK)
        return self.vol.opendir(inode)

    @boundary
    @by_handle("dir_handles")
    async def readdir(self, fh: FileHandleT, start_id: int, token: ReaddirToken) -> None:
        volume = self.gate.held().volume
        await reply_entries(volume, Handle(fh), start_id, token, self.entry, volume.remember)

    @boundary
    @by_handle("dir_handles")
    async def releasedir(self, fh: FileHandleT) -> None:
        self.gate.held().volume.releasedir(fh)

    @boundary
    async def fsyncdir(self, fh: FileHandleT, datasync: bool) -> None:
        await self.vol.fsyncdir()

    @boundary
    async def statfs(self, ctx: RequestContext) -> pyfuse3.StatvfsData:
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
    @by_inode
    async def setxattr(self, inode: InodeT, name: bytes, value: bytes, ctx: RequestContext) -> None:
        self.vol.require(inode, write=True)
        await self.vol.setxattr(inode, name, value)

    @boundary
    @by_inode
    async def getxattr(self, inode: InodeT, name: bytes, ctx: RequestContext) -> bytes:
        self.vol.require(inode)
        return self.vol.getxattr(inode, name)

    @boundary
    @by_inode
    async def listxattr(self, inode: InodeT, ctx: RequestContext) -> Sequence[bytes]:
        self.vol.require(inode)
        return self.vol.listxattr(inode)

    @boundary
    @by_inode
    async def removexattr(self, inode: InodeT, name: bytes, ctx: RequestContext) -> None:
        self.vol.require(inode, write=True)
        await self.vol.removexattr(inode, name)

    @boundary
    @by_inode
    async def access(self, inode: InodeT, mode: int, ctx: RequestContext) -> bool:
        # A personal mount's kernel checks modes itself (default_permissions)
        # and never asks; a shared mount's asks here.  pyfuse3 wants a bool.
        self._mode(self.vol.require(inode, write=bool(mode & os.W_OK)), mode)
        return True
