"""Attack round 70b on the relay after round 69a's fixes (4b47f62, 2a0d2f0): a real redis-server, the
real relay process (``fusevault relay``), the real ``fusevault send``.

70b (1), medium (honest data refused for good: a folder the relay accepts to send can never be
received).  Attacker: none; an honest ``send`` of a folder of more than ~7,300 files, within the
relay's ``max_files`` (10,000).
  Steps (``test_70b_1_a_folder_of_8000_files_is_received``): the real ``fusevault send`` of a folder of
  8,000 empty files (the relay takes the session); a receiver joins with the code (the protocol by
  hand, ``transfer_helpers.join``, as ``receive`` does), opens the manifest and asks for every file in
  one call, exactly as ``Receiver.fetch`` does (one ``crypto.FileRequest`` per file,
  ``RelayClient.request``).
  Seen: the relay answers 413 (the body is ~1,144,000 bytes: a real request is ~143 bytes of JSON, a
  public key and a MAC of 44 characters each, and 1 MiB holds 7,332 of them); ``receive`` stops there
  with an error, every run again (a resume asks for the same files at once), so the folder is never
  received (a probe, not kept: the real ``fusevault receive`` twice, exit 12 both times, "interrupted:
  run the same command again to resume" then "the body is larger than 1048576 bytes");
  ``receive --only`` a part of it is the only way through.  The 69a tests asked 10,000 files with
  one-letter keys (600 KB) and did not see it.
  Expected: any session the relay opens (``max_files`` 10,000) can be received whole.
  Cause: fusevault/relay/api.py ``add_requests`` reads the body with ``MAX_JSON`` (1 MiB, api.py:25),
  while ``RelayState.add_requests`` holds each request to ``max_request`` (512 bytes) and a session to
  ``max_files``; transfer/receive.py ``fetch`` posts every request in one call.
  Impact: an honest send of a big folder (a photo library, a source tree) fails at the receiver's end,
  after the sender waited for it, with the relay's "the body is larger than 1048576 bytes".
  Suggested fix: the receiver posts its requests in slices (e.g. 1,000 a call; the relay adds them
  as they come, pages already answer them in order), or the route's cap is max_files x max_request.

70b (2), medium (a flood: 69a (1)'s rule "a refused receiver leaves nothing at the relay" undone by a
race one caller wins at will).  Attacker: a receiver of a session (one let in: both ends of his own
session, as 69a (1), or a hostile receiver of an honest ``send`` holding its resume token, whose next
run makes the sender replace, i.e. refuse, this one).
  Steps (``test_70b_2_a_refusal_crossing_the_receivers_requests_leaves_nothing``, ``RelayState`` on the
  test's redis-server): a receiver let in posts its requests; the sender's refusal ("replaced") lands
  while the relay builds that call (the test posts it from ``add_requests``' own ``_left``, so the run
  is the same each time; a probe, not kept, with a real second thread 20 ms after the call started and
  10,000 requests won 5 runs of 5: the call takes ~0.7 s between its check and its write).
  Seen: every ``file.req:<sid>:<file>:<uid>`` of the refused receiver is written after the drop (10,000
  of them, ``max_request`` each: ~10 MB by ``used_memory`` per refused receiver, 31.5 MB for three),
  each with the session's whole remaining life (PTTL 3,599,658 ms), its id back in every
  ``file.reqs:<sid>:<file>``, and 10,000 members of ``file.reqs.pending`` that only the sender's pages
  remove, 100 a probe (29,900 left after a probe for three).  ``max_joins`` (64) receivers so make
  one session hold ~640 MB of requests for an hour, not the ~80 MB 69a counted
  (``max_receivers`` x ``max_files``); the stale members, sorted ahead of an honest receiver's id,
  delay its requests by a probe per 100 (0.5 s each).
  Cause: relay/state.py ``add_requests`` reads ``manifest``/``refused`` (its admission), then writes
  in a later pipeline with no check of its own; ``_drop_receiver`` deletes what it finds at its time.
  Suggested fix: write the requests in one MULTI watched on (or a Lua script checking) the handshake's
  ``refused`` field and ``session.receivers``, or re-check after the write and delete what was written.

70b (3), medium (a flood, and a stalled send: 63b (1)'s bound on what one session's queue holds
undone, the chunks outliving the session).  Attacker: a receiver of a session (both ends of his own
session, as 63b (1) and 69a (1); or a hostile receiver of an honest ``send``), timing a take it drops
against its own refusal or finish.
  Steps (``test_70b_3_a_chunk_put_back_while_its_receiver_is_dropped_goes_with_it``, ``RelayState``):
  a receiver let in asks a file, the sender answers and queues a chunk, the receiver's take gets it
  and goes away before the answer (the relay's pop handler then calls ``unpop_chunk``, as a take whose
  client closed its connection does); the sender's refusal of that receiver ("replaced") lands while
  the chunk is put back (the test posts it from ``unpop_chunk``'s own ``_request_left``, the same run
  each time; a probe, not kept, with a real second thread released with the put-back by a barrier:
  8 wins out of 8 tries, then the session's queue was full).
  Seen: the drop finishes the request (its keys, its chunk list, its id out of the sender's
  ``file.reqs.queued``), then the put-back's MULTI writes the chunk list again (1 MiB) and puts the
  request's id back in ``file.reqs.queued:<sender>``: a request no set of the session names but that
  one, so ``close_session`` leaves it (the probe: 8 chunk lists after the close), for the life the
  session had then (an hour while its sender calls); ``PUSH`` counts its chunk in the session's queue,
  so 8 such (``max_queue``) fill it and every push of the session is refused ("queue full") until they
  expire: the sender stalls for every receiver.  The same window is open to the receiver's own finish
  (``DELETE /requests/<id>``, ``finish_request``), no refusal needed, a new request per try (a file
  asked again after it finished).
  Cause: relay/state.py ``unpop_chunk`` checks the request is live (``_request_left``), reads its
  users, then writes in a later MULTI with no check; ``finish_request`` (called by ``_drop_receiver``)
  deletes what exists at its time.
  Impact: one address makes the relay hold 1 MiB per won race for an hour beyond its one session's
  queue (8 MiB) and beyond the session's end; a hostile receiver of a ``send --keep`` stalls it for
  an hour with 8 wins.
  Suggested fix: put the chunk back in a Lua script that checks ``live`` (request users, prep, the
  session) and writes in the same call, as ``PUSH`` does; or WATCH the request's ``prep`` around the
  MULTI.

Tried and held (read or run, not kept unless named):
  - events paging (``pending_requests``): a page of stale members (answered, refused, expired) leaves
    the set at once; an honest sender answers a whole page before it streams, so the next call moves
    on; the order "receiver file" is the order ``serve`` sorts and ``receive`` takes (``min(acks)``),
    fids are zero-padded digits so byte and string order agree.  Starving one receiver by another's
    requests needs a receiver let in (a ``send --keep`` code holder), which can end the session anyway
    (a request with a wrong MAC makes the sender fail it).
  - ``max_joins``: a guesser who knows the name can end a session with one wrong confirmation (52t);
    locking it by joins is no stronger.  An honest resume is a new join, 64 over a session's life.
  - the manifest's 4 fetches: a resume is a new receiver, counted afresh.
  - ``_drop_receiver`` against ``refresh``: EXPIRE on a deleted key makes nothing; refresh names live
    receivers only.  Against ``PUSH``: the Lua script checks the request and writes in one call, and
    ``finish_request``'s MULTI deletes what a push wrote between its reads and it.
  - many clients at once at ``join``'s bound (a probe, not kept: 15 receivers in, 5 threads of one
    address released by a barrier): 16 present, 4 refused; the check and the add are apart, but the
    address's attempts (5) bound any overshoot.
  - a drop's work: ``_drop_receiver`` finishes each answered request one by one (a both-ends session
    with 10,000 answered makes the refusal call ~40,000 round trips), but the answers cost as many
    calls first: no amplification past the budget.
Not tried: the link store, IPv6 /64 budgets, a relay restart during a drop, a real HTTP run of the
races (2) and (3) (their windows are the relay's own worker threads: 0.7 s in (2)).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from transfer_helpers import free_port, join, relay_at, sending

from fusevault.encoding import b64e
from fusevault.errors import VaultError
from fusevault.relay.limits import LimitReached, Limits, Refused
from fusevault.relay.state import SLICE, RelayState
from fusevault.transfer import crypto

FILES = 8000  # within the relay's max_files (10,000)


def _let_in(state: RelayState, sid: str, name: str) -> str:
    """A receiver the sender let in (the four fields, as tests/services/test_relay_state.py)."""
    _, uid, _ = state.join(name, "10.70.2.2")
    state.post_handshake(sid, uid, "receiver", {"pake.a": "a"})
    state.post_handshake(sid, uid, "sender", {"pake.b": "b"})
    state.post_handshake(sid, uid, "receiver", {"confirm.a": "c", "hello": "h"})
    state.post_handshake(sid, uid, "sender", {"confirm.b": "d", "manifest": "m"})
    return uid


@contextlib.contextmanager
def _crossing(state: RelayState, at: int, action: Callable[[], object]) -> Iterator[list[bool]]:
    """``action`` (a drop, a finish) runs once, just before the ``at``-th round trip to Redis (0: the
    first) of what runs inside; ``[True]`` once it ran.  Whatever the code under test does (commands,
    pipelines, scripts), every point between two of its round trips can be tried this way."""
    fired: list[bool] = []
    trips = itertools.count()
    command, pipeline = state.r.execute_command, state.r.pipeline

    def before() -> None:
        if not fired and next(trips) == at:
            fired.append(True)
            del state.r.execute_command, state.r.pipeline  # the action's own calls are not counted
            try:
                action()
            finally:
                state.r.execute_command, state.r.pipeline = counted, piped

    def counted(*args: Any, **options: Any) -> Any:
        before()
        return command(*args, **options)

    def piped(*args: Any, **options: Any) -> Any:
        pipe = pipeline(*args, **options)
        execute = pipe.execute

        def run(*a: Any, **o: Any) -> Any:
            before()
            return execute(*a, **o)

        pipe.execute = run
        return pipe

    state.r.execute_command, state.r.pipeline = counted, piped
    try:
        yield fired
    finally:
        del state.r.execute_command, state.r.pipeline


def test_70b_1_a_folder_of_8000_files_is_received(redis_url: str, tmp_path) -> None:
    redis.Redis.from_url(redis_url).flushall()
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(FILES):
        (folder / f"p{i}.jpg").write_bytes(b"")
    with relay_at(redis_url, free_port()) as (_, url), sending(url, folder) as (_sender, name, code):
        client, sid, keys, manifest = join(url, name, code)
        try:
            files = manifest["files"]
            assert len(files) == FILES
            # As Receiver.fetch: one FileRequest per file, all in one call.
            requests = {f["id"]: crypto.FileRequest(keys, f["id"], 0) for f in files}
            try:
                client.request(sid, [{"filename": fid, "public_key": b64e(r.public), "first": r.first,
                                      "mac": r.mac} for fid, r in requests.items()])
            except VaultError as err:
                pytest.fail(f"the relay refused an honest receiver's requests: {err}")
            acks = client.acknowledgements(sid, wait=10)
            assert acks, "the sender answered none of them"
        finally:
            client.close()


REFUSAL = {"refused": "replaced by the same receiver's next run"}


def _refused_leaves_nothing(state: RelayState, sid: str, uid: str, fids: list[str]) -> None:
    assert state.handshake(sid, uid, "manifest") == REFUSAL
    held = sorted(k.decode() for k in state.r.keys("*") if uid.encode() in k)
    assert held == [f"session.receiver:{sid}:{uid}"], f"{len(held)} keys of the refused receiver: {held[:3]}"
    assert not any(state.r.sismember(f"file.reqs:{sid}:{fid}", uid) for fid in fids)
    assert state.r.zcard(f"file.reqs.pending:{sid}") == 0


@pytest.mark.parametrize("asked", [100, 2 * SLICE + 1])  # one call, written in one slice or three
def test_70b_2_a_refusal_crossing_the_receivers_requests_leaves_nothing(redis_url: str, asked: int) -> None:
    """The sender's refusal lands at every point of ``add_requests`` in turn (before each of its round
    trips to Redis, and after it): whichever, nothing of the refused receiver stays but its refusal."""
    state = RelayState(redis_url, Limits())
    files = [{"id": f"f{i:04d}", "size": 1} for i in range(asked)]
    requests = [{"filename": f["id"], "public_key": "k" * 44, "first": 0, "mac": "m" * 44} for f in files]
    for at in itertools.count():
        redis.Redis.from_url(redis_url).flushall()
        sid, name = state.create_session("10.70.2.1", "70b2" + "0" * 12, "ab" * 32, files)
        uid = _let_in(state, sid, name)
        refuse = functools.partial(state.post_handshake, sid, uid, "sender", REFUSAL)
        with _crossing(state, at, refuse) as fired:
            try:
                state.add_requests(sid, uid, requests)
            except Refused as err:  # refused: the refusal came first
                assert err.status == 403 and fired
        if not fired:  # past the call's last round trip: the refusal after it
            refuse()
        _refused_leaves_nothing(state, sid, uid, [f["id"] for f in files])
        if not fired:
            break
    assert at >= 1  # the call made a round trip, and the refusal was tried before and after it


def test_70b_2_a_close_crossing_the_receivers_requests_leaves_nothing(redis_url: str) -> None:
    """The same with the sender's close at every point: the relay holds none of the session's keys."""
    state = RelayState(redis_url, Limits())
    files = [{"id": f"f{i:03d}", "size": 1} for i in range(20)]
    asked = [{"filename": f["id"], "public_key": "k" * 44, "first": 0, "mac": "m" * 44} for f in files]
    for at in itertools.count():
        redis.Redis.from_url(redis_url).flushall()
        sid, name = state.create_session("10.70.2.1", "70b2" + "0" * 12, "ab" * 32, files)
        uid = _let_in(state, sid, name)
        with _crossing(state, at, functools.partial(state.close_session, sid)) as fired:
            try:
                state.add_requests(sid, uid, asked)
            except Refused as err:
                assert err.status == 404 and fired
        if not fired:
            state.close_session(sid)
        assert [k for k in state.r.keys("*") if sid.encode() in k or uid.encode() in k] == []
        if not fired:
            break


@pytest.mark.parametrize("ending", ["refused", "closed"])
def test_70b_2_requests_posted_at_every_point_of_a_drop_go_with_it(redis_url: str, ending: str) -> None:
    """The other way round: the receiver's requests posted before each round trip of the refusal (or
    of the session's close), and after it: the drop either finds them or they are refused."""
    state = RelayState(redis_url, Limits())
    files = [{"id": f"f{i:03d}", "size": 1} for i in range(20)]
    asked = [{"filename": f["id"], "public_key": "k" * 44, "first": 0, "mac": "m" * 44} for f in files]
    for at in itertools.count():
        redis.Redis.from_url(redis_url).flushall()
        sid, name = state.create_session("10.70.2.1", "70b2" + "0" * 12, "ab" * 32, files)
        uid = _let_in(state, sid, name)

        def ask(sid: str = sid, uid: str = uid) -> None:
            try:
                state.add_requests(sid, uid, asked)
            except Refused as err:
                assert err.status == (403 if ending == "refused" else 404)

        with _crossing(state, at, ask) as fired:
            if ending == "refused":
                state.post_handshake(sid, uid, "sender", REFUSAL)
            else:
                state.close_session(sid)
        if not fired:
            ask()
        if ending == "refused":
            _refused_leaves_nothing(state, sid, uid, [f["id"] for f in files])
        else:
            assert [k for k in state.r.keys("*") if sid.encode() in k or uid.encode() in k] == []
        if not fired:
            break
    assert at >= 3


