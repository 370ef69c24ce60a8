"""The trust core in-process: document signatures, pinned keys, the signing of old documents, alarms."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from fusevault.crypto.identity import Identity, seal_identity
from fusevault.crypto.kdf import WEAK_FOR_TESTS
from fusevault.crypto.keys import MasterKey
from fusevault.crypto.signing import sign_doc, verify_doc
from fusevault.errors import Forged
from fusevault.store.local import LocalStore
from fusevault.vault.format import layout as layouts
from fusevault.vault.format.layout import Layout
from fusevault.vault.model import users
from fusevault.vault.model.alarms import Alarms
from fusevault.vault.model.migrate import sign_own
from fusevault.vault.model.trust import GroupPin, Pin, Trust, doc_fingerprint, self_signed


@pytest.fixture(autouse=True)
def _weak_kdf(monkeypatch) -> None:
    monkeypatch.setattr(users, "default_params", lambda: WEAK_FOR_TESTS)


def _vault(tmp_path: Path) -> tuple[Layout, LocalStore]:
    layout = layouts.create(tmp_path / "v", {"kind": "local"})
    return layout, LocalStore(layout.root / "store.sqlite")


def _unlock(store: LocalStore, name: str) -> MasterKey:
    return users.unlock(users.find_user(store, name), b"pass " + name.encode())


def test_a_signature_covers_every_field_but_the_revision() -> None:
    me = Identity.new("a" * 32)
    doc = sign_doc(me.user_id, me.sign, {"_id": "n1", "type": "node", "owner": "a" * 32, "delete": False,
                                          "enc": "xyz", "_rev": "1-aa"})
    public = me.sign.public_key()
    assert verify_doc(public, doc) == me.user_id
    assert verify_doc(public, {**doc, "_rev": "7-bb"}) == me.user_id  # a store renames revisions
    for field, value in (("owner", "b" * 32), ("delete", True), ("_id", "n2"), ("enc", "xyy"),
                         ("_deleted", True), ("extra", 1)):
        with pytest.raises(Forged):
            verify_doc(public, {**doc, field: value})
    with pytest.raises(Forged):  # the signature names its signer: it cannot be moved to another
        verify_doc(public, {**doc, "sig": {**doc["sig"], "by": "b" * 32}})
    with pytest.raises(Forged):
        verify_doc(Identity.new("c" * 32).sign.public_key(), doc)
    for bad in ({"by": "a" * 32, "ed25519": "!!"}, {"by": 3}, "x", {"by": "a" * 32}):
        with pytest.raises(Forged):
            verify_doc(public, {**doc, "sig": bad})
    with pytest.raises(Forged):  # NaN has no canonical form
        sign_doc(me.user_id, me.sign, {"_id": "x", "size": float("nan")})
    with pytest.raises(ValueError):  # nor survives a CouchDB server an integer beyond 2**53
        sign_doc(me.user_id, me.sign, {"_id": "x", "made_at": {"n": [2**53]}})


def test_keys_are_pinned_at_first_sight_and_a_changed_key_is_refused_and_said(tmp_path: Path) -> None:
    layout, store = _vault(tmp_path)
    users.create_user(layout, store, "alice", b"pass alice", uid=60001)
    users.create_user(layout, store, "bob", b"pass bob", uid=60002)
    alarms = Alarms()
    trust = Trust(store, _unlock(store, "alice"), alarms)
    bob = users.find_user(store, "bob")
    assert self_signed(bob)
    trust.observe(store.iter_type(users.USER))
    trust.save()
    pinned = trust.fingerprint_of(bob["_id"])
    assert pinned == doc_fingerprint(bob)
    # The server replaces bob's keys with its own, self-signed: refused, the pinned ones stay.
    mallory = Identity.new(bob["_id"])
    forged = sign_doc(bob["_id"], mallory.sign, {**bob, **mallory.public_fields()})
    store.put_many([forged])
    again = Trust(store, _unlock(store, "alice"), alarms)  # a later unlock reads the pins back
    again.observe(store.iter_type(users.USER))
    assert again.fingerprint_of(bob["_id"]) == pinned
    assert again.box_key(bob["_id"]).public_bytes_raw() != mallory.box.public_key().public_bytes_raw()
    assert "key-changed" in alarms and "bob" in alarms.as_list()[-1]["text"]
    # Re-pinning needs the fingerprint the person checked.
    with pytest.raises(Forged):
        again.repin(users.find_user(store, "bob"), pinned)
    again.repin(users.find_user(store, "bob"), doc_fingerprint(forged))
    assert again.fingerprint_of(bob["_id"]) == doc_fingerprint(forged)


def test_a_groups_owner_and_a_users_name_are_pinned_at_first_sight(tmp_path: Path) -> None:
    """The group's first owner travels with the pins (the store's document, another unlock); a body
    naming another owner is refused; a new user with a pinned user's name is not pinned."""
    layout, store = _vault(tmp_path)
    users.create_user(layout, store, "alice", b"pass alice", uid=60001)
    users.create_user(layout, store, "bob", b"pass bob", uid=60002)
    alice, bob = users.find_user(store, "alice"), users.find_user(store, "bob")
    group = {"_id": "g" * 32, "type": "Group", "groupname": "team", "owner": alice["_id"],
             "users": {alice["_id"]: "READ,WRITE"}}
    alarms = Alarms()
    trust = Trust(store, _unlock(store, "alice"), alarms)
    assert trust.admit_groups([group]) == [group]
    trust.save()
    again = Trust(store, _unlock(store, "alice"), alarms)
    assert again.group_owner(group["_id"]) == alice["_id"]
    taken = {**group, "owner": bob["_id"], "users": {bob["_id"]: "READ,WRITE"}}
    planted = {**group, "_id": "h" * 32}
    assert again.admit_groups([taken, planted]) == []
    assert "group-owner-changed" in alarms and "name-taken" in alarms
    again.observe(store.iter_type(users.USER))
    impostor = Identity.new("i" * 32)
    doc = sign_doc(impostor.user_id, impostor.sign, {"_id": impostor.user_id, "type": users.USER,
                                                     "username": "bob", **impostor.public_fields()})
    again.observe([bob, doc])
    assert again.pin(impostor.user_id) is None
    assert again.trusted_user([doc, bob]) == bob


