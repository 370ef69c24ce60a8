"""Attack round 82a: what the pull takes from a server's answers besides the fields 80c (2)-(4) checked.

Party: the CouchDB server between her devices (or a peer who may write its database): it may store,
withhold, delay and replay; it must never stop her sync for good in a way that is said as her own
store's or fusevault's fault, nor keep an honest member's later changes from reaching her.

(1) medium (every pull of every device, and every ``init --join``, stopped for good, said as her own
store failing or as "internal error"): 80c (3)/(4) closed an index past SQLite's integer and a lone
surrogate, but ``Replicator._speakable`` checks only the fields that ARE strings
(``isinstance(text, str)``), and nothing checks the shape around them.
  (a) Party: anyone who may write the CouchDB database (a member given it to sync with, not only the
  server): he stores one document whose ``type`` is a list or an object (``{"type": ["Node"]}``).
  Each device's pull fetches it, ``_takes`` passes it, and ``replica.store_revisions`` binds it to the
  ``type`` column: ``StoreUnavailable: document store error: Error binding parameter 5``, in
  ``LOCAL_STORE_ERRORS``, so ``Replicator.run`` says her document store is failing and retries the same
  batch for ever; ``init --join`` (sync/join.py ``_replicate``: ``while await replicator.pull()``) fails.
  (b) Party: the server itself (it writes the feed and the ``_bulk_get`` answers): a changes entry of a
  record id with ``"changes": []`` (``IndexError`` at ``revs[0]`` in ``pull``), an ``"id"`` that is a
  number (``AttributeError`` in ``content_docs.is_record``), a ``"rev"`` that is a list (``TypeError:
  unhashable`` in ``replica.missing``), an entry without ``"changes"`` (``KeyError``); a fetched
  document whose ``_revisions.start`` has more digits than ``int`` reads (``replica.history_from``:
  ``ValueError``); a record answered at an ``_id`` that is a number (``content_docs._checked``:
  ``parse_record_id`` raises ``AttributeError``, caught only as ``KeyError``/``ValueError``).  Each
  raises out of ``pull``: "internal error", the checkpoint never passes it.
Effect: the honest change listed in the same batch (and every later one, hers or a member's) is never
taken in on this device.  Cause: sync/replicator.py ``pull`` (the loop over ``results``),
``_speakable`` (non-str fields pass), ``_takes``; store/replica.py ``history_from``; sync/content_docs.py
``_checked``.  Fix direction: check each changes entry's and each fetched document's shape (``id``,
``_id``, ``rev``, ``_rev`` text; ``changes`` a non-empty list of objects; ``type`` text or absent;
``_revisions`` a well-formed history, each revision ``revs.well_formed``) before any use; refuse that
one entry or document, say it once (as the peer's doing), and go on with the batch.
"""

from __future__ import annotations

import pytest

from fusevault.sync.content_docs import record_rev
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
        return self.results, 7  # asked once per test (``_pulled``), whatever the checkpoint

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


@pytest.mark.parametrize("name", list(ENTRIES))
async def test_82a_1_a_malformed_changes_entry_is_refused_and_the_batch_goes_on(fs, name: str) -> None:
    honest = await _pulled(fs, [ENTRIES[name]], {})
    assert fs.store.get(honest) is not None, "the member's honest change of the same batch was not taken in"


def _doc(doc_id: str, **fields: object) -> dict:
    return {"_id": doc_id, "_rev": REV, "type": "Note", "_revisions": {"start": 1, "ids": ["a" * 32]},
            **fields}


DOCS: dict[str, dict[str, object]] = {
    "type_a_list": {"type": ["Node"]},
    "type_an_object": {"type": {"node": 1}},
    "start_past_int_digits": {"_rev": "9" * 5000 + "-" + "a" * 32,
                              "_revisions": {"start": "9" * 5000, "ids": ["a" * 32]}},
}


@pytest.mark.parametrize("name", list(DOCS))
async def test_82a_1_a_malformed_fetched_document_is_refused_and_the_batch_goes_on(fs, name: str) -> None:
    doc_id = new_id()
    doc = _doc(doc_id, **DOCS[name])
    honest = await _pulled(fs, [{"id": doc_id, "changes": [{"rev": doc["_rev"]}]}], {doc_id: doc})
    assert fs.store.get(honest) is not None, "the member's honest change of the same batch was not taken in"


async def test_82a_1_a_record_answered_at_an_id_that_is_no_text_is_refused_and_the_batch_goes_on(fs) -> None:
    record = {"_id": 5, "_rev": record_rev(RECORD_ID), "type": "Record", "fid": "a" * 32, "owner": "c" * 32,
              "data": ""}
    honest = await _pulled(fs, [{"id": RECORD_ID, "changes": [{"rev": record_rev(RECORD_ID)}]}],
                           {RECORD_ID: record})
    assert fs.store.get(honest) is not None, "the member's honest change of the same batch was not taken in"


async def test_82a_1_control_an_honest_batch_is_taken_in(fs) -> None:
    doc_id = new_id()
    honest = await _pulled(fs, [{"id": doc_id, "changes": [{"rev": REV}]}], {doc_id: _doc(doc_id)})
    assert fs.store.get(honest) is not None and fs.store.get(doc_id) is not None
