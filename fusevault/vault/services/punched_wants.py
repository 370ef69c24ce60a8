"""Records gc punched out of this replica that a peer's version inherits, wanted again from the peers.

gc (services/gc.py) punches the bytes of records no version kept here references out of the ``.vf``
and notes their ids in the store's ``punched`` table (store/places.py ``forget``).  A peer's version
made before it saw that gc may still name them (a partial write made over a dropped version; attack
round 41b (1)).  Such a version is walked here (``inherits_punched``: when it arrives, from
absorbing.py ``_version_here``; a conflict's leaf, from conflicts.py; a tree just loaded,
``want_punched`` from fs/personal.py and agent/sessions.py): the records its own manifest names go
into the tree's ``records_wanted`` with the hash the manifest names, and it is held back.  The sync
(sync/replicator.py ``_take_punched``, through fs/arrivals.py ``Arrivals``) asks ``wanted_of`` per
peer, fetches them by id, places those hashing as named, and reports back with ``note_asked``: asks
answered in vain go to ``records_asked`` (per version and peer; a record several versions want also
to ``records_disputed``), records that came have their versions walked again.  ``drop_superseded``
forgets the versions no node shown or held back has as its head.
"""

from __future__ import annotations

import logging

from fusevault.errors import VaultError
from fusevault.store import replica
from fusevault.store.places import in_runs, overlap
from fusevault.vault.files.content import Content
from fusevault.vault.model.nodes import Node
from fusevault.vault.volume import Volume

log = logging.getLogger(__name__)

__all__ = ["inherits_punched", "want_punched", "wanted_of", "note_asked", "drop_superseded"]

Asked = set[tuple[tuple[str, str], str, int]]  # (version, record vid, index) asked of a peer
Punched = dict[str, tuple[str, list[tuple[int, int]]]]  # vid -> (owner, runs of punched indices)
# (vid, idx) -> (owner, SHA-256 of the record as the version's manifest names it) of records wanted
# from the peers: one that hashes otherwise is not placed (sync/replicator.py ``_take_punched``).
# None: an unhashed manifest (kinds 2 to 5) names no hash; such a record is checked when read.
Wanted = dict[tuple[str, int], tuple[str, bytes | None]]


def inherits_punched(volume: Volume, fresh: Node) -> bool:
    """Whether the version ``fresh`` names inherits records gc punched out of this replica since
    (attack round 41b (1): a peer's partial write made over a version gc dropped here names that
    version's blocks by (vid, index); read here, they are a hole or another record: EIO and a false
    forgery alarm).  If so they are wanted from the peers (``Tree.records_wanted``, fetched by the
    sync) and the caller holds the node back, until a peer asked for some sent none of them
    (``note_asked``): then it is taken in as it is (its reads say EIO) and stays wanted of the peers
    not asked for them.  Only a file with punched rows pays for the walk; a version already asked in
    vain is not walked again until some of its records came."""
    places = volume.layout.places
    vid = fresh.head
    if vid is None or fresh.manifest is None or places is None or not places.rows_kept:
        return False
    tree = volume.tree
    version = (fresh.fid, vid)
    if version in tree.records_asked and version in tree.records_wanted:
        return False  # asked in vain, and nothing came since: taken in as it is
    if not (punched := places.punched_of(fresh.fid)) or not (needed := _inherited(volume, fresh, punched)):
        tree.records_wanted.pop(version, None)
        tree.records_asked.pop(version, None)
        return False
    tree.records_wanted[version] = needed
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
    """(version, record vid, index, owner, SHA-256 its version's manifest names or None) of the records
    gc punched here that the versions this tree shows or holds back inherit (``inherits_punched``),
    less those ``peer`` was asked for in vain: the sync with it fetches them.  The wants of versions
    superseded meanwhile are dropped first (``drop_superseded``)."""
    tree = volume.tree
    drop_superseded(volume)
    _disputes_settled(volume)
    shown = _shown_hashes(volume)
    out = []
    for version, wanted in tree.records_wanted.items():
        asked = tree.records_asked.get(version, {}).get(peer, set())
        out += [(version, vid, idx, owner, shown.get((version[0], vid, idx), sha))
                for (vid, idx), (owner, sha) in wanted.items() if (vid, idx) not in asked]
    return out


def _wanting_versions(volume: Volume) -> dict[tuple[str, str, int], set[tuple[str, str]]]:
    """(fid, vid, idx) -> the versions whose want names that record."""
    out: dict[tuple[str, str, int], set[tuple[str, str]]] = {}
    for version, wanted in volume.tree.records_wanted.items():
        for vid, idx in wanted:
            out.setdefault((version[0], vid, idx), set()).add(version)
    return out


def _disputes_settled(volume: Volume) -> None:
    """The in-vain notes of a record several versions wanted, dropped for every version once the versions
    wanting it changed: refused as one of them named other bytes (``_as_named``), it was noted in vain
    for all, so once that version's want was gone the peer holding the bytes the others name was never
    asked again (attack round 44a (2)).  Noting in vain only the versions whose own hash it missed is no
    fix: the others, asked alone, then had the server's bytes matching his placed (43d (1) again).  Each
    change of the wanting versions asks again once: bounded by the versions that arrive."""
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


