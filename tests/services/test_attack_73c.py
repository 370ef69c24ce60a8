"""Attack round 73c: the relay after rounds 71b's and 72b's fixes (90dd360, 91d0aad, f73fada, 7317492,
fb963db, 03cad98): ``guards.read_json`` counting a body's values before parsing, the link routes'
``read_fields``/``read_version`` (one value per block id in ``add_version``), ASCII long bodies, the
REFRESH/CLOSE/UNPOP/PUSH scripts.  The link store (``relay/items.py``) on the tests' CouchDB-protocol
server (pouchdb-server), in-process.

73c (1), medium (a flood of the relay's memory, and of its owner's collection, from a link holder).
  Attacker: whoever holds a link's append key: anyone a drop-box link was handed to (the drop link
  carries it), or who found one.  He needs one block of his own on the box (``POST
  /items/ID/blocks``, a few bytes) or none at all.
  Steps: ``add_version`` with ``blocks`` naming that one block id N times (``[bid] * N``): the body
  passes ``read_version`` (ASCII, N + a few values <= ``VERSION_VALUES``, ~1 M), and
  ``ItemStore.add_version`` asks CouchDB's ``_all_docs`` for N keys with ``include_docs`` and holds
  its whole answer, parsed, before looking at any row (items.py ``add_version``, the ``db.view``
  line); the version is then stored naming the block N times.
  Seen (tracemalloc, this module's tests and a probe): N = 1,000: 27 KB of body peaks at 2.6 MB;
  10,000: 270 KB at 25 MB; 50,000: 1.35 MB at 125 MB (~98 times the body, 5.9 s on pouchdb).  The
  ~1 M ids ``read_version`` lets through (27 MB of body) make ~2.6 GB in one worker thread of the
  relay; the route's calls run 32 at a time (``Relay.limiter``, shared with every send and receive).
  With N ids that name no block at all (no block needed): 540 KB peaks at 12 MB (~23 times), refused
  only after the whole answer was read: ~630 MB for the 1 M ids.
  And later: the owner's collection (links/owner.py ``_collect_one``) opens the drop, finds it
  garbage, and deletes it (``delete_version``), which GETs every named block one by one
  (items.py ``delete_version``: ``[self.db.get(...) for b in version["blocks"]]``): 1,000 named ids
  took 1.76 s on pouchdb (~1 M: ~30 min of a relay worker thread and of the store, per drop, each
  minute's collection abandoning its call and asking again).
  Expected: what 71b (1) and 72b (1) set for the relay's bodies: a body costs a few times its size (71b's
  bound: 8 times), whatever the route does with it; a version names each of its blocks once, and its
  deletion costs the blocks it really owns.
  Cause: 72b (1)'s count bounds the parse (~120 MiB at most, the open list) but not what
  ``add_version`` does with the ids after it: one ``_all_docs`` row with its document (~2.6 KB parsed)
  per id named, duplicates included (items.py ``add_version``), and one GET per id named at
  ``delete_version``.  The open list's 72b (1) limit counts only the parse.
  Impact: one drop link's holder takes the relay (and its CouchDB) to GBs with a few calls, an OOM kill
  ending every transfer under way; the box's owner's every collection then costs the relay minutes.
  Suggested fix: in ``add_version``, refuse a ``blocks`` list holding an id twice (``len(set(blocks))
  != len(blocks)``: 400) and look the ids up in slices (e.g. 1,000 keys a ``_all_docs`` call, without
  ``include_docs``: ``row.value`` and a ``user_id`` check through a ``find`` with ``fields``), stopping
  at the first not of this item; in ``delete_version``, one ``_all_docs`` call per slice of the set of
  ids, not a GET each.

Tests: ``test_73c_1_a_version_naming_one_block_many_times_costs_a_few_times_its_size``,
``test_73c_1_a_version_naming_blocks_nobody_added_costs_a_few_times_its_size``,
``test_73c_1_deleting_a_version_costs_the_blocks_it_owns`` (strict xfails); control kept:
``test_73c_control_a_version_of_its_own_blocks_is_taken_and_deleted_with_them``.

Held (probed, not kept: they fail with no fix reverted, or duplicate 71b's/72b's own tests):
nested arrays on the requests route (60,000 ``[`` pass the count: ``loads_untrusted`` refuses past its
depth, a 400); ``1e999999`` (refused as not finite), 4,301-digit integers (a ValueError, 400); a short
body with ``\\u`` surrogate pairs (64 KiB: ~100 KB at most); an honest ``send`` of 10,000 files'
``create`` (3 values a file of 4) and its ``done`` (base64 past 64 KiB, ASCII).  Not tried (time):
REFRESH/CLOSE/UNPOP/PUSH crossings beyond 71b's own tests; keys left by a session at its expiry.
"""

