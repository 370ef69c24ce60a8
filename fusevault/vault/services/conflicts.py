"""Edits made on two devices while they were apart: settled without losing either.

Replication keeps both revisions of a document two replicas changed
concurrently (store/replica.py); CouchDB's rule picks which one is current.
For a file or folder, this module then decides what the user sees, by these
rules (docs/ARCHITECTURE.md "Sync"):

1. Edit against delete: the edit is kept; the file stays (a delete is only
   a trash flag, so nothing else is lost).  A branch with no names is a
   delete, whatever its ``delete`` flag says.
2. Both sides have the same contents (renames, chmod; or the same bytes
   written again on each side, as a restore from the trash does): the side
   with the newer key (a re-key), else the side changed last (ctime; for the
   same bytes, mtime) wins, with no copy.
3. One side's contents descend from the other's (one renamed, the other
   edited): the edited contents are kept under the other side's name, so both
   changes survive (the other side changed only names or modes, as its
   contents are older).
4. Both sides edited the contents: the later edit (mtime) keeps the name; the
   other becomes a conflict copy next to it, ``NAME (conflict DEVICE DATE).EXT``,
   DEVICE being the replica that wrote it and DATE its mtime (UTC).
5. Two revisions with no common history (two devices made the same conflict
   copy at once, under one derived id): one is kept; they hold the same contents.

Before any rule: a branch another user (a WRITE grantee) signed is judged
with the names it gives, as his node document would be
(vault/tree/authorship.py ``leaf_ok``): refused (said), nothing of it is
kept; and names one branch gives the other's contents (rule 3) are judged
again as that branch's signer's when applied.  A branch older than what
this device saw of the file (the rollback ledger, vault/model/ledger.py) is
a replay of the owner's own older revision, not an edit: reported, and
nothing of it is kept.  Unless the
ledger noted it as a live leaf of this conflict when first met
(``note_branches``): a later commit of this device's on the other branch
does not make its own losing edit a replay.

Every device that sees the conflict settles it, and gets the same answer:
the conflict copy's id is derived from the losing revision, and the losing
branch is closed with a revision whose id is derived from it too
(``replica.close_leaf``), so two devices settling at once make no new conflict.
Both edits also stay in the file's version history.

The rules that decide between two leaves are in conflict_rules.py, the conflict copy (its name, id
and making) in conflict_copies.py; this module settles: it reads each conflict's leaves, judges their
signers, applies the rules' answer and closes the losing branch.
"""

from __future__ import annotations

import logging

from fusevault.crypto.signing import signer_of
from fusevault.errors import Conflict, VaultError
from fusevault.store import replica
from fusevault.store.local import LocalStore
from fusevault.vault.model import names
from fusevault.vault.model.ledger import writer_seq
from fusevault.vault.model.nodes import NODE, Node, node_from_doc, open_node_doc
from fusevault.vault.services.absorbing import absorb_node
from fusevault.vault.services.conflict_copies import conflict_copy, edit_copy_ident
from fusevault.vault.services.conflict_rules import (
    Leaf,
    apart,
    decide,
    descends,
    is_hers,
    made_twice,
    open_leaf,
    replayed,
    same_bytes,
    within_readers,
)
from fusevault.vault.services.metadata_merge import Metadata
from fusevault.vault.services.punched_wants import inherits_punched
from fusevault.vault.tree.arrivals import Absorbed, relink
from fusevault.vault.tree.authorship import COPY, KEPT, REFUSED, said_signer
from fusevault.vault.volume import Volume

log = logging.getLogger(__name__)


# ``_owner_here``: the leaves of a document this device neither holds nor saw name two types or owners.
UNKNOWN = ""


