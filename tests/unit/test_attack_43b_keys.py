"""Attack round 43b: the key mirror's group-key deletions after 42a (3)-(5) (sync/key_mirror.py).

Run 05:30 UTC, 2026-12-06 (7 xfailed, 4 controls passed); under --runxfail each xfail fails at its
own assertion.  All seven fixed since (docs/SECURITY.md, "Attack round 43"): the marks are gone.

Hole (1), high (a member's key taken, unsaid, by any user or the server): a group body naming
  another owner, signed by that owner, counts as the group's owner's removal of the member.
  Attack: mallory (any user of the vault: a member of the group, or a user document the server made
    itself, self-signed under a key it holds) signs a body at the group's id naming herself its
    ``owner``, without bob, ``made_at_us`` above anything (2**53 - 1); it is served as the group's
    newest revision, beside a bare deletion of bob's group key document.
  Seen: ``test_a_group_body_re_signed_by_another_user_as_owner_never_takes_bobs_key`` (run, fails:
    the key file is removed at the deletion's own batch, and nothing is ever said).
  Cause: ``_signed_group`` checks the body against the owner the body itself names, under that
    user's self-signed user document (no pins in the mirror); nothing ties it to the owner of the
    group's bodies seen with bob in it (``key-group-members`` keeps only a number).  The node branch
    does not fall to the same trick: the held key then stops being genuine (its owner is the node's).
  Impact: bob's key of every file shared with the group removed on each device that meets it; the
    key's deletion is never said (a mount whose user pinned the group says ``group-owner-changed``
    of the body, not that a key went; a device with no unlocked user of the group says nothing).
    A forged body with bob in it and a huge stamp also raises the noted value for good, so her
    genuine removal is never taken by the group branch (only by the re-key's epoch).
  Fix (suggested): keep the owner with the noted stamp (``key-group-members``: owner and made_at_us,
    first owner seen kept) and take a removal only from a body signed by that same owner; a body at
    the group's id naming another owner is neither noted nor a reason (said as forged).
  Tests: that one; the control ``test_her_own_removal_with_the_same_stamp_takes_the_key``.

Hole (2), medium-high (the 42a (4) replay comes back): her body with bob in it served with
  ``made_at_us`` as a float is noted as unstamped, so her older stamped body served again takes the key.
  Attack: the server serves her group body with bob (``made_at_us: 200``) as ``200.0``: the signature
    still verifies (signing.py: whole floats sign as integers), ``freshness.made_at`` reads no stamp,
    ``_note_member`` notes ``UNSTAMPED`` (-1); then her body from before bob joined (stamped 100) as the
    newest revision, and a bare deletion of bob's key.
  Seen: ``test_her_body_with_bob_served_with_a_float_stamp_then_her_older_body_keeps_his_key``
    (run, fails: 100 > -1, the key file removed, nothing said).
  Cause: ``_note_member`` takes a body whose stamp does not read as an int for an unstamped one and
    notes -1, below every stamped body of hers; the float is the same signed body.
  Impact: as 42a (4): bob's group keys taken, unsaid, on every device that first notes him under the
    float form: her device pushes his key documents before the group body, so every device but the one
    that signed notes him only from the body as the server serves it (and any new device of his or hers).
  Fix (suggested): read the stamp as the signature does (a whole float as its integer) in
    ``freshness.made_at`` (or refuse a float), and never let an unstamped note order against a
    stamped body (an unstamped body with him seen: no removal by body, the re-key only).
  Tests: that one.

Hole (3), medium (a key granted after a removal taken by that removal): a key of bob's that arrives
  while the group's current body is her earlier removal of bob (his re-joining body not here yet) is
  removed by a bare deletion.
  Attack: bob was in the group (noted 200), she took him out (300) and put him back (400) and shared a
    new file with the group; her device pushes the key documents before the group body (and the
    server may hold 400 back): here bob's new key arrives while 300 is current, then the server's bare
    deletion of it.
  Seen: ``test_bobs_key_granted_after_his_re_joining_is_not_taken_by_her_earlier_removal`` (run,
    fails: taken at once, unsaid; ``..._with_his_re_joining_here_is_kept`` is the control).
  Cause: ``key-group-members`` is per group and member, not per key, and notes only bodies with him
    in it: a body without him seen while a key of his is held (which proves that body is no longer
    the last word) is never noted, so her older removal still reads as newer than his grant.
  Impact: bob's key of the new file removed on that device, unsaid, until her next unlock seals it
    again (the deletion is on the server: his other devices too).
  Fix (suggested): when a key of his arrives (a new key document, or a new epoch) under a signed body
    without him, note that body's stamp too (the removal must be newer than the body current when
    the key was granted here), or keep the note per key document.
  Tests: those two.

Hole (4), low-medium (quadratic work from hostile input, state never pruned): each new group member
  noted rewrites the whole ``key-group-members`` document.
  Attack: the server makes a user (self-signed), a group of hers with N members, and N key documents
    ``vfkey-g-<group>-<fid>-<member>`` (any bodies, even unsigned: noting comes before the check).
  Seen: ``test_many_members_noted_in_one_batch_do_not_rewrite_the_whole_document_each`` (run, fails:
    N writes of a growing document, about N*N/2 entries written for N noted).
  Cause: ``_note_member`` reads, merges and writes the whole document for each entry raised; the
    entries are never dropped (a group or key gone keeps its entry), and forged key documents note too.
  Impact: a batch of forged key documents costs time quadratic in its size (minutes for 10**4), and
    the document grows for good.
  Fix (suggested): note only for a key that is genuine (after ``_genuine``), gather the notes of a
    ``_settle`` and write the document once; drop entries of a pair whose keys are all gone.
  Tests: that one.

Hole (5), low (a false alarm): a deletion refused and undone within the while keeps its start for good
  (``_refused_since`` is dropped only when the key is gone on both sides).
  Attack/scene: the server deletes bob's key and puts it back 5 s later (never said: nothing lost);
    a day later her move of the file out of the share deletes the key before its re-key.
  Seen: ``test_a_deletion_undone_long_ago_does_not_make_a_later_one_said_at_once`` (run, fails: said at
    the deletion's own batch; control ``test_a_first_deletion_is_not_said_at_its_own_batch``).
  Cause: 42a (3)'s fix keeps the first refused time per key epoch with no end but the key's going.
  Impact: her honest move out raises ``forged-key`` at once, naming a deletion that is hers; the
    server's undone deletion is what is really unsaid.
  Fix (suggested): keep the start only while the deletions repeat (forget it, or say the earlier one,
    once the key stood undeleted for a while, e.g. ``SAY_REFUSED_BEHIND_AFTER``).
  Tests: those two.

Hole (6), low (an alarm silenced; from before 42a): a node at the file's id re-signed by another user as
  its owner makes the mirror drop a bare deletion of bob's key unsaid.
  Attack: the server serves, beside the bare deletion, a node at her file's id naming mallory (its own
    self-signed user, or any user) as owner, signed by her.
  Seen: ``test_a_node_re_signed_by_another_owner_does_not_keep_a_forged_deletion_unsaid`` (run, fails:
    the key is kept but never refused, so never said).
  Cause: ``_settle_one`` judges the held key against the node's current owner: no longer "genuine",
    it goes to ``elif not file_ok`` with no document and returns: neither taken, nor refused.
  Impact: the deletion of bob's key document (his other and new devices get no key) unsaid for as long
    as the forged node stays (the mount may say the node; the mirror says nothing of the key).
  Fix (suggested): a deletion over a key file that was mirrored (in ``base``) is refused
    (``_refusing_removal``) whatever the node says now.
  Tests: that one.

Hole (7), low-medium (a false alarm in honest use, her removal not taken): a group body checked before
  its owner's user document came is cached as unsigned until the group's next revision.
  Scene: a new device (or one catching up) pulls Gwen's group with bob in it and bob's key of her file
    shared with it before Gwen's user document (changed last, so last in the feed); Gwen's user
    document comes; later Gwen takes bob out (``group member remove``: his keys deleted at once, the
    files re-keyed only at their owners' next unlock).
  Seen: ``test_gwens_removal_is_taken_though_her_user_document_came_after_her_group`` (run, fails: said
    as a forged deletion, the key kept; control ``..._with_her_user_document_first`` passes; clearing
    ``_signed_groups`` before the full look makes it pass).
  Cause: ``_signed_group`` caches (revision, False) per group id and checks again only on a new
    revision, not when the owner's user document comes; so ``_note_member`` never notes bob, and
    ``_member_removed`` finds no body with him (granted None): refused.
  Impact: ``forged-key`` said to her and bob for Gwen's honest removal; bob's key stays on that device
    until her next unlock re-keys the file.
  Fix (suggested): never cache a False that came from a missing user document (cache by (revision,
    the owner's user document's revision)), or cache only True.
  Tests: those two; since 44b (1) (a body counts only when its owner is the one the key's signature
    names: the group's owner its file's owner pinned, or for a key signed before that was bound, the
    key's signer) ``test_gwens_removal_of_bob_from_her_group_takes_his_key_signed_naming_her`` (taken,
    unsaid) and ``test_gwens_removal_of_bob_from_an_old_key_waits_for_the_file_owners_re_key`` (a key
    signed before: refused and said; her re-key takes it).
"""

