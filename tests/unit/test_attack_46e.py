"""Round 46e: attack on 45c's fixes (1)-(3) (commit 50bdd37: tree/her_leaves.py ``_her_leaves`` a generator,
``_body_of``, ``_says_hers``, ``_leaf_rank``, ``_say_leaves_left``; services/conflict_copies.py
``_copy_there``).

Attacker: the CouchDB server (any revision tree, altered or re-encoded bodies, any clear epoch), a WRITE
member (his own signed states, files at ids he computes), honest use.

1. **One genuine body of hers, re-encoded, is many "distinct bodies": each checked, each given (low).**
   Attack: the server takes one signed state of hers it holds and stores it as N leaves, each re-encoded
   differently without touching what is signed: the keys of ``sig`` in another order, an extra key in
   ``sig`` (``sig`` is not signed: crypto/signing.py ``_NOT_SIGNED``), a whole number written as a float
   (``canonical`` folds ``2.0`` to ``2``), a nested object's keys in another order.  Seen (unit, real
   Ed25519 signing): ``_her_leaves`` checks and gives the one state 4 times from 4 leaves (the control, the
   same encoding under 4 revision ids, is checked once).  Cause: ``_body_of`` digests ``repr`` of the parsed
   JSON (its key order, float vs int, every unsigned key), not the signed form: 45c's "one body checked
   once" holds only for byte-identical copies.  Impact: 45c (1)'s premise back: 16 encodings of one genuine
   state of hers fill ``HER_LEAVES`` (no signature to forge, all checked cheaply: one ``Verified`` digest),
   so one genuine state of hers that ranks above her leaf (the same key epoch, a later generation the server
   makes up) and does not fit hides it; it is said (``_say_leaves_left``), as the listed limit for altered
   bodies, so the hole is the broken claim and a cheaper route to that limit, not a silent loss: low.  Fix
   (suggested): identify a body by ``canonical(leaf)`` plus the signature bytes (``signature_of``), i.e.
   what the signature covers, never by the parsed encoding.  Test:
   ``test_one_signed_body_re_encoded_is_checked_once`` (control
   ``test_control_one_body_under_many_revisions_is_checked_once``).
2. **Leaves per document unbounded: each arrival and each load reads all of them (medium: stall).** Attack:
   the server (or a WRITE member's client, pushing with ``new_edits: false``) stores L sibling leaves of one
   of her files (any bodies: one altered body is enough), each with a 100-revision history.  Seen (real
   ``LocalStore``, this loaded 2-core machine): the changes feed offers a document's every leaf at once
   (couch_api ``style: all_docs``), so they come as one batch, stored by one synchronous ``store_revisions``
   under ``settled()`` on the trio thread (sync/replicator.py ``_store``: "nothing awaits here": every
   request of the mount waits): one batch of 1000 leaves (100-revision histories) 31.8 s, of 2000: 119 s
   (quadratic).  In batches of 100 (1 KiB bodies, 2-revision histories): 500 leaves 0.95 s in all, 1000 4.1
   s, 2000 21 s; with L leaves held, one batch of 100 more 7.2 s at L=1000, 41 s at L=4000, and one honest
   revision of that file 0.08 s at 1000, 0.37 s at 4000, for good: a closed leaf stays a row of ``leaves``
   (``close_leaf``) and ``_known`` parses every row's history, closed or not.  ``other_leaves`` parses all L
   bodies at every load (0.12 s at 1000, 0.76 s at 4000, per file) and ``_her_leaves`` hashes every leaf
   (``_body_of``, duplicates included) before any cap: 2000 leaves 0.08 s.  Counted (unit): one batch of 100
   beside 300 leaves parses ``history_of`` 35150 times; ``_her_leaves`` opens every leaf's body whatever
   ``HER_LEAVES_CHECKED`` (768 copies of one altered body: 768 read and hashed, one check, nothing said:
   right, nothing is hidden, but unbounded).  Read, not run: the settling costs O(L^2) too
   (``_beside_no_state_of_hers`` calls ``other_leaves`` once per leaf it settles) and ``note_branches``
   checks a signature per leaf of hers. Cause: ``replica._store_one`` calls ``_known`` (every leaf's history
   parsed) and scans every leaf per arriving revision; no cap of leaves per document; 45c's caps bound the
   signature checks only.  Impact: a server adding a few thousand revisions freezes the mount for minutes
   per batch it sends, again at will (the mount unresponsive while it lasts), nothing said; each load pays
   O(L) per conflicted file of hers. Fix (suggested): a cap of live leaves per document in ``_store_one``
   (say 64: beyond it the lowest-ranked branch is refused, said once); ``_known`` by one indexed lookup of
   the revision (a table of known revisions, or ``revs LIKE``) rather than parsing every branch;
   ``other_leaves`` with ``LIMIT``. Tests: ``test_a_batch_beside_many_leaves_is_linear``,
   ``test_her_leaves_read_a_bounded_number_of_leaves``.

Held (checked): ``_copy_there``'s key equality is latent only: the copy's key is ``subkey(loser DEK, ...)``
and every WRITE member holds the loser's DEK, so bob can make a file of his at the copy id under the copy's
very key; but it is taken for the copy only with no live row there, and no route was found to a held node of
his without one (his document is stored before the tree takes it in; a bare ``_deleted`` over it makes the
node leave, absorbing.py; fusevault's own deletions are live rows, ``delete``), and with his row live
``_made_copy`` refuses it (said, next id: right).  Remembering the (fid, DEK) of the copies this device is
making, rather than inferring it from a key a member can derive, would close it for good.  ``_says_hers``
trusts the clear ``sig.by`` only to drop leaves, and a leaf of hers relabelled fails its check anyway
(withholding, out of reach); her local leaf cannot be relabelled. High clear epochs on altered bodies cost
the server nothing (256 distinct ones, said: the listed limit; a WRITE member's client can push them as
well, unsigned: ``_says_hers`` keeps a leaf naming no signer, so the limit is not the server's alone); the
alarm fires whenever her leaf is past a cap (it is always a further distinct body), but ``Alarms.warn``
keeps one entry per ("forged", fid): a "forged" alarm about that file earlier in the process (a refused
leaf) leaves only a count, not this text (minor).  No false alarm in honest use: her honest leaves are one
per device branch (closed leaves are deleted rows, not read). ``_made_copy`` accepts only this user, the
owner, the loser's signer; only the owner's devices settle (``_settle_one``), so a member's device never
makes a copy her device would refuse.

Run 09:06 UTC: each strict xfail fails at its own assertion under --runxfail; the controls pass.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from types import SimpleNamespace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fusevault.crypto.signing import sign_doc, verify_doc
from fusevault.errors import Forged
from fusevault.store import replica
from fusevault.store.local import LocalStore
from fusevault.vault.model.alarms import Alarms
from fusevault.vault.model.nodes import Node
from fusevault.vault.tree import her_leaves

FID, TEAM = "f" * 32, "t" * 32
ALICE, BOB = "alice", "bob"
OLD = b"o" * 32


def _node() -> Node:
    return Node(2, FID, ALICE, OLD, stat.S_IFREG | 0o644, 1000, 1000, when=1)


# --- 1: one signed body, re-encoded

class _RealTrust:
    """Her real Ed25519 key; checks counted (a ``Verified`` cache would make each one cheap, not fewer)."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self.public = key.public_key()
        self.checked = 0
        self.alarms = Alarms()

    def verify(self, doc: dict, author: str | None = None) -> str:
        self.checked += 1
        return verify_doc(self.public, doc)


