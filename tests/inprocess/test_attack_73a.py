"""Attack round 73a, in-process: round 71d (1)'s and 72c (1)'s fixes (her re-key's record of whom it made a
file's key for, ``sealed_for``: vault/model/sealed_for.py; ``Guests._left_out``, ``Guests.left``,
``fill_missing`` reading every record first, ``seal_keys(chosen=)``, alarm ``replayed-grant``).  Seats of
one shared mount (tests/inprocess/test_attack_53c.py ``_in_scene`` over the ``three`` vault: alice, bob,
carol; or the ``shared`` fixture); her seat runs what a group change or an unlock runs
(``rotation.resume`` -> ``fill_missing``) by hand.

(1) medium (a member she adds is given no key of the share, for good; a false ``replayed-grant``).
    Attacker: bob, a WRITE member of her group team (read, not run: any writer of one file under the
    shared folder, a WRITE grantee of a subfolder too, whose record then shuts a member out of it all).
    Steps: alice's docs/plan.txt, docs shared WRITE with @team (bob in it).  bob signs a genuine state of
    plan.txt (a chmod) whose sealed attributes carry a ``sealed_for`` of his own making at the file's
    epoch (here epoch 0: a first key her device never recorded), naming nobody and team's vector with
    every count at 2**52.  Her seat takes his state (his WRITE).  She adds carol to team
    (``group_base`` + ``set_member``); her seat runs ``rotation.resume``; then she makes docs/new.txt.
    Seen: carol is sealed neither plan.txt's key nor new.txt's (made after she joined); her seat says
    ``replayed-grant`` and puts (team's Share, carol) in ``Guests.left`` ("taken back on another
    device").  Control (his chmod without the field): both sealed, nothing said.
    Expected: a record counts only if her re-key made it; a member's state cannot say whom her key was
    made for.
    Cause: vault/tree/arrivals.py:48-49 (``CONTENTS`` takes ``sealed_for`` from any writer's state, as
    ``nodes.apply_attrs`` does, nodes.py:557: "anyone's input" like ``key_proof``, but unlike the proof
    nothing checks it); vault/tree/guests.py:326-341 trusts ``node.sealed_for`` for the epoch;
    sealed_for.py ``group_newer`` compares against the vector he wrote.  Every commit of hers carries it
    over (nodes.py: "carried over unchanged by every commit"), so it lasts until her next re-key of the
    file; ``left`` then shuts carol out of every file of the share on that device (new ones too).
    Impact: a writer of one file denies a member she adds (or any recipient whose key went missing) every
    key of the share, on all her devices, with an alarm blaming a replay; her way out (sharing again)
    is not what the alarm leads her to for a group add.
    Suggested fix: bind the record to her master key: her ``key_proof`` (vault/model/her_keys.py) made
    over the epoch, the key and a digest of the record (or a MAC of the record with a key derived from
    hers), and count a record only where that checks (else as a node with no record); a member's
    state keeps carrying hers byte for byte.
(2) medium (honest use or a withholding server: a member never given the new key; a false
    ``replayed-grant``).  Attacker: the server keeping carol's user document from her device while she
    re-keys (or no one: CouchDB replication brings a Group body before the user document of a member
    it adds).  Steps: team (bob, carol) holds docs/ READ; alice removes bob from team and her seat
    re-keys plan.txt while carol's user document is not there (``Guests.members`` leaves out a member
    without one, so ``her_keys.recipients`` and the record do too); carol's document comes; her seat
    reloads and runs ``rotation.resume``.  Seen: carol keeps epoch 0's key only; plan.txt's new key
    (epoch 1) is never sealed to her; ``replayed-grant`` said, (team's Share, carol) in ``left``.
    Control: the same removal with her document there: she is sealed epoch 1.
    Expected: a member the Group body the re-key saw names is no grant her re-key left out (before
    71d (1) the next unlock sealed it).  Cause: rekeying.py ``rekey`` records ``recipients`` (members
    with a user document here) but ``_groups_seen`` records the Group body's vector, and
    guests.py ``_left_out`` then finds carol in that same body and not in ``to``.  Suggested fix:
    record, per group, the members the body named (or the body's members less those with no user
    document, listed), and treat a member the seen body named as covered.
(3) low-medium (a cost a member sizes: the loop stalled and 40 MB written at each of her commits).
    Attacker: bob, WRITE on team/.  Steps: bob's state of plan.txt carrying a ``sealed_for`` at every
    bound ``sealed_for.shaped`` allows (4,096 entries of 1,024 characters in ``to`` and ``above``, 256
    groups with 1,024-device vectors: ~30 MB of JSON); alice's seat takes it; she chmods the file.
    Seen (scratch run, 2 shared cores): her stored state is 40,921,728 bytes of ``enc`` (was
    ~800 KB for the largest record a re-key writes: 4,096 recipients of real ids, 64 folders, 16
    groups); her chmod took 5.2 s, all of it a stall of the trio loop every seat waits on (longest gap
    5.24 s vs 0.05 s), 156 MiB peak; taking his state in cost 2.7 s per seat.  Every later commit of
    hers (and every member's) re-seals, signs and stores it again; each node holds its copy in memory.
    Expected: a record no larger than a re-key writes (round 52c (4)'s rule for ``target``).  Cause:
    sealed_for.py ``MAX_ENTRY`` (1,024 for an entry of four 32-digit ids), ``above`` entries not held to
    an id's shape, ``MAX_GROUPS`` x ``lineage.MAX_ENTRIES`` vectors.  Suggested fix: an entry of ``to``
    the shape ``entry`` + a permission, ``above`` and group ids ``is_id``, vectors of at most a few
    devices (or the record's JSON capped, e.g. 1 MiB), and (1)'s fix makes a member's record count
    for nothing anyway.
(4) medium (honest use: a user she shares with is refused the file's key, and every new file of the
    share on her devices, for good; a false ``replayed-grant``).  Attacker: none (or a server delaying
    her laptop's documents to her desktop).  Steps: docs/ (plan.txt) shared READ with bob.  On her
    laptop she unshares bob: plan.txt re-keyed (epoch 1), record naming nobody.  Before that reaches
    her desktop she shares docs with carol there (the command seals carol the key it holds, epoch 0:
    ``chosen``).  The laptop's documents arrive; the desktop runs ``rotation.resume`` (an unlock, a
    group change), then makes docs/new.txt.  Seen: carol's key of plan.txt stays at epoch 0 (the
    file is at 1); new.txt is not sealed to her either; ``replayed-grant`` said, (her Share, carol) in
    ``left``.  Her laptop, given carol's Share, finds the same record (read, not run).  Control (no
    re-key on the laptop): carol sealed both.  Expected: a Share she signed after the re-key (here
    on another device) is hers since, not one the re-key left out.  Cause: sealed_for.py ``covers``
    knows only the grants of the re-key's device at its time; guests.py ``_left_out`` takes any other
    for a replay; the share command's ``chosen`` seal reaches only the key epoch its device holds.  The
    same root as 72c (2) (a group shared after the re-key), here for a user's share and across two
    devices of hers.  Suggested fix: a stamp in the record (her signing time, or her devices' vector of
    sharing changes) and one in each Share she signs (not carried from the old body as ``created_at``
    is): a Share signed after the record counts as hers since; a replayed old body stays older.

Fixed (docs/SECURITY.md "Round 73a (1)-(4)"): a record counts only with her proof and her commits carry
no other (1); entries of ids, 1 MiB at most (3); a grant outside the record is taken back only if her
re-keys took it (the record's ``taken``) or its Group body is older than the one seen (2), (4).  The four
tests above are plain tests now (the scene of (1) checks his record is not taken; (3)'s control carries her
proven record); ``test_73a_4_a_share_her_rekeys_took_back_stays_taken_back_on_her_other_device`` keeps
71d (1) under the new rule.

Held (controls kept): ``test_73a_control_a_member_added_after_a_writers_edit_is_given_the_keys``,
``test_73a_control_a_member_seen_at_the_rekey_keeps_the_key``,
``test_73a_control_a_record_as_large_as_a_rekey_writes_is_carried`` (fails if the bounds refuse what
a re-key writes), ``test_73a_control_her_share_on_one_device_reaches_the_key_it_holds``.
Read, held: a file moved into a folder she unshared (``above`` lacks it) is still protected when the
folder itself was re-keyed by that unshare (its own record shows the grant left out,
72c (1)'s ``left``); a record of another epoch counts for nothing (``in_force``); the server cannot
forge or move a record (sealed under the key, in a signed state); a sealed epoch past 2**53 is refused
at the node (27a).  A WRITE member writing a record that *adds* a removed member is no more than his
leaking the key (72c's note).  Not tried (time): real mounts; 71c's ``knows`` gate and
``SharesChecked`` beyond reading; concurrent Group bodies (``group_newer`` CONCURRENT is "not newer": a
member added on one of two devices signing apart); the alarm count of (1) with many files x members.
"""

