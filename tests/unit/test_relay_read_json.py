"""guards.read_json (71b (1)): what a body may build is bounded before it is built, and a long body is
parsed off the event loop.  The relay's routes give their shapes (api.py, item_routes.py); the
client's own bodies at the relay's limits fit them."""

from __future__ import annotations

import json
import threading

import pytest
import trio
from starlette.requests import Request

from fusevault.relay import api, guards
from fusevault.relay.limits import Limits, Refused


def _request(body: bytes) -> Request:
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request({"type": "http", "method": "POST",
                    "headers": [(b"content-length", str(len(body)).encode())]}, receive)


def _read(body: bytes, cap: int, most: int) -> dict:
    return trio.run(guards.read_json, _request(body), cap, most)


def _counted(body: dict) -> int:
    raw = json.dumps(body).encode()
    return raw.count(b"{") + raw.count(b"[") + raw.count(b",")


def test_a_crowded_body_is_refused_before_it_is_parsed(monkeypatch) -> None:
    parsed = []
    monkeypatch.setattr(guards, "loads_untrusted", lambda data: parsed.append(data))
    body = b'{"x":[' + b"{}," * 100_000 + b"{}]}"
    with pytest.raises(Refused) as told:
        _read(body, len(body), api.FEW_VALUES)
    assert told.value.status == 400
    assert not parsed


@pytest.mark.parametrize(("body", "most"), [
    (b'{"x":' + b"[" * 20 + b"]" * 20 + b"}", 16),  # nested containers
    (b'{"a":"' + b"," * 40 + b'"}', 16),  # counted in strings too
    ('{"x":[{},{}]}'.encode("utf-16"), 4),  # in UTF-16 each still holds its byte
])
def test_values_past_the_routes_shape_are_refused(body: bytes, most: int) -> None:
    with pytest.raises(Refused) as told:
        _read(body, 1 << 20, most)
    assert told.value.status == 400


def test_control_a_body_of_its_shape_is_read() -> None:
    body = json.dumps({"user_id": "u", "manifest": "A" * 1000, "hello": "h"}).encode()
    assert _read(body, 1 << 20, 3)["manifest"] == "A" * 1000
    with pytest.raises(Refused):
        _read(body, 1 << 20, 2)


def test_a_long_body_is_parsed_off_the_event_loop(monkeypatch) -> None:
    where = []
    real = guards.loads_untrusted

    def parse(data: bytes) -> object:
        where.append(threading.current_thread() is threading.main_thread())
        return real(data)

    monkeypatch.setattr(guards, "loads_untrusted", parse)
    long = json.dumps({"manifest": "A" * (guards.PARSE_INLINE + 1)}).encode()
    assert _read(long, 1 << 20, 1)["manifest"].startswith("A")
    short = json.dumps({"manifest": "A"}).encode()
    assert _read(short, 1 << 20, 1) == {"manifest": "A"}
    assert where == [False, True]  # the long one in a worker thread, the short one in the loop


def test_control_the_clients_bodies_at_the_relays_limits_fit_their_routes() -> None:
    limits = Limits()
    n = limits.max_files
    width = len(str(n - 1))  # offer.py: the file ids are the indices, zero-padded
    offer = {"code": "ab" * 32, "files": [{"id": str(i).zfill(width), "size": 1 << 40} for i in range(n)]}
    assert _counted(offer) <= api.FEW_VALUES + api.FILE_VALUES * n
    asked = {"requests": [{"filename": str(i).zfill(width), "public_key": "k" * 44, "first": 0,
                           "mac": "m" * 44} for i in range(n)]}
    assert _counted(asked) <= api.FEW_VALUES + api.REQUEST_VALUES * n
    answer = {"user_id": "u" * 32, "filename": "0", "public_key": "k" * 44, "chunks": 9, "first": 0,
              "mac": "m"}
    message = {"user_id": "u" * 32, "confirm.b": "c" * 44, "manifest": "A" * 1000}
    assert max(_counted(answer), _counted(message)) <= api.FEW_VALUES
