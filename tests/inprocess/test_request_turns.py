"""A long control request of one user holds neither the other users' files nor the loop, and a
user's requests are answered one at a time (round 24c hole 1: vault/tree/inodes.py ``read_call``,
vault/services/requests.py ``Requests.turn``).

No clock: bob's trash scan is held inside its store snapshot by an event until the test lets it
go, so "alice's read is answered while his request runs" is a fact of order, not a duration.  Were
the scan on the loop, the loop itself would wait in the held snapshot and nothing else would run.
"""

from __future__ import annotations

import contextlib
import threading

import trio
import trio.testing

from inprocess.conftest import ALICE_UID, BOB_UID, ROOT, Ctx
from inprocess.test_two_users import _read, _write

ALICE = Ctx(ALICE_UID, ALICE_UID)
BOB = Ctx(BOB_UID, BOB_UID)


class HeldScan:
    """``reading`` of the local store that waits, inside the snapshot, until released."""

    def __init__(self, store) -> None:
        self.real = store.reading
        self.entered = threading.Event()
        self.release = threading.Event()
        self.on_loop: list[bool] = []
        self.released_in_time: list[bool] = []

    @contextlib.contextmanager
    def reading(self):
        with self.real():
            self.on_loop.append(threading.current_thread() is threading.main_thread())
            self.entered.set()
            # Bounded, so a scan held on the loop (the bug) ends the test instead of hanging it.
            self.released_in_time.append(self.release.wait(60))
            yield


async def test_his_trash_scan_holds_neither_her_files_nor_his_next_request(shared, monkeypatch):
    drive = shared.drive
    hers = (await _write(drive, ROOT, b"notes.txt", b"alice works", ALICE)).st_ino
    await _write(drive, ROOT, b"junk.txt", b"x", BOB)
    await drive.unlink(ROOT, b"junk.txt", BOB)
    held = HeldScan(shared.store)
    monkeypatch.setattr(shared.store, "reading", held.reading)
    requests = drive.seat_of(BOB_UID).ops.session.requests
    answers: list[tuple[str, dict]] = []

    async def ask(label: str, cmd: str) -> None:
        answers.append((label, await requests.handle({"cmd": cmd})))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, "first", "trash")
        await trio.to_thread.run_sync(held.entered.wait, 60)
        assert held.on_loop == [False], "the trash scan ran on the loop"
        # His scan is held in its snapshot: her files are answered meanwhile ...
        assert await _read(drive, hers, ALICE) == b"alice works"
        # ... and his next request waits for its turn (it would otherwise enter a second scan).
        nursery.start_soon(ask, "second", "trash")
        await trio.testing.wait_all_tasks_blocked()
        assert answers == [] and held.on_loop == [False]
        held.release.set()
    assert [label for label, _ in answers] == ["first", "second"]
    assert held.on_loop == [False, False] and held.released_in_time == [True, True]
    for _, answer in answers:
        assert [t["path"] for t in answer["trash"]] == ["junk.txt"], answer
