"""Attack round 46c: the key mirror and the key record after 332f9b3, 67f51c6 (group keys name their
group and its owner) and f66a999 (a refused deletion remembered a day).

Run 08:57 UTC, 2026-12-06 (4 xfailed, 3 controls passed; under --runxfail each xfail fails at its own
assertion).  ``-n 0``; (2)'s test composes the in-process shared mount (tests/inprocess/conftest.py).

Hole (1), high (a member's key taken, unsaid, by the server alone; 332f9b3 had closed it, 67f51c6
  opens it again): the key names its group's owner by id only, and the mirror checks her bodies under
  whatever self-signed user document the store holds at her id, which the server can replace.
  Attack: Gwen's group with bob, Alice's file shared with it, bob's key signed naming (group, Gwen).
    The server makes a key pair, serves a new revision of Gwen's UserDetails (her id, its own
    ``public_sign``, self-signed under it), a body of the group naming Gwen owner, without bob,
    ``made_at_us`` 2**53 - 1, signed under that key, and a bare deletion of bob's key document.
  Seen: ``test_gwens_user_document_replaced_by_the_server_takes_no_key`` (run, fails: the key file is
    removed at once, nothing said); control ``test_alices_user_document_replaced_takes_no_key`` (the
    file owner's document replaced instead: her key is no longer genuine, the deletion is refused and
    said: the 332f9b3 rule, one document verifying both the key and the body, held).
  Cause: ``_member_removed`` / ``_signed_group`` verify the body with ``signed_in_store(store, group,
    owner)``, i.e. under the store's current user document of ``group_owner`` (``owners_key``: no
    pin), while the key's genuineness rests on another user's (the file owner's) document; the key
    record binds Gwen's id, not her key.
  Impact: as 43b (1) / 44b (1): bob's key of every file shared with any group whose owner is not the
    file's owner removed on every device whose mirror meets it (the deletion stays on the server, his
    new devices get none), nothing said by the mirror (a mount whose user pinned Gwen says her user
    document changed, SECURITY.md "Pinned identities" (read, not run), not that keys went; a device
    with no user unlocked says nothing); the same replaced document can also sign a body with bob and the
    top stamp, noted, so Gwen's genuine
    removals are refused (said) until the re-key.
  Fix (suggested): sign into the key record the group owner's signing key as the file owner pinned
    it (e.g. ``group_owner_sign``: her ``public_sign``, or its hash) and verify the group's bodies
    against that key, never the store's user document; or take a group body only from the owner's
    user document that was current when the key was noted (note the key's hash with the stamp).
  Tests: that one; the control.

Hole (2), medium (unbounded work from hostile input, unsaid; 67f51c6's "a re-key for nothing" fix is
  only for records naming a group): a key of a share with a user names no group, so it is "at home
  anywhere": copied to the place of a group that shares the same file (bob not in it), it verifies
  there (``grants.key_signed``, ``genuine_in_store``: ``bound_elsewhere`` is False for a record naming
  none), and her stale-key sweep takes it for a removed member's key and re-keys the file.
  Attack: alice shares docs with bob (a user's share) and with her group team (bob never in it).  The
    server serves bob's user-share key document's body at ``vfkey-g-<team>-<fid>-<bob>`` (the mirror
    writes it: genuine, names no group), or a vault-folder writer copies the file there.  Her device's
    sweep (at every key document's arrival, and at unlock) re-keys the file; the new epoch's key for
    bob (his share stands) comes back to the server at once, which copies it again: for ever.
  Seen: ``test_a_users_share_key_copied_to_a_group_place_costs_no_re_key`` (run, fails: the epoch rises
    at each copy, 0 -> 1 -> 2, and no ``forged-key`` is said); the mirror's part:
    ``test_the_mirror_writes_a_users_share_key_served_at_a_groups_place`` (control, passes: written).
  Cause: ``sharing.key_group`` gives the place's group, but a record with ``group`` None passes
    ``bound_elsewhere`` at any place, and user-share keys are never bound (only ``Guests.group_bound``
    for a group grant), so after the upgrade and re-sign too; ``stale_keys.unreached`` takes a key at a
    group's place whose recipient is not in the group, over a file the group shares, for a member's
    removal (40a (1)'s planted-copy rule looks only at whether the group shares the file).
  Impact: the server (or anyone who writes the vault folder) makes her device re-key any file (or a
    whole shared folder: a folder's re-key re-keys everything under it) that she shares with a user and
    with a group, as often as it likes; said nowhere (log.info).  Each re-key seals the
    current contents again as a new version (vault/files/rekeying.py): storage grows per copy too.
    No key is lost (bob's user key is sealed again each time).  Before 67f51c6 the same held for any key;
    the fix claims the sweep counts
    a key only at its group's place.
  Fix (suggested): at a group's place count (stale sweep, unshare, mirror) a record of the current
    version's keys only if it names that group: sign user-share keys with an explicit place (e.g.
    ``"group": null`` in the signed document, or ``"place": "user"``) so a record naming none is a
    pre-version one only; or have ``stale_keys.unreached`` re-key for a key at a group's place only
    when its record names that group (an unbound one of the current epoch is re-signed at unlock
    anyway, or left: said as a planted copy).
  Tests: those two.

Hole (3), low (an alarm the server can silence; a forged document never answered): a key document
  with the held key's epoch and sealed bytes but its signed fields edited (``group_owner`` set to the
  server's own user, or any ``sig``) has the key file's fingerprint (``_fingerprint``: epoch and sealed
  bytes only), so ``_settle_one`` passes it by: not refused, not said, not replaced by the genuine key.
  Attack: the server serves her genuine bound key document for bob with ``group_owner`` edited.
  Seen: ``test_a_forged_document_with_the_held_keys_bytes_is_answered_or_said`` (run, fails: the
    forged body stays current in the store, nothing said; the same document met with no key file here
    is refused and said: ``tests/unit/test_key_group_binding.py``).
  Cause: ``_fingerprint`` covers epoch and key bytes only; ``if _fingerprint(in_doc) ==
    _fingerprint(in_file): pass`` comes before ``not doc_ok``.
  Impact: every device holding the key keeps the forgery in its store and on the server unanswered
    and unsaid; a device that meets the key first (bob's new device) gets none (refused), i.e. a
    withholding the devices holding the genuine key never repair.  The module docstring's "a genuine
    key file replaces a forged document" fails for it.  Pre-existing for an edited ``sig``; 67f51c6
    adds ``group``/``group_owner`` as such fields.
  Fix (suggested): compare documents by their whole record (fingerprint over the signed fields too,
    or check ``doc_ok`` before the equal-fingerprint shortcut).
  The same with the new fields made malformed (``group`` without ``group_owner``): ``_key_of`` logs it,
    ``_settle_one`` returns: ``test_a_malformed_document_over_the_held_key_is_answered_or_said``.
  Tests: those two.

Probed and held (no test kept): the bound record's fields are strict ids (oversize, lists, paths
refused: ``_group_fields``); a bound key at another group's or a user's place is refused by the
mirror and by readers; an old unbound record served again over a bound one of the same epoch is
written (document wins) and puts back only the 44b (1) false alarm (her removal of bob refused and
said until the owner's next unlock signs it again): the note under the bound owner is kept, the
unbound signer's owner has no body at the group's id to note or remove by; ``_migrate`` writes all
its notes and removes both old documents in one transaction (a kill between writes leaves all or
nothing; a second run finds nothing), and reads only dicts (``_body``); the re-sign at unlock
(``_good_key``) writes each unbound key of the epoch once (``group_bound`` is None only for a group
no reach comes from), though the server can make it write again by replaying the unbound record.
"""

