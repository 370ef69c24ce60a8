"""Round 46d: attack on 43c (5)'s fix (59b1fd6, ae58a81): vault/services/conflict_rules.py
``_rekeyed_by_a_move`` / ``_made_over`` decide, when two states of her file differ in key epoch (rule 2,
or rule 3's 41b (2) guard), whether the higher-epoch side keeps its names (a move out of a share) or the
names changed last stand (a re-key in place beside a later move), by her signed placement stamps
(``Node.placed``) and what the other state was made over (its seq, its signed ``over``).

Attacker: a WRITE member (signs his own states), the CouchDB server, and honest use.  Unit only
(``decide`` / ``apart`` as ``_settle_one`` calls them, as tests/unit/test_conflicts_rekey_in_place_43c.py
does); ``-n 0``.

1. **Her move out of a share to the folder her stamp still names is undone by a later rename in the share
   (medium-high: the author's risk (a), confirmed at a mount; key/confidentiality).**
   Attack: her file x sits in A (her stamp {A, desktop 3}); bob (WRITE on her folders A and B, two
   shares) moves it A -> B: his state carries her stamp unchanged.  She unshares A from bob, then (desktop)
   moves x B -> A, out of bob's share: re-keyed (epoch 1), but no new stamp (``inodes._place_stamps``
   signs one only when the parents differ from the stamp's, and they do not: A).  Apart, later, a rename
   of x within B on her laptop (honest use: it had not seen the move).
   Seen: rules 2 and 3 give the rename's names (B) with the new key, for both orders.
   Cause: ``_rekeyed_by_a_move`` returns False when the other state carries the same stamp
   (``other.node.placed == placed``), taken for "made over that placement"; her move to the stamp's own
   folder signed none, so the stamp both carry says nothing of it.
   Impact: her move out of the share undone unsaid: x back in B under her new key, bob (or whoever B is
   shared with) reads everything she writes next (41b (2) back; before 59b1fd6 the re-keyed side kept
   its names whenever the folders differed: a regression).  Seen at a mount too
   (tests/mount/test_trust_attack_46d.py): both devices show proj/y holding "private now" (written after
   the move out), and bob's key file opens the current document; control: the move out to another folder
   (a new stamp) stays out.  The precondition needs no unshare either: carol (WRITE on A and B) moves
   x A -> B; she moves it back to A, away from bob (B only).  Held: bob's own concurrent rename (he
   offline during her move) is ``leaf_verdict`` COPY (``writers_copy``) on her devices, never reaching
   ``decide``: seen at a mount (one run, not kept), priv/x on both, his key opens nothing.
   Fix (suggested): sign a new stamp at every commit that re-keys by a move (or whenever the commit's
   parents differ from the state it was made over, not only from the stamp's), so a move out always
   carries a stamp of its own commit; or tell "moved" by the state's own previous parents as well.
   Tests: ``test_her_move_out_to_the_folder_her_stamp_names_beside_her_later_rename_in_the_share``;
   control ``test_control_her_move_out_to_a_new_folder_keeps_its_place``; at a mount
   tests/mount/test_trust_attack_46d.py::test_her_move_out_to_the_folder_her_stamp_names_stays_out_of_the_share.

2. **A re-key in place still undoes her later move when the stamp reached her other device through a
   member's document (low-medium, honest use: 43c (5) back).**
   Scene: the desktop moves x into team (its commit 5: stamp {team, desktop 5}); bob (WRITE on team) then
   edits x, and her laptop syncs only his revision (CouchDB sends the leaf: the desktop's commit 5 is
   never seen there; the laptop's ``over`` names desktop 3 at most, his seq is kept apart).  The desktop
   unshares carol from team (x re-keyed in place, epoch 1, stamp unchanged); apart, later, the laptop
   moves x team -> team/archive (a new stamp of its own).
   Seen: the desktop's names (team) stand, rule 2 and rule 3, both orders: her later move undone unsaid.
   Control: the same with the laptop having seen commit 5 itself (``over`` {desktop: 5}): archive kept.
   Cause: ``_made_over`` knows only the other state's seq and ``over``; the stamp the laptop carried (and
   so the placement its state was made over) is replaced by its own at its move, and ``ledger.made_over``
   never folds a carried stamp's seq into ``over`` (``saw_placed`` records it as seen, not as covered).
   Broader, the same hole with no stamp to carry: the re-key in place itself signs a stamp whenever x
   sits where no stamp of hers names (``_place_stamps``: parents differ from the stamp's, or none yet):
   every file bob created in team (never committed by her since) or moved within it.  That stamp is of
   the re-key's own commit (desktop 9), which the laptop's state was never made over: taken for a move
   made apart, and the laptop's later move (team/sub/x -> team/archive/x) is undone, rules 2 and 3.
   In a shared folder, files a member created or moved are the common case.
   Fix (suggested): tell "moved apart" by what the commit did, not by the stamp's age: sign in the stamp
   the parents the file had before that commit (``from``), or sign none at a commit that keeps the file
   where it was (carry the old one); and fold a carried stamp's seq (if it holds under her key) into the
   ``over`` of the state made over it (``ledger.made_over``).  Tests:
   ``test_her_later_move_beside_a_re_key_in_place_when_the_stamp_came_through_bob``,
   ``test_her_later_move_beside_an_unshare_of_a_file_a_member_placed`` (bob created it / moved it);
   control ``test_control_her_later_move_beside_a_re_key_in_place_made_over_the_stamp``; at a mount
   tests/mount/test_trust_attack_46d.py::test_her_later_move_beside_her_unshare_of_a_file_bob_moved_is_kept
   (seen: proj/sub/notes.txt on both devices; control with her own earlier move: archive kept).
   Fixed: a commit that keeps the file where the device had it signs no stamp (``inodes._places_it``), her
   re-keyed state with no stamp (a vault with key pairs) is no move
   (``conflict_rules._rekeyed_by_a_move``), and a commit over a state carrying her stamp of another
   device's commit names it in ``over``
   (``Ledger._carried``: where bob's state came alone, ``superseded`` already covered it; beside a live
   branch nothing did).  The tests now take the desktop's stamp from ``Inodes._place_stamps`` and the
   laptop's ``over`` from its ledger (``admit``, ``stamp``), not as the code gave them before.

Run 09:00 UTC, 2026-12-06: 3 passed, 8 xfailed; under --runxfail the 8 fail at their names assertion.
Mount (one run each, 08:54-08:58 UTC): 2 xfails fail at their assertion under --runxfail, 2 controls pass.
"""