from __future__ import annotations

import hashlib
import json
import os
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
import trio
from unit.test_relay_read_json import _request

from fusevault.relay import item_routes
from fusevault.relay.items import ItemStore, Presented
from fusevault.relay.limits import Refused

N = 20_000  # block ids named by one version: 540 KB of body (the route takes ~1 M)
BOUND = 8  # times the body (71b (1)'s test's bound), plus a MiB for the store's client


@pytest.fixture
def store(couchdb_url: str) -> ItemStore:
    return ItemStore(couchdb_url)


class Box:
    """A drop box's item, with its three keys (the append key is in the drop link: a stranger's)."""

    def __init__(self, store: ItemStore) -> None:
        self.store = store
        self.keys = {role: os.urandom(32) for role in ("read", "append", "delete")}
        hashes = {f"{role}_key_hash": hashlib.sha256(k).hexdigest() for role, k in self.keys.items()}
        self.id = store.create({**hashes, "keeps_drops": True})["id"]

    def key(self, role: str) -> Presented:
        return Presented(role, self.keys[role])

    def block(self) -> str:
        return self.store.add_block(self.id, self.key("append"), b"a few bytes of ciphertext")["id"]


def _drop(blocks: list[str]) -> dict:
    """A drop's body as the route parses it (capability.seal_drop's shape, its manifest junk)."""
    body = {"public": {"format": 1}, "protected": {"seq": None}, "private_enc": "AAAA", "blocks": blocks}
    wire = json.dumps(body, separators=(",", ":")).encode()  # as httpx sends it
    assert trio.run(item_routes.read_version, _request(wire)) == body  # the route's count lets it by
    return body


def _peak(call: Callable[[], Any]) -> int:
    """Bytes ``call`` peaked at past what was held before it, refused or not."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        try:
            call()
        except Refused:
            pass
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _size(body: dict) -> int:
    return len(json.dumps(body, separators=(",", ":")))


@pytest.mark.xfail(strict=True, reason="73c (1): a version naming one block N times costs ~98 times its body")
def test_73c_1_a_version_naming_one_block_many_times_costs_a_few_times_its_size(store) -> None:
    box = Box(store)
    body = _drop([box.block()] * N)
    peak = _peak(lambda: store.add_version(box.id, box.key("append"), body))
    assert peak < BOUND * _size(body) + (1 << 20), f"{_size(body) >> 10} KiB of body, peak {peak >> 20} MiB"


@pytest.mark.xfail(strict=True, reason="73c (1): a version naming ids of no block costs ~23 times its body")
def test_73c_1_a_version_naming_blocks_nobody_added_costs_a_few_times_its_size(store) -> None:
    box = Box(store)
    body = _drop([f"{i:024d}" for i in range(N)])
    peak = _peak(lambda: store.add_version(box.id, box.key("append"), body))
    assert peak < BOUND * _size(body) + (1 << 20), f"{_size(body) >> 10} KiB of body, peak {peak >> 20} MiB"


@pytest.mark.xfail(strict=True, reason="73c (1): deleting a drop GETs each block id it names, duplicates too")
def test_73c_1_deleting_a_version_costs_the_blocks_it_owns(store) -> None:
    box = Box(store)
    try:
        version = store.add_version(box.id, box.key("append"), _drop([box.block()] * 1_000))["id"]
    except Refused as refused:
        assert refused.status == 400  # an id named twice refused: nothing to delete at any cost
        return
    gets = []
    real_get = store.db.get
    store.db.get = lambda *args, **kwargs: gets.append(args) or real_get(*args, **kwargs)
    store.delete_version(box.id, box.key("delete"), version)  # the owner's collection of the garbage
    assert len(gets) <= 10, f"one block named 1,000 times: {len(gets)} reads of the store"


def test_73c_control_a_version_of_its_own_blocks_is_taken_and_deleted_with_them(store) -> None:
    box = Box(store)
    blocks = [box.block() for _ in range(3)]
    version = store.add_version(box.id, box.key("append"), _drop(blocks))["id"]
    assert store.latest(box.id, box.key("read"))["blocks"] == blocks
    other = Box(store)  # a block of another link is never owned
    with pytest.raises(Refused) as refused:
        store.add_version(box.id, box.key("append"), _drop([*blocks, other.block()]))
    assert refused.value.status == 400
    store.delete_version(box.id, box.key("delete"), version)
    assert all(store.db.get(f"block:{b}") is None for b in blocks)
