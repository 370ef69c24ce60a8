"""relay/state.py against a real redis-server: what other callers can see between two steps."""

from __future__ import annotations

import secrets
import threading

import pytest
import redis

from fusevault.relay.limits import LimitReached, Limits, Refused
from fusevault.relay.state import MISMATCH, RelayState


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
        else:
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
