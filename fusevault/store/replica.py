"""The embedded store as one end of CouchDB replication.

CouchDB replicates revisions, not documents: a peer asks which revisions it
lacks (``_revs_diff``), is sent them with their ancestry (``_revisions``) and
stores them as they are (``new_edits: false``).  Here each document keeps its
current revision with up to ``REVS_LIMIT`` ancestors, and revisions of other
branches (two peers edited while apart) in ``leaves``.  Which branch is
current follows CouchDB's own rule (live before deleted, then the longer
history, then the greater revision id), so every replica and every CouchDB
server picks the same one; vault/services/conflicts.py then keeps the losing edit.

These functions are synchronous and quick; the sync service calls them on the
trio thread, like the Volume's commits, so a commit and an arrival never race.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from fusevault.encoding import loads_untrusted
from fusevault.store import places as places_table
from fusevault.store.local import REVS_LIMIT, LocalStore, history_of
from fusevault.store.places import PlaceRow
from fusevault.store.revs import generation, well_formed


def local_of(store: object) -> LocalStore | None:
    """The embedded store under ``store`` (a shared mount's per-user view of it,
    store/watched.py, included), which keeps branches; None for a server's."""
    inner = getattr(store, "inner", store)
    return inner if isinstance(inner, LocalStore) else None


def revisions(history: list[str]) -> dict:
    """CouchDB's ``_revisions`` of a history (newest first)."""
    start = int(history[0].split("-", 1)[0])
    return {"start": start, "ids": [rev.split("-", 1)[1] for rev in history]}


def history_from(doc: dict) -> list[str]:
    revs = doc.get("_revisions")
    if not revs:
        return [doc["_rev"]]
    start = int(revs["start"])
    return [f"{start - i}-{rev_id}" for i, rev_id in enumerate(revs["ids"])]


def _rank(deleted: bool, rev: str) -> tuple:
    # A row's rev that is no revision (a store writer's) ranks below every revision.
    return (not deleted, generation(rev), rev.split("-", 1)[-1] if generation(rev) else "")


@dataclass
class Arrival:
    """What storing a batch of replicated revisions changed."""

    current: list[dict] = field(default_factory=list)  # documents whose current revision changed
    conflicts: list[str] = field(default_factory=list)  # ids that now have a live other branch


def missing(store: LocalStore, wanted: dict[str, list[str]]) -> dict[str, list[str]]:
    """``_revs_diff``: of the revisions offered per id, those this replica lacks."""
    out = {}
    for doc_id, revs in wanted.items():
        known = set(_known(store, doc_id))
        lacking = [rev for rev in revs if rev not in known]
        if lacking:
            out[doc_id] = lacking
    return out


def _known(store: LocalStore, doc_id: str) -> list[str]:
    db = store.db
    row = db.execute("SELECT rev, revs FROM docs WHERE id = ?", (doc_id,)).fetchone()
    known = history_of(*row) if row else []
    for rev, revs in db.execute("SELECT rev, revs FROM leaves WHERE id = ?", (doc_id,)):
        known += history_of(rev, revs)
    return known


def store_revisions(store: LocalStore, docs: list[dict], places: Sequence[PlaceRow] = ()) -> Arrival:
    """Store revisions sent by a peer, with their ancestry, as they are (and the
    places here of the records that came with them)."""
    arrival = Arrival()
    with store.transaction() as db:
        seq = store.next_seq()
        if places:
            places_table.insert_arrived(db, places)
        for doc in docs:
            if _store_one(store, doc, seq, arrival):
                seq += 1
    return arrival


def _store_one(store: LocalStore, doc: dict, seq: int, arrival: Arrival) -> bool:
    db = store.db
    doc_id, history = doc["_id"], history_from(doc)[:REVS_LIMIT]
    rev = history[0]
    deleted = bool(doc.get("_deleted"))
    row = db.execute("SELECT rev, revs, deleted, body FROM docs WHERE id = ?", (doc_id,)).fetchone()
    if row is None:
        store.write_doc(doc_id, rev, history, seq, doc)
        arrival.current.append(doc)
        return True
    current, current_history = row[0], history_of(row[0], row[1])
    if rev in _known(store, doc_id):
        return False
    if current in history:  # a descendant of what this replica has: it moves on
        store.write_doc(doc_id, rev, history, seq, doc)
        arrival.current.append(doc)
        return True
    # Another branch.  A leaf of it that this revision descends from is replaced.
    for (leaf,) in db.execute("SELECT rev FROM leaves WHERE id = ?", (doc_id,)).fetchall():
        if leaf in history:
            db.execute("DELETE FROM leaves WHERE id = ? AND rev = ?", (doc_id, leaf))
    if _rank(deleted, rev) > _rank(bool(row[2]), current):
        _keep_leaf(db, doc_id, current, current_history, bool(row[2]), row[3])
        store.write_doc(doc_id, rev, history, seq, doc)
        arrival.current.append(doc)
    else:
        body = {k: v for k, v in doc.items() if not k.startswith("_")}
        _keep_leaf(db, doc_id, rev, history, deleted, json.dumps(body))
        # The current revision is unchanged but the document has news for
        # peers (the other branch): it gets a new place in the changes.
        db.execute("UPDATE docs SET seq = ? WHERE id = ?", (seq, doc_id))
    if not deleted and not row[2]:
        arrival.conflicts.append(doc_id)
    return True


