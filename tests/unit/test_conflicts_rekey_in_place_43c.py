"""Round 43c (5) (tests/unit/test_attack_43c.py): beside her re-key in place (an unshare, a rotation: the
folder kept) on one device, her later move on the other is kept, with the new key; beside her move out
of a share (a re-key by a move) a later rename in the share is not (round 41b (2)).  Their change
stamps alone do not tell the two apart: the signed placement stamps (``Node.placed``) and what each
state was made over (``seq``, ``over``) do (vault/services/conflict_rules.py ``_rekeyed_by_a_move``).
Rule 2 (an empty file or a folder: the same head) and rule 3 (a re-key that sealed its contents again)."""

from __future__ import annotations

import stat
from types import SimpleNamespace

import pytest

from fusevault.vault.model import nodes
from fusevault.vault.model.nodes import Node, note_change
from fusevault.vault.services import conflict_rules
from fusevault.vault.services.conflict_rules import Leaf, apart, decide

FID, TEAM, PROJ, ARCHIVE, ROOT = "f" * 32, "t" * 32, "p" * 32, "a" * 32, "r" * 32
ALICE, DESKTOP, LAPTOP = "alice", "d" * 16, "1" * 16


@pytest.fixture(autouse=True)
def clock(monkeypatch) -> None:
    """A clock that moves at each reading: the later change is the one made later here."""
    now = iter(range(10**18, 2 * 10**18, 1000))
    monkeypatch.setattr(nodes, "now_ns", lambda: next(now))


def _placed(parent: str, device: str, n: int) -> dict:
    return {"parents": [parent], "seq": [device, n], "sig": f"sig of {parent} at {device} {n}"}


def _base(epoch: int, dek: bytes, when: int) -> Node:
    """Her file as both devices had it: placed in proj by the desktop's commit 3, named by a move
    then (its ``links`` stamp: a stamp alone says nothing of which side moved apart)."""
    node = Node(2, FID, ALICE, dek, stat.S_IFREG | 0o644, 1000, 1000, when=when)
    node.epoch = epoch
    node.head = "v-base"
    node.placed = _placed(PROJ, DESKTOP, 3)
    note_change(node, "links")
    return node


def _leaf(node: Node, rev: str, parent: str, by: str | None = None) -> Leaf:
    node.links = [(parent, b"blank")]
    doc = {"_id": FID, "_rev": rev, "delete": False, "owner": ALICE}
    if by is not None:
        doc["sig"] = {"by": by}
    return Leaf(doc, node, node.links, [rev, "1-a"])


def _rekeyed_in_place_then_moved(head: str | None = None) -> tuple[Leaf, Leaf]:
    """The desktop re-keys proj/blank in place (epoch 1, its commit 5, the stamp of where it is kept);
    apart, later, the laptop (made over the desktop's commit 3) moves it to archive (its commit 9)."""
    desktop, laptop = _base(0, b"o" * 32, 1), _base(0, b"o" * 32, 1)
    desktop.dek, desktop.epoch, desktop.seq = b"n" * 32, 1, (DESKTOP, 5)
    if head is not None:
        desktop.head = head  # its contents sealed again under the new key: rule 3
    laptop.seq, laptop.over = (LAPTOP, 9), {DESKTOP: 3}
    note_change(laptop, "links")
    laptop.placed = _placed(ARCHIVE, LAPTOP, 9)
    return _leaf(desktop, "3-d", PROJ), _leaf(laptop, "3-l", ARCHIVE)


def _moved_out_then_renamed(head: str | None = None, his: bool = False) -> tuple[Leaf, Leaf]:
    """The desktop moves proj/blank out of the share to the top (a re-key: epoch 1, its commit 5, a new
    placement stamp); apart, later, the laptop (made over commit 3) renames it within proj (``his``:
    bob, who writes in proj, renames it, sealing a seq naming her desktop far ahead)."""
    desktop, other = _base(0, b"o" * 32, 1), _base(0, b"o" * 32, 1)
    desktop.dek, desktop.epoch, desktop.seq = b"n" * 32, 1, (DESKTOP, 5)
    if head is not None:
        desktop.head = head
    note_change(desktop, "links")
    desktop.placed = _placed(ROOT, DESKTOP, 5)
    other.seq, other.over = ((DESKTOP, 10**6), None) if his else ((LAPTOP, 9), {DESKTOP: 3})
    note_change(other, "links")
    return _leaf(desktop, "3-d", ROOT), _leaf(other, "3-b" if his else "3-l", PROJ, "bob" if his else None)


