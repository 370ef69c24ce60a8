"""Loading a user's tree at unlock: every node document read, judged, opened and placed.

Its steps have modules of their own: linking.py (nodes linked into the tree, others' shared
nodes admitted, each share's root shown in ``shared/<owner>/`` or ``groups/<group>/``),
her_leaves.py (her own leaf beside a writer's copy), rebuilding.py (her nodes rebuilt from her
own material) and key_claims.py (keys a member's state claims for her files).
"""

from __future__ import annotations

import gc
import logging
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

from fusevault.crypto.keys import MasterKey
from fusevault.errors import CorruptData, VaultError
from fusevault.store import Store
from fusevault.vault.format.layout import Layout
from fusevault.vault.model import history, rekeys_owed
from fusevault.vault.model.freshness import Freshness
from fusevault.vault.model.ledger import Ledger, at_load, parents_of
from fusevault.vault.model.migrate import sign_own
from fusevault.vault.model.nodes import NODE, ROOT_INODE, Node, node_from_doc, open_node_doc
from fusevault.vault.model.trust import USER, Trust
from fusevault.vault.model.verified import Verified
from fusevault.vault.tree import phantoms, unlooping
from fusevault.vault.tree.arrivals import Absorbed, leave, signed_state
from fusevault.vault.tree.authorship import Authorship, Foreign, said_signer
from fusevault.vault.tree.guests import Guests, key_files, open_guest
from fusevault.vault.tree.her_leaves import hers_beside_copies
from fusevault.vault.tree.key_claims import claimed_keys_signed, claims_judged
from fusevault.vault.tree.linking import (
    admit_guests,
    break_cycles,
    link_loaded,
    names_across,
    place_taken,
    revive_for_orphans,
)
from fusevault.vault.tree.namespace import Tree
from fusevault.vault.tree.rebuilding import (
    deletion_replayed,
    identity_of,
    keep_undeleted,
    noted_beneath,
    owed_placed,
    rebuilt_in_place,
    replays_refused,
    root_again,
)

log = logging.getLogger(__name__)


def load_tree(layout: Layout, store: Store, key: MasterKey, root_fid: str,
              inodes: dict[str, int] | None = None) -> Tree:
    """Load and decrypt a user's tree.  ``inodes`` (fid -> inode) keeps the
    numbers of an earlier load, which the kernel may still hold (unlock
    after a lock)."""
    # The cyclic GC would rescan the growing tree again and again while it
    # loads (a third of the time for 100,000 nodes); once loaded, the
    # nodes are frozen out of future collections, which they outlive anyway.
    gc.disable()
    try:
        tree = _load(layout, store, key, root_fid, inodes or {})
    finally:
        gc.enable()
    gc.freeze()
    return tree


def _trust_at_load(layout: Layout, store: Store, key: MasterKey) -> Trust | None:
    """Whom this load trusts (None for a user without an identity: nothing signed), its own documents
    signed and the users' seen, saved before any grant is read."""
    if key.identity is None:
        return None
    trust = Trust(store, key, root=layout.root)
    trust.verified = Verified.open(key, layout.root)  # checked before: not again (issue 25)
    trust.fresh = Freshness.open(key, layout.root, layout.vault_id, trust.alarms)  # before signing
    # A Share this device's unshare took back, a re-key of it still owed (the unshare cut short
    # before its taking back was saved here), is taken back again before any grant is read: served
    # back by whoever writes the store, it was believed, and the re-key owed sealed the new key to
    # the member it was taken from, the debt paid (attack round 59c (1)).
    # A record of the build before stamps is stamped here, before any grant is read (63a (3)), with
    # the body its unshare took back (64a (2)).
    taken = rekeys_owed.taken_at_load(layout.root, key, trust.fresh.taken_back_stamp)
    for share_id, made in taken.items():
        newest = trust.fresh.newest_seen(share_id)
        if newest is not None and newest <= made:  # not a newer signing of hers since (61a (1))
            trust.fresh.took_back(share_id)
            trust.fresh.deleted(share_id)  # as her unshare saw it: the body it took back is no grant
    sign_own(store, trust, layout.root)
    trust.observe(store.iter_type(USER))
    trust.save()
    return trust


