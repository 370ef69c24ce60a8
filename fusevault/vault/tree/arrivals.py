"""Another writer's node documents, judged and opened for this tree, and nodes leaving it.

The pieces of taking in others' changes that only touch the tree: whether a
document may be taken (its signature: vault/tree/authorship.py), opening it
as a node, moving a node's names to those of a newer document, and taking a
node out.  The order of it all is vault/services/absorbing.py's job; the
unlock uses ``leave`` too (vault/tree/loading.py).
"""

from __future__ import annotations

import logging
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fusevault.crypto.signing import signature_of
from fusevault.errors import CorruptData
from fusevault.store.replica import branch_history, history_from, in_conflict, local_of
from fusevault.store.unreadable import Unreadable
from fusevault.vault.model import alarms, names, sealed_for
from fusevault.vault.model.ledger import writer_seq
from fusevault.vault.model.nodes import (
    Node,
    doc_dek,
    node_from_doc,
    open_node_attrs,
    xattr_bytes,
)
from fusevault.vault.tree.attributes import XATTR_BYTES_MAX, XATTR_COUNT_MAX, holds_no_more, over_cap
from fusevault.vault.tree.authorship import said_signer
from fusevault.vault.tree.guests import open_guest
from fusevault.vault.tree.inodes import stand_on

if TYPE_CHECKING:
    from fusevault.vault.tree.namespace import Tree

log = logging.getLogger(__name__)

# Taken from a newer document; a node's contents and key only when the reader
# has no unsaved changes of their own (those are sealed under the key they
# were opened with, and committed with it).
ATTRS = ("mode", "uid", "gid", "rdev", "atime", "ctime", "btime", "xattrs", "target", "trashed",
         "previous", "rev", "placed", "seq", "over", "changed")  # seq, over: what her next commit is made
# over; changed: the stamps her next change of a field goes above (vault/services/metadata_merge.py)
# Revisions a refused one may pass over that are fetched to be taken in under it (a peer's edits made
# while this device was away: a file saved more often than this is recovered from its history).
BENEATH_LIMIT = 16
CONTENTS = ("size", "stored_size", "allocated", "mtime", "head", "manifest", "dek", "epoch", "wrapped",
            "key_proof", "sealed_for")


@dataclass
class Absorbed:
    """What the kernel may hold that the change made stale."""

    entries: list[tuple[int, bytes]] = field(default_factory=list)
    inodes: list[int] = field(default_factory=list)
    # The owner's nodes another user committed under an older key than the
    # owner's newest (they were writing during a revoke): to be rotated again.
    rekey: list[Node] = field(default_factory=list)
    # Guest files whose share ended while they held this user's unsaved
    # writes: to be saved now (``save_leaving``), then they leave.
    save: list[Node] = field(default_factory=list)
    # Nodes whose new version could not be taken in while this user was
    # committing (or sealing) theirs: taken in once that is done (``settle_busy``).
    busy: list[Node] = field(default_factory=list)
    # Files whose size or times another device changed, with the size they
    # had: the kernel's writeback cache keeps its own size and times, so it
    # is told the new size and made to forget the file (fs/arrivals.py).
    resized: list[tuple[Node, int]] = field(default_factory=list)
    # The user's own nodes whose arrived revision was refused as a replay (older
    # than this device saw), with that revision: the tree's newer state is
    # committed over it at once, so the store never keeps the replay as its
    # current row (attack round 18 (7): the next unlock would load it).
    recommit: list[tuple[Node, str]] = field(default_factory=list)
    # This batch's judgements of folders' removals (vault/tree/revival.py ``Judged``), made at the
    # first one: each stored state judged once per batch.  Nothing for the kernel.
    judged: Any = field(default=None, repr=False, compare=False)

    def __bool__(self) -> bool:
        return bool(self.entries or self.inodes or self.rekey or self.save or self.busy or self.resized
                    or self.recommit)

    def add(self, other: Absorbed) -> None:
        self.entries += other.entries
        self.inodes += other.inodes
        self.rekey += other.rekey
        self.save += other.save
        self.busy += other.busy
        self.resized += other.resized
        self.recommit += other.recommit


def judge(tree: Tree, doc: dict, node: Node | None) -> tuple[dict, str] | None | bool:
    """A node document's signature (vault/tree/authorship.py): (the document as
    signed, its signer); None when it is not this user's to judge; False
    when refused."""
    gate = tree.authorship
    givers = tree.sharing.givers() if tree.sharing is not None else set()
    if gate is None or (node is None and not gate.concerns(doc, givers)):
        return None
    return gate.admit(doc) or False


