"""Round 45c: attack on round 43c's fixes (3), (4), (7) (commit 8e9222b: tree/her_leaves.py ``_her_leaves``
with ``HER_LEAVES``/``HER_LEAVES_CHECKED``; services/conflict_copies.py ``_copy_ident``/``_made_copy``) and
(8), (6), (1), (2) (commit de2d755: ``conflict_rules._newer_key``, ``_her_key_beside_his``;
``nodes.taken_stamps(by_owner)``).

Attacker: a WRITE member (signs his own commits, writes any revision tree his client pushes), the
CouchDB server (any revision tree, bad signatures, documents planted at predictable ids), honest use
with clocks off.

1. **Her own old state, served 16 times, buries her moved-out leaf again (medium: 42b (3)/(4) back).**
   Attack: 43c (3)'s scene (her team/plan.txt moved out of team, re-keyed, epoch 2; bob's edit made
   over the old key is the current revision; her moved-out leaf beside it).  The server takes one body
   of hers it holds from before the move (team/plan.txt, epoch 1, signed by her: any revision she ever
   pushed) and stores it as ``HER_LEAVES`` (16) leaves one generation above hers, each under its own
   made-up revision id (``_rev`` is not signed: crypto/signing.py ``_NOT_SIGNED``).  Seen (unit):
   ``_her_leaf`` with ``loaded_copy``'s test returns None.  Cause: ``_her_leaves`` stops once
   ``HER_LEAVES`` leaves *verify* as hers and only then sorts by epoch; old states of hers verify (one
   signature, cached: 16 checks for the price of one), none fits (``writers_copy``: his epoch is not below
   theirs), her real leaf (17th) is never opened.  Impact: 43c (3) whole again with genuine signatures
   (no alarm at all for those leaves): her file placed where his document says, EIO with his version
   withheld, a false forged-write naming bob (seen at a mount, 2 runs of 2:
   tests/mount/test_trust_attack_45c.py: only team/plan.txt, EIO, a forged-write; control 15 copies).  Fix
   (suggested): test ``fits`` inside the bounded loop and count only leaves that fit (or only distinct
   bodies, by signature, whose epoch is above his), so ``HER_LEAVES`` caps only the ``loaded_copy``
   calls; or sort by the signed epoch before the cap.  Tests:
   ``test_her_moved_out_leaf_is_found_under_sixteen_copies_of_her_old_state`` (control: 15 copies,
   ``test_control_her_moved_out_leaf_is_found_under_fifteen_copies_of_her_old_state``).
2. **256 leaves the member signs (or 256 altered ones) bury her leaf: the check cap filled (medium).**
   ``HER_LEAVES_CHECKED`` (256) counts every leaf that *says* owner her, before its signature: bob's own
   commits of her file say owner alice too. bob's client pushes 256 sibling branches of his (one signed
   body, 256 made-up revision ids; a WRITE member needs no server for it) above her leaf, or the server
   puts 256 altered bodies there. Seen (unit): ``_her_leaf`` None. Cause: the cap is on leaves looked at,
   taken before her leaf, by generation, and a leaf's generation is the writer's to choose. Impact: as (1)
   (seen at a mount for both, his version withheld: team/plan.txt EIO, a false forged-write; control 254
   altered: shown); bob alone, without the server's withholding: read only. Fix: take leaves saying signer
   her (``said_signer``) before the cap (the member's are then not counted), and repeated bodies (same
   signature) once; a replica's own cap of leaves per document (with the leaves beyond it said) bounds the
   rest. Tests: ``test_her_leaf_is_found_under_the_checked_cap_of_leaves[member's]``, ``[altered]``.
3. **A member's node at a copy's id makes the copy "made already": her (or another's) edit lost unsaid
   (medium).** ``_copy_ident``/``conflict_copy`` take ``volume.holds(fid)`` for the copy made, before
   (and without) ``_made_copy``'s checks. The copy id is ``sha256(fid, rev)[:32]`` (rule 4,
   ``copy_ident``) or ``sha256(fid, "head", vid)[:32]`` (``edit_copy_ident``): clear values every member's
   replica holds, and 32 hex digits, the shape of any fid (``layout.is_id``). Attack: team/ shared WRITE
   with bob. Her two devices (or she and carol) edit team/plan.txt apart; bob, seeing the branches on his
   replica, creates any file of his own in team/ whose fid is the rule-4 copy id of the loser (or sets his
   mtime ahead so hers is the loser) and pushes it before the settling (the server delaying the branch
   helps, not needed). Seen (unit): ``_copy_ident`` returns None (made already) with nothing said; at a
   mount (tests/mount/test_trust_attack_45c.py, 2 runs of 2, bob's new file given the id by a hook in his
   client): her device shows proj/notes.txt "bob's words" and bob's empty innocent.txt, no copy of
   "alice's words", no alarm (control, any other id: the copy made). Impact: the losing edit's leaf is
   closed with no copy: her edit (or carol's) lost unsaid; 43c (7)'s fix holds against the server only.
   Fix: a held node counts as the copy only if ``_made_copy`` holds for its document too (signed by her,
   the owner or the loser's signer, opening under the derived DEK); else said and the next derived id, as
   for a stored one. Test: ``test_a_members_node_held_at_the_copy_id_is_not_the_copy``.
4. **Two leaves of the member: the epoch he claims is adopted, then hers by signature (medium: 43c (8)
   back).** ``_newer_key`` keeps hers only when exactly one side is hers; between two states of his it
   keeps ``max`` by epoch. bob (WRITE) pushes two states of team/sub (a folder) made over the state before
   her unshare of carol: A current (more generations), B claiming epoch 2**40, whose revision id he
   chooses to come first in the settling. Her device settles A vs B first: rule 2, B kept, ``_adopt``
   commits it as her state (signed by her, his epoch, the old key); then her re-key leaf beside that: both
   hers, ``max`` by epoch: the old key carol holds stands, nothing said. Seen (unit): the two ``decide``
   steps keep the old key; at a mount (tests/mount/test_trust_attack_45c.py, A claiming epoch 2, B 2**40):
   team/sub's current document is epoch 2**40 and opens under carol's old key, nothing said (control, A
   alone: her key stands). Fix: between two states of members, never an epoch above the one this device
   holds (the held node's); or ``_adopt`` never commits a member's epoch/key other than the held one's.
   Test: ``test_two_states_of_the_member_do_not_undo_her_re_key``.
5. **A member's state sealing her very epoch under the old key wins rule 2 by ctime (medium-high: 43c
   (8) back).**  ``_newer_key`` guards only when the two epochs differ; equal, it is ``max`` by (epoch,
   ctime, rev) as before.  bob (WRITE on team) seals her re-key's epoch (1: he sees it in clear in her
   document) into a state made over the one before, under the key he (and carol) held, with a later
   ctime (his own clock is enough: made after her unshare).  Seen (unit; and at a mount,
   tests/mount/test_trust_attack_45c.py: team/sub's current document, epoch 1, opens under carol's old
   key, nothing said; control, his state of the old epoch: her new key stands): rule 2 keeps his state
   whole; her unshare of carol is undone for that folder (or empty file), carol reads what is put in it
   next.  Cause: the epoch a member seals is his claim; equal epochs are taken for one key.  Fix: a
   member's state is never taken for its key: rule 2 beside any state of hers keeps her key and epoch
   (his names/metadata merged), or refuse (say) a member's state whose key is not the one her state of
   that epoch holds (compare the DEK, not the epoch).  Test:
   ``test_a_members_state_claiming_her_epoch_does_not_keep_the_old_key``.

6. **A member's honest later rename (or chmod) beside her re-key is lost when his clock runs a little
   ahead of hers (low-medium, honest use: 43c (6) back).** 43c (1)'s fix takes a member's stamp ahead of
   this clock *at all* as none (``taken_stamps(by_owner=False)``). team/sub, renamed by her long ago (a
   links stamp of hers: a file manager's "New folder" renamed); her desktop unshares carol (re-key in
   place, links untouched); then bob, his clock 5 minutes ahead, renames it team/sub2; her desktop takes
   his state in a minute later: his stamp is ahead, none; ``apart``/``_her_key_beside_his`` compare her
   month-old stamp with none: her old names win. Seen (unit): links team/sub (control, clocks right:
   team/sub2). Cause: a stamp ahead of this clock by minutes is an ordinary clock, dropped to nothing
   rather than held down; nothing said. Impact: his rename (or chmod, xattr: ``merged``) made after her
   unshare undone unsaid whenever his clock leads hers and her device settles within that lead (settling
   is at arrival: the usual case). Fix: hold a member's stamp ahead of the clock down to the arrival time
   (now) instead of dropping it (a count can then not build: each of her changes is stamped above now), or
   drop only beyond a small skew. Test:
   ``test_bobs_rename_beside_her_unshare_is_kept_with_his_clock_five_minutes_ahead``.

Run 08:19 UTC: each strict xfail fails at its own assertion under --runxfail; the controls pass.
(1) to (5) seen at a mount too: tests/mount/test_trust_attack_45c.py.
"""

