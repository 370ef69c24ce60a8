"""The seed 000 Peers document: a CouchDB database this replica syncs with.

The seed's fields (``name``, ``host``, ``port``, ``path_to_dump_chunks``)
plus what a URL needs (``scheme``, ``db``) and where the credentials are
(``credentials``: ``{"file": path}`` or ``{"env": NAME}``, never the
credentials themselves).  A peer with ``path_to_dump_chunks`` is another
person's vault this replica stores, without its keys, in that directory (a
backup buddy under the user's ``peer_dir_for_storage``).  Peers documents are this replica's own: the sync
service never sends them to a peer (a database reachable from one device
may not be from another, and credentials are local).

A Peers document is acted on (its host contacted, its credentials file read,
its ``path_to_dump_chunks`` written) only if it was confirmed on this device:
``fusevault peer add`` / ``join`` / ``peer confirm`` record a digest of every
field that matters in ``paths.state_dir()/peers/<hash of the vault's
directory>``, outside the vault and its store, where whoever writes the store
cannot; ``peer remove NAME`` drops it, for every peer of that name (a planted
namesake too; the same documents put back are then pending again).  A Peers
document a store writer planted or changed (pointing the credentials at
``~/.ssh/id_rsa``, say) matches no digest: the sync service refuses it with a
warning and never opens the file nor contacts the host.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from urllib.parse import quote

from fusevault import paths
from fusevault.encoding import loads_untrusted
from fusevault.errors import AlreadyExists, InvalidInput, NotFound
from fusevault.store import Store, tombstone
from fusevault.urls import http_url, without_credentials
from fusevault.vault.format.atomic import atomic_write
from fusevault.vault.model import device_file
from fusevault.vault.model.nodes import new_id

PEER = "Peers"
_DB_NAME = re.compile(r"[a-z][a-z0-9_$()+/-]*")


def peer_doc(name: str, host: str, port: int, path_to_dump_chunks: str | None = None, *,
             scheme: str = "http", db: str = "", credentials: dict | None = None) -> dict:
    return {"_id": new_id(), "type": PEER, "name": name, "host": host, "port": port,
            "path_to_dump_chunks": path_to_dump_chunks, "scheme": scheme, "db": db,
            "credentials": credentials}


def parse_url(url: str) -> dict:
    """``http://host:port/db`` -> the Peers fields; a password in it is refused."""
    parts = http_url(url, "CouchDB database URL", "http://host:port/database")  # host, port: 49t (4)
    db = parts.path.strip("/")
    if parts.password is not None or parts.username is not None:
        raise InvalidInput("credentials do not go in the URL (the command line is visible to "
                           "everyone): use --credentials-file FILE or --credentials-env NAME")
    if not _DB_NAME.fullmatch(db):
        raise InvalidInput(f"not a CouchDB database URL: {without_credentials(url)} "
                           "(expected http://host:port/database)")
    port = parts.port or (443 if parts.scheme == "https" else 5984)
    assert parts.hostname is not None  # http_url refuses a URL without one
    return {"scheme": parts.scheme, "host": parts.hostname, "port": port, "db": db}


def url_of(peer: dict) -> str:
    host = peer["host"] if ":" not in peer["host"] else f"[{peer['host']}]"
    return f"{peer.get('scheme', 'http')}://{host}:{peer['port']}/{quote(peer.get('db', ''), safe='/')}"


def credentials_source(file: str | None, env: str | None) -> dict | None:
    if file and env:
        raise InvalidInput("give the credentials one way: --credentials-file or --credentials-env")
    if file:
        path = Path(file).expanduser().resolve()
        read_credentials({"file": str(path)})  # refused now rather than at every sync
        return {"file": str(path)}
    if env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env):
            raise InvalidInput(f"not an environment variable name: {env!r}")
        return {"env": env}
    return None


