"""Taking one stable source file into the vault, at most once per state of that file.

Every look at the source folder (lstat, open, unlink) goes through a
``HostAccess``: in a shared mount, run by root, a helper running as the
user whose vault it is (fusevault/host_access/), so only what they may read is
imported and only what they may delete is removed.  Files are read through
the descriptor the helper opened.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import stat
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import trio

from fusevault.encoding import name_to_str, shown
from fusevault.errors import Exists, FsError, InvalidInput
from fusevault.host_access import Direct, HostAccess
from fusevault.host_access.held import Held
from fusevault.host_access.pseudo_fs import refuse_pseudo
from fusevault.host_access.threads import HostThreads
from fusevault.imports import source_paths
from fusevault.imports.import_records import (
    DROP_BATCH,
    PATH_MAX,
    Record,
    Stamp,
    dropped_docs,
    load_records,
    record_doc,
    record_id,
    too_long,
)
from fusevault.imports.locations import Location
from fusevault.modes import given_mode
from fusevault.vault.model import names
from fusevault.vault.model.alarms import for_user
from fusevault.vault.model.nodes import Node
from fusevault.vault.model.settings import Settings
from fusevault.vault.services.conflict_copies import RANDOM_HEX, copy_name, copy_names
from fusevault.vault.services.placing import (
    Judge,
    KernelCache,
    file_digest,
    hash_zeros,
    judged,
    make_dirs,
    make_durable,
    nothing,
    split,
    write_file,
)
from fusevault.vault.volume import Caller, Volume

log = logging.getLogger(__name__)
T = TypeVar("T")

READ_CHUNK = 1024 * 1024
# Records added since the last ``drop_unseen`` beyond the ones it kept before it runs again (with twice
# those kept): its look at each record whose vault file is gone is paid once per that many imports.
SLACK = 1000
# A source is opened without following a link and without waiting on a fifo
# swapped in since it was looked at; only a regular file is read.
SOURCE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY


# Outcomes of Importer.take, counted per batch.
NEW, VERSION, MOVED, UNCHANGED, CHANGING, GONE = (
    "new", "new version", "moved", "unchanged", "changed while importing", "gone")


def ignored(name: str) -> bool:
    """Files that are not finished documents: partial downloads, editors' swap and lock files."""
    return (name.endswith(("~", ".part", ".crdownload", ".fvpart", ".swp", ".swx"))
            or ".fvpart-" in name or name.startswith((".#", ".~lock.")))


def open_source(host: HostAccess, root: int, location: str) -> BinaryIO:
    """The regular file at ``location`` in the watched folder (``root``, held), opened as the user;
    FileNotFoundError for anything else (gone, a symbolic link on the way or at the end, a fifo or
    device); PermissionError for one on a kernel pseudo file system (host_access/pseudo_fs.py: a
    procfs file bind-mounted into the folder is still procfs's)."""
    try:
        fd = source_paths.open_file(host, root, location, SOURCE_FLAGS)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise FileNotFoundError(errno.ENOENT, "a symbolic link", location) from None
        raise
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
        if regular:
            # Never a kernel pseudo file system's: its files answer the reader, not the opener (69d (1)).
            refuse_pseudo(fd, location)
    except OSError:
        os.close(fd)  # root may not fstat it (a FUSE file system of the user's): never left open (51t)
        raise
    if not regular:
        os.close(fd)
        raise FileNotFoundError(errno.ENOENT, "not a regular file", location)
    return os.fdopen(fd, "rb")


def _exists(host: HostAccess, root: int, location: str) -> bool:
    try:
        source_paths.lstat(host, root, location)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def _gone_of(host: HostAccess, root: int, locations: list[str]) -> list[str]:
    """Those of ``locations`` no longer in the watched folder (one that cannot be looked at is not)."""
    gone = []
    for location in locations:
        try:
            source_paths.lstat(host, root, location)
        except (FileNotFoundError, NotADirectoryError):
            gone.append(location)
        except OSError:
            pass  # not known to be gone: its record is kept
    return gone


def _gone_unseen(host: HostAccess, root: int, locations: list[str],
                 found: Mapping[Location, object]) -> list[str]:
    """Those of ``locations`` the walk did not see (``found``) and no longer in the watched folder."""
    return _gone_of(host, root, [loc for loc in locations if Location.of(loc) not in found])


