"""Round 42b (2): a member's commit of her file carrying change stamps near the top of the range
(vault/model/nodes.py ``check_shapes`` takes any time): her devices' later stamps are his plus one
for each change (``note_change``), a count of changes, no time: the device that changed a field
more often wins it, her later chmod undone.  See tests/mount/test_trust_attack_42b.py."""

from __future__ import annotations

import stat

import pytest

from fusevault.vault.model import nodes
from fusevault.vault.model.nodes import Node, apply_attrs, attrs_plain, check_shapes, note_change
from fusevault.vault.services.metadata_merge import merged

FID = "f" * 32
TOP = (1 << 63) - 1


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


@pytest.mark.xfail(strict=True, reason="42b (2): stamps a member planted near the top make her stamps a "
                   "count of changes: the desktop's two earlier chmods beat the laptop's later one")
def test_her_later_chmod_stands_over_a_members_stamp_near_the_top() -> None:
    assert _her_devices_apart(TOP - 1000) == 0o600


def test_control_her_later_chmod_stands_over_an_honest_members_state() -> None:
    assert _her_devices_apart(None) == 0o600
