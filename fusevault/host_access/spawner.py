"""The spawner: forked by a root mount before any key, it forks a helper per user on request."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import socket
import threading

from fusevault.host_access.helper import AsUser, serve_requests
from fusevault.host_access.rights import user_groups
from fusevault.host_access.wire import receive, send

PR_SET_DUMPABLE = 4
# Helpers of one uid alive at once (a live one, one being given up): a user who stops each one his
# mount gives up cannot make root's spawner fork more (attack round 53b, (3)).
HELPERS_PER_USER = 4
# Seconds the spawner waits for a request before reaping the helpers that ended meanwhile.
REAP_EVERY = 5.0


def _drop_to(uid: int, gid: int) -> None:
    """Become the user for good: groups, then gid, then uid (real, effective, saved)."""
    os.setgroups(user_groups(uid, gid))
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
        return AsUser(uid, gid, sock, pid, respawn=lambda: self._fork(uid, gid), end=self.end)

    def _fork(self, uid: int, gid: int) -> tuple[socket.socket, int]:
        with self._lock:
            try:
                send(self._sock, {"uid": int(uid), "gid": int(gid)})
                answer, fd = receive(self._sock)
            except OSError as err:
                raise OSError(errno.EIO, f"the spawner is gone ({err})") from None
        if answer is None or fd is None or "pid" not in answer:
            if fd is not None:
                os.close(fd)
            raise OSError(errno.EIO, f"no helper could be started for uid {uid}")
        return socket.socket(fileno=fd), int(answer["pid"])

    def end(self, pid: int) -> None:
        """Have the helper ``pid`` killed (one given up: stopped by its user, say).  Never waits: a
        datagram the spawner acts on, no answer; it kills only a child of its own not yet reaped, so
        never a process that took a reused pid."""
        with contextlib.suppress(OSError):
            self._sock.sendmsg([json.dumps({"end": int(pid)}).encode()], [], socket.MSG_DONTWAIT)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(self._pid, 0)


def _spawn_loop(sock: socket.socket) -> None:
    # Helpers are reaped here, not by the kernel: a pid not yet reaped is never another process's, so
    # one given up may be killed by it (``end``), and the helpers alive are counted per uid.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)  # the mount ends us by closing the socket
    helpers: dict[int, int] = {}  # pid -> uid, every child not yet reaped
    sock.settimeout(REAP_EVERY)
    while True:
        _reap(helpers)
        try:
            request, stray = receive(sock)
        except TimeoutError:
            continue
        if stray is not None:
            os.close(stray)
        if request is None:
            return
        if "end" in request:
            _end(helpers, request["end"])
            continue
        uid, gid = request.get("uid"), request.get("gid")
        if not (isinstance(uid, int) and isinstance(gid, int)) or uid <= 0 or gid < 0:
            send(sock, {"errno": errno.EINVAL})  # never a helper that stays root
            continue
        if sum(owner == uid for owner in helpers.values()) >= HELPERS_PER_USER:
            send(sock, {"errno": errno.EAGAIN})
            continue
        _fork_helper(sock, helpers, uid, gid)


def _reap(helpers: dict[int, int]) -> None:
    while helpers:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            helpers.clear()
            return
        if pid == 0:
            return
        helpers.pop(pid, None)


def _end(helpers: dict[int, int], pid: object) -> None:
    """SIGKILL a helper of ours (its user may have stopped it: SIGKILL ends a stopped process too)."""
    if not isinstance(pid, int) or pid not in helpers:
        return  # not ours, or reaped already (its pid may be anyone's now)
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)  # reaped by the next ``_reap``: never waited for here


def _fork_helper(sock: socket.socket, helpers: dict[int, int], uid: int, gid: int) -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        pid = os.fork()
    except OSError as err:  # no process left for us (the mount's cgroup full): this request fails
        ours.close()
        theirs.close()
        send(sock, {"errno": err.errno or errno.EAGAIN})
        return
    if pid == 0:  # the helper
        code = 0
        try:
            sock.close()
            ours.close()
            _drop_to(uid, gid)
            os.umask(0o077)
            serve_requests(theirs)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    helpers[pid] = uid
    theirs.close()
    try:
        send(sock, {"pid": pid}, ours.fileno())
    finally:
        ours.close()
