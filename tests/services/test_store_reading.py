"""LocalStore.reading: long reads off the loop from a snapshot of their own (round 24c (1))."""

from __future__ import annotations

import os
import threading

import pytest
import trio

from fusevault.errors import CorruptData
from fusevault.store.local import LocalStore
from fusevault.vault.tree.inodes import Inodes


@pytest.fixture
def store(tmp_path):
    backend = LocalStore(tmp_path / "store.sqlite")
    yield backend
    backend.close()


def _in_thread(fn):
    result: list = []
    worker = threading.Thread(target=lambda: result.append(fn()))
    worker.start()
    worker.join()
    return result[0]


def test_a_read_sees_what_was_committed_when_it_began(store) -> None:
    store.put_many([{"_id": f"n{i}", "type": "node"} for i in range(3)])
    seen: list[list[str]] = []

    def scan() -> None:
        with store.reading():
            docs = store.iter_type("node")
            first = next(docs)
            # The loop commits meanwhile, on the main connection: not in this snapshot.
            store.put_many([{"_id": "late", "type": "node"}])
            seen.append([first["_id"], *(d["_id"] for d in docs)])
            seen.append([store.get("late") is None, store.by_file("node", "x") == []])

    _in_thread(scan)
    assert sorted(seen[0]) == ["n0", "n1", "n2"]
    assert seen[1] == [True, True]
    assert store.get("late") is not None  # outside ``reading``: the main connection, everything


def test_a_read_connection_writes_nothing(store) -> None:
    store.put_many([{"_id": "a", "type": "node"}])

    def write() -> str:
        with store.reading():
            try:
                store._reader.execute("DELETE FROM docs")
            except Exception as err:  # sqlite3.OperationalError: attempt to write a readonly database
                return type(err).__name__
            return "written"

    assert _in_thread(write) == "OperationalError"
    assert store.get("a") is not None


def test_a_store_replaced_by_a_link_is_not_read(store, tmp_path) -> None:
    other = LocalStore(tmp_path / "other.sqlite")
    other.close()
    os.rename(store.path, tmp_path / "moved.sqlite")
    os.symlink(tmp_path / "other.sqlite", store.path)
    with pytest.raises(CorruptData, match="not a regular file"):
        with store.reading():
            pass


def test_read_call_runs_off_the_loop_in_a_snapshot(store) -> None:
    class Held:
        limiter = trio.CapacityLimiter(1)

    held = Held()
    held.store = store
    store.put_many([{"_id": "a", "type": "node"}])

    def look() -> tuple[bool, bool]:
        try:
            trio.lowlevel.current_task()
            on_loop = True
        except RuntimeError:
            on_loop = False
        return on_loop, store._reader is not store._db

    assert trio.run(Inodes.read_call, held, look) == (False, True)


def test_compact_does_not_wait_for_a_long_read(store) -> None:
    # gc's compact runs on the loop: a snapshot held on a worker thread must not hold it for the
    # busy timeout, which would hold every FUSE request with it.  No clock: the reader lets go only
    # when compact has returned (or after 60 s, which is what a compact that waits would need).
    store.put_many([{"_id": "a", "type": "node"}])
    store._db.execute("PRAGMA busy_timeout = 120000")  # longer than the reader would ever hold
    began, done = threading.Event(), threading.Event()
    let_go: list[bool] = []

    def hold() -> None:
        with store.reading():
            store.get("a")
            began.set()
            let_go.append(done.wait(60))

    worker = threading.Thread(target=hold)
    worker.start()
    try:
        began.wait(30)
        store.put_many([{"_id": "b", "type": "node"}])  # a frame the reader's snapshot keeps in the WAL
        assert store.compact() is False
    finally:
        done.set()
        worker.join()
    assert let_go == [True], "compact waited for the reader"
    assert store._db.execute("PRAGMA busy_timeout").fetchone()[0] == 120000  # as it was