@dataclass
class _Read:
    """What the read of every node document gave: her nodes opened (``pending``), others' shared with
    her (``guests``), those another signed (``foreign``, with ``others``), and what is refused."""

    pending: list[tuple[Node, list[tuple[str, bytes]]]] = field(default_factory=list)
    guests: list[tuple[Node, list[tuple[str, bytes]]]] = field(default_factory=list)
    foreign: list[Foreign] = field(default_factory=list)
    # fid -> the document of the user's own node another signed
    others: dict[str, dict] = field(default_factory=dict)
    # Deletions by another (the signer), and documents of the user's own nodes refused
    # as they were read (None): each judged and rebuilt from her own material (by ``_load``).
    deleted: list[tuple[dict, str | None]] = field(default_factory=list)
    root_deleted: str | None = None  # who signed a deletion of the root
    # Her own older deletions put back (``deletion_replayed``), refused
    replayed: set[str] = field(default_factory=set)
    # Her files whose writer's document does not read: refused, rebuilt
    unreadable: set[str] = field(default_factory=set)


def _load(layout: Layout, store: Store, key: MasterKey, root_fid: str, inodes: dict[str, int]) -> Tree:
    tree: Tree | None = None
    owner = sys.intern(key.user_id)
    trust = _trust_at_load(layout, store, key)
    shares = Guests.read(store, owner, trust) if key.identity is not None else None
    if trust is not None:
        try:
            trust.save()  # the grants seen at this load (vault/model/freshness.py), the groups pinned
        except VaultError as err:  # kept in memory: saved at the next change
            log.warning("the groups pinned at this load were not saved yet: %s", err)
    givers = shares.givers() if shares else set()
    keys = key_files(layout, owner, shares.groups) if givers else {}
    # Checked before use: signed by the owner, or by a WRITE grantee (placed last).
    gate = Authorship(trust, store) if trust is not None else None
    ledger = Ledger.open(key, layout.root, layout.vault_id)
    read = _read(store, key, root_fid, owner, trust, gate, ledger, givers, keys)
    pending, guests, foreign, others = read.pending, read.guests, read.foreign, read.others
    deleted, root_deleted = read.deleted, read.root_deleted
    replayed, unreadable = read.replayed, read.unreadable
    for node, _ in pending:
        if node.fid == root_fid:
            node.ino = ROOT_INODE
            tree = Tree(layout, store, key, node)
    if tree is None:
        tree = Tree(layout, store, key, root_again(store, key, root_fid, ledger, root_deleted))
    tree.sharing = shares
    tree.trust = trust
    if trust is not None and layout.places is not None and trust.alarms not in layout.places.alarms:
        layout.places.alarms.append(trust.alarms)  # refused records (files/placements.py) show in status
    tree.start_inodes_after(inodes)
    for node, _ in pending:
        if node.ino != ROOT_INODE:
            tree.add(node, inodes)
    taken = [(node, lost) for node, links in pending if (lost := link_loaded(tree, node, links))]
    if guests:
        taken += admit_guests(tree, guests, inodes, unlooped=False)
    # Once every node is placed (a grant may reach a folder through those above it): names in a folder
    # of another owner than the node's are judged as on arrival (attack round 69b).
    taken = names_across(tree, gate, [node for node, _ in [*pending, *guests]],
                         {node.fid: signer for node, _, signer, _ in foreign}, taken)
    # Before settling (what leaves takes what is under it); a loop is cut at a name from a
    # document another signed, if one made it.
    cut: list[tuple[Node, Node, bytes]] = []  # (folder, folder, name) a loop's cut left out: put back below
    break_cycles(tree, [node for node, *_ in foreign if tree.get(node.ino) is node], cut)
    moved: dict[str, list[str]] = {}
    kept: list[Node] = []  # the user's own nodes whose refused deletion was put back
    rebuilt: list[Node] = []  # the user's own nodes whose refused document settling rebuilt
    if gate is not None:
        gate.seen, gate.vault_id = ledger, layout.vault_id
        if root_deleted is not None:
            gate.deny({"_id": root_fid}, f"a deletion of the root folder signed by {root_deleted}: it is "
                      "never taken")
        # A refused deletion changes nothing, and is put back before the
        # writers' documents are judged: what sits in a folder whose deletion
        # was refused finds it there (linked again now), and is judged there.
        waiting: dict[str, list[tuple[Node, tuple[str, bytes]]]] = {}
        for node, links in pending if deleted else ():
            for link in links:
                if phantoms.real(tree, link[0]) is None:  # a phantom is no folder of hers (71a (5))
                    waiting.setdefault(link[0], []).append((node, link))
        kept, lost_names = keep_undeleted(tree, key, gate, ledger, deleted, waiting, inodes, replayed,
                                          unreadable)
        taken += lost_names
        if kept:
            break_cycles(tree, (), cut)
    if gate is not None and foreign:
        # Before settling: a writer's current revision that is his edit to keep only as a copy gives
        # way to her own leaf beside it (``hers_beside_copies``), judged there no more.
        taken = hers_beside_copies(tree, store, key, gate, foreign, others, pending, taken, cut)
    if foreign:
        taken = _settled(tree, key, gate, ledger, foreign, others, taken, moved, rebuilt, cut)
    place_taken(tree, taken)
    for node in kept:  # one name in the first folder it was seen in: a file it was in twice
        if gate is not None and tree.get(node.ino) is node and (now := parents_of(
                node, tree.fid_at)) != gate.was_placed(tree, node.fid, node.placed):
            moved.setdefault(node.fid, now)
    replays = replays_refused(tree, store, key, gate, ledger, {node.fid for node in rebuilt}) if gate else []
    rebuilt += replays
    if cut or replays:
        # A replay rebuilt where this device last saw it closes a loop too (under a folder her other
        # device moved under it since): each loop cut again once all is judged and rebuilt, at the name
        # of a rebuilt or undeleted node first (its commit, ``rotation.resume``, never names the loop),
        # what the cuts left in no folder put back where it is shown (attack round 78b (2), (2b), (3)).
        unlooping.relinked(tree, cut)
        first = [*rebuilt, *kept, *(node for node, *_ in foreign if tree.get(node.ino) is node)]
        break_cycles(tree, first, cut)
        for node in unlooping.put_back(tree, cut, ledger.was_at):
            if node.fid in moved:  # shown there now, not where her stamp puts it
                moved[node.fid] = parents_of(node, tree.fid_at)
    tree.authorship = gate
    ours = {node.fid for node in rebuilt}
    if gate is not None:
        claims_judged(tree, gate, ledger, foreign, others, ours)  # before the ledger takes their epochs
        claimed_keys_signed(tree, ledger, pending, others)
    if gate is not None and layout.places is not None:  # version digests only from admitted documents
        layout.places.judge_as(key.user_id, lambda doc: gate.version_ok(tree, doc))
    tree.ledger = at_load(tree, store, ledger, moved,
                          {node.fid: signer for node, _, signer, _ in foreign
                           if signer != node.owner and node.fid not in ours})  # a rebuilt one's seq is hers
    for node, _, signer, _ in foreign:  # whose names these are, should a refused revision come over them
        if node.fid not in ours and tree.get(node.ino) is node:
            signed_state(tree, node, signer)
    if gate is not None and revive_for_orphans(tree, pending, {node.fid for node, *_ in foreign}):
        late: list[tuple[Node, Node, bytes]] = []
        break_cycles(tree, (), late)  # what it linked closes no loop either (78b (2))
        unlooping.put_back(tree, late, tree.ledger.was_at)
    if trust is not None and trust.verified is not None:
        log.debug("signatures at load: %d checked, %d checked before", trust.verified.verified,
                 trust.verified.cached)
        trust.verified.save(prune=False)
    return tree


