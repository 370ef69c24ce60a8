"""A folder removed on one device while another put something in it: edit beats delete, for folders.

A file saved on one device while another deleted it is kept (vault/services/conflicts.py, rule 1).
A folder is another matter: what is put in it changes the file's document, not the folder's, so the
folder's removal arrives as a plain successor, with no conflict to settle, and was taken: the file
saved in it was then in no folder, on every device, said nowhere, in no trash (attack round 40b (5),
and (6): a WRITE member's file there was even called his forgery, judged where no share reached).

Two rules, one per side, so that each device shows the file whichever saw what first:

- ``kept_over_removal``: a removal of a folder that holds something put in it on this device and
  not moved out or removed since (``_live``), at any depth under it whatever the folders between
  are (their removals may come later, or never), is an edit beating a delete.  The folder stays;
  her own is committed again over the removal (a guest folder stays as it is, until its owner's
  device says).
- ``revive``: a live document naming, as its folder, a folder of hers that her own signed removal
  took out of the tree here, brings that folder back where this device last saw it (its parents
  first, if they went too), committed again.  A writer's document does so only for a node he made
  (a move of one held here into her trash is refused: round 28c (3)) and only if he may write
  where the folder was, seen here (a removal from her other device: its place there is not known,
  ``Ledger.place_unknown``); a state older than this device saw of the file (a replay) never does.

Both commits go over the removal, so they are successors on every device; made at once on two
devices they are two live states of one folder, settled as any (rule 2: no copy).
"""

from __future__ import annotations

import logging
import stat
from typing import TYPE_CHECKING

from fusevault.errors import VaultError
from fusevault.vault.model import names
from fusevault.vault.model.ledger import writer_seq
from fusevault.vault.model.nodes import ROOT_INODE, Node, detached_node
from fusevault.vault.tree.arrivals import open_doc, unsaved

if TYPE_CHECKING:
    from fusevault.vault.tree.arrivals import Absorbed
    from fusevault.vault.tree.namespace import Tree

log = logging.getLogger(__name__)

# Folders above a revived one brought back with it, at most (a removal of a deep tree).
DEPTH_LIMIT = 64


def kept_over_removal(tree: Tree, node: Node | None, links: list, rev: str, fresh: Node,
                      out: Absorbed) -> bool:
    """Whether the arrived removal (no names) of ``node``, a folder held here, is not taken: it
    holds something whose state here is live.  Her own is committed again over it, made over it."""
    if node is None or links or not node.is_dir or node.ino == ROOT_INODE or not node.children:
        return False
    if not _holds_live(tree, node, 0):
        return False
    node.rev = rev
    if node.owner == tree.key.user_id:
        # Made over the removal: her other device takes the folder back as its successor.
        node.seq, node.over = fresh.seq, fresh.over
        out.recommit.append((node, rev))
    log.info("%s: a removal of a folder that holds what was put in it meanwhile: kept", node.fid)
    return True


def _holds_live(tree: Tree, folder: Node, depth: int, top: Node | None = None) -> bool:
    """Whether anything beneath ``folder`` is live here (``_live``), ``depth`` levels under ``top``,
    the folder whose removal is judged (``folder`` itself when None)."""
    top = folder if top is None else top
    return any(_live(tree, child, depth, top) for ino in (folder.children or {}).values()
               if (child := tree.get(ino)) is not None)


def _live(tree: Tree, child: Node, depth: int = 0, top: Node | None = None) -> bool:
    """A child put in the folder on this device and not removed since: never committed (a new file),
    changes not saved yet, or its state here was made here (this device's ``seq``, hers or a writer's
    on his own device) and no newer state of hers waiting in the batch takes it from under ``top``
    (a move out, a removal: ``_newer_state``); or a folder kept so itself (a deep ``rm -r``).  A
    state another device made, in the folder, is one the removal's device saw or will see: its own
    removal comes, or it came from a third device, whose arrival there brings the folder back
    (``revive``).  Counting those, an ordinary removal came back whenever the server sent the
    folder's removal before its files' (attack round 41a (1): a file moved out of it, its trash
    emptied, a device away).

    A folder child is live, besides, when anything beneath it is, whatever its own state: stored as
    the removal's device made it, its removal stored and not taken yet, or not come at all.  The
    removal's device saw the folder, not what this device put in it since: counted by its own state,
    a folder's removal served before its subfolders' (another batch, a feed in any order, theirs
    withheld) took the folders and what she saved under them from this device's tree (attack round
    42a (7); round 41 looked inside only a subfolder whose removal was stored).  Not one that a newer
    state of hers, waiting in the batch, moves out from under ``top``: what it holds goes with it."""
    if unsaved(child):
        return True
    try:
        doc = tree.store.get(child.fid)
    except VaultError:
        return True  # unreadable: the folder stays rather than hide it
    newer = _newer_state(tree, child, doc)
    left = newer is not None and _taken_from(tree, newer, top)
    if not left and _stands(tree, child, doc):
        return True
    if not child.is_dir or not child.children or (left and newer):
        return False  # a file taken out, or a folder moved out: what it holds went with it
    if depth >= DEPTH_LIMIT:
        # Deeper than the walk goes (each arrival's walk is bounded, a hostile chain too): kept
        # rather than hide what may be under it; the folders under it are judged at their own removal.
        return True
    return _holds_live(tree, child, depth + 1, top)


