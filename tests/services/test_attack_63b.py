"""Attack round 63b (an outsider: the relay, send/receive and capability links, threat table only).

(1) Hole (medium: a flood that takes the relay down for everyone). Attacker: anyone who can reach a
    relay, with no code and no account: he plays both ends of his own session from one address.
    Steps, through the real relay (``fusevault relay``) on a real redis-server, plain HTTP calls:
    create a session offering N files (up to ``max_files``, 10,000), join it as a receiver, post the
    four key-exchange fields as each side (the relay checks only that they are there), ask for all N
    files, answer all N requests as the sender, mark every request ready with one ``?ready=1`` pop
    each, then push ``max_queue`` (8) chunks of ``max_chunk`` (1 MiB) into every request.
    Seen: every request queues its 8 MiB: one address makes the relay's Redis hold N x 8 MiB (the test:
    3 files, 25,189,032 bytes summed over the queued lists, three times what one transfer may queue);
    with 10,000 files and 16 receivers of his own (``max_receivers``; each one let in resets the
    address's join count) that is about 1.3 TB, reached at the 400 calls a second the address is
    allowed (about 400 MiB/s): Redis (no ``maxmemory`` in the unit or the README) is killed by the OOM
    killer or refuses writes, and every session on the relay ends ("The relay stays up" in
    SECURITY.md, README "8 chunks of 1 MiB queued per transfer").
    Expected: what one address's session can make the relay hold is bounded by what its honest
    transfers need: an honest receiver takes one file at a time (``receive.fetch`` -> ``one``), so it
    marks one request ready at a time and at most ``max_queue`` chunks wait for it.
    Cause: ``relay/scripts.py`` ``PUSH`` bounds the queue per request (``LLEN`` of ``chunks(rid)``
    against ``max_queue``), and ``relay/state.py`` ``mark_ready`` lets a receiver make any number of
    its requests ready; nothing counts a session's (or an address's) queued chunks as a whole.
    Impact: one stranger ends every send/receive on the relay; memory of the relay's host.
    Suggested fix: ``mark_ready`` (or ``PUSH``) keeps at most one ready request with queued chunks per
    receiver (a second one waits, its pushes answered 503 "not ready" as now), or a per-session counter
    of queued chunks checked in ``PUSH`` against ``max_queue`` x receivers let in; and advise
    ``maxmemory`` with ``noeviction`` for the relay's Redis.
    Test: ``test_one_address_cannot_make_the_relay_hold_more_than_one_transfers_queue`` (strict xfail).

(2) Hole (medium: the receiver's machine; a relay withholding what it carries, which the threat table
    allows, should cost her the transfer, not her memory). Attacker: the relay of send/receive.
    Steps (``tests/cheating_relay.py --withhold-first``: the real relay with ``pop_chunk`` replaced):
    the real ``fusevault send`` offers a 256 MiB file, the real ``fusevault receive`` joins with the
    right code; the relay never gives the chunk the receiver waits for (first) and answers each take
    with 1 MiB of garbage numbered first + 1, first + 2 ... up to the file's last chunk.
    Seen: the receive keeps every one in memory, unopened (``arrived``), waiting for the missing one:
    its peak RSS 312 MiB for the 256 MiB file (it grows with the file: a 100 GB send makes her
    machine page and the OOM killer pick a process); then it waits for ever holding it (no take is on
    its way, so the STALL check, made only when a take comes back empty, never runs: 0 CPU ticks, no
    end, "the sender stopped sending" never said).
    Expected: what arrives ahead of the chunk written next is held within a window of a few chunks
    (PARALLEL); past it the receive stops taking (or drops what is past the window and asks again),
    and STALL seconds without a chunk written ends it with its one line, keeping the partial file.
    Cause: ``transfer/receive.py`` ``Receiver._chunks``: ``arrived`` takes any ``got[0]`` from ``nr``
    to ``inc.chunks - 1``, and new takes are asked while ``nr + len(arrived) + len(asked) <
    inc.chunks`` (bounded by the file's chunk count, not by a window); ``last_seen`` is checked only
    when a take returns None.
    Impact: memory of the receiver's machine up to the file's size, and a receive that never ends.
    Suggested fix: ask for a new take only while ``len(arrived) + len(asked) < WINDOW`` (e.g. 2 x
    PARALLEL) and refuse (CorruptData, resume later) a chunk numbered ``nr + WINDOW`` or more; check
    STALL on every turn of the loop.
    Test: ``test_a_relay_withholding_one_chunk_does_not_make_the_receiver_hold_the_file`` (strict xfail).

Tried and held (no test kept unless it would catch a regression):
- another receiver of the same session (joined, not let in) taking the chunks of a request not its own,
  or pushing into it: 404 / 403, nothing taken, the chunk still queued for its receiver
  (control ``test_another_receiver_of_the_session_cannot_take_a_requests_chunks``); a receiver field
  the relay does not list (400, read in ``state.post_handshake``);
- names from the sender (``/``, ``..``, empty parts, a link's own chain) against ``output.safe_target``,
  ``link_stays_inside``, ``make_links`` (read: hardened by rounds 22-26);
- the link store's matrix: a block read with another item's read key, a version naming another item's
  blocks, expiry and revocation (``relay/items.py``: read, no hole found);
- ``wait`` NaN/inf/negative (400: ``guards.wait_param``, read; ``test_waits_are_finite_and_bounded``).
Not tried: the browser page, TLS proxies, kill -9 of a receive between link() and its resume record.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import httpx
import redis
from transfer_helpers import free_port, receiving, relay_at, sending

from fusevault.relay.limits import Limits
from fusevault.relay.state import RelayState
from fusevault.transfer import crypto

LIMITS = Limits()
FILES = 3  # each request queues max_queue chunks: FILES times what one transfer may hold


def _post(client: httpx.Client, path: str, token: str | None, body: dict) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    answer = client.post(path, json=body, headers=headers)
    assert answer.status_code < 300, (path, answer.status_code, answer.text)
    return answer.json() if answer.content else {}


def _let_in(client: httpx.Client, sid: str, sender: str, uid: str, receiver: str) -> None:
    """The key exchange as the relay sees it: fields present, nothing it could check."""
    _post(client, f"/sessions/{sid}/handshake", receiver, {"pake.a": "a"})
    _post(client, f"/sessions/{sid}/handshake", sender, {"user_id": uid, "pake.b": "b"})
    _post(client, f"/sessions/{sid}/handshake", receiver, {"confirm.a": "c", "hello": "h"})
    _post(client, f"/sessions/{sid}/handshake", sender,
          {"user_id": uid, "confirm.b": "d", "manifest": "m"})


def _queued_bytes(redis_url: str) -> int:
    r = redis.Redis.from_url(redis_url)
    try:
        total = 0
        for key in r.scan_iter("file.req.chunks:*"):
            total += sum(len(item) for item in r.lrange(key, 0, -1))
        return total
    finally:
        r.close()


def test_one_address_cannot_make_the_relay_hold_more_than_one_transfers_queue(
        redis_url: str, transfer_relay: str) -> None:
    chunk = b"\0" * (LIMITS.max_chunk - 64)  # a full chunk, as a real sender's
    with httpx.Client(base_url=transfer_relay, timeout=30) as client:
        files = [{"id": f"f{i}", "size": LIMITS.max_queue * len(chunk)} for i in range(FILES)]
        session = _post(client, "/sessions", None, {"code": "ab" * 32, "files": files})
        sid, sender = session["id"], session["token"]
        joined = _post(client, "/sessions/join", None, {"name": session["name"]})
        uid, receiver = joined["user_id"], joined["token"]
        _let_in(client, sid, sender, uid, receiver)
        _post(client, f"/sessions/{sid}/requests", receiver, {"requests": [
            {"filename": f["id"], "public_key": "k", "first": 0, "mac": "m"} for f in files]})
        rids = [_post(client, f"/sessions/{sid}/acks", sender, {
            "filename": f["id"], "user_id": uid, "public_key": "k", "chunks": LIMITS.max_queue,
            "first": 0, "mac": "m"})["request_id"] for f in files]
        for rid in rids:  # the receiver's first pop of each: "ready"
            answer = client.get(f"/requests/{rid}/chunks/next", params={"ready": "1", "wait": "0"},
                                headers={"Authorization": f"Bearer {receiver}"})
            assert answer.status_code == 204, answer.text
        accepted = 0
        for rid in rids:
            for nr in range(LIMITS.max_queue):
                answer = client.post(f"/requests/{rid}/chunks", params={"wait": "0"}, content=chunk,
                                     headers={"Authorization": f"Bearer {sender}", "X-Chunk": str(nr),
                                              "X-IV": "aXY="})
                accepted += answer.status_code == 201
    queued = _queued_bytes(redis_url)
    one_transfer = LIMITS.max_queue * LIMITS.max_chunk
    assert queued <= one_transfer, (
        f"one address made the relay hold {queued} bytes in {accepted} chunks over {FILES} requests "
        f"of one session (one transfer's queue: {one_transfer})")


def test_another_receiver_of_the_session_cannot_take_a_requests_chunks(transfer_relay: str) -> None:
    """Control: a request's chunks go to its receiver alone; another receiver of the session (one with
    the session's name, not let in) neither takes them nor pushes into the request."""
    with httpx.Client(base_url=transfer_relay, timeout=30) as client:
        session = _post(client, "/sessions", None, {"code": "ab" * 32, "files": [{"id": "f0", "size": 5}]})
        sid, sender = session["id"], session["token"]
        joined = _post(client, "/sessions/join", None, {"name": session["name"]})
        uid, receiver = joined["user_id"], joined["token"]
        other = _post(client, "/sessions/join", None, {"name": session["name"]})["token"]
        _let_in(client, sid, sender, uid, receiver)
        _post(client, f"/sessions/{sid}/requests", receiver,
              {"requests": [{"filename": "f0", "public_key": "k", "first": 0, "mac": "m"}]})
        rid = _post(client, f"/sessions/{sid}/acks", sender, {
            "filename": "f0", "user_id": uid, "public_key": "k", "chunks": 1, "first": 0,
            "mac": "m"})["request_id"]

        def pop(token: str, ready: bool = False) -> httpx.Response:
            params = {"wait": "0", **({"ready": "1"} if ready else {})}
            return client.get(f"/requests/{rid}/chunks/next", params=params,
                              headers={"Authorization": f"Bearer {token}"})

        assert pop(other, ready=True).status_code == 404  # it cannot mark the request ready either
        assert pop(receiver, ready=True).status_code == 204
        pushed = client.post(f"/requests/{rid}/chunks", params={"wait": "0"}, content=b"secret",
                             headers={"Authorization": f"Bearer {sender}", "X-Chunk": "0", "X-IV": "aXY="})
        assert pushed.status_code == 201, pushed.text
        forged = client.post(f"/requests/{rid}/chunks", params={"wait": "0"}, content=b"forged",
                             headers={"Authorization": f"Bearer {other}", "X-Chunk": "0", "X-IV": "aXY="})
        assert forged.status_code == 403
        assert pop(other).status_code == 404
        taken = pop(receiver)
        assert taken.status_code == 200 and taken.content == b"secret"



