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
PR_SET_DUMPABLE = 4


class HostAccess(Protocol):
    """Operations on host paths, with one user's rights (sync: call from a worker thread).

    Errors are ``OSError`` with the errno the kernel gave the user.  ``dir_fd``
    (a descriptor this object opened) makes ``path`` relative to that folder,
    as ``openat(2)`` and its family do, so a path cannot be swapped under
    the caller between two steps."""

    uid: int
    gid: int
    # True when this process acts for another user (a shared mount, run by
    # root): what cannot be done with that user's rights is refused.
    on_behalf: bool

    def open(self, path: str, flags: int, mode: int = 0o600, *, dir_fd: int | None = None) -> int:
        """A descriptor of ``path`` (O_CLOEXEC added), as the user opened it."""

    def mkdir(self, path: str, mode: int = 0o700, *, dir_fd: int | None = None) -> None: ...

    def rename(self, src: str, dst: str, *, dir_fd: int | None = None, noreplace: bool = False) -> None:
        """``noreplace``: FileExistsError rather than replacing ``dst`` (RENAME_NOREPLACE)."""

    def unlink(self, path: str, *, dir_fd: int | None = None) -> None: ...

    def symlink(self, target: str, path: str, *, dir_fd: int | None = None) -> None: ...

    def utime(self, path: str, ns: tuple[int, int]) -> None:
        """Set access and modification times of ``path`` itself (not a link's target)."""

    def chmod(self, path: str, mode: int) -> None:
        """Mode bits of ``path``; never setuid, setgid or sticky (they are dropped)."""

    def lstat(self, path: str, *, dir_fd: int | None = None) -> os.stat_result: ...

    def listdir(self, path: str) -> list[str]: ...

    def scan(self, path: str) -> list[tuple[str, os.stat_result]]:
        """Every entry of a folder with its ``lstat`` (one call for a whole folder)."""

    def access(self, path: str, mode: int) -> bool:
        """``os.access`` for the user (their real ids, which are also their effective ones)."""

    def realpath(self, path: str) -> str: ...

    def close(self) -> None: ...


SAFE_MODE_BITS = 0o777  # never setuid, setgid or sticky on anything written for a user


# --- the operations, shared by Direct and the helper ------------------------------------


def _do(op: str, args: list, dir_fd: int | None = None) -> tuple[Any, int | None]:
    """Run one operation; (a JSON-ready result, a descriptor to hand over or None)."""
    if op == "open":
        path, flags, mode = args
        return None, os.open(path, int(flags) | os.O_CLOEXEC, int(mode) & SAFE_MODE_BITS, dir_fd=dir_fd)
    if op == "mkdir":
        os.mkdir(args[0], int(args[1]) & SAFE_MODE_BITS, dir_fd=dir_fd)
    elif op == "rename":
        _rename(args[0], args[1], dir_fd, bool(args[2]))
    elif op == "unlink":
        os.unlink(args[0], dir_fd=dir_fd)
    elif op == "symlink":
        os.symlink(args[0], args[1], dir_fd=dir_fd)
    elif op == "utime":
        os.utime(args[0], ns=(int(args[1]), int(args[2])), follow_symlinks=False)
    elif op == "chmod":
        os.chmod(args[0], int(args[1]) & SAFE_MODE_BITS, follow_symlinks=True)
    elif op == "lstat":
        return _fields(os.stat(args[0], dir_fd=dir_fd, follow_symlinks=False)), None
    elif op == "scan":
        found = []
        with os.scandir(args[0]) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):  # gone meanwhile
                    found.append([entry.name, _fields(entry.stat(follow_symlinks=False))])
        return found, None
    elif op == "listdir":
        return os.listdir(args[0]), None
    elif op == "access":
        return os.access(args[0], int(args[1])), None
    elif op == "realpath":
        return os.path.realpath(args[0]), None
    else:
        raise OSError(errno.ENOSYS, f"unknown operation {op}")
    return None, None


RENAME_NOREPLACE = 1
AT_FDCWD = -100
_libc: Any = None


