"""The command line does what it says: unmount only its own mounts, a new user's own
passphrase, init asks again, receive names its options, the relay logs once, a
password agent learns which vault asks."""

from __future__ import annotations

import http.client
import os
import pwd
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PASSPHRASE, _free_port, fusevault, is_mounted

from mount.test_cli_errors import TRACEBACK, clean, on_a_terminal

# A FUSE file system that is not fusevault (as gocryptfs or sshfs would be): an empty folder.
OTHER_FS = """
import stat, sys, pyfuse3, trio

class Empty(pyfuse3.Operations):
    async def getattr(self, inode, ctx=None):
        attrs = pyfuse3.EntryAttributes()
        attrs.st_ino, attrs.st_mode, attrs.st_nlink = inode, stat.S_IFDIR | 0o755, 2
        return attrs

    async def opendir(self, inode, ctx):
        return inode

    async def readdir(self, fh, start, token):
        pass

    async def releasedir(self, fh):
        pass

pyfuse3.init(Empty(), sys.argv[1], {"fsname=otherfs", "subtype=otherfs"})
try:
    trio.run(pyfuse3.main)
finally:
    pyfuse3.close(unmount=True)
"""


def test_unmount_refuses_a_file_system_that_is_not_fusevault(tmp_path: Path) -> None:
    mnt = tmp_path / "other"
    mnt.mkdir()
    server = subprocess.Popen([sys.executable, "-c", OTHER_FS, str(mnt)])
    try:
        deadline = time.monotonic() + 30
        while not is_mounted(mnt):
            assert server.poll() is None and time.monotonic() < deadline, "the other one did not mount"
            time.sleep(0.05)
        result = fusevault("unmount", mnt, passphrase=None)
        clean(result, 6, "not a fusevault mount (fuse.otherfs)")
        assert is_mounted(mnt)
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
        server.wait(30)
    assert not is_mounted(mnt)


# --- user add: the new user's passphrase, never the caller's


def _opens(vault: Path, user: str, secret: str) -> int:
    return fusevault("config", "show", "--vault", vault, "--user", user, passphrase=secret).returncode


def test_user_add_takes_the_new_users_passphrase_not_the_callers(vault: Path, tmp_path: Path) -> None:
    def add(name: str, uid: int, *extra, **kwargs) -> subprocess.CompletedProcess:
        return fusevault("user", "add", name, "--uid", str(uid), *extra, **kwargs)

    admin = {"FUSEVAULT_VAULT": str(vault)}
    # Only the caller's own passphrase: refused, not silently given to bob.
    refused = add("bob", 2001, env=admin)
    clean(refused, 12, "no new passphrase: set FUSEVAULT_NEW_PASSPHRASE, or pass --new-passphrase-fd")
    added = add("bob", 2001, env={**admin, "FUSEVAULT_NEW_PASSPHRASE": "bob's own"})
    assert added.returncode == 0, added.stderr
    assert _opens(vault, "bob", "bob's own") == 0 and _opens(vault, "bob", PASSPHRASE) == 3
    # From a file descriptor, and from a file; the caller needs no passphrase at all.
    read_end, write_end = os.pipe()
    os.write(write_end, b"carol's own\n")
    os.close(write_end)
    added = add("carol", 2002, "--new-passphrase-fd", read_end, passphrase=None, env=admin,
                pass_fds=(read_end,))
    os.close(read_end)
    assert added.returncode == 0, added.stderr
    (tmp_path / "dave").write_text("dave's own\n")
    added = add("dave", 2003, "--new-passphrase-file", tmp_path / "dave", passphrase=None, env=admin)
    assert added.returncode == 0, added.stderr
    assert _opens(vault, "carol", "carol's own") == 0 and _opens(vault, "dave", "dave's own") == 0
    # On a terminal: asked twice, and again after a mismatch.
    code, out = on_a_terminal(["user", "add", "erin", "--uid", "2004", "--vault", vault],
                              ["one", "two", "erin's", "erin's"], env={"FUSEVAULT_PASSPHRASE": PASSPHRASE})
    assert code == 0 and "do not match" in out and "erin's" not in out, out
    assert _opens(vault, "erin", "erin's") == 0


