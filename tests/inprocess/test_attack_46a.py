"""Attack round 46a, in-process: the records-wanted-again fixes of 277a41a (a walk's hashes count only
if vouched: ``punched_wants._root_vouched``, ``Inodes.records_vouched``, ``_counted_hashes``), 51e9b64
(the asks in sync/punched_asks.py, ``places.placed``) and 4796d73 (``Replicator._punched``,
``places.punched_among``, ``couch_api.bulk_get``).

Hole (1), medium: her version's walk is vouched only if every record of hers is here when it is
  walked; the server withholding one of them makes her walk unvouched while the write member's walk
  (his own signed document) is vouched, so his hash alone counts and the server's bytes matching it are
  placed for her version too: EIO for good (44a (1) again, by the server's withholding).
  Attack: plan.bin in conflict: her leaf v2 names v1's punched blocks 0 and 1 with their genuine
    hashes; his leaf (a write member's version, his signed document naming his root) names them with
    the hashes of bytes of his choosing.  The server sends her node, her version document and
    manifest but withholds one block record of hers (a record document like any, its to withhold;
    conflicts.py ``_settle_one`` waits only for the version document, ``store.get(leaf.node.head)``)
    when the conflict is looked at; the ask (poked at once) goes to the server, which sends his bytes;
    then it sends her withheld record.
  Seen: ``test_her_walk_made_while_a_record_of_hers_is_withheld_does_not_let_his_hash_alone_count``
    (run, fails: her walk is not vouched (``records_vouched`` lacks it), ``wanted_of`` gives her rows
    None, the server's bytes are placed at (v1, 0), (v1, 1), she reads EIO; the holding peer is never
    asked).
  Cause: punched_wants.py ``_root_vouched`` calls ``placements.version_shas``, which raises
    CorruptData while "not every record of version ... is here yet" (it digests all her records, not
    only the root); caught as "not vouched", and a want not vouched is outweighed
    (``_counted_hashes``) by any vouched one.  Not vouched means "nothing vouches" and "not checkable
    yet" alike.
  Impact: her concurrent edit reads EIO for good (the record is placed, first copy kept, off the
    punched list) though a peer holds every byte: data loss a write member and the server cause
    together, which 277a41a set out to end.
  Fix (suggested): vouch the root alone (the signed document's ``manifest_sha256`` against the root
    read here, after ``places.admits``), not the whole ``records`` digest; or, while a version's
    vouching is undecided (CorruptData: its records not all here), do not ask for the records it
    wants (hold the ask, not only the node), or treat its hashes as vouched-pending so every named
    hash must match (as with none vouched).
  Tests: that one; control
    ``test_her_walk_with_her_records_here_is_vouched_and_his_bytes_not_placed_control``.

Hole (2), medium: 277a41a judges a peer's version at the walk, before its node is taken in; a writer's
  version is judged (``places.admits`` via ``_root_vouched`` -> ``placements.version_shas``) against
  where the tree holds the file *before* the revision that brings it, and the refusal is cached: a false
  "signed by bob, who holds no WRITE on it" alarm and EIO for bob's genuine edit until the next unlock.
  Scene (honest use): alice's plan.bin; on her other device she moves it into her folder ``team``
  (WRITE to bob), bob writes part of it over a version this device's gc dropped (41b's scene; here with
    her own concurrent edit, the conflicts.py path, or as in the test).  This device, holding plan.bin
    in ``private`` still, looks at the arrival: ``_version_here`` -> ``inherits_punched`` ->
    ``_root_vouched`` -> ``version_shas`` -> ``admits``: authorship.py ``version_ok`` judges bob on
    the held node (``volume.find``: in ``private``) -> False, cached per (user, version); then the node
    is taken in (in ``team``), its records come, and ``_judged_while_granted`` asks ``admits`` again:
    the cached False.
  Seen: ``test_a_writers_version_walked_before_its_node_is_taken_in_is_not_refused_for_good`` (run,
    fails: alarm "version ... signed by <bob>, who holds no WRITE on it", alice's open says EIO (5),
    alice's verdict cached False); control ``test_a_writers_version_walked_where_it_lands_reads_control``
    (the same walk with the file where the revision puts it) reads.
  Cause: punched_wants.py ``_root_vouched`` calls ``version_shas`` (with its admission) at the walk;
    before 277a41a the walk read ``vouch=False`` and admission came only after the take
    (absorbing.py ``_judged_while_granted``: "the node in the tree now: its owner is known").
    ``Places.admits`` caches a False verdict like a True one.
  Impact: a write member's genuine edit reads EIO (and a false forgery-class alarm names him) until
    the owner's tree loads again; only for versions inheriting punched records.
  Fix (suggested): vouch the root without admission at the walk (compare ``manifest_sha256`` of a
    document whose signature verifies, and judge it later), or call ``version_shas`` only after the take
    (hold the ask, not the judging), or never cache a False verdict made before the node is taken in.

Hole (3), medium: the dispute rule holds only while both versions want the record at once: a write
  member's vouched version walked first and alone has the server's bytes matching his hash placed (the
  first copy kept, off the punched list), and her genuine version arriving after finds the record
  placed: EIO for good, no peer asked.
  Attack: plan.bin's v1 blocks 0 and 1 punched here; his leaf (made over v1, his signed document
    naming his root, his Merkle leaves naming hashes of bytes of his choosing for (v1, 0), (v1, 1))
    is sent first; the server holds her concurrent v2 (made over v1 on her other device) back until
    its answer to the ask (his bytes) is placed.
  Seen: ``test_her_version_arriving_after_his_vouched_leaf_is_not_left_with_his_bytes`` (run, fails:
    her v2 reads EIO (5), "record 0 of version <v1> is not what its author sealed"; 2 records placed
    with his bytes; nothing wanted any more, the holding peer never asked); control
    ``test_her_version_arriving_after_his_genuine_leaf_reads_control``.
  Cause: a record is one for every version (its id is the writer's (fid, vid, index)); the hash that
    decides is that of the versions wanting it at the ask (``_expected_records``), and nothing ties
    it to what the record's writer (v1) sealed; a version walked later wants only what is still
    punched (``_inherited``), so a placed record is never asked again.
  Impact: a write member (with the server ordering the arrivals) makes her concurrent edit read EIO
    for good, with an alarm naming no one; 44a (1)'s aim, reached by order instead of by the leaf shown.
  Fix (suggested): a vouched walk meeting a placed record of another writer that hashes otherwise than
    its Merkle leaf names (the re-fetched copy, ``arrived`` and once punched) puts it back as wanted
    with its hash (and keeps the placed copy for the version it matched, e.g. by (record, sha)), or
    places a re-fetched record only as its writer's own signed digest names it where that document is
    here.

Hole (4), low-medium (ordinary faults, one server): a record gc punched here that the server lacked
  when asked (noted asked in vain of it) and got later is now skipped when its changes feed lists it
  (4796d73, ``Replicator._punched``), and the server is not asked again while the wanting versions
  stay the same: the version reads EIO, with a false "not what its author sealed" alarm, until the next
  unlock, though the one server holds the record.
  Scene: one CouchDB server; v2 wants v1's punched blocks; the server lacks them at the ask (its
    database rebuilt or restored, the device holding them not pushed yet); the device pushes them; the
    feed lists them.
  Seen: ``test_a_punched_record_the_server_gets_after_an_ask_in_vain_is_placed[True]`` (run, fails:
    EIO (5), the server asked once in vain and never again, the notes kept); ``[False]`` (control: the
    notes dropped as a change of the wanting versions does, it is asked and they come).
  Cause: the feed was the way such a record came back (placed unchecked, 45b (2)); now only the
    checked ask by id places it, and ``wanted_of`` leaves out a record asked of this peer in vain until
    the versions wanting it change (``note_asked``, ``_disputes_settled``).
  Impact: EIO and a false forgery-class alarm until the next unlock in a single-server setup.
  Fix (suggested): in ``_punched``, for a listed punched record a version wants, drop that peer's
    in-vain note for it (the feed says it has it now) so the next ask (poke it) fetches it by id,
    checked; bounded by the feed's entries.

Hole (5), medium-high: once her version was asked of the server in vain (it sent garbage: refused,
  noted per (record, peer) for her version), a later version wanting the same records with no counted
  hash (an unhashed manifest, kinds 2 to 5, or a hashed one not vouched: ``wanted_of`` gives it None as
  the record is "counted" through hers) has the server's garbage placed unchecked: her hash is left out
  of the check because her row is left out for that peer.  EIO for good; the holding peer never asked.
  Attack: v2 (hers, vouched) wants v1's punched blocks; the server answers her ask with garbage.  Then
    a version of his (a write member sealing a kind-4 tree manifest, or an old device's; or hashed,
    one of its own records withheld as in (1)) naming the same blocks arrives; the server is asked for
    his and sends the same garbage.
  Seen: ``test_a_record_her_version_was_refused_by_the_server_is_not_placed_unchecked_for_his[unhashed]``
    and ``[unvouched]`` (run, both fail: 2 records placed with the server's garbage, v2 reads EIO (5),
    the holding peer asked 0 times).  Control: 43d's
    ``test_a_record_two_versions_want_is_checked_against_the_version_that_names_it_genuinely[no hash]``
    (both wanting at the first ask: checked against hers).
  Cause: punched_wants.py ``wanted_of`` drops the rows a peer was asked in vain for, version by
    version, and punched_asks.py ``_expected_records`` builds the check from the rows given: with hers
    gone and his None, ``_as_named`` checks against nothing (``all([])``).  The record is one for every
    version (first copy kept, off the punched list).
  Impact: the 43a (1) check and 277a41a's vouching bypassed by ordering: the server (with any unhashed
    or unvouched concurrent version) has its garbage kept; her version reads EIO for good.
  Fix (suggested): build each record's check from every version wanting it (all their hashes, vouched
    per ``_counted_hashes``), not only from the rows asked of this peer; the in-vain notes choose which
    records to ask, never which hashes to check; with a counted hash, a row giving None must not let
    an empty set pass.

Checked, held: ``places.placed``'s OR of 200 terms runs as SQLite's MULTI-INDEX OR on the unique
  (fid, vid, idx) index (EXPLAIN QUERY PLAN, SQLite 3.40.1; 2,000 lookups in 14 ms; 600 parameters,
  under 999); ``punched_among`` is one query per 500 files on the punched table's key, its work the
  punched rows of the files a batch names; ``bulk_get`` entries that are no dict are left out, a
  record sent twice in one answer is appended twice but placed once (INSERT OR IGNORE); a version's
  vouching is cached once it succeeds (``places.vouched``), a CorruptData one is redone at each walk
  at the cost of the walk's own order; a member's own vouched version naming other bytes while hers is
  vouched too places none, said (designed); an unhashed manifest is never vouched
  (``_vouched_if_hashed``); a version document of another file at her vid is refused (an alarm).

Run 08:50 UTC, 2026-12-06 (-n 0, this file): 6 xfailed, 4 passed; with --runxfail each xfail fails at
its own assertion.

Fixed (1), (2), (4), (5); (3) where the writer's version is here, and where it is not since, each
copy of a record placed again kept per hash (store/places.py ``copies``): docs/SECURITY.md, "Round 46a".
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from types import SimpleNamespace

import pyfuse3
import pytest

from fusevault.store import places as places_table
from fusevault.sync.content_docs import parse_record_id
from fusevault.vault.services import punched_wants
from fusevault.vault.services.punched_wants import inherits_punched
from inprocess.conftest import FILE, ROOT
from inprocess.test_attack_43d import _Conflicted, _forged, _two_versions_scene
from inprocess.test_attack_45b import _Feed
from inprocess.test_punched_records import (
    AT,
    ORIGINAL,
    WORDS,
    Peer,
    _expected,
    _punch,
    _punched_scene,
    _read,
    _replicator,
)
from inprocess.test_two_users import ALICE, BOB, _share


def _placed_shas(volume, ids: set[str]) -> dict[str, str]:
    out = {}
    for doc_id in ids:
        if (row := places_table.find(volume.store.db, *parse_record_id(doc_id))) is not None:
            out[doc_id] = row.sha
    return out


def _sha(doc: dict) -> str:
    return hashlib.sha256(base64.b64decode(doc["data"])).hexdigest()


_COLUMNS = "fid, vid, idx, owner, offset, length, arrived, sha"


async def _conflict_with_his_vouched_leaf(fs, monkeypatch, withheld: bool):
    """plan.bin: her v2 (shown) and his leaf (vouched by his signed document) want v1's punched blocks
    0, 1; his leaf names forged hashes.  Her version walked afresh as its arrival is looked at, one of
    her own block records withheld by the server then (``withheld``).  (node, genuine, forged)."""
    volume = fs.volume
    node, genuine, forged = await _two_versions_scene(fs, monkeypatch, same=False)
    tree = volume.tree
    places = volume.layout.places
    his = "0" * len(node.head)
    mine = (node.fid, node.head)
    tree.records_vouched.clear()
    tree.records_vouched[(node.fid, his)] = tree.records_wanted[(node.fid, his)]  # his signed root
    # Her version as just arrived: never read here, its want not walked yet.
    tree.records_wanted.pop(mine)
    tree.records_asked.clear()
    places.vouched.pop(mine, None)
    db = volume.store.db
    kept = None
    if withheld:
        kept = db.execute(f"SELECT {_COLUMNS} FROM places WHERE fid = ? AND vid = ? AND idx >= 0 "
                          "ORDER BY idx LIMIT 1", mine).fetchone()
        assert kept is not None, "v2 wrote a block record"
        db.execute("DELETE FROM places WHERE fid = ? AND vid = ? AND idx = ?", (kept[0], kept[1], kept[2]))
    assert inherits_punched(volume, node)  # the conflict's look: her leaf held for its records
    return node, genuine, forged, kept


async def _asks(fs, node, genuine, forged, kept) -> Peer:
    volume = fs.volume
    hostile, holding = Peer(forged), Peer(genuine)
    r, _ = _replicator(fs, hostile, "server")
    await r._take_punched()  # poked at once: the server first
    if kept is not None:  # then the server sends her withheld record
        volume.store.db.execute(f"INSERT INTO places ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", kept)
        volume.layout.places.vouched.pop((node.fid, node.head), None)
    r, _ = _replicator(fs, holding, "holding")
    for _ in range(2):
        await r._take_punched()
    volume.layout.places.refused.clear()
    return holding


async def test_her_walk_made_while_a_record_of_hers_is_withheld_does_not_let_his_hash_alone_count(
        fs, monkeypatch) -> None:
    volume = fs.volume
    node, genuine, forged, kept = await _conflict_with_his_vouched_leaf(fs, monkeypatch, withheld=True)
    vouched_then = (node.fid, node.head) in volume.tree.records_vouched
    holding = await _asks(fs, node, genuine, forged, kept)
    ids = {doc["_id"] for doc in genuine}
    got = _placed_shas(volume, ids)
    want = {doc["_id"]: _sha(doc) for doc in genuine}
    wrong = sum(got.get(i) not in (None, want[i]) for i in ids)
    read = await _read(fs)
    assert not wrong and read == _expected(), (
        f"{wrong} record(s) placed with his bytes for her version (her walk vouched: {vouched_then}); she "
        f"reads {read if isinstance(read, int) else 'other bytes'}; the holding peer asked "
        f"{len(holding.asked)} time(s)")


async def test_her_walk_with_her_records_here_is_vouched_and_his_bytes_not_placed_control(
        fs, monkeypatch) -> None:
    """Control: the same scene, none of her records withheld: her walk is vouched, the versions
    disagree, neither copy is placed (said), nothing of his lands on her version."""
    volume = fs.volume
    node, genuine, forged, kept = await _conflict_with_his_vouched_leaf(fs, monkeypatch, withheld=False)
    assert (node.fid, node.head) in volume.tree.records_vouched
    await _asks(fs, node, genuine, forged, kept)
    ids = {doc["_id"] for doc in genuine}
    got = _placed_shas(volume, ids)
    want = {doc["_id"]: _sha(doc) for doc in genuine}
    assert all(got.get(i) in (None, want[i]) for i in ids)


# --- (2): a writer's version judged at the walk, before its node is taken in


async def _writers_version_scene(shared, walked_before_take: bool) -> tuple[object, list[dict], bytes]:
    """alice's plan.bin in her folder ``team`` (WRITE to bob); bob's partial write v2 over v1, v1's
    blocks 0 and 1 punched here as gc does.  v2 then looked at as a peer's arrival is: her tree holding
    the file where it was before the revision that brings v2 (``private``: alice moved it into ``team``
    on her other device, bob wrote over that) when ``walked_before_take``, else where it lands.  Then
    taken in (in ``team``) and its records asked of a peer holding them.  (node, genuine, expected)."""
    drive, volume = shared.drive, shared.volume
    team = await drive.mkdir(ROOT, b"team", stat.S_IFDIR | 0o755, ALICE)
    private = await drive.mkdir(ROOT, b"private", stat.S_IFDIR | 0o755, ALICE)
    info, _ = await drive.create(team.st_ino, b"plan.bin", FILE, os.O_RDWR, ALICE)
    await drive.write(info.fh, 0, ORIGINAL)
    await drive.release(info.fh)
    v1 = volume.resolve(b"team/plan.bin").head
    await _share(shared, "team", "WRITE")
    entry = await drive.getattr(ROOT, BOB)
    for name in (b"shared", b"alice", b"team", b"plan.bin"):
        entry = await drive.lookup(entry.st_ino, name, BOB)
    info = await drive.open(entry.st_ino, os.O_RDWR, BOB)
    await drive.write(info.fh, AT, WORDS)
    await drive.release(info.fh)
    node = volume.resolve(b"team/plan.bin")
    assert node.head != v1
    places = volume.layout.places
    rows = [row for row in places.of_version(node.fid, v1) if row.idx in (0, 1)]
    genuine = await _punch(volume, node, rows)
    version = (node.fid, node.head)
    # v2 as a peer's: not sealed by this process, never judged here yet.
    with places_table._LOCK:
        places_table._SEALED_HERE.pop(version, None)
    places.vouched.pop(version, None)
    for verdicts in places._verdicts.values():
        verdicts.pop(version, None)
    if walked_before_take:
        await drive.rename(team.st_ino, b"plan.bin", private.st_ino, b"plan.bin", 0, ALICE)
    assert inherits_punched(volume, volume.tree.find(node.fid))  # ``_version_here``: held for its records
    if walked_before_take:  # taken in: where the revision puts it
        await drive.rename(private.st_ino, b"plan.bin", team.st_ino, b"plan.bin", 0, ALICE)
    r, _ = _replicator(SimpleNamespace(volume=volume), Peer(genuine), "holding")
    r.store = getattr(volume.store, "inner", volume.store)  # the sync's own (the mount's is watched)
    await r._take_punched()
    places.refused.clear()
    expected = bytearray(ORIGINAL)
    expected[AT:AT + len(WORDS)] = WORDS
    return node, genuine, bytes(expected)


async def _read_alice(shared, node) -> bytes | int:
    drive = shared.drive
    entry = await drive.lookup((await drive.lookup(ROOT, b"team", ALICE)).st_ino, b"plan.bin", ALICE)
    try:
        info = await drive.open(entry.st_ino, os.O_RDONLY, ALICE)
    except pyfuse3.FUSEError as err:
        return err.errno
    try:
        return await drive.read(info.fh, 0, 1 << 20)
    except pyfuse3.FUSEError as err:
        return err.errno
    finally:
        await drive.release(info.fh)


async def test_a_writers_version_walked_before_its_node_is_taken_in_is_not_refused_for_good(
        shared) -> None:
    node, _, expected = await _writers_version_scene(shared, walked_before_take=True)
    got = await _read_alice(shared, node)
    places = shared.volume.layout.places
    verdicts = {user: v.get((node.fid, node.head)) for user, v in places._verdicts.items()}
    assert got == expected, (f"alice reads {got if isinstance(got, int) else 'other bytes'} of bob's v2; "
                             f"verdicts cached: {verdicts}")


async def test_a_writers_version_walked_where_it_lands_reads_control(shared) -> None:
    """Control: the same, the walk made with the file where the revision puts it: v2 reads."""
    node, _, expected = await _writers_version_scene(shared, walked_before_take=False)
    assert await _read_alice(shared, node) == expected


# --- (3): a vouched version alone, first: its hash is the record's for every later version


async def _his_version_first(fs, monkeypatch, same: bool) -> tuple[object, list[dict], list[dict]]:
    """plan.bin's v1 blocks 0 and 1 punched here; his leaf (a write member's version, vouched by his
    signed document) arrives first and alone, naming them with the hashes of ``forged`` (``same``: the
    genuine ones); it is walked and its records asked of the server at once.  Her version (v2, made
    over v1 on her other device, delayed by the server) is walked only after.  (node, genuine,
    forged)."""
    volume = fs.volume
    node, _, genuine = await _punched_scene(fs)
    monkeypatch.setattr(punched_wants, "replica", _Conflicted(node.fid))  # his leaf and hers kept
    forged = _forged(genuine)
    tree = volume.tree
    assert inherits_punched(volume, node)
    mine = tree.records_wanted.pop((node.fid, node.head))  # her version not here yet
    tree.records_vouched.clear()
    his = (node.fid, "0" * len(node.head))
    by_id = {doc["_id"]: doc for doc in (genuine if same else forged)}
    named = {(vid, idx): (owner, hashlib.sha256(base64.b64decode(
        by_id[f"rec-{node.fid}-{vid}-{idx}"]["data"])).digest()) for (vid, idx), (owner, _) in mine.items()}
    tree.records_wanted[his] = tree.records_vouched[his] = named  # his own signed root names them
    r, _ = _replicator(fs, Peer(forged), "server")
    await r._take_punched()
    # Her version arrives (the server sent it late): walked as any arrival.
    inherits_punched(volume, node)
    r, _ = _replicator(fs, Peer(genuine), "holding")
    for _ in range(2):
        await r._take_punched()
    volume.layout.places.refused.clear()
    return node, genuine, forged


async def test_her_version_arriving_after_his_vouched_leaf_is_not_left_with_his_bytes(
        fs, monkeypatch) -> None:
    volume = fs.volume
    node, genuine, _ = await _his_version_first(fs, monkeypatch, same=False)
    ids = {doc["_id"] for doc in genuine}
    got = _placed_shas(volume, ids)
    want = {doc["_id"]: _sha(doc) for doc in genuine}
    read = await _read(fs)
    assert read == _expected(), (
        f"her v2 reads {read if isinstance(read, int) else 'other bytes'}; "
        f"{sum(got.get(i) not in (None, want[i]) for i in ids)} record(s) placed with his bytes; still "
        f"wanted: {dict(volume.tree.records_wanted)}")


async def test_her_version_arriving_after_his_genuine_leaf_reads_control(fs, monkeypatch) -> None:
    """Control: his leaf names the genuine hashes: the server's records are the genuine ones, v2 reads."""
    await _his_version_first(fs, monkeypatch, same=True)
    assert await _read(fs) == _expected()