from __future__ import annotations

import uuid

import pytest

from fusevault.encoding import b64e
from fusevault.store import replica
from fusevault.sync import key_mirror
from fusevault.sync.key_mirror import place
from fusevault.vault.model import sharing
from fusevault.vault.model.grants import GroupBinding, bound_fields, record_doc
from fusevault.vault.model.groups import GROUP
from unit.test_attack_42a_keys import _bob_key, _group_key, _next_revision, _serve
from unit.test_key_mirror import Owner, clock, pair, put, said  # noqa: F401 (fixtures)


def _taken_or_said(here, her, doc_id: str, clock) -> None:  # noqa: F811
    """The bare deletion judged now and once the while is over: the key must stay, and be said."""
    here.keys.caught_up()
    clock.now += 2 * key_mirror.SAY_REFUSED_AFTER
    here.keys.caught_up()
    assert place(here.layout, doc_id).exists(), "bob's group key removed, no removal of his owner's"
    assert said(her, doc_id)


# --- (1) a body naming another owner


def test_a_group_body_re_signed_by_another_user_as_owner_never_takes_bobs_key(pair, clock) -> None:  # noqa: F811
    here, _ = pair
    her, group, doc_id, (alone, _) = _group_key(here, stamped=True)
    mallory = Owner()  # a user of the vault, or one the server made (self-signed under its own key)
    put(here, mallory.user)
    forged = mallory.sign({**{k: v for k, v in alone.items() if k != "sig"}, "owner": mallory.id,
                           "users": {mallory.id: "READ,WRITE"}, "made_at_us": 2**53 - 1})
    _next_revision(here, group, forged)
    _next_revision(here, doc_id, None)  # bob's key document deleted, bare
    _taken_or_said(here, her, doc_id, clock)