def test_70b_2_requests_of_a_receiver_let_in_are_written_and_checked_whole(redis_url: str) -> None:
    """Controls: a receiver let in asks (its requests held with the session's life, pending for the
    sender); one not let in, or asking a file the session has not, writes nothing at all."""
    redis.Redis.from_url(redis_url).flushall()
    state = RelayState(redis_url, Limits())
    sid, name = state.create_session("10.70.2.1", "70b2" + "0" * 12, "ab" * 32,
                                     [{"id": "a", "size": 1}, {"id": "b", "size": 1}])
    stranger = state.join(name, "10.70.2.3")[1]
    with pytest.raises(Refused) as err:
        state.add_requests(sid, stranger, [{"filename": "a", "public_key": "k", "first": 0, "mac": "m"}])
    assert err.value.status == 403
    uid = _let_in(state, sid, name)
    with pytest.raises(Refused) as err:
        state.add_requests(sid, uid, [{"filename": "a", "public_key": "k", "first": 0, "mac": "m"},
                                      {"filename": "zz", "public_key": "k", "first": 0, "mac": "m"}])
    assert err.value.status == 404
    assert not state.r.exists(f"file.req:{sid}:a:{uid}")
    state.r.pexpire(f"session:{sid}", 100_000)  # the session's life, not a fresh ttl (an hour)
    state.add_requests(sid, uid, [{"filename": "b", "public_key": "k", "first": 0, "mac": "m"}])
    assert [r["filename"] for r in state.pending_requests(sid)] == ["b"]
    assert 0 < state.r.pttl(f"file.req:{sid}:b:{uid}") <= 100_000


