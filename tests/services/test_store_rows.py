"""Rows a writer of the vault folder (no key) puts in store.sqlite with columns of another type than
fusevault writes (SQLite keeps a value of any type in any column): attack round 14 (1) and what was
seen with it.  Each test holds the store to: nothing of hers lost, no commit made to fail forever."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusevault.errors import StoreUnavailable
from fusevault.store import replica
from fusevault.store.local import LocalStore
from fusevault.store.unreadable import Unreadable

ODD_SEQS = [1e300, 5.5, "x", b"\x01", 2**63 - 1, 2**62 + 1, -5]


def _store(tmp_path: Path) -> LocalStore:
    store = LocalStore(tmp_path / "store.sqlite")
    store.put_many([{"_id": "a", "type": "T", "n": 1}])
    return store


def _plant(store: LocalStore, seq: object, rev: str = "1-0", revs: object = None) -> None:
    store.db.execute("INSERT INTO docs (id, rev, seq, deleted, type, body, revs) "
                     "VALUES ('planted', ?, ?, 0, NULL, '{}', ?)", (rev, seq, revs))


@pytest.mark.parametrize("seq", ODD_SEQS, ids=repr)
def test_a_row_whose_seq_is_no_whole_number_neither_takes_her_documents_nor_the_changes(
        tmp_path: Path, seq: object) -> None:
    """Round 14 (1): every commit after the planted row keeps all its documents, each gets its own
    whole seq after the largest whole one, and the changes (the watcher's, the push's) list them."""
    store = _store(tmp_path)
    _plant(store, seq)
    store.put_many([{"_id": "b"}, {"_id": "c"}])
    store.put_many([store.get("a") | {"n": 2}])
    assert {r[0] for r in store.db.execute("SELECT id FROM docs")} == {"a", "b", "c", "planted"}
    assert store.get("a")["n"] == 2
    rows, last = store.changes(1)
    assert [(r["seq"], r["id"]) for r in rows] == [(2, "b"), (3, "c"), (4, "a")] and last == 4
    assert store.next_seq() == 5 and store.count_after(0) == 3


def test_a_seq_clash_fails_the_commit_and_deletes_no_other_document(tmp_path: Path) -> None:
    """write_doc never REPLACEs: a seq another row holds makes the commit fail, that row kept."""
    store = _store(tmp_path)
    store.put_many([{"_id": "b", "keep": True}])
    with pytest.raises(StoreUnavailable), store.transaction():
        store.write_doc("c", "1-1", ["1-1"], 2, {"_id": "c"})  # seq 2 is b's
    assert store.get("b")["keep"] is True and store.get("c") is None


@pytest.mark.parametrize("since", ["x", 1e300, [1], {"a": 1}, True, -3, 10**15, 2**80, "99999"], ids=repr)
def test_a_changes_checkpoint_that_is_not_ours_reads_everything_again(tmp_path: Path, since: object) -> None:
    """A sync checkpoint (local_docs, the vault folder's writer's to set) that is no seq of this
    store, or past its last one, reads as 0: the push offers everything again (the peer takes what
    it lacks) rather than failing or never sending anything more."""
    store = _store(tmp_path)
    store.put_many([{"_id": "b"}])
    rows, last = store.changes(since)  # type: ignore[arg-type]
    assert [r["id"] for r in rows] == ["a", "b"] and last == 2
    assert store.count_after(since) == 2


@pytest.mark.parametrize("rev,revs", [("x-0", None), ("7", None), ("0-a", None), ("9" * 20 + "-a", None),
                                      ("1-a", "5"), ("1-a", "{"), ("1-a", '{"a": 1}'), ("1-a", '["2-b"]'),
                                      ("1-a", '[1, "1-a"]')], ids=repr)
def test_a_row_whose_rev_is_no_revision_does_not_stop_the_commits_of_that_document(
        tmp_path: Path, rev: str, revs: str | None) -> None:
    """Seen in round 14, left: a row's rev made "x-0" by a store writer made every commit of that
    document fail (next_rev's int()).  Its next commit succeeds, its history holds revisions only,
    and a peer is sent what it can take."""
    store = _store(tmp_path)
    _plant(store, 2, rev=rev, revs=revs)
    doc = store.get("planted")
    (new,) = store.put_many([doc | {"n": 1}])
    assert store.get("planted")["n"] == 1
    history = replica.current_history(store, "planted")
    assert history[0] == new and all(r.split("-")[0].isdigit() for r in history)
    (sent,) = replica.leaves(store, "planted")
    assert sent["_rev"] == new


def test_a_peers_revision_of_a_row_whose_rev_is_no_revision_is_taken(tmp_path: Path) -> None:
    """A peer's revision of a document whose row's rev is no revision: ranked above it, stored
    (replica._rank's int() raised, and every pull with it)."""
    store = _store(tmp_path)
    _plant(store, 2, rev="x-0")
    arrival = replica.store_revisions(store, [{"_id": "planted", "_rev": "1-abc", "n": 3}])
    assert [d["_id"] for d in arrival.current] == ["planted"] and store.get("planted")["n"] == 3


@pytest.mark.parametrize("doc_id,body", [(b"blob", "{}"), ("text", "7"), ("text", "[]")], ids=repr)
def test_a_row_whose_id_or_body_is_no_text_does_not_read(tmp_path: Path, doc_id: object, body: bytes) -> None:
    """Seen in round 14, left: a row whose id is a BLOB stopped the mount (``_doc`` took any id).  Such
    a row is left out by ``iter_type`` (one that does not read) and by the changes (no peer or watcher
    is given an id that is no text); ``get`` says it does not read, with its revision."""
    store = _store(tmp_path)
    store.db.execute("INSERT INTO docs (id, rev, seq, deleted, type, body) VALUES (?, '1-0', 2, 0, 'T', ?)",
                     (doc_id, body))
    assert [d["_id"] for d in store.iter_type("T")] == ["a"]
    if isinstance(doc_id, str):
        with pytest.raises(Unreadable) as caught:
            store.get(doc_id)
        assert caught.value.rev == "1-0"
    else:
        assert [r["id"] for r in store.changes(0)[0]] == ["a"]


@pytest.mark.parametrize("body", ["[]", "7", "{"], ids=repr)
def test_a_branch_or_checkpoint_that_does_not_read_is_left_out(tmp_path: Path, body: str) -> None:
    """A row of ``leaves`` (another branch) or of ``local_docs`` (a sync checkpoint) whose body is no
    document: the push sends the current revision without it, a conflict's branches are listed without
    it, and the checkpoint reads as none (``{**[]}`` raised on every push)."""
    store = _store(tmp_path)
    store.db.execute("INSERT INTO leaves (id, rev, revs, deleted, body) "
                     "VALUES ('a', '1-b', '[\"1-b\"]', 0, ?)", (body,))
    store.db.execute("INSERT INTO local_docs (id, body) VALUES ('checkpoint', ?)", (body,))
    assert [d["_rev"] for d in replica.leaves(store, "a")] == [store.get("a")["_rev"]]
    assert replica.other_leaves(store, "a") == []
    assert replica.get_local(store, "checkpoint") == {}
