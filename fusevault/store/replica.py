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
trio thread, like the Volume's commits, so a commit and an arrival never race
(one connection, one transaction at a time: LocalStore).  Quick whatever a peer
sends: a document's held revisions are read once per batch (``_held_in_batch``),
a revision's look-ups then go by set or by index, so a batch costs in proportion to
its own size and the branches kept; a document keeps at most ``LEAVES_PER_DOC`` live other branches and
``CLOSED_PER_DOC`` closed ones, a revision that would open one more is refused
(``Arrival.refused``: the sync service says it), never a live one held dropped (attack
round 46e (2): thousands of sibling leaves made each batch quadratic, on the loop).  A close of a
branch held here opens none and is always taken: past ``CLOSED_PER_DOC`` the oldest closed leaf
is dropped (it holds no data, as CouchDB stems), its revisions kept known (``_dropped``) so that a
replay of it is no news (attack round 47c).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from fusevault.encoding import loads_untrusted
from fusevault.store import places as places_table
from fusevault.store.local import REVS_LIMIT, LocalStore, history_of
from fusevault.store.places import PlaceRow
from fusevault.store.revs import generation, well_formed

# Other branches a document keeps at most.  Honest use makes one live leaf per device that edited
# while apart (a conflict), settled soon after by the owner's device (closing it): a handful.  64 is far
# above that and keeps every per-leaf cost (the settling judges each leaf against the others, the load
# looks through them for hers) small.  A revision that would open one more is refused, never a leaf
# held dropped: a server must not evict her genuine leaves with its own.
LEAVES_PER_DOC = 64
# Closed branches (a deleted revision on top: ``close_leaf``) a document keeps at most: one per conflict
# ever settled, so more than live ones, yet bounded (each is a row read by a push of the document).
CLOSED_PER_DOC = 4 * LEAVES_PER_DOC
# Dropped closed branches (``_make_room_for_closed``) a document keeps known, the oldest forgotten
# first: per branch every revision of its own, past where it left the current history (at most
# ``REVS_LIMIT``).  A hostile server replays any ancestor, not only leaves: a settled branch's older
# revision forgotten opened it again (attack round 48a (1)).  Counted in branches, not revisions, so
# a server's long branches cannot push hers out sooner than short ones; at most as many revisions as
# the closed leaves themselves hold (``CLOSED_PER_DOC`` x ``REVS_LIMIT``).
DROPPED_BRANCHES_PER_DOC = CLOSED_PER_DOC
DROPPED_PER_DOC = DROPPED_BRANCHES_PER_DOC * REVS_LIMIT
_DROPPED = "dropped-closed/"


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
    # ids of documents a revision of which was refused: it would have opened a branch beyond
    # ``LEAVES_PER_DOC`` (or ``CLOSED_PER_DOC``).  Not stored, for the caller to say.
    refused: list[str] = field(default_factory=list)


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
    """Every revision held of ``doc_id``: read once per document a pull is offered (``missing``) and
    once per document a batch stores (``_held_in_batch``), never per revision; bounded by the
    branches a document keeps (``LEAVES_PER_DOC``, ``CLOSED_PER_DOC``) and the revisions of closed
    ones dropped (``DROPPED_PER_DOC``)."""
    db = store.db
    row = db.execute("SELECT rev, revs FROM docs WHERE id = ?", (doc_id,)).fetchone()
    known = history_of(*row) if row else []
    for rev, revs in db.execute("SELECT rev, revs FROM leaves WHERE id = ?", (doc_id,)):
        known += history_of(rev, revs)
    return known + _dropped(db, doc_id)


def _dropped(db, doc_id: str) -> list[str]:
    """The revisions of ``doc_id``'s closed branches dropped here (``_make_room_for_closed``)."""
    return [rev for branch in _dropped_branches(db, doc_id) for rev in branch]


def _dropped_branches(db, doc_id: str) -> list[list[str]]:
    """``doc_id``'s dropped closed branches, oldest first, each its own revisions: at most
    ``DROPPED_BRANCHES_PER_DOC`` of at most ``REVS_LIMIT`` (the row is the vault folder's writer's:
    only revisions count).  A note from before 48a (``revs``: each branch's leaf and the revision it
    closed, in one list) is read as such pairs."""
    row = db.execute("SELECT body FROM local_docs WHERE id = ?", (_DROPPED + doc_id,)).fetchone()
    body = _body("1-0", row[0]) if row else None
    branches = body.get("branches") if body else None
    if branches is None and body and isinstance(body.get("revs"), list):
        branches = [body["revs"][i:i + 2] for i in range(0, len(body["revs"]), 2)]
    if not isinstance(branches, list):
        return []
    kept = [[rev for rev in branch[:REVS_LIMIT] if isinstance(rev, str) and well_formed(rev)]
            for branch in branches[-DROPPED_BRANCHES_PER_DOC:] if isinstance(branch, list)]
    return [branch for branch in kept if branch]


