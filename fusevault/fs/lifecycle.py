"""The life of a mount, personal or shared: one owner of what runs while it is mounted.

``Mount.run`` mounts, then holds everything that runs in an
``AsyncExitStack`` (as S3QL's mount.py does): the nursery, the services its
subclass starts in it (each user's agent, sync, a shared mount's store
watcher), the control socket, the signal handler and the readiness notice.
Leaving the stack, in whatever way, cancels them, saves every user's files
(shielded) and unmounts.  The control socket's requests are routed here
(``handle``) and what others wrote is taken in by fs/arrivals.py, once for
both kinds of mount.  fs/personal.py and fs/shared.py say only who the users
are and which services run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pyfuse3
import trio

from fusevault import systemd
from fusevault.agent.gate import LOCKED
from fusevault.agent.sessions import Agent
from fusevault.errors import Locked, SaveFailed
from fusevault.fs import control, fallocate
from fusevault.fs.arrivals import Arrivals
from fusevault.fs.boundary import write_op_stats
from fusevault.fs.mount import outcome_path
from fusevault.store import Store
from fusevault.sync.service import sync_service
from fusevault.vault.format.layout import Layout
from fusevault.vault.model import alarms

log = logging.getLogger("fusevault.fs.mount")  # the name the mount's log always showed

# Requests whose work ends when their client goes (fs/control.py): an export only writes the
# client's own copy (its temporary file is removed), so nothing is lost by stopping it, and it
# must not run on, as root in a shared mount, for a client killed (attack round 45t (3)).
# The others are short, or change the vault, where a hangup must not leave a change half made.
ENDS_WITH_CLIENT = frozenset({"export"})


class Mount:
    shared = False  # other users may use the mount and its control socket (``admits`` names them)

    def __init__(self, operations: pyfuse3.Operations, mountpoint: Path, socket_path: Path,
                 store: Store, layout: Layout, info: dict) -> None:
        self.operations = operations
        self.mountpoint = mountpoint
        self.socket_path = socket_path
        self.store = store
        self.info = info
        self.started = time.time()
        self.arrivals = Arrivals(store, self.agents, self.noted)
        # What peers send is taken in by every unlocked user, like a commit of theirs.
        self.sync = sync_service(store, layout, self.arrivals.arrived, self.arrivals.names,
                                 beneath=self.arrivals, shared=self.shared)
        if self.sync is not None:  # a tree coming to want records or revisions wakes the pulls
            self.arrivals.wanting = self.sync.want_again
        self.failures = 0

    # --- what a kind of mount says

    def agents(self) -> list[Agent]:
        """Every user of the mount, locked or not."""
        raise NotImplementedError

    async def agent_for(self, uid: int, cmd: object) -> Agent:
        """Whose control request this is (a shared mount seats a user at their first unlock)."""
        raise NotImplementedError

    async def services(self, nursery: trio.Nursery) -> None:
        """Start what runs while mounted (``nursery.start``: running once it returns)."""
        raise NotImplementedError

    def noted(self, docs: list[dict]) -> None:
        """Every document written or taken in, before the users take it in."""

    def may_unmount(self, uid: int) -> None:
        """Raise if ``uid`` may not unmount through the control socket."""

    def visible(self, uid: int) -> list[Agent]:
        """Whose state ``status`` shows to ``uid``."""
        return self.agents()

    async def admits(self, uid: int) -> bool:
        """Who may use a shared mount's control socket besides root (a personal
        mount's socket answers its own uid and root only: fs/control.py)."""
        return False

    def fuse_options(self) -> set[str]:
        # nosuid, nodev: said, not left to libfuse's default (root's mount could drop it).  A
        # document's mode bits or xattrs (which a writer signs) never give a program more rights.
        options = set(pyfuse3.default_options) | {"fsname=fusevault", "subtype=fusevault", "nosuid", "nodev"}
        if getattr(self.operations, "allow_other", False):
            # One user's tree for every uid: the kernel checks each caller against
            # the mode bits shown (pyfuse3's default_permissions stays).
            options |= {"allow_other", "default_permissions"}
        return options

    # --- the life

    async def run(self, on_ready: Callable[[], None] | None = None) -> None:
        """Mount, serve until unmounted or told to stop, then save and unmount.
        Raises SaveFailed when not everything could be saved, after leaving the
        reason where ``fusevault unmount`` looks (``outcome_path``)."""
        outcome = outcome_path(self.socket_path)
        with contextlib.suppress(FileNotFoundError):
            outcome.unlink()  # a previous mount's
        # Everything that looks at the mount point path happens before init: once
        # mounted, a stat from this thread would wait for the loop it is blocking.
        pyfuse3.init(self.operations, str(self.mountpoint), self.fuse_options())
        fallocate.install(self.operations)
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(self._unmount, outcome)  # last: after the nursery ended
            nursery = await stack.enter_async_context(trio.open_nursery())
            stack.callback(nursery.cancel_scope.cancel)  # first: unmounted, the services stop
            self.arrivals.nursery = nursery
            await self.services(nursery)
            await nursery.start(partial(control.serve, anyone=self.shared,
                                        admit=self.admits if self.shared else None,
                                        until_hangup=ENDS_WITH_CLIENT),
                                self.socket_path, self.handle)
            nursery.start_soon(_stop_on_signals)
            nursery.start_soon(_announce_ready, self.mountpoint, on_ready)
            await pyfuse3.main()
        if self.failures:
            raise SaveFailed(f"unmounted {self.mountpoint}, but {self.failures} thing(s) could not be "
                             "saved: see the mount's log")
        log.info("unmounted %s", self.mountpoint)

    async def _unmount(self, outcome: Path) -> None:
        systemd.notify("STOPPING=1", "STATUS=saving and unmounting")
        self.arrivals.closing = True
        self.failures = 1
        # Shielded: an unmount that is cancelled would lose what is unsaved.
        with trio.CancelScope(shield=True):
            try:
                self.failures = await self.close()
            finally:
                pyfuse3.close(unmount=True)
                write_op_stats()
                if self.failures:
                    _report_failed_save(outcome, self.failures)

    async def close(self) -> int:
        """Every user's files saved, each on their own (one's failure never
        costs another's data), then the store closed; how many things could
        not be saved."""
        failures = 0
        try:
            for agent in self.agents():
                try:
                    failures += await agent.close()
                except Exception:
                    log.exception("saving the files of %s failed", agent.username)
                    failures += 1
        finally:
            self.store.close()
            for agent in self.agents():
                agent.host.close()
        return failures

    # --- the control socket

    async def handle(self, request: dict, uid: int) -> dict:
        cmd = request.get("cmd")
        if cmd == "status":
            return self.status(uid)
        if cmd == "sync-status":
            return {"ok": True, "peers": self.sync.as_dict() if self.sync else None,
                    "uncommitted": self.uncommitted(uid)}
        if cmd == "unmount":
            self.may_unmount(uid)
            pyfuse3.terminate()
            return {"ok": True}
        agent = await self.agent_for(uid, cmd)
        if cmd in ("unlock", "lock"):
            answer = await agent.handle(request)
            assert answer is not None
            return answer
        if agent.session is None:
            raise Locked(LOCKED)
        return await agent.session.requests.handle(request)

    def uncommitted(self, uid: int) -> int:
        """Metadata changes acknowledged to the kernel but still in their group-commit window
        (vault/tree/inodes.py ``pending``): not in the store yet, so no peer's ``pending_up`` counts
        them.  Both are read in this one trio thread: a change leaves ``pending`` in the step its
        commit returns in, so it is always counted by one of them."""
        return sum(len(a.session.volume.tree.pending) for a in self.visible(uid) if a.session is not None)

    def status(self, uid: int) -> dict:
        agents = self.visible(uid)
        if self.shared:  # whose tasks they are
            tasks = {f"{name} ({a.username})": state
                     for a in agents for name, state in a.tasks.as_dict().items()}
        else:
            tasks = {name: state for a in agents for name, state in a.tasks.as_dict().items()}
        return {"pid": os.getpid(), "mountpoint": str(self.mountpoint), "since": self.started, **self.info,
                "open_files": sum(len(a.session.volume.handles) for a in agents if a.session),
                "tasks": tasks, "unlocked": [u for a in agents for u in a.status()],
                "alarms": alarms.listed([a.user_id for a in agents])}


def _report_failed_save(outcome: Path, failures: int) -> None:
    try:
        fd = os.open(outcome, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f"{failures}\n")
    except OSError as err:
        log.error("could not record the failed save for `fusevault unmount`: %s", err)


async def _stop_on_signals() -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            log.info("got signal %d: unmounting", signum)
            pyfuse3.terminate()
            return


async def _announce_ready(mountpoint: Path, on_ready: Callable[[], None] | None) -> None:
    # The mount is ready when it answers: stat the root through the kernel.
    # A shared mount refuses a locked caller: that too is an answer.  A stop
    # before the answer (SIGTERM at start) abandons the stat: the loop that
    # would answer it has ended, and it would hold the unmount that ends it.
    with contextlib.suppress(PermissionError):
        await trio.to_thread.run_sync(os.stat, mountpoint, abandon_on_cancel=True)
    log.info("mounted at %s", mountpoint)
    systemd.notify("READY=1", f"MAINPID={os.getpid()}", f"STATUS=mounted at {mountpoint}")
    if on_ready is not None:
        on_ready()
