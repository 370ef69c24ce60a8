"""Attack round 47b: the key record and the stale-key sweep after 0daabd5 (46c's fix: group keys
sign in ``group_owner_key``; at a group's place the sweep counts only keys naming that group).

Hole (1), medium (a removed member keeps his key: confidentiality; and a false ``forged-key`` alarm in
  honest use): since 0daabd5 the stale-key sweep takes no key at a group's place whose record names no
  group (``stale_keys.counts_as_removal``), to stop 46c (2)'s copies of user-share keys.  But every
  genuine group key sealed before 44b's binding (its record names no group) is such a key too: after
  its recipient is removed from the group, the sweep no longer re-keys the file for it, and says a
  ``forged-key`` alarm about an honest key instead.  The docstring's claim that "her group removals are
  re-keyed by the rotation pass, which reads the members" holds only on a device that itself sealed
  the share's keys to that member (``rotations_done.sealed_members`` is per device, kept beside the
  device's confirmed file) or that meets the group owner's ``Rotation`` request (which the server
  withholds at will: "only a reminder").
  Attack: alice's file shared with a group (hers or Gwen's) with bob in it; bob's key sealed by a
    device of hers before 44b (no group fields; her unlocks after the upgrade re-sign only keys of
    members reached then, ``fill_missing``).  Bob is removed from the group (by its owner, signed);
    the server withholds the owner's Rotation request.  Alice's other device (a new one, or one whose
    sealed-members record is lost/never had bob) runs its sweep and rotation pass.
  Seen: ``test_a_legacy_key_of_a_removed_member_is_re_keyed`` (run, fails: the epoch stays, bob's key
    of it stays at the group's place, and a ``forged-key`` alarm is said about her own genuine key);
    control ``test_a_bound_key_of_a_removed_member_is_re_keyed`` (the same key signed naming the group:
    re-keyed at once).  The server can make such a key of one re-signed since (a key of the current
    epoch first sealed before 44b, then signed again at her unlock naming the group): her genuine
    older record of the same epoch, served again, is written over the bound one (document wins):
    ``test_the_server_cannot_turn_a_bound_key_back_into_one_naming_no_group`` (was a control showing
    it; now asserts the fix (b)); for a group
    Gwen owns the mirror then also refuses Gwen's removal (its owner taken to be the signer, alice).
  Cause: ``counts_as_removal`` returns False for any record whose ``group`` is None at a group's place;
    a pre-binding key and a user-share key copied there are indistinguishable by the record (46c (2)'s
    own suggested fix), and the only other path (``_rekey_for_removals``) needs this device's memory of
    having sealed to him.  Before 0daabd5 the sweep was the backstop (22a (3)/40a (1)).
  Impact: bob, removed from the group, keeps the DEK of the file's current epoch: everything alice
    writes to it afterwards (same epoch) stays readable to him from the store/server, for good (no
    device of hers re-keys it unless one that sealed to him comes back); her device instead says a
    ``forged-key`` alarm naming her own honest key (false alarm, and it tells her to leave it alone).
    The key mirror also refuses his key's deletion for a group another user owns (a pre-binding key's
    removal is "taken by its file's re-key only"), so the key stays on every device too.
  Fix (suggested): tell the two apart positively, not by absence: at a group's place count a record
    naming no group when its recipient was ever a member of that group as this device's verified
    bodies/pins saw it (``fresh``/group pins), or when the record's epoch is older than the binding
    (a user-share key copied there is for a recipient the group never had); or sign user-share keys
    with an explicit user place (46c (2)'s suggestion) so "names none" means "pre-binding" only; and
    while such keys may exist, re-key on a key naming none at a group's place whose recipient is not a
    member, rate-limited per place (46c (2)'s loop bounded) rather than never.
  Tests: those three.
  Fixed: (a) ``counts_as_removal`` counts such a key again, at most once per place a day (then said);
    (b) the key mirror never writes an unbound record over a bound one of the same epoch.

Run 09:29 UTC, 2026-12-06 (1 xfailed, 2 controls passed; under --runxfail the xfail fails at its own
assertion: epoch 0 kept, two ``forged-key`` alarms "(names no group)").  ``-n 0``; in-process shared
mount (tests/inprocess/conftest.py) and the key mirror pair (tests/unit/test_key_mirror.py).

Read, held (no test kept): ``_owners_group`` checks bodies only under the signed ``group_owner_key``
(the store's user document of hers is not read for a keyed record); ``_keyed_groups`` re-verifies on a
new revision or a new key, bounded by the number of key documents per pass; ``_good_key`` re-signs a
key only when it names other than the pinned binding, so after one write the record matches and the
next unlock writes nothing (a server replay of an older record costs one write per replay per unlock,
as 46c noted).  The answer to a forged or malformed document over a held genuine key
(``_settle_one``) is one revision per document the server forges (no amplification) and said once
(``Alarms.warn`` counts repeats of a (kind, subject)).  The product has no way to change a user's
signing key (only ``user trust`` re-pins one found changed): after a re-pin, her next unlock signs the
current epoch's keys of reached members again under the new pin (``group_bound``/``_good_key``); keys of
members removed meanwhile keep the old key and are the re-key's (not tested).
"""

from __future__ import annotations

import stat

import trio
from inprocess.conftest import ALICE_UID, ROOT, shared, template_vault, vault_copy  # noqa: F401 (fixtures)
from inprocess.test_two_users import ALICE, _write