def _make_room_for_closed(db, doc_id: str) -> None:
    """Before one more closed leaf of ``doc_id`` is kept: with ``CLOSED_PER_DOC`` held, the oldest
    (first kept) dropped, so a close is never refused and closed leaves stay bounded (attack round 47c
    (1): her device's closes of the server's leaves grew them without end).  A closed branch holds no
    data (CouchDB stems such branches too); its own revisions stay known (``_dropped``): a replay of
    it, of the leaf it closed or of any revision before (48a (1)), is no news and opens nothing
    again.  What it shares with the current history is known there."""
    (closed,) = db.execute("SELECT COUNT(*) FROM leaves WHERE id = ? AND deleted != 0", (doc_id,)).fetchone()
    excess = int(closed) - CLOSED_PER_DOC + 1
    if excess <= 0:
        return
    rows = db.execute("SELECT rowid, rev, revs FROM leaves WHERE id = ? AND deleted != 0 "
                      "ORDER BY rowid LIMIT ?", (doc_id, excess)).fetchall()
    current = db.execute("SELECT rev, revs FROM docs WHERE id = ?", (doc_id,)).fetchone()
    shared = set(history_of(*current)) if current else set()
    remembered = _dropped_branches(db, doc_id)
    for rowid, rev, revs in rows:
        remembered.append(_own_revisions(history_of(rev, revs), shared))
        db.execute("DELETE FROM leaves WHERE rowid = ?", (rowid,))
    db.execute("INSERT OR REPLACE INTO local_docs (id, body) VALUES (?, ?)",
               (_DROPPED + doc_id, json.dumps({"branches": remembered[-DROPPED_BRANCHES_PER_DOC:]})))


def _own_revisions(history: list[str], shared: set[str]) -> list[str]:
    """A branch's revisions, newest first, up to where it meets the current history."""
    own = []
    for rev in history[:REVS_LIMIT]:
        if rev in shared:
            break
        own.append(rev)
    return own


def _held_in_batch(store: LocalStore, held: dict[str, set[str]], doc_id: str) -> set[str]:
    """The revisions held of ``doc_id``, read once per batch (``_known``) and kept up to date as the
    batch stores: each arriving revision is then one look-up.  Read at each arrival, every branch's
    history was parsed per revision: a batch beside L leaves, L histories per revision (attack round
    46e (2)); per batch, the parse is once per document, bounded by the branches it keeps."""
    if doc_id not in held:
        held[doc_id] = set(_known(store, doc_id))
    return held[doc_id]


def _leaves_under(db, doc_id: str, history: list[str]) -> list[tuple[str, bool]]:
    """The held leaves of other branches that ``history`` descends from (each with whether it is
    closed), by key: ``history`` is at most ``REVS_LIMIT`` revisions."""
    marks = ",".join("?" * len(history))
    return [(leaf, bool(deleted)) for leaf, deleted in db.execute(
        f"SELECT rev, deleted FROM leaves WHERE id = ? AND rev IN ({marks})", (doc_id, *history))]


def branch_counts(store: LocalStore, doc_id: str) -> tuple[int, int]:
    """How many live and closed other branches ``doc_id`` has here."""
    live, closed = store.db.execute(
        "SELECT COALESCE(SUM(deleted = 0), 0), COALESCE(SUM(deleted != 0), 0) FROM leaves WHERE id = ?",
        (doc_id,)).fetchone()
    return int(live), int(closed)


def _opens_too_many(store: LocalStore, doc_id: str, under: list[tuple[str, bool]], kept_closed: bool) -> bool:
    """Whether keeping one more leaf (closed or not: ``kept_closed``), the leaves ``under`` replaced,
    goes past the cap of its kind (``LEAVES_PER_DOC``, ``CLOSED_PER_DOC``).  A revision that moves a
    branch on (its leaf replaced by one of the same kind) is never refused, nor one closing a live
    branch held here: it ends a branch, opens none, and the closed ones are bounded by dropping the
    oldest (``_make_room_for_closed``).  Refused at 46e, her other device's or a shared file's
    owner's honest close left the leaf live here (the owner's devices alone settle a shared file)
    with a "server's doing" alarm (attack round 47c (2), (3)).  A new branch, closed or live, is
    refused past its cap."""
    if any(closed == kept_closed for _, closed in under):
        return False  # one of its kind leaves as it comes: no more of them
    if kept_closed and under:
        return False  # a live branch held here ends: one fewer live, room made for the closed one
    live, closed = branch_counts(store, doc_id)
    return closed >= CLOSED_PER_DOC if kept_closed else live >= LEAVES_PER_DOC


