"""Round 43c (8) (tests/unit/test_attack_43c.py): rule 2's "newer key" only between two states of hers.
A WRITE member's state claiming a higher epoch (his to seal, under her older key) beside her re-key in
place: her key and epoch stand, his names merged (``decide``/``_newer_key``, ``apart``).  Told hers
from his by the volume (``is_hers``); test_attack_43c.py's test calls ``decide`` with none."""

from __future__ import annotations

import stat
from types import SimpleNamespace

import pytest

from fusevault.vault.model import nodes
from fusevault.vault.model.nodes import Node, note_change
from fusevault.vault.services import conflict_rules
from fusevault.vault.services.conflict_rules import Leaf, apart, decide

FID, TEAM, ALICE = "f" * 32, "t" * 32, "alice"


@pytest.fixture(autouse=True)
def judged(monkeypatch) -> None:
    now = iter(range(10**18, 2 * 10**18, 1000))
    monkeypatch.setattr(nodes, "now_ns", lambda: next(now))
    monkeypatch.setattr(conflict_rules, "is_hers", lambda volume, leaf: leaf.doc.get("by") == ALICE)


def _leaf(by: str, rev: str, dek: bytes, epoch: int, name: bytes, when: int) -> Leaf:
    node = Node(2, FID, ALICE, dek, stat.S_IFDIR | 0o755, 1000, 1000, when=when)
    node.epoch = epoch
    node.links = [(TEAM, name)]
    return Leaf({"_id": FID, "_rev": rev, "delete": False, "by": by}, node, node.links, [rev, "1-a"])


@pytest.mark.parametrize("his_epoch", [0, 2, 99, 2**40])
def test_her_re_key_stands_beside_a_members_state_of_any_other_epoch(his_epoch: int) -> None:
    hers = _leaf(ALICE, "2-d", b"n" * 32, 1, b"sub", 10)
    his = _leaf("bob", "2-b", b"o" * 32, his_epoch, b"sub2", 20)
    note_change(his.node, "links")
    said: list[str] = []
    volume = SimpleNamespace(authorship=SimpleNamespace(deny=lambda doc, why: said.append(why)))
    for mine, theirs in ((hers, his), (his, hers)):
        keeper, named, loser = decide(None, mine, theirs, None, volume)  # type: ignore[arg-type]
        assert keeper is hers and loser is None
        named, meta = apart(volume, mine, theirs, keeper, named, loser)  # type: ignore[arg-type]
        assert named.links == [(TEAM, b"sub2")] and meta is not None  # his later rename, judged by _adopt
    assert len(said) == (2 if his_epoch > 1 else 0), said  # a claim above hers is said


def test_two_states_of_hers_keep_the_higher_epoch() -> None:
    old = _leaf(ALICE, "2-l", b"o" * 32, 0, b"sub", 20)
    new = _leaf(ALICE, "2-d", b"n" * 32, 1, b"sub", 10)
    volume = SimpleNamespace(authorship=object())
    for mine, theirs in ((old, new), (new, old)):
        assert decide(None, mine, theirs, None, volume)[0] is new  # type: ignore[arg-type]


def test_a_members_later_rename_beside_her_state_of_the_same_epoch_is_decided_as_before() -> None:
    hers = _leaf(ALICE, "2-d", b"n" * 32, 1, b"sub", 10)
    his = _leaf("bob", "2-b", b"n" * 32, 1, b"sub2", 20)
    volume = SimpleNamespace(authorship=object())
    assert decide(None, hers, his, None, volume)[0] is his  # type: ignore[arg-type]