def _settled(tree: Tree, key: MasterKey, gate: Authorship, ledger: Ledger, foreign: list[Foreign],
             others: dict[str, dict], taken: list[tuple[Node, list[tuple[str, bytes]]]],
             moved: dict[str, list[str]], rebuilt: list[Node], cut: list[tuple[Node, Node, bytes]],
             ) -> list[tuple[Node, list[tuple[str, bytes]]]]:
    """The documents another signed judged once all is placed (``Authorship.settle``): her own nodes
    whose document is refused rebuilt from her own material (put in ``rebuilt``), the nodes moved put
    in ``moved``, the names a refused node held given back.  Returned: the names still held by
    another, for the clash rule (``place_taken``)."""
    out = Absorbed()
    # Every refused node is rebuilt before any is put back where it was: one by one, a node went
    # back to its name while another, not rebuilt yet, held it under its refused document (a READ
    # member's swap of two names), and was shown "(recovered ID)" at every unlock (attack round
    # 77c (1)).  Names still held once all are rebuilt go through the clash rule (``place_taken``).
    owed: list[tuple[Node, list[tuple[str, bytes]]]] = []

    def keep(node: Node) -> bool:
        doc = others.get(node.fid)
        if doc is None or not rebuilt_in_place(tree, key, gate, ledger, doc, node, owed):
            return False
        noted_beneath(tree, node, doc)
        rebuilt.append(node)
        return True

    beside: dict[str, list[str]] = {}
    for node, lost in taken:  # shown beside once judged (below): judged there (attack round 73d (3))
        beside.setdefault(node.fid, []).extend(parent for parent, _ in lost)
    moved.update(gate.settle(tree, foreign, lambda node: leave(tree, node, out), keep, beside))
    # A node rebuilt from her own material has the names she gave it, no other: the names its
    # refused document gave that were found taken are no names of hers to give back or show beside
    # (a READ member's state naming her file in her private folder: attack round 76b (5)).
    remade = {node.fid for node in rebuilt}
    taken = [(node, lost) for node, lost in taken if node.fid not in remade]
    taken += owed_placed(tree, owed)  # her own names, each where this device last saw it
    for node in rebuilt:
        if tree.get(node.ino) is node and (now := parents_of(node, tree.fid_at)) != gate.was_placed(
                tree, node.fid, node.placed):
            moved[node.fid] = now
    # Placed before judged (the judging asks where each node is): a name a
    # refused node held, the node it was taken from gets back.
    for node, lost in taken:
        if tree.get(node.ino) is node:
            link_loaded(tree, node, lost)
    if taken or rebuilt:
        # A name given back, or a node rebuilt where it was, closes no loop either: one it closes is cut
        # at the rebuilt node's name (walked from first), the one it was given back.
        break_cycles(tree, rebuilt, cut)
    return taken


