"""The import service: watch ``source_dir_to_watch``, wait until files are stable, import them.

Started with ``nursery.start`` by a mount (or by ``fusevault watch``) and
stopped by cancellation.  A file is taken once it has kept its size and
modification time for ``settle_seconds``; files present when watching
starts are scanned once; what is already imported is known from the import
records, so a restart (or a crash) neither loses nor repeats an import.

The watching is a walk of the folder, again and again, through the user's
``HostAccess`` (in a shared mount: a helper running as the user,
fusevault/host_access/) in his own threads: names reached from the held folder
one at a time, never through a link, never into another file system.  It was
an inotify watch (watchfiles) built in this process: as root, on the mount's
loop with the GIL held, following every link in the folder, so links to a big
tree froze a shared mount for every user and one link to the mount itself
deadlocked it for good, a personal mount too (attack round 53b, (4) and (5)).
"""

from __future__ import annotations

import errno
import heapq
import itertools
import logging
import os
import stat
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import trio

from fusevault.encoding import shown
from fusevault.errors import VaultError
from fusevault.host_access import Direct, HostAccess
from fusevault.host_access.held import Held
from fusevault.host_access.threads import HostThreads
from fusevault.imports import source_paths
from fusevault.imports.failures_said import FailuresSaid
from fusevault.imports.import_records import Stamp
from fusevault.imports.importer import GONE, UNCHANGED, Importer, ignored
from fusevault.imports.locations import BAD_PARTS, TOP, Location, Place
from fusevault.tasks import TaskState
from fusevault.vault.model import confirmed
from fusevault.vault.model.settings import Settings
from fusevault.vault.services.placing import KernelCache
from fusevault.vault.volume import Volume

log = logging.getLogger(__name__)

RETRY_AFTER = 60  # seconds after a failure (a missing source folder, say) before trying again
POLL = 1.0  # seconds between two walks of the watched folder
# A walk waits this many times its own length before the next: a big folder costs a bounded share
# of a core (his helper's system calls, and this process's decoding of their answers and comparing
# them with the walk before, in a worker thread: a fifth of the time at most), not all of it.
POLL_SHARE = 4
# What a failed look at one folder means: nothing there now (or not his to read).  Any other error
# (EIO: his helper gone and being started again) makes the whole walk count as not done.
PASSED_OVER = frozenset({errno.EACCES, errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EPERM})
# Bounds of one watch (attack round 55c, (3) and (5)): each name a walk keeps costs the mount ~500
# bytes (the walk's ``known``, ``Pending``) and its own bytes (a file's location is its folder, shared,
# and its name: locations.py, 58c (1)), and each folder on the way down one descriptor held while the
# folders under it are walked.  Past them the rest is passed over, said in ``status``, and taken up
# by a later walk once the folder is back under them: never lost, never deleted.
MAX_NAMES = 100_000  # names (files, folders, anything) looked at by one walk
# The bytes of the names one walk keeps (as the mount holds them: a name of bytes not UTF-8, or of
# mixed widths, costs up to 4 a byte), counted as ``looked`` is: names up to 1,024 bytes (a FUSE
# file system's) would otherwise cost up to 4 KB each, 400 MB a walk at ``MAX_NAMES`` (58c (1)).
MAX_NAME_BYTES = 32 * 2**20
MAX_DEPTH = 256  # folders within folders below the watched one
SPAN = 16  # a walk holds the descriptor of every SPAN-th folder on its way down, and the current one
MAX_DUE = 1_000  # files looked at again by one tick of ``_take_settled``


UNSEEN = Stamp(-1, -1, -1, -1)
Where = Location | str  # a file of the watched folder: a walk's location, or its path