from __future__ import annotations

import stat
from types import SimpleNamespace

import pytest

from fusevault.errors import Forged
from fusevault.vault.model import nodes
from fusevault.vault.model.alarms import Alarms
from fusevault.vault.model.nodes import Node
from fusevault.vault.services import conflict_copies, conflict_rules
from fusevault.vault.services.conflict_copies import copy_ident
from fusevault.vault.services.conflict_rules import Leaf, decide
from fusevault.vault.tree import her_leaves

FID, TEAM, ROOT = "f" * 32, "t" * 32, "r" * 32
ALICE, BOB = "alice", "bob"
OLD, NEW = b"o" * 32, b"n" * 32


def _node(epoch: int, dek: bytes = OLD, mode: int = stat.S_IFREG | 0o644) -> Node:
    node = Node(2, FID, ALICE, dek, mode, 1000, 1000, when=1)
    node.epoch = epoch
    return node


# --- 1, 2: her leaves under a cap a server or member fills

class _Trust:
    """Signatures: "alice"/"bob" verify as that signer (the same body may be stored under many
    revision ids: ``_rev`` is not signed), anything else is forged.  Counts the checks."""

    def __init__(self) -> None:
        self.checked = 0

    def verify(self, doc: dict, author: str | None = None) -> str:
        self.checked += 1
        if doc.get("sig") not in (ALICE, BOB):
            raise Forged("bad signature")
        return str(doc["sig"])


