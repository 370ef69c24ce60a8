"""How long a relay may make ``RelayClient.call`` wait (round 64b (3)): a Retry-After is capped at
MAX_RETRY_AFTER whatever the relay says (a number past it, a date, NaN, a negative), and the wait ends
at once when the client is stopping (a receive past its stall deadline) or interrupted (Ctrl-C).

The waits are looked at, not timed: ``stopping`` is an event that records each wait asked of it."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import httpx
import pytest

from fusevault.errors import RateLimited
from fusevault.transfer import client as client_module
from fusevault.transfer.client import CALL_RETRIES, MAX_RETRY_AFTER, RelayClient

SLOW_DOWN = {"error": "too many requests from this address: slow down"}


class Recorded(threading.Event):
    """``stopping``: each wait recorded and given back at once (no real time passes: the client's
    clock is the sum of the waits)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []
        self.then: list = []  # callables run at each wait (the test sets an event meanwhile)

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None, "a wait with no end"
        self.waits.append(timeout)
        for step in self.then:
            step()
        return self.is_set()


def _client(monkeypatch: pytest.MonkeyPatch, answers: list[httpx.Response]) -> tuple[RelayClient, list[str]]:
    sent: list[str] = []

    def relay(http: httpx.Client, method: str, path: str, cap: int, **kwargs: object) -> httpx.Response:
        sent.append(path)
        return answers.pop(0) if len(answers) > 1 else answers[0]

    monkeypatch.setattr(client_module, "capped_request", relay)
    client = RelayClient("http://127.0.0.1:9", "token")
    stopping = client.stopping = Recorded()
    # Any plain sleep of the client's is recorded too, never slept (a day asked would hang the test).
    start = time.monotonic()
    monkeypatch.setattr(client_module, "time", SimpleNamespace(
        sleep=stopping.waits.append, monotonic=lambda: start + sum(stopping.waits)))
    return client, sent


def _slow_down(retry_after: str | None) -> httpx.Response:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return httpx.Response(429, headers=headers, json=SLOW_DOWN)


@pytest.mark.parametrize("asked", ["100000", "inf", "1e308", "nan", "-5", "Wed, 21 Oct 2037 07:28:00 GMT",
                                   "", None])
def test_a_relays_retry_after_is_capped_whatever_it_says(monkeypatch: pytest.MonkeyPatch,
                                                         asked: str | None) -> None:
    client, sent = _client(monkeypatch, [_slow_down(asked), httpx.Response(204)])
    assert client.call("GET", "/requests/r/chunks/next").status_code == 204
    assert sent == ["/requests/r/chunks/next"] * 2
    waits = client.stopping.waits  # type: ignore[attr-defined]
    assert 0 <= sum(waits) <= MAX_RETRY_AFTER, waits


def test_a_relay_refusing_for_ever_ends_the_call_after_its_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    client, sent = _client(monkeypatch, [_slow_down("100000")])
    with pytest.raises(RateLimited, match="keeps refusing"):
        client.call("GET", "/requests/r/chunks/next")
    assert len(sent) == CALL_RETRIES + 1
    assert sum(client.stopping.waits) <= CALL_RETRIES * MAX_RETRY_AFTER  # type: ignore[attr-defined]


def test_a_call_asked_to_wait_gives_up_at_once_when_stopping(monkeypatch: pytest.MonkeyPatch) -> None:
    """The receive past its stall deadline sets ``stopping``: a take waiting out a 429 ends then."""
    client, sent = _client(monkeypatch, [_slow_down("100000")])
    stopping: Recorded = client.stopping  # type: ignore[assignment]
    stopping.then.append(stopping.set)  # set while the call waits
    with pytest.raises(RateLimited, match="slow down"):
        client.call("GET", "/requests/r/chunks/next")
    assert sent == ["/requests/r/chunks/next"] and len(stopping.waits) == 1


def test_a_call_asked_to_wait_gives_up_within_a_look_once_interrupted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    client, sent = _client(monkeypatch, [_slow_down("3")])
    stopping: Recorded = client.stopping  # type: ignore[assignment]
    stopping.then.append(client.interrupt.set)  # Ctrl-C while it waits
    with pytest.raises(RateLimited, match="slow down"):
        client.call("GET", "/requests/r/chunks/next")
    assert sent == ["/requests/r/chunks/next"] and len(stopping.waits) == 1


def test_a_relay_away_is_waited_for_no_longer_once_stopping(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same wait for a relay that is away (``patience``): it too ends when stopping is set."""
    client, sent = _client(monkeypatch, [httpx.Response(502, json={"error": "bad gateway"})])
    client.patience = 3600
    stopping: Recorded = client.stopping  # type: ignore[assignment]
    stopping.then.append(stopping.set)
    with pytest.raises(Exception, match="the relay failed"):
        client.call("GET", "/requests/r/chunks/next")
    assert len(sent) == 1 and len(stopping.waits) == 1
