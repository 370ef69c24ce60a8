"""fusevault/http_answers.py: an answer from someone else's server is read with a cap (attack round 52t (3)).

A tiny server on a local socket writes the raw answer each test gives: a body longer than the cap with
its length said, one sent chunked with no length, one whose ``Content-Length`` lies (small) while the
body goes on.  The clients' own errors on top: the relay's and the link store's, the sync peer's.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import trio

from fusevault.errors import RelayUnavailable
from fusevault.http_answers import ANSWER_SECONDS, AnswerTooLarge, answer_seconds, capped_request
from fusevault.links.client import LinkClient
from fusevault.sync.couch_api import CouchDatabase, RefusedAnswer
from fusevault.transfer.client import RelayClient

CAP = 64 * 1024
MUCH = 8 * 1024 * 1024  # well past every cap of these tests; the server stops once the client hangs up


@contextmanager
def answering(head: bytes, body: Iterator[bytes]) -> Iterator[str]:
    """A server answering every request with ``head`` then ``body``'s pieces, until the client goes."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                try:
                    conn.sendall(head)
                    for piece in body:
                        conn.sendall(piece)
                except OSError:
                    pass  # the client hung up: what the cap is for

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()


def _endless(total: int = MUCH, piece: bytes = b" " * 65536) -> Iterator[bytes]:
    for _ in range(total // len(piece)):
        yield piece


def _chunked(total: int = MUCH) -> Iterator[bytes]:
    for piece in _endless(total):
        yield b"%x\r\n%s\r\n" % (len(piece), piece)
    yield b"0\r\n\r\n"


def _get(url: str, cap: int = CAP) -> httpx.Response:
    with httpx.Client(timeout=10) as client:
        return capped_request(client, "GET", f"{url}/x", cap)


def test_an_answer_within_the_cap_is_read_whole() -> None:
    with answering(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Chunk: 3\r\n\r\n", iter([b"hello"])) as url:
        answer = _get(url)
    assert (answer.status_code, answer.content, answer.headers["x-chunk"]) == (200, b"hello", "3")


def test_a_longer_answer_said_in_its_length_is_refused_unread() -> None:
    with answering(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % MUCH, _endless()) as url:
        with pytest.raises(AnswerTooLarge):
            _get(url)


def test_a_chunked_answer_with_no_length_is_cut_at_the_cap() -> None:
    with answering(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", _chunked()) as url:
        with pytest.raises(AnswerTooLarge):
            _get(url)


def test_an_answer_with_no_length_until_the_end_is_cut_at_the_cap() -> None:
    with answering(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", _endless()) as url:
        with pytest.raises(AnswerTooLarge):
            _get(url)


def test_a_content_length_lie_does_not_lift_the_cap() -> None:
    """A small length said, a long body sent: counted as it comes (h11 refuses the extra bytes too)."""
    with answering(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", _endless()) as url:
        try:
            answer = _get(url)
        except (AnswerTooLarge, httpx.HTTPError):
            return
    assert len(answer.content) <= CAP


def test_a_compressed_answer_counts_its_unpacked_bytes() -> None:
    packed = gzip.compress(b" " * MUCH)  # a few KiB on the wire
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed)
    with answering(head, iter([packed])) as url:
        with pytest.raises(AnswerTooLarge):
            _get(url)


def test_a_small_compressed_answer_is_given_unpacked() -> None:
    packed = gzip.compress(b'{"ok": true}')
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed)
    with answering(head, iter([packed])) as url:
        assert _get(url).json() == {"ok": True}


@pytest.mark.parametrize("packing", [b"br", b"zstd", b"compress", b"gzip, br", b"identity, gzip, deflate"])
def test_a_packing_not_asked_for_is_refused_unread(packing: bytes) -> None:
    """Only one layer of gzip or deflate is unpacked (asked for as such): another packing, or
    layers stacked, is a broken answer, never passed on raw nor unpacked whole (attack round 53d (1))."""
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: %s\r\nContent-Length: 2\r\n\r\n" % packing
    with answering(head, iter([b"{}"])) as url:
        with pytest.raises(httpx.DecodingError):
            _get(url)


@pytest.mark.parametrize("wbits", [zlib.MAX_WBITS, -zlib.MAX_WBITS])
def test_a_deflated_answer_is_given_unpacked_wrapped_or_raw(wbits: int) -> None:
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    packed = packer.compress(b'{"ok": true}' + b" " * MUCH) + packer.flush()
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: %d\r\n\r\n" % len(packed)
    with answering(head, iter([packed])) as url:
        assert _get(url, cap=2 * MUCH).json() == {"ok": True}


def test_a_broken_gzip_is_a_network_error() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 9\r\n\r\n"
    with answering(head, iter([b"not gzip!"])) as url:
        with pytest.raises(httpx.DecodingError):
            _get(url)


def test_what_is_asked_is_gzip_or_deflate_only() -> None:
    with answering(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", iter([b"{}"])) as url:
        with httpx.Client(timeout=10) as client:
            answer = capped_request(client, "GET", f"{url}/x", CAP, headers={"Accept-Encoding": "br"})
    assert answer.request.headers["accept-encoding"] == "gzip, deflate"


def _trickle(seconds: float) -> Iterator[bytes]:
    """A byte every tenth of a second for ``seconds`` (each read well within httpx's timeout), then
    the server ends: a client with no deadline of its own reads on to a broken answer."""
    for _ in range(int(seconds * 10)):
        time.sleep(0.1)
        yield b" "


def test_a_trickling_answer_ends_at_its_deadline() -> None:
    """Each read comes in time, the answer never does: refused as a timeout at its whole deadline
    (attack round 53d (2)), not read until the server stops."""
    with answering(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", _trickle(20)) as url:
        with httpx.Client(timeout=10) as client, pytest.raises(httpx.ReadTimeout, match="in all"):
            capped_request(client, "GET", f"{url}/x", CAP, seconds=1)


def test_an_answer_is_given_its_caps_time_at_a_slow_pace() -> None:
    assert answer_seconds(0) == ANSWER_SECONDS
    assert answer_seconds(4 * 1024 * 1024) == ANSWER_SECONDS + 64  # a block: a minute more on a slow line


def test_the_relay_client_says_a_huge_answer_as_the_relay_unavailable() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    with answering(head, _chunked(64 * 1024 * 1024)) as url:
        with RelayClient(url) as relay, pytest.raises(RelayUnavailable, match="answered too much"):
            relay.json("GET", "/sessions/x/events")


def test_a_chunk_is_held_to_a_chunks_size() -> None:
    head = b"HTTP/1.1 200 OK\r\nX-Chunk: 0\r\nX-IV: aa\r\nContent-Length: %d\r\n\r\n" % MUCH
    with answering(head, _endless()) as url:
        with RelayClient(url) as relay, pytest.raises(RelayUnavailable):
            relay.pop("r", 1.0)


def test_the_link_client_holds_a_block_to_a_blocks_size() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % MUCH
    with answering(head, _endless()) as url:
        with LinkClient(url) as links, pytest.raises(RelayUnavailable, match="the link store at"):
            links.block("b", b"k" * 32)


def test_a_peer_answering_past_the_json_limit_is_refused_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("fusevault.sync.couch_api.JSON_LIMIT", CAP)
    with answering(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", _chunked()) as url:
        peer = CouchDatabase(f"{url}/db")

        async def ask() -> None:
            try:
                await peer.info()
            finally:
                await peer.aclose()

        with pytest.raises(RefusedAnswer):
            trio.run(ask)
