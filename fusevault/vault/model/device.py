"""This device's id in the version vectors it signs, bound to the machine and the record that keeps it.

A state directory copied to set up another machine (or another account) brings each record with it,
device id and all: the two devices would then sign equal vectors without seeing each other's bodies,
and which came last would be told by their clocks again (attack round 12 (9), the round 10b skew).
So a record keeps, with the id, ``binding``: a digest of the machine's id and the record's own real
path.  A record read where it was not written keeps what it saw (that knowledge is still true) but
signs under a new id from its first signing there on (vault/model/freshness.py, confirmed.py).

Each new id adds one entry to her vectors (at most lineage.MAX_ENTRIES): the binding changes only when
the machine's id or the state directory's place does, never at a reboot.  Not caught: a copy at the
same path on a machine with the same machine id (a cloned VM whose id was not reset).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

MACHINE_IDS = ("/etc/machine-id", "/var/lib/dbus/machine-id")  # systemd's, then D-Bus's


def new_id() -> str:
    """A new device id (16 hex digits: only ever compared with her other devices')."""
    return uuid.uuid4().hex[:16]


def _machine() -> str:
    for name in MACHINE_IDS:
        try:
            return Path(name).read_text(encoding="ascii", errors="replace").strip()
        except OSError:
            continue
    return ""


def binding(record: Path | str) -> str:
    """Where the record at ``record`` is: a copy elsewhere (another machine, another path) differs."""
    where = f"{_machine()}\0{os.path.realpath(record)}"
    return hashlib.sha256(where.encode("utf-8", "surrogateescape")).hexdigest()[:32]
