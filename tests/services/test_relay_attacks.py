"""A dishonest relay operator, and clients that try to knock the relay over.

The cheating relay is the real one with operations replaced (cheating_relay.py).
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import redis
from cheating_relay import offline_guesses, read_record
from conftest import running_relay
from transfer_helpers import (
    EXIT_CODE,
    EXIT_RELAY,
    MISMATCH,
    finished,
    free_port,
    join,
    random_file,
    receive,
    receiving,
    relay_at,
    sending,
    stats,
    visible,
)

from fusevault.transfer import crypto
from fusevault.transfer.client import RelayClient
from fusevault.transfer.words import WORDS


@pytest.fixture
def db(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    yield client
    client.close()


def _random_code() -> str:
    return f"{random.randrange(1000)}-{random.choice(WORDS)}-{random.choice(WORDS)}"


def test_the_relay_stores_nothing_to_test_a_guess_against(redis_url: str, db, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("alpha")
    (src / "b.bin").write_bytes(os.urandom(3000))
    record = tmp_path / "record.jsonl"
    with relay_at(redis_url, free_port(), cheat=["--record", str(record)]) as (_, url), \
            sending(url, src) as (sender, name, code):
        result = receive(url, name, code, tmp_path / "out")
        assert result.returncode == 0, result.stderr
        assert sender.wait(60) == 0
    commands = read_record(str(record))
    assert any(c[0] == b"HSET" and c[1].startswith(b"session:") and b"code" in c for c in commands)
    # Every code the relay could try stands for the exhaustive search: the real one among them.
    candidates = [code, *(_random_code() for _ in range(20))]
    assert offline_guesses(commands, candidates) == []
    # The same attack on what the relay of seed 002 kept (the code's SHA-256) finds the code at once.
    old = [[b"HSET", b"session:x", b"code", hashlib.sha256(code.encode()).hexdigest().encode()]]
    assert offline_guesses(old, candidates) == [(code, "a hash of the code")]


@pytest.mark.parametrize("swap", ["pake", "request-key", "ack-key"])
def test_a_relay_that_swaps_keys_is_caught_before_anything_is_sent(redis_url: str, db, tmp_path: Path,
                                                                   swap: str) -> None:
    (tmp_path / "f").write_bytes(os.urandom(3 * crypto.CHUNK))
    out = tmp_path / "out"
    with relay_at(redis_url, free_port(), cheat=["--swap", swap]) as (_, url), \
            sending(url, tmp_path / "f") as (sender, name, code):
        result = receive(url, name, code, out)
        status, _, err = finished(sender)
        counters = stats(url)
    assert result.returncode == EXIT_CODE and result.stderr.strip().endswith(MISMATCH), result.stderr
    assert status == EXIT_CODE and MISMATCH in err and "Traceback" not in err + result.stderr
    assert list(out.iterdir()) == []        # nothing written
    assert counters.get("chunks_in", 0) == 0  # nothing sent, not even sealed


def test_waits_are_finite_and_bounded(redis_url: str, db) -> None:
    with running_relay(redis_url) as (_, url):
        client = RelayClient(url)
        session = client.open_session(crypto.new_salt(), [{"id": "0", "size": 1}])
        auth = {"Authorization": f"Bearer {session['token']}"}
        for bad in ("nan", "inf", "-inf", "-1", "10.5", "1e309", "abc", ""):
            for path in (f"/sessions/{session['id']}/events", "/requests/x/chunks/next"):
                answer = httpx.get(url + path, params={"wait": bad}, headers=auth)
                assert answer.status_code in (400, 403), (path, bad, answer.text)
            answer = httpx.get(f"{url}/sessions/{session['id']}/events", params={"wait": bad}, headers=auth)
            assert answer.status_code == 400 and "from 0 to 10" in answer.json()["error"]
        assert httpx.get(f"{url}/sessions/{session['id']}/events", params={"wait": "0"},
                         headers=auth).status_code == 200
        # A long poll ends when its client goes, not when its wait does.
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as sock:
            sock.sendall(f"GET /sessions/{session['id']}/events?wait=10 HTTP/1.1\r\nHost: x\r\n"
                         f"Authorization: Bearer {session['token']}\r\n\r\n".encode())
            _until(lambda: stats(url).get("polls") == 1)
        started = time.monotonic()
        _until(lambda: stats(url).get("polls") == 0)
        assert time.monotonic() - started < 8  # the wait was 10 s
        client.close()


def _until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _rss(pid: int) -> tuple[int, int]:
    """(resident, high-water mark) in bytes."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024