def test_her_own_removal_with_the_same_stamp_takes_the_key(pair, clock) -> None:  # noqa: F811
    """Control: the same body signed by her (the group's owner) is her removal: taken, unsaid."""
    here, _ = pair
    her, group, doc_id, (alone, _) = _group_key(here, stamped=True)
    _next_revision(here, group, her.sign({**alone, "made_at_us": 2**53 - 1}))
    _next_revision(here, doc_id, None)
    here.keys.caught_up()
    assert not place(here.layout, doc_id).exists() and not said(her, doc_id)


def test_a_forged_body_naming_another_owner_never_raises_bobs_note(pair, clock) -> None:  # noqa: F811
    """Mallory's body at the group's id with bob in it and the highest stamp, met by a mirror started
    again (the owner pinned is kept in the store): neither noted nor a reason, so her later genuine
    removal (stamped 300) still takes bob's key, unsaid."""
    here, _ = pair
    her, group, doc_id, (alone, joined) = _group_key(here, stamped=True)
    here.keys = key_mirror.KeyMirror(here.store, here.layout)  # a restart: what is noted is read again
    mallory = Owner()
    put(here, mallory.user)
    forged = mallory.sign({**{k: v for k, v in joined.items() if k != "sig"}, "owner": mallory.id,
                           "made_at_us": 2**53 - 1})
    _next_revision(here, group, forged)
    here.keys._looked_at = -float("inf")  # the full look: every key settled under the forged body
    here.refresh()
    _next_revision(here, group, her.sign({**alone, "made_at_us": 300}))
    _next_revision(here, doc_id, None)
    here.keys.caught_up()
    assert not place(here.layout, doc_id).exists() and not said(her, doc_id)


