"""Attack round 74c (relay part), at round 73c's relay fix (03249a0): a version names each block once,
looked up and deleted in slices of 256; the versions listed without bodies, each read alone; the key
exchange's keys given the session's life left.  The link store (``relay/items.py``) on the tests'
CouchDB-protocol server (pouchdb-server), in-process, and the real relay process (``relay --couchdb``).

(3) low (a cost bounded but large, per POST, that the 73c limits say each block's upload pays).
    Attacker: whoever holds a drop box's append key (the drop link hands it out).
    Steps: he uploads B blocks of a few bytes once (B ``POST /items/ID/blocks``), then posts M
    versions (``POST /items/ID/versions``), each naming the same B ids (each id once in a version, as
    73c (1)'s rule asks), ~27 B bytes of body each, no upload.
    Seen: every version is taken (a block is owned by the item, not by a version: ``add_version``
    checks only ``user_id``), and each costs ceil(B/256) ``_all_docs`` calls with their documents
    (``_owned``, ~0.7 MB parsed a slice): here B = 600, four more versions made 12 more calls, no
    upload among them.  At the owner's collection each is garbage, discarded, and its
    ``delete_version`` walks the same B ids again, a slice a call (blocks deleted by the first, looked
    up all the same by the others).  73c's own figures: 5,000 blocks 0.9 s to add and 2 s to delete
    on pouchdb; so with B = 100,000 uploaded once, each 2.7 MB POST after it costs the relay and its
    store ~18 s, and her collection ~40 s more per version, M times.
    Expected: 73c's limit: "add_version's lookups cost a call to the store per 256 distinct ids
    named (... each block paid by an upload)": a version's lookups paid by uploads of its own.
    Cause: fusevault/relay/items.py ``add_version`` (``_owned``: a block of the item, whichever version
    names it already), ``delete_version`` (the same walk per version).
    Impact: the append key's holder multiplies the relay's and its store's work per POST by the blocks
    he uploaded once (32 route calls at a time share ``Relay.limiter`` with every send and receive),
    and her collection of his drops by as much.
    Suggested fix: a block belongs to one version: ``add_version`` marks the blocks it takes
    (``version`` on the block document, in the slice's ``update``) and refuses one marked already; or
    count the ids an item's versions named against the blocks it stored.
    Test: ``test_74c_3_blocks_uploaded_once_are_not_looked_up_again_by_every_version_naming_them``.
    Control: ``test_control_74c_3_versions_of_their_own_blocks_each_cost_their_slices``.

(4) low-medium (an earlier client's drop box jammed for good again: 73c (2) for clients before round
    73, whose compatibility the fix promised).  Attacker: a drop link's holder, no block needed.
    Steps (``test_74c_4_an_earlier_clients_whole_list_stays_within_its_cap``, the real relay process
    with ``--couchdb``): someone's honest drop is in the box; the stranger posts two versions whose
    ``public`` is 33 MiB of ASCII (``private_enc`` "AAAA"): ``read_version`` takes each (one value,
    ASCII, within 64 MiB); then a client before round 73 lists the box's versions (no ``summary``).
    Seen: the list answers every version whole, 66 MiB, past that client's 65 MiB ``JSON_CAP``: its
    every collection and revoke fail as before 73c (2).  ``WHOLE_BUDGET`` counts a version by
    ``_cost`` (items.py): ``private_enc``'s length and 30 bytes a block id, nothing of ``public`` and
    ``protected``, which the dropper fills as he likes.
    Expected: 73c (2)'s text: an earlier client "gets the oldest live versions whole, as many as
    ``WHOLE_BUDGET`` (32 MiB) holds and always one" (items.py: "within such a client's cap (65 MiB)
    whatever the box holds").
    Cause: fusevault/relay/items.py ``_cost`` (``public``/``protected`` not counted).
    Impact: any drop link's holder stops an earlier client's collection of every drop (and its
    revoke) until the box's expiry plus ``DROPS_KEPT``; the honest drops are never taken in there.
    Suggested fix: count the version as it is answered (the length of ``json.dumps(_full(version))``,
    or ``size`` plus the lengths of ``public`` and ``protected`` as stored at ``add_version``).
    Control: ``test_control_74c_4_long_bodies_are_counted_in_the_earlier_clients_list``.

What held (round 74c, read or run): ``GET /items/ID/versions/VID`` answers only a live version of the
item (404 for another item's, a deleted one), with the delete key only; a drop too long for the client
is discarded only by its own read (its listed ``size``, or its own answer past the cap), and one
collected meanwhile by her other device (404) is skipped, not deleted; an id in the list that is not
the answer's is garbage, not another drop; ``WHOLE_BUDGET`` answers an earlier client the oldest live
drops, one always; ``JOIN``/``POST_HANDSHAKE``/``FETCH_MANIFEST`` give the session's life left, and the
fetch crossing an expiry or a failure revives nothing (its ``handshake`` retry ends); a stranger
cannot learn a drop's block ids (the drop link has no read key), so no honest drop's blocks can be
named by his version.  Not tried: a real CouchDB (8 MB document cap) for B past ~290,000.

Fixed: (3) a block belongs to the one version that took it (``ItemStore._take`` marks it in the
slice's write, refuses one another version took; ``delete_version`` deletes only its own, or unmarked
ones stored before); (4) ``_whole`` counts each version as answered (``_answered``: its JSON).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid

import httpx
import pytest
from conftest import running_relay
from starlette.responses import JSONResponse

from fusevault.links.client import JSON_CAP
from fusevault.relay import items
from fusevault.relay.items import ItemStore, Presented
from fusevault.relay.limits import Refused
from services.test_attack_73c import Box, _b64, _counted, _drop, _plant


@pytest.fixture
def store(couchdb_url: str) -> ItemStore:
    return ItemStore(couchdb_url)


@pytest.fixture(scope="module")
def relay(redis_url: str, couchdb_server: str):
    """(relay URL, its link store in-process): the real relay process, with --couchdb."""
    db_url = f"{couchdb_server}/links{uuid.uuid4().hex[:8]}"
    with running_relay(redis_url, "--couchdb", db_url) as (_, url):
        yield url, ItemStore(db_url)


def test_74c_3_blocks_uploaded_once_are_not_looked_up_again_by_every_version_naming_them(store) -> None:
    box = Box(store)
    uploaded = _plant(box, 600)  # 600 uploads of his, once
    views = _counted(store, "view")
    store.add_version(box.id, box.key("append"), _drop(uploaded))  # three slices, paid by the uploads
    paid = len(views)
    taken = 0
    for _ in range(4):  # the same ids again: four POSTs, no upload
        with contextlib.suppress(Refused):
            store.add_version(box.id, box.key("append"), _drop(uploaded))
            taken += 1
    more = len(views) - paid
    assert more <= 4, (f"{taken} more versions naming the 600 blocks uploaded once were taken; they cost "
                       f"{more} more lookups of the store (slices of 256 with their documents), no upload")


def test_control_74c_3_versions_of_their_own_blocks_each_cost_their_slices(store) -> None:
    box = Box(store)
    views = _counted(store, "view")
    for _ in range(2):
        store.add_version(box.id, box.key("append"), _drop(_plant(box, 300)))  # two slices each
    assert len(views) == 4


def test_74c_3_a_version_naming_another_versions_block_is_refused_each_deletes_its_own(store) -> None:
    box = Box(store)
    first = [box.block() for _ in range(3)]
    made = store.add_version(box.id, box.key("append"), _drop(first))["id"]
    mine = box.block()
    with pytest.raises(Refused) as refused:  # his block, and one of the first version's
        store.add_version(box.id, box.key("append"), _drop([mine, first[1]]))
    assert refused.value.status == 409
    assert store.latest(box.id, box.key("read"))["id"] == made  # nothing stored
    other = store.add_version(box.id, box.key("append"), _drop([mine]))["id"]  # untouched by the refusal
    # Taken blocks keep their content (the mark is written with the attachment's stub).
    assert store.block(first[0], box.key("read")) == b"a few bytes of ciphertext"
    store.delete_version(box.id, box.key("delete"), other)
    assert store.db.get(f"block:{mine}") is None
    assert all(store.block(b, box.key("read")) == b"a few bytes of ciphertext" for b in first)
    store.delete_version(box.id, box.key("delete"), made)
    assert all(store.db.get(f"block:{b}") is None for b in first)


def test_74c_3_a_version_stored_before_deletes_its_unmarked_blocks_not_one_taken_since(store) -> None:
    box = Box(store)
    old, taken = _plant(box, 2), _plant(box, 1)
    stamp = "2026-12-01T00:00:00.000000Z"  # as a relay before round 74 stored it: its blocks unmarked
    store.db.save({"_id": "version:earlier", "type": "version", "id": "earlier", "user_id": box.id,
                   "created_at": stamp, "updated_at": stamp, "deleted": False, "blocks": [*old, *taken],
                   "public": None, "protected": None, "private_enc": "AAAA"})
    later = store.add_version(box.id, box.key("append"), _drop(taken))["id"]
    store.delete_version(box.id, box.key("delete"), "earlier")
    assert all(store.db.get(f"block:{b}") is None for b in old)
    assert store.db.get(f"block:{taken[0]}")["version"] == later
    store.delete_version(box.id, box.key("delete"), later)
    assert store.db.get(f"block:{taken[0]}") is None


def test_74c_3_of_two_versions_naming_a_block_at_once_one_takes_it(store, couchdb_url: str) -> None:
    box = Box(store)
    blocks = [box.block() for _ in range(2)]
    rival, won = ItemStore(couchdb_url), []
    real_view = store.db.view

    def view(*args, **kwargs):  # the blocks read free, then taken by a concurrent version before our write
        rows = list(real_view(*args, **kwargs))
        if not won:
            won.append(rival.add_version(box.id, box.key("append"), _drop(blocks))["id"])
        return rows

    store.db.view = view
    with pytest.raises(Refused) as refused:
        store.add_version(box.id, box.key("append"), _drop(blocks))
    assert refused.value.status == 409
    assert {store.db.get(f"block:{b}")["version"] for b in blocks} == set(won)
    assert [v["id"] for v in store.all_versions(box.id, box.key("delete"))] == won


def test_74c_3_a_new_read_key_reaches_a_block_a_version_takes_meanwhile(store, couchdb_url: str) -> None:
    box = Box(store)
    block, rival = box.block(), ItemStore(couchdb_url)
    real = store._of_item

    def of_item(doc_type: str, item_id: str, fields=None):  # the blocks read, then one taken, then written
        found = real(doc_type, item_id, fields)
        if doc_type == "block":
            rival.add_version(box.id, box.key("append"), _drop([block]))
        return found

    store._of_item = of_item  # type: ignore[method-assign]
    new_read = os.urandom(32)
    store.change(box.id, box.key("delete"), {"read_key_hash": hashlib.sha256(new_read).hexdigest()})
    assert store.block(block, Presented("read", new_read)) == b"a few bytes of ciphertext"


# --- (4): the whole list an earlier client reads, past its cap again


def test_74c_4_an_earlier_clients_whole_list_stays_within_its_cap(relay) -> None:
    url, store = relay
    box = Box(store)
    honest = store.add_version(box.id, box.key("append"), _drop([]))["id"]  # someone's real drop
    appender = f"Capability append {_b64(box.keys['append'])}"  # the drop link's
    junk = {"public": "A" * (33 << 20), "protected": {"seq": None}, "private_enc": "AAAA"}
    with httpx.Client(base_url=url, timeout=120) as stranger:
        for _ in range(2):  # each within the route's 64 MiB, ASCII, a few values
            answer = stranger.post(f"/items/{box.id}/versions", json=junk,
                                   headers={"Authorization": appender})
            assert answer.status_code == 201, answer.text
    with httpx.Client(base_url=url, timeout=120) as earlier:  # a client before round 73: no summary
        deleter = f"Capability delete {_b64(box.keys['delete'])}"
        answer = earlier.get(f"/items/{box.id}/versions", headers={"Authorization": deleter})
    assert answer.status_code == 200
    assert honest in {v["id"] for v in answer.json()["versions"]}
    assert len(answer.content) < JSON_CAP, (
        f"the whole list is {len(answer.content) >> 20} MiB, past the {JSON_CAP >> 20} MiB an earlier client "
        "takes: its every collection and revoke fail, for good, as before 73c (2)")


def test_control_74c_4_long_bodies_are_counted_in_the_earlier_clients_list(relay) -> None:
    url, store = relay
    box = Box(store)
    honest = store.add_version(box.id, box.key("append"), _drop([]))["id"]
    for _ in range(2):
        store.add_version(box.id, box.key("append"), {**_drop([]), "private_enc": "A" * (20 << 20)})
    with httpx.Client(base_url=url, timeout=120) as earlier:
        deleter = f"Capability delete {_b64(box.keys['delete'])}"
        answer = earlier.get(f"/items/{box.id}/versions", headers={"Authorization": deleter})
    assert answer.status_code == 200 and len(answer.content) < JSON_CAP
    assert [v["id"] for v in answer.json()["versions"]][0] == honest
    assert len(answer.json()["versions"]) == 2  # the second 20 MiB one past the 32 MiB budget: next time


@pytest.mark.parametrize("fields", [
    {"protected": {"seq": "A" * 12_000}},  # a long protected
    {"public": "\x01" * 2_500},  # 2,500 characters stored, 15,000 bytes answered (each as \u0001)
    {"public": "\U0001f600" * 3_000},  # 3,000 characters, 12,000 bytes of UTF-8 answered
], ids=["protected", "escaped", "astral"])
def test_74c_4_long_public_and_protected_fields_are_counted_as_answered(store, monkeypatch, fields) -> None:
    box = Box(store)
    honest = store.add_version(box.id, box.key("append"), _drop([]))["id"]
    junk = [store.add_version(box.id, box.key("append"), {**_drop([]), **fields})["id"] for _ in range(2)]
    monkeypatch.setattr(items, "WHOLE_BUDGET", 10_000)
    for first in [honest, *junk]:  # as her earlier client collects them: the oldest live first
        whole = store.all_versions(box.id, box.key("delete"), whole=True)
        assert [v["id"] for v in whole if not v["deleted"]] == [first]  # the next one past the budget
        if first == honest:
            assert len(JSONResponse({"versions": whole}).body) <= items.WHOLE_BUDGET  # as the route answers
        store.delete_version(box.id, box.key("delete"), first)
