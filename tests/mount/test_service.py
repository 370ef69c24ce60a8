"""fusevault as a systemd service: notify protocol, journal levels, status, units, help, completion."""

from __future__ import annotations

import configparser
import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
import trio
import trio.testing
from conftest import PASSPHRASE, force_unmount, fusevault, is_mounted, mounted, server_pids

from fusevault.cli.app import build_parser
from fusevault.cli.help import GROUPS
from fusevault.fs.lifecycle import _announce_ready

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "contrib" / "systemd"
EXIT_WRONG_PASSPHRASE = 3


@contextlib.contextmanager
def notify_socket():
    """A datagram socket standing in for systemd's $NOTIFY_SOCKET (the real protocol, our end)."""
    folder = Path(tempfile.mkdtemp(prefix="fvn", dir="/tmp"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(folder / "notify"))
    sock.settimeout(60)
    try:
        yield sock, str(folder / "notify")
    finally:
        sock.close()
        shutil.rmtree(folder)


def fusevault_mounts() -> list[str]:
    with open("/proc/self/mountinfo") as mounts:
        return [line.split()[4] for line in mounts if " - fuse.fusevault " in line]


def foreground(vault: Path, mnt: Path, env: dict, **kwargs) -> subprocess.Popen:
    command = [sys.executable, "-m", "fusevault", "mount", "--foreground", str(vault), str(mnt)]
    return subprocess.Popen(command,
                            env={**os.environ, **env}, stdin=subprocess.DEVNULL, **kwargs)


def test_ready_is_sent_only_once_the_mount_answers_and_stopping_at_shutdown(vault: Path,
                                                                            tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with notify_socket() as (sock, address):
        server = foreground(vault, mnt, {"NOTIFY_SOCKET": address, "FUSEVAULT_PASSPHRASE": PASSPHRASE},
                            stderr=subprocess.DEVNULL)
        try:
            message = sock.recv(4096).decode().split("\n")
            # At the moment READY=1 arrives the mount must already be there and answer.
            assert "READY=1" in message and f"MAINPID={server.pid}" in message
            assert str(mnt) in fusevault_mounts()
            assert os.listdir(mnt) == []
            (mnt / "f").write_text("x")
            server.send_signal(signal.SIGTERM)  # what `systemctl --user stop` sends
            assert "STOPPING=1" in sock.recv(4096).decode().split("\n")
            assert server.wait(60) == 0
            assert not is_mounted(mnt)
        finally:
            if server.poll() is None:
                server.kill()
            force_unmount(mnt)
    with mounted(vault, mnt):
        assert (mnt / "f").read_text() == "x"  # saved by the clean stop


def test_a_wrong_passphrase_exits_with_a_code_the_unit_never_restarts(vault: Path,
                                                                       tmp_path: Path) -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(UNITS / "fusevault@.service")
    prevented = {int(code) for code in unit["Service"]["RestartPreventExitStatus"].split()}
    assert unit["Service"]["Restart"] == "on-failure" and unit["Service"]["Type"] == "notify"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with notify_socket() as (sock, address):
        server = foreground(vault, mnt, {"NOTIFY_SOCKET": address, "FUSEVAULT_PASSPHRASE": "wrong"},
                            stderr=subprocess.PIPE, text=True)
        _, err = server.communicate(timeout=60)
        sock.settimeout(0.1)
        with pytest.raises(TimeoutError):
            sock.recv(4096)  # never ready
    assert server.returncode == EXIT_WRONG_PASSPHRASE and EXIT_WRONG_PASSPHRASE in prevented
    assert err.strip() == "fusevault: wrong passphrase"
    for user_mistake in (2, 4, 6, 12, 17):  # usage, not found, mount point, bad input, in use
        assert user_mistake in prevented


def test_under_the_journal_lines_carry_levels_and_no_secret(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    log = tmp_path / "journal"
    with open(log, "w") as stream:
        st = os.fstat(stream.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}", "FUSEVAULT_PASSPHRASE": PASSPHRASE}
        server = subprocess.Popen([sys.executable, "-m", "fusevault", "-v", "mount", "--foreground",
                                   str(vault), str(mnt)], env={**os.environ, **env},
                                  stdin=subprocess.DEVNULL, stderr=stream)
        try:
            deadline = 600  # until it says it is ready: a stop before that is the test below
            while f"<6>mounted at {mnt}" not in log.read_text().splitlines() and deadline:
                deadline -= 1
                subprocess.run(["sleep", "0.1"])
            (mnt / "secret-name.txt").write_text("secret content")
            server.send_signal(signal.SIGTERM)
            assert server.wait(60) == 0
        finally:
            if server.poll() is None:
                server.kill()
            force_unmount(mnt)
        wrong = subprocess.run([sys.executable, "-m", "fusevault", "mount", str(vault), str(mnt)],
                               env={**os.environ, **env, "FUSEVAULT_PASSPHRASE": "nope"},
                               stdin=subprocess.DEVNULL, stderr=stream)
        assert wrong.returncode == EXIT_WRONG_PASSPHRASE
    lines = log.read_text().splitlines()
    assert f"<6>mounted at {mnt}" in lines
    assert "<3>wrong passphrase" in lines
    assert [line for line in lines if line[:3] not in {"<7>", "<6>", "<4>", "<3>", "<2>"}] == []
    text = log.read_text()
    assert PASSPHRASE not in text and "secret content" not in text


def test_a_stop_before_the_mount_answered_its_readiness_check_still_unmounts(vault: Path,
                                                                            tmp_path: Path) -> None:
    # CI saw a SIGTERM hang a mount that served a write but had not yet had its readiness stat
    # answered: the stopped FUSE loop could no longer answer it, and the unmount that would waited
    # for it.  A mount whose server is stopped (SIGSTOP) answers nothing the kernel has not cached
    # (a name never looked up): the readiness check run against it, then stopped, must end without
    # an answer and without saying "ready".
    ready: list[bool] = []

    async def started_then_stopped(mountpoint: Path) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_announce_ready, mountpoint, lambda: ready.append(True))
            await trio.testing.wait_all_tasks_blocked()  # in the stat, which nothing answers
            nursery.cancel_scope.cancel()

    with mounted(vault, tmp_path / "mnt") as mnt:
        [pid] = server_pids(mnt)
        os.kill(pid, signal.SIGSTOP)
        try:
            runner = threading.Thread(target=trio.run, args=(started_then_stopped, mnt / "never-seen"),
                                      daemon=True)
            runner.start()
            runner.join(60)
            ended = not runner.is_alive()
        finally:
            os.kill(pid, signal.SIGCONT)
        runner.join()
    assert ended and ready == []


def test_the_passphrase_comes_from_systemd_ask_password_in_a_service(vault: Path, tmp_path: Path) -> None:
    # No password agent can answer inside a test, so a stand-in systemd-ask-password
    # (same command line, same stdout contract) answers and records how it was asked.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    asked = tmp_path / "asked"
    fake = bin_dir / "systemd-ask-password"
    fake.write_text(f"#!/bin/sh\necho \"$@\" > {asked}\necho '{PASSPHRASE}'\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with notify_socket() as (sock, address):
        env = {"NOTIFY_SOCKET": address, "INVOCATION_ID": "0123", "PATH": f"{bin_dir}:{os.environ['PATH']}"}
        server = foreground(vault, mnt, env, stderr=subprocess.DEVNULL)
        try:
            assert "READY=1" in sock.recv(4096).decode()
            assert "--id=fusevault:" in asked.read_text() and PASSPHRASE not in asked.read_text()
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(60)
            force_unmount(mnt)


def test_status_json_describes_a_running_mount(mnt: Path, vault: Path) -> None:
    with open(mnt / "held.txt", "w") as held:
        held.write("open")
        result = fusevault("status", "--json", passphrase=None)
    assert result.returncode == 0, result.stderr
    [m] = [m for m in json.loads(result.stdout)["mounts"] if m["mountpoint"] == str(mnt)]
    assert m["vault"] == str(vault) and m["user"] == "alice" and m["open_files"] == 1
    assert [u["user"] for u in m["unlocked"]] == ["alice"]
    assert os.path.exists(f"/proc/{m['pid']}") and "mount" in Path(f"/proc/{m['pid']}/cmdline").read_text()
    assert m["tasks"]["gc"]["state"] == "waiting" and m["tasks"]["import"]["state"] == "off"
    text = fusevault("status", mnt, passphrase=None).stdout
    assert str(mnt) in text and "unlocked alice" in text and "import" in text
    result = fusevault("status", mnt.parent, passphrase=None)
    assert result.returncode == 6 and "no vault is mounted" in result.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_units_verify(tmp_path: Path) -> None:
    units = tmp_path / "units"
    units.mkdir()
    fusevault_bin = shutil.which("fusevault") or str(Path(sys.executable).parent / "fusevault")
    for unit in UNITS.glob("*.service"):
        text = unit.read_text().replace("/usr/local/bin/fusevault", fusevault_bin)
        (units / unit.name).write_text(text)
    (units / "fusevault@private.service").write_text((units / "fusevault@.service").read_text())
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    checks = [["--user", "fusevault@.service"], ["--user", "fusevault@private.service"],
              ["fusevault-relay.service"]]
    for args in checks:
        result = subprocess.run(["systemd-analyze", "verify", *args[:-1], f"./{args[-1]}"], cwd=units,
                                env=env, capture_output=True, text=True)
        assert result.returncode == 0 and result.stderr == "", (args, result.stderr)


def test_no_arguments_give_the_grouped_help_with_every_command() -> None:
    result = fusevault(passphrase=None)
    assert result.returncode == 2
    for title in GROUPS:
        assert f"{title}:" in result.stdout
    commands = set(build_parser()._subparsers._group_actions[0].choices)
    grouped = [name for names in GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(commands)  # each command in exactly one group
    for name in commands:
        assert "example" in fusevault(name, "--help", passphrase=None).stdout, name


def test_bash_and_zsh_completion(tmp_path: Path) -> None:
    script = fusevault("completion", "bash", passphrase=None).stdout
    (tmp_path / "fusevault.bash").write_text(script)
    probe = f"""
source {tmp_path / 'fusevault.bash'}
COMP_WORDS=(fusevault con); COMP_CWORD=1; _shtab_fusevault; echo "${{COMPREPLY[*]}}"
COMP_WORDS=(fusevault config set source); COMP_CWORD=3; _shtab_fusevault; echo "${{COMPREPLY[*]}}"
"""
    result = subprocess.run(["bash", "-c", probe], capture_output=True, text=True)
    assert result.stdout.splitlines() == ["config", "source_dir_to_watch"], result.stderr
    zsh = fusevault("completion", "zsh", passphrase=None).stdout
    assert zsh.startswith("#compdef fusevault") and "source_dir_to_watch" in zsh
    if shutil.which("zsh"):
        (tmp_path / "_fusevault").write_text(zsh)
        assert subprocess.run(["zsh", "-n", str(tmp_path / "_fusevault")]).returncode == 0
