"""Attack round 68a on the relay's state (a real redis-server): see tests/unit/test_attack_68a.py for
the round's other hole and its controls.

68a (2), medium (honest data refused: a send of several files fails past the first hour).  Attacker:
none (honest use: a folder of a few GB over a slow uplink, or a receiver that is slow to take).
  Steps (``test_68a_2_a_later_files_request_outlives_an_hour_of_the_files_before_it``, on
  ``RelayState``, a short ``session_ttl``): a session of two files; the receiver asks for both; the
  sender answers both at once (``Sender.serve`` acknowledges its whole batch before it streams any)
  and streams the first, its events call refreshing the session all along (``refresh``), for longer
  than ``session_ttl``; then the receiver marks the second ready and the sender pushes its first
  chunk.
  Seen: 404 "the transfer was cancelled" for both, the session live: the second request's keys
  (``prep``, ``file.req.users`` ...) were given the session's remaining life at the acknowledge
  (``RelayState._left``, 64b (1)) and nothing pushes them back before their first chunk (``refresh``
  pushes back the session's sets, not a request's keys; ``PUSH`` only its own request's), so every
  file that starts more than ``session_ttl`` (an hour) after the batch's acknowledge is lost: the
  receive ends ("the sender stopped this transfer"), the sender says "the receiver stopped
  receiving" and waits; the receiver's next run asks again and the same happens to the files after an
  hour of the next batch.  With the default ttl: about 3.6 GB ahead of a file at 1 MB/s.
  Expected: a request the sender answered lives as long as its session (what 64b (1) says: "a request
  lives no longer than its session", not less).
  Cause: relay/state.py ``acknowledge`` (``pexpire(key, left)``) and ``refresh`` (does not push back
  the keys of requests not yet streamed); older than 64b (1) too (``expire(key, ttl)`` at the
  acknowledge, the same hour), but in the code round 64b rewrote.
  Suggested fix: ``refresh`` pushes back the keys of the session's acknowledged requests
  (``file.reqs.sender:<owner>``'s members: ``request_users``, ``prep``, ``ready``, ``chunks``,
  ``last_chunk``, and their ``file.req``/``file.req.ackn``) to the session's ttl; or the sender
  acknowledges a request only when it is about to stream it.

68a (3), medium (a flood: one address makes the relay's Redis walk its whole keyspace, six times, at
every call of a pair).  Attacker: anyone who can reach the relay, two addresses (or two IPv6 /64s).
  Steps (``test_68a_3_a_close_walks_every_other_sessions_keys``, on ``RelayState``): address A opens
  a session of 10,000 files (``max_files``: 10,000 keys ``files:<sid>:<id>``, kept with one events
  call an hour); address B opens a session of one file and closes it, again and again (a close drops
  ``created.sessions:<B>``, so B may open the next at once: two calls a round, 200 rounds a second
  within ``calls_per_second``).
  Seen: each close (``close_session`` -> ``_doomed``) runs six ``SCAN MATCH`` walks over the whole
  keyspace (``files:{sid}:*``, ``file.reqs:{sid}:*``, ... COUNT 1000): 66 SCAN round trips here for
  a one-file session, growing with every other session's keys (A's 10,000; a relay of a million
  keys: 6,000 round trips and 6 million keys looked at per close).  Redis runs one command at a
  time: every transfer on the relay waits behind B's closes.  ``fail_session`` walks the same way.
  Measured (a script, not kept: 20 addresses each holding a 10,000-file session, 200,080 keys, this
  2-core machine under load): a one-file session's close took 0.8 to 1.8 s of Redis; B may ask 200 a
  second.
  Expected: a session's end costs its own keys, whatever the relay holds besides.
  Cause: relay/state.py ``_doomed``: ``scan_iter(pattern, count=1000)`` for six patterns (from the
  relay's first version, not round 64b); the names it looks for are known from the session's own sets
  (``files``, ``file.reqs``, ``session.receivers``) and the join addresses.
  Suggested fix: name the keys from those sets (``files(sid)`` -> ``file(sid, fid)``, ``file_reqs``
  x ``receivers`` -> ``file_req_users``/``file_req``/``file_req_ackn``, ``handshake(sid, uid)``;
  the join attempts' addresses in a set of the session's), no SCAN; or count a close as
  ``len(files)`` calls.
"""