class Pending:
    """Files seen changing: the state seen last and when it counts as stable.

    The times are also kept in a heap (``_times``), so a tick with nothing due costs nothing, and one
    with files due costs what is due: every tick went through every pending file, on the mount's
    loop (100,000 of them: ~9 ms a tick; attack round 55c, (5)).  An entry of the heap whose time
    ``items`` no longer holds is stale, left there until it comes up (or the heap is rebuilt)."""

    def __init__(self, settle: float) -> None:
        self.settle = settle
        self.items: dict[Where, tuple[Stamp, float]] = {}
        # (time, order, location): the order of noting breaks ties, so locations are never compared
        # (a location has no order of its own but its whole path's).
        self._times: list[tuple[float, int, Where]] = []
        self._order = itertools.count()

    def seen(self, location: Where, stamp: Stamp | None, now: float) -> None:
        if stamp is None:
            self.items.pop(location, None)
        else:
            self._put(location, stamp, now + self.settle)

    def retry(self, location: Where, now: float, after: float) -> None:
        """A failed import: look again after a while (the stamp matches no real file,
        so the file must then be stable for a settle time once more)."""
        self._put(location, UNSEEN, now + after)

    def _put(self, location: Where, stamp: Stamp, when: float) -> None:
        self.items[location] = (stamp, when)
        heapq.heappush(self._times, (when, next(self._order), location))
        self._tidy()

    def _tidy(self) -> None:
        # Stale entries are at most as many as the live ones (and a few): the heap stays in
        # proportion to the files pending, at an amortised constant cost per change.
        if len(self._times) > 2 * len(self.items) + 1024:
            self._times = [(when, next(self._order), location) for location, (_, when) in self.items.items()]
            heapq.heapify(self._times)

    def forget(self, location: str) -> None:
        """A path was deleted: drop it, and everything under it if it was a folder."""
        prefix = location + "/"
        for known in [k for k in self.items if str(k) == location or str(k).startswith(prefix)]:
            del self.items[known]
        self._tidy()

    def drop(self, locations: set[Where]) -> None:
        """Files a walk no longer found (each named: a walk names the files, not their folders),
        at a cost in proportion to the fewer of them and of the files pending."""
        if len(locations) < len(self.items):
            for location in locations:
                self.items.pop(location, None)
        else:
            self.items = {k: v for k, v in self.items.items() if k not in locations}
        self._tidy()

    def due(self, now: float, most: int = MAX_DUE) -> list[Where]:
        """The files due at ``now`` (the ``most`` due first, in the order they came due), left pending
        until ``settled`` says."""
        taken: list[tuple[float, int, Where]] = []
        names: set[Where] = set()
        while self._times and self._times[0][0] <= now and len(taken) < most:
            entry = heapq.heappop(self._times)
            when, _, location = entry
            held = self.items.get(location)
            if held is not None and held[1] == when and location not in names:
                taken.append(entry)
                names.add(location)
        for entry in taken:
            heapq.heappush(self._times, entry)
        return [location for _, _, location in taken]

    def settled(self, location: Where, stamp: Stamp | None, now: float) -> bool:
        """True (and no longer pending) when the file is as it was a settle time ago."""
        if location not in self.items:
            return False
        if stamp is not None and stamp == self.items[location][0]:
            del self.items[location]
            return True
        self.seen(location, stamp, now)
        return False


