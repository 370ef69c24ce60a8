"""Attack round 72b: the relay after 71b's fix (guards.read_json counting a body's ``{`` ``[`` ``,``
against its route's shape before parsing).  Attacker: anyone who reaches a relay started with
``--couchdb`` (its link routes): ``POST /items`` takes no key at all, and ``PATCH /items/{id}`` parses
its body before the key is checked (items.py ``change``).

(1) medium: the link routes' shape lets a crowded body build ~24 times its size.
    Steps: ``item_routes.read_json`` (every link route's body) on ``{"x":[{"a":1.5},{"a":1.5},...]}``,
    2,097,000 objects, 19 MiB of the route's 64 MiB cap.  Seen: its 4,194,287 counted values pass
    ``ITEM_VALUES`` (``MAX_JSON // 16`` = 4,194,304) and the parse peaks at ~472 MiB (tracemalloc);
    ``{},`` x 2M: 5 MiB built into ~156 MiB.  Expected: what 71b (1) fixed on the session routes, a
    body bounded to a few times its size (its test's bound: 8 times).  Cause: item_routes.py:66, the
    count is sized by the cap's bytes over 16 (a block id's length on the wire), but a value costs
    ~100 bytes parsed whatever its length on the wire: 71b's "a value parsed costs at most a few
    hundred bytes" times 4 M values is the ~500 MB 71b (1) was about.  Two at a time (``_PARSES``) and
    many bodies read at once (open list 71b (1)): ~1 GB from one address with two calls.
    Fix: count what the link routes really take: a version holds ``blocks`` (how many does a link of a
    64 MiB manifest hold? ``links/content.py``'s block size gives it; e.g. 64 MiB of 1 MiB blocks is a
    few thousand ids) and a few fields: ``FEW_VALUES + most blocks``, not ``MAX_JSON // 16``; or give
    ``create``/``change`` (a few fields, no list) ``FEW_VALUES`` and only ``add_version`` the blocks.

(2) low/medium: a string with one character past U+FFFF is held at 4 bytes a character, twice.
    Steps: ``item_routes.read_json`` on ``{"x":"\U0001F600AAAA...."}``, 64 MiB (one value: counted 1).
    Seen: peak ~576 MiB (9 times the body): ``loads_untrusted`` decodes the whole body to a str (one
    non-BMP character makes it UCS-4: 256 MiB), then the parsed string is another 256 MiB.  The same
    body of ASCII (an honest base64 ``private_enc``) peaks at ~2-3 times (control).  On the handshake
    route (17 MiB cap, any caller's own session) the same ~9 times.  Not counted by any ``{[,`` count.
    Cause: guards.py ``read_json`` bounds values, not characters' width; encoding.py
    ``loads_untrusted`` ``data.decode(...)``.  Fix: the relay's bodies are ASCII (base64, ids,
    numbers, hex; a link's ``username``/``hashinfo`` aside: check them): refuse a body with a byte
    >= 0x80 (or ``\\u`` escapes of surrogates) on routes whose long field is base64, before parsing;
    or bound non-ASCII bytes per route like the count.

Fixed: (1) ``create`` and ``change`` read at most FIELDS_JSON (64 KiB) of FEW_VALUES values
(``item_routes.read_fields``), ``add_version`` FEW_VALUES and one value per block id a 64 MiB body can
name (``read_version``, ``VERSION_VALUES``, ~1 M); (2) ``read_version`` and the handshake route refuse a
long body that is not ASCII without escapes before decoding it (``guards.read_json(ascii=True)``).

Held (controls kept): an honest link version of 64 MiB of base64 parses within 4 times its size
(``test_72b_control_an_honest_long_version_costs_a_few_times_its_size``).  Tried and held, not kept:
huge integers (json's ``int`` refuses past 4,300 digits: a ValueError, so a 400); ``\\u`` escapes
shrink; brackets/commas in strings of the client's bodies (fids, base64, hex: none hold them).  Not
tried (time): REFRESH/CLOSE/UNPOP/PUSH on a real redis-server; worker threads held by slow clients.
"""

