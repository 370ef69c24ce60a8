"""The wire: JSON messages on SOCK_SEQPACKET, which keeps each datagram whole.

A message longer than one datagram (a large folder's listing) goes in pieces:
each but the last starts with "+", the last with "."; a whole message starts
with "{".  A descriptor rides on the first datagram.
"""

from __future__ import annotations

import array
import json
import os
import socket

from fusevault.encoding import loads_untrusted

MAX_MESSAGE = 64 * 1024
PIECE = MAX_MESSAGE - 1
MAX_TOTAL = 64 * 1024 * 1024  # more is a broken peer, not a folder


def send(sock: socket.socket, message: dict, fd: int | None = None) -> None:
    data = json.dumps(message).encode()
    pieces = [data] if len(data) <= MAX_MESSAGE else \
        [(b"+" if end < len(data) else b".") + data[start:end]
         for start in range(0, len(data), PIECE) for end in [min(start + PIECE, len(data))]]
    for number, piece in enumerate(pieces):
        if fd is None or number:
            sock.sendmsg([piece])
        else:
            sock.sendmsg([piece], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])


def receive(sock: socket.socket) -> tuple[dict | None, int | None]:
    data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 1)
    fd = fds[0] if fds else None
    if data[:1] == b"+":
        parts = [data[1:]]
        total = len(data)
        while data[:1] == b"+" and total <= MAX_TOTAL:
            data, more, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 1)
            for stray in more:
                os.close(stray)
            if data[:1] in (b"+", b"."):
                parts.append(data[1:])
                total += len(data)
            else:
                data = b""
                break
        data = b"".join(parts) if data[:1] == b"." else b""
    try:
        message = loads_untrusted(data) if data else None
    except ValueError:
        message = None
    if not isinstance(message, dict):
        if fd is not None:
            os.close(fd)
        return None, None
    return message, fd
