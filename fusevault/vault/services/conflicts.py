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
"""

from __future__ import annotations

import functools
import hashlib
import logging
import secrets
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

from fusevault.crypto.keys import MasterKey, subkey
from fusevault.crypto.signing import signer_of
from fusevault.errors import Conflict, Forged, VaultError
from fusevault.store import replica
from fusevault.store.local import REVS_LIMIT, LocalStore
from fusevault.vault.files.content import Content
from fusevault.vault.model import names, sharing
from fusevault.vault.model.her_keys import proven
from fusevault.vault.model.history import made_over, version_plain
from fusevault.vault.model.ledger import Seq, writer_seq
from fusevault.vault.model.nodes import NODE, Node, node_from_doc, open_node_attrs, open_node_doc
from fusevault.vault.services.absorbing import absorb_node
from fusevault.vault.services.metadata_merge import Metadata, changed_last, merged, stamp
from fusevault.vault.services.punched_wants import inherits_punched
from fusevault.vault.services.recovery import COPY_CHUNK, copy_into
from fusevault.vault.tree.arrivals import Absorbed, past_the_xattr_cap, past_the_xattr_cap_said, relink
from fusevault.vault.tree.authorship import COPY, KEPT, REFUSED, said_signer
from fusevault.vault.volume import Caller, Volume

log = logging.getLogger(__name__)

# Two edits of one file up to this size are read to tell whether they hold the same bytes (rule 2).
SAME_LIMIT = 64 * 1024 * 1024
# ``_copy_ident``: how many derived ids a conflict copy is tried under, each taken by a document that
# is not the copy; then a random one.
COPY_IDENTS = 4
# ``_owner_here``: the leaves of a document this device neither holds nor saw name two types or owners.
UNKNOWN = ""


@dataclass
class Leaf:
    doc: dict
    node: Node
    links: list[tuple[str, bytes]]
    history: list[str]


def copy_ident(fid: str, rev: str, dek: bytes) -> tuple[str, bytes]:
    """The conflict copy's id and DEK: every device that makes the copy makes
    the same file (its key derived from the original's, which they all hold)."""
    fid = hashlib.sha256(f"fusevault conflict copy\0{fid}\0{rev}".encode()).hexdigest()[:32]
    return fid, subkey(dek, f"fusevault conflict-copy dek v1 {fid}")


def edit_copy_ident(fid: str, head: str, dek: bytes) -> tuple[str, bytes]:
    """A writer's copied edit's id and DEK (``_writers_copy``): derived from the version it holds (its
    head), not from the revision that carried it.  The same edit served again under another revision
    (re-signed as a later state of his device, each a small document) is then the copy made already,
    here or on her other device: from the revision, each was one more full copy of his contents on
    her storage and her pushes (attack round 42b (5))."""
    return copy_ident(fid, f"head\0{head}", dek)


# The times a copy's name shows: four-digit years (1000-01-01 to 9999-12-31 23:59), whatever the
# mtime (a peer's, a source file's set at will): past them gmtime fails or the year grows a digit.
NAMED_FROM, NAMED_UNTIL = -30_610_224_000 * 10**9, 253_402_300_740 * 10**9


# A copy's label: at most this many bytes of UTF-8 (a device's name, a peer's: ``label_of``).
LABEL_BYTES = 64
# Numbered names a copy is tried under before random ones (``copy_names``), and a random one's hex digits.
NUMBERED = 1000
RANDOM_HEX = 8
KEPT_TAIL = 12  # bytes of a label kept at its end when it is cut (its number: ``copy_names``)


def copy_name(name: bytes, device: str, mtime_ns: int) -> bytes:
    """``notes (conflict DEVICE 2026-12-07 10.30).txt``: a copy's name beside ``name``, always a name
    (at most ``names.MAX_BYTES``).  The stem is cut to make room; an extension of more than half of that
    goes into the stem (as ``names.beside`` does), and the device's label is cut last, in its middle
    (its end is a copy's number): kept whole, a long extension made a 266-byte name, refused only once
    the whole copy was written, at every retry of an import (attack round 65a (1)); cut at its end, the
    numbered names of a long label were all one name (66a (1))."""
    stem, dot, ext = name.rpartition(b".")
    if not dot or not stem or len(ext) > names.MAX_BYTES // 2:  # no extension, a dot file, mostly "extension"
        stem, dot, ext = name, b"", b""
    when = time.strftime("%Y-%m-%d %H.%M", time.gmtime(min(max(mtime_ns, NAMED_FROM), NAMED_UNTIL) / 1e9))
    room = names.MAX_BYTES - 1 - len(f" (conflict  {when})".encode()) - len(dot + ext)
    raw = device.encode("utf-8", "replace")
    if len(raw) > room:
        keep = min(KEPT_TAIL, room // 2)
        raw = raw[:room - keep].decode("utf-8", "ignore").encode() + raw[len(raw) - keep:]
    label = raw.decode("utf-8", "ignore")  # never half a character
    tail = f" (conflict {label} {when})".encode() + dot + ext
    return names.ending(stem, tail)  # the stem cut at a character's start (69c (4))


def copy_names(name: bytes, device: str, mtime_ns: int) -> Iterator[bytes]:
    """The names a copy beside ``name`` is tried under, the first free one taken: ``copy_name``, then
    numbered ``DEVICE 2`` up to ``NUMBERED``, then random: a folder filled with numbered names (a writer
    of a shared folder) costs a bounded look, and the search always ends (66a (1): with a cut label
    every numbered name was one, and the conflict's loop spun the mount's thread for good)."""
    yield copy_name(name, device, mtime_ns)
    for number in range(2, NUMBERED + 1):
        yield copy_name(name, f"{device} {number}", mtime_ns)
    while True:
        yield copy_name(name, f"{device} {secrets.token_hex(RANDOM_HEX // 2)}", mtime_ns)


def label_of(device: object) -> str:
    """A device's name as a copy's label: a peer's own choice (sealed in its version), so a printable
    string of at most ``LABEL_BYTES`` bytes of UTF-8, else ``another device``.  A lone surrogate in it
    raised out of the conflict's settling, the rest of the batch left unsettled (66a (2))."""
    if not isinstance(device, str) or not device.isprintable():
        return "another device"
    try:
        encoded = device.encode("utf-8")
    except UnicodeEncodeError:
        return "another device"
    if len(encoded) > LABEL_BYTES or not names.valid(encoded):
        return "another device"
    return device


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
        mine = _open(current, replica.current_history(store, doc_id), volume)
        theirs = _open(other, replica.history_from(other), volume)
        if _replayed(volume, theirs, mine, "written back as a concurrent edit"):
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
        if _replayed(volume, mine, theirs, "made the current revision, beside a newer one"):
            keeper, named, loser = theirs, theirs, None  # nothing of the replay is kept
        else:
            keeper, named, loser = _decide(store, mine, theirs, volume.key, volume)
            if (_made_twice(mine, theirs) and mine.node.is_reg and mine.node.head != theirs.node.head
                    and not await _same_bytes(volume, mine, theirs)):
                # Rule 5 is for one conflict copy two devices made at once: the same bytes.  Two
                # histories with nothing in common are the server's to make (a leaf served as a
                # first revision, its history cut to itself): kept whole, it dropped her other
                # device's newer edit unsaid (attack round 41b (6)).  Rule 4 then: both kept.
                keeper = max(mine, theirs, key=lambda leaf: (leaf.node.mtime, leaf.doc["_rev"]))
                named, loser = keeper, (theirs if keeper is mine else mine)
                differ = True
            named, meta = _apart(volume, mine, theirs, keeper, named, loser)
            named = _within_readers(volume, keeper, named)
        log.info("concurrent edits of %s: %s kept, %s", doc_id, keeper.doc["_rev"],
                 f"{loser.doc['_rev']} copied" if loser else "no copy")
        if loser is not None and not differ and await _same_bytes(volume, keeper, loser):
            loser = None  # rule 2 by contents: both sides hold the same bytes under two versions
        if loser is not None:
            await _conflict_copy(volume, store, loser, out)
        if keeper is theirs or named.links != keeper.links or (meta and meta.differs(keeper.node)):
            await _adopt(volume, current, keeper, named, out, (mine, theirs), meta)
        _close(volume, store, theirs)
    volume.tree.came_beneath.pop(doc_id, None)
    if volume.ledger is not None and not replica.other_leaves(store, doc_id):
        volume.ledger.settled_branches(doc_id)
    _writers_alone(volume, store, doc_id)


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
        kept = _open(other, replica.history_from(other), volume)
        if not _replayed(volume, kept, kept, "beside a refused current revision"):
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
    hers = _open(other, replica.history_from(other), volume)
    his = _open(current, replica.current_history(store, doc_id), volume)
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
    copied = (not _replayed(volume, theirs, mine, "written back as a concurrent edit")
              and not _descends(store, mine, theirs.node.head, volume.key))
    signer = signer_of(theirs.doc)
    if copied and volume.authorship is not None and isinstance(signer, str):
        volume.authorship.vouch_copy(theirs.doc["_id"], signer, theirs.node)
    log.info("concurrent edits of %s: %s kept, a writer's %s %s", theirs.doc["_id"], mine.doc["_rev"],
             theirs.doc["_rev"], "copied where he wrote it" if copied else "already in it, no copy")
    if copied:
        ident = edit_copy_ident(theirs.doc["_id"], str(theirs.node.head), theirs.node.dek)
        await _conflict_copy(volume, store, theirs, out, ident)
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


def _replayed(volume: Volume, leaf: Leaf, other: Leaf, how: str) -> bool:
    """Is this branch older than what this device saw of the file (the
    rollback ledger: vault/model/ledger.py)?  Said if so, unless ``other``
    was made over it by her other device's settling (``Ledger.replayed``)."""
    ledger = volume.ledger
    seq = writer_seq(leaf.node.seq, leaf.doc, volume.key.user_id)
    if _cut_ancestor(seq, writer_seq(other.node.seq, other.doc, volume.key.user_id), other.history):
        log.info("%s: an older state of one device beside its newer one, whose history is too long to "
                 "name it: an ancestor, closed", leaf.doc["_id"])
        return True
    return ledger is not None and ledger.replayed(volume.tree, leaf.doc["_id"], seq, how, other.node.over)


def _cut_ancestor(seq: Seq | None, newer: Seq | None, history: list[str]) -> bool:
    """Whether a branch is an ancestor the other's history no longer reaches: more than
    ``REVS_LIMIT`` saves on one device while away left the server's current revision out of the
    history it was sent with, and it stays as a branch (with no edit on it).  An older state of
    the device the other's state is of, beside a history cut at the limit, is that: closed, not said
    as a rollback (a false alarm on ordinary offline work: attack round 40b (4)).  A server that
    puts one there gains nothing: an older state of that device is never the one kept."""
    return (seq is not None and newer is not None and seq[0] == newer[0] and seq[1] < newer[1]
            and len(history) >= REVS_LIMIT)


def _open(doc: dict, history: list[str], volume: Volume) -> Leaf:
    node, links = node_from_doc(doc, *open_node_doc(doc, volume.key))
    return Leaf(doc, node, links, history)


def _decide(store: LocalStore, mine: Leaf, theirs: Leaf, key: MasterKey,
            volume: Volume | None = None) -> tuple[Leaf, Leaf, Leaf | None]:
    """(the leaf whose contents stay, the leaf whose names it gets, the leaf to copy or None).
    ``volume`` tells her states from a member's (rule 2); None: every state is hers."""
    if _made_twice(mine, theirs):
        return mine, mine, None  # rule 5
    if _deletes(mine) != _deletes(theirs):
        keeper = theirs if _deletes(mine) else mine  # rule 1
        return keeper, keeper, None
    if mine.node.head == theirs.node.head:
        # Rule 2; of two key epochs, the newer key stands: a re-key with nothing to seal again (her
        # move of an empty file or a folder out of a share) is only its key and epoch.  The later
        # side kept whole, a chmod made apart put her file back under the key the member holds, given
        # the names of her move (``_apart``; attack round 42b (6)).  Its metadata is merged still.
        keeper = _newer_key(volume, mine, theirs)
        return keeper, keeper, None
    for newer, older in ((mine, theirs), (theirs, mine)):
        if _descends(store, newer, older.node.head, key):
            # Rule 3: the side with the older contents changed only names or
            # modes: its names are the change to keep, with the newer contents.
            if _rekeyed_by_a_move(newer, older, _stamped(volume)):
                # Unless the newer side gave the file a new key in another folder: her move out of a
                # share (re-keyed so that who lost it reads nothing written next).  Named from
                # the older side, the file went back into the share, and the new key was sealed to
                # the member (attack round 41b (2)); a rename in one folder is kept still, and so is
                # her move on her other device beside a re-key in place (attack round 43c (5)).
                return newer, newer, None
            return newer, older, None
    keeper = max(mine, theirs, key=lambda leaf: (leaf.node.mtime, leaf.doc["_rev"]))  # rule 4
    return keeper, keeper, theirs if keeper is mine else mine


def _newer_key(volume: Volume | None, mine: Leaf, theirs: Leaf) -> Leaf:
    """Rule 2's keeper: of two key epochs, the newer key.  Only between two states of hers: the epoch
    is what the signer seals, and a member cannot re-key (only her devices do: a move, an unshare).
    A member's state is never taken for its key or epoch (attack rounds 43c (8), 45c (4), (5)):

    - beside a state of hers, hers is kept whenever the two differ in key or epoch, his names and
      metadata merged (``_apart``).  Kept by his epoch, her unshare was undone (43c (8)); kept by
      ctime when he sealed her very epoch under the old key, it was undone all the same (45c (5)):
      the key is compared, not the claim.
    - between two states of members, the one this device holds (``mine``, the current revision,
      taken in as it arrived) keeps its key, the other's names and metadata merged.  Kept by his
      claimed epoch, her device committed his old key as her state, signed by her, and that beat
      her re-key as "two states of hers" (45c (4)).

    A member's state under a key her proof proves hers at its epoch, above the one held here, is of her
    key (``_proven_hers``): her other device's re-key, which he took in before this device did.

    One key at one epoch on both sides is no question of keys: the side changed last, as before."""
    if volume is None or _one_key(mine, theirs):
        return max(mine, theirs, key=lambda leaf: (leaf.node.epoch, leaf.node.ctime, leaf.doc["_rev"]))
    hers = [leaf for leaf in (mine, theirs) if _hers(volume, leaf) or _proven_hers(volume, leaf)]
    if len(hers) == 2:
        return max(mine, theirs, key=lambda leaf: (leaf.node.epoch, leaf.node.ctime, leaf.doc["_rev"]))
    kept = hers[0] if hers else mine
    his = theirs if kept is mine else mine
    if _claims_key(his, kept) and volume.authorship is not None:
        # His claim, or her other device's re-key he took in (not told apart here): said.
        volume.authorship.deny(his.doc, f"a state signed by {said_signer(his.doc)} claims key epoch "
                               f"{his.node.epoch} under a key not the kept one's (epoch {kept.node.epoch}): "
                               "the kept key stands, his names and metadata merged")
    return kept


def _proven_hers(volume: Volume, leaf: Leaf) -> bool:
    """Whether a member's state carries a key her proof proves her device gave the file at the state's
    epoch (vault/model/her_keys.py ``proven``), above the epoch of the key held here: her other device's
    re-key (an unshare there), made over by a member who took it in before this device did.  Taken for
    his claim beside a state of hers made apart, her key here was kept, her re-key's dropped and said (a
    false alarm, attack round 43c (8), settled).  Not at the held epoch, nor below: one epoch has one
    key of hers for what one device sees (``her_keys.key_not_hers``), and another there, even proven, is
    her other device's re-key for other recipients at once, which one she removed may hold."""
    proof = leaf.node.key_proof
    if proof is None or _hers(volume, leaf):
        return False  # no proof, nothing proven (and a state of hers is hers already)
    held = volume.find(leaf.doc["_id"])
    return (held is not None and leaf.node.epoch > held.epoch
            and proven(volume.tree, held, leaf.node.epoch, leaf.node.dek, proof))


def _one_key(first: Leaf, second: Leaf) -> bool:
    """Both states carry one key at one epoch."""
    return first.node.dek == second.node.dek and first.node.epoch == second.node.epoch


def _claims_key(his: Leaf, kept: Leaf) -> bool:
    """Whether a member's state, beside the state kept for its key, claims a key above it: an epoch
    above the kept one's, or the kept one's epoch under another key (one key has one epoch).  A lower
    epoch is the ordinary case (his change made over the state before her re-key): not said."""
    above = his.node.epoch > kept.node.epoch
    return above or (his.node.epoch == kept.node.epoch and his.node.dek != kept.node.dek)


def _apart(volume: Volume, mine: Leaf, theirs: Leaf, keeper: Leaf, named: Leaf,
           loser: Leaf | None) -> tuple[Leaf, Metadata | None]:
    """Rules 2 and 3 between two states of hers: what she set as metadata taken field by field from the
    state that changed it, the later change if both did (vault/services/metadata_merge.py).  Kept whole,
    the state with the contents undid her chmod or xattr on her other device, and rule 2 lost a rename
    or a chmod made apart (attack round 41b (4)).  Also beside a member's state rule 2 kept hers for
    her key (``_her_key_beside_his``: his names and metadata by their stamps, attack round 43c (6)).
    (The names chosen, the merged rest or None.)"""
    if loser is not None or _made_twice(mine, theirs) or _deletes(mine) or _deletes(theirs):
        return named, None  # rules 1, 4, 5: as it was decided
    other = theirs if keeper is mine else mine
    proven_beside_hers = _proven_beside_hers(volume, keeper, other)
    if (not (_hers(volume, mine) and _hers(volume, theirs)) and not _her_key_beside_his(volume, keeper, other)
            and not proven_beside_hers):
        return named, None  # a member's state: as it was decided
    if not _rekeyed_by_a_move(keeper, other, _stamped(volume)):
        # The names from the state that changed them last (a tie: as decided).  Not over a re-keyed
        # move into another folder: that keeps its own (``_decide``, round 41b (2)).  Beside a re-key
        # in place (an unshare, a rotation: the folder kept) her later move on her other device is
        # taken, with the new key, re-keyed away from shares it leaves as any move taken in is
        # (``_adopt``): kept whole, the re-keyed state undid it unsaid (attack round 43c (5)).  A
        # member's later rename beside her re-key in place is his to make where he writes (judged as his by
        # ``_adopt``'s ``leaf_ok``), lost before (attack round 43c (6)); his names stand on a tie too:
        # her re-key in place changed none, and a client that renames without a stamp is not hers.
        if _her_key_beside_his(volume, keeper, other):
            named = _changed_last(other, keeper, "links")
        else:
            named = _changed_last(named, other if named is keeper else keeper, "links")
    meta = merged(keeper.node, other.node, named.node)
    if _her_key_beside_his(volume, keeper, other):
        meta = _xattrs_within_the_cap(volume, keeper, other, meta)
    elif proven_beside_hers:
        meta = _xattrs_within_the_cap(volume, other, keeper, meta, his_kept=True)
    return named, meta


def _xattrs_within_the_cap(volume: Volume, keeper: Leaf, his: Leaf, meta: Metadata,
                           his_kept: bool = False) -> Metadata:
    """The merged metadata, but a member's extended attributes past a file's cap (``past_the_xattr_cap``:
    over it, and holding more than the kept state's) not taken: the kept state's stand, with their own
    stamp, and the refusal is said; the rest of his metadata and his names merged as before.  Merged,
    his 8 MB of values went into her state at her settling commit, signed by her (so taken whole by her
    other devices), and were sealed again on the loop at each of her later commits of the file, every
    seat waiting, her own setxattr ENOSPC: 51a (2)'s stall by a branch beside her re-key, which no
    arrival judges for size (attack round 52c (1)).  ``keeper``: the state whose values stand instead
    (hers); ``his_kept``: his state was kept for her proven key beside hers (``_proven_beside_hers``),
    merged as the keeper (``merged``: his values on a tie of stamps)."""
    first, second = (his, keeper) if his_kept else (keeper, his)
    if changed_last(first.node, second.node, "xattrs") is not his.node:
        return meta  # hers stand: nothing of his taken
    if not past_the_xattr_cap(volume.tree, said_signer(his.doc), keeper.node, his.node):
        return meta
    if volume.authorship is not None:
        outcome = "the file keeps its own, the rest of the change merged"
        volume.authorship.deny(his.doc, past_the_xattr_cap_said(said_signer(his.doc), his.node, outcome))
    stamps = {**(meta.changed or {}), "xattrs": stamp(keeper.node, "xattrs")}
    return replace(meta, xattrs=keeper.node.xattrs, changed={f: n for f, n in stamps.items() if n} or None)


def _rekeyed_by_a_move(rekeyed: Leaf, other: Leaf, stamped: bool = False) -> bool:
    """Whether ``rekeyed``, of the higher key epoch and in other folders than ``other``, was put there
    by a move made apart from ``other`` (her move out of a share: its names stand over a later rename
    beside it, round 41b (2)), rather than re-keyed in place (an unshare, a rotation: the folder kept)
    beside a move ``other`` made (whose names then stand, round 43c (5)).  Their change stamps alone
    do not tell the two apart (the later names are the other side's in both); where each was put
    does: a move into other folders signs a placement stamp at its commit (``Node.placed``,
    vault/model/placement.py), and a stamp of a commit ``other`` was made over (or that ``other``
    carries itself) is the place both had before, so ``rekeyed`` did not move.  A commit that keeps
    the file where it was signs no stamp (``inodes._places_it``), so a re-key in place carries the
    stamp it had (attack round 46d (2)).  No stamp, where her devices sign them (``stamped``: a vault
    with key pairs): she never put the file anywhere (a member created it where it is), so the
    re-keyed side did not move.  No stamp in a vault with no key pairs: a state whose names never
    changed (no ``links`` stamp) did not move; any other is taken for a move, as before (its names
    kept: the new key never goes back into the share)."""
    if not (rekeyed.node.epoch > other.node.epoch and _folders(rekeyed) != _folders(other)):
        return False
    placed = rekeyed.node.placed
    if placed is None and stamped:
        return False
    if placed is None:
        return bool(rekeyed.node.changed and "links" in rekeyed.node.changed)
    if other.node.placed == placed:
        # The same signed stamp: ``other`` was made over that placement, when it sits there.  A state
        # of hers sitting elsewhere got there by no move of hers (each signs a stamp): a member's move
        # it carries, or a move back an older client signed no stamp for.  Beside it, the re-keyed
        # side where the stamp puts it may be her move out of a share back there: it keeps its place
        # (the new key never goes back into the share; attack round 46d (1)).
        return (_her_seq(other) and set(placed.get("parents") or ()) == _folders(rekeyed) != _folders(other))
    device, n = placed["seq"]
    return n > _made_over(other, device)


def _stamped(volume: Volume | None) -> bool:
    """Whether her devices sign placement stamps here: a vault with key pairs (``authorship``)."""
    return volume is not None and volume.authorship is not None


def _her_seq(leaf: Leaf) -> bool:
    """Whether a state's seq is her word (``writer_seq``: a member's is kept apart, ``device/signer``)."""
    seq = writer_seq(leaf.node.seq, leaf.doc, leaf.node.owner)
    return seq is not None and "/" not in seq[0]


def _within_readers(volume: Volume, keeper: Leaf, named: Leaf) -> Leaf:
    """The leaf whose names the kept state gets: ``named``, unless it is of another key than the
    keeper's and its names would put the file under a share the keeper's names do not (any grantee or
    recipient, above any of its names, given more rights than there: ``sharing.gives_as_much``, attack
    round 47d (2)), or in a folder not held here (who reads there is not known, 47d (3)): then the
    keeper's own, said.  A net under the stamps
    (``_rekeyed_by_a_move``): a re-key is how a file leaves a share, and names of a state apart from it
    that widen who reads undo that move, the new key then sealed to who lost it (attack round 46d
    (1): her move out back to the folder her stamp names, beside her later rename in the share).  Her
    data stays whole, only that rename or move is not taken: she makes it again if she wants it."""
    if named is keeper or named.links == keeper.links or _one_key(keeper, named):
        return named
    held = volume.find(keeper.doc["_id"])
    node = held if held is not None else keeper.node
    had = volume.tree.readers_under(node, keeper.links) or []
    under = volume.tree.readers_under(node, named.links, keeper.links)
    # A folder not held here, or kept behind (49b (4)): who reads there is not known, never "nobody".
    if under is None:
        where = "in a folder not held here or not yet up to date (who reads there is not known)"
    else:
        wider = {f"group:{g.grantee}" if g.group else g.grantee
                 for g in under if not any(sharing.gives_as_much(h, g) for h in had)}
        if not wider:
            return named
        who = ", ".join(sorted(wider)[:8]) + (" ..." if len(wider) > 8 else "")
        where = f"under shares its new key was kept from ({who})"
    why = (f"a rename or move of {keeper.doc['_id']} made apart from its re-key (revision "
           f"{str(named.doc['_rev'])[:40]}) would put it {where}: "
           "it stays where the re-key put it, its contents whole; move it again to take it there")
    log.warning("concurrent edits: %s", why)
    alarms = names.alarms_of(volume)
    if alarms is not None:
        alarms.warn("concurrent-move", keeper.doc["_id"], why)
    return keeper


def _made_over(leaf: Leaf, device: str) -> int:
    """The newest commit of her ``device`` a state of hers was made over (-1: none known): its own
    device's counter orders that device's states, its signed ``over`` names the others'.  Only her
    word counts: a member's seq is kept apart (``writer_seq``) and his ``over`` is dropped when his
    document is opened (nodes.py ``node_from_doc``), so no number he seals makes her move out look
    made before his state."""
    seq = writer_seq(leaf.node.seq, leaf.doc, leaf.node.owner)
    if seq is not None and seq[0] == device:
        return seq[1]
    return (leaf.node.over or {}).get(device, -1)


def _her_key_beside_his(volume: Volume, keeper: Leaf, other: Leaf) -> bool:
    """Rule 2 kept a state for its key beside a member's state of another key or epoch (``_newer_key``:
    hers, or of two states of members the one held here): the kept key and contents stand, his names
    and metadata merged by their stamps."""
    return keeper.node.head == other.node.head and not _one_key(keeper, other) and not _hers(volume, other)


def _proven_beside_hers(volume: Volume, keeper: Leaf, other: Leaf) -> bool:
    """Rule 2 kept a member's state for a key her proof proves hers (``_proven_hers``) beside a state of
    hers: her re-key's key and his contents stand, her names and metadata merged by their stamps, as
    between two states of hers (her change made apart is hers to keep), his values within the cap."""
    return (keeper.node.head == other.node.head and not _one_key(keeper, other) and _hers(volume, other)
            and _proven_hers(volume, keeper))


def _changed_last(first: Leaf, second: Leaf, field: str) -> Leaf:
    return second if changed_last(first.node, second.node, field) is second.node else first


def _hers(volume: Volume, leaf: Leaf) -> bool:
    """Whether a state is hers, signed by her (one of her devices); in a vault with no key pairs
    (``authorship`` None) every state is."""
    if volume.authorship is None:
        return True
    try:
        return signer_of(leaf.doc) == volume.key.user_id == leaf.doc.get("owner")
    except Forged:
        return False


def _folders(leaf: Leaf) -> set[str]:
    return {parent for parent, _ in leaf.links}


def _deletes(leaf: Leaf) -> bool:
    """Whether a branch takes the file out of every folder: a deletion (rule 1:
    the edit beside it is kept), never names to keep under rule 3.  A branch with
    no names but ``delete`` false (none of fusevault's commits: a writer's made
    up) taken as names would delete her file past the trash (attack round 22b (7)).  The
    root has no names on either side: equal, so never rule 1 by this."""
    return bool(leaf.doc.get("delete")) or not leaf.links


def _made_twice(mine: Leaf, theirs: Leaf) -> bool:
    """Both histories go back to their creation and share no revision.

    A history cut at REVS_LIMIT (a peer away for more edits than that) also
    shares nothing: that is an ordinary conflict, settled by contents."""
    whole = all(leaf.history[-1].startswith("1-") for leaf in (mine, theirs))
    return whole and not set(mine.history) & set(theirs.history)


def _descends(store: LocalStore, leaf: Leaf, ancestor: str | None, key: MasterKey) -> bool:
    """Whether ``ancestor`` (a version id) is in the history of the leaf's contents.  Each version is
    opened under the key it was sealed with (``history.made_over``): read with the newest key, one
    from before a re-key failed, and a concurrent edit met by her move out of a share was never
    settled (attack round 39c (2)).  One that does not open ends that line of the walk: not proven an
    ancestor, both edits are kept."""
    if ancestor is None:
        return True
    return made_over(store, key, leaf.doc["_id"], leaf.node.dek, leaf.node.head, ancestor) is not None


async def _conflict_copy(volume: Volume, store: LocalStore, loser: Leaf, out: Absorbed,
                         ident: tuple[str, bytes] | None = None) -> None:
    """Make the conflict copy, shown only once it holds all of the loser's bytes.

    Until then no lookup or listing shows it (``Tree.unshown``): with the
    writeback cache the kernel keeps the size it first took of a file it
    knows, and a program that looked at the folder while the copy was still
    empty read it empty for good (tests/services/test_sync.py, the copy looked
    at while it is made).  Its document is committed with its first version
    (``defer``), so no replica ever holds it empty: a peer takes it whole, and
    a ``kill -9`` before that leaves no copy, so the next mount settles the
    conflict again, rather than finding an empty copy "made already".
    ``ident``: the copy's id and DEK, if not the losing revision's (``copy_ident``)."""
    free = _copy_ident(volume, store, loser, ident or copy_ident(loser.doc["_id"], loser.doc["_rev"],
                                                                 loser.node.dek))
    if free is None:
        return  # made already, here or by another device
    fid, dek = free
    node = loser.node
    # Opened first, in a worker thread: its manifest is read and checked (in a
    # vault kept in CouchDB, with its version document from the server).  From
    # here on nothing waits until the copy exists, so its name stays free.
    reader = await volume.in_thread(functools.partial(Content, volume.layout, node.owner, node.fid, node.dek,
                                                      node.manifest, node.head, check_sidecar=False,
                                                      epoch=node.epoch))
    if _copy_there(volume, fid, dek, loser, store.get(fid)):
        reader.close()
        return  # made meanwhile (a document that is not the copy there now: ours is committed over it, below)
    if volume.holds(fid):  # another's node arrived there meanwhile: not the copy, said, the next id
        if (free := _copy_ident(volume, store, loser, ident or copy_ident(
                loser.doc["_id"], loser.doc["_rev"], loser.node.dek))) is None:
            reader.close()
            return
        fid, dek = free
    parent_fid, name = loser.links[0] if loser.links else (None, b"file")
    parent = volume.find(parent_fid)
    if not _home(volume, parent):
        parent = volume.root
    device = label_of(_device_of(store, loser))
    if not names.valid(name):
        names.refuse(volume, loser.doc["_id"], f"a concurrent edit of {loser.doc['_id']} had a name that "
                     "is not a file name: its conflict copy is named 'file'")
        name = b"file"
    copy = next(c for c in copy_names(name, device, loser.node.mtime) if c not in parent.children)
    volume.tree.unshown.add(fid)
    try:
        try:
            fh, made = await volume.create(parent.ino, copy, stat.S_IMODE(node.mode),
                                           Caller(node.uid, node.gid), ident=(fid, dek), defer=True)
        except BaseException:
            reader.close()
            raise
        volume.forget(made.ino, 1)  # made here, not looked up by the kernel
        try:
            await copy_into(volume, fh, reader, node.size)
        except BaseException:
            # Not all of its bytes (unreadable, or the mount stopping): no
            # copy rather than a short one, which would count as made already.
            # The conflict stays open: the next arrival or mount settles it again.
            volume.abandon(fh)
            raise
        if made.rev is None and (stored := store.get(fid)) is not None:
            # The other device's copy of it came meanwhile, its version still
            # on its way (the tree waits for that): the same bytes, and ours
            # is committed as its next revision, not beside it.
            volume.tree.stand_on(made, stored["_rev"])
        await volume.release(fh)
    finally:
        volume.tree.unshown.discard(fid)
    out.entries.append((parent.ino, copy))  # the kernel asks again: nothing it holds says "no such file"


def _home(volume: Volume, parent: Node | None) -> bool:
    """Whether ``parent`` (what a losing branch names as its file's folder) may hold the conflict copy:
    a real folder of her tree, reachable by a name, that she may make a file in.  Else the copy goes to
    her root.  Gone, or not a folder: a branch may name a file of hers as its parent, whose children
    are None (a TypeError out of the settling, the batch left unsettled: attack round 67a (1)); a
    folder she removed that the kernel still holds (no links: kept in the tree until forgotten), where
    the copy was reachable from no name of hers (69c (3)); a view folder (``shared/<owner>``,
    ``groups/<group>``: any string is a link's parent) or a folder she may only read, where the create
    was refused (PermissionDenied) and the conflict stayed open, "could not settle" at every arrival
    (70c (2))."""
    if parent is None or parent.children is None:
        return False
    if parent is volume.root:
        return True
    return bool(parent.links) and volume.may_write(parent)  # a view folder is only listed (``perm``: LIST)


def _copy_ident(volume: Volume, store: LocalStore, loser: Leaf, ident: tuple[str, bytes],
                ) -> tuple[str, bytes] | None:
    """The id and DEK to make ``loser``'s conflict copy under: ``ident`` (derived), or, a document
    there that is not this copy (``_made_copy``), said, the next of ``COPY_IDENTS`` derived from it
    (the same on her every device), then a random one.  None: the copy is made already.  Any document
    at the derived id was "made already": the id is a hash of clear values (the file's id, the
    revision or version head), a server planted one there and his edit was closed uncopied, lost
    unsaid (attack round 43c (7)); so was any node held there (a member's file: 45c (3),
    ``_copy_there``)."""
    first, dek = ident
    fid = first
    for number in range(1, COPY_IDENTS + 1):
        doc = store.get(fid)
        if _copy_there(volume, fid, dek, loser, doc):
            return None
        if doc is None and not volume.holds(fid) and (
                volume.ledger is None or volume.ledger.owner_seen(fid) in (None, volume.key.user_id)):
            return fid, dek  # not another owner's file seen here once (collected since): 58b (1)
        _say_copy_id_taken(volume, loser, fid)
        fid, dek = copy_ident(loser.doc["_id"], f"taken\0{first}\0{number}", loser.node.dek)
    return copy_ident(loser.doc["_id"], f"random\0{secrets.token_hex(16)}", loser.node.dek)


def _copy_there(volume: Volume, fid: str, dek: bytes, loser: Leaf, doc: dict | None) -> bool:
    """Whether ``loser``'s copy is made already at ``fid``: its stored document ``doc`` is the copy
    (``_made_copy``), or, none stored, the node held there is one this device is making under the
    copy's key (its document committed with its first version: ``_conflict_copy``'s ``defer``).  A
    node merely held there was the copy made: a WRITE member can give a file of his that id (a hash
    of clear values his replica holds), and her losing edit was closed uncopied, unsaid (attack
    round 45c (3))."""
    if doc is not None:
        return _made_copy(volume, doc, dek, loser)
    held = volume.find(fid) if volume.holds(fid) else None
    return held is not None and held.dek == dek


def _made_copy(volume: Volume, doc: dict | None, dek: bytes, loser: Leaf) -> bool:
    """Whether ``doc``, stored at a conflict copy's id, is that copy: a node document that opens under
    the copy's DEK (derived from the loser's key: no server holds it) signed by this user, the file's
    owner or the loser's signer (one who holds that key: not a reader of the file, nor a server)."""
    if doc is None or doc.get("type") != NODE:
        return False
    gate = volume.authorship
    if gate is None:
        return True  # no signatures to judge by (a vault without key pairs): as any document there
    owner = doc.get("owner")
    try:
        signer = gate.trust.verify(doc, author=owner if isinstance(owner, str) else None)
        open_node_attrs(doc, dek)
    except VaultError:
        return False
    return signer in (volume.key.user_id, loser.node.owner, said_signer(loser.doc))


def _say_copy_id_taken(volume: Volume, loser: Leaf, fid: str) -> None:
    alarms = names.alarms_of(volume)
    if alarms is not None:
        alarms.warn("forged", fid, f"a document at the id of the conflict copy of {loser.doc['_id']}'s "
                    f"revision {str(loser.doc['_rev'])[:40]} is not that copy: the copy is made under "
                    "another id")


async def _same_bytes(volume: Volume, keeper: Leaf, loser: Leaf) -> bool:
    """Whether two edits of rule 4 hold the same bytes: each side wrote them again as a version of its
    own, under its own key (the file restored from the trash on both devices apart, each restore
    giving it a new key: attack round 40b (3)).  Rule 2, equal contents, then holds; a copy would
    only say the same twice.  Compared for files up to ``SAME_LIMIT``; a larger one is copied, as any
    rule 4 edit (reading it twice costs more than a copy the user can delete); one that does not read
    is copied too."""
    size = keeper.node.size
    if size != loser.node.size or size > SAME_LIMIT or not keeper.node.head or not loser.node.head:
        return False
    readers: list[Content] = []
    try:
        for leaf in (keeper, loser):
            node = leaf.node
            readers.append(await volume.in_thread(functools.partial(
                Content, volume.layout, node.owner, node.fid, node.dek, node.manifest, node.head,
                check_sidecar=False, epoch=node.epoch)))
        for offset in range(0, size, COPY_CHUNK):
            length = min(COPY_CHUNK, size - offset)
            one, two = [await volume.in_thread(r.read, offset, length, size) for r in readers]
            if one != two:
                return False
        return True
    except VaultError:
        return False
    finally:
        for reader in readers:
            reader.close()


def _device_of(store: LocalStore, leaf: Leaf) -> object:
    """What the loser's head version says of the device that wrote it (``label_of`` judges it), or None
    where that version does not open: its copy is still made ("another device"), else the loser was
    never copied, "could not settle" at each arrival (attack round 69c (1))."""
    try:
        doc = store.get(leaf.node.head) if leaf.node.head else None
        return version_plain(doc, leaf.node.dek).get("device") if doc else None
    except VaultError:
        return None


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
    sealed_again = not _hers(volume, keeper) and node in out.rekey
    volume.tree.stand_on(node, current["_rev"])  # the state held the settled one: its signer carried
    if held_key is not None and not _hers(volume, keeper):
        _no_claimed_epoch(volume, node, keeper, *held_key)
    if links != keeper.links:
        relink(volume.tree, node, links, out)
    if meta is not None:  # her metadata changes of both states (``_apart``), with their stamps
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