def note_branches(volume: Volume, store: LocalStore, doc_ids: list[str]) -> None:
    """Tell the rollback ledger the live leaves of these conflicts, as they are
    met (before any await: no commit of this device's comes between).  A
    commit of this device's on the other branch before the conflict is settled
    (at unmount, the lazy ones) numbers past its own losing edit: noted here,
    that edit is settled as a concurrent edit (a copy), never taken for a
    replay (tests/services/test_sync.py, the conflict left unsettled at an
    unmount).  Only leaves signed by the owner, this user, are noted."""
    ledger = volume.ledger
    if ledger is None or volume.key is None:
        return
    for doc_id in doc_ids:
        current = store.get(doc_id)
        if current is None or current.get("type") != NODE or current.get("owner") != volume.key.user_id:
            continue
        for leaf in [current, *replica.other_leaves(store, doc_id)]:
            try:
                if volume.authorship is not None:
                    admitted = volume.authorship.admit(leaf)  # its signature checked
                    if admitted is None:
                        continue  # refused when settled
                    leaf, signer = admitted
                else:
                    signer = signer_of(leaf)
                if signer != volume.key.user_id or leaf.get("owner") != volume.key.user_id:
                    continue  # a writer's: judged when settled
                node, _ = node_from_doc(leaf, *open_node_doc(leaf, volume.key))
            except (VaultError, ValueError, TypeError, KeyError):
                continue  # refused when settled, and said then
            ledger.branch(doc_id, writer_seq(node.seq, leaf, volume.key.user_id))


def note_stored(volume: Volume) -> None:
    """A tree just loaded (an unlock, a mount's start), before it serves: the live leaves of the store's
    conflicts noted (``note_branches``).  Noted only after the first look at them (fs/arrivals.py
    ``_settle_handed``, off the loop, awaited), her save meanwhile made this device's own losing edit,
    left in the store while she was locked, older than seen: taken for a replay, no conflict copy and a
    false rollback alarm (attack round 76c (1)).  Every conflicted id read, one document each (the ones
    of other owners' nodes skipped at that): on the loading thread, never the loop."""
    store = replica.local_of(volume.store)
    if store is None or volume.ledger is None:
        return
    note_branches(volume, store, replica.conflicted(store))


def to_settle(store: LocalStore, user_id: str) -> list[str]:
    """The store's conflicts ``user_id``'s settling settles (``settles``).  Every conflicted id and its
    current document read: for a worker thread on a snapshot (fs/arrivals.py, once a tree unlocked)."""
    return _settled_by(store, user_id, replica.conflicted(store))


def left_open(store: LocalStore, user_id: str, doc_ids: list[str]) -> list[str]:
    """Of conflicts ``user_id``'s settling was handed, those it left for a later arrival to settle (a
    version on its way, records gc punched, a failure): still in conflict, and hers to settle
    (``settles``).  One look-up or two each: for a worker thread on a snapshot (fs/arrivals.py)."""
    return _settled_by(store, user_id, replica.conflicted_of(store, doc_ids))


def _settled_by(store: LocalStore, user_id: str, doc_ids: list[str]) -> list[str]:
    found = []
    for doc_id in doc_ids:
        try:
            current = store.get(doc_id)
        except VaultError:
            continue  # no document a settling could open either (a store writer's)
        if settles(current, user_id):
            found.append(doc_id)
    return found


def settles(current: dict | None, user_id: str) -> bool:
    """Whether ``user_id``'s settling settles the conflict whose current revision is ``current``: any but
    one on another owner's node (its owner's devices settle it: ``_settle_one``), or of no current
    revision.  The ones it does not were handed to every user's settling at every pull batch, a
    server's 50,000 planted conflicts read on the loop at each (attack round 74c (2)): they are now
    looked at only when a batch brings a revision of them (fs/arrivals.py)."""
    if current is None:
        return False
    return current.get("type") != NODE or current.get("owner") == user_id


async def settle(volume: Volume, store: LocalStore, doc_ids: list[str]) -> Absorbed:
    """Settle the conflicts of these documents; what the kernel must forget.
    Their live leaves were noted by the ledger when they arrived (fs/arrivals.py
    ``arrived`` calls ``note_branches``, the only way here), not again here:
    one signature check and decryption per leaf, not two."""
    out = Absorbed()
    for doc_id in doc_ids:
        try:
            await _settle_one(volume, store, doc_id, out)
        except VaultError as err:
            log.warning("could not settle the concurrent edits of %s: %s", doc_id, err)
    return out