def _her_leaves_of(monkeypatch, leaves: list[dict], trust: _RealTrust) -> list:
    monkeypatch.setattr(her_leaves, "replica", SimpleNamespace(
        local_of=lambda store: store, in_conflict=lambda local, fid: True,
        other_leaves=lambda local, fid, **reading: [dict(leaf) for leaf in leaves]))
    monkeypatch.setattr(her_leaves, "open_node_doc", lambda doc, key: (b"k" * 32, doc))
    monkeypatch.setattr(her_leaves, "node_from_doc", lambda doc, dek, attrs: (_node(), [(TEAM, b"plan.txt")]))
    return list(her_leaves._her_leaves(object(), SimpleNamespace(user_id=ALICE),  # type: ignore[arg-type]
                                       SimpleNamespace(trust=trust), _node()))  # type: ignore[arg-type]


def _signed_state(key: Ed25519PrivateKey) -> dict:
    return sign_doc(ALICE, key, {"_id": FID, "type": "node", "owner": ALICE, "epoch": 1, "seq": 7,
                                 "meta": {"a": 1, "b": 2}, "links": "x"})


def _re_encoded(doc: dict) -> list[dict]:
    """Four encodings of one signed state: what is signed (``canonical``) and the signature unchanged."""
    sig = doc["sig"]
    return [
        dict(doc),
        {**doc, "sig": {"ed25519": sig["ed25519"], "by": sig["by"]}},  # sig's keys in another order
        {**doc, "sig": {**sig, "note": "x"}, "seq": 7.0},              # an unsigned key; 7 as 7.0
        {**doc, "meta": {"b": 2, "a": 1}},                             # a nested object's keys reordered
    ]


