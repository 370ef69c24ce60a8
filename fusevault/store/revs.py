"""CouchDB-style revision strings: ``<generation>-<random hex>``."""

from __future__ import annotations

import re
import uuid

# What fusevault and CouchDB make: a generation (no 0, no sign) and an id.  A row's
# rev is the vault folder's writer's to set: anything else is none of ours.
_REV = re.compile(r"[1-9][0-9]{0,15}-[0-9A-Za-z]{1,64}")


def well_formed(rev: object) -> bool:
    return isinstance(rev, str) and _REV.fullmatch(rev) is not None


def generation(rev: object) -> int:
    """A revision's generation; 0 for one that is no revision (a store writer's "x-0")."""
    return int(str(rev).split("-", 1)[0]) if well_formed(rev) else 0


def next_rev(current: str | None) -> str:
    return f"{generation(current) + 1}-{uuid.uuid4().hex}"