def _settled(mine: Leaf, theirs: Leaf) -> tuple[Leaf, Leaf]:
    """(the kept leaf, the leaf whose names it gets), as ``_settle_one`` settles them."""
    keeper, named, loser = decide(None, mine, theirs, None)  # type: ignore[arg-type]
    assert loser is None
    named, _ = apart(SimpleNamespace(authorship=None), mine, theirs, keeper, named, loser)  # type: ignore[arg-type]
    return keeper, named


@pytest.mark.parametrize("head", [None, "v-resealed"], ids=["rule2", "rule3"])
def test_her_later_move_beside_a_re_key_in_place_is_kept_with_the_new_key(
        head: str | None, monkeypatch) -> None:
    if head is not None:
        monkeypatch.setattr(conflict_rules, "descends",
                            lambda store, leaf, ancestor, key: leaf.node.epoch == 1)
    rekeyed, moved = _rekeyed_in_place_then_moved(head)
    for mine, theirs in ((rekeyed, moved), (moved, rekeyed)):
        keeper, named = _settled(mine, theirs)
        assert keeper is rekeyed  # the new key
        assert named.links == [(ARCHIVE, b"blank")]  # her later move


@pytest.mark.parametrize("head", [None, "v-resealed"], ids=["rule2", "rule3"])
def test_her_move_out_of_a_share_beside_a_later_rename_in_it_keeps_its_place(
        head: str | None, monkeypatch) -> None:
    if head is not None:
        monkeypatch.setattr(conflict_rules, "descends",
                            lambda store, leaf, ancestor, key: leaf.node.epoch == 1)
    moved_out, renamed = _moved_out_then_renamed(head)
    for mine, theirs in ((moved_out, renamed), (renamed, moved_out)):
        keeper, named = _settled(mine, theirs)
        assert keeper is moved_out and named.links == [(ROOT, b"blank")]  # never back in the share


def test_a_members_seq_naming_her_device_ahead_does_not_undo_her_move_out(monkeypatch) -> None:
    monkeypatch.setattr(conflict_rules, "descends", lambda store, leaf, ancestor, key: leaf.node.epoch == 1)
    moved_out, his = _moved_out_then_renamed("v-resealed", his=True)
    for mine, theirs in ((moved_out, his), (his, moved_out)):
        assert decide(None, mine, theirs, None)[:2] == (moved_out, moved_out)  # type: ignore[arg-type]


def test_a_members_later_move_beside_her_re_key_in_place_is_kept_for_adopt_to_judge(monkeypatch) -> None:
    """Her unshare re-keys team/blank in place; apart, bob (WRITE on team) moves it to team/archive (his
    state carries her placement stamp over unchanged: the place both had before).  Her key stands, his
    names are taken (``_adopt`` judges them as his, ``leaf_ok``), as his rename in one folder is (43c (6))."""
    monkeypatch.setattr(conflict_rules, "is_hers", lambda volume, leaf: said(leaf) == ALICE)
    rekeyed, his = _rekeyed_in_place_then_moved()
    his.doc["sig"], his.node.seq, his.node.over = {"by": "bob"}, ("b0bdev", 7), None
    his.node.placed = dict(rekeyed.node.placed or {})  # carried over from hers, as his client does
    volume = SimpleNamespace(authorship=SimpleNamespace(deny=lambda doc, why: None))
    for mine, theirs in ((rekeyed, his), (his, rekeyed)):
        keeper, named, loser = decide(None, mine, theirs, None, volume)  # type: ignore[arg-type]
        named, _ = apart(volume, mine, theirs, keeper, named, loser)  # type: ignore[arg-type]
        assert keeper is rekeyed and named.links == [(ARCHIVE, b"blank")]


def said(leaf: Leaf) -> str | None:
    return (leaf.doc.get("sig") or {}).get("by", ALICE)
