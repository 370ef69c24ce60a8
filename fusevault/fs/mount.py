"""The life of a mount: checks, the FUSE loop, readiness, signals, clean unmount."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import pyfuse3
import trio

from fusevault import systemd
from fusevault.agent.sessions import Agent
from fusevault.errors import Locked, MountPointError, SaveFailed
from fusevault.fs import control, fallocate
from fusevault.fs.operations import LOCKED, Operations, write_op_stats
from fusevault.host_access import Direct
from fusevault.mounts import is_mounted
from fusevault.paths import control_socket
from fusevault.store import Store
from fusevault.sync.service import sync_service
from fusevault.tasks import Tasks
from fusevault.vault.model import alarms
from fusevault.vault.services.absorbing import absorb_arrivals
from fusevault.vault.services.conflicts import settle
from fusevault.vault.volume import Volume

log = logging.getLogger(__name__)


def user_allow_other(conf: Path = Path("/etc/fuse.conf")) -> bool:
    """Whether fusermount3 lets a user other than root mount with allow_other:
    a line ``user_allow_other`` in fuse.conf, read as fusermount3 reads it
    (``#`` starts a comment; a last line without its newline does not count)."""
    try:
        lines = conf.read_text(errors="replace").splitlines(keepends=True)
    except OSError:
        return False
    return any(line.endswith("\n") and line.split("#", 1)[0].strip() == "user_allow_other"
               for line in lines)


def check_mountpoint(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise MountPointError(f"mount point {path} does not exist")
    if not path.is_dir():
        raise MountPointError(f"mount point {path} is not a directory")
    if is_mounted(path):
        raise MountPointError(f"{path} is busy: something is already mounted there")
    if any(path.iterdir()):
        raise MountPointError(f"mount point {path} is not empty")
    return path.resolve()


Handle = Callable[[dict, int], Awaitable[dict]]


async def serve(volume: Volume, mountpoint: Path, *, user: dict, ttl: float,
                on_ready: Callable[[], None] | None = None, info: dict | None = None,
                allow_other: bool = False) -> None:
    """A personal mount: one user's tree, unlocked for ``ttl`` seconds.
    ``allow_other``: other uids may use it, as far as the mode bits allow."""
    started = time.time()
    operations = Operations(None)
    operations.allow_other = allow_other
    tasks = Tasks()
    agent = Agent(user, operations, Kernel(), tasks, volume.layout, volume.store, host=Direct())

    kernel = agent.kernel
    nursery_box: list[trio.Nursery] = []

    settling = trio.Lock()

    def arrived(docs: list[dict], conflicts: list[str]) -> None:
        # What a peer sent, just stored: into the tree (or kept while it
        # loads; a locked tree is loaded from the store at the next unlock).
        if agent.missed is not None:
            agent.missed.extend(docs)
        elif operations.session is not None:
            tree = operations.session.volume
            changed = absorb_arrivals(tree, docs)
            if changed:
                nursery_box[0].start_soon(kernel.drop_all, changed.entries, changed.inodes)
            if conflicts:
                nursery_box[0].start_soon(settle_conflicts, tree, volume.store, conflicts, kernel, settling)

    sync = sync_service(volume.store, volume.layout, arrived)
    volume.device = agent.device = sync.device["name"] if sync else None
    if sync is not None and sync.has_peers():
        # With the writeback cache the kernel keeps its own idea of a file's
        # size, which no invalidation changes: what peers write would show
        # cut or padded.  A vault with peers is mounted without it.
        operations.enable_writeback_cache = False
    elif sync is not None:
        sync.paused = ("this mount began before the vault had peers (it caches writes in the "
                       "kernel): unmount and mount again to sync")

    async def handle(request: dict, uid: int) -> dict:
        if request.get("cmd") == "status":
            return {"pid": os.getpid(), "mountpoint": str(mountpoint), "since": started,
                    "open_files": len(operations.session.volume.handles) if operations.session else 0,
                    "tasks": tasks.as_dict(), **(info or {}), "unlocked": agent.status(),
                    "alarms": alarms.listed([agent.user_id])}
        if request.get("cmd") == "sync-status":
            return {"ok": True, "peers": sync.as_dict() if sync else None}
        if request.get("cmd") == "unmount":
            pyfuse3.terminate()
            return {"ok": True}
        if (answer := await agent.handle(request)) is not None:
            return answer
        if operations.session is None:
            return {"error": LOCKED, "code": Locked.exit_code}
        return await operations.session.requests.handle(request)

    async def start(nursery: trio.Nursery) -> None:
        nursery_box.append(nursery)
        await nursery.start(agent.run, volume, ttl)
        if sync is not None:
            await nursery.start(sync.run)

    await run_fuse(operations, mountpoint, control_socket(mountpoint), handle, start, agent.close,
                   on_ready=on_ready)


async def run_fuse(operations: pyfuse3.Operations, mountpoint: Path, socket_path: Path,
                   handle: Handle, start: Callable[[trio.Nursery], Awaitable[None]],
                   close: Callable[[], Awaitable[int]], *, shared: bool = False,
                   on_ready: Callable[[], None] | None = None, admit: control.Admit | None = None) -> None:
    """Mount, serve until unmounted or told to stop, then ``close`` (save
    everything; it returns how many things could not be saved).

    ``shared``: other users may use the mount and its control socket (those ``admit`` names).
    Raises SaveFailed when not everything could be saved, after leaving the
    reason where ``fusevault unmount`` looks (``outcome_path``)."""
    outcome = outcome_path(socket_path)
    with contextlib.suppress(FileNotFoundError):
        outcome.unlink()  # a previous mount's
    options = set(pyfuse3.default_options) | {"fsname=fusevault", "subtype=fusevault"}
    if shared:
        # One inode serves several users: the Drive checks each request,
        # not the kernel against one set of mode bits.
        options = (options - {"default_permissions"}) | {"allow_other"}
    elif getattr(operations, "allow_other", False):
        # One user's tree for every uid: the kernel checks each caller against
        # the mode bits shown (pyfuse3's default_permissions stays).
        options |= {"allow_other", "default_permissions"}
    # Everything that looks at the mount point path happens before init: once
    # mounted, a stat from this thread would wait for the loop it is blocking.
    pyfuse3.init(operations, str(mountpoint), options)
    fallocate.install(operations)
    try:
        async with trio.open_nursery() as nursery:
            await start(nursery)
            await nursery.start(partial(control.serve, anyone=shared, admit=admit), socket_path, handle)
            nursery.start_soon(_stop_on_signals)
            nursery.start_soon(_announce_ready, mountpoint, on_ready)
            await pyfuse3.main()
            nursery.cancel_scope.cancel()
    finally:
        systemd.notify("STOPPING=1", "STATUS=saving and unmounting")
        failures = 1
        with trio.CancelScope(shield=True):
            try:
                failures = await close()
            finally:
                pyfuse3.close(unmount=True)
                write_op_stats()
                if failures:
                    _report_failed_save(outcome, failures)
    if failures:
        raise SaveFailed(f"unmounted {mountpoint}, but {failures} thing(s) could not be saved: "
                         "see the mount's log")
    log.info("unmounted %s", mountpoint)


def outcome_path(socket_path: Path) -> Path:
    """Where a mount that could not save everything says so, for ``fusevault
    unmount`` (which is not its parent and cannot see its exit status)."""
    return socket_path.with_name(socket_path.name + ".failed")


def _report_failed_save(outcome: Path, failures: int) -> None:
    try:
        fd = os.open(outcome, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f"{failures}\n")
    except OSError as err:
        log.error("could not record the failed save for `fusevault unmount`: %s", err)


async def settle_conflicts(volume: Volume, store: Store, ids: list[str], kernel: Kernel,
                           lock: trio.Lock) -> None:
    """Settle edits made on two devices while apart (vault/services/conflicts.py), one batch at a time."""
    async with lock:
        if volume.key is None:  # locked meanwhile: settled after a later arrival
            return
        try:
            changed = await settle(volume, store, ids)
        except Exception:  # a background task: a bug must not end the mount
            log.exception("settling concurrent edits failed")
            return
        if changed:
            await kernel.drop_all(changed.entries, changed.inodes)


class Kernel:
    """Tells the kernel to drop what it caches about names and files changed
    from inside fusevault (restore, imports, another user), rather than
    through it.  ``ino_out``: a shared mount's seat maps its inode numbers."""

    def __init__(self, ino_out: Callable[[int], int] | None = None) -> None:
        self._out = ino_out or (lambda ino: ino)

    # In a thread: with writeback caching the kernel may first write dirty
    # pages back, which needs this loop free to answer (pyfuse3's warning).
    async def inode(self, ino: int) -> None:
        try:
            await trio.to_thread.run_sync(pyfuse3.invalidate_inode, self._out(ino))
        except OSError:
            pass  # the kernel holds nothing for it

    async def resized(self, ino: int, size: int, tail: bytes) -> None:
        def tell() -> None:
            pyfuse3.invalidate_inode(self._out(ino))
            if tail:
                pyfuse3.notify_store(self._out(ino), size - len(tail), tail)

        try:
            await trio.to_thread.run_sync(tell)
        except OSError:
            pass

    async def entry(self, parent_ino: int, name: bytes) -> None:
        try:
            await trio.to_thread.run_sync(pyfuse3.invalidate_entry, self._out(parent_ino), name)
        except OSError:
            pass

    async def drop_all(self, entries: list[tuple[int, bytes]], inodes: list[int]) -> None:
        entries = [(self._out(parent_ino), name) for parent_ino, name in entries]
        inodes = [self._out(ino) for ino in inodes]

        def drop() -> None:
            for parent_ino, name in entries:
                with contextlib.suppress(OSError):
                    pyfuse3.invalidate_entry(parent_ino, name)
            for ino in inodes:
                with contextlib.suppress(OSError):
                    pyfuse3.invalidate_inode(ino)

        await trio.to_thread.run_sync(drop)


async def _stop_on_signals() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            log.info("got signal %d: unmounting", signum)
            pyfuse3.terminate()
            return


async def _announce_ready(mountpoint: Path, on_ready: Callable[[], None] | None) -> None:
    # The mount is ready when it answers: stat the root through the kernel.
    # A shared mount refuses a locked caller: that too is an answer.
    with contextlib.suppress(PermissionError):
        await trio.to_thread.run_sync(os.stat, mountpoint)
    log.info("mounted at %s", mountpoint)
    systemd.notify("READY=1", f"MAINPID={os.getpid()}", f"STATUS=mounted at {mountpoint}")
    if on_ready is not None:
        on_ready()
