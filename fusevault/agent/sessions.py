"""The unlocked user of a mount: their tree, the services that need their
keys, and the lock that wipes them when the passphrase TTL runs out.

A ``Session`` is everything made from one unlock: the decrypted Volume, the
``.versions`` view, the request handler and the background services (gc,
imports, drop boxes), which run in the session's own cancel scope.  The
``Agent`` makes a session on ``fusevault unlock`` and ends it on
``fusevault lock`` or when ``Expiry`` says the TTL is over.  Locking stops
the services, lets the kernel write back and forget what it caches, saves
everything, then drops the tree, the keys and the cached ciphers; requests
get EACCES until the next unlock, which loads the tree again under the
same inode numbers.
"""

from __future__ import annotations

import base64
import binascii
import gc
import logging
from collections.abc import Callable

import trio

from fusevault.agent.expiry import Expiry, Unlock
from fusevault.agent.gate import Gate
from fusevault.crypto import aead
from fusevault.errors import InvalidInput, LockFailed, VaultError
from fusevault.host_access import HostAccess
from fusevault.host_access.threads import HostThreads
from fusevault.imports.watcher import ImportService
from fusevault.links.owner import collect_periodically as collect_drops
from fusevault.store import Store
from fusevault.tasks import Tasks
from fusevault.vault.format.layout import Layout
from fusevault.vault.model import confirmed, users
from fusevault.vault.services import rotation
from fusevault.vault.services.absorbing import Absorbed, absorb
from fusevault.vault.services.conflicts import note_stored
from fusevault.vault.services.placing import KernelCache
from fusevault.vault.services.punched_wants import want_punched
from fusevault.vault.services.requests import Requests, collect_periodically
from fusevault.vault.services.versions_view import VersionsView
from fusevault.vault.volume import Volume

log = logging.getLogger(__name__)

# Background garbage collection: a while after unlocking, then every few hours.
GC_FIRST = 10 * 60
GC_EVERY = 6 * 3600
# Files dropped into the user's drop-box links are fetched this long after the mount, then this often.
DROPS_FIRST = 5
DROPS_EVERY = 60
# A lock that could not save everything is tried again this much later.
RETRY_LOCK = 60


class Session:
    def __init__(self, volume: Volume, kernel: KernelCache, tasks: Tasks, host: HostAccess,
                 threads: HostThreads | None = None) -> None:
        """``threads``: the user's own (``Agent.host_threads``, kept for the mount's life)."""
        threads = threads or HostThreads()
        self.volume = volume
        self.tasks = tasks
        self.view = VersionsView(volume)
        self.importer = ImportService(volume, tasks.get_state("import"), kernel, host, threads)
        self.requests = Requests(volume, busy=lambda: set(self.view.busy), kernel=kernel,
                                 settings_changed=self.importer.reconfigure, host=host, host_threads=threads)
        self.stopped = trio.Event()

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """The services, until the returned scope is cancelled."""
        try:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    await nursery.start(collect_periodically, self.requests, GC_FIRST, GC_EVERY,
                                        self.tasks.get_state("gc"))
                    await nursery.start(self.importer.run)
                    await nursery.start(collect_drops, self.requests.links, DROPS_FIRST, DROPS_EVERY,
                                        self.tasks.get_state("drop boxes"))
                    if self.volume.ledger is not None:
                        await nursery.start(self.volume.ledger.keep_saved)
                    await nursery.start(self.volume.keep_flushed)
                    await nursery.start(rotation.keep_moves_rekeyed, self.volume)
                    # Before serving: a revoke left pending must finish
                    # before the files it protects are written again.
                    await self._settle_shares()
                    task_status.started(scope)
        finally:
            for name in ("gc", "import", "drop boxes"):
                self.tasks.get_state(name).set("stopped: locked")
            self.stopped.set()


    async def _settle_shares(self) -> None:
        # Rotations left pending, keys a new group member still lacks.
        try:
            await rotation.resume(self.volume)
        except VaultError as err:
            log.error("sharing: %s", err)
        self.volume.tree.check_keys()  # keys her other devices gave while a revocation had not reached them