def test_an_unsigned_document_counts_only_until_its_author_has_signed(tmp_path: Path) -> None:
    layout, store = _vault(tmp_path)
    users.create_user(layout, store, "alice", b"pass alice", uid=60001)
    users.create_user(layout, store, "bob", b"pass bob", uid=60002)
    trust = Trust(store, _unlock(store, "alice"), Alarms())
    trust.observe(store.iter_type(users.USER))
    bob_id = users.find_user(store, "bob")["_id"]
    assert not trust.legacy(bob_id)  # bob's document is signed: his unsigned ones are forged
    with pytest.raises(Forged):
        trust.verify({"_id": "s", "type": "Share", "owner": bob_id}, author=bob_id)
    assert trust.verify(trust.sign({"_id": "s", "type": "Share"})) == trust.user_id


def test_the_first_unlock_signs_the_users_old_documents_and_only_theirs(tmp_path: Path) -> None:
    layout, store = _vault(tmp_path)
    users.create_user(layout, store, "alice", b"pass alice", uid=60001)
    alice = users.find_user(store, "alice")
    # A vault of format 2: nothing signed, and the sealed keys do not say "signs".
    key = _unlock(store, "alice")
    legacy = dataclasses.replace(key.identity, signs=False)
    unsigned = {**{k: v for k, v in alice.items() if k != "sig"}, **seal_identity(key, legacy)}
    other = {"_id": "share-x", "type": "Share", "owner": "f" * 32, "fid": "x", "grantee": alice["_id"]}
    mine = {"_id": "share-y", "type": "Share", "owner": alice["_id"], "fid": "y", "grantee": "f" * 32}
    retention = {"_id": "ret-a", "type": "Retention", "user": alice["_id"], "days": 3}
    store.put_many([unsigned, other, mine, retention])
    alarms = Alarms()
    trust = Trust(store, _unlock(store, "alice"), alarms)
    assert not trust.identity.signs
    # The user, their share and their retention (the root node was signed at birth).
    assert sign_own(store, trust) == 3
    assert self_signed(store.get(alice["_id"]))
    assert users.unlock(store.get(alice["_id"]), b"pass alice").identity.signs  # sealed from now on
    # Her share keeps working across the upgrade; another owner's document is not hers to sign.
    assert trust.verify(store.get("share-y")) == alice["_id"]
    assert "sig" not in store.get("share-x")
    with pytest.raises(Forged):  # and from now on an unsigned one in her name is a forgery
        trust.verify({**mine, "perm": "READ,WRITE"}, author=alice["_id"])
    assert sign_own(store, trust) == 0  # once is enough


