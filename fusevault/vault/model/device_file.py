"""A record this device keeps of what it saw, sealed under her master key: read and written.

The vault folder and its store are what an attacker writes, so what a device must remember against
them (the re-keys it owes, the grants her records showed taken back, ...) lives outside the vault, in
her state directory (``paths.confirmed_file``).  Each record is sealed (``MasterKey.seal_device``:
AES-GCM under a key derived from her master key, bound to the record's kind and file name: no one
without her key makes one, nor passes one kind or file off as another) and written temp + fsync +
rename (``atomic_write``).  A record missing is ``None``; one that does not read, does not open or is no
JSON object raises ``Damaged``, which its module says and never lets stop the mount; a record written
over a damaged one sets that one aside first (``.damaged``), for whoever looks into it, never read again.

rekeys_owed.py and left_kept.py keep theirs through here; the older records of this folder (ledger.py,
freshness.py, trust.py's pins, trash_seen.py, confirmed.py, ...) do the same by hand, each with a name or
format check of its own: moving them here is the next step of this module.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fusevault.encoding import loads_untrusted
from fusevault.errors import VaultError
from fusevault.vault.format.atomic import atomic_write

if TYPE_CHECKING:
    from fusevault.crypto.keys import MasterKey


class Damaged(Exception):
    """A record that does not read, does not open with her key as its kind and name, or is no JSON
    object: the message says which (never a byte of it)."""


def read_json(path: Path, key: MasterKey, kind: str) -> dict[str, Any] | None:
    """The record of ``kind`` at ``path``, opened (None: none kept).  Raises ``Damaged``."""
    try:
        sealed = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise Damaged(f"it does not read ({err.strerror or err})") from err
    try:
        record = loads_untrusted(key.unseal_device(kind, path.name, sealed))
    except VaultError as err:
        raise Damaged("it does not open with her key (damaged, truncated or replaced)") from err
    except ValueError as err:
        raise Damaged(f"it is no JSON ({err})") from err
    if not isinstance(record, dict):
        raise Damaged("it is no record")
    return record


def write(path: Path, key: MasterKey, kind: str, plain: bytes, *, set_aside: bool = False) -> None:
    """Keep ``plain`` as the record of ``kind`` at ``path``, sealed; ``set_aside``: the one there did not
    open (moved to ``.damaged`` first).  Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if set_aside and path.exists():
        os.replace(path, path.with_name(path.name + ".damaged"))
    atomic_write(path, key.seal_device(kind, path.name, plain))
