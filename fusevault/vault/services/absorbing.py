"""Taking into a user's tree what someone else just wrote to the vault.

In a shared mount each unlocked user has a tree of their own over one store.
When one of them commits, the others take the new documents in here, at
once and in memory, before any other request runs:

- a node document of a node the tree holds replaces its attributes, its
  names (links) and its key epoch; contents the reader has open but not
  changed switch to the new version (the old one stays readable to reads
  already under way and is closed at the file's last release); contents
  the reader is changing stay theirs, and their next commit is a version
  after this one (every version is kept);
- a node document whose parent the tree holds, and which the user can open
  (their own, or with a key sealed to them), becomes a new node there;
- a node the user can no longer open (deleted, or its key rotated away from
  them) leaves the tree;
- a change of shares, groups or users reloads the user's Guests (the shares in force), and guest
  nodes the user no longer reaches leave the tree and lose their keys.

A revoke never loses what the user wrote before it: a guest file holding
their unsaved writes (open, written, not yet closed) loses its permission at
once (no path reaches it, further writes are refused) but keeps its key and
names until those writes are saved as the owner's next version (``save``,
at once; the owner's mount then seals it again under the new key).  Files
open only for reading keep serving what was read so far through their open
handles, and leave the tree at once.

What the kernel may cache about each change is returned, for the caller to
invalidate (from a worker thread).
"""

from __future__ import annotations

import logging

from fusevault.crypto import aead
from fusevault.crypto.signing import signature_of, signer_of
from fusevault.encoding import b64d, loads_untrusted
from fusevault.errors import CorruptData, Forged, VaultError
from fusevault.store import replica
from fusevault.vault.files.sidecar import write_vfmeta
from fusevault.vault.model import alarms, sealed_for
from fusevault.vault.model.groups import GROUP
from fusevault.vault.model.her_keys import claim_said, her_key_unknown, key_not_hers
from fusevault.vault.model.history import carried, made_over
from fusevault.vault.model.ledger import parents_of, path_shown, writer_seq
from fusevault.vault.model.nodes import NODE, ROOT_INODE, Node, node_from_doc, open_node_doc
from fusevault.vault.model.sharing import FILE_KEY, SHARE, Grant
from fusevault.vault.model.users import USER
from fusevault.vault.services.punched_wants import inherits_punched
from fusevault.vault.tree import phantoms, revival
from fusevault.vault.tree.arrivals import (
    ATTRS,
    BENEATH_LIMIT,
    CONTENTS,
    Absorbed,
    crossing,
    into_a_file,
    judge,
    keep,
    leave,
    makes_cycle,
    may_take,
    note_replayed,
    open_doc,
    owner_changed,
    past_the_xattr_cap,
    relink,
    retyped,
    signed_state,
    stand_on,
    unsaved,
    wrapped_by_her,
)
from fusevault.vault.tree.guests import key_files, open_guest
from fusevault.vault.tree.linking import admit_guests, place_taken
from fusevault.vault.volume import Volume

log = logging.getLogger(__name__)

SHARING_TYPES = frozenset((SHARE, GROUP, USER, FILE_KEY))
# Batches of arrivals a member's state under a key not known here as hers waits for her re-key that
# explains it (``_waits_for_her_re_key``) before it is taken for his claim and said.
HER_RE_KEY_BATCHES = 8
# Absorbed is what every caller gets back (vault/tree/arrivals.py holds it, as the unlock uses it too).
__all__ = ["Absorbed", "absorb", "absorb_arrivals", "absorb_node", "admit_new", "retry_awaiting",
           "save_leaving", "settle_busy", "sweep", "absorb_beneath"]


def absorb(volume: Volume, docs: list[dict], *, own: bool, here: bool = False) -> Absorbed:
    """Take ``docs`` (just committed, with their new revs) into ``volume``.

    ``own``: the volume wrote them itself, so its nodes are already right.
    ``here``: another user's volume in this process committed them, having
    checked that user's rights itself (a write saved just after its share
    ended is theirs to save): their signature is checked, not their grant."""
    out = Absorbed()
    if volume.key is None:  # locked meanwhile
        return out
    if volume.sharing is not None and volume.sharing.leaving and not own:
        sweep(volume, out)
    if volume.sharing is not None and volume.sharing.awaiting:
        retry_awaiting(volume, out)
    # A document of a sharing type, or at an id the seat's sharing state knows whatever its type now:
    # a Share replaced by a body of another kind (and its deletion carrying that type) reloaded nothing,
    # and the grant checked from the older body stayed counted past its owner's unshare (round 71c (1)).
    if volume.sharing is not None and any(
            d.get("type") in SHARING_TYPES or volume.sharing.knows(d.get("_id")) for d in docs):
        if not own:
            volume.tree.check_keys()  # a share or member gone: keys her other device gave meanwhile
        volume.sharing.reload(volume.store, docs)  # only what changed is checked again (69d (2))
        if volume.trust is not None:
            try:
                volume.trust.save()  # users met just now stay pinned (first use)
            except VaultError as err:
                log.warning("the pinned keys were not saved yet: %s", err)
        _drop_unreached(volume, out)
        _admit_new_shares(volume, out)
    elif volume.sharing is not None and any(
            d["_id"] in volume.sharing.roots and not volume.tree.holds(d["_id"]) for d in docs):
        _admit_new_shares(volume, out)  # a peer sent a share's file after the share
    if own:
        return out
    for doc in docs:
        if doc.get("type") == NODE:
            _take(volume, doc, out, here=here)
    return out


def _take(volume: Volume, doc: dict, out: Absorbed, **how: bool) -> None:
    """``absorb_node``, for one document of many: what it cannot take in is said and
    skipped, and the others are taken in still.  Anything but a VaultError is a bug
    an odd document reached: an alarm, never the end of the loop that takes in
    documents (a shared mount's store watcher, the sync, every user's arrivals)."""
    fid = str(doc.get("_id"))
    try:
        absorb_node(volume, doc, out, **how)
    except VaultError as err:
        log.warning("could not take in a change of %s: %s", fid, err)
    except Exception as err:
        log.exception("taking in a change of %s failed", fid)
        if volume.key is not None:
            alarms.for_user(volume.key.user_id).warn(
                "malformed", fid, f"a change of file {fid} could not be taken in "
                f"({type(err).__name__}): skipped, the file keeps what it had")


