"""Attack round 53c, in-process: a WRITE member's node document, other fields than a45c10f's
``check_texts`` bounds (the brief's area (4): "a node text path not checked").

Hole (2), medium (honest data refused: another member's edits refused by the owner's device for as
  long as the poisoned field is carried; and 51a (2)'s stall, through a clear field): the owner's
  wrapping of the file's key (``en_file_dek``, or ``owner_dek``) travels in clear in the node document
  and is carried over as it stands by every member's commit (nodes.py ``key_fields``:
  ``dict(node.wrapped)``; guests.py ``open_guest``: ``node.wrapped`` taken from whatever document
  opened).  No member's device can check it (it is sealed under the owner's master key) and nothing
  bounds it: ``owner_dek_ok`` looks only at ``owner_dek``.
  Attack: bob (WRITE on alice's team/) signs a state of team/plan.txt whose ``en_file_dek`` is not
    hers (here another wrapping of hers, her diary.txt's; any text, any size: 8 MB as in 51a (2); the
    size is not run here, only the carrying).  alice's device refuses it (it no longer opens: "fails
    authentication").  carol's device (WRITE too) takes it, and carries bob's field in her next
    commit of the file, signed by her: alice's device refuses carol's honest chmod in turn (said as a
    forgery of carol's), and so every later edit of carol's, until alice herself commits the file.
  Seen: ``test_a_members_wrapping_is_not_carried_by_another_members_commit`` (run, fails: carol's
    stored state carries bob's ``en_file_dek``);
    ``test_another_members_edit_after_a_bad_wrapping_is_taken_by_the_owner`` (run, fails: alice's
    node keeps mode 0644 after carol's chmod 0600; alice's seat says "forged-write ... signed by
    <carol> ... fails authentication", count 2: bob's and carol's); control
    ``test_another_members_edit_is_taken_by_the_owner_control`` (no bob state: passes).
  Cause: guests.py ``open_guest`` (``node.wrapped`` from any signer's document), nodes.py
    ``key_fields`` (a member carries it unread), authorship.py ``owner_dek_ok`` (nothing about a
    member's ``en_file_dek``).
  Impact: a WRITE member has every other member's later edits of the owner's file refused by the
    owner (forged-write alarms naming the honest member); with 8 MB there, each of their commits of
    the file signs and stores 8 MB on the loop (the stall 51a (2), 52c (4) bounded for sealed texts).
  Fix (suggested): a member's device carries only the owner's own wrapping: ``node.wrapped`` kept from
    a state the owner signed (or the one held), never taken from another member's state; a member's
    state whose ``en_file_dek``/``owner_dek`` differs from the held one refused (said) but a new
    file's ``owner_dek`` (``owner_dek_ok``); both fields bounded in size (a wrapping is ~80 characters).

Held (read; the brief's areas (2) to (4)):
  - the xattr cap (5a40e1a, a45c10f, f84fc28): every path that takes a member's state into her node
    goes through ``may_take`` (arrival; the conflict keeper via ``_adopt``'s ``absorb_node``) or
    ``_xattrs_within_the_cap`` (rule 2's merge beside her re-key); a conflict copy, a restore and an
    import carry no xattrs (``conflict_copy`` makes a new node; nothing in imports/ reads host
    xattrs); a setxattr through the mount is ``_check_room``'s; a shared mount's seats take each
    other's commits ``here`` (made by the mount, checked at the set);
  - ``check_texts``: every node document is opened through ``open_node_attrs`` (the only unseal of
    ``aead.ad("node")``), so no path skips it; ``trashed``'s shape is ``check_numbers``'
    (its length is the open list's); ``placement.shaped`` bounds every field it keeps;
  - the settled walk (0ffc69f, f2e4874): the digest covers every input the walk reads but the
    version's own records (its own, here) and ``others_punched`` (checked outside the note); a failed
    walk is not noted; ``_settled_pruned`` costs a walk at most; gc's ``_named_nodes`` keys copies as
    ``copies`` does, and ``tree.load`` reads every node of a kept version's tree;
  - 0f5efa1: ``insert_arrived`` is reached only through ``store_revisions`` with places, whose two
    callers (replicator, punched asks) call ``note_arrival`` with the files after the commit; a reader
    takes ``arrivals`` before its queries; an evicted file raises the floor (a look too many, never
    one too few).
Not tried: (2) at 8 MB (the carrying is shown, not the stall's seconds); version documents' texts
  (``file_location``/``file_name`` are path-checked, never sealed again by a commit); a real mount.
"""

from __future__ import annotations

import stat
from pathlib import Path

from attack_scenes import bobs_node_doc, planted
from conftest import PASSPHRASE
from mount.test_trust_attack_39a import CAROL_SECRET, _ask, three  # noqa: F401  (fixture)