# --- (2) a float stamp


def _float_stamped_group(here) -> tuple[Owner, str, str, dict]:
    """As ``_group_key(stamped=True)``, but her body with bob (stamped 200) stored as served with
    ``made_at_us: 200.0`` when bob's key is first mirrored here: (her, group, key doc id, her body alone)."""
    her, fid, bob, group = Owner(), uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    body = {"_id": group, "type": GROUP, "groupname": "team", "owner": her.id, "created_at": 1,
            "users": {her.id: "READ,WRITE"}}
    alone = her.sign({**body, "made_at_us": 100})
    joined = her.sign({**body, "users": {her.id: "READ,WRITE", bob: "READ"}, "made_at_us": 200})
    put(here, her.user, her.node(fid, 1), alone)
    put(here, {**joined, "made_at_us": 200.0})  # the same signed body: whole floats sign as integers
    assert here.store.get(group)["made_at_us"] == 200.0
    assert isinstance(here.store.get(group)["made_at_us"], float)
    sealed = b"sealed for bob"
    sig = her.sign(record_doc(her.id, fid, bob, 1, sealed))["sig"]
    doc_id = f"vfkey-g-{group}-{fid}-{bob}"
    sharing.write_key(place(here.layout, doc_id), 1, sealed,
                      signed={"owner": her.id, "fid": fid, "recipient": bob, "sig": sig})
    here.refresh()
    assert here.store.get(doc_id) is not None
    return her, group, doc_id, alone


def test_her_body_with_bob_served_with_a_float_stamp_then_her_older_body_keeps_his_key(pair, clock) -> None:  # noqa: F811
    here, _ = pair
    her, group, doc_id, alone = _float_stamped_group(here)
    assert key_mirror.notes(here.store)  # bob noted under the float body
    _next_revision(here, group, alone)  # her body from before bob joined, served again
    _next_revision(here, doc_id, None)
    _taken_or_said(here, her, doc_id, clock)


def test_bob_noted_only_under_her_unstamped_body_is_not_taken_by_a_stamped_one(pair, clock) -> None:  # noqa: F811
    """An unstamped body with bob is never ordered against a stamped one (the float form read as
    unstamped was 43b (2)): her stamped body without him does not take his key; refused, and said."""
    here, _ = pair
    her, group, doc_id, (alone, _) = _group_key(here)  # unstamped bodies
    _next_revision(here, group, her.sign({**alone, "made_at_us": 100}))
    _next_revision(here, doc_id, None)
    _taken_or_said(here, her, doc_id, clock)


# --- (3) a key granted after a removal


def _rejoined(here, clock) -> tuple[Owner, str, dict, dict, str]:  # noqa: F811
    """Bob in her group (noted 200 under his key of one file), then out (her body 300 here, current),
    then back (her body 400, signed, not here yet) and her second file shared with the group: his key
    of it mirrored here while 300 is current.  (her, group, body 300, body 400, the new key's doc id)."""
    her, group, first, (alone, joined) = _group_key(here, stamped=True)
    bob = first.rsplit("-", 1)[1]
    removed = her.sign({**alone, "made_at_us": 300})
    back = her.sign({**joined, "made_at_us": 400})
    _next_revision(here, group, removed)  # her genuine removal (his first key's deletion follows: taken)
    _next_revision(here, first, None)
    assert not place(here.layout, first).exists()
    clock.now += 60
    fid = uuid.uuid4().hex
    put(here, her.node(fid, 1))
    sealed = b"sealed for bob, back"
    sig = her.sign(record_doc(her.id, fid, bob, 1, sealed))["sig"]
    doc_id = f"vfkey-g-{group}-{fid}-{bob}"
    new = {"_id": doc_id, "_rev": "1-" + uuid.uuid4().hex, "type": sharing.FILE_KEY, "epoch": 1,
           "key": b64e(sealed),
           "owner": her.id, "fid": fid, "recipient": bob, "sig": sig}
    arrival = replica.store_revisions(here.store, [new])
    here.keys.arrived(d["_id"] for d in arrival.current)  # pushed before her group body 400
    assert place(here.layout, doc_id).exists()
    return her, group, removed, back, doc_id