def absorb_beneath(volume: Volume, fetched: dict[tuple[str, str], dict]) -> Absorbed:
    """Take in the revisions a refused one was stacked on (``tree.beneath``; attack round 39a (5)).

    A server (or a peer with no WRITE) that puts a revision over a writer's edit made while this
    device was away has it refused here, and the node stands on it (``keep``): her next commit would
    go over it and so over the edit underneath, which this device never took in, erasing it on every
    replica.  The sync fetches those revisions (``fetched``: by (id, rev)); the newest admissible one is
    taken in as any other writer's, and the node stands on the refused revision again, so her next
    commit holds that edit.  None admissible or none sent: said, as the edit is lost to this device."""
    out = Absorbed()
    tree = volume.tree
    for fid, (top, unseen) in list(tree.beneath.items()):
        tree.beneath.pop(fid, None)
        beside, deeper = fid in tree.beneath_beside, fid in tree.beneath_deeper
        tree.beneath_beside.discard(fid)
        tree.beneath_deeper.discard(fid)
        node = tree.find(fid)
        if node is None or node.rev != top:
            continue  # taken past since (a newer revision admitted; her own commit over it said that)
        sent = [doc for rev in unseen if (doc := fetched.get((fid, rev))) is not None]
        if beside and sent and (local := replica.local_of(volume.store)) is not None and replica.in_conflict(
                local, fid):
            # Stacked on her other device's edit made beside the state held here (her desktop's, a
            # leaf of the conflict): settled against hers by the rules, both kept (vault/services/
            # conflicts.py ``_settle_one``, handed again by the caller); taken over it, her desktop's
            # edit was lost instead (attack round 78a (1)).
            tree.came_beneath[fid] = sent[0]
            _newest_withheld(volume, fid, unseen, fetched, sent[0])
            continue
        for doc in sent:
            took = Absorbed()
            _take(volume, doc, took)
            out.add(took)
            if node.ino in took.inodes:
                _newest_withheld(volume, fid, unseen, fetched, doc)
                break
        else:
            _withheld(volume, fid, deeper)
        tree.beneath.pop(fid, None)  # a refused one met on the way noted its own
        tree.beneath_beside.discard(fid)
        tree.beneath_deeper.discard(fid)
        if tree.find(fid) is node:
            stand_on(tree, node, top)  # the refused revision stays the store's current one: her next commit's
    return out


def _withheld(volume: Volume, fid: str, deeper: bool = False) -> None:
    """Nothing under a refused (or replayed) revision was sent or could be taken in: said.  ``deeper``:
    its history passed the revision held here deeper than the ``BENEATH_LIMIT`` fetched, so a change
    made under those (padded by the server, whose word the history is) is out of this device's reach:
    said as that, never left silent (attack round 80a (1))."""
    if deeper:
        alarms.for_user(volume.key.user_id).warn(
            "withheld", fid, f"a change of file {fid} may lie deeper in the history served than the "
            f"{BENEATH_LIMIT} revisions this device fetches, and none of those was sent or could be taken "
            "in: the file shows what this device last took in, and a write to it goes over them")
        return
    alarms.for_user(volume.key.user_id).warn(
        "withheld", fid, f"a change of file {fid} lies under a refused one and was not sent "
        "here: the file shows what this device last took in, and a write to it goes over both")


def _newest_withheld(volume: Volume, fid: str, unseen: list[str], fetched: dict[tuple[str, str], dict],
                     taken: dict) -> None:
    """An older revision under a refused one taken (or settled) while a newer one was not sent (one
    sent and refused is said as such): what lay between is lost to this device, said (``withheld``),
    never taken for all there was."""
    newer = unseen[:unseen.index(taken["_rev"])] if taken.get("_rev") in unseen else []
    if any((fid, rev) not in fetched for rev in newer):
        _withheld(volume, fid)


def _stored(volume: Volume, fid: str) -> dict | None:
    """The stored document of ``fid`` looked up again, or None; a row whose
    body does not read (a store writer's: nested too deep, not JSON) is a
    ``malformed`` alarm and None, never an exception that drops the batch
    being taken in with it (and every later one, while a file waits)."""
    try:
        return volume.store.get(fid)
    except CorruptData as err:
        alarms.for_user(volume.key.user_id).warn("malformed", fid, f"file {fid} is left out: {err}")
        return None


def absorb_arrivals(volume: Volume, docs: list[dict]) -> Absorbed:
    """Take in documents a peer sent: as ``absorb``, again while folders that
    arrived give files that came before them a place to go.

    A folder changed after its files comes after them in the peer's changes
    feed, maybe batches later: such files wait in the tree (``Tree.unplaced``)."""
    out = _absorb_arrivals(volume, docs)
    _claimed_re_keyed(volume, out)
    return out


def _claimed_re_keyed(volume: Volume, out: Absorbed) -> None:
    """Her files whose node holds a key a member claimed (the ledger's ``claimed``): her re-key asked
    again at each batch, until one commits.  Asked once, a re-key his next commit made fail ("changed
    by someone else": logged and dropped, fs/arrivals.py ``_rekey``) was never asked again, and her
    file stayed under the older key he kept (attack round 51b (3)).  One ask a batch: bounded; none
    while its contents are being sealed or committed (a re-key under way: asked again, it sealed the
    whole file again after it).  None for a node with no name (removed, held only while open: no key
    left to give it, 52a (2)); its claim stays, unless her own removal ends it (``Ledger.committed``):
    a member's removal is undone by his next state, which brought it back under the key he claimed,
    taken as hers once a missing name had ended the claim (attack round 53a (2))."""
    ledger = volume.ledger
    if ledger is None or volume.key is None or not ledger.claimed:
        return
    asked = {id(node) for node in out.rekey}
    for fid in list(ledger.claimed):
        node = volume.tree.find(fid)
        if (node is not None and node.links and node.owner == volume.key.user_id and node.dek
                and id(node) not in asked and not (node.lock is not None and node.lock.locked())):
            out.rekey.append(node)


def _absorb_arrivals(volume: Volume, docs: list[dict]) -> Absorbed:
    out = absorb(volume, docs, own=False)
    _retry_incomplete(volume, out)
    if not any(d.get("type") == NODE for d in docs):
        return out  # no folder came, so nothing waiting finds its place
    while True:
        count = len(volume.tree)
        waiting = {d["_id"]: d for d in docs if d.get("type") == NODE and not volume.tree.holds(d["_id"])}
        for fid in list(volume.tree.unplaced() - waiting.keys()):
            if (doc := _stored(volume, fid)) is None or volume.tree.holds(fid):
                volume.tree.placed(fid)
            else:
                waiting[fid] = doc
        if waiting:
            out.add(absorb(volume, list(waiting.values()), own=False))
        if len(volume.tree) == count:
            return out