from __future__ import annotations

import stat
import uuid
from pathlib import Path

import pytest
from attack_scenes import bobs_node_doc, planted, team_with_plan
from mount.test_trust_attack_39a import _ask, three  # noqa: F401  (fixture)

from fusevault.crypto.signing import signer_of
from fusevault.vault.model import alarms, groups, lineage, sealed_for, sharing
from fusevault.vault.services import accounts, rotation
from inprocess.conftest import BOB_UID, ROOT, Ctx, Fields
from inprocess.test_attack_51a import _mode
from inprocess.test_attack_53c import _in_scene
from inprocess.test_two_users import ALICE, _walk, _write

BOB = Ctx(BOB_UID, BOB_UID)


async def _carol_added(shared, forged: bool) -> tuple[bool, bool, list[str]]:
    """alice's docs/plan.txt, docs shared WRITE with her group team (bob in it); bob signs his state of
    plan.txt (a chmod), carrying (``forged``) a ``sealed_for`` of his own making; alice adds carol to team
    and her seat runs what a group change starts (``rotation.resume``), then makes docs/new.txt.
    (carol sealed plan.txt's key, carol sealed new.txt's key, alice's alarm kinds)."""
    drive = shared.drive
    alice, bob, carol = (shared.volumes[n] for n in ("alice", "bob", "carol"))
    me = alice.store.get(alice.key.user_id)
    team = groups.create_group(alice.store, "team", me, alice.trust.sign)
    team = groups.set_member(alice.store, alice.store.get(team["_id"]), alice.store.get(bob.key.user_id),
                             "READ,WRITE", sign=alice.trust.sign)
    gid = team["_id"]
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, docs.st_ino, b"plan.txt", b"alice's plan\n", ALICE)
    answer = await _ask(shared, "share", "docs", "@team", "WRITE")
    assert "error" not in answer, answer
    await _walk(drive, b"groups/team/docs/plan.txt", BOB)
    plan = alice.resolve(b"docs/plan.txt")
    fid = plan.fid
    assert bob.find(fid) is not None and bob.find(fid).dek == plan.dek, "the scene: bob holds the key"
    change: dict = {"seq": ["bobs-device", 1], "mode": stat.S_IFREG | 0o640}
    if forged:
        vector = lineage.of(alice.store.get(gid))
        change["sealed_for"] = {"epoch": plan.epoch, "to": [], "above": [fid, alice.resolve(b"docs").fid],
                                "groups": {gid: {d: 2**52 for d in vector}}}
    planted(shared, bobs_node_doc(shared, fid, change))
    assert stat.S_IMODE(alice.find(fid).mode) == 0o640, "the scene: bob's state taken by alice's seat"
    # Fixed: her seat keeps no record of his making (her first key had none: ``sealed_for.taken``).
    assert alice.find(fid).sealed_for is None, "his record taken in by her seat"
    team = accounts.group_base(alice.store.get(gid), alice.trust)
    groups.set_member(alice.store, team, alice.store.get(carol.key.user_id), "READ", sign=alice.trust.sign)
    assert carol.key.user_id in alice.sharing.groups[gid]["users"], "the scene: carol in team on alice's seat"
    await rotation.resume(alice)
    plan_sealed = sharing.group_key_path(alice.layout, gid, fid, carol.key.user_id).exists()
    await _write(drive, docs.st_ino, b"new.txt", b"after carol joined", ALICE)
    new = alice.resolve(b"docs/new.txt")
    new_sealed = sharing.group_key_path(alice.layout, gid, new.fid, carol.key.user_id).exists()
    said = [each["kind"] for each in alarms.for_user(alice.key.user_id).as_list()]
    return plan_sealed, new_sealed, said