# --- the session's queue, on the relay's state itself (63b (1)'s fix: scripts.py PUSH)

SMALL = Limits(max_queue=3)


def _streaming(state: RelayState, files: int, receivers: int = 1) -> tuple[str, list[tuple[str, str]]]:
    """A session of ``files`` files, each asked for by every one of ``receivers`` receivers let in and
    answered, its chunks free to flow: (the sender's id, [(request id, its receiver's id)])."""
    owner = secrets.token_hex(8)
    address = f"10.{secrets.randbelow(256)}.{secrets.randbelow(256)}.{secrets.randbelow(256)}"
    sid, name = state.create_session(address, owner, "ab" * 32,
                                     [{"id": f"f{i}", "size": 5} for i in range(files)])
    out = []
    for _ in range(receivers):
        _, uid, _ = state.join(name, address)
        state.post_handshake(sid, uid, "receiver", {"pake.a": "a"})
        state.post_handshake(sid, uid, "sender", {"pake.b": "b"})
        state.post_handshake(sid, uid, "receiver", {"confirm.a": "c", "hello": "h"})
        state.post_handshake(sid, uid, "sender", {"confirm.b": "d", "manifest": "m"})
        state.add_requests(sid, uid, [{"filename": f"f{i}", "public_key": "k", "first": 0, "mac": "m"}
                                      for i in range(files)])
        for i in range(files):
            rid = state.acknowledge(sid, owner, {"filename": f"f{i}", "user_id": uid, "public_key": "k",
                                                 "chunks": 100, "first": 0, "mac": "m"})
            state.mark_ready(rid, uid)
            out.append((rid, uid))
    return owner, out


