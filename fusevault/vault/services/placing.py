"""Putting whole files into a loaded Volume from inside fusevault (not through the kernel).

Used by restore, the importer, the drop-box collector and export.  Whoever
calls, the Volume decides what may be written: a folder shared READ-only (or
a share's virtual folder) takes no file, whichever way it is reached.  Lookup counts belong to
the kernel: what the Volume counts for a node made here is given back at
once.  A file arrives under a hidden temporary name and is renamed into
place, so a reader of the mount sees the old file or the new one, never a
half-written one, and a file replaced this way keeps its history (the
Volume's save-by-rename lineage).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import stat
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol

from fusevault.encoding import bytes_start, name_to_str
from fusevault.errors import Exists, InvalidInput, ReservedName, VaultError
from fusevault.modes import folder_mode
from fusevault.vault.model import names
from fusevault.vault.model.nodes import ROOT_INODE, Node
from fusevault.vault.tree.arrivals import unsaved
from fusevault.vault.volume import Caller, Volume

log = logging.getLogger(__name__)

READ_CHUNK = 1024 * 1024


class KernelCache(Protocol):
    """What the kernel may still cache about names and files changed here."""

    async def entry(self, parent_ino: int, name: bytes) -> None: ...

    async def inode(self, ino: int) -> None: ...

    async def drop_all(self, entries: list[tuple[int, bytes]], inodes: list[int]) -> None:
        """Many names and inodes at once (a lock): one worker thread for all."""

    async def resized(self, ino: int, size: int, tail: bytes) -> None:
        """A file's contents changed from inside: forget them, and learn that
        it is ``size`` long, ending with ``tail``."""


class NoKernel:
    """An unmounted vault: nothing is cached anywhere."""

    async def resized(self, ino: int, size: int, tail: bytes) -> None:
        pass

    async def entry(self, parent_ino: int, name: bytes) -> None:
        pass

    async def inode(self, ino: int) -> None:
        pass

    async def drop_all(self, entries: list[tuple[int, bytes]], inodes: list[int]) -> None:
        pass


def split(path: bytes) -> tuple[bytes, bytes]:
    parent, _, name = path.strip(b"/").rpartition(b"/")
    if not name:
        raise InvalidInput("a file path is needed, not the vault's root")
    return parent, name


async def make_dirs(volume: Volume, path: bytes, caller: Caller) -> Node:
    """The directory at ``path`` (relative to the root), made like ``mkdir -p``
    where missing, to put something in: PermissionDenied unless this user may
    write there."""
    parent = volume.resolve(b"")
    for part in [p for p in path.split(b"/") if p]:
        child = parent.children.get(part)
        if child is None:
            if parent.ino == ROOT_INODE and part in names.RESERVED_AT_ROOT:
                # Made here, the folder would hide the view of that name (attack round 52t).
                raise ReservedName(f"{name_to_str(part)} is kept at the root for a view of the mount: "
                                   "not made as a folder")
            made = await volume.mkdir(parent.ino, part, folder_mode(), caller)  # her umask (53d (6))
            volume.forget(made.ino, 1)  # made here, not looked up by the kernel
            parent = made
        else:
            parent = volume.check(volume.node(child))
            if not parent.is_dir:
                raise Exists(f"{name_to_str(part)} is in the way: it is not a directory")
    return volume.check(parent, write=True)


# What a file may be placed over: given what is at the name when the rename is made (None: nothing).
Judge = Callable[[Node | None], bool]
# Names a file is tried under beside its place before giving up, each found free then taken meanwhile.
BESIDE_TRIES = 64


def nothing(target: Node | None) -> bool:
    """Placed only at a free name (a rename with ``noreplace``)."""
    return target is None


def judged(node: Node | None) -> Judge:
    """Placed only over ``node`` in the state it is in now (the same file, its contents committed as
    now, no write of them pending nor being committed), or at its name freed since;
    ``None``: only at a free name.  A caller judges what is at a name (the importer: nothing of hers),
    then writes for a while: whatever came there meanwhile (her editor's save, a new file of hers, her
    write into that very file) is another file than the one judged, never renamed over (attack round
    63a (1))."""
    if node is None or not node.is_reg:
        return nothing
    fid, head = node.fid, node.head

    # Pending (``unsaved``): written and not committed, or a commit under way (its content lock held).
    # A version being committed is sealed first, which clears ``changed``, then waits for the metadata
    # lock to set the head: the flag alone let this rename go first, over her save (64a (1)).
    def still(target: Node | None) -> bool:
        return target is None or (target.fid == fid and target.head == head and not unsaved(target))

    return still


async def write_file(volume: Volume, parent: Node, name: bytes, chunks: AsyncIterator[bytes | int], *,
                     mode: int, caller: Caller, kernel: KernelCache,
                     mtime_ns: int | None = None, over: Judge | None = None,
                     beside: Iterator[bytes] | None = None) -> tuple[Node, str]:
    """Write ``chunks`` as the file ``parent/name``; return it and its SHA-256.

    ``over`` None: whatever is at the name is replaced (a folder of the caller's own, made for this).
    Else the file is put at ``name`` only if ``over`` accepts what is there at the rename (``judged``,
    ``nothing``), else under the first of ``beside`` free then (never renamed over: noreplace), and
    Exists if none is (``beside`` None, or ``BESIDE_TRIES`` names taken meanwhile): no half file stays.
    Where it went: ``node.links``.

    An int in ``chunks`` is a hole of that many bytes (the source's, found
    with SEEK_HOLE), and a chunk of zeros is taken as one: both are skipped
    over, never sealed, so a sparse file costs the vault its data alone, not
    its apparent size (attack round 45t (3): a 1 TiB sparse file in a
    watched folder grew the vault until unmounted).  They are hashed as the
    zeros they read as.

    Not fsynced: a caller that needs it on disk fsyncs it (the importer does
    before it removes a source)."""
    volume.check(parent, write=True)  # before a stale temporary file is touched
    volume.tree.check_name(name)  # before any byte is written: never a whole file thrown away (69c (5))
    temp, fh, node = await _create_temp(volume, parent, name, mode, caller)
    try:
        volume.forget(node.ino, 1)
        digest = hashlib.sha256()
        try:
            try:
                offset = 0
                async for data in chunks:
                    if isinstance(data, int):
                        await hash_zeros(volume, digest, data)
                        offset += data
                        continue
                    digest.update(data)
                    if not zeros(data):
                        await volume.write(fh, offset, data)
                    offset += len(data)
                if offset > node.size:  # it ends with a hole: as long as the source, nothing stored for it
                    await volume.fallocate(fh, 0, 0, offset)
                if mtime_ns is not None:
                    await volume.setattr(node.ino, mtime=mtime_ns)
            finally:
                await volume.release(fh)
        except Exception:
            # The source failed (unreadable, or not what it claimed): no half file stays behind.
            await volume.unlink(parent.ino, temp)
            await kernel.entry(parent.ino, temp)
            raise
        replaced = parent.children.get(name)
        try:
            placed = await _place(volume, parent, temp, name, over, beside)
        except Exception:
            await volume.unlink(parent.ino, temp)
            await kernel.entry(parent.ino, temp)
            raise
    finally:
        _writing.discard((parent.fid, temp))  # placed, or dropped: no longer being written
    # A listing (READDIRPLUS) may have shown the kernel the temporary name and
    # its size while it grew; with writeback caching the kernel's size wins
    # over ours until it is told to forget it.
    await kernel.entry(parent.ino, temp)
    await kernel.inode(node.ino)
    await kernel.entry(parent.ino, placed)
    if replaced is not None and placed == name:
        await kernel.inode(replaced)
    await kernel.inode(parent.ino)
    return node, digest.hexdigest()


# A write's temporary name: ``.NAME.fvpart`` where that is free or holds a crash's leftover (a regular
# file no write of this process holds: dropped, its contents are in no other file), else a random one
# (``.NAME.fvpart-<hex>``, as ``remove_if`` and exports use).  The fixed name alone took whatever stood
# there for a leftover: a folder of that name (made through a watched folder by anyone who may write
# into it) stopped every import of NAME for good, IsADirectory at each retry (attack round 69c (2));
# and a second write of NAME removed the first's file mid-write.  One look at one name: no walk of
# the folder per file written.  A name is claimed in ``_writing`` before the first await (the
# leftover's unlink, the create): claimed only once created, a second write of NAME begun while the
# first's create committed took its new file for a leftover and removed it (70c (1)).  One claim per
# write: a name claimed by another write is passed over, so no two writes share one entry.
TEMP_HEX = 8
TEMP_TRIES = 8  # random names tried (each taken only by a guess of 32 bits) before Exists
# The temporary files this process writes now (parent's id, name): never taken for a leftover.
_writing: set[tuple[str, bytes]] = set()


async def _create_temp(volume: Volume, parent: Node, name: bytes, mode: int,
                       caller: Caller) -> tuple[bytes, int, Node]:
    """A new file at a free temporary name of ``name``, noted as being written until placed."""
    assert parent.children is not None
    start = b"." + bytes_start(name, 200) + b".fvpart"
    randoms = [start + b"-" + secrets.token_hex(TEMP_HEX // 2).encode() for _ in range(TEMP_TRIES)]
    for temp in [start, *randoms]:
        claim = (parent.fid, temp)
        if claim in _writing:
            continue
        if temp == start and (there := volume.get(parent.children.get(temp))) is not None \
                and not there.is_reg:
            continue  # a folder, a link: not ours, left alone
        _writing.add(claim)  # this write's, from here on (no await between the look and the claim)
        created = False
        try:
            if temp == start and volume.get(parent.children.get(temp)) is not None:
                try:
                    await volume.unlink(parent.ino, temp)  # a crash's leftover
                except VaultError as err:  # another's that she may not remove: left, a random name taken
                    log.info("a temporary file beside %s left: %s", name_to_str(name), err)
                    continue
            try:
                fh, node = await volume.create(parent.ino, temp, stat.S_IMODE(mode), caller)
            except Exists:
                continue
            created = True
            return temp, fh, node
        finally:
            if not created:
                _writing.discard(claim)  # not this write's after all (or it was cancelled): released
    raise Exists(f"no free temporary name to write {name_to_str(name)} under")


async def _place(volume: Volume, parent: Node, temp: bytes, name: bytes, over: Judge | None,
                 beside: Iterator[bytes] | None) -> bytes:
    """``parent/temp`` renamed to ``name`` (see ``write_file``), or beside it: the name it went to.  What
    is at a name is judged in the rename itself, under the tree's lock: judged before it, a save of
    hers made while the rename waited for the lock was written over."""
    try:
        await volume.rename(parent.ino, temp, parent.ino, name, noreplace=False, exchange=False, over=over)
        return name
    except ReservedName:
        raise
    except Exists:
        if beside is None:
            raise
    assert parent.children is not None
    tries = 0
    for other in beside:
        if other in parent.children:
            continue  # taken: the next (a folder's names are looked at here, no await)
        try:
            await volume.rename(parent.ino, temp, parent.ino, other, noreplace=True, exchange=False)
            return other
        except ReservedName:
            raise
        except Exists:
            tries += 1
            if tries >= BESIDE_TRIES:
                break
    raise Exists(f"no free name beside {name_to_str(name)} to put the file at")


ZEROS = bytes(READ_CHUNK)
HASH_STEP = 64 * READ_CHUNK  # zeros hashed per worker-thread call: a long hole leaves the loop free


def zeros(data: bytes) -> bool:
    """Whether ``data`` is all zeros (bytes compared with bytes: a memcmp)."""
    if len(data) > len(ZEROS):
        return data.count(0) == len(data)
    return data == ZEROS[:len(data)]


async def hash_zeros(volume: Volume, digest: Any, length: int) -> None:
    """``digest`` of ``length`` zero bytes (a hole reads as zeros), in worker
    threads, HASH_STEP bytes each (a checkpoint between: a cancel is taken there)."""
    for start in range(0, length, HASH_STEP):
        await volume.in_thread(_update_zeros, digest, min(HASH_STEP, length - start))


def _update_zeros(digest: Any, length: int) -> None:
    for start in range(0, length, READ_CHUNK):
        digest.update(ZEROS[:min(READ_CHUNK, length - start)])


TAIL = 4096  # bytes handed to the kernel with a new size (one page)


async def contents_changed(volume: Volume, kernel: KernelCache, node: Node, old_size: int) -> None:
    """Tell the kernel that a file's contents changed from inside (a restore).

    Invalidating is not enough with the writeback cache: the kernel then
    trusts its own size over ours, so the file would read cut short at the
    old size.  Handing the kernel the file's last bytes at their place (a
    store notification) makes it take a larger size.  It takes no smaller
    size that way: a file that shrank is only invalidated (what the kernel
    then shows is in docs/ARCHITECTURE.md)."""
    tail = b""
    if node.size > old_size:
        start = max(0, node.size - TAIL)
        fh = await volume.open(node.ino)
        try:
            tail = await volume.read(fh, start, node.size - start)
        finally:
            await volume.release(fh)
    await kernel.resized(node.ino, node.size, tail)


async def make_durable(volume: Volume, node: Node) -> None:
    """The file's contents and its document on disk (fsync), as a close-and-fsync would."""
    fh = await volume.open(node.ino)
    try:
        await volume.fsync(fh)
    finally:
        await volume.release(fh)


