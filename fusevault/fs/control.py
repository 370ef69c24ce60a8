"""The control socket of a running mount: one JSON request, one JSON answer.

A personal mount's socket (0600) answers only its own uid and root; a shared
mount's (0666) answers root and the uids its ``admit`` predicate names (the
mapped ones).  The caller is known from SO_PEERCRED and refused at accept,
before anything is read.  Other local users must not be able to take the
mount down through it: connections are capped overall and per uid, a
request must arrive within READ_TIMEOUT, and running out of file
descriptors (EMFILE) makes accept wait and retry, never ends the mount.

The client (``request``) checks the other end too: the socket's folder must
be the caller's or root's and writable by nobody else, and the server must
run as the caller or root, before a request (an unlock carries the
passphrase) is sent.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import select
import socket
import stat
import struct
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import trio

from fusevault.encoding import loads_untrusted
from fusevault.errors import Unsafe, VaultError
from fusevault.shortening import shortened

log = logging.getLogger(__name__)

MAX_REQUEST = 64 * 1024
READ_SECONDS = 5  # the whole request, from accept: a silent or trickling client is dropped


def _read_timeout() -> float:
    """``READ_SECONDS``, or shorter (1 s at least) where FUSEVAULT_CONTROL_READ_SECONDS says so: the
    tests whose scenes wait for idle clients to be dropped (tests/mount/test_local_safety.py) shorten
    it, as FUSEVAULT_LONGPOLL_SECONDS shortens the pull's longpoll.  A shorter wait only drops a
    silent client sooner (it gives other users less, never more); anything else (longer, zero, not a
    number) is the default."""
    return float(shortened("FUSEVAULT_CONTROL_READ_SECONDS", READ_SECONDS))


READ_TIMEOUT = _read_timeout()
WRITE_TIMEOUT = 10.0  # the answer: a client that never reads is dropped
MAX_CONNECTIONS = 128  # at once, all uids but root; well below the usual 1024 descriptors
MAX_PER_UID = 16
BACKOFF = 0.2  # seconds between accepts while out of file descriptors
# accept() errors that mean "no room now", not "this listener is broken".
_NO_ROOM = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

Handler = Callable[[dict, int], Awaitable[dict]]
Admit = Callable[[int], Awaitable[bool]]


def peer_uid(sock: Any) -> int:
    return peer_cred(sock)[1]


def peer_cred(sock: Any) -> tuple[int, int, int]:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)


def own_uid(uid: int) -> bool:
    return uid in (os.getuid(), 0)


async def _own(uid: int) -> bool:
    return own_uid(uid)


async def _everyone(uid: int) -> bool:
    return True


def _refusal(uid: int) -> dict:
    return {"error": f"uid {uid} is no user of this vault: its administrator maps you with "
                     f"`fusevault user add NAME --uid {uid}`", "code": 22}


async def serve(path: Path, handler: Handler, *, anyone: bool = False, admit: Admit | None = None,
                until_hangup: frozenset[str] = frozenset(),
                task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Answer requests on ``path``: from this uid and root, or (``anyone``: the
    socket is open to every local user) from root and whom ``admit`` names.
    The work of a request whose ``cmd`` is in ``until_hangup`` is cancelled
    when its client goes (``_while_connected``)."""
    if admit is None:
        admit = _everyone if anyone else _own
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    path.unlink(missing_ok=True)
    await listener.bind(str(path))
    os.chmod(path, 0o666 if anyone else 0o600)
    listener.listen(64)
    task_status.started()
    gate = _Gate()
    try:
        async with trio.open_nursery() as nursery:
            while True:
                conn = await _accept(listener)
                try:
                    uid = peer_uid(conn)
                except OSError:
                    conn.close()
                    continue
                if not gate.enter(uid):
                    await _refuse(conn, {"error": f"too many requests at once from uid {uid}: "
                                                  f"try again in a moment", "code": 1})
                    continue
                nursery.start_soon(_answer, conn, uid, handler, admit, gate, until_hangup)
    finally:
        listener.close()
        path.unlink(missing_ok=True)


class _Gate:
    """How many connections are open, overall and per uid (root is not counted:
    it may do anything to the mount anyway, and must always reach it)."""

    def __init__(self) -> None:
        self.open: Counter[int] = Counter()
        self.total = 0

    def enter(self, uid: int) -> bool:
        if uid == 0:
            return True
        if self.total >= MAX_CONNECTIONS or self.open[uid] >= MAX_PER_UID:
            return False
        self.open[uid] += 1
        self.total += 1
        return True

    def leave(self, uid: int) -> None:
        if uid == 0:
            return
        self.open[uid] -= 1
        self.total -= 1
        if not self.open[uid]:
            del self.open[uid]


async def _accept(listener: Any) -> Any:
    """The next connection; out of file descriptors, wait and try again."""
    short = False
    while True:
        try:
            conn, _ = await listener.accept()
            if short:
                log.info("control socket: accepting again")
            return conn
        except OSError as err:
            if err.errno not in _NO_ROOM and err.errno not in (errno.ECONNABORTED, errno.EPROTO):
                raise
            if err.errno in _NO_ROOM:
                if not short:
                    log.warning("control socket: %s; new requests wait", os.strerror(err.errno))
                short = True
                await trio.sleep(BACKOFF)


