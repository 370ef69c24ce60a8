"""Every command with the mistakes people make: one line, its own exit code, never a traceback.

Mistakes of paths (files one may not read, folders one may not write) are
made by a real Linux user without root's rights (useradd + setpriv); Ctrl-D
is typed at real prompts on a pseudo-terminal; a closed pipe is a real pipe
whose reader is gone.
"""

from __future__ import annotations

import fcntl
import os
import pty
import pwd
import select
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import termios
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import PASSPHRASE, fusevault, is_mounted, linux_users, mounted, running_relay, server_pids
from services.test_relay import sending

TRACEBACK = "Traceback (most recent call last)"
ROOT = Path(__file__).resolve().parents[2]
SITE = sysconfig.get_paths()["purelib"]
# The package from this checkout, with the virtualenv's dependencies, for a
# user who may not enter the virtualenv's directory (it may live under /root).
LAUNCH = ("import site, sys; site.addsitedir(sys.argv.pop(1)); import runpy; "
          "runpy.run_module('fusevault', run_name='__main__', alter_sys=True)")


def clean(result: subprocess.CompletedProcess, code: int, words: str = "") -> None:
    """No traceback anywhere; the expected exit code; a user mistake is one line."""
    assert TRACEBACK not in result.stdout + result.stderr, result.stderr
    assert result.returncode == code, (result.args, result.returncode, result.stderr)
    if code != 2:  # argparse's usage errors print the usage first
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (result.args, result.stderr)
    assert words in result.stderr, (result.args, result.stderr)


# --- as root: missing vaults and mounts, wrong passphrases, bad arguments


def test_common_mistakes_get_one_line_and_their_own_exit_code(vault: Path, tmp_path: Path) -> None:
    """Each command at least once, with the mistake most likely for it."""
    nope, mnt = tmp_path / "nope", tmp_path / "mnt"
    mnt.mkdir()
    missing_vault = [("mount", nope, mnt), ("info", nope), ("passwd", nope), ("watch", nope),
                     ("user", "list", "--vault", nope), ("user", "add", "x", "--vault", nope),
                     ("group", "list", "--vault", nope), ("history", "x", "--vault", nope),
                     ("restore", "x", "--vault", nope), ("trash", "--vault", nope), ("gc", "--vault", nope),
                     ("retention", "--vault", nope), ("config", "show", "--vault", nope),
                     ("export", "x", "--vault", nope), ("share", "x", "--with", "b", "--perm", "READ",
                                                       "--vault", nope),
                     ("unshare", "x", "--with", "b", "--vault", nope), ("shares", "--vault", nope),
                     ("link", "revoke", "x", "--vault", nope), ("peer", "list", "--vault", nope),
                     ("receive", "1234", "--vault", nope)]
    cases = [(args, {"FUSEVAULT_CODE": "1-a-b"}, 4, "no vault") for args in missing_vault]
    not_mounted = [("unmount", mnt), ("status", mnt), ("unlock", mnt), ("lock", mnt), ("config", "show"),
                   ("link", "create", mnt / "x"), ("link", "collect"), ("sync", "status", mnt)]
    cases += [(args, {}, 6, "") for args in not_mounted]
    wrong = {"FUSEVAULT_PASSPHRASE": "wrong", "FUSEVAULT_NEW_PASSPHRASE": "new one"}
    cases += [(args, wrong, 3, "wrong passphrase")
              for args in [("mount", vault, mnt), ("passwd", vault), ("config", "show", "--vault", vault)]]
    usage = [("nocommand",), ("config", "set", "nokey", "v"), ("user", "add")]
    cases += [(args, {}, 2, "") for args in usage]
    bad_input = [("restore", "x", "--at", "garbage", "--vault", vault),
                 ("link", "create", "x", "--expires", "3 parsecs", "--vault", vault),
                 ("relay", "--listen", "nonsense"), ("user", "add", "bob", "--uid", "-5", "--vault", vault),
                 ("mount", vault, mnt, "--passphrase-fd", "99"),
                 ("mount", vault, mnt, "--passphrase-file", tmp_path), ("link", "get", "garbage"),
                 ("link", "push", nope, "https://127.0.0.1:9/l/x#a1.y"),
                 ("send", nope), ("receive", "1234", "-o", vault / "vault.json"),
                 ("config", "set", "source_dir_to_watch", nope, "--vault", vault),
                 ("user", "remove", "alice", "--vault", vault),
                 ("peer", "add", "p", "notaurl", "--vault", vault)]
    cases += [(args, {"FUSEVAULT_CODE": "1-a-b"}, 12, "") for args in bad_input]
    cases += [(("init", vault), {}, 11, "already exists"),
              (("group", "remove", "nope", "--vault", vault), {}, 4, "no group"),
              (("receive", "1234", "--relay", "http://127.0.0.1:9"), {"FUSEVAULT_CODE": "1-a-b"}, 14, ""),
              # A state directory that cannot hold the mount's log: said here, not by a server that died.
              (("--state-dir", "/proc/nope", "mount", vault, mnt), {}, 4, "cannot keep the mount's log")]
    with ThreadPoolExecutor(4) as pool:  # each is a process of its own: the test takes less time
        results = list(pool.map(lambda case: fusevault(*case[0], env=case[1]), cases))
    for (_, _, code, words), result in zip(cases, results):
        clean(result, code, words)
    assert not is_mounted(mnt)


