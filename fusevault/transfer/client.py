"""The relay's HTTP API from the client side (httpx), with its errors made readable."""

from __future__ import annotations

import time

import httpx

from fusevault.errors import InvalidInput, NotFound, RateLimited, RelayUnavailable, VaultError, WrongCode

DEFAULT_RELAY = "http://127.0.0.1:4080"
# A call over the per-second budget is retried this many times before giving up.
CALL_RETRIES = 30


class RelayClient:
    def __init__(self, url: str, token: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=httpx.Timeout(30.0, connect=5.0))
        self.token = token

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RelayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = kwargs.pop("headers", {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        for _ in range(CALL_RETRIES):
            try:
                response = self.http.request(method, path, headers=headers, **kwargs)
            except httpx.ConnectError:
                raise RelayUnavailable(f"cannot reach the relay at {self.url}: is it running?") from None
            except httpx.HTTPError as err:
                raise RelayUnavailable(f"lost the relay at {self.url} ({type(err).__name__})") from None
            if response.status_code == 429 and "too many requests" in _error(response):
                time.sleep(float(response.headers.get("retry-after", 1)))
                continue  # only the per-second budget: wait it out
            if response.status_code == 503 and "queue full" in _error(response):
                return response
            if response.status_code >= 400 and response.status_code != 404:
                raise self.failure(response)
            return response
        raise RateLimited("the relay keeps refusing: too many requests from this address")

    # --- sender

    def open_session(self, code_hash: str, files: list[dict]) -> dict:
        session = self.call("POST", "/sessions", json={"code_hash": code_hash, "files": files}).json()
        self.token = session["token"]
        return session

    def pending(self, sid: str, wait: float) -> list[dict]:
        return self._ok(self.call("GET", f"/sessions/{sid}/requests", params={"wait": wait}))["requests"]

    def acknowledge(self, sid: str, ack: dict) -> str:
        return self._ok(self.call("POST", f"/sessions/{sid}/acks", json=ack))["request_id"]

    def push(self, rid: str, nr: int, iv: str, data: bytes) -> None:
        """Queue one chunk; while the receiver's queue is full, wait (backpressure)."""
        while True:
            response = self.call("POST", f"/requests/{rid}/chunks", content=data,
                                 headers={"X-Chunk": str(nr), "X-IV": iv})
            if response.status_code == 201:
                return
            if response.status_code == 404:
                raise VaultError("the receiver cancelled the transfer")
            time.sleep(float(response.headers.get("retry-after", 1)) / 10)

    def delivered(self, rid: str, wait: float) -> bool:
        """True once the receiver has taken and verified the file (the request is gone)."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.call("GET", f"/requests/{rid}").status_code == 404:
                return True
            time.sleep(0.05)
        return False

    def close_session(self, sid: str) -> None:
        self.call("DELETE", f"/sessions/{sid}")

    # --- receiver

    def join(self, name: str, code_hash: str) -> dict:
        response = self.call("POST", "/sessions/join", json={"name": name, "code_hash": code_hash})
        session = self._ok(response)
        self.token = session["token"]
        return session

    def request(self, sid: str, requests: list[dict]) -> None:
        self._ok(self.call("POST", f"/sessions/{sid}/requests", json={"requests": requests}))

    def acknowledgements(self, sid: str, wait: float) -> list[dict]:
        return self._ok(self.call("GET", f"/sessions/{sid}/acks", params={"wait": wait}))["acks"]

    def pop(self, rid: str, wait: float) -> tuple[int, str, bytes] | None:
        response = self.call("GET", f"/requests/{rid}/chunks/next", params={"wait": wait})
        if response.status_code == 204:
            return None
        if response.status_code == 404:
            raise VaultError("the sender cancelled the transfer")
        return int(response.headers["x-chunk"]), response.headers["x-iv"], response.content

    def finish(self, rid: str) -> None:
        self.call("DELETE", f"/requests/{rid}")

    @staticmethod
    def failure(response: httpx.Response) -> VaultError:
        return _failure(response)

    @staticmethod
    def _ok(response: httpx.Response) -> dict:
        if response.status_code == 404:
            raise NotFound(_error(response) or "not found on the relay")
        return response.json() if response.content else {}


def _error(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", ""))
    except ValueError:
        return ""


def _failure(response: httpx.Response) -> VaultError:
    message = _error(response) or f"the relay answered {response.status_code}"
    if response.status_code == 429:
        wait = response.headers.get("retry-after")
        return RateLimited(f"{message} (try again in {wait} s)" if wait else message)
    if response.status_code == 403 and "wrong code" in message:
        return WrongCode(message)
    if response.status_code >= 500:
        return RelayUnavailable(f"the relay failed: {message}")
    return InvalidInput(message)

