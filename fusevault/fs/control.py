"""The control socket of a running mount: one JSON request, one JSON answer.

A personal mount's socket (0600) answers only its own uid and root; a shared
mount's (0666) answers anyone, and the handler is told who asks.  Either way
the caller is known from SO_PEERCRED, checked before anything is read.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

MAX_REQUEST = 64 * 1024
Handler = Callable[[dict, int], Awaitable[dict]]


def peer_uid(sock: Any) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def own_uid(uid: int) -> bool:
    return uid in (os.getuid(), 0)


async def serve(path: Path, handler: Handler, *, anyone: bool = False,
                task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Answer requests on ``path``: from this uid and root, or from ``anyone``."""
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path.unlink(missing_ok=True)
    await listener.bind(str(path))
    os.chmod(path, 0o666 if anyone else 0o600)
    listener.listen(16)
    task_status.started()
    try:
        async with trio.open_nursery() as nursery:
            while True:
                conn, _ = await listener.accept()
                nursery.start_soon(_answer, conn, handler, anyone)
    finally:
        listener.close()
        path.unlink(missing_ok=True)


async def _answer(conn: Any, handler: Handler, anyone: bool) -> None:
    with conn:
        uid = peer_uid(conn)
        if not anyone and not own_uid(uid):
            await conn.send(b'{"error": "permission denied"}\n')
            return
        data = b""
        with trio.move_on_after(10):
            while b"\n" not in data and len(data) < MAX_REQUEST:
                chunk = await conn.recv(4096)
                if not chunk:
                    break
                data += chunk
        try:
            request = json.loads(data)
            answer = await handler(request, uid)
        except ValueError:
            answer = {"error": "bad request"}
        await conn.send(json.dumps(answer).encode() + b"\n")


def request(path: Path, message: dict, timeout: float = 10.0) -> dict:
    """Ask a running mount something (blocking client, for the CLI)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)