def _read(store: Store, key: MasterKey, root_fid: str, owner: str, trust: Trust | None,
          gate: Authorship | None, ledger: Ledger, givers: set[str], keys: dict[str, list[Path]]) -> _Read:
    """Every node document read, judged as it is read (admitted, refused, or a deletion to judge) and
    opened: her own nodes, and others' shared with her."""
    read = _Read()
    # Every file this device saw is judged, whatever its clear owner now says.
    seen = ledger.fids
    for doc in store.iter_type(NODE):
        signer = None
        if doc["_id"] not in ledger.mine and ledger.owner_refused(doc["_id"], doc.get("owner")):
            continue  # another owner's document at the id of another user's file seen here: said (58b (1))
        if gate is not None and (doc.get("owner") == owner or doc["_id"] in keys
                                 or said_signer(doc) == owner or doc["_id"] in seen):
            if (admitted := gate.admit(doc)) is None:
                if doc["_id"] != root_fid and (doc.get("owner") == owner or doc["_id"] in ledger.mine):
                    read.deleted.append((identity_of(doc), None))
                continue
            doc, signer = admitted
        if doc.get("delete"):
            if doc["_id"] == root_fid:  # never taken, whoever signed it: the root is made again (``_load``)
                read.root_deleted = signer or str(said_signer(doc))
                continue
            if signer is not None and signer != doc.get("owner"):
                read.deleted.append((doc, signer))
            elif signer is not None and deletion_replayed(ledger, key, doc):
                read.deleted.append((identity_of(doc), None))  # her own older deletion: rebuilt, as refused
                read.replayed.add(doc["_id"])
            continue
        if doc.get("owner") != owner:
            # Not a file this device saw as hers (``Ledger.mine``): another's document at its id is
            # no share of his, but her file taken (``owner-changed``, said below: attack round 46b (3)).
            if doc.get("owner") in givers and doc["_id"] in keys and doc["_id"] not in ledger.mine:
                if (opened := open_guest(doc, key, keys[doc["_id"]], trust, store, None, ledger)) is not None:
                    read.guests.append(opened)
                    if signer is not None and signer != doc["owner"]:
                        read.foreign.append((*opened, signer, True))
            continue
        try:
            dek, attrs = open_node_doc(doc, key)
            if signer is not None and not gate.owner_dek_ok(doc, signer, dek):
                read.deleted.append((identity_of(doc), None))
                continue
            node, links = node_from_doc(doc, dek, attrs)
        except CorruptData as err:  # one bad document (numbers out of range, say) never stops the mount
            if gate is not None and signer is not None and signer != owner:
                # A writer's document of her file that cannot be read hides nothing of hers: refused,
                # said, and the file rebuilt from her own material (attack round 28d (1)).
                gate.deny(doc, f"its document, signed by {signer}, cannot be read: {err}")
                read.deleted.append((identity_of(doc), None))
                read.unreadable.add(doc["_id"])
                continue
            _refuse(trust, doc["_id"], err)
            continue
        node.owner = owner  # interned: shared by every node of the tree
        _typed_as_seen(ledger, trust, node, signer)
        read.pending.append((node, links))
        if signer is not None and signer != owner:
            node.previous = history.carried(store, key, node.previous)  # never signed by her unread
            read.foreign.append((node, links, signer, False))
            read.others[node.fid] = doc
    return read