def owner_changed(tree: Tree, doc: dict, node: Node | None, said: bool = True) -> bool:
    """Whether ``doc`` names another owner than the node held at its id (a share root's parent held
    as a phantom: its owner is a guess), or, none held, than the owner this device first saw the
    file under (``Ledger.owner_seen``; the user's own: ``Ledger.mine``): said (``said``), as the load
    says it.  A node never changes owner (a new
    node's owner is its folder's).  Taken, another user's folder signed at the id of hers (every id is
    in the database he replicates) was a state of her folder: it went, with all it held, into his
    share on her device, under the key he chose, and her next commit sealed her state of it under
    that key (attack round 46b (3)); at the id of one dropped here, it was given what that one still
    held (round 46b (2))."""
    owner, me = doc.get("owner"), tree.key.user_id
    phantom = node is not None and tree.sharing is not None and node.ino in tree.sharing.phantoms
    if node is not None and not phantom:
        changed = owner != node.owner
        was = node.owner
    else:
        # None held: the owner this device first saw the file under (hers: ``Ledger.mine``), whoever
        # that was (58b (1): a member's own file once seen here, then another owner's he made there).
        was = tree.ledger.owner_seen(str(doc.get("_id"))) if tree.ledger is not None else None
        changed = was is not None and owner != was
    if changed and said:
        fid = str(doc.get("_id"))
        log.warning("%s: a document naming owner %.40s, held here as %.40s's: not taken in", fid, owner, was)
        alarms.for_user(me).warn(
            "owner-changed", fid, f"file {fid}, which this device holds as {was!s:.40}'s, now names another "
            f"owner ({owner!s:.40}) in the store: it is not taken in, and keeps what it had")
    return changed


def retyped(node: Node | None, fresh: Node) -> bool:
    """Whether ``fresh`` would change the type of ``node`` (a file into a folder, a
    folder into a symlink): no commit of fusevault's does (a name given to another
    node is a new node), and a node's children map is made with it."""
    return node is not None and stat.S_IFMT(node.mode) != stat.S_IFMT(fresh.mode)


def folder(tree: Tree, fid: object) -> Node | None:
    """The folder held here with this id; None for anything else (a link into a
    file is never followed)."""
    ino = tree.ino_of(fid) if isinstance(fid, str) else None
    parent = tree.get(ino) if ino is not None else None
    return parent if parent is not None and parent.is_dir and parent.children is not None else None


def into_a_file(tree: Tree, links: list[tuple[str, bytes]]) -> bool:
    """Whether ``links`` name, as a folder, a node held here that is not one."""
    return any(tree.holds(fid) and folder(tree, fid) is None for fid, _ in links)


def keep(tree: Tree, node: Node | None, doc: dict) -> None:
    """A refused document (said): the node keeps what it had, and its next
    commit goes over the refused revision.  A revision refused over others this
    tree never took in (a peer's history that passes them: the server stacked it
    on a writer's edit made while this device was away) would so erase them:
    they are noted in ``tree.beneath``, for the sync to fetch and take in under
    it (vault/services/absorbing.py ``absorb_beneath``; attack round 39a (5)).
    Stacked on a branch this tree never held (her other device's edit made beside
    this one's), those down to the one it shares with the branch held here, its
    parent at least: asked for only where the tree's revision lay in its history,
    her next commit (the settling's) went over her laptop's edit unfetched and
    unsaid (attack round 78a (1))."""
    if node is None:
        return
    _note_under(tree, node, doc, set())
    stand_on(tree, node, doc["_rev"])


def note_replayed(tree: Tree, node: Node, doc: dict, same: set[str]) -> None:
    """``doc`` holds the very state ``node`` holds (its ``seq``) under another revision, about to be
    taken (vault/services/absorbing.py ``absorb_node``): no honest commit repeats a ``seq`` (each is
    stamped anew), so one stacked over revisions this tree never took in (``same``: the revisions the
    state was held under here) is a copy the server made over them.  Those are noted beneath it, as
    ``keep`` notes them under a refused one, for the sync to fetch and take in under it (or say
    ``withheld``).  Taken as the same state and no more, her laptop's rename or trash (or a WRITE
    member's chmod) under the server's copy of her state was hidden, unsaid, and her next save undid
    it on every replica: no forgery needed (attack round 80a (4)).  Called before the node takes it."""
    _note_under(tree, node, doc, same)


