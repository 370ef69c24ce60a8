"""A shared mount: root mounts a vault once, and each mapped Linux user
unlocks their own keys in it (``fusevault mount --allow-other``).

Nobody is unlocked at first.  ``fusevault unlock`` from a Linux user reaches
the mount's socket (in /run/fusevault, open to every local user); the
socket names the caller's uid (SO_PEERCRED), the uid names the vault user
(``user add --uid``), and the passphrase opens that user's keys only.  The
user gets a seat (fs/drive.py) with an ``Agent`` of its own: their own
passphrase TTL, ``lock`` and services, exactly as in a personal mount.

Every seat's Volume writes through a ``WatchedStore`` naming the seat; each
commit is taken in at once by the other unlocked seats (vault/services/absorbing.py),
whose kernel caches are then dropped, so each user sees the others' changes
to the files they share.
"""

from __future__ import annotations

import logging
import os
import pwd
import time
from pathlib import Path

import pyfuse3
import trio

from fusevault.agent.sessions import Agent
from fusevault.errors import InvalidInput, Locked, PermissionDenied, VaultError
from fusevault.fs.drive import Drive, Seat
from fusevault.fs.mount import Kernel, run_fuse, settle_conflicts
from fusevault.fs.operations import LOCKED
from fusevault.host_access import Direct, HostAccess, Spawner
from fusevault.paths import shared_socket
from fusevault.store import Store
from fusevault.store.watched import WatchedStore
from fusevault.sync.service import sync_service
from fusevault.tasks import Tasks
from fusevault.vault.format.layout import Layout
from fusevault.vault.model import alarms
from fusevault.vault.model.groups import GROUP
from fusevault.vault.model.users import USER
from fusevault.vault.services import share_ops
from fusevault.vault.services.absorbing import (
    Absorbed,
    absorb,
    absorb_arrivals,
    admit_new,
    retry_awaiting,
    save_leaving,
    settle_busy,
)
from fusevault.vault.services.share_ops import ROTATION

log = logging.getLogger(__name__)
WATCH_EVERY = 1.0  # seconds between looks at what other processes wrote


