"""transfer/receive.py ``Receiver._chunks`` against a relay that gives chunks out of order or not at all
(round 63b (2)): what arrives ahead of the chunk written next is held within ``WINDOW``, and STALL
seconds without a chunk written end the receive with its one line, whatever the relay does meanwhile.

The relay is a fake client (``pop`` is all ``_chunks`` asks of it); the stall deadline runs on a
``trio.testing.MockClock`` that the fake moves on, so no test waits for it."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import weakref
from pathlib import Path

import pytest
from trio.testing import MockClock

from fusevault.errors import VaultError
from fusevault.transfer import crypto, receive
from fusevault.transfer.receive import Incoming, Receiver

SID, FID, KEY = "s" * 32, "f0", bytes(range(32))
CHUNKS = 64
PIECE = 100  # plaintext bytes per chunk here: the receiver never asks a chunk's size


class Payload(bytearray):
    """A chunk as the relay gives it, counted while anything holds it (bytes take no weak reference)."""


class FakeRelay:
    """``gives(n)``: what the n-th take gets (None: nothing yet); ``turn()``: each turn of the loop."""

    def __init__(self, clock: MockClock, gives, turn=lambda n: None) -> None:
        self.clock, self.gives, self.turn = clock, gives, turn
        self.lock = threading.Lock()
        self.takes = self.turns = 0
        self.alive: list[weakref.ref[Payload]] = []
        self.most_alive = 0

    def clone(self) -> FakeRelay:
        return self

    def close(self) -> None:
        pass

    def interrupted(self) -> None:
        self.turns += 1
        if self.turns > 20_000:  # the loop no longer ends by itself
            raise AssertionError(f"still receiving after {self.turns} turns; {self.clock.current_time()} s")
        self.turn(self.turns)

    def pop(self, rid: str, wait: float, first: bool = False) -> tuple[int, str, bytes] | None:
        with self.lock:
            self.takes += 1
            n = self.takes
            self.alive = [r for r in self.alive if r() is not None]
            self.most_alive = max(self.most_alive, len(self.alive))
        got = self.gives(n)
        if got is None:
            return None
        nr, iv, data = got
        payload = Payload(data)
        with self.lock:
            self.alive.append(weakref.ref(payload))
        return nr, iv, payload  # type: ignore[return-value] - bytes-like, as AESGCM takes it


class Progress:
    def advance(self, task: object, n: int) -> None:
        pass


def _sealed(nr: int, plain: bytes) -> tuple[int, str, bytes]:
    last = nr == CHUNKS - 1
    iv, data = crypto.seal_chunk(KEY, SID, FID, nr, last, plain)
    return nr, iv, data


def _plain(nr: int) -> bytes:
    return bytes([nr]) * PIECE


def _receive(tmp_path: Path, relay: FakeRelay, ended=lambda: None) -> tuple[bytes, bytes]:
    """Run ``_chunks`` on a file of CHUNKS chunks: (the trailer, what was written); ``ended()`` once
    it returned or raised, before its takes are waited for."""
    receiver = Receiver(relay, tmp_path, None, False, False, None, lambda _: None)  # type: ignore[arg-type]
    receiver.sid = SID
    inc = Incoming(FID, "file", CHUNKS * PIECE, CHUNKS, tmp_path / "file", tmp_path / ".file.part")
    fd = os.open(inc.partial, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        trailer = receiver._chunks(fd, inc, KEY, "rid", hashlib.sha256(), Progress(), None)
    finally:
        os.close(fd)
        ended()
        receiver.pool.shutdown(wait=True, cancel_futures=True)
    return trailer, inc.partial.read_bytes()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> MockClock:
    clock = MockClock(rate=0)
    monkeypatch.setattr(receive, "monotonic", clock.current_time)
    return clock


def test_a_relay_withholding_the_awaited_chunk_makes_the_receive_hold_a_window_at_most(
        tmp_path: Path, clock: MockClock) -> None:
    """The scene of 63b (2) in-process: every take gets a later chunk (first + 1, + 2 ... to the last,
    then again), never the first; a second of the clock per take.  Held: the window and the takes on
    their way, not the file; and the stall ends it, though the relay never stops giving."""

    def gives(n: int) -> tuple[int, str, bytes]:
        clock.jump(1)
        return _sealed(1 + (n - 1) % (CHUNKS - 1), b"\0" * PIECE)

    relay = FakeRelay(clock, gives)
    with pytest.raises(VaultError) as stalled:
        _receive(tmp_path, relay)
    assert str(stalled.value) == "the sender stopped sending" and stalled.value.exit_code == 1
    assert relay.most_alive <= receive.WINDOW + receive.PARALLEL, (
        f"{relay.most_alive} chunks held at once, of {relay.takes} given (window {receive.WINDOW})")


def test_takes_that_never_come_back_end_the_receive_at_the_stall(
        tmp_path: Path, clock: MockClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relay that keeps every take waiting (none comes back empty, so none said "nothing"): the
    deadline is looked at on every turn, each turn LOOK seconds of the clock."""
    monkeypatch.setattr(receive, "LOOK", 0.01)
    released = threading.Event()

    def gives(n: int) -> None:
        if n > 1:  # the first take (marking the request ready) answers at once, as the relay does
            released.wait(30)
        return None

    relay = FakeRelay(clock, gives, turn=lambda n: clock.jump(10))
    with pytest.raises(VaultError) as stalled:
        _receive(tmp_path, relay, ended=released.set)
    assert str(stalled.value) == "the sender stopped sending"
    assert relay.turns <= receive.STALL / 10 + 3


def test_chunks_a_little_out_of_order_and_again_arrive_whole(tmp_path: Path, clock: MockClock) -> None:
    """Control: takes on their way come back in any order, a chunk given twice is passed over: the
    file is written whole, in order, as before the window.  The relay hands chunks out in the order
    they were queued (relay/scripts.py PUSH), one a take; the takes on their way (PARALLEL) end in any
    order: here every other one a little later.  (An order the relay never gives, pairs swapped,
    once was this test's: a chunk then came WINDOW ahead of the one awaited when the threads' turns
    fell so, and was dropped, one run in twenty.)"""
    digest = hashlib.sha256(b"".join(_plain(nr) for nr in range(CHUNKS))).digest()
    order = list(range(CHUNKS))
    order[10:10] = [3, 4]  # given again, after they were written

    def gives(n: int) -> tuple[int, str, bytes] | None:
        if n > len(order):
            return None
        if n % 2:
            time.sleep(0.002)  # its answer after the next take's
        nr = order[n - 1]
        return _sealed(nr, _plain(nr) + (digest if nr == CHUNKS - 1 else b""))

    trailer, written = _receive(tmp_path, FakeRelay(clock, gives))
    assert trailer == digest and written == b"".join(_plain(nr) for nr in range(CHUNKS))