def absorb_node(volume: Volume, doc: dict, out: Absorbed, *, again: bool = False, here: bool = False,
                settled: bool = False) -> None:
    """Take one document in (the module's docstring says how).  ``settled``: the conflict settling's
    own kept state (vault/services/conflicts.py ``_adopt``), taken in now whatever its key: the
    settling judges it."""
    tree = volume.tree
    node = tree.find(doc["_id"])
    if node is not None and node.rev == doc["_rev"] and not again:
        return
    sharing = tree.sharing
    signer = None
    if not doc.get("_deleted") and (judged := judge(tree, doc, node)) is not False:
        doc, signer = judged or (doc, None)
    elif not doc.get("_deleted"):
        keep(tree, node, doc)
        return
    if not doc.get("_deleted") and owner_changed(tree, doc, node):
        keep(tree, node, doc)  # another's document at the id of hers: the node keeps what it had, as at load
        return
    try:
        opened = None if doc.get("_deleted") else open_doc(tree, doc)
    except CorruptData as err:  # it opens, but does not hold (a key epoch it seals and does not name)
        if tree.authorship is not None:
            tree.authorship.deny(doc, f"signed by {signer or doc.get('owner')}: {err}")
        keep(tree, node, doc)  # refused: the file keeps what it had, and her next commit goes over it
        return
    if opened is not None and phantoms.gives_way(tree, node, opened[0]):
        node = None  # a placeholder, never a prior state: the document is a new node's (71a (1))
    if opened is not None and signer is not None and here:
        tree.vouched[doc["_id"]] = (signer, opened[0].head, signature_of(doc))
    if (opened is not None and opened[1] and (node is None or signer in (None, doc.get("owner")))
            and not _replay(volume, doc, opened[0])):
        # A folder of hers removed meanwhile: brought back for what was put in it.  Not for a writer's
        # move of a node held here: a move into her trash is refused (round 28c (3)).
        revival.revive(tree, opened[1], signer, doc.get("owner"), out)
    if opened is not None and (retyped(node, opened[0]) or into_a_file(tree, opened[1])):
        # Whoever signed it: a file turned folder has no children map here (and
        # a folder turned file would leave its children nowhere); a file is no folder.
        why = "it changes the file's type" if retyped(node, opened[0]) else "it names a file as its folder"
        if tree.authorship is not None:
            tree.authorship.deny(doc, f"signed by {signer or doc.get('owner')}, {why}")
        else:
            log.warning("%s: refused a change: %s", doc["_id"], why)
        keep(tree, node, doc)
        return
    if (opened is not None and signer is not None and not here
            and not may_take(tree, doc, signer, node, opened)):
        keep(tree, node, doc)
        if node is not None and node.owner == volume.key.user_id and past_the_xattr_cap(
                tree, signer, node, opened[0]):
            # Her state put back over his at once: left the store's current row, her next unlock
            # (which loads it unjudged for size) took his values whole (attack round 51a (2)).
            out.recommit.append((node, doc["_rev"]))
        return
    if opened is not None and not here and not _version_here(volume, opened[0], node):
        # Its version (document or records) is still on its way from the peer:
        # the tree keeps what it had (a new file is not shown yet), and looks
        # again when more arrives.  Before the ledger: this state is not seen yet.
        tree.wait_for_version(doc["_id"])
        return
    if (opened is not None and node is not None and not here and not settled
            and _waits_for_her_re_key(volume, node, opened[0], signer)):
        return  # before the ledger too: this state is not seen yet
    tree.complete(doc["_id"])
    if (opened is not None and node is not None and (ledger := volume.ledger) is not None
            and _served_over(volume, node, doc, opened[0], signer)
            and opened[0].epoch < ledger.epochs.get(node.fid, 0)):
        out.rekey.append(node)  # under a key older than this device gave it: a new one, once taken in
    # Judged before the ledger takes its epoch in: a claim is taken at her epoch, never his (51b (2)).
    # A new node (her file in her trash, forgotten here) is judged against the ledger (53a (4)).
    claim = None if opened is None else (_claims_a_key(volume, node, opened[0], signer) if node is not None
                                         else _claims_as_seen(volume, *opened, signer))
    if volume.ledger is not None and not volume.ledger.admit(tree, doc, opened and opened[0],
                                                             lambda: _in_conflict(volume, doc, node)):
        # Older than this device has seen: reported, what the tree holds stays,
        # and is committed again over the replay (the ledger put it on top of it).
        if node is not None and node.owner == volume.key.user_id and node.rev == doc["_rev"]:
            out.recommit.append((node, doc["_rev"]))
        return
    if opened is not None and crossing(tree, doc, signer, node) and _loops(volume, node, opened[1], out):
        if _moved_here(volume, node, opened[1]):
            # Two folders moved into each other on two of her devices while apart: each device keeps
            # its own folder where it is here and commits it over the other's move, made over it, so
            # both moves are undone, the same on every device; none is a forgery (round 40b (8)).
            stand_on(tree, node, doc["_rev"])
            node.seq, node.over = opened[0].seq, opened[0].over
            out.recommit.append((node, doc["_rev"]))
            log.info("%s: moved into itself by her other device's move crossing this one's: kept here",
                     node.fid)
        else:
            # No move of this device's closes the loop: her other device's moves, some not here yet
            # (sent in another order, or in a later batch: one device's own moves that swap two
            # folders' nesting).  Looked at again at the next arrival (round 41a (2)).
            tree.wait_for_version(doc["_id"])
        return
    if opened is not None and revival.kept_over_removal(tree, node, opened[1], doc["_rev"], opened[0], out):
        return  # it holds what was put in it meanwhile: edit beats delete
    if _her_deletion(volume, node, opened, signer):
        volume.ledger.trashed_elsewhere(doc["_id"], opened[0].seq)  # where it left from: not known here
    if opened is None:
        if node is None:
            return
        if sharing is not None and node.ino in sharing.phantoms:
            return  # a share root's real parent: its links need it, never shown
        if (sharing is not None and not doc.get("_deleted") and not doc.get("delete") and node.dek
                and tree.perm(node) is not None):
            # Still shared with the user, under a key not sealed to them yet
            # (the owner seals it right after committing it): kept as it is,
            # tried again once something else is committed.  Their own
            # writes meanwhile are under the older key, which the owner's
            # mount replaces again.  Nor are its names: none is judged by its signer (``stand_on``).
            stand_on(tree, node, doc["_rev"])
            sharing.awaiting.add(doc["_id"])
            return
        if (sharing is not None and not node.dek and not doc.get("_deleted") and not doc.get("delete")
                and node.owner != volume.key.user_id and doc.get("owner") in sharing.givers()):
            # It left while open here, and its owner shares with the user
            # again: its key may come right after this document.
            sharing.awaiting.add(doc["_id"])
            return
        if sharing is not None and (node.ino in sharing.leaving or unsaved(node)):
            # The user's last writes are saved over this revision (edit beats
            # delete), then the node leaves.
            stand_on(tree, node, doc["_rev"])
            if node.ino not in sharing.leaving:
                sharing.leaving.add(node.ino)
                out.save.append(node)
            return
        leave(tree, node, out)
        return
    fresh, links = opened
    if signer not in (None, fresh.owner) and fresh.owner == volume.key.user_id:
        # A writer's ``previous`` naming her file replaced before ``replaced_by``:
        # never carried into her next commit, which would vouch for it.
        fresh.previous = carried(volume.store, volume.key, fresh.previous)
    # A share root's parent the user may open now: its owner its document's (vault/tree/phantoms.py).
    real = node is not None and phantoms.made_real(tree, node, fresh.owner)
    if sharing is not None:
        sharing.awaiting.discard(doc["_id"])
    before: list[Grant] = []
    added = False
    if node is None:
        if not any(tree.holds(parent) for parent, _ in links):
            if links:
                tree.wait_for_folder(doc["_id"])  # its folder may come later
            return
        tree.placed(doc["_id"])
        node = tree.add(fresh, rejoin=False)  # what its dropped node held goes back once it is placed
        added = True
        _new_node_judged(volume, node, doc, signer, claim, out)
        if node.fid in tree.keys_ahead:
            _key_came_first(volume, node)
    else:
        if node.owner == volume.key.user_id and fresh.epoch < node.epoch:
            # Written under an older key (by a recipient during a revoke):
            # the file takes it back until the owner seals it again: remembered (the ledger's
            # ``claimed``, saved at once), so a lock or his next commit before her re-key lands
            # never leaves it so for good (attack round 52a (1)).
            out.rekey.append(node)
            if volume.ledger is not None and node.owner == fresh.owner:
                volume.ledger.claim(node.fid, fresh.epoch, said=False)  # as an honest write looks: unsaid
        elif claim is not None:
            _claim_taken(volume, node, doc, signer, claim)
            out.rekey.append(node)  # his contents, under the key he holds, sealed again under hers
        elif _claimed_key_signed(volume, node, fresh, signer):
            out.rekey.append(node)  # her other device signed a key claimed there: a new key of hers
        before = _shares_before_a_writers_move(volume, node, links, signer)
        if fresh.seq is not None and fresh.seq == node.seq and node.rev and node.rev != doc["_rev"]:
            # The same state under another revision (a copy of it put beside or on top of it): the
            # revisions it was held under, so that a change made over it still descends from it
            # (``_held_under``; attack round 40a (3)).
            seq, revs = tree.same_state.get(node.fid, (fresh.seq, set()))
            same = revs if seq == fresh.seq else set()
            # Stacked over revisions never taken here, it is a replay hiding them: noted beneath it to
            # be fetched, before it is taken (attack round 80a (4)).
            note_replayed(tree, node, doc, same)
            tree.same_state[node.fid] = (fresh.seq, same | {node.rev})
        _update(volume, node, fresh, out)
        if node.owner == volume.key.user_id and signer not in (None, node.owner) \
                and not wrapped_by_her(tree, doc):
            # A member's state taken under her key held here (arrivals.py ``_open_mine``): her own
            # wrapping committed over it at once, so her unlock and members' devices find hers (53c (2)).
            out.recommit.append((node, doc["_rev"]))
        if volume.ledger is not None and node.owner == volume.key.user_id:
            # Hers, or judged no claim (taken at her epoch otherwise): her key there, as seen here.
            volume.ledger.saw_key(node.fid, node.epoch, node.dek)
    decided = relink(tree, node, links, out, signer)
    if sharing is not None and node.owner != volume.key.user_id:
        # Another's node: its names in folders not held here kept under phantoms, as the load keeps them
        # (linking.py ``link_loaded``): dropped, his seat judged a write to her file as if it sat only
        # where he sees it, and his next commit of it took her name in her own folder away (attack round
        # 73d (6)).
        phantoms.placed_as_a_guest(tree, node, links, decided)
    signed_state(tree, node, signer)  # before its names are judged again
    if real:
        phantoms.names_judged_again(tree, node, out)
    if added and node.links:
        tree.rejoin(node, signer)  # placed first: a folder held above it now stays out (round 46b (1))
        if out.judged is not None:
            out.judged.linked(tree, node)  # it may hold something now: what is live lies under it
    tree.note_moved(node, before)
    if not here:
        _judged_while_granted(volume, fresh, signer)  # the node in the tree now: its owner is known
    if volume.ledger is not None and node.owner == volume.key.user_id and node.links:
        volume.ledger.arrived(node.fid, parents_of(node, tree.fid_at), signer in (None, node.owner))
        volume.ledger.saw_mode(node)
        volume.ledger.saw_name(node, tree.fid_at)
    out.inodes.append(node.ino)
    if not node.links:
        tree.purge_if_unused(node)