def test_bobs_key_granted_after_his_re_joining_is_not_taken_by_her_earlier_removal(pair, clock) -> None:  # noqa: F811
    here, _ = pair
    her, group, _, back, doc_id = _rejoined(here, clock)
    _next_revision(here, doc_id, None)  # the server's bare deletion, before body 400 comes
    here.keys.caught_up()
    _next_revision(here, group, back)  # her body with him back comes after all
    assert place(here.layout, doc_id).exists(), "bob's new key removed by her removal from before it"
    _taken_or_said(here, her, doc_id, clock)


def test_bobs_key_granted_after_his_re_joining_with_his_re_joining_here_is_kept(pair, clock) -> None:  # noqa: F811
    """Control: the same with her body 400 here before the deletion: refused, and said."""
    here, _ = pair
    her, group, _, back, doc_id = _rejoined(here, clock)
    _next_revision(here, group, back)
    here.refresh()
    _next_revision(here, doc_id, None)
    _taken_or_said(here, her, doc_id, clock)


def _flood(pair, monkeypatch, n: int = 400):  # noqa: F811 (the fixture's value, passed on)
    """A group of ``n`` members the server made (its own self-signed user: genuine to the mirror, which
    pins none), its node and body put here; every write of the notes document counted (its length)."""
    here, _ = pair
    server = Owner()  # a user the server made: self-signed under its own key
    fid, group = uuid.uuid4().hex, uuid.uuid4().hex
    members = [uuid.uuid4().hex for _ in range(n)]
    put(here, server.user, server.node(fid, 1),
        server.sign({"_id": group, "type": GROUP, "groupname": "flood", "owner": server.id, "created_at": 1,
                     "users": dict.fromkeys(members, "READ"), "made_at_us": 1}))
    written: list[int] = []
    put_local, put_locals = replica.put_local, replica.put_locals

    def counting(store, doc_id, body):
        if doc_id == key_mirror._MEMBERS:
            written.append(len(body))
        put_local(store, doc_id, body)

    def counting_each(store, bodies):  # one local document per key since 44b (3): each one entry
        written.append(sum(1 for doc_id in bodies if doc_id.startswith(key_mirror._MEMBERS)))
        put_locals(store, bodies)

    monkeypatch.setattr(replica, "put_local", counting)
    monkeypatch.setattr(replica, "put_locals", counting_each)
    return here, server, fid, group, members, written


# --- (4) the local document rewritten whole for each member noted


def test_many_members_noted_in_one_batch_do_not_rewrite_the_whole_document_each(pair, monkeypatch) -> None:  # noqa: F811
    here, server, fid, group, members, written = _flood(pair, monkeypatch)
    n = len(members)
    # Signed by the server's own user, the node's owner (genuine to the mirror: 44b (3) notes only
    # genuine signed keys, so unsigned ones would be noted not at all).
    docs = [{"_id": f"vfkey-g-{group}-{fid}-{m}", "_rev": "1-" + uuid.uuid4().hex, "type": sharing.FILE_KEY,
             "epoch": 1, "key": b64e(b"sealed"), "owner": server.id, "fid": fid, "recipient": m,
             "sig": server.sign(record_doc(server.id, fid, m, 1, b"sealed"))["sig"]} for m in members]
    arrival = replica.store_revisions(here.store, docs)
    here.keys.arrived(d["_id"] for d in arrival.current)  # one batch
    assert len(key_mirror.notes(here.store)) == n
    assert sum(written) <= 4 * n, f"{len(written)} writes, {sum(written)} entries written for {n} noted"


def test_a_group_keys_note_goes_with_the_key(pair, clock) -> None:  # noqa: F811
    """What is noted of a key is dropped once the key is gone on both sides (her genuine removal)."""
    here, _ = pair
    her, group, doc_id, (alone, _) = _group_key(here, stamped=True)
    assert doc_id in key_mirror.notes(here.store)
    _next_revision(here, group, her.sign({**alone, "made_at_us": 300}))
    _next_revision(here, doc_id, None)
    assert not place(here.layout, doc_id).exists()
    assert doc_id not in key_mirror.notes(here.store)


# --- (5) a refused deletion's while kept after the deletion is undone, for good


