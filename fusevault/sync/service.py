"""The mount's sync task: one replicator per peer, started and stopped as
``fusevault peer add`` and ``peer remove`` change the Peers documents.

Runs in the mount's nursery (``nursery.start``) whether or not anyone is
unlocked: replication needs no key, only the store and the ``.vf`` files.
What arrives is handed to ``arrived`` on the trio thread, which lets the
unlocked trees take it in and the kernel drop what it cached.

A shared mount (``--allow-other``, run by root) keeps no backup buddy: the
buddy's folder is a user's ``peer_dir_for_storage``, and its store and
``.vf`` files would be made there by root, along whatever path that user
put in place.  Such a peer is stopped with a one-line reason (``sync
status``, the log); the user's personal mount keeps it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from fusevault.errors import PeerUnavailable, VaultError
from fusevault.store import replica
from fusevault.store.local import LocalStore
from fusevault.sync.key_mirror import KeyMirror
from fusevault.sync.replicator import (
    BACKOFF_MAX,
    NOTHING_BENEATH,
    VAULT_DOC,
    Arrived,
    Beneath,
    Names,
    PeerStatus,
    Replicator,
)
from fusevault.vault.format.layout import Layout, open_layout
from fusevault.vault.format.layout import create as create_layout
from fusevault.vault.model.alarms import for_user
from fusevault.vault.model.peers import digest, is_confirmed, peers, read_credentials, url_of
from fusevault.vault.model.trust import USER

if TYPE_CHECKING:
    from fusevault.sync.couch_api import CouchDatabase

log = logging.getLogger(__name__)

NOT_CONFIRMED = "not added on this device: not contacted (`fusevault peer confirm NAME` if it is yours)"
PEERS_EVERY = 1.0  # how soon `peer add` / `peer remove` take effect in a running mount
NO_BUDDY = ("a shared mount (--allow-other) keeps no backup buddy (--store-only): its folder is a "
            "user's, so that user's own mount keeps it")


def device_of(store: LocalStore) -> dict:
    """This replica's id and name (the DEVICE of conflict copies), made once."""
    device = replica.get_local(store, "device")
    if not device:
        device = {"id": uuid.uuid4().hex, "name": socket.gethostname().split(".")[0] or "device"}
        replica.put_local(store, "device", device)
    return device