def _note_under(tree: Tree, node: Node, doc: dict, same: set[str]) -> None:
    """The revisions under ``doc`` this tree never took in (``_unseen_under``, less ``same``) noted in
    ``tree.beneath`` for the sync to fetch; the list cut at ``BENEATH_LIMIT`` noted in
    ``tree.beneath_deeper`` (none of it taken in: said as such, attack round 80a (1))."""
    unseen, beside = _unseen_under(doc, node.rev, _held_branch(tree, node))
    unseen = [rev for rev in unseen if rev not in same]
    if not unseen:
        return
    tree.beneath[node.fid] = (doc["_rev"], unseen)
    if beside:
        tree.beneath_beside.add(node.fid)
    else:
        tree.beneath_beside.discard(node.fid)
    if not beside and _deeper(doc, node.rev):
        tree.beneath_deeper.add(node.fid)
    else:
        tree.beneath_deeper.discard(node.fid)


def note_beneath(tree: Tree, node: Node, rev: str, history: list[str], took: set[str] | None = None) -> None:
    """At unlock: ``node``, rebuilt from her own material over the refused revision ``rev`` of the
    store (``history``: its own, newest first), stands on it, and what lies beneath it was never
    looked at here: the revisions under it, at most ``BENEATH_LIMIT`` (no record names the one this
    device last took), are noted in ``tree.beneath`` for the sync to fetch, the newest admissible
    taken in under it, as ``keep`` has it done while mounted.  Unnoted, the unlock showed the file as
    this device last saw it and her next save went over the refused revision and her laptop's rename
    or trash under it, or a WRITE member's chmod, undoing them on every replica (attack round 78a (3)).

    ``took``: the branches of the store's other live leaves (this device's state, where it was made
    beside the refused one: a conflict), as ``keep`` has ``_held_branch``.  The refused one's history
    then passes none of their ends: stacked beside them, those down to the first one it shares, so
    her other device's edit is settled against hers by the rules (conflicts.py).  Noted as a line
    under it, her laptop's edit was taken OVER her desktop's at unlock (attack round 80a (3))."""
    if len(history) < 2 or history[0] != rev:
        return
    under = history[1:BENEATH_LIMIT + 1]
    took = took or set()
    beside = bool(took)  # a live leaf is in no other branch's history: stacked beside it
    if beside:
        under = under[:next((at for at, each in enumerate(under) if each in took), len(under))]
    if not under:
        return
    tree.beneath[node.fid] = (rev, under)
    tree.beneath_deeper.discard(node.fid)  # how deep the held one lies is not known here
    if beside:
        tree.beneath_beside.add(node.fid)
    else:
        tree.beneath_beside.discard(node.fid)


def signed_state(tree: Tree, node: Node, signer: str | None) -> None:
    """``node`` holds its revision's state now, signed by ``signer`` (None: its owner): noted where
    another signed it (``tree.held_signers``), so ``stand_on`` carries it."""
    if signer is None or signer == node.owner:
        tree.held_signers.pop(node.fid, None)
    elif node.rev is not None:
        tree.held_signers[node.fid] = (node.rev, signer)


def _held_branch(tree: Tree, node: Node) -> set[str] | None:
    """The revisions of the store's branch ending at ``node``'s (what this tree took in, with its
    history); None where the store keeps no branches here (a server's) or holds none ending there."""
    local = local_of(tree.store) if node.rev else None
    if local is None or node.rev is None:
        return None
    history = branch_history(local, node.fid, node.rev)
    return None if history is None else set(history)


def _unseen_under(doc: dict, held: str | None, took: set[str] | None = None) -> tuple[list[str], bool]:
    """The revisions between ``doc`` and ``held`` (this tree's) in ``doc``'s history as its
    peer sent it, newest first, at most the ``BENEATH_LIMIT`` nearest ``doc``; none when it has no
    history.  Not passing ``held`` (stacked on another branch: True with them), those
    down to the first one of ``took`` (the branch ending at ``held``, with its history), at most
    ``BENEATH_LIMIT``: none when ``took`` is not known."""
    if not held or not isinstance(doc.get("_revisions"), dict):
        return [], False
    try:
        history = history_from(doc)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        return [], False  # malformed history: nothing fetched on its word
    if held in history:
        # The newest ``BENEATH_LIMIT`` only, never none: passing ``held`` deeper, the whole list was
        # dropped and nothing fetched nor said, so 17 saves on her laptop (or 16 ids the server wrote
        # into the history, which is its word) under a refused revision were gone over by her next save
        # (attack round 80a (1)).  The newest admissible one is what is taken (the deeper ones are older
        # states of the same edits); none of these sent or admissible is said (``withheld``).
        return history[1:min(history.index(held), BENEATH_LIMIT + 1)], False
    if took is None:
        return [], False
    under = history[1:BENEATH_LIMIT + 1]
    shared = next((at for at, rev in enumerate(under) if rev in took), len(under))
    return under[:shared], True


