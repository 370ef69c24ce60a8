"""The relay's state in Redis (seed 002), as synchronous operations.

The HTTP layer calls these from worker threads (redis-py's client is
synchronous and thread-safe through its connection pool).  Each operation is
one pipeline (MULTI/EXEC where it must be atomic) and sets an expiry on every
key it writes.  Nothing here can read a file: chunks are ciphertext, keys are
public keys and PAKE messages, and the session code is kept as its SHA-256.
"""

from __future__ import annotations

import hmac
import json
import secrets
import uuid
from dataclasses import dataclass

import redis

from fusevault.relay import keys


@dataclass(frozen=True)
class Limits:
    session_ttl: int = 3600        # seconds of inactivity before a session's keys expire
    join_attempts: int = 5         # per session per IP
    calls_per_second: int = 400    # per IP (a transfer makes about 4 per MiB)
    max_chunk: int = 1024 * 1024   # bytes of ciphertext per chunk
    max_queue: int = 8             # chunks waiting per request
    max_files: int = 10_000        # per session


class LimitReached(Exception):
    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Refused(Exception):
    """A request that is not allowed (wrong code, unknown session...): status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# A fixed one-second window shared by all IPs: the SET ``calls`` holds
# "<ip>#<n>" for the n-th call of an IP in this second, and expires with it.
_CALL = """
local limit = tonumber(ARGV[2])
for n = 1, limit do
  if redis.call('SADD', KEYS[1], ARGV[1] .. '#' .. n) == 1 then
    if n == 1 and redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], 1) end
    return 1
  end
