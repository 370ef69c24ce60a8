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
import logging
import os
import stat
import time
from collections import Counter
from pathlib import Path

import trio

from fusevault.encoding import shown
from fusevault.errors import VaultError
from fusevault.host_access import Direct, HostAccess
from fusevault.host_access.threads import HostThreads
from fusevault.imports import source_paths
from fusevault.imports.import_records import Stamp
from fusevault.imports.importer import GONE, Importer, ignored
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


UNSEEN = Stamp(-1, -1, -1, -1)


class Pending:
    """Files seen changing: the state seen last and when it counts as stable."""

    def __init__(self, settle: float) -> None:
        self.settle = settle
        self.items: dict[str, tuple[Stamp, float]] = {}

    def seen(self, location: str, stamp: Stamp | None, now: float) -> None:
        if stamp is None:
            self.items.pop(location, None)
        else:
            self.items[location] = (stamp, now + self.settle)

    def retry(self, location: str, now: float, after: float) -> None:
        """A failed import: look again after a while (the stamp matches no real file,
        so the file must then be stable for a settle time once more)."""
        self.items[location] = (UNSEEN, now + after)

    def forget(self, location: str) -> None:
        """A path was deleted: drop it, and everything under it if it was a folder."""
        prefix = location + "/"
        for known in [k for k in self.items if k == location or k.startswith(prefix)]:
            del self.items[known]

    def due(self, now: float) -> list[str]:
        return sorted(k for k, (_, when) in self.items.items() if when <= now)

    def settled(self, location: str, stamp: Stamp | None, now: float) -> bool:
        """True (and no longer pending) when the file is as it was a settle time ago."""
        if location not in self.items:
            return False
        if stamp is not None and stamp == self.items[location][0]:
            del self.items[location]
            return True
        self.seen(location, stamp, now)
        return False


def stamps(host: HostAccess, root: int, locations: list[str]) -> dict[str, Stamp | None]:
    """Stamps of regular files (``root``: the watched folder, held); folders are expanded into
    the files under them."""
    found: dict[str, Stamp | None] = {}
    for location in locations:
        try:
            # Never through a link: a location is a name the walk saw, but what lies there may have
            # been replaced by a link since.
            st = source_paths.lstat(host, root, location)
        except OSError:
            found[location] = None
            continue
        if stat.S_ISDIR(st.st_mode):  # a folder moved in: its files made no events of their own
            found.update(walk(host, root, location))
        elif stat.S_ISREG(st.st_mode):
            found[location] = Stamp.of(st)
    return found


def walked(host: HostAccess, root: int, known: dict[str, Stamp | None]
           ) -> tuple[dict[str, Stamp | None], set[str], dict[str, Stamp | None]]:
    """A walk (``walk``) and what changed since ``known``: (found, gone, changed), all in the calling
    thread, so a folder of many files costs the loop only what changed."""
    found = walk(host, root)
    return found, known.keys() - found.keys(), {loc: st for loc, st in found.items() if known.get(loc) != st}


def walk(host: HostAccess, root: int, under: str = "") -> dict[str, Stamp | None]:
    """Every regular file under ``under`` in the watched folder (``root``, held; links are not
    followed; folders the user may not read are passed over, as os.walk does; nor is a folder of
    another file system: a mount in his folder, his FUSE or this drive itself, is not walked)."""
    found: dict[str, Stamp | None] = {}
    device = host.lstat(".", dir_fd=root).st_dev
    folders = [under]
    while folders:
        folder = folders.pop()
        try:
            entries = source_paths.scan(host, root, folder)
        except OSError as err:
            if err.errno not in PASSED_OVER:
                raise
            continue
        for name, st in entries:
            location = os.path.join(folder, name) if folder else name
            if stat.S_ISDIR(st.st_mode):
                if st.st_dev == device:
                    folders.append(location)
            elif stat.S_ISREG(st.st_mode) and not ignored(name):
                found[location] = Stamp.of(st)
    return found


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
        root = await self.threads.run(source_paths.hold, self.host, settings, str(self.vol.layout.root),
                                      discard=os.close)
        try:
            await self._watch_held(settings, root)
        finally:
            await self.threads.clean_up(os.close, root)

    async def _watch_held(self, settings: Settings, root: int) -> None:
        importer = Importer(self.vol, settings, self.kernel, self.host, root=root, threads=self.threads)
        await importer.load()
        pending = Pending(settings.settle_seconds)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._take_settled, importer, pending)
            self.task.set("idle")
            log.info("import: watching %s", Path(settings.source_dir_to_watch or ""))
            known: dict[str, Stamp | None] = {}
            while True:
                started = trio.current_time()
                try:
                    known, gone, changed = await self.threads.run(walked, self.host, root, known)
                except OSError as err:  # the walk not done: nothing concluded from it
                    log.warning("import: the watched folder could not be looked at (%s); again soon",
                                err.strerror or err)
                else:
                    for location in gone:
                        pending.forget(location)
                    self._note(pending, changed)
                await trio.sleep(max(POLL, POLL_SHARE * (trio.current_time() - started)))

    @staticmethod
    def _note(pending: Pending, found: dict[str, Stamp | None]) -> None:
        now = trio.current_time()
        for location, stamp in found.items():
            pending.seen(location, stamp, now)

    async def _take_settled(self, importer: Importer, pending: Pending) -> None:
        tick = min(0.5, pending.settle / 2)
        while True:
            await trio.sleep(tick)
            due = pending.due(trio.current_time())
            if not due:
                continue
            now_stamps = await self.threads.run(stamps, self.host, importer.root, due)
            now = trio.current_time()
            ready = [loc for loc in due if pending.settled(loc, now_stamps.get(loc), now)]
            if ready:
                await self._batch(importer, pending, ready)

    async def _batch(self, importer: Importer, pending: Pending, ready: list[str]) -> None:
        self.task.set("working")
        started = time.monotonic()
        counts: Counter[str] = Counter()
        size = removed = 0
        for done, location in enumerate(ready):
            self.task.summary = f"importing {done + 1} of {len(ready)}"
            try:
                outcome, written, gone = await importer.take(location)
            except (VaultError, OSError) as err:
                counts["failed"] += 1
                self.task.failed(f"{shown(location)}: {err}")
                log.warning("import: %s failed: %s; trying again in %d s", shown(location), err, RETRY_AFTER)
                pending.retry(location, trio.current_time(), RETRY_AFTER)
                continue
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
