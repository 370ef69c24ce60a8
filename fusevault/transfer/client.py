"""The relay's HTTP API from the client side (httpx), with its errors made readable.

A client made with ``patience`` rides out a relay that is away (restarting,
or its Redis is): it retries for that many seconds before it gives up, so a
sender survives a relay restart; tokens stay valid across one.  Calls that
may be repeated are safe to repeat: the relay gives the same answer to the
same acknowledgement, and the receiver skips a chunk it already has.
"""

from __future__ import annotations

import re
import ssl
import threading
import time
from typing import Self

import certifi
import httpx

from fusevault.encoding import NETWORK_SPREAD, loads_untrusted, shown
from fusevault.errors import (
    CorruptData,
    InvalidInput,
    NotFound,
    RateLimited,
    RelayUnavailable,
    VaultError,
    WrongCode,
)
from fusevault.http_answers import MIB, AnswerTooLarge, capped_request
from fusevault.transfer import DEFAULT_RELAY as DEFAULT_RELAY  # where it was (the parser's is light)
from fusevault.urls import http_url

_SESSION_NAME = re.compile(r"[0-9]{1,12}")  # relay/state.py: digits


def check_session(session: object) -> None:
    """A new session as the relay answers it.  Its name is printed for her to read out ("fusevault
    receive NAME"): only the relay's own form, digits; the relay operator's text wrote lines of its
    own, a forged instruction to receive from his relay among them (attack round 26c (7))."""
    if not (isinstance(session, dict) and _SESSION_NAME.fullmatch(str(session.get("name")))
            and isinstance(session.get("id"), str) and isinstance(session.get("token"), str)):
        raise CorruptData("the relay answered a new session with no session name of its own form")

# The largest answer the relay gives, per route: past it, an answer is refused (attack round 52t (3)).
# JSON: a handshake holds the sender's sealed list of files (relay/limits.py max_manifest, 16 MiB, as
# base64) and the relay's own fields; a chunk is 1 MiB of data and its seal (limits.py max_chunk).
JSON_CAP = 32 * MIB
CHUNK_CAP = 1 * MIB + 64 * 1024

# A call over the per-second budget is retried this many times before giving up.
CALL_RETRIES = 30
# Seconds a call waits before it is sent again, at most, whatever Retry-After the relay asks: its budget
# is per second, and a relay asking a day made a take sleep through the receive's stall deadline (64b (3)).
MAX_RETRY_AFTER = 5.0
LOOK = 0.25  # seconds between looks at ``interrupt`` while a call waits
# Seconds in all a call that ENDS something at the relay (a session's close, its failure) waits out the
# budget's 429, whatever ``stopping`` and ``interrupt`` say: they give up waits whose outcome nobody
# wants any more, and an end's is always wanted (68a (1): a close refused once in a busy second left
# the session, and its address's one session slot, at the relay for an hour).  Within cli/transfer.py's
# GRACE_SECONDS, so a Ctrl-C'd send still closes before it is left behind.
ENDING_WAIT = 5.0
MISMATCH = "wrong code, or someone in the middle: nothing was sent"


class SessionEnded(NotFound):
    """The session is gone from the relay: its sender ended it, or it expired."""


class Gone(VaultError):
    """The transfer (request) is gone: the other side cancelled or replaced it."""


class AnswerTooLong(RelayUnavailable):
    """The server answered more than the call's cap: asked again, it would answer as much.  Its
    caller may know that one thing it asked for is too long (a drop, 73c (2)), not the server away."""


