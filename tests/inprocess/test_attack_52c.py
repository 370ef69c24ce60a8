"""Attack round 52c, in-process: 5a40e1a (51a (2): arrivals ``past_the_xattr_cap`` in ``may_take``) and
0ffc69f (50a (1), (2): ``punched_files``, ``records_settled``, gc's ``_named_nodes``).

Hole (1), medium (51a (2)'s stall back, by a WRITE member, unsaid in her state, and signed by her): the
  xattr cap is judged where a member's state is taken in as the file's state (``may_take``), not where
  the conflict settling merges a member's metadata into her kept state.
  Attack: bob (WRITE on alice's team/) signs a state of team/plan.txt at her current head and key but
    one epoch lower (his to seal: a lower epoch is "the ordinary case" and not said, conflict_rules.py
    ``_claims_key``), holding 120 KB of xattrs (any size: 8 MB as in 51a (2)) with a fresh ``changed``
    stamp for ``xattrs``, as a branch beside her current revision (his own replica makes the branch:
    a child of a revision he holds; no server needed).
  Seen: ``test_a_members_branch_past_the_xattr_cap_is_not_merged_into_her_state`` (run, fails: after
    ``conflicts.settle`` her node holds 120,014 bytes in 2 names, and the stored current revision, her
    settling commit signed by her, holds both values); control
    ``test_a_members_branch_within_the_xattr_cap_is_merged_control`` (one 60 KB value: merged, passes).
    A log line says "refused a change ... past a file's cap: the file keeps what it had" (the store
    watcher's look at the arrival): it does not keep it.
  Cause: rule 2 (same head) keeps hers for her key beside his (``_newer_key``; ``_her_key_beside_his``:
    not one key, as the epochs differ), and ``apart`` then merges "his names and metadata by their
    stamps" (metadata_merge.py ``merged``: ``changed_last(keeper, other, "xattrs")``); ``_adopt`` applies
    that ``Metadata`` to her node after ``absorb_node`` of HER doc (no ``may_take`` of his) and commits
    it.  ``past_the_xattr_cap`` is never asked on this path.
  Impact: 51a (2)'s: her node carries his values; every later commit of it (each save, chmod, touch)
    seals and signs them again on the loop under the metadata lock, every seat waiting (0.5 s per commit
    at 8 MB, 51a's numbers); her own setxattr on the file is ENOSPC.  Worse than before 51a (2)'s fix in
    one way: the bloat is now in a state signed by her, which her other devices take whole (her own
    signed state is never refused, ``past_the_xattr_cap``) and which no later judgement tells from hers.
  Fix (suggested): judge the merged xattrs: in ``apart`` (or ``merged``) take a member's ``xattrs``
    field only if it is within the cap or holds no more than the kept state's (``holds_no_more``), and
    say it otherwise; or call ``past_the_xattr_cap`` on ``other`` in ``_her_key_beside_his`` and merge
    nothing of his then.

Hole (3), low to medium (loss of her xattrs in honest use, a mixed-version vault the fix means to serve;
  the alarm on the wrong device): the fix
  refuses an over-cap state "whoever signed it, the owner of a shared file too", while her own device
  takes her own over-cap state whole (her legacy values "would be lost" otherwise).  So the two devices
  of one share diverge: alice's other device, on a version from before the cap, gives team/plan.txt
  120 KB of xattrs (any legacy size), signed by her; her device takes them; bob's device (WRITE, this
  version) refuses them (a forged-write alarm naming alice, the owner, to bob) and keeps the state
  before.  bob then edits the file in any way (a chmod here; a save, a rename): his device commits the
  state his node holds, without her values, within the cap, so her device takes it: her xattrs are
  gone, nothing said to her.
  Seen: ``test_her_legacy_xattrs_past_the_cap_survive_a_members_edit`` (run, fails: her node held
    120,014 bytes of xattrs, 0 after bob's chmod; forged-write said at bob's: True, at hers: False);
    control ``test_her_xattrs_within_the_cap_survive_a_members_edit_control`` (60 KB: kept, passes).
  Cause: arrivals.py ``past_the_xattr_cap`` refuses the owner's own state on a member's device, and a
    member's later state is taken whole (``xattrs`` in ATTRS) by her device; the two rules disagree.
  Impact: her extended attributes (her own, from her own older device) lost on every device at a
    member's next honest edit; a false forged-write alarm about the owner at the member's device.
  Fix (suggested): on a member's device take the owner's own signed state whole, as her device does
    (its size is hers; his later states are bounded by ``holds_no_more`` against it); or, where her
    device takes a member's state, keep her ``xattrs`` field unless his carries a newer ``changed``
    stamp for it (a state made over an older one never takes her values away).

Hole (4), medium (51a (2)'s stall again by a WRITE member, for the file's life: she cannot clear it):
  the cap bounds ``xattrs`` only; every other free text of a node a member's newer state carries is
  taken as it is (arrivals.py ATTRS: ``target``, ``previous``; ``check_shapes`` checks their type).
  bob signs a state of alice's regular file team/plan.txt with an 8 MB ``target`` (a symlink's field:
  nothing reads it on a file, nothing she can do through the mount clears it) or an 8 MB ``previous``.
  Seen: ``test_a_members_huge_text_field_is_not_taken_into_her_file[target]``, ``[previous]`` (run,
    fail: her one chmod stores 10,667,532 bytes of sealed attributes, signed by her, ~0.35 s on the
    loop on this machine); control ``test_a_members_short_target_control`` (passes).  (``trashed`` with
    such a name was not taken: held.)
  Cause: no bound on a node document's fields on arrival but the xattr cap (``past_the_xattr_cap``);
    ``attrs_plain`` seals ``target``/``previous`` again at each commit.
  Impact: 51a (2)'s (every seat's requests wait behind each of her commits of the file; her disk and
    every peer carry 10 MB a revision), with no way for her to shrink it (removexattr cleared 51a's);
    her commits sign it as hers, so her other devices take it whole.
  Fix (suggested): refuse (and say) a state whose sealed attributes are larger than a node may make
    (say the xattr cap plus a few KB: ``len(enc)`` before opening, as a shape error), or bound each text
    field (``target`` to PATH_MAX and None on a regular file, ``previous`` to a file id's shape).

Hole (2) (``records_settled``'s memory) is in tests/unit/test_attack_52c.py.

Held (read, some run): gc's ``_named_nodes`` (0ffc69f (2)): the node a kept version reads is always in
  its ``manifest.nodes`` (``_read_node`` picks the copy by the hash its parent names, the same key
  (writer, ``node_index(level, pos)``) as ``copies``), every copy of a named (writer, index) is kept as
  for blocks, a kind 2/3 manifest has no tree, a kept manifest that does not load stops the file's gc
  before any punch (``_checked_with``); 46a (3)'s node scene reads whole after gc (its own test, run).
  ``punched_files``' GROUP BY lists a file with two copies of one record; ``others_punched`` makes any
  punched row of another writer walk again; ``holds_no_more`` checks names and bytes both (no growth
  by alternating states); a member's dict of xattr names decoding to one name is deduplicated before
  it is counted and sealed (no stall); an over-cap conflict leaf kept whole (rule 2 or 4 with one key)
  goes through ``_adopt``'s ``absorb_node``, ``may_take`` refuses it.
Leads, read-only: a walk that raised (a record it inherits from another writer not here yet: the
  server's order) returns ``{}`` and is noted settled; a second look at that version in the session
  (``_retry_incomplete`` after ``_waits_for_her_re_key``, a conflict settled again) skips it though the
  record came and the walk would now want another copy (EIO for her version until unlock, where
  50a (1)'s limit may not list the file).  The recommit (51a (2)) costs her device one commit per
  arrival of a refused state: a server replaying bob's signed over-cap state under new revisions gets
  one commit of hers per replay (1:1 with its own writes).

Tests: those named above.  Run (-n 0, this file, ~16:15 UTC): with --runxfail each xfail fails at its own
  assertion; the controls pass.
"""

