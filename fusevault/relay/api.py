"""The relay's HTTP handlers (the routes are listed in fusevault/relay/app.py): tokens,
sessions, the key exchange, file requests, chunks, and the long polls they wait in."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import jwt
import trio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from fusevault.relay import guards
from fusevault.relay.bells import Bells
from fusevault.relay.items import ItemStore
from fusevault.relay.limits import Limits, Refused
from fusevault.relay.state import RelayState

FALLBACK = 0.5  # seconds between probes of a long poll that no write of this process woke
MAX_JSON = 1024 * 1024  # the manifest has its own cap (Limits.max_manifest)
# Bytes of one file request on the wire, at most, for an honest receiver: ~143 with a short file id
# (a public key and a MAC of 44 characters each), ~175 with a 32-character one.  The requests route
# takes max_files of them in one call (10,000 x 256 = 2.56 MB with the default limits), so that any
# session the relay opens can be asked for whole (70b (1): capped at MAX_JSON, 1 MiB held 7,332 of
# them, and a folder of more was never received); receive.py posts them 1,000 a call anyway.
REQUEST_WIRE = 256
# Values a body may hold, by its shape, counted before it is parsed (guards.read_json, 71b (1)): a body
# of a few fields (a join, a message of the key exchange with its 16 MiB manifest as one string, an
# answer); a session's offer, per file ``{"id", "size"}``; a requests call, per request
# ``{"filename", "public_key", "first", "mac"}``: its bracket and commas, and one to spare.
FEW_VALUES = guards.FEW_VALUES
FILE_VALUES = 4
REQUEST_VALUES = 6
CLOSE = {"Connection": "close"}
LOOPBACK = ("127.0.0.1", "::1")


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
        body = await guards.read_json(request, MAX_JSON, FEW_VALUES + FILE_VALUES * self.limits.max_files)
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
        body = await guards.read_json(request, MAX_JSON, FEW_VALUES)
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
        body = await guards.read_json(request, self.limits.max_manifest + MAX_JSON, FEW_VALUES,
                                      ascii=True)  # the manifest: base64 (72b (2))
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
        body = await guards.read_json(request, max(MAX_JSON, self.limits.max_files * REQUEST_WIRE),
                                      FEW_VALUES + REQUEST_VALUES * self.limits.max_files)
        requests = body.get("requests")
        if not isinstance(requests, list) or not all(isinstance(r, dict) for r in requests):
            raise Refused(400, "requests is a list of objects")
        await self.run(self.state.add_requests, sid, claims["sub"], requests)
        self.bells.ring(f"sender:{sid}")
        return Response(status_code=202)

    async def acknowledge(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        claims = self.claims(request, sid, "sender")
        body = await guards.read_json(request, MAX_JSON, FEW_VALUES)
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