def _claims_a_key(volume: Volume, node: Node, fresh: Node, signer: str | None) -> int | None:
    """The epoch a member's state of her file claims (then lowered to the one held), if it carries a key
    other than the one held here at an epoch not below the held one's: a claim (attack round 45c (4),
    (5), limits); None if not.  A member cannot re-key (only her devices do); he can seal any epoch and
    carry any wrapping of her older key he once held.  Taken as it was, her node held the old key at
    his epoch and her next commit (a chmod, a write) signed it: her unshare undone, the revoked read
    what she wrote next.

    His contents are sealed under the key he holds, so they are taken in (nothing of his is lost) at
    the epoch held, never his (``fresh.epoch``), and her device seals them again under a new key of
    hers, as a write made under her older key (``out.rekey``); said (``_claim_taken``).  A key her
    device derived at that epoch is hers (her other device's re-key he took in before this device did:
    vault/model/her_keys.py ``her_key_at``): taken, not said.  Judged before the ledger takes the
    state's epoch in (``admit``): it keyed his epoch as hers, and her unlock then took his state at
    it unsaid (attack round 51b (2))."""
    if not _key_not_hers_here(volume, node, fresh, signer):
        return None
    claimed, fresh.epoch = fresh.epoch, node.epoch
    return claimed


def _claims_as_seen(volume: Volume, fresh: Node, links: list[tuple[str, bytes]],
                    signer: str | None) -> int | None:
    """``_claims_a_key`` for a member's state of her file the tree does not hold (in her trash,
    forgotten here: he brings it back), judged as the load judges one (vault/tree/key_claims.py
    ``claims_judged``): against the newest epoch the ledger saw of it, and the digest of her key
    there (``keys``).  Taken unjudged, her older key he kept came back at an epoch above hers, which
    the ledger then keyed as hers, and her unlock took it as hers (attack round 53a (4)).  Judged in
    the folders ``links`` names that the tree holds (the shares over them give the recipients her key
    there was derived for: ``her_key_at``)."""
    ledger, tree = volume.ledger, volume.tree
    if ledger is None or fresh.owner != volume.key.user_id or fresh.fid not in ledger.fids or not fresh.dek:
        return None
    held = ledger.epochs.get(fresh.fid, 0)
    known = (ledger.key_known(fresh.fid, held, fresh.dek)
             if fresh.epoch == held and fresh.fid not in ledger.claimed else None)
    placed = [(ino, name) for fid, name in links if (ino := tree.ino_of(fid)) is not None]
    was, fresh.links = fresh.links, placed
    try:
        claimed = key_not_hers(tree, fresh, (None, held), fresh, signer, known=known)
    finally:
        fresh.links = was
    if not claimed:
        return None
    claimed, fresh.epoch = fresh.epoch, held
    return claimed


def _new_node_judged(volume: Volume, node: Node, doc: dict, signer: str | None, claim: int | None,
                     out: Absorbed) -> None:
    """A member's state of her file the tree did not hold, just added: his claim (``_claims_as_seen``)
    said and re-keyed, as for a node held; one under a key older than the newest epoch seen (a
    take-back, as an honest write during a revoke looks) re-keyed unsaid (53a (4))."""
    ledger = volume.ledger
    if ledger is None or node.owner != volume.key.user_id or signer in (None, node.owner):
        return
    if claim is not None:
        _claim_taken(volume, node, doc, signer, claim)
        out.rekey.append(node)
    elif node.fid in ledger.fids and node.epoch < ledger.epochs.get(node.fid, 0):
        ledger.claim(node.fid, node.epoch, said=False)
        out.rekey.append(node)


