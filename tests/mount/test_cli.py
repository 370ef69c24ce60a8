"""The fusevault command: happy paths, and one-line errors with distinct exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import PASSPHRASE, fusevault, is_mounted, mounted


def one_line_error(result: subprocess.CompletedProcess, code: int, words: str) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_init_refuses_an_existing_vault(vault: Path) -> None:
    one_line_error(fusevault("init", vault), 11, "already exists")


def test_wrong_passphrase_mounts_nothing(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    one_line_error(fusevault("mount", vault, mnt, passphrase="wrong"), 3, "wrong passphrase")
    assert not is_mounted(mnt)


def test_missing_vault_and_bad_mount_points(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    one_line_error(fusevault("mount", tmp_path / "nope", mnt), 4, "no vault")
    one_line_error(fusevault("mount", tmp_path, mnt), 4, "not a fusevault vault")
    one_line_error(fusevault("mount", vault, tmp_path / "absent"), 6, "does not exist")
    (mnt / "something").write_text("x")
    one_line_error(fusevault("mount", vault, mnt), 6, "not empty")
    (mnt / "something").unlink()
    with mounted(vault, mnt):
        one_line_error(fusevault("mount", vault, mnt), 6, "busy")
    one_line_error(fusevault("unmount", mnt), 6, "nothing is mounted")


def test_unmount_refuses_while_busy_then_saves(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        handle = open(mnt / "open.txt", "w")
        handle.write("written while open")
        one_line_error(fusevault("unmount", mnt), 6, "busy")
        handle.close()
        assert fusevault("unmount", mnt).returncode == 0
        assert not is_mounted(mnt)
    with mounted(vault, mnt):
        assert (mnt / "open.txt").read_text() == "written while open"


def test_passphrase_from_fd_and_file(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    secret_file = tmp_path / "secret"
    secret_file.write_text(PASSPHRASE + "\n")
    result = fusevault("mount", vault, mnt, "--passphrase-file", secret_file, passphrase=None)
    assert result.returncode == 0, result.stderr
    assert fusevault("unmount", mnt).returncode == 0
    read_end, write_end = os.pipe()
    os.write(write_end, PASSPHRASE.encode())
    os.close(write_end)
    result = fusevault("mount", vault, mnt, "--passphrase-fd", read_end, passphrase=None,
                       pass_fds=(read_end,))
    os.close(read_end)
    assert result.returncode == 0, result.stderr
    assert fusevault("unmount", mnt).returncode == 0
    one_line_error(fusevault("mount", vault, mnt, passphrase=None), 12, "no passphrase")


def test_passwd_rewraps_the_master_key(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "kept.txt").write_text("survives the passphrase change")
    files_before = {p: p.stat().st_mtime_ns for p in vault.rglob("*.vf")}
    result = fusevault("passwd", vault, env={"FUSEVAULT_NEW_PASSPHRASE": "new secret"})
    assert result.returncode == 0, result.stderr
    assert {p: p.stat().st_mtime_ns for p in vault.rglob("*.vf")} == files_before
    one_line_error(fusevault("mount", vault, mnt), 3, "wrong passphrase")
    with mounted(vault, mnt, passphrase="new secret"):
        assert (mnt / "kept.txt").read_text() == "survives the passphrase change"
    one_line_error(fusevault("passwd", vault, passphrase="bad", env={"FUSEVAULT_NEW_PASSPHRASE": "x"}),
                   3, "wrong passphrase")


def test_info_needs_no_passphrase_and_reveals_no_names(vault: Path, tmp_path: Path) -> None:
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "secret-plans").mkdir()
        (mnt / "secret-plans" / "budget.xlsx").write_bytes(b"x" * 100_000)
    result = fusevault("info", vault, "--json", passphrase=None)
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["format"] == 5 and facts["users"] == 1 and facts["entries"] == 2
    assert facts["stored_bytes"] > 100_000 and facts["versions"] == 1
    assert "secret" not in result.stdout and "budget" not in result.stdout
    text = fusevault("info", vault, passphrase=None).stdout
    assert "users: 1" in text


def test_newer_format_is_refused(vault: Path, tmp_path: Path) -> None:
    marker = vault / "vault.json"
    data = json.loads(marker.read_text())
    data["format"] = 99
    marker.write_text(json.dumps(data))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    one_line_error(fusevault("mount", vault, mnt), 7, "newer than this fusevault supports")
    one_line_error(fusevault("info", vault), 7, "upgrade fusevault")


def _foreground(vault: Path, mnt: Path) -> subprocess.Popen:
    mnt.mkdir(exist_ok=True)
    env = dict(os.environ, FUSEVAULT_PASSPHRASE=PASSPHRASE)
    proc = subprocess.Popen([sys.executable, "-m", "fusevault", "mount", "--foreground", str(vault),
                             str(mnt)], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not is_mounted(mnt):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.05)
    return proc


def _fusermount_u(mnt: Path) -> None:
    """``fusermount3 -u`` as a person would run it: again while the kernel still says the mount is busy
    (seen once in 70 loaded runs, just after the file's close, its release not yet answered)."""
    for _ in range(50):
        result = subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True, text=True)
        if result.returncode == 0 or "busy" not in result.stderr:
            break
        time.sleep(0.2)
    assert result.returncode == 0, result.stderr