def _leaf(rev: str, epoch: int, parent: str, sig: str = ALICE) -> dict:
    return {"_id": FID, "_rev": rev, "owner": ALICE, "sig": sig, "node": _node(epoch),
            "links": [(parent, b"plan.txt")]}


def _her_leaf_beside_his(monkeypatch, leaves: list[dict]) -> Node | None:
    """``her_leaves._her_leaf`` as ``hers_beside_copies`` calls it: bob's current branch is epoch 1 (the
    key before her move); ``fits`` is ``loaded_copy``'s test as far as epochs go (``writers_copy``: his
    epoch below hers)."""
    monkeypatch.setattr(her_leaves, "replica", SimpleNamespace(
        local_of=lambda store: store, in_conflict=lambda local, fid: True,
        other_leaves=lambda local, fid, **reading: list(leaves)))
    monkeypatch.setattr(her_leaves, "open_node_doc", lambda doc, key: (b"k" * 32, doc))
    monkeypatch.setattr(her_leaves, "node_from_doc", lambda doc, dek, attrs: (doc["node"], doc["links"]))
    gate = SimpleNamespace(trust=_Trust())
    his_epoch = 1
    found = her_leaves._her_leaf(object(), SimpleNamespace(user_id=ALICE), gate, _node(his_epoch),  # type: ignore[arg-type]
                                 lambda hers: hers.epoch > his_epoch)
    return None if found is None else found[0]


def _moved_out_under_old_copies(copies: int) -> tuple[dict, list[dict]]:
    """Her moved-out leaf (epoch 2, at the top) at generation 5; ``copies`` times one old body of hers
    (team/plan.txt, epoch 1, her genuine signature) at generation 6, each its own revision id."""
    hers = _leaf("5-moved", 2, ROOT)
    old = _leaf("0-x", 1, TEAM)
    return hers, [{**old, "_rev": f"6-{i:032x}"} for i in range(copies)] + [hers]


def test_control_her_moved_out_leaf_is_found_under_fifteen_copies_of_her_old_state(monkeypatch) -> None:
    hers, leaves = _moved_out_under_old_copies(her_leaves.HER_LEAVES - 1)
    assert _her_leaf_beside_his(monkeypatch, leaves) is hers["node"]


def test_her_moved_out_leaf_is_found_under_sixteen_copies_of_her_old_state(monkeypatch) -> None:
    hers, leaves = _moved_out_under_old_copies(her_leaves.HER_LEAVES)
    assert _her_leaf_beside_his(monkeypatch, leaves) is hers["node"]


