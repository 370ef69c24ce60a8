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

Tests: those named above (strict xfails).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fusevault.vault.files.content import Content
from fusevault.vault.services import gc
from fusevault.vault.services.punched_wants import inherits_punched
from inprocess.test_punched_records import Peer, _expected, _punched_scene, _read, _replicator


@pytest.mark.xfail(strict=True, reason="50a (1): a file once fetched back is walked at every unlock/arrival")
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
    manifest = SimpleNamespace(nodes=[], vids=["v2"], blocks=SimpleNamespace(
        blocks=lambda: [(0, 100, 120, 0, 1)]))
    content = SimpleNamespace(fid="f", layout=SimpleNamespace(places=places),
                              where=lambda o, n, vid, index, dek=None: (o, n),
                              load_manifest=lambda place, vid, dek: manifest)
    version = SimpleNamespace(manifest=(10, 50), vid="v2", dek=b"")
    return gc.used_ranges(content, [version])  # type: ignore[arg-type]


@pytest.mark.xfail(strict=True, reason="50a (2): gc keeps node copies no kept version names, for ever")
def test_gc_does_not_keep_a_node_copy_no_kept_version_names() -> None:
    node_copy = (9000, 300)  # a node of v1's tree (index -2) placed again, v1 long dropped
    ranges = _gc_scene({("v1", -2): {b"\1" * 32: node_copy}})
    assert (node_copy[0], node_copy[0] + node_copy[1]) not in ranges, (
        "the kept version (v2, naming only its own block 0) keeps a node copy of v1's tree")


def test_gc_keeps_a_block_copy_the_kept_version_names_control() -> None:
    block_copy = (9000, 120)
    ranges = _gc_scene({("v2", 0): {b"\1" * 32: (100, 120), b"\2" * 32: block_copy}})
    assert (block_copy[0], block_copy[0] + block_copy[1]) in ranges
