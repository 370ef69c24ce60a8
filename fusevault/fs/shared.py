"""A shared mount: root mounts a vault once, and each mapped Linux user
unlocks their own keys in it (``fusevault mount --allow-other``).

Nobody is unlocked at first.  ``fusevault unlock`` from a Linux user reaches
the mount's socket (in /run/fusevault, open to every local user); the
socket names the caller's uid (SO_PEERCRED), the uid names the vault user
(``user add --uid``), and the passphrase opens that user's keys only.  The
user gets a seat (fs/drive.py) with an ``Agent`` of its own: their own
passphrase TTL, ``lock`` and services, exactly as in a personal mount.

Every seat's Volume writes through a ``WatchedStore`` naming the seat; each
commit is taken in at once by the other unlocked seats (fs/arrivals.py, as a
peer's documents are), whose kernel caches are then dropped, so each user
sees the others' changes to the files they share.  The mount's life and its
control socket's routing are fs/lifecycle.py's, as for a personal mount.
"""

from __future__ import annotations

import functools
import logging
import os
import pwd
import time
from collections.abc import Callable
from pathlib import Path

import trio

from fusevault.agent.gate import LOCKED
from fusevault.agent.sessions import Agent
from fusevault.crypto.signing import signer_of
from fusevault.errors import CorruptData, Forged, InvalidInput, Locked, PermissionDenied, VaultError
from fusevault.fs.drive import Drive, Seat
from fusevault.fs.kernel import Kernel
from fusevault.fs.lifecycle import Mount
from fusevault.host_access import Direct, HostAccess, Spawner
from fusevault.paths import shared_socket
from fusevault.store import Store
from fusevault.store.watched import WatchedStore
from fusevault.tasks import Tasks
from fusevault.vault.format.layout import Layout
from fusevault.vault.model import alarms, confirmed
from fusevault.vault.model.groups import GROUP
from fusevault.vault.model.trust import self_signed
from fusevault.vault.model.users import USER

log = logging.getLogger(__name__)
WATCH_EVERY = 1.0  # seconds between looks at what other processes wrote
WATCH_LOG_EVERY = 60  # turns between log lines while the store keeps failing to be read


