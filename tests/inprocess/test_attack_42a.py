"""Attack round 42a, in-process: round 41b's last fixes (records gc punched fetched again).

Run 03:41 UTC, 2026-12-06 (holes (1), (2), (6), (7), (8): 5 xfailed, 2 controls passed);
with --runxfail each xfail fails at its own assertion (the scene's asserts all held).
Fixed since, all five (docs/SECURITY.md "Attack round 42"): the marks are gone, and tests added for a
failing ask, a version shown as it is wanting the rest, and a punched node wanted before its blocks.

Hole (1), low-medium: one peer that lacks the punched records stops every other peer being asked.
  Attack: the vault syncs with two peers (sync/service.py runs one Replicator per peer, all on the
    same trees: ``beneath``).  A peer's version inherits records gc punched here; the peer asked
    first does not send them (a hostile server withholds them; an honest one just added, still
    being filled, does not have them yet); the other peer holds them.
  Seen: ``test_a_peer_lacking_punched_records_does_not_keep_them_from_the_peer_holding_them``
    (run, fails: the second peer is never asked and the file reads EIO).
  Cause: fs/arrivals.py ``asked_records`` (``records_asked`` is per tree, not per peer) with
    sync/replicator.py ``_take_punched``: the first replicator's unanswered ask marks the version
    asked for all.
  Impact: the file reads EIO (an alarm) until the next unlock or mount (``want_punched``), though
    a peer of hers holds every byte; nothing may be lost, and one hostile peer among honest ones
    can keep her edit unreadable.
  Fix: note the versions asked per peer (``records_asked`` keyed by peer name), and take a version
    in as it is only once every peer running was asked; or ask the other peers in turn.
  Tests: that one; the control ``..._asked_in_the_other_order`` passes.

Hole (2), low (cost, no loss): a version that names no punched record is held back, and the tree
  nodes of every other dropped version are fetched and appended again.
  Attack: none needed: her big file (more than 256 blocks: a manifest tree with leaf nodes) edited
    in one block; gc drops the older version here (its root, its leaf 0, its block 0 punched; its
    leaf 1 and other blocks kept, the new version uses them).  A later version (her desktop's edit)
    names none of the punched records.
  Seen: ``test_a_version_naming_no_punched_record_is_not_held_back`` (run, fails: held back, the
    dropped version's leaf wanted; fetched, it is appended to the ``.vf`` again).
  Cause: vault/services/absorbing.py ``_inherited``: every punched tree node (index below -1) of
    every other version is wanted "first", before the manifest is walked, whether or not the
    version's manifest names it.
  Impact: each peer version of a file gc thinned here waits a round trip, and the dropped versions'
    manifest nodes are fetched and appended again (gc's work undone until the next run, which
    punches them again, and the next edit fetches them again); a server can answer one per round.
  Fix: want a punched node only when the walk of the version's own tree meets it (load the manifest
    tree level by level: a node named and punched is wanted, its children after it came).
  Tests: that one.

Hole (6), medium (honest use; the sync with a peer stalls): the records wanted again are asked for
  in one request, however many.
  Attack: none needed: her big file (2 GiB: 131072 blocks) rewritten here, the old version dropped
    by gc; her desktop's offline edit of one block of the old version arrives: 131071 records wanted.
  Seen: ``test_records_wanted_again_are_asked_for_in_batches`` (run, fails: MANY = 40 records asked
    in one ``_bulk_get``; the pull's own asks are ``RECORDS_BATCH`` = 32 at a time, "about 2.8 MB").
    At scale read only, unconfirmed: about 2.9 GB of JSON in one answer, over ``JSON_LIMIT``
    (256 MiB; ``bulk_get`` then halves, each half refetched whole) or past what the server builds
    (an HTTP error: ``PeerUnavailable``, nothing noted asked); ``_take_punched`` runs first in every
    ``pull``, so the pull from that peer retries the same ask and never reaches its changes feed.
  Cause: sync/replicator.py ``_take_punched``: one ``db.bulk_get`` of every wanted id.
  Impact: memory and bandwidth spikes; at worst all sync down from that peer stops.
  Fix: ask ``RECORDS_BATCH`` at a time (as ``pull`` does), placing each batch, and note a version
    asked once every batch was; a failed ask ends the version's want (noted asked) rather than the pull.
  Tests: that one.

Hole (7), medium (her new file gone from her desktop's view): a folder's removal served before
  the removals of the folders under it counts them as holding nothing.
  Attack: her laptop removes F/s/t/u (``rm -r F``, made there) while her desktop saves
    F/s/t/u/new.txt; the server serves F's removal in a batch of its own and the subfolders'
    removals later (it may order its feed as it likes; a pull batch boundary, or a read in the
    middle of the laptop's ``_bulk_docs``, stored in id order, does the same without an attacker).
  Seen: ``test_a_folders_removal_served_before_its_subfolders_keeps_what_she_saved_under_it`` (run
    at function level, in-process: the folders' ``seq`` set to the laptop's; fails: F counted as
    holding nothing live).  The mount-level loss is round 41's own finding (F removed takes the
    subfolders and new.txt from the desktop's tree); not run here across batches.
  Cause: vault/tree/revival.py ``_live``: a folder child recurses (``_holds_live``) only when its
    own removal is stored; one still as the laptop made it returns ``seq == this device``: False,
    whatever it holds.
  Impact: as round 41's deep ``rm -r`` bug: the desktop's tree drops F with new.txt until another
    device (the laptop, if it comes) revives the folders, or a remount loads the orphan.
  Fix: a folder child holds what its subtree holds whatever its own state: recurse for every folder
    child (``depth < DEPTH_LIMIT``), not only one whose removal waits in the batch.
  Tests: that one; the control ``..._served_with_its_subfolders_keeps_what_she_saved`` passes.

Hole (8), low (a store writer's flood, a hang at unlock): a planted ``punched`` row of one long run
  of tree-node indices is expanded index by index into wanted records.
  Attack: whoever writes the vault folder adds one row to store.sqlite's ``punched`` for a file
    whose current version came from a peer: another vid, ``idxs`` "-300001:-2" (or "-4000000000:-2").
  Seen: ``test_a_planted_punched_run_makes_no_flood_of_wanted_records`` (run, fails: 300000
    records wanted; at -4e9 read only: ``want_punched`` at every unlock builds a dict of 4e9 entries,
    a hang and out of memory, before the mount serves).
  Cause: vault/services/absorbing.py ``_inherited``: ``range(first, min(last, MANIFEST_INDEX - 1) + 1)``
    over the planted run, before any manifest names one; store/places.py ``_indices`` likewise
    expands runs in ``insert_arrived`` and ``_forget_where``.
  Impact: a mount that never comes up, or one ``_bulk_get`` of every planted id (hole (6)).
  Fix: never expand a run: want only the nodes the version's own tree names (hole (2)'s fix), test
    ``in_runs`` per named index, and refuse a row whose runs are not indices a record can have.
  Tests: that one.
"""

