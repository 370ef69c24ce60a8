"""Records gc punched out here that a peer's version still names (attack round 41b (1)), in-process.

A peer's partial write made over a version this device's gc dropped names that version's blocks by
(vid, index); their place rows here are gone (store/places.py ``forget`` notes them ``punched``).
The version is held back (vault/services/punched_wants.py ``inherits_punched``) and the sync fetches the
records again by id (sync/replicator.py ``_take_punched``).  The scene here: plan.bin written (v1),
then changed in its last block (v2, inheriting blocks 0 and 1 of v1), and v1's blocks 0 and 1 punched
and forgotten as gc does; the peer is a fake database serving the records asked for.  The server is
hostile: what it sends at a wanted id is appended only if it hashes as its version's manifest names it
(attack round 43a (1)), and checked again when read."""

from __future__ import annotations

import base64
import contextlib
import errno
import os
from types import SimpleNamespace

import pyfuse3
import pytest
import trio
import trio.testing

from fusevault.fs.arrivals import Arrivals
from fusevault.store.places import PlaceRow
from fusevault.sync.content_docs import read_records, record_rev
from fusevault.sync.foreground import FOREGROUND
from fusevault.sync.replicator import PeerStatus, Replicator
from fusevault.vault.format.manifest import NEW_BLOCK_SIZE
from fusevault.vault.model import alarms
from fusevault.vault.services import gc
from fusevault.vault.services.punched_wants import inherits_punched
from inprocess.conftest import ME, make, read_all

