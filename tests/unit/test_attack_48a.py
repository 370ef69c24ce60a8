"""Round 48a: attack on 47c (commit ccaccba: ``replica._make_room_for_closed``, ``_dropped``,
``_known``, ``_opens_too_many``) and 47a (commit 9c6787a).

Attacker: the CouchDB server (any revision tree, replays of any revision it ever held: it cannot sign).

1. **A dropped closed branch's older revisions replayed reopen the settled conflict (low/medium).**
   Attack: a conflict branch of her document with more than one revision of its own (her other
   device edited twice offline: ``2-y`` then ``3-x`` on it), settled here (``close_leaf``: ``4-c``
   closes ``3-x``).  The server then opens and her device closes ``CLOSED_PER_DOC`` more branches
   (garbage leaves, closed as ``_settle_one`` does), so the settled branch is dropped
   (``_make_room_for_closed``).  The server replays ``2-y`` (the branch's older revision, which it
   holds).  Seen (unit, real ``LocalStore``): before the drop ``missing`` asks nothing of ``2-y`` and
   its arrival opens nothing (the closed leaf's history holds it); after the drop ``missing`` asks for
   it and its arrival opens a live leaf again: a settled conflict back to settle.
   Cause: ``_make_room_for_closed`` keeps known only ``history_of(rev, revs)[:_DROPPED_PER_BRANCH]``
   (the closing leaf and the leaf it closed); the commit's reasoning ("an honest server sends only
   leaves") does not hold for a hostile one, which replays any ancestor.  Before 47c the closed leaf
   kept its whole history, so the replay was no news.
   Impact: a hostile server reopens settled conflicts at will (each replayed ancestor a new live
   leaf, counted against ``LEAVES_PER_DOC``, settled again, perhaps a conflict copy again if the
   branch is another writer's), the very "replay opens nothing again" promise of 47c broken.
   Fix (done): a dropped branch's own revisions kept known (``_dropped_branches``), remembered by branch;
   was suggested: keep the whole (``REVS_LIMIT``-bounded) history of a dropped branch known, or
   keep its revisions of that branch beyond the common ancestor (bounded per document as now).
   Tests: ``test_control_settled_branchs_ancestor_replayed_is_no_news_before_drop``,
   ``test_dropped_branchs_ancestor_replayed_is_no_news``.
"""

from __future__ import annotations

from fusevault.store import replica
from fusevault.store.local import LocalStore

FID = "f" * 32
ALICE = "alice"
MID = "2-" + "9" * 32  # the branch's own older revision (her other device's first offline edit)
TOP = "3-" + "8" * 32  # its second


def _doc(rev: str, ids: list[str], n: int) -> dict:
    return {"_id": FID, "_rev": rev, "_revisions": {"start": replica.generation(rev), "ids": ids},
            "type": "node", "owner": ALICE, "n": n}


def _sibling(tag: str, i: int) -> dict:
    return _doc(f"2-{tag}{i:031x}", [f"{tag}{i:031x}"], i)


def _settled(tmp_path) -> LocalStore:
    store = LocalStore(tmp_path / "store.db")
    replica.store_revisions(store, [{"_id": FID, "_rev": "5-" + "f" * 32, "type": "node", "owner": ALICE}])
    branch = _doc(TOP, [TOP[2:], MID[2:]], 1)
    assert replica.store_revisions(store, [branch]).refused == []
    assert [leaf["_rev"] for leaf in replica.other_leaves(store, FID)] == [TOP]
    replica.close_leaf(store, FID, TOP)
    assert replica.branch_counts(store, FID) == (0, 1)
    return store


def _rounds(store: LocalStore, rounds: int) -> None:
    for r in range(rounds):
        replica.store_revisions(store, [_sibling(f"{r:x}", i) for i in range(replica.LEAVES_PER_DOC)])
        for leaf in replica.other_leaves(store, FID):
            replica.close_leaf(store, FID, leaf["_rev"])


def _replay(store: LocalStore) -> tuple[dict, int]:
    wanted = replica.missing(store, {FID: [MID]})
    replica.store_revisions(store, [_doc(MID, [MID[2:]], 2)])
    return wanted, replica.branch_counts(store, FID)[0]


def test_control_settled_branchs_ancestor_replayed_is_no_news_before_drop(tmp_path) -> None:
    store = _settled(tmp_path)
    _rounds(store, 1)
    assert _replay(store) == ({}, 0)


def test_dropped_branchs_ancestor_replayed_is_no_news(tmp_path) -> None:
    store = _settled(tmp_path)
    _rounds(store, replica.CLOSED_PER_DOC // replica.LEAVES_PER_DOC)  # the settled branch dropped
    assert TOP not in {leaf["_rev"] for leaf in replica.leaves(store, FID)}
    assert replica.missing(store, {FID: [TOP]}) == {}  # its top stays known, as 47c means
    wanted, live = _replay(store)
    assert (wanted, live) == ({}, 0), f"asked for {wanted}, {live} live leaf reopened"


def _long_sibling(tag: str, i: int) -> dict:
    """A branch with a whole ``REVS_LIMIT`` of revisions of its own (a server's: any it likes)."""
    ids = [f"{tag}{i:02x}{k:029x}" for k in range(replica.REVS_LIMIT)]
    return _doc(f"{replica.REVS_LIMIT}-{ids[0]}", ids, i)


def test_long_branches_dropped_after_hers_do_not_make_hers_forgotten_sooner(tmp_path) -> None:
    """48a (1), the bound: dropped branches are remembered by count, so the server's branches with
    ``REVS_LIMIT`` revisions each, dropped after hers, push her settled branch out no sooner than
    short ones would (at ``DROPPED_BRANCHES_PER_DOC`` branches), and what is kept stays bounded."""
    store = _settled(tmp_path)
    for r in range(replica.CLOSED_PER_DOC // replica.LEAVES_PER_DOC + 1):  # hers and 64 long ones dropped
        replica.store_revisions(store, [_long_sibling(f"{r:x}", i) for i in range(replica.LEAVES_PER_DOC)])
        for leaf in replica.other_leaves(store, FID):
            replica.close_leaf(store, FID, leaf["_rev"])
    assert len(replica._dropped(store.db, FID)) > 2 * replica.CLOSED_PER_DOC  # more than 47c's cap kept
    assert _replay(store) == ({}, 0)
    assert len(replica._dropped_branches(store.db, FID)) <= replica.DROPPED_BRANCHES_PER_DOC
    assert len(replica._dropped(store.db, FID)) <= replica.DROPPED_PER_DOC


def test_a_note_from_before_48a_is_still_read(tmp_path) -> None:
    """The local note written by 47c (one list of each dropped branch's leaf and the leaf it closed)
    still counts: those revisions stay known after an upgrade."""
    store = LocalStore(tmp_path / "store.db")
    replica.store_revisions(store, [{"_id": FID, "_rev": "5-" + "f" * 32, "type": "node", "owner": ALICE}])
    replica.put_local(store, "dropped-closed/" + FID, {"revs": [TOP, MID, "bad", 7]})
    assert replica.missing(store, {FID: [TOP, MID]}) == {}
    assert replica._dropped_branches(store.db, FID) == [[TOP, MID]]