def _claimed_key_signed(volume: Volume, node: Node, fresh: Node, signer: str | None) -> bool:
    """Whether ``fresh``, her own signed state of her file, carries at the epoch whose key of hers this
    device saw another key, not one her device derives there (her_keys.py ``her_key_unknown``): a key a
    member claimed that her other device's commit signed before its re-key landed.  Claimed here too
    (unsaid: her other device said it), so its digest is never kept as hers and her re-key is asked
    (attack round 53a (6); vault/tree/key_claims.py ``claimed_keys_signed`` at unlock)."""
    ledger = volume.ledger
    if (ledger is None or signer not in (None, fresh.owner) or node.owner != volume.key.user_id
            or node.fid in ledger.claimed or (held := ledger.keys.get(node.fid)) is None
            or held[0] != fresh.epoch):
        return False
    if not her_key_unknown(volume.tree, node, fresh.epoch, fresh.dek,
                           ledger.key_known(node.fid, fresh.epoch, fresh.dek)):
        return False
    ledger.claim(node.fid, fresh.epoch, said=False)
    return True


def _claim_taken(volume: Volume, node: Node, doc: dict, signer: str | None, claimed: int) -> None:
    """A member's claim (``_claims_a_key``) taken in at her epoch: said, once a claim (not at each of
    his states), and remembered by the ledger (``claimed``, saved) until her re-key commits.  The
    re-key asked was in memory only: a lock before it landed, or his next commit failing it, left
    her file under the older key he kept for good (attack round 51b (2), (3))."""
    ledger = volume.ledger
    if (ledger is None or ledger.claim(node.fid, node.epoch)) and volume.authorship is not None:
        volume.authorship.deny(doc, claim_said(signer, claimed, node.epoch))


def _key_not_hers_here(volume: Volume, node: Node, fresh: Node, signer: str | None, *,
                       seen_here: bool = False) -> bool:
    """Whether a member's state of her node carries a key other than the one held here, at an epoch not
    below the held one's, and not a key of hers at that epoch (vault/model/her_keys.py
    ``key_not_hers``, as the load judges the store's revision): his claim.  ``seen_here``: not the key
    her device derives at that epoch for the recipients it sees: his claim, or her other device's
    re-key for recipients seen otherwise there (a share or member it removed, not heard of here yet).
    A key held that a member claimed (the ledger's ``claimed``) is his, not hers: a state under it is
    judged too, never taken for hers (attack round 51b (3))."""
    claimed = volume.ledger is not None and node.fid in volume.ledger.claimed
    return bool(node.dek) and key_not_hers(volume.tree, node, (None if claimed else node.dek, node.epoch),
                                           fresh, signer, seen_here=seen_here)


def _waits_for_her_re_key(volume: Volume, node: Node, fresh: Node, signer: str | None) -> bool:
    """Whether a member's state from a peer is held back (the node keeps what it had, looked at again
    at each batch that arrives: ``_retry_incomplete``) until her re-key that explains its key arrives.

    Her other device's re-key (an unshare there) derives the new key for the recipients it sees; a
    member takes it in and saves over it; this device, hearing his state before her unshare, derived
    another key for the recipients it still saw, and took his state for a claim: her older key kept,
    and said, a false alarm (attack round 43c (8)).  Her re-key only raises the epoch, so a state
    above the held epoch waits; once the change of shares or groups it was made for arrives, the key
    is the one this device derives, taken in unsaid.  After ``HER_RE_KEY_BATCHES`` batches it is
    judged (``_claims_a_key``): a key of hers at that epoch derived for other recipients than seen
    here (a share made again after her unshare: her re-key's recipients are never seen here, round
    50b (2)) is taken in unsaid; nothing explains a claim (her older key he kept, sealing an epoch
    above): taken for one and said.  A state at the held epoch under another key is no re-key of hers (one
    epoch has one key of hers for what one device sees): judged at once, as before."""
    waits = volume.tree.her_re_key_waits
    if (fresh.epoch <= node.epoch or not _key_not_hers_here(volume, node, fresh, signer, seen_here=True)
            or fresh.dek == node.dek):
        # (The key held, at a higher epoch: never her re-key, which always gives a new key, so nothing
        # to wait for: judged at once; held, his next state under a key he claimed kept her re-key
        # failing for the whole hold, attack rounds 51b (3), 52a (4).)
        waits.pop(node.fid, None)
        return False
    if waits.setdefault(node.fid, 0) >= HER_RE_KEY_BATCHES:
        del waits[node.fid]  # said now (``_claims_a_key``)
        return False
    volume.tree.wait_for_version(node.fid)
    return True


def _loops(volume: Volume, node: Node, links: list[tuple[str, bytes]], out: Absorbed) -> bool:
    """Whether ``links`` put the folder ``node`` inside itself here, once the newer states the store
    holds of the folders on the way (the rest of this batch: a move that opens the loop) are taken
    in first."""
    if not makes_cycle(volume.tree, node, links):
        return False
    for each in _on_the_loop(volume, node, links):
        if (stored := _stored(volume, each.fid)) is not None and stored.get("_rev") != each.rev:
            _take(volume, stored, out)
    return makes_cycle(volume.tree, node, links)


def _on_the_loop(volume: Volume, node: Node, links: list[tuple[str, bytes]]) -> list[Node]:
    """The folders from the parents ``links`` name up to ``node`` (each first link; a few hundred at
    most: a walk that does not reach it ends at the root)."""
    tree, found = volume.tree, []
    for fid, _ in links:
        each = tree.find(fid) if isinstance(fid, str) else None
        while each is not None and each is not node and len(found) < 1024:
            found.append(each)
            if each.ino == ROOT_INODE or not each.links:
                break
            each = tree.get(each.links[0][0])
    return found


def _moved_here(volume: Volume, node: Node, links: list[tuple[str, bytes]]) -> bool:
    """Whether a folder on the loop holds its place by a state this device made (its own move)."""
    device = volume.ledger.device if volume.ledger is not None else None
    return any(each.seq is not None and each.seq[0] == device for each in _on_the_loop(volume, node, links))


def _replay(volume: Volume, doc: dict, fresh: Node) -> bool:
    """Whether the ledger has seen a newer state of the file than ``fresh``."""
    ledger = volume.ledger
    return ledger is not None and ledger.older(doc["_id"], writer_seq(fresh.seq, doc, volume.key.user_id))


def _shares_before_a_writers_move(volume: Volume, node: Node, links: list[tuple[str, bytes]],
                                  signer: str | None) -> list[Grant]:
    """The shares above her file that a writer's document gives other folders (her own devices re-key
    their own moves): those it leaves take their keys back and it gets a new key, as at her own move
    (vault/tree/inodes.py ``note_moved``)."""
    if signer in (None, node.owner) or node.owner != volume.key.user_id:
        return []
    if {parent for parent, _ in links} == set(parents_of(node, volume.tree.fid_at)):
        return []
    return volume.tree.covering(node)


