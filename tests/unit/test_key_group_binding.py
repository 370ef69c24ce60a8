"""A group key's record names (signed) its group and the group's owner (attack round 44b (1)'s second fix).

The file's owner, sealing a key for a member reached through a group, signs in the group's id and its
owner as her pins admitted the group's body (vault/model/grants.py ``record_doc``): the key mirror (no
pins) takes that owner's removal of the member as the key's end, and a reader uses the key only at that
group's place.  A record edited (another group or owner) is refused as forged; one signed before the
fields were (none) still verifies, at any place.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from fusevault.encoding import b64e
from fusevault.store import replica
from fusevault.store.local import LocalStore
from fusevault.sync import key_mirror
from fusevault.sync.key_mirror import place
from fusevault.vault.format import layout as layouts
from fusevault.vault.model import alarms, sharing, users
from fusevault.vault.model.alarms import Alarms
from fusevault.vault.model.grants import bound_fields, key_signed, record_doc, write_signed_key
from fusevault.vault.model.trust import Trust
from fusevault.vault.tree import guests
from unit.test_attack_42a_keys import _next_revision
from unit.test_attack_43b_keys import _gwen_removes_bob, _gwens_group, _taken_or_said
from unit.test_key_mirror import Owner, clock, pair, put  # noqa: F401 (fixtures)
from unit.test_trust_core import _unlock, _weak_kdf  # noqa: F401 (fixture)

# --- the key mirror: a record's group and owner as its signature has them


def _bound_key_doc(her: Owner, group: str, fid: str, bob: str, group_owner: str,
                   owner_key: str | None = None) -> dict:
    """Her key for bob at ``group``'s place, signed naming the group and ``group_owner`` (and
    ``owner_key``: her signing key as pinned, since 46c (1); None: a record of 67f51c6)."""
    sealed = b"sealed for bob"
    named = (group, group_owner) if owner_key is None else (group, group_owner, owner_key)
    sig = her.sign(record_doc(her.id, fid, bob, 1, sealed, named))["sig"]
    return {"_id": f"vfkey-g-{group}-{fid}-{bob}", "_rev": "1-" + uuid.uuid4().hex, "type": sharing.FILE_KEY,
            "epoch": 1, "key": b64e(sealed), "owner": her.id, "fid": fid, "recipient": bob,
            **bound_fields(named), "sig": sig}


def _arrives(here, doc: dict) -> str:
    arrival = replica.store_revisions(here.store, [doc])
    here.keys.arrived(d["_id"] for d in arrival.current)
    return doc["_id"]


def _impostor(of: Owner) -> Owner:
    """A key pair the server made, and a user document at ``of``'s id self-signed under it."""
    fake = Owner()
    fake.id = of.id
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    public = fake.key.public_key().public_bytes(*raw)
    fake.user = fake.sign({**{k: v for k, v in of.user.items() if k not in ("sig", "_rev")},
                           "public_sign": b64e(public)})
    return fake


def _forged_said(her: Owner, doc_id: str) -> bool:
    return any(a["subject"] == doc_id and a["kind"] == "forged-key" for a in alarms.listed([her.id]))


@pytest.mark.parametrize("edited", ["group_owner", "group"])
def test_a_key_document_with_its_group_or_owner_edited_is_refused_as_forged(pair, edited) -> None:  # noqa: F811
    """The server serves her signed key with the group's owner changed to its own user (who may then
    sign bodies without bob), or the group changed: the signature no longer covers it: not written, said."""
    here, _ = pair
    her, gwen, server = Owner(), Owner(), Owner()
    fid, bob, group = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    put(here, her.user, her.node(fid, 1), gwen.user, server.user)
    doc = _bound_key_doc(her, group, fid, bob, gwen.id)
    doc[edited] = server.id if edited == "group_owner" else uuid.uuid4().hex
    doc_id = _arrives(here, doc)
    assert not place(here.layout, doc_id).exists()
    assert _forged_said(her, doc_id)