def _rename(src: str, dst: str, dir_fd: int | None, noreplace: bool) -> None:
    if not noreplace:
        os.rename(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return
    try:
        _renameat2(src, dst, dir_fd)
        return
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise
    # The file system has no RENAME_NOREPLACE: a hard link refuses an existing name too.
    try:
        os.link(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
    except OSError as err:
        if err.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        # No hard links either (FAT): look, then rename.  Racy, but it is
        # the user's own rename, so it can only replace what they may.
        try:
            os.stat(dst, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            os.rename(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            return
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst) from None
    os.unlink(src, dir_fd=dir_fd)


def _renameat2(src: str, dst: str, dir_fd: int | None) -> None:
    global _libc
    if _libc is None:
        import ctypes

        _libc = ctypes.CDLL(None, use_errno=True)
    call = getattr(_libc, "renameat2", None)
    if call is None:
        raise OSError(errno.ENOSYS, "renameat2 is not in this C library")
    fd = AT_FDCWD if dir_fd is None else dir_fd
    if call(fd, os.fsencode(src), fd, os.fsencode(dst), RENAME_NOREPLACE) != 0:
        import ctypes

        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), dst)


def _fields(found: os.stat_result) -> list:
    return [*tuple(found)[:10], found.st_atime_ns, found.st_mtime_ns, found.st_ctime_ns]


def _stat_result(fields: list) -> os.stat_result:
    *ten, atime_ns, mtime_ns, ctime_ns = fields
    return os.stat_result(ten, {"st_atime_ns": atime_ns, "st_mtime_ns": mtime_ns, "st_ctime_ns": ctime_ns,
                                "st_mtime": mtime_ns / 1e9, "st_atime": atime_ns / 1e9,
                                "st_ctime": ctime_ns / 1e9})


class _Calls:
    """The typed methods of HostAccess, on top of one ``call(op, *args, fd=dir_fd)``."""

    uid: int
    gid: int
    call: Callable[..., tuple[Any, int | None]]

    def open(self, path: str, flags: int, mode: int = 0o600, *, dir_fd: int | None = None) -> int:
        _, fd = self.call("open", os.fsdecode(path), flags, mode, fd=dir_fd)
        assert fd is not None
        return fd

    def mkdir(self, path: str, mode: int = 0o700, *, dir_fd: int | None = None) -> None:
        self.call("mkdir", os.fsdecode(path), mode, fd=dir_fd)

    def rename(self, src: str, dst: str, *, dir_fd: int | None = None, noreplace: bool = False) -> None:
        self.call("rename", os.fsdecode(src), os.fsdecode(dst), noreplace, fd=dir_fd)

    def unlink(self, path: str, *, dir_fd: int | None = None) -> None:
        self.call("unlink", os.fsdecode(path), fd=dir_fd)

    def symlink(self, target: str, path: str, *, dir_fd: int | None = None) -> None:
        self.call("symlink", os.fsdecode(target), os.fsdecode(path), fd=dir_fd)

    def utime(self, path: str, ns: tuple[int, int]) -> None:
        self.call("utime", os.fsdecode(path), ns[0], ns[1])

    def chmod(self, path: str, mode: int) -> None:
        self.call("chmod", os.fsdecode(path), mode)

    def lstat(self, path: str, *, dir_fd: int | None = None) -> os.stat_result:
        fields, _ = self.call("lstat", os.fsdecode(path), fd=dir_fd)
        return _stat_result(fields)

    def listdir(self, path: str) -> list[str]:
        return self.call("listdir", os.fsdecode(path))[0]

    def scan(self, path: str) -> list[tuple[str, os.stat_result]]:
        return [(name, _stat_result(fields)) for name, fields in self.call("scan", os.fsdecode(path))[0]]

    def access(self, path: str, mode: int) -> bool:
        return bool(self.call("access", os.fsdecode(path), mode)[0])

    def realpath(self, path: str) -> str:
        return self.call("realpath", os.fsdecode(path))[0]


class Direct(_Calls):
    """This process's own rights: a personal mount, or a command run by the user."""

    on_behalf = False

    def __init__(self) -> None:
        self.uid = os.geteuid()
        self.gid = os.getegid()

    def call(self, op: str, *args: Any, fd: int | None = None) -> tuple[Any, int | None]:
        return _do(op, list(args), fd)

    def close(self) -> None:
        pass


# --- the wire: JSON messages on SOCK_SEQPACKET, which keeps each datagram whole --------
#
# A message longer than one datagram (a large folder's listing) goes in pieces:
# each but the last starts with "+", the last with "."; a whole message starts
# with "{".  A descriptor rides on the first datagram.

PIECE = MAX_MESSAGE - 1
MAX_TOTAL = 64 * 1024 * 1024  # more is a broken peer, not a folder


def _send(sock: socket.socket, message: dict, fd: int | None = None) -> None:
    data = json.dumps(message).encode()
    pieces = [data] if len(data) <= MAX_MESSAGE else \
        [(b"+" if end < len(data) else b".") + data[start:end]
         for start in range(0, len(data), PIECE) for end in [min(start + PIECE, len(data))]]
    for number, piece in enumerate(pieces):
        if fd is None or number:
            sock.sendmsg([piece])
        else:
            sock.sendmsg([piece], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])