from __future__ import annotations

import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fusevault.crypto.keys import MasterKey
from fusevault.vault.model import nodes
from fusevault.vault.model.alarms import Alarms
from fusevault.vault.model.ledger import Ledger
from fusevault.vault.model.nodes import Node, note_change
from fusevault.vault.services import conflict_rules
from fusevault.vault.services.conflict_rules import Leaf, apart, decide
from fusevault.vault.tree.inodes import Inodes

FID, A, B, TEAM, ARCHIVE, SUB = "f" * 32, "a" * 32, "b" * 32, "t" * 32, "c" * 32, "s" * 32
ALICE, DESKTOP, LAPTOP = "alice", "d" * 16, "1" * 16
RULES = pytest.mark.parametrize("head", [None, "v-resealed"], ids=["rule2", "rule3"])


@pytest.fixture(autouse=True)
def clock(monkeypatch) -> None:
    """A clock that moves at each reading: the later change is the one made later here."""
    now = iter(range(10**18, 2 * 10**18, 1000))
    monkeypatch.setattr(nodes, "now_ns", lambda: next(now))


@pytest.fixture(autouse=True)
def signers(monkeypatch) -> None:
    """Her states are hers, bob's are his (the signature as ``Leaf.doc["sig"]["by"]`` says)."""
    monkeypatch.setattr(conflict_rules, "is_hers", lambda volume, leaf: _said(leaf) == ALICE)


def _said(leaf: Leaf) -> str:
    return (leaf.doc.get("sig") or {}).get("by", ALICE)


def _placed(parent: str, device: str, n: int) -> dict:
    return {"parents": [parent], "seq": [device, n], "sig": f"sig of {parent} at {device} {n}"}


def _base(placed: dict) -> Node:
    node = Node(2, FID, ALICE, b"o" * 32, stat.S_IFREG | 0o644, 1000, 1000, when=1)
    node.head = "v-base"
    node.placed = dict(placed)
    note_change(node, "links")
    return node


def _leaf(node: Node, rev: str, parent: str, by: str = ALICE) -> Leaf:
    node.links = [(parent, b"x")]
    doc = {"_id": FID, "_rev": rev, "delete": False, "owner": ALICE, "sig": {"by": by}}
    return Leaf(doc, node, node.links, [rev, "1-a"])