def stamps(host: HostAccess, root: int, locations: Iterable[Where]) -> dict[Where, Stamp | None]:
    """Stamps of the regular files at ``locations`` (``root``: the watched folder, held); None for
    anything else there now, or nothing.

    A location that is a folder now is None too (gone as a file): the next walk finds the files in
    it.  Each such folder was walked here and all its files kept, for every due location of the
    tick: ``MAX_DUE`` walks' worth of names in one tick (attack round 58c (3)).

    Grouped by folder, each folder reached once, from the one before on the way as ``walk`` goes (the
    same descriptors held): a call per file and per folder on the way, whatever the depth.  Each file
    was looked at from the watched folder by its whole location, a call per folder on the way: 257
    calls a file 256 folders deep (58c (2))."""
    found: dict[Where, Stamp | None] = {}
    by_place: dict[Place, list[tuple[Where, str]]] = {}
    for location in locations:
        at = Location.of(location) if isinstance(location, str) else location
        by_place.setdefault(at.place, []).append((location, at.name))
    way = [_Folder(TOP, 0, os.dup(root))]
    try:
        for place in sorted(by_place, key=Place.parts):  # one pass down and up the tree
            files = by_place[place]
            for location, _ in files:
                found[location] = None
            try:
                # Never through a link: a location is a name the walk saw, but what lies there may
                # have been replaced by a link since.
                folder = _reach(host, way, place)
            except OSError:
                continue
            for location, name in files:
                if name in BAD_PARTS:
                    continue
                try:
                    st = host.lstat(name, dir_fd=folder)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    found[location] = Stamp.of(st)
    finally:
        for held in way:
            held.close()
    return found


def _reach(host: HostAccess, way: list[_Folder], place: Place) -> int:
    """The descriptor of ``place``, ``way`` moved there: back up to the folder it shares with the way
    so far, then down from it, one call per folder (as ``walk`` goes, every ``SPAN``-th one held)."""
    chain = place.chain()
    shared = 0
    while shared < len(chain) and shared + 1 < len(way) and way[shared + 1].place.name == chain[shared].name:
        shared += 1  # both start at the watched folder: the same names down to here, the same folder
    while len(way) > shared + 1:
        way.pop().close()
    for step in chain[shared:]:
        if step.name in BAD_PARTS:
            raise FileNotFoundError(errno.ENOENT, "not a name in the watched folder", step.name)
        held = _held(host, way)
        below = source_paths.inner(host, held, step.name, step.name)
        here = way[-1]
        if here.depth % SPAN:
            here.close()  # opened again if a folder under it is asked for
        way.append(_Folder(step, here.depth + 1, below))
    return _held(host, way)


class Found(dict[Location, Stamp | None]):
    """The regular files a walk found, by location, and what it passed over (to be said), if any."""

    def __init__(self) -> None:
        super().__init__()
        self.looked = 0  # names looked at, of any kind (``MAX_NAMES``)
        self.kept = 0  # bytes of the names kept (``MAX_NAME_BYTES``)
        self.places: dict[Place, Place] = {}  # the folders walked, for the next walk to take again
        self.passed_over: str | None = None


def walked(host: HostAccess, root: int, known: dict[Location, Stamp | None]
           ) -> tuple[Found, set[Location], dict[Location, Stamp | None]]:
    """A walk (``walk``) and what changed since ``known``: (found, gone, changed), all in the calling
    thread, so a folder of many files costs the loop only what changed."""
    found = walk(host, root, known if isinstance(known, Found) else None)
    return found, known.keys() - found.keys(), {loc: st for loc, st in found.items() if known.get(loc) != st}


