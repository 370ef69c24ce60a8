"""The mount's server process: started clean, hardened, handed its secret over a pipe.

``fusevault mount`` (the command) checks what it can and reads the
passphrase, then starts the server (fs/server.py) as a new program
(``python -m fusevault mount ...``, which $FUSEVAULT_SERVER sends there): in
the background a new process that reports on a pipe when the mount answers
or why it failed; with ``--foreground`` the command replaces itself (same
pid, as systemd's Type=notify wants).

Why a new program and not a fork: /proc/PID/environ shows the environment a
program was started with for its whole life, whatever it later unsets.  The
server is started with only what the interpreter needs to start; the rest of
the environment and the passphrase come over a pipe.  Passphrase variables
are never restored; the others (NOTIFY_SOCKET, CouchDB and peer credentials
the mount reads later) live on in the process's memory only.

Before it reads anything the server makes itself undumpable (no core file,
no ptrace, and /proc/PID/environ and mem become root's) and locks its memory
out of swap where it may (see docs/SECURITY.md).  Its command line repeats
the command's, for ``ps``; what it does comes from the pipe.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from fusevault import log_lines, paths
from fusevault.errors import INTERNAL_ERROR, InvalidInput, VaultError, explain

log = logging.getLogger("fusevault")

SECRET_VARS = ("FUSEVAULT_PASSPHRASE", "FUSEVAULT_NEW_PASSPHRASE", "FUSEVAULT_CODE")
SERVER_VAR = "FUSEVAULT_SERVER"  # "DATA_FD[,READY_FD]": set only in a server's start environment
# What the interpreter needs before it reads the pipe; everything else waits for it.
START_VARS = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR")

PR_SET_DUMPABLE = 4
MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT = 1, 2, 4
CAP_IPC_LOCK = 14
F_SETPIPE_SZ = 1031


@dataclass
class Handed:
    args: dict  # the mount's arguments, as the command parsed them
    secret: bytes | None
    ready: int | None  # the command waits for one line here; None: in the foreground
    memory: str  # what harden() could do about swap, for the log


_handed: Handed | None = None


def handed() -> Handed | None:
    """In the server: what the command handed over; None in the command itself."""
    return _handed


# --- the command's side


def launch(argv: list[str], args: dict, secret: bytes | None, *, foreground: bool) -> str:
    """Start the server of ``fusevault ARGV`` (``args``: them parsed, for fs/server.py);
    its answer: "ok" or "CODE message".  In the foreground this process
    becomes the server and never returns."""
    kept = {k: v for k, v in os.environ.items() if k not in SECRET_VARS}
    payload = json.dumps({"env": kept, "args": args, "secret": None if secret is None else
                          base64.b64encode(secret).decode()}).encode()
    command = [sys.executable, "-P", "-m", "fusevault", *argv]
    env = _start_env()
    data_r, data_w = os.pipe()
    if foreground:
        _write_all_now(data_w, payload)
        os.set_inheritable(data_r, True)
        env[SERVER_VAR] = str(data_r)
        _become(command, env)
    ready_r, ready_w = os.pipe()
    env[SERVER_VAR] = f"{data_r},{ready_w}"
    try:
        subprocess.Popen(command, env=env, pass_fds=(data_r, ready_w), stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError as err:
        os.close(data_w)
        os.close(ready_r)
        raise VaultError(f"cannot start the mount server {command[0]}: {err.strerror}") from None
    finally:
        os.close(data_r)
        os.close(ready_w)
    try:
        with open(data_w, "wb") as pipe:
            pipe.write(payload)
    except BrokenPipeError:
        pass  # the server ended already: its answer (or none) says why
    with os.fdopen(ready_r, "rb") as pipe:
        return pipe.readline().decode(errors="replace").strip()


def _start_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in START_VARS or k.startswith(("LC_", "PYTHON"))}
    # The server imports what this process imported (this fusevault, a
    # virtualenv, PYTHONPATH, `site.addsitedir`); -P keeps the current folder
    # off its path.
    here = str(Path(__file__).resolve().parents[2])  # this very fusevault first
    found = [p for p in sys.path if p and os.path.exists(p)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([here, *found]))
    return env


def _write_all_now(fd: int, payload: bytes) -> None:
    """Fill a pipe nobody reads yet (the reader is this process after exec)."""
    with contextlib.suppress(OSError):
        if len(payload) > 65536:
            fcntl.fcntl(fd, F_SETPIPE_SZ, len(payload))
    os.set_blocking(fd, False)
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(fd, view):]
    except BlockingIOError:
        raise InvalidInput("the environment is too large to hand to the mount server") from None
    finally:
        os.close(fd)


def _become(command: list[str], env: dict[str, str]) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.execve(command[0], command, env)


def wait_exited(pid: int, seconds: float) -> bool:
    """After an unmount: whether the server ``pid`` finished saving and exited within ``seconds``."""
    deadline = time.monotonic() + seconds
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not _running(pid)


def _running(pid: int) -> bool:
    """True while the server saves and exits; an exited server may linger as a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as proc:
            return proc.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