def _taken(state: RelayState, sid: str, owner: str, uid: str) -> tuple[str, tuple[int, str, bytes]]:
    """A request answered, a chunk queued and taken (its take's client then goes away)."""
    state.add_requests(sid, uid, [{"filename": "a", "public_key": "k", "first": 0, "mac": "m"}])
    rid = state.acknowledge(sid, owner, {"filename": "a", "user_id": uid, "public_key": "s", "chunks": 2,
                                         "first": 0, "mac": "m"})
    state.mark_ready(rid, uid)
    assert state.push_chunk(rid, owner, 0, "aXY=", b"x" * 1024) == 1
    taken = state.pop_chunk(rid, uid)
    assert taken is not None
    return rid, taken


@pytest.mark.parametrize("ending", ["refused", "finished"])
def test_70b_3_a_chunk_put_back_while_its_receiver_is_dropped_goes_with_it(redis_url: str,
                                                                          ending: str) -> None:
    """The sender's refusal of the receiver (or the receiver's own finish of the request) lands at every
    point of ``unpop_chunk`` in turn, and after it: the chunk never outlives its request, the sender's
    queued set never names it again, and the session's close leaves nothing of it."""
    state = RelayState(redis_url, Limits())
    owner = "70b3" + "0" * 12
    for at in itertools.count():
        redis.Redis.from_url(redis_url).flushall()
        sid, name = state.create_session("10.70.3.1", owner, "ab" * 32, [{"id": "a", "size": 1}])
        uid = _let_in(state, sid, name)
        rid, taken = _taken(state, sid, owner, uid)

        def end(rid: str = rid, sid: str = sid, uid: str = uid) -> None:
            if ending == "refused":
                state.post_handshake(sid, uid, "sender", REFUSAL)
            else:
                state.finish_request(rid)

        with _crossing(state, at, end) as fired:
            state.unpop_chunk(rid, *taken)  # its take's client went away before the answer (api.py ``pop``)
        if not fired:
            end()
        assert not state.r.exists(f"file.req.chunks:{rid}"), "the ended request's chunk is back at the relay"
        assert not state.r.sismember(f"file.reqs.queued:{owner}", rid)
        state.close_session(sid)
        assert [k for k in state.r.keys("*") if rid.encode() in k] == []
        if not fired:
            break
    assert at >= 1


