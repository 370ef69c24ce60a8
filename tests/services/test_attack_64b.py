"""Attack round 64b (short, at round 63b's fixes: the relay's queue per session, the receive's window).

(1) Hole (low to medium: a flood that grows with time; the bound 63b (1) claims is not held).
    Attacker: anyone who can reach the relay, one address, playing both ends of its own sessions.
    Steps (``test_a_sessions_requests_die_with_it``, on ``RelayState`` and a real redis-server, a
    short ``session_ttl``): create a session, join it, let the receiver in, ask for a file, answer it,
    mark it ready, push ``max_queue`` chunks. Never close the session: let it expire (no events
    call), but every less than ``session_ttl`` seconds take one chunk of that request and push the
    next (a receiver token and a sender token stay good 24 x ttl). Once the session's keys are gone,
    the address may create a new session (``created_sessions:<ip>`` expired with it), under a new
    owner id, so a new set ``file.reqs.queued:<owner>``: another ``max_queue`` chunks. Again and again.
    Seen: the expired sessions' requests keep their chunks: the test holds 3 sessions' queues (9
    chunks with ``max_queue`` 3) from one address, its first two sessions gone (404). With the default
    ttl (3600 s) that is 8 MiB more per hour per address, for ever, at a cost of 2 calls per old
    request per hour: 192 MiB a day, 1.3 GiB a week from one address, past "One address owns one
    session at a time, so it holds 8 MiB at most" (SECURITY.md, round 63b (1)); with the README's
    ``maxmemory``/``noeviction`` every transfer on the relay is then refused.
    Expected: a request lives no longer than its session: what an address makes the relay hold is one
    session's queue.
    Cause: ``relay/scripts.py`` ``PUSH`` (and ``POP``) check the request's own keys only
    (``file.req.users``, ``prep``, ``ready``) and refresh them, never that its session
    (``prep.session``) still exists; the session's teardown (``state._doomed``) finds requests
    through ``file.reqs.sender:<owner>``, which expires ``session_ttl`` after the last acknowledge
    (``state.acknowledge``; neither ``refresh`` nor ``PUSH`` push it back), and nothing at all runs
    when the session merely expires.
    Impact: Redis memory of the relay, slowly but without bound, per address (IPv6: per /64).
    Suggested fix: ``PUSH`` and ``POP`` take the session's key (from ``prep``'s ``session``) and
    answer -1 (404, "the transfer was cancelled") once it is gone; ``refresh`` and ``PUSH`` push back
    ``file.reqs.sender:<owner>`` and the queued set with the session.

(2) Hole (medium: honest data refused, for an hour). Attacker: none (honest use: a receive killed
    with -9, a cut network, a laptop put to sleep), and a relay's stranger could not help it either.
    Steps (``test_a_receiver_back_after_a_kill_gets_its_file_again``, the real ``fusevault relay`` with
    its defaults and the real ``fusevault send`` of a 9-chunk file; the receiver by hand, as
    ``receive.py`` speaks): the receiver (its resume token T) asks for the file and marks it ready,
    takes chunk 0, the sender queues the other 8 (``stream`` returns once they are queued), the
    receiver dies before taking them. It comes back with T (what ``fusevault receive`` run again
    does): the sender replaces it (``Sender.replace``) and answers its new request for the file from chunk 0.
    Seen: no chunk ever comes: the dead run's request, whose chunks were all pushed, is no longer in
    ``Sender.requests`` (``serve`` drops it once ``stream`` returns), so ``replace`` does not cancel
    it, and its 8 chunks fill the session's queue (63b (1)): every push of the new request is
    refused until the dead one expires, ``session_ttl`` (3600 s) after its last push; ``fusevault
    receive`` ends after STALL (120 s) with "the sender stopped sending", and so does every resume
    for an hour. With ``send --keep`` every other receiver of the session is stopped the same way. A
    file of at most 8 MiB (a folder of small files) or a kill in a file's last 8 MiB is enough.
    Before 63b (1) the queue was the request's, and the resume went on at once.
    Expected: the resumed run gets its file.
    Cause: ``transfer/send.py`` ``serve`` discards a request from ``self.requests`` when ``stream``
    returns, while its last chunks may still wait at the relay, and ``replace`` cancels only those
    listed; ``relay/scripts.py`` ``PUSH`` now counts that request's chunks against every other
    request of the session.
    Suggested fix: keep a request in ``Sender.requests`` until its receiver finished it (the relay's
    request gone: ``status`` 404) or it is replaced, so ``replace`` cancels it; or the relay drops
    (``finish_request``) a receiver's earlier requests when the sender refuses that receiver.

Tried and held (controls not kept: 63b's tests cover them): a push by a receiver's token (403, the
push route asks for a sender's token, so no queued set under a receiver's id); the Lua cost per push
(the queued set holds at most max_queue + 1 members: a member joins only with a chunk pushed under the
bound, or put back, and leaves on the next push once empty); a put-back loop (a chunk put back
only returns one taken, so the count passes the bound by the takes on their way, the limit already
listed); the receiver's window (``_hold``: arrived never holds ``nr`` after a turn, so at most
WINDOW - 1 entries and a take is always asked; the stall check every turn; a slow answer is ended by
``capped_request``'s own deadline, read). Not tried: the real ``fusevault receive`` killed -9 at the
right moment (the by-hand receiver does what it does on the wire), several receivers with ``--keep``.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import pytest
import redis
from conftest import running_relay
from transfer_helpers import join, sending

from fusevault.encoding import b64e
from fusevault.relay import keys
from fusevault.relay.limits import LimitReached, Limits, Refused
from fusevault.relay.state import RelayState
from fusevault.transfer import crypto

TTL = 3  # seconds: the relay's session_ttl in (1)
SHORT = Limits(session_ttl=TTL, max_queue=3)


def _streaming(state: RelayState, address: str) -> tuple[str, str, str, str]:
    """One address's own session, one file asked for, answered and ready: (sid, owner, rid, uid)."""
    owner = secrets.token_hex(8)
    sid, name = state.create_session(address, owner, "ab" * 32, [{"id": "f", "size": 5}])
    _, uid, _ = state.join(name, address)
    state.post_handshake(sid, uid, "receiver", {"pake.a": "a"})
    state.post_handshake(sid, uid, "sender", {"pake.b": "b"})
    state.post_handshake(sid, uid, "receiver", {"confirm.a": "c", "hello": "h"})
    state.post_handshake(sid, uid, "sender", {"confirm.b": "d", "manifest": "m"})
    state.add_requests(sid, uid, [{"filename": "f", "public_key": "k", "first": 0, "mac": "m"}])
    rid = state.acknowledge(sid, owner, {"filename": "f", "user_id": uid, "public_key": "k",
                                         "chunks": 1_000_000, "first": 0, "mac": "m"})
    state.mark_ready(rid, uid)
    return sid, owner, rid, uid


