"""Root's shared mount maps a Linux uid to a vault user only by a document its user signed, and maps a uid
two users claim to neither (fs/shared.py ``_read_uids``, ``_vouched``; attack round 19)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from fusevault.crypto.kdf import WEAK_FOR_TESTS
from fusevault.fs.shared import SharedMount
from fusevault.store.local import LocalStore
from fusevault.vault.format import layout as layouts
from fusevault.vault.format.layout import Layout
from fusevault.vault.model import alarms, users


@pytest.fixture(autouse=True)
def _weak_kdf(monkeypatch) -> None:
    monkeypatch.setattr(users, "default_params", lambda: WEAK_FOR_TESTS)


def _vault(path: Path) -> tuple[Layout, LocalStore]:
    layout = layouts.create(path, {"kind": "local"})
    return layout, LocalStore(layout.root / "store.sqlite")


def _uids(layout: Layout, store: LocalStore) -> tuple[dict[int, str], dict[int, list[str]]]:
    mount = SimpleNamespace(layout=layout, disputed={})
    mapped = SharedMount._read_uids(mount, store)  # type: ignore[arg-type]
    return {uid: doc["_id"] for uid, doc in mapped.items()}, mount.disputed


def _put(store: LocalStore, doc: dict) -> None:
    current = store.get(doc["_id"])
    store.put_many([{**{k: v for k, v in doc.items() if k != "_rev"},
                     **({"_rev": current["_rev"]} if current else {})}])


def test_users_each_with_their_own_uid_are_mapped(tmp_path: Path) -> None:
    layout, store = _vault(tmp_path / "v")
    alice = users.create_user(layout, store, "alice", b"pass alice", uid=2001)
    bob = users.create_user(layout, store, "bob", b"pass bob", uid=2002)
    assert _uids(layout, store) == ({2001: alice, 2002: bob}, {})


def test_a_signed_document_whose_uid_was_changed_maps_nothing(tmp_path: Path) -> None:
    layout, store = _vault(tmp_path / "v")
    users.create_user(layout, store, "alice", b"pass alice", uid=2001)
    bob = users.create_user(layout, store, "bob", b"pass bob", uid=2002)
    _put(store, {**store.get(bob), "uid": 2003})
    mapped, disputed = _uids(layout, store)
    assert 2003 not in mapped and bob not in mapped.values() and not disputed
    assert "forged-user" in alarms.for_user(bob)


def test_a_uid_two_users_claim_maps_neither_and_both_are_told(tmp_path: Path) -> None:
    layout, store = _vault(tmp_path / "v")
    alice = users.create_user(layout, store, "alice", b"pass alice", uid=2001)
    # The store writer's own user, made in a vault of his, signed by keys of his, claiming her uid.
    elsewhere, other = _vault(tmp_path / "w")
    mallory = users.create_user(elsewhere, other, "mallory", b"pass mallory", uid=2001)
    _put(store, other.get(mallory))
    mapped, disputed = _uids(layout, store)
    assert mapped == {} and disputed == {2001: sorted([alice, mallory])}
    assert "uid-disputed" in alarms.for_user(alice) and "uid-disputed" in alarms.for_user(mallory)


def test_an_unsigned_document_maps_only_a_user_this_device_never_saw_sign(tmp_path: Path,
                                                                         monkeypatch) -> None:
    layout, store = _vault(tmp_path / "v")
    alice = users.create_user(layout, store, "alice", b"pass alice", uid=2001)
    _put(store, {k: v for k, v in store.get(alice).items() if k != "sig"})  # stripped
    assert _uids(layout, store) == ({}, {})  # made here: this device saw her sign
    # Another device (a state folder of its own), which never saw her sign: one from before signatures.
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "another-device"))
    assert _uids(layout, store) == ({2001: alice}, {})