def _shown_hashes(volume: Volume) -> dict[tuple[str, str, int], bytes]:
    """(fid, vid, index) -> the SHA-256 the version this tree shows of that file names for the record,
    where it wants it and names one: what the record is checked against for every version wanting it.
    A record is one for every version of the file inheriting it (its id is its writer's), so placed it
    is what each of them reads: a conflict's other version (a write member's own, his manifest naming
    the bytes of his choice) or an unhashed one (nothing checked) had the server's bytes placed over the
    file as shown, reading EIO for good (attack round 43d (1)).  A version shown names it: the others
    are read against it (theirs then say EIO, said).  None shown naming it: each named hash must match
    (``_as_named``), so that versions naming different bytes have none placed (EIO, never garbage)."""
    tree = volume.tree
    out: dict[tuple[str, str, int], bytes] = {}
    for (fid, vid), wanted in tree.records_wanted.items():
        node = tree.find(fid)
        if node is None or node.head != vid:
            continue
        out.update(((fid, writer, idx), sha) for (writer, idx), (_, sha) in wanted.items() if sha is not None)
    return out


def note_asked(volume: Volume, peer: str, in_vain: Asked, came: set[tuple[str, str, int]]) -> None:
    """``peer`` was asked for records ``wanted_of`` named: ``in_vain``, those of the asks it answered
    with none of the records asked (nothing, garbage, or failures given up on); ``came`` (fid, vid,
    index): the records placed.

    Noted per (record, peer): a peer is asked again only for records new to a version's want (those a
    walk adds once the tree nodes naming them came), never for one it was asked for in vain; a stale
    answer notes only the records it was asked for, never what the version came to want meanwhile
    (two peers' asks racing, attack round 43a (2)).  A peer that sent some of an ask is asked again for
    the rest: each such ask places a record, so this ends.  A version some record of which came is
    walked again (at once if shown, else at the next look at it): it may want more."""
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
        del tree.records_wanted[version]  # walked again (``inherits_punched``), its notes kept
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


def drop_superseded(volume: Volume) -> None:
    """Forget the wants and notes of versions that are no longer the head of a node this tree shows or
    holds back (a file waiting for its version or its folder, or in conflict: its leaves are settled
    once their records came): nothing reads them through this tree.  Kept, every version of a big
    file that arrived inheriting the same punched records added its wants for the tree's life, none
    sent (attack round 43a (4)); a later version wants what it inherits itself."""
    tree = volume.tree
    versions = tree.records_wanted.keys() | tree.records_asked.keys()
    if not versions:
        return
    waiting = tree.incomplete() | tree.unplaced()
    local = replica.local_of(volume.store)
    for fid, vid in versions:
        node = tree.find(fid)
        if ((node is not None and node.head == vid) or fid in waiting
                or local is None or replica.in_conflict(local, fid)):
            continue
        tree.records_wanted.pop((fid, vid), None)
        tree.records_asked.pop((fid, vid), None)


def want_punched(volume: Volume) -> None:
    """A tree just loaded (an unlock, a mount) may show a peer's version that arrived while no tree
    here was unlocked and inherits records gc punched out here (no arrival looked at it): they are
    wanted from the peer (``inherits_punched``; the file shows that version meanwhile, and reads EIO
    until they come).  Only files with punched rows whose current version came from a peer are
    walked (a version written here names none: gc keeps what the versions known here use)."""
    places = volume.layout.places
    if places is None or not places.rows_kept:
        return
    for fid in places.punched_files():
        node = volume.tree.find(fid)
        if node is not None and node.is_reg and node.head and places.came_from_peer(fid, node.head):
            inherits_punched(volume, node)


def _inherited(volume: Volume, fresh: Node, punched: Punched) -> Wanted:
    """The punched records that the manifest of ``fresh``'s version names.  Its own tree is walked
    from the root: a punched node it names is wanted first (a few records; what lies under it is not
    known until it came, and the next look walks on from it), and once every node it names is here,
    the punched blocks it names.  Only what this version's own manifest names is ever wanted: not the
    nodes of every dropped version (attack round 42a (2)), and never a stored run expanded, each index
    the manifest names looked up in the runs (``punched`` is the store's: whoever writes the vault
    folder may plant a run of billions, 42a (8)).  Each with the hash the manifest names for it (a
    parent node each child node's, a Merkle leaf each block's): what a peer sends is checked against
    it before it is kept (attack round 43a (1))."""
    vid = fresh.head or ""
    others = {v: runs for v, runs in punched.items() if v != vid}
    if not others:
        return {}

    def gone(writer: str, index: int) -> bool:
        return writer in others and in_runs(others[writer][1], index)

    reader = Content(volume.layout, fresh.owner, fresh.fid, fresh.dek, None, None,
                     check_sidecar=False, vouch=False)
    try:
        place = fresh.manifest or (0, 0)
        if nodes := reader.absent_manifest_nodes(place, vid, gone):
            return {(v, idx): (others[v][0], sha) for v, idx, sha in nodes}
        manifest = reader.load_manifest(place, vid)
        vids = manifest.vids
        wanted: Wanted = {}
        for first, count, _, _, vidx, _ in manifest.blocks.runs:
            if vidx < len(vids) and (writer := vids[vidx]) in others:
                owner, runs = others[writer]
                # Cut to the blocks this run names: the work is what the manifest names.
                for low, high in overlap(runs, first, first + count - 1):
                    wanted.update(((writer, idx), (owner, reader.block_sha(writer, idx)))
                                  for idx in range(low, high + 1))
        return wanted
    except (VaultError, OSError, ValueError):
        return {}  # its own records are here (``held``): a bad one is the read's to say
    finally:
        reader.close()
