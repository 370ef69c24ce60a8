"""An HTTP answer from a server of someone else (the relay, a link store, a sync peer), read with a cap.

httpx reads an answer's body whole (``Client.request``, ``.content``): a hostile server (or whoever is
on its path without TLS) answering 1.5 GiB took the mount to 3.2 GB, at its start and every minute,
and ``receive`` to 2.1 GB and an exit 70 (attack round 52t (3)).  Here the body is read as a stream
and refused as soon as it is longer than the caller's cap (its route's largest honest answer),
whether the server said so in ``Content-Length``, lied there, or sent it chunked with no length.
Each client turns ``AnswerTooLarge`` into its own ordinary network error.
"""

from __future__ import annotations

from typing import Any

import httpx

MIB = 1024 * 1024


class AnswerTooLarge(Exception):
    """The answer's body is longer than the cap: not read further (its message says the cap)."""

    def __init__(self, cap: int) -> None:
        super().__init__(f"an answer of more than {cap} bytes")
        self.cap = cap


def capped_request(client: httpx.Client, method: str, url: str, cap: int, **kwargs: Any) -> httpx.Response:
    """``client.request(method, url, **kwargs)``, its body read as it comes, at most ``cap`` bytes.

    The cap counts the decoded bytes (a gzip of a few KiB can unpack to GiBs).  The answer returned
    holds its body like any read response (``.content``); httpx's errors pass through."""
    with client.stream(method, url, **kwargs) as streamed:
        declared = streamed.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > cap:
            raise AnswerTooLarge(cap)  # said up front: not one byte of it read
        parts, size = [], 0
        for part in streamed.iter_bytes():  # the length said may be a lie: counted as it comes
            size += len(part)
            if size > cap:
                raise AnswerTooLarge(cap)
            parts.append(part)
        return _answer(streamed, b"".join(parts))


def _answer(streamed: httpx.Response, body: bytes) -> httpx.Response:
    """A read response holding ``body``, already decoded: no ``Content-Encoding`` to decode it twice."""
    headers = [(k, v) for k, v in streamed.headers.multi_items() if k.lower() != "content-encoding"]
    return httpx.Response(streamed.status_code, headers=headers, content=body, request=streamed.request)
