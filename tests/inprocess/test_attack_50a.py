"""Attack round 50a, in-process: 46a (3)'s fix (130c454, 3b6e011, 3c86bb0): records placed again kept per
hash (store/places.py ``copies``), ``punched_wants._other_copy``/``_copies_vouched``,
``PunchedAsks._a_new_copy``, ``Content.where(..., sha=)``, the block cache keyed with the hash, gc's
``used_ranges`` keeping copies.

Hole (1), low (work in honest use, bounded by the vault): every record fetched again is noted in
  ``copies``, the only copy as well (``insert_arrived(again=True)`` notes every row), and
  ``Places.punched_files`` now lists every file with a ``copies`` row; ``_inherited`` goes on to walk
  whenever a copy is of another writer than the head.  So a file whose punched records were fetched
  back once (41b's honest scene: a peer's partial write over a version gc dropped here) has its whole
  manifest loaded again at every unlock (``want_punched``, head from a peer) and at every arrival of
  a version of it (``inherits_punched``), for as long as gc keeps the copy, i.e. while any version
  names the record (for ever for an inherited block).  Before 130c454 the punched row went with the
  record placed again and the file was never walked again.
  Seen: ``test_a_file_whose_records_came_back_once_is_not_walked_again`` (run, fails: after the
    honest fetch-back, nothing wanted, each ``inherits_punched`` of the file loads its manifest).
  Cause: punched_wants.py ``inherits_punched``/``_inherited`` walk on any copy of another writer;
    store/places.py ``insert_arrived`` notes a sole copy in ``copies``, ``punched_files`` lists it.
  Impact: a full manifest load (tree nodes read, hashes checked) per such file at every unlock and
    every arrival, for ever; a large vault of files once fetched back pays it for all of them.  No
    data at stake.
  Fix (suggested): note a row in ``copies`` only when a copy of other bytes is placed (a second
    hash), or drop a record's ``copies`` rows once one hash is left; walk only files with a record
    held in two or more copies.

Hole (2), low (garbage kept for ever): gc's ``used_ranges`` keeps every copy of every tree node of the
  file (``idx < -1``) with each kept version, whether or not any kept version names that node, so a
  node copy placed again (of a version since dropped, e.g. a member's forged one) is never punched, its
  ``copies`` row never forgotten, and (hole 1) the file walked at each unlock for ever.
  Seen: ``test_gc_does_not_keep_a_node_copy_no_kept_version_names`` (run, fails: the range of a
    node copy of writer v1 is kept though the one kept version names no node of v1).
  Cause: services/gc.py ``used_ranges``: "The copies of tree nodes: a few, kept with the file."
  Impact: up to ``COPIES_PER_RECORD`` records per node index ever placed again stay on disk for the
    file's life; bounded, but a member's forgeries outlive their versions.
  Fix (suggested): keep a node copy only where a kept version's tree names (writer, index) (its
    ``manifest.nodes`` walk gives the one it reads; the others of that node as for blocks).

Hole (3), low (EIO and a false forgery-class alarm while a file stays open): ``Content.where`` loads
  ``_copies`` with ``_moved`` only when a writer's vid is new to the reader (``_looked_up``), and
  ``_looked_up`` is then every vid with an arrived row.  In 46a (3)'s scene the first copy (his, the
  server's bytes of his hash) is an arrived row of writer v1, so a Content that read v1's blocks once
  before her copy came never looks the copies up again: her version's reads through a handle opened
  meanwhile fall back to his copy, fail her hash, and say EIO with the alarm "record 0 of version v1
  is not what its author sealed: refused (EIO) (resealed in place by someone holding the file's
  key?)" at every read until every handle closes, though her copy is here (a new open reads it).
  (The honest first-copy case is refreshed only by accident: with no arrived row of v1,
  ``_looked_up`` is replaced by the next vid looked up, so v1 is looked up again.)
  Seen: ``test_a_handle_open_while_her_copy_comes_reads_it`` (run, fails: the handle reads EIO (5),
    a new open reads her bytes); control
    ``test_a_handle_open_while_a_punched_record_comes_back_reads_it_control`` (passes).
  Cause: vault/files/content.py ``where``: the copies looked up once per vid per reader, never on a
    record placed again (``places.note_arrival`` bumps nothing a reader sees).
  Impact: a long-lived open (an editor, a player, a second program) of her genuine version reads EIO
    and raises a forgery alarm naming the record, after the fix placed her bytes.
  Fix (suggested): a places generation bumped by every ``insert_arrived`` (``note_arrival``), a reader
    looking ``_moved``/``_copies`` up again when it changed; or, on a hash mismatch where a copy is
    named, look the copies up once more before refusing.

Hole (4), low (a vault-folder writer's one row: the unlock fails, the file reads EIO): store/places.py
  ``Places.copies_of`` parses each row's ``sha`` with ``bytes.fromhex`` and catches ValueError ("a bad
  row") but not TypeError, which a row whose ``sha`` is a blob (or an integer) raises; store.sqlite is
  in the vault folder, whose bytes are hostile.  ``Content.where`` (every read of the file, once the
  vault ever synced), ``inherits_punched`` (each arrival of a version of the file, outside
  ``_inherited``'s catch), gc's ``used_ranges`` and the unlock's ``want_punched`` (fs/personal.py,
  before the mount runs: ``punched_files`` now lists every file with a ``copies`` row) all raise.
  Seen: ``test_a_planted_copies_row_with_a_blob_sha_breaks_no_read`` (run, fails: the file reads EIO
    (5), the arrival's walk raises TypeError, the unlock's ``want_punched`` raises TypeError); control
    ``test_a_planted_copies_row_with_a_bad_hex_sha_breaks_no_read_control`` (a text row that is no hex
    is caught: reads).
  Cause: ``copies_of``'s ``except (sqlite3.OperationalError, ValueError)``.
  Impact: one planted row keeps the user's personal mount from unlocking (the exception escapes
    ``want_punched``; ``punched`` rows are parsed by ``checked_runs``, never raising) and the file from
    reading (a ``places`` row of a blob offset already could do that much); read-only, not run: the
    arrival's walk (absorbing.py ``_version_here``, conflicts.py) raising inside the sync's take-in.
  Fix (suggested): skip a row whose ``sha`` is not a 64-hex ``str`` (and ``offset``/``length`` not ints),
    row by row, said once; or catch TypeError too.

Tests: those named above (strict xfails) and their controls.  Run (-n 0, this file, 12:17 UTC):
  with --runxfail the four xfails fail at their own assertions, the controls pass.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
from types import SimpleNamespace

import pyfuse3

from fusevault.vault.files.content import Content
from fusevault.vault.services import gc, punched_wants
from fusevault.vault.services.punched_wants import inherits_punched, want_punched
from inprocess.conftest import ME, make, read_all
from inprocess.test_attack_43d import _Conflicted, _forged
from inprocess.test_punched_records import ORIGINAL, Peer, _expected, _punched_scene, _read, _replicator


async def test_a_file_whose_records_came_back_once_is_not_walked_again(fs, monkeypatch) -> None:
    volume = fs.volume
    node, rows, genuine = await _punched_scene(fs)
    assert inherits_punched(volume, node)  # the honest scene: v1's blocks 0, 1 wanted back
    r, said = _replicator(fs, Peer(genuine), "holding")
    await r._take_punched()
    volume.layout.places.refused.clear()
    assert not volume.tree.records_wanted and volume.layout.places.punched_of(node.fid) == {}
    assert await _read(fs) == _expected()
    loads = []
    real = Content.load_manifest

    def counted(self, *args, **kwargs):
        loads.append(args)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Content, "load_manifest", counted)
    for _ in range(3):  # three unlocks / arrivals of a version of the file
        assert not inherits_punched(volume, node)
    listed = node.fid in volume.layout.places.punched_files()
    assert not loads and not listed, (
        f"nothing wanted, yet the file is listed to be walked ({listed}) and its manifest was loaded "
        f"{len(loads)} time(s) in 3 walks; copies rows: {volume.layout.places.copies_of(node.fid)}")


def _gc_scene(copies: dict) -> list[tuple[int, int]]:
    places = SimpleNamespace(any_arrived=True, copies_of=lambda fid: copies)
    manifest = SimpleNamespace(nodes=[], tree={}, vids=["v2"], blocks=SimpleNamespace(
        blocks=lambda: [(0, 100, 120, 0, 1)]))
    content = SimpleNamespace(fid="f", layout=SimpleNamespace(places=places),
                              where=lambda o, n, vid, index, dek=None: (o, n),
                              load_manifest=lambda place, vid, dek: manifest)
    version = SimpleNamespace(manifest=(10, 50), vid="v2", dek=b"")
    return gc.used_ranges(content, [version])  # type: ignore[arg-type]


def test_gc_does_not_keep_a_node_copy_no_kept_version_names() -> None:
    node_copy = (9000, 300)  # a node of v1's tree (index -2) placed again, v1 long dropped
    ranges = _gc_scene({("v1", -2): {b"\1" * 32: node_copy}})
    assert (node_copy[0], node_copy[0] + node_copy[1]) not in ranges, (
        "the kept version (v2, naming only its own block 0) keeps a node copy of v1's tree")


def test_gc_keeps_a_block_copy_the_kept_version_names_control() -> None:
    block_copy = (9000, 120)
    ranges = _gc_scene({("v2", 0): {b"\1" * 32: (100, 120), b"\2" * 32: block_copy}})
    assert (block_copy[0], block_copy[0] + block_copy[1]) in ranges


def test_gc_keeps_every_copy_of_a_node_the_kept_version_names() -> None:
    """The fix of (2) keeps what a kept version's tree names: every copy of node (v1, -2) its tree names
    (the one it reads is in ``manifest.nodes``; the other kept as for blocks)."""
    read, other = (8000, 300), (9000, 300)
    places = SimpleNamespace(any_arrived=True, copies_of=lambda fid: {
        ("v1", -2): {b"\1" * 32: read, b"\2" * 32: other}, ("v0", -2): {b"\3" * 32: (9500, 300)}})
    manifest = SimpleNamespace(nodes=[read], tree={(0, 0): ((8000, 300, "v1"), (), b"\1" * 32)}, vids=["v2"],
                               blocks=SimpleNamespace(blocks=lambda: [(0, 100, 120, 0, 1)]))
    content = SimpleNamespace(fid="f", layout=SimpleNamespace(places=places),
                              where=lambda o, n, vid, index, dek=None: (o, n),
                              load_manifest=lambda place, vid, dek: manifest)
    version = SimpleNamespace(manifest=(10, 50), vid="v2", dek=b"")
    ranges = gc.used_ranges(content, [version])  # type: ignore[arg-type]
    assert (8000, 8300) in ranges and (9000, 9300) in ranges and (9500, 9800) not in ranges


async def test_her_version_reading_a_node_copy_reads_after_gc(fs, monkeypatch) -> None:
    """Nothing lost by the fix of (2): 46a (3)'s node scene (his node and hers, two copies of v1's leaf
    -10), then gc keeping her version alone (the ranges it leaves out punched, their rows forgotten,
    as ``collect`` does): her version still reads every block, those under the node copy too."""
    from fusevault.vault.format.manifest import NEW_BLOCK_SIZE
    from inprocess.test_attack_46a import _writer_unknown
    from inprocess.test_attack_47a import _his_node_first, _read_block

    _writer_unknown(monkeypatch)
    entry, data, _, _ = await _his_node_first(fs, monkeypatch, same=False)
    volume = fs.volume
    node = volume.resolve(b"big.bin")
    expected = data[:10] + b"an edit" + data[17:]
    blocks = (0, 255, 256, 260, len(data) // NEW_BLOCK_SIZE - 1)

    async def reads() -> dict[int, bool]:
        volume.files.cache.clear()  # read from the .vf, not from blocks verified before the gc
        return {i: await _read_block(fs, entry, i) == expected[i * NEW_BLOCK_SIZE:(i + 1) * NEW_BLOCK_SIZE]
                for i in blocks}

    assert all((await reads()).values())  # the scene: she reads, block 260 under her copy of the node
    copies = volume.layout.places.copies_of(node.fid)
    assert any(len(held) > 1 for (_, idx), held in copies.items() if idx == -10), copies
    hers = SimpleNamespace(manifest=node.manifest, vid=node.head, dek=node.dek)
    content = Content(volume.layout, volume.key.user_id, node.fid, node.dek, None, None)
    try:
        _, punched = gc.free_unused(content, [hers])  # type: ignore[list-item]
    finally:
        content.close()
    assert punched, "the scene: gc punches what her version does not name (v1's block 0)"
    await volume.store_call(volume.store.forget_places, node.fid, punched)
    got = await reads()
    assert all(got.values()), f"after gc her version reads otherwise: {got}"


# --- (3): a handle open on her version while her copy comes


async def _handle_read(fs, fh) -> bytes | int:
    try:
        return await fs.ops.read(fh, 0, 1 << 20)
    except pyfuse3.FUSEError as err:
        return err.errno


async def _her_copy_comes_while_open(fs, monkeypatch, other_copy: bool) -> tuple[object, object]:
    """plan.bin's v2 (hers) inherits v1's punched blocks 0, 1 (the writer's version unknown here).
    ``other_copy``: his leaf, walked alone first, had the server's bytes of his hash placed (46a (3)'s
    scene), so hers is wanted as another copy; else (the honest 41b scene) the record is simply
    punched.  A handle is opened on plan.bin and read (EIO: her bytes not here), then the holding peer
    sends her bytes.  (handle, the read before)."""
    volume = fs.volume
    monkeypatch.setattr(punched_wants, "_writers_sealed", lambda *args: None)
    node, _, genuine = await _punched_scene(fs)
    if other_copy:
        monkeypatch.setattr(punched_wants, "replica", _Conflicted(node.fid))
        forged = _forged(genuine)
        tree = volume.tree
        assert inherits_punched(volume, node)
        mine = tree.records_wanted.pop((node.fid, node.head))
        tree.records_vouched.clear()
        his = (node.fid, "0" * len(node.head))
        by_id = {doc["_id"]: doc for doc in forged}
        tree.records_wanted[his] = tree.records_vouched[his] = {
            (vid, idx): (owner, hashlib.sha256(base64.b64decode(
                by_id[f"rec-{node.fid}-{vid}-{idx}"]["data"])).digest())
            for (vid, idx), (owner, _) in mine.items()}
        r, _ = _replicator(fs, Peer(forged), "server")
        await r._take_punched()
    assert inherits_punched(volume, node)  # her version (walked): her bytes wanted
    volume.layout.places.note_arrival()  # a vault that ever synced (records came from peers before)
    info = await fs.ops.open(volume.resolve(b"plan.bin").ino, os.O_RDONLY, ME)
    before = await _handle_read(fs, info.fh)
    r, _ = _replicator(fs, Peer(genuine), "holding")
    for _ in range(2):
        await r._take_punched()
    volume.layout.places.refused.clear()
    return info, before


async def test_a_handle_open_while_her_copy_comes_reads_it(fs, monkeypatch) -> None:
    info, before = await _her_copy_comes_while_open(fs, monkeypatch, other_copy=True)
    try:
        got = await _handle_read(fs, info.fh)
    finally:
        await fs.ops.release(info.fh)
    assert before == errno.EIO, f"the scene: EIO before her copy came, got {before!r:.40}"
    assert await _read(fs) == _expected(), "the scene: a new open reads her copy"
    shown = got if isinstance(got, int) else "other bytes"
    assert got == _expected(), f"the handle open meanwhile reads {shown}"


async def test_a_handle_open_while_a_punched_record_comes_back_reads_it_control(fs, monkeypatch) -> None:
    info, before = await _her_copy_comes_while_open(fs, monkeypatch, other_copy=False)
    try:
        got = await _handle_read(fs, info.fh)
    finally:
        await fs.ops.release(info.fh)
    assert before == errno.EIO
    assert got == _expected()


# --- (4): a ``copies`` row a vault-folder writer planted


async def _planted_row(fs, monkeypatch, sha: object) -> tuple[bytes | int, str]:
    """plan.bin written here and read whole; a ``copies`` row of its first version's block 0 planted in
    store.sqlite with ``sha`` (the vault folder's bytes are hostile); the vault has synced before.  (The
    read after, what ``inherits_punched`` (the walk at each arrival) does with it.)"""
    volume = fs.volume
    entry = await make(fs.ops, b"plan.bin", ORIGINAL)
    node = volume.resolve(b"plan.bin")
    volume.store.db.execute("INSERT INTO copies VALUES (?, ?, ?, ?, ?, ?)",
                            (node.fid, node.head, 0, sha, 0, 1))
    volume.layout.places.note_arrival()
    try:
        walk = f"returned {inherits_punched(volume, node)}"
    except Exception as err:  # noqa: BLE001 - what escapes the arrival's walk is the finding
        walk = f"raised {type(err).__name__}: {err}"
    # The unlock's walk (fs/personal.py: ``want_punched`` before the mount runs), its head from a peer.
    monkeypatch.setattr(type(volume.layout.places), "came_from_peer", lambda self, fid, vid: True)
    try:
        want_punched(volume)
    except Exception as err:  # noqa: BLE001
        walk += f"; the unlock's want_punched raised {type(err).__name__}"
    try:
        return await read_all(fs.ops, entry.st_ino), walk
    except pyfuse3.FUSEError as err:
        return err.errno, walk


async def test_a_planted_copies_row_with_a_blob_sha_breaks_no_read(fs, monkeypatch) -> None:
    got, walk = await _planted_row(fs, monkeypatch, b"\0" * 32)
    shown = got if isinstance(got, int) else "other bytes"
    assert got == ORIGINAL and walk.startswith("returned") and ";" not in walk, (
        f"the file reads {shown}; the walk {walk}")


async def test_a_planted_copies_row_with_a_bad_hex_sha_breaks_no_read_control(fs, monkeypatch) -> None:
    got, walk = await _planted_row(fs, monkeypatch, "not hex")
    assert got == ORIGINAL and walk.startswith("returned") and ";" not in walk, walk
