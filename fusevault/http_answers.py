"""An HTTP answer from a server of someone else (the relay, a link store, a sync peer), read with a cap.

httpx reads an answer's body whole (``Client.request``, ``.content``): a hostile server (or whoever is
on its path without TLS) answering 1.5 GiB took the mount to 3.2 GB, at its start and every minute,
and ``receive`` to 2.1 GB and an exit 70 (attack round 52t (3)).  Here the body is read as a stream
and refused as soon as it is longer than the caller's cap (its route's largest honest answer),
whether the server said so in ``Content-Length``, lied there, or sent it chunked with no length.
Each client turns ``AnswerTooLarge`` into its own ordinary network error.

The body is read raw and unpacked here, never by httpx: httpx unpacks each network read whole
through every ``Content-Encoding`` layer, and 1.8 KiB gzipped twice was 1 GiB in one step before one
byte of it was counted (attack round 53d (1)).  One layer of gzip or deflate is taken (pouchdb-server
compresses its JSON), unpacked a piece of at most PIECE bytes at a time, each counted before the next;
stacked layers and any other packing are refused unread (httpx.DecodingError, a network error to
every client): no server of ours sends them, and only gzip and deflate are asked for.

An answer has a deadline as a whole, not only per read: a server that sends a byte every few seconds
(within httpx's timeout of each read) held a worker thread, and her lock behind it, as long as it
liked (attack round 53d (2)).  ``answer_seconds`` gives a cap's time.  The deadline bounds the whole
exchange, the head included: every connect, read and write of the client's connections is given at
most the time left (``_Bounded``); a head trickled a byte at a time, or an endless run of ``100
Continue`` interim answers, held the thread past it, since httpx reads the whole head before the
body's loop could look at the clock (attack round 54b (1)).

The raw bytes are counted too, against the cap (with room for the packing's own bytes): what comes
after the packing's end, or packing that unpacks to nothing (empty deflate blocks), was read without
end within the deadline; bytes after the packing's end are refused as broken packing (54b (2)).
And every byte read off the connection is counted as well, whatever h11 makes of it (``_BoundedStream
.read``): the body's count saw only the data h11 hands over, so chunk-size lines carrying 16 KB
extensions around one byte of data, or an endless run of ``100 Continue`` heads, were read without
end within the deadline (54b (2) again: attack round 55b (1)).  The wire may carry the raw cap twice
over (honest chunked framing adds a few bytes a chunk) and room for the heads (``HEADS``).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx

MIB = 1024 * 1024

# The most one step of unpacking makes: each piece is counted before the next is made.
PIECE = 64 * 1024
ASKED = "gzip, deflate"  # what is unpacked here (httpx would add br and zstd when installed)

# An answer's deadline: this long for any answer, and its cap's bytes at the slowest pace an honest
# server on a slow line sends (64 KiB/s: a 4 MiB block in about two minutes, 65 MiB in 18).
ANSWER_SECONDS = 120.0
SLOWEST = 64 * 1024  # bytes a second

# Room on the wire for an answer's head and its trailer, each at most the largest event httpcore lets
# h11 take (its MAX_INCOMPLETE_EVENT_SIZE, 100 KiB); an honest interim answer is a few bytes.
HEADS = 2 * 100 * 1024


class _Reading:
    """The answer this thread is reading (capped_request): its deadline, and the bytes read off the
    network for it so far against the most it may take (``wire_cap``)."""

    def __init__(self, deadline: float, cap: int, wire_cap: int) -> None:
        self.deadline, self.cap, self.wire_cap = deadline, cap, wire_cap
        self.read = 0


# Seen by every network step of the answer's connection (``_Bounded``): a thread runs one request at a
# time, and each thread its own context.
_READING: ContextVar[_Reading | None] = ContextVar("answer_reading", default=None)


class AnswerTooLarge(Exception):
    """The answer's body is longer than the cap: not read further (its message says the cap)."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"an answer of more than {cap} bytes")
        self.cap = cap


def answer_seconds(cap: int) -> float:
    """The longest an answer of at most ``cap`` bytes may take, headers to last byte."""
    return ANSWER_SECONDS + cap / SLOWEST


def capped_request(client: httpx.Client, method: str, url: str, cap: int, *, seconds: float | None = None,
                   **kwargs: Any) -> httpx.Response:
    """``client.request(method, url, **kwargs)``, its body read as it comes, at most ``cap`` bytes
    (unpacked), within ``seconds`` (by default ``answer_seconds(cap)``; past it httpx.ReadTimeout).

    The answer returned holds its body like any read response (``.content``); httpx's errors pass
    through, and an answer packed in a way not asked for is httpx.DecodingError."""
    seconds = answer_seconds(cap) if seconds is None else seconds
    deadline = time.monotonic() + seconds
    headers = httpx.Headers(kwargs.pop("headers", None))
    headers["Accept-Encoding"] = ASKED
    raw_cap = cap + cap // 64 + 1024  # packing adds a little to what it packs, never more
    _bound(client)
    # From here every connect, write and read is given the time left, and every byte read is counted:
    # the framing around the body's data may double it at most (55b (1)).
    held = _READING.set(_Reading(deadline, cap, 2 * raw_cap + HEADS))
    try:
        with client.stream(method, url, headers=headers, **kwargs) as streamed:
            declared = streamed.headers.get("content-length", "")
            if declared.isascii() and declared.isdigit() and int(declared) > raw_cap:
                raise AnswerTooLarge(cap)  # said up front: not one byte of it read
            unpack = _Unpacker(streamed.headers.get_list("content-encoding", split_commas=True))
            parts, size, raw_size = [], 0, 0
            for raw in streamed.iter_raw():  # the length said may be a lie: counted as it comes
                if time.monotonic() > deadline:
                    raise httpx.ReadTimeout(f"the answer took longer than {seconds:.0f} s in all",
                                            request=streamed.request)
                raw_size += len(raw)
                if raw_size > raw_cap:
                    raise AnswerTooLarge(cap)
                for part in unpack.parts(raw):
                    size += len(part)
                    if size > cap:
                        raise AnswerTooLarge(cap)
                    parts.append(part)
            return _answer(streamed, b"".join(parts))
    finally:
        _READING.reset(held)


