"""The relay's state in Redis (seed 002), as synchronous operations.

The HTTP layer calls these from worker threads (redis-py's client is
synchronous and thread-safe through its connection pool).  Each operation is
one pipeline (MULTI/EXEC where it must be atomic) and sets an expiry on every
key it writes.  Nothing here can read a file or test a code: chunks are
ciphertext, the key exchange is SPAKE2 messages, confirmation values and
sealed blobs, file requests carry X25519 public keys, and the session's
``code`` field holds a random salt the sender chose, no function of the code.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from fusevault.relay import keys
from fusevault.relay.limits import LimitReached, Limits, Refused
from fusevault.relay.scripts import (
    ACKNOWLEDGE,
    ADD_REQUESTS,
    CALL,
    CLOSE,
    FETCH_MANIFEST,
    JOIN,
    LIVE,
    POP,
    POST_HANDSHAKE,
    PUSH,
    READY,
    REFRESH,
    UNPOP,
)

MISMATCH = "wrong code, or someone in the middle: nothing was sent"


# 6 digits (4 until 52t (5)): a million names, of which one address may try join_names per
# join_window (limits.py), so that a scan finds a live session by chance only.
_NAME_DIGITS = 6
_NAME = re.compile(rf"[0-9]{{{_NAME_DIGITS}}}")
_ID = re.compile(r"[0-9a-z]{1,32}")
_SALT = re.compile(r"[0-9a-f]{64}")

# The key exchange, one HASH per receiver.  Who may write each field, and
# which field must be there first; every field is written once.
_FIELDS: dict[str, dict[str, str | None]] = {
    "receiver": {"pake.a": None, "confirm.a": "pake.b", "hello": "pake.b", "done": "manifest"},
    "sender": {"pake.b": "pake.a", "confirm.b": "confirm.a", "manifest": "confirm.a",
               "refused": "pake.a", "over": "done"},
}
_SMALL = ("pake.a", "pake.b", "confirm.a", "hello", "confirm.b", "refused", "done", "over")
# Times one receiver may fetch the sealed manifest (69a (2)): once, and again after lost answers.
MANIFEST_FETCHES = 4
_FETCHED = "manifest.fetched"  # the handshake's count of them
# Requests (or answers) one events (or acks) call gives at most (69a (2)): the rest at the next call.
PAGE = 100
FAILED_TTL = 300  # seconds a failed session's tombstone tells late callers why it ended
# A session's requests' keys are pushed back once per this share of the ttl (refresh, 68a (2)).
REFRESH_SHARE = 4
SLICE = 1000  # keys per round trip where a session's many keys are pushed back or deleted


def _sender_turn(f: dict) -> bool:
    if f.get("refused") or f.get("over"):
        return False
    return bool((f.get("pake.a") and not f.get("pake.b"))
                or (f.get("confirm.a") and f.get("hello") and not f.get("confirm.b"))
                or f.get("done"))


class RelayState:
    def __init__(self, url: str, limits: Limits = Limits()) -> None:
        # Chunks are a MiB: read them from Redis in one piece, not in 64 KiB ones.
        # redis-py types a reply as bytes | str; without decode_responses it is bytes.
        self.r: Any = redis.Redis.from_url(url, socket_read_size=1 << 20)
        self.limits = limits
        self._call = self.r.register_script(CALL)
        self._push = self.r.register_script(PUSH)
        self._pop = self.r.register_script(POP)
        self._live = self.r.register_script(LIVE)
        self._add_requests = self.r.register_script(ADD_REQUESTS)
        self._unpop = self.r.register_script(UNPOP)
        self._post_handshake = self.r.register_script(POST_HANDSHAKE)
        self._acknowledge = self.r.register_script(ACKNOWLEDGE)
        self._ready = self.r.register_script(READY)
        self._fetch_manifest = self.r.register_script(FETCH_MANIFEST)
        self._join = self.r.register_script(JOIN)
        self._refresh = self.r.register_script(REFRESH)
        self._close = self.r.register_script(CLOSE)

    def ping(self) -> None:
        self.r.ping()

    # --- limits

    def count_call(self, ip: str) -> None:
        if not self._call(keys=[keys.CALLS], args=[ip, self.limits.calls_per_second]):
            raise LimitReached("too many requests from this address: slow down", 1)

    # --- sessions

    def create_session(self, ip: str, owner: str, salt: str, files: list[dict]) -> tuple[str, str]:
        if not files or len(files) > self.limits.max_files:
            raise Refused(400, f"a session holds 1 to {self.limits.max_files} files")
        if not isinstance(salt, str) or not _SALT.fullmatch(salt):
            raise Refused(400, "a session's code field is a 32-byte random salt, in hex")
        try:
            offered = {str(f["id"]): int(f["size"]) for f in files}
        except (KeyError, TypeError, ValueError):
            raise Refused(400, "each file is {id, size}") from None
        if len(offered) != len(files) or any(not _ID.fullmatch(i) or s < 0 for i, s in offered.items()):
            raise Refused(400, "file ids are distinct short lowercase words, sizes are not negative")
        ttl = self.limits.session_ttl
        sid = uuid.uuid4().hex
        if not self.r.set(keys.created_sessions(ip), sid, nx=True, ex=ttl):
            left = max(1, self.r.ttl(keys.created_sessions(ip)))
            raise LimitReached("this address already has an open session: finish or cancel it first", left)
        for _ in range(20):
            name = "".join(secrets.choice("0123456789") for _ in range(_NAME_DIGITS))
            if self.r.set(keys.session_name(name), sid, nx=True, ex=ttl):
                break
        else:
            self.r.delete(keys.created_sessions(ip))
            raise Refused(503, "the relay is busy: try again")
        pipe = self.r.pipeline()
        pipe.hset(keys.session(sid), mapping={"name": name, "code": salt, "owner.id": owner, "ip": ip})
        pipe.expire(keys.session(sid), ttl)
        for fid, size in offered.items():
            pipe.sadd(keys.files(sid), fid)
            pipe.hset(keys.file(sid, fid), mapping={"name": fid, "size": size, "owner.id": owner})
            pipe.expire(keys.file(sid, fid), ttl)
        pipe.expire(keys.files(sid), ttl)
        pipe.execute()
        return sid, name

    def session(self, sid: str) -> dict[str, str]:
        data = self.r.hgetall(keys.session(sid))
        if not data:
            raise Refused(404, "no such session (it ended or expired)")
        session = {k.decode(): v.decode() for k, v in data.items()}
        if "failed" in session:
            raise Refused(410, MISMATCH)
        return session

    def join(self, name: str, ip: str) -> tuple[str, str, str]:
        """A receiver joins: (session id, its user id, the sender's salt)."""
        if not _NAME.fullmatch(name):  # no session has such a name: nothing probed, nothing counted
            raise Refused(404, f"no session named that: a session name is {_NAME_DIGITS} digits")
        self._count_name(ip, name)
        raw = self.r.get(keys.session_name(name))
        if raw is None:
            raise Refused(404, f"no session named {name} (it ended, expired, or is mistyped)")
        sid = raw.decode()
        uid = uuid.uuid4().hex
        # 69a (1): max_receivers counts those still in; a refused one leaves, and the manifest that lets
        # a receiver in gives its address's attempts back, so one address joined its own session for
        # ever (a handshake and a manifest upload each).  session.joined is never given back.
        # One script (70b): checked apart from the write, a join crossing the session's close left its
        # keys behind, and joins racing at the bound all got in.  Its attempts name the address in
        # access.joiners, so that its end finds the counter (68a (3)).
        limits = self.limits
        done = self._join(keys=[keys.session(sid), keys.receivers(sid), keys.joined(sid),
                                keys.handshake(sid, uid), keys.access_attempts(sid, ip), keys.joiners(sid)],
                          args=[ip, limits.session_ttl, limits.join_attempts, limits.max_receivers,
                                limits.max_joins, uid, int(time.time())])
        code = int(done[0])
        if code == -1:
            raise Refused(404, f"no session named {name} (it ended, expired, or is mistyped)")
        if code == -2:
            raise Refused(410, MISMATCH)
        if code == -3:
            raise LimitReached("too many attempts to join this session from this address",
                               max(1, int(done[1])))
        if code == -4:
            raise LimitReached("too many receivers joined this session", self.limits.session_ttl)
        return sid, uid, done[1].decode()

    def _count_name(self, ip: str, name: str) -> None:
        """``ip`` tries ``name``: refused once it holds its budget of names it was not let in at.

        52t (5): the join limits counted per session, so one address tried every name (404 for a free
        one) and then made one wrong guess at each live session, which ends it for both ends.  Now
        each address has ``join_names`` names per ``join_window`` over all sessions, misses included;
        the same name again costs nothing, and a name whose sender lets the address in is given
        back (``post_handshake``).  The set never holds more than the budget (plus racing calls)."""
        key = keys.joined_names(ip)
        pipe = self.r.pipeline(transaction=True)
        pipe.sadd(key, name)
        pipe.scard(key)
        pipe.ttl(key)
        added, held, ttl = pipe.execute()
        if ttl < 0:  # the window starts at the first name (EXPIRE NX needs Redis 7)
            self.r.expire(key, self.limits.join_window)
        if added and held > self.limits.join_names:
            self.r.srem(key, name)
            raise LimitReached(f"this address tried {self.limits.join_names} session names it was not let "
                               "in at: wait before trying another", max(1, int(self.r.ttl(key))))

    def refresh(self, sid: str) -> None:
        """The sender is still there: push every session key's expiry back.

        The sets through which its end finds its requests (the sender's, the queued ones, each
        receiver's) go with it: they expired before (an acknowledge's ttl), and a session closed
        later left its requests behind.  So do its requests' own keys (68a (2)): written with the
        life the session had left then (scripts.py ``session_left``, ``PUSH``), a request the sender
        answered in a batch and streamed an hour later was found gone.  They are many (a file and
        a receiver each), so they are pushed back once per REFRESH_SHARE of the ttl (``refreshed``),
        not at every events call: the session's own size, a few times an hour.  A sender looks
        every few seconds (send.py ``EVENTS_WAIT``, ``LOOK_EVERY``); one silent for more than the
        rest of the ttl loses its requests, as before, and never keeps them past its session."""
        session = self.session(sid)
        ttl = self.limits.session_ttl
        uids = [u.decode() for u in self.r.smembers(keys.receivers(sid))]
        owner = session["owner.id"]
        # One script (71b (2)): only a session still live and not failed is pushed back and marked;
        # closed or failed since it was read, its sweep may have run, and its tombstone keeps its time.
        done = self._refresh(keys=[keys.session(sid), keys.session_name(session["name"]), keys.files(sid),
                                   keys.created_sessions(session["ip"]), keys.file_reqs(sid),
                                   keys.pending(sid), keys.receivers(sid), keys.joined(sid),
                                   keys.joiners(sid), keys.sender_requests(owner),
                                   keys.queued_requests(owner),
                                   *(keys.handshake(sid, uid) for uid in uids),
                                   *(keys.receiver_requests(uid) for uid in uids),
                                   *(keys.answered(uid) for uid in uids), keys.refreshed(sid)],
                             args=[ttl, max(1, ttl * 1000 // REFRESH_SHARE)])
        if done == 2:
            # Its live receivers' keys only (69a (1)): a refused one's expire at their own time.
            self._in_slices(self._held(sid, session, live=True), lambda p, key: p.expire(key, ttl))

    def close_session(self, sid: str) -> None:
        self._drop(sid, self.session(sid))

    def fail_session(self, sid: str) -> None:
        """A confirmation failed: end the session, and tell whoever still calls why."""
        data = self.r.hgetall(keys.session(sid))
        if not data or b"failed" in data:
            return
        session = {k.decode(): v.decode() for k, v in data.items()}
        # One MULTI/EXEC: the session and its tombstone are never both absent.  Dropped first and
        # marked after, a receiver asking in between found no session and was told the sender had
        # ended it, not that the code was wrong (tests/services/test_relay_state.py).  The rest after
        # it, in slices: a request is refused once its session failed (scripts.py ``LIVE``).
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(keys.session(sid))
        pipe.hset(keys.session(sid), mapping={"name": session["name"], "failed": 1})
        pipe.expire(keys.session(sid), FAILED_TTL)
        pipe.execute()
        self._sweep(sid, session)

    def _drop(self, sid: str, session: dict[str, str]) -> None:
        # Deleted only if not failed meanwhile (71b (3), scripts.py ``CLOSE``): the session and its
        # tombstone are never both absent.  Swept either way (a failure's own sweep may still run).
        self._close(keys=[keys.session(sid)])
        self._sweep(sid, session)

    def _sweep(self, sid: str, session: dict[str, str]) -> None:
        """The session's keys, once it is marked gone (deleted) or failed: read after the mark, so
        that a write checking the session in the same step as it writes (scripts.py ``LIVE``,
        ``ADD_REQUESTS``, ``UNPOP``) is either refused or found here (70b: read before, a write
        between the read and the delete stayed, up to the hour the session had left)."""
        own, held = self._doomed(sid, session)
        self.r.delete(*(key for key in own if key != keys.session(sid)))
        self._in_slices(held, lambda p, key: p.delete(key))

    def _doomed(self, sid: str, session: dict[str, str]) -> tuple[list[str], list[str]]:
        """Every key of the session (read now; deleted by the caller): its own, then the many of its
        files, requests, receivers and join attempts, all named from the session's own sets.

        68a (3): these were found with six SCANs of the relay's whole keyspace, so that one address
        opening and closing a one-file session walked every other session's keys at each close."""
        owner = session["owner.id"]
        own = [keys.session(sid), keys.files(sid), keys.file_reqs(sid), keys.pending(sid),
               keys.receivers(sid), keys.joined(sid), keys.joiners(sid), keys.refreshed(sid),
               keys.sender_requests(owner), keys.queued_requests(owner)]
        if self.r.get(keys.session_name(session["name"])) == sid.encode():
            own.append(keys.session_name(session["name"]))
        if self.r.get(keys.created_sessions(session["ip"])) == sid.encode():
            own.append(keys.created_sessions(session["ip"]))
        joiners = self.r.smembers(keys.joiners(sid))
        return own, [*self._held(sid, session), *(keys.access_attempts(sid, ip.decode()) for ip in joiners)]

    def _held(self, sid: str, session: dict[str, str], live: bool = False) -> list[str]:
        """The keys of the session's files, requests and receivers, named from its sets (``files``,
        ``file.reqs`` and each file's requesters, ``session.joined`` and ``session.receivers``, the
        sender's and each receiver's requests): as many as the session holds, whatever else the relay
        does, in two round trips.  With ``live``, those of its receivers still in only (``refresh``):
        a refused one's keys left are not kept alive by its session (69a (1))."""
        pipe = self.r.pipeline(transaction=False)
        for key in (keys.files(sid), keys.file_reqs(sid), keys.joined(sid), keys.receivers(sid),
                    keys.sender_requests(session["owner.id"])):
            pipe.smembers(key)
        files, requested, joined, receivers, rids = ([m.decode() for m in found] for found in pipe.execute())
        # Live: those still in. Else every receiver it ever took (``receivers`` too: a session made
        # before ``session.joined`` was).
        uids = sorted(receivers) if live else sorted({*joined, *receivers})
        for fid in requested:
            pipe.smembers(keys.file_req_users(sid, fid))
        for uid in uids:
            pipe.smembers(keys.receiver_requests(uid))
        found = pipe.execute()
        held = [keys.file(sid, fid) for fid in files]
        for fid, users in zip(requested, found):
            held.append(keys.file_req_users(sid, fid))
            for uid in (u.decode() for u in users):
                if not live or uid in receivers:
                    held += [keys.file_req(sid, fid, uid), keys.file_req_ackn(sid, fid, uid)]
        requests = set(rids)
        for uid, theirs in zip(uids, found[len(requested):]):
            held += [keys.handshake(sid, uid), keys.receiver_requests(uid), keys.answered(uid)]
            requests.update(r.decode() for r in theirs)
        for rid in sorted(requests):
            held += self._request_keys(rid)
        return held

    def _in_slices(self, names: list[str], command: Callable[[Any, str], object]) -> None:
        """``command`` for each key, SLICE of them a round trip: none of them holds Redis (one
        command at a time) for long, nor a session's keys at once in one reply buffer."""
        for at in range(0, len(names), SLICE):
            pipe = self.r.pipeline(transaction=False)
            for name in names[at:at + SLICE]:
                command(pipe, name)
            pipe.execute()

    # --- the key exchange

    def _no_such_receiver(self, sid: str) -> Refused:
        """The receiver is not in the session: unless the session failed since it was read (then 410).

        A sender failing the session between our read of it and of its receivers deletes both; told
        404 ("the sender ended the session"), the receiver would not learn the code was wrong."""
        self.session(sid)
        return Refused(404, "no such receiver in this session")

    def post_handshake(self, sid: str, uid: str, role: str, fields: dict) -> None:
        session = self.session(sid)
        allowed = _FIELDS[role]
        if not fields or any(f not in allowed or not isinstance(v, str) for f, v in fields.items()):
            raise Refused(400, f"a {role} may post {', '.join(allowed)} (strings)")
        for field, value in fields.items():
            cap = self.limits.max_manifest if field == "manifest" else self.limits.max_field
            if len(value) > cap:
                raise Refused(413, f"{field} is at most {cap} bytes")
        key = keys.handshake(sid, uid)
        needed = sorted({n for n in (allowed[f] for f in fields) if n is not None})
        # Checked and written in one script (70b): a manifest crossing its receiver's refusal came
        # after the drop and stayed (16 MiB for the session's life).
        done = self._post_handshake(keys=[keys.session(sid), keys.receivers(sid), key],
                                    args=[uid, self.limits.session_ttl, len(needed), *needed,
                                          *(x for pair in fields.items() for x in pair)])
        code = int(done[0])
        if code == -1:
            raise Refused(404, "no such session (it ended or expired)")
        if code == -2:
            raise Refused(410, MISMATCH)
        if code == -3:
            raise self._no_such_receiver(sid)
        if code == -4:
            raise Refused(409, "not yet: the other side has not posted its part")
        if code == -5:
            raise Refused(409, f"{done[1].decode()} was already posted")
        if role == "sender" and "refused" in fields:
            self._drop_receiver(sid, uid)
        if role == "sender" and "manifest" in fields:
            ip = self.r.hget(key, "ip")  # a receiver the sender let in: its joins do not count
            if ip:
                self.r.delete(keys.access_attempts(sid, ip.decode()))
                self.r.srem(keys.joined_names(ip.decode()), session["name"])

    def _drop_receiver(self, sid: str, uid: str) -> None:
        """A refused (or replaced) receiver: out of ``session.receivers`` (max_receivers counts the
        others), and nothing it made the relay hold stays, whatever the sender does next.

        Its answered requests end, their chunks leaving the session's queue at once (64b (2): a
        receiver killed and back, its earlier run refused as replaced, found that run's chunks
        filling the queue for an hour).  69a (1): its requests not answered yet and the key
        exchange's fields, the sealed manifest among them (16 MiB at most), stayed: a run refused
        after another kept one each, and ``refresh`` kept them as long as the session.  What is
        left of its handshake is "refused" (for the receiver to read), with the ttl of its refusal."""
        self.r.srem(keys.receivers(sid), uid)
        for rid in self.r.smembers(keys.receiver_requests(uid)):
            self.finish_request(rid.decode())
        asked = [m.decode().partition(" ")[2]
                 for m in self.r.zrangebylex(keys.pending(sid), f"[{uid} ", f"({uid}!")]
        pipe = self.r.pipeline(transaction=False)
        pipe.hdel(keys.handshake(sid, uid), *(f for f in [*_FIELDS["receiver"], *_FIELDS["sender"]]
                                              if f != "refused"), _FETCHED)
        pipe.delete(keys.receiver_requests(uid), keys.answered(uid))
        pipe.execute()
        for at in range(0, len(asked), SLICE):
            pipe = self.r.pipeline(transaction=False)
            for fid in asked[at:at + SLICE]:
                pipe.delete(keys.file_req(sid, fid, uid), keys.file_req_ackn(sid, fid, uid))
                pipe.srem(keys.file_req_users(sid, fid), uid)
                pipe.zrem(keys.pending(sid), f"{uid} {fid}")
            pipe.execute()

    def handshake(self, sid: str, uid: str, want: str) -> dict | None:
        """The receiver's record once ``want`` (or a refusal) is there.

        The manifest is given MANIFEST_FETCHES times a receiver at most (69a (2)): a receiver let in
        asked for it again and again, each answer up to max_manifest (16 MiB) read from Redis and
        encoded by the relay, 400 calls a second; a receiver needs it once (again after a lost answer)."""
        self.session(sid)
        key = keys.handshake(sid, uid)
        values = self.r.hmget(key, list(_SMALL))
        found = {f: v.decode() for f, v in zip(_SMALL, values) if v is not None}
        if not found and not self.r.sismember(keys.receivers(sid), uid):
            raise self._no_such_receiver(sid)
        if "refused" in found:
            return found
        if want == "manifest" and self.r.hexists(key, "manifest"):
            # Counted, and read with the fields around it in one MULTI: read apart, a manifest posted
            # between two reads came without its confirm.b (posted with it), or after a refusal.
            # 70b: only while the manifest is there (one script), or a count crossing a drop or a close
            # made the receiver's record again.
            read = self._fetch_manifest(keys=[keys.session(sid), key],
                                        args=[self.limits.session_ttl, _FETCHED, *_SMALL, "manifest"])
            if not read:
                self.session(sid)  # failed meanwhile: 410
                return self.handshake(sid, uid, want)  # refused (or closed) meanwhile: said as such
            fetched, values = int(read[0]), read[1:]
            found = {f: v.decode() for f, v in zip([*_SMALL, "manifest"], values) if v is not None}
            if "refused" in found:
                return {f: v for f, v in found.items() if f != "manifest"}
            if fetched > MANIFEST_FETCHES:
                raise Refused(403, f"this receiver fetched the list of files {MANIFEST_FETCHES} times: "
                              "join again")
        return found if want in found else None

    def sender_turn(self, sid: str) -> list[dict]:
        """Receivers waiting for the sender: a message to answer, a confirmation to check, a done."""
        uids = sorted(u.decode() for u in self.r.smembers(keys.receivers(sid)))
        pipe = self.r.pipeline(transaction=False)
        for uid in uids:
            pipe.hmget(keys.handshake(sid, uid), list(_SMALL))
        out = []
        for uid, values in zip(uids, pipe.execute()):
            found = {f: v.decode() for f, v in zip(_SMALL, values) if v is not None}
            if _sender_turn(found):
                out.append({"user_id": uid, **found})
        return out

    # --- file requests

    def add_requests(self, sid: str, uid: str, requests: list[dict]) -> None:
        """The receiver's requests, checked and written SLICE at a time, each slice one script
        (scripts.py ``ADD_REQUESTS``).

        70b (2): the receiver's admission was read, then its requests written in a later pipeline
        (~0.7 s later for 10,000): a refusal in between dropped what was there, and every request
        came back after it, for the session's whole life.  Now a refusal, a close or a failure comes
        before a slice (refused) or after it (and then finds it: a drop reads what to delete after
        its mark).  Slices: one script holds Redis while it runs (~10 ms for 1,000, some 100 ms and
        more for 10,000).  The session's files never change, so they are checked first, apart."""
        names = {n.decode() for n in self.r.smembers(keys.files(sid))}
        if not names:  # a session has a file at least: it ended, or failed (410)
            self.session(sid)
            raise Refused(404, "no such session (it ended or expired)")
        args: list[str | int] = []
        for req in requests:
            try:
                fid, first = str(req["filename"]), int(req["first"])
                record = {"public.key": str(req["public_key"]), "first": first, "mac": str(req["mac"])}
            except (KeyError, TypeError, ValueError):
                raise Refused(400, "a request is {filename, public_key, first, mac}") from None
            if fid not in names:
                raise Refused(404, f"the session has no file {fid!r}")
            if first < 0 or len(json.dumps(record)) > self.limits.max_request:
                raise Refused(400, "a request's first chunk is not negative and its key is short")
            args += [fid, keys.file_req_users(sid, fid), keys.file_req(sid, fid, uid), json.dumps(record)]
        script_keys = [keys.session(sid), keys.handshake(sid, uid), keys.receivers(sid), keys.file_reqs(sid),
                       keys.pending(sid)]
        for at in range(0, max(len(args), 1), 4 * SLICE):  # none: still checked, as before
            code = int(self._add_requests(keys=script_keys,
                                          args=[uid, self.limits.session_ttl, *args[at:at + 4 * SLICE]]))
            if code == -1:
                raise Refused(404, "no such session (it ended or expired)")
            if code == -2:
                raise Refused(410, MISMATCH)
            if code == -3:
                raise Refused(403, "the sender has not let this receiver in")

    def pending_requests(self, sid: str) -> list[dict]:
        """Requests the sender has not acknowledged yet: PAGE of them at most, the first in (receiver,
        file) order, from ``file.reqs.pending`` (kept as they are asked, answered and refused).

        69a (2): every (file, requester) pair of the session was read at every probe of an events
        call (three commands each, 40,024 for 10,000 asked), and all of them answered, again at each
        call: a call's work was the session's size.  Now it is a page's; the sender answers a page
        and finds the next one at its next call.  A member found answered, gone or refused leaves the
        set here, so a page always moves on."""
        members = [m.decode() for m in self.r.zrange(keys.pending(sid), 0, PAGE - 1)]
        pairs = [(fid, uid) for uid, _, fid in (m.partition(" ") for m in members)]
        pipe = self.r.pipeline(transaction=False)
        for filename, uid in pairs:
            pipe.exists(keys.file_req_ackn(sid, filename, uid))
            pipe.get(keys.file_req(sid, filename, uid))
            pipe.hexists(keys.handshake(sid, uid), "refused")  # the sender dropped that receiver
        answers = pipe.execute()
        out, stale = [], []
        for member, (filename, uid), acked, raw, refused in zip(members, pairs, answers[::3], answers[1::3],
                                                                answers[2::3]):
            if acked or raw is None or refused:
                stale.append(member)
                continue
            req = json.loads(raw)  # this relay's own: add_requests wrote it, flat
            out.append({"filename": filename, "user_id": uid, "public_key": req["public.key"],
                        "first": req["first"], "mac": req["mac"]})
        if stale:
            self.r.zrem(keys.pending(sid), *stale)
        return out

    def acknowledge(self, sid: str, owner: str, ack: dict) -> str:
        filename, uid = str(ack["filename"]), str(ack["user_id"])
        prep: dict[str, Any] = {"public.key": str(ack["public_key"]), "filename": filename,  # the key first
                "amount.of.chunks": int(ack["chunks"]), "first": int(ack["first"]), "mac": str(ack["mac"]),
                "session": sid, "receiver": uid}
        rid = uuid.uuid4().hex
        # Checked and written in one script (70b): a refusal or a close between the check and the write
        # found nothing to delete, and the request it made stayed, its receiver's and sender's sets too.
        done = self._acknowledge(
            keys=[keys.session(sid), keys.receivers(sid), keys.handshake(sid, uid),
                  keys.file_req(sid, filename, uid), keys.file_req_ackn(sid, filename, uid),
                  keys.request_users(rid), keys.sender_requests(owner), keys.receiver_requests(uid),
                  keys.answered(uid), keys.pending(sid), keys.prep(rid)],
            args=[self.limits.session_ttl, uid, owner, rid, f"{filename} {rid}", f"{uid} {filename}",
                  keys.prep(""), *(x for pair in prep.items() for x in pair)])
        code = int(done[0])
        if code == -1:
            raise Refused(404, "no such session (it ended or expired)")
        if code == -2:
            raise Refused(410, MISMATCH)
        if code == -3:
            raise Refused(404, "no such file request")
        if code == -5:
            raise Refused(409, "this request was already acknowledged")
        return str(done[1].decode())

    def acknowledgements(self, sid: str, uid: str) -> list[dict]:
        """The receiver's requests that the sender has answered and it has not finished: PAGE of them
        at most, by file id (the order the sender streams them in), from ``file.reqs.answered``.

        69a (2): a GET per file of the session's requests, at every probe of the long poll (10,006
        commands a probe for 10,000 asked).  An answer whose request is gone leaves the set here."""
        self.session(sid)
        members = [m.decode() for m in self.r.zrange(keys.answered(uid), 0, PAGE - 1)]
        acked = [(fid, rid) for fid, _, rid in (m.partition(" ") for m in members)]
        pipe = self.r.pipeline(transaction=False)
        for _, rid in acked:
            pipe.hgetall(keys.prep(rid))
        out, stale = [], []
        for member, (filename, rid), raw in zip(members, acked, pipe.execute()):
            prep = {k.decode(): v.decode() for k, v in raw.items()}
            if prep.get("session") != sid:
                stale.append(member)  # finished, or expired, meanwhile
                continue
            out.append({"request_id": rid, "filename": filename, "public_key": prep["public.key"],
                        "chunks": int(prep["amount.of.chunks"]), "first": int(prep["first"]),
                        "mac": prep["mac"]})
        if stale:
            self.r.zrem(keys.answered(uid), *stale)
        return out

    def _request_left(self, rid: str, uid: str) -> int | None:
        """Milliseconds ``rid``'s session has left if ``uid`` is in that request and the session is
        there, not failed; else None (scripts.py ``LIVE``: one round trip, atomic)."""
        left = int(self._live(keys=[keys.request_users(rid), keys.prep(rid)],
                              args=[uid, keys.session(""), self.limits.session_ttl]))
        return left if left >= 0 else None

    def member(self, rid: str, uid: str) -> bool:
        """``uid`` is in the request, and its session is still there (64b (1): a request lives no
        longer than its session, whatever of its keys is left)."""
        return self._request_left(rid, uid) is not None

    def mark_ready(self, rid: str, uid: str) -> None:
        """The receiver checked the sender's answer and waits for chunks: they may flow now."""
        # One script (70b): checked live, then set in a later call, a finish in between left it.
        if not self._ready(keys=[keys.request_users(rid), keys.prep(rid), keys.ready(rid)],
                           args=[uid, keys.session(""), self.limits.session_ttl]):
            raise Refused(404, "the transfer was cancelled")

    # --- chunks

    def push_chunk(self, rid: str, uid: str, nr: int, iv: str, data: bytes, ip: str = "") -> int:
        """Queue a chunk: 1 queued, 2 queued before; 0 (nothing queued) while the queue is full, the
        receiver not ready, or the chunk before it not queued yet.

        The queue is the session's: ``max_queue`` chunks over all its requests (``uid``, the sender,
        is the session's own), as one transfer's (scripts.py ``PUSH``, round 63b (1)).
        With ``ip``, the call is counted against that address's budget too."""
        if len(data) > self.limits.max_chunk:
            raise Refused(413, f"chunks are at most {self.limits.max_chunk} bytes")
        found = self._push(keys=[keys.CALLS, keys.request_users(rid), keys.chunks(rid), keys.ready(rid),
                                 keys.prep(rid), keys.last_chunk(rid), keys.queued_requests(uid),
                                 keys.sender_requests(uid)],
                           args=[ip, self.limits.calls_per_second, uid, self.limits.max_queue,
                                 self.limits.session_ttl, nr, f"{nr}@{iv}@".encode() + data, rid,
                                 keys.chunks(""), keys.session("")])
        if found == -2:
            raise LimitReached("too many requests from this address: slow down", 1)
        if found == -1:
            raise Refused(404, "the transfer was cancelled")
        if found == -3:
            raise Refused(400, "X-Chunk is past the file's chunks")
        return int(found)

    def pop_chunk(self, rid: str, uid: str, ip: str = "") -> tuple[int, str, bytes] | None:
        """Take the oldest chunk, if there is one (with ``ip``, counting the call); 404 once the
        request or its session is gone."""
        raw = self._pop(keys=[keys.CALLS, keys.request_users(rid), keys.chunks(rid), keys.prep(rid)],
                        args=[ip, self.limits.calls_per_second, uid, keys.session(""),
                              self.limits.session_ttl])
        if raw == -2:
            raise LimitReached("too many requests from this address: slow down", 1)
        if raw == -1:
            raise Refused(404, "the transfer was cancelled")
        if raw is None:
            return None
        nr, iv, data = raw.split(b"@", 2)
        return int(nr), iv.decode(), data

    def unpop_chunk(self, rid: str, nr: int, iv: str, data: bytes) -> None:
        """Put back a chunk whose taker went away before it got it, in its session's queue again.

        A push to another request may have found this one's list empty meanwhile and left it out of
        the session's count (scripts.py ``PUSH``): it is listed again with the chunk, or a receiver
        dropping its takes would hold chunks no push counts (63b (1)).  70b (3): checked live, then
        put back in a later MULTI, a finish or a drop in between found nothing to delete and the
        chunk came back after it, outliving its request and session and counted in the session's
        queue; now one script (``UNPOP``): a finish comes before it (nothing put back) or after."""
        self._unpop(keys=[keys.request_users(rid), keys.prep(rid), keys.chunks(rid)],
                    args=[keys.session(""), self.limits.session_ttl, f"{nr}@{iv}@".encode() + data, rid,
                          keys.queued_requests(""), self.limits.max_queue, keys.chunks("")])

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
            pipe.srem(keys.queued_requests(uid), rid)
        if prep:
            sid, filename = prep[b"session"].decode(), prep[b"filename"].decode()
            for uid in users:
                pipe.delete(keys.file_req(sid, filename, uid), keys.file_req_ackn(sid, filename, uid))
                pipe.srem(keys.file_req_users(sid, filename), uid)
                pipe.zrem(keys.pending(sid), f"{uid} {filename}")
                pipe.zrem(keys.answered(uid), f"{filename} {rid}")
        pipe.delete(*self._request_keys(rid))
        pipe.execute()

    @staticmethod
    def _request_keys(rid: str) -> list[str]:
        return [keys.request_users(rid), keys.prep(rid), keys.ready(rid), keys.chunks(rid),
                keys.last_chunk(rid)]