from __future__ import annotations

import errno
import os

from fusevault.errors import PeerUnavailable
from fusevault.sync.replicator import RECORDS_BATCH
from fusevault.vault.format.manifest import NEW_BLOCK_SIZE
from fusevault.vault.services.punched_wants import inherits_punched
from fusevault.vault.tree import revival
from inprocess.conftest import DIR, ME, ROOT, make
from inprocess.test_punched_records import Peer, _expected, _punch, _punched_scene, _read, _replicator


async def _two_peers(fs, lacking_first: bool) -> tuple[bytes | int, Peer, Peer]:
    volume = fs.volume
    node, rows, genuine = await _punched_scene(fs)
    assert inherits_punched(volume, node)
    lacking, holding = Peer([]), Peer(genuine)
    first, second = (lacking, holding) if lacking_first else (holding, lacking)
    for name, peer in (("first", first), ("second", second)):
        r, _ = _replicator(fs, peer, name)  # two peers, as sync/service.py runs them: each its own name
        await r._take_punched()
    volume.layout.places.refused.clear()
    return await _read(fs), lacking, holding


async def test_a_peer_lacking_punched_records_does_not_keep_them_from_the_peer_holding_them(fs) -> None:
    """Hole (1): the peer lacking them is asked first; the one holding them is never asked."""
    got, lacking, holding = await _two_peers(fs, lacking_first=True)
    assert lacking.asked
    assert holding.asked, "the peer holding the records was never asked"
    assert got == _expected()