def _rekeyed(node: Node, seq: int, head: str | None) -> None:
    node.dek, node.epoch, node.seq = b"n" * 32, 1, (DESKTOP, seq)
    if head is not None:
        node.head = head  # its contents sealed again under the new key: rule 3


def _volume() -> SimpleNamespace:
    return SimpleNamespace(authorship=SimpleNamespace(deny=lambda doc, why: None))


def _settled(mine: Leaf, theirs: Leaf) -> tuple[Leaf, Leaf]:
    """(the kept leaf, the leaf whose names it gets), as ``_settle_one`` settles them."""
    volume = _volume()
    keeper, named, loser = decide(None, mine, theirs, None, volume)  # type: ignore[arg-type]
    assert loser is None
    named, _ = apart(volume, mine, theirs, keeper, named, loser)  # type: ignore[arg-type]
    return keeper, named


def _rule3(monkeypatch, head: str | None) -> None:
    if head is not None:
        monkeypatch.setattr(conflict_rules, "descends",
                            lambda store, leaf, ancestor, key: leaf.node.epoch == 1)


# --- 1: her move out of a share to the folder her stamp still names

def _moved_back_out(head: str | None, by: str, stamped_anew: bool = False) -> tuple[Leaf, Leaf]:
    """x in B (bob moved it there from A: her stamp still {A, desktop 3}).  The desktop moves it B -> A
    (its commit 7, out of bob's share: epoch 1; no new stamp, A being the stamp's own folder; with
    ``stamped_anew`` a new one, as a move to any other folder signs); apart, later, ``by`` renames it within
    B (``by``: her laptop, made over bob's state; bob's own rename is stopped before ``decide``)."""
    stamp = _placed(A, DESKTOP, 3)
    desktop, other = _base(stamp), _base(stamp)
    _rekeyed(desktop, 7, head)
    note_change(desktop, "links")
    if stamped_anew:
        desktop.placed = _placed(A, DESKTOP, 7)
    if by == ALICE:
        other.seq, other.over = (LAPTOP, 9), {DESKTOP: 3}
    else:
        other.seq, other.over = ("b0bdev", 12), None
    note_change(other, "links")
    return _leaf(desktop, "4-d", A), _leaf(other, "4-o", B, by)


def test_control_her_move_out_to_a_new_folder_keeps_its_place(monkeypatch) -> None:
    _rule3(monkeypatch, "v-resealed")
    moved_out, renamed = _moved_back_out("v-resealed", ALICE, stamped_anew=True)
    for mine, theirs in ((moved_out, renamed), (renamed, moved_out)):
        keeper, named = _settled(mine, theirs)
        assert keeper is moved_out and named.links == [(A, b"x")]


@RULES
def test_her_move_out_to_the_folder_her_stamp_names_beside_her_later_rename_in_the_share(
        head: str | None, monkeypatch) -> None:
    _rule3(monkeypatch, head)
    moved_out, renamed = _moved_back_out(head, ALICE)
    for mine, theirs in ((moved_out, renamed), (renamed, moved_out)):
        keeper, named = _settled(mine, theirs)
        assert keeper is moved_out
        assert named.links == [(A, b"x")]  # seen: [(B, b"x")], back in bob's share under her new key


# --- 2: the stamp reached her other device through a member's document

def _unshared_then_moved(head: str | None, laptop_over: int | Ledger) -> tuple[Leaf, Leaf]:
    """x put in team by the desktop's commit 5 (stamp {team, desktop 5}); bob's edit carried it to the
    laptop, which saw desktop states up to ``laptop_over``.  The desktop re-keys x in place (unshare of
    carol: epoch 1, its commit 9); apart, later, the laptop moves it to team/archive (its commit 12).
    ``laptop_over`` a ledger: the laptop saw desktop 3 only, then bob's state carrying the stamp, and its
    move's ``over`` is what that ledger gives it (``Ledger.stamp``, as ``Inodes.commit`` does)."""
    stamp = _placed(TEAM, DESKTOP, 5)
    desktop, laptop = _base(stamp), _base(stamp)
    _rekeyed(desktop, 9, head)
    if isinstance(laptop_over, Ledger):
        laptop.seq, laptop.over = ("b0bdev", 7), None  # bob's state, as the laptop holds it
        note_change(laptop, "links")
        laptop_over.stamp([laptop])
        laptop.seq = (LAPTOP, 12)
    else:
        laptop.seq, laptop.over = (LAPTOP, 12), {DESKTOP: laptop_over}
        note_change(laptop, "links")
    laptop.placed = _placed(ARCHIVE, LAPTOP, 12)  # its move signs its own stamp
    return _leaf(desktop, "5-d", TEAM), _leaf(laptop, "5-l", ARCHIVE)