# --- (4): a record the one server lacked at the ask, listed in its feed once it has it


@pytest.mark.parametrize("listed", [
    True,
    False,
])
async def test_a_punched_record_the_server_gets_after_an_ask_in_vain_is_placed(fs, listed) -> None:
    """Honest use, one server: v2 wants v1's punched blocks; the server lacks them at the ask (its
    database rebuilt, the device holding them not pushed yet), then gets them, and its feed lists
    them.  ``listed`` False (control of the setting): asked again (a new version wanting them, here a
    fresh walk) they come."""
    volume = fs.volume
    node, _, genuine = await _punched_scene(fs)
    assert inherits_punched(volume, node)
    server = _Feed([], [])
    r, _ = _replicator(fs, server, "server")
    r.checkpoint_id = "sync-server"
    await r._take_punched()  # in vain: it has none of them yet
    assert volume.layout.places.punched_of(node.fid)
    server.docs = genuine  # pushed to it since, by the device holding them
    if listed:
        server.listed = [doc["_id"] for doc in genuine]
    else:  # the control: what a change of the wanting versions does
        volume.tree.records_asked.clear()
    for _ in range(3):
        while await r.pull():
            pass
    volume.layout.places.refused.clear()
    got = await _read(fs)
    assert got == _expected(), (f"plan.bin reads {got if isinstance(got, int) else 'other bytes'}; the "
                                f"server asked {len(server.asked)} time(s); noted in vain: "
                                f"{volume.tree.records_asked}")