def _deeper(doc: dict, held: str | None) -> bool:
    """Whether ``doc``'s history passes ``held`` deeper than the ``BENEATH_LIMIT`` revisions fetched
    under it (``_unseen_under`` read it already: it reads)."""
    try:
        history = history_from(doc)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
        return False
    return held in history and history.index(held) > BENEATH_LIMIT + 1


def may_take(tree: Tree, doc: dict, signer: str, node: Node | None, opened: tuple[Node, list]) -> bool:
    """Whether the signer of ``doc`` may make the change it makes (the owner, or a WRITE grantee)."""
    gate, fresh = tree.authorship, opened[0]
    if makes_cycle(tree, node, opened[1]):  # whoever signed it: a peer's, the owner's, a grantee's
        if crossing(tree, doc, signer, node):
            return True  # her other device's move, crossing one of this device's: absorbing.py undoes it
        gate.deny(doc, f"signed by {signer}, it puts a folder inside itself")
        return False
    if past_the_xattr_cap(tree, signer, node, fresh):
        gate.deny(doc, past_the_xattr_cap_said(signer, fresh, "the file keeps what it had"))
        return False
    if signer == doc.get("owner"):
        return True
    mine = node is not None and node.owner == tree.key.user_id
    phantoms = tree.sharing.phantoms if tree.sharing is not None else ()
    if mine and any((into := folder(tree, parent)) is None or into.ino in phantoms
                    for parent, _ in opened[1]):
        # Her file, moved by a writer into a folder not held here (in her trash, his own tree, an id
        # of nothing): no WRITE there can be judged, and taken, the file would be in no folder, nor in
        # her trash, for the rest of the mount, and out of reach of her unshare of him (attack round
        # 28c (3)).  Refused; if the folder is his, made since and still on its way, her next unlock
        # judges the move with it.  A phantom is such a folder: whose it is, is not known here, so no
        # WRITE in it is judged, and taken, her file was shown nowhere until it came (round 70a (1)).
        gate.deny(doc, f"signed by {signer}, it moves the file into a folder not held here")
        return False
    if tree.vouched.get(doc["_id"]) == (signer, fresh.head, signature_of(doc)):
        return gate.owner_dek_ok(doc, signer, fresh.dek, node)  # the very document a seat here vouched for
    if not gate.may_write(tree, signer, doc["owner"], doc["_id"], opened[1], node, stamp=fresh.placed):
        if not _copied_when_settled(tree, doc, signer, opened):
            gate.deny(doc, f"signed by {signer}, who holds no WRITE on it")
        return False
    return gate.owner_dek_ok(doc, signer, fresh.dek, node)


def past_the_xattr_cap_said(signer: str | None, fresh: Node, outcome: str) -> str:
    """The alarm's words for a state refused by ``past_the_xattr_cap``, and what became of it."""
    held, count = xattr_bytes(fresh.xattrs), len(fresh.xattrs)
    return (f"signed by {signer}, its extended attributes hold {held} bytes in {count} names, past a "
            f"file's cap ({XATTR_BYTES_MAX // 1024} KiB, {XATTR_COUNT_MAX} names): {outcome}")


def past_the_xattr_cap(tree: Tree, signer: str | None, node: Node | None, fresh: Node) -> bool:
    """Whether ``fresh``, a state a member of the file signed (not its owner), holds more extended
    attributes than a node may (vault/tree/attributes.py ``over_cap``) and more than the node held here
    does.  Taken, a WRITE member's 8 MB of values was sealed again on the loop under the metadata lock
    at each of her later commits of the file, every seat's requests waiting (attack round 51a (2): the
    cap was checked only at a local setxattr).  A state the file's owner signed is taken whole, on her
    devices and on every member's: its size is hers (her other device's, on a version from before the
    cap), and a member's device that refused it (a false forged-write alarm about her) committed its
    older state at his next edit, her values dropped on every device (attack round 52c (3)).  His later
    states are bounded against it (``holds_no_more``).  A node held over the cap already (from before
    it) takes a state that makes it hold no more, as a local set does (``_check_room``)."""
    if signer in (tree.key.user_id, fresh.owner) or not over_cap(fresh.xattrs):
        return False
    return node is None or not holds_no_more(fresh.xattrs, node.xattrs)