@pytest.mark.parametrize("sig", ["bad"])
def test_control_her_leaf_is_found_under_a_few_hundred_fewer_leaves(monkeypatch, sig: str) -> None:
    hers = _leaf("5-moved", 2, ROOT)
    leaves = [_leaf(f"6-{i:032x}", 1, TEAM, sig) for i in range(her_leaves.HER_LEAVES_CHECKED - 1)] + [hers]
    assert _her_leaf_beside_his(monkeypatch, leaves) is hers["node"]


@pytest.mark.parametrize("sig", [BOB, "bad"], ids=["member's", "altered"])
def test_her_leaf_is_found_under_the_checked_cap_of_leaves(monkeypatch, sig: str) -> None:
    hers = _leaf("5-moved", 2, ROOT)
    leaves = [_leaf(f"6-{i:032x}", 1, TEAM, sig) for i in range(her_leaves.HER_LEAVES_CHECKED)] + [hers]
    assert _her_leaf_beside_his(monkeypatch, leaves) is hers["node"]


# --- 3: a member's node held at the copy's id

def _her_losing_edit() -> Leaf:
    """Rule 4: her laptop's edit of team/plan.txt, the loser (bob's or her desktop's later mtime)."""
    node = _node(0)
    node.head = "9" * 32
    doc = {"_id": FID, "_rev": "3-l", "owner": ALICE, "sig": {"by": ALICE, "ed25519": "x"}}
    return Leaf(doc, node, [(TEAM, b"plan.txt")], ["3-l", "2-a"])


def _copy_ident_with(held: dict[str, Node]) -> tuple[tuple[str, bytes] | None, Alarms]:
    alarms = Alarms()
    volume = SimpleNamespace(holds=lambda fid: fid in held, find=held.get,
                             authorship=SimpleNamespace(trust=SimpleNamespace()),
                             key=SimpleNamespace(user_id=ALICE), trust=SimpleNamespace(alarms=alarms),
                             ledger=None)
    loser = _her_losing_edit()
    ident = copy_ident(FID, str(loser.doc["_rev"]), loser.node.dek)
    return conflict_copies._copy_ident(volume, SimpleNamespace(get=lambda fid: None), loser, ident), alarms  # type: ignore[arg-type]


def test_control_nothing_at_the_copy_id_makes_the_copy_there() -> None:
    found, _ = _copy_ident_with({})
    assert found == copy_ident(FID, "3-l", OLD)


def test_a_members_node_held_at_the_copy_id_is_not_the_copy() -> None:
    first, _ = copy_ident(FID, "3-l", OLD)
    bobs = Node(7, first, BOB, b"b" * 32, stat.S_IFREG | 0o644, 1000, 1000, when=1)  # his own file
    found, alarms = _copy_ident_with({first: bobs})
    assert found is not None or alarms.as_list(), "her edit's copy counted as made: bob's file is at its id"


# --- 4: two states of the member, then hers by signature

@pytest.fixture
def judged(monkeypatch) -> None:
    now = iter(range(10**18, 2 * 10**18, 1000))
    monkeypatch.setattr(nodes, "now_ns", lambda: next(now))
    monkeypatch.setattr(conflict_rules, "is_hers", lambda volume, leaf: leaf.doc.get("by") == ALICE)


def _folder_leaf(by: str, rev: str, dek: bytes, epoch: int) -> Leaf:
    node = _node(epoch, dek, stat.S_IFDIR | 0o755)
    node.links = [(TEAM, b"sub")]
    return Leaf({"_id": FID, "_rev": rev, "delete": False, "by": by}, node, node.links, [rev, "1-a"])


def test_two_states_of_the_member_do_not_undo_her_re_key(judged) -> None:
    said: list[str] = []
    volume = SimpleNamespace(authorship=SimpleNamespace(deny=lambda doc, why: said.append(why)))
    her_rekey = _folder_leaf(ALICE, "2-d", NEW, 1)      # her unshare of carol: team/sub re-keyed in place
    his_a = _folder_leaf(BOB, "9-a", OLD, 0)           # current: more generations
    his_b = _folder_leaf(BOB, "2-b", OLD, 2**40)       # settled first (his revision id's choice)
    keeper, _, loser = decide(None, his_a, his_b, None, volume)  # type: ignore[arg-type]
    assert loser is None
    # ``_adopt`` commits the keeper's state on her device: the current revision is now signed by her.
    adopted = _folder_leaf(ALICE, "10-s", keeper.node.dek, keeper.node.epoch)
    final, _, _ = decide(None, adopted, her_rekey, None, volume)  # type: ignore[arg-type]
    assert final.node.dek == NEW, (final.node.epoch, said)


