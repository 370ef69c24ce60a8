"""Round 42b (2): a member's commit of her file carrying change stamps near the top of the range
(vault/model/nodes.py ``check_shapes`` took any time): her devices' later stamps were his plus one
for each change (``note_change``), a count of changes, no time: the device that changed a field
more often won it, her later chmod undone.  Fixed: a stamp taken in past this device's clock plus
``STAMP_AHEAD_NS`` is taken as none (``taken_stamps``).  See tests/mount/test_trust_attack_42b.py."""

from __future__ import annotations

import stat

import pytest

from fusevault.vault.model import nodes
from fusevault.vault.model.nodes import Node, apply_attrs, attrs_plain, check_shapes, note_change
from fusevault.vault.services.metadata_merge import merged

FID = "f" * 32
TOP = (1 << 63) - 1
DAY = 86400 * 10**9


@pytest.fixture(autouse=True)
def clock(monkeypatch) -> None:
    """A clock that moves at each reading: the later change is the one made later here."""
    now = iter(range(10**18, 2 * 10**18, 1000))
    monkeypatch.setattr(nodes, "now_ns", lambda: next(now))


def _node() -> Node:
    return Node(2, FID, "alice", b"k" * 32, stat.S_IFREG | 0o644, 1000, 1000, when=1)


def _taken(node: Node) -> Node:
    """The node's document taken in by one of her devices (loaded at a mount, or a new file)."""
    other = _node()
    attrs = attrs_plain(node, lambda p: p)
    check_shapes(attrs)
    apply_attrs(other, attrs)
    return other


def _chmod(node: Node, mode: int) -> None:
    node.mode = stat.S_IFMT(node.mode) | mode
    note_change(node, "mode")


def _her_devices_apart(his_stamp: int | None) -> int:
    """bob's state of her file (``his_stamp``: his mode stamp, None: none) on both her devices; apart,
    the desktop chmods it twice (640, then 644), then the laptop once (600, the later change).
    The mode the merge gives, whichever side is kept."""
    his = _node()
    if his_stamp is not None:
        his.changed = {"mode": his_stamp}
    laptop, desktop = _taken(his), _taken(his)
    _chmod(desktop, 0o640)
    _chmod(desktop, 0o644)
    _chmod(laptop, 0o600)
    modes = {merged(keeper, other, keeper).perm for keeper, other in ((laptop, desktop), (desktop, laptop))}
    assert len(modes) == 1, modes
    return modes.pop()


def test_her_later_chmod_stands_over_a_members_stamp_near_the_top() -> None:
    assert _her_devices_apart(TOP - 1000) == 0o600


def test_control_her_later_chmod_stands_over_an_honest_members_state() -> None:
    assert _her_devices_apart(None) == 0o600


def test_a_stamp_taken_in_past_a_day_ahead_of_this_clock_is_none_one_within_is_kept() -> None:
    his = _node()
    now = nodes.now_ns()
    his.changed = {"mode": now + DAY // 2, "xattrs": now + 2 * DAY, "owner": TOP}
    assert _taken(his).changed == {"mode": now + DAY // 2}


def test_her_chmod_stands_over_a_state_that_did_not_touch_the_mode_but_carries_his_stamp() -> None:
    """The stamp taken as none on both devices: the one that changed the mode still wins it."""
    his = _node()
    his.changed = {"mode": TOP - 1000}
    laptop, desktop = _taken(his), _taken(his)
    _chmod(desktop, 0o600)
    for keeper, other in ((laptop, desktop), (desktop, laptop)):
        assert merged(keeper, other, keeper).perm == 0o600


@pytest.mark.parametrize("stamp", [-1, -(1 << 63), 1 << 63, 1.5, float("inf"), True, "1", None])
def test_a_stamp_no_change_could_have_made_makes_the_document_malformed(stamp: object) -> None:
    attrs = attrs_plain(_node(), lambda p: p) | {"changed": {"mode": stamp}}
    with pytest.raises(ValueError):
        check_shapes(attrs)
