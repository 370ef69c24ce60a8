"""The relay's HTTP API: a Starlette app, served by Hypercorn on trio.

    POST   /sessions                       sender: open a session (file ids and sizes, a random salt)
    POST   /sessions/join                  receiver: join by name (no code: the key exchange tests it)
    DELETE /sessions/{sid}                 sender: end it (every key goes)
    POST   /sessions/{sid}/fail            either: a confirmation failed: end it for both
    POST   /sessions/{sid}/handshake       either: post a key-exchange message (write-once fields)
    GET    /sessions/{sid}/handshake       receiver: the sender's answer (long poll)
    GET    /sessions/{sid}/events          sender: key exchanges and file requests to answer (long poll)
    POST   /sessions/{sid}/requests        receiver: ask for files (public key, first chunk, MAC)
    POST   /sessions/{sid}/acks            sender: answer one (its public key, MAC)
    GET    /sessions/{sid}/acks            receiver: the answers to its requests (long poll)
    POST   /requests/{rid}/chunks          sender: queue a chunk (waits while the queue is full)
    GET    /requests/{rid}/chunks/next     receiver: take the next chunk (long poll); the first
                                           call (?ready=1) lets the chunks of that request flow
    GET    /requests/{rid}                 sender: is it still open, how much is queued
    DELETE /requests/{rid}                 either: received and verified, paused, or replaced
    GET    /stats                          from this machine only: the relay's counters

With ``--couchdb`` the same service keeps capability links (seed 001): the
routes in fusevault/relay/item_routes.py.

Callers prove who they are with the token the relay issued when they opened
or joined the session (an EdDSA JWT carrying the session id, the user id and
the role); the signing key is kept in a file of the relay's (``--token-key``)
so that tokens survive a restart.  Every call counts against the caller's
per-second budget; a limit answers 429 with Retry-After.  A long poll ends
when its client goes, and a write wakes the long polls waiting for it.
"""
from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import couchdb
import redis
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fusevault.errors import RelayUnavailable
from fusevault.relay.api import CLOSE, Relay
from fusevault.relay.item_routes import ItemRoutes
from fusevault.relay.items import ItemStore
from fusevault.relay.limits import LimitReached, Limits, Refused
from fusevault.store.couch import strip_credentials

log = logging.getLogger(__name__)


def load_signing_key(path: Path) -> Ed25519PrivateKey:
    """The token key from ``path`` (made there, mode 0600, if missing)."""
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        load_pem_private_key,
    )

    try:
        key = load_pem_private_key(path.read_bytes(), None)
        if isinstance(key, Ed25519PrivateKey):
            return key
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as err:
        raise RelayUnavailable(f"the relay cannot read its token key {path}: {err}") from None
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    temp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except OSError as err:
        temp.unlink(missing_ok=True)
        raise RelayUnavailable(f"the relay cannot write its token key {path}: {err.strerror}") from None
    return key


