"""The rules that decide between two leaves of a conflict (conflicts.py's rules 1 to 5): which
contents stay, under whose names, with what metadata, and which leaf becomes a conflict copy.

The settling (conflicts.py) opens both leaves (``open_leaf``), asks the ledger whether one is a replay
(``replayed``), then ``decide`` and ``apart``; ``within_readers`` and ``same_bytes`` check what was
decided.  Nothing here commits: it reads the leaves, the store's versions and the tree.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, replace

from fusevault.crypto.keys import MasterKey
from fusevault.crypto.signing import signer_of
from fusevault.errors import Forged, VaultError
from fusevault.store.local import REVS_LIMIT, LocalStore
from fusevault.vault.files.content import Content
from fusevault.vault.model import names, sharing
from fusevault.vault.model.her_keys import proven
from fusevault.vault.model.history import made_over
from fusevault.vault.model.ledger import Seq, writer_seq
from fusevault.vault.model.nodes import Node, node_from_doc, open_node_doc
from fusevault.vault.services.metadata_merge import Metadata, changed_last, merged, stamp
from fusevault.vault.services.recovery import COPY_CHUNK
from fusevault.vault.tree.arrivals import past_the_xattr_cap, past_the_xattr_cap_said
from fusevault.vault.tree.authorship import said_signer
from fusevault.vault.volume import Volume

log = logging.getLogger(__name__)


# Two edits of one file up to this size are read to tell whether they hold the same bytes (rule 2).
SAME_LIMIT = 64 * 1024 * 1024


@dataclass
class Leaf:
    """One live leaf of a conflict, opened (``open_leaf``): its document, its node, its names and its
    revision history (newest first)."""

    doc: dict
    node: Node
    links: list[tuple[str, bytes]]
    history: list[str]


def replayed(volume: Volume, leaf: Leaf, other: Leaf, how: str) -> bool:
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


def open_leaf(doc: dict, history: list[str], volume: Volume) -> Leaf:
    """A leaf's document opened under her key: its node and names, with ``history``."""
    node, links = node_from_doc(doc, *open_node_doc(doc, volume.key))
    return Leaf(doc, node, links, history)


def decide(store: LocalStore, mine: Leaf, theirs: Leaf, key: MasterKey,
            volume: Volume | None = None) -> tuple[Leaf, Leaf, Leaf | None]:
    """(the leaf whose contents stay, the leaf whose names it gets, the leaf to copy or None).
    ``volume`` tells her states from a member's (rule 2); None: every state is hers."""
    if made_twice(mine, theirs):
        return mine, mine, None  # rule 5
    if _deletes(mine) != _deletes(theirs):
        keeper = theirs if _deletes(mine) else mine  # rule 1
        return keeper, keeper, None
    if mine.node.head == theirs.node.head:
        # Rule 2; of two key epochs, the newer key stands: a re-key with nothing to seal again (her
        # move of an empty file or a folder out of a share) is only its key and epoch.  The later
        # side kept whole, a chmod made apart put her file back under the key the member holds, given
        # the names of her move (``apart``; attack round 42b (6)).  Its metadata is merged still.
        keeper = _newer_key(volume, mine, theirs)
        return keeper, keeper, None
    for newer, older in ((mine, theirs), (theirs, mine)):
        if descends(store, newer, older.node.head, key):
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
      metadata merged (``apart``).  Kept by his epoch, her unshare was undone (43c (8)); kept by
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
    hers = [leaf for leaf in (mine, theirs) if is_hers(volume, leaf) or _proven_hers(volume, leaf)]
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
    if proof is None or is_hers(volume, leaf):
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


def apart(volume: Volume, mine: Leaf, theirs: Leaf, keeper: Leaf, named: Leaf,
           loser: Leaf | None) -> tuple[Leaf, Metadata | None]:
    """Rules 2 and 3 between two states of hers: what she set as metadata taken field by field from the
    state that changed it, the later change if both did (vault/services/metadata_merge.py).  Kept whole,
    the state with the contents undid her chmod or xattr on her other device, and rule 2 lost a rename
    or a chmod made apart (attack round 41b (4)).  Also beside a member's state rule 2 kept hers for
    her key (``_her_key_beside_his``: his names and metadata by their stamps, attack round 43c (6)).
    (The names chosen, the merged rest or None.)"""
    if loser is not None or made_twice(mine, theirs) or _deletes(mine) or _deletes(theirs):
        return named, None  # rules 1, 4, 5: as it was decided
    other = theirs if keeper is mine else mine
    proven_beside_hers = _proven_beside_hers(volume, keeper, other)
    if (not (is_hers(volume, mine) and is_hers(volume, theirs))
            and not _her_key_beside_his(volume, keeper, other) and not proven_beside_hers):
        return named, None  # a member's state: as it was decided
    if not _rekeyed_by_a_move(keeper, other, _stamped(volume)):
        # The names from the state that changed them last (a tie: as decided).  Not over a re-keyed
        # move into another folder: that keeps its own (``decide``, round 41b (2)).  Beside a re-key
        # in place (an unshare, a rotation: the folder kept) her later move on her other device is
        # taken, with the new key, re-keyed away from shares it leaves as any move taken in is
        # (conflicts.py ``_adopt``): kept whole, the re-keyed state undid it unsaid (attack round 43c (5)).  A
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


def within_readers(volume: Volume, keeper: Leaf, named: Leaf) -> Leaf:
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
    return keeper.node.head == other.node.head and not _one_key(keeper, other) and not is_hers(volume, other)


def _proven_beside_hers(volume: Volume, keeper: Leaf, other: Leaf) -> bool:
    """Rule 2 kept a member's state for a key her proof proves hers (``_proven_hers``) beside a state of
    hers: her re-key's key and his contents stand, her names and metadata merged by their stamps, as
    between two states of hers (her change made apart is hers to keep), his values within the cap."""
    return (keeper.node.head == other.node.head and not _one_key(keeper, other) and is_hers(volume, other)
            and _proven_hers(volume, keeper))


def _changed_last(first: Leaf, second: Leaf, field: str) -> Leaf:
    return second if changed_last(first.node, second.node, field) is second.node else first


def is_hers(volume: Volume, leaf: Leaf) -> bool:
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


def made_twice(mine: Leaf, theirs: Leaf) -> bool:
    """Both histories go back to their creation and share no revision.

    A history cut at REVS_LIMIT (a peer away for more edits than that) also
    shares nothing: that is an ordinary conflict, settled by contents."""
    whole = all(leaf.history[-1].startswith("1-") for leaf in (mine, theirs))
    return whole and not set(mine.history) & set(theirs.history)


def descends(store: LocalStore, leaf: Leaf, ancestor: str | None, key: MasterKey) -> bool:
    """Whether ``ancestor`` (a version id) is in the history of the leaf's contents.  Each version is
    opened under the key it was sealed with (``history.made_over``): read with the newest key, one
    from before a re-key failed, and a concurrent edit met by her move out of a share was never
    settled (attack round 39c (2)).  One that does not open ends that line of the walk: not proven an
    ancestor, both edits are kept."""
    if ancestor is None:
        return True
    return made_over(store, key, leaf.doc["_id"], leaf.node.dek, leaf.node.head, ancestor) is not None


async def same_bytes(volume: Volume, keeper: Leaf, loser: Leaf) -> bool:
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