ORIGINAL = bytes(range(256)) * (3 * NEW_BLOCK_SIZE // 256)  # three blocks
WORDS = b"the laptop's words"
AT = 2 * NEW_BLOCK_SIZE + 100


class Peer:
    """A peer database serving ``docs`` by (id, rev); what it was asked for."""

    def __init__(self, docs: list[dict]) -> None:
        self.docs = docs
        self.asked: list[list[tuple[str, str]]] = []
        self.sent = self.received = 0
        self.answer = trio.Event()  # the longpoll answers (nothing changed) once set
        self.polls: list[object] = []  # the since of each changes request
        self.polls_ended = 0

    async def changes(self, since: object, limit: int, *, wait: bool = False) -> tuple[list[dict], object]:
        self.polls.append(since)
        if wait:
            await self.answer.wait()
        self.polls_ended += 1
        return [], since

    async def bulk_get(self, wanted: list[tuple[str, str]], *, missing_ok: bool = False) -> list[dict]:
        assert missing_ok  # a record the peer lacks is left out, never the end of the pull
        self.asked.append(wanted)
        return [doc for doc in self.docs if (doc.get("_id"), doc.get("_rev")) in set(wanted)]


async def _punched_scene(fs) -> tuple[object, list[PlaceRow], list[dict]]:
    """plan.bin's v2 inheriting v1's blocks 0 and 1, punched; the node, their rows, their documents."""
    volume = fs.volume
    entry = await make(fs.ops, b"plan.bin", ORIGINAL)
    v1 = volume.resolve(b"plan.bin").head
    info = await fs.ops.open(entry.st_ino, os.O_RDWR, ME)
    await fs.ops.write(info.fh, AT, WORDS)
    await fs.ops.release(info.fh)
    node = volume.resolve(b"plan.bin")
    assert node.head != v1
    rows = [row for row in volume.layout.places.of_version(node.fid, v1) if row.idx in (0, 1)]
    assert len(rows) == 2
    genuine = await _punch(volume, node, rows)
    return node, rows, genuine


async def _punch(volume, node, rows: list[PlaceRow]) -> list[dict]:
    """``rows`` (records of ``node``'s file) punched out as gc does, their places forgotten; their
    documents as a peer holding them would send them."""
    genuine = read_records(volume.layout, rows)
    fd = os.open(volume.layout.vf_path(node.owner, node.fid), os.O_RDWR)
    try:
        for row in rows:
            gc.punch_hole(fd, row.offset, row.length)
    finally:
        os.close(fd)
    await volume.store_call(volume.store.forget_places, node.fid,
                            [(row.offset, row.offset + row.length) for row in rows])
    return genuine


def _replicator(fs, peer: Peer, name: str = "server") -> tuple[Replicator, list[str]]:
    """The sync with ``peer`` (called ``name``: each peer has its own), its hand on this mount's trees
    (fs/arrivals.py), nothing else."""
    volume = fs.volume
    agent = SimpleNamespace(session=SimpleNamespace(volume=volume), missed=None, user_id=volume.key.user_id)
    arrivals = Arrivals(volume.store, lambda: [agent])
    said: list[str] = []
    r = Replicator.__new__(Replicator)
    r.store, r.layout, r.name, r.db = volume.store, volume.layout, name, peer
    r.status, r.settled, r.foreground = PeerStatus(name, f"http://{name}"), contextlib.nullcontext, FOREGROUND
    r.arrived, r.beneath = arrivals.arrived, arrivals
    r.keys, r.checkpoint, r._wake = None, {"pull": 7}, trio.Event()
    arrivals.wanting = r.want_again  # as the mount's sync (fs/lifecycle.py)
    r._refused = lambda subject, text: said.append(subject)  # type: ignore[method-assign]
    return r, said


def _wanted(rows: list[PlaceRow]) -> set[tuple[str, int]]:
    return {(row.vid, row.idx) for row in rows}


async def _read(fs) -> bytes | int:
    try:
        return await read_all(fs.ops, fs.volume.resolve(b"plan.bin").ino)
    except pyfuse3.FUSEError as err:
        return err.errno


def _expected() -> bytes:
    out = bytearray(ORIGINAL)
    out[AT:AT + len(WORDS)] = WORDS
    return bytes(out)


async def test_a_version_naming_punched_records_is_held_and_they_are_fetched_again(fs) -> None:
    volume = fs.volume
    node, rows, genuine = await _punched_scene(fs)
    assert volume.layout.places.punched_of(node.fid) == {rows[0].vid: (node.owner, [(0, 1)])}
    assert inherits_punched(volume, node)  # held back: its records wanted
    assert set(volume.tree.records_wanted[(node.fid, node.head)]) == _wanted(rows)
    peer = Peer(genuine)
    r, said = _replicator(fs, peer)
    await r._take_punched()
    assert sorted(peer.asked[0]) == sorted((doc["_id"], record_rev(doc["_id"])) for doc in genuine)
    assert said == [] and volume.layout.places.punched_of(node.fid) == {}
    assert not volume.tree.records_wanted and not inherits_punched(volume, node)
    volume.layout.places.refused.clear()
    assert await _read(fs) == _expected()
    await r._take_punched()
    assert len(peer.asked) == 1  # nothing wanted any more: nothing asked


@pytest.mark.parametrize("served", ["garbage bytes", "not base64", "another owner", "nothing"])
async def test_a_peer_serving_garbage_at_a_wanted_record_breaks_nothing_and_reads_eio(fs, served) -> None:
    """What the server sends at a wanted id is a record with other bytes than v2's manifest names
    (refused before it is kept, and said: attack round 43a (1)), or no record (refused as
    ``_is_record`` does), or nothing: the pull goes on, the version is asked of this peer once, then
    taken in as it is (EIO and an alarm, never other bytes)."""
    volume = fs.volume
    node, rows, genuine = await _punched_scene(fs)
    forged = []
    for doc in genuine:
        doc = dict(doc)
        if served == "garbage bytes":
            doc["data"] = base64.b64encode(os.urandom(len(doc["data"]) * 3 // 4)).decode()
        elif served == "not base64":
            doc["data"] = "!!! not base64 !!!"
        elif served == "another owner":
            doc["owner"] = "e" * 32
        forged.append(doc)
    assert inherits_punched(volume, node)
    peer = Peer([] if served == "nothing" else forged)
    r, said = _replicator(fs, peer)
    await r._take_punched()  # never raises
    assert len(peer.asked) == 1
    # Nothing placed (the records stay punched): each noted asked of this peer in vain, still wanted
    # of the peers not asked (42a (1)), and the version taken in as it is now.
    version = (node.fid, node.head)
    assert volume.tree.records_asked.get(version) == {r.name: _wanted(rows)}
    assert set(volume.tree.records_wanted) == {version}
    assert volume.layout.places.punched_of(node.fid)
    assert not r.beneath.records_wanted(r.name)
    assert not inherits_punched(volume, node)
    assert said == ([f"record {doc['_id']}" for doc in genuine]
                    if served in ("not base64", "garbage bytes") else [])
    await r._take_punched()
    assert len(peer.asked) == 1  # not asked again (a newer version of the file would be)
    assert await _read(fs) == errno.EIO
    assert "record" in alarms.for_user(volume.key.user_id)


async def test_records_wanted_during_a_longpoll_are_asked_for_at_once_without_a_second_longpoll(fs) -> None:
    """A tree coming to want records gc punched while the pull waits on the peer's longpoll (an unlock
    loading ``want_punched``, an arrival held back) is asked for now, not after the longpoll ends (up
    to 20 s of EIO, seen in tests/mount/test_trust_attack_41b.py): the longpoll left running, not
    asked again; a storm of pokes is one ask."""
    volume = fs.volume
    node, rows, genuine = await _punched_scene(fs)
    peer = Peer(genuine)
    r, said = _replicator(fs, peer)
    result: list[bool] = []

    async def pull() -> None:
        result.append(await r.pull(wait=True))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pull)
        await trio.testing.wait_all_tasks_blocked()
        assert peer.polls == [7] and peer.polls_ended == 0 and not peer.asked  # in the longpoll
        assert inherits_punched(volume, node)  # now wanted (as an unlock's ``want_punched`` does)
        for _ in range(100):  # as many wants as a hostile peer's documents make: coalesced
            r.beneath.want_again()
        with trio.fail_after(30):  # the records are placed in a worker thread: waited for
            while volume.tree.records_wanted:
                await trio.sleep(0.01)
        assert len(peer.asked) == 1 and peer.polls_ended == 0  # asked while the longpoll still waits
        assert peer.polls == [7]  # one longpoll: not cancelled and asked again
        assert said == [] and volume.layout.places.punched_of(node.fid) == {}
        assert not volume.tree.records_wanted
        peer.answer.set()
    assert result == [False] and peer.polls == [7] and peer.polls_ended == 1
    volume.layout.places.refused.clear()
    assert await _read(fs) == _expected()


async def test_a_poke_neither_shortens_nor_ends_the_back_off_of_failed_asks(fs) -> None:
    """Asks that failed lately wait some pulls (``PUNCHED_TRIES``): a poke is no pull, so a peer whose
    documents poke the sync again and again does not turn the back-off into a storm of asks."""
    node, rows, genuine = await _punched_scene(fs)
    assert inherits_punched(fs.volume, node)
    peer = Peer(genuine)
    r, said = _replicator(fs, peer)
    r._punched_wait = 1
    for _ in range(5):
        await r._take_punched(poked=True)
    assert not peer.asked and r._punched_wait == 1
    await r._take_punched()  # a pull: counted
    assert not peer.asked and r._punched_wait == 0
    await r._take_punched(poked=True)
    assert len(peer.asked) == 1