def test_an_unsigned_user_document_whose_sealed_keys_say_signs_is_not_migrated(tmp_path: Path) -> None:
    layout, store = _vault(tmp_path)
    users.create_user(layout, store, "alice", b"pass alice", uid=60001)
    alice = users.find_user(store, "alice")
    stripped = {k: v for k, v in alice.items() if k != "sig"}
    node = {"_id": "n-planted", "type": "node", "owner": alice["_id"], "delete": False, "enc": "x"}
    store.put_many([stripped, node])
    alarms = Alarms()
    trust = Trust(store, _unlock(store, "alice"), alarms)  # no device mark, no pins: a new device
    assert sign_own(store, trust) == 0
    assert "forged-user" in alarms
    assert "sig" not in store.get(alice["_id"]) and "sig" not in store.get("n-planted")


def test_alarms_are_said_once_and_bounded() -> None:
    alarms = Alarms()
    for _ in range(5):
        alarms.warn("forged", "doc-1", "refused doc-1")
    assert len(alarms) == 1 and alarms.as_list()[0]["count"] == 5
    for i in range(1000):
        alarms.warn("forged", f"doc-{i}", "x")
    assert len(alarms) <= 200


def test_a_user_signed_before_the_sealed_flag_gets_it_at_the_next_unlock(tmp_path: Path) -> None:
    layout, store = _vault(tmp_path)
    users.create_user(layout, store, "alice", b"pass alice", uid=60001)
    alice = users.find_user(store, "alice")
    key = _unlock(store, "alice")
    older = dataclasses.replace(key.identity, signs=False)  # migrated by a fusevault without the flag
    store.put_many([sign_doc(alice["_id"], key.identity.sign, {**alice, **seal_identity(key, older)})])
    trust = Trust(store, _unlock(store, "alice"), Alarms())
    assert not trust.identity.signs
    assert sign_own(store, trust) == 0
    again = users.find_user(store, "alice")
    assert self_signed(again) and users.unlock(again, b"pass alice").identity.signs


def test_a_pinned_user_or_group_keeps_its_name_when_it_claims_one_another_holds(tmp_path: Path) -> None:
    """A rename to a free name is taken; one to a name another pin holds (its document gone or not), or
    another document claims, is not (alarm), and that name does not resolve to the renamed one."""
    layout, store = _vault(tmp_path)
    for uid, name in enumerate(("alice", "bob", "carol"), 60001):
        users.create_user(layout, store, name, b"pass " + name.encode(), uid=uid)
    alice, bob, carol = (users.find_user(store, n) for n in ("alice", "bob", "carol"))
    bobs_key = _unlock(store, "bob")
    alarms = Alarms()
    trust = Trust(store, _unlock(store, "alice"), alarms)
    trust.observe([alice, bob, carol])

    def bob_as(name: str) -> dict:
        body = {k: v for k, v in bob.items() if k not in ("_rev", "sig")}
        return sign_doc(bob["_id"], bobs_key.identity.sign, {**body, "username": name})

    trust.observe([alice, bob_as("robert"), carol])
    assert trust.pin(bob["_id"]).username == "robert" and "name-taken" not in alarms
    for others in ([alice], [alice, carol], [alice, {**carol, "_id": "d" * 32}]):
        trust.observe([*others, bob_as("carol")])
        assert trust.pin(bob["_id"]).username == "robert"
        assert trust.name_taken(bob_as("carol")) is not None
    assert "name-taken" in alarms and trust.pinned_user_named("carol") == carol["_id"]
    assert trust.pinned_user_named("robert") == bob["_id"] and trust.pinned_user_named("nobody") is None
    team = {"_id": "t" * 32, "type": "Group", "groupname": "team", "owner": alice["_id"], "users": {}}
    crew = {"_id": "c" * 32, "type": "Group", "groupname": "crew", "owner": bob["_id"], "users": {}}
    assert trust.admit_groups([team, crew]) == [team, crew]
    renamed = {**crew, "groupname": "team"}
    for others in ([], [team]):
        assert trust.admit_groups([*others, renamed]) == [*others, renamed]  # its members still count
        assert trust.group_name_taken(renamed) is not None and trust.pinned_group_named("team") == team["_id"]
    assert trust.admit_groups([team, {**crew, "groupname": "gang"}])
    assert trust.pinned_group_named("gang") == crew["_id"]