from __future__ import annotations

import secrets
import time

import pytest
import redis

from fusevault.relay.limits import Limits, Refused
from fusevault.relay.state import RelayState

TTL = 2  # seconds: the relay's session_ttl here
SHORT = Limits(session_ttl=TTL, max_queue=3)


def test_68a_2_a_later_files_request_outlives_an_hour_of_the_files_before_it(redis_url: str) -> None:
    state = RelayState(redis_url, SHORT)
    address, owner = "10.68.2.1", secrets.token_hex(8)
    files = [{"id": "a", "size": 10}, {"id": "b", "size": 10}]
    sid, name = state.create_session(address, owner, "ab" * 32, files)
    _, uid, _ = state.join(name, "10.68.2.2")
    state.post_handshake(sid, uid, "receiver", {"pake.a": "a"})
    state.post_handshake(sid, uid, "sender", {"pake.b": "b"})
    state.post_handshake(sid, uid, "receiver", {"confirm.a": "c", "hello": "h"})
    state.post_handshake(sid, uid, "sender", {"confirm.b": "d", "manifest": "m"})
    state.add_requests(sid, uid, [{"filename": f["id"], "public_key": "k", "first": 0, "mac": "m"}
                                  for f in files])
    # The sender answers its whole batch, then streams the first file (serve).
    first, second = (state.acknowledge(sid, owner, {"filename": f["id"], "user_id": uid, "public_key": "k",
                                                    "chunks": 1_000_000, "first": 0, "mac": "m"})
                     for f in files)
    state.mark_ready(first, uid)
    nr, until = 0, time.monotonic() + TTL * 1.5
    while time.monotonic() < until:  # the first file streams, the sender's events refresh the session
        state.refresh(sid)
        assert state.push_chunk(first, owner, nr, "aXY=", b"x" * 10) == 1
        assert state.pop_chunk(first, uid) is not None
        nr += 1
        time.sleep(0.2)
    state.finish_request(first)  # the receiver has it
    state.refresh(sid)
    assert state.session(sid)["name"] == name  # the session is live
    # Its second file now: the receiver marks it ready, the sender pushes its first chunk.
    try:
        state.mark_ready(second, uid)
        pushed = state.push_chunk(second, owner, 0, "aXY=", b"x" * 10)
    except Refused as err:
        pytest.fail(f"the second file's request is gone, its session live: {err}")
    assert pushed == 1


def _scans(db: redis.Redis) -> int:
    stats = db.info("commandstats")
    return int(stats.get("cmdstat_scan", {}).get("calls", 0))


def test_68a_3_a_close_walks_every_other_sessions_keys(redis_url: str) -> None:
    state = RelayState(redis_url, Limits())
    db = redis.Redis.from_url(redis_url)
    big = [{"id": f"f{i}", "size": 1} for i in range(Limits().max_files)]
    state.create_session("10.68.3.1", secrets.token_hex(8), "ab" * 32, big)  # A's, kept open
    scans = []
    for _ in range(2):  # B: open a one-file session, close it, again
        sid, _ = state.create_session("10.68.3.2", secrets.token_hex(8), "cd" * 32, [{"id": "x", "size": 1}])
        before = _scans(db)
        state.close_session(sid)
        scans.append(_scans(db) - before)
    assert max(scans) <= 6, f"a one-file session's close ran {scans} SCANs over the relay's keys"


