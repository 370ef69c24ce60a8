"""Records gc punched out of this replica that a peer's version inherits, wanted again from the peers.

gc (services/gc.py) punches the bytes of records no version kept here references out of the ``.vf``
and notes their ids in the store's ``punched`` table (store/places.py ``forget``).  A peer's version
made before it saw that gc may still name them (a partial write made over a dropped version; attack
round 41b (1)).  Such a version is walked here (``inherits_punched``: when it arrives, from
absorbing.py ``_version_here``; a conflict's leaf, from conflicts.py; a tree just loaded,
``want_punched`` from fs/personal.py and agent/sessions.py): the records its own manifest names go
into the tree's ``records_wanted`` with the hash the manifest names, and it is held back.  The sync
(sync/punched_asks.py ``_take_punched``, through fs/arrivals.py ``Arrivals``) asks ``wanted_of`` per
peer, fetches them by id, places those hashing as named, and reports back with ``note_asked``: asks
answered in vain go to ``records_asked`` (per version and peer; a record several versions want also
to ``records_disputed``), records that came have their versions walked again (their wants set aside
meanwhile in ``records_rewalk``, still counted).  ``drop_superseded`` forgets the versions no node shown
or held back has as its head.

What a record (vid, idx) is checked against is the record's own, never steered by which versions want
it at the ask, which of them is shown or vouched, or which asks went in vain (attack rounds 43d to 46a):
the hash its writer's (``vid``'s) own signed, admitted version vouches for, where that is known here
(``_writers_sealed``, ``records_sealed``); else every hash any version wanting it names, each must match
(``_checked_rows``; versions naming other bytes have none placed, said, until they agree).  A record
placed again with other bytes than a later version names, where its writer vouches for none here,
is wanted again by that version as another copy (``_other_copy``; store/places.py ``copies``).
``records_vouched`` notes the walks whose root their signed document names (``_root_vouched``).
"""

from __future__ import annotations

import hashlib
import logging
import os

from fusevault.errors import VaultError
from fusevault.store import replica
from fusevault.store.places import in_runs, overlap
from fusevault.vault.files import placements
from fusevault.vault.files.content import Content
from fusevault.vault.format.vf import MANIFEST_INDEX
from fusevault.vault.model.nodes import Node
from fusevault.vault.volume import Volume

log = logging.getLogger(__name__)

__all__ = ["inherits_punched", "want_punched", "wanted_of", "note_asked", "note_listed", "drop_superseded"]

Asked = set[tuple[tuple[str, str], str, int]]  # (version, record vid, index) asked of a peer
Punched = dict[str, tuple[str, list[tuple[int, int]]]]  # vid -> (owner, runs of punched indices)
# (vid, idx) -> (owner, SHA-256 of the record as the version's manifest names it) of records wanted
# from the peers: one that hashes otherwise is not placed (sync/punched_asks.py ``_take_punched``).
# None: an unhashed manifest (kinds 2 to 5) names no hash; such a record is checked when read.
Wanted = dict[tuple[str, int], tuple[str, bytes | None]]
# (vid, idx) -> SHA-256 -> place of each copy of a record placed again here (store/places.py ``copies``).
Copies = dict[tuple[str, int], dict[bytes, tuple[int, int]]]