def _copied_when_settled(tree: Tree, doc: dict, signer: str, opened: tuple[Node, list]) -> bool:
    """Whether a writer's document refused as her file's state is his edit beside hers, made over the
    state before her move out of his share (authorship.py ``writers_copy``), with her branch beside it
    in the store: CouchDB's rule made his current (more saves than hers), and the settling copies it
    where he wrote it (services/conflicts.py).  Not taken, and no forgery: said, it blamed an honest
    member (attack round 41b (5))."""
    local = local_of(tree.store)
    return (local is not None and in_conflict(local, doc["_id"])
            and tree.authorship.writers_copy(tree, doc, signer, opened))


def open_doc(tree: Tree, doc: dict) -> tuple[Node, list] | None:
    """The document as a node, if this user can open it."""
    if doc.get("owner") == tree.key.user_id:
        return _open_mine(tree, doc)
    sharing = tree.sharing
    if sharing is None or doc.get("owner") not in sharing.givers():
        return None
    paths = sharing.my_key_paths(tree.layout, doc["owner"], doc["_id"])
    return open_guest(doc, tree.key, paths, tree.trust, tree.store, tree.find(doc["_id"]),
                      tree.ledger)


def wrapped_by_her(tree: Tree, doc: dict) -> bool:
    """Whether ``doc``'s wrapping of its file's key opens under this user's master key (``_open_mine``)."""
    try:
        doc_dek(doc, tree.key)
    except CorruptData:
        return False
    return True


def _open_mine(tree: Tree, doc: dict) -> tuple[Node, list]:
    """Her node's document opened.  A member's state whose wrapping of the key does not open under her
    master key (none of hers: a member's device cannot check one), at the key epoch of the node held
    here, is opened under the key held (her own: her next commit wraps it afresh) and taken as any
    state of his is; the wrapping is said, naming the signer.  Refused, an older member's device that
    carried another member's bad wrapping had each of its honest edits refused as a forgery (attack
    round 53c (2)).  One of hers (of another key, too: a claim, judged as such) opens the state."""
    try:
        dek = doc_dek(doc, tree.key)
    except CorruptData:
        held = tree.find(doc["_id"])
        signer = said_signer(doc)
        if (signer in (None, tree.key.user_id) or held is None or not held.dek
                or held.owner != tree.key.user_id or doc.get("epoch", 0) != held.epoch):
            raise CorruptData(f"node document {doc['_id']} fails authentication") from None
        opened = node_from_doc(doc, held.dek, open_node_attrs(doc, held.dek))
        if tree.trust is not None:
            fid = doc["_id"]
            tree.trust.alarms.warn("forged-key", fid, f"file {fid}: a state signed by {signer!s:.40} carries "
                                   "a wrapping of its key that is not its owner's: taken under the key held "
                                   "here; her own wrapping is kept")
        return opened
    return node_from_doc(doc, dek, open_node_attrs(doc, dek))


def reopen(tree: Tree, node: Node) -> bool:
    """Give the node the contents and key of its newest state (another
    writer's version came in while this tree's user was sealing the file
    again under a new key: that version is the one to seal).  A stored
    document refused here (a forgery, a writer without WRITE, a replay) is no
    newer state: the node takes the last state judged while it was busy
    (``Guests.held``), else keeps what it holds, and its next commit goes over
    that revision (``keep``).  False when the document is gone or deleted.
    Open contents are the caller's to switch (vault/files/)."""
    held = tree.sharing.held.pop(node.fid, None) if tree.sharing is not None else None
    try:
        doc = tree.store.get(node.fid)
    except Unreadable as err:  # a row that is no document (a store writer's): refused as well
        stand_on(tree, node, err.rev)
        return _take_held(node, held)
    if doc is None:
        return False
    judged = judge(tree, doc, node)
    if judged is False:
        keep(tree, node, doc)
        return _take_held(node, held)
    doc, signer = judged or (doc, None)
    if owner_changed(tree, doc, node):
        keep(tree, node, doc)
        return _take_held(node, held)
    if doc.get("delete"):
        return False
    try:
        opened = open_doc(tree, doc)
    except CorruptData:  # it opens, but does not hold (absorbing.py refuses it so)
        keep(tree, node, doc)
        return _take_held(node, held)
    if opened is None:
        return False
    if signer is not None and not may_take(tree, doc, signer, node, opened):
        keep(tree, node, doc)
        return _take_held(node, held)
    fresh, _ = opened
    if tree.ledger is not None and tree.ledger.older(node.fid, writer_seq(fresh.seq, doc, tree.key.user_id)):
        keep(tree, node, doc)  # a replay of an older state (absorbing.py's ledger said so when it came)
        return _take_held(node, held)
    record = sealed_for.taken(tree.key, node.owner, node.fid, fresh.epoch, fresh.dek, fresh.sealed_for,
                              node.sealed_for)
    if tree.sharing is not None:
        tree.sharing.keep_below(tree.key, node, fresh.epoch)  # before it takes it (attack round 76a (3))
    for name in CONTENTS:
        setattr(node, name, getattr(fresh, name))
    node.sealed_for = record  # hers only (attack round 73a (1))
    stand_on(tree, node, doc["_rev"])  # its contents only: the names held are still those of the state before
    return True


