"""CouchDB-style revision strings: ``<generation>-<random hex>``."""

from __future__ import annotations

import uuid


def next_rev(current: str | None) -> str:
    generation = int(current.split("-", 1)[0]) if current else 0
    return f"{generation + 1}-{uuid.uuid4().hex}"