def _admitted(state: RelayState, sid: str, name: str, owner: str, ip: str) -> str:
    """A receiver joined from ``ip`` and let in by the sender: its id."""
    _, uid, _ = state.join(name, ip)
    state.post_handshake(sid, uid, "receiver", {"pake.a": "a"})
    state.post_handshake(sid, uid, "sender", {"pake.b": "b"})
    state.post_handshake(sid, uid, "receiver", {"confirm.a": "c", "hello": "h"})
    state.post_handshake(sid, uid, "sender", {"confirm.b": "d", "manifest": "m"})
    return uid


def _asked(state: RelayState, sid: str, uid: str, fids: list[str]) -> None:
    state.add_requests(sid, uid, [{"filename": f, "public_key": "k", "first": 0, "mac": "m"} for f in fids])


def _answered(state: RelayState, sid: str, owner: str, uid: str, fid: str) -> str:
    return state.acknowledge(sid, owner, {"filename": fid, "user_id": uid, "public_key": "k", "chunks": 2,
                                          "first": 0, "mac": "m"})


def test_68a_2_a_request_not_yet_answered_outlives_an_hour_of_waiting_for_its_answer(redis_url: str) -> None:
    """The same for a request the sender has not answered yet (it streams the batch before): its
    keys (``file.req``, ``file.reqs:<sid>:<file>``) too got the session's life left at the ask."""
    state = RelayState(redis_url, SHORT)
    owner = secrets.token_hex(8)
    sid, name = state.create_session("10.68.2.3", owner, "ab" * 32, [{"id": "a", "size": 1}])
    uid = _admitted(state, sid, name, owner, "10.68.2.4")
    _asked(state, sid, uid, ["a"])
    until = time.monotonic() + TTL * 1.5
    while time.monotonic() < until:  # the sender is busy elsewhere, its events keep the session
        state.refresh(sid)
        time.sleep(0.2)
    assert [r["filename"] for r in state.pending_requests(sid)] == ["a"]
    rid = _answered(state, sid, owner, uid, "a")
    state.mark_ready(rid, uid)
    assert state.push_chunk(rid, owner, 0, "aXY=", b"x") == 1


def test_68a_2_a_request_kept_never_outlives_its_session(redis_url: str) -> None:
    """Control (64b (1) still holds): the requests' keys pushed back by ``refresh`` live no longer than
    the session; once the sender stops calling, they go with it."""
    state = RelayState(redis_url, SHORT)
    db = redis.Redis.from_url(redis_url)
    owner = secrets.token_hex(8)
    files = [{"id": "a", "size": 1}, {"id": "b", "size": 1}]
    sid, name = state.create_session("10.68.2.5", owner, "ab" * 32, files)
    uid = _admitted(state, sid, name, owner, "10.68.2.6")
    _asked(state, sid, uid, ["a", "b"])
    rid = _answered(state, sid, owner, uid, "a")
    state.mark_ready(rid, uid)
    assert state.push_chunk(rid, owner, 0, "aXY=", b"x") == 1
    time.sleep(0.6)  # past the share of the ttl after which refresh pushes the requests back
    state.refresh(sid)
    session_left = db.pttl(f"session:{sid}")
    held = [k for k in db.keys("file.req*") if sid.encode() in k or rid.encode() in k]
    assert len(held) >= 8  # file.req, .ackn, .users, prep, ready, chunks, last.chunk, file.reqs:<sid>:a
    # Read after the session's, each key's life would show longer only if its expiry were set past the
    # session's by more than the reads between (a millisecond apart within refresh, not a pass behind).
    assert all(0 < db.pttl(k) <= session_left + 100 for k in held), [(k, db.pttl(k)) for k in held]
    time.sleep(TTL + 0.5)  # the sender stopped calling
    assert not [k for k in db.keys("*") if sid.encode() in k or rid.encode() in k]