def _left(timeout: float | None, late: type[httpcore.TimeoutException]) -> float | None:
    """``timeout`` (one network step's), at most the time left before this thread's answer's deadline;
    none left: ``late`` (httpx makes it its own ConnectTimeout, ReadTimeout, WriteTimeout)."""
    reading = _READING.get()
    if reading is None:
        return timeout
    left = reading.deadline - time.monotonic()
    if left <= 0:
        raise late("the answer took longer than its deadline in all")
    return left if timeout is None else min(timeout, left)


class _BoundedStream(httpcore.NetworkStream):
    """A connection whose every step ends by the deadline of the answer being read (``_left``), and
    whose reads for it are counted against its wire cap: heads, framing and body alike."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            data = self._stream.read(max_bytes, _left(timeout, httpcore.ReadTimeout))
        except httpcore.ReadTimeout:
            _left(0.0, httpcore.ReadTimeout)  # the deadline's, said as such
            raise
        reading = _READING.get()
        if reading is not None:
            reading.read += len(data)
            if reading.read > reading.wire_cap:
                # httpcore closes a connection an error leaves mid-answer: nothing more is read.
                raise AnswerTooLarge(reading.cap)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        # A piece at a time: one write's timeout bounds each send() of it, not the whole buffer.
        for start in range(0, len(buffer), PIECE):
            self._stream.write(buffer[start:start + PIECE], _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _BoundedStream(self._stream.start_tls(ssl_context, server_hostname,
                                                     _left(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _Bounded(httpcore.NetworkBackend):
    """The network of a client's connections, each bounded by the answer's deadline (``_left``)."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        return _BoundedStream(self._backend.connect_tcp(host, port, _left(timeout, httpcore.ConnectTimeout),
                                                        local_address, socket_options))

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        return _BoundedStream(self._backend.connect_unix_socket(
            path, _left(timeout, httpcore.ConnectTimeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def _bound(client: httpx.Client) -> None:
    """Every connection ``client`` makes (its transport's, and a proxy's from the environment) bounded
    by the deadline; once per client.  httpx has no setting for a network backend: its pools' own
    attribute is wrapped, and a transport without one is refused rather than left unbounded."""
    for transport in (client._transport, *client._mounts.values()):
        if transport is None:
            continue
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if backend is None:
            raise TypeError(f"an answer's deadline cannot bound {type(transport).__name__}")
        if not isinstance(backend, _Bounded):
            pool._network_backend = _Bounded(backend)  # type: ignore[union-attr]


class _Unpacker:
    """One ``Content-Encoding`` layer (gzip, deflate) or none, unpacked at most PIECE bytes a step."""

    def __init__(self, encodings: list[str]) -> None:
        layers = [e.strip().lower() for e in encodings if e.strip().lower() not in ("", "identity")]
        if len(layers) > 1:
            raise httpx.DecodingError(f"an answer packed {len(layers)} times over: refused unread")
        self._packing = layers[0] if layers else None
        if self._packing in ("gzip", "x-gzip"):
            self._z: Any = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif self._packing == "deflate":
            self._z = zlib.decompressobj()  # zlib's wrapping; raw deflate is tried if it is not that
            self._first = True
        elif self._packing is not None:
            raise httpx.DecodingError(f"an answer packed as {self._packing[:40]!r}, not asked for: refused")

    def parts(self, data: bytes) -> Iterator[bytes]:
        """What ``data`` (the next raw bytes) unpacks to, a piece at a time."""
        if self._packing is None:
            yield data
            return
        while data or not self._z.eof:
            if self._z.eof:  # past the packing's end: no server of ours sends anything there
                raise httpx.DecodingError("an answer with bytes after its packing's end: refused")
            try:
                out = self._z.decompress(data, PIECE)
            except zlib.error as err:
                if self._packing == "deflate" and self._first:  # no zlib header: raw deflate
                    self._first = False
                    self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise httpx.DecodingError(f"an answer whose packing is broken ({err})") from None
            self._first = False
            data = self._z.unconsumed_tail or self._z.unused_data  # unused: after the end, refused
            if out:
                yield out
            if not data and len(out) < PIECE:
                return  # all taken in, and nothing more pending for it

    _first = False


def _answer(streamed: httpx.Response, body: bytes) -> httpx.Response:
    """A read response holding ``body``, already decoded: no ``Content-Encoding`` to decode it twice."""
    headers = [(k, v) for k, v in streamed.headers.multi_items() if k.lower() != "content-encoding"]
    return httpx.Response(streamed.status_code, headers=headers, content=body, request=streamed.request)
