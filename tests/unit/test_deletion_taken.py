"""sync/replicator.py ``_deletion_taken``: a bare deletion a peer sends, judged against this replica."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from fusevault.store import replica
from fusevault.store.local import LocalStore
from fusevault.sync.replicator import Replicator

FID = "f" * 32


@pytest.fixture
def replicator(tmp_path: Path):
    store = LocalStore(tmp_path / "store.sqlite")
    said: list[str] = []
    r = Replicator.__new__(Replicator)  # only what _deletion_taken reads: no peer, no mount
    r.store, r.name, r.layout = store, "server", SimpleNamespace(places=None)
    r._refused = lambda subject, text: said.append(subject)  # type: ignore[method-assign]
    try:
        yield r, store, said
    finally:
        store.close()


def _deletion(rev: str, *history: str) -> dict:
    ids = [r.split("-", 1)[1] for r in (rev, *history)]
    start = int(rev.split("-")[0])
    return {"_id": FID, "_rev": rev, "_deleted": True, "_revisions": {"start": start, "ids": ids}}


def _live_node(store: LocalStore) -> str:
    store.put_many([{"_id": FID, "type": "node", "owner": "a" * 32}])
    return store.get(FID)["_rev"]


def test_a_bare_deletion_of_the_live_current_node_is_refused_and_said(replicator) -> None:
    r, store, said = replicator
    current = _live_node(store)
    assert not r._deletion_taken(_deletion("2-" + "d" * 32, current))
    assert said == [f"deletion {FID}"] and store.get(FID)["_rev"] == current


def test_the_close_of_the_current_branch_by_a_conflict_settled_elsewhere_waits_unsaid(replicator) -> None:
    """Another device settled a conflict by closing the branch current here, before the branch it kept
    arrived: not stored (the file stays live here), and no false alarm (tests/mount/test_trust_rollback.py
    ``test_concurrent_edits_on_two_devices_raise_no_alarm`` met it now and then)."""
    r, store, said = replicator
    current = _live_node(store)
    assert not r._deletion_taken(_deletion(replica.closing_rev(FID, current), current))
    assert said == [] and store.get(FID)["_rev"] == current


def test_a_deletion_on_another_branch_is_taken(replicator) -> None:
    r, store, said = replicator
    _live_node(store)
    assert r._deletion_taken(_deletion("2-" + "e" * 32, "1-" + "b" * 32))
    assert said == []