class RelayClient:
    SERVER = "the relay"  # in a refusal of its answer

    def __init__(self, url: str, token: str | None = None, *, patience: float = 0.0,
                 tls: ssl.SSLContext | None = None) -> None:
        http_url(url, "relay URL", "https://relay.example")  # a mistyped one: one line, not exit 70 (49t (4))
        self.url = url.rstrip("/")
        # Plain HTTP needs no TLS context (making one reads every CA certificate); clones share one.
        if self.url.startswith("https:"):
            self.tls: ssl.SSLContext | bool = tls or ssl.create_default_context(cafile=certifi.where())
        else:
            self.tls = False
        self.http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(30.0, connect=5.0), verify=self.tls)
        self.token = token
        self.patience = patience
        self.stopping = threading.Event()  # set: stop waiting for a relay that is away
        # Set by whoever caught Ctrl-C/SIGTERM/SIGHUP (cli/transfer.py): the transfer stops at its
        # next look (interrupted()), between calls, never in the middle of one.
        self.interrupt = threading.Event()

    def close(self) -> None:
        self.http.close()

    def clone(self) -> RelayClient:
        """Another client with the same token, for a thread of its own (stopped with this one)."""
        other = type(self)(self.url, self.token, patience=self.patience,
                           tls=self.tls if isinstance(self.tls, ssl.SSLContext) else None)
        other.stopping, other.interrupt = self.stopping, self.interrupt
        return other

    def interrupted(self) -> None:
        """KeyboardInterrupt once ``interrupt`` is set: called where stopping leaves nothing half done."""
        if self.interrupt.is_set():
            raise KeyboardInterrupt

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, *, retry: bool = True, cap: int = JSON_CAP, ending: bool = False,
             **kwargs) -> httpx.Response:
        """The relay's answer, its body at most ``cap`` bytes (more: RelayUnavailable, not retried:
        the next one would be as long).  ``ending``: the call ends something at the relay, and rides
        out the budget's 429 for ENDING_WAIT seconds in all, stopping or not."""
        headers = kwargs.pop("headers", {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        away_since: float | None = None
        pause, limited, waited = 0.2, 0, 0.0
        while True:
            try:
                response: httpx.Response | None = capped_request(self.http, method, path, cap,
                                                                 headers=headers, **kwargs)
            except AnswerTooLarge as err:
                raise AnswerTooLong(f"{self.SERVER} at {self.url} answered too much ({err})") from None
            except httpx.HTTPError as err:
                response = None
                problem: VaultError = RelayUnavailable(
                    f"cannot reach the relay at {self.url}: is it running?"
                    if isinstance(err, httpx.ConnectError)
                    else f"lost the relay at {self.url} ({type(err).__name__})")
            if response is not None:
                if response.status_code == 429 and "too many requests" in _error(response):
                    limited += 1  # only the per-second budget: wait it out
                    if limited > CALL_RETRIES:
                        raise RateLimited("the relay keeps refusing: too many requests from this address")
                    wait = _retry_after(response)
                    if ending:
                        if waited + wait > ENDING_WAIT:
                            raise self.failure(response)  # its wait is spent: the caller says so
                        waited += wait
                        time.sleep(wait)  # bounded, and not to be cut short: see ENDING_WAIT
                    elif not self._rest(wait):
                        raise self.failure(response)  # stopping, or Ctrl-C: the relay's refusal said
                    continue
                if response.status_code == 503 and "queue full" in _error(response):
                    return response
                if response.status_code < 500:
                    if response.status_code >= 400 and response.status_code != 404:
                        raise self.failure(response)
                    return response
                problem = self.failure(response)
            # The relay is away, or its storage is: wait for it as long as we may.
            away_since = away_since or time.monotonic()
            if not retry or time.monotonic() - away_since >= self.patience or self.stopping.is_set() \
                    or self.interrupt.is_set():  # Ctrl-C: stop waiting for it
                raise problem
            if not self._rest(pause):
                raise problem
            pause = min(pause * 2, 5.0)

    def _rest(self, seconds: float) -> bool:
        """Wait ``seconds`` before a call is sent again; False at once when ``stopping`` is set (its
        user gave it up: a receive past its stall deadline) or soon after ``interrupt`` (Ctrl-C)."""
        left = seconds
        while left > 0 and not self.interrupt.is_set():
            step = min(left, LOOK)
            if self.stopping.wait(step):
                return False
            left -= step
        return not (self.stopping.is_set() or self.interrupt.is_set())

    def json(self, method: str, path: str, **kwargs) -> dict:
        response = self.call(method, path, **kwargs)
        if response.status_code == 404:
            raise SessionEnded(_error(response) or "not found on the relay")
        return loads_untrusted(response.content, spread=NETWORK_SPREAD) if response.content else {}

    # --- sender

    def open_session(self, salt: str, files: list[dict]) -> dict:
        session = self.json("POST", "/sessions", json={"code": salt, "files": files}, retry=False)
        self.token = session["token"]  # the rest is checked by its user (send.py: check_session)
        return session

    def events(self, sid: str, wait: float) -> dict:
        return self.json("GET", f"/sessions/{sid}/events", params={"wait": wait})

    def answer(self, sid: str, uid: str, fields: dict) -> None:
        self.json("POST", f"/sessions/{sid}/handshake", json={"user_id": uid, **fields})

    def acknowledge(self, sid: str, ack: dict) -> str:
        return self.json("POST", f"/sessions/{sid}/acks", json=ack)["request_id"]

    def push(self, rid: str, nr: int, iv: str, data: bytes, wait: float) -> bool:
        """Queue one chunk: False while the receiver's queue stays full; Gone if the request went."""
        response = self.call("POST", f"/requests/{rid}/chunks", content=data, params={"wait": wait},
                             headers={"X-Chunk": str(nr), "X-IV": iv})
        if response.status_code == 404:
            raise Gone("the receiver stopped this transfer")
        return response.status_code == 201

    def request_open(self, rid: str) -> bool:
        """Whether the request is still open at the relay (its receiver has not finished it)."""
        return self.call("GET", f"/requests/{rid}").status_code != 404

    def cancel(self, rid: str) -> None:
        self.call("DELETE", f"/requests/{rid}")

    def close_session(self, sid: str) -> None:
        """End the session at the relay (gone already, 404: nothing to do)."""
        self.call("DELETE", f"/sessions/{sid}", retry=False, ending=True)

    def fail(self, sid: str) -> None:
        """A confirmation failed: the relay ends the session for everyone in it."""
        self.call("POST", f"/sessions/{sid}/fail", retry=False, ending=True)

    # --- receiver

    def join(self, name: str) -> dict:
        response = self.call("POST", "/sessions/join", json={"name": name}, retry=False)
        session = self._found(response)
        self.token = session["token"]
        return session

    def post(self, sid: str, fields: dict) -> None:
        self.json("POST", f"/sessions/{sid}/handshake", json=fields)

    def handshake(self, sid: str, want: str, wait: float) -> dict | None:
        found = self.json("GET", f"/sessions/{sid}/handshake", params={"want": want, "wait": wait})
        return found["handshake"]

    def request(self, sid: str, requests: list[dict]) -> None:
        self.json("POST", f"/sessions/{sid}/requests", json={"requests": requests})

    def acknowledgements(self, sid: str, wait: float) -> list[dict]:
        return self.json("GET", f"/sessions/{sid}/acks", params={"wait": wait})["acks"]

    def pop(self, rid: str, wait: float, first: bool = False) -> tuple[int, str, bytes] | None:
        """The next chunk; ``first``: the sender's answer checked out, chunks may flow."""
        params = {"wait": wait, "ready": 1} if first else {"wait": wait}
        response = self.call("GET", f"/requests/{rid}/chunks/next", params=params, cap=CHUNK_CAP)
        if response.status_code == 204:
            return None
        if response.status_code == 404:
            raise Gone("the sender stopped this transfer")
        return int(response.headers["x-chunk"]), response.headers["x-iv"], response.content

    def finish(self, rid: str, *, ending: bool = False) -> None:
        """The request is done with (``ending``: by a receive that stops, see ENDING_WAIT)."""
        self.call("DELETE", f"/requests/{rid}", ending=ending)

    @staticmethod
    def failure(response: httpx.Response) -> VaultError:
        return _failure(response)

    @staticmethod
    def _found(response: httpx.Response) -> dict:
        if response.status_code == 404:
            raise NotFound(_error(response) or "not found on the relay")
        return loads_untrusted(response.content, spread=NETWORK_SPREAD) if response.content else {}


def _retry_after(response: httpx.Response) -> float:
    """The seconds the relay asks to wait, within 0 .. MAX_RETRY_AFTER (1 if it gives no number)."""
    try:
        asked = float(response.headers.get("retry-after", 1))
    except ValueError:  # an HTTP date, or anything: the relay's budget is per second
        return 1.0
    return min(max(asked, 0.0), MAX_RETRY_AFTER) if asked == asked else 1.0  # NaN: 1


def _error(response: httpx.Response) -> str:
    """The server's own words (a relay or link store is from outside too): shown, never raw."""
    try:
        return shown(str(loads_untrusted(response.content, spread=NETWORK_SPREAD).get("error", "")))
    except (ValueError, AttributeError):
        return ""


def _failure(response: httpx.Response) -> VaultError:
    message = _error(response) or f"the relay answered {response.status_code}"
    if response.status_code == 429:
        wait = response.headers.get("retry-after")
        return RateLimited(f"{message} (try again in {shown(wait)} s)" if wait else message)
    if response.status_code == 410 and message == MISMATCH:
        return WrongCode(MISMATCH)
    if response.status_code == 403 and "wrong code" in message:
        return WrongCode(message)
    if response.status_code >= 500:
        return RelayUnavailable(f"the relay failed: {message}")
    return InvalidInput(message)
