"""relay/state.py against a real redis-server: what other callers can see between two steps."""

from __future__ import annotations

import secrets
import threading
import time

import pytest
import redis

from fusevault.relay.limits import LimitReached, Limits, Refused
from fusevault.relay.state import MANIFEST_FETCHES, MISMATCH, PAGE, RelayState


def test_a_failed_session_is_never_seen_missing_on_its_way_to_its_tombstone(redis_url: str) -> None:
    """A receiver asking while the sender fails the session is told the code was wrong (410), never
    that there is no such session (404: "the sender ended the session"), which it was told under load
    when the session was dropped in one step and marked failed in the next.  Checked by what redis
    executed (MONITOR): the drop and the mark inside one MULTI ... EXEC."""
    state = RelayState(redis_url)
    sid, _ = state.create_session("127.0.0.1", "owner-1", "ab" * 32, [{"id": "f0", "size": 6}])
    seen: list[str] = []
    monitor_client = redis.Redis.from_url(redis_url)
    ready, stop = threading.Event(), threading.Event()

    def watch() -> None:
        with monitor_client.monitor() as m:
            ready.set()
            for command in m.listen():
                text = command["command"].upper()
                seen.append(text.split(" ", 1)[0])
                if text.startswith("EXPIRE") or stop.is_set():
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    ready.wait(5)
    state.fail_session(sid)
    watcher.join(5)
    stop.set()
    writes = [c for c in seen if c in ("MULTI", "DEL", "HSET", "EXPIRE", "EXEC")]
    assert writes[:3] == ["MULTI", "DEL", "HSET"], seen
    with pytest.raises(Refused) as refused:
        state.session(sid)
    assert refused.value.status == 410 and MISMATCH in str(refused.value)


class _FailsAfterItsFirstLook(RelayState):
    """The interleaving a loaded machine makes: the sender fails the session just after a receiver's
    call read it (a mock of nothing: the real state on the real redis-server, one step placed)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.armed: str | None = None

    def session(self, sid: str) -> dict[str, str]:
        found = super().session(sid)
        if self.armed == sid:
            self.armed = None
            self.fail_session(sid)
        return found


@pytest.mark.parametrize("call", ["handshake", "post_handshake", "add_requests"])
def test_a_receiver_whose_call_crosses_the_senders_failure_is_told_the_code_was_wrong(
        redis_url: str, call: str) -> None:
    state = _FailsAfterItsFirstLook(redis_url)
    sid, _ = state.create_session("127.0.0.1", "owner-1", "ab" * 32, [{"id": "f0", "size": 6}])
    _, uid, _ = state.join(state.session(sid)["name"], "127.0.0.2")
    state.armed = sid
    with pytest.raises(Refused) as refused:
        if call == "handshake":
            state.handshake(sid, uid, "manifest")
        elif call == "post_handshake":
            state.post_handshake(sid, uid, "receiver", {"confirm.a": "x"})
        else:  # one step since 70b (2): the failure lands before it
            state.armed = None
            state.fail_session(sid)
            state.add_requests(sid, uid, [{"filename": "f0", "public_key": "k", "first": 0, "mac": "m"}])
    assert refused.value.status == 410 and MISMATCH in str(refused.value)


# --- 52t (5): one address scanned every session name, then ended each live session with a wrong guess


def _address() -> str:
    """An address of its own per use: the test file's redis-server is shared by its tests."""
    return f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(256)}"


def _open(state: RelayState) -> tuple[str, str]:
    return state.create_session(_address(), secrets.token_hex(8), "ab" * 32, [{"id": "f0", "size": 6}])


def _free_names(state: RelayState, count: int) -> list[str]:
    names = []
    while len(names) < count:
        name = f"{secrets.randbelow(10 ** 6):06d}"
        if state.r.get(f"session:{name}") is None and name not in names:
            names.append(name)
    return names


def test_session_names_are_six_digits(redis_url: str) -> None:
    _, name = _open(RelayState(redis_url))
    assert len(name) == 6 and name.isdigit(), name


def test_an_address_that_scans_names_is_held_at_its_budget_over_all_sessions(redis_url: str) -> None:
    state = RelayState(redis_url, Limits(join_names=3))
    sid, live = _open(state)
    scanner = _address()
    missed = _free_names(state, 3)
    for name in [*missed, missed[0]]:  # the same name again costs nothing
        with pytest.raises(Refused) as refused:
            state.join(name, scanner)
        assert refused.value.status == 404
    with pytest.raises(LimitReached) as limited:
        state.join(live, scanner)  # its fourth name: refused before it is looked up
    assert limited.value.retry_after > 0 and "too many requests" not in str(limited.value)
    assert state.join(live, _address())[0] == sid  # another address is not held
    assert state.r.scard(f"joined.names:{scanner}") == 3  # bounded: the refused name is not kept


def test_a_name_that_can_be_no_session_is_not_counted(redis_url: str) -> None:
    state = RelayState(redis_url, Limits(join_names=1))
    sid, live = _open(state)
    client = _address()
    for name in ("0000", "4821", "1234567", "", "x" * 5000):
        with pytest.raises(Refused) as refused:
            state.join(name, client)
        assert refused.value.status == 404
    assert state.join(live, client)[0] == sid