def test_68a_2_refresh_pushes_a_sessions_requests_back_a_few_times_a_ttl_not_at_every_call(
        redis_url: str) -> None:
    """Bound: the pass over the session's requests (one key each, many) costs the session's size once
    per share of the ttl; the events calls between cost the session's few own keys."""
    state = RelayState(redis_url, Limits())
    db = redis.Redis.from_url(redis_url)
    owner = secrets.token_hex(8)
    files = [{"id": f"f{i}", "size": 1} for i in range(500)]
    sid, name = state.create_session("10.68.2.7", owner, "ab" * 32, files)
    uid = _admitted(state, sid, name, owner, "10.68.2.8")
    _asked(state, sid, uid, [f["id"] for f in files])

    def expires() -> int:
        return int(db.info("commandstats").get("cmdstat_expire", {}).get("calls", 0))

    counts = []
    for _ in range(3):
        before = expires()
        state.refresh(sid)
        counts.append(expires() - before)
    assert counts[0] >= 3 * len(files)  # each file's hash, its requesters' set, the request
    assert max(counts[1:]) <= 20, counts


def _keys(db: redis.Redis) -> set[bytes]:
    return {k for k in db.keys("*") if k not in (b"calls",) and not k.startswith(b"joined.names:")}


def _full_session(state: RelayState, owner: str, ips: str) -> tuple[str, str, set[str]]:
    """A session with all a session makes: two receivers let in (one later refused), a stranger's join
    attempts, requests asked, answered, ready, chunks queued, its requests pushed back once."""
    files = [{"id": f"f{i}", "size": 1} for i in range(3)]
    sid, name = state.create_session(f"{ips}.1", owner, "ab" * 32, files)
    one, two = (_admitted(state, sid, name, owner, f"{ips}.{n}") for n in (2, 3))
    state.join(name, f"{ips}.4")  # a stranger, never let in
    rids = set()
    for uid in (one, two):
        _asked(state, sid, uid, ["f0", "f1", "f2"])
        rid = _answered(state, sid, owner, uid, "f0")
        state.mark_ready(rid, uid)
        assert state.push_chunk(rid, owner, 0, "aXY=", b"x") == 1
        rids.add(rid)
    state.post_handshake(sid, two, "sender", {"refused": "replaced"})
    state.refresh(sid)
    return sid, name, rids


@pytest.mark.parametrize("end", ["close", "fail"])
def test_68a_3_a_sessions_end_leaves_nothing_of_it_and_touches_no_other(redis_url: str, end: str) -> None:
    """Control for the keys now named from the session's own sets: after its end nothing of the session
    is left (but a failed one's tombstone), and another session, as full, keeps every key."""
    state = RelayState(redis_url, Limits())
    db = redis.Redis.from_url(redis_url)
    start = _keys(db)
    net = 4 if end == "close" else 5
    other = _full_session(state, secrets.token_hex(8), f"10.{net}.68")
    kept = _keys(db) - start
    sid, _, _ = _full_session(state, secrets.token_hex(8), f"10.{net}.69")
    scans = _scans(db)
    if end == "close":
        state.close_session(sid)
    else:
        state.fail_session(sid)
    assert _scans(db) == scans  # no walk of the relay's keys
    left = _keys(db) - start
    assert left == kept | ({f"session:{sid}".encode()} if end == "fail" else set()), left - kept
    assert state.session(other[0])["name"] == other[1]


def test_68a_3_a_failed_session_does_not_walk_the_relays_keys(redis_url: str) -> None:
    """``fail_session`` named the same keys the same way (``_doomed``): no SCAN either."""
    state = RelayState(redis_url, Limits())
    db = redis.Redis.from_url(redis_url)
    big = [{"id": f"f{i}", "size": 1} for i in range(2000)]
    state.create_session("10.68.6.1", secrets.token_hex(8), "ab" * 32, big)
    sid, _ = state.create_session("10.68.6.2", secrets.token_hex(8), "cd" * 32, [{"id": "x", "size": 1}])
    before = _scans(db)
    state.fail_session(sid)
    assert _scans(db) == before
    with pytest.raises(Refused) as failed:
        state.session(sid)
    assert failed.value.status == 410
