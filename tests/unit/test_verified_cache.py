"""The device's cache of signatures already checked (issue 25, vault/model/verified.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fusevault.crypto.identity import Identity
from fusevault.crypto.keys import MasterKey
from fusevault.crypto.signing import checked_before, sign_doc, verify_doc
from fusevault.encoding import b64d, b64e
from fusevault.errors import Forged
from fusevault.vault.model.verified import Verified, cache_path

ALICE = "a" * 32
BOB = "b" * 32


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))


def _key(user_id: str, seed: bytes = b"\1") -> MasterKey:
    return MasterKey(user_id, seed * 32)


def _filled(vault: Path, key: MasterKey, me: Identity, *docs: dict) -> None:
    """A first load: every document checked, and the cache written."""
    cache = Verified.open(key, vault)
    for doc in docs:
        verify_doc(me.sign.public_key(), doc, cache)
    assert (cache.verified, cache.cached) == (len(docs), 0)
    cache.save()


def _node(me: Identity, enc: str = "xyz") -> dict:
    return sign_doc(me.user_id, me.sign, {"_id": "n1", "type": "node", "owner": me.user_id, "enc": enc})


def test_a_signature_checked_before_is_not_checked_again(tmp_path: Path) -> None:
    me, key = Identity.new(ALICE), _key(ALICE)
    doc = _node(me)
    _filled(tmp_path, key, me, doc)
    again = Verified.open(key, tmp_path)
    assert verify_doc(me.sign.public_key(), doc, again) == ALICE
    assert (again.verified, again.cached) == (0, 1)
    assert cache_path(tmp_path, ALICE)[0].is_relative_to(tmp_path / "state")  # the device's, not the vault's


def test_a_changed_body_signature_or_key_is_checked_afresh(tmp_path: Path) -> None:
    me, key = Identity.new(ALICE), _key(ALICE)
    doc = _node(me)
    _filled(tmp_path, key, me, doc)
    cache = Verified.open(key, tmp_path)
    with pytest.raises(Forged):  # the body changed under the remembered signature
        verify_doc(me.sign.public_key(), {**doc, "enc": "planted"}, cache)
    raw = bytearray(b64d(doc["sig"]["ed25519"]))
    raw[0] ^= 1
    with pytest.raises(Forged):  # another signature over the same body
        verify_doc(me.sign.public_key(), {**doc, "sig": {**doc["sig"], "ed25519": b64e(bytes(raw))}}, cache)
    mallory = Identity.new(ALICE)  # the same id, a key this user never pinned
    with pytest.raises(Forged):
        verify_doc(mallory.sign.public_key(), doc, cache)
    forged = sign_doc(ALICE, mallory.sign, doc)  # signed by another key, checked with the pinned one
    with pytest.raises(Forged):
        verify_doc(me.sign.public_key(), forged, cache)
    assert cache.cached == 0
    assert cache.verified == 4  # each checked, none admitted
    changed = _node(me, "new contents")  # a real new version: checked once, then remembered
    verify_doc(me.sign.public_key(), changed, cache)
    verify_doc(me.sign.public_key(), changed, cache)
    assert (cache.verified, cache.cached) == (5, 1)
    cache.save()
    assert len(Verified.open(key, tmp_path).known) == 1  # only what holds is remembered


def test_a_tampered_cache_is_ignored(tmp_path: Path) -> None:
    me, key = Identity.new(ALICE), _key(ALICE)
    doc = _node(me)
    _filled(tmp_path, key, me, doc)
    path, _ = cache_path(tmp_path, ALICE)
    sealed = bytearray(path.read_bytes())
    sealed[-40] ^= 1
    path.write_bytes(bytes(sealed))
    cache = Verified.open(key, tmp_path)
    assert not cache.known
    verify_doc(me.sign.public_key(), doc, cache)
    assert (cache.verified, cache.cached) == (1, 0)
    cache.save()  # rewritten whole
    assert Verified.open(key, tmp_path).known == cache.used


def test_another_users_cache_is_ignored(tmp_path: Path) -> None:
    me, key = Identity.new(ALICE), _key(ALICE)
    doc = _node(me)
    _filled(tmp_path, key, me, doc)
    alices, _ = cache_path(tmp_path, ALICE)
    bobs, _ = cache_path(tmp_path, BOB)
    os.replace(alices, bobs)  # bob's device file, holding what alice's key sealed
    assert not Verified.open(_key(BOB, b"\2"), tmp_path).known
    # Sealed by a key that is not this user's master key (same user id): ignored too.
    _filled(tmp_path, _key(ALICE, b"\3"), me, doc)
    assert not Verified.open(key, tmp_path).known


def test_only_the_signatures_a_load_used_are_kept(tmp_path: Path) -> None:
    me, key = Identity.new(ALICE), _key(ALICE)
    old, kept = _node(me, "gone"), _node(me, "kept")
    _filled(tmp_path, key, me, old, kept)
    cache = Verified.open(key, tmp_path)
    verify_doc(me.sign.public_key(), kept, cache)
    cache.save()
    assert len(Verified.open(key, tmp_path).known) == 1


def test_checked_before_only_looks_up(tmp_path: Path) -> None:
    """``checked_before`` (round 55a (1)'s first look at a file's versions): true only for the exact
    document checked before under that key; a changed body (an altered copy under her signature),
    another key or a malformed signature is no hit, and a miss checks nothing (no count)."""
    me, key = Identity.new(ALICE), _key(ALICE)
    doc = _node(me)
    _filled(tmp_path, key, me, doc)
    cache = Verified.open(key, tmp_path)
    public = me.sign.public_key()
    assert not checked_before(public, {**doc, "_id": "n2"}, cache)  # her signature over another id
    assert not checked_before(public, {**doc, "enc": "planted"}, cache)
    assert not checked_before(Identity.new(ALICE).sign.public_key(), doc, cache)
    assert not checked_before(public, {**doc, "sig": {"by": ALICE, "ed25519": "short"}}, cache)
    assert not checked_before(public, {**doc, "sig": "garbage"}, cache)
    assert (cache.verified, cache.cached) == (0, 0)
    assert checked_before(public, doc, cache)
    assert (cache.verified, cache.cached) == (0, 1)
