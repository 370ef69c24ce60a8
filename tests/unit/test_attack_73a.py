"""Attack round 73a, unit: the fixes' rules (the scenes: tests/inprocess/test_attack_73a.py), a control.

Fixed: (1) a record counts only with her proof (``sealed_for.hers``): ``fill_missing`` given her key takes a
member's for none, her commits drop one (``nodes.node_doc``), her device keeps hers over a member's state's
(``sealed_for.taken``); (3) a record's entries are ids and its JSON at most ``MAX_BYTES`` (``shaped``,
``record``); (2), (4) a grant outside the record counts as taken back only if its re-keys took it
(``taken``) or it is a group's body older than the one seen (``sealed_for.left_out``): a member under the
body the re-key saw (his user document missing then) is not.

Held (control): a file her laptop re-keyed while in folder A (its record: ``above`` = plan, A), moved since
into folder B, which she unshared from bob on that laptop too, is not sealed to bob by her desktop served
his old Share on B (``above`` lacks B: "her move since"): B's own folder key, re-keyed by that unshare,
has a record leaving bob out, so ``fill_missing`` finds the grant taken back (72c (1)'s ``left``)
whatever the order of the nodes.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fusevault.crypto.keys import MasterKey
from fusevault.encoding import b64e
from fusevault.vault.format.layout import Layout
from fusevault.vault.model import nodes, sealed_for, sharing
from fusevault.vault.model.alarms import Alarms
from fusevault.vault.model.nodes import Node
from fusevault.vault.model.sharing import Grant
from fusevault.vault.tree.guests import Guests

ME, BOB, A, B, PLAN = (uuid.uuid4().hex for _ in range(5))


@pytest.mark.parametrize("plan_first", [True, False])
def test_73a_control_a_file_moved_into_a_folder_she_unshared_is_not_sealed_to_the_replayed_share(
        tmp_path: Path, plan_first: bool) -> None:
    bob_pub = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    users = {BOB: {"_id": BOB, "public_box": b64e(bob_pub)}}
    guests = Guests(ME, [Grant(ME, B, BOB, False, "READ")], {}, users)  # his old Share on B, served again
    folder_a = Node(2, A, ME, b"a" * 32, 0o040700, 0, 0)
    folder_b = Node(3, B, ME, b"b" * 32, 0o040700, 0, 0)
    folder_b.epoch, folder_b.sealed_for = 1, sealed_for.record(1, [], {}, [B])  # her unshare's re-key of B
    plan = Node(4, PLAN, ME, b"k" * 32, 0o100600, 0, 0)
    plan.epoch, plan.sealed_for = 1, sealed_for.record(1, [], {}, [PLAN, A])  # re-keyed while in A
    plan.links = [(3, b"plan.txt")]  # moved into B since
    nodes = {2: folder_a, 3: folder_b, 4: plan}
    keys = [(plan, plan.dek, 1), (folder_b, folder_b.dek, 1)]
    layout = Layout(tmp_path, "", {})
    guests.fill_missing(layout, nodes, keys if plan_first else keys[::-1])
    assert (sharing.doc_id(B, BOB), BOB) in guests.left
    assert not sharing.user_key_path(layout, BOB, ME, PLAN).exists()
    assert not sharing.user_key_path(layout, BOB, ME, B).exists()


# --- fixed (1): a record counts only with her proof


HERS = MasterKey(ME, b"m" * 32)


def _folder_b_unshared(record: dict | None) -> tuple[Guests, Layout, Node, dict[int, Node]]:
    """His old Share on B served again; B re-keyed by her unshare with ``record``."""
    bob_pub = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    users = {BOB: {"_id": BOB, "public_box": b64e(bob_pub)}}
    guests = Guests(ME, [Grant(ME, B, BOB, False, "READ")], {}, users)
    folder_b = Node(3, B, ME, b"b" * 32, 0o040700, 0, 0)
    folder_b.epoch, folder_b.sealed_for = 1, record
    return guests, Layout(Path("/nonexistent"), "", {}), folder_b, {3: folder_b}


@pytest.mark.parametrize("proof", ["hers", "none", "his", "other-key", "tampered"])
def test_73a_1_a_record_counts_only_with_her_proof_of_it(tmp_path: Path, proof: str) -> None:
    made = sealed_for.record(1, [], {}, [B])
    if proof == "hers":
        found = sealed_for.proved(HERS, B, b"b" * 32, made)
    elif proof == "his":  # a member's master key: a proof of his own
        found = sealed_for.proved(MasterKey(BOB, b"n" * 32), B, b"b" * 32, made)
    elif proof == "other-key":  # hers, for another key of the file (an epoch's key a member kept)
        found = sealed_for.proved(HERS, B, b"c" * 32, made)
    elif proof == "tampered":  # hers, the list changed after
        found = {**sealed_for.proved(HERS, B, b"b" * 32, made),
                 "to": [f"{sealed_for.entry(ME, B, BOB, BOB)}READ"]}
    else:
        found = made
    guests, _, folder_b, nodes_ = _folder_b_unshared(found)
    layout = Layout(tmp_path, "", {})
    guests.fill_missing(layout, nodes_, [(folder_b, folder_b.dek, 1)], key=HERS)
    assert sharing.user_key_path(layout, BOB, ME, B).exists() is (proof != "hers")
    assert ((sharing.doc_id(B, BOB), BOB) in guests.left) is (proof == "hers")


def test_73a_1_her_commit_carries_only_her_proven_record_a_members_carries_hers() -> None:
    node = Node(3, B, ME, b"b" * 32, 0o040700, 0, 0)
    node.epoch, node.wrapped = 1, {"en_file_dek": "d3JhcHBlZA=="}  # what a member's commit carries over
    mine = sealed_for.proved(HERS, B, b"b" * 32, sealed_for.record(1, [], {}, [B]))
    forged = sealed_for.record(1, [], {}, [B])
    for record, kept in ((mine, True), (forged, False)):
        node.sealed_for = record
        attrs = nodes.open_node_attrs(nodes.node_doc(node, HERS, lambda ino: B), b"b" * 32)
        assert ("sealed_for" in attrs) is kept and (not kept or attrs["sealed_for"] == record)
        # A member's commit (he cannot check it) carries what the node holds: it counts only where hers.
        bobs = nodes.node_doc(node, MasterKey(BOB, b"n" * 32), lambda ino: B)
        member = nodes.open_node_attrs(bobs, b"b" * 32)
        assert member["sealed_for"] == record


def test_73a_1_her_device_keeps_her_record_over_a_members_state() -> None:
    mine = sealed_for.proved(HERS, B, b"b" * 32, sealed_for.record(1, [], {}, [B]))
    forged = sealed_for.record(1, [f"{sealed_for.entry(ME, B, BOB, BOB)}READ"], {}, [B])
    assert sealed_for.taken(HERS, ME, B, 1, b"b" * 32, forged, mine) == mine
    assert sealed_for.taken(HERS, ME, B, 1, b"b" * 32, mine, None) == mine
    assert sealed_for.taken(HERS, ME, B, 1, b"b" * 32, forged, None) is None
    assert sealed_for.taken(HERS, ME, B, 2, b"c" * 32, forged, mine) is None  # hers was of another key
    bobs = MasterKey(BOB, b"n" * 32)  # a member's device: not his to check, carried as it came
    assert sealed_for.taken(bobs, ME, B, 1, b"b" * 32, forged, mine) == forged


# --- fixed (2): a member under the Group body the re-key saw, of a group share it saw


@pytest.mark.parametrize(("here_vector", "share_taken", "sealed"), [
    ({"d1": 2}, False, True),  # the body it saw, carol's user document missing at the re-key
    ({"d1": 2}, True, False),  # the group's share taken back, served again
    ({"d1": 1}, False, False),  # an older body (her removal of carol undone by a replay)
    ({"d2": 1}, False, False),  # made apart: not known to be the one seen
])
def test_73a_2_a_member_of_the_body_the_rekey_saw_is_not_left_out(here_vector: dict, share_taken: bool,
                                                                    sealed: bool) -> None:
    team, carol = uuid.uuid4().hex, uuid.uuid4().hex

    class _Trust:
        alarms = Alarms()

    body = {"owner": ME, "users": {carol: "READ"}, "version_vector": here_vector}
    guests = Guests(ME, [], {team: body}, {}, trust=_Trust())  # type: ignore[arg-type]
    record = sealed_for.record(1, [], {team: {"d1": 2}}, [PLAN, A],
                               [sharing.doc_id(A, team)] if share_taken else [])
    plan = Node(4, PLAN, ME, b"k" * 32, 0o100600, 0, 0)
    assert record is not None
    assert guests._left_out(record, plan, Grant(ME, A, team, True, "READ"), carol) is not sealed


# --- fixed (3): a record no larger than a re-key writes


def test_73a_3_a_record_of_ids_past_max_bytes_is_refused_and_never_written() -> None:
    ids = [uuid.uuid4().hex for _ in range(4 * sealed_for.MAX_TO)]
    to = [sealed_for.entry(*ids[4 * i:4 * i + 4]) + "READ,WRITE" for i in range(sealed_for.MAX_TO)]
    taken = [sharing.doc_id(*ids[2 * i:2 * i + 2]) for i in range(sealed_for.MAX_TO)]
    above = ids[:sealed_for.MAX_TO]
    groups = {g: {f"{d:016x}": 1 for d in range(sealed_for.MAX_DEVICES)} for g in ids[:sealed_for.MAX_GROUPS]}
    assert sealed_for.record(1, to, groups, above, taken) is None  # ~1.6 MB: no record, as before
    found = {"epoch": 1, "to": to, "groups": groups, "above": above, "taken": taken}
    assert not sealed_for.shaped(found)
    assert sealed_for.shaped({**found, "taken": taken[:100], "groups": {}})  # the same, within the bound


@pytest.mark.parametrize("bad", [
    {"to": ["x" * 40 + ":READ"]},  # an entry not of four ids
    {"to": [f"{sealed_for.entry(ME, A, BOB, BOB)}READ" + "," * 500]},  # a permission past any
    {"above": ["y" * 1000]},
    {"taken": [f"share-{A}"]},
    {"groups": {"z" * 1000: {"d1": 1}}},
    {"groups": {A: {f"d{i}": 1 for i in range(sealed_for.MAX_DEVICES + 1)}}},
    {"proof": "p" * 1000},
    {"extra": 1},
])
def test_73a_3_a_record_off_the_shape_a_rekey_writes_is_refused(bad: dict) -> None:
    found = {"epoch": 1, "to": [], "groups": {}, "above": [PLAN], **bad}
    assert not sealed_for.shaped(found)


# --- fixed (4): taken back only what her re-keys took


@pytest.mark.parametrize(("taken", "grantee", "here_vector", "left"), [
    (None, "bob", None, True),  # a record without the list: every grant outside it (round 71d's rule)
    ([], "bob", None, False),  # her share made on her other device before the re-key reached it
    (["bob"], "bob", None, True),  # the Share her unshare took back, served again
    ([], "team", {"d1": 2}, False),  # a group share the re-key did not see (shared since)
    (["team"], "team", {"d1": 2}, True),  # the group share she took back, served again
    ([], "seen", {"d1": 1}, True),  # an older body of a group it saw (her removal of the member undone)
    ([], "seen", {"d2": 1}, True),  # made apart
    ([], "seen", {"d1": 3}, False),  # newer: a member added since
])
def test_73a_4_a_grant_outside_the_record_is_taken_back_only_if_her_rekeys_took_it(
        taken: list | None, grantee: str, here_vector: dict | None, left: bool) -> None:
    ids = {"bob": BOB, "team": uuid.uuid4().hex, "seen": uuid.uuid4().hex}
    record = sealed_for.record(1, [], {ids["seen"]: {"d1": 2}}, [PLAN, A],
                               None if taken is None else [sharing.doc_id(A, ids[t]) for t in taken])
    assert record is not None
    body = None if here_vector is None else {"owner": ME, "users": {BOB: "READ"},
                                             "version_vector": here_vector}
    assert sealed_for.left_out(record, A, ids[grantee], body) is left


def test_73a_4_taken_holds_share_ids_only() -> None:
    good = {"epoch": 1, "to": [], "groups": {}, "above": [A], "taken": [sharing.doc_id(A, BOB)]}
    assert sealed_for.shaped(good)
    for bad in ([f"share-{A}"], [f"share-{A}-{BOB}-x"], [f"{A}-{BOB}"], ["share-" + "x" * 65], [1]):
        assert not sealed_for.shaped({"epoch": 1, "to": [], "groups": {}, "above": [A], "taken": bad}), bad
    # A re-key lists only ids of that shape (a debt's odd id left out: never the whole record refused).
    assert sealed_for.shared_fid(sharing.doc_id(A, BOB)) == A
    assert sealed_for.shared_fid(f"share-{A}-{BOB}-x") is None
