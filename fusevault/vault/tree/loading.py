"""Loading a user's tree at unlock: every node document read, judged, opened and placed.

Also where others' nodes shared with the user join the tree (at load, or
when a share arrives while unlocked: ``admit_guests``), and where each
share's root is shown in ``shared/<owner>/`` or ``groups/<group>/``.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import logging
import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator

from fusevault.crypto import aead
from fusevault.crypto.keys import MasterKey
from fusevault.crypto.signing import SIG, canonical, signature_of
from fusevault.encoding import str_to_name
from fusevault.errors import CorruptData, VaultError
from fusevault.store import Store, replica
from fusevault.store.revs import generation
from fusevault.store.unreadable import Unreadable
from fusevault.vault.format.layout import Layout
from fusevault.vault.model import history, names, rekeys_owed
from fusevault.vault.model.alarms import for_user
from fusevault.vault.model.freshness import Freshness
from fusevault.vault.model.her_keys import claim_said, her_key_unknown, key_not_hers
from fusevault.vault.model.ledger import Ledger, at_load, parents_of, seq_of
from fusevault.vault.model.migrate import sign_own
from fusevault.vault.model.nodes import NODE, ROOT_INODE, Node, node_from_doc, open_node_doc
from fusevault.vault.model.trust import USER, Trust
from fusevault.vault.model.verified import Verified
from fusevault.vault.tree import phantoms, revival, undeleting, unlooping
from fusevault.vault.tree.arrivals import Absorbed, clash, leave, note_beneath, signed_state, stand_on
from fusevault.vault.tree.authorship import Authorship, Foreign, said_signer
from fusevault.vault.tree.guests import (
    GROUPS_DIR,
    SHARED_DIR,
    Guests,
    key_files,
    open_guest,
    phantom,
    virtual_dir,
)
from fusevault.vault.tree.namespace import Tree

log = logging.getLogger(__name__)

# ``_her_leaf``: how many of her leaves (distinct bodies signed by her, opened) beside a writer's current
# revision are tried, at most; and how many distinct bodies saying they are hers (her name as signer)
# are checked to find them, at most (a peer may store any number of branches, each a signature to check).
HER_LEAVES = 16
HER_LEAVES_CHECKED = 16 * HER_LEAVES
# And how many leaves (one per stored body) are read to find them, at most, the first by revision id:
# a store holding thousands (from before ``replica.LEAVES_PER_DOC``) is not read whole at each load
# (attack round 46e (2)); enough to reach both caps above.
HER_LEAVES_READ = HER_LEAVES_CHECKED + HER_LEAVES - 1
# ``_take_her_leaf``: what a node takes from her leaf (not its identity, names, folder entries or
# what this mount holds of it).
_LEAF_STATE = tuple(slot for slot in Node.__slots__ if slot not in (
    "ino", "fid", "owner", "links", "children", "subdirs", "lookups", "opens", "content", "lock"))


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


def _load(layout: Layout, store: Store, key: MasterKey, root_fid: str, inodes: dict[str, int]) -> Tree:
    tree: Tree | None = None
    pending: list[tuple[Node, list[tuple[str, bytes]]]] = []
    guests: list[tuple[Node, list[tuple[str, bytes]]]] = []
    owner = sys.intern(key.user_id)
    trust = None
    if key.identity is not None:
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
    foreign: list[Foreign] = []
    others: dict[str, dict] = {}  # fid -> the document of the user's own node another signed
    # Deletions by another (the signer), and documents of the user's own nodes refused
    # as they were read (None): each judged and rebuilt from her own material below.
    deleted: list[tuple[dict, str | None]] = []
    root_deleted: str | None = None  # who signed a deletion of the root
    replayed: set[str] = set()  # her own older deletions put back (``_deletion_replayed``), refused
    unreadable: set[str] = set()  # her files whose writer's document does not read: refused, rebuilt
    # Every file this device saw is judged, whatever its clear owner now says.
    ledger = Ledger.open(key, layout.root, layout.vault_id)
    seen = ledger.fids
    for doc in store.iter_type(NODE):
        signer = None
        if doc["_id"] not in ledger.mine and ledger.owner_refused(doc["_id"], doc.get("owner")):
            continue  # another owner's document at the id of another user's file seen here: said (58b (1))
        if gate is not None and (doc.get("owner") == owner or doc["_id"] in keys
                                 or said_signer(doc) == owner or doc["_id"] in seen):
            if (admitted := gate.admit(doc)) is None:
                if doc["_id"] != root_fid and (doc.get("owner") == owner or doc["_id"] in ledger.mine):
                    deleted.append((_identity(doc), None))
                continue
            doc, signer = admitted
        if doc.get("delete"):
            if doc["_id"] == root_fid:  # never taken, whoever signed it: the root is made again below
                root_deleted = signer or str(said_signer(doc))
                continue
            if signer is not None and signer != doc.get("owner"):
                deleted.append((doc, signer))
            elif signer is not None and _deletion_replayed(ledger, key, doc):
                deleted.append((_identity(doc), None))  # her own older deletion: rebuilt, as refused
                replayed.add(doc["_id"])
            continue
        if doc.get("owner") != owner:
            # Not a file this device saw as hers (``Ledger.mine``): another's document at its id is
            # no share of his, but her file taken (``owner-changed``, said below: attack round 46b (3)).
            if doc.get("owner") in givers and doc["_id"] in keys and doc["_id"] not in ledger.mine:
                if (opened := open_guest(doc, key, keys[doc["_id"]], trust, store, None, ledger)) is not None:
                    guests.append(opened)
                    if signer is not None and signer != doc["owner"]:
                        foreign.append((*opened, signer, True))
            continue
        try:
            dek, attrs = open_node_doc(doc, key)
            if signer is not None and not gate.owner_dek_ok(doc, signer, dek):
                deleted.append((_identity(doc), None))
                continue
            node, links = node_from_doc(doc, dek, attrs)
        except CorruptData as err:  # one bad document (numbers out of range, say) never stops the mount
            if gate is not None and signer is not None and signer != owner:
                # A writer's document of her file that cannot be read hides nothing of hers: refused,
                # said, and the file rebuilt from her own material (attack round 28d (1)).
                gate.deny(doc, f"its document, signed by {signer}, cannot be read: {err}")
                deleted.append((_identity(doc), None))
                unreadable.add(doc["_id"])
                continue
            _refuse(trust, doc["_id"], err)
            continue
        node.owner = owner  # interned: shared by every node of the tree
        _typed_as_seen(ledger, trust, node, signer)
        pending.append((node, links))
        if signer is not None and signer != owner:
            node.previous = history.carried(store, key, node.previous)  # never signed by her unread
            foreign.append((node, links, signer, False))
            others[node.fid] = doc
    for node, _ in pending:
        if node.fid == root_fid:
            node.ino = ROOT_INODE
            tree = Tree(layout, store, key, node)
    if tree is None:
        tree = Tree(layout, store, key, _root_again(store, key, root_fid, ledger, root_deleted))
    tree.sharing = shares
    tree.trust = trust
    if trust is not None and layout.places is not None and trust.alarms not in layout.places.alarms:
        layout.places.alarms.append(trust.alarms)  # refused records (files/placements.py) show in status
    tree.start_inodes_after(inodes)
    for node, _ in pending:
        if node.ino != ROOT_INODE:
            tree.add(node, inodes)
    taken = [(node, lost) for node, links in pending if (lost := _link_loaded(tree, node, links))]
    if guests:
        taken += admit_guests(tree, guests, inodes, unlooped=False)
    # Once every node is placed (a grant may reach a folder through those above it): names in a folder
    # of another owner than the node's are judged as on arrival (attack round 69b).
    taken = names_across(tree, gate, [node for node, _ in [*pending, *guests]],
                         {node.fid: signer for node, _, signer, _ in foreign}, taken)
    # Before settling (what leaves takes what is under it); a loop is cut at a name from a
    # document another signed, if one made it.
    cut: list[tuple[Node, Node, bytes]] = []  # (folder, folder, name) a loop's cut left out: put back below
    _break_cycles(tree, [node for node, *_ in foreign if tree.get(node.ino) is node], cut)
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
        kept, lost_names = _keep_undeleted(tree, key, gate, ledger, deleted, waiting, inodes, replayed,
                                           unreadable)
        taken += lost_names
        if kept:
            _break_cycles(tree, (), cut)
    if gate is not None and foreign:
        # Before settling: a writer's current revision that is his edit to keep only as a copy gives
        # way to her own leaf beside it (``_hers_beside_copies``), judged there no more.
        taken = _hers_beside_copies(tree, store, key, gate, foreign, others, pending, taken, cut)
    if foreign:
        out = Absorbed()
        # Every refused node is rebuilt before any is put back where it was: one by one, a node went
        # back to its name while another, not rebuilt yet, held it under its refused document (a READ
        # member's swap of two names), and was shown "(recovered ID)" at every unlock (attack round
        # 77c (1)).  Names still held once all are rebuilt go through the clash rule (``place_taken``).
        owed: list[tuple[Node, list[tuple[str, bytes]]]] = []

        def keep(node: Node) -> bool:
            doc = others.get(node.fid)
            if doc is None or not _rebuilt_in_place(tree, key, gate, ledger, doc, node, owed):
                return False
            _noted_beneath(tree, node, doc)
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
        taken += _owed_placed(tree, owed)  # her own names, each where this device last saw it
        for node in rebuilt:
            if tree.get(node.ino) is node and (now := parents_of(node, tree.fid_at)) != gate.was_placed(
                    tree, node.fid, node.placed):
                moved[node.fid] = now
        # Placed before judged (the judging asks where each node is): a name a
        # refused node held, the node it was taken from gets back.
        for node, lost in taken:
            if tree.get(node.ino) is node:
                _link_loaded(tree, node, lost)
        if taken or rebuilt:
            # A name given back, or a node rebuilt where it was, closes no loop either: one it closes is cut
            # at the rebuilt node's name (walked from first), the one it was given back.
            _break_cycles(tree, rebuilt, cut)
    place_taken(tree, taken)
    for node in kept:  # one name in the first folder it was seen in: a file it was in twice
        if gate is not None and tree.get(node.ino) is node and (now := parents_of(
                node, tree.fid_at)) != gate.was_placed(tree, node.fid, node.placed):
            moved.setdefault(node.fid, now)
    replays = _replays_refused(tree, store, key, gate, ledger, {node.fid for node in rebuilt}) if gate else []
    rebuilt += replays
    if cut or replays:
        # A replay rebuilt where this device last saw it closes a loop too (under a folder her other
        # device moved under it since): each loop cut again once all is judged and rebuilt, at the name
        # of a rebuilt or undeleted node first (its commit, ``rotation.resume``, never names the loop),
        # what the cuts left in no folder put back where it is shown (attack round 78b (2), (2b), (3)).
        unlooping.relinked(tree, cut)
        first = [*rebuilt, *kept, *(node for node, *_ in foreign if tree.get(node.ino) is node)]
        _break_cycles(tree, first, cut)
        for node in unlooping.put_back(tree, cut, ledger.was_at):
            if node.fid in moved:  # shown there now, not where her stamp puts it
                moved[node.fid] = parents_of(node, tree.fid_at)
    tree.authorship = gate
    ours = {node.fid for node in rebuilt}
    if gate is not None:
        _claims_judged(tree, gate, ledger, foreign, others, ours)  # before the ledger takes their epochs
        _claimed_keys_signed(tree, ledger, pending, others)
    if gate is not None and layout.places is not None:  # version digests only from admitted documents
        layout.places.judge_as(key.user_id, lambda doc: gate.version_ok(tree, doc))
    tree.ledger = at_load(tree, store, ledger, moved,
                          {node.fid: signer for node, _, signer, _ in foreign
                           if signer != node.owner and node.fid not in ours})  # a rebuilt one's seq is hers
    for node, _, signer, _ in foreign:  # whose names these are, should a refused revision come over them
        if node.fid not in ours and tree.get(node.ino) is node:
            signed_state(tree, node, signer)
    if gate is not None and _revive_for_orphans(tree, pending, {node.fid for node, *_ in foreign}):
        late: list[tuple[Node, Node, bytes]] = []
        _break_cycles(tree, (), late)  # what it linked closes no loop either (78b (2))
        unlooping.put_back(tree, late, tree.ledger.was_at)
    if trust is not None and trust.verified is not None:
        log.debug("signatures at load: %d checked, %d checked before", trust.verified.verified,
                 trust.verified.cached)
        trust.verified.save(prune=False)
    return tree


def _claims_judged(tree: Tree, gate: Authorship, ledger: Ledger, foreign: list[Foreign],
                   others: dict[str, dict], ours: set[str]) -> None:
    """Her files loaded as a member's state claiming a key at an epoch above the newest this device
    saw, not the one her device derives there (vault/model/her_keys.py ``key_not_hers``): judged as on
    arrival (vault/services/absorbing.py ``_claims_a_key``), said, taken in at her epoch and given a
    new key of hers at unlock (the ledger's ``rolled``: rotation.py ``resume``).  Taken as stored, her
    node held her older key he kept at his epoch, unsaid; her next commit signed it, and her pending
    unshare's request (at her epoch) was dropped as done: her rotation undone (attack round 50b (1):
    a claim stored while she was locked, or held back while unlocked, then her unlock or restart).
    Only files this device saw (their newest epoch known); at it, judged by the digest of her key
    there the ledger keeps (``keys``: a state at exactly her epoch under her older key, 51b (1)), not
    judged where it keeps none (a ledger from before it).  Remembered (the ledger's ``claimed``, saved)
    until her re-key commits: a lock, or his next commit failing that re-key, no longer lets his key
    stand as hers (51b (2), (3))."""
    for node, _, signer, guest in foreign:
        if (guest or node.fid in ours or node.fid not in ledger.fids or (doc := others.get(node.fid)) is None
                or tree.get(node.ino) is not node):
            continue
        held = ledger.epochs.get(node.fid, 0)
        if (node.owner == tree.key.user_id and signer not in (None, node.owner) and node.dek
                and node.epoch < held):
            # Below her epoch (his state stored while she was locked): taken back, as on arrival
            # (absorbing.py, "written under an older key"), unsaid (an honest write during a revoke
            # looks alike), and re-keyed at unlock.  Taken as stored, her next commit signed the key
            # her rotation had retired, for good (attack round 53a (1)).
            ledger.claim(node.fid, node.epoch, said=False)
            ledger.rolled.add(node.fid)
            continue
        known = (ledger.key_known(node.fid, held, node.dek)
                 if node.epoch == held and node.dek and node.fid not in ledger.claimed else None)
        if not key_not_hers(tree, node, (None, held), node, signer, known=known):
            continue
        if ledger.claim(node.fid, held):  # said once a claim, not at each state or unlock
            gate.deny(doc, claim_said(signer, node.epoch, held))
        node.epoch = held  # his contents, under the key he holds, sealed again under hers at unlock
        ledger.rolled.add(node.fid)


def _claimed_keys_signed(tree: Tree, ledger: Ledger, pending: list[tuple[Node, list[tuple[str, bytes]]]],
                         others: dict[str, dict]) -> None:
    """Her own signed states of her files at the epoch whose key of hers this device saw, under a key
    her device did not derive there (her_keys.py ``her_key_unknown``): a key a member claimed, which
    her other device's commit signed before its re-key landed.  Taken as hers, this device kept its
    digest as her key and sealed her writes under the key the removed member holds, until that
    device's re-key arrived, for good if it never did (attack round 53a (6)).  Claimed here too
    (unsaid: her other device said it), and given a new key of hers at unlock (``rolled``)."""
    for node, _ in pending:
        if node.fid in others or node.fid in ledger.claimed or tree.get(node.ino) is not node:
            continue
        held = ledger.keys.get(node.fid)
        if held is None or held[0] != node.epoch:
            continue
        if her_key_unknown(tree, node, node.epoch, node.dek,
                           ledger.key_known(node.fid, node.epoch, node.dek)):
            ledger.claim(node.fid, node.epoch, said=False)
            ledger.rolled.add(node.fid)


def _hers_beside_copies(tree: Tree, store: Store, key: MasterKey, gate: Authorship, foreign: list[Foreign],
                        others: dict[str, dict], pending: list[tuple[Node, list[tuple[str, bytes]]]],
                        taken: list[tuple[Node, list[tuple[str, bytes]]]],
                        cut: list[tuple[Node, Node, bytes]]) -> list[tuple[Node, list[tuple[str, bytes]]]]:
    """Her files whose current revision is a writer's edit to keep only as a conflict copy beside her
    own leaf (CouchDB's rule made his current: more saves; authorship.py ``loaded_copy``): loaded as
    her leaf holds them, where she put them, under her key, and taken out of ``foreign`` (and
    ``others``): no writer's move to judge.  Loaded as his document says, her file moved out of his
    share was placed back in it under the key he holds, called his forged move (attack round 42b
    (4)), and with his version withheld it read EIO there at every unlock, hers hidden (42b (3)).
    Her next commit goes over his revision, as while mounted (arrivals.py ``keep``); the settling at
    the mount copies his edit where he wrote it (services/conflicts.py ``_beside_writers_current``).
    ``pending`` is given her names; returned: ``taken`` with her names taken in place of his."""
    for entry in list(foreign):
        node, links, signer, guest = entry
        doc = others.get(node.fid)
        if guest or doc is None or node.owner != key.user_id or tree.get(node.ino) is not node:
            continue
        hers = _her_leaf(store, key, gate, node, functools.partial(gate.loaded_copy, tree, doc, signer,
                                                                    (node, links)))
        if hers is None:
            continue
        log.info("%s: a writer's edit to copy is its current revision: her own leaf %s is loaded",
                 node.fid, hers[0].rev)
        foreign.remove(entry)
        del others[node.fid]
        lost = _take_her_leaf(tree, node, *hers)
        pending[:] = [(each, hers[1] if each is node else names_) for each, names_ in pending]
        taken = [(each, names_) for each, names_ in taken if each is not node]  # his names: no more
        if lost:
            taken.append((node, lost))
        if node.is_dir:
            _break_cycles(tree, (), cut)  # her folder's own names close no loop either
    return taken


def _her_leaf(store: Store, key: MasterKey, gate: Authorship, node: Node,
              fits: Callable[[Node], bool] | None = None) -> tuple[Node, list[tuple[str, bytes]]] | None:
    """Her own live leaf of ``node``'s file beside the current revision another signed, the first of
    ``_her_leaves`` that ``fits`` (``loaded_copy``: his is a copy beside it; None: any).  Only the
    first by generation was tried: her laptop's many saves under the old key (or her older state a
    server served above) hid her moved-out leaf, beside which alone his is a copy (attack round 43c
    (4)).  Tried as each is found, inside ``_her_leaves``' bounds: judged only after ``HER_LEAVES``
    were found, 16 copies of one old state of hers (genuine, none fitting) filled them first (45c
    (1)).  None found: the load is as before.  Unsaid: the settling judges every leaf, and says
    what it refuses."""
    for hers in _her_leaves(store, key, gate, node):
        if fits is None or fits(hers[0]):
            return hers
    return None


def _her_leaves(store: Store, key: MasterKey, gate: Authorship, node: Node,
                ) -> Iterator[tuple[Node, list[tuple[str, bytes]]]]:
    """Her own live leaves of ``node``'s file beside the current revision, one per body: signed by
    her, not a deletion, of the type loaded, opened; the highest key epoch first (her move out
    re-keys; the clear epoch is the signed one, checked as each opens), then as CouchDB's rule ranks
    them.  A leaf naming another signer (a member's own commit of her file says owner her too) is
    never checked, and one body stored under many revision ids (``_rev`` is not signed) is checked
    once: 256 of either filled the check cap above hers (attack round 45c (2)).  At most
    ``HER_LEAVES`` given, among at most ``HER_LEAVES_CHECKED`` bodies checked (each a signature to
    check; any number of altered ones costs a server nothing), among at most ``HER_LEAVES_READ`` leaves
    read; a cap reached with leaves left is said: her leaf may be among them."""
    local = replica.local_of(store)
    if local is None or not replica.in_conflict(local, node.fid):
        return
    read = replica.other_leaves(local, node.fid, limit=HER_LEAVES_READ + 1, one_per_body=True)
    unread = len(read) > HER_LEAVES_READ  # one more there: leaves left unread
    leaves = [leaf for leaf in read[:HER_LEAVES_READ] if _says_hers(leaf, key.user_id)]
    leaves.sort(key=_leaf_rank, reverse=True)
    bodies: set[bytes] = set()
    checked = given = 0
    for index, leaf in enumerate(leaves):
        body = _body_of(leaf)
        if body in bodies:
            continue  # this very body under another revision id: judged already
        bodies.add(body)
        if checked == HER_LEAVES_CHECKED or given == HER_LEAVES:
            _say_leaves_left(gate, node.fid, len(leaves) - index, checked, given, unread)
            return
        checked += 1
        try:
            if gate.trust.verify(leaf, author=key.user_id) != key.user_id:
                continue
            hers, links = node_from_doc(leaf, *open_node_doc(leaf, key))
        except VaultError:  # not hers after all (Forged), or does not open
            continue
        if stat.S_IFMT(hers.mode) == stat.S_IFMT(node.mode) and links:
            given += 1
            yield hers, links
    if unread:
        _say_leaves_left(gate, node.fid, 0, checked, given, unread)


def _says_hers(leaf: dict, user_id: str) -> bool:
    """Whether a leaf says it is her own live state: owner her, not a deletion, and signed by her (or
    unsigned: hers only while she signs nothing, ``Trust.verify``).  Unchecked."""
    return (leaf.get("owner") == user_id and not leaf.get("delete")
            and said_signer(leaf) in (user_id, None))


def _leaf_rank(leaf: dict) -> tuple[int, int, str]:
    """Her leaves' order: the key epoch it names (signed: checked as it opens), then CouchDB's rule."""
    epoch = leaf.get("epoch")
    return (epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else 0,
            generation(leaf["_rev"]), str(leaf["_rev"]))


def _body_of(leaf: dict) -> bytes:
    """A digest of what a leaf's signature covers and the signature: one signed state is one body,
    with one answer, however it is stored (under many revision ids: ``_rev`` is not signed; or
    re-encoded: keys reordered, 7 as 7.0, an unsigned key in ``sig``, which ``repr`` of the parsed
    JSON told apart: attack round 46e (1)).  The signer named and whether ``sig`` is there at all
    count too (they change the check's answer); a leaf with no canonical form (it fails its check)
    is told by its whole parsed form."""
    try:
        signed = canonical(leaf)
    except VaultError:
        signed = repr(sorted(((str(k), v) for k, v in leaf.items() if k not in ("_rev", "_revisions")),
                             key=lambda item: item[0])).encode()
    sig = leaf.get(SIG)
    by = repr(sig.get("by")) if isinstance(sig, dict) else type(sig).__name__
    parts = (signed, by.encode(), signature_of(leaf).encode())
    return hashlib.sha256(b"".join(len(part).to_bytes(8, "big") + part for part in parts)).digest()


def _say_leaves_left(gate: Authorship, fid: str, left: int, checked: int, given: int, unread: bool = False,
                     ) -> None:
    """Her leaves looked for and a cap reached, leaves left unchecked (a server storing hundreds of
    branches saying they are hers): said, for her leaf may be among them (the writer's revision is
    then judged as loaded, as before)."""
    gate.trust.alarms.warn("forged", fid, f"file {fid}: more leaves beside its current revision say they "
                           f"are yours than are checked ({checked} checked, {given} of yours tried, up to "
                           f"{left} left{', and more not read' if unread else ''}): your own leaf may be "
                           "among those left")


def _take_her_leaf(tree: Tree, node: Node, hers: Node, links: list[tuple[str, bytes]],
                   ) -> list[tuple[str, bytes]]:
    """``node``, loaded from a writer's document, made her leaf ``hers`` (``_hers_beside_copies``):
    his names go, her state and names come; its revision stays the current one (his), which her next
    commit goes over.  What is under a folder stays under it.  Returned: her names taken already."""
    for parent_ino, name in list(node.links):
        if (parent := tree.get(parent_ino)) is not None:
            tree.unlink_entry(parent, name, node)
        else:
            node.links.remove((parent_ino, name))
    rev = node.rev
    for slot in _LEAF_STATE:
        setattr(node, slot, getattr(hers, slot))
    node.rev = rev
    if rev is not None:  # her leaf's state over his revision: her names, judged as hers (74b (2))
        stand_on(tree, node, rev, node.owner)
    return _link_loaded(tree, node, links)


def _keep_undeleted(tree: Tree, key: MasterKey, gate: Authorship, ledger: Ledger,
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
        if fid not in replayed:  # her own older deletion: nothing of another device's beneath it
            _noted_beneath(tree, node, doc)
        taken += owed
        for child, link in waiting.pop(fid, ()):
            if tree.get(child.ino) is child and (lost := _link_loaded(tree, child, [link])):
                taken.append((child, lost))
        placed.append(node)
    return placed, taken


def _noted_beneath(tree: Tree, node: Node, doc: dict) -> None:
    """``node``, rebuilt from her own material, stands on ``doc``, the store's refused current revision:
    the revisions under it noted for the sync to fetch (arrivals.py ``note_beneath``; attack round 78a
    (3)).  A store that keeps no history here (a server's): nothing noted."""
    local = replica.local_of(tree.store)
    if local is not None and node.rev == doc.get("_rev"):
        note_beneath(tree, node, node.rev, replica.current_history(local, node.fid))


def _rebuilt_in_place(tree: Tree, key: MasterKey, gate: Authorship, ledger: Ledger, doc: dict,
                      node: Node, owed: list[tuple[Node, list[tuple[str, bytes]]]]) -> bool:
    """The user's own ``node``, loaded from ``doc``, a document another signed that is refused
    (no WRITE where it is: a READ recipient's rename or chmod), rebuilt from her own material
    exactly as a node whose deletion was refused (vault/tree/undeleting.py; issue 22), and put
    back where this device last saw it, under the name it last saw; what is under it stays
    under it.  False (left out, as before): a place this device does not know (none seen, or her
    deletion came from another device: ``Ledger.place_unknown``), a type neither file nor folder,
    or a file of hers that folders' entries are under (a type not known).  Where it was is put in
    ``owed`` (node, its links), placed by the caller once every node refused with it is rebuilt
    (``_owed_placed``: attack round 77c (1))."""
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
    """What a node rebuilt from her own material (``undeleting.rebuilt``, in ``_keep_undeleted``
    and ``_rebuilt_in_place``) takes from this device, then linked where it last saw it: at once,
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
    elif lost := _link_loaded(tree, node, links):
        owed.append((node, lost))


def _owed_placed(tree: Tree, owed: list[tuple[Node, list[tuple[str, bytes]]]],
                 ) -> list[tuple[Node, list[tuple[str, bytes]]]]:
    """Each rebuilt node of ``owed`` put where this device last saw it, once all are rebuilt (no
    refused document holds a name one of them wants); the names still held, returned for the clash
    rule (``place_taken``) once what is judged is settled (attack round 77c (1))."""
    taken = []
    for node, links in owed:
        if tree.get(node.ino) is node and (lost := _link_loaded(tree, node, links)):
            taken.append((node, lost))
    return taken


def _replays_refused(tree: Tree, store: Store, key: MasterKey, gate: Authorship, ledger: Ledger,
                     done: set[str]) -> list[Node]:
    """The user's own folders and files whose loaded document (hers) carries a ``seq`` of THIS
    device lower than one this device stamped or saw since (a store writer put her older document
    back, or a server's replay refused while mounted stayed the current row: issue 22, attack round
    18 (7)), and no leaf of a conflict met live: refused and rebuilt where this device last saw
    them, as a refused document another signed (``_rebuilt_in_place``; a file from her newest
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
        if doc is not None and _rebuilt_in_place(tree, key, gate, ledger, doc, node, owed):
            ledger.replays[node.fid] = doc.get("_rev")
            out.append(node)
    # All put back once all are rebuilt: one by one, a replay of her swap of two names gave the first
    # "(recovered ID)" (attack round 77c (1)).
    place_taken(tree, _owed_placed(tree, owed))
    return out


def _deletion_replayed(ledger: Ledger, key: MasterKey, doc: dict) -> bool:
    """Is ``doc``, her own deletion (signed by her), older than a state THIS device gave
    or saw since, of a file it last saw live: her older deletion put back over her
    restore (attack round 18 (8))?  Then it is refused, and the file rebuilt where this
    device last saw it (``_keep_undeleted``).  A deletion made on her other device is
    never judged so (``Ledger.own_replay``): taken, as before."""
    fid = doc["_id"]
    if not ledger.seen_live(fid):
        return False
    try:
        seq = seq_of(open_node_doc(doc, key)[1])
    except (VaultError, ValueError, TypeError):
        return False  # does not open: taken as a deletion, as before (nothing to judge it by)
    return ledger.own_replay(fid, seq)


def _identity(doc: dict) -> dict:
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


def _root_again(store: Store, key: MasterKey, root_fid: str, ledger: Ledger, deleted_by: str | None) -> Node:
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


def _revive_for_orphans(tree: Tree, pending: list[tuple[Node, list[tuple[str, bytes]]]],
                        others: set[str]) -> bool:
    """Her own live nodes loaded in no folder, whose folder her own removal took away: removed on one
    device while this one put them in it, and taken in without them (a sync that stored the removal
    while nothing was mounted, a ``kill -9`` between storing and taking in).  Their folders come back
    where this device last saw them (vault/tree/revival.py, as on arrival), committed before the mount
    serves, over the removal (``Ledger.replays``: her newer state put back over a revision, at
    ``rotation.resume``).  A document another signed is judged on arrival only.  Whether it linked a
    folder (its own document may name it under itself: the caller cuts that loop, 78b (2)); a folder a
    loop's cut put back has its name already, never linked back into the loop here."""
    out = Absorbed()
    folders = False
    for node, links in pending:
        if node.links or node.fid in others or tree.get(node.ino) is not node or not links:
            continue
        revival.revive(tree, links, tree.key.user_id, tree.key.user_id, out)
        if any(tree.holds(parent) for parent, _ in links):
            _link_loaded(tree, node, links)
            folders = folders or (node.is_dir and bool(node.links))
    for folder, rev in out.recommit:
        tree.ledger.replays[folder.fid] = rev
    return folders or bool(out.recommit)


def _link_loaded(tree: Tree, node: Node, links: list[tuple[str, bytes]], *,
                 guest_inodes: dict[str, int] | None = None) -> list[tuple[str, bytes]]:
    """Place ``node`` under each of its links; return the links whose name was taken."""
    taken = []
    for parent_fid, name in links:
        if not names.link_ok(tree, node.fid, name):
            continue
        parent_ino = tree.ino_of(parent_fid)
        if parent_ino is None and guest_inodes is not None:
            # A guest whose parent this user cannot open: a share's root.
            parent_ino = tree.add(phantom(0, parent_fid), guest_inodes).ino
            tree.sharing.phantoms.add(parent_ino)
        parent = tree.get(parent_ino) if parent_ino else None
        if parent is None or not parent.is_dir or name in parent.children:
            log.warning("skipping a dangling link of node %s", node.fid)
            if parent is not None and parent.is_dir:
                taken.append((parent_fid, name))
            continue
        tree.link_entry(parent, name, node)
    return taken


def place_taken(tree: Tree, taken: list[tuple[Node, list[tuple[str, bytes]]]]) -> list[tuple[int, bytes]]:
    """The names each node still held found taken (``_link_loaded``), once what was judged is settled:
    ``_link_beside``.  At the load, and when shares are admitted together (absorbing.py
    ``_admit_new_shares``: dropped, a file whose name another share's node took, that name refused
    since, was in no folder until an unlock: attack round 73d (2)).  The entries changed."""
    entries: list[tuple[int, bytes]] = []
    for node, lost in taken:
        if tree.get(node.ino) is node:
            entries += _link_beside(tree, node, lost)
    return entries


def _link_beside(tree: Tree, node: Node, links: list[tuple[str, bytes]]) -> list[tuple[int, bytes]]:
    """Names still held by another live node once the load is judged (two devices gave one name while
    apart, no forgery): ``link_clashing``.  A commit of the one shown beside keeps that name.  One
    no node holds any more (its holder's name was left out since) is simply taken.  The folders it
    shows in kept as a map: looked through per name, its names cost k^2/2 looks (73d (5)); where it
    shows already, a name no node holds is taken (a hard link of hers: skipped, it was lost when another
    owner's name held it first, refused since), one held gets no name beside, noted all the same
    (arrivals.py ``clash``, 74b (1))."""
    shown_in = dict(node.links)  # folder inode -> a name it shows under there
    entries: list[tuple[int, bytes]] = []
    for parent_fid, name in links:
        parent = tree.find(parent_fid)
        if (parent is None or not parent.is_dir or parent.children is None
                or parent.children.get(name) == node.ino):
            continue
        if name not in parent.children:
            tree.link_entry(parent, name, node)
            shown_in.setdefault(parent.ino, name)
            entries.append((parent.ino, name))
            continue
        entries += clash(tree, parent, name, node, shown_in)
    return entries


def names_across(tree: Tree, gate: Authorship | None, nodes: list[Node], signers: dict[str, str],
                 taken: list[tuple[Node, list[tuple[str, bytes]]]],
                 ) -> list[tuple[Node, list[tuple[str, bytes]]]]:
    """The names ``nodes`` (placed) hold in a folder of another owner than the node's, refused as an
    arrival's are (``Authorship.may_name``: a node is named only in its own owner's folders, or in a
    phantom), each taken out and said,
    naming the signer of the node's document (``signers``; its owner if absent).  An owner compare
    per name: one pass, in any order (attack rounds 70a (6), 71a (2)).  Returned: ``taken`` (names a
    node could not take, another holding them) without the refused ones, so none is shown beside its
    holder either.  At the load and when a share arrives (``admit_guests``)."""
    if gate is None or tree.sharing is None:
        return taken
    for node in nodes:
        for ino, name in list(node.links):
            parent = tree.get(ino)
            if parent is None or tree.get(node.ino) is not node or parent.owner == node.owner:
                continue
            signer = signers.get(node.fid, node.owner)
            if gate.may_name(tree, signer, node.owner, parent):
                continue
            tree.unlink_entry(parent, name, node)
            gate.name_refused(node, signer, parent, name)
    out = []
    for node, lost in taken:
        kept = []
        for parent_fid, name in lost:
            parent = tree.find(parent_fid)
            signer = signers.get(node.fid, node.owner)
            if parent is not None and not gate.may_name(tree, signer, node.owner, parent):
                gate.name_refused(node, signer, parent, name)
                continue
            kept.append((parent_fid, name))
        if kept:
            out.append((node, kept))
    return out


def _break_cycles(tree: Tree, first: Iterable[Node] = (), cut: list[tuple[Node, Node, bytes]] | None = None,
                  ) -> None:
    """A folder is never inside itself, whoever's documents say so (a grantee's,
    two devices' concurrent moves): walking the names down from the root
    (then from every folder not reached), a name leading back to a folder on
    the way down is left out, and said.  Nothing walking the tree loops then.

    A loop of folders (one name each: nodes.py) is never reached from the root, only from a
    folder in it, and the name left out is the one into that folder: its own document's.  So
    the walks start from ``first``, the nodes whose document another signed (judged after
    this): a loop a writer's move closes loses his name, never one of the owner's, and his
    document, refused, gives the folder back where it was (attack round 28c (2)).

    ``cut``: each folder whose name is left out, the folder and the name, added; in no folder then
    (its loop reached from no folder), the load puts it back (unlooping.py: attack round 78b (2), (3))."""
    state: dict[int, bool] = {}  # inode -> still on the way down (False: done)
    alarms = tree.trust.alarms if tree.trust is not None else None
    for start in [tree.root, *first, *tree.nodes()]:
        if not start.is_dir or start.ino in state:
            continue
        state[start.ino] = True
        way = [(start, list((start.children or {}).items()))]
        while way:
            parent, todo = way[-1]
            if not todo:
                state[parent.ino] = False
                way.pop()
                continue
            name, ino = todo.pop()
            child = tree.get(ino)
            if child is None or not child.is_dir or state.get(ino) is False:
                continue
            if state.get(ino):
                tree.unlink_entry(parent, name, child)
                if cut is not None:
                    cut.append((child, parent, name))
                said = f"folder {child.fid} was named inside itself (in {parent.fid}): that name is left out"
                if alarms is not None:
                    alarms.warn("cycle", child.fid, said)
                else:
                    log.warning("%s", said)
                continue
            state[ino] = True
            way.append((child, list((child.children or {}).items())))


def admit_guests(tree: Tree, guests: list[tuple[Node, list[tuple[str, bytes]]]],
                 inodes: dict[str, int] | None = None, *, unlooped: bool = True,
                 signers: dict[str, str] | None = None) -> list[tuple[Node, list[tuple[str, bytes]]]]:
    """Add others' nodes shared with this user (at load, or when a share
    arrives while unlocked), and show each share's root in its folder.
    Returns the links whose name was taken, by node.  ``unlooped``: no
    folder left inside itself (the load does that once, after).  ``signers``
    (fid -> who signed its document, if not its owner; when a share arrives):
    their names in folders of other owners judged (``names_across``; the
    load judges every node's at once)."""
    inodes = {} if inodes is None else inodes
    fresh = [(node, links) for node, links in guests if not tree.holds(node.fid)]
    for node, _ in fresh:
        tree.add(node, inodes)
    taken = [(node, lost) for node, links in fresh
             if (lost := _link_loaded(tree, node, links, guest_inodes=inodes))]
    if signers is not None:
        taken = names_across(tree, tree.authorship, [node for node, _ in fresh], signers, taken)
    if unlooped and fresh:
        _break_cycles(tree)
    _place_shares(tree, inodes)
    return taken


def _place_shares(tree: Tree, inodes: dict[str, int]) -> None:
    """Show each share's root not shown yet in ``shared/<owner>/`` or ``groups/<group>/``."""
    shares, root = tree.sharing, tree.root

    def folder(parent: Node, name: bytes, fid: str) -> Node | None:
        if (ino := parent.children.get(name)) is not None:
            found = tree.node(ino)
            return found if found.ino in shares.virtual else None
        node = tree.add(virtual_dir(0, fid, root), inodes)
        shares.virtual.add(node.ino)
        parent.children[name] = node.ino
        parent.subdirs += 1
        node.links.append((parent.ino, name))
        return node

    # The inodes each view folder shows, gathered once a call: a look per reach, not a scan of the
    # folder per reach (quadratic in the shares one member gives her: attack round 71c (2)).
    shown: dict[int, set[int]] = {}
    for reach in shares.my_reaches():
        grant = reach.grant
        node = tree.find(grant.fid)
        if node is None:
            continue
        if grant.group:
            top, label = GROUPS_DIR, shares.groups.get(grant.grantee, {}).get("groupname", grant.grantee)
        else:
            top, label = SHARED_DIR, shares.users.get(grant.owner, {}).get("username", grant.owner)
        outer = folder(root, top, f"virtual:{top.decode()}")
        if not isinstance(label, str) or not names.valid(label):
            names.refuse(tree, f"label:{grant.owner}:{grant.grantee}", "a user or group name that is not "
                         "a file name: its shares are shown under its id")
            label = grant.grantee if grant.group else grant.owner
        inner = outer and folder(outer, str_to_name(label), f"virtual:{top.decode()}:{label}")
        if inner is None:
            # Her own folder (or one a drop or an import made before 52t) holds the name: her
            # shares are not shown, and she is told so in ``fusevault status``, not only the log;
            # what is under that folder is hers, not the share it looks like (attack round 52t (2)).
            names.refuse(tree, f"reserved:{top.decode()}",
                         f"your own {top.decode()!r} at the root of your drive hides the files others "
                         f"share with you there: what is in it is not theirs; rename it to see the shares")
            continue
        ino = node.ino
        if (there := shown.get(inner.ino)) is None:
            there = shown[inner.ino] = set(inner.children.values())
        if ino in there:
            continue
        name = node.links[0][1] if node.links else grant.fid.encode()
        if name in inner.children:
            # Numbered until free: ``groups/<group>/`` gathers every member's shares, and a made name
            # another share holds was written over, hers shown nowhere (attack round 70c (3)).
            name = names.made(name, grant.fid, inner.children)
        inner.children[name] = ino
        there.add(ino)  # a second reach of the file (another share on it) shows it once
        inner.subdirs += int(node.is_dir)
