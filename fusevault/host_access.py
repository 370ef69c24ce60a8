"""Host paths touched with one Linux user's rights, never with root's.

A shared mount runs as root and serves many users.  Whatever one of them
asks it to do on the host's file system (export into a folder, read a
watched folder, delete an imported source) must be done with *their*
rights: otherwise any user could make root write a setuid binary into
/usr/local/bin or read /root/.ssh.  Checking paths first (``os.access``,
``realpath``) is not enough: the answer is root's, and the path can change
between the check and the use.

So the operation itself runs in a helper process that has dropped to the
caller's uid, gid and supplementary groups before it touches anything.  The
kernel then checks every component of every path, symbolic links included,
exactly as it would for the user: nothing needs re-checking here.  Files the
helper opens come back as descriptors (``SCM_RIGHTS``); the mount reads and
writes their contents through those, and can do no more with them than the
user could.

The helpers are forked by a *spawner*: a tiny process forked from the
mount before it holds any key or starts a thread, which stays root only to
fork and drop privileges.  A helper is therefore a copy of a process that
never knew a secret, and it is single-threaded (forking the mount itself,
with its threads and its users' keys, would be neither).

``Direct`` does the same operations in-process, for a personal mount: its
server already runs as the user (or is root's own mount).

    mount (root, keys) ──spawn(uid)──▶ spawner (root, no keys)
         ▲                                  │ fork, setgroups/setgid/setuid
         └──── requests, fds (SCM_RIGHTS) ── helper (the user)
"""

from __future__ import annotations

import array
import contextlib
import errno
import json
import os
import pwd
import socket
import threading
from collections.abc import Callable
from typing import Any, Protocol

MAX_MESSAGE = 64 * 1024


class HostAccess(Protocol):
    """Operations on host paths, with one user's rights (sync: call from a worker thread).

    Errors are ``OSError`` with the errno the kernel gave the user."""

    uid: int

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        """A descriptor of ``path`` (O_CLOEXEC added), as the user opened it."""

    def mkdir(self, path: str, mode: int = 0o700) -> None: ...

    def rename(self, src: str, dst: str) -> None: ...

    def unlink(self, path: str) -> None: ...

    def symlink(self, target: str, path: str) -> None: ...

    def utime(self, path: str, ns: tuple[int, int]) -> None:
        """Set access and modification times of ``path`` itself (not a link's target)."""

    def chmod(self, path: str, mode: int) -> None:
        """Mode bits of ``path``; never setuid, setgid or sticky (they are dropped)."""

    def lstat(self, path: str) -> os.stat_result: ...

    def listdir(self, path: str) -> list[str]: ...

    def access(self, path: str, mode: int) -> bool:
        """``os.access`` for the user (their real ids, which are also their effective ones)."""

    def realpath(self, path: str) -> str: ...

    def close(self) -> None: ...


SAFE_MODE_BITS = 0o777  # never setuid, setgid or sticky on anything written for a user


# --- the operations, shared by Direct and the helper ------------------------------------


def _do(op: str, args: list) -> tuple[Any, int | None]:
    """Run one operation; (a JSON-ready result, a descriptor to hand over or None)."""
    if op == "open":
        path, flags, mode = args
        return None, os.open(path, int(flags) | os.O_CLOEXEC, int(mode) & SAFE_MODE_BITS)
    if op == "mkdir":
        os.mkdir(args[0], int(args[1]) & SAFE_MODE_BITS)
    elif op == "rename":
        os.rename(args[0], args[1])
    elif op == "unlink":
        os.unlink(args[0])
    elif op == "symlink":
        os.symlink(args[0], args[1])
    elif op == "utime":
        os.utime(args[0], ns=(int(args[1]), int(args[2])), follow_symlinks=False)
    elif op == "chmod":
        os.chmod(args[0], int(args[1]) & SAFE_MODE_BITS, follow_symlinks=True)
    elif op == "lstat":
        found = os.lstat(args[0])
        return [*tuple(found)[:10], found.st_atime_ns, found.st_mtime_ns, found.st_ctime_ns], None
    elif op == "listdir":
        return os.listdir(args[0]), None
    elif op == "access":
        return os.access(args[0], int(args[1])), None
    elif op == "realpath":
        return os.path.realpath(args[0]), None
    else:
        raise OSError(errno.ENOSYS, f"unknown operation {op}")
    return None, None


def _stat_result(fields: list) -> os.stat_result:
    *ten, atime_ns, mtime_ns, ctime_ns = fields
    return os.stat_result(ten, {"st_atime_ns": atime_ns, "st_mtime_ns": mtime_ns, "st_ctime_ns": ctime_ns,
                                "st_mtime": mtime_ns / 1e9, "st_atime": atime_ns / 1e9,
                                "st_ctime": ctime_ns / 1e9})


class _Calls:
    """The typed methods of HostAccess, on top of one ``call(op, *args)``."""

    uid: int
    call: Callable[..., tuple[Any, int | None]]

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        _, fd = self.call("open", os.fspath(path), flags, mode)
        assert fd is not None
        return fd

    def mkdir(self, path: str, mode: int = 0o700) -> None:
        self.call("mkdir", os.fspath(path), mode)

    def rename(self, src: str, dst: str) -> None:
        self.call("rename", os.fspath(src), os.fspath(dst))

    def unlink(self, path: str) -> None:
        self.call("unlink", os.fspath(path))

    def symlink(self, target: str, path: str) -> None:
        self.call("symlink", os.fspath(target), os.fspath(path))

    def utime(self, path: str, ns: tuple[int, int]) -> None:
        self.call("utime", os.fspath(path), ns[0], ns[1])

    def chmod(self, path: str, mode: int) -> None:
        self.call("chmod", os.fspath(path), mode)

    def lstat(self, path: str) -> os.stat_result:
        fields, _ = self.call("lstat", os.fspath(path))
        return _stat_result(fields)

    def listdir(self, path: str) -> list[str]:
        return self.call("listdir", os.fspath(path))[0]

    def access(self, path: str, mode: int) -> bool:
        return bool(self.call("access", os.fspath(path), mode)[0])

    def realpath(self, path: str) -> str:
        return self.call("realpath", os.fspath(path))[0]


