"""Attack round 82a: what the pull takes from a server's answers besides the fields 80c (2)-(4) checked.

Party: the CouchDB server between her devices (or a peer who may write its database): it may store,
withhold, delay and replay; it must never stop her sync for good in a way that is said as her own
store's or fusevault's fault, nor keep an honest member's later changes from reaching her.

(1) medium: one malformed entry in a changes answer, or one malformed fetched document, stops every
pull of this device for good.  80c (3)/(4) closed an id past SQLite's integer and a lone surrogate, and
``Replicator._speakable`` checks only the fields that ARE strings (``isinstance(text, str)``); nothing
checks that they are strings, nor the shape around them.  Steps: the server lists, in its ``_changes``
answer, any of
  - a record id with ``"changes": []``  -> ``IndexError`` at ``revs[0]`` (sync/replicator.py ``pull``);
  - an ``"id"`` that is a number       -> ``AttributeError`` in ``content_docs.is_record``;
  - a ``"rev"`` that is a list         -> ``TypeError: unhashable`` in ``_not_ours``/``replica.missing``;
  - an entry with no ``"changes"``     -> ``KeyError``;
or answers ``_bulk_get`` with a document whose ``type`` is a list (``_speakable`` skips it: no str) ->
``StoreUnavailable: document store error: Error binding parameter`` (said as her local store failing),
or whose ``_revisions.start`` has more digits than Python's ``int`` reads (``replica.history_from``:
``ValueError``).  Effect: ``pull`` raises; ``Replicator.run`` says "internal error" (or a store error)
and retries from the same checkpoint for ever, so no later change of hers or a member's (the honest
document of the same batch in these tests) is ever taken in on this device; the same code runs the
pull of ``init --join``.  Cause: sync/replicator.py ``pull`` (the loop over ``results``), ``_speakable``
(non-str fields pass), ``_takes``; store/replica.py ``history_from``.  Fix direction: check each
changes entry's and each fetched document's shape (``id``/``_rev``/``rev`` text, ``changes`` a
non-empty list of dicts, ``type`` text or absent, ``_revisions`` a well-formed history, every
revision ``revs.well_formed``) before any use; refuse the one entry, say it once, go on with the batch.
"""

from __future__ import annotations

import pytest

from fusevault.sync.replicator import PeerStatus, Replicator
from fusevault.vault.model.nodes import new_id

REV = "1-" + "a" * 32
RECORD_ID = "rec-" + "a" * 32 + "-" + "b" * 32 + "-0"


class _Server:
    """A server answering one changes batch, and ``_bulk_get`` from ``docs`` by id."""

    def __init__(self, results: list[object], docs: dict[object, dict]) -> None:
        self.results, self.docs = results, docs
        self.sent = self.received = 0
        self.label = "server"

    async def changes(self, since: object, limit: int, *, wait: bool = False) -> tuple[list, object]:
        return (self.results, 7) if since in (0, None) else ([], since)

    async def bulk_get(self, wanted: list, *, missing_ok: bool = False) -> list[dict]:
        return [self.docs[doc_id] for doc_id, _rev in wanted if doc_id in self.docs]

    async def get_local(self, name: str) -> dict:
        return {}


def _honest() -> tuple[dict, dict]:
    """A member's honest change listed in the same batch: the change entry and its document."""
    doc_id = new_id()
    doc = {"_id": doc_id, "_rev": REV, "type": "Note", "_revisions": {"start": 1, "ids": ["a" * 32]}}
    return {"id": doc_id, "changes": [{"rev": REV}]}, doc


async def _pulled(fs, results: list[object], docs: dict[object, dict]) -> str:
    """Run one pull of the batch ``results`` (with an honest change last) and return the honest id."""
    entry, doc = _honest()
    server = _Server([*results, entry], {**docs, doc["_id"]: doc})
    peer = Replicator(fs.store, fs.volume.layout, "device", "server", server,  # type: ignore[arg-type]
                      lambda docs, conflicted: None, PeerStatus("server", ""))
    await peer.pull()  # raises now: the run loop retries the same batch for ever
    return doc["_id"]


ENTRIES = {
    "record_without_revisions": {"id": RECORD_ID, "changes": []},
    "id_a_number": {"id": 5, "changes": [{"rev": REV}]},
    "rev_a_list": {"id": "x" * 32, "changes": [{"rev": [REV]}]},
    "no_changes": {"id": "x" * 32},
}


@pytest.mark.xfail(strict=True, reason="82a (1): a malformed changes entry stops every pull for good")
@pytest.mark.parametrize("name", list(ENTRIES))
async def test_82a_1_a_malformed_changes_entry_is_refused_and_the_batch_goes_on(fs, name: str) -> None:
    honest = await _pulled(fs, [ENTRIES[name]], {})
    assert fs.store.get(honest) is not None, "the member's honest change of the same batch was not taken in"


def _doc(doc_id: str, **fields: object) -> dict:
    return {"_id": doc_id, "_rev": REV, "type": "Note", "_revisions": {"start": 1, "ids": ["a" * 32]},
            **fields}


DOCS = {
    "type_a_list": {"type": ["Node"]},
    "start_past_int_digits": {"_rev": "9" * 5000 + "-" + "a" * 32,
                              "_revisions": {"start": "9" * 5000, "ids": ["a" * 32]}},
}


@pytest.mark.xfail(strict=True, reason="82a (1): a malformed fetched document stops every pull for good")
@pytest.mark.parametrize("name", list(DOCS))
async def test_82a_1_a_malformed_fetched_document_is_refused_and_the_batch_goes_on(fs, name: str) -> None:
    doc_id = new_id()
    doc = _doc(doc_id, **DOCS[name])
    honest = await _pulled(fs, [{"id": doc_id, "changes": [{"rev": doc["_rev"]}]}], {doc_id: doc})
    assert fs.store.get(honest) is not None, "the member's honest change of the same batch was not taken in"


async def test_82a_1_control_an_honest_batch_is_taken_in(fs) -> None:
    doc_id = new_id()
    honest = await _pulled(fs, [{"id": doc_id, "changes": [{"rev": REV}]}], {doc_id: _doc(doc_id)})
    assert fs.store.get(honest) is not None and fs.store.get(doc_id) is not None