from fusevault.crypto.signing import sign_doc, signer_of
from fusevault.encoding import b64d
from fusevault.errors import CorruptData
from fusevault.vault.model import alarms
from fusevault.vault.model.nodes import WRAPPING_MAX
from fusevault.vault.services.absorbing import absorb_arrivals
from fusevault.vault.volume import Volume
from inprocess.conftest import ALICE_UID, BOB, BOB_UID, ROOT, Ctx, Fields, _composed
from inprocess.test_attack_51a import _mode
from inprocess.test_two_users import ALICE, _walk, _write

CAROL_UID = 2204
CAROL = Ctx(CAROL_UID, CAROL_UID)
SEATS = {"alice": (PASSPHRASE, ALICE_UID), "bob": (BOB, BOB_UID), "carol": (CAROL_SECRET, CAROL_UID)}


async def _plan_shared(shared):
    """alice's team/plan.txt (and diary.txt), team/ WRITE to bob and carol, each of whom opened the
    file: (its id, carol's attributes of it)."""
    drive = shared.drive
    alice = shared.volumes["alice"]
    team = await drive.mkdir(ROOT, b"team", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, team.st_ino, b"plan.txt", b"alice's plan\n", ALICE)
    await _write(drive, ROOT, b"diary.txt", b"alice's own\n", ALICE)
    for who in ("bob", "carol"):
        assert "error" not in await _ask(shared, "share", "team", who, "WRITE")
    await _walk(drive, b"shared/alice/team/plan.txt", Ctx(BOB_UID, BOB_UID))
    return alice.resolve(b"team/plan.txt").fid, await _walk(drive, b"shared/alice/team/plan.txt", CAROL)


def _bobs_wrapping(shared, fid: str, text: str | None = None, change: dict | None = None,
                   recommits: list | None = None) -> str:
    """bob's signed state of ``fid`` (with ``change``) whose ``en_file_dek`` is ``text``, by default
    another wrapping of alice's (her diary.txt's: any text would do), put as the stored state and
    handed to every seat (``recommits``: what alice's seat asked to commit again over it): the text."""
    alice = shared.volumes["alice"]
    other = text or shared.store.get(alice.resolve(b"diary.txt").fid)["en_file_dek"]
    doc = bobs_node_doc(shared, fid, {"seq": ["bobs-device", 1], **(change or {})})
    body = {k: v for k, v in doc.items() if k != "sig"} | {"en_file_dek": other}
    bob = shared.volumes["bob"]
    doc = sign_doc(bob.key.user_id, bob.key.identity.sign, body)
    if recommits is None:
        planted(shared, doc)
    else:  # planted's, with what alice's seat asks to commit again (fs/arrivals.py ``_recommit``)
        (rev,) = shared.store.put_many([{**doc, "_rev": shared.store.get(fid)["_rev"]}])
        for name, volume in shared.volumes.items():
            out = absorb_arrivals(volume, [{**doc, "_rev": rev}])
            if name == "alice":
                recommits += [(node.fid, at) for node, at in out.recommit]
    assert shared.store.get(fid)["en_file_dek"] == other, "the scene: bob's state is the stored one"
    assert shared.volumes["carol"].find(fid).rev == shared.store.get(fid)["_rev"], "the scene: taken by carol"
    return other


def _said(shared, who: str, fid: str) -> list[dict]:
    return [each for each in alarms.for_user(shared.volumes[who].key.user_id).as_list() if fid in str(each)]


async def _carols_chmod_after(shared, bobs: bool,
                              text: str | None = None) -> tuple[dict, int, list[dict], str]:
    """alice's team/plan.txt, WRITE to bob and carol; bob's signed state of it whose ``en_file_dek`` is
    another wrapping of alice's (or ``text``) when ``bobs``; then carol's chmod 0600 through the mount.
    (The stored state after it, alice's node's mode, what alice's seat said about the file, the
    store's signer.)"""
    drive = shared.drive
    alice = shared.volumes["alice"]
    fid, plan = await _plan_shared(shared)
    if bobs:
        _bobs_wrapping(shared, fid, text)
    await drive.setattr(plan.st_ino, _mode(0o600), Fields(mode=True), None, CAROL)
    stored = shared.store.get(fid)
    said = _said(shared, "alice", fid)
    print("said at alice's seat:", said)
    assert signer_of(stored) == shared.volumes["carol"].key.user_id, "the scene: carol's commit is stored"
    return stored, stat.S_IMODE(alice.find(fid).mode), said, signer_of(stored)


def _scene(three: Path, bobs: bool, text: str | None = None):  # noqa: F811
    import trio

    with _composed(three, SEATS) as shared:
        return trio.run(_carols_chmod_after, shared, bobs, text), shared.store.get(
            shared.volumes["alice"].resolve(b"diary.txt").fid)["en_file_dek"]


