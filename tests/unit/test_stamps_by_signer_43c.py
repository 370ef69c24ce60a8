"""Round 43c (1), (2) (tests/unit/test_attack_43c.py): change stamps taken in by who signed the state
(nodes.py ``taken_stamps``, ``node_from_doc``).  Her own devices' stamps are taken as they are, a clock
running behind here notwithstanding; a member's stamp ahead of this clock is none.  (The tests in
test_attack_43c.py take states in with ``apply_attrs`` alone, which knows no signer.)"""

from __future__ import annotations

import stat

import pytest

from fusevault.vault.model.nodes import Node, attrs_plain, check_shapes, node_from_doc
from fusevault.vault.services.metadata_merge import merged
from unit.test_attack_43c import DAY, FID, Clock, _chmod, clock  # noqa: F401 (the clock fixture)

ALICE, BOB = "a" * 32, "b" * 32


def _node() -> Node:
    return Node(2, FID, ALICE, b"k" * 32, stat.S_IFREG | 0o644, 1000, 1000, when=1)


def _taken(node: Node, signer: str) -> Node:
    """The node's document, signed by ``signer``, taken in by one of her devices."""
    attrs = attrs_plain(node, lambda p: p)
    check_shapes(attrs)
    doc = {"_id": FID, "_rev": "2-x", "owner": ALICE, "sig": {"by": signer, "ed25519": ""}}
    return node_from_doc(doc, b"k" * 32, attrs)[0]


def test_a_members_stamp_just_under_a_day_ahead_makes_no_count_of_her_changes(clock: Clock) -> None:  # noqa: F811
    his = _node()
    his.changed = {"mode": clock.real + DAY - 60 * 10**9}
    laptop, desktop = _taken(his, BOB), _taken(his, BOB)
    _chmod(desktop, 0o640)
    _chmod(desktop, 0o644)
    _chmod(laptop, 0o600)  # her later change
    assert {merged(k, o, k).perm for k, o in ((laptop, desktop), (desktop, laptop))} == {0o600}


def test_a_members_stamp_in_the_past_is_kept(clock: Clock) -> None:  # noqa: F811
    his = _node()
    his.changed = {"mode": clock.real - 10}
    assert _taken(his, BOB).changed == his.changed


@pytest.mark.parametrize("behind", [3600 * 10**9, 2 * DAY])
def test_a_device_whose_clock_runs_behind_keeps_her_later_chmod(clock: Clock, behind: int) -> None:  # noqa: F811
    base = _node()
    laptop, desktop = _taken(base, ALICE), _taken(base, ALICE)
    clock.offset = -behind
    _chmod(laptop, 0o600)
    clock.offset, clock.real = 0, clock.real + 60 * 10**9
    _chmod(desktop, 0o640)  # her later change
    on_desktop = merged(desktop, _taken(laptop, ALICE), desktop).perm
    clock.offset = -behind
    on_laptop = merged(laptop, _taken(desktop, ALICE), laptop).perm
    assert (on_laptop, on_desktop) == (0o640, 0o640)


def test_an_unsigned_stamp_past_a_day_ahead_is_still_none(clock: Clock) -> None:  # noqa: F811
    his = _node()
    his.changed = {"mode": clock.real + 2 * DAY}
    attrs = attrs_plain(his, lambda p: p)
    doc = {"_id": FID, "_rev": "2-x", "owner": ALICE}
    assert node_from_doc(doc, b"k" * 32, attrs)[0].changed is None