def store_revisions(store: LocalStore, docs: list[dict], places: Sequence[PlaceRow] = (),
                    again: bool = False) -> Arrival:
    """Store revisions sent by a peer, with their ancestry, as they are (and the
    places here of the records that came with them; ``again``: records gc punched
    here, fetched again: store/places.py ``insert_arrived``)."""
    arrival = Arrival()
    held: dict[str, set[str]] = {}  # per document, the revisions held (``_held_in_batch``)
    with store.transaction() as db:
        seq = store.next_seq()
        if places:
            places_table.insert_arrived(db, places, again)
        for doc in docs:
            if _store_one(store, doc, seq, arrival, held):
                seq += 1
                if doc["_id"] in held:
                    held[doc["_id"]].update(history_from(doc)[:REVS_LIMIT])
    return arrival


def _store_one(store: LocalStore, doc: dict, seq: int, arrival: Arrival, held: dict[str, set[str]]) -> bool:
    db = store.db
    doc_id, history = doc["_id"], history_from(doc)[:REVS_LIMIT]
    rev = history[0]
    deleted = bool(doc.get("_deleted"))
    row = db.execute("SELECT rev, revs, deleted, body FROM docs WHERE id = ?", (doc_id,)).fetchone()
    if row is None:
        store.write_doc(doc_id, rev, history, seq, doc)
        arrival.current.append(doc)
        return True
    current = row[0]
    if rev in _held_in_batch(store, held, doc_id):
        return False
    if current in history:  # a descendant of what this replica has: it moves on
        if deleted and (live := _live_winner(db, doc_id)) is not None:
            _deletion_beside_live(store, doc, history, seq, arrival, live)
            return True
        store.write_doc(doc_id, rev, history, seq, doc)
        arrival.current.append(doc)
        return True
    # Another branch.  A leaf of it that this revision descends from is replaced.
    under = _leaves_under(db, doc_id, history)
    wins = _rank(deleted, rev) > _rank(bool(row[2]), current)
    kept_closed = bool(row[2]) if wins else deleted  # the kind of the leaf kept: the loser's
    # Live data over the current deletion (her other device's edit from before it) keeps the
    # tombstone as a closed leaf: that ends a branch, opens none, and is never refused at the closed
    # cap (attack round 49a (2): refused, it was said as the server's doing and kept for good).
    over_a_deletion = wins and bool(row[2]) and not deleted
    if not over_a_deletion and _opens_too_many(store, doc_id, under, kept_closed):
        # Refused, not stored: every leaf held stays (hers among them); the peer still has it.
        if doc_id not in arrival.refused:
            arrival.refused.append(doc_id)
        return False
    for leaf, _ in under:
        db.execute("DELETE FROM leaves WHERE id = ? AND rev = ?", (doc_id, leaf))
    if kept_closed:
        _make_room_for_closed(db, doc_id)
    if wins:
        _keep_leaf(db, doc_id, current, history_of(row[0], row[1]), bool(row[2]), row[3])
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


def _live_winner(db, doc_id: str) -> tuple[str, list[str], dict] | None:
    """The highest-ranked live leaf of another branch held of ``doc_id`` (its revision, history and
    body), None if none is held (or none a peer could take).  Read on the batch's own connection:
    a leaf the same batch stored counts."""
    best: tuple[str, list[str], dict] | None = None
    for rev, revs, body in db.execute("SELECT rev, revs, body FROM leaves WHERE id = ? AND deleted = 0",
                                      (doc_id,)):
        if (opened := _body(rev, body)) is None:
            continue
        if best is None or _rank(False, rev) > _rank(False, best[0]):
            best = (rev, history_of(rev, revs), opened)
    return best