def test_73a_control_a_member_added_after_a_writers_edit_is_given_the_keys(three: Path) -> None:  # noqa: F811
    plan, new, said = _in_scene(three, lambda shared: _carol_added(shared, forged=False))
    assert plan and new and "replayed-grant" not in said


def test_73a_1_a_writers_forged_record_keeps_a_member_she_adds_out(three: Path) -> None:  # noqa: F811
    plan, new, said = _in_scene(three, lambda shared: _carol_added(shared, forged=True))
    assert "replayed-grant" not in said, said
    assert plan, "carol, added to team, is sealed no key of docs/plan.txt"
    assert new, "carol is sealed no key of docs/new.txt, made after she joined"


async def _carol_withheld_at_the_rekey(shared, withheld: bool, monkeypatch) -> tuple[int, int, list[str]]:
    """team (bob, carol) holds docs/ READ; alice removes bob from team and her seat re-keys plan.txt
    (``rotation.resume``) while the store keeps carol's user document from her device (``withheld``: her
    seat's user documents read without it); then it is served again and the seat runs what an arrival
    or an unlock runs (``reload``, ``rotation.resume``).  (plan.txt's epoch, the epoch of carol's key of
    it, alice's alarm kinds)."""
    from fusevault.vault.tree import guests as guests_module
    drive = shared.drive
    alice, bob, carol = (shared.volumes[n] for n in ("alice", "bob", "carol"))
    me = alice.store.get(alice.key.user_id)
    team = groups.create_group(alice.store, "team", me, alice.trust.sign)
    for who in (bob, carol):
        team = groups.set_member(alice.store, alice.store.get(team["_id"]), alice.store.get(who.key.user_id),
                                 "READ", sign=alice.trust.sign)
    gid = team["_id"]
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, docs.st_ino, b"plan.txt", b"alice's plan\n", ALICE)
    answer = await _ask(shared, "share", "docs", "@team", "READ")
    assert "error" not in answer, answer
    fid = alice.resolve(b"docs/plan.txt").fid
    path = sharing.group_key_path(alice.layout, gid, fid, carol.key.user_id)
    assert sharing.read_key(path) is not None, "the scene: carol sealed plan.txt's key"
    real = guests_module._users
    if withheld:
        monkeypatch.setattr(guests_module, "_users", lambda store, trust: {
            k: v for k, v in real(store, trust).items() if k != carol.key.user_id})
        alice.sharing.reload(alice.store)
        assert carol.key.user_id not in alice.sharing.users
    accounts.remove_member(alice.layout, alice.store, alice.store.get(gid), alice.store.get(bob.key.user_id),
                           alice.trust)
    await rotation.resume(alice)
    epoch = alice.find(fid).epoch
    assert epoch > 0, "the scene: plan.txt re-keyed at bob's removal"
    monkeypatch.setattr(guests_module, "_users", real)
    alice.sharing.reload(alice.store)  # carol's document served again
    assert carol.key.user_id in alice.sharing.users
    await rotation.resume(alice)
    found = sharing.read_key(path)
    said = [each["kind"] for each in alarms.for_user(alice.key.user_id).as_list()]
    return epoch, found[0] if found is not None else -1, said


