"""One suite for both document stores: embedded SQLite and CouchDB (pouchdb-server)."""

from __future__ import annotations

import os

import pytest

from fusevault.errors import Conflict, InvalidInput, StoreUnavailable
from fusevault.store.couch import CouchStore, split_url, strip_credentials
from fusevault.store.local import LocalStore


@pytest.fixture(params=["local", "couchdb"])
def store(request, tmp_path):
    if request.param == "local":
        backend = LocalStore(tmp_path / "store.sqlite")
    else:
        backend = CouchStore(request.getfixturevalue("couchdb_url"), create=True)
    yield backend
    backend.close()


def test_put_get_and_revisions(store) -> None:
    (rev1,) = store.put_many([{"_id": "a", "type": "node", "x": 1}])
    assert rev1.startswith("1-")
    doc = store.get("a")
    assert doc["x"] == 1 and doc["_rev"] == rev1
    doc["x"] = 2
    (rev2,) = store.put_many([doc])
    assert rev2.startswith("2-") and store.get("a")["x"] == 2
    assert store.get("missing") is None


def test_stale_revision_is_a_conflict(store) -> None:
    (rev1,) = store.put_many([{"_id": "a", "type": "node", "x": 1}])
    store.put_many([{"_id": "a", "_rev": rev1, "type": "node", "x": 2}])
    with pytest.raises(Conflict):
        store.put_many([{"_id": "a", "_rev": rev1, "type": "node", "x": 3}])
    with pytest.raises(Conflict):
        store.put_many([{"_id": "a", "type": "node", "x": 4}])  # a create over a live doc
    assert store.get("a")["x"] == 2


def test_iter_type_and_deletion(store) -> None:
    store.put_many([{"_id": f"n{i}", "type": "node", "i": i} for i in range(5)]
                   + [{"_id": "u", "type": "UserDetails"}])
    assert sorted(d["i"] for d in store.iter_type("node")) == [0, 1, 2, 3, 4]
    doc = store.get("n3")
    store.put_many([{"_id": "n3", "_rev": doc["_rev"], "_deleted": True}])
    assert store.get("n3") is None
    assert sorted(d["i"] for d in store.iter_type("node")) == [0, 1, 2, 4]
    assert [d["_id"] for d in store.iter_type("UserDetails")] == ["u"]


def test_a_deletion_is_told_from_a_document_never_written(store) -> None:
    """``deleted``: a tombstone, not merely nothing (a group removed, not withheld: attack round 23a (1))."""
    (rev,) = store.put_many([{"_id": "g", "type": "Group"}])
    assert not store.deleted("g") and not store.deleted("never")
    store.put_many([{"_id": "g", "_rev": rev, "_deleted": True, "type": "Group"}])
    assert store.deleted("g") and not store.deleted("never")


def test_changes_feed(store) -> None:
    _, start = store.changes(0)
    store.put_many([{"_id": "a", "type": "t"}, {"_id": "b", "type": "t"}])
    changes, seq = store.changes(start)
    assert [c["id"] for c in changes] == ["a", "b"]
    doc = store.get("a")
    store.put_many([{**doc, "v": 1}])
    changes, _ = store.changes(seq)
    assert [c["id"] for c in changes] == ["a"] and changes[0]["rev"].startswith("2-")
    store.sync()


def test_local_store_batch_is_atomic(tmp_path) -> None:
    store = LocalStore(tmp_path / "s.sqlite")
    (rev,) = store.put_many([{"_id": "a", "type": "t"}])
    with pytest.raises(Conflict):
        store.put_many([{"_id": "b", "type": "t"}, {"_id": "a", "_rev": "1-stale", "type": "t"}])
    assert store.get("b") is None  # nothing of the failed batch was written


def test_couchdb_urls_and_a_server_that_is_down() -> None:
    assert split_url("http://h:5984/db") == ("http://h:5984/", "db")
    assert strip_credentials("http://u:secret@h:5984/db") == "http://h:5984/db"
    with pytest.raises(InvalidInput):
        split_url("ftp://h/db")
    with pytest.raises(StoreUnavailable):
        CouchStore("http://127.0.0.1:9/db")


def test_peers_documents_have_the_seed_fields(store) -> None:
    from fusevault.vault.model.peers import PEER, peer_doc

    store.put_many([peer_doc("laptop", "192.0.2.10", 5984, "/srv/chunks")])
    (peer,) = store.iter_type(PEER)
    assert {k: peer[k] for k in ("name", "host", "port", "path_to_dump_chunks")} == {
        "name": "laptop", "host": "192.0.2.10", "port": 5984, "path_to_dump_chunks": "/srv/chunks"}