def test_a_key_copied_to_another_groups_place_is_refused_as_forged(pair) -> None:  # noqa: F811
    """Her genuine key of group A served at group B's id (a place the server chose: its bodies, not A's,
    would judge a removal): refused as forged, nothing written at B's place."""
    here, _ = pair
    her, gwen = Owner(), Owner()
    fid, bob, group, other = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    put(here, her.user, her.node(fid, 1), gwen.user)
    doc = _bound_key_doc(her, group, fid, bob, gwen.id)
    doc["_id"] = f"vfkey-g-{other}-{fid}-{bob}"
    doc_id = _arrives(here, doc)
    assert not place(here.layout, doc_id).exists()
    assert _forged_said(her, doc_id)


def test_a_bound_key_document_is_written_with_its_group_fields(pair) -> None:  # noqa: F811
    """Control: her key naming its group and owner is genuine: written, the fields kept (file and doc)."""
    here, there = pair
    her, gwen = Owner(), Owner()
    fid, bob, group = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    put(here, her.user, her.node(fid, 1), gwen.user)
    doc_id = _arrives(here, _bound_key_doc(her, group, fid, bob, gwen.id))
    record = sharing.read_key(place(here.layout, doc_id))
    assert (record.group, record.group_owner) == (group, gwen.id)
    assert key_mirror.names(doc_id) == (fid, bob)


# --- the record's shape


_KEY = b64e(bytes(range(32)))  # a signing key as a record names it (44 characters)


_IDS = {"group": "a" * 32, "group_owner": "b" * 32}


@pytest.mark.parametrize("fields", [{"group": "../../etc"}, {"group": "a" * 32},
                                    {"group": "a" * 32, "group_owner": "b" * 10_000},
                                    {"group": ["a" * 32], "group_owner": "b" * 32},
                                    {"group_owner_key": _KEY},  # the key without its group (46c (1))
                                    {**_IDS, "group_owner_key": "x" * 10_000},
                                    {**_IDS, "group_owner_key": _KEY[:-4]},
                                    {**_IDS, "group_owner_key": b64e(bytes(33))[:44]},
                                    {**_IDS, "group_owner_key": ["k"]}])
def test_a_records_group_fields_are_two_ids_or_none(fields) -> None:
    base = {"epoch": 1, "key": b64e(b"k"), "owner": "o" * 32, "fid": "f" * 32, "recipient": "r" * 32,
            "sig": {"by": "o" * 32, "ed25519": ""}}
    with pytest.raises(ValueError):
        sharing.key_record({**base, **fields})
    assert sharing.key_record(base).group is None
    keyed = sharing.key_record({**base, **_IDS, "group_owner_key": _KEY})
    assert keyed.group_owner_key == _KEY and keyed.signed_fields()["group_owner_key"] == _KEY


# --- a reader with pins (``key_signed``) and the owner's next unlock (``_good_key``)


@pytest.fixture
def alice(tmp_path: Path) -> tuple[layouts.Layout, Trust, Alarms, str]:
    layout = layouts.create(tmp_path / "v", {"kind": "local"})
    store = LocalStore(layout.root / "store.sqlite")
    users.create_user(layout, store, "alice", b"pass alice", uid=60001)
    found = Alarms()
    key = _unlock(store, "alice")
    return layout, Trust(store, key, found), found, key.user_id


def test_a_reader_uses_a_bound_key_only_at_its_groups_place(alice) -> None:
    layout, trust, found, me = alice
    fid, bob, group, other, gwen = (uuid.uuid4().hex for _ in range(5))
    path = sharing.group_key_path(layout, group, fid, bob)
    write_signed_key(trust, path, me, fid, bob, 1, b"sealed", group=(group, gwen))
    record = sharing.read_key(path)
    assert (record.group, record.group_owner) == (group, gwen)
    assert key_signed(trust, record, me, fid, bob, group) and "forged-key" not in found
    assert not key_signed(trust, record, me, fid, bob, other)  # copied to another group's place
    assert not key_signed(trust, record, me, fid, bob, None)  # or to a share with a user's
    assert "forged-key" in found
    for edited in (record._replace(group_owner=uuid.uuid4().hex), record._replace(group=other)):
        assert not key_signed(trust, edited, me, fid, bob, other if edited.group == other else group)