def test_73a_control_a_member_seen_at_the_rekey_keeps_the_key(three: Path, monkeypatch) -> None:  # noqa: F811
    epoch, hers, said = _in_scene(three, lambda shared: _carol_withheld_at_the_rekey(shared, False,
                                                                                     monkeypatch))
    assert hers == epoch and "replayed-grant" not in said, (epoch, hers, said)


def test_73a_2_a_member_whose_document_was_withheld_at_the_rekey_gets_the_key_later(
        three: Path, monkeypatch) -> None:  # noqa: F811
    epoch, hers, said = _in_scene(three, lambda shared: _carol_withheld_at_the_rekey(shared, True,
                                                                                     monkeypatch))
    assert hers == epoch and "replayed-grant" not in said, (epoch, hers, said)


# --- (3) a record as large as ``sealed_for.shaped`` lets a member make it


def _largest(alice, node) -> dict:
    """A record at every bound round 71d's ``sealed_for.shaped`` took: 4,096 entries of 1,024 characters in
    ``to`` and ``above``, 256 groups each with a vector of 1,024 devices of 64 characters (~30 MB of JSON)."""
    fid, epoch = node.fid, node.epoch
    to = [f"e{i:04d}" + "x" * 1018 + ":" for i in range(sealed_for.MAX_TO)]
    above = [fid] + [f"a{i:04d}" + "y" * 1019 for i in range(sealed_for.MAX_TO - 1)]
    vector = {f"d{i:04d}" + "q" * 59: 2**52 for i in range(lineage.MAX_ENTRIES)}
    found = {"epoch": epoch, "to": to, "above": above,
             "groups": {f"g{g:03d}" + "z" * 1000: vector for g in range(sealed_for.MAX_GROUPS)}}
    assert not sealed_for.shaped(found), "fixed: refused (entries not of ids, past MAX_BYTES)"
    return found