def test_a_closed_pipe_on_standard_output_ends_quietly(vault: Path) -> None:
    """`fusevault config show | head -1`: the reader left; SIGPIPE's exit status, nothing on stderr."""
    for args in [("info", vault), ("config", "show", "--vault", vault), ("user", "list", "--vault", vault),
                 ("completion", "bash"), ("history", "--help")]:
        read_end, write_end = os.pipe()
        os.close(read_end)
        try:
            result = subprocess.run([sys.executable, "-m", "fusevault", *map(str, args)], stdout=write_end,
                                    stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                                    env={**os.environ, "FUSEVAULT_PASSPHRASE": PASSPHRASE})
        finally:
            os.close(write_end)
        assert result.returncode in (0, 141) and result.stderr == "", (args, result.stderr)


# --- Ctrl-D at every prompt


def on_a_terminal(args: list, typed: list[str | None], env: dict | None = None) -> tuple[int, str]:
    """Run fusevault with a pseudo-terminal as its controlling tty; each of ``typed``
    answers the next prompt (None: Ctrl-D)."""
    main, tty = pty.openpty()

    def make_controlling() -> None:
        os.setsid()
        fcntl.ioctl(tty, termios.TIOCSCTTY, 0)

    environment = {k: v for k, v in os.environ.items() if k not in ("FUSEVAULT_PASSPHRASE", "FUSEVAULT_CODE")}
    proc = subprocess.Popen([sys.executable, "-m", "fusevault", *map(str, args)], stdin=tty, stdout=tty,
                            stderr=tty, env={**environment, **(env or {})}, preexec_fn=make_controlling)
    os.close(tty)
    output = b""

    def read() -> bytes:
        ready, _, _ = select.select([main], [], [], 60)
        assert ready, output
        try:
            return os.read(main, 1024)
        except OSError:  # the terminal closed: the program ended
            return b""

    for answer in typed:
        # A prompt ends its line with ": " and waits (getpass drops what was typed before it).
        while not output.rsplit(b"\n", 1)[-1].endswith(b": "):
            chunk = read()
            assert chunk, output
            output += chunk
        os.write(main, b"\x04" if answer is None else answer.encode() + b"\n")
        output += b"\n"  # the next prompt is searched for after this one
    code = proc.wait(60)
    while chunk := read():
        output += chunk
    os.close(main)
    return code, output.decode(errors="replace")


def test_ctrl_d_at_any_prompt_is_one_line(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for args in [["init", tmp_path / "new"], ["mount", vault, mnt], ["passwd", vault],
                 ["user", "add", "bob", "--vault", vault], ["unlock", mnt],
                 ["history", "x", "--vault", vault],
                 ["receive", "1234", "-o", tmp_path]]:
        code, out = on_a_terminal(args, [None])
        assert TRACEBACK not in out and code == 12, (args, out)
        assert "was given" in out, (args, out)
    assert not (tmp_path / "new").exists() and not is_mounted(mnt)
    # The second prompt of a new passphrase too.
    code, out = on_a_terminal(["init", tmp_path / "new"], ["first", None])
    assert code == 12 and TRACEBACK not in out and not (tmp_path / "new").exists(), out


# --- a mount point whose server died


def test_mount_over_a_crashed_mount_clears_it_and_mounts(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "kept.txt").write_text("closed before the crash")
        for pid in server_pids(mnt):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while server_pids(mnt) and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(OSError):
            os.statvfs(mnt)  # Transport endpoint is not connected
        assert is_mounted(mnt)
        again = fusevault("mount", vault, mnt)
        assert again.returncode == 0 and TRACEBACK not in again.stderr, again.stderr
        assert "cleared the crashed mount" in again.stderr
        assert (mnt / "kept.txt").read_text() == "closed before the crash"


# --- paths a user may not read or write (a real user without root's rights)


@pytest.fixture(scope="module")
def stranger():
    """A Linux user without root's rights, and a way to run this checkout's fusevault as them."""
    if os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("setpriv"):
        pytest.skip("needs root, useradd and setpriv (a real Linux user)")
    with linux_users("errs") as users:
        yield from _stranger(users["errs"])


def _stranger(user: pwd.struct_passwd):
    home = Path(tempfile.mkdtemp(prefix="fverr", dir="/tmp"))
    home.chmod(0o755)
    os.chown(home, user.pw_uid, user.pw_gid)
    environment = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(home), "PYTHONPATH": str(ROOT),
                   "FUSEVAULT_RUNTIME_DIR": str(home / "run"), "FUSEVAULT_STATE_DIR": str(home / "state"),
                   "FUSEVAULT_CONFIG_DIR": str(home / "config")}

    def run(*args, env: dict | None = None, python: str | None = None) -> subprocess.CompletedProcess:
        command = [python or interpreter, "-S", "-c", LAUNCH, SITE, *map(str, args)]
        return subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                               "--clear-groups", "env", "-i",
                               *(f"{k}={v}" for k, v in {**environment, **(env or {})}.items()), *command],
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)

    minor = f"python3.{sys.version_info.minor}"
    interpreter = ""
    for candidate in (sys.executable, f"/usr/bin/{minor}", f"/usr/local/bin/{minor}"):
        if run("--version", python=candidate).returncode == 0:
            interpreter = candidate
            break
    else:
        pytest.fail(f"no interpreter {user.pw_name} may run imports fusevault from {SITE}")
    run.home = home  # type: ignore[attr-defined]
    yield run
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def open_place() -> Path:
    """A folder the stranger may enter (tmp_path's parents may be closed to them)."""
    place = Path(tempfile.mkdtemp(prefix="fverrp", dir="/tmp"))
    place.chmod(0o755)
    yield place
    shutil.rmtree(place, ignore_errors=True)


