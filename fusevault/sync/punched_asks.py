"""Records gc punched out here that a peer's version inherits, asked of one peer again.

The trees want them (vault/services/punched_wants.py, through fs/arrivals.py ``Arrivals``: the
``WantedAgain`` the replicator's ``beneath`` is); the replicator (sync/replicator.py, which mixes
``PunchedAsks`` in) asks for them first in every pull and when a tree pokes it (``_take_punched``):
fetched by id at their one revision, ``RECORDS_BATCH`` at a time, each placed once it hashes as every
version wanting it whose hash counts names it (``_as_named``), the asks a peer answered in vain noted
(``_in_vain``), a failed ask backed off in pulls (``_punched_ask_failed``).  Its lookups of the places
table run on a worker thread, one query per batch (``_copies_here``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Protocol

import trio

from fusevault.errors import PeerUnavailable
from fusevault.store import places as places_table
from fusevault.store import replica
from fusevault.store.local import LocalStore
from fusevault.sync.content_docs import (
    RECORDS_BATCH,
    parse_record_id,
    place_records,
    record_id,
    record_rev,
    record_sha,
)
from fusevault.vault.format.layout import Layout

if TYPE_CHECKING:  # the HTTP client is loaded once a peer is contacted (sync/waited.py says why)
    from fusevault.sync.couch_api import CouchDatabase

log = logging.getLogger(__name__)

# Asks for records gc punched here (``_take_punched``) failing in a row before the versions wanting
# them are given up with this peer (said): after the first failures the next pulls go on without
# asking, 1, 3, 7 of them (a back-off counted in pulls: an away peer fails its changes feed too).
PUNCHED_TRIES = 4
# Copies of one record kept here at most (store/places.py ``copies``: versions naming other bytes for
# it, its writer's version gone here, each read the copy they name): one more is not placed, said.
COPIES_PER_RECORD = 4


class WantedAgain(Protocol):
    """What the mount's trees want again of the peers (fs/arrivals.py ``Arrivals``)."""

    # Records gc punched out here that a peer's version held back (or shown as it is) inherits (attack
    # round 41b (1)): ((fid, that version), the record's vid, its index, its owner, the SHA-256 its
    # version's manifest names or None) not asked of ``peer`` in vain yet, fetched again by id; then
    # ``asked_records`` with those of the asks ``peer`` sent none of (not asked of it again, but of the
    # other peers: 42a (1)) and the (fid, vid, index) placed, and the trees look again.
    def records_wanted(self, peer: str) -> list[tuple[tuple[str, str], str, int, str, bytes | None]]: ...

    def asked_records(self, peer: str, in_vain: set[tuple[tuple[str, str], str, int]],
                      came: set[tuple[str, str, int]]) -> None: ...

    # ``peer``'s changes feed lists these (fid, vid, index) gc punched here: asked of it again.
    def listed_records(self, peer: str, listed: set[tuple[str, str, int]]) -> None: ...


class Counted(Protocol):
    """A peer's counters (sync/replicator.py ``PeerStatus``): the records that came."""

    records_down: int


# Record id -> (owner, the SHA-256s the versions wanting it name: the record must hash as each).
Expected = dict[str, tuple[str, set[bytes]]]
Wanting = dict[str, list[tuple[tuple[str, str], str, int]]]  # record id -> (version, vid, idx) of each


def _expected_records(wanted: list[tuple[tuple[str, str], str, int, str, bytes | None]]
                      ) -> tuple[Expected, Wanting]:
    """The rows ``records_wanted`` gave, by record id: the owner and every hash a version wanting it
    names (``_as_named`` checks each: attack round 43d (1)), and the versions wanting it.  Rows of one
    record naming other owners: the first-sorted's owner is asked for, as a record has one."""
    expected: Expected = {}
    wanting: Wanting = {}
    for version, vid, idx, owner, sha in wanted:
        doc_id = record_id(version[0], vid, idx)
        _, named = expected.setdefault(doc_id, (owner, set()))
        if sha is not None:
            named.add(sha)
        wanting.setdefault(doc_id, []).append((version, vid, idx))
    return expected, wanting