def test_another_devices_first_sight_pin_does_not_replace_this_devices_pin(tmp_path: Path,
                                                                            monkeypatch) -> None:
    """Round 9b: the server withheld the Pins document from alice's new desktop and showed it a
    forged bob; the desktop's first-sight pin reaches the laptop in her (genuine) Pins document.
    The laptop keeps its own pin and says the keys changed; only an explicit, later re-pin
    (`fusevault user trust`) made on another device replaces it."""
    import fusevault.vault.model.trust as trust_module
    layout, store = _vault(tmp_path)
    users.create_user(layout, store, "alice", b"pass alice", uid=60001)
    users.create_user(layout, store, "bob", b"pass bob", uid=60002)
    bob = users.find_user(store, "bob")
    now = [1_800_000_000]
    monkeypatch.setattr(trust_module.time, "time", lambda: now[0])

    def device(name: str) -> tuple[Trust, Alarms]:
        monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / name))
        alarms = Alarms()
        return Trust(store, _unlock(store, "alice"), alarms, root=layout.root), alarms

    laptop, _ = device("laptop")
    laptop.observe(store.iter_type(users.USER))
    laptop.save()
    genuine = laptop.fingerprint_of(bob["_id"])
    mallory = Identity.new(bob["_id"])
    forged = sign_doc(bob["_id"], mallory.sign, {**bob, **mallory.public_fields()})
    store.put_many([forged])
    pins = store.get(laptop.pins_id)
    store.put_many([{"_id": pins["_id"], "_rev": pins["_rev"], "_deleted": True}])  # withheld

    now[0] += 60
    desktop, _ = device("desktop")
    desktop.observe(store.iter_type(users.USER))  # first sight: the forgery (out of reach there)
    desktop.save()
    assert desktop.fingerprint_of(bob["_id"]) == doc_fingerprint(forged)

    laptop, alarms = device("laptop")  # the desktop's pins reach the laptop
    assert laptop.fingerprint_of(bob["_id"]) == genuine
    assert [a for a in alarms.as_list() if a["kind"] == "pin-differs"
            and "keys of user 'bob' changed" in a["text"]], alarms.as_list()
    laptop.save()  # and the store holds the laptop's pin again
    assert device("fresh")[0].fingerprint_of(bob["_id"]) == genuine

    now[0] += 60  # she compares fingerprints and re-pins on the desktop: that travels
    desktop, _ = device("desktop")
    desktop.repin(forged, doc_fingerprint(forged))
    desktop.save()
    assert device("laptop")[0].fingerprint_of(bob["_id"]) == doc_fingerprint(forged)