# --- (5): her hash left out of the check for the peer she was asked of in vain


@pytest.mark.parametrize("his", ["unhashed", "unvouched"])
async def test_a_record_her_version_was_refused_by_the_server_is_not_placed_unchecked_for_his(
        fs, monkeypatch, his) -> None:
    """Her v2 (vouched) wants v1's punched blocks; the server answers her ask with garbage (refused,
    noted asked in vain of it for her version).  Then his version arrives wanting the same records:
    ``unhashed`` (a manifest of kind 2 to 5, which a write member may seal) or ``unvouched`` (hashed,
    but not vouched: as in (1)); the server is asked again for his."""
    volume = fs.volume
    node, _, genuine = await _punched_scene(fs)
    monkeypatch.setattr(punched_wants, "replica", _Conflicted(node.fid))
    assert inherits_punched(volume, node)
    tree = volume.tree
    assert (node.fid, node.head) in tree.records_vouched
    forged = _forged(genuine)
    server = Peer(forged)
    r, said = _replicator(fs, server, "server")
    await r._take_punched()
    assert said and volume.layout.places.punched_of(node.fid), "her ask: the garbage refused (said)"
    by_id = {doc["_id"]: doc for doc in forged}
    his_version = (node.fid, "0" * len(node.head))
    tree.records_wanted[his_version] = {
        (vid, idx): (owner, None if his == "unhashed" else hashlib.sha256(base64.b64decode(
            by_id[f"rec-{node.fid}-{vid}-{idx}"]["data"])).digest())
        for (vid, idx), (owner, _) in tree.records_wanted[(node.fid, node.head)].items()}
    for _ in range(2):
        await r._take_punched()
    holding = Peer(genuine)
    r2, _ = _replicator(fs, holding, "holding")
    for _ in range(2):
        await r2._take_punched()
    volume.layout.places.refused.clear()
    ids = {doc["_id"] for doc in genuine}
    got = _placed_shas(volume, ids)
    want = {doc["_id"]: _sha(doc) for doc in genuine}
    read = await _read(fs)
    assert read == _expected(), (
        f"her v2 reads {read if isinstance(read, int) else 'other bytes'}; "
        f"{sum(got.get(i) not in (None, want[i]) for i in ids)} record(s) placed with the server's garbage; "
        f"the holding peer asked {len(holding.asked)} time(s)")