from fusevault.encoding import b64e
from fusevault.sync.key_mirror import place
from fusevault.vault.model import alarms, groups, rotations_done, sharing
from fusevault.vault.model.grants import record_doc, write_signed_key
from fusevault.vault.services import rotation
from unit.test_attack_42a_keys import _next_revision
from unit.test_attack_43b_keys import _gwen_removes_bob, _gwens_group
from unit.test_key_mirror import Owner, clock, pair, put  # noqa: F401 (fixtures)


async def _bob_removed_from_team(composed, legacy: bool):
    """alice's docs/notes.txt shared READ with her group team, bob a member; bob's key at team's place
    signed again naming no group (``legacy``: as a device of hers sealed it before 44b); bob then taken
    out of team by a body its owner signed, no Rotation request here (withheld), and this device's
    record of the members it sealed to gone (another device of hers, or a new one).  (volume, node,
    bob, the key's path, epoch)."""
    drive = composed.drive
    volume = drive.seat_of(ALICE_UID).ops.session.volume
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, docs.st_ino, b"notes.txt", b"hers", ALICE)
    me = volume.store.get(volume.key.user_id)
    bob = next(u for u in volume.store.iter_type("UserDetails") if u["_id"] != me["_id"])
    team = groups.create_group(volume.store, "team", me, volume.trust.sign)
    team = groups.set_member(volume.store, volume.store.get(team["_id"]), bob, "READ", sign=volume.trust.sign)
    volume.sharing.reload(volume.store)
    requests = drive.seat_of(ALICE_UID).ops.session.requests
    answer = await requests.handle({"cmd": "share", "path": "docs", "with": "@team", "perm": "READ"})
    assert "error" not in answer, answer
    node = volume.resolve(b"docs/notes.txt")
    path = sharing.group_key_path(volume.layout, team["_id"], node.fid, bob["_id"])
    for each in (volume.resolve(b"docs"), node):  # the folder's key and the file's
        at = sharing.group_key_path(volume.layout, team["_id"], each.fid, bob["_id"])
        record = sharing.read_key(at)
        assert record is not None and record.group == team["_id"] and record.epoch == each.epoch
        if legacy:
            write_signed_key(volume.trust, at, me["_id"], each.fid, bob["_id"], record.epoch, record.key)
            assert sharing.read_key(at).group is None
    groups.set_member(volume.store, volume.store.get(team["_id"]), bob, None, sign=volume.trust.sign)
    volume.sharing.reload(volume.store)
    rotations_done._sealed_place(volume.layout.root, me["_id"]).unlink(missing_ok=True)
    return volume, node, bob["_id"], path, node.epoch


async def _sweep(volume) -> None:
    """Her device's sweep and its rotation pass's removal check."""
    await rotation._rekey_unreached(volume)
    await rotation._rotation_pass(volume, True)


def test_a_bound_key_of_a_removed_member_is_re_keyed(shared) -> None:  # noqa: F811
    """Control: the key naming its group: the sweep re-keys the file, bob's key goes."""
    async def body() -> None:
        volume, node, _, path, epoch = await _bob_removed_from_team(shared, legacy=False)
        await _sweep(volume)
        assert node.epoch > epoch and not path.exists()

    trio.run(body)


def test_a_legacy_key_of_a_removed_member_is_re_keyed(shared) -> None:  # noqa: F811
    """(a): the key naming no group (sealed before 44b's binding), its recipient removed: re-keyed, and
    no ``forged-key`` alarm about her own genuine key."""
    async def body() -> None:
        volume, node, _, path, epoch = await _bob_removed_from_team(shared, legacy=True)
        await _sweep(volume)
        forged = [a["subject"] for a in volume.trust.alarms.as_list() if a["kind"] == "forged-key"]
        assert node.epoch > epoch, f"not re-keyed: bob keeps epoch {epoch}'s key ({path.exists()=}); " \
                                   f"said instead: {forged}"
        assert not path.exists() and not forged

    trio.run(body)


def test_the_server_cannot_turn_a_bound_key_back_into_one_naming_no_group(pair) -> None:  # noqa: F811
    """(b): her genuine record of bob's key of the same epoch from before the binding (other sealed bytes,
    no group fields), served again over the bound one she signed since, is not written to the key file
    (that would make it a key naming no group again, and for Gwen's group the mirror would take the
    signer as its owner): the bound file stays, answers the document with its own record, said."""
    here, _ = pair
    her, gwen, group, doc_id, joined = _gwens_group(here, gwen_first=True, bound="gwen")
    bound = sharing.read_key(place(here.layout, doc_id))
    assert bound.group == group
    fid, bob = here.store.get(doc_id)["fid"], here.store.get(doc_id)["recipient"]
    older = b"sealed for bob before 44b"
    sig = her.sign(record_doc(her.id, fid, bob, 1, older, None))["sig"]
    _next_revision(here, doc_id, {"type": sharing.FILE_KEY, "epoch": 1, "key": b64e(older), "owner": her.id,
                                  "fid": fid, "recipient": bob, "sig": sig})
    here.refresh()
    held = sharing.read_key(place(here.layout, doc_id))
    assert held == bound, f"the bound key written over by her older record naming no group: {held}"
    doc = here.store.get(doc_id)
    assert doc.get("group") == group and doc["key"] == b64e(bound.key)  # answered with the bound record
    assert any(a["subject"] == f"unbound {doc_id}" for a in alarms.listed([her.id]))
    _gwen_removes_bob(here, gwen, group, doc_id, joined)  # and Gwen's removal is still taken
    here.refresh()
    assert not place(here.layout, doc_id).exists()