def _came_dropped(volume: Volume, doc_id: str) -> None:
    """An edit fetched from under a refused revision (``tree.came_beneath``) whose settling failed: not
    tried again at every arrival, keeping the conflict open for good; said (``withheld``)."""
    said = names.alarms_of(volume)
    if volume.tree.came_beneath.pop(doc_id, None) is not None and said is not None:
        said.warn("withheld", doc_id, f"a change of file {doc_id} that lay under a refused one could not "
                  "be settled against this device's: the file shows what this device holds")


async def _settle_one(volume: Volume, store: LocalStore, doc_id: str, out: Absorbed) -> None:
    try:
        await _settle_conflict(volume, store, doc_id, out)
    except Conflict:
        raise  # changed here meanwhile: settled again after a later arrival, with what it fetched
    except VaultError:
        _came_dropped(volume, doc_id)
        raise


async def _settle_conflict(volume: Volume, store: LocalStore, doc_id: str, out: Absorbed) -> None:
    if doc_id in volume.tree.beneath:
        # Revisions under a refused one that this tree never took in are being fetched (arrivals.py
        # ``keep``): left open (``left_open``) until they are taken in or said withheld
        # (absorbing.py ``absorb_beneath``, which hands it again).  Settled first, her state was
        # committed over the refused revision, so over her other device's edit under it, lost on
        # every replica unsaid (attack round 78a (1), (2)).
        return
    # The metadata changes waiting for a group commit first: the current
    # revision read below must hold them, or adopting the other branch would
    # take the node in memory back over them (lost, with no conflict).
    await volume.commit_pending()
    judged: dict[str, str] = {}  # the current revision's verdict, once per revision (said once)
    # Her other device's edit fetched from under a refused revision stacked on it, beside the state
    # held here (absorbing.py ``absorb_beneath``): settled first, as a leaf of the conflict (it is in
    # no branch of the store: closing it closes nothing), once her state stands over the refused one
    # (``_hers_over_refused``).  Committed over unsettled, it was lost (attack round 78a (1)).
    came = volume.tree.came_beneath.get(doc_id)
    if came is not None and _came_waits(volume, store, came):
        return  # left open, nothing committed over the refused revision (and so over it) meanwhile
    for other in [*([came] if came is not None else []), *_in_order(volume, store, doc_id)]:
        if other is not came:
            volume.tree.came_beneath.pop(doc_id, None)  # settled
        current = store.get(doc_id)
        if current is None:
            return
        owner = _owner_here(volume, doc_id, current, other)
        if owner is None:
            # Users, groups, shares, settings: the revision CouchDB's rule
            # picked stands, as on the server; the other is closed.
            replica.close_leaf(store, doc_id, other["_rev"])
            continue
        if owner != volume.key.user_id:
            return  # a file shared with this user: its owner's devices settle it
        if volume.authorship is not None and volume.authorship.current_copy(volume, current):
            await _beside_writers_current(volume, store, current, other, out)
            continue
        if _current_verdict(volume, current, judged) != KEPT:
            # The revision CouchDB's rule made current is judged as an arrival is (its signature, its
            # signer's grants): refused, it is no state to settle against.  Settled against, the
            # rules merged its mode, owner ids and xattrs into her state and committed them signed by
            # her, or kept it and closed her genuine leaf (attack round 75b (1), (2), (3)).  Her tree's
            # state standing on it is what the other leaf is settled against (``_hers_over_refused``).
            if await _hers_over_refused(volume, current):
                current = store.get(doc_id)  # hers now, signed by her: judged again, then the rules
            if current is None:
                return
            if _current_verdict(volume, current, judged) != KEPT:
                await _beside_refused_current(volume, store, current, other, out)
                continue
        verdict = KEPT if volume.authorship is None else volume.authorship.leaf_verdict(volume, other)
        if verdict == REFUSED:
            replica.close_leaf(store, doc_id, other["_rev"])  # refused (and said): never a copy of it
            continue
        mine = open_leaf(current, replica.current_history(store, doc_id), volume)
        theirs = open_leaf(other, replica.history_from(other), volume)
        if replayed(volume, theirs, mine, "written back as a concurrent edit"):
            # The owner's own older revision, validly signed, put back as a
            # branch: a replay, not an edit.  Settled in, rule 3 would give the
            # current contents its old names (a rename undone, a file moved
            # back into a folder shared since).
            _close(volume, store, theirs)
            continue
        if verdict == COPY:
            await _writers_copy(volume, store, current, mine, theirs, out)
            continue
        if any(leaf.node.head and store.get(leaf.node.head) is None for leaf in (mine, theirs)):
            return  # a version has not arrived yet: settled after a later arrival
        if any(leaf.node.is_reg and inherits_punched(volume, leaf.node) for leaf in (mine, theirs)):
            # Records a leaf's version inherits were punched here by gc (attack round 41b (1)):
            # wanted from the peer, settled once they came (or were asked for in vain).
            return
        meta: Metadata | None = None
        differ = False  # the two leaves' bytes were compared and differ (read once)
        if replayed(volume, mine, theirs, "made the current revision, beside a newer one"):
            keeper, named, loser = theirs, theirs, None  # nothing of the replay is kept
        else:
            keeper, named, loser = decide(store, mine, theirs, volume.key, volume)
            if (made_twice(mine, theirs) and mine.node.is_reg and mine.node.head != theirs.node.head
                    and not await same_bytes(volume, mine, theirs)):
                # Rule 5 is for one conflict copy two devices made at once: the same bytes.  Two
                # histories with nothing in common are the server's to make (a leaf served as a
                # first revision, its history cut to itself): kept whole, it dropped her other
                # device's newer edit unsaid (attack round 41b (6)).  Rule 4 then: both kept.
                keeper = max(mine, theirs, key=lambda leaf: (leaf.node.mtime, leaf.doc["_rev"]))
                named, loser = keeper, (theirs if keeper is mine else mine)
                differ = True
            named, meta = apart(volume, mine, theirs, keeper, named, loser)
            named = within_readers(volume, keeper, named)
        log.info("concurrent edits of %s: %s kept, %s", doc_id, keeper.doc["_rev"],
                 f"{loser.doc['_rev']} copied" if loser else "no copy")
        if loser is not None and not differ and await same_bytes(volume, keeper, loser):
            loser = None  # rule 2 by contents: both sides hold the same bytes under two versions
        if loser is not None:
            await conflict_copy(volume, store, loser, out)
        if keeper is theirs or named.links != keeper.links or (meta and meta.differs(keeper.node)):
            await _adopt(volume, current, keeper, named, out, (mine, theirs), meta)
        _close(volume, store, theirs)
    volume.tree.came_beneath.pop(doc_id, None)
    if volume.ledger is not None and not replica.other_leaves(store, doc_id):
        volume.ledger.settled_branches(doc_id)
    _writers_alone(volume, store, doc_id)