def _take_held(node: Node, held: dict | None) -> bool:
    if held is not None:
        for name, value in held.items():
            setattr(node, name, value)
    return True


def crossing(tree: Tree, doc: dict, signer: str | None, node: Node | None) -> bool:
    """Whether ``doc``, whose names would put ``node`` inside itself, is a move of her own folder she
    signed on another device: two devices of hers moved two folders into each other while apart
    (two documents, no conflict to settle).  No forgery: each device puts its own back over the
    other's (attack round 40b (8))."""
    me = tree.key.user_id
    return node is not None and signer == me and doc.get("owner") == me and node.owner == me


def makes_cycle(tree: Tree, node: Node | None, links: list[tuple[str, bytes]]) -> bool:
    """Whether the names ``links`` (parent fid, name) would put ``node``, a
    folder held here, inside itself (in one of its own subfolders, however
    deep, or in itself).  Each folder above is looked at once."""
    if node is None or not node.is_dir or tree.get(node.ino) is not node:
        return False  # a new node has nothing under it yet; a file nothing at all
    todo = [parent for fid, _ in links if isinstance(fid, str) and (parent := tree.find(fid)) is not None]
    seen: set[int] = set()
    while todo:
        each = todo.pop()
        if each is node:
            return True
        if each.ino not in seen:
            seen.add(each.ino)
            todo += [parent for ino, _ in each.links if (parent := tree.get(ino)) is not None]
    return False


def relink(tree: Tree, node: Node, links: list[tuple[str, bytes]], out: Absorbed,
           signer: str | None = None) -> bool:
    """Give ``node`` the names ``links`` (parent fid, name) gives it here, as signed by ``signer``
    (None: its owner).

    Never names that would put a folder inside itself (``may_take`` refuses
    such a document; callers that do not judge land here): it keeps the names
    it has.  Nor a name in a folder of another owner than the node's that the
    signer may not give (``Authorship.may_name``): left out, and said; all left out, it keeps the
    names it has.

    Whether it decided the node's names here (False: it kept its place); a name it decided, a made
    one too, is never undone by the caller (``phantoms.placed_as_a_guest``, attack round 77c (3))."""
    if makes_cycle(tree, node, links):
        log.warning("%s: its new names would put the folder inside itself: it keeps its place", node.fid)
        return False
    placed = [(parent, name) for p, name in links
              if (parent := folder(tree, p)) is not None and names.link_ok(tree, node.fid, name)]
    wanted = list(dict.fromkeys(  # a name repeated counts once
        (parent.ino, name) for parent, name in placed if named_by(tree, node, signer, parent, name)))
    if not wanted and placed and node.links:
        # Every name it was given here refused: a move refused keeps the node where it was (a writer's
        # move of her file into a folder of his took it out of her tree, attack round 70a (7)).
        return False
    # Sets, not the lists: a document of k names looked at k^2/2 on the loop (attack round 73d (5)).
    keep = set(wanted)
    gone = [link for link in node.links if link not in keep]
    out.entries += [link for link in gone if tree.get(link[0]) is not None]  # one left and gone: no entry
    tree.unlink_entries(node, gone)
    # Its names are decided again here: what it waited for beside another's goes (noted again below for
    # what it loses now), so its notes stay as few as the names its document gives it (74b (1)).
    tree.beside.drop(node.ino)
    held = set(node.links)
    clashing = []
    for parent_ino, name in wanted:
        if (parent_ino, name) in held:
            continue
        parent = tree.node(parent_ino)
        if parent.children is None:
            continue
        if parent.children.get(name, node.ino) != node.ino:
            clashing.append((parent, name))
            continue
        tree.link_entry(parent, name, node)
        held.add((parent_ino, name))
        out.entries.append((parent_ino, name))
        if out.judged is not None:
            out.judged.linked(tree, node)  # what the batch found above what is live may be stale
    # A name another node holds, once its free ones are taken, as the load does (``_link_beside``).
    shown_in = dict(held)  # folder inode -> a name it shows under there
    for parent, name in clashing:
        if parent.children is None:
            continue
        out.entries += clash(tree, parent, name, node, shown_in)
        if out.judged is not None:
            out.judged.linked(tree, node)
    # A phantom its names left holds nothing now: it goes (74b (3)); one it is named in again stays.
    for parent_ino in {parent_ino for parent_ino, _ in gone}:
        tree.drop_phantom_if_empty(parent_ino)
    return True


