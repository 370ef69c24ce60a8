"""Is a peer usable?  Asked by ``fusevault peer add`` before it saves the peer.

The database is reached with the peer's credentials and made if it is
missing (as the mount's replicator would); a database whose ``vault``
document names another vault is refused, so two vaults never mix.  A
backup buddy's database (``--store-only``) holds its owner's vault, not
this one: it must be reachable, and must not be this vault's own.
"""

from __future__ import annotations

import trio

from fusevault.errors import ForeignVault, InvalidInput, PeerUnavailable
from fusevault.sync.couch_api import CouchDatabase
from fusevault.sync.replicator import VAULT_DOC
from fusevault.vault.model.peers import read_credentials


async def check_peer(url: str, credentials: dict | None, vault_id: str, *, store_only: bool = False) -> str:
    """What the database holds now ("empty", "this vault", "another vault");
    PeerUnavailable (exit 23) or ForeignVault (exit 24) if it cannot be used."""
    db = CouchDatabase(url, read_credentials(credentials), label=url)
    try:
        with trio.fail_after(60):
            await db.ensure()
            theirs = await db.get(VAULT_DOC)
    except trio.TooSlowError:
        raise PeerUnavailable(f"{url} did not answer in time") from None
    finally:
        await db.aclose()
    named = None if theirs is None else theirs.get("vault_id")
    if store_only:
        if named == vault_id:
            raise InvalidInput(f"{url} holds this vault itself: add it without --store-only")
        return "empty" if named is None else "another vault"
    if named is not None and named != vault_id:
        raise ForeignVault(f"{url} holds another vault's documents: give this vault a database of its own")
    return "empty" if named is None else "this vault"