def _close_source(source: BinaryIO) -> None:
    """A source opened for a caller gone meanwhile (a lock, an unmount): closed in the thread that
    opened it, not left to trio, which drops it on the loop (attack round 53b, (1))."""
    with contextlib.suppress(OSError):
        source.close()


def source_pieces(fd: int) -> Iterator[bytes | int]:
    """The source's contents from its start: bytes where it holds data and, for each hole
    (SEEK_DATA/SEEK_HOLE), its length as an int, so a sparse file is read, and stored
    (placing.write_file), for its data alone: read whole, a 1 TiB sparse file grew the vault
    until unmounted (attack round 45t (3)).  A file system that cannot tell holes is read
    whole.  Every step moves on, so a file changing meanwhile never makes it loop (a change
    is noticed by its stamp afterwards)."""
    position = 0
    while True:
        try:
            data = os.lseek(fd, position, os.SEEK_DATA)
        except OSError as err:
            if err.errno == errno.ENXIO:  # no data from here on: a hole to the end
                end = os.lseek(fd, 0, os.SEEK_END)
                if end > position:
                    yield end - position
                return
            if err.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ESPIPE):
                raise
            yield from _read_from(fd, position)  # holes not told: read it all
            return
        if data > position:
            yield data - position
            position = data
        hole = max(os.lseek(fd, position, os.SEEK_HOLE), position + 1)
        while position < hole:
            chunk = os.pread(fd, min(READ_CHUNK, hole - position), position)
            if not chunk:
                return  # cut short meanwhile: read up to its end, as a plain read would
            yield chunk
            position += len(chunk)


def _read_from(fd: int, position: int) -> Iterator[bytes]:
    while chunk := os.pread(fd, READ_CHUNK, position):
        yield chunk
        position += len(chunk)


def _hash_next(pieces: Iterator[bytes | int], digest: Any) -> int | None:
    """One step of hashing a source (in a worker thread): its next chunk of data read and
    hashed (0 returned), or the length of its next hole (for the caller to hash as zeros in
    steps), or None at its end."""
    piece = next(pieces, None)
    if isinstance(piece, bytes):
        digest.update(piece)
        return 0
    return piece


def _copy_names(name: bytes, mtime_ns: int) -> Iterator[bytes]:
    """The names a copy of the source is put beside its place under, first free first (``copy_names``:
    the source's mtime to the minute, numbered, then random).  None is longer than ``longest_copy_name``
    (``copy_name`` shows four-digit years: a source's mtime in year 14645 on tmpfs grew the name, or
    failed gmtime)."""
    return copy_names(name, "import", mtime_ns)


def longest_copy_name(name: bytes) -> bytes:
    """A name as long as the longest ``_copy_names`` may give ``name``: a random one's.  The bound is
    checked against it (``Importer._past_path_max``): counted for the first name only, a numbered copy
    beside passed PATH_MAX, its record was dropped at every start and the unchanged source imported
    beside once more each time (attack round 64c (1))."""
    return copy_name(name, "import " + "f" * RANDOM_HEX, 0)


