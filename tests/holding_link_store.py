"""A link store on loopback that holds its answers: the hostile store of attack rounds 53d (2) and 54b (1).

Items are made (``POST /items``) at once, so a share or a drop box can be created against it; every
other request is handed to the scene's ``hold``, which answers as slowly as it likes until ``stop``
is set (a thread per connection, so the client's retries each get one)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

import trio

ITEM = "AbCdEfGhIjKlMnOpQrStUvWx"
Held = tuple[str, threading.Event, threading.Event]


def answer(conn: socket.socket, body: bytes) -> None:
    """A whole JSON answer, the connection closed after it."""
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))


@contextmanager
def holding_link_store(hold: Callable[[socket.socket, threading.Event], None]) -> Iterator[Held]:
    """(url, asked, stop): ``asked`` is set at the first request ``hold`` gets."""
    listener = socket.create_server(("127.0.0.1", 0))
    asked, stop = threading.Event(), threading.Event()

    def one(conn: socket.socket) -> None:
        with conn:
            head = conn.recv(65536)
            try:
                if head.startswith(b"POST /items "):
                    answer(conn, b'{"id": "%s"}' % ITEM.encode())
                    return
                asked.set()
                hold(conn, stop)
            except OSError:
                pass

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=one, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", asked, stop
    finally:
        stop.set()
        listener.close()


async def let_go_before_the_cancel_ended(start: Callable[[trio.Nursery], Awaitable[object]],
                                         asked: threading.Event, stop: threading.Event) -> bool:
    """Whether a cancel of what ``start`` started waited for the store to let go: cancelled once the
    store holds a request (``asked``); a timer lets go after 10 s, so that a wait ends."""
    timer = threading.Timer(10, stop.set)
    try:
        async with trio.open_nursery() as nursery:
            await start(nursery)
            with trio.fail_after(30):
                while not asked.is_set():
                    await trio.sleep(0.05)
            timer.start()
            nursery.cancel_scope.cancel()
        return stop.is_set()
    finally:
        timer.cancel()