async def test_a_peer_lacking_punched_records_asked_in_the_other_order(fs) -> None:
    """Control: the peer holding them asked first, the file reads as written."""
    got, _, holding = await _two_peers(fs, lacking_first=False)
    assert holding.asked and got == _expected()


BIG = 300  # blocks: past one leaf of 256, so the manifest is a root and two leaf nodes


async def test_a_version_naming_no_punched_record_is_not_held_back(fs) -> None:
    """Hole (2): v1 (a tree: root -1, leaves -2 and -10), v2 edits block 0 (its own root and leaf 0,
    v1's leaf 1 and blocks 1.. shared), gc drops v1 here: v1's root, leaf 0 and block 0 punched.
    v3 (block 5 edited: as her desktop's edit would arrive) names none of them."""
    volume = fs.volume
    entry = await make(fs.ops, b"big.bin", os.urandom(BIG * NEW_BLOCK_SIZE))
    v1 = volume.resolve(b"big.bin").head
    for at in (10, 5 * NEW_BLOCK_SIZE + 10):
        info = await fs.ops.open(entry.st_ino, os.O_RDWR, ME)
        await fs.ops.write(info.fh, at, b"an edit")
        await fs.ops.release(info.fh)
    node = volume.resolve(b"big.bin")
    rows = {row.idx: row for row in volume.layout.places.of_version(node.fid, v1)}
    assert -2 in rows and -10 in rows, "v1's manifest is a tree"
    gone = [rows[-1], rows[-2], rows[0]]  # what v2 and v3 do not use
    genuine = await _punch(volume, node, gone)
    assert volume.layout.places.punched_of(node.fid)
    size = os.path.getsize(volume.layout.vf_path(node.owner, node.fid))
    held = inherits_punched(volume, node)
    wanted = dict(volume.tree.records_wanted)
    r, _ = _replicator(fs, Peer(genuine))
    await r._take_punched()
    grown = os.path.getsize(volume.layout.vf_path(node.owner, node.fid)) - size
    assert not held and not wanted and grown == 0, (held, wanted, grown)


async def test_a_punched_node_the_version_names_is_wanted_first_then_the_blocks_under_it(fs) -> None:
    """Hole (2)'s fix, the other side: v2 (block 0 edited) names v1's leaf 1 and its blocks; gc drops
    v1's root, leaf 0, leaf 1 and block 260 here.  The walk of v2's tree meets v1's leaf 1 alone (not
    v1's leaf 0, which v2 does not name): it is wanted first; once it came, block 260 under it."""
    volume = fs.volume
    data = os.urandom(BIG * NEW_BLOCK_SIZE)
    entry = await make(fs.ops, b"big.bin", data)
    v1 = volume.resolve(b"big.bin").head
    info = await fs.ops.open(entry.st_ino, os.O_RDWR, ME)
    await fs.ops.write(info.fh, 10, b"an edit")
    await fs.ops.release(info.fh)
    node = volume.resolve(b"big.bin")
    rows = {row.idx: row for row in volume.layout.places.of_version(node.fid, v1)}
    gone = [rows[-1], rows[-2], rows[-10], rows[260]]
    genuine = await _punch(volume, node, gone)
    peer = Peer(genuine)
    r, _ = _replicator(fs, peer)
    steps = []
    while inherits_punched(volume, node):
        steps.append(set(volume.tree.records_wanted[(node.fid, node.head)]))
        await r._take_punched()
        assert len(steps) < 5
    assert steps == [{(v1, -10)}, {(v1, 260)}], steps
    volume.layout.places.refused.clear()
    info = await fs.ops.open(entry.st_ino, os.O_RDONLY, ME)
    try:
        got = await fs.ops.read(info.fh, 260 * NEW_BLOCK_SIZE, NEW_BLOCK_SIZE)
    finally:
        await fs.ops.release(info.fh)
    assert got == data[260 * NEW_BLOCK_SIZE: 261 * NEW_BLOCK_SIZE]