def _in_conflict(volume: Volume, doc: dict, node: Node | None) -> bool:
    """Whether the store holds another live branch of ``doc``'s file (a store that keeps no branches
    here, a server's: not known, so taken as one).  A shared mount's view of the embedded store counts
    as it: taken as a conflict every time, a writer's edit superseded nothing there, and her state
    before it put back undid it silently (attack round 39a (3))."""
    local = replica.local_of(volume.store)
    if local is None:
        return True
    # A branch refused when settled (a forgery, a writer without WRITE there) is no concurrent edit:
    # counted, it let a server keep a writer's edit from superseding anything (attack round 39a (3)).
    # Nor is a branch holding the very state ``doc`` was made over (this device held it, and ``doc``'s
    # history passes its revision): a copy of an ancestor put beside it, as the server did to keep a
    # writer's edit from superseding her older state, then put that back over it (round 40a (3)).
    gate = volume.authorship
    under = _held_under(volume, local, doc, node)
    return any((gate is None or gate.leaf_ok(volume, leaf)) and not (under and _seq_of(volume, leaf) == under)
               for leaf in replica.other_leaves(local, doc["_id"]))


def _held_under(volume: Volume, local: replica.LocalStore, doc: dict,
                node: Node | None) -> tuple[str, int] | None:
    """The state (``seq``) this device held of the file, if ``doc`` descends from a revision it held
    that state under (its history as a peer sent it, else as the store keeps it: a shared mount's
    rows come without)."""
    if node is None or node.seq is None or not node.rev:
        return None
    seq, revs = volume.tree.same_state.get(node.fid, (None, set()))
    held = {node.rev, *(revs if seq == node.seq else ())}
    try:
        history = (replica.history_from(doc) if "_revisions" in doc
                   else replica.current_history(local, doc["_id"]))
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    return node.seq if history and history[0] == doc["_rev"] and held & set(history[1:]) else None


def _seq_of(volume: Volume, leaf: dict) -> object:
    try:
        return node_from_doc(leaf, *open_node_doc(leaf, volume.key))[0].seq
    except (VaultError, KeyError, TypeError, ValueError):
        return None


def _served_over(volume: Volume, node: Node, doc: dict, fresh: Node, signer: str | None) -> bool:
    """Whether her state of her file from another device of hers comes stored as the successor of the
    state this device holds (its revision history names that one's), though it was not made over it:
    made apart, it was served as following it (a server rewriting history; a peer hid the branch).
    Said: the state held stays in the file's history, and the state is taken as her newest (neither of
    hers is refused: refusing it, two devices would each put their own back over the other's, for
    ever).  (Attack round 39c (1).)

    Made over it: her signed ``over`` names the state held (this device's, or her other device's it
    took), or a later state of the same device; or, a file, its contents' history passes the contents
    held.  Her own state held here, only through a writer: a version of a WRITE member's made over
    them (his edit of hers that her other device took in and edited over: attack round 40a (4), which
    ``over`` cannot show, as a writer's word on her states counts for nothing).  A writer's state
    held (round 40a (6)): its contents, in the history of hers."""
    ledger = volume.ledger
    me = volume.key.user_id if volume.key is not None else None
    if (ledger is None or me is None or signer not in (None, me)
            or node.owner != me or fresh.owner != node.owner):
        return False
    mine, theirs = node.seq, fresh.seq
    if mine is None or theirs is None or theirs[0] == ledger.device:
        return False
    if (fresh.over or {}).get(mine[0], -1) >= mine[1] or (mine[0] == theirs[0] and theirs[1] > mine[1]):
        return False
    if node.rev not in replica.history_from(doc)[1:]:
        return False
    own = mine[0] == ledger.device
    if not own and (node.head is None or node.head == fresh.head):
        return False  # a writer's (or her other device's) state of a folder, or its very contents
    if node.head is not None and fresh.head is not None and node.head != fresh.head:
        over = made_over(volume.store, volume.key, node.fid, fresh.dek, fresh.head, node.head, True)
        if over is not None and (not own or _through_a_writer(volume, over, me)):
            return False
    alarms.for_user(me).warn(
        "concurrent", node.fid, f"{path_shown(volume, node)} ({node.fid}): a state made on another device of "
        "yours without this device's last edit of it was served as following that edit (the server, or "
        "a peer, hid the conflict): it is shown now; this device's edit is in the file's history "
        "(`fusevault history`)")
    return True


def _through_a_writer(volume: Volume, over: list[dict], me: str) -> bool:
    """Whether one of these versions, each made over the contents this device held, is a WRITE
    member's, signed and judged (``version_ok``): her other device then took his edit of them in."""
    gate = volume.authorship
    if gate is None:
        return False
    for doc in over:
        try:
            signer = signer_of(doc)
        except Forged:
            continue
        if signer not in (None, me) and gate.version_ok(volume.tree, doc):
            return True
    return False


def _her_deletion(volume: Volume, node: Node | None, opened: tuple[Node, list] | None,
                  signer: str | None) -> bool:
    """Whether an arrived state, taken, is one of the user's own files with no name
    (the trash, or replaced by a rename) that she signed (the ledger then judges
    its place unknown if another device of hers made it: ``trashed_elsewhere``)."""
    return (opened is not None and volume.ledger is not None and not opened[1]
            and (node is None or node.ino != ROOT_INODE)
            and opened[0].owner == volume.key.user_id and signer in (None, opened[0].owner))


def _judged_while_granted(volume: Volume, fresh: Node, signer: str | None) -> None:
    """A writer's version, taken in, is judged now (``Places.admits``, kept for the tree's life),
    while the grant that let him write it is in force.  Judged first when it is read, after a revoke
    of him (the revoke's own re-key reads it, or a state taken while the file was busy,
    ``Guests.held``), it was refused: the file read EIO and the revoke failed (exit 5)."""
    places = volume.layout.places
    vid = fresh.head
    if places is None or places.admit is None or vid is None or signer in (None, fresh.owner):
        return
    if (body := places.document_body(vid)) is None:
        return
    try:
        doc = loads_untrusted(body)
    except ValueError:
        return  # the read refuses it, and says so
    if isinstance(doc, dict):
        doc["_id"] = vid  # as files/placements.py judges it
        places.admits(fresh.fid, vid, doc)


def _version_here(volume: Volume, fresh: Node, node: Node | None) -> bool:
    """Whether the version a peer's node names can be read here: its document,
    its manifest record and as many other records as the document counts
    (what files/placements.py ``version_shas`` asks of it before any read)."""
    places = volume.layout.places
    vid = fresh.head
    if vid is None or places is None or not places.rows_kept or (node is not None and node.head == vid):
        return True  # an empty file, a folder, the version the tree holds, or CouchDB's (written in order)
    body = places.document_body(vid)
    if body is None:
        return False
    manifest, others = places.held(fresh.fid, vid)
    if not manifest:
        return False
    try:
        plain = loads_untrusted(aead.unseal(fresh.dek, b64d(loads_untrusted(body)["enc"]),
                                            aead.ad("version", fresh.fid, vid)))
        expected = plain.get("records_n", 0) if isinstance(plain, dict) else 0
    except (CorruptData, KeyError, TypeError, ValueError):
        return True  # does not open: the reader refuses it (an alarm), holding it back would hide that
    if isinstance(expected, int) and others < expected:
        return False
    return not inherits_punched(volume, fresh)