def test_documents_of_one_file(store) -> None:
    store.put_many([
        {"_id": "v1", "type": "FilesMetaData", "fid": "f1"},
        {"_id": "v2", "type": "FilesMetaData", "fid": "f1"},
        {"_id": "v3", "type": "FilesMetaData", "fid": "f2"},
        {"_id": "n1", "type": "node", "fid": "f1"},
    ])
    doc = store.get("v2")
    store.put_many([{**doc, "_deleted": True}])
    assert [d["_id"] for d in store.by_file("FilesMetaData", "f1")] == ["v1"]
    assert store.by_file("FilesMetaData", "f3") == []


def test_the_local_store_replicates_revisions_as_couchdb_does(tmp_path) -> None:
    from fusevault.store import replica

    here = LocalStore(tmp_path / "here.sqlite")
    there = LocalStore(tmp_path / "there.sqlite")
    try:
        (rev1,) = here.put_many([{"_id": "n", "type": "node", "v": 1}])
        (rev2,) = here.put_many([{"_id": "n", "_rev": rev1, "type": "node", "v": 2}])
        sent = replica.leaves(here, "n")
        assert sent[0]["_revisions"]["ids"] == [rev2.split("-")[1], rev1.split("-")[1]]
        assert replica.missing(there, {"n": [rev2]}) == {"n": [rev2]}
        assert replica.store_revisions(there, sent).current[0]["v"] == 2
        assert replica.missing(there, {"n": [rev1, rev2]}) == {}  # the history came along
        assert there.get("n")["_rev"] == rev2
        assert replica.store_revisions(there, sent).current == []  # nothing new the second time

        # Both sides change it while apart: both revisions stay, CouchDB's rule picks one.
        (mine,) = here.put_many([{"_id": "n", "_rev": rev2, "type": "node", "v": "here"}])
        (theirs,) = there.put_many([{"_id": "n", "_rev": rev2, "type": "node", "v": "there"}])
        arrival = replica.store_revisions(here, replica.leaves(there, "n"))
        assert arrival.conflicts == ["n"] and replica.conflicted(here) == ["n"]
        winner = max(mine, theirs, key=lambda r: r.split("-")[1])
        assert here.get("n")["_rev"] == winner
        (other,) = replica.other_leaves(here, "n")
        assert other["_rev"] == ({mine, theirs} - {winner}).pop()
        # Closing the other branch is the same revision on every replica.
        closed = replica.close_leaf(here, "n", other["_rev"])
        assert closed.startswith("4-") and replica.conflicted(here) == []
        replica.store_revisions(there, replica.leaves(here, "n"))
        assert there.get("n")["_rev"] == winner and replica.conflicted(there) == []
        assert replica.missing(there, {"n": [closed]}) == {}
    finally:
        here.close()
        there.close()


def _wal_store(tmp_path):
    store = LocalStore(tmp_path / "store.sqlite")
    store.put_many([{"_id": "a", "type": "t"}])
    store.sync()
    return store


@pytest.mark.parametrize("how", ["unlinked", "replaced", "linked elsewhere, then unlinked"])
def test_sync_refuses_once_another_program_removed_the_wal(tmp_path, how) -> None:
    """The tripwire (check_linked) still fires at the fsync after its files
    changed, whatever it remembered from the looks before."""
    store = _wal_store(tmp_path)
    store.sync()  # a second look: the remembered descriptors are used
    wal = tmp_path / "store.sqlite-wal"
    if how == "replaced":  # a new file under the old name
        wal.unlink()
        wal.write_bytes(b"")
    elif how == "linked elsewhere, then unlinked":
        os.link(wal, tmp_path / "kept-wal")
        wal.unlink()
    else:
        wal.unlink()
    with pytest.raises(StoreUnavailable, match="removed while in use"):
        store.sync()
    with pytest.raises(StoreUnavailable):
        store.put_many([{"_id": "b", "type": "t"}])
    store.close()


def test_sync_does_not_list_every_descriptor_when_nothing_changed(tmp_path, monkeypatch) -> None:
    """An fsync flushes the store's log and checks its files are still
    linked: a few stat calls, not a listing of /proc/self/fd and a readlink
    per descriptor (0.3-0.4 ms of each fsync of a big file, issue 26)."""
    store = _wal_store(tmp_path)
    listed = []
    real = os.listdir
    monkeypatch.setattr(os, "listdir", lambda path=".": listed.append(path) or real(path))
    for i in range(5):
        store.put_many([{"_id": f"b{i}", "type": "t"}])
        store.sync()
    assert "/proc/self/fd" not in listed
    store.close()
    # A reopened store (new descriptors) looks in full once, and is quiet then.
    again = LocalStore(tmp_path / "store.sqlite")
    assert listed.count("/proc/self/fd") == 1
    again.sync()
    assert listed.count("/proc/self/fd") == 1
    again.close()
