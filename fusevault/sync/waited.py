"""Seconds a task spent waiting for a peer's answers, for a task that sets it.

The replicator's budget counts only the work done on the trio thread
(sync/replicator.py): the CouchDB client (sync/couch_api.py) adds each
answer's wait here.  Its own module so that the replicator, loaded by every
mount, does not load the HTTP client with it (httpx: a fifth of a mount's
start) until a peer is contacted.
"""

from __future__ import annotations

from contextvars import ContextVar

WAITED: ContextVar[list[float] | None] = ContextVar("couch_waited", default=None)
