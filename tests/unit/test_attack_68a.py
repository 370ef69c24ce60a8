"""Attack round 68a, at round 64b's fixes (relay/scripts.py, relay/state.py, transfer/send.py,
transfer/client.py).  Holes found, per number: (1) here; (2) a request answered in a batch expiring
an hour after its acknowledge while its session lives, and (3) a session's close walking the relay's
whole keyspace, in tests/services/test_attack_68a.py (their steps in its docstring).

68a (1), low to medium (honest use; an honest sender's address refused new sessions for up to an
hour).  Attacker: none needed (the relay's own per-second budget: a receiver behind the same address,
a NAT shared with others, its own last calls in that second); anyone sharing the address can set it
off at will with one second of calls.
  Steps: ``fusevault send`` serves its receiver; ``Sender.run`` ends (the receiver's "all" done, or
  Ctrl-C) and its ``finally`` sets ``client.stopping``; ``send`` then closes the session
  (``client.close_session``) with that same client.  The relay answers the close with its
  per-second refusal (429 "too many requests from this address", Retry-After: 1).
  Seen: the close gives up at once (``RelayClient._rest`` returns False as ``stopping`` is set,
  transfer/client.py ``call``: ``raise self.failure(response)``), ``send`` swallows the RateLimited
  (send.py ``except VaultError: pass``) and returns 0: the session stays open at the relay until its
  ``session_ttl`` (an hour), its ``created_sessions`` key with it, so every ``fusevault send`` from
  that address is refused meanwhile ("this address already has an open session", 429 for up to
  3,600 s), and the session's name still lets receivers join it.
  Expected: as before round 64b (3), a 429 of the per-second budget at the close is waited out (a
  second) and the close sent again; ``stopping`` is for the pushes still on their way.
  Cause: round 64b (3)'s ``_rest`` ends every 429 wait when ``stopping`` is set
  (transfer/client.py ``call`` / ``_rest``), and send.py ``Sender.run`` sets ``stopping`` before
  ``send``'s ``close_session`` (send.py lines 123 and 83-88).  The relay-away wait already gave up on
  ``stopping`` (``client.patience = 0`` says so on purpose); the budget's 429 did not.
  Suggested fix: close with a client whose ``stopping`` is not set (``clear()`` it, or a fresh
  clone with its own event, after the pool is shut down), keeping ``interrupt`` for Ctrl-C; or let
  ``close_session`` ride out the budget's 429 a few times whatever ``stopping`` says.
  Test: ``test_68a_1_a_close_refused_once_by_the_budget_is_sent_again``.

Tried, and held (controls kept below, or read):
- 64b (1): PUSH/POP/LIVE and ``_left`` refuse once the session is gone or failed, every request key
  written gets the session's PTTL (read: ``add_requests``, ``acknowledge``, ``mark_ready``,
  ``unpop_chunk``, PUSH's KEYS[2..8]); only the sender's ``refresh`` pushes the session back, so one
  address still holds one session at a time (``created_sessions`` NX); no write without an expiry
  found.  PTTL 0 (a session in its last millisecond) gives ``_left`` a full ttl and PUSH ``PX 0`` (a
  Redis error): a one-millisecond window, an hour at most, not pursued.
- 64b (2), relay: ``post_handshake`` "refused" is the sender's alone (receivers may not post it),
  once per receiver (it leaves ``receivers`` and a second post is 404), and the set it walks holds
  only the receiver's requests the sender acknowledged (one ack call each): about one
  ``finish_request`` per earlier sender call, not repeatable.  Rids whose keys expired stay in
  ``receiver_requests`` while ``refresh`` keeps it (one per ack that expired unfinished): same bound.
- 64b (2), sender: another receiver cannot make the sender refuse or replace an honest one: the
  resume token (``hello``) is random and sealed under the honest receiver's own PAKE keys; requests
  are filed under the caller's token ``sub``; file ids are the offer's.  A relay can (a made-up
  request naming her id and an unknown file), but a relay can refuse her anyway.
- ``request_open`` against a lying relay: "open" for ever only grows ``streamed`` by one entry a file
  (one look each, no loop); 429 for ever ends after CALL_RETRIES waits of at most 5 s; a relay away
  ends after ``patience``.  ``_retry_after``: "inf", "-inf", "1_000", "nan", dates all within 0..5
  (``test_68a_retry_after_holds_for_odd_numbers``).

Not tried: anything needing a real relay under load (the suite was being timed), the mount.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from fusevault.errors import RateLimited
from fusevault.transfer import client as client_module
from fusevault.transfer import send as send_module
from fusevault.transfer.client import ENDING_WAIT, MAX_RETRY_AFTER, RelayClient, _retry_after
from fusevault.transfer.receive import Receiver

SID = "s" * 32
SLOW_DOWN = {"error": "too many requests from this address: slow down"}


class OneSecondRelay:
    """A relay as ``RelayClient.call`` sees it: a session made, no news, and a close that lands in a
    second whose per-second budget the address has spent (429 once, then 204)."""

    def __init__(self, refusals: int = 1) -> None:
        self.sent: list[tuple[str, str]] = []
        self.refusals = refusals  # closes answered 429 before one is taken
        self.closes_refused = 0
        self.closed = False

    def __call__(self, http: httpx.Client, method: str, path: str, cap: int,
                 **kwargs: object) -> httpx.Response:
        self.sent.append((method, path))
        if (method, path) == ("POST", "/sessions"):
            return httpx.Response(201, json={"id": SID, "name": "123456", "token": "t"})
        if path == f"/sessions/{SID}/events":
            return httpx.Response(200, json={"handshakes": [], "requests": []})
        if (method, path) == ("DELETE", f"/sessions/{SID}"):
            if self.closes_refused < self.refusals:
                self.closes_refused += 1
                return httpx.Response(429, headers={"Retry-After": "1"}, json=SLOW_DOWN)
            self.closed = True
            return httpx.Response(204)
        return httpx.Response(404, json={"error": "not here"})


def test_68a_1_a_close_refused_once_by_the_budget_is_sent_again(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    relay = OneSecondRelay()
    monkeypatch.setattr(client_module, "capped_request", relay)

    def over(self: send_module.Sender, records: list[dict]) -> None:
        self.finished = True  # the receiver's "all" done arrived: the send is over

    monkeypatch.setattr(send_module.Sender, "handshakes", over)
    (tmp_path / "a.txt").write_bytes(b"hello")
    announced: list[str] = []
    assert send_module.send("http://127.0.0.1:9", [tmp_path / "a.txt"],
                            lambda name, code: announced.append(name), say=lambda _: None,
                            interrupt=threading.Event()) == 0
    assert announced == ["123456"]
    closes = [s for s in relay.sent if s == ("DELETE", f"/sessions/{SID}")]
    assert relay.closed, f"the session was left open at the relay (closes sent: {len(closes)})"


def _slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The client's plain sleeps (an ending's wait), recorded and not slept."""
    slept: list[float] = []
    start = time.monotonic()
    monkeypatch.setattr(client_module, "time", SimpleNamespace(
        sleep=slept.append, monotonic=lambda: start + sum(slept)))
    return slept


