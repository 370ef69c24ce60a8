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

from fusevault.encoding import b64e
from fusevault.store import replica
from fusevault.store.local import LocalStore
from fusevault.sync import key_mirror
from fusevault.sync.key_mirror import place
from fusevault.vault.format import layout as layouts
from fusevault.vault.model import alarms, sharing, users
from fusevault.vault.model.alarms import Alarms
from fusevault.vault.model.grants import key_signed, record_doc, write_signed_key
from fusevault.vault.model.trust import Trust
from fusevault.vault.tree import guests
from unit.test_key_mirror import Owner, clock, pair, put  # noqa: F401 (fixtures)
from unit.test_trust_core import _unlock, _weak_kdf  # noqa: F401 (fixture)

# --- the key mirror: a record's group and owner as its signature has them


def _bound_key_doc(her: Owner, group: str, fid: str, bob: str, group_owner: str) -> dict:
    sealed = b"sealed for bob"
    sig = her.sign(record_doc(her.id, fid, bob, 1, sealed, (group, group_owner)))["sig"]
    return {"_id": f"vfkey-g-{group}-{fid}-{bob}", "_rev": "1-" + uuid.uuid4().hex, "type": sharing.FILE_KEY,
            "epoch": 1, "key": b64e(sealed), "owner": her.id, "fid": fid, "recipient": bob,
            "group": group, "group_owner": group_owner, "sig": sig}


def _arrives(here, doc: dict) -> str:
    arrival = replica.store_revisions(here.store, [doc])
    here.keys.arrived(d["_id"] for d in arrival.current)
    return doc["_id"]


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


@pytest.mark.parametrize("fields", [{"group": "../../etc"}, {"group": "a" * 32},
                                    {"group": "a" * 32, "group_owner": "b" * 10_000},
                                    {"group": ["a" * 32], "group_owner": "b" * 32}])
def test_a_records_group_fields_are_two_ids_or_none(fields) -> None:
    base = {"epoch": 1, "key": b64e(b"k"), "owner": "o" * 32, "fid": "f" * 32, "recipient": "r" * 32,
            "sig": {"by": "o" * 32, "ed25519": ""}}
    with pytest.raises(ValueError):
        sharing.key_record({**base, **fields})
    assert sharing.key_record(base).group is None


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
    group and its owner; a bound one of the epoch is kept."""
    layout, trust, found, me = alice
    fid, bob, group, gwen = (uuid.uuid4().hex for _ in range(4))
    path = sharing.group_key_path(layout, group, fid, bob)
    write_signed_key(trust, path, me, fid, bob, 3, b"sealed")
    record = sharing.read_key(path)
    assert record.group is None and key_signed(trust, record, me, fid, bob, group)
    assert not guests._good_key(path, trust, me, fid, bob, 3)
    assert guests._good_key(path, trust, me, fid, bob, 2)  # a newer epoch's is never replaced
    write_signed_key(trust, path, me, fid, bob, 3, b"sealed", group=(group, gwen))
    assert guests._good_key(path, trust, me, fid, bob, 3)
    user_path = sharing.user_key_path(layout, bob, me, fid)
    write_signed_key(trust, user_path, me, fid, bob, 3, b"sealed")
    assert guests._good_key(user_path, trust, me, fid, bob, 3)  # a user's share names no group
    assert "forged-key" not in found