def inherits_punched(volume: Volume, fresh: Node) -> bool:
    """Whether the version ``fresh`` names inherits records gc punched out of this replica since
    (attack round 41b (1): a peer's partial write made over a version gc dropped here names that
    version's blocks by (vid, index); read here, they are a hole or another record: EIO and a false
    forgery alarm).  If so they are wanted from the peers (``Tree.records_wanted``, fetched by the
    sync) and the caller holds the node back, until a peer asked for some sent none of them
    (``note_asked``): then it is taken in as it is (its reads say EIO) and stays wanted of the peers
    not asked for them.  Only a file with punched rows or records placed again pays for the walk; a
    version already asked in vain is not walked again until some of its records came, nor one that
    wanted nothing of the copies placed again here until they change (``records_settled``)."""
    places = volume.layout.places
    vid = fresh.head
    if vid is None or fresh.manifest is None or places is None or not places.rows_kept:
        return False
    tree = volume.tree
    version = (fresh.fid, vid)
    if version in tree.records_asked and version in tree.records_wanted:
        return False  # asked in vain, and nothing came since: taken in as it is
    needed: Wanted | None = {}
    vouched = False
    punched, copies = places.punched_of(fresh.fid), places.copies_of(fresh.fid)
    others_punched = any(v != vid for v in punched)
    seen = _copies_seen(copies, vid)
    if not others_punched and seen is not None and tree.records_settled.get(version) == seen:
        return False  # walked against these very copies already and wanted nothing (50a (1))
    if punched or copies:
        needed, vouched = _inherited(volume, fresh, punched, copies)
    if needed is None:  # the walk failed (a record unreadable): its answer says nothing, not noted
        needed = {}
    elif not needed and not others_punched and seen is not None:  # the walk's answer, until they change
        _note_settled(tree.records_settled, version, seen)
    if needed:
        _writers_sealed(volume, fresh, needed)
        _copies_vouched(volume, fresh.fid, needed, punched)
    if not needed:
        _forget(volume, version)
        return False
    tree.records_settled.pop(version, None)
    tree.records_rewalk.pop(version, None)  # set aside for this walk (``note_asked``): replaced by it
    tree.records_wanted[version] = needed
    if vouched:
        tree.records_vouched[version] = needed
    else:
        tree.records_vouched.pop(version, None)
    if (asked := tree.records_asked.pop(version, None)) is None:
        return True
    # Walked again as some came: the notes of the peers asked in vain are kept for what is still
    # wanted, so that they are not asked for it again (dropped whole, every peer was asked for every
    # record left at each answer: a peer sending one record an ask made that quadratic, 43a (3)).
    if kept := {peer: left for peer, records in asked.items() if (left := records & needed.keys())}:
        tree.records_asked[version] = kept
        return False
    return True


def wanted_of(volume: Volume, peer: str) -> list[tuple[tuple[str, str], str, int, str, bytes | None]]:
    """(version, record vid, index, owner, SHA-256 it must hash to or None) of the records gc punched
    here that the versions this tree shows or holds back inherit (``inherits_punched``) and that some
    version wanting them was not asked of ``peer`` for in vain: the sync with it fetches them.  The wants
    of versions superseded meanwhile are dropped first (``drop_superseded``).

    What a record is checked against is the record's, never steered by which versions want it at the
    moment, which is vouched, or which asks went in vain (``_checked_rows``): the hash its writer's own
    signed version vouches for where that is known (``records_sealed``), else every hash any version
    wanting it names (``_as_named``: all must match)."""
    tree = volume.tree
    drop_superseded(volume)
    _disputes_settled(volume)
    asked: set[tuple[str, str, int]] = set()
    for version, wanted in tree.records_wanted.items():
        in_vain = tree.records_asked.get(version, {}).get(peer, set())
        asked.update((version[0], vid, idx) for vid, idx in wanted if (vid, idx) not in in_vain)
    return _checked_rows(volume, asked)


def _checked_rows(volume: Volume, asked: set[tuple[str, str, int]]
                  ) -> list[tuple[tuple[str, str], str, int, str, bytes | None]]:
    """A row for each version wanting a record ``asked`` (fid, vid, idx) names, those asked in vain
    and those set aside to be walked again (``records_rewalk``) included, each with the hash the record
    must have: its writer's sealed one where known (``records_sealed``), else the one that version
    names.  Which versions were vouched for once decided which hashes counted: her walk unvouched as
    the server withheld a record of hers, or walked after his alone, his hash had the server's bytes
    placed for her version too, EIO for good (attack round 46a (1), (3)); her rows left out for the
    peer she was asked of in vain, his unhashed version had its garbage placed unchecked (46a (5))."""
    sealed = volume.tree.records_sealed
    out = []
    for version, wanted in _wants(volume):
        for (vid, idx), (owner, sha) in wanted.items():
            if (record := (version[0], vid, idx)) in asked:
                out.append((version, vid, idx, owner, sealed.get(record, sha)))
    return out