def _came_waits(volume: Volume, store: LocalStore, came: dict) -> bool:
    """Whether her other device's edit fetched from under a refused revision (``came_beneath``) cannot
    be settled yet: its version has not arrived, or records it inherits were punched here by gc.
    Looked at before anything is committed: her state committed over the refused revision first
    (``_hers_over_refused``) went over that edit, which then waited in memory only and was lost
    unsaid at her lock (attack round 80a (2)).  A leaf that does not open is no wait: the settling
    says it (``_came_dropped``)."""
    try:
        node = open_leaf(came, replica.history_from(came), volume).node
    except (VaultError, ValueError, TypeError, KeyError):
        return False
    if node.head and store.get(node.head) is None:
        return True
    return node.is_reg and inherits_punched(volume, node)


def _owner_here(volume: Volume, doc_id: str, current: dict, other: dict) -> str | None:
    """Whose node ``doc_id`` is, as this device holds it (the tree's node) or first saw it (the ledger's
    ``owner_seen``); else what both leaves say (their clear ``type`` and ``owner``), and where they
    differ ``UNKNOWN``: not this device's to settle (one that holds it does).  None: no node (a user,
    group, share or settings document).  Never the current revision's clear fields alone: a keyless
    server's winning sibling naming another user as owner had that user's device settle her file and
    close her leaf as not his, and one naming another type had every device close it as a document
    whose current revision stands (attack round 75b (2))."""
    held = volume.find(doc_id)
    if held is not None:
        return held.owner
    seen = volume.ledger.owner_seen(doc_id) if volume.ledger is not None else None
    if seen is not None:
        return seen
    said = {(leaf.get("type"), leaf.get("owner") if leaf.get("type") == NODE else None)
            for leaf in (current, other)}
    if len(said) != 1:
        return UNKNOWN
    kind, owner = said.pop()
    if kind != NODE:
        return None
    return owner if isinstance(owner, str) else UNKNOWN


