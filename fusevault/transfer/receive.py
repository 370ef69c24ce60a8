"""``fusevault receive``: join, confirm the key, fetch, verify, then name; resume what was cut.

Nothing is asked for before both sides confirmed the key (crypto.py).  Each
file is written to a hidden partial file in its final folder (every chunk
authenticated, in order, the last one marked and carrying the SHA-256 of the
whole file), checked whole and fsynced, and only then linked under its real
name: no partial file ever appears under a real name.  An interrupted receive
(Ctrl-C, SIGTERM, the network, the relay) keeps its partial files and tells
the sender to stop; the same command then asks only for the chunks after the
whole ones it holds (resume.py).  Symlinks arrive as symlinks when they stay
inside their folder, checked again here; the sender lists what it skipped.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from fusevault.encoding import b64e, shown
from fusevault.errors import (
    AlreadyExists,
    CorruptData,
    InvalidInput,
    NoSpace,
    NotFound,
    RateLimited,
    RelayUnavailable,
    VaultError,
    WrongCode,
)
from fusevault.transfer import crypto
from fusevault.transfer.client import RelayClient, SessionEnded
from fusevault.transfer.output import (
    away_from_views,
    check_new_tops,
    current_umask,
    folder_tops,
    make_links,
    make_top_folders,
    mkdir_inside,
    remove_empty,
    safe_target,
    top_of,
)
from fusevault.transfer.progress import transfer_progress
from fusevault.transfer.resume import ResumeState
from fusevault.vault.format.atomic import fsync_dir

log = logging.getLogger(__name__)

STALL = 120.0           # seconds without a chunk before giving up on the sender
HANDSHAKE_WAIT = 600.0  # seconds for the sender to answer (it may be asking its user)
POLL = 10.0  # seconds a take waits for a chunk (in a thread)
LOOK = 1.0   # seconds of a long poll in the main thread: between its looks at Ctrl-C
PARALLEL = 3  # chunks asked for at once
# Requests posted per call (70b (1)): one call for them all was refused (413) past ~7,300 files, the
# relay's body cap (relay/api.py ``REQUESTS_JSON``), so a folder within the relay's max_files (10,000)
# was never received.  An honest request is ~143 bytes of JSON: 1,000 are ~143 KB a call.
REQUESTS_PER_CALL = 1000
# Chunks held ahead of the one written next, takes on their way included (63b (2)): an honest relay
# gives a request's chunks in order, so what comes ahead of it is at most the takes still on their
# way; a relay withholding one made the receive hold the rest of the file, unopened, in memory.
WINDOW = 2 * PARALLEL
# The clock of the stall deadline (a test's trio.testing.MockClock current_time).
monotonic: Callable[[], float] = time.monotonic
REFUSED = "the sender refused this receiver (it sends to someone else, or did not confirm you)"


class RefusedReceiver(RateLimited):
    """The sender let another receiver in, or did not confirm this one."""
RESUME = "run the same command again to resume"


@dataclass
class Incoming:
    fid: str
    name: str
    size: int
    chunks: int
    target: Path
    partial: Path
    first: int = 0


def receive(relay_url: str, name: str, code: str, output: Path, *, only: list[str] | None = None,
            list_only: bool = False, verify: bool = False, ask: Callable[[str], bool] | None = None,
            say: Callable[[str], None] = print, interrupt: threading.Event | None = None) -> int:
    """Fetch the session's files; ``interrupt`` set (Ctrl-C): KeyboardInterrupt at the next look,
    what arrived kept for the next run."""
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InvalidInput(f"{output} is not a folder ({err.strerror})") from None
    client = RelayClient(relay_url)
    if interrupt is not None:
        client.interrupt = interrupt
    try:
        Receiver(client, output, only, list_only, verify, ask, say).run(name, code)
    finally:
        client.close()
    return 0


class Receiver:
    def __init__(self, client: RelayClient, output: Path, only: list[str] | None, list_only: bool,
                 verify: bool, ask: Callable[[str], bool] | None, say: Callable[[str], None]) -> None:
        self.client, self.output, self.only = client, output, only
        self.list_only, self.verify, self.ask, self.say = list_only, verify, ask, say
        self.sid = ""
        self.token = b""
        self.open: set[str] = set()  # request ids to cancel if we stop
        self.partials: list[Path] = []
        self.resuming = False  # whether this run found an earlier run's state (set in _run)
        self.pool = ThreadPoolExecutor(PARALLEL, thread_name_prefix="pop")
        self.local = threading.local()
        self.clients: list[RelayClient] = []
        self.made_tops: list[Path] = []  # top folders this run made (removed, while empty, if given up)

    def run(self, name: str, code: str) -> None:
        try:
            self._run(name, code)
        finally:
            self.client.stopping.set()
            self.pool.shutdown(wait=True, cancel_futures=True)
            for client in self.clients:
                client.close()

    def _run(self, name: str, code: str) -> None:
        session = self.client.join(name)
        self.sid = session["id"]
        self.state = ResumeState(self.output, self.sid)
        self.resuming = self.state.saved  # an earlier run of this session left its state here
        try:
            keys, manifest = self.handshake(code, session)
            self.fetch(keys, manifest)
        except crypto.KeyMismatch:
            try:
                self.client.fail(self.sid)
            except VaultError:
                pass
            self.forget()
            raise
        except (WrongCode, SessionEnded, RefusedReceiver) as err:
            self.forget()  # the session failed, ended, or is not ours: nothing can resume
            if isinstance(err, SessionEnded):
                raise NotFound("the sender ended the session (or it expired): nothing more arrives") from None
            raise
        except BaseException as err:
            self.pause(err)
            raise

    # --- the key exchange

    def handshake(self, code: str, session: dict) -> tuple[crypto.SessionKeys, dict]:
        exchange = crypto.ReceiverHandshake(code, self.sid, str(session["code"]), session["user_id"])
        self.client.post(self.sid, {"pake.a": exchange.message})
        keys = exchange.finish(self.answer("pake.b")["pake.b"])
        if self.verify:  # now: the sender's user may be comparing them before it answers
            self.say(f"verification words: {keys.words()}")
        token = crypto.new_token() if self.list_only else self.state.token_for_run()
        self.token = token  # the identity our done is bound to
        if not self.list_only:
            self.state.save()
        hello = {"confirm.a": b64e(keys.confirm_receiver), "hello": keys.seal_hello(token)}
        self.client.post(self.sid, hello)
        answer = self.answer("manifest")
        keys.check(keys.confirm_sender, answer.get("confirm.b"))
        manifest = keys.open_manifest(answer["manifest"])
        if self.verify and self.ask is not None \
                and not self.ask("Does the sender see the same words? [y/N] "):
            raise crypto.KeyMismatch()
        return keys, manifest

    def answer(self, want: str) -> dict:
        deadline = time.monotonic() + HANDSHAKE_WAIT
        while True:
            self.client.interrupted()
            found = self.client.handshake(self.sid, want, wait=LOOK)
            if found and "refused" in found:
                raise RefusedReceiver(REFUSED)
            if found:
                return found
            if time.monotonic() > deadline:
                raise VaultError("the sender did not answer")

    # --- files

    def fetch(self, keys: crypto.SessionKeys, manifest: dict) -> None:
        files, links, skipped = _checked(manifest)
        if self.list_only:
            for f in files:
                self.say(f"{f['size']:>12}  {shown(f['name'])}")
            for link in links:
                self.say(f"{'symlink':>12}  {shown(link['name'])} -> {shown(link['target'])}")
            for s in skipped:
                self.say(f"{'skipped':>12}  {shown(s['name'])} ({shown(s['why'])})")
            self.client.post(self.sid, {"done": keys.seal_done(self.token, "list", [])})
            return
        for s in skipped:
            log.warning("the sender skipped %s: %s", shown(s["name"]), shown(s["why"]))
        files = [f for f in files if self._wanted(f["name"])]
        links = [link for link in links if self._wanted(link["name"])]
        if not files and not links:
            raise InvalidInput("none of the session's files match: see --list")
        files, links = self._away_from_views(files, links)
        try:
            todo = self.plan(files, links)
        except AlreadyExists:
            if not self.resuming:  # refused before anything was made: nothing to resume, no state left
                self.forget()
            raise
        requests = {inc.fid: crypto.FileRequest(keys, inc.fid, inc.first) for inc in todo}
        asked = [{"filename": fid, "public_key": b64e(r.public), "first": r.first, "mac": r.mac}
                 for fid, r in requests.items()]
        for at in range(0, len(asked), REQUESTS_PER_CALL):  # a resume asks the same way
            self.client.request(self.sid, asked[at:at + REQUESTS_PER_CALL])
        remaining = {inc.fid: inc for inc in todo}
        with transfer_progress() as progress:
            last_news = time.monotonic()
            while remaining:
                self.client.interrupted()
                acks = {a["filename"]: a for a in self.client.acknowledgements(self.sid, wait=LOOK)
                        if a["filename"] in remaining}
                if not acks:
                    if time.monotonic() - last_news > HANDSHAKE_WAIT:
                        raise VaultError("the sender did not answer")
                    continue
                fid = min(acks)  # the sender streams them in this order
                self.one(remaining.pop(fid), requests[fid], acks[fid], progress)
                last_news = time.monotonic()
        make_links(self.output, links, self.say)
        self.client.post(self.sid, {"done": keys.seal_done(self.token, "all", [inc.fid for inc in todo])})
        self.state.remove()

    def _away_from_views(self, files: list[dict], links: list[dict]) -> tuple[list[dict], list[dict]]:
        """The list with the names that cannot arrive as they are at the root of a mount (output.py
        ``away_from_views``) changed, said once per top; the links' texts are checked against the
        names they arrive under (``make_links``)."""
        renamed = away_from_views(self.output, [f["name"] for f in files] + [lk["name"] for lk in links])
        for top, new in sorted({top_of(name): top_of(new) for name, new in renamed.items()}.items()):
            self.say(f"{shown(top)} arrives as {shown(new)}: the root of the drive keeps that name for "
                     "a view (shares, groups, history)")
        return ([{**f, "name": renamed.get(f["name"], f["name"])} for f in files],
                [{**lk, "name": renamed.get(lk["name"], lk["name"])} for lk in links])

    def _wanted(self, name: str) -> bool:
        return not self.only or any(name == o.rstrip("/") or name.startswith(o.rstrip("/") + "/")
                                    for o in self.only)

    def plan(self, files: list[dict], links: list[dict]) -> list[Incoming]:
        names = [f["name"] for f in files] + [link["name"] for link in links]
        for name in names:
            safe_target(self.output, name)  # every name checked before any is used
        # Only new top-level entries: a sender's ".ssh/authorized_keys2" never lands in her ~/.ssh.
        new = check_new_tops(self.output, names, self.state.tops, ": move it away or use --output")
        todo = []
        for f in files:
            target = safe_target(self.output, f["name"])
            if f["id"] in self.state.done and os.path.lexists(target):
                continue  # an earlier run of this command received it
            if os.path.lexists(target):
                raise AlreadyExists(f"{shown(str(target))} exists: move it away or use --output")
            inc = Incoming(f["id"], f["name"], f["size"], f["chunks"], target,
                           self.state.partial_path(target, f["id"]))
            try:
                held = os.lstat(inc.partial)
            except FileNotFoundError:
                pass
            else:  # refused before anything is asked for, and checked again on the descriptor
                _check_partial(inc.partial, held)
                inc.first = min(held.st_size // crypto.CHUNK, inc.chunks - 1)
            todo.append(inc)
        for link in links:
            path = safe_target(self.output, link["name"])
            if os.path.lexists(path) and not (path.is_symlink() and os.readlink(path) == link["target"]):
                raise AlreadyExists(f"{shown(str(path))} exists: move it away or use --output")
        self.state.claim(new)  # saved before the first is made: a crash never leaves one unclaimed
        # Every top folder made now, before any file arrives: a run cut off leaves none of its claimed
        # names absent for another local user to take; a claimed one there is taken only if hers.
        self.made_tops = make_top_folders(self.output, folder_tops(names), self.state.tops - set(new))
        return todo

    def one(self, inc: Incoming, request: crypto.FileRequest, ack: dict, progress) -> None:
        # Our own chunk count and first chunk go into the MAC: a relay that changed them is caught.
        key = request.key(inc.chunks, ack["public_key"], ack["mac"])
        rid = str(ack["request_id"])
        self.open.add(rid)
        mkdir_inside(self.output, inc.target.parent)
        fd = _open_partial(inc.partial)
        self.partials.append(inc.partial)  # hers (checked): removed if the session is given up
        try:
            held = os.fstat(fd)
            prefix = inc.first * crypto.CHUNK
            if held.st_size < prefix:
                raise CorruptData(f"{shown(str(inc.partial))} changed while this ran")
            os.ftruncate(fd, prefix)
            digest = hashlib.sha256()
            for offset in range(0, prefix, crypto.CHUNK):
                digest.update(os.pread(fd, crypto.CHUNK, offset))
            os.lseek(fd, prefix, os.SEEK_SET)
            if prefix:
                self.say(f"resuming {shown(inc.name)} at {prefix} of {inc.size} bytes")
            task = progress.add_task(f"receiving {shown(inc.name)}", total=inc.size, completed=prefix)
            trailer = self._chunks(fd, inc, key, rid, digest, progress, task)
            if os.fstat(fd).st_size != inc.size or digest.digest() != trailer:
                os.close(fd)
                fd = -1
                inc.partial.unlink(missing_ok=True)
                raise CorruptData(f"{shown(inc.name)} did not arrive intact: {RESUME} to fetch it again")
            os.fchmod(fd, 0o666 & ~current_umask())
            os.fsync(fd)
            os.close(fd)
            fd = -1
            try:
                os.link(inc.partial, inc.target)  # never replaces a file that appeared meanwhile
            except FileExistsError:
                raise AlreadyExists(f"{shown(str(inc.target))} appeared while receiving: "
                                    "not replaced") from None
            fsync_dir(inc.target.parent)
            inc.partial.unlink()
            self.partials.remove(inc.partial)
            self.state.finished(inc.fid)
        finally:
            if fd >= 0:
                os.close(fd)
        self.client.finish(rid)
        self.open.discard(rid)
        self.say(f"received {shown(str(inc.target))}")

    def _chunks(self, fd: int, inc: Incoming, key: bytes, rid: str, digest, progress, task) -> bytes:
        """Take, open and write chunks from ``inc.first`` on; the SHA-256 the last one carries.

        Several takes are on their way at once (each in a thread with a client
        of its own); the chunks are written in order, whichever comes first.
        What comes ahead of the chunk written next is held within ``WINDOW``
        (takes on their way included), a chunk numbered past it is dropped, and
        STALL seconds without a chunk written end the receive, whatever the
        relay gives meanwhile (63b (2)): the partial file stays, to resume."""
        nr, last_seen = inc.first, monotonic()
        arrived: dict[int, tuple[str, bytes]] = {}
        asked: set[Future] = set()
        self._hold(arrived, self.client.pop(rid, wait=LOOK, first=True), nr, inc)  # the sender may start
        try:
            while True:
                self.client.interrupted()
                while nr in arrived:
                    iv, data = arrived.pop(nr)
                    last = nr == inc.chunks - 1
                    plain = crypto.open_chunk(key, self.sid, inc.fid, nr, last, iv, data)
                    trailer = b""
                    if last:
                        if len(plain) < crypto.DIGEST:
                            raise CorruptData(f"{shown(inc.name)} did not arrive intact")
                        plain, trailer = plain[:-crypto.DIGEST], plain[-crypto.DIGEST:]
                    _write(fd, plain)
                    digest.update(plain)
                    progress.advance(task, len(plain))
                    last_seen = monotonic()
                    if last:
                        return trailer
                    nr += 1
                # Every turn: takes that hang, or come back with chunks that are never the one awaited.
                if monotonic() - last_seen > STALL:
                    raise VaultError("the sender stopped sending")
                # arrived holds numbers nr + 1 ... nr + WINDOW - 1 only: a take may always be asked.
                while (len(asked) < PARALLEL and len(arrived) + len(asked) < WINDOW
                       and nr + len(arrived) + len(asked) < inc.chunks):
                    asked.add(self.pool.submit(self._pop, rid))
                done, asked = wait(asked, timeout=LOOK, return_when=FIRST_COMPLETED)
                for future in done:
                    self._hold(arrived, future.result(), nr, inc)
        finally:
            for future in asked:
                future.cancel()

    @staticmethod
    def _hold(arrived: dict[int, tuple[str, bytes]], got: tuple[int, str, bytes] | None, nr: int,
              inc: Incoming) -> None:
        """Keep ``got`` if it is one of the next WINDOW chunks from ``nr`` (the one awaited first)."""
        if got is None or got[0] < nr:  # nothing, or an earlier one sent twice (a push retried)
            return
        if got[0] >= inc.chunks:
            raise CorruptData("a chunk arrived that the file does not have")
        if got[0] >= nr + WINDOW:  # past what takes on their way can bring: not the relay's order
            log.debug("dropped chunk %d of %s: %d awaited", got[0], shown(inc.name), nr)
            return
        arrived[got[0]] = got[1:]

    def _pop(self, rid: str) -> tuple[int, str, bytes] | None:
        client = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = self.client.clone()
            self.clients.append(client)
        return client.pop(rid, wait=POLL)

    # --- stopping

    def pause(self, err: BaseException) -> None:
        """Interrupted: tell the sender to stop streaming, keep what arrived for the next run."""
        if self.open and not isinstance(err, RelayUnavailable):
            self.client.http.timeout = httpx.Timeout(3.0)
            for rid in list(self.open):
                try:
                    self.client.finish(rid, ending=True)  # Ctrl-C: still sent again after a 429
                except (VaultError, OSError):
                    break
        if self.state.saved or self.partials:
            log.warning("interrupted: %s", RESUME)

    def forget(self) -> None:
        if getattr(self, "state", None) is not None:
            self.state.remove()
        for partial in self.partials:
            partial.unlink(missing_ok=True)
        remove_empty(self.made_tops)  # nothing can resume into them: no empty folder left behind


# A partial file made by this run: never one that is there already (whoever made it).
_NEW_PARTIAL = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# An earlier run's, to resume: never through a link; a fifo or device is refused once open (fstat).
_OLD_PARTIAL = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _open_partial(path: Path) -> int:
    """A descriptor of the partial file at ``path``: made new (0600, O_EXCL), or an earlier run's
    if it is one (``_check_partial``).  When its name was the session id and the file's index only
    and it was opened O_CREAT without O_EXCL, a file another local user planted there in a shared
    output folder (with a second hard link of his) received her plaintext and became her received
    file (attack round 24b (6)); the name is keyed now too (resume.py ``partial_path``)."""
    try:
        return os.open(path, _NEW_PARTIAL, 0o600)
    except FileExistsError:
        pass
    try:
        fd = os.open(path, _OLD_PARTIAL)
    except OSError as err:  # a symlink (ELOOP), or gone meanwhile
        raise _foreign_partial(path, err.strerror) from None
    try:
        _check_partial(path, os.fstat(fd))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_partial(path: Path, held: os.stat_result) -> None:
    """Refuse a partial file an earlier run of hers cannot have made: what this receiver makes is a
    regular file of her own, 0600, with no other name (it gets its real name only when whole).  Not
    hers, or with a second link, or readable by others: someone else may read or keep it, so none
    of her plaintext goes into it."""
    if not stat.S_ISREG(held.st_mode):
        raise _foreign_partial(path, "not a regular file")
    if held.st_uid != os.geteuid() or held.st_nlink != 1 or held.st_mode & 0o077:
        raise _foreign_partial(path, "not made by a receive of yours")


def _foreign_partial(path: Path, why: str | None) -> AlreadyExists:
    return AlreadyExists(f"{shown(str(path))} is there and is no partial file of yours ({why}): "
                         "not used; move it away or use --output")


def _checked(manifest: Any) -> tuple[list[dict], list[dict], list[dict]]:
    """The sender's list, or CorruptData: it decides names, and names are checked here too."""
    try:
        files: list[dict[str, Any]] = [{"id": str(f["id"]), "name": str(f["name"]), "size": int(f["size"]),
                  "chunks": int(f["chunks"])} for f in manifest["files"]]
        links = [{"name": str(s["name"]), "target": str(s["target"])}
                 for s in manifest.get("links", [])]
        skipped = [{"name": str(s["name"])[:300], "why": str(s["why"])[:200]}
                   for s in manifest.get("skipped", [])]
    except (KeyError, TypeError, ValueError, AttributeError):
        raise CorruptData("the sender's list of files is malformed") from None
    names = [f["name"] for f in files] + [s["name"] for s in links]
    if len(set(names)) != len(names) or any(f["size"] < 0 or f["chunks"] != crypto.chunk_count(f["size"])
                                            for f in files):
        raise CorruptData("the sender's list of files is malformed")
    return files, links, skipped


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise NoSpace(f"the disk is full: {RESUME} once there is room") from None
        raise