MANY = RECORDS_BATCH + 8  # blocks of v1 that v2 inherits, all punched


async def test_records_wanted_again_are_asked_for_in_batches(fs) -> None:
    """Hole (6): v1 of ``MANY + 1`` blocks, v2 changes its last block (inheriting the others), gc
    drops v1 here: all of v1's blocks v2 inherits are wanted, and asked for in one request."""
    volume = fs.volume
    entry = await make(fs.ops, b"many.bin", os.urandom((MANY + 1) * NEW_BLOCK_SIZE))
    v1 = volume.resolve(b"many.bin").head
    info = await fs.ops.open(entry.st_ino, os.O_RDWR, ME)
    await fs.ops.write(info.fh, MANY * NEW_BLOCK_SIZE + 10, b"an edit")
    await fs.ops.release(info.fh)
    node = volume.resolve(b"many.bin")
    gone = [row for row in volume.layout.places.of_version(node.fid, v1) if 0 <= row.idx < MANY]
    assert len(gone) == MANY
    genuine = await _punch(volume, node, gone)
    assert inherits_punched(volume, node)
    peer = Peer(genuine)
    r, _ = _replicator(fs, peer)
    await r._take_punched()
    assert sum(len(asked) for asked in peer.asked) == MANY  # every one asked for (and sent)
    assert max(len(asked) for asked in peer.asked) <= RECORDS_BATCH, [len(a) for a in peer.asked]


async def _deep_scene(fs) -> tuple[object, list]:
    """F/s/t/u made on her laptop (their ``seq`` its), u/new.txt saved here since: (F, [s, t, u])."""
    volume = fs.volume
    ino = ROOT
    for name in (b"F", b"s", b"t", b"u"):
        ino = (await fs.ops.mkdir(ino, name, DIR, ME)).st_ino
    await make(fs.ops, b"new.txt", b"saved on the desktop", parent=ino)
    await volume.flush_pending()
    top = volume.resolve(b"F")
    chain = [volume.resolve(path) for path in (b"F/s", b"F/s/t", b"F/s/t/u")]
    new = volume.resolve(b"F/s/t/u/new.txt")
    assert all(node.rev is not None for node in (top, *chain, new)), "all committed"
    assert revival._live(volume.tree, new), "her new file is live here"
    for node in (top, *chain):
        node.seq = ("laptop", 7)  # made on her laptop, taken in here
    return top, chain


async def test_a_folders_removal_served_before_its_subfolders_keeps_what_she_saved_under_it(fs) -> None:
    """Hole (7): F's removal served alone (the server orders the laptop's removals F first, and
    the rest later): F holds her new file three folders down; none of their removals is here yet."""
    top, _ = await _deep_scene(fs)
    assert revival._holds_live(fs.volume.tree, top), "F counted as holding nothing live"


async def test_a_folders_removal_served_with_its_subfolders_keeps_what_she_saved(fs, monkeypatch) -> None:
    """Control (round 41's fix): the subfolders' removals stored in the same batch, not taken yet."""
    top, chain = await _deep_scene(fs)
    store = fs.volume.store
    real = store.get
    removed = {node.fid: {"_id": node.fid, "_rev": "9-" + "e" * 32, "delete": True} for node in chain}
    monkeypatch.setattr(store, "get", lambda doc_id: removed.get(doc_id) or real(doc_id))
    assert revival._holds_live(fs.volume.tree, top)


PLANTED = 300_000  # a run's length in a planted row: -PLANTED-1 .. -2 (a store writer could write -4e9)


async def test_a_planted_punched_run_makes_no_flood_of_wanted_records(fs) -> None:
    """Hole (8): one ``punched`` row planted in store.sqlite (by whoever writes the vault folder) for a
    version of plan.bin no manifest names, its indices one run of ``PLANTED`` tree nodes."""
    volume = fs.volume
    node, _, _ = await _punched_scene(fs)
    with volume.store.transaction() as db:
        db.execute("INSERT INTO punched (fid, vid, owner, idxs) VALUES (?, ?, ?, ?)",
                   (node.fid, "f" * 32, node.owner, f"{-PLANTED - 1}:-2"))
    inherits_punched(volume, node)
    wanted = volume.tree.records_wanted.get((node.fid, node.head), {})
    assert len(wanted) < 100, f"{len(wanted)} records wanted for one planted row"