class SharedMount(Mount):
    shared = True

    def __init__(self, layout: Layout, store: Store, mountpoint: Path, info: dict,
                 spawner: Spawner) -> None:
        self.spawner = spawner  # a helper per seat: host paths with the user's rights
        self.layout = layout
        self.disputed: dict[int, list[str]] = {}  # uids two users claim: no one's (``_read_uids``)
        self.uids = self._read_uids(store)
        self.drive = Drive(lambda uid: uid in self.uids, lambda: os.stat(layout.root),
                           lambda: os.statvfs(layout.root))
        super().__init__(self.drive, mountpoint, shared_socket(mountpoint, create=True), store, layout,
                         {"shared": True, **info})
        self._seating = trio.Lock()
        self._looking_up, self._looked_up = trio.Lock(), time.monotonic()  # admits()
        # id -> rev of every document this mount wrote or took in: what else
        # shows in the store's changes was written by another process.
        self._known: dict[str, str | None] = {}

    def _read_uids(self, store: Store) -> dict[int, dict]:
        """uid -> the user document that maps it: one its user signed (``_vouched``), the only one that
        claims that uid.  A uid two users claim maps neither (an alarm for each, ``disputed``): which
        one is genuine is not the store's order to say, and the later must never take her seat."""
        claims: dict[int, dict[str, dict]] = {}
        for doc in store.iter_type(USER):
            uid = doc.get("uid")
            # Only whole numbers: another type (a store writer's) would fail every read of the watcher's batch
            if isinstance(uid, int) and not isinstance(uid, bool) and _vouched(self.layout.root, doc):
                claims.setdefault(uid, {})[str(doc["_id"])] = doc
        self.disputed = {uid: sorted(docs) for uid, docs in claims.items() if len(docs) > 1}
        for uid, ids in self.disputed.items():
            _said_disputed(uid, ids)
        return {uid: next(iter(docs.values())) for uid, docs in claims.items() if len(docs) == 1}

    def fuse_options(self) -> set[str]:
        # One inode serves several users: the Drive checks each request,
        # not the kernel against one set of mode bits.
        return (super().fuse_options() - {"default_permissions"}) | {"allow_other"}

    async def services(self, nursery: trio.Nursery) -> None:
        if self.sync is not None:
            await nursery.start(self.sync.run)
        await nursery.start(self._watch_store)

    def agents(self) -> list[Agent]:
        return [seat.agent for seat in self.drive.seats.values() if seat.agent is not None]

    async def admits(self, uid: int) -> bool:
        """Who may use the control socket besides root: mapped uids.  A uid not
        known is looked up again (a `user add` since the mount), at most once a
        second, so that strangers cannot keep the store busy."""
        if uid in self.uids or uid in self.disputed:  # disputed: told why at their unlock
            return True
        async with self._looking_up:
            if time.monotonic() >= self._looked_up + 1:
                self.uids = await trio.to_thread.run_sync(self._read_uids, self.store)
                self._looked_up = time.monotonic()
        return uid in self.uids or uid in self.disputed

    # --- the control socket (routed by fs/lifecycle.py)

    def may_unmount(self, uid: int) -> None:
        if uid != 0:
            raise PermissionDenied("only root unmounts a shared mount")

    def visible(self, uid: int) -> list[Agent]:
        if uid == 0:
            return self.agents()
        seat = self.drive.seat_of(uid)
        return [seat.agent] if seat is not None and seat.agent is not None else []

    async def agent_for(self, uid: int, cmd: object) -> Agent:
        seat = self.drive.seat_of(uid)
        if cmd == "unlock" and (seat is None or seat.agent is None or seat.agent.session is None):
            seat = await self._seat_for(uid)
        if seat is None or seat.agent is None:
            if uid not in self.uids:
                raise PermissionDenied(_not_mapped(uid))
            raise Locked(LOCKED)
        return seat.agent

    async def _seat_for(self, uid: int) -> Seat:
        """The seat of a mapped uid, made at their first unlock.  The map is read again at every
        unlock of a locked seat: a seat whose uid it now gives to another user, or to no one, is
        retired (a claim planted before her first unlock held her seat until remount, round 19 (6);
        an administrator's `user remove` and `user add --uid` of the same uid as well).  An unlocked
        seat keeps its user until locked."""
        async with self._seating:
            self.uids = await trio.to_thread.run_sync(self._read_uids, self.store)  # `user add` since
            user = self.uids.get(uid)
            if (seat := self.drive.seat_of(uid)) is not None:
                if user is not None and user["_id"] == seat.user_id:
                    return seat
                if seat.agent is not None and not await seat.agent.retire():
                    return seat  # unlocked meanwhile: hers until she locks
                self.drive.unseat(seat)
                log.warning("uid %d is no longer %s's in the user map: that seat is retired", uid,
                            seat.user_id)
            if uid in self.disputed:
                raise PermissionDenied(f"uid {uid} is claimed by several users of this vault "
                                       f"({', '.join(self.disputed[uid])}): refused; its administrator "
                                       "removes the one that is not genuine")
            if user is None:
                raise PermissionDenied(_not_mapped(uid))
            try:
                gid = pwd.getpwuid(uid).pw_gid
            except KeyError:
                gid = uid
            host = await _host_access(self.spawner, uid, gid)
            try:
                seat = self.drive.add_seat(uid, gid, user["_id"])
            except OverflowError as err:
                host.close()
                raise InvalidInput(f"this shared mount has no room for another user ({err}): its "
                                   "administrator checks the users of the vault and remounts it") from None
            store = WatchedStore(self.store, seat, self._committed)
            seat.agent = Agent(user, seat.ops.gate, Kernel(seat.ino_out), Tasks(), self.layout, store,
                               host=host)
            seat.agent.device = self.sync.device["name"] if self.sync else None
            seat.agent.loaded = functools.partial(self.arrivals.loaded, seat.agent)  # followed up at once
            assert self.arrivals.nursery is not None
            await self.arrivals.nursery.start(seat.agent.run, None)
            log.info("uid %d is %s in this mount", uid, user["username"])
            return seat

    # --- what others wrote

    def _committed(self, writer: object, docs: list[dict]) -> None:
        """A seat's commit (its WatchedStore names the seat)."""
        assert isinstance(writer, Seat)
        self.arrivals.committed(writer.agent, docs)

    def noted(self, docs: list[dict]) -> None:
        for doc in docs:
            self._known[doc["_id"]] = doc.get("_rev")
        if any(d.get("type") == USER for d in docs):
            self.uids = self._read_uids(self.store)

    async def _watch_store(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """What other processes write to the store (an administrator's `group
        member add|remove`, `user add`), taken in like a commit of a user's,
        once a second: group changes take effect while the members are unlocked."""
        if not hasattr(self.store, "next_seq"):  # a CouchDB store: no local feed to follow
            task_status.started()
            return
        since = self.store.next_seq() - 1
        failed = 0
        task_status.started()
        while True:
            await trio.sleep(WATCH_EVERY)
            try:
                rows, after = self.store.changes(since)
                self._take_in(rows)
                since, failed = after, 0
            except Exception:  # the store failed (held locked, damaged): the watcher and the mount go on
                # Read again at the next turn, however long it takes: a batch
                # is never left unread, for it may hold a member's removal.
                # Rows that do not read are skipped one by one in _take_in.
                if failed % WATCH_LOG_EVERY == 0:
                    log.exception("taking in what another process wrote failed (%d time(s))", failed + 1)
                failed += 1

    def _take_in(self, rows: list[dict]) -> None:
        docs = []
        for row in rows:
            if self._known.get(row["id"]) == row["rev"]:
                continue
            try:
                doc = None if row["deleted"] else self.store.get(row["id"])
            except CorruptData as err:
                # A body that does not read (a store writer's, nested too deep,
                # not JSON) is skipped alone: the rows that came with it (an
                # administrator's `group member remove`) are taken in still.
                self._unreadable(row["id"], err)
                continue
            # A removed document's type is gone with it: read as a change of
            # groups, which makes every user's shares be read again.
            docs.append(doc or {"_id": row["id"], "_rev": row["rev"], "_deleted": True, "type": GROUP})
        if docs and not self.arrivals.closing:
            self.arrivals.committed(None, docs)

    def _unreadable(self, doc_id: str, err: CorruptData) -> None:
        """An alarm for every unlocked user (``fusevault status``), once per document."""
        text = f"document {doc_id!r} in the store does not read ({err}): skipped, the others are taken in"
        users = [agent.user_id for agent in self.arrivals.unlocked()]
        if not users:
            log.warning("%s", text)
        for user_id in users:
            alarms.for_user(user_id).warn("malformed", doc_id, text)


def _vouched(root: Path, doc: dict) -> bool:
    """Whether a user document may map a uid: signed by the key it names (its ``uid`` changed by the
    store's writer breaks that), or unsigned from a user this device never saw sign (one from before
    signatures, who signs at their first unlock: vault/model/migrate.py).  Refused: an alarm."""
    user_id = doc.get("_id")
    try:
        signer = signer_of(doc)
    except Forged:
        signer = ""
    if signer is None:
        held = isinstance(user_id, str) and not confirmed.signed_before(root, user_id)
    else:
        held = self_signed(doc)
    if not held:
        alarms.for_user(str(user_id)[:80]).warn(
            "forged-user", f"uid {doc.get('uid')}", f"user document {str(user_id)[:80]!r} naming uid "
            f"{doc.get('uid')} is not signed by its user's key (forged, or its uid changed): it maps no uid "
            "in the shared mount")
    return held


def _said_disputed(uid: int, ids: list[str]) -> None:
    for user_id in ids:
        alarms.for_user(user_id[:80]).warn(
            "uid-disputed", f"uid {uid}", f"Linux uid {uid} is claimed by several users of this vault "
            f"({', '.join(i[:80] for i in ids)}): the shared mount maps it to none of them")


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


def serve(layout: Layout, vault: Path, mountpoint: Path, spawner: Spawner,
          on_ready: Callable[[], None] | None) -> None:
    """Root's shared mount of ``vault``: nobody unlocked until they ask.
    ``spawner`` was made first, while the process held no key, no store and
    no thread: what users ask of the host runs in helpers it forks (host_access.py)."""
    from fusevault.store import open_store
    from fusevault.vault.model.meta_files import reconcile
    from fusevault.vault.services.opening import hold

    hold(layout)
    store = open_store(layout.root, layout.store)
    reconcile(layout, store)
    shared = SharedMount(layout, store, mountpoint, {"vault": str(vault.resolve()), "user": None}, spawner)
    trio.run(shared.run, on_ready)