def _current_verdict(volume: Volume, current: dict, judged: dict[str, str]) -> str:
    """The current revision judged with the verdict a concurrent revision gets (``leaf_verdict``:
    signature, signer's grants, the key a writer may give), once per revision: KEPT, else refused,
    unsaid (said as it arrived, or by the load).  A writer's edit to keep only as a copy is
    ``current_copy``'s, met before this.  One that is no node of hers (another type or owner than held:
    ``_owner_here``) is refused, said."""
    rev = str(current.get("_rev"))
    if rev not in judged:
        gate = volume.authorship
        if current.get("type") != NODE or current.get("owner") != volume.key.user_id:
            if gate is not None:
                gate.deny(current, "the current revision is no state of her file (another type or owner "
                          "than held here)")
            judged[rev] = REFUSED
            return REFUSED
        # Unsaid: refused as the file's state when it arrived or was loaded, and said there.
        judged[rev] = KEPT if gate is None else gate.leaf_verdict(volume, current, said=False)
    return judged[rev]


async def _hers_over_refused(volume: Volume, current: dict) -> bool:
    """The state of hers her tree holds, standing on the refused current revision (arrivals.py ``keep``:
    the node's revision is the refused one, and the state held there is signed by her, not taken from
    it), committed over it now, awaited: True once committed.  The concurrent leaf is then settled
    against that state by the rules.  A refused current stacked on her own revision hides the state
    the other leaf is concurrent with: taken whole over it (``_beside_refused_current``), her other
    device's leaf dropped her desktop's edit unsaid, or, a trash, won over her live edit (attack round
    77a (1)).  False where the tree holds no state of hers on it (another revision, no node, a
    writer's state held, or the refused state itself taken before it was refused)."""
    node = volume.find(current["_id"])
    me = volume.key.user_id
    if node is None or node.owner != me or node.rev != current["_rev"]:
        return False
    if volume.tree.held_signers.get(node.fid) != (current["_rev"], me):
        return False  # not a state of hers stood on it: the refused one's own, or a writer's
    await volume.save_node(node)
    return node.rev != current["_rev"]


async def _beside_refused_current(volume: Volume, store: LocalStore, current: dict, other: dict,
                                  out: Absorbed) -> None:
    """The current revision is refused (``_current_verdict``) and her tree holds no state of hers
    standing on it (``_hers_over_refused``): nothing of it is kept, merged or
    copied.  ``other``, admitted (``leaf_verdict``, and no replay by the ledger), is made current again
    as a new revision of hers over the refused one (``_adopt``: the refused state stays only in the
    history beneath it) and its own leaf closed; refused or a replay, it is closed too, and the state
    the tree holds (what she had) is committed over the refused current.  A writer's edit to keep as a
    copy is left open: settled once a state of hers is current."""
    doc_id = current["_id"]
    verdict = KEPT if volume.authorship is None else volume.authorship.leaf_verdict(volume, other)
    if verdict == COPY:
        _held_over_refused(volume, current, out)
        return
    if verdict == KEPT:
        kept = open_leaf(other, replica.history_from(other), volume)
        if not replayed(volume, kept, kept, "beside a refused current revision"):
            if kept.node.head and store.get(kept.node.head) is None:
                return  # its version has not arrived yet: settled after a later arrival
            if kept.node.is_reg and inherits_punched(volume, kept.node):
                return  # records its version inherits were punched here: wanted from the peer first
            log.info("concurrent edits of %s: the current revision %s refused, %s made current over it",
                     doc_id, str(current["_rev"])[:40], other["_rev"])
            await _adopt(volume, current, kept, kept, out, (kept,))
            _close(volume, store, kept)
            return
        _close(volume, store, kept)
    else:
        replica.close_leaf(store, doc_id, other["_rev"])  # refused (and said)
    _held_over_refused(volume, current, out)