# --- where the record's writer vouches for nothing here (gc let its version go: its document and
# manifest gone): every hash a version wanting the record names must match, whatever was asked in vain


def _writer_unknown(monkeypatch) -> None:
    monkeypatch.setattr(punched_wants, "_writers_sealed", lambda *args: None)


async def test_her_walk_made_while_a_record_of_hers_is_withheld_writer_unknown_places_none_of_his(
        fs, monkeypatch) -> None:
    """(1) with no sealed hash of the writer's: her walk unvouched (or not) counts all the same, so the
    versions disagree and neither copy is placed (said): she waits (EIO until the conflict is settled),
    never his bytes for her version."""
    _writer_unknown(monkeypatch)
    volume = fs.volume
    node, genuine, forged, kept = await _conflict_with_his_vouched_leaf(fs, monkeypatch, withheld=True)
    await _asks(fs, node, genuine, forged, kept)
    got = _placed_shas(volume, {doc["_id"] for doc in forged})
    assert not got, f"{len(got)} record(s) placed while her version and his disagree"


@pytest.mark.parametrize("his", ["unhashed", "unvouched"])
async def test_a_record_her_version_was_refused_for_is_checked_against_her_hash_writer_unknown(
        fs, monkeypatch, his) -> None:
    """(5) with no sealed hash of the writer's: her hash is checked though the server was asked for her
    version in vain; the server's garbage is never placed (unhashed: the holding peer's copy is, as she
    names it; unvouched: his hash names other bytes, none placed until the versions agree)."""
    _writer_unknown(monkeypatch)
    volume = fs.volume
    node, _, genuine = await _punched_scene(fs)
    monkeypatch.setattr(punched_wants, "replica", _Conflicted(node.fid))
    assert inherits_punched(volume, node)
    tree = volume.tree
    forged = _forged(genuine)
    r, said = _replicator(fs, Peer(forged), "server")
    await r._take_punched()
    assert said
    by_id = {doc["_id"]: doc for doc in forged}
    tree.records_wanted[(node.fid, "0" * len(node.head))] = {
        (vid, idx): (owner, None if his == "unhashed" else hashlib.sha256(base64.b64decode(
            by_id[f"rec-{node.fid}-{vid}-{idx}"]["data"])).digest())
        for (vid, idx), (owner, _) in tree.records_wanted[(node.fid, node.head)].items()}
    for _ in range(2):
        await r._take_punched()
    r2, _ = _replicator(fs, Peer(genuine), "holding")
    for _ in range(2):
        await r2._take_punched()
    volume.layout.places.refused.clear()
    ids = {doc["_id"] for doc in genuine}
    got = _placed_shas(volume, ids)
    want = {doc["_id"]: _sha(doc) for doc in genuine}
    assert all(got.get(i) in (None, want[i]) for i in ids), "the server's garbage placed"
    if his == "unhashed":
        assert await _read(fs) == _expected()