def _retry_incomplete(volume: Volume, out: Absorbed) -> None:
    """Look again at the nodes held back until their version arrived."""
    if volume.key is None:  # locked meanwhile: the unlock loads the tree from the store
        return
    waits, incomplete = volume.tree.her_re_key_waits, volume.tree.incomplete()
    for fid in list(waits):
        if fid in incomplete:
            waits[fid] += 1  # one more batch came without her re-key (``_waits_for_her_re_key``)
        else:
            del waits[fid]  # taken past since (another state of it taken in, the file gone)
    for fid in incomplete:
        volume.tree.complete(fid)  # held back again if still incomplete
        if (doc := _stored(volume, fid)) is not None:
            _take(volume, doc, out, again=True)


def _update(volume: Volume, node: Node, fresh: Node, out: Absorbed | None = None) -> None:
    if node.owner == volume.key.user_id and node.dek and fresh.epoch == node.epoch and fresh.dek != node.dek:
        _key_changed_at_one_epoch(volume, node, fresh)
    shown = (node.size, node.mtime, node.ctime)  # what the kernel's writeback cache keeps of its own
    for name in ATTRS:
        setattr(node, name, getattr(fresh, name))
    content = node.content
    if content is not None and content.changed:
        return  # the reader's own unsaved writes: their commit comes after this one
    if node.lock is not None and node.lock.locked():
        # A version of this user's is being committed (or the file sealed
        # under a new key) with the key and contents it was sealed with:
        # theirs comes after this one.  Looked at again once it is done.
        if volume.sharing is not None:
            volume.sharing.awaiting.add(node.fid)
            volume.sharing.held[node.fid] = {name: getattr(fresh, name) for name in CONTENTS}
        if out is not None:
            out.busy.append(node)
        return
    stale = content is not None and (node.head != fresh.head or content.dek != fresh.dek)
    if out is not None and node.is_reg and (fresh.size, fresh.mtime, fresh.ctime) != shown:
        out.resized.append((node, node.size))
    raised = node.owner == volume.key.user_id and fresh.epoch > node.epoch
    # Her record of for whom her re-key made the key, never a member's (attack round 73a (1)).
    record = sealed_for.taken(volume.key, node.owner, node.fid, fresh.epoch, fresh.dek, fresh.sealed_for,
                              node.sealed_for)
    if volume.sharing is not None:
        volume.sharing.keep_below(volume.key, node, fresh.epoch)  # before it takes it (attack round 76a (3))
    for name in CONTENTS:
        setattr(node, name, getattr(fresh, name))
    node.sealed_for = record
    if raised:
        _epoch_raised(volume)
    if stale:
        # Open contents follow the new version, or the file's new key (an
        # empty file's, which has no version to change).
        volume.switch_content(node)


def _epoch_raised(volume: Volume) -> None:
    """Her file took a key of an epoch above the one held (her other device's re-key, or a member's
    state proven under it), from an arrival, the conflict settling (``settled``) or a state that waited
    (``retry_awaiting``): the look over her keys asked (rotation.py ``_rekey_unreached``).  Her other
    device, not told of a revocation yet, may have sealed that key to someone it removed; the look run
    when that key came passed it over, as its epoch was above the file's then (only a key of the
    file's current epoch counts, stale_keys.py), and nothing asked again once the file reached it:
    her next write was sealed under a key the removed member holds (attack round 54a (1)).  Asked only
    when the epoch moves up (her re-keys): a plain arrival at the held epoch asks nothing, and the
    asks of one batch are one look (``Inodes.check_keys`` is a flag the session's service takes)."""
    volume.tree.check_keys()


def _key_came_first(volume: Volume, node: Node) -> None:
    """A file the last look over her keys found a key file of, not held then (stale_keys.py ``ahead``),
    taken in now: the look asked again, once a file.  A new file her other device made in a share it
    had not heard was revoked has its key sealed to the removed member before its document: that key
    came first, passed over (no file), and nothing asked again (attack round 54a (1))."""
    volume.tree.keys_ahead.discard(node.fid)
    if node.owner == volume.key.user_id:
        volume.tree.check_keys()


def _key_changed_at_one_epoch(volume: Volume, node: Node, fresh: Node) -> None:
    """Her other device gave her file another key at the epoch this device gave it one: both re-keyed
    it at once, each under the key derived from the recipients it saw (one had not taken a share in),
    and hers won (only a state she signed gives her file another key at one epoch:
    vault/tree/authorship.py ``owner_dek_ok``).  This device's sidecar, authenticated under its own
    key at that epoch, is written again under hers now: it holds no secret and decides nothing, and
    left, every open of the file here gave EIO, also after a remount (attack round 39a (4))."""
    try:
        write_vfmeta(volume.layout, node.owner, node.fid, fresh.dek, volume.acl(node) or [], fresh.epoch)
    except (OSError, VaultError) as err:  # its next open says (EIO), as before
        log.warning("the sidecar of %s was not written again under its key: %s", node.fid, err)


def retry_awaiting(volume: Volume, out: Absorbed) -> None:
    """Open again the documents whose key was not sealed to the user yet, or
    that came in while their file was busy here.  A file still busy stays
    waiting: what came in is taken once its commit (or re-key: ``held``) is
    done.  Taken now, a refused document stored over another writer's state
    (a forgery, a replay) ended the wait, and her re-key committed her older
    contents over his edit (attack round 39a (1))."""
    sharing = volume.sharing
    for fid in list(sharing.awaiting):
        node = volume.tree.find(fid)
        if fid in sharing.held and node is not None and node.lock is not None and node.lock.locked():
            continue
        sharing.awaiting.discard(fid)
        sharing.held.pop(fid, None)  # her commit went over it (theirs is an older state now), or it is taken
        if (doc := _stored(volume, fid)) is not None:
            _take(volume, doc, out, again=True)


async def settle_busy(volume: Volume, nodes: list[Node]) -> Absorbed:
    """Once this user's commits of ``nodes`` are done, take in the versions
    others committed meanwhile (``Absorbed.busy``)."""
    for node in nodes:
        async with volume.content_lock(node):
            pass
    out = Absorbed()
    if volume.key is not None and volume.sharing is not None and volume.sharing.awaiting:
        retry_awaiting(volume, out)
    return out


def sweep(volume: Volume, out: Absorbed) -> None:
    """Leaving nodes whose writes are all saved now leave the tree (all at
    once: a folder stays while a file under it still has writes to save)."""
    sharing = volume.sharing
    nodes = [node for ino in sharing.leaving if (node := volume.tree.get(ino)) is not None]
    if any(unsaved(node) for node in nodes):
        return
    sharing.leaving = set()
    for node in nodes:
        leave(volume.tree, node, out)


async def save_leaving(volume: Volume, nodes: list[Node]) -> Absorbed:
    """Save the writes a user made to files before their share ended, then
    let those files leave the tree.  What cannot be saved stays in memory:
    the file's close (and a lock) tries again and reports the error."""
    for node in nodes:
        if volume.key is None:
            return Absorbed()
        if not node.dek or not unsaved(node):
            continue  # saved meanwhile (its close), or shared again and left since
        try:
            await volume.commit_content(node)
        except VaultError as err:
            log.error("could not save the writes to %s made before its share ended: %s", node.fid, err)
    out = Absorbed()
    if volume.key is not None and volume.sharing is not None:
        sweep(volume, out)
    return out


