"""Her own nodes rebuilt at unlock from her own material, where this device last saw them: a
deletion by another refused, a document refused as it was read or another signed, her own older
document or deletion replayed; and the root made again when the store gives none."""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import Callable

from fusevault.crypto import aead
from fusevault.crypto.keys import MasterKey
from fusevault.errors import CorruptData, VaultError
from fusevault.store import Store, replica
from fusevault.store.local import LocalStore
from fusevault.store.unreadable import Unreadable
from fusevault.vault.model import names
from fusevault.vault.model.alarms import for_user
from fusevault.vault.model.ledger import Ledger, seq_of
from fusevault.vault.model.nodes import ROOT_INODE, Node, open_node_doc
from fusevault.vault.tree import phantoms, undeleting
from fusevault.vault.tree.arrivals import note_beneath, stand_on
from fusevault.vault.tree.authorship import Authorship
from fusevault.vault.tree.linking import link_loaded, place_taken
from fusevault.vault.tree.namespace import Tree

log = logging.getLogger(__name__)


def keep_undeleted(tree: Tree, key: MasterKey, gate: Authorship, ledger: Ledger,
                   deleted: list[tuple[dict, str | None]],
                   waiting: dict[str, list[tuple[Node, tuple[str, bytes]]]], inodes: dict[str, int],
                   replayed: set[str], unreadable: frozenset[str] | set[str] = frozenset(),
                   ) -> tuple[list[Node], list[tuple[Node, list[tuple[str, bytes]]]]]:
    """Files of the user's whose deletion by another was refused, or whose
    document was refused as it was read (not admitted: signer None; issue 22),
    put back as they were (vault/tree/undeleting.py: nothing of the refused
    document but the file's identity), where this device last saw them.  Judged folders
    first: a folder put back holds what was in it (``waiting``: links to a
    folder not held, by its fid) when that is linked and its own deletion is
    judged.  ``replayed``: her own older deletions refused (said with the load's rollbacks,
    ``Ledger.replays``).  ``unreadable``: her files whose writer's document did not read: one whose
    place this device does not know (it never saw the file: made on her other device) is rebuilt at
    the top of her vault from her newest version, said, rather than hidden at every unlock (attack
    round 29b (2)); no share reaches it there.  Returned: those placed, and the names that were taken."""
    placed: list[Node] = []
    taken: list[tuple[Node, list[tuple[str, bytes]]]] = []
    by_fid = {doc["_id"]: (doc, signer) for doc, signer in deleted}
    for fid in _parents_first(by_fid, ledger.was_at):
        doc, signer = by_fid[fid]
        # A phantom at its id (a share naming her folder as its own folder's) is only a placeholder:
        # taken for her folder, it hid it and all in it at every unlock (attack round 71a (5)); it gives
        # way (``Tree.add``).
        if phantoms.real(tree, fid) is not None or (
                signer is not None and not gate.deleted(tree, doc, signer)):
            continue
        # Where she put it as far as this device can tell: her own stamp (signed
        # by her, newer than seen: authorship.py ``was_placed``), else ``where``.
        stamp = gate.placed_in(doc)
        was = gate.was_placed(tree, fid, stamp) or []
        top = False
        if signer is None:  # refused as read (said then): a place this device knows, or left out
            if not [parent for parent in was if tree.find(parent) is not None]:
                if fid not in unreadable or ledger.kind_seen(fid) == stat.S_IFDIR:
                    continue
                was, top = [tree.root.fid], True
            if fid in replayed:
                ledger.replays[fid] = doc["_rev"]
            elif not top:  # at the top: said below, once it is known to be rebuilt
                gate.trust.alarms.warn("rebuilt", fid, f"refused a change of file {fid}: its document was "
                                       "not taken: rebuilt from what its owner signed")
        node, signed_path, new_key = undeleting.rebuilt(tree, key, gate, doc, was, ledger.epochs.get(fid, 0),
                                                        fid in waiting, ledger.kind_seen(fid),
                                                        ledger.mode_seen(fid))
        owed: list[tuple[Node, list[tuple[str, bytes]]]] = []
        if top:
            if signed_path is None:
                continue  # no version of hers to rebuild it from (or a folder): left out, as said
            gate.trust.alarms.warn("rebuilt", fid, f"file {fid}: its document was refused and where it "
                                   "was is not known here: rebuilt at the top of the vault from your newest "
                                   "version of it")
        tree.add(node, inodes)
        # Its name held (by a node whose document is judged later: a refused rename of another file of
        # hers onto it): taken, given back once that is settled, else shown beside (77c (1)).
        _as_seen(tree, key, ledger, doc, node, stamp, was, signed_path, new_key, owed)
        # Her own older deletion replayed too: a server may stack it on her other device's change, as
        # on a refused document (attack round 80a (5)).
        noted_beneath(tree, node, doc)
        taken += owed
        for child, link in waiting.pop(fid, ()):
            if tree.get(child.ino) is child and (lost := link_loaded(tree, child, [link])):
                taken.append((child, lost))
        placed.append(node)
    return placed, taken