async def test_her_version_arriving_after_his_vouched_leaf_writer_unknown_is_not_left_with_his_bytes(
        fs, monkeypatch) -> None:
    _writer_unknown(monkeypatch)
    await _his_version_first(fs, monkeypatch, same=False)
    assert await _read(fs) == _expected()


async def test_her_version_arriving_after_his_leaf_writer_unknown_keeps_both_copies_apart(
        fs, monkeypatch) -> None:
    """The fix of (3): her copy is placed beside his (said), each with its hash (store/places.py
    ``copies``); nothing of his version's is wanted again, nor of hers."""
    _writer_unknown(monkeypatch)
    volume = fs.volume
    node, genuine, forged = await _his_version_first(fs, monkeypatch, same=False)
    copies = volume.layout.places.copies_of(node.fid)
    for doc_id in {doc["_id"] for doc in genuine}:
        _, vid, idx = parse_record_id(doc_id)
        assert set(copies[(vid, idx)]) == {bytes.fromhex(_sha(doc)) for doc in (*genuine, *forged)
                                           if doc["_id"] == doc_id}
    assert not punched_wants.wanted_of(volume, "holding")


def test_gc_keeps_every_copy_of_a_record_a_kept_version_names() -> None:
    """gc (services/gc.py ``used_ranges``) counts each copy of a record placed again as used while a
    kept version names the record: the version reading the other copy would read a hole else."""
    from fusevault.vault.services import gc

    copy = (9000, 120)
    places = SimpleNamespace(any_arrived=True, copies_of=lambda fid: {("v1", 0): {b"\1" * 32: (4000, 120),
                                                                               b"\2" * 32: copy}})
    manifest = SimpleNamespace(nodes=[], tree={}, vids=["v1"], blocks=SimpleNamespace(
        blocks=lambda: [(0, 100, 120, 0, 1)]))
    content = SimpleNamespace(fid="f", layout=SimpleNamespace(places=places),
                              where=lambda o, n, vid, index, dek=None: (4000, 120) if index == 0 else (o, n),
                              load_manifest=lambda place, vid, dek: manifest)
    version = SimpleNamespace(manifest=(10, 50), vid="v2", dek=b"")
    ranges = gc.used_ranges(content, [version])  # type: ignore[arg-type]
    assert (copy[0], copy[0] + copy[1]) in ranges


