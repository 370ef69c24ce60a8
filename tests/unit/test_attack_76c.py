"""Round 76c (3), the store's side (unit, real ``LocalStore``): a deletion that extends the current
branch while a live leaf of another branch is held leaves the live leaf current, as CouchDB's winner
rule does (a live leaf over any deletion), the deletion kept as a closed leaf (``replica._store_one``,
``_deletion_beside_live``).  Made current, it hid her laptop's edit, which no settling then looked at
(tests/inprocess/test_attack_76c.py, the scene).  Honest deletions (nothing live beside them) stay
current; a replay of the deletion is no news; a leaf the vault folder's writer put there that no peer
could take is never made current."""

from __future__ import annotations

from fusevault.store import replica
from fusevault.store.local import LocalStore

FID = "f" * 32
BASE = "1-" + "a" * 32
TRASH = "2-" + "7" * 32  # this desktop's trash
EDIT = "2-" + "0" * 32  # her laptop's edit, ranking below the trash
OTHER = "2-" + "1" * 32  # another live edit, ranking between
PURGE = "3-" + "9" * 32  # her other device's purge, over the trash


def _doc(rev: str, history: list[str], **body: object) -> dict:
    return {"_id": FID, "_rev": rev, "_revisions": replica.revisions(history), "type": "node",
            "owner": "alice", **body}


def _trashed(tmp_path, *edits: str) -> LocalStore:
    store = LocalStore(tmp_path / "store.db")
    replica.store_revisions(store, [_doc(BASE, [BASE], n=0)])
    replica.store_revisions(store, [_doc(TRASH, [TRASH, BASE], n=1, delete=True)])
    for i, rev in enumerate(edits):
        arrival = replica.store_revisions(store, [_doc(rev, [rev, BASE], n=10 + i)])
        assert arrival.conflicts == [FID] and store.get(FID)["_rev"] == TRASH  # a live leaf beside
    return store


def _purge() -> dict:
    return {"_id": FID, "_rev": PURGE, "_deleted": True,
            "_revisions": replica.revisions([PURGE, TRASH, BASE])}


def test_a_deletion_extending_the_current_branch_beside_a_live_leaf_leaves_the_leaf_current(tmp_path):
    store = _trashed(tmp_path, EDIT)
    arrival = replica.store_revisions(store, [_purge()])
    current = store.get(FID)
    assert current is not None and current["_rev"] == EDIT and current["n"] == 10
    assert [doc["_rev"] for doc in arrival.current] == [EDIT]  # the trees take the edit in
    assert arrival.conflicts == [] and not replica.other_leaves(store, FID)
    assert replica.branch_counts(store, FID) == (0, 1)  # the deletion: a closed leaf
    # What a peer is sent: the edit and the deletion (it picks the same winner).
    assert sorted((d["_rev"], bool(d.get("_deleted"))) for d in replica.leaves(store, FID)) == [
        (EDIT, False), (PURGE, True)]
    # The deletion replayed is no news.
    again = replica.store_revisions(store, [_purge()])
    assert again.current == [] and store.get(FID)["_rev"] == EDIT


def test_the_highest_ranked_live_leaf_is_made_current_the_others_still_a_conflict(tmp_path):
    store = _trashed(tmp_path, EDIT, OTHER)
    arrival = replica.store_revisions(store, [_purge()])
    assert store.get(FID)["_rev"] == OTHER
    assert arrival.conflicts == [FID]  # handed to the settling: EDIT against OTHER
    assert [leaf["_rev"] for leaf in replica.other_leaves(store, FID)] == [EDIT]


def test_the_live_leaf_and_the_deletion_in_one_batch(tmp_path):
    store = _trashed(tmp_path)
    replica.store_revisions(store, [_doc(EDIT, [EDIT, BASE], n=10), _purge()])
    assert store.get(FID)["_rev"] == EDIT and not replica.other_leaves(store, FID)


def test_control_an_honest_deletion_beside_nothing_live_is_current(tmp_path):
    store = _trashed(tmp_path)
    arrival = replica.store_revisions(store, [_purge()])
    assert store.get(FID) is None and [doc["_rev"] for doc in arrival.current] == [PURGE]
    assert replica.branch_counts(store, FID) == (0, 0)


def test_a_leaf_no_peer_could_take_is_never_made_current(tmp_path):
    """A live leaf the vault folder's writer put there (no document): the deletion stays current."""
    store = _trashed(tmp_path, EDIT)
    with store.transaction() as db:
        db.execute("UPDATE leaves SET body = ? WHERE id = ? AND rev = ?", ("not json", FID, EDIT))
    replica.store_revisions(store, [_purge()])
    assert store.get(FID) is None