def walk(host: HostAccess, root: int, before: Found | None = None) -> Found:
    """Every regular file in the watched folder (``root``, held; links are not followed; folders the
    user may not read are passed over, as os.walk does; nor is a folder of another file system: a
    mount in his folder, his FUSE or this drive itself, is not walked).

    Depth first, each folder opened from its parent's descriptor: a helper call per folder and one
    per page of names, whatever the depth.  Each folder was opened from the watched one by its whole
    location, name by name, so a chain of N folders cost N^2/2 calls (200 deep: 20,302; attack round
    55c, (3)).  The descriptors held are bounded too: every ``SPAN``-th folder on the way down and the
    current one; a folder whose descriptor was let go is opened again (from the nearest held) only if
    folders under it are still to walk: at most ``SPAN`` calls more per folder.  Past ``MAX_DEPTH``
    folders deep, ``MAX_NAMES`` names looked at, or ``MAX_NAME_BYTES`` of names kept, the rest is
    passed over (``passed_over``).  Each folder's ``Place`` is the one of the walk ``before`` when it
    has it: the locations of both walks are then the same objects (compared at once)."""
    found = Found()
    taken = before.places if before is not None else {}
    device = host.lstat(".", dir_fd=root).st_dev
    way = [_Folder(TOP, 0, os.dup(root))]
    try:
        while way and found.looked <= MAX_NAMES:
            here = way[-1]
            if here.inside is None:
                here.inside = _listed(host, here, device, found)
            if not here.inside:
                way.pop()
                here.close()
                continue
            name = here.inside.pop()
            try:
                held = _held(host, way)
            except OSError as err:  # gone (or a link now) on the way: nothing more under it
                if err.errno not in PASSED_OVER:
                    raise
                here.inside.clear()
                continue
            try:
                below = source_paths.inner(host, held, name, name)
            except OSError as err:
                if err.errno not in PASSED_OVER:
                    raise
                continue
            if not _on_device(below, device):  # a mount put there since the listing: not walked
                os.close(below)
                continue
            if here.depth % SPAN:
                here.close()  # opened again if folders under it are left
            place = Place(here.place, name)
            place = found.places.setdefault(place, taken.get(place, place))
            way.append(_Folder(place, here.depth + 1, below))
    finally:
        for folder in way:
            folder.close()
    return found


class _Folder:
    """A folder on the way down: its descriptor (None: let go) and its folders left to walk."""

    def __init__(self, place: Place, depth: int, fd: int) -> None:
        self.place, self.depth = place, depth
        self.fd: int | None = fd
        self.inside: list[str] | None = None  # not listed yet

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _held(host: HostAccess, way: list[_Folder]) -> int:
    """The descriptor of the last folder of ``way``, opened again from the nearest one held."""
    if way[-1].fd is not None:
        return way[-1].fd
    start = max(number for number, folder in enumerate(way) if folder.fd is not None)
    base = fd = way[start].fd
    assert base is not None and fd is not None
    try:
        for folder in way[start + 1:]:
            inner = source_paths.inner(host, fd, folder.place.name, folder.place.name)
            if fd != base:
                os.close(fd)
            fd = inner
    except BaseException:
        if fd != base:
            os.close(fd)
        raise
    try:
        moved = not _on_device(fd, os.fstat(base).st_dev)
    except BaseException:
        if fd != base:
            os.close(fd)
        raise
    if moved:  # a mount put on the way meanwhile
        os.close(fd)
        raise FileNotFoundError(errno.ENOENT, "another file system on the way", way[-1].place.name)
    way[-1].fd = fd
    return fd


def _on_device(fd: int, device: int) -> bool:
    """Whether ``fd`` is on ``device``.  One root may not even look at (his own FUSE, mounted without
    allow_other, refuses root) is not: left unasked, the error left the descriptor open at every walk
    (attack round 57a (2))."""
    try:
        return os.fstat(fd).st_dev == device
    except OSError:
        return False


def _listed(host: HostAccess, here: _Folder, device: int, found: Found) -> list[str]:
    """Notes the files of ``here`` in ``found``; its folders, to walk (last first)."""
    inside: list[str] = []
    assert here.fd is not None  # a folder is listed right after it is opened
    try:
        for name, st in source_paths.entries(host, here.fd):
            found.looked += 1
            if found.looked > MAX_NAMES:
                found.passed_over = f"more than {MAX_NAMES} names: the rest passed over"
                return []
            if stat.S_ISDIR(st.st_mode):
                if st.st_dev != device:
                    continue
                inside.append(name)
            elif stat.S_ISREG(st.st_mode) and not ignored(name):
                found[Location(here.place, name)] = Stamp.of(st)
            else:
                continue
            found.kept += sys.getsizeof(name)  # kept: as a file's name, or a folder's (its Place)
            if found.kept > MAX_NAME_BYTES:
                found.passed_over = f"more than {MAX_NAME_BYTES // 2**20} MiB of names: the rest passed over"
                return []
    except OSError as err:
        if err.errno not in PASSED_OVER:
            raise
        return []
    if inside and here.depth >= MAX_DEPTH:
        found.passed_over = f"folders more than {MAX_DEPTH} deep passed over"
        return []
    inside.sort(reverse=True)  # walked in order of names: the same folders first at every walk
    return inside


