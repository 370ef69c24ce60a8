"""Attack round 74c (in-process part), at round 73b's fix (1bb69a9, 86c5504: ``read_call`` for the
reads the store's contents size, ``LongCallOnLoop`` for a scan inside an inline ``store_call``).

(1) low-medium (her drop boxes not collected for the rest of her session; a false tamper alarm): a
    regression of 73b (1)'s move of ``Links._records`` to ``read_call``.
    Attacker: none needed: her first link command just after her unlock (a script's `fusevault link
    create --drop` after `unlock`); the window is as long as the read of every link record of the
    store (every user's), which anyone who makes link records (the vault's users, a sync peer
    planting ``LinkRecord`` documents) lengthens.
    Steps: her mount's drop-box collector starts at once with ``Links.drop_boxes()`` (links/owner.py
    ``collect_periodically``), outside the control requests' turn and without the links' lock; it
    reads the records (``_records``); while that read runs on its worker thread (a snapshot), her
    ``fusevault link create --drop Inbox`` request runs (the links' lock, its record saved,
    ``has_drops`` set True).  (``link list`` reads the same way, but the requests' ``turn`` keeps it
    from crossing her create.)
    Seen: the read ends with the snapshot from before her record and sets ``has_drops = False``
    (owner.py ``_records``), over the True her create set; from then on every ``collect()`` (the
    collector's every minute, her own ``fusevault link collect``) returns at once with 0 files
    (owner.py ``collect``: ``if self.has_drops is False: return``): the box's drops wait on the link
    store, unsaid, until a ``link list``/``push``/``revoke`` or her next unlock reads the records
    again.  Its ``_kept()`` read after the stale snapshot also holds her new record: "the record of
    link ... this device made is missing from the store (removed by whoever writes it?)" in her
    status, a false tamper alarm.
    Before 73b's fix the read was one synchronous call on the loop: her create's commit came either
    before it (seen) or after it (then ``has_drops = True`` last); only the worker thread's await lets
    the create run in between and the stale answer land last.
    Cause: fusevault/links/owner.py:118-122 (``_records``: ``has_drops`` set from a snapshot read
    outside the lock), :308-310 (``drop_boxes``: no lock).
    Impact: drops whose droppers were told "dropped" are not taken in for the whole session, while
    ``link collect`` says 0 files and no error.
    Suggested fix: set ``has_drops`` only under ``self.lock`` (``drop_boxes`` and ``listing`` take it
    around the read), or only ever raise it outside the lock (``has_drops = has_drops or found``)
    and lower it in ``collect`` under the lock; say a record missing only if the store still lacks it
    after a read begun after the record was kept.
    Test: ``test_74c_1_a_drop_box_made_while_the_collector_reads_the_records_is_collected``
    (deterministic: the read is held after its snapshot until the create ended).
    Control: ``test_control_74c_1_a_drop_box_made_before_the_read_is_collected``.

(2) medium (a sync peer freezes the mount's loop at every pull batch, for as long as it likes): a
    long read still on the loop that a peer sizes, at every batch.
    Attacker: the CouchDB server (or any peer) she syncs with.
    Steps: it sends N documents of type ``node`` under ids fusevault makes, their ``owner`` a user no
    one unlocks on her device (any id), each in two branches (two revisions of generation 1: a
    conflict).  Then any change at all (one document a second).
    Seen: at every pull batch, ``Replicator._store`` hands the mount every conflicted id of the store,
    not the batch's (sync/replicator.py:546: ``replica.conflicted(self.store)``, a ``SELECT DISTINCT``
    of the whole leaves table); for each unlocked user ``Arrivals.arrived`` then runs ``note_branches``
    (a ``store.get`` per id, synchronous, on the loop) and starts ``_settle_conflicts`` (conflicts.py
    ``settle``: ``commit_pending``, ``other_leaves``, ``store.get`` per id).  A conflict on another
    owner's node is never settled here ("its owner's devices settle it", conflicts.py:228-229), so
    the same N ids come back at every later batch, forever.  Here (N = 300): the mount's handling of
    a second batch of one unrelated document read all 300 again.  Measured with N = 50,000 (a probe,
    not kept: this machine, 2 shared cores, one unlocked user, a trio task ticking every 5 ms): per
    batch of one document the loop stood still 0.56 s (``conflicted`` and ``note_branches``, one
    synchronous run), then spent 2.0 s more settling (it yields between ids); N = 10,000: 0.1 s and
    0.5 s; linear.  Per unlocked user (a shared mount: each seat's ``note_branches`` and settling).
    A ``_settle_conflicts`` task is started per batch, each with the N ids, one at a time under
    ``_settling``: batches coming faster than a settling ends pile them up.
    Cause: fusevault/sync/replicator.py:546 (``self.arrived(arrival.current, replica.conflicted(...))``
    at every batch), fusevault/fs/arrivals.py:104-111 (``note_branches`` and ``_settle_conflicts`` of
    every id handed), fusevault/vault/services/conflicts.py:228-229 (another owner's conflict left
    open).
    Impact: a server makes every user's requests (personal mount; root's shared mount: all its users)
    wait at each change it sends (0.56 s of a still loop at 50,000 conflicts, linear in N), as often
    as it sends them.
    Suggested fix: hand the mount the conflicts the batch brought (``arrival.conflicts``), those of
    the store only once (at unlock, or after a settling left some); or remember the ids looked at and
    left to their owners and skip them until their leaves change; and run the look over many ids off
    the loop or in slices with the loop served between.
    Test: ``test_74c_2_a_batch_of_one_document_does_not_look_at_every_conflict_of_the_store``
    (deterministic: counts the ids the mount's handling of one batch reads).
    Control: ``test_control_74c_2_a_batch_bringing_a_conflict_hands_it_to_the_mount``.

What held (read, or run, round 74c): every function an inline ``store_call`` runs (retention, settings,
``users.judged``, ``Trust.save``, ``rotation._forget``/``_groups_removed``, the link and import record
look-ups by id, gc's ``forget_places``/``compact``, ``upgrading``'s place batches) makes no scan that
``short_calls.scan`` refuses, so no production path raised ``LongCallOnLoop`` in what I read; the
shared mount's listener runs ``lifted``.  The on-loop scans the 73b limits list (``KeyMirror.refresh``,
``_read_uids`` at a commit of a user document, ``Guests.reload``) were not reported again.
Not tried: timing of the shared mount's listener; Couch-store mounts.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import trio
from holding_link_store import answer, holding_link_store
from trio.testing import wait_all_tasks_blocked

from fusevault.fs import arrivals
from fusevault.fs.arrivals import Arrivals
from fusevault.links import link_records, owner
from fusevault.links.owner import Links
from fusevault.store import replica
from fusevault.sync.replicator import PeerStatus, Replicator
from fusevault.vault.model import alarms
from fusevault.vault.model.nodes import NODE, new_id
from fusevault.vault.services import conflicts
from fusevault.vault.services.placing import NoKernel
from fusevault.vault.tree.arrivals import Absorbed

# --- (1) a drop box made while the collector reads the records


def _empty_box_store():
    """A link store that makes items at once and answers every other call with an empty box."""
    return holding_link_store(lambda conn, stop: answer(conn, b'{"versions": []}'))


def _held_read(monkeypatch) -> tuple[threading.Event, threading.Event]:
    """The first read of the link records is held after its snapshot was taken (its records read)
    until ``go``: as long as a read of many records takes.  ``read`` is set once it has them."""
    read, go = threading.Event(), threading.Event()
    real = owner.load_records
    first = [True]

    def held(store, key):
        found = real(store, key)
        if first[0]:
            first[0] = False
            read.set()
            go.wait(30)
        return found

    monkeypatch.setattr(owner, "load_records", held)
    return read, go


def _said_missing(fs) -> list[str]:
    """The links said missing from the store in her status (``Links._say_missing``)."""
    said = alarms.for_user(fs.volume.key.user_id).as_list()
    return [e["subject"] for e in said if e["kind"] == "link-record"]


async def _created_during_the_read(fs, monkeypatch, url: str, read_of) -> Links:
    """Her ``link create --drop Inbox`` made while ``read_of(links)`` (a read outside the links' lock) has
    its snapshot of the records, taken before her record."""
    links = Links(fs.volume, NoKernel())
    read, go = _held_read(monkeypatch)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_of, links)
            assert await trio.to_thread.run_sync(read.wait, 30)
            await links.create(b"Inbox", url, True, None)  # her `link create --drop Inbox`
            assert links.has_drops is True
            go.set()
    finally:
        go.set()
    return links


async def test_74c_1_a_drop_box_made_while_the_collector_reads_the_records_is_collected(fs, monkeypatch):
    with _empty_box_store() as (url, asked, _):
        # The collector's first look, at her unlock.
        links = await _created_during_the_read(fs, monkeypatch, url, Links.drop_boxes)
        found = await links.collect()  # the collector's next pass (or her `link collect`)
    assert found == {"files": 0, "errors": []}
    assert asked.is_set(), (
        f"the box made while the records were read is never looked at: has_drops={links.has_drops} "
        "(set from the read's snapshot, taken before her record), every collect() returns at once")


async def test_74c_1_a_record_made_while_the_records_are_read_is_not_said_missing(fs, monkeypatch):
    """The same crossing, with ``link list``'s read (outside the lock too): the snapshot lacks her new
    record, which this device kept; said missing, it was a false tamper alarm in her status."""
    monkeypatch.setattr(alarms, "_BY_USER", {})  # hers of this test alone (one vault copied for every test)
    with _empty_box_store() as (url, _, _):
        links = await _created_during_the_read(fs, monkeypatch, url, Links.listing)
        [box] = await links.listing()  # read again, nothing crossing it: her record is there
    assert box["item"] not in _said_missing(fs), "her record, made while a read ran, said missing"
    assert links.has_drops is True


async def test_control_74c_1_a_record_removed_from_the_store_is_said_missing(fs, monkeypatch):
    """A read no change crossed still says a record this device kept that the store lacks (removed
    by whoever writes the vault folder), and lowers ``has_drops`` once no box is left there."""
    monkeypatch.setattr(alarms, "_BY_USER", {})
    links = Links(fs.volume, NoKernel())
    with _empty_box_store() as (url, _, _):
        made = await links.create(b"Inbox", url, True, None)
    doc = fs.store.get(link_records.record_id(fs.volume.key, made["item"]))
    fs.store.put_many([{**doc, "_deleted": True}])
    assert await links.drop_boxes() == set()
    assert made["item"] in _said_missing(fs)
    assert links.has_drops is False


async def test_control_74c_1_a_drop_box_made_before_the_read_is_collected(fs, monkeypatch):
    links = Links(fs.volume, NoKernel())
    with _empty_box_store() as (url, asked, _):
        await links.create(b"Inbox", url, True, None)
        await links.drop_boxes()
        assert links.has_drops is True
        await links.collect()
    assert asked.is_set()


# --- (2) every conflict of the store handed to the mount at every pull batch

STRANGER = "f" * 32  # an owner no one unlocks on this device


def _plant_conflicts(store, n: int) -> list[str]:
    """``n`` node documents of another owner, each in two branches, as a peer sends them."""
    ids = [new_id() for _ in range(n)]
    first = [{"_id": i, "type": NODE, "owner": STRANGER, "_rev": "1-" + "a" * 32} for i in ids]
    other = [{"_id": i, "type": NODE, "owner": STRANGER, "enc": "x", "_rev": "1-" + "b" * 32} for i in ids]
    replica.store_revisions(store, first)
    assert sorted(replica.store_revisions(store, other).conflicts) == sorted(ids)
    return ids


def _replicator(fs, handed: list[list[str]]) -> Replicator:
    """The replicator of a peer, as the mount runs it, up to what it hands the mount (``arrived``)."""
    return Replicator(fs.store, fs.volume.layout, "device", "server", None,
                      lambda docs, conflicted: handed.append(list(conflicted)), PeerStatus("server", ""))


def _one_doc() -> dict:
    return {"_id": new_id(), "type": "Note", "_rev": "1-" + "c" * 32}


async def _taken_in(fs, ids: list[str]) -> set[str]:
    """What the mount does with the conflicts a batch hands it (fs/arrivals.py ``arrived``: each
    unlocked user's ``note_branches``, then ``_settle_conflicts``): the ids it read."""
    looked: set[str] = set()
    store = fs.store
    real_get, real_leaves = store.get, replica.other_leaves
    store.get = lambda doc_id: looked.add(doc_id) or real_get(doc_id)
    replica.other_leaves = lambda st, doc_id, *a, **k: looked.add(doc_id) or real_leaves(st, doc_id, *a, **k)
    try:
        conflicts.note_branches(fs.volume, store, ids)
        await conflicts.settle(fs.volume, store, ids)
    finally:
        del store.get
        replica.other_leaves = real_leaves
    return looked


async def test_74c_2_a_batch_of_one_document_does_not_look_at_every_conflict_of_the_store(fs):
    planted = _plant_conflicts(fs.store, 300)
    handed: list[list[str]] = []
    peer = _replicator(fs, handed)
    peer._store([_one_doc()], [], [], 1)  # any change the server sends: a batch
    await _taken_in(fs, handed[-1])  # taken in and settled as far as this device settles them
    peer._store([_one_doc()], [], [], 2)  # the next change, a second later
    looked = await _taken_in(fs, handed[-1])
    again = looked & set(planted)
    assert len(again) <= 5, (
        f"a batch of one unrelated document: the mount read {len(again)} of the {len(planted)} "
        "conflicts the peer planted (left to their owner's devices), again, on the loop")


async def test_control_74c_2_a_batch_bringing_a_conflict_hands_it_to_the_mount(fs):
    handed: list[list[str]] = []
    peer = _replicator(fs, handed)
    doc_id = new_id()
    peer._store([{"_id": doc_id, "type": NODE, "owner": STRANGER, "_rev": "1-" + "a" * 32}], [], [], 1)
    peer._store([{"_id": doc_id, "type": NODE, "owner": STRANGER, "enc": "x", "_rev": "1-" + "b" * 32}],
                [], [], 2)
    assert doc_id in handed[-1]


# --- (2) the mount's side: what each tree settles, and when


class _Settlings:
    """The mount's settling (fs/arrivals.py ``settle``, ``note_branches``) recorded: the ids each call was
    handed and the thread it ran on; ``hold`` keeps the next settling from ending until set.  Nothing is
    settled: a conflict stays open as one waiting for its version."""

    def __init__(self, monkeypatch) -> None:
        self.settled: list[list[str]] = []
        self.noted: list[str] = []
        self.read_on_loop: list[bool] = []  # the store's conflicts read: on the loop?
        self.hold: trio.Event | None = None
        real_to_settle = arrivals.to_settle

        async def settle(volume, store, ids):
            self.settled.append(list(ids))
            if self.hold is not None:
                await self.hold.wait()
            return Absorbed()

        def to_settle(store, user_id):
            self.read_on_loop.append(threading.current_thread() is threading.main_thread())
            return real_to_settle(store, user_id)

        monkeypatch.setattr(arrivals, "settle", settle)
        monkeypatch.setattr(arrivals, "note_branches", lambda volume, store, ids: self.noted.extend(ids))
        monkeypatch.setattr(arrivals, "to_settle", to_settle)

    def handed(self) -> set[str]:
        return {doc_id for ids in self.settled for doc_id in ids}


def _her_conflict(fs, doc_id: str) -> None:
    """A second branch of her node ``doc_id`` (its version never comes: left open by a settling)."""
    doc = fs.store.get(doc_id)
    replica.store_revisions(fs.store, [{**doc, "_rev": "1-" + "d" * 32}])
    assert replica.in_conflict(fs.store, doc_id)


async def _until(done) -> None:
    """Until ``done()``: the settling's reads run on worker threads, which trio's ``wait_all_tasks_blocked``
    does not wait for."""
    with trio.fail_after(30):
        while not done():
            await trio.sleep(0.01)


async def _quiet(mount: Arrivals) -> None:
    """Until no settling of the mount's runs (``_settle_handed``)."""
    await wait_all_tasks_blocked()
    await _until(lambda: not any(state.running for state in mount._conflicts.values()))


async def _mount_arrivals(fs, nursery) -> Arrivals:
    """The mount's arrivals with alice unlocked, as a personal mount runs them."""
    agent = SimpleNamespace(session=SimpleNamespace(volume=fs.volume), missed=None, kernel=NoKernel(),
                            user_id=fs.volume.key.user_id)  # as sessions.Agent
    mount = Arrivals(fs.store, lambda: [agent])
    mount.nursery = nursery
    return mount


async def test_74c_2_the_store_s_conflicts_are_looked_at_once_off_the_loop_without_another_owner_s(
        fs, monkeypatch):
    """Her first look at the store's conflicts (the sync's start, her unlock): read on a worker thread,
    and of them only hers handed to her settling; later batches of one document each hand nothing of
    the store's again, neither the peer's planted ones nor hers that were settled."""
    planted = set(_plant_conflicts(fs.store, 300))
    hers = fs.volume.resolve(b"").fid
    _her_conflict(fs, hers)
    seen = _Settlings(monkeypatch)
    async with trio.open_nursery() as nursery:
        mount = await _mount_arrivals(fs, nursery)
        mount.arrived([], [])  # the sync's start (sync/service.py ``run``)
        await _quiet(mount)
        assert seen.read_on_loop == [False], "the store's every conflict read on the loop"
        assert seen.handed() == {hers} and set(seen.noted) == {hers}, "another owner's conflicts handed"
        before = len(seen.settled)
        for _ in range(3):
            mount.arrived([_one_doc()], [])  # a batch of one unrelated document
            await _quiet(mount)
        nursery.cancel_scope.cancel()
    again = {doc_id for ids in seen.settled[before:] for doc_id in ids}
    assert not again & planted, f"{len(again & planted)} planted conflicts handed again at a batch"
    assert seen.read_on_loop == [False], "the store's conflicts read again at a batch"


async def test_74c_2_a_conflict_left_to_its_owner_is_handed_again_only_when_a_batch_brings_it(
        fs, monkeypatch):
    """One batch brought conflicts on another owner's nodes and one on hers: each settled once; the
    next batches hand hers again (left waiting for its version), never the other owner's, until a
    batch brings a revision of one of them."""
    planted = _plant_conflicts(fs.store, 50)
    hers = fs.volume.resolve(b"").fid
    _her_conflict(fs, hers)
    seen = _Settlings(monkeypatch)
    async with trio.open_nursery() as nursery:
        mount = await _mount_arrivals(fs, nursery)
        mount.arrived([], [*planted, hers])
        await _quiet(mount)
        assert seen.handed() == {*planted, hers}
        assert set(seen.noted) == {*planted, hers}, "the batch's conflicts noted at once, on the loop"
        seen.settled.clear()
        mount.arrived([_one_doc()], [])
        await _quiet(mount)
        assert seen.settled == [[hers]], "hers, left waiting, is settled at a later arrival"
        mount.arrived([_one_doc()], [planted[0]])  # a batch brings a revision of one of them
        await _quiet(mount)
        nursery.cancel_scope.cancel()
    assert seen.settled[-1] == sorted([hers, planted[0]])


async def test_74c_2_batches_coming_while_a_settling_runs_are_settled_together(fs, monkeypatch):
    """One settling per tree at a time: the batches that came meanwhile are settled in one more pass,
    not a settling each holding the ids handed."""
    planted = _plant_conflicts(fs.store, 6)
    seen = _Settlings(monkeypatch)
    async with trio.open_nursery() as nursery:
        mount = await _mount_arrivals(fs, nursery)
        seen.hold = trio.Event()
        mount.arrived([], planted[:2])
        await _until(lambda: seen.settled)  # the first settling runs, held
        for doc_id in planted[2:]:
            mount.arrived([], [doc_id])
            await wait_all_tasks_blocked()
        seen.hold.set()
        await _quiet(mount)
        nursery.cancel_scope.cancel()
    assert seen.settled == [sorted(planted[:2]), sorted(planted[2:])]
