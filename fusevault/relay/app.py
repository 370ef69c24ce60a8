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

import contextlib
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import couchdb
import jwt
import redis
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fusevault.errors import RelayUnavailable
from fusevault.relay import guards
from fusevault.relay.item_routes import ItemRoutes
from fusevault.relay.items import ItemStore
from fusevault.relay.state import LimitReached, Limits, Refused, RelayState
from fusevault.store.couch import strip_credentials

log = logging.getLogger(__name__)

FALLBACK = 0.5  # seconds between probes of a long poll that no write of this process woke
MAX_JSON = 1024 * 1024  # the manifest has its own cap (Limits.max_manifest)
CLOSE = {"Connection": "close"}
LOOPBACK = ("127.0.0.1", "::1")


class Bells:
    """In-process wake-ups: a write rings the topic that long polls wait on."""

    def __init__(self) -> None:
        self._events: dict[str, list] = {}

    @contextlib.contextmanager
    def listen(self, topic: str) -> Iterator[trio.Event]:
        entry = self._events.get(topic)
        if entry is None:
            entry = self._events[topic] = [trio.Event(), 0]
        entry[1] += 1
        try:
            yield entry[0]
        finally:
            entry[1] -= 1
            if entry[1] == 0 and self._events.get(topic) is entry:
                del self._events[topic]

    def ring(self, *topics: str) -> None:
        for topic in topics:
            entry = self._events.pop(topic, None)
            if entry is not None:
                entry[0].set()


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