def _wanting_versions(volume: Volume) -> dict[tuple[str, str, int], set[tuple[str, str]]]:
    """(fid, vid, idx) -> the versions whose want names that record, those set aside to be walked
    again included (``records_rewalk``: they want it still, the walk will say so)."""
    out: dict[tuple[str, str, int], set[tuple[str, str]]] = {}
    for version, wanted in _wants(volume):
        for vid, idx in wanted:
            out.setdefault((version[0], vid, idx), set()).add(version)
    return out


def _wants(volume: Volume) -> list[tuple[tuple[str, str], Wanted]]:
    """Every version's want: those asked for (``records_wanted``) and those set aside to be walked
    again (``records_rewalk``)."""
    tree = volume.tree
    return [*tree.records_wanted.items(), *tree.records_rewalk.items()]


def _disputes_settled(volume: Volume) -> None:
    """The in-vain notes of a record several versions wanted, dropped for every version once the versions
    wanting it changed: refused as one of them named other bytes (``_as_named``), it was noted in vain
    for all, so once that version's want was gone the peer holding the bytes the others name was never
    asked again (attack round 44a (2)).  Noting in vain only the versions whose own hash it missed is no
    fix: the others, asked alone, then had the server's bytes matching his placed (43d (1) again).  Each
    change of the wanting versions asks again once: bounded by the versions that arrive.  A version set
    aside to be walked again as some of its records came still wants it (``_wanting_versions``):
    counted a change, her version's notes went and his, asked alone, had the server's bytes placed
    for both (attack round 45b (1)); it changes once the version leaves for good (``_forget``) or its
    walk no longer names the record."""
    tree = volume.tree
    if not tree.records_disputed:
        return
    wanting = _wanting_versions(volume)
    for record, versions in list(tree.records_disputed.items()):
        if frozenset(wanting.get(record, ())) == versions:
            continue
        del tree.records_disputed[record]
        fid, vid, idx = record
        for version in wanting.get(record, ()):
            peers = tree.records_asked.get(version, {})
            for peer in list(peers):
                peers[peer].discard((vid, idx))
                if not peers[peer]:
                    del peers[peer]
            if version in tree.records_asked and not peers:
                del tree.records_asked[version]


def _forget(volume: Volume, version: tuple[str, str]) -> None:
    """A version's want and its notes, dropped (it wants nothing now, or nothing reads it here)."""
    tree = volume.tree
    tree.records_wanted.pop(version, None)
    tree.records_rewalk.pop(version, None)
    tree.records_vouched.pop(version, None)
    tree.records_asked.pop(version, None)


def note_asked(volume: Volume, peer: str, in_vain: Asked, came: set[tuple[str, str, int]]) -> None:
    """``peer`` was asked for records ``wanted_of`` named: ``in_vain``, those of the asks it answered
    with none of the records asked (nothing, garbage, or failures given up on); ``came`` (fid, vid,
    index): the records placed.

    Noted per (record, peer): a peer is asked again only for records new to a version's want (those a
    walk adds once the tree nodes naming them came), never for one it was asked for in vain; a stale
    answer notes only the records it was asked for, never what the version came to want meanwhile
    (two peers' asks racing, attack round 43a (2)).  A peer that sent some of an ask is asked again for
    the rest: each such ask places a record, so this ends.  A version some record of which came is
    walked again (at once if shown, else at the next look at it): it may want more.  Meanwhile its want
    is set aside (``records_rewalk``), not dropped: it still counts for the records it shares with other
    versions (``_checked_rows``) and for their disputes (attack round 45b (1))."""
    tree = volume.tree
    wanting = _wanting_versions(volume) if in_vain else {}
    for version, vid, idx in in_vain:
        if (vid, idx) in tree.records_wanted.get(version, {}):
            tree.records_asked.setdefault(version, {}).setdefault(peer, set()).add((vid, idx))
            if len(versions := wanting.get((version[0], vid, idx), set())) > 1:
                tree.records_disputed[(version[0], vid, idx)] = frozenset(versions)
    by_fid: dict[str, list[tuple[str, int]]] = {}
    for fid, vid, idx in came:
        by_fid.setdefault(fid, []).append((vid, idx))
    answered = [version for version, wanted in tree.records_wanted.items()
                if any(record in wanted for record in by_fid.get(version[0], ()))]
    for version in answered:
        # Walked again (``inherits_punched``), its notes kept, its want set aside until then.
        tree.records_rewalk[version] = tree.records_wanted.pop(version)
        node = tree.find(version[0])
        if node is not None and node.is_reg and node.head == version[1]:
            # Shown as it is already (another peer sent nothing first): no arrival looks at it
            # again, so the rest its manifest names (its blocks, once its tree's nodes came) is
            # wanted here.
            try:
                inherits_punched(volume, node)
            except Exception:  # a bug a record reached: never the end of the sync
                log.exception("walking a version again for records gc punched failed")
    drop_superseded(volume)