def _most_a_rekey_writes(alice, node) -> dict:
    """A re-key's record at ``MAX_TO`` recipients (ids of 32 digits), 64 folders over the file, 16 groups,
    a Share taken back on each folder, with her proof (as her re-key writes it: a member carries it byte for
    byte)."""
    fid, epoch = node.fid, node.epoch
    ids = [uuid.uuid4().hex for _ in range(4 * sealed_for.MAX_TO + 64 + 80)]
    to = [sealed_for.entry(*ids[4 * i:4 * i + 4]) + "READ,WRITE" for i in range(sealed_for.MAX_TO)]
    rest = ids[4 * sealed_for.MAX_TO:]
    found = sealed_for.record(epoch, to, {rest[64 + g]: {rest[80 - 1 - g][:16]: 40} for g in range(16)},
                              [fid, *rest[:64]], [sharing.doc_id(rest[g], ids[g]) for g in range(64)])
    assert found is not None
    return sealed_for.proved(alice.key, fid, node.dek, found)


async def _her_chmod_after(shared, make) -> tuple[int, bool]:
    """bob (WRITE on team/) signs his state of plan.txt carrying the record ``make`` gives; alice's seat
    takes it, then she changes the file's mode: (the bytes of her stored state, whether her seat holds
    the record)."""
    await team_with_plan(shared)
    alice = shared.volumes["alice"]
    node = alice.resolve(b"team/plan.txt")
    record = make(alice, node)
    planted(shared, bobs_node_doc(shared, node.fid, {"seq": ["bobs-device", 1], "sealed_for": record}))
    plan = await _walk(shared.drive, b"team/plan.txt", ALICE)
    await shared.drive.setattr(plan.st_ino, _mode(0o600), Fields(mode=True), None, ALICE)
    stored = shared.store.get(node.fid)
    assert signer_of(stored) == alice.key.user_id, "the scene: her commit is the stored state"
    return len(stored["enc"]), alice.find(node.fid).sealed_for == record


async def test_73a_control_a_record_as_large_as_a_rekey_writes_is_carried(shared) -> None:
    size, held = await _her_chmod_after(shared, _most_a_rekey_writes)
    assert held and size < 1 << 20


async def test_73a_3_a_members_record_past_any_rekeys_is_not_carried_by_her_commits(shared) -> None:
    size, held = await _her_chmod_after(shared, _largest)
    assert size < 1 << 20, f"{size} bytes of her state"
    assert not held, "his record held by her seat"


# --- (4) her share made on one device before her other device's re-key reaches it


async def _shared_before_the_rekey_arrived(shared, rekeyed: bool) -> tuple[int, int, bool, list[str]]:
    """alice's docs/plan.txt shared READ with bob on her seat (the desktop).  Her laptop (a Volume of her
    own over the same store, whose writes reach the desktop only when handed over) unshares bob
    (``rekeyed``): plan.txt re-keyed at epoch 1, its record naming nobody.  Before the laptop's documents
    reach the desktop, she shares docs with carol there (her command seals carol the key it holds:
    epoch 0).  Then they arrive; the desktop runs ``rotation.resume`` (an unlock, a group change) and
    makes docs/new.txt.  (plan.txt's epoch, carol's key's epoch, new.txt sealed to carol, alarm kinds)."""
    from fusevault.store.watched import WatchedStore
    from fusevault.vault.services import share_ops
    from fusevault.vault.volume import Volume
    drive = shared.drive
    alice, carol = shared.volumes["alice"], shared.volumes["carol"]
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, docs.st_ino, b"plan.txt", b"alice's plan\n", ALICE)
    assert "error" not in await _ask(shared, "share", "docs", "bob", "READ")
    held: list[dict] = []
    laptop_store = WatchedStore(alice.store.inner, None, lambda writer, written: held.extend(written))
    laptop = Volume.load(alice.layout, laptop_store, alice.key, alice.tree.get(1).fid)
    if rekeyed:
        answer = await share_ops.unshare(laptop, b"docs", "bob")
        assert answer["with"] == "bob", answer
    assert "error" not in await _ask(shared, "share", "docs", "carol", "READ")
    alice.store._listener(None, held)  # the laptop's documents reach the desktop
    fid = alice.resolve(b"docs/plan.txt").fid
    await rotation.resume(alice)
    epoch = alice.find(fid).epoch
    assert epoch == (1 if rekeyed else 0), "the scene: the laptop's re-key taken in"
    found = sharing.read_key(sharing.user_key_path(alice.layout, carol.key.user_id, alice.key.user_id, fid))
    await _write(drive, docs.st_ino, b"new.txt", b"made after", ALICE)
    new = alice.resolve(b"docs/new.txt").fid
    new_sealed = sharing.user_key_path(alice.layout, carol.key.user_id, alice.key.user_id, new).exists()
    said = [each["kind"] for each in alarms.for_user(alice.key.user_id).as_list()]
    return epoch, found[0] if found is not None else -1, new_sealed, said