def test_control_one_body_under_many_revisions_is_checked_once(monkeypatch) -> None:
    key = Ed25519PrivateKey.generate()
    doc = _signed_state(key)
    leaves = [{**doc, "_rev": f"6-{i:032x}"} for i in range(4)]
    trust = _RealTrust(key)
    found = _her_leaves_of(monkeypatch, leaves, trust)
    assert trust.checked == 1 and len(found) == 1


def test_one_signed_body_re_encoded_is_checked_once(monkeypatch) -> None:
    key = Ed25519PrivateKey.generate()
    leaves = [{**each, "_rev": f"6-{i:032x}"} for i, each in enumerate(_re_encoded(_signed_state(key)))]
    for leaf in leaves:
        verify_doc(key.public_key(), leaf)  # each verifies: the same signed state
    trust = _RealTrust(key)
    found = _her_leaves_of(monkeypatch, leaves, trust)
    assert (trust.checked, len(found)) == (1, 1)


# --- 2: leaves per document unbounded

def _store(tmp_path: Path, leaves: int) -> LocalStore:
    """Her file's current revision and ``leaves`` sibling branches, each a 100-revision history (as
    ``REVS_LIMIT`` keeps), one altered body of hers (unsigned) at a high clear epoch."""
    store = LocalStore(tmp_path / "store.db")
    replica.store_revisions(store, [{"_id": FID, "_rev": "1-" + "a" * 32, "type": "node", "owner": ALICE}])
    with store.transaction() as db:
        for i in range(leaves):
            history = [f"{101 - j}-{i:016x}{j:016x}" for j in range(100)]
            replica._keep_leaf(db, FID, history[0], history, False,
                               json.dumps({"type": "node", "owner": ALICE, "epoch": 10**9}))
    return store


def _batch(tag: str, count: int) -> list[dict]:
    docs = []
    for i in range(count):
        ids = [f"{tag}{i:015x}{j:016x}" for j in range(100)]
        docs.append({"_id": FID, "_rev": f"101-{ids[0]}", "_revisions": {"start": 101, "ids": ids},
                     "type": "node", "owner": ALICE, "epoch": 10**9, "n": i})
    return docs