async def test_her_version_after_his_node_writer_unknown_reads_the_node_she_names(fs, monkeypatch) -> None:
    """(3) for a node of the writer's manifest tree (47a (2)'s scene), the writer vouching for nothing
    here: his version alone first has the server's node of his hash placed; her version, walked after,
    wants the node she names as another copy, then the block under it, and reads."""
    from fusevault.vault.format.manifest import NEW_BLOCK_SIZE
    from inprocess.test_attack_47a import _his_node_first, _read_block

    _writer_unknown(monkeypatch)
    entry, data, sealed, holding = await _his_node_first(fs, monkeypatch, same=False)
    assert sealed["his node placed"], "the scene: his node placed first"
    got = await _read_block(fs, entry, 260)
    assert got == data[260 * NEW_BLOCK_SIZE:261 * NEW_BLOCK_SIZE], (
        f"her v2 reads block 260: {got if isinstance(got, int) else 'other bytes'}; the holding peer asked "
        f"{len(holding.asked)} time(s)")


def test_two_versions_naming_other_bytes_for_a_record_never_share_its_cached_block() -> None:
    """The mount's block cache (vault/files/block_cache.py, one per mount) keys a block with the hash
    the reading version names: two versions reading their own copy of one record (its writer's (vid,
    index), at the same offset in both manifests) never get each other's plaintext from it."""
    from fusevault.vault.files.content import Content
    from fusevault.vault.format.block_hashes import BlockHashes

    keys = []
    for sha in (b"\1" * 32, b"\2" * 32):
        reader = Content.__new__(Content)
        reader.fid, reader._hashes = "f", BlockHashes()
        reader._hashes.add("v1", 0, sha)
        keys.append(reader._key(0, (100, 120, 0, 1), ["v1"]))
    assert keys[0] != keys[1]