def note_listed(volume: Volume, peer: str, listed: set[tuple[str, str, int]]) -> None:
    """``peer``'s changes feed lists the records ``listed`` (fid, vid, index) gc punched here: the notes
    that it was asked for them in vain are dropped, so that the next ask fetches them by id, checked
    (``_take_punched``).  The feed says it has them now: kept, a record one server lacked at the ask and
    got later was never asked of it again, EIO and a false alarm until the next unlock (attack round
    46a (4)); never placed from the feed itself (45b (2)).  Bounded by the feed's entries."""
    tree = volume.tree
    by_fid: dict[str, set[tuple[str, int]]] = {}
    for fid, vid, idx in listed:
        by_fid.setdefault(fid, set()).add((vid, idx))
    for version, peers in list(tree.records_asked.items()):
        if (records := by_fid.get(version[0])) is None or (noted := peers.get(peer)) is None:
            continue
        noted -= records
        if not noted:
            del peers[peer]
        if not peers:
            del tree.records_asked[version]


def drop_superseded(volume: Volume) -> None:
    """Forget the wants and notes of versions that are no longer the head of a node this tree shows or
    holds back (a file waiting for its version or its folder, or in conflict: its leaves are settled
    once their records came): nothing reads them through this tree.  Kept, every version of a big
    file that arrived inheriting the same punched records added its wants for the tree's life, none
    sent (attack round 43a (4)); a later version wants what it inherits itself."""
    tree = volume.tree
    _settled_pruned(volume)
    versions = tree.records_wanted.keys() | tree.records_asked.keys() | tree.records_rewalk.keys()
    if not versions:
        tree.records_sealed.clear()
        return
    waiting = tree.incomplete() | tree.unplaced()
    local = replica.local_of(volume.store)
    for fid, vid in versions:
        node = tree.find(fid)
        if ((node is not None and node.head == vid) or fid in waiting
                or local is None or replica.in_conflict(local, fid)):
            continue
        _forget(volume, (fid, vid))
    _sealed_pruned(volume)


def _settled_pruned(volume: Volume) -> None:
    """The settled notes (``records_settled``) of versions no node this tree shows has as its head,
    dropped where the file is not in conflict (its leaves are walked too): a later version of a file
    is noted itself, the older note held nothing any look reads (attack round 52c (2)).  A note dropped
    too soon costs one walk (a manifest load), never a want."""
    tree = volume.tree
    stale = [(fid, vid) for fid, vid in tree.records_settled
             if (node := tree.find(fid)) is None or node.head != vid]
    if not stale:
        return
    local = replica.local_of(volume.store)
    for fid, vid in stale:
        if local is None or not replica.in_conflict(local, fid):
            del tree.records_settled[(fid, vid)]


def _sealed_pruned(volume: Volume) -> None:
    """The writers' sealed hashes (``records_sealed``) of records no version wants any more, dropped."""
    tree = volume.tree
    if tree.records_sealed:
        wanted = {(version[0], vid, idx) for version, want in _wants(volume) for vid, idx in want}
        for record in [record for record in tree.records_sealed if record not in wanted]:
            del tree.records_sealed[record]


