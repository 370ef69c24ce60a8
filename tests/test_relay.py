"""send / receive through a real relay process backed by a real redis-server."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis
from conftest import fusevault, running_relay

from fusevault.errors import CorruptData
from fusevault.transfer import crypto
from fusevault.transfer.client import RelayClient
from fusevault.transfer.receive import safe_target

EXIT_CORRUPT, EXIT_RELAY, EXIT_LIMIT, EXIT_CODE = 5, 14, 15, 16


@pytest.fixture
def db(redis_url: str):
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def relay(redis_url: str, db):
    with running_relay(redis_url) as (_, url):
        yield url


@contextlib.contextmanager
def sending(url: str, *paths: Path):
    """A `fusevault send` process; yields (process, session name, code)."""
    proc = subprocess.Popen([sys.executable, "-m", "fusevault", "send", *map(str, paths), "--relay", url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        found = re.match(r"Session (\d+), code (\S+)", line)
        assert found, line + proc.stderr.read()
        yield proc, found.group(1), found.group(2)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        proc.stdout.close()
        proc.stderr.close()


def receive(url: str, name: str, code: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return fusevault("receive", name, "--relay", url, "--output", out, *extra, passphrase=None,
                     env={"FUSEVAULT_CODE": code})


def live_keys(db) -> list[bytes]:
    return [k for k in db.keys("*") if k != b"calls"]


def test_a_large_file_and_a_folder_of_small_files_arrive_byte_exact(relay, db, tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    (src / "album" / "2026").mkdir(parents=True)
    out.mkdir()
    big = src / "big.bin"
    with open(big, "wb") as f:
        for _ in range(100):
            f.write(os.urandom(1 << 20))
    for i in range(200):
        (src / "album" / "2026" / f"photo{i:03}.txt").write_bytes(os.urandom(i * 37))
    with sending(relay, big, src / "album") as (sender, name, code):
        result = receive(relay, name, code, out)
        assert result.returncode == 0, result.stderr
        assert sender.wait(60) == 0, sender.stderr.read()
    assert hashlib.sha256((out / "big.bin").read_bytes()).digest() == \
        hashlib.sha256(big.read_bytes()).digest()
    for i in range(200):
        name_ = f"photo{i:03}.txt"
        assert (out / "album" / "2026" / name_).read_bytes() == (src / "album" / "2026" / name_).read_bytes()
    assert not [p for p in out.rglob("*") if ".fvpart" in p.name]
    assert live_keys(db) == []  # the sender ended the session: nothing left behind


def test_a_wrong_code_fails_and_the_attempt_limit_then_holds(relay, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"secret")
    with sending(relay, tmp_path / "f") as (_, name, code):
        for left in range(4, -1, -1):
            result = receive(relay, name, "1-wrong-code", tmp_path)
            assert result.returncode == EXIT_CODE, result.stderr
            assert f"wrong code ({left} attempt" in result.stderr and "Traceback" not in result.stderr
        result = receive(relay, name, code, tmp_path)
        assert result.returncode == EXIT_LIMIT, result.stderr
        assert "too many attempts" in result.stderr
        # one open session per address
        second = fusevault("send", tmp_path / "f", "--relay", relay, passphrase=None)
        assert second.returncode == EXIT_LIMIT and "already has an open session" in second.stderr


def test_a_relay_that_swaps_public_keys_is_caught(redis_url: str, db, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"for your eyes only")
    out = tmp_path / "out"
    out.mkdir()
    script = [sys.executable, str(Path(__file__).parent / "cheating_relay.py")]
    with running_relay(redis_url, script=script) as (_, url), sending(url, tmp_path / "f") as (_, name, code):
        result = receive(url, name, code, out)
    assert result.returncode == EXIT_CORRUPT, result.stderr
    assert "tampered" in result.stderr
    assert list(out.iterdir()) == []


def test_the_queue_stays_bounded_while_a_slow_receiver_drains_it(relay, db, tmp_path: Path) -> None:
    data = os.urandom(12 * crypto.CHUNK + 1000)
    (tmp_path / "f").write_bytes(data)
    with sending(relay, tmp_path / "f") as (sender, name, code):
        client = RelayClient(relay)
        session = client.join(name, crypto.code_hash(code))
        side = crypto.ReceiverSide(code, session["id"], "f")
        client.request(session["id"], [{"filename": "f", "public_key": crypto.b64e(side.public),
                                        "pake": crypto.b64e(side.message)}])
        ack = []
        while not ack:
            ack = client.acknowledgements(session["id"], wait=10)
        key, meta = side.finish(crypto.b64d(ack[0]["public_key"]), crypto.b64d(ack[0]["pake"]),
                                crypto.b64d(ack[0]["meta"]))
        rid, received, longest = ack[0]["request_id"], [], 0
        # every key of the session has an expiry
        assert all(db.ttl(k) > 0 for k in live_keys(db))
        while len(received) < meta["chunks"]:
            time.sleep(0.15)  # slower than the sender
            longest = max(longest, db.llen(f"file.req.chunks:{rid}"))
            got = client.pop(rid, wait=10)
            if got:
                nr, iv, sealed = got
                received.append(crypto.open_chunk(key, side.ctx, nr, nr == meta["chunks"] - 1, iv, sealed))
        client.finish(rid)
        client.close()
        assert sender.wait(60) == 0
    assert b"".join(received) == data
    assert longest == 8  # the sender filled the queue to its bound and waited there


def test_keys_of_an_abandoned_session_expire(redis_url: str, db, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with running_relay(redis_url, "--session-ttl", "2") as (_, url), \
            sending(url, tmp_path / "f") as (sender, name, code):
        assert live_keys(db) and all(db.ttl(k) > 0 for k in live_keys(db))
        sender.send_signal(signal.SIGKILL)
        sender.wait()
        deadline = time.monotonic() + 30
        while live_keys(db) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert live_keys(db) == []
        result = receive(url, name, code, tmp_path)
        assert result.returncode == 4 and "no session named" in result.stderr


def test_a_relay_that_dies_mid_transfer_leaves_no_file(redis_url: str, db, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        for _ in range(200):
            f.write(os.urandom(1 << 20))
    out = tmp_path / "out"
    out.mkdir()
    with running_relay(redis_url) as (relay_proc, url), sending(url, big) as (_, name, code):
        receiver = subprocess.Popen(
            [sys.executable, "-m", "fusevault", "receive", name, "--relay", url, "-o", str(out)],
            env={**os.environ, "FUSEVAULT_CODE": code}, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not list(out.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.02)
        relay_proc.kill()
        assert receiver.wait(60) == EXIT_RELAY
        message = receiver.stderr.read()
        receiver.stderr.close()
    assert "relay" in message and "Traceback" not in message
    assert list(out.iterdir()) == []


def test_a_relay_that_is_not_there(tmp_path: Path) -> None:
    result = receive("http://127.0.0.1:9", "1234", "1-a-b", tmp_path)
    assert result.returncode == EXIT_RELAY and "cannot reach the relay" in result.stderr
    result = fusevault("send", __file__, "--relay", "http://127.0.0.1:9", passphrase=None)
    assert result.returncode == EXIT_RELAY
    result = fusevault("relay", "--listen", "127.0.0.1:0", "--redis", "redis://127.0.0.1:9/0",
                       passphrase=None)
    assert result.returncode == EXIT_RELAY and "cannot reach Redis" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_call_rate_limit(redis_url: str, db) -> None:
    with running_relay(redis_url, "--calls-per-second", "5") as (_, url):
        answers = []
        for _ in range(30):
            try:
                answers.append((urllib.request.urlopen(url + "/health").status, None))
            except urllib.error.HTTPError as err:
                answers.append((err.code, err.headers.get("Retry-After")))
    assert (429, "1") in answers and (200, None) in answers


def test_names_from_the_sender_cannot_escape(tmp_path: Path) -> None:
    assert safe_target(tmp_path, "a/b.txt") == tmp_path / "a" / "b.txt"
    for bad in ("../x", "/etc/passwd", "a/../../x", "a//b", "", "a/./b", "x\0y"):
        with pytest.raises(CorruptData):
            safe_target(tmp_path, bad)


def test_codes_are_short_and_normalized() -> None:
    code = crypto.make_code()
    assert re.fullmatch(r"\d{1,3}-[a-z]+-[a-z]+", code)
    assert crypto.code_hash(" " + code.upper().replace("-", " ")) == crypto.code_hash(code)


def test_received_files_land_in_the_mounted_vaults_dump_folder(relay, db, tmp_path: Path) -> None:
    from conftest import mounted

    dump, src = tmp_path / "dump", tmp_path / "letter.txt"
    dump.mkdir()
    src.write_text("dear bob\n")
    vault = tmp_path / "vault"
    assert fusevault("init", vault, "--user", "bob").returncode == 0
    with mounted(vault, tmp_path / "mnt") as mnt:
        result = fusevault("config", "set", "target_dir_to_dump", dump, "--mount", mnt, passphrase=None)
        assert result.returncode == 0, result.stderr
        with sending(relay, src) as (sender, name, code):
            result = fusevault("receive", name, "--relay", relay, passphrase=None,
                               env={"FUSEVAULT_CODE": code}, cwd=tmp_path)
            assert result.returncode == 0, result.stderr
            assert sender.wait(30) == 0
    assert (dump / "letter.txt").read_text() == "dear bob\n"
    assert not (tmp_path / "letter.txt.fvpart").exists() and sorted(os.listdir(dump)) == ["letter.txt"]