def test_a_merge_never_takes_back_signs_nor_a_groups_pinned_owner(tmp_path: Path) -> None:
    """Merging another device's pins: ``signs`` stays set, a pin only there is taken, a later
    re-pin replaces ours (an earlier one does not), a group keeps the owner this device pinned."""
    layout, store = _vault(tmp_path)
    users.create_user(layout, store, "alice", b"pass alice", uid=60001)
    alarms = Alarms()
    trust = Trust(store, _unlock(store, "alice"), alarms)
    ours = {"b" * 32: Pin("bob", "box", "sign", True, 100)}
    theirs = {"b" * 32: Pin("bob", "box", "sign", False, 200), "c" * 32: Pin("carol", "x", "y", False, 50)}
    merged = trust._merge(ours, theirs)
    assert merged["b" * 32].signs is True and merged["c" * 32] == theirs["c" * 32]
    repin = Pin("bob", "box2", "sign2", True, 300, repinned=True)
    older = {"b" * 32: Pin("bob", "box", "sign", False, 100)}
    assert trust._merge(older, {"b" * 32: repin})["b" * 32] == repin
    assert trust._merge({"b" * 32: Pin("bob", "box", "sign", True, 400, repinned=True)},
                        {"b" * 32: repin})["b" * 32].pinned_at == 400  # ours is the later re-pin
    groups = trust._merge_groups({"g" * 32: GroupPin("a" * 32, "team", 100)},
                                 {"g" * 32: GroupPin("m" * 32, "team", 200),
                                  "h" * 32: GroupPin("a" * 32, "x", 9)})
    assert groups["g" * 32].owner == "a" * 32 and groups["h" * 32].owner == "a" * 32
    assert "group-owner-changed" in alarms


def test_a_repin_outranks_a_later_first_sight_pin_of_other_keys(tmp_path: Path) -> None:
    """A re-pin she made after comparing fingerprints replaces another device's first-sight pin of
    other keys whatever the times (that device's first sight came later, from a server); a re-pin of
    the same keys marks this device's pin re-pinned too, so it travels on; of two re-pins the later wins."""
    layout, store = _vault(tmp_path)
    users.create_user(layout, store, "alice", b"pass alice", uid=60001)
    trust = Trust(store, _unlock(store, "alice"), Alarms())
    repin = Pin("bob", "genuine-box", "genuine-sign", True, 100, repinned=True)
    later_sight = Pin("bob", "server-box", "server-sign", True, 200)
    assert trust._merge({"b" * 32: later_sight}, {"b" * 32: repin})["b" * 32] == repin
    assert trust._merge({"b" * 32: repin}, {"b" * 32: later_sight})["b" * 32] == repin
    same = trust._merge({"b" * 32: Pin("bob", "genuine-box", "genuine-sign", False, 300)}, {"b" * 32: repin})
    assert same["b" * 32].repinned and same["b" * 32].signs
    newer = Pin("bob", "new-box", "new-sign", True, 400, repinned=True)
    assert trust._merge({"b" * 32: repin}, {"b" * 32: newer})["b" * 32] == newer
    assert trust._merge({"b" * 32: newer}, {"b" * 32: repin})["b" * 32] == newer


def test_her_own_group_wins_a_merge_and_two_other_owners_refuse_the_group(tmp_path: Path) -> None:
    """A group pin naming this user as the owner wins over another device's (only her key makes her
    group); two devices naming two other owners: the group is refused (not admitted, `share --with
    @group` refused naming the conflict) and the dispute travels with the pins (store and device)."""
    layout, store = _vault(tmp_path)
    users.create_user(layout, store, "alice", b"pass alice", uid=60001)
    alice = users.find_user(store, "alice")["_id"]
    alarms = Alarms()
    trust = Trust(store, _unlock(store, "alice"), alarms)
    hers, bobs = GroupPin(alice, "team", 100), GroupPin("b" * 32, "team", 200)
    assert trust._merge_groups({"g" * 32: bobs}, {"g" * 32: hers})["g" * 32] == hers
    assert trust._merge_groups({"g" * 32: hers}, {"g" * 32: bobs})["g" * 32] == hers
    assert "group-owner-changed" in alarms

    crew = {"_id": "c" * 32, "type": "Group", "groupname": "crew", "owner": "b" * 32,
            "users": {"b" * 32: "READ,WRITE", alice: "READ"}}
    trust._groups = trust._merge_groups({"c" * 32: GroupPin("b" * 32, "crew", 100)},
                                        {"c" * 32: GroupPin("d" * 32, "crew", 50)})
    assert trust._groups["c" * 32].disputed == ("d" * 32,)
    assert trust.admit_groups([crew]) == [] and "group-disputed" in alarms
    assert "d" * 32 in (trust.group_dispute("crew") or "") and trust.group_dispute("team") is None
    trust._dirty = True
    trust.save()
    again = Trust(store, _unlock(store, "alice"), alarms)  # the store's copy holds the dispute
    assert again.admit_groups([crew]) == [] and again.group_dispute("crew") is not None