def test_a_deletion_undone_long_ago_does_not_make_a_later_one_said_at_once(pair, clock) -> None:  # noqa: F811
    here, _ = pair
    her, doc_id, revs, body = _bob_key(here)
    _serve(here, doc_id, revs, None)  # refused; undone 5 s later (nothing lost, nothing said)
    clock.now += 5
    _serve(here, doc_id, revs, body)
    assert not said(her, doc_id)
    clock.now += 86400  # a day later: her move out of the share, the key's deletion before its re-key
    _serve(here, doc_id, revs, None)
    assert place(here.layout, doc_id).exists()
    assert not said(her, doc_id), "said at the deletion's own batch: her re-key had no while to come"


def test_a_first_deletion_is_not_said_at_its_own_batch(pair, clock) -> None:  # noqa: F811
    """Control: the same day-later deletion with no earlier one is not said at once."""
    here, _ = pair
    her, doc_id, revs, _ = _bob_key(here)
    clock.now += 86400
    _serve(here, doc_id, revs, None)
    assert place(here.layout, doc_id).exists() and not said(her, doc_id)


# --- (6) a node naming another owner silences the refused deletion


def test_a_node_re_signed_by_another_owner_does_not_keep_a_forged_deletion_unsaid(pair, clock) -> None:  # noqa: F811
    here, _ = pair
    her, doc_id, revs, _ = _bob_key(here)
    mallory = Owner()
    put(here, mallory.user, mallory.node(key_mirror.names(doc_id)[0], 2))  # her file's id, mallory's node
    _serve(here, doc_id, revs, None)
    clock.now += 2 * key_mirror.SAY_REFUSED_AFTER
    here.keys.caught_up()
    assert place(here.layout, doc_id).exists()  # kept (her key is no longer "genuine": nothing done)
    assert said(her, doc_id), "the server's deletion of bob's key never said"


# --- (7) a group body checked before its owner's user document came: never noted


# When her record of ``_gwens_group`` (bound to Gwen and her key) was signed (50c (1)).
SIGNED_AT_US = 1_765_000_000_000_000


def _gwens_group(here, gwen_first: bool, bound: str | None = None) -> tuple[Owner, Owner, str, str, dict]:
    """Gwen's group with bob in it (stamped 200), her file shared with it, bob's key mirrored here;
    Gwen's user document here before (``gwen_first``) or only after the key and the group (a new
    device's pull: Gwen's user document changed last, so it comes last).  A refresh later (the full
    look, every ``RESCAN_EVERY``).  ``bound``: the group owner her key's signature names (``"gwen"``:
    Gwen and her key, as her pins admitted the group; ``"gwen-unkeyed"``: Gwen's id only, a record of
    67f51c6; another id: that one), or None: a key signed before the group and its owner were bound.
    (her, gwen, group, the key doc id, gwen's body with bob)."""
    her, gwen = Owner(), Owner()
    fid, bob, group = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    joined = gwen.sign({"_id": group, "type": GROUP, "groupname": "team", "owner": gwen.id, "created_at": 1,
                        "users": {gwen.id: "READ,WRITE", bob: "READ"}, "made_at_us": 200})
    put(here, her.user, her.node(fid, 1), *([gwen.user] if gwen_first else []), joined)
    sealed = b"sealed for bob"
    named: GroupBinding | None = None
    stamp = None
    if bound == "gwen":  # her key as her pins have it (46c (1)), signed as this version signs (50c (1))
        named, stamp = (group, gwen.id, gwen.user["public_sign"]), SIGNED_AT_US
    elif bound == "gwen-unkeyed":  # a record of 67f51c6: the two ids only
        named = (group, gwen.id)
    elif bound is not None:
        named = (group, bound)
    sig = her.sign(record_doc(her.id, fid, bob, 1, sealed, named, stamp))["sig"]
    doc_id = f"vfkey-g-{group}-{fid}-{bob}"
    key = {"_id": doc_id, "_rev": "1-" + uuid.uuid4().hex, "type": sharing.FILE_KEY, "epoch": 1,
           "key": b64e(sealed), "owner": her.id, "fid": fid, "recipient": bob, "sig": sig,
           **bound_fields(named), **({"signed_at_us": stamp} if stamp is not None else {})}
    arrival = replica.store_revisions(here.store, [key])
    here.keys.arrived(d["_id"] for d in arrival.current)
    assert place(here.layout, doc_id).exists()
    put(here, gwen.user)
    here.keys._looked_at = -float("inf")  # the full look of ``RESCAN_EVERY`` later
    here.refresh()
    return her, gwen, group, doc_id, joined