def test_control_her_re_key_stands_beside_one_state_of_the_member(judged) -> None:
    volume = SimpleNamespace(authorship=SimpleNamespace(deny=lambda doc, why: None))
    her_rekey = _folder_leaf(ALICE, "2-d", NEW, 1)
    his_b = _folder_leaf(BOB, "2-b", OLD, 2**40)
    assert decide(None, his_b, her_rekey, None, volume)[0].node.dek == NEW  # type: ignore[arg-type]


# --- 5: a member's state claiming her very epoch under the old key

def test_a_members_state_claiming_her_epoch_does_not_keep_the_old_key(judged) -> None:
    said: list[str] = []
    volume = SimpleNamespace(authorship=SimpleNamespace(deny=lambda doc, why: said.append(why)))
    her_rekey = _folder_leaf(ALICE, "2-d", NEW, 1)
    his = _folder_leaf(BOB, "2-b", OLD, 1)  # made over the old state, the epoch her re-key sealed claimed
    his.node.ctime = her_rekey.node.ctime + 60 * 10**9
    for mine, theirs in ((her_rekey, his), (his, her_rekey)):
        keeper = decide(None, mine, theirs, None, volume)[0]  # type: ignore[arg-type]
        assert keeper.node.dek == NEW or said, "his claim of her epoch kept the key carol holds"


# --- 6: a member's honest rename, his clock a few minutes ahead of hers

def _rename_beside_her_unshare(monkeypatch, ahead: int) -> list[tuple[str, bytes]]:
    """team/sub, renamed by her long ago (a links stamp of hers, S0: a file manager's "New folder"
    renamed).  Her desktop unshares carol: team/sub re-keyed in place (epoch 1), links untouched.  Then
    bob, his clock ``ahead`` ns ahead of hers, renames it team/sub2 (``note_change``: his clock's now);
    her desktop takes his signed state in a minute later (``node_from_doc``: a member's stamp ahead
    of this clock is none) and settles (rule 2, ``_her_key_beside_his``).  The names settled."""
    from unit.test_stamps_by_signer_43c import _taken

    clock = iter(range(10**18, 2 * 10**18, 10**9))
    real = [10**18]

    def now() -> int:
        real[0] = next(clock)
        return real[0]

    monkeypatch.setattr(nodes, "now_ns", lambda: now())
    monkeypatch.setattr(conflict_rules, "is_hers", lambda volume, leaf: leaf.doc.get("by") == ALICE)
    hers = _node(1, NEW, stat.S_IFDIR | 0o755)
    hers.changed = {"links": 10**18 - 30 * 86400 * 10**9}  # her rename, a month ago
    his = _node(0, OLD, stat.S_IFDIR | 0o755)
    his.changed = dict(hers.changed)
    his.changed["links"] = now() + ahead  # nodes.note_change on his device: his clock's now
    for _ in range(60):
        now()  # a minute passes: the state reaches her desktop
    taken = _taken(his, "b" * 32)  # signed by bob, taken in here
    taken.epoch = 0
    mine = Leaf({"_id": FID, "_rev": "3-d", "delete": False, "by": ALICE}, hers, [(TEAM, b"sub")],
                ["3-d", "2-a"])
    theirs = Leaf({"_id": FID, "_rev": "3-b", "delete": False, "by": BOB}, taken, [(TEAM, b"sub2")],
                  ["3-b", "2-a"])
    hers.links, taken.links = mine.links, theirs.links
    volume = SimpleNamespace(authorship=SimpleNamespace(deny=lambda doc, why: None))
    keeper, named, loser = decide(None, mine, theirs, None, volume)  # type: ignore[arg-type]
    assert keeper is mine  # her new key stands (right)
    named, _ = conflict_rules.apart(volume, mine, theirs, keeper, named, loser)  # type: ignore[arg-type]
    return named.links


def test_control_bobs_rename_beside_her_unshare_is_kept_with_clocks_right(monkeypatch) -> None:
    assert _rename_beside_her_unshare(monkeypatch, 0) == [(TEAM, b"sub2")]


def test_bobs_rename_beside_her_unshare_is_kept_with_his_clock_five_minutes_ahead(monkeypatch) -> None:
    assert _rename_beside_her_unshare(monkeypatch, 5 * 60 * 10**9) == [(TEAM, b"sub2")]
