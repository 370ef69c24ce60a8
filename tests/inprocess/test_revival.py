"""vault/tree/revival.py's walk under a removed folder (``_holds_live``), in-process.

The scene (tests/inprocess/test_attack_42a.py ``_deep_scene``): F/s/t/u made on her laptop, u/new.txt
saved on this device since.  The laptop's ``rm -r F`` reaches this device as removals of F, s, t and u,
in any order and batching, or only some of them: F's removal must never be taken over new.txt
(attack round 42a (7)), and a subfolder her laptop moved out of F with the removal goes with what it
holds, F's removal taken (as round 41a (1) for a file).
"""

from __future__ import annotations

import itertools

import pytest

from fusevault.vault.services.absorbing import absorb_arrivals
from fusevault.vault.tree import revival
from inprocess.conftest import DIR, ME, ROOT, make
from inprocess.test_attack_42a import _deep_scene
from inprocess.test_attack_45a import _shown, _state

REMOVED_REV = "9-" + "e" * 32
SERVED_REV = "99-" + "f" * 32  # a revision the server makes up: ``_rev`` is not signed


def _removals_stored(fs, monkeypatch, nodes) -> None:
    """The store holds a removal of each of ``nodes``, not taken in yet (the rest of the batch)."""
    store = fs.volume.store
    real = store.get
    removed = {node.fid: {"_id": node.fid, "_rev": REMOVED_REV, "delete": True} for node in nodes}
    monkeypatch.setattr(store, "get", lambda doc_id: removed.get(doc_id) or real(doc_id))


@pytest.mark.parametrize("stored", [sub for n in range(3) for sub in itertools.combinations("stu", n)],
                         ids=lambda sub: "+".join(sub) or "none")
async def test_a_folders_removal_is_not_taken_whichever_of_its_subfolders_removals_came(
        fs, monkeypatch, stored: tuple[str, ...]) -> None:
    """Only some of the subfolders' removals stored (the rest in a later batch, or never sent): F
    still holds her new file three folders down."""
    top, chain = await _deep_scene(fs)
    _removals_stored(fs, monkeypatch, [node for name, node in zip("stu", chain) if name in stored])
    assert revival._holds_live(fs.volume.tree, top)


async def _move_waiting(fs, top, s, target) -> None:
    """s moved into ``target`` by a stored state of hers the tree has not taken in yet (her laptop's
    ``mv F/s <target>/s; rm -r F`` in one push, F's removal judged first)."""
    volume = fs.volume
    held, seq = s.rev, s.seq
    await fs.ops.rename(top.ino, b"s", target.ino, b"s", 0, ME)
    await volume.flush_pending()
    assert volume.store.get(s.fid)["_rev"] != held, "her move is stored"
    volume.tree.unlink_entry(target, b"s", s)  # the tree as before the move: it waits in the batch
    volume.tree.link_entry(top, b"s", s)
    s.rev, s.seq = held, seq


async def test_a_subfolder_her_removal_moved_out_of_the_folder_is_not_counted(fs) -> None:
    """``mv F/s G/s; rm -r F`` in one push, F's removal first: what s holds went with it, to G."""
    top, chain = await _deep_scene(fs)
    await fs.ops.mkdir(ROOT, b"G", DIR, ME)
    await _move_waiting(fs, top, chain[0], fs.volume.resolve(b"G"))
    assert not revival._holds_live(fs.volume.tree, top), "F kept for what left it"


async def test_a_subfolder_her_removal_moved_within_the_folder_is_counted(fs) -> None:
    """``mv F/s F/G/s; rm -r F``: s is still under F, and so is her new file."""
    top, chain = await _deep_scene(fs)
    await fs.ops.mkdir(top.ino, b"G", DIR, ME)
    inner = fs.volume.resolve(b"F/G")
    await _move_waiting(fs, top, chain[0], inner)
    inner.seq = ("laptop", 8)  # made on her laptop too: only what s holds is this device's
    assert revival._holds_live(fs.volume.tree, top)


async def test_the_walk_reads_only_the_way_to_what_is_live(fs, monkeypatch) -> None:
    """The walk looks for what is live from it up (round 45a (3), (4)): F is kept for her new file
    however deep (no depth limit keeps or drops it), and only the folders on the way to it are read,
    never a deep tree made elsewhere beside it (bounded by the tree held here, not by its depth)."""
    top, chain = await _deep_scene(fs)
    volume = fs.volume
    ino, beside = top.ino, []
    for i in range(revival.DEPTH_LIMIT + 2):
        ino = (await fs.ops.mkdir(ino, b"x%d" % i, DIR, ME)).st_ino
        beside.append(volume.tree.get(ino))
    await volume.flush_pending()
    for node in beside:
        node.seq = ("laptop", 7)  # made on her laptop, taken in here
    volume.tree.unlink_entry(top, b"s", chain[0])  # s listed after the chain beside it
    volume.tree.link_entry(top, b"s", chain[0])
    store = volume.store
    real, read = store.get, []
    monkeypatch.setattr(store, "get", lambda doc_id: read.append(doc_id) or real(doc_id))
    assert revival._holds_live(volume.tree, top)
    new = volume.resolve(b"F/s/t/u/new.txt")
    assert sorted(read) == sorted(node.fid for node in (*chain, new)), "read beside the way to new.txt"