class CloseUnread:
    """ASGI middleware: a request answered before its body was read gets its connection closed.

    Hypercorn hands the body to the app through a small queue and, once the
    answer is sent, queues http.disconnect before it closes the connection.
    With the queue full of body the app never read, that put waits forever
    and the connection stays open, the client still sending.  So while such
    an answer goes out, what is queued is read and dropped (a few pieces of
    64 KiB): the server then closes the connection."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not any(
                name in (b"content-length", b"transfer-encoding") for name, _ in scope["headers"]):
            await self.app(scope, receive, send)
            return
        read_all = False

        async def receiving():
            nonlocal read_all
            message = await receive()
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                read_all = True
            return message

        async def drain() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        async with trio.open_nursery() as nursery:
            async def sending(message) -> None:
                if message["type"] == "http.response.body" and not message.get("more_body") and not read_all:
                    nursery.start_soon(drain)
                await send(message)

            await self.app(scope, receiving, sending)


def build_app(relay: Relay) -> CloseUnread:
    def guarded(handler: Callable[[Request], Awaitable[Response]], *, counted: bool = True):
        """Count the call (unless the handler does, with its own work), answer errors in one line."""
        async def endpoint(request: Request) -> Response:
            try:
                if counted:
                    await relay.run(relay.state.count_call, relay.address(request))
                return await handler(request)
            # Errors close the connection: the request's body may be unread,
            # and a keep-alive connection with a half-read body can hang.
            except LimitReached as err:
                return JSONResponse({"error": str(err), "limit": True}, status_code=429,
                                    headers={"Retry-After": str(err.retry_after), **CLOSE})
            except Refused as err:
                return JSONResponse({"error": str(err)}, status_code=err.status, headers=CLOSE)
            except redis.RedisError:
                return JSONResponse({"error": "the relay's storage is unavailable"}, status_code=503,
                                    headers=CLOSE)
        return endpoint

    def links(handler: Callable[[Request], Awaitable[Response]]):
        async def endpoint(request: Request) -> Response:
            if relay.items is None:  # refused before a byte of the body is read
                raise Refused(503, "this relay does not keep links (it was started without --couchdb)")
            return await handler(request)
        return guarded(endpoint)

    routes = [
        Route("/health", guarded(relay.health), methods=["GET"]),
        Route("/stats", guarded(relay.counters), methods=["GET"]),
        Route("/sessions", guarded(relay.create), methods=["POST"]),
        Route("/sessions/join", guarded(relay.join), methods=["POST"]),
        Route("/sessions/{sid}", guarded(relay.close), methods=["DELETE"]),
        Route("/sessions/{sid}/fail", guarded(relay.fail), methods=["POST"]),
        Route("/sessions/{sid}/handshake", guarded(relay.post_handshake), methods=["POST"]),
        Route("/sessions/{sid}/handshake", guarded(relay.handshake), methods=["GET"]),
        Route("/sessions/{sid}/events", guarded(relay.events), methods=["GET"]),
        Route("/sessions/{sid}/requests", guarded(relay.add_requests), methods=["POST"]),
        Route("/sessions/{sid}/acks", guarded(relay.acknowledge), methods=["POST"]),
        Route("/sessions/{sid}/acks", guarded(relay.acknowledgements), methods=["GET"]),
        Route("/requests/{rid}/chunks", guarded(relay.push, counted=False), methods=["POST"]),
        Route("/requests/{rid}/chunks/next", guarded(relay.pop, counted=False), methods=["GET"]),
        Route("/requests/{rid}", guarded(relay.status), methods=["GET"]),
        Route("/requests/{rid}", guarded(relay.finish), methods=["DELETE"]),
        *ItemRoutes(relay.items, relay.run).routes(links),
    ]
    return CloseUnread(Starlette(routes=routes))


def open_items(url: str) -> ItemStore:
    """The link store's database, made if missing; a one-line error if CouchDB is not there."""
    user = os.environ.get("FUSEVAULT_COUCHDB_USER")
    credentials = (user, os.environ.get("FUSEVAULT_COUCHDB_PASSWORD", "")) if user else None
    try:
        return ItemStore(url, credentials)
    except (OSError, couchdb.http.ServerError, couchdb.http.Unauthorized) as err:
        raise RelayUnavailable(f"the relay cannot use the CouchDB database {strip_credentials(url)}: "
                               f"{getattr(err, 'strerror', None) or err}") from None


def hypercorn_config(host: str, port: int):
    """Hypercorn's own limits: slow or idle clients are dropped, headers and queues are small."""
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    # Hypercorn's messages go through the command's own handler, once: given a
    # name ("-") it would add a handler of its own and still pass every line on.
    config.errorlog = logging.getLogger("hypercorn.error")
    config.read_timeout = 60           # a client that sends nothing for a minute is dropped
    config.keep_alive_timeout = 15     # an idle kept-alive connection, in seconds
    config.h11_max_incomplete_size = 16 * 1024  # request line and headers
    config.h2_max_concurrent_streams = 16
    config.h2_max_header_list_size = 16 * 1024
    config.max_app_queue_size = 4      # body pieces buffered ahead of the app (then TCP waits)
    config.backlog = 256
    config.graceful_timeout = 3
    return config


async def serve(redis_url: str, host: str, port: int, limits: Limits = Limits(),
                couchdb_url: str | None = None, *, trusted_proxies: tuple[str, ...] = (),
                signing_key: Ed25519PrivateKey | None = None, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve the relay (and, with a CouchDB database, the link store) until cancelled."""
    from hypercorn.trio import serve as hypercorn_serve

    items = await trio.to_thread.run_sync(open_items, couchdb_url) if couchdb_url else None
    relay = Relay(redis_url, limits, items, trusted_proxies=trusted_proxies, signing_key=signing_key)
    await relay.run(relay.state.ping)  # fail now, with a clear message, if Redis is not there
    task_status.started()
    await hypercorn_serve(build_app(relay), hypercorn_config(host, port))
