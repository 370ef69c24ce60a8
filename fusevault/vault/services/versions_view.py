"""The read-only ``.versions/`` tree at the root of the mount.

``.versions/`` mirrors the live tree: a directory there for every live
directory and every live file; the directory of a file lists its versions,
each a read-only file named by the time it was made (``history.version_names``).
The entry is hidden from the root's listing (like ZFS's ``.zfs`` with
``snapdir=hidden``) so that ``du``, ``find``, ``rsync`` and backups do not
walk every old version, and is reachable by its name.

A version of a file this one replaced by a rename (``history.lineage``) is
that file's: it is shown with that file's owner and the strictest of its last
mode and the live file's (``shown``), and a caller who may not read it (a
``Reader``, in a mount other uids use) is neither shown it nor let open it:
another user's rename over her private file grafts nothing he can read
(attack round 49t (1)).

Inode numbers: the mirror of live inode N is VIEW_BASE + N (so ``.versions``
itself is VIEW_BASE + 1); version files get numbers from FILE_BASE up, one per
(file, version) ever looked up, kept for the life of the mount.
"""

from __future__ import annotations

import functools
import stat
from collections import Counter
from dataclasses import dataclass

from fusevault.encoding import name_to_str
from fusevault.errors import BadHandle, NotFound, PermissionDenied, VaultReadOnly
from fusevault.vault.files.content import Content
from fusevault.vault.model import names
from fusevault.vault.model.history import Version, extension, version_names
from fusevault.vault.model.nodes import Node
from fusevault.vault.services.recovery import versions as versions_of_file
from fusevault.vault.volume import ROOT_INODE, Volume

NAME = names.VERSIONS
VIEW_BASE = 1 << 48
FILE_BASE = 1 << 56


@dataclass(frozen=True)
class Reader:
    """Who asks, in a mount other uids use: the view checks a version's own mode for him (the
    kernel checks the mode shown too; this also keeps a version he may not read out of listings)."""

    uid: int
    gids: frozenset[int]

    def may_read(self, mode: int, uid: int, gid: int) -> bool:
        """As the kernel checks r for a file of ``mode`` owned by ``uid``:``gid``: root reads all."""
        if self.uid == 0:
            return True
        if self.uid == uid:
            return bool(mode & stat.S_IRUSR)
        if gid in self.gids:
            return bool(mode & stat.S_IRGRP)
        return bool(mode & stat.S_IROTH)


def shown(real: Node, version: Version) -> tuple[int, int, int]:
    """The (read bits, uid, gid) a version is shown with.  The file's own: its live mode and owner
    (a chmod applies to its old versions too).  One of a file it replaced by a rename: that file's
    owner, and the strictest of that file's last mode and the live one's, so neither the rename
    (another user's, or her ``mv draft over diary``) nor a later chmod opens it to more readers."""
    holder = version.holder
    if holder is None:
        return real.mode & 0o444, real.uid, real.gid
    return real.mode & holder.mode & 0o444, holder.uid, holder.gid


def readable(reader: Reader | None, real: Node, version: Version) -> bool:
    """Whether ``reader`` may read ``version``: the live file and the version as shown (None: the
    mount's own user, who may, as the kernel lets her; another's reach is also checked by it)."""
    return reader is None or (reader.may_read(real.mode, real.uid, real.gid)
                              and reader.may_read(*shown(real, version)))