def _gwen_removes_bob(here, gwen: Owner, group: str, doc_id: str, joined: dict) -> None:
    _next_revision(here, group, gwen.sign({**joined, "users": {gwen.id: "READ,WRITE"}, "made_at_us": 300}))
    _next_revision(here, doc_id, None)  # Gwen's `group member remove`: bob's keys' deletions


@pytest.mark.parametrize("gwen_first", [False, True], ids=["gwen-last", "gwen-first"])
def test_gwens_removal_of_bob_from_her_group_takes_his_key_signed_naming_her(pair, clock, gwen_first) -> None:  # noqa: E501,F811
    """A key signed (since 44b (1)'s second fix) naming the group and its owner as the file's owner pinned
    them: Gwen's removal of bob from her group takes bob's key here at once, without the file owner's
    re-key and without an alarm.  43b (7)'s scene: Gwen's user document after her group, or before."""
    here, _ = pair
    her, gwen, group, doc_id, joined = _gwens_group(here, gwen_first=gwen_first, bound="gwen")
    assert sharing.read_key(place(here.layout, doc_id)).group_owner == gwen.id
    _gwen_removes_bob(here, gwen, group, doc_id, joined)
    here.keys.caught_up()
    assert not place(here.layout, doc_id).exists()
    clock.now += 2 * key_mirror.SAY_REFUSED_AFTER
    here.keys.caught_up()
    assert not said(her, doc_id) and not said(gwen, doc_id)


def test_a_servers_own_users_body_at_gwens_group_takes_nothing_from_a_key_naming_her(pair, clock) -> None:  # noqa: F811
    """44b (1) with the key naming Gwen: the server's own user's body at her group's id, naming itself
    owner, without bob and the highest stamp, and a bare deletion: the key stays, said."""
    here, _ = pair
    her, gwen, group, doc_id, joined = _gwens_group(here, gwen_first=True, bound="gwen")
    mallory = Owner()  # self-signed under the server's own key
    put(here, mallory.user)
    _next_revision(here, group, mallory.sign({**{k: v for k, v in joined.items() if k != "sig"},
                                              "owner": mallory.id, "users": {mallory.id: "READ,WRITE"},
                                              "made_at_us": 2**53 - 1}))
    _next_revision(here, doc_id, None)
    _taken_or_said(here, her, doc_id, clock)


def test_a_key_naming_another_group_owner_than_the_bodys_takes_nothing(pair, clock) -> None:  # noqa: F811
    """Her key names another user as the group's owner (her pins had another owner for the group than
    the one whose bodies are served here): Gwen's removal is no reason for it; kept and said."""
    here, _ = pair
    her, gwen, group, doc_id, joined = _gwens_group(here, gwen_first=True, bound=uuid.uuid4().hex)
    _gwen_removes_bob(here, gwen, group, doc_id, joined)
    _taken_or_said(here, her, doc_id, clock)


@pytest.mark.parametrize("gwen_first", [False, True], ids=["gwen-last", "gwen-first"])
def test_gwens_removal_of_bob_from_an_old_key_waits_for_the_file_owners_re_key(pair, clock, gwen_first) -> None:  # noqa: E501,F811
    """A key signed before the group and its owner were bound (no ``group`` field): as 44b (1)'s first
    fix, a body counts only when its owner is the key's signer (a body's owner is the server's to
    choose; the key's signature is not): Gwen's removal of bob from her group does not take it; kept
    and said (the limit, until her next unlock signs the key again naming Gwen), and her re-key (a
    later epoch she signed) takes it.  43b (7)'s scene: Gwen's user document after her group, or before."""
    here, _ = pair
    her, gwen, group, doc_id, joined = _gwens_group(here, gwen_first=gwen_first)
    _gwen_removes_bob(here, gwen, group, doc_id, joined)
    _taken_or_said(here, her, doc_id, clock)
    put(here, her.node(key_mirror.names(doc_id)[0], 2))  # her re-key
    here.keys.caught_up()
    assert not place(here.layout, doc_id).exists()