from __future__ import annotations

import json
import stat
import time

import pytest
from attack_scenes import BOB, planted, team_with_plan

from fusevault.crypto import aead
from fusevault.crypto.signing import sign_doc, signer_of
from fusevault.encoding import b64e
from fusevault.store import replica
from fusevault.vault.model import alarms
from fusevault.vault.model.nodes import open_node_attrs, xattr_bytes
from fusevault.vault.services import conflicts
from fusevault.vault.tree.attributes import XATTR_BYTES_MAX
from inprocess.conftest import (  # noqa: F401  (fixtures)
    ROOT,
    Fields,
    shared,
    template_vault,
    vault_copy,
)
from inprocess.test_attack_51a import _mode
from inprocess.test_two_users import _walk


def _values(count: int, fill: bytes) -> dict[str, str]:
    """``count`` xattrs of 60 KB each, as a node document holds them (two are past the cap)."""
    return {f"user.v{i}": b64e(fill * 60_000) for i in range(count)}


def _bobs_state(shared, fid: str, dek: bytes, change: dict, clear: dict) -> dict:  # noqa: F811
    """bob's state of alice's ``fid``: her current document with its sealed attributes changed (and its
    ``clear`` fields), sealed under ``dek`` (the file's key, sealed to him as a WRITE member) and signed
    by him."""
    bob = shared.volumes["bob"]
    doc = shared.store.get(fid)
    attrs = {**open_node_attrs(doc, dek), **change}
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig")} | clear
    body["enc"] = b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", fid)))
    return sign_doc(bob.key.user_id, bob.key.identity.sign, body)