class VersionsView:
    def __init__(self, volume: Volume) -> None:
        self.vol = volume
        self.file_inos: dict[tuple[str, str], int] = {}
        self.files: dict[int, tuple[Node, Version]] = {}
        self.handles: dict[int, tuple[Content, Version]] = {}
        self.dir_handles: dict[int, list[tuple[bytes, Node]]] = {}
        # Versions open right now: the garbage collector keeps them.
        self.busy: Counter[str] = Counter()

    @staticmethod
    def owns(ino: int) -> bool:
        return ino >= VIEW_BASE

    # --- nodes

    def _mirror(self, real: Node) -> Node:
        readable = real.mode & 0o444
        if real.is_dir:
            # Whoever may list and enter the folder (r and x) may list and
            # enter its mirror: other uids of a mount that lets them in
            # (--allow-other-users) reach no version the live tree hides.
            readable &= (real.mode & 0o111) << 2
        # Whoever may read the file may enter the directory of its versions.
        node = Node(VIEW_BASE + real.ino, real.fid, real.owner, b"",
                    stat.S_IFDIR | readable | readable >> 2, real.uid, real.gid, when=real.mtime)
        node.atime, node.ctime = real.atime, real.ctime
        return node

    def _file(self, real: Node, version: Version) -> Node:
        key = (real.fid, version.vid)
        ino = self.file_inos.get(key)
        if ino is None:
            ino = self.file_inos[key] = FILE_BASE + len(self.file_inos)
        bits, uid, gid = shown(real, version)
        node = Node(ino, real.fid, real.owner, real.dek, stat.S_IFREG | bits, uid, gid, when=version.mtime)
        node.size = version.size
        node.ctime = version.time
        node.links = [(VIEW_BASE, b"")]  # one link, for st_nlink
        self.files[ino] = (real, version)
        return node

    def _real(self, ino: int) -> Node:
        node = self.vol.get(ino - VIEW_BASE)
        if node is None or ino >= FILE_BASE or not (node.is_dir or node.is_reg):
            raise NotFound("no such file")
        return node

    def root(self) -> Node:
        return self._mirror(self.vol.root)

    async def getattr(self, ino: int) -> Node:
        if ino >= FILE_BASE:
            try:
                real, version = self.files[ino]
            except KeyError:
                raise NotFound("no such version") from None
            return self._file(real, version)
        return self._mirror(self._real(ino))

    async def _versions(self, real: Node, reader: Reader | None) -> dict[bytes, Version]:
        """The versions ``reader`` may read, by name (named among all: a name never changes by who asks)."""
        versions = await versions_of_file(self.vol, real)
        name = real.links[0][1] if real.links else b""
        named = version_names(versions, extension(name_to_str(name)))
        return {n.encode(): v for n, v in named.items()
                if v.vid not in self.vol.retiring and readable(reader, real, v)}

    async def lookup(self, parent_ino: int, name: bytes, reader: Reader | None = None) -> Node:
        real = self._real(parent_ino)
        if name == b".":
            return self._mirror(real)
        if name == b"..":
            up = self.vol.node(real.links[0][0]) if real.links else real
            return self._mirror(up) if real.ino != ROOT_INODE else self.vol.root
        if real.is_dir:
            ino = real.children.get(name)
            child = self.vol.get(ino) if ino is not None else None
            if child is None or not (child.is_dir or child.is_reg):
                raise NotFound("no such file")
            return self._mirror(child)
        version = (await self._versions(real, reader)).get(name)
        if version is None:
            raise NotFound("no such version")
        return self._file(real, version)

    # --- listing

    async def opendir(self, ino: int, fh: int, reader: Reader | None = None) -> None:
        real = self._real(ino)
        up = self.vol.node(real.links[0][0]) if real.links else real
        entries = [(b".", self._mirror(real)), (b"..", self._mirror(up))]
        if real.is_dir:
            for name, child_ino in real.children.items():
                child = self.vol.node(child_ino)
                if child.is_dir or child.is_reg:
                    entries.append((name, self._mirror(child)))
        else:
            shown_to = await self._versions(real, reader)
            entries += [(name, self._file(real, v)) for name, v in shown_to.items()]
        self.dir_handles[fh] = entries

    def readdir_entry(self, fh: int, index: int) -> tuple[int, bytes, Node] | None:
        entries = self.dir_handles.get(fh)
        if entries is None:
            raise BadHandle("bad directory handle")
        if index >= len(entries):
            return None
        name, node = entries[index]
        return index, name, node

    # --- reading a version

    async def open(self, ino: int, fh: int, writing: bool, reader: Reader | None = None) -> None:
        """Open a version, its contents in a worker thread: opening reads and checks its
        manifest (in a vault kept in CouchDB, with the version document from the server)."""
        if writing:
            raise VaultReadOnly("old versions are read-only: restore one to change it")
        try:
            real, version = self.files[ino]
        except KeyError:
            raise NotFound("no such version") from None
        # Its inode may have been looked up by another uid, or before a chmod: checked again.
        if not readable(reader, real, version):
            raise PermissionDenied("not allowed by the mode of the file this version belongs to")
        if version.vid in self.vol.retiring:
            raise NotFound("this version is being removed by the retention policy")
        self.busy[version.vid] += 1  # already while it opens: the garbage collector keeps it
        try:
            content = await self.vol.in_thread(functools.partial(
                Content, self.vol.layout, real.owner, version.fid, version.dek, version.manifest, version.vid,
                check_sidecar=False))
            if version.vid in self.vol.retiring:  # the retention policy took it meanwhile
                content.close()
                raise NotFound("this version is being removed by the retention policy")
        except BaseException:
            self._done_with(version.vid)
            raise
        self.handles[fh] = (content, version)

    async def read(self, fh: int, offset: int, size: int) -> bytes:
        content, version = self.handles[fh]
        if content.blocks_to_load(offset, size) > 1 or content.asks_server:
            return await self.vol.in_thread(content.read, offset, size, version.size)
        return content.read(offset, size, version.size)

    def release(self, fh: int) -> None:
        content, version = self.handles.pop(fh)
        content.close()
        self._done_with(version.vid)

    def _done_with(self, vid: str) -> None:
        self.busy[vid] -= 1
        if not self.busy[vid]:
            del self.busy[vid]
