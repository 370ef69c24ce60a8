"""A helper: a process running as one user, and ``AsUser``, the mount's end of it."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from fusevault.host_access.operations import Calls, do
from fusevault.host_access.rights import acting_as, user_groups
from fusevault.host_access.wire import receive, send

HELPER_TIMEOUT = 120.0  # seconds for one operation; a helper its user stopped (SIGSTOP) is given up


class AsUser(Calls):
    """A helper process running as one Linux user; one request at a time.

    A helper that is gone (killed, stopped past the timeout) makes the call
    fail with EIO; the next call starts a new one (``respawn``).  One given up
    is ended (``end``: its spawner kills it), never left alive beside the new
    one (attack round 53b, (3))."""

    on_behalf = True

    def __init__(self, uid: int, gid: int, sock: socket.socket, pid: int,
                 respawn: Callable[[], tuple[socket.socket, int]] | None = None,
                 end: Callable[[int], None] | None = None) -> None:
        self.uid = uid
        self.gid = gid
        self.timeout = HELPER_TIMEOUT
        self._sock: socket.socket | None = sock
        self._pid = pid
        self._respawn = respawn
        self._end = end
        self._lock = threading.Lock()
        self._groups = user_groups(uid, gid)  # the helper's (spawner.py ``_drop_to``)

    def thread_as_user(self) -> AbstractContextManager[None]:
        return acting_as(self.uid, self.gid, self._groups)

    def call(self, op: str, *args: Any, fd: int | None = None) -> tuple[Any, int | None]:
        with self._lock:
            if self._sock is None:
                if self._respawn is None:
                    raise OSError(errno.EIO, f"the helper of uid {self.uid} is gone")
                self._sock, self._pid = self._respawn()
            try:
                self._sock.settimeout(self.timeout)
                send(self._sock, {"op": op, "args": list(args)}, fd)
                answer, got = receive(self._sock)
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
        # Our end closed: a live helper reads EOF and exits; one its user stopped would not read it,
        # so its spawner kills it (a child it has not reaped: never another process by a reused pid).
        if self._sock is not None:
            if self._end is not None:
                self._end(self._pid)
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock = None

    def close(self) -> None:
        """Never waits (called on the mount's loop): a call in flight holds the lock while its
        helper, stopped by its user, answers nothing for up to ``timeout`` (attack round 53b, (2))."""
        self._respawn = None
        if self._lock.acquire(blocking=False):
            try:
                self._forget()
            finally:
                self._lock.release()
            return
        # A call is waiting on the helper: the helper ended (its socket is that thread's, left to it:
        # the call reads the end of file and fails with EIO at once, then forgets it).
        if self._end is not None:
            self._end(self._pid)


def serve_requests(sock: socket.socket) -> None:
    """The helper's loop: answer until the mount closes its end."""
    while True:
        try:
            request, dir_fd = receive(sock)
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
        send(sock, {"errno": errno.EINVAL})
        return
    try:
        result, fd = do(op, args, dir_fd)
    except OSError as err:
        send(sock, {"errno": err.errno or errno.EIO})
        return
    except (TypeError, ValueError):
        send(sock, {"errno": errno.EINVAL})
        return
    try:
        send(sock, {"result": result}, fd)
    finally:
        if fd is not None:
            os.close(fd)
