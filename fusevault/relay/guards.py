"""What keeps the relay standing: bounded waits, capped bodies, the real client address.

Every wait a caller asks for is a finite number of seconds up to LONG_POLL;
anything else is a 400.  A body is read as a stream and refused (413) the
moment it passes its cap, whatever Content-Length said or did not say, and
handlers check the caller's token before they read it at all.  Behind a
reverse proxy every connection comes from the proxy, so the per-address
limits would be one limit for everybody: with ``--trusted-proxy`` the
address is taken from X-Forwarded-For, but only when the connection comes
from a listed proxy, walking the header from the right and stopping at the
first address that is not a listed proxy (what a client wrote further left
is never believed).  IPv6 clients are counted per /64, the block one
machine usually holds.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable

import trio
from starlette.requests import ClientDisconnect, Request

from fusevault.encoding import loads_untrusted
from fusevault.relay.limits import Refused

LONG_POLL = 10.0  # seconds a waiting request is held at most


def wait_param(request: Request, default: float = LONG_POLL) -> float:
    raw = request.query_params.get("wait")
    if raw is None:
        return default
    try:
        wait = float(raw)
    except ValueError:
        wait = math.nan
    if not (math.isfinite(wait) and 0 <= wait <= LONG_POLL):
        raise Refused(400, f"wait is a number of seconds from 0 to {LONG_POLL:g}")
    return wait


async def read_body(request: Request, cap: int) -> bytes:
    """The body, read as it comes; 413 as soon as it is longer than ``cap``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Refused(400, "Content-Length is not a number")
        if int(declared) > cap:
            raise Refused(413, f"the body is larger than {cap} bytes")
    parts, size = [], 0
    try:
        async for part in request.stream():
            size += len(part)
            if size > cap:
                raise Refused(413, f"the body is larger than {cap} bytes")
            parts.append(part)
    except ClientDisconnect:
        raise Refused(400, "the request was cut off") from None
    return b"".join(parts)


# Bodies longer than this are parsed in a worker thread, a few at a time: a parse of 16 MiB held the
# event loop, so every other caller, for most of a second (71b (1)); a short one costs less than a hop.
PARSE_INLINE = 64 * 1024
_PARSES = trio.CapacityLimiter(2)

# Values a body of a few fields holds (a join, a message of the key exchange with its manifest as one
# string, an answer, a link's item): its brackets and commas, and some to spare.
FEW_VALUES = 32


async def read_json(request: Request, cap: int, most: int, *, ascii: bool = False) -> dict:
    """The body as a JSON object, or a 400/413 answer: at most ``cap`` bytes, holding at most ``most``
    values (the route's shape: its objects, arrays and members), counted before it is parsed.

    What a parse builds is bounded before it is built (71b (1)): within its cap, JSON of many small
    values parses to ~26 times its size (``[{}, {}, ...]``: 16 MiB to the handshake route took the
    relay from 64 MB to 507 MB).  The count is of the ``{`` ``[`` ``,`` bytes, in strings too (every
    value but a container's first is after a comma, and a container's first is counted by its
    bracket); the relay's bodies are a few fields, base64, ids and numbers, so an honest one holds
    none in its strings, and a value parsed costs at most a few hundred bytes past its text.  In
    UTF-16 or UTF-32 each of these characters still holds its byte: counted, never missed.

    ``ascii``: the route's long fields are base64, hex or ids, so a body longer than PARSE_INLINE
    must be ASCII without escapes, refused before it is decoded (72b (2)): one character past U+FFFF,
    raw or as a ``\\u`` escape, made the whole text and its string 4 bytes a character, ~9 times the
    body.  A short one may hold any text (a refusal's reason): it costs little whatever its width."""
    body = await read_body(request, cap)
    if ascii and len(body) > PARSE_INLINE and not (body.isascii() and b"\\" not in body):
        raise Refused(400, "a long body must be ASCII without escapes (base64, ids and numbers)")
    held = body.count(b"{") + body.count(b"[") + body.count(b",")
    if held > most:
        raise Refused(400, f"the body holds more values than the {most} this call takes")
    if len(body) <= PARSE_INLINE:
        return _object(body)
    return await trio.to_thread.run_sync(_object, body, limiter=_PARSES)


def _object(body: bytes) -> dict:
    try:
        parsed = loads_untrusted(body)
    except ValueError:
        raise Refused(400, "the body is not JSON") from None
    if not isinstance(parsed, dict):
        raise Refused(400, "the body must be a JSON object")
    return parsed


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _limit_key(address: Address) -> str:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class ClientAddress:
    """The address that per-address limits count, given the proxies we trust."""

    def __init__(self, trusted: Iterable[str] = ()) -> None:
        try:
            self.proxies = [ipaddress.ip_network(c, strict=False) for c in trusted]
        except ValueError as err:
            raise ValueError(f"--trusted-proxy takes addresses or CIDR blocks: {err}") from None

    def _trusted(self, address: Address) -> bool:
        return any(address in net for net in self.proxies)

    def __call__(self, request: Request) -> str:
        host = request.client.host if request.client else ""
        try:
            peer = ipaddress.ip_address(host)
        except ValueError:
            return host or "unknown"
        if not self.proxies or not self._trusted(peer):
            return _limit_key(peer)
        hops = [h.strip() for value in request.headers.getlist("x-forwarded-for") for h in value.split(",")]
        for hop in reversed(hops):
            try:
                address = ipaddress.ip_address(hop)
            except ValueError:
                break  # a proxy we trust wrote garbage: count the proxy
            if not self._trusted(address):
                return _limit_key(address)
        return _limit_key(peer)