def _deletion_beside_live(store: LocalStore, doc: dict, history: list[str], seq: int, arrival: Arrival,
                          live: tuple[str, list[str], dict]) -> None:
    """A deletion extending the current branch while a live leaf of another branch is held: CouchDB's
    winner is a live leaf over any deletion, so the highest-ranked live leaf becomes current and the
    deletion is kept as a closed leaf (as a live revision arriving over the current deletion does,
    ``over_a_deletion``).  Made current instead, the deletion hid a live edit every other replica
    shows, and a settling finds no current revision to settle against: her laptop's edit beside her
    purged trash was gone from this device for good (attack round 76c (3))."""
    db, doc_id = store.db, doc["_id"]
    rev, leaf_history, body = live
    body = {**body, "_id": doc_id, "_rev": rev, "_revisions": revisions(leaf_history)}
    db.execute("DELETE FROM leaves WHERE id = ? AND rev = ?", (doc_id, rev))
    _make_room_for_closed(db, doc_id)
    tombstone = {k: v for k, v in doc.items() if not k.startswith("_")}
    _keep_leaf(db, doc_id, history[0], history, True, json.dumps(tombstone))
    store.write_doc(doc_id, rev, leaf_history, seq, body)
    arrival.current.append(body)
    if db.execute("SELECT 1 FROM leaves WHERE id = ? AND deleted = 0 LIMIT 1", (doc_id,)).fetchone():
        arrival.conflicts.append(doc_id)  # more live branches: still a conflict to settle


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
    """Ids of documents with a live revision on another branch than the current one.  As many as the
    store holds: read on a worker thread inside ``store.reading`` (vault/services/conflicts.py
    ``to_settle``), from its snapshot."""
    return [row[0] for row in store.reader.execute("SELECT DISTINCT id FROM leaves WHERE deleted = 0")]


def in_conflict(store: LocalStore, doc_id: str) -> bool:
    """Whether ``doc_id`` has a live revision on another branch than the current one."""
    return store.reader.execute("SELECT 1 FROM leaves WHERE id = ? AND deleted = 0 LIMIT 1",
                                (doc_id,)).fetchone() is not None


def conflicted_of(store: LocalStore, doc_ids: Iterable[str]) -> list[str]:
    """Of ``doc_ids`` (once each, in their order), those in conflict now: one indexed look-up each."""
    return [doc_id for doc_id in dict.fromkeys(doc_ids) if in_conflict(store, doc_id)]


def other_leaves(store: LocalStore, doc_id: str, limit: int = -1, one_per_body: bool = False) -> list[dict]:
    """The live revisions of other branches than the current one (a conflict),
    each with its history (``_revisions``), in the order of their revision ids (the
    table's key).  For a caller that needs a few (a store from before ``LEAVES_PER_DOC``
    may hold thousands): at most ``limit`` rows read (-1: all), and with ``one_per_body``
    one revision (the least) of each stored body: byte-identical copies under many
    revision ids are read once."""
    if one_per_body:
        rows = store.db.execute("SELECT MIN(rev) AS first, revs, body FROM leaves "
                                "WHERE id = ? AND deleted = 0 GROUP BY body ORDER BY first LIMIT ?",
                                (doc_id, limit)).fetchall()
    else:
        rows = store.db.execute("SELECT rev, revs, body FROM leaves WHERE id = ? AND deleted = 0 "
                                "ORDER BY rev LIMIT ?", (doc_id, limit)).fetchall()
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


def branch_history(store: LocalStore, doc_id: str, rev: str) -> list[str] | None:
    """The history of ``doc_id``'s branch whose newest revision is ``rev`` (the current one or another
    leaf, closed or live), newest first; None when no branch of it ends there here.  Two indexed
    look-ups."""
    db = store.db
    row = db.execute("SELECT rev, revs FROM docs WHERE id = ? AND rev = ?", (doc_id, rev)).fetchone()
    row = row or db.execute("SELECT rev, revs FROM leaves WHERE id = ? AND rev = ?", (doc_id, rev)).fetchone()
    return history_of(*row) if row else None


def close_leaf(store: LocalStore, doc_id: str, rev: str) -> str:
    """End another branch as CouchDB does: a deleted revision on top of it."""
    with store.transaction() as db:
        row = db.execute("SELECT revs FROM leaves WHERE id = ? AND rev = ?", (doc_id, rev)).fetchone()
        if row is None:
            return rev
        history = history_of(rev, row[0])
        closed = closing_rev(doc_id, rev)
        db.execute("DELETE FROM leaves WHERE id = ? AND rev = ?", (doc_id, rev))
        _make_room_for_closed(db, doc_id)
        _keep_leaf(db, doc_id, closed, [closed] + history[:REVS_LIMIT - 1], True, "{}")
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
