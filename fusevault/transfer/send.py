"""``fusevault send``: offer files in a session, let one receiver in, stream what it asks for.

The relay gets file ids and sizes; names, symlinks and what was skipped go
to the receiver sealed, after both sides confirmed the key (crypto.py).  The
sender answers every receiver's key exchange, and the first confirmation that
fails ends the session for everyone.  The first receiver to confirm is the
one the session is for; one that comes back (``receive`` run again after an
interruption) proves it is the same with the resume token sealed in its
hello, and the requests of its earlier run are dropped.  Any other receiver
is refused, unless ``--keep`` (then the sender asks, or prints its
verification words, and serves it too).

A resumed request names the first chunk the receiver lacks: the sender reads
and hashes the part before it but sends only the rest.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from fusevault.encoding import b64e, shown
from fusevault.errors import InvalidInput, VaultError, WrongCode
from fusevault.transfer import crypto
from fusevault.transfer.client import Gone, RelayClient, check_session
from fusevault.transfer.offer import Offer, Outgoing, collect
from fusevault.transfer.progress import transfer_progress

log = logging.getLogger(__name__)

EVENTS_WAIT = 1.0     # seconds of one long poll for news (and between looks at Ctrl-C)
PUSH_WAIT = 2.0       # seconds a chunk waits at the relay for room in the queue
PARALLEL = 3          # chunks on their way to the relay at once (it queues them in order)
LOOK_EVERY = 10.0     # seconds between looks at the key exchanges while streaming
STALL_NOTICE = 30.0   # seconds of a full queue before the sender says it waits
RELAY_PATIENCE = 300.0  # seconds the sender waits for a relay that went away (a restart)
LISTED = 8            # requests all queued kept listed before their receiver's end is looked up
REFUSED = "the sender already sends to another receiver: ask them for a new session"


@dataclass
class Push:
    rid: str
    nr: int
    iv: str
    sealed: bytes
    size: int  # bytes of the file in it
    future: Future = field(init=False, repr=False, compare=False)  # set by pushing()


def send(relay_url: str, paths: list[Path], announce: Callable[[str, str], None], *,
         words: int = crypto.DEFAULT_WORDS, keep: bool = False, verify: bool = False,
         ask: Callable[[str], bool] | None = None, say: Callable[[str], None] = print,
         interrupt: threading.Event | None = None) -> int:
    """Offer the files; return once the receiver got all it asked for (never, with ``keep``).

    ``interrupt`` set (Ctrl-C): KeyboardInterrupt at the next look, after the session is closed."""
    offer = collect(paths)
    for skipped in offer.skipped:
        log.warning("skipped %s: %s", shown(skipped["name"]), skipped["why"])
    code, salt = crypto.make_code(words), crypto.new_salt()
    client = RelayClient(relay_url, patience=RELAY_PATIENCE)
    if interrupt is not None:
        client.interrupt = interrupt
    try:
        session = client.open_session(salt, [{"id": f.fid, "size": f.size} for f in offer.files])
        check_session(session)  # nothing of the relay's is printed unchecked
        try:
            announce(session["name"], code)
            Sender(client, session["id"], salt, code, offer, keep=keep, verify=verify, ask=ask, say=say).run()
        except BaseException:
            unclosed = _close(client, session["id"])
            if unclosed is not None:  # what stopped the send is raised; this is said beside it
                log.warning("%s", unclosed)
            raise
        unclosed = _close(client, session["id"])
        if unclosed is not None:  # sent, but not closed: not a silent exit 0 (68a (1))
            raise unclosed
    finally:
        client.close()
    return 0


def _close(client: RelayClient, sid: str) -> VaultError | None:
    """Close the session at the relay; an error saying so if it stays open there.

    Gone already (404) or failed (a confirmation did not match: WrongCode) is closed.  Anything else
    leaves it to expire on its own, its address unable to open another meanwhile: said, not
    swallowed (68a (1): a close refused by the relay's per-second budget ended the send with 0)."""
    client.patience = 0  # closing must not wait for a relay that is away
    try:
        client.close_session(sid)
    except WrongCode:
        return None
    except VaultError as err:
        return type(err)(f"the relay did not close the session ({err}): it stays open there until it "
                         "expires (an hour at most), and this address cannot open another meanwhile")
    return None


class Sender:
    def __init__(self, client: RelayClient, sid: str, salt: str, code: str, offer: Offer, *, keep: bool,
                 verify: bool, ask: Callable[[str], bool] | None, say: Callable[[str], None]) -> None:
        self.client, self.sid, self.salt, self.code = client, sid, salt, code
        self.files = {f.fid: f for f in offer.files}
        self.manifest = offer.manifest()
        self.keep, self.verify, self.ask, self.say = keep, verify, ask, say
        self.answered: dict[str, crypto.SessionKeys] = {}  # waiting for their confirmation
        self.peers: dict[str, crypto.SessionKeys] = {}     # let in
        self.token_of: dict[str, str] = {}                 # receiver id -> its resume token's id
        self.bound: set[str] = set()                       # token ids of the receivers served
        self.requests: dict[str, set[str]] = {}            # receiver id -> its open request ids
        self.streamed: deque[tuple[str, str]] = deque()    # (receiver, request) all queued, maybe not taken
        self.served: dict[str, set[str]] = {}              # receiver id -> file ids answered to it
        self.dropped: set[str] = set()                     # receiver ids refused or replaced
        self.finished = False
        self.last_look = time.monotonic()
        self.progress = transfer_progress()
        self.pool = ThreadPoolExecutor(PARALLEL, thread_name_prefix="push")
        self.local = threading.local()
        self.clients: list[RelayClient] = []

    def run(self) -> None:
        try:
            with self.progress:
                while not self.finished:
                    self.client.interrupted()
                    events = self.client.events(self.sid, wait=EVENTS_WAIT)
                    self.last_look = time.monotonic()
                    self.handshakes(events["handshakes"])
                    if not self.finished:
                        self.serve(events["requests"])
        finally:
            self.client.stopping.set()  # the pushes still on their way give up waiting for the relay
            self.pool.shutdown(wait=True, cancel_futures=True)
            for client in self.clients:
                client.close()

    # --- the key exchange

    def handshakes(self, records: list[dict]) -> None:
        for record in records:
            uid = record["user_id"]
            if record.get("done"):
                self.done(uid, record["done"])
            elif record.get("confirm.a"):
                self.confirmed(uid, record)
            elif record.get("pake.a"):
                keys, message = self._checked(crypto.sender_handshake, self.code, self.sid, self.salt, uid,
                                              record["pake.a"])
                self.answered[uid] = keys
                self.client.answer(self.sid, uid, {"pake.b": message})

    def confirmed(self, uid: str, record: dict) -> None:
        keys = self.answered.pop(uid, None)
        if keys is None:  # not an exchange of ours (the relay made it up): it gets nothing
            self.refuse(uid, "unknown receiver")
            return
        self._checked(keys.check, keys.confirm_receiver, record["confirm.a"])
        tid = crypto.token_id(self._checked(keys.open_hello, record.get("hello")))
        if tid in self.bound:
            for old in [u for u, t in self.token_of.items() if t == tid and u != uid]:
                self.replace(old)
            self.say("the receiver is back: resuming")
        elif self.bound and not self.keep:
            self.refuse(uid, REFUSED)
            log.warning("refused a second receiver (send --keep serves more than one)")
            return
        elif self.bound or self.verify:
            question = "another receiver joined" if self.bound else "a receiver joined"
            self.say(f"{question}; its verification words: {keys.words()}")
            if self.ask is not None and not self.ask("Does the receiver see the same words? [y/N] "):
                if not self.bound:
                    self.mismatch()
                self.refuse(uid, "the sender did not confirm this receiver")
                return
        self.bound.add(tid)
        self.token_of[uid] = tid
        self.peers[uid] = keys
        self.client.answer(self.sid, uid, {"confirm.b": b64e(keys.confirm_sender),
                                           "manifest": keys.seal_manifest(self.manifest)})

    def done(self, uid: str, value: str) -> None:
        keys, tid = self.peers.get(uid), self.token_of.get(uid)
        if keys is None or tid is None:
            if uid not in self.dropped:  # no receiver of ours could have posted it
                raise crypto.ForgedDone()
            self.client.answer(self.sid, uid, {"over": "1"})
            return
        # Only a done MACed by this receiver, for the files it was answered, ends anything.
        how = keys.open_done(value, tid, self.served.get(uid, set()))
        self.client.answer(self.sid, uid, {"over": "1"})
        if how == "list" and not self.requests.get(uid):
            # It only looked: the session is still for whoever asks for files next.
            if list(self.token_of.values()).count(tid) == 1:
                self.bound.discard(tid)
            return
        if how == "all" and not self.keep:
            self.finished = True

    def refuse(self, uid: str, why: str) -> None:
        self.dropped.add(uid)
        self.answered.pop(uid, None)
        try:
            self.client.answer(self.sid, uid, {"refused": why})
        except VaultError:
            pass  # it had already been refused

    def replace(self, uid: str) -> None:
        """A receiver came back under a new id: drop what its earlier run left open."""
        self.peers.pop(uid, None)
        for rid in self.requests.pop(uid, set()):
            try:
                self.client.cancel(rid)
            except VaultError:
                pass
        self.refuse(uid, "replaced by the same receiver's next run")

    def mismatch(self):
        try:
            self.client.fail(self.sid)
        except VaultError:
            pass
        raise crypto.KeyMismatch()

    def _checked(self, fn, *args):
        try:
            return fn(*args)
        except crypto.KeyMismatch:
            self.mismatch()

    # --- files

    def serve(self, requests: list[dict]) -> None:
        batch = []
        for req in sorted(requests, key=lambda r: (r["user_id"], r["filename"])):
            uid, file = req["user_id"], self.files.get(req["filename"])
            keys = self.peers.get(uid)
            if keys is None or file is None:
                if uid not in self.dropped:
                    self.refuse(uid, "not a receiver of this session")
                continue
            first = int(req["first"])
            key, public, mac = self._checked(crypto.answer_request, keys, file.fid, first, file.chunks,
                                             req["public_key"], req["mac"])
            if not 0 <= first < file.chunks:  # its own request (the MAC holds), but not one we can answer
                self.refuse(uid, f"{shown(file.name)} has no chunk {first}")
                continue
            rid = self.client.acknowledge(self.sid, {
                "filename": file.fid, "user_id": uid, "public_key": public, "chunks": file.chunks,
                "first": first, "mac": mac})
            self.requests.setdefault(uid, set()).add(rid)
            self.served.setdefault(uid, set()).add(file.fid)
            batch.append((uid, file, rid, key, first))
        for uid, file, rid, key, first in batch:
            if uid not in self.peers:
                continue  # replaced while an earlier file streamed
            try:
                self.stream(uid, file, rid, key, first)
            except Gone:
                self.requests.get(uid, set()).discard(rid)  # the relay's request is gone: nothing to cancel
                if uid in self.peers:
                    self.say(f"the receiver stopped receiving {shown(file.name)}: waiting for it to come "
                             "back (Ctrl-C to stop)")
            else:
                # All queued, but its last chunks may still wait at the relay, in the session's queue:
                # it stays listed until its receiver finished it, so that the receiver's next run
                # (``replace``) cancels it.  Dropped here, it was not, and held the queue against
                # that run for an hour (64b (2)).
                self.streamed.append((uid, rid))
                self._forget_finished()

    def _forget_finished(self) -> None:
        """Unlist the requests all queued whose receiver finished them (the relay's request gone),
        oldest first, while more than LISTED are listed: about a look a file, the list bounded."""
        while len(self.streamed) > LISTED:
            uid, rid = self.streamed[0]
            if rid in self.requests.get(uid, set()) and self.client.request_open(rid):
                return  # its receiver is behind: looked at again after the next file
            self.streamed.popleft()
            self.requests.get(uid, set()).discard(rid)

    def stream(self, uid: str, file: Outgoing, rid: str, key: bytes, first: int) -> None:
        chunks, done = file.chunks, min(first * crypto.CHUNK, file.size)
        # shown(): a name from outside (one a sender gave, received into her Downloads), as receive does.
        task = self.progress.add_task(f"sending {shown(file.name)}", total=file.size, completed=done)
        digest, read = hashlib.sha256(), 0
        on_the_way: deque[Push] = deque()
        try:
            fd = os.open(file.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as err:
            raise InvalidInput(f"cannot read {file.path}: {err.strerror}") from None
        try:
            with os.fdopen(fd, "rb") as f:
                for nr in range(chunks):
                    data = f.read(crypto.CHUNK)
                    digest.update(data)
                    read += len(data)
                    last = nr == chunks - 1
                    if last and (read != file.size or f.read(1)):
                        raise VaultError(f"{file.path} changed while it was being sent: send it again")
                    if nr < first:
                        continue  # the receiver has it: hashed, not sent
                    iv, sealed = crypto.seal_chunk(key, self.sid, file.fid, nr, last,
                                                   data + digest.digest() if last else data)
                    on_the_way.append(self.pushing(Push(rid, nr, iv, sealed, len(data))))
                    if len(on_the_way) >= PARALLEL:
                        self.progress.advance(task, self.settle(uid, on_the_way.popleft()))
            while on_the_way:
                self.progress.advance(task, self.settle(uid, on_the_way.popleft()))
        finally:
            for push in on_the_way:  # stopped early
                push.future.cancel()
            self.progress.remove_task(task)

    def pushing(self, push: Push) -> Push:
        push.future = self.pool.submit(self._push, push)
        return push

    def _push(self, push: Push) -> bool:
        """In a worker thread, with a client of its own."""
        client = getattr(self.local, "client", None)
        if client is None:
            client = self.local.client = self.client.clone()
            self.clients.append(client)
        return client.push(push.rid, push.nr, push.iv, push.sealed, wait=PUSH_WAIT)

    def settle(self, uid: str, push: Push) -> int:
        """Wait until the relay queued ``push`` (sending it again while its queue stays full)."""
        full_since = None
        while True:
            self.client.interrupted()
            if time.monotonic() - self.last_look > LOOK_EVERY:
                self.look()
            if uid not in self.peers:
                raise Gone("replaced")
            if push.future.result():
                return push.size
            # The queue stayed full: the receiver is slow, or gone (it may come back as a new run).
            full_since = full_since or time.monotonic()
            self.look()
            if time.monotonic() - full_since > STALL_NOTICE:
                self.say("the receiver is not taking data: waiting for it (Ctrl-C to stop)")
                full_since = time.monotonic() + 3600  # said once an hour at most
            self.pushing(push)

    def look(self) -> None:
        """News while streaming: a receiver back after an interruption, a failed confirmation."""
        self.last_look = time.monotonic()
        self.handshakes(self.client.events(self.sid, wait=0)["handshakes"])
