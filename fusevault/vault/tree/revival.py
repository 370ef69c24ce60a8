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
from fusevault.vault.tree import phantoms
from fusevault.vault.tree.arrivals import open_doc, stand_on, unsaved

if TYPE_CHECKING:
    from fusevault.vault.tree.arrivals import Absorbed
    from fusevault.vault.tree.namespace import Tree

log = logging.getLogger(__name__)

# Folders above a revived one brought back with it, at most (a removal of a deep tree).
DEPTH_LIMIT = 64


class Judged:
    """What one batch (one ``absorb`` call: ``Absorbed.judged``) found out about folders' removals,
    so that a ``rm -r`` taken in costs about one judgement per node, not one per node and folder
    above it (attack round 45a (4): a verify and a decryption per node at every level).

    ``newer``: each node's stored state as ``_newer_state`` judged it, by the state the tree holds
    (its revision and ``seq``: a state taken in or committed since is judged again); the store is
    not read again for it within the batch.  ``above``: the folders above a node that counts as live
    here (``_source``), found by walking up from those (the tree held here bounds it, however deep:
    round 45a (3)); a folder not among them holds nothing live and is not walked.  A node given a
    new folder in the batch (``linked``) makes it stale: looked for again."""

    def __init__(self) -> None:
        self.newer: dict[tuple[str, str | None, tuple[str, int] | None], list | None] = {}
        self.above: set[int] | None = None

    def newer_state(self, tree: Tree, child: Node) -> list | None:
        key = (child.fid, child.rev, child.seq)
        if key not in self.newer:
            try:
                doc = tree.store.get(child.fid)
            except VaultError:
                doc = None  # unreadable: no newer state of it is known, the held one counts
            self.newer[key] = _newer_state(tree, child, doc)
        return self.newer[key]

    def folders_above_live(self, tree: Tree) -> set[int]:
        if self.above is None:
            above: set[int] = set()
            todo = [parent for node in tree.nodes() if _source(tree, node) for parent, _ in node.links]
            while todo:  # each folder looked at once: a loop of links (none is made) ends too
                ino = todo.pop()
                if ino not in above:
                    above.add(ino)
                    if (node := tree.get(ino)) is not None:
                        todo += [parent for parent, _ in node.links]
            self.above = above
        return self.above

    def linked(self, tree: Tree, node: Node) -> None:
        """``node`` was given a folder: if it holds something, or is live itself, ``above`` is stale."""
        if self.above is not None and (node.children or _source(tree, node)):
            self.above = None


def kept_over_removal(tree: Tree, node: Node | None, links: list, rev: str, fresh: Node,
                      out: Absorbed) -> bool:
    """Whether the arrived removal (no names) of ``node``, a folder held here, is not taken: it
    holds something whose state here is live.  Her own is committed again over it, made over it."""
    if node is None or links or not node.is_dir or node.ino == ROOT_INODE or not node.children:
        return False
    if out.judged is None:
        out.judged = Judged()
    if not _holds_live(tree, node, out.judged):
        return False
    stand_on(tree, node, rev)  # the removal not taken: never the remover's names
    if node.owner == tree.key.user_id:
        # Made over the removal: her other device takes the folder back as its successor.
        node.seq, node.over = fresh.seq, fresh.over
        out.recommit.append((node, rev))
    log.info("%s: a removal of a folder that holds what was put in it meanwhile: kept", node.fid)
    return True


def _holds_live(tree: Tree, folder: Node, judged: Judged | None = None) -> bool:
    """Whether anything beneath ``folder`` is live here (``_live``), at any depth, whatever the folders
    between are: stored as the removal's device made it, their removals stored and not taken yet, or
    not come at all.  The removal's device saw the folders, not what this device put in them since:
    counted by their own states, a folder's removal served before its subfolders' (another batch, a
    feed in any order, theirs withheld) took the folders and what she saved under them from this
    device's tree (attack round 42a (7); round 41 looked inside only a subfolder whose removal was
    stored).  Not under a subfolder that a newer state of hers, waiting in the batch, moves out from
    under ``folder``: what it holds goes with it.

    Only the folders above something live (``Judged.above``) are walked, so a deep tree made
    elsewhere costs nothing and is never kept for its depth (attack round 45a (3): past a depth
    limit the walk kept the folder, whatever it held)."""
    judged = Judged() if judged is None else judged
    above = judged.folders_above_live(tree)
    if folder.ino not in above:
        return False
    seen, todo = {folder.ino}, [folder]
    while todo:
        for ino in list((todo.pop().children or {}).values()):
            child = tree.get(ino)
            if child is None or ino in seen:
                continue
            seen.add(ino)
            if _live(tree, child, folder, judged):
                return True
            if ino not in above or not child.is_dir or not child.children:
                continue  # nothing live beneath it: not read
            newer = judged.newer_state(tree, child)
            if newer and _taken_from(tree, newer, folder):
                continue  # a folder moved out: what it holds went with it
            todo.append(child)
    return False


def _live(tree: Tree, child: Node, top: Node | None = None, judged: Judged | None = None) -> bool:
    """A child put in the folder on this device and not removed since (``_source``), and no newer
    state of hers waiting in the batch takes it from under ``top`` (a move out, a removal:
    ``_newer_state``); changes not saved yet count whatever waits.  A state another device made, in
    the folder, is one the removal's device saw or will see: its own removal comes, or it came from a
    third device, whose arrival there brings the folder back (``revive``).  Counting those, an
    ordinary removal came back whenever the server sent the folder's removal before its files'
    (attack round 41a (1): a file moved out of it, its trash emptied, a device away)."""
    if unsaved(child):
        return True
    if not _stands(tree, child):
        return False
    newer = (Judged() if judged is None else judged).newer_state(tree, child)
    return newer is None or not _taken_from(tree, newer, top)


def _source(tree: Tree, node: Node) -> bool:
    """Whether ``node`` counts as live here by what the tree holds of it (``_live`` but for the batch)."""
    return unsaved(node) or _stands(tree, node)


def _stands(tree: Tree, child: Node) -> bool:
    """Whether ``child``'s own state, as the tree holds it, was put there by this device: made here
    and its first commit to come, or this device's ``seq`` (hers, or a writer's on his own device).
    Judged by the tree's own state, never by the stored body at the revision the tree holds: that
    is not always the state it took in (clear fields put back as signed, a replay the ledger refused
    and stands on, a refused one: ``arrivals.keep``), and a clear ``delete`` set on a copy of her
    file's state took the folder's removal over it (attack round 45a (1))."""
    if child.rev is None:
        return True
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
        if isinstance(parent, str) and phantoms.real(tree, parent) is None:
            _revive(tree, parent, signer, owner, out, 0)


def _revive(tree: Tree, fid: str, signer: str | None, owner: object, out: Absorbed,
            depth: int) -> Node | None:
    if (held := phantoms.real(tree, fid)) is not None:  # a phantom gives way to her folder (71a (5))
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
    tree.add(node, rejoin=False)
    tree.link_entry(parent, name, node)
    # What its earlier node held here goes back in it, once it is placed: a folder held that is above
    # its place now (a move served after the removal) stays out, or it closed a loop (round 46b (1)).
    tree.rejoin(node, me)
    if out.judged is not None:
        out.judged.linked(tree, node)
    out.entries.append((parent.ino, name))
    out.recommit.append((node, node.rev))
    log.info("%s: a folder removed while something was put in it on another device: brought back", fid)
    return node