def noted_beneath(tree: Tree, node: Node, doc: dict) -> None:
    """``node``, rebuilt from her own material, stands on ``doc``, the store's refused current revision:
    the revisions under it noted for the sync to fetch (arrivals.py ``note_beneath``; attack round 78a
    (3)).  A store that keeps no history here (a server's): nothing noted."""
    local = replica.local_of(tree.store)
    if local is not None and node.rev == doc.get("_rev"):
        note_beneath(tree, node, node.rev, replica.current_history(local, node.fid),
                     _leaves_held(local, node.fid))


# Leaves of one file read at unlock to find the branch the rebuilt state stands on: an honest conflict
# has two or three; a server's thousands are never all read.
LEAVES_LOOKED_AT = 8


def _leaves_held(local: LocalStore, fid: str) -> set[str]:
    """The revisions of the store's other live leaves of ``fid`` with their histories: the branch this
    device's own state lies on where the refused current was stacked beside it (a conflict), which
    ``note_beneath`` marks ``beside`` as ``keep`` does while mounted (attack round 80a (3)).  No other
    leaf (no conflict): an empty set, the refused one's history a line under the rebuilt state."""
    took: set[str] = set()
    for leaf in replica.other_leaves(local, fid, limit=LEAVES_LOOKED_AT):
        try:
            took.update(replica.history_from(leaf))
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError):
            continue  # a malformed history: nothing taken on its word
    return took


def rebuilt_in_place(tree: Tree, key: MasterKey, gate: Authorship, ledger: Ledger, doc: dict,
                     node: Node, owed: list[tuple[Node, list[tuple[str, bytes]]]]) -> bool:
    """The user's own ``node``, loaded from ``doc``, a document another signed that is refused
    (no WRITE where it is: a READ recipient's rename or chmod), rebuilt from her own material
    exactly as a node whose deletion was refused (vault/tree/undeleting.py; issue 22), and put
    back where this device last saw it, under the name it last saw; what is under it stays
    under it.  False (left out, as before): a place this device does not know (none seen, or her
    deletion came from another device: ``Ledger.place_unknown``), a type neither file nor folder,
    or a file of hers that folders' entries are under (a type not known).  Where it was is put in
    ``owed`` (node, its links), placed by the caller once every node refused with it is rebuilt
    (``owed_placed``: attack round 77c (1))."""
    fid = node.fid
    if ledger.place_unknown(fid):
        return False  # her deletion came from another device: where it was is not known (round 23a (3))
    stamp = gate.placed_in(doc)
    was = gate.was_placed(tree, fid, stamp) or []
    kind = ledger.kind_seen(fid)
    if node.ino == ROOT_INODE or not [p for p in was if tree.find(p) is not None] or kind not in (
            None, stat.S_IFDIR, stat.S_IFREG) or not (node.is_dir or stat.S_ISREG(node.mode)):
        return False
    mine, signed_path, new_key = undeleting.rebuilt(tree, key, gate, doc, was, ledger.epochs.get(fid, 0),
                                                    bool(node.children), kind, ledger.mode_seen(fid))
    if mine.is_dir != node.is_dir and node.children:
        return False
    # The names his document gave it go first, while it has the type they were linked with
    # (a folder counts its subfolders: its link count).
    for parent_ino, name in list(node.links):
        if (parent := tree.get(parent_ino)) is not None:
            tree.unlink_entry(parent, name, node)
        else:
            node.links.remove((parent_ino, name))
    for slot in ("dek", "rev", "mode", "uid", "gid", "rdev", "size", "stored_size", "allocated", "atime",
                 "mtime", "ctime", "btime", "xattrs", "target", "head", "manifest", "trashed", "previous",
                 "epoch", "wrapped", "replaced_by", "key_proof", "sealed_for"):
        setattr(node, slot, getattr(mine, slot))
    node.children = ({} if node.children is None else node.children) if node.is_dir else None
    _as_seen(tree, key, ledger, doc, node, stamp, was, signed_path, new_key, owed, later=True)
    return True


