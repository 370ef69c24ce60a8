"""Round 55d (services): 53t's fixes attacked (drop boxes, names at the root), a real relay over a real
pouchdb-server, real mounts.

(1) `link get` into the root of her mount makes a stranger's folder `shared` (or a look-alike) there
    attacker: whoever sends her a share link (anyone: `link create` of a folder he names `shared`,
    or ``ѕhared`` with a Cyrillic dze, on any relay).
    steps: he publishes a folder `shared` holding `bob/contract.txt` as a share link; she opens a
    terminal in her drive (`cd ~/Private`) and runs `fusevault link get LINK` (the destination is
    the current folder by default; `-o ~/Private` the same).
    seen: "fetched .../Private/shared (version 1)", exit 0: a real root folder `shared` of hers,
    made by the stranger, with `bob/contract.txt` where bob's shares show (no share of hers yet,
    so nothing stood there); ``ѕhared/bob/contract.txt`` arrives whether or not her shares are
    there, printed as `shared` beside the real view.
    expected: as a drop, an import and (since 53t (5)) a receive: at the root of a mount a top name
    that is or looks like a view's (`names.looks_reserved`) arrives as `NAME (2)`, said, or is
    refused (exit 33).
    cause: fusevault/cli/links.py `_get` -> links/content.py `write_local` (check_new_tops, _reach,
    _place) never asks whether `dest` is the root of a fusevault mount; 53t (5)'s fix
    (transfer/output.py `away_from_views`) is wired into receive.py only.
    impact: the same as 53t (5) (medium): a stranger's file presented in her tree where her
    colleagues' shares are; the look-alike passes for the view for good.  (With shares there,
    `shared` exists and the fetch is refused, exit 11, unless --overwrite: then the link's
    `shared/bob/...` is written through the view into bob's share, where she may write; not run.)
    fix: write_local (or `_get`) renames the tops as receive does (`away_from_views(dest, tops)`),
    the rename said; or refuses a fetch into the root of a mount whose top looks reserved.

(3) Every request to an expired drop box reads all its drops, bodies and all (relay amplification)
    attacker: anyone with the box's drop link (handed to many: a scanner, a web form, strangers)
    fills it before its expiry, then anyone who knows its id (the link's path) asks it anything.
    steps: before the expiry, drops of large bodies (a version's private_enc may be 64 MiB,
    item_routes.py MAX_JSON; no cap on a box's versions); after it, keyless `GET /items/ID`
    (describe: hashinfo is read without a key) over and over, 400 a second per address.
    seen: each request reads every version document of the box from CouchDB into the relay's
    memory (`_item` -> `_holds_drops` -> `_of_item("version", ...)`, full documents, limit 10^6),
    only to answer 410: with 300 drops of 200 KB (60 MB), 0.70 s a request against 3.4 ms while the
    box was live (pouchdb-server here, 3 requests each); the cost grows with what was dropped, for
    30 days after the expiry (DROPS_KEPT), and the owner's own collection pays it once per block
    fetched (`block` -> `_item(collecting=True)`): honest, 1,000 drops of 2 KB manifests made a
    block fetch 0.235 s against 0.027 s live (5 fetches each), a collection quadratic in the
    drops.  Before 53t (2) an expired item was purged at its first request (one read, once).
    expected: an expired box's check costs one small read (is any drop left?), whatever it holds.
    cause: fusevault/relay/items.py `_holds_drops` (`any(... for v in self._of_item("version", ...))`),
    called by `_item` on every request to an expired item that keeps drops.
    impact: medium: a relay (send/receive and links for everyone) made to read gigabytes per cheap
    request: memory exhausted or its threads and CouchDB saturated, by anyone with a drop link.
    fix: ask CouchDB for one live version only (selector with `"deleted": false`, `limit: 1`,
    `fields: ["_id"]`), or keep a count of live drops in the item document.

What held (read, not run unless named): the link store's expiry of a drop box (relay/items.py
`_item`, `_holds_drops`): an expired box answers only its owner's collection (delete key for the
list and deletes, the read key, which no drop link carries, for blocks), appends refused first;
a box's `keeps_drops` is set only at create or by the delete key, and only ever to true
(`test_control_a_dropper_cannot_mark_nor_reopen_a_box`); the
revoke closes the box (append key replaced) before its collection, so nothing is dropped between
the count and the delete.  The names skeleton of receive at the root (output.py
`away_from_views`): realpath of `-o`, one stable name, clashes refused.  `_place_of` (53t (3)):
the trashed path is the one `path_of` gave at the last unlink; a file renamed over while open
(``target.trashed = None``) still saves with an empty path, now shown as "(no name: written after
its deletion)" without a warning (an honest case, not a hole).  The relay's limits (a907fcf):
ASCII digits within bounds only.
Not tried: the systemd unit under a real user manager (none here); kill -9 of the mount during a
drop collection.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from pathlib import Path

import couchdb
import pytest
from conftest import fusevault, mounted, running_relay

from fusevault.links import capability, content
from fusevault.links.client import LinkClient
from fusevault.relay.items import ItemStore, Presented
from fusevault.relay.limits import Refused
from fusevault.vault.model import names


@pytest.fixture(scope="module")
def relay(redis_url: str, couchdb_server: str):
    db_url = f"{couchdb_server}/links{uuid.uuid4().hex[:8]}"
    with running_relay(redis_url, "--couchdb", db_url) as (_, url):
        yield url
    couchdb.Server(couchdb_server).delete(db_url.rsplit("/", 1)[1])


def _strangers_share_link(relay: str, folder: Path) -> str:
    """A share link of ``folder`` (on his disk), published as `link create` does (owner.py
    ``_publish``): he needs no vault, only the relay."""
    keys = capability.OwnerKeys.new()
    with LinkClient(relay) as client:
        item = client.create(keys.hashes(), capability.HASHINFO, None)
        manifest, blocks = content.upload(client, item, keys.append, content.local_sources(folder))
        client.add_version(item, keys.append, {**capability.seal_share(keys, item, 1, manifest),
                                               "blocks": blocks})
    return keys.share_link(relay, item).text()


@pytest.mark.parametrize("top", ["shared", "\u0455hared"])
def test_a_fetched_folder_named_like_a_view_takes_another_name_at_the_root(relay: str, vault: Path,
                                                                        tmp_path: Path, top: str) -> None:
    sent = tmp_path / "stranger" / top
    (sent / "bob").mkdir(parents=True)
    (sent / "bob" / "contract.txt").write_text("not bob's")
    link = _strangers_share_link(relay, sent)
    with mounted(vault, tmp_path / "mnt") as mnt:
        got = fusevault("link", "get", link, passphrase=None, cwd=mnt)  # `cd ~/Private; link get`
        assert got.returncode in (0, 33), got.stderr
        assert [n for n in os.listdir(mnt) if names.looks_reserved(os.fsencode(n))] == [], got.stdout
        assert (mnt / f"{top} (2)" / "bob" / "contract.txt").read_text() == "not bob's"  # nothing lost
        assert f"arrives as {top} (2)" in got.stdout  # said


def test_control_a_fetched_folder_of_another_name_arrives_at_the_root(relay: str, vault: Path,
                                                                     tmp_path: Path) -> None:
    sent = tmp_path / "stranger" / "papers"
    (sent / "bob").mkdir(parents=True)
    (sent / "bob" / "contract.txt").write_text("his")
    link = _strangers_share_link(relay, sent)
    with mounted(vault, tmp_path / "mnt") as mnt:
        got = fusevault("link", "get", link, passphrase=None, cwd=mnt)
        assert got.returncode == 0, got.stderr
        assert (mnt / "papers" / "bob" / "contract.txt").read_text() == "his"


def _filled_box(store: ItemStore, drops: int, size: int) -> tuple[str, dict[str, bytes]]:
    """A drop box (made as a client of round 53 makes one) with ``drops`` versions of ``size``-byte
    bodies, stored as add_version stores them (directly: the test is about what is read later)."""
    keys = {role: os.urandom(32) for role in ("read", "append", "delete")}
    body = {f"{role}_key_hash": hashlib.sha256(key).hexdigest() for role, key in keys.items()}
    item = store.create({**body, "keeps_drops": True}, LIFE)["id"]
    bodies = "A" * size
    store.db.update([{"_id": f"version:{item}-{n}", "type": "version", "id": f"{item}-{n}", "user_id": item,
                      "created_at": f"2026-01-01T00:00:00.{n:06d}Z", "updated_at": "", "deleted": False,
                      "blocks": [], "public": None, "protected": None, "private_enc": bodies}
                     for n in range(drops)])
    return item, keys


def _bytes_read(store: ItemStore, call) -> int:
    """What the store read from CouchDB (documents found or fetched, as JSON) during ``call()``."""
    read = [0]
    db, find, get = store.db, store.db.find, store.db.get

    def counted_find(query, *args, **kwargs):
        for doc in find(query, *args, **kwargs):
            read[0] += len(json.dumps(dict(doc)))
            yield doc

    def counted_get(doc_id, *args, **kwargs):
        doc = get(doc_id, *args, **kwargs)
        read[0] += len(json.dumps(dict(doc))) if doc is not None else 0
        return doc

    db.find, db.get = counted_find, counted_get  # type: ignore[method-assign]
    try:
        with contextlib.suppress(Refused):
            call()
    finally:
        del db.find, db.get
    return read[0]


LIFE = 60.0
DROPS, SIZE = 40, 50_000  # 2 MB dropped


@pytest.fixture
def clock() -> list[float]:
    return [1_000_000.0]


@pytest.fixture
def store(couchdb_url: str, clock: list[float]) -> ItemStore:
    return ItemStore(couchdb_url, clock=lambda: clock[0])


def test_a_keyless_request_to_an_expired_box_reads_little_whatever_was_dropped(store, clock) -> None:
    item, _ = _filled_box(store, DROPS, SIZE)
    clock[0] += LIFE + 1
    assert _bytes_read(store, lambda: store.describe(item, Presented())) < SIZE


def test_a_block_fetch_of_an_expired_box_reads_little_whatever_was_dropped(store, clock) -> None:
    """Its owner's collection fetches every drop's blocks: each fetch read every drop (quadratic)."""
    item, keys = _filled_box(store, DROPS, SIZE)
    block = store.add_block(item, Presented("append", keys["append"]), b"sealed")["id"]
    clock[0] += LIFE + 1
    assert _bytes_read(store, lambda: store.block(block, Presented("read", keys["read"]))) < SIZE
    assert store.block(block, Presented("read", keys["read"])) == b"sealed"


def test_a_drop_collected_from_an_expired_box_reads_little_and_the_newest_stays_latest(store, clock) -> None:
    """A deletion read every drop left (a collection quadratic in the drops), bodies and all."""
    item, keys = _filled_box(store, DROPS, SIZE)
    clock[0] += LIFE + 1
    owner = Presented("delete", keys["delete"])
    newest = f"{item}-{DROPS - 1}"
    assert _bytes_read(store, lambda: store.delete_version(item, owner, newest)) < SIZE
    assert store.db.get(f"user:{item}")["latest"] == f"{item}-{DROPS - 2}"  # the newest left
    assert store.db.get(f"version:{newest}")["private_enc"] is None  # its body gone with it
    for n in range(DROPS - 1):
        store.delete_version(item, owner, f"{item}-{n}")
    assert store.db.get(f"user:{item}") is None  # the last drop collected: the box goes


def test_control_a_keyless_request_to_an_expired_box_whose_drops_were_all_collected_purges_it(
        store, clock) -> None:
    item, keys = _filled_box(store, 3, 10)
    for n in range(3):
        store.delete_version(item, Presented("delete", keys["delete"]), f"{item}-{n}")
    clock[0] += LIFE + 1
    with pytest.raises(Refused) as refused:
        store.describe(item, Presented())
    assert refused.value.status == 410 and store.db.get(f"user:{item}") is None


def test_control_a_keyless_request_to_a_live_box_reads_little(store) -> None:
    item, _ = _filled_box(store, DROPS, SIZE)
    assert _bytes_read(store, lambda: store.describe(item, Presented())) < SIZE


def test_control_a_dropper_cannot_mark_nor_reopen_a_box(store, clock) -> None:
    item, keys = _filled_box(store, 1, 10)
    store.change(item, Presented("delete", keys["delete"]), {"append_key_hash": "0" * 64})  # closed
    reopen = {"append_key_hash": hashlib.sha256(keys["append"]).hexdigest()}
    for role in ("append", "read"):
        for change in ({"keeps_drops": True}, reopen):
            with pytest.raises(Refused):
                store.change(item, Presented(role, keys[role]), change)
    with pytest.raises(Refused):
        store.add_version(item, Presented("append", keys["append"]), {"private_enc": "AAAA"})
    clock[0] += LIFE + 1
    with pytest.raises(Refused):  # past its expiry, the delete key's changes too (collection only)
        store.change(item, Presented("delete", keys["delete"]), {"append_key_hash": "1" * 64})