@pytest.mark.parametrize("ending", ["refused", "finished", "closed"])
def test_70b_3_a_chunk_put_back_at_every_point_of_a_drop_goes_with_it(redis_url: str, ending: str) -> None:
    """The other way round: the chunk put back before each round trip of the refusal (the receiver's
    finish, the session's close), and after it: the drop either finds it or it is not put back."""
    state = RelayState(redis_url, Limits())
    owner = "70b3" + "0" * 12
    for at in itertools.count():
        redis.Redis.from_url(redis_url).flushall()
        sid, name = state.create_session("10.70.3.1", owner, "ab" * 32, [{"id": "a", "size": 1}])
        uid = _let_in(state, sid, name)
        rid, taken = _taken(state, sid, owner, uid)

        def put_back(rid: str = rid, taken: tuple[int, str, bytes] = taken) -> None:
            state.unpop_chunk(rid, *taken)

        with _crossing(state, at, put_back) as fired:
            if ending == "refused":
                state.post_handshake(sid, uid, "sender", REFUSAL)
            elif ending == "finished":
                state.finish_request(rid)
            else:
                state.close_session(sid)
        if not fired:
            put_back()
        assert not state.r.exists(f"file.req.chunks:{rid}"), "the ended request's chunk is back at the relay"
        assert not state.r.sismember(f"file.reqs.queued:{owner}", rid)
        if ending != "closed":
            state.close_session(sid)
        assert [k for k in state.r.keys("*") if rid.encode() in k] == []
        if not fired:
            break
    assert at >= 2