async def read_data(volume: Volume, node: Node) -> AsyncIterator[tuple[int, bytes]]:
    """(offset, bytes) of the current contents of a vault file, decrypted (and
    so verified), in chunks, for its data alone: its holes (blocks never
    written) are not read, and chunks of stored zeros are left out too.  A
    copy seeks over what is missing and sets the length at its end, so a
    1 TiB sparse file is copied as a sparse file (attack round 45t (3))."""
    size = node.size
    fh = await volume.open(node.ino)
    try:
        for start, end in await volume.data_ranges(fh, size):
            for offset in range(start, end, READ_CHUNK):
                data = await volume.read(fh, offset, min(READ_CHUNK, end - offset))
                if not zeros(data):
                    yield offset, data
    finally:
        await volume.release(fh)


async def file_digest(volume: Volume, node: Node) -> str:
    """The SHA-256 of the current contents of a vault file, as they read.

    Its data is read (``read_data``) and hashed in worker threads; its holes,
    and the stored zeros ``read_data`` leaves out, are hashed as zeros in
    bounded worker-thread steps (``hash_zeros``), so a cancel (an unmount, a
    lock) takes effect between steps and the loop never stands still.  Read
    whole on the loop (a plain read of every chunk), a mapped user's 1 EiB sparse file
    (``truncate -s 1E``: 0 s, 0 bytes) froze the shared mount for every user,
    for decades, when the importer checked it (attack round 46f (2))."""
    digest = hashlib.sha256()
    position = 0
    async for offset, data in read_data(volume, node):
        await hash_zeros(volume, digest, offset - position)
        await volume.in_thread(digest.update, data)
        position = offset + len(data)
    await hash_zeros(volume, digest, node.size - position)
    return digest.hexdigest()
