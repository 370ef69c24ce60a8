"""Round 47c: attack on 46e (commit 5bed3fd: ``replica.LEAVES_PER_DOC``/``CLOSED_PER_DOC``,
``_opens_too_many``, ``Arrival.refused``, ``_held_in_batch``, ``_leaves_under``) and 46b (commit 5392a61).

Attacker: the CouchDB server (any revision tree, any bodies: it cannot sign), honest long use.

1. **The closed-branch cap is no bound: her own device closes what the server opens (medium).**
   Attack: the server stores 64 sibling leaves of one of her documents (any bodies: altered ones are
   ``REFUSED`` by ``leaf_verdict``; a user/group/share/settings document's other branch is always
   closed), her device settles them: ``conflicts._settle_one`` calls ``replica.close_leaf`` for each,
   and ``close_leaf`` keeps a closed leaf with no cap.  The live count is then 0 again, so the next
   batch of 64 is taken, closed, and so on.  Seen (unit, real ``LocalStore``): 6 rounds leave 384
   closed branches, past ``CLOSED_PER_DOC`` (256), none refused.  Cause: the cap is checked only in
   ``_store_one`` (arrivals); ``close_leaf`` (the local close) turns a live leaf into a closed one
   without looking at ``branch_counts``.  Impact: the growth 46e (2) meant to bound ("a peer opening
   and closing branches in turn would grow the closed ones without end") is back with her device doing
   the closing: closed rows per document grow without end, each read and sent with every push of the
   document (``replica.leaves`` returns closed leaves too) and each parsed by ``_known`` per batch/pull.
   Fix (suggested): when a close would pass ``CLOSED_PER_DOC``, drop the oldest closed leaf (a closed
   branch carries no data: CouchDB itself prunes them by ``_revs_limit``/compaction), or make the cap
   on the sum of live and closed at arrival so closes never raise it; never let a local close add
   rows without bound.  Test: ``test_closed_branches_stay_bounded_when_her_device_closes_them``.
2. **An honest close from her other device refused once 256 conflicts were settled (low: false alarm).**
   Scene: a long-lived document (or the server's rounds of 1.) has ``CLOSED_PER_DOC`` closed branches
   here (local closes are not capped, 1.).  A new honest conflict: her other device settles it first
   and pushes the close of the losing leaf.  Seen (unit): the close arrives, ``under`` holds the live
   leaf it closes (another kind), ``closed >= CLOSED_PER_DOC`` so it is refused and named in
   ``Arrival.refused``: the sync service says "refused a revision ... (the server's doing?)".  Cause:
   ``_opens_too_many`` counts a close of a held live leaf as opening a closed one (it does not open a
   branch: it ends one).  Impact: a false alarm naming the server in honest use; the leaf stays live
   here until this device closes it itself (same closing revision, so no data lost).  Fix
   (suggested): never refuse a revision whose ``under`` holds a leaf it closes (the count of branches
   does not grow), with the bound of 1. instead.  Test:
   ``test_her_other_devices_close_is_taken_after_many_settled_conflicts``.
3. **A file shared with her: closes refused at the cap leave its leaves live here for good, then her
   own branches of it are refused (medium: a stall for good after a transient hostile server).**
   Scene: Bob's file shared with her (WRITE).  Her device never settles its conflicts
   (``conflicts._settle_one``: "a file shared with this user: its owner's devices settle it"): only
   Bob's closes, arriving, end its leaves here.  Once ``CLOSED_PER_DOC`` closed branches are held
   (256 settled conflicts in long use, or the server's rounds: it opens 64 leaves, Bob's device closes
   them, four times), each later close of Bob's is refused (2.), so each later conflict's leaf stays
   live here, and nothing here ever closes it.  Seen (unit): 64 such conflicts, each close refused,
   then delivered again by an honest server, still refused: 64 live leaves for good, and her other
   device's next concurrent edit of the file is refused too (``LEAVES_PER_DOC``), at every pull, with
   the "server's doing?" alarm, though the server is honest now.  Cause: the closed cap refuses a
   close of a held live leaf; the device that cannot settle the document depends on those closes.
   Impact: once the cap is reached, the document's conflicts on her device never clear, and after 64
   more her own devices' concurrent edits of it never arrive here (a stall of that file's sync for
   good, not withholding: it stays after the server turns honest); each a false alarm.  Fix
   (suggested): as 2. (a close of a held live leaf never refused; bound closed leaves by dropping the
   oldest).  Test: ``test_closes_of_a_shared_files_leaves_are_taken_after_the_cap``.
"""

from __future__ import annotations

from fusevault.store import replica
from fusevault.store.local import LocalStore

FID = "f" * 32
ALICE = "alice"


def _sibling(tag: str, i: int, deleted: bool = False, under: list[str] | None = None) -> dict:
    ids = [f"{tag}{i:031x}"] + [rev.split("-", 1)[1] for rev in (under or [])]
    start = 2 + len(under or [])
    doc = {"_id": FID, "_rev": f"{start}-{ids[0]}", "_revisions": {"start": start, "ids": ids},
           "type": "node", "owner": ALICE, "n": i}
    return {**doc, "_deleted": True} if deleted else doc