def test_receivers_behind_one_address_that_are_let_in_do_not_spend_its_budget(redis_url: str) -> None:
    """A family behind one NAT address receives many sends: each name it is let in at is given back."""
    state = RelayState(redis_url, Limits(join_names=2))
    family = _address()
    for _ in range(5):
        sid, name = _open(state)
        _, uid, _ = state.join(name, family)
        state.post_handshake(sid, uid, "receiver", {"pake.a": "a"})
        state.post_handshake(sid, uid, "sender", {"pake.b": "b"})
        state.post_handshake(sid, uid, "receiver", {"confirm.a": "c"})
        state.post_handshake(sid, uid, "sender", {"manifest": "m"})
    assert state.r.scard(f"joined.names:{family}") == 0


# --- 69a: what a refused receiver leaves, the joins a session takes, one call's work


def _let_in(state: RelayState, sid: str, name: str, manifest: str = "m") -> str:
    _, uid, _ = state.join(name, _address())
    state.post_handshake(sid, uid, "receiver", {"pake.a": "a"})
    state.post_handshake(sid, uid, "sender", {"pake.b": "b"})
    state.post_handshake(sid, uid, "receiver", {"confirm.a": "c", "hello": "h"})
    state.post_handshake(sid, uid, "sender", {"confirm.b": "d", "manifest": manifest})
    return uid


def _files(count: int) -> list[dict]:
    return [{"id": f"f{i:05d}", "size": 1} for i in range(count)]


def _ask(state: RelayState, sid: str, uid: str, files: list[dict]) -> None:
    state.add_requests(sid, uid, [{"filename": f["id"], "public_key": "k", "first": 0, "mac": "m"}
                                  for f in files])


def _answer(state: RelayState, sid: str, owner: str, req: dict) -> str:
    return state.acknowledge(sid, owner, {"filename": req["filename"], "user_id": req["user_id"],
                                          "public_key": "s", "chunks": 1, "first": 0, "mac": "m"})


def test_a_refused_receiver_leaves_nothing_it_put_at_the_relay(redis_url: str) -> None:
    """Its manifest, key-exchange fields, requests asked and not answered, answered ones and their
    chunks: all deleted at its refusal (69a (1)), not left to expire; what is left says "refused"."""
    state = RelayState(redis_url)
    owner, files = secrets.token_hex(8), _files(3)
    sid, name = state.create_session(_address(), owner, "ab" * 32, files)
    kept, uid = _let_in(state, sid, name), _let_in(state, sid, name, "m" * 5000)
    for who in (kept, uid):
        _ask(state, sid, who, files)
    rid = _answer(state, sid, owner, {"filename": "f00000", "user_id": uid})
    state.mark_ready(rid, uid)
    assert state.push_chunk(rid, owner, 0, "aXY=", b"x") == 1
    state.post_handshake(sid, uid, "sender", {"refused": "replaced"})
    assert state.handshake(sid, uid, "manifest") == {"refused": "replaced"}
    assert set(state.r.hkeys(f"session.receiver:{sid}:{uid}")) == {b"refused", b"ip", b"joined"}
    assert [k for k in state.r.keys("*") if uid.encode() in k] == [f"session.receiver:{sid}:{uid}".encode()]
    assert not state.r.exists(f"file.req.chunks:{rid}")
    assert {r["user_id"] for r in state.pending_requests(sid)} == {kept}
    assert state.r.zcard(f"file.reqs.pending:{sid}") == 3  # the kept receiver's, nothing of the refused one


def test_refresh_keeps_only_the_live_receivers(redis_url: str) -> None:
    """A refused receiver's handshake (what is left of it) expires at the ttl of its refusal while the
    sender's events calls push back its session and its live receiver's keys (69a (1))."""
    short = Limits(session_ttl=2)
    state = RelayState(redis_url, short)
    owner, files = secrets.token_hex(8), _files(2)
    sid, name = state.create_session(_address(), owner, "ab" * 32, files)
    live, refused = _let_in(state, sid, name), _let_in(state, sid, name)
    for who in (live, refused):
        _ask(state, sid, who, files)
    state.post_handshake(sid, refused, "sender", {"refused": "replaced"})
    deadline = time.monotonic() + short.session_ttl + 1
    while time.monotonic() < deadline:
        state.r.delete(f"session.refreshed:{sid}")  # each call a pass over the session's keys
        state.refresh(sid)
        time.sleep(0.2)
    assert [k for k in state.r.keys("*") if refused.encode() in k] == []
    assert state.r.exists(f"session.receiver:{sid}:{live}", f"file.req:{sid}:f00000:{live}") == 2


