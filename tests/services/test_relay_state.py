"""relay/state.py against a real redis-server: what other callers can see between two steps."""

from __future__ import annotations

import threading

import pytest
import redis

from fusevault.relay.limits import Refused
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