from __future__ import annotations

import shutil
import stat
import uuid

import trio
from inprocess.conftest import ALICE_UID, ROOT, shared, template_vault, vault_copy  # noqa: F401 (fixtures)
from inprocess.test_two_users import ALICE, _share, _write

from fusevault.encoding import b64e
from fusevault.store import replica
from fusevault.sync import key_mirror
from fusevault.sync.key_mirror import place
from fusevault.vault.model import groups, sharing
from fusevault.vault.model.grants import record_doc
from fusevault.vault.services import rotation
from unit.test_attack_42a_keys import _next_revision
from unit.test_attack_43b_keys import _gwens_group, _taken_or_said
from unit.test_key_group_binding import _arrives, _bound_key_doc, _forged_said, _impostor
from unit.test_key_mirror import Owner, clock, pair, put, said  # noqa: F401 (fixtures)

# --- (2) a user's share's key copied to a group's place


async def _shared_with_bob_and_her_team(composed):
    """alice's docs/notes.txt shared READ with bob (a user's share) and with her group team (bob not
    in it): (her Volume, the node, bob's id, team's id)."""
    drive = composed.drive
    volume = drive.seat_of(ALICE_UID).ops.session.volume
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, docs.st_ino, b"notes.txt", b"hers", ALICE)
    await _share(composed, "docs", "READ")
    me = volume.store.get(volume.key.user_id)
    team = groups.create_group(volume.store, "team", me, volume.trust.sign)
    volume.sharing.reload(volume.store)
    requests = drive.seat_of(ALICE_UID).ops.session.requests
    answer = await requests.handle({"cmd": "share", "path": "docs", "with": "@team", "perm": "READ"})
    assert "error" not in answer, answer
    node = volume.resolve(b"docs/notes.txt")
    (bob,) = {g.grantee for g in volume.sharing.grants if not g.group}
    return volume, node, bob, team["_id"]