async def _settled_beside(shared, values: int, mode: int | None = None) -> tuple[object, dict, str]:  # noqa: F811
    """alice's team/plan.txt (WRITE to bob), re-keyed once (epoch 1); bob's state of it at her head and
    key, epoch 0, holding ``values`` xattrs of 60 KB stamped now, a branch beside her current revision;
    her device settles the conflict.  (Her node, the stored current attributes, its signer.)"""
    alice = shared.volumes["alice"]
    await team_with_plan(shared)
    team = alice.tree.node(alice.tree.node(ROOT).children[b"team"])
    node = alice.tree.node(team.children[b"plan.txt"])
    fid = node.fid
    local = replica.local_of(alice.store)
    assert local is not None
    await alice.rekey(node)  # her unshare of another, a rotation: epoch 1
    epoch = node.epoch - 1
    change = {"xattrs": _values(values, b"b"), "seq": ["bobs-device", 1], "epoch": epoch,
              "changed": {"xattrs": time.time_ns()}}
    if mode is not None:  # his chmod too, stamped
        change |= {"mode": stat.S_IFMT(node.mode) | mode, "changed": {"xattrs": time.time_ns(),
                                                                      "mode": time.time_ns()}}
    his = _bobs_state(shared, fid, node.dek, change, {"epoch": epoch})
    history = replica.current_history(local, fid)
    rev = f"{history[0].split('-')[0]}-{'0' * 32}"  # a sibling of her current revision, ranked below it
    branch = {**his, "_rev": rev, "_revisions": replica.revisions([rev] + history[1:])}
    replica.store_revisions(local, [branch])
    assert [leaf["_rev"] for leaf in replica.other_leaves(local, fid)] == [rev], "the scene: his branch"
    conflicts.note_branches(alice, local, [fid])
    await conflicts.settle(alice, local, [fid])
    assert not replica.other_leaves(local, fid), "the scene: settled"
    node = alice.tree.find(fid)
    stored = local.get(fid)
    return node, open_node_attrs(stored, node.dek), signer_of(stored)


async def test_a_members_branch_past_the_xattr_cap_is_not_merged_into_her_state(shared) -> None:  # noqa: F811
    node, stored, signer = await _settled_beside(shared, 2)
    assert signer == shared.volumes["alice"].key.user_id, "the scene: her settling commit"
    held = xattr_bytes(node.xattrs)
    print(f"after the settling her node holds {held} bytes in {len(node.xattrs)} names; "
          f"her signed state stores {len(stored.get('xattrs') or {})} names")
    assert held <= XATTR_BYTES_MAX and not stored.get("xattrs"), \
        f"her node holds {held} bytes of his xattrs, past the cap, in a state she signed"


async def test_a_members_branch_within_the_xattr_cap_is_merged_control(shared) -> None:  # noqa: F811
    node, stored, _ = await _settled_beside(shared, 1)
    assert node.xattrs.get(b"user.v0") == b"b" * 60_000 and "user.v0" in (stored.get("xattrs") or {})


async def test_a_members_branch_past_the_xattr_cap_is_said_and_the_rest_of_it_merged(shared) -> None:  # noqa: F811
    """52c (1)'s fix: his xattrs refused (said), his chmod in the same branch merged as before."""
    node, stored, _ = await _settled_beside(shared, 2, mode=0o600)
    assert not node.xattrs and not stored.get("xattrs"), "his xattrs past the cap are not merged"
    assert stat.S_IMODE(node.mode) == 0o600 == stat.S_IMODE(stored["mode"]), "his chmod is merged"
    assert _said_to(shared, "alice", node.fid), "the refusal of his xattrs is said"


# --- (3): her legacy values (her other device's, past the cap) refused at bob's device, then lost


def _alices_state(shared, fid: str, change: dict) -> dict:  # noqa: F811
    """alice's own state of ``fid`` (her other device's, on a version from before the cap), signed by her."""
    alice = shared.volumes["alice"]
    dek = alice.find(fid).dek
    doc = shared.store.get(fid)
    attrs = {**open_node_attrs(doc, dek), **change}
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig")}
    plain = json.dumps(attrs, separators=(",", ":")).encode()
    body["enc"] = b64e(aead.seal(dek, plain, aead.ad("node", fid)))
    return sign_doc(alice.key.user_id, alice.key.identity.sign, body)