class ImportService:
    def __init__(self, volume: Volume, task: TaskState, kernel: KernelCache,
                 host: HostAccess | None = None, threads: HostThreads | None = None) -> None:
        self.vol = volume
        self.host = host or Direct()  # the user's rights on the source folder
        self.threads = threads or HostThreads()  # his own, for calls on his folder (51t)
        self.task = task
        self.kernel = kernel
        self._wake = trio.Event()
        self._failed = False  # the watch ended with an error: the next wake starts it over
        self._in_use: Settings | None = None  # what the running watch was started with
        self._said = FailuresSaid()  # a failed import is said once, not at every retry (58c (5))

    def reconfigure(self) -> None:
        """The settings may have changed: start over if they did."""
        self._wake.set()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self._wake = trio.Event()
            async with trio.open_nursery() as nursery:
                self._failed, self._in_use = False, None
                nursery.start_soon(self._watch_until_error)
                while not await self._woken_for_new_settings():
                    pass
                nursery.cancel_scope.cancel()

    async def _woken_for_new_settings(self) -> bool:
        """Wait for a wake; True when the watch must start over.  Her user document arriving
        wakes it at every revision, so a flood of them (from the server) restarts nothing
        unless the settings they come to differ (attack round 30c); reading them says a
        forged body at once all the same (``confirmed.load`` raises the alarm)."""
        await self._wake.wait()
        self._wake = trio.Event()  # a wake while the settings are read is looked at again
        if self._failed or self._in_use is None:
            return True
        try:
            settings = await self.vol.store_call(confirmed.load, self.vol.store, self.vol.key,
                                                 self.vol.layout.root)
        except VaultError:
            return True  # the watch's own start says it
        return settings != self._in_use

    async def _watch_until_error(self) -> None:
        try:
            settings = await self.vol.store_call(confirmed.load, self.vol.store, self.vol.key,
                                                 self.vol.layout.root)
            self._in_use = settings
            if settings.source_dir_to_watch is None:
                self.task.set("off")
                await trio.sleep_forever()
            await self._watch(settings)
        except (VaultError, OSError) as err:
            message = f"{err.strerror or err}" if isinstance(err, OSError) else str(err)
            self._stopped(message)
        except Exception:
            log.exception("the import service failed")
            self._stopped("internal error: see the log")
        self._failed = True
        await trio.sleep(RETRY_AFTER)
        self._wake.set()

    def _stopped(self, message: str) -> None:
        log.error("import: %s; trying again in %d s", message, RETRY_AFTER)
        self.task.failed(message)
        self.task.set("waiting after an error")

    async def _watch(self, settings: Settings) -> None:
        # One descriptor of the watched folder for the whole watch, checked as the folder it is:
        # every name is looked up from it, so a link later put in the folder's place leads nowhere.
        # Held by every call that looks up a name from it (the walk, the importer's): a call given up
        # goes on in its thread, so it is closed once none runs; closed beside it, its number went to
        # the mount's next file, and the walk went on from there (attack round 56a (1)).
        root = Held(await self.threads.run(source_paths.hold, self.host, settings, str(self.vol.layout.root),
                                           discard=os.close), os.close)
        try:
            await self._watch_held(settings, root)
        finally:
            await self.threads.clean_up(root.close)

    async def _watch_held(self, settings: Settings, root: Held[int]) -> None:
        importer = Importer(self.vol, settings, self.kernel, self.host, root=root, threads=self.threads)
        await importer.load()
        pending = Pending(settings.settle_seconds)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._take_settled, importer, pending)
            self.task.set("idle")
            log.info("import: watching %s", Path(settings.source_dir_to_watch or ""))
            known = Found()
            said: str | None = None
            while True:
                started = trio.current_time()
                try:
                    known, gone, changed = await self.threads.run(root.holding, walked, self.host, root.thing,
                                                                  known)
                except OSError as err:  # the walk not done: nothing concluded from it
                    log.warning("import: the watched folder could not be looked at (%s); again soon",
                                err.strerror or err)
                else:
                    pending.drop(gone)
                    self._note(pending, changed)
                    # Records of files gone are dropped on a walk's evidence only (64c (2)).
                    await importer.drop_unseen(known, known.passed_over)
                    if known.passed_over != said:  # said once, not at every walk
                        said = known.passed_over
                        if said is not None:
                            log.warning("import: in the watched folder, %s", said)
                            self.task.failed(f"the watched folder: {said}")
                await trio.sleep(max(POLL, POLL_SHARE * (trio.current_time() - started)))

    @staticmethod
    def _note(pending: Pending, found: dict[str, Stamp | None]) -> None:
        now = trio.current_time()
        for location, stamp in found.items():
            pending.seen(location, stamp, now)

    async def _take_settled(self, importer: Importer, pending: Pending) -> None:
        """Every tick, the files due looked at again, and those settled taken.  The looks (and the
        takes that brought nothing in) are held to a share of the time as the walk is: the next tick
        waits ``POLL_SHARE`` times their length.  Files he touches again and again, each due at every
        tick, kept root's mount at work one tick after another (attack round 58c (2)); an import
        that brings a file in is the service's work, never held back."""
        tick = min(0.5, pending.settle / 2)
        rest = tick
        while True:
            await trio.sleep(rest)
            rest = tick
            due = pending.due(trio.current_time())
            if not due:
                continue
            started = trio.current_time()
            now_stamps = await importer.in_source(stamps, due)
            now = trio.current_time()
            looked = now - started
            ready = [loc for loc in due if pending.settled(loc, now_stamps.get(loc), now)]
            if ready:
                looked += await self._batch(importer, pending, ready)
            rest = max(tick, POLL_SHARE * looked)

    async def _batch(self, importer: Importer, pending: Pending, ready: list[Where]) -> float:
        """Takes ``ready``; the time its takes that brought nothing in took (failed, gone, unchanged)."""
        self.task.set("working")
        started = time.monotonic()
        counts: Counter[str] = Counter()
        size = removed = 0
        looked = 0.0
        for done, at in enumerate(ready):
            self.task.summary = f"importing {done + 1} of {len(ready)}"
            location = str(at)  # its whole path, for this file alone (58c (1))
            began = trio.current_time()
            try:
                outcome, written, gone = await importer.take(location)
            except (VaultError, OSError) as err:
                looked += trio.current_time() - began
                counts["failed"] += 1
                self.task.failed(f"{shown(location)}: {err}")
                if self._said.to_say(location, time.monotonic()):
                    log.warning("import: %s failed: %s; trying again every %d s (said once)", shown(location),
                                err, RETRY_AFTER)
                pending.retry(at, trio.current_time(), RETRY_AFTER)
                continue
            self._said.done(location)
            if outcome in (GONE, UNCHANGED):
                looked += trio.current_time() - began
            counts[outcome] += 1
            size += written
            removed += gone
        counts.pop(GONE, None)
        counts["removed from source"] = removed
        self.task.add({**counts, "bytes": size})
        parts = ", ".join(f"{n} {what}" for what, n in sorted(counts.items()) if n)
        self.task.summary = (f"{len(ready)} file(s) checked in {time.monotonic() - started:.1f} s, "
                             f"{size / 2**20:.1f} MiB written: {parts or 'nothing to do'}")
        log.info("import: %s", self.task.summary)
        self.task.set("idle")
        return looked