async def _file_move_waiting(fs, node, source, target) -> None:
    """The file ``node`` moved from ``source`` into ``target`` by a stored state of hers the tree has
    not taken in yet (the rest of the batch, F's removal judged first)."""
    volume = fs.volume
    held, seq = node.rev, node.seq
    await fs.ops.rename(source.ino, b"new.txt", target.ino, b"new.txt", 0, ME)
    await volume.flush_pending()
    assert volume.store.get(node.fid)["_rev"] != held, "her move is stored"
    volume.tree.unlink_entry(target, b"new.txt", node)
    volume.tree.link_entry(source, b"new.txt", node)
    node.rev, node.seq = held, seq


async def test_her_file_moved_out_of_the_folder_by_a_newer_state_is_not_counted(fs) -> None:
    """Control (round 41a (1)): ``mv F/s/t/u/new.txt G; rm -r F`` in one push: the file went with it."""
    top, chain = await _deep_scene(fs)
    await fs.ops.mkdir(ROOT, b"G", DIR, ME)
    new = fs.volume.resolve(b"F/s/t/u/new.txt")
    await _file_move_waiting(fs, new, chain[-1], fs.volume.resolve(b"G"))
    assert not revival._holds_live(fs.volume.tree, top), "F kept for what left it"


async def test_her_file_moved_within_the_folder_by_a_newer_state_is_counted(fs) -> None:
    """A newer state of hers that keeps the file under F (moved within it, or changed in place: a
    device other than the removal's made it) takes nothing from F: she saved it there (round 43a (7):
    judged by the state's place, not by its revision)."""
    top, chain = await _deep_scene(fs)
    new = fs.volume.resolve(b"F/s/t/u/new.txt")
    await _file_move_waiting(fs, new, chain[-1], chain[0])
    assert revival._holds_live(fs.volume.tree, top)


async def test_her_older_state_of_a_file_served_again_does_not_take_it_with_the_folder(
        fs, monkeypatch) -> None:
    """Round 43a (5) for a file: x.txt made in G here, then moved into F (her laptop's); the server
    serves its older state, in G, under a revision it makes up: the ledger saw a newer one, so it is
    no move out of F."""
    volume = fs.volume
    g = await fs.ops.mkdir(ROOT, b"G", DIR, ME)
    await make(fs.ops, b"x.txt", b"saved on the desktop", parent=g.st_ino)
    await volume.flush_pending()
    node = volume.resolve(b"G/x.txt")
    older = dict(volume.store.get(node.fid), _rev=SERVED_REV)
    f = await fs.ops.mkdir(ROOT, b"F", DIR, ME)
    await fs.ops.rename(g.st_ino, b"x.txt", f.st_ino, b"x.txt", 0, ME)
    await volume.flush_pending()
    top = volume.resolve(b"F")
    top.seq = ("laptop", 7)
    store = volume.store
    real = store.get
    monkeypatch.setattr(store, "get", lambda doc_id: older if doc_id == node.fid else real(doc_id))
    assert revival._holds_live(volume.tree, top), "F counted as holding nothing: x.txt goes with it"


async def test_a_folder_moved_in_with_the_batch_is_walked_after_the_batchs_first_removal(fs) -> None:
    """What ``Judged`` found above what is live, early in a batch, does not hold after a move in the
    batch: her laptop removed G (made there), moved A (which holds her new file, saved here) into F,
    and removed F, A's own removal not sent yet.  F's removal, judged after G's and the move, is not
    taken over her new file."""
    volume = fs.volume
    f = await fs.ops.mkdir(ROOT, b"F", DIR, ME)
    await make(fs.ops, b"old.txt", b"the laptop's", parent=f.st_ino)
    g = await fs.ops.mkdir(ROOT, b"G", DIR, ME)
    await make(fs.ops, b"old.txt", b"the laptop's", parent=g.st_ino)
    a = await fs.ops.mkdir(ROOT, b"A", DIR, ME)
    await make(fs.ops, b"new.txt", b"saved on the desktop", parent=a.st_ino)
    await volume.flush_pending()
    for path in (b"F", b"F/old.txt", b"G", b"G/old.txt", b"A"):
        volume.resolve(path).seq = ("laptop", 7)  # made there, taken in here
    top, g_node, a_node = volume.resolve(b"F"), volume.resolve(b"G"), volume.resolve(b"A")
    docs = [_state(volume, g_node, seq=("laptop", 8), links=[], deleted=True, rev_id="a" * 32),
            _state(volume, a_node, seq=("laptop", 9), links=[(top.ino, b"A")], rev_id="b" * 32),
            _state(volume, top, seq=("laptop", 10), links=[], deleted=True, rev_id="c" * 32)]
    absorb_arrivals(volume, docs)
    assert volume.tree.find(g_node.fid) is None or not g_node.links, "G's removal taken"
    assert _shown(volume, b"F/A/new.txt"), "F's removal taken over her new file moved in with the batch"
