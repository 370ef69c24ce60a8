"""The time each signed settings body carries (vault/model/settings.py ``save``, round 10b): above the
body it replaces, but never taken from one dated far ahead, which a store writer could put there to
leave no stamp a CouchDB server can hold (every later ``config set`` would then fail to sign)."""

from __future__ import annotations

import time

from fusevault.crypto.identity import Identity
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import SAFE_INTEGER
from fusevault.vault.model import lineage
from fusevault.vault.model.settings import STAMP, Settings, save

ALICE = "a" * 32


class Store:
    """The one user document ``save`` reads and writes."""

    def __init__(self, doc: dict) -> None:
        self.doc = doc

    def get(self, doc_id: str) -> dict:
        return self.doc

    def put_many(self, docs: list[dict]) -> None:
        (self.doc,) = docs

    def sync(self) -> None:
        pass


def _save(before: object, **fields: object) -> dict:
    alice = Identity.new(ALICE)
    store = Store({"_id": ALICE, "type": "UserDetails", "username": "alice", STAMP: before, **fields})
    save(store, ALICE, Settings(settle_seconds=2.5), lambda doc: sign_doc(ALICE, alice.sign, doc))
    return store.doc


def test_a_stamp_dated_far_ahead_in_the_store_does_not_stop_settings_being_saved() -> None:
    """Failed before: 2**53 - 1 + 1 could not be signed (ValueError), so no setting could be saved again.
    A body without a vector (older code) is followed however far ahead (attack round 12 (8)), but never
    past 2**53 - 1; one with a vector is not followed at all (its vector orders it)."""
    assert _save(SAFE_INTEGER)[STAMP] == SAFE_INTEGER
    saved = _save(SAFE_INTEGER, **{lineage.FIELD: {"0123456789abcdef": 1}})
    assert saved[STAMP] <= time.time_ns() // 1000 + 10**6


def test_the_stamp_is_above_the_body_it_replaces() -> None:
    ahead = time.time_ns() // 1000 + 60 * 10**6  # another device's clock a minute ahead
    assert _save(ahead)[STAMP] == ahead + 1