# --- the server's side


def receive() -> None:
    """In a server (started by ``launch``): harden this process, then take its
    environment and secret from the pipe.  Nothing to do in a command."""
    global _handed
    fds = os.environ.get(SERVER_VAR)
    if fds is None:
        return
    memory = harden()
    try:
        data_fd, _, ready = fds.partition(",")
        with open(int(data_fd), "rb") as pipe:
            payload = json.loads(pipe.read())
        secret, args = payload["secret"], dict(payload["args"])
        os.environ.clear()  # unsetenv each: programs this one starts get the environment below
        os.environ.update(payload["env"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise SystemExit(f"fusevault: the mount server got nothing from the mount command ({err})") from None
    _handed = Handed(args, None if secret is None else base64.b64decode(secret),
                     int(ready) if ready else None, memory)


def harden() -> str:
    """No core dumps, not dumpable, memory locked where allowed; returns what became of the memory."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        reason = os.strerror(ctypes.get_errno())
        raise SystemExit(f"fusevault: cannot make the mount server undumpable: {reason}")
    soft, _ = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if soft != resource.RLIM_INFINITY and not _capable(CAP_IPC_LOCK):
        # Locking all of it would soon fail under a small RLIMIT_MEMLOCK (8 MiB is usual).
        return f"memory not locked (RLIMIT_MEMLOCK is {soft} bytes): keys may reach swap"
    if libc.mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0:
        return f"memory not locked ({os.strerror(ctypes.get_errno())}): keys may reach swap"
    return "memory locked: keys never reach swap"


def _capable(cap: int) -> bool:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> cap & 1)
    except (OSError, ValueError):
        pass
    return False


def serve(server: Handed, mountpoint: Path, run: Callable[[Callable[[], None] | None], int]) -> int:
    """Run the mount (``run(on_ready)``), telling the waiting command when it
    answers or why it failed; in the foreground the log says so instead."""
    if server.ready is None:
        log.debug("%s", server.memory)
        return run(None)
    ready: int | None = server.ready

    def tell(line: str) -> None:
        nonlocal ready
        if ready is not None:
            with contextlib.suppress(OSError):
                os.write(ready, line.encode() + b"\n")
                os.close(ready)
            ready = None

    try:
        try:
            _log_to_file(mountpoint)
        except OSError as err:  # one line, not "see the log" for a log that cannot be
            raise (explain(err, "cannot keep the mount's log")
                   or InvalidInput(f"cannot keep the mount's log: {err}")) from None
        log.debug("%s", server.memory)
        run(lambda: tell("ok"))
    except VaultError as err:
        log.error("%s", err)
        tell(f"{err.exit_code} {err}")
        return err.exit_code
    except BaseException:
        log.exception("the mount failed")
        tell(f"{INTERNAL_ERROR} internal error: the mount failed; see the log in the state "
             "directory")
        return INTERNAL_ERROR
    return 0


def _log_to_file(mountpoint: Path) -> None:
    logs = paths.state_dir() / "logs"
    logs.mkdir(exist_ok=True, mode=0o700)
    name = paths.control_socket(mountpoint).stem
    handler = log_lines.to_file(logs / f"mount-{name}.log")
    root = logging.getLogger()
    root.handlers[:] = [handler]