def test_a_users_share_key_copied_to_a_group_place_costs_no_re_key(shared) -> None:  # noqa: F811
    async def body() -> None:
        volume, node, bob, team = await _shared_with_bob_and_her_team(shared)
        users_key = sharing.user_key_path(volume.layout, bob, volume.key.user_id, node.fid)
        planted = sharing.group_key_path(volume.layout, team, node.fid, bob)
        epoch = node.epoch
        await rotation._rekey_unreached(volume)
        assert node.epoch == epoch and users_key.is_file()  # control: nothing stale
        epochs = [epoch]
        for _ in range(3):  # the server copies bob's (new) user key again after each re-key
            planted.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(users_key, planted)
            await rotation._rekey_unreached(volume)
            epochs.append(node.epoch)
            assert users_key.is_file()  # bob's share stands: his key sealed again each time
        # Such a key cannot be told from one sealed before keys named their group for a member removed
        # since (attack round 47b (1)): the first copy costs one re-key, each further one within a day
        # none, and is said.
        assert epochs[1] > epoch and epochs[2:] == [epochs[1]] * 2, f"re-keyed at each copy: epochs {epochs}"
        said = [a for a in volume.trust.alarms.as_list()
                if a["kind"] == "rekey" and "names no group" in a["subject"]]
        assert said, "a further copy not said"

    trio.run(body)


def test_the_mirror_writes_a_users_share_key_served_at_a_groups_place(pair) -> None:  # noqa: F811
    """Control (the server's way to plant it): her signed key of a share with bob as a user, its body
    served at her group's place for bob, is genuine there (it names no group): written."""
    here, _ = pair
    her, fid, bob, team = Owner(), uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    put(here, her.user, her.node(fid, 1))
    user_doc_id = her.key_file(here, fid, bob, 1)
    body = {k: v for k, v in here.store.get(user_doc_id).items() if not k.startswith("_")}
    doc_id = _arrives(here, {**body, "_id": f"vfkey-g-{team}-{fid}-{bob}", "_rev": "1-" + uuid.uuid4().hex})
    assert sharing.read_key(place(here.layout, doc_id)) is not None


# --- (3) a forged document with the held key's bytes


def test_a_forged_document_with_the_held_keys_bytes_is_answered_or_said(pair) -> None:  # noqa: F811
    here, _ = pair
    her, gwen, server = Owner(), Owner(), Owner()
    fid, bob, group = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    put(here, her.user, her.node(fid, 1), gwen.user, server.user)
    genuine = _bound_key_doc(her, group, fid, bob, gwen.id)
    doc_id = _arrives(here, genuine)
    assert sharing.read_key(place(here.layout, doc_id)).group_owner == gwen.id
    forged = {k: v for k, v in genuine.items() if k != "_rev"}
    forged["group_owner"] = server.id  # her signature no longer covers it
    _next_revision(here, doc_id, forged)
    here.keys.caught_up()
    assert sharing.read_key(place(here.layout, doc_id)).group_owner == gwen.id  # the file is kept
    current = here.store.get(doc_id)
    assert current.get("group_owner") == gwen.id or _forged_said(her, doc_id), \
        "the forged document stands in the store (and is pushed on), nothing said"


