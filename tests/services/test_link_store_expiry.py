"""The link store at an item's expiry (relay/items.py ``_item``): a drop box's drops made before it
wait for its owner's collection, closed to everything else (round 53t (2)); any other item goes."""

from __future__ import annotations

import hashlib
import os

import pytest

from fusevault.relay.items import DROPS_KEPT, ItemStore, Presented
from fusevault.relay.limits import Refused

LIFE = 60.0


class Box:
    """An item made with its three keys, one drop (a version owning one block), expiring in LIFE s."""

    def __init__(self, store: ItemStore, keeps_drops: object) -> None:
        self.store = store
        self.keys = {role: os.urandom(32) for role in ("read", "append", "delete")}
        body = {f"{role}_key_hash": hashlib.sha256(key).hexdigest() for role, key in self.keys.items()}
        self.id = store.create({**body, "keeps_drops": keeps_drops}, LIFE)["id"]
        self.block = store.add_block(self.id, self.key("append"), b"sealed drop")["id"]
        self.version = self.drop()

    def key(self, role: str) -> Presented:
        return Presented(role, self.keys[role])

    def drop(self) -> str:
        body = {"public": {}, "protected": {}, "private_enc": "AAAA", "blocks": [self.block]}
        return self.store.add_version(self.id, self.key("append"), body)["id"]

    def gone(self) -> bool:
        return self.store.db.get(f"user:{self.id}") is None


@pytest.fixture
def clock() -> list[float]:
    return [1_000_000.0]


@pytest.fixture
def store(couchdb_url: str, clock: list[float]) -> ItemStore:
    return ItemStore(couchdb_url, clock=lambda: clock[0])


def _refused(status: int, call, *args) -> None:
    with pytest.raises(Refused) as refused:
        call(*args)
    assert refused.value.status == status, refused.value


def test_an_expired_drop_box_refuses_everything_but_its_owners_collection(store, clock) -> None:
    box = Box(store, True)
    clock[0] += LIFE + 1
    # Closed: no new drop, nothing read or changed but by the collection.
    _refused(410, box.drop)
    _refused(410, store.add_block, box.id, box.key("append"), b"more")
    _refused(410, store.describe, box.id, box.key("read"))
    _refused(410, store.latest, box.id, box.key("delete"))
    _refused(410, store.change, box.id, box.key("delete"), {"append_key_hash": "0" * 64})
    # Its owner's collection: list, read, delete; the last drop taken, the box goes.
    [version] = store.all_versions(box.id, box.key("delete"))
    assert version["id"] == box.version and not version["deleted"]
    assert store.block(box.block, box.key("read")) == b"sealed drop"
    _refused(403, store.all_versions, box.id, box.key("append"))  # a dropper lists nothing
    store.delete_version(box.id, box.key("delete"), box.version)
    assert box.gone()


def test_an_expired_drop_box_keeps_its_drops_only_for_the_grace(store, clock) -> None:
    box = Box(store, True)
    clock[0] += LIFE + DROPS_KEPT
    _refused(410, store.all_versions, box.id, box.key("delete"))
    assert box.gone()


@pytest.mark.parametrize("keeps_drops", [None, False, "yes", 1])
def test_any_other_item_goes_at_its_expiry(store, clock, keeps_drops: object) -> None:
    item = Box(store, keeps_drops)
    clock[0] += LIFE + 1
    _refused(410, store.block, item.block, item.key("read"))  # a share's reader: nothing past expiry
    assert item.gone()


def test_an_expired_drop_box_with_nothing_dropped_goes_at_once(store, clock) -> None:
    box = Box(store, True)
    store.delete_version(box.id, box.key("delete"), box.version)
    clock[0] += LIFE + 1
    _refused(410, store.all_versions, box.id, box.key("delete"))
    assert box.gone()


def test_a_box_made_before_round_53_is_marked_by_its_owner_alone(store, clock) -> None:
    box = Box(store, None)  # created by a client that did not say it is a drop box
    _refused(403, store.change, box.id, box.key("append"), {"keeps_drops": True})  # a dropper
    _refused(400, store.change, box.id, box.key("delete"), {"keeps_drops": False})
    store.change(box.id, box.key("delete"), {"keeps_drops": True})
    clock[0] += LIFE + 1
    assert [v["id"] for v in store.all_versions(box.id, box.key("delete"))] == [box.version]