def _held_over_refused(volume: Volume, current: dict, out: Absorbed) -> None:
    """The state the tree holds of her file, standing on the refused current revision (arrivals.py
    ``keep``), committed over it (``out.recommit``): the store's current revision is hers again."""
    node = volume.find(current["_id"])
    if node is not None and node.owner == volume.key.user_id and node.rev == current["_rev"]:
        out.recommit.append((node, current["_rev"]))


def _in_order(volume: Volume, store: LocalStore, doc_id: str) -> list[dict]:
    """The other leaves to settle, in revision order; hers first when the current revision is a
    writer's edit kept only as a copy (``current_copy``): hers is committed over his first, and his
    other edits beside it (another device of his) are then settled against hers, each copied.  Met
    before hers, the other edit was closed as not hers, uncopied and unsaid (attack round 42b (7)).
    Only the order is taken from the signer named (unchecked): each leaf is judged when settled."""
    others = replica.other_leaves(store, doc_id)
    gate, current = volume.authorship, store.get(doc_id)
    if gate is None or current is None or len(others) < 2 or not gate.current_copy(volume, current):
        return others
    return sorted(others, key=lambda leaf: not _said_hers(volume, leaf))


def _said_hers(volume: Volume, doc: dict) -> bool:
    """Whether a leaf says it is hers, signed by her (unchecked: for the order alone)."""
    return said_signer(doc) == volume.key.user_id == doc.get("owner")


async def _beside_writers_current(volume: Volume, store: LocalStore, current: dict, other: dict,
                                  out: Absorbed) -> None:
    """The current revision is a writer's edit kept only as a copy (authorship.py ``current_copy``:
    refused, unsaid, when it arrived), ``other`` her branch: his copied, hers committed over his."""
    doc_id = current["_id"]
    verdict = KEPT if volume.authorship is None else volume.authorship.leaf_verdict(volume, other)
    if verdict == COPY:
        _beside_no_state_of_hers(volume, store, other)
        return
    if verdict != KEPT:
        replica.close_leaf(store, doc_id, other["_rev"])  # not hers either (said): his alone is left
        return
    hers = open_leaf(other, replica.history_from(other), volume)
    his = open_leaf(current, replica.current_history(store, doc_id), volume)
    await _writers_copy(volume, store, current, hers, his, out)


def _beside_no_state_of_hers(volume: Volume, store: LocalStore, other: dict) -> None:
    """Another writer's edit to keep only as a copy (another device of his), beside his current one.
    A branch of hers still open (its version on its way): left for after hers, settled against it
    (``_in_order``).  None: refused, as ``_writers_alone`` says of the current one, and said; closed
    silently, his edit was lost unsaid (attack round 42b (7))."""
    doc_id = other["_id"]
    if any(_said_hers(volume, leaf) for leaf in replica.other_leaves(store, doc_id)):
        return
    if volume.authorship is not None:
        volume.authorship.deny(other, f"a concurrent revision signed by {said_signer(other)}, who holds no "
                               "WRITE on it (beside no state of hers: no concurrent edit)")
    replica.close_leaf(store, doc_id, other["_rev"])