def _fill(state: RelayState, owner: str, rid: str, start: int = 0) -> int:
    """Push chunks start, start + 1 ... into ``rid`` until the relay says wait: how many it took."""
    nr = start
    while state.push_chunk(rid, owner, nr, "aXY=", b"x" * 10) == 1:
        nr += 1
    return nr - start


def test_the_queue_is_the_sessions_over_all_its_requests_and_receivers(redis_url: str) -> None:
    state = RelayState(redis_url, SMALL)
    owner, requests = _streaming(state, files=2, receivers=2)
    assert _fill(state, owner, requests[0][0]) == SMALL.max_queue
    for rid, _ in requests[1:]:  # the other file, and both files of the other receiver: wait
        assert _fill(state, owner, rid) == 0


def test_the_next_file_streams_once_the_one_before_was_taken_or_cancelled(redis_url: str) -> None:
    """Control: an honest sender streams the session's files one after another (send.py ``serve``):
    what was taken, or a request cancelled, no longer counts."""
    state = RelayState(redis_url, SMALL)
    owner, [(first, uid), (second, _), (third, _)] = _streaming(state, files=3)
    assert _fill(state, owner, first) == SMALL.max_queue
    assert _fill(state, owner, second) == 0
    for _ in range(SMALL.max_queue):
        assert state.pop_chunk(first, uid) is not None
    assert _fill(state, owner, second) == SMALL.max_queue
    state.finish_request(second)  # cancelled with its chunks queued (a receiver that stopped)
    assert _fill(state, owner, third) == SMALL.max_queue