class Direct(_Calls):
    """This process's own rights: a personal mount, or a command run by the user."""

    def __init__(self) -> None:
        self.uid = os.geteuid()

    def call(self, op: str, *args: Any) -> tuple[Any, int | None]:
        return _do(op, list(args))

    def close(self) -> None:
        pass


# --- the wire: one datagram a message (SOCK_SEQPACKET keeps them whole) -----------------


def _send(sock: socket.socket, message: dict, fd: int | None = None) -> None:
    data = json.dumps(message).encode()
    if fd is None:
        sock.sendmsg([data])
    else:
        sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])


def _receive(sock: socket.socket) -> tuple[dict | None, int | None]:
    data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 1)
    fd = fds[0] if fds else None
    if not data:
        if fd is not None:
            os.close(fd)
        return None, None
    try:
        message = json.loads(data)
    except ValueError:
        message = None
    if not isinstance(message, dict):
        if fd is not None:
            os.close(fd)
        return None, None
    return message, fd


class AsUser(_Calls):
    """A helper process running as one Linux user; one request at a time."""

    def __init__(self, uid: int, sock: socket.socket, pid: int) -> None:
        self.uid = uid
        self._sock = sock
        self._pid = pid
        self._lock = threading.Lock()

    def call(self, op: str, *args: Any) -> tuple[Any, int | None]:
        with self._lock:
            try:
                _send(self._sock, {"op": op, "args": list(args)})
                answer, fd = _receive(self._sock)
            except OSError as err:
                raise OSError(errno.EIO, f"the helper of uid {self.uid} is gone ({err})") from None
        if answer is None:
            raise OSError(errno.EIO, f"the helper of uid {self.uid} is gone")
        if "errno" in answer:
            if fd is not None:
                os.close(fd)
            code = int(answer["errno"])
            raise OSError(code, os.strerror(code), answer.get("path"))
        return answer.get("result"), fd

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(self._pid, 0)


def _serve_requests(sock: socket.socket) -> None:
    """The helper's loop: answer until the mount closes its end."""
    while True:
        try:
            request, stray = _receive(sock)
        except OSError:
            return
        if stray is not None:
            os.close(stray)  # nobody hands the helper descriptors
        if request is None:
            return
        op, args = request.get("op"), request.get("args")
        if not isinstance(op, str) or not isinstance(args, list):
            _send(sock, {"errno": errno.EINVAL})
            continue
        try:
            result, fd = _do(op, args)
        except OSError as err:
            _send(sock, {"errno": err.errno or errno.EIO})
            continue
        except (TypeError, ValueError):
            _send(sock, {"errno": errno.EINVAL})
            continue
        try:
            _send(sock, {"result": result}, fd)
        finally:
            if fd is not None:
                os.close(fd)


def _drop_to(uid: int, gid: int) -> None:
    """Become the user for good: groups, then gid, then uid (real, effective, saved)."""
    try:
        name = pwd.getpwuid(uid).pw_name
        groups = os.getgrouplist(name, gid)
    except KeyError:
        groups = [gid]
    os.setgroups(groups)
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid):
        raise OSError(errno.EPERM, "could not drop privileges")
    with contextlib.suppress(OSError):
        os.chdir("/")


class Spawner:
    """Forked early by a root mount; forks a helper per user on request."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # the spawner
            code = 0
            try:
                ours.close()
                _spawn_loop(theirs)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        theirs.close()
        self._sock = ours
        self._pid = pid
        self._lock = threading.Lock()

    def helper(self, uid: int, gid: int) -> AsUser:
        """A new helper running as ``uid``/``gid`` (and the user's groups)."""
        with self._lock:
            try:
                _send(self._sock, {"uid": int(uid), "gid": int(gid)})
                answer, fd = _receive(self._sock)
            except OSError as err:
                raise OSError(errno.EIO, f"the spawner is gone ({err})") from None
        if answer is None or fd is None or "pid" not in answer:
            if fd is not None:
                os.close(fd)
            raise OSError(errno.EIO, f"no helper could be started for uid {uid}")
        return AsUser(uid, socket.socket(fileno=fd), int(answer["pid"]))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(self._pid, 0)


def _spawn_loop(sock: socket.socket) -> None:
    import signal

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # helpers are reaped by the kernel
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)  # the mount ends us by closing the socket
    while True:
        request, stray = _receive(sock)
        if stray is not None:
            os.close(stray)
        if request is None:
            return
        uid, gid = request.get("uid"), request.get("gid")
        if not (isinstance(uid, int) and isinstance(gid, int)) or uid <= 0 or gid < 0:
            _send(sock, {"errno": errno.EINVAL})  # never a helper that stays root
            continue
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # the helper
            code = 0
            try:
                sock.close()
                ours.close()
                _drop_to(uid, gid)
                os.umask(0o077)
                _serve_requests(theirs)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        theirs.close()
        try:
            _send(sock, {"pid": pid}, ours.fileno())
        finally:
            ours.close()
