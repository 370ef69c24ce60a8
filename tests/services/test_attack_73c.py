"""Attack round 73c: the relay after rounds 71b's and 72b's fixes (90dd360, 91d0aad, f73fada, 7317492,
fb963db, 03cad98): ``guards.read_json`` counting a body's values before parsing, the link routes'
``read_fields``/``read_version`` (one value per block id in ``add_version``), ASCII long bodies, the
REFRESH/CLOSE/UNPOP/PUSH scripts.  The link store (``relay/items.py``) on the tests' CouchDB-protocol
server (pouchdb-server), in-process, and the real relay process (``fusevault relay --couchdb``).

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
  ~1 M ids ``read_version`` lets through (27 MB of body) would make ~2.6 GB (scaled, the ratio held
  from 1,000 to 50,000; not run) in one worker thread of the
  relay; the route's calls run 32 at a time (``Relay.limiter``, shared with every send and receive).
  With N ids that name no block at all (no block needed): 540 KB peaks at 12 MB (~23 times), refused
  only after the whole answer was read: ~630 MB for the 1 M ids (scaled).
  And later: the owner's collection (links/owner.py ``_collect_one``) opens the drop, finds it
  garbage, and deletes it (``delete_version``), which GETs every named block one by one
  (items.py ``delete_version``: ``[self.db.get(...) for b in version["blocks"]]``): 1,000 named ids
  took 1.76 s on pouchdb (~1 M, scaled: ~30 min of a relay worker thread and of the store, per drop;
  a real CouchDB's 8 MB document cap would hold a stored version to ~290,000 ids: ~8 min).
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

73c (2), medium (honest data refused for good: a stranger stops a drop box's collection, and its
revoke).  Attacker: a drop link's holder (its append key), with no block at all.
  Steps (``test_73c_2_long_drops_do_not_stop_the_owners_collection``, the real relay process with
  ``--couchdb``): someone's honest drop is in her box; the stranger posts two versions of 33 MiB of
  base64 ``private_enc`` each (ASCII, a few values: ``read_version`` takes each, 64 MiB is the cap),
  then her client lists the box's versions as her collection does (``LinkClient.versions``).
  Seen: RelayUnavailable "the link store ... answered too much (an answer of more than 68157440
  bytes)": ``GET /items/ID/versions`` answers every version whole (``ItemStore.all_versions``: each
  body, ``private_enc`` included), ~66 MiB, past the client's ``JSON_CAP`` (65 MiB, one version's
  cap).  Every minute's collection (links/owner.py ``_collect_one``: ``client.versions`` first) fails
  the same way, so the honest drop (and every later one) is never taken in and the junk is never
  discarded (nothing deletes it without the list); ``link revoke`` of the box (``_close_box``: its
  ``waiting`` lists again) fails too, the box left closed but on the server with her record.  Two
  honest drops of big folders (each up to 64 MiB of manifest) jam it the same way.
  Expected: SECURITY.md's drop-box rule: "Nothing a stranger drops ... stops a box"; a drop the
  collector cannot use is discarded and the ones after it still arrive.
  Cause: relay/items.py ``all_versions`` (every body in one answer) against links/client.py
  ``JSON_CAP`` (65 MiB, "the list of versions of a drop box holds one per drop not yet collected"):
  one version may be 64 MiB, so two exceed the list's cap.
  Impact: any holder of a drop link stops its owner's collection of every drop for good (until the
  box's expiry plus DROPS_KEPT purges it, drops and all), and her revoke.
  Suggested fix: list a box's versions without their bodies (ids, ``deleted``, ``created_at``,
  ``blocks``: a ``fields`` query) and read each drop alone (a delete-key route for one version), or
  page the list by bytes; a body the client cannot take is then one drop discarded, not the box.

73c (3), low (a bound doubled: 69a (1)'s 256 MiB a session, held past the session's end).  Attacker:
the sender and receivers of his own session (one address for the sender; a join costs an attempt).
  Steps (``test_73c_3_the_key_exchange_lives_no_longer_than_its_session``, ``RelayState`` on the
  tests' redis-server): a session with a minute left (no events call for most of its hour: its key's
  PTTL set to 60 s, as time would); a receiver joins and goes through the key exchange to the
  sender's manifest, another only joins.
  Seen: the session has 60 s left; ``session.receivers``, ``session.joined``, ``access.joiners`` and
  both receivers' ``session.receiver:SID:UID`` (the sealed manifest's hash, up to 16 MiB each) are
  given the whole ``session_ttl`` (3,600,000 ms).  Once the session expires nothing sweeps them (only
  a close or a failure does): 16 receivers' manifests (256 MiB) stay up to an hour after it, while the
  same address opens its next session (``created.sessions`` goes with the session) and fills it again.
  Expected: 64b (1)'s and 70b's rule for every key a session's calls write: the session's own life
  left, never more (``session_left``, ``PEXPIRE left``), so that its end, expiry included, ends them.
  Cause: scripts.py ``JOIN`` (``EXPIRE`` of KEYS 2 to 4 with ``ttl``, not ``left``), ``POST_HANDSHAKE``
  (``EXPIRE KEYS[3] ttl`` though it computed ``left``), ``FETCH_MANIFEST`` (``EXPIRE ttl``, no
  session read at all); refresh pushes them back as the session's when it is live anyway.
  Impact: one address holds twice 69a (1)'s bound on the relay's Redis (512 MiB, not 256).
  Suggested fix: ``PEXPIRE`` with ``left`` in ``JOIN`` and ``POST_HANDSHAKE``; give ``FETCH_MANIFEST`` the
  session key and ``session_left`` (refuse when gone, else ``PEXPIRE left``).

Tests: ``test_73c_1_a_version_naming_one_block_many_times_costs_a_few_times_its_size``,
``test_73c_1_a_version_naming_blocks_nobody_added_costs_a_few_times_its_size``,
``test_73c_1_deleting_a_version_costs_the_blocks_it_owns``,
``test_73c_2_long_drops_do_not_stop_the_owners_collection``,
``test_73c_3_the_key_exchange_lives_no_longer_than_its_session`` (strict xfails, flipped with the
fixes: SECURITY.md, round 73c); controls kept:
``test_73c_control_a_version_of_its_own_blocks_is_taken_and_deleted_with_them``,
``test_73c_control_a_few_drops_are_listed_for_their_owner``.

Held (probed with ``guards.read_json`` on the routes' caps and counts, tracemalloc; not kept, each
within 71b's bounds or a 400): 60,000 nested ``[`` on the requests route (pass the count; refused by
``loads_untrusted``'s depth, 400, 0.6 MB); ``1e999999`` and a 4,301-digit integer (400); 500 integers
of 4,300 digits (2 MB: 5 MB, 50 ms); a float of 2.5 M digits or a 2.5 M-digit exponent (7 MB, 10 ms);
60,000 duplicate keys (1.6 MB: 3 MB); ``\\u`` surrogate pairs in a 60 KB handshake body (150 KB); an
honest ``create`` of 10,000 files (3 values a file of 4: taken).  Low, not filed: one raw character
past U+FFFF in a 2.5 MB requests body (no ASCII rule there) peaks at 22 MB (~9 times, 72b (2)'s
width on a 2.56 MB cap).  Not tried (time): REFRESH/CLOSE/UNPOP/PUSH crossings beyond 71b's own tests;
keys left by a session at its expiry; a real CouchDB's ``max_document_size`` (8 MB by default: it
would refuse (1)'s stored version past ~290,000 ids, after the lookup's cost).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tracemalloc
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import trio
from conftest import fusevault, mounted, running_relay
from unit.test_relay_read_json import _request

from fusevault.errors import CorruptData, RelayUnavailable
from fusevault.links import capability
from fusevault.links.client import JSON_CAP, LinkClient
from fusevault.relay import item_routes, items, keys
from fusevault.relay.items import ItemStore, Presented
from fusevault.relay.limits import Limits, Refused
from fusevault.relay.state import RelayState
from fusevault.transfer.client import AnswerTooLong

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


def test_73c_1_a_version_naming_one_block_many_times_costs_a_few_times_its_size(store) -> None:
    box = Box(store)
    body = _drop([box.block()] * N)
    peak = _peak(lambda: store.add_version(box.id, box.key("append"), body))
    assert peak < BOUND * _size(body) + (1 << 20), f"{_size(body) >> 10} KiB of body, peak {peak >> 20} MiB"


def test_73c_1_a_version_naming_blocks_nobody_added_costs_a_few_times_its_size(store) -> None:
    box = Box(store)
    body = _drop([f"{i:024d}" for i in range(N)])
    peak = _peak(lambda: store.add_version(box.id, box.key("append"), body))
    assert peak < BOUND * _size(body) + (1 << 20), f"{_size(body) >> 10} KiB of body, peak {peak >> 20} MiB"


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


def _plant(box: Box, n: int) -> list[str]:
    """``n`` blocks of the box written straight into its store (no content: the lookups read none)."""
    ids = [uuid.uuid4().hex[:24] for _ in range(n)]
    box.store.db.update([{"_id": f"block:{b}", "type": "block", "id": b, "user_id": box.id,
                          "updated_at": "", "read_key_hash": "0" * 64} for b in ids])
    return ids


def _counted(store: ItemStore, name: str) -> list:
    """The calls made to ``store.db.<name>`` from now on."""
    calls: list = []
    real = getattr(store.db, name)
    setattr(store.db, name, lambda *args, **kwargs: calls.append(args) or real(*args, **kwargs))
    return calls


def test_73c_1_a_block_named_twice_is_refused_and_nothing_stored(store) -> None:
    box = Box(store)
    block = box.block()
    with pytest.raises(Refused) as refused:
        store.add_version(box.id, box.key("append"), _drop([block, box.block(), block]))
    assert refused.value.status == 400 and "once" in str(refused.value)
    with pytest.raises(Refused) as none:
        store.latest(box.id, box.key("read"))
    assert none.value.status == 404


def test_73c_1_a_long_version_is_looked_up_in_slices_stopping_at_the_first_stranger(store) -> None:
    box, other = Box(store), Box(store)
    own = _plant(box, 600)  # an honest version of 600 blocks: three slices of the store's answer
    views = _counted(store, "view")
    assert store.add_version(box.id, box.key("append"), _drop(own))["id"]
    assert len(views) == 3, len(views)
    assert store.latest(box.id, box.key("read"))["blocks"] == own
    for blocks, asked in [([*_plant(box, 599), other.block()], 3),  # another box's block, in the last slice
                          (["0" * 24, *_plant(box, 599)], 1)]:  # an id of no block first: one slice asked
        views.clear()
        with pytest.raises(Refused) as refused:
            store.add_version(box.id, box.key("append"), _drop(blocks))
        assert refused.value.status == 400 and len(views) == asked, (len(views), asked)


def test_73c_1_a_version_stored_before_is_deleted_by_slices_of_its_own_blocks(store) -> None:
    box, other = Box(store), Box(store)
    block, theirs, many = box.block(), other.block(), _plant(box, 600)
    stamp = "2026-12-01T00:00:00.000000Z"  # as an earlier relay stored it: names repeated, strangers
    named = [block] * 1_000 + [f"{i:024d}" for i in range(1_000)] + [theirs, *many]
    store.db.save({"_id": "version:earlier", "type": "version", "id": "earlier", "user_id": box.id,
                   "created_at": stamp, "updated_at": stamp, "deleted": False, "blocks": named,
                   "public": None, "protected": None, "private_enc": "AAAA"})
    gets, views = _counted(store, "get"), _counted(store, "view")
    store.delete_version(box.id, box.key("delete"), "earlier")
    assert len(gets) <= 4 and len(views) == -(-(1 + 1_000 + 1 + 600) // 256), (len(gets), len(views))
    assert all(store.db.get(f"block:{b}") is None for b in [block, *many])
    assert store.db.get(f"block:{theirs}") is not None  # another box's block is never this one's to delete


# --- 73c (2): two long drops jam the box's list of versions


@pytest.fixture(scope="module")
def relay(redis_url: str, couchdb_server: str):
    """(relay URL, its link store in-process): the real relay process, with --couchdb."""
    db_url = f"{couchdb_server}/links{uuid.uuid4().hex[:8]}"
    with running_relay(redis_url, "--couchdb", db_url) as (_, url):
        yield url, ItemStore(db_url)


def test_73c_2_long_drops_do_not_stop_the_owners_collection(relay) -> None:
    url, store = relay
    box = Box(store)  # hers: the drop link hands its append key out
    honest = store.add_version(box.id, box.key("append"), _drop([]))["id"]  # someone's real drop
    appender = f"Capability append {base64.urlsafe_b64encode(box.keys['append']).rstrip(b'=').decode()}"
    junk = {"public": {"format": 1}, "protected": {"seq": None}, "private_enc": "A" * (33 << 20)}
    with httpx.Client(base_url=url, timeout=120) as stranger:
        for _ in range(2):  # each within the route's 64 MiB, ASCII, a few values
            answer = stranger.post(f"/items/{box.id}/versions", json=junk,
                                   headers={"Authorization": appender})
            assert answer.status_code == 201, answer.text
    with LinkClient(url) as owner:
        try:
            listed = owner.versions(box.id, box.keys["delete"])  # every collection, and her revoke
        except RelayUnavailable as err:
            pytest.fail(f"her box's list is refused, every minute: {err}")
    assert honest in {v["id"] for v in listed}
    assert all("private_enc" not in v for v in listed)  # no body: each drop read alone, within the cap
    with LinkClient(url) as owner:
        assert [owner.whole(box.id, box.keys["delete"], v)["private_enc"] for v in listed] == \
            ["AAAA", junk["private_enc"], junk["private_enc"]]
        with pytest.raises(CorruptData):  # one said longer than she takes: discarded, never fetched
            owner.whole(box.id, box.keys["delete"], {**listed[1], "size": JSON_CAP + 1})
    # A client before round 73 lists versions whole: the oldest, 32 MiB of them at most (one always).
    with httpx.Client(base_url=url, timeout=120) as earlier:
        deleter = f"Capability delete {_b64(box.keys['delete'])}"
        answer = earlier.get(f"/items/{box.id}/versions", headers={"Authorization": deleter})
    assert answer.status_code == 200 and len(answer.content) < JSON_CAP
    assert [v["id"] for v in answer.json()["versions"]] == [honest]
    assert answer.json()["versions"][0]["private_enc"] == "AAAA"


def _b64(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode()


def test_73c_2_the_list_names_versions_and_each_is_read_alone(store, monkeypatch) -> None:
    box, other = Box(store), Box(store)
    made = [store.add_version(box.id, box.key("append"), {**_drop([]), "private_enc": "B" * n})["id"]
            for n in (6_000, 6_000, 3_000)]
    store.delete_version(box.id, box.key("delete"), made[0])
    listed = store.all_versions(box.id, box.key("delete"))
    assert [(v["id"], v["deleted"], v["size"]) for v in listed] == \
        [(made[0], True, None), (made[1], False, 6_000), (made[2], False, 3_000)]
    assert all(set(v) == {"id", "created_at", "updated_at", "deleted", "size"} for v in listed)
    assert store.version(box.id, box.key("delete"), made[1])["private_enc"] == "B" * 6_000
    for role, vid, status in [("delete", made[0], 404),  # deleted: nothing to read
                              ("read", made[1], 403), ("append", made[1], 403)]:  # the delete key's alone
        with pytest.raises(Refused) as refused:
            store.version(box.id, box.key(role), vid)
        assert refused.value.status == status
    with pytest.raises(Refused) as refused:  # another box's key opens none of hers
        store.version(other.id, other.key("delete"), made[1])
    assert refused.value.status == 404
    # A client before round 73 reads the bodies in the list: it gets the oldest, within a budget.
    monkeypatch.setattr(items, "WHOLE_BUDGET", 8_000)
    whole = store.all_versions(box.id, box.key("delete"), whole=True)
    assert [(v["id"], v["private_enc"]) for v in whole] == [(made[0], None), (made[1], "B" * 6_000)]
    monkeypatch.setattr(items, "WHOLE_BUDGET", 1)  # one always, however long
    assert [v["id"] for v in store.all_versions(box.id, box.key("delete"), whole=True)] == made[:2]
    monkeypatch.setattr(items, "WHOLE_BUDGET", 10_000)
    assert [v["id"] for v in store.all_versions(box.id, box.key("delete"), whole=True)] == made


def test_73c_2_a_version_too_long_for_the_client_is_garbage_not_the_store_away(monkeypatch) -> None:
    def too_long(*args, **kwargs):
        raise AnswerTooLong("the link store answered too much")

    with LinkClient("http://127.0.0.1:9") as client:
        monkeypatch.setattr(client, "_send", too_long)
        with pytest.raises(CorruptData):
            client.whole("item", b"k" * 32, {"id": "v", "deleted": False, "size": None})
        with pytest.raises(CorruptData):  # said too long in the list: never asked for
            client.whole("item", b"k" * 32, {"id": "v", "deleted": False, "size": JSON_CAP + 1})
        listed = {"id": "v", "deleted": False, "private_enc": "AAAA"}  # a store before round 73: whole
        assert client.whole("item", b"k" * 32, listed) is listed


def test_73c_2_a_drop_too_long_for_her_client_is_discarded_and_the_others_arrive(relay, vault,
                                                                              tmp_path) -> None:
    url, store = relay
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "Inbox").mkdir()
        link = fusevault("link", "create", mnt / "Inbox", "--append", "--relay", url).stdout.strip()
        item = capability.parse(link).item
        stamp = "2026-01-01T00:00:00.000000Z"  # before any drop: the first her collection meets
        store.db.save({"_id": "version:toolongtoolong00", "type": "version", "id": "toolongtoolong00",
                       "user_id": item, "created_at": stamp, "updated_at": stamp, "deleted": False,
                       "blocks": [], "public": {"format": 1}, "protected": {"seq": None},
                       "private_enc": "AAAA", "size": JSON_CAP + 1})  # said longer than she takes
        appender = f"Capability append {_b64(capability.parse(link).first)}"  # the drop link's
        junk = {"public": {"format": 1}, "protected": {"seq": None}, "private_enc": "A" * (33 << 20)}
        with httpx.Client(base_url=url, timeout=120) as stranger:
            for _ in range(2):  # the scene of the test above: her list was longer than she takes
                answer = stranger.post(f"/items/{item}/versions", json=junk,
                                       headers={"Authorization": appender})
                assert answer.status_code == 201, answer.text
        scan = tmp_path / "scan.pdf"
        scan.write_bytes(b"%PDF the only copy")
        pushed = fusevault("link", "push", scan, link, passphrase=None, cwd=tmp_path)
        assert pushed.returncode == 0 and "dropped" in pushed.stdout, pushed.stderr
        collected = fusevault("link", "collect", cwd=mnt)
        said = collected.stdout + collected.stderr
        assert said.count("discarded") == 3, said
        assert (mnt / "Inbox" / "scan.pdf").read_bytes() == b"%PDF the only copy"
        assert store.db.get("version:toolongtoolong00")["deleted"] is True
        assert fusevault("link", "revoke", item, cwd=mnt).returncode == 0  # nothing waits: revoked


def test_73c_control_a_few_drops_are_listed_for_their_owner(relay) -> None:
    url, store = relay
    box = Box(store)
    dropped = {store.add_version(box.id, box.key("append"), _drop([]))["id"] for _ in range(3)}
    with LinkClient(url) as owner:
        assert {v["id"] for v in owner.versions(box.id, box.keys["delete"])} == dropped


# --- 73c (3): the key exchange's keys outlive their session


LEFT = 60_000  # milliseconds the session has left when its receivers come (its last minute)
SLACK = 5_000  # for a loaded machine: what the calls below take, at most


def test_73c_3_the_key_exchange_lives_no_longer_than_its_session(redis_url: str) -> None:
    state = RelayState(redis_url, Limits())
    state.r.flushall()
    sid, name = state.create_session("10.73.3.1", "73c" + "0" * 13, "cd" * 32, [{"id": "a", "size": 1}])
    state.r.pexpire(keys.session(sid), LEFT)  # no events call for most of an hour: a minute left
    late = [_exchanged(state, sid, name, "10.73.3.2")]  # a receiver of his, late in the session
    late.append(_joined(state, name, "10.73.3.3"))  # and one that only joins
    session_left = state.r.pttl(keys.session(sid))
    assert 0 < session_left <= LEFT
    outliving = {key: state.r.pttl(key) for key in
                 [keys.receivers(sid), keys.joined(sid), keys.joiners(sid),
                  *(keys.handshake(sid, uid) for uid in late)]
                 if state.r.pttl(key) > session_left + SLACK}
    assert not outliving, f"the session has {session_left} ms left; these live on (ms): {outliving}"


def _joined(state: RelayState, name: str, ip: str) -> str:
    return state.join(name, ip)[1]


def _exchanged(state: RelayState, sid: str, name: str, ip: str) -> str:
    uid = _joined(state, name, ip)
    state.post_handshake(sid, uid, "receiver", {"pake.a": "a"})
    state.post_handshake(sid, uid, "sender", {"pake.b": "b"})
    state.post_handshake(sid, uid, "receiver", {"confirm.a": "c", "hello": "h"})
    state.post_handshake(sid, uid, "sender", {"confirm.b": "d", "manifest": "M" * 1024})  # up to 16 MiB
    return uid


def test_73c_3_each_write_of_the_key_exchange_gives_the_session_s_life_left(redis_url: str) -> None:
    """Join, each message of the exchange and the manifest's fetch: each alone keeps to the session."""
    state = RelayState(redis_url, Limits())
    state.r.flushall()
    sid, name = state.create_session("10.73.3.1", "73c" + "1" * 13, "cd" * 32, [{"id": "a", "size": 1}])
    state.r.pexpire(keys.session(sid), LEFT)
    uid = _joined(state, name, "10.73.3.4")
    record = keys.handshake(sid, uid)
    lives = [state.r.pttl(record)]  # the join
    for role, fields in [("receiver", {"pake.a": "a"}), ("sender", {"pake.b": "b"}),
                         ("receiver", {"confirm.a": "c", "hello": "h"}),
                         ("sender", {"confirm.b": "d", "manifest": "M" * 1024})]:
        state.r.persist(record)  # as if a write before had given it more: this write alone says
        state.post_handshake(sid, uid, role, fields)
        lives.append(state.r.pttl(record))
    state.r.persist(record)
    assert state.handshake(sid, uid, "manifest")["manifest"] == "M" * 1024  # the receiver's fetch
    lives.append(state.r.pttl(record))
    assert all(0 < life <= LEFT for life in lives), lives
    state.r.delete(keys.session(sid))  # expired between the fetch's read of it and its script
    fetched = state.r.hget(record, "manifest.fetched")
    assert not state._fetch_manifest(keys=[keys.session(sid), record],
                                     args=[state.limits.session_ttl, "manifest.fetched", "manifest"])
    assert state.r.hget(record, "manifest.fetched") == fetched and 0 < state.r.pttl(record) <= LEFT
    with pytest.raises(Refused) as gone:
        state.handshake(sid, uid, "manifest")
    assert gone.value.status == 404
