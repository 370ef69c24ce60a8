"""What a store call on the trio loop may do (store/short_calls.py): a scan of the local store made
inside one is refused, a look by id and a commit are not; the shared mount's listener, which takes a
commit into the other users' trees, is judged on its own (attack round 73b (1))."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from fusevault.store import short_calls
from fusevault.store.local import LocalStore
from fusevault.store.short_calls import LongCallOnLoop
from fusevault.store.watched import WatchedStore


@pytest.fixture
def store(tmp_path: Path):
    made = LocalStore(tmp_path / "store.sqlite")
    made.put_many([{"_id": f"d{i}", "type": "probe"} for i in range(3)])
    yield made
    made.close()


def test_a_scan_inside_an_inline_store_call_is_refused(store: LocalStore) -> None:
    with short_calls.on_loop():
        with pytest.raises(LongCallOnLoop):
            list(store.iter_type("probe"))
        with pytest.raises(LongCallOnLoop):
            store.changes(0)
        # Short work stands: a document by id, a bounded read of the changes, a commit.
        assert store.get("d0") is not None
        assert len(store.changes(0, 2)[0]) == 2
        store.put_many([{"_id": "d3", "type": "probe"}])
    # Outside it (a worker thread, a command), the same scans.
    assert len(list(store.iter_type("probe"))) == 4
    assert len(store.changes(0)[0]) == 4


def test_the_mark_ends_with_the_call_even_when_it_fails(store: LocalStore) -> None:
    with pytest.raises(ValueError), short_calls.on_loop():
        raise ValueError("the call failed")
    assert len(list(store.iter_type("probe"))) == 3


def test_the_shared_mounts_listener_is_not_the_committing_calls_work(store: LocalStore) -> None:
    heard: list[int] = []
    watched = WatchedStore(store, "erin",
                           lambda writer, docs: heard.append(len(list(store.iter_type("probe")))))

    async def commit() -> None:  # on the loop, as the shared mount's seats commit
        with short_calls.on_loop():
            watched.put_many([{"_id": "d3", "type": "probe"}])
            with pytest.raises(LongCallOnLoop):  # the caller's own scan, after it, still refused
                list(watched.iter_type("probe"))

    trio.run(commit)
    assert heard == [4]