def test_70b_3_a_chunk_put_back_is_taken_again_and_counted(redis_url: str) -> None:
    """Control: a live request's chunk put back is the next one taken, counted in the session's queue
    (a push finding the queue full meanwhile), and a put-back once the request ended is nothing."""
    redis.Redis.from_url(redis_url).flushall()
    state = RelayState(redis_url, Limits(max_queue=1))
    owner = "70b3" + "1" * 12
    sid, name = state.create_session("10.70.3.1", owner, "ab" * 32, [{"id": "a", "size": 1}])
    uid = _let_in(state, sid, name)
    rid, taken = _taken(state, sid, owner, uid)
    state.r.delete(f"file.reqs.queued:{owner}")  # a push to another request found its list empty
    state.r.pexpire(f"session:{sid}", 100_000)  # the session's life, not a fresh ttl (an hour)
    state.unpop_chunk(rid, *taken)
    assert state.r.sismember(f"file.reqs.queued:{owner}", rid)
    assert 0 < state.r.pttl(f"file.req.chunks:{rid}") <= 100_000
    assert state.push_chunk(rid, owner, 1, "aXY=", b"y" * 1024) == 0  # the queue (1) holds the one put back
    assert state.pop_chunk(rid, uid) == taken
    state.finish_request(rid)
    state.unpop_chunk(rid, *taken)
    assert not state.r.exists(f"file.req.chunks:{rid}")
    assert not state.r.sismember(f"file.reqs.queued:{owner}", rid)


