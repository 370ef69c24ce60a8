"""Attack round 43a, in-process: round 42a's fixes (w-a1 records gc punched wanted per peer, w-a2 the
walk of a version's own manifest tree, w-a4 a folder's removal over what is live beneath it).

Run 05:30 UTC, 2026-12-06: 7 xfailed, 3 controls passed; with --runxfail each xfail fails at its
own assertion.

Hole (1), medium: a peer that sends garbage at the wanted ids keeps the records from the peer
  holding them, for good.
  Attack: two peers (sync/service.py runs one Replicator per peer).  A version here inherits
    records gc punched (tests/inprocess/test_punched_records.py ``_punched_scene``).  The first
    peer asked answers every wanted id with a document of the right id, revision and owner and
    other bytes (a hostile server: the ids asked are in its ``_bulk_get``); the second holds them.
  Seen: ``test_garbage_from_one_peer_does_not_keep_punched_records_from_the_peer_holding_them``
    (run, fails: the second peer is never asked and the file reads EIO).
  Cause: sync/replicator.py ``_take_punched``/``_wanted_record`` place whatever bytes come at a
    wanted id (``place_records``: "checked when read"); ``insert_arrived`` then drops the indices
    from ``punched``, so ``inherits_punched`` wants nothing more, of any peer, at any unlock; and
    the first copy of a record is kept (``_check_replaced``), so no later pull replaces it.
  Impact: her edit reads EIO (an alarm) for good, though a peer of hers holds every byte: the
    42a (1) fix ("one that withholds them must not keep them from one that holds them") is undone
    by sending garbage instead of nothing.  (The ordinary pull keeps a first garbage copy too.)
  Fix: check a punched record against the hash its version's manifest names before placing it
    (a Merkle leaf names each block's SHA-256, a parent node each child node's): carry the
    expected SHA-256 in ``records_wanted``; one that differs is not placed, is said, and counts
    as not sent (still wanted of the other peers).
  Tests: that one.

Hole (2), low-medium: two replicators race; the slow one is noted asked for what it was never
  asked for.
  Attack: v2 of a big file (a manifest tree) inherits v1's leaf 0 and blocks 0 and 1, punched
    here.  Both peers' pulls run ``_take_punched`` at once (each its own task).  Peer "fast"
    (hostile, or holding only the leaf) answers the leaf at once; peer "slow" holds all of them
    and answers a little later.
  Seen: ``test_two_peers_asked_at_once_the_slow_one_is_still_asked_for_the_blocks_the_leaf_names``
    (run, fails: "slow" is never asked for the blocks; the file reads EIO).
  Cause: fs/arrivals.py ``asked_records`` judges the stale ask of "slow": its leaf came first from
    "fast" (``_wanted_record`` drops it as placed, so "slow" answered nothing), and meanwhile the
    version was walked again and wants the blocks: ``records_asked[version]`` gets "slow" for
    wants it was never asked.
  Impact: the file reads EIO until the next unlock, though a peer holds every byte.
  Fix: note asked per record (or per want generation), not per version: ``asked_records`` notes
    ``peer`` only for the records it was asked; a record placed meanwhile counts as answered.
  Tests: that one.

Hole (3), low-medium (cost): a peer that sends one record per ask makes every peer be asked for all
  the rest again at every round: quadratic.
  Attack: a hostile server answers each ``_take_punched`` with one record of those asked; another
    peer (honest, lacking them) is there too.
  Seen: ``test_a_peer_sending_one_record_at_a_time_does_not_make_the_others_asked_over_and_over``
    (run, fails: MANY = 40 records wanted, 36 rounds, the lacking peer asked for 636 record ids,
    the drip peer for 676; the bound asserted is 2 * MANY).
  Cause: ``asked_records``: an answered version's ``records_asked`` is dropped whole, so every peer
    is asked again for every record still wanted; one record a round keeps that up for N rounds.
  Impact: for a 2 GiB file (131072 blocks): about 8.6e9 record ids asked of each peer
    (2.7e8 ``_bulk_get``s), each pull of the other peers slowed by thousands of asks per round, the
    version EIO for as many rounds as records.
  Fix: note asked per (record, peer); a peer is asked again only for records new to the want (those
    a walk adds), never for those it was asked and did not send.
  Tests: that one.

Hole (4), low-medium (memory): a version none of whose records came stays in ``records_wanted``
  for the tree's life, superseded or not.
  Attack: none needed beyond a peer that lacks (or withholds) them: every save on her other device
    of a big file whose older version gc dropped here arrives as a new version inheriting the same
    N punched records; each is walked, asked, not sent, and kept.
  Seen: ``test_wanted_records_of_superseded_versions_are_not_kept_for_ever`` (run, fails: five
    successive versions, five entries of the wanted records kept).
  Cause: fs/arrivals.py ``asked_records`` now leaves a version nobody sent in ``records_wanted``
    (to ask the other peers; before 42a it was popped); nothing drops it when the file moves on, or
    once every peer was asked.
  Impact: N entries (about 150 bytes each) per arriving version until the next unlock: a 2 GiB file
    saved a hundred times is about 2 GB; ``records_wanted(peer)`` walks them at every pull.
  Fix: drop a version's want once it is no longer the head of a node shown or held back (and once
    every running peer was asked, keep only the version noted asked).
  Tests: that one.

Hole (5), low (her new file gone from this device's view, said as a replay): her older state of a
  subfolder, served again, counts as her move of it out of the folder being removed.
  Attack: she made G/s, then moved it into F (``mv G/s F/s``) and her desktop saved s/t/u/new.txt
    since; her laptop (which never saw new.txt) runs ``rm -r F``.  The server serves F's removal
    and, as the current state of s, her older signed state of s (in G) under a new revision it
    makes up (``_rev`` is not signed; a branch that wins), s's own removal held back.
  Seen: ``test_her_older_state_of_a_subfolder_served_again_does_not_take_what_she_saved_under_it``
    (run at function level, in-process, as tests/inprocess/test_revival.py: ``store.get`` gives the
    served state; fails: F counted as holding nothing live).  The mount-level effect is read only.
  Cause: vault/tree/revival.py ``_moved_out`` takes any stored state of hers that verifies and opens
    for her move out, never asking the ledger whether it is older than the state this device saw
    (absorbing.py ``_replay``, ``ledger.admit``), as the arrival of that very state does.
  Impact: F's removal is taken over what she saved under it: F, s, t, u and new.txt leave the
    desktop's tree (s's replay is then refused and said, too late for F); nothing is deleted in the
    store, the view comes back only by another device's revive or a remount.
  Fix: in ``_moved_out``, a state the ledger has seen a newer one of (``_replay``) is no move out:
    what the folder holds is looked at.
  Tests: that one; the control ``test_a_subfolder_as_the_tree_holds_it_keeps_what_she_saved_control``.

Hole (6), medium (honest use: a file EIO and an alarm until the next unlock): one failed ask of the
  only server gives the version up.
  Attack: none: one CouchDB server (the usual set-up) holds the records; the first ``_bulk_get`` of
    ``_take_punched`` fails once (Wi-Fi dropped, a timeout, a 503 while the server restarts).
  Seen: ``test_one_failed_ask_of_the_only_server_does_not_leave_her_file_eio_till_unlock`` (run,
    fails: three pulls later the server was asked once; the file reads EIO).
  Cause: sync/replicator.py ``_take_punched``: an ask that fails ``break``s and counts as nothing
    sent, so ``asked_records`` notes the peer asked for every wanted version (those of later batches
    too, never asked); ``records_wanted(peer)`` leaves them out until the tree is loaded again.
  Impact: her offline edit from the other device reads EIO, with a record alarm, until she locks
    and unlocks (or remounts), though the server holds every byte and answers the next pull.
  Fix: a failed ask notes nothing asked (only the versions whose asks were answered); to keep
    42a (6)'s guard (a peer failing every ask does not hold up each pull) retry the ask at a later
    pull with a back-off, or give up only after a few failures in a row.
  Tests: that one (``test_attack_42a.py::test_a_failing_ask_...`` wants a peer failing every ask
    asked once: a back-off passes both).

Hole (7), medium (her new file gone from this device's view, unsaid): her file's very state served
  under another revision counts as "a newer state waits", so a folder's removal is taken over it.
  Attack: as 42a (7): her laptop (never having seen it) runs ``rm -r F`` over F/s/t/u; her desktop
    saved F/s/t/u/new.txt.  The server puts new.txt's current state on top of itself under a
    revision it makes up (``_rev`` is not signed; a child of the stored revision, so the store
    takes it as current) in the batch that brings F's removal, F's id first.
  Seen: ``test_her_files_state_served_under_another_revision_does_not_take_it_with_the_folder``
    (run at function level, as hole (5); fails: F counted as holding nothing live).  The
    mount-level effect is read only.
  Cause: vault/tree/revival.py ``_stands``: ``doc["_rev"] != child.rev`` is taken for "a newer
    state waits in the batch (a move out, a removal)"; the revision is the server's to choose, the
    state (its signed ``seq``, its links) is the same.  (Round 41's rule for a file; w-a4 kept it.)
  Impact: F's removal is taken over her new file: F and everything under it leave the desktop's
    tree, likely unsaid (the copy is then taken in as the same state: read only); the store keeps it, so a
    remount brings it back through the orphan revive, if nothing removes it meanwhile.
  Fix: judge the stored state, not its revision: a state with the same signed ``seq`` as the tree's
    (``same_state``) is the state held; a newer one counts only if it changes the place (a move out,
    a removal) and the ledger has not seen a newer state (hole (5)).
  Tests: that one; the control ``test_a_subfolder_as_the_tree_holds_it_keeps_what_she_saved_control``
    (and ``test_attack_42a.py::test_a_folders_removal_served_before_its_subfolders_...``).
"""