def read_credentials(source: dict | None) -> tuple[str, str] | None:
    """``user:password`` from the file's first line or the variable; never echoed."""
    if not source:
        return None
    if "file" in source:
        try:
            text = (Path(source["file"]).read_text().splitlines() or [""])[0]
        except OSError as err:
            raise InvalidInput(f"cannot read the credentials file {source['file']}: {err.strerror}") from None
        where = f"the credentials file {source['file']}"
    else:
        text = os.environ.get(source["env"], "")
        where = f"${source['env']}"
    user, sep, password = text.strip().partition(":")
    if not sep or not user:
        raise InvalidInput(f"{where} must hold one line user:password")
    return user, password


def peers(store: Store) -> list[dict]:
    return sorted(store.iter_type(PEER), key=lambda p: p["name"])


def add_peer(store: Store, name: str, url: str, credentials: dict | None = None,
             dump_to: str | None = None) -> dict:
    """A peer to sync with; ``dump_to``: a vault this replica cannot read, whose
    encrypted documents and records it only keeps there (a backup buddy)."""
    from fusevault.vault.format.layout import validate_name

    validate_name("peer", name)
    fields = parse_url(url)
    for peer in peers(store):
        if peer["name"] == name:
            raise AlreadyExists(f"there is already a peer named {name}")
        if url_of(peer) == url_of(fields):
            raise AlreadyExists(f"{url_of(fields)} is already the peer {peer['name']}")
    doc = peer_doc(name, fields["host"], fields["port"], dump_to, scheme=fields["scheme"], db=fields["db"],
                   credentials=credentials)
    store.put_many([doc])
    return doc


def remove_peer(store: Store, root: Path | str, name: str) -> int:
    """Stop syncing with every peer of that name (a store writer may plant a namesake of the one she
    confirmed, listed first): their confirmations on this device go first (so the same documents put back
    over their tombstones by a store writer are pending, not contacted), then their documents.
    Returns how many."""
    named = [peer for peer in peers(store) if peer["name"] == name]
    if not named:
        raise NotFound(f"no peer named {name}")
    for peer in named:
        forget_peer(root, peer)
    store.put_many([tombstone(peer) for peer in named])
    return len(named)


# --- which Peers documents this device confirmed

# The record's bound: a digest is 67 bytes of JSON, so some 15,000 peers confirmed; a larger file is
# none this device wrote.
CONFIRMED_LIMIT = 1 << 20
_BOUND = ("_id", "name", "scheme", "host", "port", "db", "credentials", "path_to_dump_chunks")


def digest(peer: dict) -> str:
    """What a confirmation covers: every field that says whom to contact, with what, and where to write."""
    canon = json.dumps({k: peer.get(k) for k in _BOUND}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()


def _confirmed_file(root: Path | str) -> Path:
    name = hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:32]
    return paths.state_dir() / "peers" / name


def _confirmed(root: Path | str) -> set[str]:
    try:
        found = loads_untrusted(device_file.read_own(_confirmed_file(root), CONFIRMED_LIMIT))
    except (OSError, device_file.Damaged, ValueError):  # a link, a FIFO, ...: none confirmed
        return set()
    return {d for d in found if isinstance(d, str)} if isinstance(found, list) else set()


def is_confirmed(root: Path | str, peer: dict) -> bool:
    return digest(peer) in _confirmed(root)


def confirm_peer(root: Path | str, peer: dict) -> None:
    """Remember ``peer`` as confirmed on this device (temp, fsync, rename)."""
    _save(root, _confirmed(root) | {digest(peer)})


def forget_peer(root: Path | str, peer: dict) -> None:
    """``peer remove``: this device no longer acts on ``peer`` (nor on the same document put back)."""
    known = _confirmed(root)
    if digest(peer) in known:
        _save(root, known - {digest(peer)})


def _save(root: Path | str, digests: set[str]) -> None:
    path = _confirmed_file(root)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    atomic_write(path, json.dumps(sorted(digests)).encode())


def find_peer(store: Store, name: str, root: Path | str | None = None) -> dict:
    """The peer of that name; with ``root``, the one this device confirmed before any namesake (a store
    writer may plant one listed first)."""
    named = [peer for peer in peers(store) if peer["name"] == name]
    if not named:
        raise NotFound(f"no peer named {name}")
    if root is not None:
        known = _confirmed(root)
        named.sort(key=lambda peer: digest(peer) not in known)  # stable: confirmed first
    return named[0]