class Agent:
    def __init__(self, user: dict, gate: Gate, kernel: KernelCache, tasks: Tasks,
                 layout: Layout, store: Store, *, host: HostAccess) -> None:
        self.user_id = user["_id"]
        # The user's rights on host paths (export, the watched folder): this
        # process's own in a personal mount, a helper running as them in a
        # shared one (host_access.py).
        self.host = host
        # The user's own threads for calls on folders of his choosing (host_access/threads.py): one
        # set for the mount's life, not per unlock: a call that never answers keeps its thread past
        # his lock, and a set per unlock let lock, unlock, again take a thread more each (52b (2)).
        self.host_threads = HostThreads()
        self.username = user["username"]
        self.gate = gate  # what the FUSE layer asks: unlocked or not
        self.kernel = kernel
        self.tasks = tasks
        self.expiry = Expiry(self._expired)
        self._scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None
        self._session: Session | None = None
        self._busy = trio.Lock()  # one unlock or lock at a time
        # While the tree loads (a worker thread), what other users of a shared
        # mount commit meanwhile is kept here and taken in once it is loaded.
        self.missed: list[dict] | None = None
        # Kept while locked: fid -> inode, so the kernel's numbers stay right.
        self._inodes: dict[str, int] = {}
        self._store = store
        self._layout = layout
        self.device: str | None = None  # this replica's name, for the versions it writes
        # Called once an unlock loaded the tree (fs/arrivals.py ``loaded``) with what taking in the
        # ``missed`` documents asks for (a re-key of a node written under her older key, the kernel's
        # caches dropped...: followed up as any arrival), and so that what the tree wants of the
        # peers (``want_punched``) is asked for now, not after the sync's longpoll.
        self.loaded: Callable[[Absorbed], None] = _nothing

    @property
    def session(self) -> Session | None:
        return self._session

    async def run(self, volume: Volume | None, ttl: float = 0, *,
                  task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve the unlocked ``volume`` for ``ttl`` seconds, then until unlocked
        again (no volume: locked until the first unlock, as in a shared mount)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.expiry.run)
            if volume is not None:
                await self._open(volume, ttl)
            task_status.started()

    async def _open(self, volume: Volume, ttl: float) -> None:
        session = Session(volume, self.kernel, self.tasks, self.host, self.host_threads)
        assert self._nursery is not None  # run() has begun
        self._scope = await self._nursery.start(session.run)
        self._session = session
        self.gate.open(session)
        self.expiry.start(self.user_id, ttl)

    # --- the control socket's unlock, lock and status

    async def unlock(self, passphrase: bytes) -> Unlock:
        async with self._busy:
            # The document is read again: `fusevault passwd` may have changed it.
            doc = await trio.to_thread.run_sync(self._store.get, self.user_id)
            if doc is None:
                raise InvalidInput(f"user {self.username} is no longer in this vault")
            key = await trio.to_thread.run_sync(users.unlock_here, self._layout.root, doc, passphrase, None,
                                                self._store)
            doc = await trio.to_thread.run_sync(users.ensure_identity, self._store, doc, key,
                                                self._layout.root)
            if self.session is None:
                root = await trio.to_thread.run_sync(users.root_of, self._layout.root, doc, key, self._store)
                self.missed = []
                try:
                    volume = await trio.to_thread.run_sync(
                        Volume.load, self._layout, self._store, key, root, self._inodes)
                    volume.device = self.device
                    await trio.to_thread.run_sync(want_punched, volume)  # not shown to anyone yet
                    await trio.to_thread.run_sync(note_stored, volume)  # before any commit of hers
                    changed = absorb(volume, self.missed, own=False)
                finally:
                    self.missed = None
                await self._open(volume, await self._ttl(key))
                self.loaded(changed)
                log.info("unlocked %s", self.username)
            else:
                self.expiry.start(self.user_id, await self._ttl(key))
            return self.expiry.unlocked[self.user_id]

    async def _ttl(self, key) -> float:
        """The authenticated TTL (vault/model/confirmed.py), read after the unlock that signs the
        documents of a vault from before signatures."""
        doc = await trio.to_thread.run_sync(self._store.get, self.user_id)
        return await trio.to_thread.run_sync(confirmed.ttl_seconds, doc, key, self._layout.root)

    async def lock(self, why: str) -> bool:
        """Wipe the user's keys now; False if they were not unlocked."""
        async with self._busy:
            session = self.session
            if session is None:
                return False
            unlock = self.expiry.unlocked.get(self.user_id)
            self.expiry.stop(self.user_id)
            assert self._scope is not None  # a session runs in it
            self._scope.cancel()
            await session.stopped.wait()
            # Shielded: an unmount arriving now waits, rather than finding the
            # session half gone with its last writes unsaved.
            with trio.CancelScope(shield=True):
                self.gate.locking(True)
                failures = -1
                try:
                    await self._drop_kernel_caches(session.volume)
                    failures = await session.volume.save_all()
                finally:
                    if failures:
                        # Wiping now would lose what is unsaved (a full disk, a
                        # store away): stay unlocked, serve on, say so.
                        self.gate.locking(False)
                        await self._resume(session, unlock)
                if failures:
                    raise LockFailed(f"{failures} file(s) could not be saved (see the mount's log); "
                                     "still unlocked: make room and lock again")
                self._wipe(session.volume)
            log.info("locked %s: %s", self.username, why)
            return True

    async def _resume(self, session: Session, unlock: Unlock | None) -> None:
        assert self._nursery is not None
        if not self._nursery.cancel_scope.cancel_called:  # not while unmounting
            session.stopped = trio.Event()
            self._scope = await self._nursery.start(session.run)
        left = unlock.deadline - trio.current_time() if unlock else 0
        self.expiry.start(self.user_id, max(left, RETRY_LOCK), since=unlock.since if unlock else None)

    def _wipe(self, volume: Volume) -> None:
        self._inodes = volume.inode_numbers()
        self.gate.close()
        self._session = None
        volume.wipe()
        aead.forget_keys()
        gc.collect()

    async def _expired(self, user_id: str) -> None:
        try:
            await self.lock("the passphrase TTL ran out")
        except VaultError as err:
            log.error("could not lock %s when the TTL ran out: %s; trying again in %d s",
                      self.username, err, RETRY_LOCK)

    async def _drop_kernel_caches(self, volume: Volume) -> None:
        # Names the kernel knows, and the pages it holds in plaintext.  With
        # the writeback cache this also writes dirty pages back, while the
        # volume still takes them.
        known = [(node.ino, node) for node in volume.nodes() if node.lookups > 0 or node.ino == 1]
        await self.kernel.drop_all([link for _, node in known for link in node.links],
                                   [ino for ino, _ in known])

    def status(self) -> list[dict]:
        return [{"user": self.username, "since": u.since, "expires": u.expires}
                for u in self.expiry.unlocked.values()]

    async def retire(self) -> bool:
        """Stop for good if locked (a shared mount's seat whose uid the user map now gives to another
        user, fs/shared.py): its services end, its store and host helper close.  False if unlocked."""
        async with self._busy:  # not while an unlock is under way
            if self.session is not None:
                return False
            if self._nursery is not None:
                self._nursery.cancel_scope.cancel()
            self._store.close()
            self.host.close()
            return True

    async def close(self) -> int:
        """Unmounting: save what the user has open, close the store; how
        many things could not be saved."""
        if self.session is not None:
            return await self.session.volume.close()
        self._store.close()
        return 0

    async def handle(self, request: dict) -> dict | None:
        """Answer unlock and lock; None for requests that are not the agent's."""
        try:
            if request.get("cmd") == "unlock":
                unlock = await self.unlock(_passphrase(request))
                return {"ok": True, "user": self.username, "expires": unlock.expires}
            if request.get("cmd") == "lock":
                return {"ok": True, "was_unlocked": await self.lock("fusevault lock")}
        except VaultError as err:
            return {"error": str(err), "code": err.exit_code}
        except Exception:
            # A bug here must not end the mount (the request is never logged:
            # it carries the passphrase).
            log.exception("%s failed", request.get("cmd"))
            return {"error": "internal error: see the mount's log", "code": 1}
        return None


def _nothing(changed: Absorbed) -> None:
    """No mount to tell of an unlock."""


def _passphrase(request: dict) -> bytes:
    try:
        secret = base64.b64decode(request["passphrase"], validate=True)
    except (KeyError, TypeError, binascii.Error):
        raise InvalidInput("the unlock request carries no passphrase") from None
    if not secret:
        raise InvalidInput("the passphrase is empty")
    return secret