def _send(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, relay: OneSecondRelay,
          interrupt: threading.Event) -> int:
    monkeypatch.setattr(client_module, "capped_request", relay)

    def over(self: send_module.Sender, records: list[dict]) -> None:
        self.finished = True

    monkeypatch.setattr(send_module.Sender, "handshakes", over)
    (tmp_path / "a.txt").write_bytes(b"hello")
    return send_module.send("http://127.0.0.1:9", [tmp_path / "a.txt"], lambda name, code: None,
                            say=lambda _: None, interrupt=interrupt)


def test_68a_1_a_close_the_relay_keeps_refusing_is_said_not_exit_0(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A close refused past its wait (ENDING_WAIT in all, whatever Retry-After the relay asks): the
    send says the session stays open at the relay, and does not end with 0."""
    relay, slept = OneSecondRelay(refusals=10**6), _slept(monkeypatch)
    with pytest.raises(RateLimited, match="did not close the session"):
        _send(tmp_path, monkeypatch, relay, threading.Event())
    assert not relay.closed and 0 < sum(slept) <= ENDING_WAIT, slept
    assert relay.sent.count(("DELETE", f"/sessions/{SID}")) == len(slept) + 1


def test_68a_1_a_send_stopped_by_ctrl_c_still_closes_through_a_refusal(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C (``interrupt``) stops the send where it looks, and its close is still sent again after
    the budget's 429 (within ENDING_WAIT, below the CLI's grace before it leaves a send behind)."""
    relay, slept, interrupt = OneSecondRelay(), _slept(monkeypatch), threading.Event()
    monkeypatch.setattr(send_module.Sender, "serve", lambda self, requests: interrupt.set())
    monkeypatch.setattr(send_module.Sender, "handshakes", lambda self, records: None)
    monkeypatch.setattr(client_module, "capped_request", relay)
    (tmp_path / "a.txt").write_bytes(b"hello")
    with pytest.raises(KeyboardInterrupt):
        send_module.send("http://127.0.0.1:9", [tmp_path / "a.txt"], lambda name, code: None,
                         say=lambda _: None, interrupt=interrupt)
    assert relay.closed and slept == [1.0]


@pytest.mark.parametrize("asked", ["1", "100000", "0"])
def test_68a_1_an_ending_call_waits_whatever_stopping_says_but_no_longer_than_its_wait(
        monkeypatch: pytest.MonkeyPatch, asked: str) -> None:
    """``close_session`` and ``fail`` ride out the budget's 429 with ``stopping`` and ``interrupt``
    set, ENDING_WAIT seconds in all at most (a relay asking a day, or 0 for ever, ends it)."""
    slept, sent = _slept(monkeypatch), []

    def refusing(http: httpx.Client, method: str, path: str, cap: int, **kwargs: object) -> httpx.Response:
        sent.append(path)
        return httpx.Response(429, headers={"Retry-After": asked}, json=SLOW_DOWN)

    monkeypatch.setattr(client_module, "capped_request", refusing)
    client = RelayClient("http://127.0.0.1:9", "token")
    client.stopping.set()
    client.interrupt.set()
    for end in (client.close_session, client.fail):
        slept.clear()
        with pytest.raises(RateLimited):
            end(SID)
        assert sum(slept) <= ENDING_WAIT and len(slept) <= 30, slept
        assert asked == "100000" or len(slept) >= 5  # sent again, not given up at the first 429
        assert len(sent) == len(slept) + 1
        sent.clear()


def test_68a_1_a_receive_stopped_by_ctrl_c_still_finishes_its_requests_through_a_refusal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The receiver's end of the same rule: a receive stopped by Ctrl-C finishes its open requests
    (``Receiver.pause``), so that the sender stops streaming them; one refused once by the budget is
    sent again, not left for the sender to fill the session's queue with."""
    slept, sent = _slept(monkeypatch), []

    def relay(http: httpx.Client, method: str, path: str, cap: int, **kwargs: object) -> httpx.Response:
        sent.append((method, path))
        if len(sent) == 1:
            return httpx.Response(429, headers={"Retry-After": "1"}, json=SLOW_DOWN)
        return httpx.Response(204)

    monkeypatch.setattr(client_module, "capped_request", relay)
    client = RelayClient("http://127.0.0.1:9", "token")
    client.interrupt.set()
    receiver = Receiver(client, tmp_path, None, False, False, None, lambda _: None)
    receiver.open = {"r"}
    receiver.state = SimpleNamespace(saved=False)  # type: ignore[assignment]
    receiver.pause(KeyboardInterrupt())
    receiver.pool.shutdown()
    assert sent == [("DELETE", "/requests/r")] * 2 and slept == [1.0]


@pytest.mark.parametrize("asked", ["-inf", "1_000", "  7  ", "1e-400", "0x10", "9" * 400])
def test_68a_retry_after_holds_for_odd_numbers(asked: str) -> None:
    """Control: 64b (3)'s cap holds for other spellings a relay may send."""
    waited = _retry_after(httpx.Response(429, headers={"Retry-After": asked}))
    assert 0.0 <= waited <= MAX_RETRY_AFTER
