"""``fusevault export``: decrypted copies of vault files in an ordinary folder.

Each file is written to a hidden temporary name, fsynced and renamed, so
the destination holds whole files only; modes (never setuid, setgid or
sticky) and modification times are kept.  Nothing is overwritten unless
asked, and that is checked for every file before the first one is written.

Everything on the host side goes through a ``HostAccess`` (host_access.py):
in a shared mount, run by root, that is a helper running as the caller, so
the destination is opened, and every folder, temporary file and rename
made in it, with the caller's rights.  Everything is made relative to the
descriptor of the folder it goes in, never following a symbolic link found
on the way (O_NOFOLLOW), and a temporary file is always a new one
(O_EXCL); the mount only writes the plaintext through the descriptor the
helper handed back, in a thread that has the caller's fsuid, fsgid and
groups and no capability meanwhile (``HostAccess.thread_as_user``), so the
kernel's quota and reserved-block checks see the caller, not root (attack
round 45t (3)).  Without ``overwrite`` the final rename refuses an
existing name (RENAME_NOREPLACE), so a file that appeared meanwhile stays.

The destination is the caller's to choose, a FUSE file system of his own
among others, which may never answer (a close waits for its flush): every
call on it, closes included, runs in one of the caller's own threads
(host_access/threads.py), given up when he hangs up (attack round 51t: a
close on the loop froze the shared mount for every user).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from fusevault.encoding import name_start, name_to_str
from fusevault.errors import AlreadyExists, CorruptData, InvalidInput, NoSpace, PermissionDenied, VaultError
from fusevault.host_access import SAFE_MODE_BITS, Direct, HostAccess
from fusevault.host_access.held import Held
from fusevault.host_access.threads import HostThreads
from fusevault.host_access.way import Step, Way
from fusevault.mounts import fusevault_mounts, within
from fusevault.vault.model import names
from fusevault.vault.model.nodes import Node
from fusevault.vault.services.placing import read_data
from fusevault.vault.volume import Volume

log = logging.getLogger(__name__)

FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NOCTTY


class Tree:
    """A node and everything under it, each folder before what it holds, names in order: as ``Step``s
    (``steps``, the export: a name below its folder's step) or as (path relative to the destination,
    node) (iterated: a link's manifest names whole paths), each path joined only as it is asked for.
    Kept whole, the paths of a chain of D folders held D²/2 names' worth of bytes: a member's chain
    10,000 deep of 255-byte names in a shared folder, exported or linked by its owner, was 12 GB in the
    mount (root's, in a shared mount); here the names are kept once each.  Iterable more than once
    (``check`` first, then the copy)."""

    def __init__(self) -> None:
        self._entries: list[tuple[int, str, Node]] = []  # (depth, name, node), in order

    def add(self, depth: int, name: str, node: Node) -> None:
        self._entries.append((depth, name, node))

    def __len__(self) -> int:
        return len(self._entries)

    def steps(self) -> Iterator[tuple[Step, Node]]:
        """(its step from the destination, node) for each entry but the top named "" (the destination
        itself, at the root): a step per entry, its folder's shared, never a whole path (attack round
        63c (2): each entry's path joined here, then split again by the way, was work quadratic in a
        chain's depth, twice an export)."""
        way: list[Step | None] = []
        for depth, name, node in self._entries:
            del way[depth:]
            up = way[-1] if way else None
            step = Step(up, name) if name or depth else None  # the top's name is "" at the root
            way.append(step)
            if step is not None:
                yield step, node

    def __iter__(self) -> Iterator[tuple[str, Node]]:
        way: list[str] = []
        for depth, name, node in self._entries:
            del way[depth:]
            way.append(name)
            yield "/".join(way[1:] if not way[0] else way), node  # the top's name is "" at the root


def tree(volume: Volume, node: Node, rel: str) -> Tree:
    """The ``Tree`` of ``node`` named ``rel``.  Walked with a list, not a call per folder: a chain of
    folders as deep as a writer of a shared folder likes to make it (attack round 24c (2)) is
    exported or linked like any other tree, never a RecursionError."""
    found = Tree()
    todo = [(0, rel, node)]
    folders: set[int] = set()
    while todo:
        depth, name, each = todo.pop()
        if each.is_dir:
            if each.ino in folders:  # a folder named twice is refused where it comes in (round 28c (1))
                continue
            folders.add(each.ino)
        found.add(depth, name, each)
        if not each.is_dir:
            continue
        below = []
        for child, ino in sorted(each.children.items()):
            if not names.valid(child):  # refused where it came in; never a host path
                raise CorruptData(f"a name in {name_to_str(volume.path_of(each))} is not a file name")
            below.append((depth + 1, name_to_str(child), volume.node(ino)))
        todo.extend(reversed(below))  # the first name is taken next
    return found


def _failed(where: Path, err: OSError) -> VaultError:
    """An OSError of the host (the caller's own, in a shared mount) as one line."""
    reason = err.strerror or str(err)
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermissionDenied(f"cannot write {where}: {reason}")
    if err.errno == errno.EEXIST:
        return AlreadyExists(f"{where} exists (use --overwrite to replace it)")
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace(f"cannot write {where}: {reason}")
    if err.errno in (errno.ELOOP, errno.ENOTDIR):
        return InvalidInput(f"{where}: a symbolic link or a file is in the way (links are not followed)")
    return VaultError(f"cannot write {where}: {reason}")


class Destination:
    """The destination folder, opened as the caller, and the folders made in it (by descriptor).

    Only the folders on the way down to the current one are open, a bounded number of them
    (host_access/way.py): one kept per folder made, an export of thousands of empty folders took as
    many of root's descriptors (EMFILE for every user of the shared mount; attack round 58a (1)).
    A temporary file made holds its own folder (``Held.lent``) until it is placed or removed, the
    export over or not: its removal, queued until a thread of the caller's is free, is never refused
    (attack rounds 57a (3), 58a (2))."""

    def __init__(self, host: HostAccess, dest: Path) -> None:
        self.host = host
        self.dest = dest
        try:
            fd = host.open(str(dest), os.O_RDONLY | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            raise InvalidInput(f"{dest} is not an existing folder") from None
        except OSError as err:
            raise _failed(dest, err) from None
        self._way = Way(fd, self._enter)
        # Calls given up at the caller's hangup go on in his threads (HostThreads): ``close`` leaves the
        # way to the last call still under way, and a call ending after it keeps nothing.
        self._lock = threading.Lock()
        self._busy = 0
        self._closed = False
        try:
            # Where the descriptor really is, not what the path said a moment ago.
            real = os.readlink(f"/proc/self/fd/{fd}")
            for mountpoint in fusevault_mounts():
                if within(real, mountpoint):
                    raise InvalidInput(f"{dest} is inside the mounted vault at {mountpoint}: "
                                       "copy with cp instead")
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._busy:
                return  # a call given up still uses the way: closed when it ends (``_in_use``)
        self._way.close()  # folders only: what a temporary file holds stays open until it is removed

    @contextlib.contextmanager
    def _in_use(self) -> Iterator[None]:
        """Around a call that uses or moves the way: none closed under it, none kept after it
        once the export is over (attack round 53b, (1))."""
        with self._lock:
            if self._closed:
                raise OSError(errno.ECANCELED, "the export is over")
            self._busy += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1
                last = self._closed and not self._busy
            if last:
                self._way.close()

    def _over(self) -> bool:
        with self._lock:
            return self._closed

    def check(self, entries: Iterable[tuple[Step, Node]]) -> None:
        """Nothing is there yet that would be replaced (before the first file is written): ``entries``
        in a ``Tree``'s order (each folder before what it holds)."""
        with self._in_use():
            self._check(entries)

    def _check(self, entries: Iterable[tuple[Step, Node]]) -> None:
        """Each name looked up in its own folder, reached by the way (folder by folder, never through a
        link) and made nowhere: looked up from the destination by its whole path, a file past PATH_MAX
        (ENAMETOOLONG) refused the export unless ``--overwrite`` was given (attack round 63c (3)), and a
        link on the way was followed.  A folder missing has nothing under it: what follows it in the
        tree's order, deeper than it, is passed over, never looked up again entry by entry.  A name
        appearing meanwhile is still never replaced: the final rename refuses it (RENAME_NOREPLACE)."""
        missing = 0  # the depth of the last folder found missing (0: none)
        for step, node in entries:
            if missing and step.depth > missing:
                continue  # under a folder not there
            missing = 0
            if node.is_dir:
                continue
            try:
                parent = self._way.to(step.up, self._look).thing
            except FileNotFoundError:
                missing = self._way.depth + 1  # the first folder the way could not enter
                continue
            try:
                self.host.lstat(step.name, dir_fd=parent)
            except FileNotFoundError:
                continue
            except OSError as err:
                raise _failed(self.dest / step.path(), err) from None
            raise AlreadyExists(f"{self.dest / step.path()} exists (use --overwrite to replace it)")

    def _look(self, parent: int, name: str, where: Callable[[], str]) -> int:
        """The descriptor of folder ``name`` in ``parent``, never made (the check's ``enter``):
        FileNotFoundError when it is not there."""
        try:
            return self.host.open(name, FOLDER, dir_fd=parent)
        except FileNotFoundError:
            raise
        except OSError as err:  # a link or a file in the way: the copy would refuse it there
            raise _failed(self.dest / where(), err) from None

    def folder(self, step: Step) -> None:
        """Folder ``step`` made (0700) where missing; never through a link."""
        with self._in_use():
            self._way.to(step)

    def _enter(self, parent: int, name: str, where: Callable[[], str]) -> int:
        """The descriptor of folder ``name`` in ``parent``, made where missing (the way's ``enter``)."""
        try:
            try:
                self.host.mkdir(name, 0o700, dir_fd=parent)
            except FileExistsError:
                pass
            return self.host.open(name, FOLDER, dir_fd=parent)
        except OSError as err:
            raise _failed(self.dest / where(), err) from None

    def create(self, step: Step) -> tuple[Held[int], str, int]:
        """A new hidden file next to ``step``: (its folder, held until ``place`` or ``discard``, its
        name, its descriptor)."""
        with self._in_use():
            parent = self._way.to(step.up).lent()
            try:
                temp, fd = self._create(parent.thing, step)
            except BaseException:
                parent.close()
                raise
            if self._over():  # its caller gone meanwhile: nobody would close it nor remove it
                _close(fd)
                self.discard(parent, temp)
                raise OSError(errno.ECANCELED, "the export is over")
            return parent, temp, fd

    def _create(self, parent: int, step: Step) -> tuple[str, int]:
        for _ in range(16):
            temp = f".{name_start(step.name)}.fvpart-export-{secrets.token_hex(4)}"
            try:
                return temp, self.host.open(temp, NEW_FILE, 0o600, dir_fd=parent)
            except FileExistsError:
                continue  # someone's file (or link) of that name: another name, never theirs
            except OSError as err:
                raise _failed(self.dest / step.path(), err) from None
        raise AlreadyExists(f"no free temporary name next to {self.dest / step.path()}")

    def symlink(self, step: Step, target: str, overwrite: bool) -> None:
        with self._in_use():
            self._symlink(step, target, overwrite)

    def _symlink(self, step: Step, target: str, overwrite: bool) -> None:
        parent = self._way.to(step.up).thing  # open until this call is over
        for _ in range(16):
            temp = f".{name_start(step.name)}.fvpart-export-{secrets.token_hex(4)}"
            try:
                self.host.symlink(target, temp, dir_fd=parent)
                break
            except FileExistsError:
                continue
            except OSError as err:
                raise _failed(self.dest / step.path(), err) from None
        else:
            raise AlreadyExists(f"no free temporary name next to {self.dest / step.path()}")
        self._place(parent, temp, step, overwrite)

    def place(self, parent: Held[int], temp: str, step: Step, overwrite: bool) -> None:
        """Rename the finished temporary file to its name, as the caller; then make it durable.  Its
        folder let go once it ran (placed, or removed on failure); refused, the export over, it is left
        to ``discard``."""
        with self._in_use():
            try:
                parent.holding(self._place, parent.thing, temp, step, overwrite)
            finally:
                parent.close()

    def _place(self, parent: int, temp: str, step: Step, overwrite: bool) -> None:
        try:
            self.host.rename(temp, step.name, dir_fd=parent, noreplace=not overwrite)
        except OSError as err:
            self._discard(parent, temp)
            raise _failed(self.dest / step.path(), err) from None
        os.fsync(parent)

    def as_user(self, write: Callable[..., None], *args: object) -> None:
        """``write(*args)`` (a write through a descriptor of the destination) with the caller's
        rights, in this thread: root's process never writes a user's export as root."""
        with self.host.thread_as_user():
            write(*args)

    def drop_created(self, made: tuple[Held[int], str, int]) -> None:
        """What ``create`` made, its caller gone: closed, and removed through the folder it holds."""
        parent, temp, fd = made
        _close(fd)
        self.discard(parent, temp)

    def discard(self, parent: Held[int], temp: str) -> None:
        """The temporary file removed, its folder let go: never refused, the export over or not (a
        clean-up queued until a thread of the caller's is free ran after the export's close, refused,
        and the file stayed: attack rounds 57a (3), 58a (2)).  Once ``place`` ran, nothing to do."""
        try:
            with contextlib.suppress(OSError):  # ECANCELED: placed (or removed) already
                parent.holding(self._discard, parent.thing, temp)
        finally:
            parent.close()

    def _discard(self, parent: int, temp: str) -> None:
        try:
            self.host.unlink(temp, dir_fd=parent)
        except OSError:
            pass


async def export(volume: Volume, path: bytes, dest: Path, overwrite: bool = False,
                 host: HostAccess | None = None, threads: HostThreads | None = None) -> dict:
    """``threads``: the caller's own (requests.py keeps them per user)."""
    top = volume.resolve(path)
    base = name_to_str(path.rstrip(b"/").rpartition(b"/")[2]) if path.strip(b"/") else ""
    paths = tree(volume, top, base)
    threads = threads or HostThreads()
    out = await threads.run(Destination, host or Direct(), dest, discard=Destination.close)
    try:
        if not overwrite:
            await threads.run(out.check, paths.steps())
        files = size = 0
        for step, node in paths.steps():  # a step each, one name below its folder's (63c (2))
            if node.is_dir:
                await threads.run(out.folder, step)
            elif stat.S_ISLNK(node.mode):
                target = os.fsdecode(volume.readlink(node.ino))
                await threads.run(out.symlink, step, target, overwrite)
                files += 1
            elif node.is_reg:
                size += await _write(volume, node, out, threads, step, overwrite)
                files += 1
    finally:
        out.close()  # folders only: a folder's close waits for nothing (FUSE sends no flush for it)
    return {"exported": str(dest / base if base else dest), "files": files, "bytes": size}


async def _write(volume: Volume, node: Node, out: Destination, threads: HostThreads, step: Step,
                 overwrite: bool) -> int:
    # Given up as it returns (his hangup), the file made is closed and removed where it was made: taken
    # by nobody, root's descriptor of it stayed open, one per export (attack round 57a (1)).
    parent, temp, fd = await threads.run(out.create, step, discard=out.drop_created)
    # Every call on the file holds it: a write given up (his hangup) may go on looping in its thread,
    # so the close is left to it; closed beside it, the number went to the mount's next file, which
    # got the rest of his bytes through root's descriptor (attack round 56a (1)).
    file = Held(fd, _close)
    try:
        try:
            size = node.size
            # Only the file's data is written: its holes are sought over and the
            # length set at the end, so a sparse file stays sparse.  Written as
            # zeros, a 1 TiB file that costs nothing in the vault filled the disk
            # of the destination (attack round 45t (3)).
            async for offset, data in read_data(volume, node):
                await threads.run(out.as_user, file.holding, _write_all, fd, offset, data)
            await threads.run(out.as_user, file.holding, _finish, fd, node, size)
        except OSError as err:
            raise _failed(out.dest / step.path(), err) from None
        finally:
            await threads.clean_up(file.close)  # a close waits for the file system's flush: never on the loop
        await threads.run(out.place, parent, temp, step, overwrite)
    except BaseException:
        await threads.clean_up(out.discard, parent, temp)  # holds ``parent`` only, never refused
        raise
    return node.size


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):  # the file was written and fsynced, or is discarded anyway
        os.close(fd)


def _write_all(fd: int, offset: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _finish(fd: int, node: Node, size: int) -> None:
    os.ftruncate(fd, size)  # the length, past a final hole (never written)
    # The file is the caller's own, new (O_EXCL): its mode without setuid,
    # setgid or sticky, whatever the vault says.
    try:
        os.fchmod(fd, stat.S_IMODE(node.mode) & SAFE_MODE_BITS)
        os.utime(fd, ns=(node.atime, node.mtime))
    except PermissionError:
        # Made as the caller (his rights bound the writes: 45t (3)), on a file system that shows every
        # file with a fixed owner (vfat, cifs mounted uid=0,gid=users) the file is not his to chmod:
        # its contents are whole, its mode and times the file system's, as `cp` leaves them (50d (2)).
        log.info("an exported file's mode and times were not kept: the destination does not let its "
                 "writer set them")
    os.fsync(fd)
