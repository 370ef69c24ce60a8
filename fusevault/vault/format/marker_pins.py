"""What this device saw in a vault folder's ``vault.json``: the vault id and the store.

``vault.json`` is clear text, read before any passphrase, and whoever may write the vault folder (a
synced cloud folder, a backup) may change it.  Two of its fields decide more than a setting: the
vault id names what this device remembers of the vault (its ledger of states seen, its record of
grants: a new id is a device that saw nothing, so an older file or a revoked share is taken back
silently; round 26c hole 1), and the store says where the documents are (pointed at his own CouchDB,
every command would connect there with the user's ``FUSEVAULT_COUCHDB_*`` credentials and write her
metadata to him; round 26d hole 1).

So the first time this device's user opens a vault folder, both are kept here, and a later
``vault.json`` that names another is refused in one line before anything is opened or sent: the
user decides.  ``init`` keeps what it made.  A folder that holds another vault on purpose (a vault
deleted and another put at its path) is accepted again by removing the file the message names.

Kept in ``paths.state_dir()/markers/<hash of the vault folder's real path>`` as clear JSON: it is
read before any key exists, and the state directory is the user's own (0700, paths.py).  Read only as
a file of this user's (own_file.py ``read_own``): a link, a FIFO or one too large is a damaged record.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from fusevault import paths
from fusevault.encoding import loads_untrusted, shown, shown_brief
from fusevault.errors import CorruptData
from fusevault.vault.format.atomic import atomic_write
from fusevault.vault.format.own_file import Damaged, read_own

log = logging.getLogger(__name__)

KIND = "markers"
LIMIT = 64 * 1024  # a record is a few hundred bytes


def record_path(root: Path | str) -> Path:
    name = hashlib.sha256(os.path.realpath(root).encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return paths.state_dir() / KIND / name


def _seen(vault_id: str, store: dict) -> dict:
    return {"vault_id": vault_id, "store": store}


def keep(root: Path | str, vault_id: str, store: dict) -> None:
    """Remember ``vault_id`` and ``store`` for the vault folder at ``root`` (``init``, a first open)."""
    try:
        path = record_path(root)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        atomic_write(path, json.dumps(_seen(vault_id, store), sort_keys=True).encode())
    except OSError as err:  # the vault opens as before; the next open tries again
        log.warning("could not remember the vault marker of %s: %s", shown(str(root)), err.strerror)


def _read(path: Path) -> dict | None:
    try:
        data = read_own(path, LIMIT)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise CorruptData(f"cannot read {path}: {err.strerror}") from None
    except Damaged:  # a link, a FIFO, another user's file, one too large: never followed nor read
        data = None
    try:
        seen = loads_untrusted(data, LIMIT) if data is not None else None
    except ValueError:
        seen = None
    if not isinstance(seen, dict) or not isinstance(seen.get("vault_id"), str) \
            or not isinstance(seen.get("store"), dict):
        raise CorruptData(f"{path} is damaged: remove it to accept the vault's vault.json as it is now")
    return seen


def check(root: Path | str, vault_id: str, store: dict) -> None:
    """Refuse a ``vault.json`` whose vault id or store is not what this device saw at ``root``;
    remember them the first time."""
    try:
        path = record_path(root)
    except OSError:  # no state directory: what needs one says so (a mount's log), nothing is kept
        return
    seen = _read(path)
    if seen is None:
        keep(root, vault_id, store)
        return
    for field, key, now in (("vault id", "vault_id", vault_id), ("store", "store", store)):
        before = seen[key]
        if before != now:
            raise CorruptData(
                f"{shown(str(Path(root) / 'vault.json'))} names another {field} ({_brief(now)}) than this "
                f"device opened this vault with ({_brief(before)}): not followed. If this folder holds "
                f"another vault on purpose, remove {path}")


def _brief(value: object) -> str:
    return shown_brief(value if isinstance(value, str) else json.dumps(value, sort_keys=True), 200)