def _admit_new_shares(volume: Volume, out: Absorbed) -> None:
    """Shares that reached this user just now: their nodes join the tree.

    Their keys were written before the Share document, so listing this
    user's key files finds them (no scan of every node document)."""
    tree, sharing = volume.tree, volume.sharing
    if all((ino := tree.ino_of(fid)) is not None and not _keyless(volume, ino) for fid in sharing.roots):
        return
    givers = sharing.givers()
    guests = []
    taken: list[tuple[Node, str]] = []  # held nodes given their key again, and their document's owner
    foreign: list = []
    keyed = key_files(volume.layout, volume.key.user_id, sharing.groups)
    for fid, paths in keyed.items():
        ino = tree.ino_of(fid)
        if ino is not None and not _keyless(volume, ino):
            continue
        doc = _stored(volume, fid)
        if doc is None or doc.get("delete") or doc.get("owner") not in givers:
            continue
        if (judged := judge(tree, doc, None)) is False:
            continue  # refused, and said
        doc, signer = judged or (doc, None)
        if owner_changed(tree, doc, tree.get(ino)):
            continue  # a giver's document at the id of a node of another owner's (hers): said (round 46b (3))
        try:
            opened = open_guest(doc, volume.key, paths, volume.trust, volume.store,
                                None if ino is None else tree.get(ino), tree.ledger)
        except VaultError as err:
            log.warning("a shared file %s does not open: %s", fid, err)
            continue
        if opened is None:
            continue
        if signer is not None and signer != doc["owner"]:
            foreign.append((*opened, signer, True))  # judged once placed, with its folders
        if ino is not None and phantoms.gives_way(tree, tree.node(ino), opened[0]):
            ino = None  # a placeholder, never a prior state (71a (1))
        if ino is None:
            guests.append(opened)
        else:  # shared again while still held (open, or a share root's parent)
            node = tree.node(ino)
            if retyped(node, opened[0]):
                log.warning("%s: its document changes the file's type: it keeps what it had", fid)
                continue
            real = phantoms.made_real(tree, node, opened[0].owner)  # its owner was a guess
            if not real:  # its names in folders not held (a share root's real parent) left with it
                phantoms.parents_again(tree, opened[1], keyed)
            _update(volume, node, opened[0], out)
            decided = relink(tree, node, opened[1], out, signer)
            if real:
                phantoms.placed_as_a_guest(tree, node, opened[1], decided)
                phantoms.names_judged_again(tree, node, out)
            out.inodes.append(ino)
            taken.append((node, opened[0].owner))  # a phantom's owner was a guess
    before = {ino: set(tree.node(ino).children) for ino in sharing.virtual}
    lost = admit_guests(tree, guests, signers={node.fid: signer for node, _, signer, _ in foreign})
    if foreign:
        spare = Absorbed()  # what settling takes out was never shown: nothing to invalidate
        # Judged in the folders its names found taken put it in once placed beside (below), as the load
        # judges them (loading.py; attack round 73d (3)).
        beside: dict[str, list[str]] = {}
        for node, names in lost:
            beside.setdefault(node.fid, []).extend(parent for parent, _ in names)
        volume.authorship.settle(tree, foreign, lambda node: leave(tree, node, spare), beside=beside)
        for node, _, signer, _ in foreign:
            if tree.get(node.ino) is node:
                signed_state(tree, node, signer)
    # Names found taken (another node of the batch holds them, maybe refused since): placed as the load
    # places them, never dropped (attack round 73d (2)).
    out.entries += place_taken(tree, lost)
    _bound(volume, taken + [(node, node.owner) for node, _ in guests])
    # The new names in shared/<owner>/ and groups/<group>/ (the kernel may
    # remember them as missing), and the folders made for them.
    for ino in sharing.virtual:
        folder = tree.node(ino)
        if ino not in before:
            out.entries += folder.links
            out.inodes += [parent for parent, _ in folder.links]
        elif added := set(folder.children) - before[ino]:
            out.entries += [(ino, name) for name in added]
            out.inodes.append(ino)


def _bound(volume: Volume, nodes: list[tuple[Node, str]]) -> None:
    """Each node a new share (or a group joined) put in the tree, still held with its key once
    settled (a writer's state refused left it), bound to its owner (``Ledger.saw_owner``), as an
    arrival, a load and a commit bind theirs.  Taken so without: nothing bound the id until an unlock,
    so another owner's file at it, taken after a lock, was bound and the genuine owner's refused there
    for good (attack round 59b (1))."""
    if (ledger := volume.ledger) is None:
        return
    for node, owner in nodes:
        if node.dek and volume.tree.find(node.fid) is node:
            ledger.saw_owner(node.fid, owner)


def admit_new(volume: Volume) -> Absorbed:
    """Shares whose keys were sealed to the user just now (a group they joined)."""
    out = Absorbed()
    if volume.key is not None and volume.sharing is not None:
        _admit_new_shares(volume, out)
    return out


def _keyless(volume: Volume, ino: int) -> bool:
    """A node the user holds without its key: a phantom, or a guest that
    left while open (a new share gives it its key and names again)."""
    node = volume.tree.get(ino)
    return node is not None and (ino in volume.sharing.phantoms
                                 or (node.owner != volume.key.user_id and not node.dek))


def _drop_unreached(volume: Volume, out: Absorbed) -> None:
    """After a change of shares: guests no longer reached leave the tree.

    Those holding unsaved writes, and the folders above them, stay (no
    longer reachable by path, refusing further writes) until the writes are
    saved: ``out.save``."""
    tree, sharing = volume.tree, volume.sharing
    me = volume.key.user_id
    # Inodes the kernel made this volume forget are nobody's folders any more.
    sharing.virtual.intersection_update(tree.live(sharing.virtual))
    sharing.phantoms.intersection_update(tree.live(sharing.phantoms))
    unreached = [node for node in tree.nodes()
                 if node.owner not in ("", me) and node.ino not in sharing.phantoms and node.dek
                 and tree.perm(node) is None]
    gone = {node.ino for node in unreached}
    kept: set[int] = set()
    for node in unreached:
        if unsaved(node):
            if node.ino not in sharing.leaving:
                out.save.append(node)
            walk: Node | None = node
            while walk is not None and walk.ino in gone and walk.ino not in kept:
                kept.add(walk.ino)
                walk = tree.get(walk.links[0][0]) if walk.links else None
    sharing.leaving = kept
    for node in unreached:
        if node.ino not in kept:
            leave(tree, node, out)
    # Virtual folders left empty go too, inner ones (under shared/ or groups/) first.
    for ino in sorted(sharing.virtual, key=lambda i: _at_root(tree.node(i))):
        folder = tree.node(ino)
        if not folder.children and folder.links:
            parent_ino, name = folder.links[0]
            if (parent := tree.get(parent_ino)) is not None:
                tree.unlink_entry(parent, name, folder)
            else:
                folder.links.remove((parent_ino, name))
            out.entries.append((parent_ino, name))
            sharing.virtual.discard(ino)  # a later share makes a new one
            tree.purge_if_unused(folder)


def _at_root(node: Node) -> bool:
    return not node.links or node.links[0][0] == ROOT_INODE
