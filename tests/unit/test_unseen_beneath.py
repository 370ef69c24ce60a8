"""vault/tree/arrivals.py ``keep``: which revisions a refused one passes over, on its sender's word.

The history comes with the refused document, from the server or a peer: hostile.  What it names is
only fetched (and judged as any other document when it comes), so the worst a lie does is ask for
revisions that are not there; a malformed history asks for nothing."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fusevault.vault.tree.arrivals import BENEATH_LIMIT, _unseen_under, keep


def _doc(start: object, ids: object) -> dict:
    return {"_id": "f", "_rev": f"{start}-top", "_revisions": {"start": start, "ids": ids}}


def _kept(doc: dict, held: str) -> tuple[str, dict]:
    tree = SimpleNamespace(beneath={}, beneath_beside=set(), beneath_deeper=set(), held_signers={},
                           store=None)
    node = SimpleNamespace(fid="f", rev=held, owner="o")
    keep(tree, node, doc)  # type: ignore[arg-type]
    return node.rev, tree.beneath


def test_the_revisions_between_the_refused_one_and_hers_are_noted_newest_first() -> None:
    rev, beneath = _kept(_doc(4, ["top", "c", "b", "a"]), "1-a")
    assert rev == "4-top"  # her next commit goes over the store's current revision
    assert beneath == {"f": ("4-top", ["3-c", "2-b"])}


@pytest.mark.parametrize("doc", [
    _doc(2, ["top", "a"]),  # stacked on hers: nothing unseen under it
    _doc(3, ["top", "x", "y"]),  # another branch: hers is not in its history
    {"_id": "f", "_rev": "3-top"},  # no history sent (a store writer's row)
    _doc("three", ["top", "b", "a"]),
    _doc(3, "top,b,a"),
    _doc(float("inf"), ["top", "b", "a"]),
    {"_id": "f", "_rev": "3-top", "_revisions": ["3-top", "2-b", "1-a"]},
])
def test_a_history_that_passes_nothing_unseen_or_does_not_read_asks_for_nothing(doc: dict) -> None:
    rev, beneath = _kept(doc, "1-a")
    assert rev == doc["_rev"] and beneath == {}


def test_only_so_many_revisions_under_a_refused_one_are_asked_for() -> None:
    ids = ["top"] + [f"r{i}" for i in range(BENEATH_LIMIT + 5)] + ["a"]
    _, beneath = _kept(_doc(len(ids), ids), "1-a")
    # Hers lies deeper than a server may make this device fetch: the newest ones still (attack round
    # 80a (1): none at all was her laptop's 17 saves gone over unsaid); none taken is said (``withheld``).
    assert beneath["f"] == (f"{len(ids)}-top", [f"{len(ids) - 1 - i}-r{i}" for i in range(BENEATH_LIMIT)])
    ids = ["top"] + [f"r{i}" for i in range(BENEATH_LIMIT)] + ["a"]
    _, beneath = _kept(_doc(len(ids), ids), "1-a")
    assert len(beneath["f"][1]) == BENEATH_LIMIT


def test_stacked_on_a_branch_never_held_those_down_to_the_one_shared_are_noted() -> None:
    """78a (1): the refused revision passes not hers but her other device's branch beside it: the
    revisions down to the one the branch held here shares (the store's history of it), as beside."""
    doc = _doc(4, ["top", "l2", "l1", "base"])
    assert _unseen_under(doc, "2-s", {"2-s", "1-base"}) == (["3-l2", "2-l1"], True)
    assert _unseen_under(doc, "2-s", None) == ([], False)  # the held branch not known: as before
    deep = ["top"] + [f"r{i}" for i in range(BENEATH_LIMIT + 5)]
    unseen, beside = _unseen_under(_doc(len(deep), deep), "2-s", {"2-s"})
    assert beside and len(unseen) == BENEATH_LIMIT  # nothing shared within reach: the newest, bounded