async def _refuse(conn: Any, answer: dict) -> None:
    with conn:
        with trio.move_on_after(1), contextlib.suppress(OSError):
            await conn.send(json.dumps(answer).encode() + b"\n")


async def _answer(conn: Any, uid: int, handler: Handler, admit: Admit, gate: _Gate,
                  until_hangup: frozenset[str] = frozenset()) -> None:
    try:
        with conn:
            admitted = uid == 0
            with trio.move_on_after(READ_TIMEOUT):
                try:
                    admitted = admitted or await admit(uid)
                except Exception:
                    log.exception("control socket: cannot tell whether uid %d may ask", uid)
            if not admitted:
                answer = _refusal(uid) if admit is not _own else {"error": "permission denied", "code": 22}
                with trio.move_on_after(1), contextlib.suppress(OSError):
                    await conn.send(json.dumps(answer).encode() + b"\n")
                return
            data = await _read_request(conn)
            if data is None:
                return  # silent or too slow: dropped
            try:
                request = loads_untrusted(data)
                if not isinstance(request, dict):
                    raise ValueError
            except (ValueError, RecursionError):  # JSON nested too deep is RecursionError
                answer = {"error": "bad request"}
            else:
                if request.get("cmd") in until_hangup:
                    done = await _while_connected(conn, partial(_handle, handler, request, uid))
                    if done is None:
                        log.info("control socket: the client of a %s request (uid %d) went: "
                                 "its work was cancelled", request.get("cmd"), uid)
                        return
                    answer = done
                else:
                    answer = await _handle(handler, request, uid)
            with trio.move_on_after(WRITE_TIMEOUT), contextlib.suppress(OSError):
                view = memoryview(json.dumps(answer).encode() + b"\n")
                while view:
                    view = view[await conn.send(view):]
    finally:
        gate.leave(uid)


async def _handle(handler: Handler, request: dict, uid: int) -> dict:
    # One caller's request must never end the mount for everyone.
    try:
        return await handler(request, uid)
    except VaultError as err:
        return {"error": str(err), "code": err.exit_code}
    except Exception:
        log.exception("control socket: %s failed", request.get("cmd"))  # never the request: a passphrase
        return {"error": "internal error: see the mount's log", "code": 1}


async def _while_connected(conn: Any, work: Callable[[], Awaitable[dict]]) -> dict | None:
    """``work``'s answer, or None when the client closed its end first: the work is then
    cancelled.  A long request (an export) must not run on for a client that is gone:
    killed, it went on writing into the caller's folder until the unmount (attack round
    45t (3)).  A client sends nothing after its request line, so anything readable is its
    end closing (what it does send anyway is dropped)."""
    answer: dict | None = None
    async with trio.open_nursery() as nursery:
        async def run() -> None:
            nonlocal answer
            answer = await work()
            nursery.cancel_scope.cancel()  # done: stop waiting for the client's end

        nursery.start_soon(run)
        await _hangup(conn)
        nursery.cancel_scope.cancel()
    return answer


HANGUP_POLL = 0.25  # seconds between looks for the full close of a client that half-closed


async def _hangup(conn: Any) -> None:
    """Return once the client has closed its end of ``conn`` (or the connection broke).

    EOF alone is not that: a client that half-closes after its request
    (``shutdown(SHUT_WR)``, as ``nc -N`` and ``socat`` do) still waits for its
    answer, and taken for gone its export was cancelled unanswered (attack
    round 46f (3)).  After EOF the socket reads as ready for ever, so the full
    close (POLLHUP: both halves shut) is looked for every HANGUP_POLL seconds."""
    with contextlib.suppress(OSError):
        while await conn.recv(4096):
            pass
        while not _closed(conn.fileno()):
            await trio.sleep(HANGUP_POLL)


def _closed(fd: int) -> bool:
    """Whether the peer of ``fd`` has closed both of its halves (or the socket broke)."""
    poller = select.poll()
    poller.register(fd, 0)  # POLLHUP and POLLERR are always reported
    return any(events & (select.POLLHUP | select.POLLERR | select.POLLNVAL)
               for _, events in poller.poll(0))


async def _read_request(conn: Any) -> bytes | None:
    """One request line, whole within READ_TIMEOUT; None when it did not come."""
    data = b""
    with trio.move_on_after(READ_TIMEOUT), contextlib.suppress(OSError):
        while b"\n" not in data and len(data) < MAX_REQUEST:
            chunk = await conn.recv(4096)
            if not chunk:
                break
            data += chunk
        return data
    return None


def request(path: Path, message: dict, timeout: float = 10.0) -> dict:
    """Ask a running mount something (blocking client, for the CLI)."""
    check_folder(path.parent)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        _pid, uid, _gid = peer_cred(sock)
        if not own_uid(uid):
            raise Unsafe(f"the socket {path} is served by uid {uid}, neither you nor root: refused, "
                         f"nothing was sent")
        try:
            sock.sendall(json.dumps(message).encode() + b"\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused at accept: the answer says why
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return loads_untrusted(data)


def check_folder(folder: Path) -> None:
    """A socket's folder must be the caller's or root's, and writable by nobody else."""
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return  # no socket there either: connect says so
    if (stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode) or not own_uid(st.st_uid)
            or st.st_mode & 0o022):
        raise Unsafe(f"the socket's folder {folder} is not yours or root's alone (uid {st.st_uid}, mode "
                     f"{stat.S_IMODE(st.st_mode):o}): refused, nothing was sent")