def test_a_sessions_requests_die_with_it(redis_url: str) -> None:
    state = RelayState(redis_url, SHORT)
    address = "10.64.2.1"
    held: list[list] = []  # [sid, owner, rid, uid, next chunk number]
    deadline = time.monotonic() + 8 * TTL
    while len(held) < 3:
        assert time.monotonic() < deadline
        try:
            sid, owner, rid, uid = _streaming(state, address)
        except LimitReached:  # the address's session is still there: wait for it to expire
            pass
        else:
            nr = 0
            while state.push_chunk(rid, owner, nr, "aXY=", b"x" * 10) == 1:
                nr += 1
            assert nr == SHORT.max_queue
            held.append([sid, owner, rid, uid, nr])
        # Each request kept alive: one chunk taken, the next pushed (well within the ttl).
        for entry in held:
            _, owner, rid, uid, nr = entry
            if nr < 0:
                continue
            try:
                assert state.pop_chunk(rid, uid) is not None
                assert state.push_chunk(rid, owner, nr, "aXY=", b"x" * 10) == 1
            except Refused:  # the request ended (with its session, once fixed): it holds nothing
                entry[4] = -1
                continue
            entry[4] = nr + 1
        time.sleep(0.5)
    for sid, *_ in held[:-1]:
        with pytest.raises(Refused):  # those sessions are gone (404)
            state.session(sid)
    queued = sum(state.queued(rid) for _, _, rid, _, nr in held if nr >= 0)
    assert queued <= SHORT.max_queue, f"one address holds {queued} chunks over {len(held)} sessions"