def _placed_meanwhile(doc: dict, sha: str, here: dict[tuple[str, str, int], set[str | None]]) -> bool:
    """Whether a copy of ``doc``'s record with its bytes (hash ``sha``, hex) is placed here (or one
    from before hashes were kept): placed meanwhile, by another peer's answer."""
    shas = here.get(parse_record_id(doc["_id"]))
    return shas is not None and (sha in shas or None in shas)


def _in_vain(batch: list[str], docs: list[dict], placed: set[tuple[str, str, int]]) -> list[str]:
    """The record ids of one ask not to ask this peer again: every one if it placed none; else those it
    answered with something not placed (other bytes, another owner, no record), record by record.  Left
    to the batch, the garbage sent beside one good record was asked again at every pull, quadratic
    (attack round 43d (2)).  Those it sent nothing for beside one placed are asked again: a peer
    holding them may send part of an ask (each such ask places one, so this ends: 43a (3))."""
    if not placed:
        return batch
    sent = {doc_id for doc in docs if isinstance(doc, dict) and isinstance(doc_id := doc.get("_id"), str)}
    return [doc_id for doc_id in batch if doc_id in sent and parse_record_id(doc_id) not in placed]


class PunchedAsks:
    """The asks of one replicator (sync/replicator.py ``Replicator``, which mixes this in and provides
    the attributes and the three methods below) for the records its trees want again."""

    name: str
    db: CouchDatabase
    store: LocalStore
    layout: Layout
    status: Counted
    beneath: WantedAgain
    settled: Callable[[], AbstractAsyncContextManager[object]]
    arrived: Callable[[list[dict], list[str]], None]
    # Asks for records gc punched here that failed in a row, and how many of the next pulls go on
    # without asking (``_take_punched``): counted by each replicator, from nothing.
    _punched_failures = 0
    _punched_wait = 0
    # Lookups of the places table for these asks: one worker thread at a time (made at the first).
    _lookups: trio.CapacityLimiter | None = None

    async def _take_punched(self, poked: bool = False) -> None:
        """The records gc punched out here that a peer's version held back (or shown as it is) names
        (``WantedAgain``), fetched at their one revision and appended as any record is, once each is the
        record its version's manifest names (its hash: a Merkle leaf names each block's, a parent node
        each node's; an unhashed manifest names none, such a record is checked when read).  One the
        peer does not send, sends as no record of that owner or with other bytes (said), stays missing:
        the records of an ask it sent none of are not asked of this peer again (the version is taken in
        as it is, its reads say EIO until another peer sends them: attack round 43a (1), a peer's
        garbage counted as sent kept them from the peer holding them); of an ask it sent some of, those
        it sent other bytes for are not asked of it again either, record by record (43d (2)), those it
        sent nothing for are (``_in_vain``); a version some came for is looked at again, and may want
        more (its manifest tree's nodes come first).  A record several versions want is placed only as
        each names it (``_as_named``, 43d (1)).

        Asked ``RECORDS_BATCH`` at a time, as the pull's own records, each batch placed as it comes:
        a large file wants many (attack round 42a (6): one answer of gigabytes).  An ask that fails
        ends this peer's asks for now and notes nothing asked: asked again after a back-off counted in
        pulls (``PUNCHED_TRIES``), the pull going on meanwhile (this runs first in every pull: a failure
        left to stop it would keep the pull from this peer's changes for ever).  Counted as nothing
        sent, one failure (a Wi-Fi drop) gave the version up until the next unlock though this peer
        held every record (43a (6)).

        ``poked``: asked between pulls, as a tree came to want records (``want_again``): not a pull,
        so a back-off under way is neither shortened nor ended by it."""
        if self._punched_wait:
            if not poked:
                self._punched_wait -= 1  # asks failed lately: this pull goes on without asking
            return
        if not (wanted := self.beneath.records_wanted(self.name)):
            return
        expected, wanting = _expected_records(wanted)
        came = await self._placed_already(expected)
        in_vain: set[tuple[tuple[str, str], str, int]] = set()
        ids = sorted(expected)
        for n, batch in enumerate(ids[at:at + RECORDS_BATCH] for at in range(0, len(ids), RECORDS_BATCH)):
            await self._after_foreground(n > 0)  # many batches: the drive's user first
            try:
                docs = await self.db.bulk_get([(i, record_rev(i)) for i in batch], missing_ok=True)
            except (PeerUnavailable, KeyError, TypeError, ValueError, AttributeError) as err:
                # Away, or an answer of no shape (``bulk_get`` reads ``results`` as CouchDB's).
                if self._punched_ask_failed(err):
                    in_vain |= {row for rows in wanting.values() for row in rows
                                if (row[0][0], row[1], row[2]) not in came}
                break
            self._punched_failures = 0
            placed = await self._place_punched(docs, expected)
            came |= placed
            in_vain |= {row for doc_id in _in_vain(batch, docs, placed) for row in wanting[doc_id]}
        async with self.settled():
            self.beneath.asked_records(self.name, in_vain, came)
            self.arrived([], [])  # held back: the trees look again (at the conflicts left waiting too)

    def _punched_ask_failed(self, err: Exception) -> bool:
        """An ask for records gc punched failed: the next ``2**k - 1`` pulls go on without asking, after
        ``k`` failures in a row; at ``PUNCHED_TRIES``, this peer is given up for the versions wanting
        them (said): whether it was."""
        self._punched_failures += 1
        if self._punched_failures < PUNCHED_TRIES:
            self._punched_wait = (1 << self._punched_failures) - 1
            log.warning("sync with %s: records gc punched here were asked for and not sent (%s): asked "
                        "again after %d pull(s)", self.name, err, self._punched_wait)
            return False
        self._punched_failures = 0
        text = (f"sync with {self.name}: records gc punched here were asked for {PUNCHED_TRIES} times in a "
                f"row and the asks failed ({err}): the versions that want them read EIO until another "
                "peer sends them (or the next unlock)")
        self._refused(f"punched records of {self.name}", text)
        return True

    async def _place_punched(self, docs: list[dict],
                             expected: Expected) -> set[tuple[str, str, int]]:
        """The records of one answer that were asked for (``_wanted_record``), not placed meanwhile, and
        hash as their version's manifest names (``_as_named``), placed and stored: the (fid, vid, idx) of
        each."""
        docs = [doc for doc in docs if self._wanted_record(doc, expected)]
        if docs:
            shas = await trio.to_thread.run_sync(lambda: [record_sha(doc) for doc in docs])
            here = await self._copies_here([str(doc["_id"]) for doc in docs])  # placed meanwhile?
            docs = [doc for doc, sha in zip(docs, shas)
                    if not _placed_meanwhile(doc, sha, here) and self._as_named(doc, sha, expected)
                    and self._a_new_copy(doc, sha, here)]
        if not docs:
            return set()
        places = await trio.to_thread.run_sync(place_records, self.layout, docs)
        async with self.settled():
            replica.store_revisions(self.store, [], places, again=True)
            if self.layout.places is not None:
                self.layout.places.note_arrival(row.fid for row in places)  # open readers look again
            self.status.records_down += len(places)
        return {(row.fid, row.vid, row.idx) for row in places}

    async def _placed_already(self, expected: Expected) -> set[tuple[str, str, int]]:
        """The records wanted that are placed here already with every hash the versions wanting them
        name (a copy each: store/places.py ``copies``; any copy where none is named, or one placed
        before hashes were kept), taken out of ``expected`` (not asked): the (fid, vid, idx) of each,
        noted as come.  Placed by an ask whose note then failed (its commit, or the pull cancelled
        there), they were counted in vain at every later ask, the version never walked again to the
        blocks its manifest tree's nodes name: EIO until the next unlock (attack round 44a (3)).  Of a
        record placed with some of the hashes named, only the others are asked for: a version whose
        copy is here (set aside to be walked again, still counted) never keeps the copy another
        version names from being placed (attack round 46a (3))."""
        here = await self._copies_here(list(expected))
        out = set()
        for doc_id in list(expected):
            if (shas := here.get(record := parse_record_id(doc_id))) is None:
                continue
            owner, named = expected[doc_id]
            left = {sha for sha in named if sha.hex() not in shas}
            if left and None not in shas:
                expected[doc_id] = (owner, left)
            else:
                del expected[doc_id]
                out.add(record)
        return out

    async def _copies_here(self, doc_ids: list[str]) -> dict[tuple[str, str, int], set[str | None]]:
        """(fid, vid, idx) -> the SHA-256s (hex, None for a row from before hashes were kept) of the
        copies here of those of the records ``doc_ids`` names that are placed: looked up on a worker
        thread, one query per batch (``places.placed_shas``), never a query per record on the loop (a
        large file wants thousands)."""
        records = [parse_record_id(doc_id) for doc_id in doc_ids]
        places = self.layout.places
        if not records:
            return {}
        if places is None:  # no reader of its own (never so where records are wanted again)
            return places_table.placed_shas(self.store.db, records)
        if self._lookups is None:
            self._lookups = trio.CapacityLimiter(1)
        return await trio.to_thread.run_sync(places.placed_shas, records, limiter=self._lookups)

    def _a_new_copy(self, doc: dict, sha: str, here: dict[tuple[str, str, int], set[str | None]]) -> bool:
        """Whether a record fetched again (hashing ``sha``, as the versions wanting it name, and not
        placed meanwhile) is kept: beside a copy of other bytes (which other versions name, its
        writer's version gone here: ``punched_wants._other_copy``) said, up to ``COPIES_PER_RECORD``
        copies."""
        if (shas := here.get(parse_record_id(doc["_id"]))) is None:
            return True
        doc_id = str(doc["_id"])[:120]
        if len(shas) >= COPIES_PER_RECORD:
            self._refused(f"record {doc_id}", f"sync with {self.name}: record {doc_id}, wanted again as gc "
                          f"punched it here: {len(shas)} copies of other bytes are here already (versions "
                          "naming other bytes for it: a member's forgery?): not placed")
            return False
        self._refused(f"record {doc_id}", f"sync with {self.name}: record {doc_id}, wanted again as gc "
                      "punched it here, is placed beside a copy of other bytes that another version names (a "
                      "member's forgery? its writer's version is gone here): each version reads the copy it "
                      "names")
        return True

    def _wanted_record(self, doc: dict, expected: Expected) -> bool:
        """``doc`` is a record asked for, at its revision, of the owner this replica knew it by (whether
        it was placed again meanwhile is looked up for the whole answer: ``_place_punched``)."""
        doc_id = doc.get("_id")
        if not isinstance(doc_id, str) or doc_id not in expected or doc.get("_rev") != record_rev(doc_id):
            return False
        return self._is_record(doc) and doc.get("owner") == expected[doc_id][0]

    def _as_named(self, doc: dict, sha: str, expected: Expected) -> bool:
        """Whether a record fetched again hashes (``sha``, hex) as every version wanting it whose manifest
        names a hash names it (none naming one: it is checked when read).  The record is one for all of
        them (its id is the writer's (fid, vid, index)): checked against the first-sorted one's only, a
        member's version (or an unhashed one) naming other bytes had the server's placed for all, her
        genuine one reading EIO for good (attack round 43d (1)).  Where the record's writer's own signed
        version vouches for its hash here, ``wanted_of`` gives that one alone; else every wanting
        version's, vouched or not, asked in vain or not (attack round 46a): versions naming other bytes
        have none placed, said, and it is asked again once the versions wanting it change.  Placed, one
        with other bytes was kept as the record (the first copy is kept) and taken off the punched
        list, so no other peer was asked for it: EIO for good (attack round 43a (1)).  Said, and not
        placed: still wanted of the other peers."""
        named = expected[doc["_id"]][1]
        if all(each.hex() == sha for each in named):
            return True
        doc_id = str(doc["_id"])[:120]
        if len(named) > 1:
            why = (f"the versions wanting it name {len(named)} different hashes (a member's concurrent "
                   "version?): not placed for any until they agree (the conflict settled), then asked again")
        else:
            why = ("came with other bytes than its version's manifest names (garbage, or a forgery): not "
                   "placed; asked of the other peers")
        self._refused(f"record {doc_id}", f"sync with {self.name}: record {doc_id}, wanted again as gc "
                      f"punched it here: {why}")
        return False

    async def _after_foreground(self, backlog: bool) -> None:
        raise NotImplementedError  # the replicator's: a pause in the mount's requests first

    def _is_record(self, doc: dict) -> bool:
        raise NotImplementedError  # the replicator's: a document at a record's id that is a record

    def _refused(self, subject: str, text: str) -> None:
        raise NotImplementedError  # the replicator's: said (an alarm)