def _as_seen(tree: Tree, key: MasterKey, ledger: Ledger, doc: dict, node: Node, stamp: dict | None,
             was: list[str], signed_path: str | None, new_key: bool,
             owed: list[tuple[Node, list[tuple[str, bytes]]]], *, later: bool = False) -> None:
    """What a node rebuilt from her own material (``undeleting.rebuilt``, in ``keep_undeleted``
    and ``rebuilt_in_place``) takes from this device, then linked where it last saw it: at once,
    a name found held put in ``owed``; or, ``later``, all of it put in ``owed`` (the caller places
    it once every node refused with it is rebuilt)."""
    fid = node.fid
    node.placed = stamp  # hers, carried on as a grantee's commit would
    # Her own material over the refused document's revision: her names, never judged by its signer
    # (phantoms.py ``_signer_held``, should a phantom of her folder be made real; attack round 74b (2)).
    if node.rev is not None:
        stand_on(tree, node, node.rev, node.owner)
    # Its state is the one this device last saw: its seq too (never the
    # refused document's: a counter of his naming her device would make her later
    # saves "older").  A key older than one seen may have been revoked: a new one.
    # A key made here (none of hers to take) is one no grantee holds, at an epoch
    # theirs may have: a new one too, above every epoch seen or held, sealed to them
    # as after a rollback (rotation.py ``resume``), before anything is sealed under it.
    node.seq = next(iter(ledger.fids.get(fid, (True, {}))[1].items()), None)
    if new_key or node.epoch < ledger.epochs.get(fid, 0):
        ledger.rolled.add(fid)
    name = undeleting.name_of(doc, key, was, signed_path, ledger.name_seen(fid))
    links = _where_it_was(tree, was, name, ledger.links_seen(fid))
    if later:
        owed.append((node, links))
    elif lost := link_loaded(tree, node, links):
        owed.append((node, lost))


def owed_placed(tree: Tree, owed: list[tuple[Node, list[tuple[str, bytes]]]],
                ) -> list[tuple[Node, list[tuple[str, bytes]]]]:
    """Each rebuilt node of ``owed`` put where this device last saw it, once all are rebuilt (no
    refused document holds a name one of them wants); the names still held, returned for the clash
    rule (``place_taken``) once what is judged is settled (attack round 77c (1))."""
    taken = []
    for node, links in owed:
        if tree.get(node.ino) is node and (lost := link_loaded(tree, node, links)):
            taken.append((node, lost))
    return taken


def replays_refused(tree: Tree, store: Store, key: MasterKey, gate: Authorship, ledger: Ledger,
                    done: set[str]) -> list[Node]:
    """The user's own folders and files whose loaded document (hers) carries a ``seq`` of THIS
    device lower than one this device stamped or saw since (a store writer put her older document
    back, or a server's replay refused while mounted stayed the current row: issue 22, attack round
    18 (7)), and no leaf of a conflict met live: refused and rebuilt where this device last saw
    them, as a refused document another signed (``rebuilt_in_place``; a file from her newest
    version, so it keeps its newer contents), said with the load's rollbacks (``Ledger.replays``).
    A file only if this device last saw it live: one it saw go into the trash is shown older, and
    said, as before (rebuilt live, it would leave the trash).  Another device's state is never
    judged here: its numbers are its own (concurrent edits, moves made there: test_trust_stamps.py;
    ``Ledger.own_replay``)."""
    out: list[Node] = []
    owed: list[tuple[Node, list[tuple[str, bytes]]]] = []
    for node in list(tree.nodes()):
        if (node.fid in done or node.owner != key.user_id or not node.dek
                or not (node.is_dir or (node.is_reg and ledger.seen_live(node.fid)))
                or not ledger.own_replay(node.fid, node.seq)):
            continue
        doc = _readable(store, node.fid)[0]  # a row gone unreadable since it loaded: not rebuilt
        # Not rebuilt (the root, a place this device does not know): shown older, and said,
        # by the ledger's check as before.
        if doc is not None and rebuilt_in_place(tree, key, gate, ledger, doc, node, owed):
            ledger.replays[node.fid] = doc.get("_rev")
            # What the replay was stacked on (a server's copy of her older state put over her laptop's
            # rename): fetched and taken under it before her rebuild is put back over it (rotation.py
            # ``_put_back_over_replays`` waits); unnoted, her unlock undid the rename (80a (5)).
            noted_beneath(tree, node, doc)
            out.append(node)
    # All put back once all are rebuilt: one by one, a replay of her swap of two names gave the first
    # "(recovered ID)" (attack round 77c (1)).
    place_taken(tree, owed_placed(tree, owed))
    return out