def _keep_leaf(db, doc_id: str, rev: str, history: list[str], deleted: bool, body: str) -> None:
    db.execute("INSERT OR REPLACE INTO leaves (id, rev, revs, deleted, body) VALUES (?, ?, ?, ?, ?)",
               (doc_id, rev, json.dumps(history), int(deleted), body))


def leaves(store: LocalStore, doc_id: str) -> list[dict]:
    """Every branch's newest revision of a document, as a peer is sent it."""
    db = store.db
    out = []
    rows = db.execute("SELECT rev, revs, deleted, body FROM docs WHERE id = ?", (doc_id,)).fetchall()
    rows += db.execute("SELECT rev, revs, deleted, body FROM leaves WHERE id = ?", (doc_id,)).fetchall()
    for rev, revs, deleted, body in rows:
        if (opened := _body(rev, body)) is None:
            continue  # a store writer's, no revision or no document: no peer could take it
        doc = {**opened, "_id": doc_id, "_rev": rev, "_revisions": revisions(history_of(rev, revs))}
        if deleted:
            doc["_deleted"] = True
        out.append(doc)
    return out


def conflicted(store: LocalStore) -> list[str]:
    """Ids of documents with a live revision on another branch than the current one."""
    return [row[0] for row in store.db.execute("SELECT DISTINCT id FROM leaves WHERE deleted = 0")]


def in_conflict(store: LocalStore, doc_id: str) -> bool:
    """Whether ``doc_id`` has a live revision on another branch than the current one."""
    return store.db.execute("SELECT 1 FROM leaves WHERE id = ? AND deleted = 0 LIMIT 1",
                            (doc_id,)).fetchone() is not None


def other_leaves(store: LocalStore, doc_id: str) -> list[dict]:
    """The live revisions of other branches than the current one (a conflict),
    each with its history (``_revisions``)."""
    rows = store.db.execute("SELECT rev, revs, body FROM leaves WHERE id = ? AND deleted = 0",
                            (doc_id,)).fetchall()
    return [{**opened, "_id": doc_id, "_rev": rev, "_revisions": revisions(history_of(rev, revs))}
            for rev, revs, body in rows if (opened := _body(rev, body)) is not None]


def _body(rev: object, body: object) -> dict | None:
    """A stored revision's body, None if it is no revision a peer could take (every column of
    ``docs`` and ``leaves`` is the vault folder's writer's to set)."""
    if not well_formed(rev) or not isinstance(body, str | bytes):
        return None
    try:
        doc = loads_untrusted(body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def current_history(store: LocalStore, doc_id: str) -> list[str]:
    row = store.db.execute("SELECT rev, revs FROM docs WHERE id = ?", (doc_id,)).fetchone()
    return history_of(*row) if row else []


def close_leaf(store: LocalStore, doc_id: str, rev: str) -> str:
    """End another branch as CouchDB does: a deleted revision on top of it."""
    with store.transaction() as db:
        row = db.execute("SELECT revs FROM leaves WHERE id = ? AND rev = ?", (doc_id, rev)).fetchone()
        if row is None:
            return rev
        history = history_of(rev, row[0])
        closed = closing_rev(doc_id, rev)
        _keep_leaf(db, doc_id, closed, [closed] + history[:REVS_LIMIT - 1], True, "{}")
        db.execute("DELETE FROM leaves WHERE id = ? AND rev = ?", (doc_id, rev))
        db.execute("UPDATE docs SET seq = ? WHERE id = ?", (store.next_seq(), doc_id))
    return closed


def closing_rev(doc_id: str, rev: str) -> str:
    """The deleted revision that closes the branch ending at ``rev`` (``close_leaf``)."""
    return f"{generation(rev) + 1}-{_rev_id(doc_id, rev)}"


def _rev_id(doc_id: str, rev: str) -> str:
    # The same on every replica that closes this branch, so two devices
    # closing it at once make one revision, not two.
    return hashlib.sha256(f"close\0{doc_id}\0{rev}".encode()).hexdigest()[:32]


# --- this replica's own bookkeeping


def get_local(store: LocalStore, doc_id: str) -> dict:
    row = store.db.execute("SELECT body FROM local_docs WHERE id = ?", (doc_id,)).fetchone()
    # A checkpoint that does not read (the vault folder's writer's) is none: sync starts over.
    body = _body("1-0", row[0]) if row else None
    return body or {}


def put_local(store: LocalStore, doc_id: str, body: dict) -> None:
    with store.transaction() as db:
        db.execute("INSERT OR REPLACE INTO local_docs (id, body) VALUES (?, ?)",
                   (doc_id, json.dumps(body)))


def locals_under(store: LocalStore, prefix: str) -> dict[str, dict]:
    """Every local document whose id starts with ``prefix`` (one per key: the key mirror's notes)."""
    rows = store.db.execute("SELECT id, body FROM local_docs WHERE substr(id, 1, ?) = ?",
                            (len(prefix), prefix)).fetchall()
    return {doc_id: body for doc_id, raw in rows if (body := _body("1-0", raw)) is not None}


def put_locals(store: LocalStore, bodies: dict[str, dict | None]) -> None:
    """Several local documents written (None: removed) in one transaction."""
    if not bodies:
        return
    with store.transaction() as db:
        for doc_id, body in bodies.items():
            if body is None:
                db.execute("DELETE FROM local_docs WHERE id = ?", (doc_id,))
            else:
                db.execute("INSERT OR REPLACE INTO local_docs (id, body) VALUES (?, ?)",
                           (doc_id, json.dumps(body)))