def test_send_refuses_what_the_user_cannot_read(stranger, open_place: Path) -> None:
    secret = open_place / "secret.txt"
    secret.write_text("root's")
    secret.chmod(0o600)
    result = stranger("send", secret, "--relay", "http://127.0.0.1:9")
    clean(result, 22, f"cannot read {secret}")
    folder = open_place / "folder"
    (folder / "closed").mkdir(parents=True)
    (folder / "open.txt").write_text("anyone's")
    (folder / "closed" / "inside.txt").write_text("root's")
    (folder / "closed").chmod(0o700)
    # The folder is not sent without what the user cannot read in it.
    clean(stranger("send", folder, "--relay", "http://127.0.0.1:9"), 22, f"cannot read {folder / 'closed'}")
    clean(stranger("send", Path("/root/anything")), 22, "cannot read /root/anything")


def test_receive_refuses_a_folder_it_cannot_write_and_makes_a_missing_one(
        redis_url: str, stranger, open_place: Path, tmp_path: Path) -> None:
    (tmp_path / "report.txt").write_text("the report")
    closed = open_place / "closed"
    closed.mkdir(mode=0o755)
    with running_relay(redis_url) as (_, url), sending(url, tmp_path / "report.txt") as (sender, name, code):
        for out in (closed, closed / "new" / "deeper"):
            result = stranger("receive", name, "-o", out, "--relay", url, env={"FUSEVAULT_CODE": code})
            clean(result, 22, "is not writable for you")
        assert list(closed.iterdir()) == []
        # A folder that is not there yet is made, as mkdir -p would.
        made = tmp_path / "new" / "deeper"
        result = fusevault("receive", name, "-o", made, "--relay", url, passphrase=None,
                           env={"FUSEVAULT_CODE": code})
        assert result.returncode == 0, result.stderr
        assert (made / "report.txt").read_text() == "the report"
        assert sender.wait(60) == 0


def test_mount_on_a_folder_the_user_may_not_write(stranger, open_place: Path) -> None:
    fast = {"FUSEVAULT_INSECURE_FAST_KDF": "1", "FUSEVAULT_PASSPHRASE": PASSPHRASE}
    theirs = stranger.home / "vault"  # type: ignore[attr-defined]
    assert stranger("init", theirs, env=fast).returncode == 0
    roots = open_place / "mnt"
    roots.mkdir(mode=0o755)
    result = stranger("mount", theirs, roots, env=fast)
    clean(result, 22, "not writable for you")
    assert not is_mounted(roots)


def test_a_bug_is_one_line_on_the_terminal_and_a_traceback_in_a_crash_log() -> None:
    """What no command expected (a bug) still reaches the terminal as one line."""
    bug = ("import sys; from fusevault import log_lines; from fusevault.cli import guard; "
           "log_lines.to_stderr(False); sys.exit(guard.run(lambda: {}['missing'], 'test', False))")
    result = subprocess.run([sys.executable, "-c", bug], capture_output=True, text=True)
    clean(result, 70, "internal error (KeyError: 'missing'); please report it with ")
    log = Path(result.stderr.strip().rsplit(" ", 1)[-1])
    assert log.parent == Path(os.environ["FUSEVAULT_STATE_DIR"]) / "logs"
    assert log.stat().st_mode & 0o777 == 0o600
    assert TRACEBACK in log.read_text() and "KeyError" in log.read_text()