def test_73a_control_her_share_on_one_device_reaches_the_key_it_holds(three: Path) -> None:  # noqa: F811
    epoch, hers, new, said = _in_scene(three, lambda shared: _shared_before_the_rekey_arrived(shared, False))
    assert hers == epoch and new and "replayed-grant" not in said, (epoch, hers, new, said)


def test_73a_4_her_share_made_before_her_other_devices_rekey_arrived_gets_the_new_key(
        three: Path) -> None:  # noqa: F811
    epoch, hers, new, said = _in_scene(three, lambda shared: _shared_before_the_rekey_arrived(shared, True))
    assert hers == epoch and new and "replayed-grant" not in said, (epoch, hers, new, said)


async def _unshared_on_the_laptop_deletion_withheld(shared, again: bool) -> tuple[int, int, bool, list]:
    """(4)'s scene less carol, the server keeping the Share's deletion from the desktop (71d (1)): her
    laptop unshares bob (plan.txt re-keyed, its record saying bob's Share taken), then (``again``) re-keys
    plan.txt and docs once more for another reason (their records carry what the first took); the desktop
    takes the laptop's nodes in, bob's Share still in force there, and runs ``rotation.resume``, then makes
    docs/new.txt.  (plan.txt's epoch, bob's key's epoch, new.txt sealed to bob, alarm kinds)."""
    from fusevault.store.watched import WatchedStore
    from fusevault.vault.services import share_ops
    from fusevault.vault.volume import Volume
    drive = shared.drive
    alice, bob = shared.volumes["alice"], shared.volumes["bob"]
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, docs.st_ino, b"plan.txt", b"alice's plan\n", ALICE)
    assert "error" not in await _ask(shared, "share", "docs", "bob", "READ")
    fid = alice.resolve(b"docs/plan.txt").fid
    share_id = sharing.doc_id(alice.resolve(b"docs").fid, bob.key.user_id)
    real = alice.store.get(share_id)
    held: list[dict] = []
    laptop_store = WatchedStore(alice.store.inner, None, lambda writer, written: held.extend(written))
    laptop = Volume.load(alice.layout, laptop_store, alice.key, alice.tree.get(1).fid)
    await share_ops.unshare(laptop, b"docs", "bob")
    if again:  # the file and its folder (whose record alone would say it: 72c (1)'s ``left``)
        await laptop.rekey(laptop.resolve(b"docs/plan.txt"))
        await laptop.rekey(laptop.resolve(b"docs"))
    record = laptop.resolve(b"docs/plan.txt").sealed_for
    assert record is not None, "the scene: the laptop's re-key wrote a record"
    # The server: her Share body again at its id over the deletion, the deletion kept from the desktop.
    assert alice.store.inner.get(share_id) is None, "the scene: the laptop's unshare deleted it"
    alice.store.inner.put_many([{k: v for k, v in real.items() if k != "_rev"}])
    alice.store._listener(None, [d for d in held if d.get("_id") != share_id])
    await rotation.resume(alice)
    epoch = alice.find(fid).epoch
    assert epoch == (2 if again else 1), "the scene: the laptop's re-keys taken in"
    found = sharing.read_key(sharing.user_key_path(alice.layout, bob.key.user_id, alice.key.user_id, fid))
    await _write(drive, docs.st_ino, b"new.txt", b"made after", ALICE)
    new = alice.resolve(b"docs/new.txt").fid
    new_sealed = sharing.user_key_path(alice.layout, bob.key.user_id, alice.key.user_id, new).exists()
    said = [each["kind"] for each in alarms.for_user(alice.key.user_id).as_list()]
    return epoch, found[0] if found is not None else -1, new_sealed, said


@pytest.mark.parametrize("again", [False, True])
def test_73a_4_a_share_her_rekeys_took_back_stays_taken_back_on_her_other_device(
        three: Path, again: bool) -> None:  # noqa: F811
    """71d (1) kept under (4)'s narrower rule: the Share her laptop's unshare took back, served again to
    her desktop, is sealed no key made since (nor a new file), said, after a later re-key too."""
    epoch, bobs, new, said = _in_scene(three, lambda shared: _unshared_on_the_laptop_deletion_withheld(
        shared, again))
    assert bobs < epoch and not new and "replayed-grant" in said, (epoch, bobs, new, said)
