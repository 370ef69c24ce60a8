"""Attack round 53c, unit: the key mirror after b82cc6f and f2e4874 (``KeyMirror._current`` closes,
under a forged winner, the leaves ``_proof_pending`` calls proven forged).

Fixed since, (1), (3), (4) (docs/SECURITY.md "Round 53c (1), (3), (4)"): a key held here is pinned to the
signer and key that made it genuine (``key-signers/<doc id>``), its records judged under the pin alone;
unpinned leaves are kept open, judged again only when their owner or her user document changes.  The
marks are gone; tests added for the pin across a restart, no pin before the node, and a node revision.

Hole (1), medium (a member's key lost on a device until re-key; the server's doing, no key needed):
  ``_proof_pending`` asks only whether a node document is here at the file's id and a user document
  at the id it names as owner (``grants.signer_in_store``).  Neither is checked: the key mirror has
  no pins, and the store's current node is whatever revision the server served last.  The server
  serves (1) a node revision at her file's id naming another user as owner (gwen, any user whose
  self-signed document is here; no signature needed, it is never verified there), and (2) the key
  document as her genuine leaf beside a forged winner (50c (2)'s scene on a device with no key file
  yet: a new device, or a key new to it).  Her leaf does not verify under gwen's key, so
  ``_genuine`` is False, ``_proof_pending`` is False (node and "owner" here), and her leaf is closed
  at the first look.  When the server then serves her own node again (or she commits it), her key is
  gone: the forged winner still refused, no key file, for good (her leaf's revision is known here, so
  no replication brings it back).  Before f2e4874 the leaves stayed open under a forged winner and the
  key was written once her node was back (the scene of 51a (5) with the node, not the user, as the
  late proof).  The same with her user document replaced by one the server made (self-signed under
  its own key): ``_genuine`` refuses her leaf, ``_proof_pending`` finds a user document there.
  Seen: ``test_a_genuine_leaf_beside_a_node_naming_another_owner_is_not_closed_for_good`` and
    ``test_a_genuine_leaf_beside_her_replaced_user_document_is_not_closed_for_good`` (run, fail: no
    key file after her node / user document came back and a walk); controls
    ``test_her_genuine_leaf_alone_beside_a_node_naming_another_owner_is_written_later_control``,
    ``test_her_genuine_leaf_alone_beside_her_replaced_user_document_is_written_later_control``
    (no forged winner: the leaf is the current revision, refused while the node names gwen, written
    at the walk after: pass).
  Cause: sync/key_mirror.py ``_current`` (the ``elif held is None`` loop) with ``_proof_pending`` /
    grants.py ``signer_in_store``: "here" is taken for "final", but the node and user documents the
    leaf is judged by are the server's to serve, and to serve again changed; nothing the mirror holds
    tells a genuine leaf refused under a stale or planted node from a forged one.
  Impact: as 51a (5) / 50c (2): one made-up node revision (said once to the member as
    "owner-changed" by his tree, but the key loss is not undone by it) and one made-up leaf take a
    member's file key off a device for good, until the owner re-keys (or her own device, which holds
    the key file, meets the forged winner and answers it: a server that never shows it to her keeps
    the loss).
  Fix (suggested): under a forged winner never close a leaf that parses and signs as the file's owner
    it names (``found.owner``, ``found.fid``, ``found.recipient`` the id's) unless it fails under the
    user document of ``found.owner`` itself and the node names that owner; or keep such leaves open
    and judge them again only when the node's or that user's revision changes (a cache keyed by
    those revisions, as ``_signed_group`` does), which keeps 52b (3)'s bound.

Hole (3), low to medium (52b (3)'s cost back; a flood on the loop, the server's doing): the leaves
  kept open under a forged winner are those ``_proof_pending`` says may yet be proven, which is every
  leaf of a key document whose file has no node here.  The server names a file id of nothing (any
  32 hex digits) in a key document's id, serves a forged winner and 64 forged leaves each naming a
  user here as the file's owner (``genuine_in_store`` then checks a signature under her user
  document: the node is absent, so the record's own ``owner`` is taken): no leaf is ever closed, all 65
  are judged again at every look: each arrival of the document and each walk (``refresh``, every
  ``RESCAN_EVERY`` 60 s and at a push after a key write), on the loop.
  Seen: ``test_forged_leaves_of_a_file_not_here_are_not_judged_at_every_look`` (run, fails: 66
    records judged at each of three looks, ~0.07 s a look of one document on this machine); control
    ``test_forged_leaves_of_a_file_here_are_judged_once_control`` (52b (3)'s scene: 1 a look, passes).
  Cause: sync/key_mirror.py ``_current`` / ``_proof_pending`` (grants.py ``signer_in_store`` False
    while no node is here, for good for an id of nothing).
  Impact: ~65 signature checks per document per look, for good: 1,000 such documents (65,000
    revisions the server makes) cost ~70 s of the loop at every walk, every 60 s: the mount stops
    answering (every seat).  Without the leaves the same documents cost one check each.
  Fix (suggested): keep a leaf open only while its proof is pending AND judge it again only when the
    node's or owner's user document's revision changes (cache the verdict per leaf revision keyed by
    those revisions, as ``_signed_group`` does); or bound the open leaves judged per look.

Hole (4), medium (a member's key replaced by the server's on any device, for good, until re-key; the
  server alone, no key of anyone's): (1)'s cause the other way.  ``genuine_in_store`` judges a key record
  under the owner the store's current node document names, and nothing checks that node (no signature,
  no pin: the mirror has none).  The server makes a user of its own (mallory, self-signed), a node
  revision at her file's id naming mallory as owner, and a next revision of bob's key document: a
  record of epoch 2 signed by mallory.  It is "genuine", bob's key file (hers, epoch 1) is not
  (judged under mallory): ``_settle_one`` writes mallory's key over her key file.  Her node served again
  after it changes nothing: mallory's record is no longer genuine, nor is anything to answer it with
  (her key is gone from the file): the key file keeps the server's bytes.  43b (6) fixed the bare
  deletion under such a node (refused whatever the node says); the replacement was left.
  The same with her user document replaced by one of the server's key (46c (1)'s move, fixed there for
  group bodies only): a record signed under it is "genuine" and replaces her key file.
  Seen: ``test_a_key_signed_by_the_owner_a_planted_node_names_never_replaces_her_key_file`` (run, fails:
    her key file holds b"the server's key" after mallory's record, and after her node is back and a
    walk); ``test_a_key_signed_under_her_replaced_user_document_never_replaces_her_key_file`` (run,
    fails the same, her user document back at the end); control
    ``test_a_key_signed_by_another_user_never_replaces_her_key_file_control`` (the same record with
    her node left as it is: refused, her key kept, passes).
  Cause: grants.py ``genuine_in_store`` (``owner = node.get("owner")`` of an unchecked document), used
    by key_mirror.py ``_genuine`` / ``_settle_one`` (``elif not file_ok: sharing.write_key(...)``).
  Impact: on every device the server serves it to (one that had the key too, unlike (1)), a member's
    key file is replaced: the vault refuses the server's record (pinned check), so he reads nothing of
    the file until the owner re-keys it; the owner's own device's copy of his key file goes the same way.
  Fix (suggested): a record replaces a genuine key file only if it verifies under the very signer and
    signing key that made the key file genuine when it was written (kept per key document, as
    ``key-files`` keeps fingerprints: a pin per key, as 46c (1) pinned the group owner's key into the
    record), whatever the store's node or user document says now (as 43b (6) did for deletions).

What held (controls kept): a forged winner over a genuine leaf with every proof here and genuine
  (``test_a_forged_winner_over_a_genuine_leaf_with_its_proofs_here_is_replaced_control``); 51a (5)'s
  late user document and 52b (3)'s closing of proven-forged leaves (their own tests, and
  ``test_forged_leaves_of_a_file_here_are_judged_once_control``); a record of another signer with her
  node left as it is never replaces her key file (``..._control`` of (4)); a malformed winner leaves
  the genuine leaf open (b82cc6f, 51a's test).
Read, held (not run): a deleted node counts as pending (``signer_in_store``), so a removed file's
  genuine leaf is not closed by the fix (its cost is (3)'s); under a genuine winner every other leaf is
  closed as before f2e4874 (a later-epoch leaf of the same owner is provable whenever the winner is).
Not tried: a real mount or a CouchDB server (the scenes are the mirror's own, as 51a/52b's); the
  timing of (3) at scale (one document's look measured, ~0.07 s on this loaded machine).
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization

from fusevault.encoding import b64e
from fusevault.store import replica
from fusevault.sync import key_mirror
from fusevault.sync.key_mirror import KeyMirror, place
from fusevault.vault.model import sharing
from fusevault.vault.model.grants import record_doc
from unit.test_attack_42a_keys import _next_revision
from unit.test_attack_43b_keys import _gwens_group
from unit.test_attack_52b import _forged_branches
from unit.test_key_mirror import Owner, clock, pair, put  # noqa: F401 (fixtures)


def _planted_then_back(replicas, forged_leaf: bool, what: str) -> bool:
    """Her key record for bob (bound to gwen's group) met here as the server serves it: her node at the
    file's id naming gwen as owner (``what="node"``), or her user document replaced by one of a key the
    server made (``"user"``); her genuine leaf beside a forged winner (``forged_leaf``) or alone.  Then
    her own document again, a walk: whether bob's key file is written."""
    here, there = replicas
    her, gwen, group, doc_id, _ = _gwens_group(there, gwen_first=True, bound="gwen")
    bound = dict(there.store.get(doc_id))
    fid = bound["fid"]
    real_node = {k: v for k, v in there.store.get(fid).items() if k != "_rev"}
    real_user = {k: v for k, v in there.store.get(her.id).items() if k != "_rev"}
    put(here, gwen.user, {k: v for k, v in there.store.get(group).items() if k != "_rev"})
    if what == "node":
        put(here, real_user, {**real_node, "owner": gwen.id})  # the server's revision: no signature checked
    else:
        impostor = Owner()
        impostor.id = her.id
        put(here, real_node, impostor.sign({"_id": her.id, "type": "UserDetails",
                                            "public_sign": _public_of(impostor)}))
    high, low = "1-" + "f" * 32, "1-" + "0" * 32
    forged = {**bound, "_rev": high, "key": b64e(b"the server's bytes")}
    replica.store_revisions(here.store, [{**bound, "_rev": low}] + ([forged] if forged_leaf else []))
    here.keys.arrived([doc_id])
    here.keys.caught_up()
    assert not place(here.layout, doc_id).exists(), "the scene: none written yet"
    put(here, real_node if what == "node" else real_user)
    here.keys.caught_up()
    here.refresh()  # the mirror's walk of what is stored (as at the next start)
    here.keys.caught_up()
    return place(here.layout, doc_id).exists()


def _public_of(owner: Owner) -> str:
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    return b64e(owner.key.public_key().public_bytes(*raw))


def test_a_genuine_leaf_beside_a_node_naming_another_owner_is_not_closed_for_good(pair, clock) -> None:  # noqa: F811
    assert _planted_then_back(pair, forged_leaf=True, what="node"), "her key closed for good: no key file"


def test_her_genuine_leaf_alone_beside_a_node_naming_another_owner_is_written_later_control(pair, clock) -> None:  # noqa: F811,E501
    assert _planted_then_back(pair, forged_leaf=False, what="node")


def test_a_genuine_leaf_beside_her_replaced_user_document_is_not_closed_for_good(pair, clock) -> None:  # noqa: F811
    assert _planted_then_back(pair, forged_leaf=True, what="user"), "her key closed for good: no key file"


def test_her_genuine_leaf_alone_beside_her_replaced_user_document_is_written_later_control(pair, clock) -> None:  # noqa: F811,E501
    assert _planted_then_back(pair, forged_leaf=False, what="user")


def test_a_forged_winner_over_a_genuine_leaf_with_its_proofs_here_is_replaced_control(pair, clock) -> None:  # noqa: F811
    here, there = pair
    her, gwen, group, doc_id, _ = _gwens_group(there, gwen_first=True, bound="gwen")
    bound = dict(there.store.get(doc_id))
    for each in (her.id, bound["fid"], gwen.id, group):
        put(here, {k: v for k, v in there.store.get(each).items() if k != "_rev"})
    forged = {**bound, "_rev": "1-" + "f" * 32, "key": b64e(b"the server's bytes")}
    replica.store_revisions(here.store, [{**bound, "_rev": "1-" + "0" * 32}, forged])
    here.keys.arrived([doc_id])
    assert place(here.layout, doc_id).exists()


# --- (3): 52b (3)'s looks again, for a key document of a file whose node is not here


def _forged_looks(replicas, monkeypatch, node_here: bool) -> list[int]:
    """52b (3)'s scene with her node here or not; the records judged at each of three looks (each
    arrival of the document, each walk: ``refresh``, every 60 s)."""
    return _forged_branches(replicas, monkeypatch, node_here=node_here)[2]


def test_forged_leaves_of_a_file_not_here_are_not_judged_at_every_look(pair, clock, monkeypatch) -> None:  # noqa: F811
    looks = _forged_looks(pair, monkeypatch, node_here=False)
    assert looks[-1] <= 4, f"records judged per look: {looks}"


def test_forged_leaves_of_a_file_here_are_judged_once_control(pair, clock, monkeypatch) -> None:  # noqa: F811
    looks = _forged_looks(pair, monkeypatch, node_here=True)
    assert looks[-1] <= 4, f"records judged per look: {looks}"


# --- (4): a key "genuine" under a node revision the server made: written over her key file


def _mallorys_key_over_hers(replicas, planted: bool, what: str = "node",
                            restart: bool = False) -> tuple[bytes | None, bytes | None]:
    """bob's key of her file, mirrored here (key file written).  The server makes a user of its own
    (mallory, self-signed: the mirror has no pins), a node revision at her file's id naming mallory as
    owner (``planted``; else her node stays), and a next revision of bob's key document: a record of
    epoch 2 signed by mallory as the file's owner.  Then her own node again, and a walk.  (The key file's
    sealed key after mallory's record, and at the end.)  ``restart``: the mirror started again once her
    key is held (its pins read from the store)."""
    here, there = replicas
    her, gwen, group, doc_id, _ = _gwens_group(here, gwen_first=True, bound="gwen")
    if restart:
        here.keys = KeyMirror(here.store, here.layout)
    path = place(here.layout, doc_id)
    assert sharing.read_key(path).key == b"sealed for bob", "the scene: her key file here"
    fid, bob = key_mirror.names(doc_id) or ("", "")
    node = {k: v for k, v in here.store.get(fid).items() if k != "_rev"}
    mallory = Owner()
    if what == "user":  # her user document replaced by one of the server's key (46c (1)'s move)
        mallory.id = her.id
        public = _public_of(mallory)
        mallory.user = mallory.sign({"_id": her.id, "type": "UserDetails", "public_sign": public})
    user = {k: v for k, v in here.store.get(her.id).items() if k != "_rev"}
    if what == "node":
        put(here, mallory.user)
    if planted:
        if what == "node":
            _next_revision(here, fid, {**node, "owner": mallory.id})  # unsigned: read unchecked
        else:
            _next_revision(here, her.id, mallory.user)
    sealed = b"the server's key"
    sig = mallory.sign(record_doc(mallory.id, fid, bob, 2, sealed))["sig"]
    _next_revision(here, doc_id, {"_id": doc_id, "type": sharing.FILE_KEY, "epoch": 2, "key": b64e(sealed),
                                  "owner": mallory.id, "fid": fid, "recipient": bob, "sig": sig})
    after = sharing.read_key(path)
    if planted:  # her node (her user document) again: her next commit, or the server's next answer
        _next_revision(here, fid, node) if what == "node" else _next_revision(here, her.id, user)
    here.keys.caught_up()
    here.keys._looked_at = -float("inf")
    here.refresh()
    here.keys.caught_up()
    end = sharing.read_key(path)
    return (after.key if after else None), (end.key if end else None)


def test_a_key_signed_by_the_owner_a_planted_node_names_never_replaces_her_key_file(pair, clock) -> None:  # noqa: F811
    after, end = _mallorys_key_over_hers(pair, planted=True)
    assert after == end == b"sealed for bob", f"her key file holds {after!r}, then {end!r}"


def test_a_key_signed_by_another_user_never_replaces_her_key_file_control(pair, clock) -> None:  # noqa: F811
    after, end = _mallorys_key_over_hers(pair, planted=False)
    assert after == end == b"sealed for bob"


def test_a_key_signed_under_her_replaced_user_document_never_replaces_her_key_file(pair, clock) -> None:  # noqa: F811
    after, end = _mallorys_key_over_hers(pair, planted=True, what="user")
    assert after == end == b"sealed for bob", f"her key file holds {after!r}, then {end!r}"


# --- the fix's own edges (53c (1), (3), (4))


def test_her_pinned_key_is_never_replaced_after_a_restart(pair, clock) -> None:  # noqa: F811
    """(4) with the mirror started again once her key is held (the next start of the sync process): the
    pin is the store's local document ``key-signers/<doc id>``, not the running mirror's memory."""
    after, end = _mallorys_key_over_hers(pair, planted=True, what="user", restart=True)
    assert after == end == b"sealed for bob", f"her key file holds {after!r}, then {end!r}"


def test_a_key_written_before_its_node_came_is_not_pinned_and_hers_replaces_it(pair, clock) -> None:  # noqa: F811
    """No node here yet (a new device): a record is judged under the owner it names itself, so the
    server's own user's record for her file is written (as before the fix); pinned then, her genuine
    record could never replace it.  It is not: her node comes, her record replaces the server's."""
    here, there = pair
    her, gwen, group, doc_id, _ = _gwens_group(there, gwen_first=True, bound="gwen")
    bound = {k: v for k, v in there.store.get(doc_id).items() if k != "_rev"}
    fid, bob = key_mirror.names(doc_id) or ("", "")
    mallory = Owner()
    for each in (her.id, gwen.id, group):
        put(here, {k: v for k, v in there.store.get(each).items() if k != "_rev"})
    put(here, mallory.user)
    sealed = b"the server's key"
    sig = mallory.sign(record_doc(mallory.id, fid, bob, 1, sealed))["sig"]
    replica.store_revisions(here.store, [{"_id": doc_id, "_rev": "1-" + "a" * 32, "type": sharing.FILE_KEY,
                                          "epoch": 1, "key": b64e(sealed), "owner": mallory.id, "fid": fid,
                                          "recipient": bob, "sig": sig}])
    here.keys.arrived([doc_id])
    assert sharing.read_key(place(here.layout, doc_id)).key == sealed, "the scene: the server's key written"
    put(here, {k: v for k, v in there.store.get(fid).items() if k != "_rev"})
    _next_revision(here, doc_id, bound)
    assert sharing.read_key(place(here.layout, doc_id)).key == b"sealed for bob"


def test_leaves_kept_open_are_not_judged_again_at_her_nodes_next_revision(pair, clock, monkeypatch) -> None:  # noqa: F811
    """(3) with her node here but her user document not yet (51a (5)'s late signer): the leaves stay open
    (her document may come), judged once; her node's next revision (her next commit: the same owner)
    does not judge them again, only a change of the owner or her user document would."""
    here, there = pair
    her, gwen, group, doc_id, _ = _gwens_group(there, gwen_first=True, bound="gwen")
    bound = dict(there.store.get(doc_id))
    fid = bound["fid"]
    for each in (gwen.id, group, fid):
        put(here, {k: v for k, v in there.store.get(each).items() if k != "_rev"})
    leaves = [{**bound, "_rev": f"1-{n:032x}", "key": b64e(b"the server's bytes %d" % n)}
              for n in range(1, replica.LEAVES_PER_DOC + 1)]
    replica.store_revisions(here.store, [*leaves, {**bound, "_rev": "1-" + "f" * 32, "key": b64e(b"winner")}])
    calls: list[int] = []
    real = key_mirror.genuine_in_store
    monkeypatch.setattr(key_mirror, "genuine_in_store", lambda *a, **k: calls.append(1) or real(*a, **k))
    looks = []
    for n in range(3):
        if n == 2:
            _next_revision(here, fid, {k: v for k, v in there.store.get(fid).items() if k != "_rev"})
        calls.clear()
        here.keys.arrived([doc_id])
        looks.append(len(calls))
    assert looks[1] <= 4 and looks[2] <= 4, f"records judged per look: {looks}"
    assert len(replica.other_leaves(here.store, doc_id)) == replica.LEAVES_PER_DOC, "the leaves kept open"
