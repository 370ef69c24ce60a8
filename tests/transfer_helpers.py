"""Helpers for the send/receive tests: real `fusevault send`, `receive` and `relay` processes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conftest import fusevault

from fusevault.encoding import b64e
from fusevault.transfer import crypto
from fusevault.transfer.client import RelayClient

EXIT_NOT_FOUND, EXIT_CORRUPT, EXIT_EXISTS, EXIT_RELAY, EXIT_LIMIT, EXIT_CODE = 4, 5, 11, 14, 15, 16
MISMATCH = "wrong code, or someone in the middle: nothing was sent"
CHEATING = str(Path(__file__).parent / "cheating_relay.py")
SIGNAL_AT = str(Path(__file__).parent / "signal_at.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def relay_at(redis_url: str, port: int, *args: str, cheat: list[str] | None = None):
    """A relay process on ``port`` (the same port again after a restart); yields (process, URL)."""
    if cheat is not None:
        command = [sys.executable, CHEATING, *cheat, f"127.0.0.1:{port}", redis_url]
    else:
        command = [sys.executable, "-m", "fusevault", "relay", "--listen", f"127.0.0.1:{port}",
                   "--redis", redis_url, *args]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=2).read()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, \
                    f"the relay did not start: {proc.stderr.read().decode()}"
                time.sleep(0.1)
        yield proc, url
    finally:
        proc.kill()
        proc.wait(10)
        proc.stderr.close()


@contextlib.contextmanager
def sending(url: str, *paths: Path, args: tuple[str, ...] = (), via: tuple[str, ...] = ("-m", "fusevault")):
    """A `fusevault send` process; yields (process, session name, code).  ``via``: how Python runs it
    (e.g. SIGNAL_AT and its arguments)."""
    proc = subprocess.Popen([sys.executable, *via, "send", *map(str, paths), "--relay", url,
                             *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
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


def finished(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    """Wait for a `sending` process: (exit code, rest of stdout, stderr)."""
    code = proc.wait(timeout)
    return code, proc.stdout.read(), proc.stderr.read()


def receive(url: str, name: str, code: str, out: Path, *extra: str, timeout: float = 300,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    return fusevault("receive", name, "--relay", url, "--output", out, *extra, passphrase=None,
                     env={"FUSEVAULT_CODE": code}, timeout=timeout, cwd=cwd)


def receiving(url: str, name: str, code: str, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fusevault", "receive", name, "--relay", url,
                             "--output", str(out), *extra], env={**os.environ, "FUSEVAULT_CODE": code},
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def stats(url: str) -> dict:
    with urllib.request.urlopen(url + "/stats", timeout=10) as answer:
        return json.loads(answer.read())


def live_keys(db) -> list[bytes]:
    return [k for k in db.keys("*") if k != b"calls"]


def random_file(path: Path, mib: int) -> Path:
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
    return path


def visible(folder: Path) -> list[str]:
    """What a person sees in ``folder``: everything but the hidden partial and resume files."""
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def join(url: str, name: str, code: str,
         token: bytes | None = None) -> tuple[RelayClient, str, crypto.SessionKeys, dict]:
    """A receiver speaking the protocol by hand: joined and confirmed; (client, sid, keys, manifest).

    ``token`` goes sealed in its hello; its ``done`` is ``keys.seal_done(token, ...)``."""
    client = RelayClient(url)
    session = client.join(name)
    sid = session["id"]
    exchange = crypto.ReceiverHandshake(code, sid, session["code"], session["user_id"])
    client.post(sid, {"pake.a": exchange.message})
    answer = None
    while not answer:
        answer = client.handshake(sid, "pake.b", wait=10)
    keys = exchange.finish(answer["pake.b"])
    hello = keys.seal_hello(token or crypto.new_token())
    client.post(sid, {"confirm.a": b64e(keys.confirm_receiver), "hello": hello})
    answer = None
    while not answer:
        answer = client.handshake(sid, "manifest", wait=10)
    assert "refused" not in answer, answer
    keys.check(keys.confirm_sender, answer["confirm.b"])
    return client, sid, keys, keys.open_manifest(answer["manifest"])
