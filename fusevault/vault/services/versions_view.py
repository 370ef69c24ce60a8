"""The read-only ``.versions/`` tree at the root of the mount.

``.versions/`` mirrors the live tree: a directory there for every live
directory and every live file; the directory of a file lists its versions,
each a read-only file named by the time it was made (``history.version_names``).
The entry is hidden from the root's listing (like ZFS's ``.zfs`` with
``snapdir=hidden``) so that ``du``, ``find``, ``rsync`` and backups do not
walk every old version, and is reachable by its name.

Inode numbers: the mirror of live inode N is VIEW_BASE + N (so ``.versions``
itself is VIEW_BASE + 1); version files get numbers from FILE_BASE up, one per
(file, version) ever looked up, kept for the life of the mount.
"""

from __future__ import annotations

import functools
import stat
from collections import Counter

from fusevault.encoding import name_to_str
from fusevault.errors import BadHandle, NotFound, VaultReadOnly
from fusevault.vault.files.content import Content
from fusevault.vault.model.history import Version, extension, version_names
from fusevault.vault.model.nodes import Node
from fusevault.vault.services.recovery import versions as versions_of_file
from fusevault.vault.volume import ROOT_INODE, Volume

NAME = b".versions"
VIEW_BASE = 1 << 48
FILE_BASE = 1 << 56


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
        node = Node(ino, real.fid, real.owner, real.dek, stat.S_IFREG | (real.mode & 0o444),
                    real.uid, real.gid, when=version.mtime)
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

    async def _versions(self, real: Node) -> dict[bytes, Version]:
        versions = await versions_of_file(self.vol, real)
        name = real.links[0][1] if real.links else b""
        named = version_names(versions, extension(name_to_str(name)))
        return {n.encode(): v for n, v in named.items() if v.vid not in self.vol.retiring}

    async def lookup(self, parent_ino: int, name: bytes) -> Node:
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
        version = (await self._versions(real)).get(name)
        if version is None:
            raise NotFound("no such version")
        return self._file(real, version)

    # --- listing

    async def opendir(self, ino: int, fh: int) -> None:
        real = self._real(ino)
        up = self.vol.node(real.links[0][0]) if real.links else real
        entries = [(b".", self._mirror(real)), (b"..", self._mirror(up))]
        if real.is_dir:
            for name, child_ino in real.children.items():
                child = self.vol.node(child_ino)
                if child.is_dir or child.is_reg:
                    entries.append((name, self._mirror(child)))
        else:
            entries += [(name, self._file(real, v)) for name, v in (await self._versions(real)).items()]
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

    async def open(self, ino: int, fh: int, writing: bool) -> None:
        """Open a version, its contents in a worker thread: opening reads and checks its
        manifest (in a vault kept in CouchDB, with the version document from the server)."""
        if writing:
            raise VaultReadOnly("old versions are read-only: restore one to change it")
        try:
            real, version = self.files[ino]
        except KeyError:
            raise NotFound("no such version") from None
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