class SyncService:
    def __init__(self, store: LocalStore, layout: Layout, arrived: Arrived, names: Names, *,
                 beneath: Beneath = NOTHING_BENEATH, shared: bool = False) -> None:
        self.shared = shared  # a shared mount, run by root: no buddies (NO_BUDDY)
        self.store = store
        self.layout = layout
        self.arrived = arrived
        # Whether a tree unlocked here shows a version as a live file's (Replicator.names).
        self.names = names
        self.beneath = beneath  # what the trees want of the revisions under refused ones (Replicator.beneath)
        self.status: dict[str, PeerStatus] = {}
        self.device = device_of(store)
        self.keys = KeyMirror(store, layout)  # one for all peers
        self._running: dict[str, tuple[dict, trio.CancelScope]] = {}
        self._replicators: dict[str, Replicator] = {}
        # What each replicator of this store holds around storing a pulled
        # batch (Replicator.settled): a personal mount's group commit (fs/personal.py).
        self.settled: Callable[[], AbstractAsyncContextManager[object]] = contextlib.nullcontext

    def want_again(self) -> None:
        """A tree came to want something of the peers: each replicator's pull asks now, not after its
        longpoll (Replicator.want_again)."""
        for replicator in self._replicators.values():
            replicator.want_again()

    def has_peers(self) -> bool:
        return bool(peers(self.store))

    def as_dict(self) -> list[dict]:
        for name, replicator in self._replicators.items():
            if name in self.status:  # counted now: a commit a moment ago is pending
                self.status[name].pending_up = replicator.pending_up()
        return [status.as_dict() for _, status in sorted(self.status.items())]

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        device = self.device["id"]
        async with trio.open_nursery() as nursery:
            task_status.started()
            # The trees unlocked look at the conflicts left from before (arrived while locked), off the
            # loop (fs/arrivals.py ``_hand``): a scan of the store's every conflict made here, and each
            # read again on the loop, froze the mount at its start (attack round 74c (2)).
            self.arrived([], [])
            while True:
                wanted = {p["_id"]: p for p in peers(self.store)}
                for peer_id, (peer, scope) in list(self._running.items()):
                    if wanted.get(peer_id, {}).get("_rev") != peer["_rev"]:
                        scope.cancel()
                        del self._running[peer_id]
                        self.status.pop(peer["name"], None)
                new = [peer for peer_id, peer in wanted.items() if peer_id not in self._running]
                for peer in new:
                    scope = await nursery.start(self._replicate, peer, device)
                    self._running[peer["_id"]] = (peer, scope)
                await trio.sleep(PEERS_EVERY)

    async def _replicate(self, peer: dict, device: str, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            status = self.status[peer["name"]] = PeerStatus(peer["name"], url_of(peer))
            task_status.started(scope)
            if self.shared and peer.get("path_to_dump_chunks"):
                status.state, status.error = "stopped", NO_BUDDY
                log.error("peer %s: %s", peer["name"], NO_BUDDY)
                return
            if not await trio.to_thread.run_sync(is_confirmed, self.layout.root, peer):
                status.state, status.error = "stopped", NOT_CONFIRMED
                self._refused(peer)
                return
            try:
                auth = read_credentials(peer.get("credentials"))
            except VaultError as err:
                status.state, status.error = "stopped", str(err)
                return
            # Here, not at the module's top: a mount with no peer never loads the HTTP client (httpx,
            # a fifth of a mount's start; sync/waited.py).
            from fusevault.sync.couch_api import CouchDatabase

            db = CouchDatabase(url_of(peer), auth, label=f"peer {peer['name']} ({url_of(peer)})")
            try:
                if peer.get("path_to_dump_chunks"):
                    await self._keep_for_owner(peer, device, db, status)
                else:
                    replicator = Replicator(self.store, self.layout, device, peer["name"], db,
                                            self.arrived, status, self.keys)
                    replicator.settled = self.settled
                    replicator.names = self.names
                    replicator.beneath = self.beneath
                    await self._run(replicator)
            finally:
                with trio.CancelScope(shield=True):
                    await db.aclose()

    def _refused(self, peer: dict) -> None:
        """A Peers document not confirmed on this device: said in the log and each user's status."""
        text = (f"peer {str(peer.get('name'))!r} ({url_of(peer)}) was not added on this device (a "
                f"document planted or changed in the store?): not contacted, its credentials not read; "
                f"if it is yours: `fusevault peer confirm {peer.get('name')} --vault VAULT`")
        for user in self.store.iter_type(USER):
            for_user(user["_id"]).warn("peer-unconfirmed", digest(peer), text)
        if not any(True for _ in self.store.iter_type(USER)):
            log.warning("%s", text)

    async def _run(self, replicator: Replicator) -> None:
        self._replicators[replicator.name] = replicator
        try:
            await replicator.run()
        finally:
            if self._replicators.get(replicator.name) is replicator:
                del self._replicators[replicator.name]

    async def _keep_for_owner(self, peer: dict, device: str, db: CouchDatabase, status: PeerStatus) -> None:
        """A backup buddy: another vault's replica, without its keys, in
        ``path_to_dump_chunks`` (documents and ``.vf`` records as they came).
        It replicates both ways, so a database its owner lost is filled again."""
        while True:
            try:
                vault = await db.get(VAULT_DOC)
                if vault is None:
                    raise PeerUnavailable(f"{db.label} holds no vault yet")
                break
            except PeerUnavailable as err:
                status.state, status.error = "waiting", str(err)
                await trio.sleep(BACKOFF_MAX)
        root = Path(peer["path_to_dump_chunks"])
        try:
            layout = open_layout(root) if (root / "vault.json").exists() else \
                create_layout(root, {"kind": "local"}, vault_id=str(vault["vault_id"]))
            store = LocalStore(root / "store.sqlite")
        except VaultError as err:
            status.state, status.error = "stopped", f"{root}: {err}"
            return
        try:
            await self._run(Replicator(store, layout, device, peer["name"], db,
                                       lambda docs, conflicts: None, status))
        finally:
            store.close()


def sync_service(store: object, layout: Layout, arrived: Arrived, names: Names, *,
                 beneath: Beneath = NOTHING_BENEATH, shared: bool = False) -> SyncService | None:
    """The sync task of a mount, for a vault with an embedded store (one kept
    in CouchDB is already where its replicas are)."""
    if not isinstance(store, LocalStore):
        return None
    return SyncService(store, layout, arrived, names, beneath=beneath, shared=shared)