def test_a_members_wrapping_is_not_carried_by_another_members_commit(three: Path) -> None:  # noqa: F811
    (stored, _, _, _), others = _scene(three, bobs=True)
    assert stored["en_file_dek"] != others, "carol's commit carries bob's en_file_dek"


def test_another_members_edit_after_a_bad_wrapping_is_taken_by_the_owner(three: Path) -> None:  # noqa: F811
    (_, mode, said, carol), _ = _scene(three, bobs=True)
    assert mode == 0o600, f"alice's node keeps mode {mode:o} after carol's chmod; said: {said}"
    # bob's wrapping said, once, naming him (guests.py ``carried_wrapping``, arrivals.py ``_open_mine``);
    # nothing about carol's honest commit (the alarms count a second one of a kind and file).
    assert [(each["kind"], each["count"]) for each in said] == [("forged-key", 1)], said
    assert carol not in said[0]["text"]


def test_another_members_edit_is_taken_by_the_owner_control(three: Path) -> None:  # noqa: F811
    (_, mode, said, _), _ = _scene(three, bobs=False)
    assert mode == 0o600 and not said


# --- the fix's abuse tests (guests.py ``carried_wrapping``, arrivals.py ``_open_mine``,
# nodes.py ``wrapping_ok``)


def _in_scene(three: Path, scene):  # noqa: F811
    import trio

    with _composed(three, SEATS) as shared:
        return trio.run(scene, shared)


def test_a_members_edit_under_a_wrapping_not_hers_is_taken_and_her_own_kept(three: Path) -> None:  # noqa: F811
    """bob's own state carrying a wrapping not hers, with his chmod: alice's device takes his edit
    under the key it holds (his WRITE makes it his to make), says the wrapping naming him, asks to
    commit her state over his at once, and her next commit carries her own wrapping of the key."""
    async def scene(shared):
        alice = shared.volumes["alice"]
        fid, _ = await _plan_shared(shared)
        mode = stat.S_IMODE(alice.find(fid).mode)
        recommits: list = []
        _bobs_wrapping(shared, fid, change={"mode": stat.S_IFREG | 0o640}, recommits=recommits)
        taken = stat.S_IMODE(alice.find(fid).mode)
        assert recommits == [(fid, shared.store.get(fid)["_rev"])], "her wrapping not put back over his"
        said = _said(shared, "alice", fid)
        plan = await _walk(shared.drive, b"team/plan.txt", ALICE)
        await shared.drive.setattr(plan.st_ino, _mode(0o600), Fields(mode=True), None, ALICE)
        stored = shared.store.get(fid)
        hers = alice.key.unwrap_dek(fid, b64d(stored["en_file_dek"])) == alice.find(fid).dek
        return mode, taken, said, hers
    mode, taken, said, hers = _in_scene(three, scene)
    assert (mode, taken) == (0o644, 0o640), f"bob's chmod not taken by alice's device: {taken:o}; said {said}"
    assert [each["kind"] for each in said] == ["forged-key"] and "not its owner's" in said[0]["text"], said
    assert hers, "alice's next commit carries no wrapping of hers of the file's key"


def test_a_members_unlock_after_a_bad_wrapping_carries_the_owners(three: Path) -> None:  # noqa: F811
    """carol's device unlocked with bob's state the stored one (nothing held yet): the wrapping it
    carries is one alice signed (her version's at that epoch), never bob's."""
    async def scene(shared):
        alice, carol = shared.volumes["alice"], shared.volumes["carol"]
        fid, _ = await _plan_shared(shared)
        others = _bobs_wrapping(shared, fid)
        again = Volume.load(carol.layout, carol.store, carol.key, carol.tree.get(1).fid)  # her unlock
        wrapped = again.find(fid).wrapped
        try:
            hers = alice.key.unwrap_dek(fid, b64d(wrapped["en_file_dek"])) == alice.find(fid).dek
        except CorruptData:
            hers = False
        return wrapped, others, hers
    wrapped, others, hers = _in_scene(three, scene)
    assert wrapped != {"en_file_dek": others}, "carol's unlock carries bob's wrapping"
    assert hers


def test_a_members_oversized_wrapping_is_refused(three: Path) -> None:  # noqa: F811
    """bob's state with a 1 MiB ``en_file_dek`` (8 MB in 51a (2)'s stall): refused as malformed by
    alice's device (said), never carried by carol's commit, whose chmod alice takes."""
    (stored, mode, said, _), _ = _scene(three, bobs=True, text="A" * (1 << 20))
    assert [each["kind"] for each in said] == ["forged-write"], said
    assert "malformed key wrapping" in said[0]["text"], said
    assert len(stored["en_file_dek"]) <= WRAPPING_MAX and mode == 0o600