from __future__ import annotations

import base64
import errno
import os

import trio

from fusevault.errors import PeerUnavailable
from fusevault.sync.punched_asks import PUNCHED_TRIES
from fusevault.vault.format.manifest import NEW_BLOCK_SIZE
from fusevault.vault.services.punched_wants import inherits_punched
from fusevault.vault.tree import revival
from inprocess.conftest import DIR, ME, ROOT, make
from inprocess.test_attack_42a import _Away, _deep_scene
from inprocess.test_punched_records import (
    AT,
    WORDS,
    Peer,
    _expected,
    _punch,
    _punched_scene,
    _read,
    _replicator,
)


def _garbage(docs: list[dict]) -> list[dict]:
    out = []
    for doc in docs:
        doc = dict(doc)
        doc["data"] = base64.b64encode(os.urandom(len(doc["data"]) * 3 // 4)).decode()
        out.append(doc)
    return out


async def test_garbage_from_one_peer_does_not_keep_punched_records_from_the_peer_holding_them(fs) -> None:
    volume = fs.volume
    node, _, genuine = await _punched_scene(fs)
    assert inherits_punched(volume, node)
    hostile, holding = Peer(_garbage(genuine)), Peer(genuine)
    for name, peer in (("hostile", hostile), ("holding", holding)):
        r, _ = _replicator(fs, peer, name)
        await r._take_punched()
    volume.layout.places.refused.clear()
    assert hostile.asked
    assert holding.asked, "the peer holding the records was never asked"
    assert await _read(fs) == _expected()


async def test_garbage_from_the_only_peer_reads_eio_control(fs) -> None:
    """Control: one peer sending garbage: EIO (an alarm), never its bytes."""
    volume = fs.volume
    node, _, genuine = await _punched_scene(fs)
    assert inherits_punched(volume, node)
    r, _ = _replicator(fs, Peer(_garbage(genuine)), "hostile")
    await r._take_punched()
    volume.layout.places.refused.clear()
    assert await _read(fs) == errno.EIO


BIG = 300  # blocks: past one leaf of 256, so the manifest is a root and two leaves


async def _leaf_scene(fs) -> tuple[object, bytes, list[dict], str]:
    """big.bin v1 (a tree), v2 edits block 299: v2 inherits v1's leaf 0 and its blocks; gc punched
    leaf 0 and blocks 0 and 1 here.  (node, what it must read, the genuine records, v1)."""
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
    gone = [rows[-2], rows[0], rows[1]]
    genuine = await _punch(volume, node, gone)
    expected = bytearray(original)
    expected[at:at + len(b"an edit")] = b"an edit"
    return node, bytes(expected), genuine, v1


class _Slow(Peer):
    """A peer holding ``docs`` whose answer waits for ``go`` (a farther server)."""

    def __init__(self, docs: list[dict]) -> None:
        super().__init__(docs)
        self.go = trio.Event()
        self.waiting = trio.Event()

    async def bulk_get(self, wanted: list[tuple[str, str]], *, missing_ok: bool = False) -> list[dict]:
        self.waiting.set()
        await self.go.wait()
        return await super().bulk_get(wanted, missing_ok=missing_ok)


async def test_two_peers_asked_at_once_the_slow_one_is_still_asked_for_the_blocks_the_leaf_names(fs) -> None:
    volume = fs.volume
    node, expected, genuine, _ = await _leaf_scene(fs)
    assert inherits_punched(volume, node)
    leaf = [doc for doc in genuine if doc["_id"].split("-")[-1].startswith("n")]
    assert len(leaf) == 1
    slow, fast = _Slow(genuine), Peer(leaf)
    r_slow, _ = _replicator(fs, slow, "slow")
    r_fast, _ = _replicator(fs, fast, "fast")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(r_slow._take_punched)
        await slow.waiting.wait()  # its ask is out
        await r_fast._take_punched()  # the leaf came from "fast": v2 walked again, wants the blocks
        slow.go.set()
    for r in (r_slow, r_fast):  # each pull's next round
        await r._take_punched()
    volume.layout.places.refused.clear()
    assert len(slow.asked) == 2, f"'slow' asked {len(slow.asked)} time(s): never for the blocks"
    info = await fs.ops.open(node.ino, os.O_RDONLY, ME)
    try:
        assert await fs.ops.read(info.fh, 0, 1 << 20) == expected[:1 << 20]
    finally:
        await fs.ops.release(info.fh)


async def test_two_peers_asked_in_turn_control(fs) -> None:
    """Control: "fast" (the leaf only) asked first and done, then "slow": the blocks come."""
    volume = fs.volume
    node, expected, genuine, _ = await _leaf_scene(fs)
    assert inherits_punched(volume, node)
    leaf = [doc for doc in genuine if doc["_id"].split("-")[-1].startswith("n")]
    slow, fast = Peer(genuine), Peer(leaf)
    for name, peer in (("fast", fast), ("slow", slow), ("fast", fast), ("slow", slow)):
        r, _ = _replicator(fs, peer, name)
        await r._take_punched()
    volume.layout.places.refused.clear()
    info = await fs.ops.open(node.ino, os.O_RDONLY, ME)
    try:
        assert await fs.ops.read(info.fh, 0, 1 << 20) == expected[:1 << 20]
    finally:
        await fs.ops.release(info.fh)


MANY = 40  # blocks of v1 that v2 inherits, all punched


class _Drip(Peer):
    """A peer holding them that sends one record per ask."""

    async def bulk_get(self, wanted: list[tuple[str, str]], *, missing_ok: bool = False) -> list[dict]:
        got = await super().bulk_get(wanted, missing_ok=missing_ok)
        return got[:1]


async def test_a_peer_sending_one_record_at_a_time_does_not_make_the_others_asked_over_and_over(fs) -> None:
    volume = fs.volume
    entry = await make(fs.ops, b"many.bin", os.urandom((MANY + 1) * NEW_BLOCK_SIZE))
    v1 = volume.resolve(b"many.bin").head
    info = await fs.ops.open(entry.st_ino, os.O_RDWR, ME)
    await fs.ops.write(info.fh, MANY * NEW_BLOCK_SIZE + 10, b"an edit")
    await fs.ops.release(info.fh)
    node = volume.resolve(b"many.bin")
    gone = [row for row in volume.layout.places.of_version(node.fid, v1) if 0 <= row.idx < MANY]
    genuine = await _punch(volume, node, gone)
    assert inherits_punched(volume, node)
    drip, lacking = _Drip(genuine), Peer([])
    rounds = 0
    while volume.tree.records_wanted and rounds < 3 * MANY:
        rounds += 1
        for name, peer in (("drip", drip), ("lacking", lacking)):
            r, _ = _replicator(fs, peer, name)
            await r._take_punched()
    assert not volume.layout.places.punched_of(node.fid), "every record came in the end"
    asked = sum(len(a) for a in lacking.asked)
    assert asked <= 2 * MANY, f"{rounds} rounds: the lacking peer asked for {asked} record ids, " \
                              f"the drip peer for {sum(len(a) for a in drip.asked)}"


async def test_wanted_records_of_superseded_versions_are_not_kept_for_ever(fs) -> None:
    """Five versions of plan.bin, each inheriting v1's punched blocks 0 and 1 (her other device's
    saves, as each arrives here), each walked and asked of the only peer, which lacks them."""
    volume = fs.volume
    node, _, _ = await _punched_scene(fs)
    peer = Peer([])
    r, _ = _replicator(fs, peer)
    heads = []
    for k in range(5):
        if k:
            info = await fs.ops.open(node.ino, os.O_RDWR, ME)
            await fs.ops.write(info.fh, AT + k, WORDS)
            await fs.ops.release(info.fh)
        node = volume.resolve(b"plan.bin")
        heads.append(node.head)
        assert inherits_punched(volume, node), "this version inherits the punched blocks too"
        await r._take_punched()
    assert len(set(heads)) == 5 and len(peer.asked) == 5
    kept = set(volume.tree.records_wanted)
    assert kept <= {(node.fid, node.head)}, f"{len(kept)} versions' wants kept, four superseded"


async def _replay_scene(fs) -> tuple[object, object, dict]:
    """s made in G, then moved into F (its older state, in G, kept as the server may keep it);
    t/u/new.txt saved under F/s here since; F, s, t, u as her laptop made them (their ``seq``).
    (F, s, s's older document)."""
    volume = fs.volume
    g = await fs.ops.mkdir(ROOT, b"G", DIR, ME)
    await fs.ops.mkdir(g.st_ino, b"s", DIR, ME)
    await volume.flush_pending()
    s = volume.resolve(b"G/s")
    older = dict(volume.store.get(s.fid))
    f = await fs.ops.mkdir(ROOT, b"F", DIR, ME)
    await fs.ops.rename(g.st_ino, b"s", f.st_ino, b"s", 0, ME)
    ino = s.ino
    for name in (b"t", b"u"):
        ino = (await fs.ops.mkdir(ino, name, DIR, ME)).st_ino
    await make(fs.ops, b"new.txt", b"saved on the desktop", parent=ino)
    await volume.flush_pending()
    top = volume.resolve(b"F")
    assert volume.store.get(s.fid)["_rev"] != older["_rev"], "her move into F is stored"
    for node in (top, s, volume.resolve(b"F/s/t"), volume.resolve(b"F/s/t/u")):
        node.seq = ("laptop", 7)
    return top, s, older


async def test_her_older_state_of_a_subfolder_served_again_does_not_take_what_she_saved_under_it(
        fs, monkeypatch) -> None:
    top, s, older = await _replay_scene(fs)
    store = fs.volume.store
    real = store.get
    replayed = dict(older, _rev="99-" + "f" * 32)  # a branch the server wrote: ``_rev`` is not signed
    monkeypatch.setattr(store, "get", lambda doc_id: replayed if doc_id == s.fid else real(doc_id))
    assert revival._holds_live(fs.volume.tree, top), "F counted as holding nothing: new.txt goes with it"


async def test_a_subfolder_as_the_tree_holds_it_keeps_what_she_saved_control(fs) -> None:
    """Control: nothing served for s: F holds her new file."""
    top, _, _ = await _replay_scene(fs)
    assert revival._holds_live(fs.volume.tree, top)


class _Blip(Peer):
    """The one server, holding them; its first ``_bulk_get`` fails (a Wi-Fi drop, a timeout)."""

    def __init__(self, docs: list[dict]) -> None:
        super().__init__(docs)
        self.failed = 0

    async def bulk_get(self, wanted: list[tuple[str, str]], *, missing_ok: bool = False) -> list[dict]:
        if not self.failed:
            self.failed += 1
            self.asked.append(wanted)
            raise PeerUnavailable("connection reset by peer")
        return await super().bulk_get(wanted, missing_ok=missing_ok)


async def test_one_failed_ask_of_the_only_server_does_not_leave_her_file_eio_till_unlock(fs) -> None:
    volume = fs.volume
    node, _, genuine = await _punched_scene(fs)
    assert inherits_punched(volume, node)
    server = _Blip(genuine)
    r, _ = _replicator(fs, server, "server")
    for _ in range(3):  # the pulls after the drop
        await r._take_punched()
    volume.layout.places.refused.clear()
    assert len(server.asked) > 1, "never asked again after one failed ask"
    assert await _read(fs) == _expected()


async def test_a_server_failing_every_ask_is_given_up_for_the_version_after_a_few_tries_and_said(fs) -> None:
    """Hole (6)'s fix, the other side: the only server fails every ask for the records: asked again
    after a back-off (1, 3, 7 pulls), then given up for the version, said: it is shown as it is (EIO)
    and not asked for again."""
    volume = fs.volume
    node, _, _ = await _punched_scene(fs)
    assert inherits_punched(volume, node)
    away = _Away()
    r, said = _replicator(fs, away, "away")
    for _ in range(40):  # pulls
        await r._take_punched()
    assert len(away.asked) == PUNCHED_TRIES, [len(a) for a in away.asked]
    assert said == ["punched records of away"]
    assert volume.tree.records_asked.get((node.fid, node.head)), "given up: noted asked in vain"
    assert not r.beneath.records_wanted("away") and not inherits_punched(volume, node)
    assert await _read(fs) == errno.EIO


async def test_her_files_state_served_under_another_revision_does_not_take_it_with_the_folder(
        fs, monkeypatch) -> None:
    """F/s/t/u made on her laptop, u/new.txt saved here; the server serves F's removal (her laptop's
    ``rm -r F``, which never saw new.txt) and new.txt's very state copied on top of itself under a
    revision it makes up (``_rev`` is not signed): the same body, the same ``seq``."""
    top, _ = await _deep_scene(fs)
    volume = fs.volume
    new = volume.resolve(b"F/s/t/u/new.txt")
    store = volume.store
    real = store.get
    copied = dict(real(new.fid), _rev="99-" + "f" * 32)
    monkeypatch.setattr(store, "get", lambda doc_id: copied if doc_id == new.fid else real(doc_id))
    assert revival._holds_live(volume.tree, top), "F counted as holding nothing: new.txt goes with it"