def want_punched(volume: Volume) -> None:
    """A tree just loaded (an unlock, a mount) may show a peer's version that arrived while no tree
    here was unlocked and inherits records gc punched out here (no arrival looked at it): they are
    wanted from the peer (``inherits_punched``; the file shows that version meanwhile, and reads EIO
    until they come).  Only files with punched rows, or a record placed again in two or more copies
    (store/places.py ``punched_files``), whose current version came from a peer are walked (a version
    written here names none: gc keeps what the versions known here use)."""
    places = volume.layout.places
    if places is None or not places.rows_kept:
        return
    for fid in places.punched_files():
        node = volume.tree.find(fid)
        if node is not None and node.is_reg and node.head and places.came_from_peer(fid, node.head):
            inherits_punched(volume, node)


def _copies_vouched(volume: Volume, fid: str, needed: Wanted, punched: Punched) -> None:
    """The records ``needed`` wants as another copy of one placed again (``_other_copy``) left out
    where their writer's own version vouches for other bytes than this version names
    (``records_sealed``): that version reads EIO as its manifest names them (its read says so), and
    a copy asked for would be checked against the writer's hash, one placed already: asked for ever."""
    sealed = volume.tree.records_sealed
    for (vid, idx), (_, sha) in list(needed.items()):
        if not (vid in punched and in_runs(punched[vid][1], idx)) and sealed.get((fid, vid, idx), sha) != sha:
            del needed[(vid, idx)]


# Versions noted as settled against the copies placed again (``Inodes.records_settled``): the oldest
# note goes first (a version walked again is one manifest load, not a loss).
SETTLED_LIMIT = 1 << 12


def _copies_seen(copies: Copies, vid: str) -> bytes | None:
    """A digest of the (writer, index, SHA-256) of every copy of another writer's record placed again
    here: what a walk of version ``vid`` for copies (``_other_copy``) looks at, so what a new walk could
    find otherwise; None if there is none.  A digest, not the set: a note kept the whole set, per version
    noted, ~225 bytes a copy (16 versions of a file of 8,192 copies: 29 MB; ~60 GB at the cap; attack
    round 52c (2)).  The rows are sorted first: the store's order is not the note's."""
    rows = sorted(_row_bytes(writer, idx, sha) for (writer, idx), held in copies.items() if writer != vid
                  for sha in held)
    if not rows:
        return None
    digest = hashlib.sha256()
    for row in rows:
        digest.update(row)
    return digest.digest()


def _row_bytes(writer: object, idx: object, sha: bytes) -> bytes:
    """One copy's row, each field length-prefixed (the store's values are not trusted to be of their
    type or free of any separator)."""
    fields = [str(writer).encode(), str(idx).encode(), sha]
    return b"".join(len(field).to_bytes(4, "big") + field for field in fields)


def _note_settled(settled: dict[tuple[str, str], bytes], version: tuple[str, str], seen: bytes) -> None:
    """Version ``version`` walked against the copies whose digest is ``seen`` and wanting nothing: not
    walked again at each arrival or look until they change (a copy placed, or gc dropping one).  Kept,
    a file whose punched records were fetched back once had its manifest loaded at every arrival of a
    version and every look, for as long as gc kept the copy (attack round 50a (1)).  A note is fixed
    in size (a digest), at most ``SETTLED_LIMIT`` of them; those of versions superseded go with them
    (``drop_superseded``)."""
    settled.pop(version, None)
    while len(settled) >= SETTLED_LIMIT:
        settled.pop(next(iter(settled)))
    settled[version] = seen


def _other_copy(copies: Copies, vid: str, writer: str, index: int, sha: bytes | None) -> bool:
    """Whether record (``writer``, ``index``), another version's, was placed again here after gc punched
    it (``copies``) with other bytes than the SHA-256 ``sha`` version ``vid`` names for it: then it
    is wanted again, as another copy (store/places.py ``copies``).  A record is one for every version
    (its id is its writer's (fid, vid, index)) and its writer's version, gone here, vouches for none
    of them: his version walked alone first had the server's bytes matching his hash placed, and her
    genuine version, walked after, found the record placed and read EIO for good (attack round 46a
    (3)).  Each version now reads the copy its own manifest names."""
    return sha is not None and writer != vid and (held := copies.get((writer, index))) is not None \
        and sha not in held