def _said_to(shared, name: str, fid: str) -> bool:  # noqa: F811
    return any(each["kind"] == "forged-write" and each["subject"] == fid
               for each in alarms.for_user(shared.volumes[name].key.user_id).as_list())


async def _her_values_then_bobs_chmod(shared, values: int) -> tuple[int, int, bool, bool]:  # noqa: F811
    """alice's team/plan.txt (WRITE to bob); her other device (a version from before the cap) gives it
    ``values`` xattrs of 60 KB, signed by her; then bob, through the mount, chmods the file (any edit
    of his: his device commits the state his node holds).  (The bytes her node holds before and after
    bob's chmod, whether bob's device said a forged-write, whether hers did.)"""
    alice = shared.volumes["alice"]
    await team_with_plan(shared)
    team = alice.tree.node(alice.tree.node(ROOT).children[b"team"])
    fid = alice.tree.node(team.children[b"plan.txt"]).fid
    hers = {"xattrs": _values(values, b"a"), "seq": ["her-old-laptop", 1]}
    planted(shared, _alices_state(shared, fid, hers))
    before = xattr_bytes(alice.tree.find(fid).xattrs)
    ino = (await _walk(shared.drive, b"shared/alice/team/plan.txt", BOB)).st_ino
    await shared.drive.setattr(ino, _mode(0o600), Fields(mode=True), None, BOB)
    assert stat.S_IMODE(alice.tree.find(fid).mode) == 0o600, "the scene: bob's chmod taken by her device"
    return before, xattr_bytes(alice.tree.find(fid).xattrs), _said_to(shared, "bob", fid), \
        _said_to(shared, "alice", fid)


async def test_her_legacy_xattrs_past_the_cap_survive_a_members_edit(shared) -> None:  # noqa: F811
    before, after, bob_said, alice_said = await _her_values_then_bobs_chmod(shared, 2)
    print(f"her node held {before} bytes of xattrs, {after} after bob's chmod; forged-write said at bob's: "
          f"{bob_said}, at hers: {alice_said}")
    assert before > XATTR_BYTES_MAX, "the scene: her legacy values, taken whole by her device"
    assert after == before, f"her {before} bytes of xattrs (her own, signed by her) lost to bob's chmod"
    assert not bob_said and not alice_said, "no forged-write alarm about her own state"


async def test_her_xattrs_within_the_cap_survive_a_members_edit_control(shared) -> None:  # noqa: F811
    before, after, bob_said, _ = await _her_values_then_bobs_chmod(shared, 1)
    assert before == after == 60_000 + len("user.v0") and not bob_said


# --- (4): 51a (2)'s stall through another field than xattrs (``target``, ``previous``)


async def _members_field(shared, field: str, size: int) -> tuple[int, float]:  # noqa: F811
    """bob's signed state of alice's team/plan.txt (WRITE to him) with ``field`` a text of ``size``
    characters, planted; then alice chmods the file (a commit of it, sealed on the loop).  (The length
    of the sealed attributes her commit stored, the seconds of her chmod.)"""
    from attack_scenes import ALICE, bobs_node_doc

    alice = shared.volumes["alice"]
    _, plan = await team_with_plan(shared)
    team = alice.tree.node(alice.tree.node(ROOT).children[b"team"])
    fid = alice.tree.node(team.children[b"plan.txt"]).fid
    planted(shared, bobs_node_doc(shared, fid, {field: "x" * size, "seq": ["bobs-device", 1]}))
    start = time.monotonic()
    await shared.drive.setattr(plan.st_ino, _mode(0o600), Fields(mode=True), None, ALICE)
    took = time.monotonic() - start
    stored = shared.store.get(fid)
    assert signer_of(stored) == alice.key.user_id and stat.S_IMODE(alice.tree.find(fid).mode) == 0o600
    return len(stored["enc"]), took


@pytest.mark.parametrize("field", ["target", "previous"])
async def test_a_members_huge_text_field_is_not_taken_into_her_file(shared, field) -> None:  # noqa: F811
    sealed, took = await _members_field(shared, field, 8_000_000)
    print(f"bob's {field} of 8 MB: her chmod stored {sealed} bytes of sealed attributes in {took:.3f} s")
    assert sealed <= 4 * XATTR_BYTES_MAX, f"her commit seals {sealed} bytes ({field} of bob's) on the loop"


async def test_a_members_short_target_control(shared) -> None:  # noqa: F811
    sealed, _ = await _members_field(shared, "target", 10)
    assert sealed <= 4 * XATTR_BYTES_MAX
