"""Round 42b (6): rule 2 (the same contents on both sides) between her move of an empty file out of a
share (a re-key: a new key and epoch, no version, the same head) and a later chmod on her other device
kept the later state whole, under the old key the member holds, with the names of her move.  Fixed:
rule 2 keeps the newer key epoch (vault/services/conflict_rules.py ``decide``); the chmod is merged in
(``apart``).  The mount run: tests/mount/test_trust_attack_42b.py."""

from __future__ import annotations

import stat
from types import SimpleNamespace

import pytest

from fusevault.vault.model import nodes
from fusevault.vault.model.nodes import Node, note_change
from fusevault.vault.services.conflict_rules import Leaf, apart, decide

FID, PROJ, ROOT = "f" * 32, "p" * 32, "r" * 32


@pytest.fixture(autouse=True)
def clock(monkeypatch) -> None:
    """A clock that moves at each reading: the later change is the one made later here."""
    now = iter(range(10**18, 2 * 10**18, 1000))
    monkeypatch.setattr(nodes, "now_ns", lambda: next(now))


def _leaf(node: Node, rev: str, parent: str) -> Leaf:
    links = [(parent, b"blank")]
    node.links = links
    return Leaf({"_id": FID, "_rev": rev, "delete": False}, node, links, [rev, "1-a"])


def _blank(epoch: int, dek: bytes, ctime: int) -> Node:
    node = Node(2, FID, "alice", dek, stat.S_IFREG | 0o644, 1000, 1000, when=ctime)
    node.epoch = epoch
    return node


def _moved_out_and_chmodded() -> tuple[Leaf, Leaf]:
    """The desktop's move out of proj (epoch 1, a new key, links stamped), then the laptop's chmod 700
    of proj/blank (epoch 0, its later ctime)."""
    desktop, laptop = _blank(1, b"n" * 32, ctime=10), _blank(0, b"o" * 32, ctime=20)
    note_change(desktop, "links")
    laptop.mode = stat.S_IFREG | 0o700
    note_change(laptop, "mode")
    return _leaf(desktop, "2-d", ROOT), _leaf(laptop, "2-l", PROJ)


@pytest.mark.parametrize("current", ["desktop", "laptop"])
def test_rule_2_keeps_her_move_out_of_a_share_under_its_new_key_with_the_later_chmod(current: str) -> None:
    moved, chmodded = _moved_out_and_chmodded()
    mine, theirs = (moved, chmodded) if current == "desktop" else (chmodded, moved)
    keeper, named, loser = decide(None, mine, theirs, None)  # type: ignore[arg-type]  # rule 2 reads neither
    assert (keeper, named, loser) == (moved, moved, None)
    named, meta = apart(SimpleNamespace(authorship=None), mine, theirs, keeper, named, loser)  # type: ignore[arg-type]
    assert named is moved
    assert meta is not None and meta.perm == 0o700


def test_rule_2_at_one_epoch_keeps_the_later_state() -> None:
    first, later = _blank(0, b"o" * 32, ctime=10), _blank(0, b"o" * 32, ctime=20)
    a, b = _leaf(first, "2-a", PROJ), _leaf(later, "2-b", PROJ)
    for mine, theirs in ((a, b), (b, a)):
        assert decide(None, mine, theirs, None)[0] is b  # type: ignore[arg-type]