def test_a_receiver_back_after_a_kill_gets_its_file_again(redis_url: str, tmp_path: Path) -> None:
    redis.Redis.from_url(redis_url).flushall()
    db = redis.Redis.from_url(redis_url)
    max_queue = Limits().max_queue
    path = tmp_path / "small.bin"
    path.write_bytes(os.urandom(max_queue * crypto.CHUNK + 1000))  # 9 chunks: one taken, 8 queued
    token = crypto.new_token()  # the receive's resume token: its second run presents it again
    with running_relay(redis_url) as (_, url), sending(url, path) as (sender, name, code):
        # The first run: asks for the file, takes its first chunk, and is killed before the rest.
        client, sid, rkeys, manifest = join(url, name, code, token)
        entry = manifest["files"][0]
        assert entry["chunks"] == max_queue + 1
        request = crypto.FileRequest(rkeys, entry["id"], 0)
        client.request(sid, [{"filename": entry["id"], "public_key": b64e(request.public), "first": 0,
                              "mac": request.mac}])
        acks: list[dict] = []
        while not acks:
            acks = client.acknowledgements(sid, wait=10)
        dead = acks[0]["request_id"]
        taken = client.pop(dead, wait=5, first=True)
        while taken is None:
            taken = client.pop(dead, wait=5)
        assert taken[0] == 0
        deadline = time.monotonic() + 60
        while db.llen(keys.chunks(dead)) < max_queue:  # the sender queued the whole file
            assert time.monotonic() < deadline and sender.poll() is None
            time.sleep(0.05)
        client.close()  # killed: no goodbye

        # The second run, with the same token: replaces the first, asks for the file again.
        again, sid2, rkeys2, manifest2 = join(url, name, code, token)
        assert sid2 == sid
        request2 = crypto.FileRequest(rkeys2, entry["id"], 0)
        again.request(sid, [{"filename": entry["id"], "public_key": b64e(request2.public), "first": 0,
                             "mac": request2.mac}])
        acks = []
        while not acks:
            acks = again.acknowledgements(sid, wait=10)
        rid = acks[0]["request_id"]
        assert rid != dead
        got = again.pop(rid, wait=5, first=True)
        # A take waits 10 s at most (receive.POLL); the sender pushes within milliseconds of a space.
        for _ in range(3):
            if got is not None:
                break
            got = again.pop(rid, wait=5)
        left = db.llen(keys.chunks(dead))
        again.close()
    assert got is not None, f"no chunk for the second run: the first run's request holds {left} chunks"


# --- (1)'s fix, on the relay's state: a request lives no longer than its session

def _expiring_keys(rid: str, owner: str, uid: str) -> list[str]:
    """A request's keys, and the session's sets that name its requests."""
    return [keys.request_users(rid), keys.prep(rid), keys.ready(rid), keys.chunks(rid), keys.last_chunk(rid),
            keys.queued_requests(owner), keys.sender_requests(owner), keys.receiver_requests(uid)]


def test_every_request_call_is_refused_once_its_session_is_gone(redis_url: str) -> None:
    """The session expired (its key gone; nothing runs then): whatever keys of its request are left,
    no push, take, ready, status or finish of it is served any more."""
    state = RelayState(redis_url, Limits(max_queue=3))
    sid, owner, rid, uid = _streaming(state, f"10.64.2.{secrets.randbelow(250) + 2}")
    assert state.push_chunk(rid, owner, 0, "aXY=", b"x" * 10) == 1
    assert state.member(rid, uid) and state.member(rid, owner)  # control: while it is there
    state.r.delete(keys.session(sid))
    with pytest.raises(Refused) as pushed:
        state.push_chunk(rid, owner, 1, "aXY=", b"x" * 10)
    with pytest.raises(Refused) as taken:
        state.pop_chunk(rid, uid)
    with pytest.raises(Refused) as ready:
        state.mark_ready(rid, uid)
    assert pushed.value.status == taken.value.status == ready.value.status == 404
    assert not state.member(rid, uid) and not state.member(rid, owner)  # status and finish: 404
    with pytest.raises(Refused):
        state.acknowledge(sid, owner, {"filename": "f", "user_id": uid, "public_key": "k2",
                                       "chunks": 1, "first": 0, "mac": "m"})


