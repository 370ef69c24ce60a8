"""fs/arrivals.py: what a peer's batch starts when it touches a Group some unlocked user holds in force.

A Group replaced by a body of another kind (``{"type": "note"}`` at its id) is a group removed: its
members' files are re-keyed (``_reshare``) as for its deletion, not only when a body of a sharing type
arrives (attack round 71c (1): the same hole for Shares is tested in tests/inprocess/test_attack_71c.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fusevault.fs import arrivals as arrivals_module
from fusevault.vault.model.groups import GROUP
from fusevault.vault.model.nodes import NODE
from fusevault.vault.model.users import USER
from fusevault.vault.tree.arrivals import Absorbed


def _arrivals(monkeypatch: pytest.MonkeyPatch, groups: dict[str, dict]) -> tuple[arrivals_module.Arrivals,
                                                                                 list]:
    tree = SimpleNamespace(records_wanted=False, beneath={})
    sharing = SimpleNamespace(groups=groups, kinds=lambda: dict.fromkeys(groups, GROUP))
    volume = SimpleNamespace(sharing=sharing, tree=tree)
    agent = SimpleNamespace(session=SimpleNamespace(volume=volume), missed=None, user_id="u")
    monkeypatch.setattr(arrivals_module, "absorb_arrivals", lambda volume, docs: Absorbed())
    arrivals = arrivals_module.Arrivals(None, lambda: [agent])  # type: ignore[arg-type]
    started: list = []
    arrivals._start = lambda task, *args: started.append(task)  # type: ignore[method-assign]
    return arrivals, started


@pytest.mark.parametrize("body", [{"type": "note"}, {"type": NODE}, {"type": USER}],
                         ids=["note", "node", "user"])
def test_a_group_replaced_by_another_kind_starts_the_re_key_of_its_members(monkeypatch, body) -> None:
    arrivals, started = _arrivals(monkeypatch, {"g1": {}})
    arrivals.committed(None, [{"_id": "g1", "_rev": "2-x", **body}])
    assert arrivals._reshare in started


def test_control_another_id_of_another_kind_starts_nothing(monkeypatch) -> None:
    arrivals, started = _arrivals(monkeypatch, {"g1": {}})
    arrivals.committed(None, [{"_id": "g2", "_rev": "2-x", "type": "note"}])
    assert started == []
    arrivals.committed(None, [{"_id": "g2", "_rev": "2-x", "type": GROUP}])
    assert arrivals._reshare in started