class Relay:
    def __init__(self, redis_url: str, limits: Limits = Limits(), items: ItemStore | None = None, *,
                 trusted_proxies: tuple[str, ...] = (), signing_key: Ed25519PrivateKey | None = None) -> None:
        self.state = RelayState(redis_url, limits)
        self.items = items
        self.limits = limits
        self.address = guards.ClientAddress(trusted_proxies)
        self._signing = signing_key or Ed25519PrivateKey.generate()
        self._verify = self._signing.public_key()
        self.limiter = trio.CapacityLimiter(32)
        self.bells = Bells()
        self.stats: Counter[str] = Counter()

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await trio.to_thread.run_sync(fn, *args, limiter=self.limiter)

    # --- tokens

    def token(self, sid: str, uid: str, role: str) -> str:
        claims = {"sid": sid, "sub": uid, "role": role,
                  "exp": int(time.time()) + self.limits.session_ttl * 24}
        return jwt.encode(claims, self._signing, algorithm="EdDSA")

    def claims(self, request: Request, sid: str | None, role: str | None) -> dict:
        auth = request.headers.get("authorization", "")
        try:
            claims = jwt.decode(auth.removeprefix("Bearer "), self._verify, algorithms=["EdDSA"])
        except jwt.PyJWTError:
            raise Refused(401, "the relay does not know this session token") from None
        wrong_session = sid is not None and claims.get("sid") != sid
        if wrong_session or (role is not None and claims.get("role") != role):
            raise Refused(403, "this token is not for that")
        return claims

    # --- sessions

    async def create(self, request: Request) -> Response:
        body = await guards.read_json(request, MAX_JSON)
        owner = uuid.uuid4().hex
        try:
            sid, name = await self.run(self.state.create_session, self.address(request), owner,
                                       body["code"], list(body["files"]))
        except (KeyError, TypeError):
            raise Refused(400, "a session needs code (a random salt) and files") from None
        self.stats["sessions"] += 1
        return JSONResponse({"id": sid, "name": name, "token": self.token(sid, owner, "sender"),
                             "limits": self.limits.__dict__}, status_code=201)

    async def join(self, request: Request) -> Response:
        body = await guards.read_json(request, MAX_JSON)
        sid, uid, salt = await self.run(self.state.join, str(body.get("name")), self.address(request))
        self.stats["joins"] += 1
        self.bells.ring(f"sender:{sid}")
        return JSONResponse({"id": sid, "user_id": uid, "code": salt,
                             "token": self.token(sid, uid, "receiver"), "limits": self.limits.__dict__})

    async def close(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        self.claims(request, sid, "sender")
        await self.run(self.state.close_session, sid)
        self.bells.ring(f"sender:{sid}", f"session:{sid}")
        return Response(status_code=204)

    async def fail(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        self.claims(request, sid, None)
        await self.run(self.state.fail_session, sid)
        self.stats["failed"] += 1
        self.bells.ring(f"sender:{sid}", f"session:{sid}")
        return Response(status_code=204)

    # --- the key exchange

    async def post_handshake(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        claims = self.claims(request, sid, None)
        body = await guards.read_json(request, self.limits.max_manifest + MAX_JSON)
        role = claims["role"]
        uid = claims["sub"] if role == "receiver" else str(body.pop("user_id", ""))
        await self.run(self.state.post_handshake, sid, uid, role, body)
        self.bells.ring(f"sender:{sid}" if role == "receiver" else f"session:{sid}")
        return Response(status_code=204)

    async def handshake(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        claims = self.claims(request, sid, "receiver")
        want = request.query_params.get("want", "")
        if want not in ("pake.b", "manifest"):
            raise Refused(400, "want is pake.b or manifest")
        found = await self._wait(request, f"session:{sid}",
                                 lambda: self.state.handshake(sid, claims["sub"], want))
        return JSONResponse({"handshake": found})

    async def events(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        self.claims(request, sid, "sender")
        await self.run(self.state.refresh, sid)

        def probe() -> dict | None:
            found = {"handshakes": self.state.sender_turn(sid), "requests": self.state.pending_requests(sid)}
            return found if found["handshakes"] or found["requests"] else None

        found = await self._wait(request, f"sender:{sid}", probe)
        return JSONResponse(found or {"handshakes": [], "requests": []})

    # --- file requests

    async def add_requests(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        claims = self.claims(request, sid, "receiver")
        body = await guards.read_json(request, MAX_JSON)
        requests = body.get("requests")
        if not isinstance(requests, list) or not all(isinstance(r, dict) for r in requests):
            raise Refused(400, "requests is a list of objects")
        await self.run(self.state.add_requests, sid, claims["sub"], requests)
        self.bells.ring(f"sender:{sid}")
        return Response(status_code=202)

    async def acknowledge(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        claims = self.claims(request, sid, "sender")
        body = await guards.read_json(request, MAX_JSON)
        try:
            rid = await self.run(self.state.acknowledge, sid, claims["sub"], body)
        except (KeyError, TypeError, ValueError):
            raise Refused(400, "an answer needs filename, user_id, public_key, chunks, first, mac") from None
        self.bells.ring(f"session:{sid}")
        return JSONResponse({"request_id": rid}, status_code=201)

    async def acknowledgements(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        claims = self.claims(request, sid, "receiver")
        found = await self._wait(request, f"session:{sid}",
                                 lambda: self.state.acknowledgements(sid, claims["sub"]))
        return JSONResponse({"acks": found or []})

    # --- chunks

    async def push(self, request: Request) -> Response:
        # The token is checked before the body is read; whether the request is
        # the caller's is checked with the push itself (one round trip to Redis).
        rid = request.path_params["rid"]
        claims = self.claims(request, None, "sender")
        try:
            nr, iv = int(request.headers["x-chunk"]), request.headers["x-iv"]
        except (KeyError, ValueError):
            raise Refused(400, "a chunk needs X-Chunk and X-IV headers") from None
        if nr < 0 or len(iv) > 64 or "@" in iv:
            raise Refused(400, "X-Chunk is a chunk number, X-IV a base64 IV")
        wait = guards.wait_param(request)
        data = await guards.read_body(request, self.limits.max_chunk)
        address = [self.address(request)]  # counted once, however long it waits

        def probe() -> int:
            return self.state.push_chunk(rid, claims["sub"], nr, iv, data, address.pop() if address else "")

        # Backpressure: hold the sender while the queue is full, then ask it to retry.
        queued = await self._wait(request, f"space:{rid}", probe, wait)
        if queued == 1:
            self.stats["chunks_in"] += 1
            self.stats["bytes_in"] += len(data)
            self.bells.ring(f"chunk:{rid}", f"space:{rid}")  # the receiver, and the sender's next chunk
        if queued:
            return Response(status_code=201)
        return JSONResponse({"error": "the receiver is not ready or slow: queue full"}, status_code=503,
                            headers={"Retry-After": "1"})

    async def pop(self, request: Request) -> Response:
        rid = request.path_params["rid"]
        claims = self.claims(request, None, "receiver")
        address = [self.address(request)]
        if request.query_params.get("ready"):  # its first call: the sender may start now
            await self.run(self.state.count_call, address.pop())
            await self.run(self.state.mark_ready, rid, claims["sub"])
            self.bells.ring(f"space:{rid}")

        def probe() -> tuple[int, str, bytes] | None:
            return self.state.pop_chunk(rid, claims["sub"], address.pop() if address else "")

        found, gone = await self._wait_gone(request, f"chunk:{rid}", probe)
        if found and gone:  # its receiver left before it could get it: keep it for the next one
            await self.run(self.state.unpop_chunk, rid, *found)
            found = None
        if not found:
            return Response(status_code=204)
        nr, iv, data = found
        self.stats["chunks_out"] += 1
        self.stats["bytes_out"] += len(data)
        self.bells.ring(f"space:{rid}")
        return Response(data, media_type="application/octet-stream", headers={"X-Chunk": str(nr), "X-IV": iv})

    async def status(self, request: Request) -> Response:
        rid = await self._request_member(request, "sender")
        if not await self.run(self.state.request_open, rid):
            return JSONResponse({"open": False}, status_code=404)
        return JSONResponse({"open": True, "queued": await self.run(self.state.queued, rid)})

    async def finish(self, request: Request) -> Response:
        rid = await self._request_member(request, None)
        await self.run(self.state.finish_request, rid)
        self.bells.ring(f"space:{rid}", f"chunk:{rid}")
        return Response(status_code=204)

    async def health(self, request: Request) -> Response:
        await self.run(self.state.ping)
        return JSONResponse({"ok": True})

    async def counters(self, request: Request) -> Response:
        proxied = "x-forwarded-for" in request.headers
        if proxied or not request.client or request.client.host not in LOOPBACK:
            raise Refused(404, "not found")
        return JSONResponse(dict(self.stats))

    async def _request_member(self, request: Request, role: str | None) -> str:
        rid = request.path_params["rid"]
        claims = self.claims(request, None, role)
        if not await self.run(self.state.member, rid, claims["sub"]):
            raise Refused(404, "no such transfer (it ended or expired)")
        return rid

    # --- long polls

    async def _wait(self, request: Request, topic: str, probe: Callable[[], Any],
                    wait: float | None = None) -> Any:
        return (await self._wait_gone(request, topic, probe, wait))[0]

    async def _wait_gone(self, request: Request, topic: str, probe: Callable[[], Any],
                         wait: float | None = None) -> tuple[Any, bool]:
        """Run ``probe`` until it gives something truthy, the wait ends, or the client goes.

        Returns what the last probe gave and whether the client went away.
        A probe is never abandoned in its thread: what it took is returned."""
        deadline = trio.current_time() + (guards.wait_param(request) if wait is None else wait)
        found: Any = None
        error: Exception | None = None
        self.stats["polls"] += 1
        try:
            with trio.CancelScope() as gone:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_watch_disconnect, request, gone)
                    try:
                        while True:
                            with self.bells.listen(topic) as bell:
                                found = await self.run(probe)
                                if found or trio.current_time() >= deadline:
                                    break
                                with trio.move_on_at(min(deadline, trio.current_time() + FALLBACK)):
                                    await bell.wait()
                    except Exception as err:  # noqa: BLE001 - raised below, outside the nursery
                        error = err
                    nursery.cancel_scope.cancel()
        finally:
            self.stats["polls"] -= 1
        if error is not None:
            raise error
        return found, gone.cancelled_caught


async def _watch_disconnect(request: Request, scope: trio.CancelScope) -> None:
    """Cancel ``scope`` when the client goes away (the server says http.disconnect)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


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