def deletion_replayed(ledger: Ledger, key: MasterKey, doc: dict) -> bool:
    """Is ``doc``, her own deletion (signed by her), older than a state THIS device gave
    or saw since, of a file it last saw live: her older deletion put back over her
    restore (attack round 18 (8))?  Then it is refused, and the file rebuilt where this
    device last saw it (``keep_undeleted``).  A deletion made on her other device is
    never judged so (``Ledger.own_replay``): taken, as before."""
    fid = doc["_id"]
    if not ledger.seen_live(fid):
        return False
    try:
        seq = seq_of(open_node_doc(doc, key)[1])
    except (VaultError, ValueError, TypeError):
        return False  # does not open: taken as a deletion, as before (nothing to judge it by)
    return ledger.own_replay(fid, seq)


def identity_of(doc: dict) -> dict:
    """Of a document of the user's own node refused as it was read, what its rebuilding
    uses: its id and revision (her next commit goes over it), nothing it says (not its
    key, nor its attributes, nor a stamp: all from this device's ledger and her versions)."""
    return {"_id": doc["_id"], "_rev": doc.get("_rev")}


def _parents_first(deleted: dict[str, tuple[dict, str | None]],
                   was_at: Callable[[str], list[str] | None]) -> list[str]:
    """The fids of ``deleted``, each after those of the folders it was last seen in."""
    order: list[str] = []
    state: dict[str, bool] = {}  # fid -> its folders being walked (False: ordered)
    for start in deleted:
        todo = [start]
        while todo:
            fid = todo[-1]
            if state.get(fid) is False:
                todo.pop()
            elif fid in state:
                state[fid] = False
                order.append(todo.pop())
            else:
                state[fid] = True
                todo += [p for p in was_at(fid) or () if p in deleted and p not in state]
    return order


def root_again(store: Store, key: MasterKey, root_fid: str, ledger: Ledger, deleted_by: str | None) -> Node:
    """An empty root made in memory when the store gives none (its deletion is
    never taken; its row removed, or not admitted): the rest of the tree loads
    into it, and it is said.  Its next commit writes its document again."""
    user = _readable(store, key.user_id)[0] or {}
    uid = user.get("uid")
    uid = uid if isinstance(uid, int) and not isinstance(uid, bool) and 0 <= uid < 2**32 else os.getuid()
    # A row that does not read (a store writer's body) is a root missing, as one not admitted is:
    # its revision is kept, for the next commit of the root replaces that row.
    doc, rev = _readable(store, root_fid)
    dek = undeleting.first_key(doc, key) if doc is not None and not ledger.epochs.get(root_fid) else None
    root = Node(ROOT_INODE, root_fid, sys.intern(key.user_id), dek or aead.new_key(), stat.S_IFDIR | 0o755,
                uid, os.getgid())
    root.rev = rev
    root.seq = next(iter(ledger.fids.get(root_fid, (True, {}))[1].items()), None)
    if deleted_by is None:
        said = ("rollback: the root folder's document is missing from the store (its row removed or "
                "unreadable, or not one its owner signed): an empty root folder is shown, with the rest "
                "of the tree")
        if key.identity is None:
            log.warning("%s", said)
        else:
            for_user(key.user_id).warn("rollback", root_fid, said)
    return root


def _readable(store: Store, doc_id: str) -> tuple[dict | None, str | None]:
    """The document and its revision; None for a document whose row does not read (its
    revision still, where the store knows it)."""
    try:
        doc = store.get(doc_id)
    except Unreadable as err:
        log.warning("%s: taken as missing", err)
        return None, err.rev
    except CorruptData as err:
        log.warning("%s: taken as missing", err)
        return None, None
    return doc, None if doc is None else doc.get("_rev")


def _where_it_was(tree: Tree, parents: list[str] | None, name: bytes,
                  every: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The places of a node rebuilt from her own material: each link this device last saw it
    under (``every``: a node with hard links, 77c (2)) in a folder it still places the node in,
    else ``name`` in the first folder this device last saw it in.  Its names even where another
    node holds them now: a name held by a node refused with it is free once all are rebuilt, one
    still held goes through the clash rule (``place_taken``); made "(recovered ID)" at once, a READ
    member's swap of two names of hers renamed her file (77c (1))."""
    placed = [(parent_fid, link) for parent_fid, link in every
              if parent_fid in (parents or ()) and (parent := tree.find(parent_fid)) is not None
              and parent.is_dir and names.problem(link) is None]
    if placed:
        return placed
    for parent_fid in parents or ():
        if (parent := tree.find(parent_fid)) is not None and parent.is_dir:
            return [(parent_fid, name)]
    return []