from __future__ import annotations

import json
import tracemalloc

import pytest
import trio
from starlette.requests import Request

from fusevault.relay import guards, item_routes
from fusevault.relay.limits import Refused
from unit.test_relay_read_json import _request


def _peak(read, body: bytes) -> int:
    """Bytes ``read`` of ``body`` peaked at (read, counted, parsed), past what was held."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        parsed = trio.run(read, _request(body))
        assert isinstance(parsed, dict)  # it passed the count and was parsed
        del parsed
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def _refused(read, body: bytes) -> Refused:
    with pytest.raises(Refused) as refused:
        trio.run(read, _request(body))
    return refused.value


def _crowded(n: int) -> bytes:
    return b'{"x":[' + b'{"a":1.5},' * n + b'{}]}'


def test_72b_1_a_crowded_link_body_does_not_take_many_times_its_size() -> None:
    attack = _crowded((item_routes.MAX_JSON // 16) // 2 - 10)  # 19 MiB, ~4 M values: ~470 MiB parsed
    assert len(attack) < item_routes.MAX_JSON
    assert _refused(item_routes.read_fields, attack).status in (400, 413)
    assert _refused(item_routes.read_version, attack).status == 400
    # The most crowded version taken costs less than an honest one of the cap (the control's 4 times).
    most = _crowded(item_routes.VERSION_VALUES // 2 - 10)
    peak = _peak(item_routes.read_version, most)
    assert peak < 2 * item_routes.MAX_JSON, f"{len(most) >> 20} MiB of body parsed at {peak >> 20} MiB"
    few = _crowded(guards.FEW_VALUES // 2 - 10)  # create's and change's few fields still pass
    assert _peak(item_routes.read_fields, few) < 1 << 20


def test_72b_2_a_wide_character_does_not_quadruple_a_long_string() -> None:
    tail = b"A" * (item_routes.MAX_JSON - 64) + b'"}'
    wide = '{"private_enc":"\U0001F600'.encode() + tail
    escaped = b'{"private_enc":"\\ud83d\\ude00' + tail
    for body in (wide, escaped):
        assert _refused(item_routes.read_version, body).status == 400

    async def handshake(request: Request) -> dict:  # api.py post_handshake's read
        return await guards.read_json(request, 17 << 20, guards.FEW_VALUES, ascii=True)

    assert _refused(handshake, '{"manifest":"\U0001F600'.encode() + b"A" * (16 << 20) + b'"}').status == 400
    # A short body may hold any text (a sender's reason for a refusal, a link's username).
    assert trio.run(handshake, _request('{"refused":"d\u00e9j\u00e0 \U0001F600"}'.encode())) == {
        "refused": "d\u00e9j\u00e0 \U0001F600"}
    assert trio.run(item_routes.read_fields, _request('{"username":"\U0001F600"}'.encode())) == {
        "username": "\U0001F600"}


def test_72b_control_an_honest_long_version_costs_a_few_times_its_size() -> None:
    body = json.dumps({"private_enc": "A" * (item_routes.MAX_JSON - 4096), "blocks": ["b" * 24] * 100,
                       "public": {"v": 1}, "protected": {"seq": None}}).encode()
    peak = _peak(item_routes.read_version, body)
    assert peak < 4 * len(body), f"{len(body) >> 20} MiB of body parsed at a peak of {peak >> 20} MiB"


def test_72b_control_the_most_blocks_a_version_names_pass() -> None:
    ids = (item_routes.MAX_JSON - (1 << 20)) // item_routes.BLOCK_ID_WIRE  # ~1 M ids, their manifest
    body = json.dumps({"private_enc": "A" * (ids * 36), "blocks": ["b" * 24] * ids,
                       "public": {"v": 1}, "protected": {"seq": 1, "signature": "A" * 88}},
                      separators=(",", ":")).encode()  # as httpx sends it
    assert len(body) < item_routes.MAX_JSON
    assert len(trio.run(item_routes.read_version, _request(body))["blocks"]) == ids
