"""The relay's HTTP API: a Starlette app, served by Hypercorn on trio.

    POST   /sessions                       sender: open a session (files, code hash)
    POST   /sessions/join                  receiver: join by name and code hash
    DELETE /sessions/{sid}                 sender: end it (every key goes)
    POST   /sessions/{sid}/requests        receiver: ask for files (public key, PAKE message)
    GET    /sessions/{sid}/requests        sender: requests not yet answered (long poll)
    POST   /sessions/{sid}/acks            sender: answer one (its key, PAKE message, sealed meta)
    GET    /sessions/{sid}/acks            receiver: the answers to its requests (long poll)
    POST   /requests/{rid}/chunks          sender: queue a chunk (waits while the queue is full)
    GET    /requests/{rid}/chunks/next     receiver: take the next chunk (long poll)
    GET    /requests/{rid}                 sender: is it still open, how much is queued
    DELETE /requests/{rid}                 receiver: received, verified: forget it

With ``--couchdb`` the same service keeps capability links (seed 001): the
routes in fusevault/relay/item_routes.py.

Callers prove who they are with the token the relay issued when they opened
or joined the session (an EdDSA JWT carrying the session id, the user id and
the role); the signing key lives only in this process.  Every call counts
against the caller's per-second budget; a limit answers 429 with Retry-After.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
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
from fusevault.relay.item_routes import ItemRoutes, read_json
from fusevault.relay.items import ItemStore
from fusevault.relay.state import LimitReached, Limits, Refused, RelayState
from fusevault.store.couch import strip_credentials

LONG_POLL = 10.0  # seconds a waiting GET (or a chunk for a full queue) is held at most
POLL_STEP = 0.05
CLOSE = {"Connection": "close"}


class Relay:
    def __init__(self, redis_url: str, limits: Limits = Limits(), items: ItemStore | None = None) -> None:
        self.state = RelayState(redis_url, limits)
        self.items = items
        self.limits = limits
        self._signing = Ed25519PrivateKey.generate()
        self._verify = self._signing.public_key()
        self.limiter = trio.CapacityLimiter(32)
        self.waiting = trio.CapacityLimiter(256)  # threads blocked in BRPOP

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
            raise Refused(401, "the relay does not know this session token (did it restart?)") from None
        wrong_session = sid is not None and claims.get("sid") != sid
        if wrong_session or (role is not None and claims.get("role") != role):
            raise Refused(403, "this token is not for that")
        return claims

    # --- handlers

    async def create(self, request: Request) -> Response:
        body = await read_json(request)
        owner = uuid.uuid4().hex
        try:
            sid, name = await self.run(self.state.create_session, _ip(request), owner,
                                       str(body["code_hash"]), list(body["files"]))
        except (KeyError, TypeError):
            raise Refused(400, "a session needs code_hash and files") from None
        return JSONResponse({"id": sid, "name": name, "token": self.token(sid, owner, "sender"),
                             "limits": self.limits.__dict__}, status_code=201)

    async def join(self, request: Request) -> Response:
        body = await read_json(request)
        sid, files = await self.run(self.state.join, str(body.get("name")), str(body.get("code_hash")),
                                    _ip(request))
        uid = uuid.uuid4().hex
        return JSONResponse({"id": sid, "user_id": uid, "token": self.token(sid, uid, "receiver"),
                             "files": files, "limits": self.limits.__dict__})

    async def close(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        self.claims(request, sid, "sender")
        await self.run(self.state.close_session, sid)
        return Response(status_code=204)

    async def add_requests(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        claims = self.claims(request, sid, "receiver")
        body = await read_json(request)
        await self.run(self.state.add_requests, sid, claims["sub"], list(body.get("requests", [])))
        return Response(status_code=202)

    async def pending(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        self.claims(request, sid, "sender")
        await self.run(self.state.refresh, sid)
        found = await self._wait(lambda: self.state.pending_requests(sid), request)
        return JSONResponse({"requests": found})

    async def acknowledge(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        claims = self.claims(request, sid, "sender")
        body = await read_json(request)
        try:
            rid = await self.run(self.state.acknowledge, sid, claims["sub"], body)
        except (KeyError, TypeError, ValueError):
            raise Refused(400, "an answer needs filename, user_id, public_key, pake, chunks, meta") from None
        return JSONResponse({"request_id": rid}, status_code=201)

    async def acknowledgements(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        claims = self.claims(request, sid, "receiver")
        found = await self._wait(lambda: self.state.acknowledgements(sid, claims["sub"]), request)
        return JSONResponse({"acks": found})

    async def push(self, request: Request) -> Response:
        rid = await self._request_member(request, "sender")
        try:
            nr, iv = int(request.headers["x-chunk"]), request.headers["x-iv"]
        except (KeyError, ValueError):
            raise Refused(400, "a chunk needs X-Chunk and X-IV headers") from None
        if int(request.headers.get("content-length", 0)) > self.limits.max_chunk:
            raise Refused(413, f"chunks are at most {self.limits.max_chunk} bytes")
        data = await request.body()
        # Backpressure: hold the sender while the queue is full, then ask it to retry.
        if await self._wait(lambda: self.state.push_chunk(rid, nr, iv, data), request):
            return Response(status_code=201)
        return JSONResponse({"error": "the receiver is slow: queue full"}, status_code=503,
                            headers={"Retry-After": "1"})

    async def pop(self, request: Request) -> Response:
        rid = await self._request_member(request, "receiver")
        # BRPOP in a thread of its own limiter: the chunk is handed over the
        # moment it is queued, and waiting receivers cannot starve the rest.
        wait = max(1, int(min(float(request.query_params.get("wait", LONG_POLL)), LONG_POLL)))
        found = await trio.to_thread.run_sync(self.state.pop_chunk, rid, wait,
                                              limiter=self.waiting)
        if not found:
            if not await self.run(self.state.request_open, rid):
                raise Refused(404, "the transfer was cancelled")
            return Response(status_code=204)
        nr, iv, data = found
        return Response(data, media_type="application/octet-stream",
                        headers={"X-Chunk": str(nr), "X-IV": iv})

    async def status(self, request: Request) -> Response:
        rid = await self._request_member(request, "sender")
        if not await self.run(self.state.request_open, rid):
            return JSONResponse({"open": False}, status_code=404)
        return JSONResponse({"open": True, "queued": await self.run(self.state.queued, rid)})

    async def finish(self, request: Request) -> Response:
        rid = await self._request_member(request, None)
        await self.run(self.state.finish_request, rid)
        return Response(status_code=204)

    async def health(self, request: Request) -> Response:
        await self.run(self.state.ping)
        return JSONResponse({"ok": True})

    async def _request_member(self, request: Request, role: str | None) -> str:
        rid = request.path_params["rid"]
        claims = self.claims(request, None, role)
        if not await self.run(self.state.member, rid, claims["sub"]):
            raise Refused(404, "no such transfer (it ended or expired)")
        return rid

    async def _wait(self, probe: Callable[[], Any], request: Request) -> Any:
        """Run ``probe`` until it gives something truthy or the long poll ends."""
        wait = min(float(request.query_params.get("wait", LONG_POLL)), LONG_POLL)
        deadline = trio.current_time() + wait
        while True:
            found = await self.run(probe)
            if found or trio.current_time() >= deadline:
                return found
            await trio.sleep(POLL_STEP)


def _ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def build_app(relay: Relay) -> Starlette:
    def guarded(handler: Callable[[Request], Awaitable[Response]]):
        async def endpoint(request: Request) -> Response:
            try:
                await relay.run(relay.state.count_call, _ip(request))
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

    routes = [
        Route("/health", guarded(relay.health), methods=["GET"]),
        Route("/sessions", guarded(relay.create), methods=["POST"]),
        Route("/sessions/join", guarded(relay.join), methods=["POST"]),
        Route("/sessions/{sid}", guarded(relay.close), methods=["DELETE"]),
        Route("/sessions/{sid}/requests", guarded(relay.add_requests), methods=["POST"]),
        Route("/sessions/{sid}/requests", guarded(relay.pending), methods=["GET"]),
        Route("/sessions/{sid}/acks", guarded(relay.acknowledge), methods=["POST"]),
        Route("/sessions/{sid}/acks", guarded(relay.acknowledgements), methods=["GET"]),
        Route("/requests/{rid}/chunks", guarded(relay.push), methods=["POST"]),
        Route("/requests/{rid}/chunks/next", guarded(relay.pop), methods=["GET"]),
        Route("/requests/{rid}", guarded(relay.status), methods=["GET"]),
        Route("/requests/{rid}", guarded(relay.finish), methods=["DELETE"]),
        *ItemRoutes(relay.items, relay.run).routes(guarded),
    ]
    return Starlette(routes=routes)


def open_items(url: str) -> ItemStore:
    """The link store's database, made if missing; a one-line error if CouchDB is not there."""
    user = os.environ.get("FUSEVAULT_COUCHDB_USER")
    credentials = (user, os.environ.get("FUSEVAULT_COUCHDB_PASSWORD", "")) if user else None
    try:
        return ItemStore(url, credentials)
    except (OSError, couchdb.http.ServerError, couchdb.http.Unauthorized) as err:
        raise RelayUnavailable(f"the relay cannot use the CouchDB database {strip_credentials(url)}: "
                               f"{getattr(err, 'strerror', None) or err}") from None


async def serve(redis_url: str, host: str, port: int, limits: Limits = Limits(),
                couchdb_url: str | None = None, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve the relay (and, with a CouchDB database, the link store) until cancelled."""
    from hypercorn.config import Config
    from hypercorn.trio import serve as hypercorn_serve

    items = await trio.to_thread.run_sync(open_items, couchdb_url) if couchdb_url else None
    relay = Relay(redis_url, limits, items)
    await relay.run(relay.state.ping)  # fail now, with a clear message, if Redis is not there
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    # Hypercorn's messages go through the command's own handler, once: given a
    # name ("-") it would add a handler of its own and still pass every line on.
    config.errorlog = logging.getLogger("hypercorn.error")
    task_status.started()
    await hypercorn_serve(build_app(relay), config)
