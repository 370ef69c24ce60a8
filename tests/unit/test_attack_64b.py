"""Attack round 64b, unit part (the receive's stall deadline, round 63b (2)'s fix).

(3) Hole (low: a relay makes a receive hang past its stall deadline, for as long as it likes).
    Attacker: the relay of send/receive (the threat table lets it withhold what it carries).
    Steps (``test_a_relay_asking_to_wait_for_ever_does_not_hold_the_receive_past_the_stall``: the real
    ``Receiver`` and ``RelayClient`` against a small HTTP server standing in for the relay): the
    request's first take (``?ready=1``) is answered 204; every take after it is answered 429
    {"error": "too many requests from this address: slow down"} with ``Retry-After: 100000``.
    Seen: ``_chunks`` raises "the sender stopped sending" at STALL (the clock here is a MockClock),
    but ``Receiver.run`` then never returns: its ``finally`` waits for the pool's takes
    (``pool.shutdown(wait=True)``), each asleep in ``RelayClient.call`` for the 100,000 s the relay
    asked (27 hours; up to CALL_RETRIES = 30 times over). A receive run unattended (a script, a
    timer: no Ctrl-C to end it after GRACE) hangs; with its partial file, for a day or more.
    Expected: STALL seconds without a chunk end the receive (63b (2): "whatever the relay gives
    meanwhile"), its takes given up.
    Cause: ``transfer/client.py`` ``RelayClient.call`` sleeps ``float(Retry-After)`` as the relay
    says, unbounded, and does not look at ``stopping`` or ``interrupt`` while it sleeps (its wait for a
    relay that is away does, and is bounded by ``patience``); ``transfer/receive.py`` ``Receiver.run``
    waits for every take.
    Impact: a hung receive (and, in a thread of its own, a hung send the same way: ``settle``).
    Suggested fix: bound the sleep (a few seconds: the relay's own budget is per second) and wait on
    ``stopping``/``interrupt`` (``Event.wait``) rather than ``time.sleep``.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from trio.testing import MockClock

from fusevault.errors import VaultError
from fusevault.transfer import client as client_module
from fusevault.transfer import receive
from fusevault.transfer.client import RelayClient
from fusevault.transfer.receive import Incoming, Receiver

ASKED = 100_000  # seconds the relay asks each take to wait


class Relay(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if "ready=1" in self.path:  # the first take: nothing yet
            self.send_response(204)
            self.end_headers()
            return
        body = json.dumps({"error": "too many requests from this address: slow down"}).encode()
        self.send_response(429)
        self.send_header("Retry-After", str(ASKED))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class Progress:
    def advance(self, task: object, n: int) -> None:
        pass


def test_a_relay_asking_to_wait_for_ever_does_not_hold_the_receive_past_the_stall(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = MockClock(rate=0)
    monkeypatch.setattr(receive, "monotonic", clock.current_time)
    monkeypatch.setattr(receive, "LOOK", 0.01)
    released = threading.Event()  # the end of the test: every sleep still asleep ends
    asked: list[float] = []

    def sleep(seconds: float) -> None:  # the client's sleeps, as long as asked unless the test ends
        asked.append(seconds)
        released.wait(seconds)

    monkeypatch.setattr(client_module, "time", SimpleNamespace(sleep=sleep, monotonic=clock.current_time))

    class Client(RelayClient):
        def interrupted(self) -> None:
            super().interrupted()
            clock.jump(10)  # each turn of the receive's loop: ten seconds of its clock

    server = ThreadingHTTPServer(("127.0.0.1", 0), Relay)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    client = Client(f"http://127.0.0.1:{server.server_address[1]}", "token")
    receiver = Receiver(client, tmp_path, None, False, False, None, lambda _: None)
    receiver.sid = "s" * 32
    inc = Incoming("f0", "file", 10 * 100, 10, tmp_path / "file", tmp_path / ".file.part")
    fd = os.open(inc.partial, os.O_RDWR | os.O_CREAT, 0o600)
    outcome: list[BaseException] = []

    def run(name: str, code: str) -> None:
        receiver._chunks(fd, inc, bytes(32), "rid", hashlib.sha256(), Progress(), None)

    def whole() -> None:
        try:
            receiver.run("name", "code")  # its finally: the takes given up, the pool shut down
        except BaseException as err:  # noqa: BLE001 - looked at below
            outcome.append(err)

    monkeypatch.setattr(receiver, "_run", run)
    ended = threading.Thread(target=whole, daemon=True)
    try:
        ended.start()
        ended.join(20)  # STALL passes in a dozen turns of 0.01 s; nothing else waits here
        hung = ended.is_alive()
    finally:
        released.set()
        ended.join(30)
        server.shutdown()
        server.server_close()
        os.close(fd)
    assert outcome and isinstance(outcome[0], VaultError), outcome
    assert str(outcome[0]) == "the sender stopped sending"
    assert not hung, f"the receive still waited past the stall, its takes asleep for {max(asked)} s"