def _chunked_post(port: int, path: str, headers: str, mib: int) -> tuple[int, bytes, bool]:
    """POST ``mib`` MiB chunked; (MiB the relay let us send, its answer, whether it closed the connection)."""
    piece = os.urandom(1 << 20)
    answer, sent, closed = bytearray(), 0, []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(10)

        def read() -> None:  # at once: a reset after the answer must not swallow it
            try:
                while data := sock.recv(4096):
                    answer.extend(data)
                closed.append(True)
            except TimeoutError:
                pass
            except OSError:
                closed.append(True)  # reset: closed with our body unread

        reader = threading.Thread(target=read)
        reader.start()
        try:
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n{headers}\r\n"
                         .encode())
            for _ in range(mib):
                sock.sendall(b"100000\r\n" + piece + b"\r\n")
                sent += 1
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # refused: the relay closed the connection
        reader.join(30)
    return sent, bytes(answer), bool(closed)


def test_a_huge_chunked_body_without_a_key_costs_the_relay_nothing(redis_url: str, db) -> None:
    with running_relay(redis_url) as (proc, url):  # no link store
        port = int(url.rsplit(":", 1)[1])
        client = RelayClient(url)
        session = client.open_session(crypto.new_salt(), [{"id": "0", "size": 1}])
        client.close()
        _, before = _rss(proc.pid)
        for path, headers, status in [
                ("/requests/nope/chunks", "X-Chunk: 0\r\nX-IV: AAAA\r\n", b"401"),
                (f"/sessions/{session['id']}/requests", "", b"401"),
                (f"/sessions/{session['id']}/handshake", "", b"401"),
                ("/items", "", b"503"),
                ("/items/x/blocks", "Authorization: Capability append AAAA\r\n", b"503"),
                ("/sessions/join", "", b"413"),   # no key needed: read up to its cap, then refused
                ("/sessions", "", b"413")]:
            sent, answer, closed = _chunked_post(port, path, headers, 256)
            assert answer.startswith(b"HTTP/1.1 " + status), (path, answer[:200])
            assert sent < 256 and closed, path  # refused, and the connection is not kept hanging
        _, after = _rss(proc.pid)
    assert after - before < 32 * 1024 * 1024, (before, after)