def _writers_alone(volume: Volume, store: LocalStore, doc_id: str) -> None:
    """A writer's edit to keep only as a copy that is the current revision with no branch of hers
    beside it left: no concurrent edit then (her state it was made beside is gone, or was never
    there), and refused, as it was when it arrived, said now."""
    gate = volume.authorship
    current = store.get(doc_id)
    if (gate is not None and current is not None and current.get("type") == NODE
            and not replica.other_leaves(store, doc_id) and gate.current_copy(volume, current)):
        gate.deny(current, f"signed by {signer_of(current)}, who holds no WRITE on it (beside no state of "
                  "hers: no concurrent edit)")


async def _writers_copy(volume: Volume, store: LocalStore, current: dict, mine: Leaf, theirs: Leaf,
                        out: Absorbed) -> None:
    """A writer's edit made over a state before her re-key of the file (her move out of his share:
    authorship.py ``writers_copy``): kept as a conflict copy in the folder he wrote it in, of his
    contents under the key he held; her state stays the file's, where she put it, under her key.
    Settled by the rules, his later edit was kept as the file (her file back in his share, under the
    key he holds), his names given to hers (rule 3), or, refused, it was lost and called his forgery
    (attack round 41b (5)).  Contents hers already descend from (a state of his she took in) are no
    edit of hers to keep: closed, no copy."""
    if any(leaf.node.head and store.get(leaf.node.head) is None for leaf in (mine, theirs)):
        return  # a version has not arrived yet: settled after a later arrival
    # A state of his closed here already, put back (as the current revision too): a replay, said.
    copied = (not replayed(volume, theirs, mine, "written back as a concurrent edit")
              and not descends(store, mine, theirs.node.head, volume.key))
    signer = signer_of(theirs.doc)
    if copied and volume.authorship is not None and isinstance(signer, str):
        volume.authorship.vouch_copy(theirs.doc["_id"], signer, theirs.node)
    log.info("concurrent edits of %s: %s kept, a writer's %s %s", theirs.doc["_id"], mine.doc["_rev"],
             theirs.doc["_rev"], "copied where he wrote it" if copied else "already in it, no copy")
    if copied:
        ident = edit_copy_ident(theirs.doc["_id"], str(theirs.node.head), theirs.node.dek)
        await conflict_copy(volume, store, theirs, out, ident)
    if theirs.doc["_rev"] == current["_rev"]:
        # His is the current revision (beside_writers_current): hers is committed over it, as her state.
        await _adopt(volume, current, mine, mine, out, (mine, theirs))
        _close(volume, store, mine)
    else:
        _close(volume, store, theirs)


def _made_over_both(volume: Volume, doc_id: str, *leaves: Leaf) -> None:
    """The state the settling commits is made over the leaves, as its signed ``over`` says: her other
    device then takes it for the settling it is, not for a state made without its own edit, served as
    following it (absorbing.py ``_served_over``), nor its own leaf, closed here, for a replay."""
    if volume.ledger is None:
        return
    seqs = [writer_seq(leaf.node.seq, leaf.doc, volume.key.user_id) for leaf in leaves]
    volume.ledger.cover(doc_id, {s[0]: s[1] for s in seqs if s is not None and "/" not in s[0]})


def _close(volume: Volume, store: LocalStore, leaf: Leaf) -> None:
    """Close a settled leaf; the ledger keeps its seq, so that the same
    state put back under a new revision id is a replay, not a second copy."""
    replica.close_leaf(store, leaf.doc["_id"], leaf.doc["_rev"])
    if volume.ledger is not None:
        volume.ledger.close_leaf(leaf.doc["_id"], writer_seq(leaf.node.seq, leaf.doc, volume.key.user_id))


