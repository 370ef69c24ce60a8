"""This device's records once named by vault.json's ``vault_id``, moved to the names the device decides.

The ledger (vault/model/ledger.py) and the record of grants seen (vault/model/freshness.py) were kept at
``<kind>/<vault_id>-<user id>-<hash of the vault folder's path>``.  ``vault_id`` is the vault folder's
clear text: a writer of that folder who changed it made the device open records that did not exist (a
device that saw nothing: a rollback and a revoked share back, silently).  They are now named by
``paths.record_name`` (the folder's real path and the user id), as ``confirmed``, ``pins``, ``verified``
and ``trash_seen`` are.  An upgraded device finds its record under the old name once and moves it, so it
keeps what it saw.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from fusevault import paths
from fusevault.errors import CorruptData
from fusevault.vault.format.atomic import atomic_write, fsync_dir
from fusevault.vault.format.layout import is_id
from fusevault.vault.model import device_file

if TYPE_CHECKING:
    from fusevault.crypto.keys import MasterKey

log = logging.getLogger(__name__)


def legacy_path(folder: str, vault_root: Path, vault_id: str, user_id: str) -> Path | None:
    """Where an older fusevault kept this record, or None for an id it never made (no path is made of
    one: "../" in it would lead outside the state folder)."""
    if not is_id(vault_id) or not is_id(user_id):
        return None
    where = hashlib.sha256(os.fsencode(Path(vault_root).resolve())).hexdigest()[:16]
    return paths.state_dir() / folder / f"{vault_id}-{user_id}-{where}"


def adopt(key: MasterKey, kind: str, old: Path | None, new: Path) -> None:
    """Move the record at ``old`` to ``new`` if only ``old`` exists.  The name is sealed with the record
    (``seal_device``), so it is opened under the old name and sealed again under the new one, written
    whole (temp + fsync + rename) before the old one goes; a crash between leaves both, and the new one
    wins.  One that does not open, or is no file of this user's (a link, a FIFO, one too large:
    ``device_file.read_own``, never followed nor read), is moved as it is: opening it then raises the
    alarm it always did."""
    if old is None or os.path.lexists(new):
        return
    try:
        sealed = device_file.read_own(old, device_file.LIMIT)
        plain: bytes | None = key.unseal_device(kind, old.name, sealed)
    except FileNotFoundError:
        return  # nothing kept under the old name (or another process moved it first)
    except OSError as err:
        log.error("could not read %s to move it to %s: %s", old, new, err)
        return
    except (device_file.Damaged, CorruptData):
        plain = None
    new.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if plain is None:
        os.replace(old, new)
        return
    atomic_write(new, key.seal_device(kind, new.name, plain))
    fsync_dir(new.parent)
    with contextlib.suppress(FileNotFoundError):
        old.unlink()
    log.info("moved %s to %s", old, new)