def _stands(tree: Tree, child: Node, doc: dict | None) -> bool:
    """Whether ``child``'s own state counts as live: put there by this device (no newer state of hers
    takes it away: the caller's to say)."""
    if doc is None:
        return child.rev is None  # made here, its first commit to come (a purged one is no child)
    if doc.get("_rev") == child.rev and (doc.get("delete") or doc.get("_deleted")):
        return child.is_dir  # a folder whose own removal this tree did not take: it holds something
    device = tree.ledger.device if tree.ledger is not None else None
    return child.seq is not None and child.seq[0] == device


def _newer_state(tree: Tree, child: Node, doc: dict | None) -> list | None:
    """The places (parent fid, name) in which the stored state of ``child``, not taken in yet (the
    rest of the batch), puts it, when that is a newer state of its owner's than the tree holds:
    ``[]`` for a removal.  None for anything else, judged by its signed content, never by its
    revision (``_rev`` is not signed, the server's to choose): the state held itself under another
    revision (its ``seq``: a copy put on top of it, attack round 43a (7)), one older than a state
    this device saw (the ledger: a replay, which absorbing.py ``_replay`` and ``Ledger.admit`` refuse
    as it comes; round 43a (5)), a writer's or a forged one, one that does not open.  Counted as
    newer, each took the folder's removal over what she saved under it; not counted, the held state
    is judged, a folder kept for nothing at worst, never one lost."""
    if doc is None or doc.get("_rev") == child.rev:
        return None
    if doc.get("_deleted"):
        return []  # a bare deletion (a peer's gc): the replicator judged it as it came
    gate = tree.authorship
    try:
        if gate is not None and gate.trust.verify(doc, author=child.owner) != child.owner:
            return None
        opened = open_doc(tree, doc)
    except VaultError:  # forged (a Forged is one), or it does not open
        return None
    if opened is None:
        return None
    fresh, links = opened
    if fresh.seq is not None and fresh.seq == child.seq:
        return None  # the very state held, under a revision the server gave it
    ledger = tree.ledger
    if ledger is not None and ledger.older(child.fid, writer_seq(fresh.seq, doc, tree.key.user_id)):
        return None  # her older state served again: this device saw a newer one
    return [] if doc.get("delete") else links


def _taken_from(tree: Tree, places: list, top: Node | None) -> bool:
    """Whether a state placing a child in ``places`` takes it from under ``top``: a removal (no
    place), or a move whose every place is elsewhere (``mv F/sub G; rm -r F`` in one push, F's
    removal judged first).  A move within ``top``, or to a place not known here, keeps it there."""
    return top is None or not any(_beneath(tree, parent, top) for parent, _ in places)


def _beneath(tree: Tree, fid: object, top: Node) -> bool:
    """Whether the folder ``fid`` is ``top`` or under it here; one not held or not placed here (made
    with the move, on its way) or deeper than ``DEPTH_LIMIT`` may be: counted as under it."""
    node = tree.find(fid) if isinstance(fid, str) else None
    for _ in range(DEPTH_LIMIT + 1):
        if node is None or node.ino == top.ino or (node.ino != ROOT_INODE and not node.links):
            return True  # ``top``, or a folder not placed here: not known to be elsewhere
        if node.ino == ROOT_INODE:
            return False
        node = tree.get(node.links[0][0])
    return True


def revive(tree: Tree, links: list, signer: str | None, owner: object, out: Absorbed) -> None:
    """Bring back the folders of hers ``links`` (parent fid, name) name that her removal took out
    of the tree here; ``signer`` signed the document naming them (None: not judged here)."""
    for parent, _ in links:
        if isinstance(parent, str) and not tree.holds(parent):
            _revive(tree, parent, signer, owner, out, 0)


def _revive(tree: Tree, fid: str, signer: str | None, owner: object, out: Absorbed,
            depth: int) -> Node | None:
    if (held := tree.find(fid)) is not None:
        return held if held.is_dir and held.children is not None else None
    me, ledger, gate = tree.key.user_id, tree.ledger, tree.authorship
    if owner != me or ledger is None or gate is None or depth > DEPTH_LIMIT:
        return None
    was, name = ledger.was_at(fid), ledger.name_seen(fid)
    if not was or len(was) != 1 or name is None or names.problem(name) is not None \
            or ledger.kind_seen(fid) != stat.S_IFDIR:
        return None
    if signer not in (None, me) and ledger.place_unknown(fid):
        return None  # removed on her other device, maybe moved there first: no writer's word places it
    try:
        doc = tree.store.get(fid)
    except VaultError:
        return None
    if doc is None or not doc.get("delete") or doc.get("owner") != me:
        return None
    admitted = gate.admit(doc)
    if admitted is None or admitted[1] != me:
        return None  # a removal another signed is judged as such (undeleting.py), not undone here
    parent = _revive(tree, was[0], signer, owner, out, depth + 1)
    if parent is None or name in parent.children:
        return None
    if signer not in (None, me) and not gate.writes_at(tree, signer, me, parent):
        return None  # he may not write where it was: his document is judged (and refused) as it is
    try:
        node = detached_node(admitted[0], tree.key, tree.new_ino())
    except VaultError:
        return None
    if not node.is_dir or node.children is None:
        return None
    tree.add(node)
    tree.link_entry(parent, name, node)
    out.entries.append((parent.ino, name))
    out.recommit.append((node, node.rev))
    log.info("%s: a folder removed while something was put in it on another device: brought back", fid)
    return node