def test_a_key_signed_before_groups_were_bound_still_verifies_and_is_signed_again(alice) -> None:
    """No flag day: her older key (no group fields) verifies at the group's place; her next unlock's
    ``fill_missing`` finds it no good key of the epoch (``_good_key``), so it is sealed again naming the
    group, its owner and her key as pinned (``bound``); so is one of 67f51c6 naming the two ids only
    (46c (1)); one naming all three is kept."""
    layout, trust, found, me = alice
    fid, bob, group, gwen = (uuid.uuid4().hex for _ in range(4))
    bound = (group, gwen, Owner().user["public_sign"])
    path = sharing.group_key_path(layout, group, fid, bob)
    write_signed_key(trust, path, me, fid, bob, 3, b"sealed")
    record = sharing.read_key(path)
    assert record.group is None and key_signed(trust, record, me, fid, bob, group)
    assert not guests._good_key(path, trust, me, fid, bob, 3, bound)
    assert guests._good_key(path, trust, me, fid, bob, 2, bound)  # a newer epoch's is never replaced
    write_signed_key(trust, path, me, fid, bob, 3, b"sealed", group=(group, gwen))
    assert key_signed(trust, sharing.read_key(path), me, fid, bob, group)
    assert not guests._good_key(path, trust, me, fid, bob, 3, bound)  # 67f51c6's: no key of hers
    assert guests._good_key(path, trust, me, fid, bob, 3, (group, gwen))  # nothing better to sign
    write_signed_key(trust, path, me, fid, bob, 3, b"sealed", group=bound)
    assert sharing.read_key(path).group_owner_key == bound[2]
    assert key_signed(trust, sharing.read_key(path), me, fid, bob, group)
    assert guests._good_key(path, trust, me, fid, bob, 3, bound)
    user_path = sharing.user_key_path(layout, bob, me, fid)
    write_signed_key(trust, user_path, me, fid, bob, 3, b"sealed")
    assert guests._good_key(user_path, trust, me, fid, bob, 3)  # a user's share names no group
    assert "forged-key" not in found


# --- the group owner's key (attack round 46c (1))


def test_a_key_bound_without_its_owners_key_takes_no_removal_of_another_owner(pair, clock) -> None:  # noqa: F811
    """A key of 67f51c6 (the group and Gwen named, not her key): its group owner is its signer, as before
    the binding (332f9b3): Gwen's removal of bob is no reason here (the re-key is), refused and said, so
    a user document of Gwen's the server made never judges it; her next unlock signs it again with Gwen's
    key (``_good_key``)."""
    here, _ = pair
    her, gwen, group, doc_id, joined = _gwens_group(here, gwen_first=True, bound="gwen-unkeyed")
    _gwen_removes_bob(here, gwen, group, doc_id, joined)
    _taken_or_said(here, her, doc_id, clock)


def test_a_body_signed_under_another_key_of_the_owner_takes_no_key(pair, clock) -> None:  # noqa: F811
    """The server's user document for Gwen replaced, a body without bob signed under its key: the key names
    Gwen's pinned key, under which the body does not verify: bob's key kept, the deletion said; Gwen's
    genuine removal, later, under her pinned key, still takes it (the note is under her pinned key's body)."""
    here, _ = pair
    her, gwen, group, doc_id, joined = _gwens_group(here, gwen_first=True, bound="gwen")
    fake = _impostor(gwen)
    _next_revision(here, gwen.id, fake.user)
    _next_revision(here, group, fake.sign({**{k: v for k, v in joined.items() if k != "sig"},
                                           "users": {gwen.id: "READ,WRITE"}, "made_at_us": 250}))
    _next_revision(here, doc_id, None)
    _taken_or_said(here, her, doc_id, clock)
    _next_revision(here, gwen.id, gwen.user)
    _next_revision(here, group, gwen.sign({**{k: v for k, v in joined.items() if k != "sig"},
                                           "users": {gwen.id: "READ,WRITE"}, "made_at_us": 300}))
    here.keys.caught_up()  # the deletion, still refused, judged again
    assert not place(here.layout, doc_id).exists()