class SharedMount:
    def __init__(self, layout: Layout, store: Store, mountpoint: Path, info: dict,
                 spawner: Spawner) -> None:
        self.spawner = spawner  # a helper per seat: host paths with the user's rights
        self.layout = layout
        self.store = store
        self.mountpoint = mountpoint
        self.info = info
        self.started = time.time()
        self.uids = self._read_uids()
        self.drive = Drive(lambda uid: uid in self.uids, lambda: os.stat(layout.root),
                           lambda: os.statvfs(layout.root))
        self.kernels: dict[int, Kernel] = {}
        self.tasks: dict[int, Tasks] = {}
        self._nursery: trio.Nursery | None = None
        self._seating = trio.Lock()
        self._looking_up, self._looked_up = trio.Lock(), time.monotonic()  # admits()
        self._closing = False  # unmounting: no new tasks (the nursery is closed)
        # What peers send is taken in by every unlocked user, like a commit of theirs.
        self.sync = sync_service(store, layout, self._arrived, shared=True)
        self._settling = trio.Lock()
        # id -> rev of every document this mount wrote or took in: what else
        # shows in the store's changes was written by another process.
        self._known: dict[str, str] = {}
        self._resharing = False
        self._again = False

    def _read_uids(self) -> dict[int, dict]:
        return {doc["uid"]: doc for doc in self.store.iter_type(USER) if doc.get("uid") is not None}

    async def serve(self, on_ready=None) -> None:
        async def start(nursery: trio.Nursery) -> None:
            self._nursery = nursery
            if self.sync is not None:
                await nursery.start(self.sync.run)
            await nursery.start(self._watch_store)

        socket_path = shared_socket(self.mountpoint, create=True)
        await run_fuse(self.drive, self.mountpoint, socket_path, self.handle, start, self.close,
                       shared=True, on_ready=on_ready, admit=self.admits)

    async def admits(self, uid: int) -> bool:
        """Who may use the control socket besides root: mapped uids.  A uid not
        known is looked up again (a `user add` since the mount), at most once a
        second, so that strangers cannot keep the store busy."""
        if uid in self.uids:
            return True
        async with self._looking_up:
            if time.monotonic() >= self._looked_up + 1:
                self.uids = await trio.to_thread.run_sync(self._read_uids)
                self._looked_up = time.monotonic()
        return uid in self.uids

    # --- the control socket

    async def handle(self, request: dict, uid: int) -> dict:
        try:
            return await self._handle(request, uid)
        except VaultError as err:
            return {"error": str(err), "code": err.exit_code}
        except Exception:
            # A bug here must not end everyone's mount (the request is never
            # logged: an unlock carries a passphrase).
            log.exception("%s failed", request.get("cmd"))
            return {"error": "internal error: see the mount's log", "code": 1}

    async def _handle(self, request: dict, uid: int) -> dict:
        cmd = request.get("cmd")
        seat = self.drive.seat_of(uid)
        if cmd == "status":
            return self._status(uid)
        if cmd == "sync-status":
            return {"ok": True, "peers": self.sync.as_dict() if self.sync else None}
        if cmd == "unmount":
            if uid != 0:
                raise PermissionDenied("only root unmounts a shared mount")
            pyfuse3.terminate()
            return {"ok": True}
        if cmd == "unlock":
            seat = seat or await self._seat_for(uid)
            return await seat.agent.handle(request)
        if seat is None:
            if uid not in self.uids:
                raise PermissionDenied(_not_mapped(uid))
            raise Locked(LOCKED)
        if cmd == "lock":
            return await seat.agent.handle(request)
        if seat.ops.session is None:
            raise Locked(LOCKED)
        return await seat.ops.session.requests.handle(request)

    def _status(self, uid: int) -> dict:
        seats = self.drive.seats.values() if uid == 0 else filter(None, [self.drive.seat_of(uid)])
        seats = list(seats)
        return {"pid": os.getpid(), "mountpoint": str(self.mountpoint), "since": self.started,
                "shared": True, **self.info,
                "open_files": sum(len(s.ops.session.volume.handles) for s in seats if s.ops.session),
                "tasks": {f"{name} ({s.agent.username})": state
                          for s in seats for name, state in self.tasks[s.number].as_dict().items()},
                "unlocked": [u for s in seats for u in s.agent.status()],
                "alarms": alarms.listed([s.user_id for s in seats])}

    async def _seat_for(self, uid: int) -> Seat:
        """The seat of a mapped uid, made at their first unlock."""
        async with self._seating:
            if (seat := self.drive.seat_of(uid)) is not None:
                return seat
            self.uids = await trio.to_thread.run_sync(self._read_uids)  # `user add` since the mount
            user = self.uids.get(uid)
            if user is None:
                raise PermissionDenied(_not_mapped(uid))
            try:
                gid = pwd.getpwuid(uid).pw_gid
            except KeyError:
                gid = uid
            host = await _host_access(self.spawner, uid, gid)
            try:
                seat = self.drive.add_seat(uid, gid, user["_id"])
            except OverflowError:
                host.close()
                raise InvalidInput("this shared mount has no room for another user: remount it") from None
            kernel = self.kernels[seat.number] = Kernel(seat.ino_out)
            tasks = self.tasks[seat.number] = Tasks()
            store = WatchedStore(self.store, seat, self._committed)
            seat.agent = Agent(user, seat.ops, kernel, tasks, self.layout, store, host=host)
            seat.agent.device = self.sync.device["name"] if self.sync else None
            await self._nursery.start(seat.agent.run, None)
            log.info("uid %d is %s in this mount", uid, user["username"])
            return seat

    # --- one user's commit, taken in by the others

    def _committed(self, writer: object, docs: list[dict]) -> None:
        for doc in docs:
            self._known[doc["_id"]] = doc.get("_rev")
        if any(d.get("type") == USER for d in docs):
            self.uids = self._read_uids()
        # Group changes and pending rotations come from other processes (an
        # administrator's `group member add|remove`) or peers; a rotation a
        # user here started is finished by that user's own request.
        if (writer is None and any(d.get("type") in (GROUP, ROTATION) for d in docs)
                and not self._closing):
            self._nursery.start_soon(self._reshare)
        for seat in self.drive.seats.values():
            if seat.agent.missed is not None:
                seat.agent.missed.extend(docs)
        for seat in self.drive.unlocked():
            volume = seat.ops.session.volume
            if writer is None:  # from a peer, or from another process
                changed = absorb_arrivals(volume, docs)
            else:
                changed = absorb(volume, docs, own=seat is writer, here=True)
            self._follow_up(seat, volume, changed)

    def _follow_up(self, seat: Seat, volume, changed: Absorbed) -> None:
        """What a seat took in asks for: the kernel's caches dropped, files
        sealed again, writes saved, versions taken in later (background tasks)."""
        if not changed or self._closing:
            return
        self._nursery.start_soon(self.kernels[seat.number].drop_all, changed.entries, changed.inodes)
        for node in changed.rekey:
            self._nursery.start_soon(self._rekey, volume, node)
        if changed.save:
            self._nursery.start_soon(self._save_leaving, seat, volume, changed.save)
        if changed.busy:
            self._nursery.start_soon(self._settle_busy, seat, volume, changed.busy)

    async def _watch_store(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """What other processes write to the store (an administrator's `group
        member add|remove`, `user add`), taken in like a commit of a user's,
        once a second: group changes take effect while the members are unlocked."""
        if not hasattr(self.store, "next_seq"):  # a CouchDB store: no local feed to follow
            task_status.started()
            return
        since = self.store.next_seq() - 1
        task_status.started()
        while True:
            await trio.sleep(WATCH_EVERY)
            rows, since = self.store.changes(since)
            docs = []
            for row in rows:
                if self._known.get(row["id"]) == row["rev"]:
                    continue
                doc = None if row["deleted"] else self.store.get(row["id"])
                # A removed document's type is gone with it: read as a change of
                # groups, which makes every user's shares be read again.
                docs.append(doc or {"_id": row["id"], "_rev": row["rev"], "_deleted": True, "type": GROUP})
            if docs and not self._closing:
                self._committed(None, docs)

    async def _reshare(self) -> None:
        """Group members changed: each unlocked holder of a group's file keys
        seals them for new members, and owners give removed members' files new
        keys (share_ops.resume); then everyone takes in what they may open now."""
        if self._resharing:
            self._again = True
            return
        self._resharing = True
        try:
            self._again = True
            while self._again and not self._closing:
                self._again = False
                for seat in self.drive.unlocked():
                    if (session := seat.ops.session) is not None:
                        try:
                            await share_ops.resume(session.volume)
                        except VaultError as err:
                            log.error("sharing after a change of groups: %s", err)
                for seat in self.drive.unlocked():
                    changed = admit_new(seat.ops.session.volume)
                    if changed and not self._closing:
                        await self.kernels[seat.number].drop_all(changed.entries, changed.inodes)
        except Exception:  # a background task: a bug must not end the mount
            log.exception("sharing after a change of groups failed")
        finally:
            self._resharing = False

    async def _rekey(self, volume, node) -> None:
        """Seal again a file another user wrote under its older key (during a
        revoke); the others then open it with the key sealed to them now."""
        try:
            await volume.rekey(node)
        except VaultError as err:
            log.error("could not give %s a new key again: %s", node.fid, err)
            return
        except Exception:  # a background task: a bug must not end the mount
            log.exception("could not give %s a new key again", node.fid)
            return
        for seat in self.drive.unlocked():
            other = seat.ops.session.volume
            if other.sharing is not None and other.sharing.awaiting:
                changed = Absorbed()
                retry_awaiting(other, changed)
                self._follow_up(seat, other, changed)

    async def _save_leaving(self, seat: Seat, volume, nodes) -> None:
        """A share ended while this user had unsaved writes in its files:
        saved now (the owner's mount seals them again), then the files go."""
        try:
            changed = await save_leaving(volume, nodes)
        except Exception:  # a background task: a bug must not end the mount
            log.exception("saving writes made before a share ended failed")
            return
        if changed and not self._closing:
            await self.kernels[seat.number].drop_all(changed.entries, changed.inodes)

    async def _settle_busy(self, seat: Seat, volume, nodes) -> None:
        """Versions that came in while this user committed the same files:
        taken in once their own commits are done."""
        try:
            changed = await settle_busy(volume, nodes)
        except Exception:  # a background task: a bug must not end the mount
            log.exception("taking in versions committed meanwhile failed")
            return
        self._follow_up(seat, volume, changed)

    def _arrived(self, docs: list[dict], conflicts: list[str]) -> None:
        self._committed(None, docs)
        if conflicts and not self._closing:
            for seat in self.drive.unlocked():
                self._nursery.start_soon(settle_conflicts, seat.ops.session.volume, self.store, conflicts,
                                         self.kernels[seat.number], self._settling)

    async def close(self) -> int:
        """Unmounting: every unlocked user's files saved, each on their own
        (one seat's failure never costs another's data), then the store
        closed; how many things could not be saved."""
        self._closing = True
        failures = 0
        try:
            for seat in self.drive.seats.values():
                if seat.ops.session is not None:
                    try:
                        failures += await seat.ops.session.volume.close()
                    except Exception:
                        log.exception("saving the files of seat %d failed", seat.number)
                        failures += 1
        finally:
            self.store.close()
            for seat in self.drive.seats.values():
                if seat.agent is not None:
                    seat.agent.host.close()
        return failures


async def _host_access(spawner: Spawner, uid: int, gid: int) -> HostAccess:
    """What a seat does on host paths runs as its user: a helper dropped to
    their uid, gid and groups (root's own seat is root already)."""
    if uid == 0:
        return Direct()
    try:
        return await trio.to_thread.run_sync(spawner.helper, uid, gid)
    except OSError as err:
        raise VaultError(f"cannot act as uid {uid} on this machine: {err.strerror or err}") from None


def _not_mapped(uid: int) -> str:
    return (f"uid {uid} is no user of this vault: its administrator maps you with "
            f"`fusevault user add NAME --uid {uid}`")