def test_her_re_signed_key_is_taken_into_the_document(pair) -> None:  # noqa: F811
    """Control: her re-sign at unlock (new sealed bytes, the group and its owner named) over the key
    signed before: the key file's record becomes the document's next revision."""
    here, _ = pair
    her, gwen = Owner(), Owner()
    fid, bob, group = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    put(here, her.user, her.node(fid, 1), gwen.user)
    sealed = b"old sealed"
    sig = her.sign(record_doc(her.id, fid, bob, 1, sealed))["sig"]
    doc_id = _arrives(here, {"_id": f"vfkey-g-{group}-{fid}-{bob}", "_rev": "1-" + uuid.uuid4().hex,
                             "type": sharing.FILE_KEY, "epoch": 1, "key": b64e(sealed), "owner": her.id,
                             "fid": fid, "recipient": bob, "sig": sig})
    resealed = b"new sealed"
    sig = her.sign(record_doc(her.id, fid, bob, 1, resealed, (group, gwen.id)))["sig"]
    sharing.write_key(place(here.layout, doc_id), 1, resealed, signed={
        "owner": her.id, "fid": fid, "recipient": bob, "group": group, "group_owner": gwen.id, "sig": sig})
    here.keys._looked_at = -float("inf")
    here.refresh()
    assert here.store.get(doc_id).get("group_owner") == gwen.id
    assert replica.get_local(here.store, "key-files").get(doc_id) is not None


def test_a_malformed_document_over_the_held_key_is_answered_or_said(pair) -> None:  # noqa: F811
    """The same with the record's new fields made malformed (``group`` alone, or ``group_owner`` a long
    string): ``_key_of`` logs it and ``_settle_one`` returns: the genuine key file never answers it."""
    here, _ = pair
    her, gwen = Owner(), Owner()
    fid, bob, group = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    put(here, her.user, her.node(fid, 1), gwen.user)
    genuine = _bound_key_doc(her, group, fid, bob, gwen.id)
    doc_id = _arrives(here, genuine)
    broken = {k: v for k, v in genuine.items() if k not in ("_rev", "group_owner")}  # group alone
    _next_revision(here, doc_id, broken)
    here.keys.caught_up()
    assert sharing.read_key(place(here.layout, doc_id)).group_owner == gwen.id  # the file is kept
    current = here.store.get(doc_id)
    assert current.get("group_owner") == gwen.id or _forged_said(her, doc_id), \
        "the malformed document stands in the store (and on the server), nothing said"


# --- (1) the group owner's user document replaced


def test_gwens_user_document_replaced_by_the_server_takes_no_key(pair, clock) -> None:  # noqa: F811
    here, _ = pair
    her, gwen, group, doc_id, joined = _gwens_group(here, gwen_first=True, bound="gwen")
    fake = _impostor(gwen)
    _next_revision(here, gwen.id, fake.user)
    _next_revision(here, group, fake.sign({**{k: v for k, v in joined.items() if k != "sig"},
                                           "users": {gwen.id: "READ,WRITE"}, "made_at_us": 2**53 - 1}))
    _next_revision(here, doc_id, None)  # the server's bare deletion
    here.keys.caught_up()
    clock.now += 2 * key_mirror.SAY_REFUSED_AFTER
    here.keys.caught_up()
    assert place(here.layout, doc_id).exists() or said(her, doc_id), \
        "bob's key taken by a body signed under a user document the server made for Gwen, nothing said"


def test_alices_user_document_replaced_takes_no_key(pair, clock) -> None:  # noqa: F811
    """Control: the file owner's document replaced instead, and a later epoch signed under the new key:
    her key is no longer genuine here; the deletion is refused and said."""
    here, _ = pair
    her, gwen, group, doc_id, joined = _gwens_group(here, gwen_first=True, bound="gwen")
    fake = _impostor(her)
    fid = key_mirror.names(doc_id)[0]
    _next_revision(here, her.id, fake.user)
    _next_revision(here, fid, fake.node(fid, 2))
    _next_revision(here, doc_id, None)
    _taken_or_said(here, her, doc_id, clock)
    assert place(here.layout, doc_id).exists()