async def _adopt(volume: Volume, current: dict, keeper: Leaf, named: Leaf, out: Absorbed,
                 leaves: tuple[Leaf, ...] = (), meta: Metadata | None = None) -> None:
    """Make the keeper's state (with the names of ``named``) the next revision after ``current``."""
    # Taken into the tree as if it were a newer revision (absorb skips the
    # revision the tree already holds), then committed on top of ``current``.
    if (waiting := volume.find(current["_id"])) is not None and waiting.ino in volume.tree.pending:
        # Changed here since ``current`` was read (a request while the copy
        # was made): settled again after a later arrival, never taken back.
        raise Conflict(f"{current['_id']} changed here while its concurrent edits were settled")
    links = named.links
    gate = volume.authorship
    if named is not keeper and gate is not None and not gate.leaf_ok(volume, named.doc):
        # Names another branch gives the kept contents (rule 3) are committed
        # as hers: judged as that branch's signer's, from where the node sits
        # now (before the keeper is taken in), or not applied (said).
        links = keeper.links
    # Where it is now, under what shares: a writer's move in either branch (his names kept by rule 3
    # on her own revision too) re-keys it away from the shares it leaves, as a move taken in does
    # (absorbing.py; attack round 37b (2)).  Her own devices' moves find no key left to take back.
    held = volume.find(current["_id"])
    before = volume.tree.covering(held) if held is not None else []
    held_key = None if held is None else (held.dek, held.epoch, held.key_proof)
    absorb_node(volume, {**keeper.doc, "_rev": f"{current['_rev']} settled"}, out, settled=True)
    node = volume.find(current["_id"])
    if node is None:
        return
    # His contents under a key older than the one held, or under a claimed epoch (absorbing.py asks a
    # re-key of them: ``_claims_a_key``): sealed again under a new key of hers once committed.
    sealed_again = not is_hers(volume, keeper) and node in out.rekey
    volume.tree.stand_on(node, current["_rev"])  # the state held the settled one: its signer carried
    if held_key is not None and not is_hers(volume, keeper):
        _no_claimed_epoch(volume, node, keeper, *held_key)
    if links != keeper.links:
        relink(volume.tree, node, links, out)
    if meta is not None:  # her metadata changes of both states (``apart``), with their stamps
        if meta.differs(node):
            out.inodes.append(node.ino)  # the kernel forgets the mode and xattrs it holds
        meta.apply(node)
    volume.tree.note_moved(node, before)
    _made_over_both(volume, current["_id"], *leaves)  # taken in first: covered, the keeper was a replay
    await volume.save_node(node)
    if sealed_again:
        await _sealed_again_under_hers(volume, node, out)


async def _sealed_again_under_hers(volume: Volume, node: Node, out: Absorbed) -> None:
    """A member's state kept (rule 3's contents of his, rule 4's keeper, his state whole) under a key
    not the one held here: his contents, sealed under the key he holds (her older one, which those
    her unshare removed hold too), are sealed again under a new key of hers now, as his write under
    her older key taken in alone is (absorbing.py ``out.rekey``).  Left to the settling's caller,
    which follows no re-key, her file stayed under the old key, committed by her, at his epoch
    (attack round 45c (4), (5), limits).  A failure is said; the file keeps his state meanwhile."""
    while node in out.rekey:
        out.rekey.remove(node)  # done here
    try:
        await volume.rekey(node)
    except VaultError as err:
        shown = volume.tree.path_of(node).decode(errors="replace")
        text = (f"{shown} ({node.fid}) kept a member's edit under an older key of it (whoever lost access "
                f"may still read it): not given a new key ({err})")
        if (alarms := names.alarms_of(volume)) is not None:
            alarms.warn("rekey", node.fid, text)
        log.error("%s", text)


def _no_claimed_epoch(volume: Volume, node: Node, keeper: Leaf, dek: bytes | None, epoch: int,
                      proof: str | None) -> None:
    """A member's state committed here (rule 3's contents of his, or his state whole) under the key this
    device holds: committed at the epoch held, not at the one he sealed.  The epoch is his to claim
    and the commit is signed by her: his claim made hers beat her re-key as "two states of hers"
    (rule 2 by epoch), her unshare undone (attack round 45c (4)).  With the held key's proof (``proof``:
    his is of no key at the epoch held)."""
    if node.dek != dek or node.epoch == epoch:
        return
    if node.epoch > epoch and volume.authorship is not None:
        volume.authorship.deny(keeper.doc, f"a state signed by {said_signer(keeper.doc)} claims key epoch "
                               f"{node.epoch} for the key held at epoch {epoch}: committed at {epoch}")
    node.epoch, node.key_proof = epoch, proof