def _inherited(volume: Volume, fresh: Node, punched: Punched, copies: Copies) -> tuple[Wanted | None, bool]:
    """The punched records that the manifest of ``fresh``'s version names.  Its own tree is walked
    from the root: a punched node it names is wanted first (a few records; what lies under it is not
    known until it came, and the next look walks on from it), and once every node it names is here,
    the punched blocks it names.  Only what this version's own manifest names is ever wanted: not the
    nodes of every dropped version (attack round 42a (2)), and never a stored run expanded, each index
    the manifest names looked up in the runs (``punched`` is the store's: whoever writes the vault
    folder may plant a run of billions, 42a (8)).  Each with the hash the manifest names for it (a
    parent node each child node's, a Merkle leaf each block's): what a peer sends is checked against
    it before it is kept (attack round 43a (1)).  And whether those hashes are vouched for: its manifest
    root is the one its signed document names (``_root_vouched``); read unchecked (``vouch=False``: the
    records of the versions that wrote its tree's nodes may be punched, their digests not checkable),
    a root a holder of the file's key sealed outweighed her version's hashes (attack round 44a (1)).
    None for the want where the walk failed (a record of its own unreadable)."""
    vid = fresh.head or ""
    others = {v: runs for v, runs in punched.items() if v != vid}
    if not others and not any(writer != vid for writer, _ in copies):
        return {}, False

    def gone(writer: str, index: int, sha: bytes | None) -> bool:
        return (writer in others and in_runs(others[writer][1], index)) or \
            _other_copy(copies, vid, writer, index, sha)

    reader = Content(volume.layout, fresh.owner, fresh.fid, fresh.dek, None, None,
                     check_sidecar=False, vouch=False)
    try:
        place = fresh.manifest or (0, 0)
        if nodes := reader.absent_manifest_nodes(place, vid, gone):
            wanted: Wanted = {(v, idx): (others[v][0] if v in others else fresh.owner, sha)
                              for v, idx, sha in nodes}
            return wanted, _vouched_if_hashed(volume, fresh, reader, wanted)
        manifest = reader.load_manifest(place, vid)
        vids = manifest.vids
        wanted = {}
        for first, count, _, _, vidx, _ in manifest.blocks.runs:
            if vidx < len(vids) and (writer := vids[vidx]) in others:
                owner, runs = others[writer]
                # Cut to the blocks this run names: the work is what the manifest names.
                for low, high in overlap(runs, first, first + count - 1):
                    wanted.update(((writer, idx), (owner, reader.block_sha(writer, idx)))
                                  for idx in range(low, high + 1))
        # Blocks placed again with other bytes than this version names (bounded by ``copies``); the
        # record's owner is the file's (its .vf's).
        for writer, idx in copies:
            if idx < 0 or (writer, idx) in wanted:
                continue
            _, length, named_by, _ = manifest.blocks.get(idx)
            sha = reader.block_sha(writer, idx)
            if length and named_by < len(vids) and vids[named_by] == writer \
                    and _other_copy(copies, vid, writer, idx, sha):
                wanted[(writer, idx)] = (fresh.owner, sha)
        return wanted, _vouched_if_hashed(volume, fresh, reader, wanted)
    except (VaultError, OSError, ValueError):
        # Its own records are here (``held``): a bad one is the read's to say.  None, not {}: a walk
        # that failed wanted nothing it could tell, so it is not noted as settled (attack round 52c (2)).
        return None, False
    finally:
        reader.close()


def _vouched_if_hashed(volume: Volume, fresh: Node, reader: Content, wanted: Wanted) -> bool:
    """Whether the hashes ``wanted`` names are vouched for (none named: nothing to vouch for)."""
    return any(sha is not None for _, sha in wanted.values()) and _root_vouched(volume, fresh, reader)


def _root_vouched(volume: Volume, fresh: Node, reader: Content) -> bool:
    """Whether the manifest root ``reader`` read for ``fresh``'s version is the one its signed, admitted
    document names (placements.py ``signed_root``): no longer what a record is checked against (its
    writer's sealed hash, or every named one: ``_checked_rows``), kept as what the walk saw.  Not through
    ``version_shas``: that judged a writer's version before its node was taken in, the refusal cached
    (attack round 46a (2)), and needs every record of the version here (46a (1))."""
    places = volume.layout.places
    vid = fresh.head
    if places is None or vid is None or fresh.manifest is None or reader.fd is None:
        return False
    fd = reader.fd
    try:
        offset, length = reader.where(*fresh.manifest, vid, MANIFEST_INDEX)
        root = hashlib.sha256(os.pread(fd, length, offset)).digest()
    except (VaultError, OSError, ValueError):
        return False
    return placements.signed_root(places, fresh.fid, vid, fresh.dek) == root


