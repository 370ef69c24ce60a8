"""Attack round 76a, in-process: round 75a (1)'s fix (her share command writes her records naming the
Share in ``taken`` again at the same key, the Share given: vault/services/share_ops.py ``_recorded_again``,
vault/model/sealed_for.py ``given_again``; ``group_newer`` admits no member while ``taken`` names the
group's Share) and round 74b (2)'s (``stand_on``).  Seats of one shared mount
(tests/inprocess/test_attack_53c.py ``_in_scene`` over the ``three`` vault: alice, bob, carol).

(1) medium (an honest member refused his key for good, with a false alarm blaming the store; her share
    again undone by a WRITE member).  Attacker: bob, WRITE on docs (his own user Share), who signs his
    own states of her files (``test_76a_1_...``).  Steps: docs/plan.txt shared WRITE with bob and READ
    with her group team; she unshares docs from @team (re-key to epoch 1: her record R1, ``taken`` names
    the team Share; bob, still a member, is sealed the key and reads R1 in her state); she shares docs
    with @team again (75a (1)'s fix: her record written again at epoch 1, R2, the Share given).  bob
    signs a state of plan.txt at that key (a chmod) carrying R1 as he read it.  She adds carol to team
    (``rotation.resume``).  Seen: her seat takes R1 back (``taken`` names the team Share again), carol is
    sealed nothing, ``replayed-grant`` said ("taken back on another device, or the store serves an older
    body again"); her next commit carries R1 to every device.  Control
    ``test_76a_control_a_writers_edit_after_she_shares_again_keeps_her_record`` (his chmod carrying the
    record as it is): carol sealed.  Expected: a record of hers she wrote again at the epoch stands over
    the one it replaced.  Cause: since 75a (1) one epoch and key have two records her proof proves (R1,
    R2) and nothing orders them: vault/model/sealed_for.py:85 ``taken`` keeps ``fresh`` whenever it is
    hers for the key (absorbing.py:832, arrivals.py:347), so any state carrying her older record puts it
    back.  Before 75a (1) a record was unique per epoch, and a re-key's new epoch made the older one
    useless.  Impact: bob (or any WRITE member, repeating it after each share again) keeps every member
    added to the group out of the files, on every device, for as long as he likes; the alarm blames the
    store or her other device.
    (1b) the same without malice (``test_76a_1b_...``): bob's honest edit (new words) made apart from her
    share again (his device had not taken R2 in: offline, or the server held R2 back from it) carries
    R1, as his client holds it; her device settles the two branches (rule 3: his newer contents kept,
    vault/services/conflicts.py:475, ``_adopt`` through ``absorb_node``, so ``taken`` takes the record
    with the contents).  Seen: R1 back, carol sealed nothing, ``replayed-grant``.  Control
    ``test_76a_control_bobs_edit_heard_before_she_shares_again`` (linear): carol sealed.  The same holds
    for her own other device's edit made apart (its commit carries R1; not run).
    Suggested fix: order her records at one epoch: a count (or her stamp) in the record, under the
    proof (``_digest``), raised by ``given_again``; ``sealed_for.taken`` keeps the held record of the
    same key when it is later than ``fresh`` (a settling too, as it goes through ``absorb_node``), and the
    ledger keeps the highest count seen per file and epoch so a load or a rebuilt node counts no lower
    one (with 75a (2), (3)'s ``left_kept``).

(2) medium (her own change of a shared file undone, unsaid, by the server alone; with 75a (1)'s fix, her
    share again undone: (1)'s impact with no member acting).  Attacker: the server (or a writer of the
    vault folder) replaying a WRITE member's genuine document.  Steps (``test_76a_2_...``): bob (WRITE)
    changes plan.txt's mode (his state, seq ``bobs-device`` 1, taken by her seat); she then changes the
    file herself over it (``[her_chmod]`` 0600, ``[her_edit]`` new words, ``[her_share_again]`` the team
    Share given again: record R2); the server puts bob's very document back as the current revision
    (``planted``: a revision of its own making over hers).  Seen: her seat takes it as bob's newest state:
    mode 0640 again, her words no longer the file's contents, seq bob's, no alarm; ``[her_share_again]``:
    R1 back, carol sealed nothing, ``replayed-grant``.  Controls
    ``test_76a_control_her_change_over_a_writers_state_stands[...]`` (no replay): her change stands.
    Expected: refused as a rollback (``store-rollback``), as her own older state or his older one is.
    Cause: vault/model/ledger.py:423 ``older`` refuses only a seq below the newest seen of its device
    (his counter 1 is that newest) or one ``covered``; ``committed`` (ledger.py:644) records her own
    commit's seq and ``over`` (her devices' only) but supersedes nothing, so the writer's state her commit
    was made over stays "newest of its device" on the device that made it (``superseded`` runs only for a
    state taken at arrival or load, ledger.py:829, 1074; her other devices, which take her commit in,
    likely refuse the replay: not run).  Impact: on her device that made the change (her only one, often),
    any change she makes over a member's last state is undone at the server's will, unsaid (her next
    commit goes on from his state); her share again's record is put back to the unshare's.
    Suggested fix: her commit of a node, not in conflict, supersedes every state seen before of another
    device or writer, as ``superseded`` does for a state taken (``committed``).
    Fixed so (``Ledger.committed``'s ``alone``, vault/tree/inodes.py ``_put``): refused and said now;
    control ``test_76a_2_control_a_writers_newer_state_over_her_change_is_taken``.

(3) high (a revocation undone on her other device, unsaid: 71d (1) again).  Attackers: the server (or a
    peer) withholding carol's Share deletion from her desktop (71d (1)), and bob, a WRITE member, whose
    states under the keys he held before her unshare arrive after it (his honest edits made offline
    during the revoke look the same; bob needs no malice).  Steps (``test_76a_3_...``): docs/plan.txt
    shared WRITE with bob and READ with carol; her laptop (a Volume of hers over the same store)
    unshares docs from carol (docs and plan.txt re-keyed to epoch 1, records ``taken`` carol's Share);
    bob's states of docs and plan.txt (a chmod each) sealed under the epoch-0 keys arrive at the laptop
    while mounted (``absorb_arrivals``): each is taken back below her epoch and re-keyed (``out.rekey``,
    as fs/arrivals.py runs it).  The server serves carol's Share again to the desktop and hands it the
    laptop's states; the desktop unlocks (``rotation.resume``).  Seen: the laptop's new records (epoch
    2) list nothing in ``taken``; the desktop seals plan.txt's epoch-2 key to carol (her key file at
    epoch 2), nothing said.  Controls ``test_76a_control_carol_stays_out_on_her_desktop[none]`` (no state
    of bob's) and ``[file]`` (plan.txt's only: docs' record still names carol's Share, and keeps her out
    of every file under it, 72c (1)).  Expected: carol stays out, as in the controls.  Cause:
    vault/services/absorbing.py:832 ``sealed_for.taken`` keeps no record for a state below the held
    epoch (the held record is of another key), so the node loses the record that named carol's Share;
    vault/files/rekeying.py ``_taken`` builds the new record's ``taken`` from ``Guests.taking``, the held
    record (none now) and ``Guests.left``, and on the device that ran the unshare ``left`` is empty (the
    Share is gone there: nothing in force is left out).  75a (3) saw this only at the desktop's load
    ("while mounted ... re-keyed with bob left out (``left`` filled at that session's unlock)"): on the
    unsharing device while mounted nothing fills it.  75a (2), (3)'s ``left_kept`` (in parallel, not in
    this tree) fixes it only if it also keeps what the records named ``taken`` on this device, not only
    ``left``.  Impact: carol reads plan.txt as re-keyed and everything written after, on every device
    that takes the desktop's key files, unsaid.  Suggested fix: a node taken back below her epoch keeps
    the held record's ``taken`` (and group vectors) for the re-key it is owed (``rekeying._taken``,
    ``_groups_seen``), or the device's ledger keeps the Shares any of her records here named ``taken``.

Tried, held (kept as controls above): bob's honest chmod carrying the record as he holds it; his edit
heard before her share again.  Round 74b (2)'s ``stand_on`` read (not run): every ``node.rev`` move onto
a state not taken goes through it (ledger refusals, reopen, conflicts ``_adopt`` and copies, revival,
``absorb_beneath``, the load's rebuilt nodes and her leaf); the signer carried is the noted one at the
held revision, else the owner, and the load notes every foreign signer: no path found where a
replayed document's signer judges her names, or where his names are judged as hers.  Not tried: the
given record (R2) brought forward to undo a later revocation (none found at one epoch: every unshare or
member removal re-keys, a new epoch); the conflict variant with her own two devices; real mounts.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from attack_scenes import bobs_node_doc, planted, rewrite
from mount.test_trust_attack_39a import _ask, three  # noqa: F401  (fixture)

import inprocess.conftest as composing
from fusevault.crypto import aead
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64e
from fusevault.store import replica
from fusevault.vault.model import alarms, groups, sealed_for, sharing
from fusevault.vault.model.nodes import open_node_attrs
from fusevault.vault.services import accounts, conflicts, rotation
from fusevault.vault.services.absorbing import Absorbed, absorb, absorb_arrivals
from inprocess.conftest import BOB_UID, ROOT, Ctx, Fields
from inprocess.test_attack_51a import _mode
from inprocess.test_attack_53c import _in_scene
from inprocess.test_two_users import ALICE, _walk, _write

BOB = Ctx(BOB_UID, BOB_UID)


async def _bob_carries_her_unshares_record(shared, carried: bool) -> dict:
    """docs/plan.txt shared WRITE with bob and READ with her group team (nobody else in it); she unshares
    docs from @team (re-key: her record ``taken`` names the team Share; bob, still a WRITE member through
    his own Share, is sealed the new key and reads that record in her state), then shares docs with @team
    again (her record at that key written again, the Share given).  bob signs his state of plan.txt at
    that key (a chmod), carrying (``carried``) her unshare's record he read, proved by her for this very
    key and epoch; alice adds carol to team and her seat runs what a group change runs
    (``rotation.resume``)."""
    drive = shared.drive
    alice, bob, carol = (shared.volumes[n] for n in ("alice", "bob", "carol"))
    me = alice.store.get(alice.key.user_id)
    gid = groups.create_group(alice.store, "team", me, alice.trust.sign)["_id"]
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, docs.st_ino, b"plan.txt", b"alice's plan\n", ALICE)
    for who, perm in (("bob", "WRITE"), ("@team", "READ")):
        assert "error" not in await _ask(shared, "share", "docs", who, perm)
    assert "error" not in await _ask(shared, "unshare", "docs", "@team")
    fid, docs_fid = alice.resolve(b"docs/plan.txt").fid, alice.resolve(b"docs").fid
    team_share = sharing.doc_id(docs_fid, gid)
    await _walk(drive, b"shared/alice/docs/plan.txt", BOB)
    plan = alice.find(fid)
    assert bob.find(fid) is not None and bob.find(fid).dek == plan.dek, "the scene: bob holds the new key"
    unshares = dict(bob.find(fid).sealed_for)  # what bob reads in her state of the file
    assert unshares["taken"] == [team_share] and sealed_for.hers(alice.key, fid, plan.epoch, plan.dek,
                                                                 unshares), "the scene: her unshare's record"
    assert "error" not in await _ask(shared, "share", "docs", "@team", "READ")
    given = alice.find(fid).sealed_for
    assert given["taken"] == [] and given["epoch"] == plan.epoch, f"the scene: the Share given: {given}"
    change: dict = {"seq": ["bobs-device", 1], "mode": stat.S_IFREG | 0o640}
    if carried:
        change["sealed_for"] = unshares
    planted(shared, bobs_node_doc(shared, fid, change))
    assert stat.S_IMODE(alice.find(fid).mode) == 0o640, "the scene: bob's state taken by alice's seat"
    held = alice.find(fid).sealed_for
    team = accounts.group_base(alice.store.get(gid), alice.trust)
    groups.set_member(alice.store, team, alice.store.get(carol.key.user_id), "READ", sign=alice.trust.sign)
    await rotation.resume(alice)
    found = sharing.read_key(sharing.group_key_path(alice.layout, gid, fid, carol.key.user_id))
    return {"epoch": alice.find(fid).epoch, "carol": found[0] if found is not None else -1,
            "held_taken": held.get("taken") if isinstance(held, dict) else None,
            "said": [each["kind"] for each in alarms.for_user(alice.key.user_id).as_list()]}


def test_76a_control_a_writers_edit_after_she_shares_again_keeps_her_record(three: Path) -> None:  # noqa: F811
    seen = _in_scene(three, lambda shared: _bob_carries_her_unshares_record(shared, carried=False))
    print("seen:", seen)
    assert seen["held_taken"] == [] and seen["carol"] == seen["epoch"], seen
    assert "replayed-grant" not in seen["said"], seen


def test_76a_1_a_writer_carrying_her_unshares_record_does_not_undo_her_share_again(
        three: Path) -> None:  # noqa: F811
    seen = _in_scene(three, lambda shared: _bob_carries_her_unshares_record(shared, carried=True))
    print("seen:", seen)
    assert seen["held_taken"] == [], f"her seat took her older record back from bob's state: {seen}"
    assert seen["carol"] == seen["epoch"], f"carol, added to team, is sealed no key of plan.txt: {seen}"
    assert "replayed-grant" not in seen["said"], seen


async def _bobs_edit_made_apart(shared, apart: bool) -> dict:
    """(1)'s scene, bob honest: after her unshare of @team, bob (WRITE) writes new words into plan.txt
    (``apart``: while her device does not hear it: his edit and her share again are made apart, both
    over her unshare's state; his client carries the record it holds, her unshare's); her device's side
    goes on (her saves, on top of the store: bob's edit a branch), she shares docs with @team again,
    and her device settles the two branches (``conflicts.settle``, as a sync's arrival does).  Then she
    adds carol to team (``rotation.resume``).  Not ``apart``: his edit heard at once (linear)."""
    drive = shared.drive
    alice, bob, carol = (shared.volumes[n] for n in ("alice", "bob", "carol"))
    me = alice.store.get(alice.key.user_id)
    gid = groups.create_group(alice.store, "team", me, alice.trust.sign)["_id"]
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, docs.st_ino, b"plan.txt", b"alice's plan\n", ALICE)
    for who, perm in (("bob", "WRITE"), ("@team", "READ")):
        assert "error" not in await _ask(shared, "share", "docs", who, perm)
    assert "error" not in await _ask(shared, "unshare", "docs", "@team")
    fid, docs_fid = alice.resolve(b"docs/plan.txt").fid, alice.resolve(b"docs").fid
    team_share = sharing.doc_id(docs_fid, gid)
    entry = await _walk(drive, b"shared/alice/docs/plan.txt", BOB)
    local = replica.local_of(alice.store)
    assert local is not None
    before, history = local.get(fid), replica.current_history(local, fid)
    assert alice.find(fid).sealed_for["taken"] == [team_share], "the scene: her unshare's record"
    real = composing.absorb
    if apart:
        composing.absorb = lambda volume, docs, **how: (  # type: ignore[assignment]
            Absorbed() if volume is alice else real(volume, docs, **how))
    try:
        await rewrite(drive, entry.st_ino, b"bob's words\n", BOB)
    finally:
        composing.absorb = real
    if apart:
        # Her side's saves go on over her unshare's state: on top of the store, bob's edit a branch.
        ahead = [f"{len(history) + n}-{str(n) * 32}" for n in (2, 1)] + history
        replica.store_revisions(local, [{**before, "_rev": ahead[0], "_revisions": replica.revisions(ahead)}])
        absorb(alice, [local.get(fid)], own=False)
    assert "error" not in await _ask(shared, "share", "docs", "@team", "READ")
    given = alice.find(fid).sealed_for
    assert given["taken"] == [], f"the scene: her share again's record: {given}"
    if apart:
        assert replica.other_leaves(local, fid), "the scene: no conflict to settle"
        conflicts.note_branches(alice, local, [fid])
        await conflicts.settle(alice, local, [fid])
    plan = alice.find(fid)
    held = plan.sealed_for
    team = accounts.group_base(alice.store.get(gid), alice.trust)
    groups.set_member(alice.store, team, alice.store.get(carol.key.user_id), "READ", sign=alice.trust.sign)
    await rotation.resume(alice)
    found = sharing.read_key(sharing.group_key_path(alice.layout, gid, fid, carol.key.user_id))
    return {"epoch": alice.find(fid).epoch, "carol": found[0] if found is not None else -1,
            "bobs_head": plan.head == bob.find(fid).head, "bob": bob.key.user_id,
            "held_taken": held.get("taken") if isinstance(held, dict) else None,
            "said": [each["kind"] for each in alarms.for_user(alice.key.user_id).as_list()]}


def test_76a_control_bobs_edit_heard_before_she_shares_again(three: Path) -> None:  # noqa: F811
    seen = _in_scene(three, lambda shared: _bobs_edit_made_apart(shared, apart=False))
    print("seen:", seen)
    assert seen["held_taken"] == [] and seen["carol"] == seen["epoch"], seen
    assert "replayed-grant" not in seen["said"], seen


def test_76a_1b_a_writers_honest_edit_made_apart_does_not_undo_her_share_again(three: Path) -> None:  # noqa: F811
    seen = _in_scene(three, lambda shared: _bobs_edit_made_apart(shared, apart=True))
    print("seen:", seen)
    assert seen["held_taken"] == [], f"the settling took her unshare's record back with bob's edit: {seen}"
    assert seen["carol"] == seen["epoch"], f"carol, added to team, is sealed no key of plan.txt: {seen}"
    assert "replayed-grant" not in seen["said"], seen


async def _bobs_state_served_again(shared, then: str, replayed: bool) -> dict:
    """bob (WRITE on docs, a user share) changes plan.txt's mode (a genuine state of his: her seat takes
    it), then she changes the file herself, over his state (``then``: ``her_chmod`` to 0600, ``her_edit``
    new words, ``her_share_again``: docs READ to her group team, unshared before bob's state, shared
    again: her record written again at the key, the team Share given); the server (``replayed``) serves
    bob's state again, his very document under a revision of its own making, over hers (what any
    server, or a writer of the vault folder, can do: ``planted``).  Then (``her_share_again``) she adds
    carol to team and her seat runs what a group change runs (``rotation.resume``)."""
    drive = shared.drive
    alice, carol = shared.volumes["alice"], shared.volumes["carol"]
    me = alice.store.get(alice.key.user_id)
    gid = groups.create_group(alice.store, "team", me, alice.trust.sign)["_id"]
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, docs.st_ino, b"plan.txt", b"alice's plan\n", ALICE)
    assert "error" not in await _ask(shared, "share", "docs", "bob", "WRITE")
    if then == "her_share_again":
        assert "error" not in await _ask(shared, "share", "docs", "@team", "READ")
        assert "error" not in await _ask(shared, "unshare", "docs", "@team")
    fid = alice.resolve(b"docs/plan.txt").fid
    await _walk(drive, b"shared/alice/docs/plan.txt", BOB)
    his = bobs_node_doc(shared, fid, {"seq": ["bobs-device", 1], "mode": stat.S_IFREG | 0o640})
    planted(shared, his)
    assert stat.S_IMODE(alice.find(fid).mode) == 0o640, "the scene: bob's state taken by alice's seat"
    plan = await _walk(drive, b"docs/plan.txt", ALICE)
    if then == "her_chmod":
        await drive.setattr(plan.st_ino, _mode(0o600), Fields(mode=True), None, ALICE)
    elif then == "her_edit":
        await rewrite(drive, plan.st_ino, b"alice's second plan\n", ALICE)
    else:
        assert "error" not in await _ask(shared, "share", "docs", "@team", "READ")
        assert alice.find(fid).sealed_for["taken"] == [], "the scene: her share again's record"
    hers = alice.find(fid)
    kept = (stat.S_IMODE(hers.mode), hers.head, hers.seq)
    if replayed:
        planted(shared, his)
    now = alice.find(fid)
    held = now.sealed_for
    seen = {"kept": (stat.S_IMODE(now.mode), now.head, now.seq) == kept, "mode": oct(stat.S_IMODE(now.mode)),
            "seq": now.seq, "held_taken": held.get("taken") if isinstance(held, dict) else None}
    if then == "her_share_again":
        team = accounts.group_base(alice.store.get(gid), alice.trust)
        groups.set_member(alice.store, team, alice.store.get(carol.key.user_id), "READ",
                          sign=alice.trust.sign)
        await rotation.resume(alice)
        found = sharing.read_key(sharing.group_key_path(alice.layout, gid, fid, carol.key.user_id))
        seen.update(epoch=alice.find(fid).epoch, carol=found[0] if found is not None else -1)
    seen["said"] = [each["kind"] for each in alarms.for_user(alice.key.user_id).as_list()]
    return seen


THEN = ["her_chmod", "her_edit", "her_share_again"]


def _her_change_stands(seen: dict) -> None:
    assert seen["kept"], f"her change over bob's state undone by his state served again: {seen}"
    if "carol" in seen:
        assert seen["held_taken"] == [], f"her record back to her unshare's: {seen}"
        assert seen["carol"] == seen["epoch"], f"carol, added to team, is sealed no key of plan.txt: {seen}"
        assert "replayed-grant" not in seen["said"], seen


@pytest.mark.parametrize("then", THEN)
def test_76a_control_her_change_over_a_writers_state_stands(three: Path, then: str) -> None:  # noqa: F811
    seen = _in_scene(three, lambda shared: _bobs_state_served_again(shared, then, replayed=False))
    print("seen:", seen)
    _her_change_stands(seen)


@pytest.mark.parametrize("then", THEN)
def test_76a_2_a_writers_state_served_again_over_her_change_is_refused(three: Path, then: str) -> None:  # noqa: F811
    """Fixed: her commit, alone in the store, supersedes the states seen before (``Ledger.committed``'s
    ``alone``, inodes.py ``_put``): his state served again is a replay, refused and said."""
    seen = _in_scene(three, lambda shared: _bobs_state_served_again(shared, then, replayed=True))
    print("seen:", seen)
    _her_change_stands(seen)
    assert "rollback" in seen["said"], f"the replay unsaid: {seen}"


async def _bobs_newer_state_over_her_change(shared) -> dict:
    """As ``_bobs_state_served_again`` (her chmod over bob's state), then bob's genuinely newer state
    (``bobs-device`` 2), made apart from her change (over his own state), put over hers."""
    drive, alice = shared.drive, shared.volumes["alice"]
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, docs.st_ino, b"plan.txt", b"alice's plan\n", ALICE)
    assert "error" not in await _ask(shared, "share", "docs", "bob", "WRITE")
    fid = alice.resolve(b"docs/plan.txt").fid
    await _walk(drive, b"shared/alice/docs/plan.txt", BOB)
    his = bobs_node_doc(shared, fid, {"seq": ["bobs-device", 1], "mode": stat.S_IFREG | 0o640})
    newer = bobs_node_doc(shared, fid, {"seq": ["bobs-device", 2], "mode": stat.S_IFREG | 0o644})
    planted(shared, his)
    plan = await _walk(drive, b"docs/plan.txt", ALICE)
    await drive.setattr(plan.st_ino, _mode(0o600), Fields(mode=True), None, ALICE)
    assert stat.S_IMODE(alice.find(fid).mode) == 0o600, "the scene: her chmod over his state"
    planted(shared, newer)
    return {"mode": oct(stat.S_IMODE(alice.find(fid).mode)), "seq": alice.find(fid).seq,
            "said": [each["kind"] for each in alarms.for_user(alice.key.user_id).as_list()]}


def test_76a_2_control_a_writers_newer_state_over_her_change_is_taken(three: Path) -> None:  # noqa: F811
    """Honest concurrency kept: a later state of his device is no replay of the one she superseded."""
    seen = _in_scene(three, _bobs_newer_state_over_her_change)
    print("seen:", seen)
    assert seen["mode"] == oct(0o644) and seen["seq"] == ("bobs-device", 2), seen
    assert "rollback" not in seen["said"], seen


def _his_state_under(shared, base: dict, dek: bytes, change: dict) -> dict:
    """bob's own node document made over ``base`` (her state he held), sealed under ``dek`` (the key he
    held then) and signed by him: what his client commits for an edit made while apart."""
    bob = shared.volumes["bob"]
    attrs = {**open_node_attrs(base, dek), **change}
    body = {k: v for k, v in base.items() if k not in ("_rev", "sig")}
    plain = json.dumps(attrs, separators=(",", ":")).encode()
    body["enc"] = b64e(aead.seal(dek, plain, aead.ad("node", base["_id"])))
    return sign_doc(bob.key.user_id, bob.key.identity.sign, body)


async def _his_states_during_the_revoke(shared, states: str) -> dict:
    """docs/plan.txt shared WRITE with bob and READ with carol on her desktop (her seat); bob holds both
    keys (epoch 0).  Her laptop (a Volume of hers over the same store) unshares docs from carol: docs
    and plan.txt re-keyed to epoch 1, the records ``taken`` carol's Share.  bob's states made while apart,
    under the keys he held (``states``: ``none``; ``file``: plan.txt's mode; ``both``: docs' and
    plan.txt's), arrive at the laptop (mounted: ``absorb_arrivals``), which takes each back under the
    older key and re-keys it (``out.rekey``, as fs/arrivals.py does).  The server keeps carol's Share
    deletion from the desktop and hands it the laptop's states; the desktop unlocks
    (``rotation.resume``)."""
    from fusevault.store.watched import WatchedStore
    from fusevault.vault.services import share_ops
    from fusevault.vault.volume import Volume
    drive = shared.drive
    alice, carol = shared.volumes["alice"], shared.volumes["carol"]
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, docs.st_ino, b"plan.txt", b"alice's plan\n", ALICE)
    for who, perm in (("bob", "WRITE"), ("carol", "READ")):
        assert "error" not in await _ask(shared, "share", "docs", who, perm)
    fid, docs_fid = alice.resolve(b"docs/plan.txt").fid, alice.resolve(b"docs").fid
    await _walk(drive, b"shared/alice/docs/plan.txt", BOB)
    before = {f: (shared.store.get(f), alice.find(f).dek) for f in (fid, docs_fid)}
    share_id = sharing.doc_id(docs_fid, carol.key.user_id)
    body = alice.store.get(share_id)
    inner = alice.store.inner
    held: list[dict] = []
    apart = WatchedStore(inner, None, lambda writer, written: held.extend(written))
    laptop = Volume.load(alice.layout, apart, alice.key, alice.tree.get(1).fid)
    await share_ops.unshare(laptop, b"docs", "carol")
    assert laptop.find(fid).sealed_for["taken"] == [share_id], "the scene: her unshare's record"
    for f in {"none": (), "file": (fid,), "both": (docs_fid, fid)}[states]:
        base, dek = before[f]
        mode = stat.S_IFDIR | 0o750 if f == docs_fid else stat.S_IFREG | 0o640
        his = _his_state_under(shared, base, dek, {"seq": ["bobs-device", 1], "mode": mode})
        doc = {**{k: v for k, v in his.items() if k != "_rev"}, "_rev": inner.get(f)["_rev"]}
        (rev,) = inner.put_many([doc])
        out = absorb_arrivals(laptop, [{**doc, "_rev": rev}])
        for node in list(out.rekey):
            await laptop.rekey(node)
    record = laptop.find(fid).sealed_for
    inner.put_many([{k: v for k, v in body.items() if k != "_rev"}])  # served again to the desktop
    alice.store._listener(None, [d for d in held if d.get("_id") != share_id
                                 and not str(d.get("_id")).startswith("rotate-")])
    await rotation.resume(alice)  # her desktop's unlock
    found = sharing.read_key(sharing.user_key_path(alice.layout, carol.key.user_id, alice.key.user_id, fid))
    return {"epoch": alice.find(fid).epoch, "carol": found[0] if found is not None else -1,
            "taken": record.get("taken") if isinstance(record, dict) else None, "share": share_id,
            "said": [each["kind"] for each in alarms.for_user(alice.key.user_id).as_list()]}


@pytest.mark.parametrize("states", ["none", "file"])
def test_76a_control_carol_stays_out_on_her_desktop(three: Path, states: str) -> None:  # noqa: F811
    """``[file]``: plan.txt's record lost on the laptop, docs' (its folder, still saying carol taken)
    keeps her out of every file under it on the desktop (72c (1)'s rule)."""
    seen = _in_scene(three, lambda shared: _his_states_during_the_revoke(shared, states))
    print("seen:", seen)
    assert seen["carol"] < 1 and "replayed-grant" in seen["said"], seen


def test_76a_3_a_writers_states_under_the_older_key_do_not_undo_her_unshare_on_her_desktop(
        three: Path) -> None:  # noqa: F811
    seen = _in_scene(three, lambda shared: _his_states_during_the_revoke(shared, "both"))
    print("seen:", seen)
    assert seen["taken"] == [seen["share"]], f"the laptop's re-key records carol's Share given: {seen}"
    assert seen["carol"] < 1, f"carol is sealed plan.txt's key the laptop made without her: {seen}"


async def _her_chmod_beside_a_branch(shared, branch: bool) -> dict:
    """bob's state (``bobs-device`` 1) taken by her seat; with ``branch``, another live branch of
    plan.txt in the store (her state before his, copied beside it under a revision of its own: a
    conflict not settled yet); then her chmod.  Whether her ledger takes his state served again for a
    replay now."""
    from fusevault.vault.model.ledger import apart
    drive, alice = shared.drive, shared.volumes["alice"]
    bob = shared.volumes["bob"]
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, docs.st_ino, b"plan.txt", b"alice's plan\n", ALICE)
    assert "error" not in await _ask(shared, "share", "docs", "bob", "WRITE")
    fid = alice.resolve(b"docs/plan.txt").fid
    await _walk(drive, b"shared/alice/docs/plan.txt", BOB)
    before = alice.store.get(fid)
    planted(shared, bobs_node_doc(shared, fid, {"seq": ["bobs-device", 1], "mode": stat.S_IFREG | 0o640}))
    if branch:
        start, rid = before["_rev"].split("-", 1)
        beside = {**{k: v for k, v in before.items() if k != "_rev"}, "_rev": f"{int(start) + 1}-{'0' * 32}",
                  "_revisions": {"start": int(start) + 1, "ids": ["0" * 32, rid]}}
        replica.store_revisions(alice.store.inner, [beside])
        assert replica.in_conflict(alice.store.inner, fid), "the scene: a live branch beside his state"
    plan = await _walk(drive, b"docs/plan.txt", ALICE)
    await drive.setattr(plan.st_ino, _mode(0o600), Fields(mode=True), None, ALICE)
    return {"replay": alice.ledger.older(fid, apart(("bobs-device", 1), bob.key.user_id))}


@pytest.mark.parametrize("branch", [False, True])
def test_76a_2_her_commit_in_conflict_supersedes_nothing(three: Path, branch: bool) -> None:  # noqa: F811
    """Her commit supersedes the states seen only when the store holds no other live branch of the file
    (``Inodes._put``): in conflict the settling judges the branches, his state among them."""
    seen = _in_scene(three, lambda shared: _her_chmod_beside_a_branch(shared, branch))
    print("seen:", seen)
    assert seen["replay"] is (not branch), seen