def clash(tree: Tree, parent: Node, name: bytes, node: Node,
          shown_in: dict[int, bytes]) -> list[tuple[int, bytes]]:
    """``node`` wants ``name`` in ``parent``, which another live node holds: shown beside it
    (``link_clashing``) only in a folder it shows in under no name of its own (``shown_in``: folder
    inode -> a name it shows under there, updated): one name of it repeated, or names cut alike, were
    each made ``NAME (also ID n)`` numbered on, looking at all made before (73d (5)).  Where it shows
    already, the name it lost is noted all the same, anchored at the name it shows under: the holder's
    name refused later, that name is added beside it (``give_back``), as her unlock shows it; unnoted,
    her hard link there was dropped on her next save (attack round 74b (1)).  The entries changed."""
    if (anchor := shown_in.get(parent.ino)) is not None:
        tree.beside.wait(parent.ino, name, node.ino, anchor)
        return []
    entries = link_clashing(tree, parent, name, node)
    if entries:
        shown_in[parent.ino] = name if parent.children.get(name) == node.ino else entries[-1][1]
    return entries


def named_by(tree: Tree, node: Node, signer: str | None, parent: Node, name: bytes) -> bool:
    """Whether a name of ``node`` in ``parent``, signed by ``signer`` (None: the node's owner), counts
    here (``Authorship.may_name``); if not, said."""
    gate = tree.authorship
    signer = node.owner if signer is None else signer
    if gate is None or gate.may_name(tree, signer, node.owner, parent):
        return True
    gate.name_refused(node, signer, parent, name)
    return False


def link_clashing(tree: Tree, parent: Node, name: bytes, node: Node) -> list[tuple[int, bytes]]:
    """Link ``node`` in ``parent``, where another live node holds ``name`` (two devices gave it while
    apart; no conflict of one document settles it): the one named last (``ctime``, then the higher
    file id) keeps the name and the other is shown beside it (``names.beside``), the same on every
    device, and said; in a folder of hers, her own node keeps it from another owner's (69b (3)).
    Hidden, one of the two was in no listing on either device, for good (attack
    round 40b (7)).  Not the lower id: a replayed state of a file she deleted, which a device with no
    memory of it cannot tell from a live one, then took the name of her new file half the time
    (tests/mount/test_trust_attack_round8.py); a replay is older than what she named since.  The
    entries changed."""
    holder = tree.get(parent.children[name]) if parent.children is not None else None
    if holder is None or parent.children is None:
        return []
    me = tree.key.user_id
    theirs = parent.owner == me and (node.owner == me) != (holder.owner == me)
    swapped = ranks(tree, parent, node) > ranks(tree, parent, holder)
    if swapped:
        tree.unlink_entry(parent, name, holder)
        tree.link_entry(parent, name, node)
        holder, node = node, holder
    shown = names.beside(name, node.fid, parent.children)
    names.say_beside(tree, node.fid, name, shown, node.owner if theirs else None)
    tree.link_entry(parent, shown, node)
    # The holder swapped out: its notes shown at the name it lost show at its made name now (76b (1));
    # a made name of its own lost is no name it wants, not noted (its notes stay one a name: 76b (2)).
    if not (swapped and tree.beside.moved(node.ino, parent.ino, name, shown)):
        tree.beside.note(parent.ino, name, node.ino, shown)  # the holder's name refused later: ``give_back``
    return [(parent.ino, name), (parent.ino, shown)]


def ranks(tree: Tree, parent: Node, node: Node) -> tuple[bool, int, str]:
    """Where ``node`` stands among nodes wanting one name in ``parent`` (the highest holds it): in a
    folder of hers, her own node before another owner's (one a writer of it named there: ranked as
    equals, his file named as hers took her next save, attack round 69b (3)); then the one named last
    (``ctime``, then the higher file id).  ``link_clashing`` and ``give_back`` both, as the load."""
    me = tree.key.user_id
    return (parent.owner == me and node.owner == me, node.ctime, node.fid)