# --- the same rule for the relay's other writes of that shape (70b): a message of the key exchange
# (the sealed manifest, 16 MiB), an answer to a request, a receiver's "ready", a manifest fetch counted.

def _scene(state: RelayState, write: str) -> tuple[str, str, str, Callable[[], object]]:
    """A session, its receiver, and the write under test (refused or not: what the relay holds
    after matters), for an empty redis-server."""
    owner = "70bw" + "0" * 12
    sid, name = state.create_session("10.70.4.1", owner, "ab" * 32, [{"id": "a", "size": 1}])
    if write == "manifest":
        _, uid, _ = state.join(name, "10.70.4.2")
        state.post_handshake(sid, uid, "receiver", {"pake.a": "a"})
        state.post_handshake(sid, uid, "sender", {"pake.b": "b"})
        state.post_handshake(sid, uid, "receiver", {"confirm.a": "c", "hello": "h"})
        call: Callable[[], object] = functools.partial(state.post_handshake, sid, uid, "sender",
                                                       {"confirm.b": "d", "manifest": "M" * 100_000})
    else:
        uid = _let_in(state, sid, name)
        state.add_requests(sid, uid, [{"filename": "a", "public_key": "k", "first": 0, "mac": "m"}])
        answer = {"filename": "a", "user_id": uid, "public_key": "s", "chunks": 1, "first": 0, "mac": "m"}
        if write == "answer":
            call = functools.partial(state.acknowledge, sid, owner, answer)
        elif write == "ready":
            call = functools.partial(state.mark_ready, state.acknowledge(sid, owner, answer), uid)
        else:
            call = functools.partial(state.handshake, sid, uid, "manifest")

    def written() -> None:
        try:
            call()
        except Refused:
            pass

    return sid, uid, owner, written


def _nothing_left(state: RelayState, sid: str, uid: str, owner: str, ending: str) -> None:
    held = sorted(k.decode() for k in state.r.keys("*"))
    if ending == "closed":
        assert [k for k in held if not k.startswith(("calls", "joined.names:"))] == []
        return
    requests = [k for k in held if k.startswith(("file.req.", "file.reqs.sender", "file.reqs.receiver",
                                                 "file.reqs.answered", "file.reqs.queued"))]
    assert requests == [], requests
    if ending == "refused":
        assert [k for k in held if uid in k] == [f"session.receiver:{sid}:{uid}"]
        fields = {f.decode() for f in state.r.hkeys(f"session.receiver:{sid}:{uid}")}
        assert fields <= {"refused", "ip", "joined"}, fields


@pytest.mark.parametrize("write,ending", [("manifest", "refused"), ("manifest", "closed"),
                                          ("answer", "refused"), ("answer", "closed"),
                                          ("ready", "refused"), ("ready", "closed"), ("ready", "finished"),
                                          ("fetch", "refused"), ("fetch", "closed")])