def _typed_as_seen(ledger: Ledger, trust: Trust | None, node: Node, signer: str | None) -> None:
    """A document of the user's own node that changes the type this device
    first saw it with (a WRITE grantee's making her file a folder: no commit
    of fusevault's does) is refused as while mounted (absorbing.py,
    ``retyped``): the node keeps its type, with what else the document says
    (judged as any writer's), and an alarm.  So her file stays a file and
    reads what it held (its versions stay hers to restore), and a folder
    stays a folder with its files in it (a name under a file is left out).
    A node the ledger has no type of (a ledger from before, a first sight) is
    taken as its document says (docs/SECURITY.md)."""
    seen = ledger.kind_seen(node.fid)
    if seen is None or seen == stat.S_IFMT(node.mode) or seen not in (stat.S_IFREG, stat.S_IFDIR):
        return
    was = "a folder" if seen == stat.S_IFDIR else "a file"
    text = (f"{node.fid}: its document, signed by {signer or node.owner}, changes its type: refused, "
            f"it stays {was}")
    if trust is None:
        log.warning("%s", text)
    else:
        trust.alarms.warn("retyped", node.fid, text)
    node.mode = seen | stat.S_IMODE(node.mode)
    node.children = {} if seen == stat.S_IFDIR else None
    node.target = None


def _refuse(trust: Trust | None, fid: str, err: CorruptData) -> None:
    if trust is None:
        log.warning("file %s is left out: %s", fid, err)
    else:
        trust.alarms.warn("malformed", fid, f"file {fid} is left out: {err}")