def test_signals_and_fusermount_unmount_cleanly(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    for stop in (signal.SIGTERM, signal.SIGINT, "fusermount"):
        proc = _foreground(vault, mnt)
        try:
            with open(mnt / f"file-{stop}", "w") as f:
                f.write(f"saved before {stop}")
            if stop == "fusermount":
                _fusermount_u(mnt)
            else:
                proc.send_signal(stop)
            # The guard of a hang, not a timing: the unmount saves (fsync of the file and the store),
            # which on a disk shared with a loaded suite took over 30 s (CI).
            assert proc.wait(120) == 0
            assert "Traceback" not in proc.stderr.read()
            assert not is_mounted(mnt)
        finally:
            if proc.poll() is None:
                proc.kill()
            subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)
    with mounted(vault, mnt):
        names = {f"file-{stop}" for stop in (signal.SIGTERM, signal.SIGINT, "fusermount")}
        assert set(os.listdir(mnt)) == names
        for name in names:
            assert (mnt / name).read_text() == f"saved before {name[5:]}"


def test_help_lists_the_commands() -> None:
    result = subprocess.run([sys.executable, "-m", "fusevault", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("init", "mount", "unmount", "passwd", "info"):
        assert command in result.stdout


def _on_a_terminal(args: list[str], answers: list[str]) -> tuple[int, str]:
    """Run fusevault with a real pseudo-terminal as its controlling tty."""
    import fcntl
    import pty
    import termios

    main, tty = pty.openpty()

    def make_controlling() -> None:
        os.setsid()
        fcntl.ioctl(tty, termios.TIOCSCTTY, 0)

    env = {k: v for k, v in os.environ.items() if k != "FUSEVAULT_PASSPHRASE"}
    proc = subprocess.Popen([sys.executable, "-m", "fusevault", *args], stdin=tty, stdout=tty,
                            stderr=tty, env=env, preexec_fn=make_controlling)
    os.close(tty)
    output = b""
    for answer in answers:
        while b": " not in output.rsplit(b"\n", 1)[-1]:
            output += os.read(main, 1024)
        os.write(main, answer.encode() + b"\n")
        output += os.read(main, 1024)
    code = proc.wait(60)
    try:
        while chunk := os.read(main, 1024):
            output += chunk
    except OSError:
        pass
    os.close(main)
    return code, output.decode(errors="replace")


def test_init_asks_twice_on_a_terminal(tmp_path: Path) -> None:
    code, out = _on_a_terminal(["init", str(tmp_path / "v1"), "--user", "carol"],
                               ["one", "two", "three", "four", "five", "six"])  # three times: no more
    assert code == 12 and "do not match" in out and not (tmp_path / "v1").exists()
    # Not a word the recovery key (printed here, 24 words) could hold: the check is that it is not echoed.
    secret = "s4me-9hrase"
    code, out = _on_a_terminal(["init", str(tmp_path / "v2"), "--user", "carol"], [secret, secret])
    assert code == 0 and "created vault" in out and secret not in out  # never echoed
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    code, out = _on_a_terminal(["mount", str(tmp_path / "v2"), str(mnt)], [secret])
    try:
        assert code == 0 and is_mounted(mnt), out
    finally:
        fusevault("unmount", mnt)


def test_runtime_dir_flag_holds_the_control_socket(vault: Path, tmp_path: Path) -> None:
    import tempfile

    runtime = Path(tempfile.mkdtemp(prefix="fvr", dir="/tmp"))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    result = fusevault("--runtime-dir", runtime, "mount", vault, mnt)
    assert result.returncode == 0, result.stderr
    try:
        assert len(list((runtime / "mounts").glob("*.sock"))) == 1
    finally:
        assert fusevault("--runtime-dir", runtime, "unmount", mnt).returncode == 0
    assert not list((runtime / "mounts").glob("*.sock"))