def _laptop_through_bob(tmp_path: Path, in_conflict: bool = True) -> Ledger:
    """The laptop's ledger: her desktop's state 3 taken (x in A), then bob's edit, carrying the desktop's
    stamp of its commit 5 (x in team), taken as ``absorb_node`` takes it: the stamp followed when his
    move is judged (``Authorship.was_placed`` -> ``saw_placed``), then ``Ledger.admit`` (his seq kept
    apart), placed where it puts x (``arrived``).  ``in_conflict``: another live branch of x was held
    then (the ledger supersedes nothing: the settling judges the branches), so nothing seen is covered
    by it; without one, every state seen before, the stamp's commit too, is (``superseded``)."""
    ledger = Ledger.open(MasterKey(ALICE, b"m" * 32), tmp_path / "vault", "vault-id", Alarms())
    ledger.record(FID, (DESKTOP, 3), True)
    ledger.arrived(FID, [A], True)
    ledger.saw_placed(FID, [TEAM], (DESKTOP, 5))
    bobs = _base(_placed(TEAM, DESKTOP, 5))
    bobs.seq = ("b0bdev", 7)
    doc = {"_id": FID, "_rev": "5-b", "owner": ALICE, "sig": {"by": "bob"}}
    assert ledger.admit(SimpleNamespace(), doc, bobs, lambda: in_conflict)  # type: ignore[arg-type]
    ledger.arrived(FID, [TEAM], False)
    return ledger


@RULES
def test_control_her_later_move_beside_a_re_key_in_place_made_over_the_stamp(
        head: str | None, monkeypatch) -> None:
    _rule3(monkeypatch, head)
    rekeyed, moved = _unshared_then_moved(head, laptop_over=5)
    for mine, theirs in ((rekeyed, moved), (moved, rekeyed)):
        keeper, named = _settled(mine, theirs)
        assert keeper is rekeyed and named.links == [(ARCHIVE, b"x")]


@RULES
@pytest.mark.parametrize("in_conflict", [True, False], ids=["beside-a-branch", "alone"])
def test_her_later_move_beside_a_re_key_in_place_when_the_stamp_came_through_bob(
        head: str | None, in_conflict: bool, monkeypatch, tmp_path: Path) -> None:
    """Fixed: the laptop's move is signed over the commit of the stamp its state carried
    (``Ledger._carried``): {desktop: 5}, where its ledger gave {desktop: 3} at most when bob's state came
    beside a live branch (alone, ``superseded`` covered the stamp's commit already)."""
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))
    _rule3(monkeypatch, head)
    rekeyed, moved = _unshared_then_moved(head, laptop_over=_laptop_through_bob(tmp_path, in_conflict))
    assert moved.node.over == {DESKTOP: 5}
    for mine, theirs in ((rekeyed, moved), (moved, rekeyed)):
        keeper, named = _settled(mine, theirs)
        assert keeper is rekeyed
        assert named.links == [(ARCHIVE, b"x")]  # seen: [(TEAM, b"x")], her later move undone unsaid


# --- 2 (b): the re-key in place signs the file's first stamp of hers where it sits


def _member_placed_then_unshared(head: str | None, before: dict | None) -> tuple[Leaf, Leaf]:
    """x sits in team/sub where bob put it (``before``: the stamp it carried, None: bob created it, no
    stamp of hers yet; else her stamp of team, the folder he moved it from).  The desktop unshares carol:
    x re-keyed in place (epoch 1, its commit 9), with the stamp its commit leaves it
    (``inodes._place_stamps``, the desktop having taken bob's state in team/sub: ``was_at``; seen: it
    signed a stamp of where x sits, its parents not the stamp's).  Apart, later, the laptop (made over
    desktop 3, then bob's state) moves x to team/archive (its commit 12, its own stamp)."""
    desktop, laptop = _base(before or {}), _base(before or {})
    desktop.placed = laptop.placed = before
    _rekeyed(desktop, 9, head)
    desktop.links = [(SUB, b"x")]  # type: ignore[list-item]  (a document's names: folder fids)
    desktop.placed = _committed_stamp(desktop, was_at=[SUB], parents=[SUB])
    laptop.seq, laptop.over = (LAPTOP, 12), {DESKTOP: 3}
    note_change(laptop, "links")
    laptop.placed = _placed(ARCHIVE, LAPTOP, 12)
    return _leaf(desktop, "6-d", SUB), _leaf(laptop, "6-l", ARCHIVE)