# A walk looks up the sealed hashes of at most this many writers' versions (each a manifest tree read):
# the others' records are checked against every hash named (``_checked_rows``).
SEALED_WRITERS = 8


def _writers_sealed(volume: Volume, fresh: Node, wanted: Wanted) -> None:
    """For the records ``wanted`` names, the hash their writer's own version vouches for, where its
    signed document is here and admitted (``signed_root``, judged now where no verdict is cached: a
    restart or an unlock dropped them, attack round 47a (1); the writer's version is an old one, its
    node taken in already), its manifest record hashes as that names: noted in ``records_sealed``, the
    one hash each is checked against.  The writer's own tree nodes with the hash their parent in its
    tree names (walked from its root, as far as its nodes are here, 47a (2)); its blocks with the hash
    its leaves name (its tree loaded whole, each node checked against its parent).  A record is its
    writer's (its id is the writer's (fid, vid, index)); the hash the wanting versions name is theirs,
    and which of them want it, or are vouched, at an ask the server and a write member steer (attack
    round 46a (1), (3))."""
    places = volume.layout.places
    sealed = volume.tree.records_sealed
    if places is None:
        return
    writers: dict[str, list[int]] = {}
    for writer, idx in wanted:
        if (fresh.fid, writer, idx) not in sealed:
            writers.setdefault(writer, []).append(idx)
    if not writers:
        return
    punched = places.punched_of(fresh.fid)
    for writer in sorted(writers)[:SEALED_WRITERS]:
        if (root := placements.signed_root(places, fresh.fid, writer, fresh.dek, judge=True)) is None:
            continue  # nothing vouches for what it sealed: every named hash is checked
        own = [row for row in places.of_version(fresh.fid, writer) if row.idx == MANIFEST_INDEX]
        if not own:
            continue
        place = (own[0].offset, own[0].length)
        reader = Content(volume.layout, fresh.owner, fresh.fid, fresh.dek, None, None,
                         check_sidecar=False, vouch=False)
        try:
            nodes = _nodes_named(reader, place, fresh.fid, writer, writers[writer], punched)  # opens it
            offset, length = reader.where(*place, writer, MANIFEST_INDEX)
            if reader.fd is None or hashlib.sha256(os.pread(reader.fd, length, offset)).digest() != root:
                continue  # resealed in place (the read says so): its tree vouches for nothing
            sealed.update(nodes)
            if blocks := [idx for idx in writers[writer] if idx >= 0]:
                reader.load_manifest(place, writer)
                sealed.update(((fresh.fid, writer, idx), sha) for idx in blocks
                              if (sha := reader.block_sha(writer, idx)) is not None)
        except (VaultError, OSError, ValueError):
            continue  # its tree's nodes punched too, or damaged: every named hash is checked
        finally:
            reader.close()


def _nodes_named(reader: Content, place: tuple[int, int], fid: str, writer: str, wanted: list[int],
                 punched: Punched) -> dict[tuple[str, str, int], bytes]:
    """The hash the writer's own tree (its root at ``place``; the caller checks it against the signed
    one) names for each of its own nodes ``wanted`` names (negative indices), as its parent names it:
    the tree walked from the root down to the nodes not here (``absent_manifest_nodes``: the tree's
    height and the nodes it names, whatever ``punched`` holds).  A node is wanted as punched: the walk
    meets it absent."""
    nodes = {idx for idx in wanted if idx < MANIFEST_INDEX}

    def gone(vid: str, index: int, _: bytes | None) -> bool:
        return (vid == writer and index in nodes) or (vid in punched and in_runs(punched[vid][1], index))

    return {(fid, vid, idx): sha for vid, idx, sha in reader.absent_manifest_nodes(place, writer, gone)
            if vid == writer and idx in nodes and sha is not None}