def _receive(sock: socket.socket) -> tuple[dict | None, int | None]:
    data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 1)
    fd = fds[0] if fds else None
    if data[:1] == b"+":
        parts = [data[1:]]
        total = len(data)
        while data[:1] == b"+" and total <= MAX_TOTAL:
            data, more, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 1)
            for stray in more:
                os.close(stray)
            if data[:1] in (b"+", b"."):
                parts.append(data[1:])
                total += len(data)
            else:
                data = b""
                break
        data = b"".join(parts) if data[:1] == b"." else b""
    try:
        message = json.loads(data) if data else None
    except ValueError:
        message = None
    if not isinstance(message, dict):
        if fd is not None:
            os.close(fd)
        return None, None
    return message, fd


HELPER_TIMEOUT = 120.0  # seconds for one operation; a helper its user stopped (SIGSTOP) is given up


class AsUser(_Calls):
    """A helper process running as one Linux user; one request at a time.

    A helper that is gone (killed, stopped past the timeout) makes the call
    fail with EIO; the next call starts a new one (``respawn``)."""

    on_behalf = True

    def __init__(self, uid: int, gid: int, sock: socket.socket, pid: int,
                 respawn: Callable[[], tuple[socket.socket, int]] | None = None) -> None:
        self.uid = uid
        self.gid = gid
        self.timeout = HELPER_TIMEOUT
        self._sock: socket.socket | None = sock
        self._pid = pid
        self._respawn = respawn
        self._lock = threading.Lock()

    def call(self, op: str, *args: Any, fd: int | None = None) -> tuple[Any, int | None]:
        with self._lock:
            if self._sock is None:
                if self._respawn is None:
                    raise OSError(errno.EIO, f"the helper of uid {self.uid} is gone")
                self._sock, self._pid = self._respawn()
            try:
                self._sock.settimeout(self.timeout)
                _send(self._sock, {"op": op, "args": list(args)}, fd)
                answer, got = _receive(self._sock)
            except OSError as err:
                self._forget()
                raise OSError(errno.EIO, f"the helper of uid {self.uid} is gone ({err})") from None
            if answer is None:
                self._forget()
                raise OSError(errno.EIO, f"the helper of uid {self.uid} is gone")
        if "errno" in answer:
            if got is not None:
                os.close(got)
            code = int(answer["errno"])
            raise OSError(code, os.strerror(code))
        return answer.get("result"), got

    def _forget(self) -> None:
        # Closing our end is enough: a live helper reads EOF and exits.  It is
        # the spawner's child, reaped there; never signalled by pid (reused).
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock = None

    def close(self) -> None:
        with self._lock:
            self._forget()
            self._respawn = None


def _serve_requests(sock: socket.socket) -> None:
    """The helper's loop: answer until the mount closes its end."""
    while True:
        try:
            request, dir_fd = _receive(sock)
        except OSError:
            return
        if request is None:
            return
        try:
            _answer(sock, request, dir_fd)
        finally:
            if dir_fd is not None:
                os.close(dir_fd)


def _answer(sock: socket.socket, request: dict, dir_fd: int | None) -> None:
    op, args = request.get("op"), request.get("args")
    if not isinstance(op, str) or not isinstance(args, list):
        _send(sock, {"errno": errno.EINVAL})
        return
    try:
        result, fd = _do(op, args, dir_fd)
    except OSError as err:
        _send(sock, {"errno": err.errno or errno.EIO})
        return
    except (TypeError, ValueError):
        _send(sock, {"errno": errno.EINVAL})
        return
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
    # Still not the user's to trace or dump (whatever fs.suid_dumpable says):
    # it holds a line to the mount, and the mount's memory as it was at fork.
    import ctypes

    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "could not stay undumpable")
    with contextlib.suppress(OSError):
        os.chdir("/")


def _keep_only(keep: int) -> None:
    """In a fresh child: every descriptor the mount had (its log, its store,
    a pipe the mount command waits on) closed; stdio on /dev/null."""
    null = os.open(os.devnull, os.O_RDWR)
    for std in (0, 1, 2):
        if std != keep:
            os.dup2(null, std)
    if null > 2 and null != keep:
        os.close(null)
    import resource

    most = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    most = most if most != resource.RLIM_INFINITY and most < 1 << 20 else 1 << 20
    os.closerange(3, keep)
    os.closerange(keep + 1, max(keep + 1, most))


class Spawner:
    """Forked early by a root mount; forks a helper per user on request."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:  # the spawner
            code = 0
            try:
                ours.close()
                _keep_only(theirs.fileno())
                os.environ.clear()  # the mount's (credentials of peers, say) are nobody's business here
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
        """A helper running as ``uid``/``gid`` (and the user's groups), started again when it dies."""
        sock, pid = self._fork(uid, gid)
        return AsUser(uid, gid, sock, pid, respawn=lambda: self._fork(uid, gid))

    def _fork(self, uid: int, gid: int) -> tuple[socket.socket, int]:
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
        return socket.socket(fileno=fd), int(answer["pid"])

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