def test_a_session_takes_a_bounded_number_of_joins_over_its_life(redis_url: str) -> None:
    """Refused receivers leave max_receivers' count and the manifest gives their address's attempts
    back, but the session's joins, refused ones counted, stay bounded (69a (1))."""
    state = RelayState(redis_url, Limits(max_joins=3))
    sid, name = state.create_session(_address(), secrets.token_hex(8), "ab" * 32, _files(1))
    for _ in range(3):
        state.post_handshake(sid, _let_in(state, sid, name), "sender", {"refused": "replaced"})
    with pytest.raises(LimitReached):
        state.join(name, _address())
    assert state.r.scard(f"session.joined:{sid}") == 3


def test_events_and_acks_answer_a_page_and_move_on(redis_url: str) -> None:
    """A receiver asking for more than a page: the sender gets PAGE requests a call, in (receiver, file)
    order, and the next page once it answered them; the receiver's acks likewise, once it finished
    them; a request asked again after its answer does not hold the page (69a (2))."""
    state = RelayState(redis_url)
    owner, files = secrets.token_hex(8), _files(PAGE + 30)
    sid, name = state.create_session(_address(), owner, "ab" * 32, files)
    uid = _let_in(state, sid, name)
    _ask(state, sid, uid, files)
    first = state.pending_requests(sid)
    assert [r["filename"] for r in first] == [f["id"] for f in files[:PAGE]]
    rids = [_answer(state, sid, owner, req) for req in first]
    _ask(state, sid, uid, files[:1])  # asked again: answered already
    assert [r["filename"] for r in state.pending_requests(sid)] == [f["id"] for f in files[PAGE:]]
    acks = state.acknowledgements(sid, uid)
    assert [(a["filename"], a["request_id"]) for a in acks] == list(zip([f["id"] for f in files], rids))
    for rid in rids[:40]:
        state.finish_request(rid)
    for req in state.pending_requests(sid):
        _answer(state, sid, owner, req)
    assert state.pending_requests(sid) == []
    later = [a["filename"] for a in state.acknowledgements(sid, uid)]
    assert later == [f["id"] for f in files[40:40 + PAGE]]


def test_a_receiver_gets_the_manifest_a_few_times_only(redis_url: str) -> None:
    """Each answer is the whole sealed list (16 MiB at most): MANIFEST_FETCHES a receiver (69a (2))."""
    state = RelayState(redis_url)
    sid, name = state.create_session(_address(), secrets.token_hex(8), "ab" * 32, _files(1))
    uid = _let_in(state, sid, name, "m" * 1000)
    for _ in range(MANIFEST_FETCHES):
        assert state.handshake(sid, uid, "manifest")["manifest"] == "m" * 1000
    assert state.handshake(sid, uid, "pake.b")["pake.b"] == "b"  # the small fields: as often as asked
    with pytest.raises(Refused) as refused:
        state.handshake(sid, uid, "manifest")
    assert refused.value.status == 403


def test_a_file_request_is_held_at_its_own_small_cap(redis_url: str) -> None:
    """A request is a public key, a first chunk and a MAC: max_request (512) bytes, not max_field (4 KB)
    as before, so that a session's requests hold ~80 MB at most (69a (1))."""
    state = RelayState(redis_url)
    sid, name = state.create_session(_address(), secrets.token_hex(8), "ab" * 32, _files(1))
    uid = _let_in(state, sid, name)
    with pytest.raises(Refused) as refused:
        state.add_requests(sid, uid, [{"filename": "f00000", "public_key": "k" * 1000, "first": 0,
                                       "mac": "m"}])
    assert refused.value.status == 400
    assert state.pending_requests(sid) == []
    state.add_requests(sid, uid, [{"filename": "f00000", "public_key": "k" * 44, "first": 7,
                                   "mac": "m" * 44}])
    assert [r["first"] for r in state.pending_requests(sid)] == [7]


class _Between:
    """The real redis client, with one step placed after its first HMGET (a loaded machine's order)."""

    def __init__(self, client, step) -> None:
        self._client, self._step = client, step

    def hmget(self, *args, **kwargs):
        found = self._client.hmget(*args, **kwargs)
        step, self._step = self._step, None
        if step:
            step()
        return found

    def __getattr__(self, name: str):
        return getattr(self._client, name)


def test_the_manifest_comes_with_the_confirmation_posted_with_it(redis_url: str) -> None:
    """The sender posts confirm.b and the manifest in one call: a receiver's look that crosses it gets
    both or neither (the count of fetches and the read in one MULTI), never a manifest alone."""
    state, sender = RelayState(redis_url), RelayState(redis_url)
    sid, name = state.create_session(_address(), secrets.token_hex(8), "ab" * 32, _files(1))
    _, uid, _ = state.join(name, _address())
    state.post_handshake(sid, uid, "receiver", {"pake.a": "a"})
    state.post_handshake(sid, uid, "sender", {"pake.b": "b"})
    state.post_handshake(sid, uid, "receiver", {"confirm.a": "c", "hello": "h"})
    state.r = _Between(state.r, lambda: sender.post_handshake(sid, uid, "sender",
                                                               {"confirm.b": "d", "manifest": "m"}))
    found = state.handshake(sid, uid, "manifest")
    assert found is None or (found["confirm.b"], found["manifest"]) == ("d", "m"), found