def test_a_failed_sessions_requests_are_refused_too(redis_url: str) -> None:
    state = RelayState(redis_url, Limits(max_queue=3))
    sid, owner, rid, uid = _streaming(state, f"10.64.3.{secrets.randbelow(250) + 2}")
    state.r.hset(keys.session(sid), "failed", 1)  # its tombstone (the request keys left, as if raced)
    with pytest.raises(Refused):
        state.push_chunk(rid, owner, 0, "aXY=", b"x" * 10)
    with pytest.raises(Refused):
        state.pop_chunk(rid, uid)


def test_a_requests_keys_expire_with_its_session_never_after(redis_url: str) -> None:
    """Written when the session has 1.5 s left (its sender's last look long ago), a request's keys
    are given those 1.5 s, not a fresh ttl; the sender's next look gives the session's sets its ttl
    again, so that a session closed later still finds every request of it."""
    state = RelayState(redis_url, Limits(max_queue=3))
    sid, owner, rid, uid = _streaming(state, f"10.64.4.{secrets.randbelow(250) + 2}")
    state.r.pexpire(keys.session(sid), 1500)
    assert state.push_chunk(rid, owner, 0, "aXY=", b"x" * 10) == 1
    for key in _expiring_keys(rid, owner, uid)[:-1]:  # what the push wrote (the receiver's set: the ack)
        assert 0 < state.r.pttl(key) <= 1500, key
    state.refresh(sid)  # the sender's look: the session and its sets live ttl again
    for key in (keys.session(sid), keys.sender_requests(owner), keys.queued_requests(owner),
                keys.receiver_requests(uid)):
        assert state.r.pttl(key) > 1500, key
    state.close_session(sid)
    assert not any(state.r.exists(key) for key in _expiring_keys(rid, owner, uid))


# --- (2)'s fix on the relay: a refused (replaced) receiver's requests hold nothing

def test_a_refused_receivers_requests_leave_the_sessions_queue_at_once(redis_url: str) -> None:
    """Whatever the sender does about its requests: refused (as replaced by its own next run), a
    receiver's requests end, their chunks out of the session's queue, and its next run's file flows."""
    state = RelayState(redis_url, Limits(max_queue=3))
    sid, owner, dead, first = _streaming(state, f"10.64.5.{secrets.randbelow(250) + 2}")
    nr = 0
    while state.push_chunk(dead, owner, nr, "aXY=", b"x" * 10) == 1:
        nr += 1
    assert nr == 3
    name = state.session(sid)["name"]
    _, again, _ = state.join(name, "10.64.5.1")
    state.post_handshake(sid, again, "receiver", {"pake.a": "a"})
    state.post_handshake(sid, again, "sender", {"pake.b": "b"})
    state.post_handshake(sid, again, "receiver", {"confirm.a": "c", "hello": "h"})
    state.post_handshake(sid, again, "sender", {"confirm.b": "d", "manifest": "m"})
    state.add_requests(sid, again, [{"filename": "f", "public_key": "k2", "first": 0, "mac": "m"}])
    rid = state.acknowledge(sid, owner, {"filename": "f", "user_id": again, "public_key": "k2",
                                         "chunks": 1_000_000, "first": 0, "mac": "m"})
    state.mark_ready(rid, again)
    assert state.push_chunk(rid, owner, 0, "aXY=", b"x" * 10) == 0  # control: the dead run's chunks hold it
    state.post_handshake(sid, first, "sender", {"refused": "replaced by the same receiver's next run"})
    assert state.queued(dead) == 0 and not state.request_open(dead)
    with pytest.raises(Refused):
        state.pop_chunk(dead, first)
    assert state.push_chunk(rid, owner, 0, "aXY=", b"x" * 10) == 1
    assert state.pop_chunk(rid, again) is not None