class _Away(Peer):
    """A peer whose ``_bulk_get`` fails (away, or an answer past what the server builds: HTTP 500)
    while its changes feed answers (caught up)."""

    sent = received = 0

    def __init__(self) -> None:
        super().__init__([])
        self.fed = 0

    async def bulk_get(self, wanted: list[tuple[str, str]], *, missing_ok: bool = False) -> list[dict]:
        self.asked.append(wanted)
        raise PeerUnavailable("peer answered HTTP 500 to POST /_bulk_get")

    async def changes(self, since: object, limit: int, wait: bool = False) -> tuple[list[dict], object]:
        self.fed += 1
        return [], since


async def test_a_failing_ask_for_punched_records_stalls_no_pull_and_another_peer_still_sends_them(fs) -> None:
    """Hole (6), the stall: ``_take_punched`` runs first in every pull; an ask that fails must not
    keep the pull from the peer's changes feed (at every retry), and the version stays wanted of
    the other peers."""
    volume = fs.volume
    node, _, genuine = await _punched_scene(fs)
    assert inherits_punched(volume, node)
    away = _Away()
    r, _ = _replicator(fs, away, "away")
    r.checkpoint, r.keys = {}, None
    for _ in range(2):
        assert await r.pull() is False  # its changes feed reached: caught up
    assert away.fed == 2 and len(away.asked) == 1, "asked once, not at every pull"
    assert await _read(fs) == errno.EIO  # shown as it is meanwhile (an alarm)
    holding = Peer(genuine)
    r, _ = _replicator(fs, holding, "holding")
    await r._take_punched()
    assert holding.asked
    assert await _read(fs) == _expected()  # the EIO read above refused nothing for good


async def test_a_version_shown_as_it_is_wants_the_rest_once_another_peer_sends_its_tree_node(fs) -> None:
    """Hole (1), a manifest tree: v2 (block 299 edited) inherits v1's leaf 0 and its blocks; gc
    punched the leaf and blocks 0 and 1 here.  The peer lacking them is asked first (v2 is shown as
    it is), the other sends the leaf: v2 is walked again, as no arrival looks at it, and the blocks
    the leaf names are wanted and asked next."""
    volume = fs.volume
    original = os.urandom(BIG * NEW_BLOCK_SIZE)
    entry = await make(fs.ops, b"big.bin", original)
    v1 = volume.resolve(b"big.bin").head
    at = (BIG - 1) * NEW_BLOCK_SIZE + 10
    info = await fs.ops.open(entry.st_ino, os.O_RDWR, ME)
    await fs.ops.write(info.fh, at, b"an edit")
    await fs.ops.release(info.fh)
    node = volume.resolve(b"big.bin")
    rows = {row.idx: row for row in volume.layout.places.of_version(node.fid, v1)}
    gone = [rows[-2], rows[0], rows[1]]  # v1's leaf 0 and two of its blocks: v2 uses them
    genuine = await _punch(volume, node, gone)
    assert inherits_punched(volume, node)
    lacking, holding = Peer([]), Peer(genuine)
    for name, peer in (("lacking", lacking), ("holding", holding), ("holding", holding)):
        r, _ = _replicator(fs, peer, name)
        await r._take_punched()
    assert [len(asked) for asked in holding.asked] == [1, 2], "the leaf, then the blocks it names"
    assert not volume.tree.records_wanted and not volume.layout.places.punched_of(node.fid)
    expected = bytearray(original)
    expected[at:at + len(b"an edit")] = b"an edit"
    info = await fs.ops.open(node.ino, os.O_RDONLY, ME)
    try:  # the leaf's first blocks, and the edit
        for offset in (0, at - 10):
            assert await fs.ops.read(info.fh, offset, 1 << 20) == expected[offset:offset + (1 << 20)]
    finally:
        await fs.ops.release(info.fh)
