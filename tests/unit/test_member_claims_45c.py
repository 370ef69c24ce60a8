"""Round 45c (4), (5), (6) (tests/unit/test_attack_45c.py): a member's state is never taken for its key
or epoch (services/conflict_rules.py ``_newer_key``, conflicts.py ``_adopt``'s ``_no_claimed_epoch``); a
member's stamp a little ahead of this clock is held down to now, one far ahead is none (model/nodes.py
``taken_stamps``)."""

from __future__ import annotations

import stat
from types import SimpleNamespace

import pytest

from fusevault.vault.model import nodes
from fusevault.vault.model.nodes import Node, note_change, taken_stamps
from fusevault.vault.services import conflict_rules
from fusevault.vault.services.conflict_rules import Leaf, apart, decide
from fusevault.vault.services.conflicts import _no_claimed_epoch

FID, TEAM, ALICE, BOB = "f" * 32, "t" * 32, "alice", "bob"
OLD, NEW = b"o" * 32, b"n" * 32
NOW = 10**18


@pytest.fixture(autouse=True)
def judged(monkeypatch) -> None:
    now = iter(range(NOW, 2 * NOW, 1000))
    monkeypatch.setattr(nodes, "now_ns", lambda: next(now))
    monkeypatch.setattr(conflict_rules, "is_hers", lambda volume, leaf: leaf.doc.get("by") == ALICE)


def _leaf(by: str, rev: str, dek: bytes, epoch: int, name: bytes = b"sub") -> Leaf:
    node = Node(2, FID, ALICE, dek, stat.S_IFDIR | 0o755, 1000, 1000, when=1)
    node.epoch = epoch
    node.links = [(TEAM, name)]
    return Leaf({"_id": FID, "_rev": rev, "delete": False, "by": by}, node, node.links, [rev, "1-a"])


def _volume(said: list[str]) -> SimpleNamespace:
    return SimpleNamespace(authorship=SimpleNamespace(deny=lambda doc, why: said.append(why)))


def test_of_two_states_of_members_the_held_key_stands_and_the_others_later_rename_is_merged() -> None:
    said: list[str] = []
    held = _leaf(BOB, "9-a", OLD, 0)
    claim = _leaf(BOB, "2-b", OLD, 2**40, b"sub2")
    note_change(claim.node, "links")  # his later rename, on the state claiming an epoch
    keeper, named, loser = decide(None, held, claim, None, _volume(said))  # type: ignore[arg-type]
    assert keeper is held and loser is None
    named, meta = apart(_volume(said), held, claim, keeper, named, loser)  # type: ignore[arg-type]
    assert named.links == [(TEAM, b"sub2")] and meta is not None
    assert said  # one key at two epochs: a claim


def test_her_state_stands_beside_a_members_of_her_epoch_under_another_key_and_it_is_said() -> None:
    said: list[str] = []
    hers, his = _leaf(ALICE, "2-d", NEW, 1), _leaf(BOB, "2-b", OLD, 1)
    his.node.ctime = hers.node.ctime + 60 * 10**9
    for mine, theirs in ((hers, his), (his, hers)):
        assert decide(None, mine, theirs, None, _volume(said))[0] is hers  # type: ignore[arg-type]
    assert len(said) == 2


def test_one_key_at_one_epoch_is_decided_by_ctime_as_before() -> None:
    hers, his = _leaf(ALICE, "2-d", OLD, 1), _leaf(BOB, "2-b", OLD, 1, b"sub2")
    his.node.ctime = hers.node.ctime + 10
    assert decide(None, hers, his, None, _volume([]))[0] is his  # type: ignore[arg-type]


@pytest.mark.parametrize("claimed", [0, 2, 2**40])
def test_a_members_state_committed_here_takes_the_held_epoch_for_the_held_key(claimed: int) -> None:
    said: list[str] = []
    keeper = _leaf(BOB, "2-b", OLD, claimed)
    node = keeper.node  # as absorbed: his claimed epoch, and whatever proof his state carried
    node.key_proof = "b" * 32
    _no_claimed_epoch(_volume(said), node, keeper, OLD, 1, "a" * 32)  # type: ignore[arg-type]
    assert node.epoch == 1 and len(said) == (1 if claimed > 1 else 0)
    assert node.key_proof == "a" * 32, "the held key at the held epoch keeps her proof of it (51b (4)-(6))"


def test_a_members_state_under_another_key_keeps_its_epoch() -> None:
    keeper = _leaf(BOB, "2-b", NEW, 2)
    keeper.node.key_proof = "b" * 32
    _no_claimed_epoch(_volume([]), keeper.node, keeper, OLD, 1, "a" * 32)  # type: ignore[arg-type]
    assert keeper.node.epoch == 2 and keeper.node.key_proof == "b" * 32


def test_a_members_stamp_minutes_ahead_is_held_down_to_now() -> None:
    stamps = taken_stamps({"links": NOW + 5 * 60 * 10**9, "mode": NOW - 7}, by_owner=False)
    assert stamps is not None and NOW <= stamps["links"] < NOW + 10**6 and stamps["mode"] == NOW - 7


def test_a_members_stamp_past_the_skew_is_none() -> None:
    assert taken_stamps({"links": NOW + nodes.MEMBER_STAMP_AHEAD_NS + 10**9}, by_owner=False) is None


def test_her_stamp_ahead_is_kept_as_it_is() -> None:
    ahead = {"links": NOW + 2 * 86400 * 10**9}
    assert taken_stamps(ahead, by_owner=True) == ahead
