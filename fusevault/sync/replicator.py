"""Replication with one peer, both ways, as CouchDB's replicator does it.

Push: what this replica committed since the last checkpoint is offered to
the peer (``_revs_diff``) and only what it lacks is sent (``_bulk_docs``
with ``new_edits: false``).  Records go first, then documents, so on the
peer no document ever comes before a record it needs: a file is never seen
half-arrived.  Pull: the peer's changes feed (a longpoll once caught up),
``_revs_diff`` against this replica, ``_bulk_get`` of what is missing;
records are appended to their ``.vf`` and the documents stored in one
transaction with the records' places.

Checkpoints are kept here and, for the push, also on the peer, so a peer
database that was wiped or replaced is given everything again.  A peer that
is away is retried with exponential backoff; nothing is lost meanwhile,
since both sides only ever ask "what do you lack?".
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Protocol

import trio

from fusevault.errors import ForeignVault, NoSpace, PeerUnavailable, StoreUnavailable, VaultReadOnly
from fusevault.shortening import shortened
from fusevault.store import places as places_table
from fusevault.store import replica
from fusevault.store.local import LocalStore
from fusevault.store.places import PlaceRow
from fusevault.store.unreadable import Unreadable
from fusevault.sync.answer_shapes import doc_shaped, entry_shaped
from fusevault.sync.content_docs import (
    RECORDS_BATCH,
    is_record,
    malformed,
    parse_record_id,
    place_records,
    read_records,
    record_id,
    record_rev,
    record_sha,
)
from fusevault.sync.foreground import FOREGROUND
from fusevault.sync.key_mirror import KeyMirror, is_key_doc
from fusevault.sync.punched_asks import PunchedAsks, WantedAgain
from fusevault.sync.waited import WAITED
from fusevault.vault.files.placements import alarm
from fusevault.vault.format.layout import Layout, is_id
from fusevault.vault.model.groups import GROUP
from fusevault.vault.model.nodes import NODE, VERSION
from fusevault.vault.model.peers import PEER
from fusevault.vault.model.users import USER

if TYPE_CHECKING:  # the HTTP client is loaded once a peer is contacted (sync/waited.py says why)
    from fusevault.sync.couch_api import CouchDatabase

log = logging.getLogger(__name__)

# Documents whose id becomes a path in the vault folder (vault/format/layout.py ``checked_id``).
PLACED = (USER, GROUP, NODE)

PUSH_EVERY = 0.5  # how soon a local commit is offered to peers
# Sync's share of the mount's time while the drive is busy: after a push or
# a pull that took t seconds, not counting the wait for the peer's answers
# (HTTP runs in worker threads), the next waits t * (1 / BUDGET - 1), so
# local work keeps most of the time and commits made meanwhile go in one batch.
BUDGET = 0.25
PULL_CHECKPOINT_EVERY = 30.0  # an echo-only checkpoint is saved this seldom (a crash refetches echoes)
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0


def _backoff_ceiling() -> float:
    """``BACKOFF_MAX``, or lower (1 s at least) where FUSEVAULT_RETRY_MAX_SECONDS says so: the tests
    whose scenes stop the server and start it again (two devices apart, then back together) retry
    every second instead of after 1, 2, 4, 8 s, as FUSEVAULT_LONGPOLL_SECONDS shortens the longpoll.
    A retry asks the peer again, nothing more: what it then takes is judged as ever.  Anything else
    (longer, zero, not a number) is the default."""
    return float(shortened("FUSEVAULT_RETRY_MAX_SECONDS", int(BACKOFF_MAX)))


BACKOFF_CEILING = _backoff_ceiling()
CHANGES_BATCH = 200
# Least seconds between two looks at what the trees want (``want_again``) while the pull waits on the
# peer's longpoll: a poke storm (a hostile peer's documents making many wants) is at most this many asks.
WANTS_EVERY = 0.5
# More documents and records than this waiting to go (or a full batch of the
# peer's changes come) is a backlog: each of its batches waits for a pause in
# the mount's requests (sync/foreground.py).  Less is a change someone waits
# for on another device: it goes at once, however busy this drive is.
BACKLOG = 32
VAULT_DOC = "vault"
# The local store refusing a commit (the mount's metadata changes waiting for a
# group commit, committed before a pulled batch): said in one line, retried.
LOCAL_STORE_ERRORS = (NoSpace, StoreUnavailable, VaultReadOnly)

# Documents whose current revision changed, and the ids of a batch in conflict after it (``[]``: none
# brought; the trees look again at the conflicts they left waiting, fs/arrivals.py ``_hand``).
Arrived = Callable[[list[dict], list[str]], None]
# Does a tree unlocked here show this version document (its current body) as a live file's
# newest version?  None: nobody is unlocked, nothing here can tell yet.
Names = Callable[[dict], bool | None]
HELD = "held"  # the checkpoint's deletions of version documents waiting for a verdict (``_judge_held``)
HELD_SINCE = "held_since"  # when each was first judged to name a live head
SAY_HELD_AFTER = 10.0  # seconds a held deletion names a live head before it is said (a forgery)


class Beneath(WantedAgain, Protocol):
    """Revisions a refused one was stacked on, which the mount's trees never took in (a writer's
    edit made while this device was away, under a server's forgery): fetched from the peer and taken
    in under it, so a commit over the refused one does not erase them (fs/arrivals.py)."""

    def beneath_wanted(self) -> list[tuple[str, str]]: ...

    def take_beneath(self, docs: list[dict]) -> None: ...


class _NothingBeneath:
    """A replica kept for someone else or being joined: no tree refuses anything."""

    def beneath_wanted(self) -> list[tuple[str, str]]:
        return []

    def take_beneath(self, docs: list[dict]) -> None:
        return None

    def records_wanted(self, peer: str) -> list[tuple[tuple[str, str], str, int, str, bytes | None]]:
        return []

    def asked_records(self, peer: str, in_vain: set[tuple[tuple[str, str], str, int]],
                      came: set[tuple[str, str, int]]) -> None:
        return None

    def listed_records(self, peer: str, listed: set[tuple[str, str, int]]) -> None:
        return None


NOTHING_BENEATH = _NothingBeneath()


def _names_nothing(doc: dict) -> bool | None:
    """A replica kept for someone else (a backup buddy's) or being joined: no tree judges."""
    return False


@dataclass
class PeerStatus:
    name: str
    url: str
    state: str = "starting"
    last_contact: float | None = None
    pending_up: int = 0
    pending_down: int | None = None
    error: str | None = None
    docs_up: int = 0
    docs_down: int = 0
    records_up: int = 0
    records_down: int = 0
    bytes_up: int = 0
    bytes_down: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _in_order(docs: list[dict]) -> list[list[dict]]:
    """Key documents, then the rest, then node documents."""
    keys = [d for d in docs if is_key_doc(d["_id"])]
    nodes = [d for d in docs if d.get("type") == NODE]
    rest = [d for d in docs if d.get("type") != NODE and not is_key_doc(d["_id"])]
    return [part for part in (keys, rest, nodes) if part]


def _rest(took: float) -> float:
    """How long to wait after work that took ``took`` seconds (``BUDGET``)."""
    return max(0.0, took) * (1 / BUDGET - 1)


def _seq_number(seq: object) -> int | None:
    # pouchdb counts with integers, CouchDB 2+ with "N-opaque" strings.
    try:
        return int(str(seq).split("-", 1)[0])
    except ValueError:
        return None


class Replicator(PunchedAsks):
    """Replication with one peer; its asks for records gc punched here are ``PunchedAsks``'s
    (sync/punched_asks.py)."""

    status: PeerStatus
    beneath: Beneath

    def __init__(self, store: LocalStore, layout: Layout, device: str, name: str, db: CouchDatabase,
                 arrived: Arrived, status: PeerStatus, keys: KeyMirror | None = None) -> None:
        self.store = store
        self.keys = keys  # None for a replica kept for someone else (no key files of its own)
        self.layout = layout
        self.device = device
        self.name = name
        self.db = db
        self.arrived = arrived
        self.status = status
        self.checkpoint_id = f"sync-{name}"
        self.checkpoint = replica.get_local(store, self.checkpoint_id)
        self._pull_saved = time.monotonic()
        # What the mount holds around storing a pulled batch: its metadata
        # changes still waiting for a group commit committed first, and the
        # next ones held until the batch is taken in (fs/personal.py).
        self.settled: Callable[[], AbstractAsyncContextManager[object]] = contextlib.nullcontext
        # Whether a deletion of a version document would take a live file's contents (the mount's trees).
        self.names: Names = _names_nothing
        # The revisions under refused ones the mount's trees want (fetched after each batch).
        self.beneath: Beneath = NOTHING_BENEATH
        # The mount's requests, which each batch lets pass first (sync/foreground.py).
        self.foreground = FOREGROUND
        # Set when a tree came to want something of the peers (``want_again``), or the longpoll answered:
        # what wakes the pull waiting on the peer's longpoll (``_longpoll``).  One pending wake at most.
        self._wake = trio.Event()

    # --- the life of one peer's replication

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Replicate until cancelled, backing off while the peer is away."""
        task_status.started()
        delay = BACKOFF_FIRST
        while True:
            try:
                await self.connect()
                delay = BACKOFF_FIRST
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._push_loop)
                    nursery.start_soon(self._pull_loop)
            except* (PeerUnavailable, ForeignVault, *LOCAL_STORE_ERRORS) as group:
                self._failed(str(group.exceptions[0]), delay)
            except* Exception as group:  # a bug must not end the mount: logged, retried
                log.error("sync with %s failed", self.name, exc_info=group.exceptions[0])
                self._failed("internal error: see the mount's log", delay)
            await trio.sleep(delay)
            delay = min(delay * 2, BACKOFF_CEILING)

    def _failed(self, why: str, delay: float) -> None:
        self.status.error = why
        self.status.state = f"retrying in {delay:.0f} s"
        log.warning("sync with %s: %s", self.name, why)

    async def connect(self) -> None:
        """Check that the peer holds this vault (or nothing yet) and where to resume."""
        info = await self.db.ensure()
        theirs = await self.db.get(VAULT_DOC)
        if theirs is not None and theirs.get("vault_id") != self.layout.vault_id:
            raise ForeignVault(f"{self.db.label} holds another vault's documents: "
                               "give this vault a database of its own")
        if theirs is None and self.store.get(VAULT_DOC) is None:
            # The first replica to meet this database names the vault in it.
            self.store.put_many([{"_id": VAULT_DOC, "type": "Vault", "vault_id": self.layout.vault_id}])
        remote = await self.db.get_local(self._peer_checkpoint_id)
        if remote.get("push") != self.checkpoint.get("push") or \
                remote.get("records") != self.checkpoint.get("records"):
            # The peer does not remember what it was given (a new or wiped
            # database): offer everything again; it takes only what it lacks.
            self.checkpoint.update(push=0, records=0)
        theirs_now, ours = _seq_number(info.get("update_seq")), _seq_number(self.checkpoint.get("pull", 0))
        if theirs_now is not None and ours is not None and theirs_now < ours:
            self.checkpoint["pull"] = 0  # the peer's database began again
        self._contact()

    @property
    def _peer_checkpoint_id(self) -> str:
        return f"fusevault-{self.device}"

    def _contact(self) -> None:
        self.status.last_contact = time.time()
        self.status.error = None
        self.status.bytes_up, self.status.bytes_down = self.db.sent, self.db.received

    async def _save_checkpoint(self, push: bool) -> None:
        replica.put_local(self.store, self.checkpoint_id, self.checkpoint)
        if push:
            await self.db.put_local(self._peer_checkpoint_id,
                                    {"push": self.checkpoint.get("push", 0),
                                     "records": self.checkpoint.get("records", 0)})

    async def _after_foreground(self, backlog: bool) -> None:
        """Before a batch of a ``backlog``, wait for a pause in the mount's requests (at most
        ``foreground.MOST``): the drive's user first.  The wait is no work of sync's: not counted
        in its ``BUDGET``."""
        if not backlog:
            return
        waited = await self.foreground.quiet()
        if waited and (counter := WAITED.get()) is not None:
            counter[0] += waited

    # --- push

    async def _push_loop(self) -> None:
        WAITED.set(waited := [0.0])  # this task's own: waiting for the peer is not work
        while True:
            began, before = time.monotonic(), waited[0]
            await self.push()
            await trio.sleep(max(PUSH_EVERY, _rest(time.monotonic() - began - (waited[0] - before))))

    async def push(self) -> None:
        """Send the peer what this replica has and it lacks."""
        if self.keys is not None:
            await self.keys.refresh()
        self.status.pending_up = self.pending_up()
        if not self._stored_since():
            return
        self.status.state = "sending"
        # The documents to send are fixed first: any record one of them needs
        # was placed before it was committed, so it goes in the loop below.
        changes, last = self.store.changes(self.checkpoint.get("push", 0), CHANGES_BATCH * 10)
        backlog = self.status.pending_up > BACKLOG
        await self._push_records(backlog)
        ids = list(dict.fromkeys(c["id"] for c in changes))
        for batch in _chunks(ids, CHANGES_BATCH):
            await self._after_foreground(backlog)
            docs = [doc for doc_id in batch for doc in replica.leaves(self.store, doc_id)
                    if doc.get("type") != PEER]
            wanted: dict[str, list[str]] = {}
            for doc in docs:
                wanted.setdefault(doc["_id"], []).append(doc["_rev"])
            lacking = await self.db.revs_diff(wanted)
            send = [doc for doc in docs if doc["_rev"] in lacking.get(doc["_id"], ())]
            # A _bulk_docs is not atomic: a reader may see part of it.  Key
            # documents go first and node documents last, in requests of
            # their own, so no peer meets a node before its version, or a
            # share or a new key epoch before the keys that open it.
            for part in _in_order(send):
                await self.db.bulk_docs(part)
            self.status.docs_up += len(send)
        self.checkpoint["push"] = last
        await self._save_checkpoint(push=True)
        self._contact()
        self.status.pending_up = self.pending_up()
        self.status.state = "idle"

    async def _push_records(self, backlog: bool) -> None:
        while rows := self._records_since(self.checkpoint.get("records", 0), CHANGES_BATCH):
            by_id = {record_id(row.fid, row.vid, row.idx): row for _, row in rows}
            lacking = await self.db.revs_diff({doc_id: [record_rev(doc_id)] for doc_id in by_id})
            for batch in _chunks([by_id[doc_id] for doc_id in by_id if doc_id in lacking], RECORDS_BATCH):
                await self._after_foreground(backlog)
                docs = await trio.to_thread.run_sync(read_records, self.layout, batch)
                await self.db.bulk_docs(docs)
                self.status.records_up += len(docs)
                self._contact()
            self.checkpoint["records"] = rows[-1][0]
            await self._save_checkpoint(push=True)

    def _records_since(self, n: int, limit: int) -> list[tuple[int, PlaceRow]]:
        return places_table.since(self.store.db, n, limit)

    def pending_up(self) -> int:
        """What this replica still owes the peer: documents and records stored since the last
        push, and key files not mirrored into documents yet (``KeyMirror.unmirrored``)."""
        return self._stored_since() + (self.keys.unmirrored() if self.keys is not None else 0)

    def _stored_since(self) -> int:
        docs = self.store.count_after(self.checkpoint.get("push", 0))
        records = places_table.count_since(self.store.db, self.checkpoint.get("records", 0))
        return docs + records

    # --- pull

    async def _pull_loop(self) -> None:
        WAITED.set(waited := [0.0])
        caught_up = False
        while True:
            # pending_down None: the last batch was full, more is waiting (a backlog).
            await self._after_foreground(not caught_up and self.status.pending_down is None)
            began, before = time.monotonic(), waited[0]
            caught_up = not await self.pull(wait=caught_up)
            if not caught_up:  # only a batch taken in rests
                await trio.sleep(_rest(time.monotonic() - began - (waited[0] - before)))

    def want_again(self) -> None:
        """A tree came to want something of the peers (an unlock loading ``want_punched``, an arrival
        held back for records gc punched, a version walked again, a refused revision's base): the pull
        asks at once, not after the longpoll it waits on (up to ``LONGPOLL_SECONDS``).  Coalesced: any
        number of pokes before the pull looks is one look."""
        self._wake.set()

    async def pull(self, wait: bool = False) -> bool:
        """Take one batch of the peer's changes; False once there were none left."""
        self._wake = trio.Event()  # what is wanted now is asked just below
        await self._take_beneath()  # wanted by a tree unlocked since the last batch
        await self._take_punched()
        since = self.checkpoint.get("pull", 0)
        if wait:
            results, last = await self._longpoll(since)
        else:
            results, last = await self.db.changes(since, CHANGES_BATCH)
        self._contact()
        if not results:
            self.status.pending_down = 0
            if self.checkpoint.get(HELD):
                async with self.settled():
                    self._judge_held(caught_up=True)
            if self.keys is not None:
                self.keys.caught_up()
            return False
        self.status.state = "receiving"
        records: dict[str, str] = {}
        offered: dict[str, list[str]] = {}
        for result in results:
            if not entry_shaped(result):
                self._refused_shape("changes entry", result.get("id") if isinstance(result, dict) else None)
                continue
            revs = [change["rev"] for change in result["changes"]]
            if is_record(result["id"]):
                records[result["id"]] = revs[0]
            else:
                offered[result["id"]] = revs
        lacking = replica.missing(self.store, self._not_ours(offered))
        placed = self._placed(records)
        # A record's revision follows from its id: a placed record offered
        # again under another one was replaced on the peer.
        replaced = [(i, r) for i, r in records.items() if i in placed and r != record_rev(i)]
        if not lacking and not replaced and len(placed) == len(records):
            # Only what this replica has (mostly the echo of its own pushes):
            # nothing to fetch, store or take in.
            self._pulled_echo(last)
            self.status.pending_down = None if len(results) >= CHANGES_BATCH else 0
            self._keys_judged(caught_up=False)  # echoes: the feed may still hold more
            return True
        if replaced:
            await self._check_replaced(replaced)
        punched = self._punched(records, placed)  # left to ``_take_punched`` below
        record_docs = []
        for batch in _chunks([(i, r) for i, r in records.items() if i not in placed and i not in punched],
                             RECORDS_BATCH):
            record_docs += [doc for doc in await self.db.bulk_get(batch) if self._is_record(doc)]
        docs = await self.db.bulk_get([(i, r) for i, revs in lacking.items() for r in revs])
        docs = [doc for doc in docs if self._takes(doc)]
        places = await trio.to_thread.run_sync(place_records, self.layout, record_docs)
        async with self.settled():
            self._store(docs, record_docs, places, last)
            # After the batch is taken in: a node's newer head sent with a gc's deletion of its old one.
            self._judge_held(caught_up=len(results) < CHANGES_BATCH)
        await self._take_beneath()
        await self._take_punched()
        self._keys_judged(caught_up=len(results) < CHANGES_BATCH)
        self.status.pending_down = None if len(results) >= CHANGES_BATCH else 0
        self.status.state = "idle"
        self._contact()
        return True

    async def _longpoll(self, since: object) -> tuple[list[dict], object]:
        """The peer's longpoll from ``since``, and meanwhile, each time a tree comes to want something
        (``want_again``), what it wants asked for (``_take_wanted``).  The longpoll is left running,
        never cancelled and asked again: its request holds a worker thread to its end even abandoned
        (couch_api.py ``THREADS``), so a poke storm would be a storm of longpolls.  The asks run one
        at a time, ``WANTS_EVERY`` apart at least; the answer is taken in once the ask under way ends
        (nothing the pull stores races an ask)."""
        answer: list[tuple[list[dict], object]] = []
        failed: list[Exception] = []
        answered = trio.Event()

        async def poll() -> None:
            try:
                answer.append(await self.db.changes(since, CHANGES_BATCH, wait=True))
            except Exception as err:  # the peer away: raised once the ask under way ended, not into it
                failed.append(err)
            answered.set()
            self._wake.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                if answered.is_set():
                    break
                try:
                    await self._take_wanted()
                except Exception as err:  # noqa: BLE001 - raised once the longpoll ended, never into it
                    # Raised here, it cancelled the longpoll in flight (its thread held to its end
                    # all the same) and ended the pull (attack round 44a (4)).
                    failed.append(err)
                    await answered.wait()
                    break
                with trio.move_on_after(WANTS_EVERY):  # the rest between asks, ended by the answer
                    await answered.wait()
        if failed:
            raise failed[0]
        return answer[0]

    async def _take_wanted(self) -> None:
        """What a tree came to want while the pull waits on the longpoll: the revisions under refused
        ones, the records gc punched (its back-off, counted in pulls, is not shortened by pokes).  The
        peer away for the revisions (a Wi-Fi drop) ends no pull and no longpoll: said, and asked again
        by the next pull (``beneath_wanted`` keeps them until taken in: attack round 44a (4))."""
        try:
            await self._take_beneath()
        except PeerUnavailable as err:
            log.warning("sync with %s: the revisions under refused ones were asked for and not sent (%s): "
                        "asked again at the next pull", self.name, err)
        await self._take_punched(poked=True)

    def _keys_judged(self, caught_up: bool) -> None:
        """The key deletions refused meanwhile judged again, and said, after every batch (echoes and
        full ones too): a server whose feed never comes up empty must not keep them unsaid (attack
        round 42a (5)); behind (a full batch, or echoes), only after a longer while (``KeyMirror.behind``)."""
        if self.keys is not None and caught_up:
            self.keys.caught_up()
        elif self.keys is not None:
            self.keys.behind()

    async def _take_beneath(self) -> None:
        """The revisions refused ones were stacked on that the trees here want (``Beneath``),
        fetched and handed over; what the peer does not send is left out (and said there)."""
        if not (wanted := self.beneath.beneath_wanted()):
            return
        asked = set(wanted)
        docs = await self.db.bulk_get(wanted, missing_ok=True)
        docs = [doc for doc in docs if (doc.get("_id"), doc.get("_rev")) in asked and not doc.get("_deleted")]
        async with self.settled():
            self.beneath.take_beneath(docs)

    def _store(self, docs: list[dict], record_docs: list[dict], places: list, last: object) -> None:
        """Store a batch and have the mount take it in: nothing awaits here, so
        the mount's tree takes the documents in before any request can see
        the store ahead of it (and, inside ``settled``, after every local
        change the kernel was answered for is committed)."""
        arrival = replica.store_revisions(self.store, docs, places)
        self._refused_branches(arrival.refused)
        if self.keys is not None:
            self.keys.arrived(d["_id"] for d in arrival.current if is_key_doc(d["_id"]))
        if places and self.layout.places is not None:
            self.layout.places.note_arrival(row.fid for row in places)  # open readers look again
        self.checkpoint["pull"] = last
        replica.put_local(self.store, self.checkpoint_id, self.checkpoint)
        self._pull_saved = time.monotonic()
        self.status.docs_down += len(docs)
        self.status.records_down += len(record_docs)
        if arrival.conflicts:
            log.info("sync with %s: %d document(s) were changed here and there", self.name,
                     len(arrival.conflicts))
        if arrival.current or arrival.conflicts or places:
            # Records alone too: a file held back until its version's records came is shown now.
            self.arrived(arrival.current, self._conflicts_brought(arrival))

    def _conflicts_brought(self, arrival: replica.Arrival) -> list[str]:
        """The documents of a batch in conflict after it (a branch opened, or a branch of one in conflict
        moved on): what the mount's trees settle, with what a settling of theirs left for a later arrival
        (fs/arrivals.py ``_hand``).  Not the store's every conflicted id: one on another owner's node is
        never settled here, and a server's 50,000 planted ones were read on the loop at every batch
        (attack round 74c (2)).  One indexed look-up per document of the batch."""
        brought = [*arrival.conflicts, *(doc["_id"] for doc in arrival.current)]
        return replica.conflicted_of(self.store, brought)

    def _refused_branches(self, doc_ids: list[str]) -> None:
        """Say the documents a revision of which was refused for opening one branch too many
        (``replica.LEAVES_PER_DOC``: a server, or a member's client, storing hundreds of sibling
        leaves of one document).  Not stored: the leaves held stay; the pull goes on (the peer
        keeps the revision)."""
        for doc_id in doc_ids:
            text = (f"sync with {self.name}: refused a revision of {doc_id[:80]} that would open one more "
                    f"branch than a document keeps ({replica.LEAVES_PER_DOC} live, "
                    f"{replica.CLOSED_PER_DOC} closed; the server's doing?): not stored, the branches "
                    "held here kept")
            self._refused(f"branches {doc_id[:80]}", text)

    def _is_record(self, doc: dict) -> bool:
        """A deletion at a record's id, or a document there that is no record, is never placed and
        never fails the batch: one such stopped every later pull of every device, and every join,
        for good (attack round 40b (2)).  Said; the record stays missing, which its version's
        readers say too."""
        if (why := malformed(doc)) is None:
            return True
        doc_id = str(doc.get("_id"))[:80]
        self._refused(f"record {doc_id}", f"sync with {self.name}: refused {why} at record id {doc_id!r} "
                      "(the server, or a peer who may write its database?): not placed")
        return False

    def _not_ours(self, offered: dict[str, list[str]]) -> dict[str, list[str]]:
        """``offered`` without what is current here as offered (one indexed
        look-up each, not the revision history ``replica.missing`` reads)."""
        db = self.store.db
        out = {}
        for doc_id, revs in offered.items():
            if len(revs) == 1:
                row = db.execute("SELECT rev FROM docs WHERE id = ?", (doc_id,)).fetchone()
                if row is not None and row[0] == revs[0]:
                    continue
            out[doc_id] = revs
        return out

    def _pulled_echo(self, last: object) -> None:
        self.checkpoint["pull"] = last
        if time.monotonic() - self._pull_saved >= PULL_CHECKPOINT_EVERY:
            replica.put_local(self.store, self.checkpoint_id, self.checkpoint)
            self._pull_saved = time.monotonic()

    def _refused_shape(self, what: str, doc_id: object) -> None:
        """Say a changes entry or document of no shape the store takes (sync/answer_shapes.py)."""
        shown_id = ascii(doc_id)[:80]
        self._refused(f"shape {shown_id}", f"sync with {self.name}: refused a {what} of no shape fusevault "
                      f"writes ({shown_id}; the server, or a peer who may write its database?): not stored")

    def _takes(self, doc: dict) -> bool:
        # Peers documents are each replica's own; a vault document naming
        # another vault would be refused at the next connect anyway.
        if not doc_shaped(doc):
            self._refused_shape("document", doc.get("_id"))
            return False
        if doc["_id"] == VAULT_DOC:
            return doc.get("vault_id") == self.layout.vault_id
        if doc.get("_deleted") and not self._deletion_taken(doc):
            return False
        if doc.get("type") in PLACED and not is_id(doc["_id"]) and not doc.get("_deleted"):
            # Its id becomes a path in the vault folder (users/<id>/, groups/<id>/, own/<id>.vf): one
            # that is no name fusevault makes ("../../x") is the peer's forgery, never stored here.
            text = (f"sync with {self.name}: refused a {doc.get('type')} document whose id "
                    f"{str(doc['_id'])[:80]!r} is no name fusevault makes (a path outside the vault folder?)")
            self._refused(f"id {str(doc['_id'])[:80]}", text)
            return False
        return doc.get("type") != PEER

    def _deletion_taken(self, doc: dict) -> bool:
        """May a deletion a peer sent be stored here?  A deletion is a bare revision
        that anyone holding the database may make (no signature), so one that would
        delete what this replica holds live is not taken where that would lose what
        only that document holds (attack round 18):
        - a user's document (her wrapped master key, her identity keys): a server that
          deleted it locked her out of every file on every device it reached.  A user is
          removed with ``fusevault user remove`` on each device (docs/SECURITY.md);
        - a node document this replica holds live and not in the trash: a server that
          deleted one made the file vanish at the next mount, unsaid.  A peer's gc purges
          only files in the trash, which this replica then holds deleted too;
        - a version document: held back, judged once the batch is taken in (``_judge_held``).
        A deletion on another branch (a conflict's losing leaf closed) deletes nothing
        live and is taken.  Refused: kept as it is here, and said (``fusevault status``)."""
        current = self._live(doc)
        if current is None:
            return True
        if doc.get("_rev") == replica.closing_rev(doc["_id"], current["_rev"]):
            # Another device settled a conflict by closing the branch that is current here, before
            # the branch it kept reached this replica (the pull takes changes in the order the
            # server lists them).  Not stored (this replica would hold the file deleted until then),
            # and not said: when the kept branch comes, the conflict is settled here the same way,
            # closing this branch with this very revision (its id is derived).  A server that forges
            # one gains nothing: it is not taken.
            log.info("sync with %s: the close of the current branch of %s waits for the branch kept",
                     self.name, str(doc["_id"])[:80])
            return False
        kind = current.get("type")
        if kind == VERSION:
            self.checkpoint.setdefault(HELD, {})[doc["_id"]] = doc
            return False
        if not (kind == USER or (kind == NODE and not current.get("delete"))):
            return True
        self._refused_deletion(kind, doc["_id"])
        return False

    def _live(self, doc: dict) -> dict | None:
        """The live current revision here that deletion ``doc`` would end, or None (nothing
        here, a deletion already, or another branch's leaf that the deletion closes)."""
        try:
            current = self.store.get(doc["_id"])
        except Unreadable:
            return None  # nothing here that reads: nothing to keep
        if current is None:
            return None
        try:
            if current["_rev"] not in replica.history_from(doc):
                return None  # another branch closed: nothing live is deleted
        except (KeyError, TypeError, ValueError):
            pass  # a malformed history: never taken over a live document
        return current

    def _judge_held(self, caught_up: bool) -> None:
        """The held deletions of version documents, judged by the trees unlocked here.  gc
        (vault/services/gc.py) deletes only versions no kept state names: never the one a live
        file shows (its head), which a server's bare tombstone would make unreadable for good
        (attack round 18, hole 2).  A version a tree does not name (one gc thinned, or of a
        file purged from the trash) is deleted here too; one it names stays held, judged again
        at every batch: the peer's newer head may follow the deletion, even after this replica
        caught up with the server (the device that ran gc pushes its newer head after gc's
        deletions, now and then).  Once it has been held a while (``SAY_HELD_AFTER``) with the
        pull caught up, it is said (refused, kept here); it is still taken if the head moves
        on.  Nobody unlocked: held."""
        held: dict[str, dict] = self.checkpoint.get(HELD) or {}
        if not held:
            return
        since = self._held_since(held)
        taken, before = [], (len(held), dict(since))
        for doc_id, doc in list(held.items()):
            current = self._live(doc)
            verdict = None if current is None else self.names(current)
            if verdict is None and current is not None:
                continue  # nobody here can tell yet
            if verdict:
                first = since.setdefault(doc_id, time.time())
                if caught_up and time.time() - first >= SAY_HELD_AFTER:
                    self._refused_deletion(VERSION, doc_id)  # once: alarms count repeats
                continue
            del held[doc_id]
            since.pop(doc_id, None)
            taken.append(doc)
        if not held:
            self.checkpoint.pop(HELD, None)
            self.checkpoint.pop(HELD_SINCE, None)
        if taken:
            arrival = replica.store_revisions(self.store, taken)
            self._refused_branches(arrival.refused)
            if arrival.current:
                self.arrived(arrival.current, self._conflicts_brought(arrival))
        if (len(held), since) != before:
            replica.put_local(self.store, self.checkpoint_id, self.checkpoint)

    def _held_since(self, held: dict) -> dict[str, float]:
        """When each held deletion was first seen naming a live head (wall clock, kept in the
        checkpoint across mounts; a value that is no finite time, a store writer's, is reset)."""
        since = self.checkpoint.get(HELD_SINCE)
        if not isinstance(since, dict):
            since = {}
        now = time.time()
        kept = {k: v for k, v in since.items() if k in held and isinstance(v, int | float)
                and not isinstance(v, bool) and math.isfinite(v) and v <= now}
        self.checkpoint[HELD_SINCE] = kept
        return kept

    def _refused_deletion(self, kind: object, doc_id: str) -> None:
        text = (f"sync with {self.name}: refused the deletion of {kind} {doc_id[:80]} (unsigned, "
                "and it would lose what this replica holds live); kept here")
        self._refused(f"deletion {doc_id[:80]}", text)

    def _refused(self, subject: str, text: str) -> None:
        """Say what a peer sent that was refused: an alarm for ``fusevault status`` (the log when
        this vault keeps no places, a CouchDB store's)."""
        if self.layout.places is not None:
            alarm(self.layout.places, subject, text)
        else:
            log.warning("%s", text)

    async def _check_replaced(self, offered: list[tuple[str, str]]) -> None:
        """The first copy of a record is kept; one offered with other bytes
        for the same place is a forgery (anyone holding the file's key can
        make a record that authenticates): reported, never placed."""
        for doc in await self.db.bulk_get(offered):
            try:
                fid, vid, idx = parse_record_id(doc["_id"])
                theirs = await trio.to_thread.run_sync(record_sha, doc)
            except (KeyError, ValueError, PeerUnavailable):
                continue
            row = places_table.find(self.store.db, fid, vid, idx)
            ours = await trio.to_thread.run_sync(read_records, self.layout, [row]) if row else []
            if ours and record_sha(ours[0]) != theirs:
                text = (f"sync with {self.name}: record {doc['_id']} was offered with other bytes than "
                        "the copy kept here: refused (a forgery by someone holding the file's key?)")
                self._refused(f"replaced {doc['_id']}", text)

    def _punched(self, records: dict[str, str], placed: set[str]) -> set[str]:
        """The records of a batch, not placed here, that gc punched here: never placed from the feed.
        Placed as any record, the bytes the server sent were kept unchecked (the first copy is kept)
        and taken off the punched list (``insert_arrived``), so no other peer was asked for them: the
        versions inheriting them read EIO for good (attack round 45b (2), 43a (1)'s check bypassed).
        One a version wants is asked by id and checked against its manifest's hash (``_take_punched``,
        after the batch); one none wants is not fetched (gc found nothing here naming it).  One query
        for the batch (``punched_among``)."""
        ids: dict[tuple[str, str, int], str] = {}
        for doc_id in records:
            if doc_id in placed:
                continue
            try:
                ids[parse_record_id(doc_id)] = doc_id
            except ValueError:
                continue  # refused when it is placed
        punched = places_table.punched_among(self.store.db, list(ids))
        if punched:
            # The feed says this peer has them now: asked of it again though once asked in vain (46a (4)).
            self.beneath.listed_records(self.name, set(punched))
            log.info("sync with %s: %d record(s) gc punched here listed in the changes: not placed from "
                     "them (asked by id, checked, if a version wants them)", self.name, len(punched))
        return {ids[key] for key in punched}

    def _placed(self, records: dict[str, str]) -> set[str]:
        placed = set()
        db = self.store.db
        for doc_id in records:
            try:
                fid, vid, idx = parse_record_id(doc_id)
            except ValueError:
                continue  # refused when it is placed
            if places_table.find(db, fid, vid, idx) is not None:
                placed.add(doc_id)
        return placed
