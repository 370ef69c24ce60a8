"""``fusevault init --join``: a new replica of a vault, built from a peer."""

from __future__ import annotations

import logging
import re
import shutil
import sys
from pathlib import Path

import trio

from fusevault.errors import InvalidInput, VaultNotFound
from fusevault.store.local import LocalStore
from fusevault.sync.couch_api import CouchDatabase
from fusevault.sync.key_mirror import KeyMirror
from fusevault.sync.replicator import VAULT_DOC, PeerStatus, Replicator
from fusevault.sync.service import device_of
from fusevault.vault.format import layout as layouts
from fusevault.vault.format.padding import DEFAULT as padding_default
from fusevault.vault.model import meta_files, users
from fusevault.vault.model.peers import add_peer, confirm_peer, parse_url, read_credentials, url_of

log = logging.getLogger(__name__)


async def join(target: Path, url: str, credentials: dict | None, username: str, secret: bytes,
               peer_name: str, padding: str = padding_default) -> dict:
    """Check that ``username`` is in the peer's vault and that ``secret``
    opens their keys, then pull everything the peer holds into a new vault
    at ``target``.  On any failure the half-made vault is removed again.
    ``padding`` is this replica's own choice: a server must not be the one
    to say sizes may show."""
    layouts.check_new(target)
    made = not target.exists()
    url = url_of(parse_url(url))
    db = CouchDatabase(url, read_credentials(credentials), label=url)
    try:
        if await db.info() is None:
            raise InvalidInput(f"there is no database at {url}")
        vault = await db.get(VAULT_DOC)
        if vault is None or not re.fullmatch(r"[0-9a-f]{32}", str(vault.get("vault_id"))):
            raise InvalidInput(f"{url} holds no fusevault vault: run `fusevault peer add` on a "
                               "device that has the vault first")
        # The user and the passphrase first: a mistake costs one document,
        # not the whole database.
        user = await _remote_user(db, url, username)
        await trio.to_thread.run_sync(users.unlock, user, secret)  # a wrong passphrase ends it here
        layout = layouts.create(target, {"kind": "local"}, vault_id=vault["vault_id"], padding=padding)
        try:
            return await _replicate(layout, db, username, secret, peer_name, url, credentials)
        except BaseException:
            _remove(target, made)
            raise
    finally:
        await db.aclose()


async def _replicate(layout, db: CouchDatabase, username: str, secret: bytes, peer_name: str,
                     url: str, credentials: dict | None) -> dict:
    store = LocalStore(layout.root / "store.sqlite")
    try:
        status = PeerStatus(peer_name, url)
        replicator = Replicator(store, layout, device_of(store)["id"], peer_name, db,
                                lambda docs, conflicts: None, status, KeyMirror(store, layout))
        while await replicator.pull():
            print(f"\rreceived {status.docs_down} documents, {status.records_down} blocks",
                  end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
        users.find_user(store, username)  # checked before the pull; it came with it
        meta_files.reconcile(layout, store)
        confirm_peer(layout.root, add_peer(store, peer_name, url, credentials))
        store.sync()
        return {"documents": status.docs_down, "records": status.records_down}
    finally:
        store.close()


async def _remote_user(db: CouchDatabase, url: str, username: str) -> dict:
    """The user's document as the peer holds it (VaultNotFound if none)."""
    found = [doc for doc in await db.find({"type": users.USER, "username": username})
             if doc.get("username") == username]
    if not found:
        raise VaultNotFound(f"no user {username!r} in the vault at {url}")
    return found[0]


def _remove(target: Path, made: bool) -> None:
    try:
        if made:
            shutil.rmtree(target)
        else:  # it was an empty directory: left empty
            for child in target.iterdir():
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    except OSError as err:
        log.warning("could not remove the half-made vault %s: %s", target, err)

