"""Two states of her file made apart: what she set as metadata merged field by field
(vault/services/metadata_merge.py; attack round 41b (4)), and the stamps that tell which state
changed a field (vault/model/nodes.py ``note_change``), carried in the node document."""

from __future__ import annotations

import stat

import pytest

from fusevault.vault.model import nodes
from fusevault.vault.model.nodes import Node, apply_attrs, attrs_plain, check_shapes, note_change
from fusevault.vault.services.metadata_merge import changed_last, merged

FID = "f" * 32


@pytest.fixture(autouse=True)
def clock(monkeypatch) -> None:
    """A clock that moves at each reading: the later change is the one made later here."""
    now = iter(range(10**18, 2 * 10**18, 1000))
    monkeypatch.setattr(nodes, "now_ns", lambda: next(now))


def _node(mode: int = 0o644, **xattrs: bytes) -> Node:
    node = Node(2, FID, "alice", b"k" * 32, stat.S_IFREG | mode, 1000, 1000, when=1)
    node.xattrs = {k.encode(): v for k, v in xattrs.items()}
    return node


def _copy(node: Node) -> Node:
    """The same state on her other device (its document taken in there)."""
    other = _node()
    apply_attrs(other, attrs_plain(node, lambda p: p))
    return other


def _chmod(node: Node, mode: int) -> None:
    node.mode = stat.S_IFMT(node.mode) | mode
    note_change(node, "mode")


def _tag(node: Node, value: bytes | None) -> None:
    node.xattrs = {**node.xattrs, b"user.tag": value} if value is not None else \
        {k: v for k, v in node.xattrs.items() if k != b"user.tag"}
    note_change(node, "xattrs")


def test_a_field_one_state_changed_is_taken_from_it_whichever_is_kept() -> None:
    ancestor = _node()
    laptop, desktop = _copy(ancestor), _copy(ancestor)
    _chmod(laptop, 0o600)
    _tag(laptop, b"laptop")
    desktop.size = 7  # an edit: no metadata stamped
    for keeper, other in ((desktop, laptop), (laptop, desktop)):
        meta = merged(keeper, other, keeper)
        assert (meta.perm, dict(meta.xattrs)) == (0o600, {b"user.tag": b"laptop"})


def test_both_changed_the_later_stands() -> None:
    ancestor = _node()
    laptop, desktop = _copy(ancestor), _copy(ancestor)
    _chmod(laptop, 0o600)
    _chmod(desktop, 0o640)
    assert merged(laptop, desktop, laptop).perm == 0o640
    assert merged(desktop, laptop, desktop).perm == 0o640


@pytest.mark.parametrize("later", ["removed", "set"])
def test_an_xattr_set_on_one_and_removed_on_the_other_the_later_stands(later: str) -> None:
    ancestor = _node(**{"user.tag": b"first"})
    laptop, desktop = _copy(ancestor), _copy(ancestor)
    if later == "removed":
        _tag(laptop, b"again")
        _tag(desktop, None)
    else:
        _tag(laptop, None)
        _tag(desktop, b"again")
    want = {} if later == "removed" else {b"user.tag": b"again"}
    assert dict(merged(laptop, desktop, laptop).xattrs) == want
    assert dict(merged(desktop, laptop, desktop).xattrs) == want


def test_a_stamp_outgrows_the_one_it_had_whatever_the_clock(monkeypatch) -> None:
    """A device whose clock is behind the state both were made over still stamps its change later:
    the other state, which did not change the field, carries the older stamp."""
    ancestor = _node()
    _chmod(ancestor, 0o700)
    laptop, desktop = _copy(ancestor), _copy(ancestor)
    monkeypatch.setattr(nodes, "now_ns", lambda: 5)
    _chmod(desktop, 0o600)
    assert changed_last(laptop, desktop, "mode") is desktop
    assert merged(laptop, desktop, laptop).perm == 0o600


def test_states_with_no_stamps_keep_the_keepers_as_before() -> None:
    laptop, desktop = _node(0o600), _node(0o644)
    assert merged(laptop, desktop, laptop).perm == 0o600
    assert merged(desktop, laptop, desktop).perm == 0o644


def test_the_stamps_of_the_names_are_the_named_states() -> None:
    ancestor = _node()
    laptop, desktop = _copy(ancestor), _copy(ancestor)
    note_change(laptop, "links")
    _chmod(desktop, 0o600)
    meta = merged(desktop, laptop, laptop)
    assert meta.changed == {"links": laptop.changed["links"], "mode": desktop.changed["mode"]}


@pytest.mark.parametrize("changed", [[1], {"size": 1}, {"mode": "1"}, {"mode": True}, {"mode": 1 << 63}])
def test_a_document_with_malformed_stamps_is_refused(changed: object) -> None:
    attrs = attrs_plain(_node(), lambda p: p)
    attrs["changed"] = changed
    with pytest.raises(ValueError):
        check_shapes(attrs)


def test_stamps_alone_are_no_difference_to_commit() -> None:
    ancestor = _node()
    laptop, desktop = _copy(ancestor), _copy(ancestor)
    _chmod(laptop, 0o600)
    _chmod(laptop, 0o644)  # and back
    meta = merged(desktop, laptop, desktop)
    assert not meta.differs(desktop) and meta.changed == laptop.changed