def test_a_chunk_put_back_counts_in_the_sessions_queue_again(redis_url: str) -> None:
    """A take whose receiver went away puts its chunk back (``unpop_chunk``); a push to another request
    in between found that request's list empty and left it out of the count: put back, it is counted
    again, or a receiver dropping its takes would make the relay hold a chunk per request uncounted."""
    state = RelayState(redis_url, SMALL)
    owner, [(first, uid), (second, _), (third, _)] = _streaming(state, files=3)
    assert state.push_chunk(first, owner, 0, "aXY=", b"x" * 10) == 1
    taken = state.pop_chunk(first, uid)
    assert taken is not None and state.queued(first) == 0
    assert _fill(state, owner, second) == SMALL.max_queue  # the first's empty list left out
    assert state.pop_chunk(second, uid) is not None  # room for one again
    state.unpop_chunk(first, *taken)  # put back in that room (71b (4): never past max_queue)
    assert state.queued(first) == 1
    assert _fill(state, owner, third) == 0  # counted again: the session holds max_queue chunks

MIB = 1024 * 1024
BIG = 256  # MiB: the file the sender offers


def _peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_a_relay_withholding_one_chunk_does_not_make_the_receiver_hold_the_file(
        redis_url: str, tmp_path: Path) -> None:
    source = tmp_path / "big"
    with open(source, "wb") as f:
        f.truncate(BIG * MIB)  # zeros the sender reads and seals as any file
    out = tmp_path / "out"
    db = redis.Redis.from_url(redis_url)
    db.flushall()
    try:
        with relay_at(redis_url, free_port(), cheat=["--withhold-first"]) as (_, url), \
                sending(url, source) as (sender, name, code):
            proc = receiving(url, name, code, out)
            try:
                deadline = time.monotonic() + 180
                while (time.monotonic() < deadline and proc.poll() is None
                       and not any(db.scan_iter("cheat.served:*"))):
                    time.sleep(0.5)
                served = any(db.scan_iter("cheat.served:*"))
                running = proc.poll() is None
                peak = _peak_rss(proc.pid) if running else 0
                ticks = _cpu_ticks(proc.pid) if running else 0
                time.sleep(2)
                spun = (_cpu_ticks(proc.pid) - ticks) if proc.poll() is None else 0
            finally:
                proc.kill()
                proc.wait(30)
                proc.stdout.close()
                proc.stderr.close()
    finally:
        db.close()
    assert served and running, "the cheating relay did not give every later chunk"
    window = 64 * MIB  # far more than a few chunks on their way (receive.PARALLEL) and Python itself
    assert peak < window + 96 * MIB, (
        f"the receive held {peak // MIB} MiB at its peak for a {BIG} MiB file whose first chunk the "
        f"relay withholds (a chunk is {crypto.CHUNK // MIB} MiB); CPU ticks in the 2 s after: {spun}")
