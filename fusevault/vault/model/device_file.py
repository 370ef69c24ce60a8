"""A record this device keeps of what it saw, sealed under her master key: read and written.

The vault folder and its store are what an attacker writes, so what a device must remember against
them (the re-keys it owes, the grants her records showed taken back, ...) lives outside the vault, in
her state directory (``paths.confirmed_file``).  Each record is sealed (``MasterKey.seal_device``:
AES-GCM under a key derived from her master key, bound to the record's kind and file name: no one
without her key makes one, nor passes one kind or file off as another) and written temp + fsync +
rename (``atomic_write``).  A record missing is ``None``; one that does not read, does not open or is no
JSON object raises ``Damaged``, which its module says and never lets stop the mount; a record written
over a damaged one sets that one aside first (``.damaged``), for whoever looks into it, never read again.

Read as a file of this user's only (vault/format/own_file.py ``read_own``, re-exported here): never
through a link, never a FIFO or device (opened without blocking), never another user's file, never larger
than ``limit`` (a record fusevault writes is far smaller): whoever else can write her state folder, or a
link planted there, gets ``Damaged``, not a hang, a read of another file, or all memory.

ledger.py, freshness.py, trust.py's pins, confirmed.py (and its record of bodies seen), renamed.py's
adoption of a record under its old name, rekeys_owed.py, left_kept.py, group_copies.py, trash_seen.py and
verified.py keep theirs through here, each with a name or format check of its own; the clear records
(key_memory.py, peers.py, rotations_done.py, vault/format/marker_pins.py, links/link_records.py's copy)
are read with ``read_own`` under a bound of their own.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fusevault.encoding import JSON_LIMIT, loads_untrusted
from fusevault.errors import VaultError
from fusevault.vault.format.atomic import atomic_write
from fusevault.vault.format.own_file import Damaged, read_own

if TYPE_CHECKING:
    from fusevault.crypto.keys import MasterKey

__all__ = ["LIMIT", "Damaged", "read_json", "read_own", "read_sealed", "write"]


# The largest record a module here may keep and read back (its own bound is smaller: verified.py's 4
# million digests, 128 MB): what ``loads_untrusted`` parses at most, and the seal's nonce and tag.  A
# larger file is none fusevault wrote (attack round 79b (1): 64 MiB refused an honest cache or trash).
LIMIT = JSON_LIMIT + 64


def read_json(path: Path, key: MasterKey, kind: str, limit: int = LIMIT, *,
              name: str | None = None) -> dict[str, Any] | None:
    """The record of ``kind`` at ``path``, opened (None: none kept).  Raises ``Damaged``."""
    plain = read_sealed(path, key, kind, limit, name=name)
    if plain is None:
        return None
    try:
        record = loads_untrusted(plain)
    except ValueError as err:
        raise Damaged(f"it is no JSON ({err})") from err
    if not isinstance(record, dict):
        raise Damaged("it is no record")
    return record


def read_sealed(path: Path, key: MasterKey, kind: str, limit: int = LIMIT, *,
                name: str | None = None) -> bytes | None:
    """The plain bytes of the record of ``kind`` at ``path`` (None: none kept), sealed bound to ``name``
    (its file's name unless a module binds another: confirmed.py's bodies seen).  Raises ``Damaged``."""
    try:
        sealed = read_own(path, limit)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise Damaged(f"it does not read ({err.strerror or err})") from err
    try:
        return key.unseal_device(kind, name or path.name, sealed)
    except VaultError as err:
        raise Damaged("it does not open with her key (damaged, truncated or replaced)") from err


def write(path: Path, key: MasterKey, kind: str, plain: bytes, *, set_aside: bool = False,
          name: str | None = None) -> None:
    """Keep ``plain`` as the record of ``kind`` at ``path``, sealed (bound to ``name``, as ``read_sealed``);
    ``set_aside``: the one there did not open (moved to ``.damaged`` first).  Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if set_aside and path.exists():
        os.replace(path, path.with_name(path.name + ".damaged"))
    atomic_write(path, key.seal_device(kind, name or path.name, plain))