@pytest.mark.parametrize("inside", ["write", "ending"])
def test_70b_a_write_crossing_a_drop_at_any_point_leaves_nothing(redis_url: str, write: str, ending: str,
                                                                 inside: str) -> None:
    """The drop (a refusal, a close, the request's finish) at every point of the write, and the write
    at every point of the drop, and each after the other: what the drop ends stays ended."""
    state = RelayState(redis_url, Limits())
    for at in itertools.count():
        redis.Redis.from_url(redis_url).flushall()
        sid, uid, owner, written = _scene(state, write)
        if ending == "refused":
            end: Callable[[], object] = functools.partial(state.post_handshake, sid, uid, "sender", REFUSAL)
        elif ending == "closed":
            end = functools.partial(state.close_session, sid)
        else:
            rid = next(iter(state.r.smembers(f"file.reqs.receiver:{uid}"))).decode()
            end = functools.partial(state.finish_request, rid)
        first, crossing = (written, end) if inside == "write" else (end, written)
        with _crossing(state, at, crossing) as fired:
            first()
        if not fired:
            crossing()
        _nothing_left(state, sid, uid, owner, ending)
        if not fired:
            break
    assert at >= 1


def test_70b_a_refresh_crossing_a_close_leaves_nothing(redis_url: str) -> None:
    """The sender's refresh (its events call) with the close at every point of it: no key of the
    session is made again (its ``refreshed`` mark, written by a refresh that read the session before
    the close, stayed a quarter of an hour)."""
    state = RelayState(redis_url, Limits())
    for at in itertools.count():
        redis.Redis.from_url(redis_url).flushall()
        sid, _, _, _ = _scene(state, "answer")
        with _crossing(state, at, functools.partial(state.close_session, sid)) as fired:
            try:
                state.refresh(sid)
            except Refused:
                pass
        if not fired:
            state.close_session(sid)
        _nothing_left(state, sid, "", "", "closed")
        if not fired:
            break
    assert at >= 1


@pytest.mark.parametrize("inside", ["join", "close"])
def test_70b_a_join_crossing_a_close_leaves_nothing(redis_url: str, inside: str) -> None:
    """A receiver's join with the sender's close at every point of it, and the other way round: no key
    of the session (its receiver sets, the receiver's record, the address's attempts) outlives it."""
    state = RelayState(redis_url, Limits())
    for at in itertools.count():
        redis.Redis.from_url(redis_url).flushall()
        sid, name = state.create_session("10.70.5.1", "70b5" + "0" * 12, "ab" * 32, [{"id": "a", "size": 1}])

        def joined(name: str = name) -> None:
            try:
                state.join(name, "10.70.5.2")
            except Refused:
                pass

        close = functools.partial(state.close_session, sid)
        first, crossing = (joined, close) if inside == "join" else (close, joined)
        with _crossing(state, at, crossing) as fired:
            first()
        if not fired:
            crossing()
        _nothing_left(state, sid, "", "", "closed")
        if not fired:
            break
    assert at >= 1


def test_70b_joins_crossing_at_the_bound_let_in_no_more_than_it(redis_url: str) -> None:
    """A session one receiver short of ``max_receivers``: a second join placed at every point of a
    first one: one gets in, never both (apart, both found room)."""
    limits = Limits(max_receivers=2)
    state = RelayState(redis_url, limits)
    for at in itertools.count():
        redis.Redis.from_url(redis_url).flushall()
        sid, name = state.create_session("10.70.6.1", "70b6" + "0" * 12, "ab" * 32, [{"id": "a", "size": 1}])
        state.join(name, "10.70.6.2")
        outcomes: list[str] = []

        def join(ip: str, name: str = name, outcomes: list[str] = outcomes) -> None:
            try:
                state.join(name, ip)
                outcomes.append("in")
            except LimitReached:
                outcomes.append("refused")

        with _crossing(state, at, functools.partial(join, "10.70.6.3")) as fired:
            join("10.70.6.4")
        if not fired:
            join("10.70.6.3")
        assert sorted(outcomes) == ["in", "refused"]
        assert state.r.scard(f"session.receivers:{sid}") == limits.max_receivers
        if not fired:
            break
    assert at >= 2