def give_back(tree: Tree, parent: Node, name: bytes, out: Absorbed) -> None:
    """``name`` in ``parent``, just refused to the node holding it, goes back to a node a clash showed
    beside it (``link_clashing``, noted in ``tree.beside``), as the load's ``_link_beside`` gives a name
    no node holds any more.  Left beside, her file lost the clash to a name of another owner's that was
    refused later (a phantom of her folder made real), and her next save committed the made name, on
    every device (attack round 73d (4)).  Called once every name of the refusal is judged: a node
    refused meanwhile is no longer shown beside, and gets nothing.

    Of several waiting, the one ``link_clashing``'s rule ranks first (``ranks``) takes it, the others
    stay beside it, as her unlock shows them: given to the first noted, two files of hers named alike
    on two devices apart swapped names here, and her next save committed the swap (attack round 74b
    (4)).  One that shows in the folder under another name of its own (a note anchored there: ``clash``)
    gets the name beside it, and keeps that one."""
    if parent.children is None or name in parent.children:
        return
    best: tuple[tuple[bool, tuple[bool, int, str]], Node, bytes, bool] | None = None
    for ino, shown, replaced in tree.beside.waiting(parent.ino, name):
        node = tree.get(ino)
        if node is None or parent.children.get(shown) != ino:
            tree.beside.drop_one(ino, parent.ino, name)  # renamed, refused, or gone, since
            continue
        # Shown there only under a made name (its anchor one: another name it lost there), the name
        # given replaces it, as her unlock shows it; added beside, her save committed a hard link
        # ``a (also ID).txt`` (attack round 76b (6)).
        replaced = replaced or tree.beside.made(ino, parent.ino, shown)
        # One shown under a made name first, one showing there under a name of its own after: ``clash``
        # (the load, an arrival) never takes a name from its holder for a node showing there already;
        # ranked as equals, her file named first kept its made name for good (attack round 76b (3)).
        rank = (replaced, ranks(tree, parent, node))
        if best is None or rank > best[0]:
            best = (rank, node, shown, replaced)
    if best is None:
        return
    _, node, shown, replaced = best
    tree.beside.drop_one(node.ino, parent.ino, name)
    if replaced:
        tree.unlink_entry(parent, shown, node)
        out.entries.append((parent.ino, shown))
        tree.beside.renamed(node.ino, parent.ino, shown, name)
    tree.link_entry(parent, name, node)
    out.entries.append((parent.ino, name))
    log.info("%s: the name it was shown beside, refused to its holder, is its own again", node.fid)


def unsaved(node: Node) -> bool:
    """The user's writes to the node are not all committed: changed contents,
    or a version being committed now (its contents no longer look changed,
    and its document still needs the key).  Every sealing of a version holds
    the node's content lock from before the seal until its commit is done
    (open_files.py ``commit_version``), so the two leave no moment between
    (what a place judged for the importer asks too: placing.py ``judged``)."""
    return (node.content is not None and node.content.changed) or (
        node.lock is not None and node.lock.locked())


def leave(tree: Tree, node: Node, out: Absorbed) -> None:
    """Take a node out of this user's tree: every name, and (a guest's) its key.

    A parent may have left (and gone) before its child: its links are dropped.
    A guest holding the user's unsaved writes keeps everything until they are
    saved (``save``): a key is never dropped from under them."""
    sharing = tree.sharing
    if sharing is not None and node.owner != tree.key.user_id and unsaved(node):
        if node.ino not in sharing.leaving:
            sharing.leaving.add(node.ino)
            out.save.append(node)
        return
    # A phantom its names leave, empty, goes (74b (3)): kept, each share given and taken back left the
    # phantoms a revision of his named behind for the rest of the mount (attack round 78b (1)).  A node
    # still held here when its share is given again (open, its folder looked up) gets the phantoms of
    # its folders not held again there (absorbing.py ``_admit_new_shares``: ``phantoms.parents_again``).
    for parent_ino, name in list(node.links):
        if (parent := tree.get(parent_ino)) is not None:
            tree.unlink_entry(parent, name, node)
            out.entries.append((parent_ino, name))
            tree.drop_phantom_if_empty(parent_ino)  # a phantom it alone was named in (74b (3))
        else:
            node.links.remove((parent_ino, name))
    for virtual in sharing.virtual if sharing else ():
        folder = tree.get(virtual)
        for name, child in list(folder.children.items()) if folder else ():
            if child == node.ino:
                tree.unlink_entry(folder, name, node)
                out.entries.append((virtual, name))
    out.inodes.append(node.ino)
    if sharing is not None:
        sharing.leaving.discard(node.ino)
    if node.owner != tree.key.user_id:
        tree.forget_key(node)
    tree.purge_if_unused(node)