def test_a_batch_beside_many_leaves_is_linear(tmp_path, monkeypatch) -> None:
    held = 300
    store = _store(tmp_path, held)
    parsed = [0]
    real = replica.history_of

    def counted(rev, revs):
        parsed[0] += 1
        return real(rev, revs)

    monkeypatch.setattr(replica, "history_of", counted)
    replica.store_revisions(store, _batch("c", 100))
    assert parsed[0] <= 4 * (100 + held), f"{parsed[0]} histories parsed: 100 revisions beside {held} leaves"


def test_her_leaves_read_a_bounded_number_of_leaves(tmp_path, monkeypatch) -> None:
    held = 3 * her_leaves.HER_LEAVES_CHECKED
    store = _store(tmp_path, held)
    opened = [0]
    real = replica._body

    def counted(rev, body):
        opened[0] += 1
        return real(rev, body)

    monkeypatch.setattr(replica, "_body", counted)

    class Trust:
        alarms = Alarms()

        def verify(self, doc: dict, author: str | None = None) -> str:
            raise Forged("altered")

    found = list(her_leaves._her_leaves(store, SimpleNamespace(user_id=ALICE),  # type: ignore[arg-type]
                                        SimpleNamespace(trust=Trust()), _node()))  # type: ignore[arg-type]
    assert found == []
    assert opened[0] <= her_leaves.HER_LEAVES_CHECKED + her_leaves.HER_LEAVES, f"{opened[0]} leaf bodies read"


def _sibling(tag: str, i: int, deleted: bool = False, under: list[str] | None = None) -> dict:
    ids = [f"{tag}{i:031x}"] + [rev.split("-", 1)[1] for rev in (under or [])]
    start = 2 + len(under or [])
    doc = {"_id": FID, "_rev": f"{start}-{ids[0]}", "_revisions": {"start": start, "ids": ids},
           "type": "node", "owner": ALICE, "n": i}
    return {**doc, "_deleted": True} if deleted else doc


def test_a_branch_beyond_the_cap_is_refused_and_the_leaves_held_are_kept(tmp_path) -> None:
    """46e (2), the cap: the leaves held stay (hers among them), the one that would open one more is
    refused and named for the sync service to say; a held branch moving on is still taken."""
    store = LocalStore(tmp_path / "store.db")
    replica.store_revisions(store, [{"_id": FID, "_rev": "1-" + "a" * 32, "type": "node", "owner": ALICE}])
    held = [_sibling("b", i) for i in range(replica.LEAVES_PER_DOC)]
    arrival = replica.store_revisions(store, held)
    assert arrival.refused == [] and replica.branch_counts(store, FID) == (replica.LEAVES_PER_DOC, 0)
    before = {leaf["_rev"] for leaf in replica.other_leaves(store, FID)}
    current = store.get(FID)["_rev"]
    # One more branch, below and above the current revision (a deletion, a live one): refused.
    arrival = replica.store_revisions(store, [_sibling("c", 1), _sibling("0", 2), _sibling("f", 3)])
    assert arrival.refused == [FID] and arrival.current == []
    assert {leaf["_rev"] for leaf in replica.other_leaves(store, FID)} == before
    assert store.get(FID)["_rev"] == current
    # A held branch moving on (and one closed) is taken.
    moved = _sibling("d", 1, under=[held[0]["_rev"]])
    closed = _sibling("e", 2, deleted=True, under=[held[1]["_rev"]])
    arrival = replica.store_revisions(store, [moved, closed])
    assert arrival.refused == []
    assert replica.branch_counts(store, FID) == (replica.LEAVES_PER_DOC - 1, 1)
    assert store.get(FID)["_rev"] == moved["_rev"]  # the longer history: current, the one before a leaf
    # Known revisions, ancestors of held leaves included, are not stored again.
    assert replica.store_revisions(store, [held[2], {**held[0], "_revisions": None}]).refused == []
    assert replica.missing(store, {FID: [held[0]["_rev"], moved["_rev"], "9-" + "9" * 32]}) == {
        FID: ["9-" + "9" * 32]}