# --- init


def test_init_asks_again_after_a_mismatch_up_to_three_times(tmp_path: Path) -> None:
    code, out = on_a_terminal(["init", tmp_path / "v1", "--user", "carol"],
                              ["a", "b", "c", "d", "same", "same"])
    assert code == 0 and out.count("do not match; try again") == 2 and "created vault" in out, out
    code, out = on_a_terminal(["init", tmp_path / "v2", "--user", "carol"], ["a", "b", "", "c", "e"])
    assert code == 12 and "do not match" in out and TRACEBACK not in out, out
    assert not (tmp_path / "v2").exists()
    # Not on a terminal: no second chance, one line.
    clean(fusevault("init", tmp_path / "v3", passphrase=None), 12, "no passphrase: set FUSEVAULT_PASSPHRASE")


def test_init_names_the_user_after_the_login_without_USER(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("USER", "LOGNAME")}
    env["FUSEVAULT_PASSPHRASE"] = PASSPHRASE
    made = subprocess.run([sys.executable, "-m", "fusevault", "init", str(tmp_path / "v")], env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    login = pwd.getpwuid(os.getuid()).pw_name
    assert made.returncode == 0 and f"for user {login}" in made.stdout, made.stdout + made.stderr


# --- receive


def test_receive_without_a_code_names_the_code_options(tmp_path: Path) -> None:
    result = fusevault("receive", "1234", "-o", tmp_path, passphrase=None)
    clean(result, 12, "no code: set FUSEVAULT_CODE, or pass --code-fd or --code-file")


# --- the relay


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_the_relay_logs_each_line_once_and_stops_cleanly(redis_url: str, tmp_path: Path, stop) -> None:
    port = _free_port()
    with open(tmp_path / "relay.log", "wb") as log:
        relay = subprocess.Popen([sys.executable, "-m", "fusevault", "relay", "--listen", f"127.0.0.1:{port}",
                                  "--redis", redis_url], stdout=log, stderr=subprocess.STDOUT)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                connection.request("GET", "/health")  # kept open: Ctrl-C comes while it is served
                assert connection.getresponse().read() == b'{"ok":true}'
                break
            except OSError:
                connection.close()
                assert relay.poll() is None and time.monotonic() < deadline, "the relay did not start"
                time.sleep(0.1)
        relay.send_signal(stop)
        assert relay.wait(30) == 0
    finally:
        connection.close()
        if relay.poll() is None:
            relay.kill()
            relay.wait(30)
    lines = (tmp_path / "relay.log").read_text().splitlines()
    assert sum("Running on" in line for line in lines) == 1, lines
    assert all(line.startswith("fusevault: ") for line in lines[:-1]) and lines[-1] == "relay stopped", lines


# --- systemd-ask-password


@pytest.fixture
def fake_agent(tmp_path: Path) -> tuple[Path, Path]:
    """A systemd-ask-password that notes what it was asked and gives no answer."""
    bin_dir, said = tmp_path / "bin", tmp_path / "asked.txt"
    bin_dir.mkdir()
    agent = bin_dir / "systemd-ask-password"
    agent.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {said}\nexit 1\n')
    agent.chmod(0o755)
    return bin_dir, said


def test_the_password_agent_is_told_which_vault_asks(vault: Path, tmp_path: Path, fake_agent) -> None:
    bin_dir, said = fake_agent
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    service = {"INVOCATION_ID": "0123456789abcdef", "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    result = fusevault("mount", vault, mnt, "--user", "alice", passphrase=None, env=service)
    clean(result, 12, "no passphrase was given to systemd-ask-password")
    asked = said.read_text().splitlines()
    assert asked[-1] == f"Passphrase for vault {vault} (user alice):", asked
    assert any(line.startswith("--id=fusevault:") and str(vault) in line for line in asked), asked