def test_joins_from_behind_a_trusted_proxy_are_limited_per_real_client(redis_url: str, db,
                                                                      tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")

    def join(url: str, name: str, forwarded: str) -> int:
        return httpx.post(url + "/sessions/join", json={"name": name},
                          headers={"X-Forwarded-For": forwarded}).status_code

    with running_relay(redis_url, "--trusted-proxy", "127.0.0.0/8", "::1/128", "--join-attempts", "3") \
            as (_, url), sending(url, tmp_path / "f") as (_, name, _code):
        assert [join(url, name, "203.0.113.7") for _ in range(4)] == [200, 200, 200, 429]
        # What a client writes to the left of the address the proxy adds is not believed.
        assert join(url, name, "198.51.100.1, 203.0.113.7") == 429
        assert join(url, name, "198.51.100.9") == 200  # another client is not held back
        # IPv6 clients count per /64.
        assert [join(url, name, f"2001:db8::{i}") for i in range(1, 5)] == [200, 200, 200, 429]
        # One open session per client, not per proxy.
        for client in ("203.0.113.7", "198.51.100.9"):
            answer = httpx.post(url + "/sessions", headers={"X-Forwarded-For": client},
                                json={"code": crypto.new_salt(), "files": [{"id": "0", "size": 1}]})
            assert answer.status_code == 201
    db.flushall()
    with running_relay(redis_url, "--join-attempts", "3") as (_, url), \
            sending(url, tmp_path / "f") as (_, name, _code):
        # Without --trusted-proxy the header is ignored: a client cannot pick its own address.
        assert [join(url, name, f"203.0.113.{i}") for i in range(4)] == [200, 200, 200, 429]


def test_redis_killed_mid_transfer_is_a_clear_error_and_no_file(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen([shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                               "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _until(lambda: _answers(port))
        big = random_file(tmp_path / "big.bin", 64)
        out = tmp_path / "out"
        with relay_at(f"redis://127.0.0.1:{port}/0", free_port()) as (_, url), \
                sending(url, big) as (_, name, code):
            receiver = receiving(url, name, code, out)
            _until(lambda: any(out.glob(".*.fvpart-*")) and next(out.glob(".*.fvpart-*")).stat().st_size)
            server.send_signal(signal.SIGKILL)
            assert receiver.wait(60) == EXIT_RELAY
            err = receiver.stderr.read()
            receiver.stdout.close()
            receiver.stderr.close()
    finally:
        server.kill()
        server.wait()
    assert "the relay's storage is unavailable" in err and "Traceback" not in err, err
    assert visible(out) == []


def _answers(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port).ping())
    except redis.RedisError:
        return False


def test_a_sender_cannot_build_a_way_out_of_the_output_folder_over_two_sessions(tmp_path: Path) -> None:
    """A dangling link whose ``d/..`` steps look harmless as text, and in a
    later session into the same folder links named ``d`` that give those
    steps a meaning: the first is never kept (a link must resolve inside
    now), and no folder of a later list is made through a link."""

    from fusevault.errors import CorruptData
    from fusevault.transfer.output import make_links, mkdir_inside

    out = tmp_path / "out"
    (out / "a" / "x1" / "x2" / "x3").mkdir(parents=True)
    say = lambda *_: None  # noqa: E731
    make_links(out, [{"name": "a/x1/x2/x3/n", "target": "d/../d/../d/../d/../../../etc"}], say)
    assert not os.path.lexists(out / "a" / "x1" / "x2" / "x3" / "n")
    make_links(out, [{"name": f"a/{where}d", "target": "."}
                     for where in ("x1/x2/x3/", "x1/x2/", "x1/", "")], say)
    assert (out / "a" / "x1" / "d").is_symlink()  # links that stay inside are kept
    with pytest.raises(CorruptData):
        mkdir_inside(out, out / "a" / "x1" / "d" / "made-through-a-link")
    assert not (out / "a" / "x1" / "made-through-a-link").exists()


def _refused_done(sender) -> None:
    status, _, err = finished(sender, 60)
    assert status == EXIT_CODE, (status, err)
    assert err.strip().splitlines()[-1].endswith(crypto.FORGED_DONE) and "Traceback" not in err, err


@pytest.mark.parametrize("forge", ["bare", "wrong"])
def test_a_done_the_relay_writes_itself_is_refused(redis_url: str, db, tmp_path: Path, forge: str) -> None:
    """The relay writes ``done: all`` into the receiver's record the moment the sender lets it in, with
    no MAC (the old format) or a wrong one: the sender must not believe the transfer is over."""
    (tmp_path / "f").write_bytes(os.urandom(2 * crypto.CHUNK))
    out = tmp_path / "out"
    with relay_at(redis_url, free_port(), cheat=["--forge-done", forge]) as (_, url), \
            sending(url, tmp_path / "f") as (sender, name, code):
        receiver = receiving(url, name, code, out)
        _refused_done(sender)
        assert receiver.wait(120) != 0
        err = receiver.stderr.read()
        receiver.stdout.close()
        receiver.stderr.close()
        assert "Traceback" not in err, err
        assert stats(url).get("chunks_in", 0) == 0  # refused before a file was answered
    assert visible(out) == []


def test_a_done_replayed_from_another_session_is_refused(redis_url: str, db, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"twice")
    with relay_at(redis_url, free_port(), cheat=["--forge-done", "replay"]) as (_, url):
        with sending(url, tmp_path / "f") as (sender, name, code):  # honest: the relay keeps its done
            result = receive(url, name, code, tmp_path / "one")
            assert result.returncode == 0, result.stderr
            assert finished(sender, 60)[0] == 0
        with sending(url, tmp_path / "f") as (sender, name, code):  # the kept done, as soon as let in
            receiver = receiving(url, name, code, tmp_path / "two")
            _refused_done(sender)
            receiver.wait(120)
            receiver.stdout.close()
            receiver.stderr.close()
    assert visible(tmp_path / "two") == []


def test_a_done_for_other_files_or_another_receiver_is_refused(redis_url: str, db, tmp_path: Path) -> None:
    """Someone with the code, let in, posts a done with a valid MAC, but for a file it was never
    answered; and the relay moves one receiver's valid done into another receiver's record."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_bytes(b"a")
    (tmp_path / "d" / "b").write_bytes(b"b")
    with running_relay(redis_url) as (_, url), sending(url, tmp_path / "d") as (sender, name, code):
        token = crypto.new_token()
        client, sid, keys, manifest = join(url, name, code, token)
        other = manifest["files"][1]["id"]
        client.post(sid, {"done": keys.seal_done(token, "all", [other])})  # claims a file it never got
        _refused_done(sender)
        client.close()
    with running_relay(redis_url) as (_, url), \
            sending(url, tmp_path / "d", args=("--keep",)) as (sender, name, code):
        token_a, token_b = crypto.new_token(), crypto.new_token()
        client_a, sid, keys_a, _ = join(url, name, code, token_a)
        client_b, _, keys_b, _ = join(url, name, code, token_b)
        # A's own done for the (empty) run it had, written by the relay into B's record.
        db.hset(f"session.receiver:{sid}:{keys_b.uid}", "done", keys_a.seal_done(token_a, "all", []))
        _refused_done(sender)
        client_a.close()
        client_b.close()
