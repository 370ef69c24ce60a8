"""A personal mount: one user's tree, unlocked for the passphrase TTL.

``serve`` is the bootstrap the mount's server (fs/server.py) calls: the user
unlocked, the tree loaded, then the mount's life (fs/lifecycle.py) with one
agent.  ``--allow-other-users``: other uids may use it, as far as the mode
bits allow (the kernel checks them).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import trio

from fusevault.agent.sessions import Agent
from fusevault.errors import InvalidInput
from fusevault.fs.kernel import Kernel
from fusevault.fs.lifecycle import Mount
from fusevault.fs.operations import Operations
from fusevault.host_access import Direct
from fusevault.paths import control_socket
from fusevault.tasks import Tasks
from fusevault.vault.volume import Volume


class PersonalMount(Mount):
    def __init__(self, volume: Volume, mountpoint: Path, *, user: dict, ttl: float, info: dict,
                 allow_other: bool = False) -> None:
        operations = Operations()
        operations.allow_other = allow_other
        super().__init__(operations, mountpoint, control_socket(mountpoint), volume.store, volume.layout,
                         info)
        self.volume = volume
        self.ttl = ttl
        self.agent = Agent(user, operations.gate, Kernel(), Tasks(), volume.layout, volume.store,
                           host=Direct())
        self.agent.loaded = functools.partial(self.arrivals.loaded, self.agent)  # followed up at once
        volume.device = self.agent.device = self.sync.device["name"] if self.sync else None
        # The writeback cache stays on with peers: the kernel's times are the
        # ones committed (fs/operations.py ``write``), and a peer's change is
        # shown with its size and times (fs/arrivals.py ``_resized``).
        # Group commit stays on with peers too: the pull stores each batch
        # with the metadata changes waiting for it committed first (``settled``).
        if self.sync is not None:
            self.sync.settled = self._settled

    def _settled(self) -> AbstractAsyncContextManager[object]:
        """Around storing a batch a peer sent (sync/replicator.py ``pull``): the
        unlocked volume's grouped metadata changes committed, its metadata lock
        held (vault/tree/inodes.py ``settled``); nothing while locked."""
        session = self.agent.session
        return session.volume.settled() if session is not None else contextlib.nullcontext()

    def agents(self) -> list[Agent]:
        return [self.agent]

    async def agent_for(self, uid: int, cmd: object) -> Agent:
        return self.agent  # the socket answers only this uid and root

    async def services(self, nursery: trio.Nursery) -> None:
        await nursery.start(self.agent.run, self.volume, self.ttl)
        if self.sync is not None:
            await nursery.start(self.sync.run)


def serve(vault: Path, user: str | None, secret: bytes | None, mountpoint: Path,
          on_ready: Callable[[], None] | None, *, allow_other_users: bool) -> None:
    """Unlock ``user`` (a wrong passphrase is the command's one-line error),
    load their tree and serve it at ``mountpoint`` until unmounted."""
    from fusevault.store import open_store
    from fusevault.vault.model import users
    from fusevault.vault.model.confirmed import ttl_seconds
    from fusevault.vault.model.meta_files import reconcile
    from fusevault.vault.services.conflicts import note_stored
    from fusevault.vault.services.opening import hold, unlock_vault
    from fusevault.vault.services.punched_wants import want_punched

    if secret is None:
        raise InvalidInput("the mount server was handed no passphrase")
    unlocked = unlock_vault(vault, user, secret)
    unlocked.user = users.ensure_identity(unlocked.store, unlocked.user, unlocked.key, unlocked.layout.root)
    unlocked.store.close()  # the mount opens its own
    hold(unlocked.layout)
    store = open_store(unlocked.layout.root, unlocked.layout.store)
    reconcile(unlocked.layout, store)
    volume = Volume.load(unlocked.layout, store, unlocked.key,
                         users.root_of(unlocked.layout.root, unlocked.user, unlocked.key, store))
    want_punched(volume)  # records a peer's version names that gc punched here: fetched by the sync
    note_stored(volume)  # the store's conflicts' leaves, before any commit of hers (conflicts.py)
    ttl = ttl_seconds(store.get(unlocked.key.user_id), unlocked.key, unlocked.layout.root)
    info = {"vault": str(vault.resolve()), "user": unlocked.user.get("username")}
    mount = PersonalMount(volume, mountpoint, user=unlocked.user, ttl=ttl, info=info,
                          allow_other=allow_other_users)
    trio.run(mount.run, on_ready)
