"""Attack round 69a on the relay after round 68's fixes (1a2ff1b, 1bec66b) and 64b's (7a68ec2): a real
redis-server, the real relay process (``fusevault relay``) or its state (``RelayState``).

69a (1), medium (a flood: one address makes the relay's Redis hold without bound, for as long as its
session lives).  Attacker: anyone who can reach the relay, with no code and no account, one address:
he plays both ends of his own session (as 63b (1)); or a hostile receiver of an honest ``send``
(it has the code and its resume token: each run back is "replaced" by the sender, who posts its
sealed list of files again).
  Steps (``test_69a_1_refused_receivers_make_one_address_hold_without_bound``, plain HTTP calls to
  the real relay, ``--session-ttl 3``): open a session of one file; then, again and again, join it,
  post the four key-exchange fields as each side with a manifest of 256 KiB (``max_manifest`` is
  16 MiB), and refuse that receiver as the sender (``{"refused": "replaced"}``, what ``Sender.replace``
  posts); then the sender's events call, now and then, as a sender streaming.  And
  (``test_69a_1_a_hostile_receiver_makes_an_honest_sends_relay_hold_its_manifest_per_run``) the real
  ``fusevault send`` of 40 files, its receiver (the code, one resume token) joining 20 times: the
  sender replaces each earlier run and seals its manifest to the next; the relay holds 20 (140,240
  bytes, 7,012 each; a probe of 300 files: 12 runs in 0.9 s, 580,176 bytes).
  Seen: every refused receiver's handshake keeps its manifest: after 24 rounds the session holds 24
  manifests (6,291,456 bytes), all still there after 6 s of events calls (ttl 3 s); a probe, not
  kept: 40 rounds, 23.6 MB by MEMORY USAGE.  Nothing stops the rounds: a refused
  receiver leaves ``session.receivers`` (``max_receivers`` counts the others), and the manifest that
  lets it in gives back its address's join attempts (``post_handshake``: ``access.attempts`` deleted,
  the name out of ``joined.names``), so one address joins the same session for ever, at the cost of
  one manifest upload per join: with 16 MiB manifests, the 400 calls a second allowed carry about as
  much as 63b (1)'s chunks did (1.3 TB) before its fix, and the queue's bound (8 MiB a session) is not
  the session's bound.  Since round 68 the refused receivers never expire while the session lives:
  ``session.joined`` (68a (3)) only grows, and ``refresh`` (68a (2), once per quarter ttl) pushes back
  every key ``_held`` names, each joined receiver's handshake (and its unanswered ``file.req`` keys,
  up to ``max_field`` each for every file) among them, so one events call per quarter hour keeps them
  all; before, a refused receiver's keys expired ``session_ttl`` after its last write.  The requests
  need no sender's upload (a probe on ``RelayState``, not kept: 5 receivers refused after asking for
  100 files each with 4 KB keys, 500 ``file.req`` keys, 2,021,000 bytes, all there after 5 s of
  refresh at a ttl of 2 s, and none shown to the sender): with 10,000 files, 40 MB per refused
  receiver, one address's uploads kept as long as it likes.
  Expected: what one address's session makes the relay hold is bounded by what its honest transfers
  need (63b (1)'s rule), about ``max_receivers`` handshakes; a refused receiver is not kept alive by
  its session.
  Cause: relay/state.py ``post_handshake`` (a refused receiver's handshake keeps its manifest and its
  requests not yet answered; the manifest gives back the address's join attempts), ``join``
  (``max_receivers`` counts ``session.receivers`` only), ``_held`` (named from ``session.joined``) as
  used by ``refresh``.
  Impact: one stranger fills the relay's Redis (``maxmemory``: every session refused new keys, 503)
  and keeps it full with an events call every 15 minutes; a hostile receiver of an honest ``send``
  does the same with the sender's uploads.
  Suggested fix: at a refusal, drop the refused receiver's ``manifest`` field (it is refused: it gets
  nothing) and its requests not yet answered (``file.req``/``file.reqs:<sid>:<file>``), keep only its
  small fields for the receiver to read "refused"; leave refused receivers out of ``refresh``'s
  pushing back (their keys keep the ttl of their refusal); and count the session's joins (a bound on
  ``session.joined``, e.g. a few times ``max_receivers``) so that the set and a close's work stay
  bounded too.

69a (2), medium (a flood: one address's calls, each within its budget, cost the relay seconds of CPU and
Redis time; the relay stalls for every session).  Attacker: anyone who can reach the relay, one
address, no code: he plays both ends of his own session (as 63b (1)).
  Steps (``test_69a_2_one_call_costs_what_the_session_holds[events|acks]``, the real relay): a session
  of ``max_files`` (10,000) files, one receiver let in (the four fields), that asks for all of them in
  one call (600 KB); then the sender's events call (``wait=0``) or the receiver's acks call.
  Seen: one events call costs 40,024 Redis commands (``pending_requests``: per asked request an EXISTS,
  a GET and an HEXISTS, and a json.loads in the relay's Python), one acks call 10,006 (a GET per
  asked file, at every probe of its long poll: every 0.5 s for up to 10 s, so up to 20 times that per
  call).  Measured (a script, not kept; 2 shared cores): one events call 0.45 s of the relay process,
  with an answer of 1,028,920 bytes (the 10,000 requests, again at every call); 16 clients making 48
  such calls kept the relay busy 27.7 s, its /health answered in 1.0 to 1.4 s meanwhile (3 ms idle).
  The address may make 400 calls a second (``calls_per_second``): 180 s of relay CPU asked per second.
  With 16 receivers let in (``max_receivers``, or refused ones: (1)) each asking 10,000, one events
  probe is 160,000 requests: 7 s (``RelayState`` directly, a probe not kept).  An honest sender of
  10,000 files pays the same at each of its events calls (every second, ``EVENTS_WAIT``).
  The same class, seen by a script and not kept as a test (the bound a fix picks decides its
  assertion): a receiver let in asks ``GET handshake?want=manifest`` again and again; each answer is
  the whole sealed manifest, JSON-encoded by the relay at every call (16 MiB, ``max_manifest``): one
  client, one connection, 42 calls in 5 s, 704,646,558 bytes answered; the address may ask 400 a
  second.
  Expected: the relay's work for one call is bounded (a page), whatever the caller's session holds,
  so that ``calls_per_second`` bounds an address's share of the relay.
  Cause: relay/state.py ``pending_requests`` (reads every (file, requester) pair and answers all
  that are not acknowledged), ``acknowledgements`` (a GET per requested file per probe); api.py
  ``events``/``acknowledgements`` call them once per probe of a long poll.
  Impact: one stranger stalls every send and receive on the relay (the trio loop waits for the GIL
  and 32 worker threads), with a few calls a second.
  Suggested fix: answer a page (at most ~100 requests or acks per call; the sender gets the rest at
  its next events call), from sets kept as requests are asked and answered (``file.reqs.pending:<sid>``
  of "file uid" pairs, removed by ``acknowledge``; the receiver's ``file.reqs.receiver`` for acks), so
  a probe reads O(page), not the session; or count such a call as its size in the budget.

Tried and held (controls kept where they would catch a regression):
- a session's end after refusals leaves nothing of it
  (``test_69a_control_a_session_with_refused_receivers_ends_whole``);
- the refresh of one session pushes back none of another session's keys
  (``test_69a_control_refresh_extends_no_other_session``);
- PUSH/POP/LIVE after a close, a fail, an expiry: -1, nothing written (64b's tests; read again: ``live``
  reads the session's PTTL in the same script); ``PUSH``'s loop over ``file.reqs.queued`` holds at most
  ``max_queue`` + 1 members (a member with no chunks leaves it);
- a close racing a join or a refresh: the late writes (``access.joiners``, ``access.attempts``,
  ``session.refreshed``) carry their own expiry (ttl, ttl / 4): they expire, never kept;
- the client: ``close_session``/``fail``/``finish(ending=True)`` ride out at most ``ENDING_WAIT``
  (5 s) of 429 or ``CALL_RETRIES`` answers with ``Retry-After: 0``; a 429 that is not the budget's
  is raised at once; a 404 at the close is "gone already" (only the session's own token reaches it).
- Redis at its cap (``--maxmemory 16mb``, noeviction, 7.0.15; a probe): a session under way still
  counts its calls, takes its queued chunk, finishes its request and closes (the scripts' SADD and
  the DELs run), so the README's "every key that holds a transfer stays" holds and can drain;
- the budget's script (``_COUNT``): a call refused past the budget costs Redis ~225 us (400 SADDs
  that all find their member) against ~1 us within it: bounded by ``calls_per_second``, and below
  the relay's own cost of the HTTP call, so not attacker-sized;
- a close of a session of 180,024 keys (16 receivers x 10,000 requests): 3.1 s, in slices, within
  the client's 30 s timeout.
Not tried: many relay processes on one Redis (bells are per process), IPv6 /64 rotation, TLS proxies.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import httpx
import pytest
import redis
from transfer_helpers import free_port, relay_at, sending

from fusevault.encoding import b64e
from fusevault.relay.limits import Limits
from fusevault.relay.state import RelayState
from fusevault.transfer import crypto
from fusevault.transfer.client import RelayClient

TTL = 3  # seconds: the relay's --session-ttl here
MANIFEST = "m" * (256 * 1024)
ROUNDS = 24
RECEIVERS = Limits().max_receivers


def _post(client: httpx.Client, path: str, token: str | None, body: dict) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = client.post(path, json=body, headers=headers)
    assert answer.status_code < 300, (path, answer.status_code, answer.text)
    return answer.json() if answer.content else {}


def _handshakes(db: redis.Redis, sid: str) -> tuple[int, int]:
    """(receivers' handshakes of the session, bytes of the manifests they hold)."""
    found = db.keys(f"session.receiver:{sid}:*")
    return len(found), sum(len(db.hget(k, "manifest") or b"") for k in found)


def test_69a_1_refused_receivers_make_one_address_hold_without_bound(redis_url: str) -> None:
    db = redis.Redis.from_url(redis_url)
    db.flushall()
    with relay_at(redis_url, free_port(), "--session-ttl", str(TTL)) as (_, url), \
            httpx.Client(base_url=url, timeout=30) as client:
        session = _post(client, "/sessions", None, {"code": "ab" * 32, "files": [{"id": "f0", "size": 1}]})
        sid, sender = session["id"], session["token"]

        def events() -> None:
            answer = client.get(f"/sessions/{sid}/events", params={"wait": "0"},
                                headers={"Authorization": f"Bearer {sender}"})
            assert answer.status_code == 200, answer.text

        for _ in range(ROUNDS):
            answer = client.post("/sessions/join", json={"name": session["name"]})
            if answer.status_code == 429:
                break  # the relay bounds the session's joins: what is held is judged below
            assert answer.status_code == 200, answer.text
            uid, receiver = answer.json()["user_id"], answer.json()["token"]
            _post(client, f"/sessions/{sid}/handshake", receiver, {"pake.a": "a"})
            _post(client, f"/sessions/{sid}/handshake", sender, {"user_id": uid, "pake.b": "b"})
            _post(client, f"/sessions/{sid}/handshake", receiver, {"confirm.a": "c", "hello": "h"})
            _post(client, f"/sessions/{sid}/handshake", sender,
                  {"user_id": uid, "confirm.b": "d", "manifest": MANIFEST})
            _post(client, f"/sessions/{sid}/handshake", sender, {"user_id": uid, "refused": "replaced"})
            events()
        held_now = _handshakes(db, sid)
        until = time.monotonic() + 2 * TTL
        while time.monotonic() < until:  # the sender streams on: its events calls keep the session
            events()
            time.sleep(0.3)
        held_later = _handshakes(db, sid)
    bound = (RECEIVERS + 1) * len(MANIFEST)
    assert held_now[1] <= bound and held_later[1] <= bound, (
        f"one address's session holds {held_now[0]} receivers' handshakes with {held_now[1]} bytes of "
        f"manifests, and {held_later[0]} with {held_later[1]} bytes after {2 * TTL} s of events calls "
        f"(ttl {TTL} s); {RECEIVERS} receivers at most may be in it")



def _wait(client: RelayClient, sid: str, want: str) -> dict:
    for _ in range(60):
        found = client.handshake(sid, want, wait=1)
        if found:
            return found
    pytest.fail(f"the sender never posted {want}")


def test_69a_1_a_hostile_receiver_makes_an_honest_sends_relay_hold_its_manifest_per_run(
        redis_url: str, tmp_path: Path) -> None:
    """The same through the real ``fusevault send``: its receiver (it has the code) joins again and again
    with the same resume token; the sender replaces each earlier run and seals its list of files to
    the new one, and the relay keeps every one (a probe: 12 runs in 0.9 s)."""
    db = redis.Redis.from_url(redis_url)
    db.flushall()
    for i in range(40):
        (tmp_path / f"a file with a name of some length, number {i}.txt").write_text("x")
    token = crypto.new_token()
    with relay_at(redis_url, free_port()) as (_, url), sending(url, tmp_path) as (proc, name, code):
        for _ in range(RECEIVERS + 4):
            client = RelayClient(url)
            try:
                session = client.join(name)
                sid = session["id"]
                exchange = crypto.ReceiverHandshake(code, sid, str(session["code"]), session["user_id"])
                client.post(sid, {"pake.a": exchange.message})
                keys = exchange.finish(_wait(client, sid, "pake.b")["pake.b"])
                client.post(sid, {"confirm.a": b64e(keys.confirm_receiver), "hello": keys.seal_hello(token)})
                assert "manifest" in _wait(client, sid, "manifest")
            finally:
                client.close()
        assert proc.poll() is None
        held, manifests = _handshakes(db, sid)
    one = max(len(db.hget(k, "manifest") or b"") for k in db.keys(f"session.receiver:{sid}:*"))
    assert manifests <= (RECEIVERS + 1) * one, (
        f"{held} runs of one receiver left {manifests} bytes of the sender's manifest at the relay "
        f"({one} each)")

# --- controls, on the relay's state

def _admitted(state: RelayState, sid: str, name: str, ip: str) -> str:
    _, uid, _ = state.join(name, ip)
    state.post_handshake(sid, uid, "receiver", {"pake.a": "a"})
    state.post_handshake(sid, uid, "sender", {"pake.b": "b"})
    state.post_handshake(sid, uid, "receiver", {"confirm.a": "c", "hello": "h"})
    state.post_handshake(sid, uid, "sender", {"confirm.b": "d", "manifest": "m"})
    return uid


def _keys(db: redis.Redis) -> set[bytes]:
    return {k for k in db.keys("*") if k != b"calls" and not k.startswith(b"joined.names:")}


def test_69a_control_a_session_with_refused_receivers_ends_whole(redis_url: str) -> None:
    """A session whose receivers were refused (their requests asked, some answered and queued) leaves
    no key behind at its close: its refused receivers are named from ``session.joined``."""
    state = RelayState(redis_url, Limits())
    db = redis.Redis.from_url(redis_url)
    before = _keys(db)
    owner = secrets.token_hex(8)
    files = [{"id": f"f{i}", "size": 1} for i in range(3)]
    sid, name = state.create_session("10.69.1.1", owner, "ab" * 32, files)
    for n in range(4):
        uid = _admitted(state, sid, name, f"10.69.1.{n + 2}")
        state.add_requests(sid, uid, [{"filename": f["id"], "public_key": "k", "first": 0, "mac": "m"}
                                      for f in files])
        rid = state.acknowledge(sid, owner, {"filename": "f0", "user_id": uid, "public_key": "k",
                                             "chunks": 2, "first": 0, "mac": "m"})
        state.mark_ready(rid, uid)
        state.push_chunk(rid, owner, 0, "aXY=", b"x")
        state.post_handshake(sid, uid, "sender", {"refused": "replaced"})
    state.refresh(sid)
    assert _keys(db) - before
    state.close_session(sid)
    assert _keys(db) - before == set(), _keys(db) - before


def test_69a_control_refresh_extends_no_other_session(redis_url: str) -> None:
    """One session's refresh pushes back none of another session's keys (its name, requests,
    receivers, sets): they expire at their own time."""
    short = Limits(session_ttl=2)
    state = RelayState(redis_url, short)
    db = redis.Redis.from_url(redis_url)
    owner, other_owner = secrets.token_hex(8), secrets.token_hex(8)
    other, other_name = state.create_session("10.69.2.2", other_owner, "cd" * 32, [{"id": "a", "size": 1}])
    uid = _admitted(state, other, other_name, "10.69.2.3")
    state.add_requests(other, uid, [{"filename": "a", "public_key": "k", "first": 0, "mac": "m"}])
    sid, _ = state.create_session("10.69.2.1", owner, "ab" * 32, [{"id": "a", "size": 1}])
    others = [k for k in db.keys("*") if other.encode() in k or uid.encode() in k
              or other_owner.encode() in k or k == f"session:{other_name}".encode()]
    assert len(others) >= 8
    until = time.monotonic() + short.session_ttl + 1
    while time.monotonic() < until:
        state.refresh(sid)
        time.sleep(0.2)
    assert [k for k in others if db.exists(k)] == []
    assert state.session(sid)["owner.id"] == owner


# --- 69a (2): one call's work sized by the session

ASKED = Limits().max_files  # requests one receiver asks for at once (one call of 10,000)
ONE_CALL = 1000  # Redis commands one call may cost (a page of answers), whatever the session holds


def _commands(db: redis.Redis) -> int:
    return sum(int(s["calls"]) for s in db.info("commandstats").values())


@pytest.mark.parametrize("route", ["events", "acks"])
def test_69a_2_one_call_costs_what_the_session_holds(redis_url: str, route: str) -> None:
    db = redis.Redis.from_url(redis_url)
    db.flushall()
    files = [{"id": f"f{i}", "size": 1} for i in range(ASKED)]
    with relay_at(redis_url, free_port()) as (_, url), httpx.Client(base_url=url, timeout=60) as client:
        session = _post(client, "/sessions", None, {"code": "ab" * 32, "files": files})
        sid, sender = session["id"], session["token"]
        joined = _post(client, "/sessions/join", None, {"name": session["name"]})
        uid, receiver = joined["user_id"], joined["token"]
        _post(client, f"/sessions/{sid}/handshake", receiver, {"pake.a": "a"})
        _post(client, f"/sessions/{sid}/handshake", sender, {"user_id": uid, "pake.b": "b"})
        _post(client, f"/sessions/{sid}/handshake", receiver, {"confirm.a": "c", "hello": "h"})
        _post(client, f"/sessions/{sid}/handshake", sender,
              {"user_id": uid, "confirm.b": "d", "manifest": "m"})
        _post(client, f"/sessions/{sid}/requests", receiver, {"requests": [
            {"filename": f["id"], "public_key": "k", "first": 0, "mac": "m"} for f in files]})
        path, token = ((f"/sessions/{sid}/events", sender) if route == "events"
                       else (f"/sessions/{sid}/acks", receiver))
        auth = {"Authorization": f"Bearer {token}"}
        client.get(path, params={"wait": "0"}, headers=auth)  # an events call's first: refresh's pass too
        before = _commands(db)
        answer = client.get(path, params={"wait": "0"}, headers=auth)
        cost = _commands(db) - before - 1  # the INFO itself
        assert answer.status_code == 200, answer.text
    assert cost <= ONE_CALL, f"one {route} call (wait 0: one probe) cost {cost} Redis commands"