def _committed_stamp(node: Node, was_at: list[str], parents: list[str], live: bool = True) -> dict | None:
    """The stamp the desktop's commit of ``node`` in ``parents`` leaves it (``Inodes._place_stamps``), the
    state it was made over here in ``was_at`` (``live`` False: in the trash)."""
    tree = SimpleNamespace(
        key=SimpleNamespace(identity=SimpleNamespace(sign=Ed25519PrivateKey.generate()), user_id=ALICE),
        ledger=SimpleNamespace(behind={}, was_at=lambda fid: was_at, seen_live=lambda fid: live),
        layout=SimpleNamespace(vault_id="v" * 32), is_deleted=lambda node: False)
    Inodes._place_stamps(tree, [node], [parents])  # type: ignore[arg-type]
    return node.placed


def test_a_commit_that_keeps_the_file_where_it_was_signs_no_stamp() -> None:
    """46d (2): the stamp says where she put the file: a commit that moves it signs one, one that keeps it
    where this device had it (a member put it there) carries the stamp it had, or none (he created it);
    her file brought back from the trash is placed by her (a stamp, as before)."""
    team = _placed(TEAM, DESKTOP, 3)
    for before in (None, team):
        node = _base(before or {})
        node.placed, node.seq = before, (DESKTOP, 9)
        node.links = [(SUB, b"x")]  # type: ignore[list-item]
        assert _committed_stamp(node, was_at=[SUB], parents=[SUB]) == before  # kept in place: as it was
        moved = _committed_stamp(node, was_at=[SUB], parents=[ARCHIVE])  # her move
        assert moved is not None and moved["parents"] == [ARCHIVE] and moved["seq"] == [DESKTOP, 9]
    restored = _base({})
    restored.placed, restored.seq = None, (DESKTOP, 9)
    restored.links = [(SUB, b"x")]  # type: ignore[list-item]
    back = _committed_stamp(restored, was_at=[SUB], parents=[SUB], live=False)
    assert back is not None and back["parents"] == [SUB]


def test_a_carried_stamp_is_in_the_over_of_the_state_made_over_it_only_where_it_was_seen(
        monkeypatch, tmp_path: Path) -> None:
    """46d (2): the laptop's commit over bob's state names the desktop's commit whose stamp that state
    carries (``Ledger._carried``), only where the laptop followed it (or saw that device that far), has
    the file where it puts it, and it is no live branch; never its own device's, nor a writer's."""
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))
    ledger = _laptop_through_bob(tmp_path)
    carried = _placed(TEAM, DESKTOP, 5)
    assert ledger.made_over(FID, None, ("b0bdev", 7), carried) == {DESKTOP: 5}
    assert ledger.made_over(FID, {DESKTOP: 6}, None, carried) == {DESKTOP: 6}  # an older one: no change
    assert ledger.made_over(FID, None, None, _placed(TEAM, DESKTOP, 6)) is None  # not seen that far
    assert ledger.made_over(FID, None, None, _placed(A, DESKTOP, 5)) is None  # not where it puts x
    his = {"parents": [TEAM], "seq": ["b0bdev/bob", 7], "sig": "s"}
    assert ledger.made_over(FID, None, None, his) is None
    assert ledger.made_over(FID, None, None, _placed(TEAM, ledger.device, 1)) is None
    ledger.branch(FID, (DESKTOP, 5))
    assert ledger.made_over(FID, None, None, carried) is None  # a live branch: never taken as an ancestor


@RULES
@pytest.mark.parametrize("before", [None, _placed(TEAM, DESKTOP, 3)], ids=["created-by-bob", "moved-by-bob"])
def test_her_later_move_beside_an_unshare_of_a_file_a_member_placed(
        head: str | None, before: dict | None, monkeypatch) -> None:
    _rule3(monkeypatch, head)
    rekeyed, moved = _member_placed_then_unshared(head, before)
    for mine, theirs in ((rekeyed, moved), (moved, rekeyed)):
        keeper, named = _settled(mine, theirs)
        assert keeper is rekeyed
        assert named.links == [(ARCHIVE, b"x")]  # seen: [(SUB, b"x")], her later move undone unsaid