def _base(tmp_path) -> LocalStore:
    store = LocalStore(tmp_path / "store.db")
    replica.store_revisions(store, [{"_id": FID, "_rev": "5-" + "f" * 32, "type": "node", "owner": ALICE}])
    return store


def _rounds(store: LocalStore, rounds: int, first: int = 0) -> list[str]:
    """The server opens ``LEAVES_PER_DOC`` leaves, her device closes each (as ``_settle_one`` does)."""
    refused: list[str] = []
    for r in range(first, first + rounds):
        opened = [_sibling(f"{r:x}", i) for i in range(replica.LEAVES_PER_DOC)]
        arrival = replica.store_revisions(store, opened)
        refused += arrival.refused
        for leaf in replica.other_leaves(store, FID):
            replica.close_leaf(store, FID, leaf["_rev"])
    return refused


def test_control_arrivals_beyond_the_live_cap_are_refused(tmp_path) -> None:
    store = _base(tmp_path)
    replica.store_revisions(store, [_sibling("a", i) for i in range(replica.LEAVES_PER_DOC)])
    assert replica.store_revisions(store, [_sibling("b", 1)]).refused == [FID]


def test_closed_branches_stay_bounded_when_her_device_closes_them(tmp_path) -> None:
    store = _base(tmp_path)
    refused = _rounds(store, 6)
    live, closed = replica.branch_counts(store, FID)
    assert live == 0
    assert closed <= replica.CLOSED_PER_DOC, f"{closed} closed branches kept, none refused: {refused}"


def test_her_other_devices_close_is_taken_after_many_settled_conflicts(tmp_path) -> None:
    store = _base(tmp_path)
    _rounds(store, replica.CLOSED_PER_DOC // replica.LEAVES_PER_DOC)
    assert replica.branch_counts(store, FID) == (0, replica.CLOSED_PER_DOC)
    # A new honest conflict: her other device's edit, then that device's close of it (it lost there).
    edit = _sibling("e", 1)
    assert replica.store_revisions(store, [edit]).refused == []
    close = _close_of(edit)
    arrival = replica.store_revisions(store, [close])
    assert arrival.refused == [], "her other device's close refused (said as the server's doing)"
    assert replica.branch_counts(store, FID)[0] == 0


def _close_of(doc: dict) -> dict:
    closing = replica.closing_rev(FID, doc["_rev"])
    return {"_id": FID, "_rev": closing, "_deleted": True,
            "_revisions": {"start": replica.generation(closing),
                           "ids": [closing.split("-", 1)[1], doc["_rev"].split("-", 1)[1]]}}


def test_closes_of_a_shared_files_leaves_are_taken_after_the_cap(tmp_path) -> None:
    store = _base(tmp_path)
    _rounds(store, replica.CLOSED_PER_DOC // replica.LEAVES_PER_DOC)  # or 256 conflicts settled over time
    conflicts = [_sibling("c", i) for i in range(replica.LEAVES_PER_DOC)]
    refused = []
    for edit in conflicts:  # one honest conflict after another, each settled by Bob's device
        assert replica.store_revisions(store, [edit]).refused == []
        refused += replica.store_revisions(store, [_close_of(edit)]).refused
    # An honest server delivers every close again: refused again.
    refused += replica.store_revisions(store, [_close_of(edit) for edit in conflicts]).refused
    live = replica.branch_counts(store, FID)[0]
    # Her other device's concurrent edit of the file.
    hers = replica.store_revisions(store, [_sibling("d", 1)])
    assert (live, hers.refused) == (0, []), f"{live} leaves live for good, her edit refused: {hers.refused}"


def test_a_dropped_closed_branch_replayed_is_no_news(tmp_path) -> None:
    """47c (1), the fix's other side: the oldest closed leaves dropped at ``CLOSED_PER_DOC`` stay
    known, so a replay of them (a server resending round 0's leaves and closes) opens nothing again:
    no live leaf back to settle, no closed one evicting a newer, nothing asked for by ``missing``."""
    store = _base(tmp_path)
    _rounds(store, 6)  # rounds 0 and 1 dropped (384 closed, 256 kept)
    kept = {leaf["_rev"] for leaf in replica.leaves(store, FID)}
    replayed = [_sibling("0", i) for i in range(replica.LEAVES_PER_DOC)]
    replayed += [_close_of(doc) for doc in replayed]
    assert not any(doc["_rev"] in kept for doc in replayed), "round 0 was not dropped: no test"
    assert replica.missing(store, {FID: [doc["_rev"] for doc in replayed]}) == {}
    arrival = replica.store_revisions(store, replayed)
    assert (arrival.current, arrival.conflicts, arrival.refused) == ([], [], [])
    assert replica.branch_counts(store, FID) == (0, replica.CLOSED_PER_DOC)
    assert {leaf["_rev"] for leaf in replica.leaves(store, FID)} == kept
    # Bounded: many more rounds keep at most DROPPED_PER_DOC revisions of dropped branches known.
    assert _rounds(store, 6, first=6) == []
    assert len(replica._dropped(store.db, FID)) <= replica.DROPPED_PER_DOC
    assert replica.branch_counts(store, FID) == (0, replica.CLOSED_PER_DOC)