class Importer:
    """Imports files of ``source_dir_to_watch`` under ``import_into``, keeping their relative paths.

    Every file is reached from ``root``, one descriptor of the watched folder held for the whole
    watch (source_paths.py): given by the ImportService, which closes it when the watch ends, or
    opened (and checked) by ``load`` and closed by ``close``."""

    def __init__(self, volume: Volume, settings: Settings, kernel: KernelCache,
                 host: HostAccess | None = None, root: Held[int] | None = None,
                 threads: HostThreads | None = None) -> None:
        assert settings.source_dir_to_watch is not None
        self.vol = volume
        self.host = host or Direct()  # the user's rights on the source folder
        # Every call on the source folder, its reads and closes included, in the user's own threads: a
        # folder of his may be a FUSE file system of his that never answers (host_access/threads.py).
        self.threads = threads or HostThreads()
        self.settings = settings
        self.source = Path(settings.source_dir_to_watch)  # for messages only: never opened by name
        # The watched folder's descriptor, held by every call that looks up a name from it: a call
        # given up goes on in its thread, so it is closed only once none runs (attack round 56a (1)).
        self.root = root
        self._owns_root = root is None
        self.into = settings.import_into
        self.delete = settings.delete_file_from_source
        self.kernel = kernel
        self.caller = Caller(self.host.uid, self.host.gid)
        self.records: dict[str, tuple[Record, str]] = {}
        self.inodes: dict[tuple[int, int], str] = {}  # (dev, ino) -> location, to spot renames
        self._kept = 0  # records held after the last ``drop_unseen``
        self._taking = trio.Lock()  # a take, or a drop of records: never both at once

    async def load(self) -> None:
        if self._owns_root and self.root is None:
            self.root = Held(await self.threads.run(source_paths.hold, self.host, self.settings,
                                                    str(self.vol.layout.root), discard=os.close), os.close)
        # Every record document of the store is read (and each of hers opened) on a worker thread from
        # a snapshot: read on the loop, a mapped user's 100,000 records froze root's shared mount for
        # every user at each restart of her import service (attack round 73b (1)).
        records, past = await self.vol.read_call(load_records, self.vol.store, self.vol.key)
        if past:
            log.warning("import: %d import record(s) naming a path past %d bytes dropped (their vault files "
                        "kept): a source one named is imported again, once, beside the vault's file at its "
                        "place if there is one, unless its own path is past the bound too",
                        len(past), PATH_MAX)
            await self._delete(past)
        self.records = records
        self.inodes = {(r.stamp.dev, r.stamp.ino): loc for loc, (r, _) in self.records.items()}

    async def drop_unseen(self, found: Mapping[Location, object], passed_over: str | None) -> None:
        """After a walk of the watched folder (``found``: the files it saw; ``passed_over``: what it left
        out), the records whose vault file is gone and whose source the walk did not see (nor a look
        now) dropped, their documents deleted, once the records have passed twice those kept by the
        last drop (0 at ``load``) and ``SLACK``: those held stay within that bound (attack round 63c
        (1): kept, one a file imported and deleted since, they grew root's shared mount for good).

        Such a record decides nothing while its source is gone (a file at its location later is new,
        one of hers at its place kept and the source put beside it; a move needs the vault file), but
        it does once the source is back: unchanged, not imported again, which is the only memory that
        she deleted the file from her vault.  So a source is taken as gone only on the walk's evidence:
        whole (nothing passed over) and seeing some file (an empty one may be a disk not mounted yet,
        or the folder removed).  Dropped at ``load`` on a single look, a record whose source was out of
        sight then (a folder moved away a while) let the file she deleted come back (64c (2))."""
        if len(self.records) <= 2 * self._kept + SLACK or passed_over is not None or not found:
            return
        async with self._taking:  # between takes: none holds a record dropped here
            # Only a look up by id here: the parse of each location (up to twice the records kept plus
            # SLACK, deep ones too) is made in her thread with the looks, off the loop (attack round 73b).
            orphans = [loc for loc, (record, _) in self.records.items() if not self.vol.holds(record.fid)]
            gone = await self.in_source(_gone_unseen, orphans, found) if orphans else []
            if gone:
                docs = [(record_id(self.vol.key, loc), self.records.pop(loc)[1]) for loc in gone]
                await self._delete(docs)
                self.inodes = {(r.stamp.dev, r.stamp.ino): loc for loc, (r, _) in self.records.items()}
            self._kept = len(self.records)

    async def _delete(self, docs: list[tuple[str, str]]) -> None:
        """The record documents ``docs`` (id, revision) deleted, ``DROP_BATCH`` a store call on the
        loop, every user's requests served between: up to twice the records kept plus ``SLACK`` go at
        once (``drop_unseen``), in one call a freeze of the shared mount as long as their read was
        (attack round 73b (1))."""
        for start in range(0, len(docs), DROP_BATCH):
            await self.vol.store_call(dropped_docs, self.vol.store, docs[start:start + DROP_BATCH])
            await trio.sleep(0)  # the loop's other tasks between two batches

    def close(self) -> None:
        """Let go of the watched folder, if ``load`` opened it."""
        if self._owns_root and self.root is not None:
            self.root.close()  # a folder's close waits for nothing; left to a given-up call using it
            self.root = None

    async def in_source(self, call: Callable[..., T], *args: Any,
                         discard: Callable[[T], None] | None = None) -> T:
        """``call(host, root, *args)`` in a thread of the user's, the watched folder held meanwhile."""
        if self.root is None:
            raise OSError(errno.EBADF, "the watched folder is not open")
        return await self.threads.run(self.root.holding, call, self.host, self.root.thing, *args,
                                      discard=discard)

    def _as_user(self, call: Callable[..., T], *args: Any) -> T:
        """``call(*args)``, a read of a source (in a worker thread), with the user's fsuid, fsgid and
        groups and no capability (host_access/rights.py): the kernel checks some files' reads against
        the *reader* (procfs's ``stat``, ``wchan``, ``%pK`` pointers), and read in root's process a
        file her helper opened answered root: a root process's memory layout (attack round 69d (1))."""
        with self.host.thread_as_user():
            return call(*args)

    def _vault_path(self, location: str) -> bytes:
        wanted = os.fsencode(f"{self.into}/{location}" if self.into else location)
        # Into the root, a top name of the watched folder kept for a view of the mount (``.versions``,
        # ``shared``, ``groups``) is taken as ``NAME (2)``: imported there, a folder hid her history or
        # passed for a share (attack round 52t (1), (2)).  One stable path per location, so the
        # records still find what they name.  An ``import_into`` of hers into a share is hers to give.
        return names.away_from_reserved(wanted) if self._into_root() else wanted

    def _into_root(self) -> bool:
        return not (self.into or "").strip("/")

    def _say_renamed(self, location: str) -> None:
        """Said (log and ``fusevault status``) when ``location`` went to ``NAME (2)``: see _vault_path."""
        top = names.like_reserved_at_root(os.fsencode(location)) if self._into_root() else None
        if top is not None:
            said = shown(name_to_str(top))  # a look-alike may hold invisible characters (53d (4))
            for_user(self.vol.key.user_id).warn(
                "import-reserved", said, f"imported files named {said} at the root of the "
                f"drive went to {said} (2): the name is (or looks like) one kept for a view of the mount")

    def _past_path_max(self, location: str) -> str | None:
        """Why ``location`` is not imported, when its place in the vault holds a name that is none (past
        ``names.MAX_BYTES``), or its path (in the watched folder, or in the vault, the
        longest name of a copy beside its place counted) passes ``PATH_MAX``: its record would hold it
        whole, for good (attack round 63c (1)); or None.  Within it, every record of it is kept
        (``_save``, ``load_records``: the one rule, ``too_long``)."""
        vault = self._vault_path(location)
        if (why := names.path_problem(vault)) is not None:
            # Refused before a byte of the source is read: found at the rename, the whole source was
            # written and thrown away at every retry (attack round 69c (5)).
            return f"not imported: its place in the vault is {why}"
        _, name = split(vault)
        beside = len(vault) + max(0, len(longest_copy_name(name)) - len(name))
        longest = max(len(os.fsencode(location)), beside)
        if longest <= PATH_MAX:
            return None
        return (f"not imported: its path is {longest:,} bytes long, past the {PATH_MAX:,} a path may have "
                "(a file nearer the top of the watched folder, or with shorter folder names, is imported)")

    async def take(self, location: str) -> tuple[str, int, bool]:
        """Import ``location`` if it needs it: (outcome, bytes written, removed from source).  One whose
        path passes ``PATH_MAX`` raises InvalidInput, said once by the watch (failures_said.py)."""
        if (why := self._past_path_max(location)) is not None:
            raise InvalidInput(why)
        async with self._taking:
            return await self._take(location)

    async def _take(self, location: str) -> tuple[str, int, bool]:
        try:
            st = await self.in_source(source_paths.lstat, location)
        except (FileNotFoundError, NotADirectoryError):
            return GONE, 0, False
        if not stat.S_ISREG(st.st_mode):
            return GONE, 0, False  # symbolic links, devices, sockets: not imported
        stamp = Stamp.of(st)
        known = self.records.get(location)
        if known is None and (moved := await self._find_moved(location, stamp)) is not None:
            await self._move(moved, location)
            return MOVED, 0, False
        if known is not None and known[0].stamp == stamp:
            return UNCHANGED, 0, await self._remove_source(known[0])
        mode = given_mode(stat.S_IMODE(st.st_mode))  # others may write to her watched folder (53d (5))
        if known is None and not self._in_vault(location):
            # New, and nothing there to compare with: copy (and hash) in one pass.
            return await self._copy(location, mode, None, stamp, None)
        try:
            sha, before = await self._hash_source(location)
        except FileNotFoundError:
            return GONE, 0, False
        if (record := await self._already_there(location, known, sha, before)) is not None:
            return UNCHANGED, 0, await self._remove_source(record)
        if known is None:
            # A file is at its place in the vault that no record of an import names (she made it, or
            # the records were removed by whoever writes the store): never written over, the source
            # goes beside it.  Written over, her edit of a file imported before was undone by a store
            # writer who deleted the records, unsaid (attack round 40c (4)).
            for_user(self.vol.key.user_id).warn(
                "import-record", location, f"no import record names {shown(location)}, and the vault has "
                "another file at its place: that file is kept, the source is imported beside it")
            return await self._copy(location, mode, sha, before, known, beside=True)
        changed, over = await self._changed_in_vault(location, known[0])
        if changed:
            # The vault's file holds other contents than the record says it imported: her edit (or
            # the record is an older one, put back by whoever writes the store: attack round 41c
            # (1)).  Never written over: the source goes beside it.
            log.warning("%s changed in the vault since it was imported: the source is imported beside it",
                        shown(location))
            return await self._copy(location, mode, sha, before, known, beside=True)
        return await self._copy(location, mode, sha, before, known, over=over)

    async def _hash_source(self, location: str) -> tuple[str, Stamp]:
        """The SHA-256 of the source (as it reads: holes are zeros) and its stamp before.

        Read for its data alone (``source_pieces``), one chunk per worker-thread step, and
        its holes hashed as zeros in bounded steps (``hash_zeros``): a cancel (an unmount, a
        lock) is taken between steps.  Read whole in one thread call, a changed 1 EiB sparse
        source held a worker slot of every user's and the unmount for years (attack round
        46f (1)).  Hashing a hole still costs CPU time (docs/SECURITY.md)."""
        source = await self.in_source(open_source, location, discard=_close_source)
        held = Held(source, _close_source)  # closed once no given-up read uses it (56a (1))
        try:
            before = Stamp.of(await self.threads.run(held.holding, os.fstat, source.fileno()))
            digest = hashlib.sha256()
            pieces = source_pieces(source.fileno())
            while (hole := await self.threads.run(held.holding, self._as_user, _hash_next, pieces,
                                                  digest)) is not None:
                await hash_zeros(self.vol, digest, hole)
        finally:
            await self.threads.clean_up(held.close)
        return digest.hexdigest(), before

    async def _changed_in_vault(self, location: str, record: Record) -> tuple[bool, Judge]:
        """Whether the file at ``location``'s place in the vault is not what ``record`` imported: other
        contents, or another file while the record's own is elsewhere still (hers, which a move of the
        source was put beside: the same bytes once, written over at the source's next edit; attack round
        60a (2)).  A file of the same contents that took the record's place (her editor's save: a new
        file renamed over it, or written after the old one was renamed to a backup, ``a.txt~``) is the
        import's still (61a (2), 62a (1)): the file's identity counts only where the record was put
        beside the place.  With it, what may be written over (``placing.judged``): the very file judged,
        as it was then (judged before its contents are read: a write of hers meanwhile is a change)."""
        place = self._vault_path(location)
        try:
            node = self.vol.resolve(place)
        except FsError:
            return False, nothing  # gone from the vault: written anew, where nothing came meanwhile
        over = judged(node)  # not a regular file: nothing (the copy goes beside what is there)
        if not node.is_reg:
            return False, over
        own = self.vol.find(record.fid)
        if own is not None and own.ino != node.ino and os.fsencode(record.vault_path) != place:
            return True, over
        return await file_digest(self.vol, node) != record.sha256, over

    def _in_vault(self, location: str) -> bool:
        try:
            self.vol.resolve(self._vault_path(location))
        except FsError:
            return False
        return True

    async def _find_moved(self, location: str, stamp: Stamp) -> Record | None:
        """The record of the file now at ``location`` (stamped ``stamp``) under its old name, gone:
        same inode, size and mtime, and contents that hash to what was imported (the record given
        back stamped as the file is now).  The rename set the file's ctime, so the stamp cannot tell
        a file moved from a new one that got the freed inode number, the old size and a restored
        mtime (``cp -p``, ``tar x``): taken for moved, the vault's old file was renamed to the new
        name, the new contents were never imported, and the next look removed them from the source
        as unchanged (attack round 58c (4)).  A rename is rare: reading the file once costs less
        than importing it again."""
        old = self.inodes.get((stamp.dev, stamp.ino))
        if old is None or old not in self.records:
            return None
        record = self.records[old][0]
        if not record.stamp.kept_by_rename(stamp) or not self.vol.holds(record.fid):
            return None
        if await self.in_source(_exists, old):
            return None
        try:
            sha, now = await self._hash_source(location)
        except FileNotFoundError:
            return None
        if sha != record.sha256 or not now.kept_by_rename(stamp):
            return None  # another file at the old one's inode number: imported as new
        return replace(record, stamp=now)

    async def _move(self, record: Record, location: str) -> None:
        node = self.vol.find(record.fid)
        if node is None:
            return  # deleted from the vault since it was found: nothing to move
        old_dir, old_name = split(os.fsencode(record.vault_path))
        new_dir, new_name = split(self._vault_path(location))
        if self.vol.path_of(node) == os.fsencode(record.vault_path):
            old_parent = self.vol.resolve(old_dir)
            new_parent = await make_dirs(self.vol, new_dir, self.caller)
            if (new_parent.children or {}).get(new_name, node.ino) != node.ino:
                # A file of hers at the new place that no record names: never written over (40c (4)'s
                # rule, as for a new source); the moved file goes beside it.  Renamed over, her file
                # was left as an old version of the moved one, unsaid (attack round 59a (1)).
                for_user(self.vol.key.user_id).warn(
                    "import-record", location, f"{shown(location)} was moved in the watched folder to a "
                    "name the vault has another file at: that file is kept, the moved one is put beside it")
                new_name = next(_copy_names(new_name, record.stamp.mtime_ns))
            try:
                await self.vol.rename(old_parent.ino, old_name, new_parent.ino, new_name,
                                      noreplace=True, exchange=False)
            except Exists:
                pass  # taken meanwhile (the copy's name too): left where it was, never written over
            else:
                await self.kernel.entry(old_parent.ino, old_name)
                await self.kernel.inode(old_parent.ino)
                await self.kernel.inode(new_parent.ino)
        # else the vault file was moved by hand: leave it where it was put
        # Moved by hand past PATH_MAX (a record holds no such path: 63c (1)): the record keeps the place
        # it was put at, which it no longer holds, as for any file moved by hand (left where it is).
        moved = replace(record, file_location=location,
                        vault_path=self._recorded_at(node, os.fsencode(record.vault_path)))
        _, rev = self.records.pop(record.file_location)
        await self.vol.store_call(self.vol.store.put_many, [
            {"_id": record_id(self.vol.key, record.file_location), "_rev": rev, "_deleted": True}])
        await self._save(moved)

    async def _already_there(self, location: str, known: tuple[Record, str] | None, sha: str,
                             stamp: Stamp) -> Record | None:
        """The record to keep when the vault already has these contents (touched, or a crash
        between writing the file and its record)."""
        if known is not None and known[0].sha256 == sha and self.vol.holds(known[0].fid):
            record = replace(known[0], stamp=stamp)
        else:
            try:
                node = self.vol.resolve(self._vault_path(location))
            except FsError:
                return None
            if not node.is_reg or node.size != stamp.size or await file_digest(self.vol, node) != sha:
                return None
            record = Record(location, stamp, sha, node.fid,
                            self._recorded_at(node, self._vault_path(location)), time.time_ns())
        await self._save(record)
        return record

    async def _copy(self, location: str, mode: int, sha: str | None, before: Stamp,
                    known: tuple[Record, str] | None, *, over: Judge = nothing,
                    beside: bool = False) -> tuple[str, int, bool]:
        """Write the file into the vault; ``sha`` (when hashed first) and ``before`` are the
        state it was decided on, so a change while copying is noticed.  ``over``: what was judged at
        its place (``nothing``: a free place), the only file it may be renamed over; anything else
        there when the copy is placed is kept, and the copy goes beside it, said: judged once before
        the copy and renamed over whatever was there after, her save made while a source was read was
        written over, unsaid (attack round 63a (1)).  ``beside``: under a name of its own next to its
        place (another file is there), the first free one: the copy's name is the source's mtime to
        the minute, and renamed over, her edit of an earlier edit's copy was written over by the
        source's next edit in the same minute (63a (2))."""
        where, name = split(self._vault_path(location))
        self._say_renamed(location)
        copies = _copy_names(name, before.mtime_ns)
        if beside:
            name, over = next(copies), nothing
        parent = await make_dirs(self.vol, where, self.caller)
        try:
            source = await self.in_source(open_source, location, discard=_close_source)
        except FileNotFoundError:
            return GONE, 0, False
        held = Held(source, _close_source)  # closed once no given-up read uses it (56a (1))
        try:
            node, copied = await write_file(
                self.vol, parent, name, self._chunks(held), mode=mode,
                caller=self.caller, kernel=self.kernel, mtime_ns=before.mtime_ns, over=over, beside=copies)
            after = Stamp.of(await self.threads.run(held.holding, os.fstat, source.fileno()))
        finally:
            await self.threads.clean_up(held.close)
        if (parent.ino, name) not in node.links:
            for_user(self.vol.key.user_id).warn(
                "import-placed", location, f"the name {shown(location)} was to be imported under in the "
                "vault holds another file now: that file is kept, the source is imported beside it")
        placed = next((at for folder, at in node.links if folder == parent.ino), name)
        record = Record(location, before, copied, node.fid,
                        self._recorded_at(node, os.path.join(where, placed)),
                        time.time_ns())
        if (sha is not None and copied != sha) or after != before:
            # Changed while being read: what was copied is kept as a version, but
            # the record does not match the file now, so it is imported again once
            # it is stable, and it is not removed from the source.
            await self._save(record, stale=True)
            return CHANGING, node.size, False
        await self._save(record)
        outcome = VERSION if known is not None or node.previous is not None else NEW
        return outcome, node.size, await self._remove_source(record)

    async def _chunks(self, source: Held[BinaryIO]) -> AsyncIterator[bytes | int]:
        pieces = source_pieces(source.thing.fileno())
        while (piece := await self.threads.run(source.holding, self._as_user, next, pieces,
                                               None)) is not None:
            yield piece

    def _recorded_at(self, node: Node, put_at: bytes) -> str:
        """The vault path a record of ``node`` names: where it is, or, past ``PATH_MAX`` (moved by hand
        meanwhile, or its first name another link's), ``put_at``, the place the import put or found it
        at, which ``_past_path_max`` bounded."""
        now_at = self.vol.path_of(node)
        return os.fsdecode(put_at if too_long(now_at) else now_at)

    async def _save(self, record: Record, stale: bool = False) -> None:
        """Records ``record``; one ``load_records`` would drop (``too_long``) is never saved: its source
        would be imported again at every start (attack round 64c (1))."""
        if too_long(record.file_location) or too_long(record.vault_path):
            raise InvalidInput(f"not recorded: the path {shown(record.vault_path)} is past the {PATH_MAX:,} "
                               "bytes a record may name")
        if stale:
            record = replace(record, stamp=replace(record.stamp, mtime_ns=-1))
        rev = self.records.get(record.file_location, (None, None))[1]
        [new_rev] = await self.vol.store_call(self.vol.store.put_many,
                                              [record_doc(self.vol.key, record, rev)])
        self.records[record.file_location] = (record, new_rev)
        self.inodes[record.stamp.dev, record.stamp.ino] = record.file_location

    async def _remove_source(self, record: Record) -> bool:
        """With delete_file_from_source: remove the source once the vault's copy reads back equal."""
        if not self.delete or not self.vol.holds(record.fid):
            return False
        node = self.vol.find(record.fid)
        if node is None or (node.content is not None and node.content.changed):
            return False  # being written through the mount right now
        await make_durable(self.vol, node)
        if await file_digest(self.vol, node) != record.sha256:
            return False  # changed in the vault since: the source is the only copy of that state

        def remove_if_unchanged(host: HostAccess, root: int) -> bool:
            try:
                # As the user (only what they may delete), and only the file imported.
                return source_paths.remove_if(host, root, record.file_location,
                                              lambda st: Stamp.of(st) == record.stamp)
            except (FileNotFoundError, NotADirectoryError):
                return False
            except PermissionError as err:
                log.warning("import: %s stays in the source: %s", shown(record.file_location), err.strerror)
                return False

        return await self.in_source(remove_if_unchanged)