end
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIRE', KEYS[1], 1) end
return 0
"""

_NAME_WORDS = 4  # digits in a session name


class RelayState:
    def __init__(self, url: str, limits: Limits = Limits()) -> None:
        self.r = redis.Redis.from_url(url)
        self.limits = limits
        self._call = self.r.register_script(_CALL)

    def ping(self) -> None:
        self.r.ping()

    # --- limits

    def count_call(self, ip: str) -> None:
        if not self._call(keys=[keys.CALLS], args=[ip, self.limits.calls_per_second]):
            raise LimitReached("too many requests from this address: slow down", 1)

    # --- sessions

    def create_session(self, ip: str, owner: str, code_hash: str, files: list[dict]) -> tuple[str, str]:
        if not files or len(files) > self.limits.max_files:
            raise Refused(400, f"a session holds 1 to {self.limits.max_files} files")
        ttl = self.limits.session_ttl
        sid = uuid.uuid4().hex
        if not self.r.set(keys.created_sessions(ip), sid, nx=True, ex=ttl):
            left = max(1, self.r.ttl(keys.created_sessions(ip)))
            raise LimitReached("this address already has an open session: finish or cancel it first", left)
        for _ in range(20):
            name = "".join(secrets.choice("0123456789") for _ in range(_NAME_WORDS))
            if self.r.set(keys.session_name(name), sid, nx=True, ex=ttl):
                break
        else:
            self.r.delete(keys.created_sessions(ip))
            raise Refused(503, "the relay is busy: try again")
        pipe = self.r.pipeline()
        pipe.hset(keys.session(sid), mapping={"name": name, "code": code_hash, "owner.id": owner,
                                              "ip": ip})
        pipe.expire(keys.session(sid), ttl)
        for f in files:
            pipe.sadd(keys.files(sid), f["name"])
            pipe.hset(keys.file(sid, f["name"]), mapping={"name": f["name"], "size": int(f["size"]),
                                                          "owner.id": owner})
            pipe.expire(keys.file(sid, f["name"]), ttl)
        pipe.expire(keys.files(sid), ttl)
        pipe.execute()
        return sid, name

    def session(self, sid: str) -> dict[str, str]:
        data = self.r.hgetall(keys.session(sid))
        if not data:
            raise Refused(404, "no such session (it ended or expired)")
        return {k.decode(): v.decode() for k, v in data.items()}

    def join(self, name: str, code_hash: str, ip: str) -> tuple[str, list[dict]]:
        raw = self.r.get(keys.session_name(name))
        if raw is None:
            raise Refused(404, f"no session named {name} (it ended, expired, or is mistyped)")
        sid = raw.decode()
        attempts = keys.access_attempts(sid, ip)
        pipe = self.r.pipeline()
        pipe.incr(attempts)
        pipe.expire(attempts, self.limits.session_ttl)
        count = pipe.execute()[0]
        if count > self.limits.join_attempts:
            raise LimitReached("too many attempts to join this session from this address",
                               max(1, self.r.ttl(attempts)))
        session = self.session(sid)
        if not hmac.compare_digest(session["code"], code_hash):
            left = self.limits.join_attempts - count
            raise Refused(403, f"wrong code ({left} attempt{'s' if left != 1 else ''} left)")
        return sid, self.files(sid)

    def files(self, sid: str) -> list[dict]:
        names = sorted(n.decode() for n in self.r.smembers(keys.files(sid)))
        pipe = self.r.pipeline()
        for name in names:
            pipe.hget(keys.file(sid, name), "size")
        return [{"name": n, "size": int(s or 0)} for n, s in zip(names, pipe.execute())]

    def refresh(self, sid: str) -> None:
        """The sender is still there: push every session key's expiry back."""
        session = self.session(sid)
        ttl = self.limits.session_ttl
        pipe = self.r.pipeline()
        for key in (keys.session(sid), keys.session_name(session["name"]), keys.files(sid),
                    keys.created_sessions(session["ip"]), keys.file_reqs(sid)):
            pipe.expire(key, ttl)
        pipe.execute()

    def close_session(self, sid: str) -> None:
        session = self.session(sid)
        doomed = [keys.session(sid), keys.session_name(session["name"]), keys.files(sid),
                  keys.file_reqs(sid), keys.sender_requests(session["owner.id"])]
        if self.r.get(keys.created_sessions(session["ip"])) == sid.encode():
            doomed.append(keys.created_sessions(session["ip"]))
        for pattern in (f"files:{sid}:*", f"file.reqs:{sid}:*", f"file.req:{sid}:*",
                        f"file.req.ackn:{sid}:*", f"access.attempts:{sid}:*"):
            doomed += list(self.r.scan_iter(pattern, count=1000))
        for rid in self.r.smembers(keys.sender_requests(session["owner.id"])):
            doomed += self._request_keys(rid.decode())
        self.r.delete(*doomed)

    # --- file requests

    def add_requests(self, sid: str, uid: str, requests: list[dict]) -> None:
        names = {n.decode() for n in self.r.smembers(keys.files(sid))}
        ttl = self.limits.session_ttl
        pipe = self.r.pipeline()
        for req in requests:
            filename = req["filename"]
            if filename not in names:
                raise Refused(404, f"the session has no file {filename!r}")
            pipe.sadd(keys.file_reqs(sid), filename)
            pipe.sadd(keys.file_req_users(sid, filename), uid)
            pipe.set(keys.file_req(sid, filename, uid),
                     json.dumps({"public.key": req["public_key"], "pake": req["pake"]}), ex=ttl)
            pipe.expire(keys.file_req_users(sid, filename), ttl)
        pipe.expire(keys.file_reqs(sid), ttl)
        pipe.execute()

    def pending_requests(self, sid: str) -> list[dict]:
        """Requests the sender has not acknowledged yet (three round trips, however many)."""
        filenames = sorted(n.decode() for n in self.r.smembers(keys.file_reqs(sid)))
        pipe = self.r.pipeline(transaction=False)
        for filename in filenames:
            pipe.smembers(keys.file_req_users(sid, filename))
        pairs = [(f, u.decode()) for f, users in zip(filenames, pipe.execute()) for u in sorted(users)]
        for filename, uid in pairs:
            pipe.exists(keys.file_req_ackn(sid, filename, uid))
            pipe.get(keys.file_req(sid, filename, uid))
        answers = pipe.execute()
        out = []
        for (filename, uid), acked, raw in zip(pairs, answers[::2], answers[1::2]):
            if acked or raw is None:
                continue
            req = json.loads(raw)
            out.append({"filename": filename, "user_id": uid, "public_key": req["public.key"],
                        "pake": req["pake"]})
        return out

    def acknowledge(self, sid: str, owner: str, ack: dict) -> str:
        filename, uid = ack["filename"], ack["user_id"]
        if not self.r.exists(keys.file_req(sid, filename, uid)):
            raise Refused(404, "no such file request")
        rid = uuid.uuid4().hex
        ttl = self.limits.session_ttl
        pipe = self.r.pipeline()
        if not self.r.set(keys.file_req_ackn(sid, filename, uid), rid, nx=True, ex=ttl):
            raise Refused(409, "this request was already acknowledged")
        pipe.sadd(keys.request_users(rid), uid, owner)
        pipe.sadd(keys.sender_requests(owner), rid)
        pipe.sadd(keys.receiver_requests(uid), rid)
        pipe.hset(keys.prep(rid), mapping={
            "filename": filename, "public.key": ack["public_key"],
            "amount.of.chunks": int(ack["chunks"]), "pake": ack["pake"], "meta": ack["meta"],
            "session": sid})
        pipe.set(keys.ready(rid), "true", ex=ttl)
        for key in (keys.request_users(rid), keys.sender_requests(owner), keys.receiver_requests(uid),
                    keys.prep(rid)):
            pipe.expire(key, ttl)
        pipe.execute()
        return rid

    def acknowledgements(self, sid: str, uid: str) -> list[dict]:
        """The receiver's requests that the sender has prepared."""
        filenames = sorted(n.decode() for n in self.r.smembers(keys.file_reqs(sid)))
        pipe = self.r.pipeline(transaction=False)
        for filename in filenames:
            pipe.get(keys.file_req_ackn(sid, filename, uid))
        acked = [(f, rid.decode()) for f, rid in zip(filenames, pipe.execute()) if rid is not None]
        for _, rid in acked:
            pipe.exists(keys.ready(rid))
            pipe.hgetall(keys.prep(rid))
        answers = pipe.execute()
        out = []
        for (filename, rid), ready, raw in zip(acked, answers[::2], answers[1::2]):
            if not ready or not raw:
                continue
            prep = {k.decode(): v.decode() for k, v in raw.items()}
            out.append({"request_id": rid, "filename": filename,
                        "public_key": prep["public.key"], "pake": prep["pake"],
                        "chunks": int(prep["amount.of.chunks"]), "meta": prep["meta"]})
        return out

    def member(self, rid: str, uid: str) -> bool:
        return bool(self.r.sismember(keys.request_users(rid), uid))

    # --- chunks

    def push_chunk(self, rid: str, nr: int, iv: str, data: bytes) -> bool:
        """Queue a chunk; False (nothing queued) while the queue is full."""
        if len(data) > self.limits.max_chunk:
            raise Refused(413, f"chunks are at most {self.limits.max_chunk} bytes")
        if self.r.llen(keys.chunks(rid)) >= self.limits.max_queue:
            return False
        ttl = self.limits.session_ttl
        pipe = self.r.pipeline()
        pipe.lpush(keys.chunks(rid), f"{nr}@{iv}@".encode() + data)
        pipe.expire(keys.chunks(rid), ttl)
        pipe.set(keys.last_chunk(rid), nr, ex=ttl)
        pipe.execute()
        return True

    def pop_chunk(self, rid: str, wait: int = 0) -> tuple[int, str, bytes] | None:
        """Take the oldest chunk; with ``wait``, block up to that many seconds for one."""
        if wait:
            found = self.r.brpop([keys.chunks(rid)], timeout=wait)
            raw = found[1] if found else None
        else:
            raw = self.r.rpop(keys.chunks(rid))
        if raw is None:
            return None
        nr, iv, data = raw.split(b"@", 2)
        return int(nr), iv.decode(), data

    def queued(self, rid: str) -> int:
        return int(self.r.llen(keys.chunks(rid)))

    def request_open(self, rid: str) -> bool:
        return bool(self.r.exists(keys.prep(rid)))

    def finish_request(self, rid: str) -> None:
        prep = self.r.hgetall(keys.prep(rid))
        users = [u.decode() for u in self.r.smembers(keys.request_users(rid))]
        pipe = self.r.pipeline()
        for uid in users:
            pipe.srem(keys.sender_requests(uid), rid)
            pipe.srem(keys.receiver_requests(uid), rid)
        if prep:
            sid, filename = prep[b"session"].decode(), prep[b"filename"].decode()
            for uid in users:
                pipe.delete(keys.file_req(sid, filename, uid), keys.file_req_ackn(sid, filename, uid))
                pipe.srem(keys.file_req_users(sid, filename), uid)
        pipe.delete(*self._request_keys(rid))
        pipe.execute()

    @staticmethod
    def _request_keys(rid: str) -> list[str]:
        return [keys.request_users(rid), keys.prep(rid), keys.ready(rid), keys.chunks(rid),
                keys.last_chunk(rid)]
