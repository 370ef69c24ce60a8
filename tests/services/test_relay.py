"""send / receive through a real relay process backed by a real redis-server."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import pytest
import redis
from conftest import fusevault, running_relay
from transfer_helpers import (
    EXIT_CODE,
    EXIT_LIMIT,
    EXIT_NOT_FOUND,
    EXIT_RELAY,
    MISMATCH,
    SIGNAL_AT,
    finished,
    free_port,
    join,
    live_keys,
    random_file,
    receive,
    receiving,
    relay_at,
    sending,
    visible,
)

from fusevault.encoding import b64e
from fusevault.errors import CorruptData
from fusevault.transfer import crypto
from fusevault.transfer.offer import link_stays_inside
from fusevault.transfer.output import safe_target


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


def test_a_large_file_and_a_folder_of_small_files_arrive_byte_exact(relay, db, tmp_path: Path) -> None:
    src, out = tmp_path / "src", tmp_path / "out"
    (src / "album" / "2026").mkdir(parents=True)
    big = random_file(src / "big.bin", 100)
    for i in range(200):
        (src / "album" / "2026" / f"photo{i:03}.txt").write_bytes(os.urandom(i * 37))
    with sending(relay, big, src / "album") as (sender, name, code):
        result = receive(relay, name, code, out)  # -o makes the folder
        assert result.returncode == 0, result.stderr
        assert sender.wait(60) == 0, sender.stderr.read()
    assert hashlib.sha256((out / "big.bin").read_bytes()).digest() == \
        hashlib.sha256(big.read_bytes()).digest()
    for i in range(200):
        name_ = f"photo{i:03}.txt"
        assert (out / "album" / "2026" / name_).read_bytes() == (src / "album" / "2026" / name_).read_bytes()
    assert not [p for p in out.rglob(".*")]  # no partial file, no resume state left
    assert live_keys(db) == []  # the sender ended the session: nothing left behind


def test_the_relay_sees_no_file_names(redis_url: str, db, tmp_path: Path) -> None:
    (tmp_path / "quarterly-secret-plans.txt").write_bytes(b"x" * 1000)
    with running_relay(redis_url) as (_, url), \
            sending(url, tmp_path / "quarterly-secret-plans.txt") as (sender, name, code):
        client, sid, keys, manifest = join(url, name, code)
        assert [f["name"] for f in manifest["files"]] == ["quarterly-secret-plans.txt"]
        everything = b"".join(k + b"".join(v for v in _values(db, k)) for k in db.keys("*"))
        assert b"quarterly" not in everything
        client.close()


def _values(db, key: bytes) -> list[bytes]:
    kind = db.type(key)
    if kind == b"hash":
        return [b for kv in db.hgetall(key).items() for b in kv]
    if kind == b"set":
        return list(db.smembers(key))
    if kind == b"list":
        return db.lrange(key, 0, -1)
    return [db.get(key) or b""]


def test_a_wrong_code_ends_the_session_for_both(relay, db, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"secret")
    out = tmp_path / "out"
    with sending(relay, tmp_path / "f") as (sender, name, code):
        wrong = f"{int(code.split('-')[0]) ^ 1}-{code.split('-', 1)[1]}"
        result = receive(relay, name, wrong, out)
        assert result.returncode == EXIT_CODE, result.stderr
        assert result.stderr.strip().endswith(MISMATCH) and "Traceback" not in result.stderr
        status, _, err = finished(sender, 60)
        assert status == EXIT_CODE and MISMATCH in err and "Traceback" not in err
        # The right code comes too late: one guess per session, and it was spent.
        result = receive(relay, name, code, out)
        assert result.returncode in (EXIT_CODE, EXIT_NOT_FOUND), result.stderr
    assert visible(out) == [] and list(out.iterdir()) == []


def test_one_open_session_per_address_and_join_attempts(redis_url: str, db, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with running_relay(redis_url, "--join-attempts", "3") as (_, url), \
            sending(url, tmp_path / "f") as (_, name, code):
        second = fusevault("send", tmp_path / "f", "--relay", url, passphrase=None)
        assert second.returncode == EXIT_LIMIT and "already has an open session" in second.stderr
        for _ in range(3):
            assert raw_join(url, name).status_code == 200
        answer = raw_join(url, name)
        assert answer.status_code == 429 and "too many attempts" in answer.json()["error"]


def raw_join(url: str, name: str) -> httpx.Response:
    return httpx.post(url + "/sessions/join", json={"name": name})


def test_the_queue_stays_bounded_while_a_slow_receiver_drains_it(relay, db, tmp_path: Path) -> None:
    data = os.urandom(12 * crypto.CHUNK + 1000)
    (tmp_path / "f").write_bytes(data)
    with sending(relay, tmp_path / "f") as (sender, name, code):
        token = crypto.new_token()
        client, sid, keys, manifest = join(relay, name, code, token)
        entry = manifest["files"][0]
        request = crypto.FileRequest(keys, entry["id"], 0)
        client.request(sid, [{"filename": entry["id"], "public_key": b64e(request.public), "first": 0,
                              "mac": request.mac}])
        ack = []
        while not ack:
            ack = client.acknowledgements(sid, wait=10)
        key = request.key(entry["chunks"], ack[0]["public_key"], ack[0]["mac"])
        rid, received, longest = ack[0]["request_id"], [], 0
        time.sleep(1)
        assert db.llen(f"file.req.chunks:{rid}") == 0  # nothing flows before the receiver asks
        assert all(db.ttl(k) > 0 for k in live_keys(db))  # every key of the session has an expiry
        first = True
        while len(received) < entry["chunks"]:
            got = client.pop(rid, wait=10, first=first)
            first = False
            time.sleep(0.15)  # slower than the sender
            longest = max(longest, db.llen(f"file.req.chunks:{rid}"))
            if got:
                nr, iv, sealed = got
                last = nr == entry["chunks"] - 1
                received.append(crypto.open_chunk(key, sid, entry["id"], nr, last, iv, sealed))
        received[-1], digest = received[-1][:-crypto.DIGEST], received[-1][-crypto.DIGEST:]
        client.finish(rid)
        client.post(sid, {"done": keys.seal_done(token, "all", [entry["id"]])})
        client.close()
        assert sender.wait(60) == 0
    assert b"".join(received) == data and hashlib.sha256(data).digest() == digest
    assert longest == 8  # the sender filled the queue to its bound and waited there


def test_keys_of_an_abandoned_session_expire(redis_url: str, db, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with running_relay(redis_url, "--session-ttl", "2") as (_, url), \
            sending(url, tmp_path / "f") as (sender, name, code):
        # Every key has an expiry: PTTL, not TTL, which rounds a key with under half a second left
        # (a 2 s session between two of the sender's refreshes) to 0 (a flaky failure on a loaded run).
        assert live_keys(db) and all(db.pttl(k) > 0 for k in live_keys(db))
        sender.send_signal(signal.SIGKILL)
        sender.wait()
        deadline = time.monotonic() + 30
        while live_keys(db) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert live_keys(db) == []
        result = receive(url, name, code, tmp_path)
        assert result.returncode == EXIT_NOT_FOUND and "no session named" in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_sender_stopped_by_a_signal_closes_its_session(relay, db, tmp_path: Path, signum) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with sending(relay, tmp_path / "f") as (sender, name, code):
        assert live_keys(db)
        sender.send_signal(signum)
        status, _, err = finished(sender, 60)
        assert status == 128 + signum and "Traceback" not in err, err
        assert live_keys(db) == []
        # The address may send again at once.
        with sending(relay, tmp_path / "f") as (again, name, code):
            assert receive(relay, name, code, tmp_path / "out").returncode == 0
            assert again.wait(60) == 0


def test_a_receiver_stopped_by_sigterm_resumes_with_the_same_command(relay, db, tmp_path: Path) -> None:
    big = random_file(tmp_path / "big.bin", 64)
    out = tmp_path / "out"
    with sending(relay, big) as (sender, name, code):
        first = receiving(relay, name, code, out)
        deadline = time.monotonic() + 120
        while not _partial_size(out) and time.monotonic() < deadline:
            time.sleep(0.02)
        first.send_signal(signal.SIGTERM)
        assert first.wait(60) == 128 + signal.SIGTERM
        err = first.stderr.read()
        first.stdout.close()
        first.stderr.close()
        assert "run the same command again to resume" in err and "Traceback" not in err
        assert visible(out) == []  # nothing under the real name
        held = _partial_size(out)
        result = receive(relay, name, code, out)
        assert result.returncode == 0, result.stderr
        assert f"resuming big.bin at {held - held % crypto.CHUNK} of" in result.stdout
        assert sender.wait(60) == 0
    assert (out / "big.bin").read_bytes() == big.read_bytes()
    assert visible(out) == ["big.bin"] and [p.name for p in out.iterdir()] == ["big.bin"]


def _partial_size(out: Path) -> int:
    parts = list(out.glob(".*.fvpart-*")) if out.exists() else []
    return parts[0].stat().st_size if parts else 0


def test_a_relay_restarted_mid_transfer_resumes(redis_url: str, db, tmp_path: Path) -> None:
    big = random_file(tmp_path / "big.bin", 64)
    out = tmp_path / "out"
    port = free_port()
    with relay_at(redis_url, port) as (relay_proc, url), sending(url, big) as (sender, name, code):
        receiver = receiving(url, name, code, out)
        deadline = time.monotonic() + 120
        while not _partial_size(out) and time.monotonic() < deadline:
            time.sleep(0.02)
        relay_proc.kill()
        relay_proc.wait()
        assert receiver.wait(60) == EXIT_RELAY
        message = receiver.stderr.read()
        receiver.stdout.close()
        receiver.stderr.close()
        assert "relay" in message and "resume" in message and "Traceback" not in message
        assert visible(out) == []
        with relay_at(redis_url, port):  # the same state in Redis, the same token key
            result = receive(url, name, code, out)
            assert result.returncode == 0, result.stderr
            assert sender.wait(120) == 0, sender.stderr.read()
    assert (out / "big.bin").read_bytes() == big.read_bytes()


def test_a_relay_that_is_not_there(redis_url: str, tmp_path: Path) -> None:
    result = receive("http://127.0.0.1:9", "1234", "1-a-b", tmp_path)
    assert result.returncode == EXIT_RELAY and "cannot reach the relay" in result.stderr
    result = fusevault("send", __file__, "--relay", "http://127.0.0.1:9", passphrase=None)
    assert result.returncode == EXIT_RELAY
    result = fusevault("relay", "--listen", "127.0.0.1:0", "--redis", "redis://127.0.0.1:9/0",
                       passphrase=None)
    assert result.returncode == EXIT_RELAY and "cannot reach Redis" in result.stderr
    assert "Traceback" not in result.stderr
    with running_relay(redis_url) as (_, url):  # a port that is taken
        result = fusevault("relay", "--listen", url.removeprefix("http://"), "--redis", redis_url,
                           passphrase=None)
        assert result.returncode == EXIT_RELAY and "cannot listen" in result.stderr
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
    assert link_stays_inside("album/2026/latest", "../2025/a.jpg")
    for target in ("/etc/passwd", "../../x", "../", "", "a/../../.."):
        assert not link_stays_inside("album/x", target)


def test_codes_have_the_length_asked_for() -> None:
    code = crypto.make_code()
    assert re.fullmatch(r"\d{1,3}-[a-z]+-[a-z]+", code)
    assert crypto.normalize_code(" " + code.upper().replace("-", " ")) == code
    assert re.fullmatch(r"\d{1,3}(-[a-z]+){5}", crypto.make_code(5))
    # The bound docs/SECURITY.md states: one guess per session, at most 2^-20.
    assert crypto.code_space(crypto.DEFAULT_WORDS) >= 2 ** 25
    bad = fusevault("send", __file__, "--code-length", "1", passphrase=None)
    assert bad.returncode == 2 and "2 to 8 words" in bad.stderr


def test_a_longer_code_and_verification_words_on_both_sides(relay, db, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"hello")
    with sending(relay, tmp_path / "f", args=("--code-length", "4", "--verify")) as (sender, name, code):
        assert len(code.split("-")) == 5
        result = receive(relay, name, code, tmp_path / "out", "--verify")
        assert result.returncode == 0, result.stderr
        status, said, _ = finished(sender)
    assert status == 0
    mine = re.search(r"verification words: ((?:[a-z]+ ?){4})", result.stdout).group(1)
    theirs = re.search(r"its verification words: ((?:[a-z]+ ?){4})", said).group(1)
    assert mine == theirs


def test_a_second_receiver_is_refused_unless_the_sender_keeps_serving(relay, db, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"only for one")
    with sending(relay, tmp_path / "f") as (sender, name, code):
        token = crypto.new_token()
        first, sid, keys, _ = join(relay, name, code, token)  # the first receiver: let in, not yet done
        second = receive(relay, name, code, tmp_path / "second")
        assert second.returncode == EXIT_LIMIT and "refused" in second.stderr, second.stderr
        assert visible(tmp_path / "second") == [] and list((tmp_path / "second").iterdir()) == []
        # It only looked: the session is for the next one.
        first.post(sid, {"done": keys.seal_done(token, "list", [])})
        result = receive(relay, name, code, tmp_path / "third")
        assert result.returncode == 0, result.stderr
        assert sender.wait(60) == 0
        first.close()
    with sending(relay, tmp_path / "f", args=("--keep",)) as (sender, name, code):
        for who in ("a", "b"):
            result = receive(relay, name, code, tmp_path / who)
            assert result.returncode == 0, result.stderr
            assert (tmp_path / who / "f").read_bytes() == b"only for one"
        sender.send_signal(signal.SIGINT)
        status, said, err = finished(sender)
        assert "another receiver joined; its verification words:" in said
        assert status == 130 and err.strip().endswith("fusevault: interrupted"), err


# httpcore marks a connection idle, then h11 starts its next cycle: a KeyboardInterrupt raised between
# the two (the signal handled wherever the main thread was) left an idle connection h11 would not use,
# and closing the session over it crashed.  Under load the same race stopped `send --keep` from ending.
@pytest.mark.parametrize("nth", [2, 4])
def test_ctrl_c_landing_in_the_middle_of_a_relay_call_ends_send_keep_cleanly(relay, db, tmp_path: Path,
                                                                           nth: int) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with sending(relay, tmp_path / "f", args=("--keep",),
                 via=(SIGNAL_AT, "h11._connection:Connection.start_next_cycle", str(nth))) as (sender, _, _):
        status, _, err = finished(sender)
    assert status == 130 and err.strip() == "fusevault: interrupted", err
    assert live_keys(db) == []  # the session was closed on the relay: the address may send again at once
    with sending(relay, tmp_path / "f") as (again, name, code):
        assert receive(relay, name, code, tmp_path / "out").returncode == 0
        assert again.wait(60) == 0


def test_list_then_receive(relay, db, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("a")
    (tmp_path / "d" / "b.txt").write_text("b")
    out = tmp_path / "out"
    with sending(relay, tmp_path / "d") as (sender, name, code):
        listed = receive(relay, name, code, out, "--list")
        assert listed.returncode == 0 and "d/a.txt" in listed.stdout and "d/b.txt" in listed.stdout
        result = receive(relay, name, code, out, "--file", "d/b.txt")
        assert result.returncode == 0, result.stderr
        assert sender.wait(60) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["d", "d/b.txt"]


def test_symlinks_arrive_as_symlinks_or_are_listed_as_skipped(relay, db, tmp_path: Path) -> None:
    src = tmp_path / "album"
    (src / "2026").mkdir(parents=True)
    (src / "2026" / "a.jpg").write_bytes(b"jpeg")
    (src / "latest").symlink_to("2026/a.jpg")
    (src / "this-year").symlink_to("2026")           # a folder: not followed, sent as a link
    (src / "passwords").symlink_to("/etc/passwd")    # outside: skipped
    (src / "up").symlink_to("../../..")              # outside: skipped
    os.mkfifo(src / "pipe")                          # not a file: skipped
    out = tmp_path / "out"
    with sending(relay, src) as (sender, name, code):
        listed = receive(relay, name, code, out, "--list")
        assert "album/latest -> 2026/a.jpg" in listed.stdout and "album/this-year -> 2026" in listed.stdout
        assert "skipped  album/passwords" in listed.stdout and "skipped  album/up" in listed.stdout
        result = receive(relay, name, code, out)
        assert result.returncode == 0, result.stderr
        status, _, err = finished(sender)
    assert status == 0
    assert "skipped album/passwords" in err and "skipped album/pipe" in err  # the sender warns
    assert "the sender skipped album/passwords" in result.stderr            # and so does the receiver
    assert os.readlink(out / "album" / "latest") == "2026/a.jpg"
    assert (out / "album" / "latest").read_bytes() == b"jpeg"
    assert os.readlink(out / "album" / "this-year") == "2026"
    assert not os.path.lexists(out / "album" / "passwords") and not os.path.lexists(out / "album" / "up")
    assert not os.path.lexists(out / "album" / "pipe")


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
    assert sorted(os.listdir(dump)) == ["letter.txt"]


def test_ctrl_c_on_a_sender_while_it_sends_ends_both_sides(relay, db, tmp_path: Path) -> None:
    big = random_file(tmp_path / "big.bin", 64)
    out = tmp_path / "out"
    with sending(relay, big, args=("--keep",)) as (sender, name, code):
        taker = receiving(relay, name, code, out)
        deadline = time.monotonic() + 120
        while not _partial_size(out) and time.monotonic() < deadline:
            time.sleep(0.02)
        sender.send_signal(signal.SIGINT)
        status, _, err = finished(sender)
        assert status == 130 and err.strip().endswith("fusevault: interrupted"), err
        assert live_keys(db) == []
        taken = taker.wait(120)
        said = taker.stderr.read()
        taker.stdout.close()
        taker.stderr.close()
    # The receiver is told (its next take finds the transfer gone), and may resume from another send.
    assert taken != 0 and "the sender stopped this transfer" in said, said
    assert "Traceback" not in said and "internal error" not in said, said
    assert visible(out) == []  # nothing under the real name


def test_ctrl_c_on_a_sender_whose_relay_stopped_answering_still_ends_it(redis_url: str, db,
                                                                        tmp_path: Path, monkeypatch) -> None:
    # The sender waits 2 s, not 15, for the stopped relay (FUSEVAULT_STOP_GRACE_SECONDS, cli/transfer.py):
    # the same way out (left behind, exit 130), sooner.  Without it Ctrl-C would not end it at all.
    monkeypatch.setenv("FUSEVAULT_STOP_GRACE_SECONDS", "2")
    (tmp_path / "f").write_bytes(b"x")
    with running_relay(redis_url) as (relay_proc, url), sending(url, tmp_path / "f", args=("--keep",)) as (
            sender, _, _):
        relay_proc.send_signal(signal.SIGSTOP)  # its connections stay open; nothing answers on them
        try:
            sender.send_signal(signal.SIGINT)
            status, _, err = finished(sender)
        finally:
            relay_proc.send_signal(signal.SIGCONT)
    assert status == 130 and "fusevault: interrupted" in err and "Traceback" not in err, err
