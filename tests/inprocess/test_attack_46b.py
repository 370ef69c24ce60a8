"""Attack round 46b, in-process: round 45a's fix a5f674b (vault/tree/revival.py ``Judged``,
``_stands``, ``folders_above_live``; vault/tree/inodes.py ``_note_holding``, ``left_holding``,
``_rejoin``).

Run 09:01 UTC, 2026-12-06: 3 xfailed, 2 controls passed; with --runxfail each xfail fails at its own
assertion (the scene's asserts all held).

Hole (1), medium (a loop of folders in the tree; a save of a file in it hangs the mount): a folder
  brought back (``revive``) is given what its dropped node held (``_rejoin``) and then linked where
  this device last saw it, with no look at whether that folder is now beneath what it was just given.
  Attack: the server's order (its own) over honest use.  P/F/S on both of her devices, F/y.txt saved
    on her tablet.  Her laptop runs ``mv P/F F; mv P F/S/P; rm -r F``.  The server serves the desktop
    F's removal first, then P's move into S (P's removal withheld, or a later batch), then the
    tablet's next save of y.txt.
  Seen: ``test_a_folder_brought_back_into_a_folder_moved_under_it_makes_no_loop`` (run, through
    ``absorb_arrivals``; fails: walking up from y.txt: F, P, S, F ...).  A probe (run, not kept, with
    ``Inodes.path_of`` bounded so that it raised) then wrote y.txt through an open handle: its commit
    (``open_files.commit_version`` -> ``version_doc(..., tree.path_of(node))``) walks the loop.
  Cause: F's removal taken (y.txt and S are not live here, by design), F dropped and noted
    (``left_holding``: S, y.txt); P's move puts P in S (held, in the dead inode: ``relink`` finds no
    loop as S's parent is gone).  y.txt's new state names F: ``revive`` -> ``_revive(F)``: its place
    seen here is P (held) -> ``tree.add(F)`` -> ``_rejoin`` links S and y.txt in the new F (its
    ``is_ancestor`` check is empty: the new F has no parent yet) -> ``tree.link_entry(P, "F", F)``:
    F in P in S in F.  Before 45a the revived F came back empty: no loop.  ``absorb_node``'s own path
    (``relink``) refuses such a link (``makes_cycle``); ``_revive`` does not look.
  Impact: F, S, P, y.txt in a loop, out of every listing; F is committed again over its removal
    placed in P (``out.recommit``, run; read only: the store then holds a loop of her signed states,
    which each device's next load breaks with a ``cycle`` alarm, in honest use).
    ``Inodes.path_of`` never ends on a node in the loop (it appends names forever): a save of
    y.txt through a handle the desktop kept open, a trashing, a re-key's depth (rotation.py), an
    alarm's ``path_shown`` spin the mount's loop with growing memory, for good.
  Fix (suggested): in ``_revive``, refuse (keep the folder out, said) when ``makes_cycle(tree, node,
    [(parent.fid, name)])`` once it is added; or rejoin after the folder is linked, leaving out any
    held node that is its ancestor then.
  Tests: that one; the control ``..._where_it_was_shows_what_it_held_control``.

Hole (2), medium (her files put in a folder another user made, at his name and place, on her
  device): ``_rejoin`` gives the held nodes to whatever node is added next at the dropped folder's
  id, whoever owns and signed it.
  Attack: bob, who shares a folder C with her (any giver: a colleague, the WRITE member of one of
    her shares who shares something of his own), signs a folder node of his own in C whose ``_id`` is
    her dropped folder F's (every node id, her removal's too, is in the database he replicates) and
    seals its key to her; stored on top of her removal of F.  F dropped on her desktop while it held
    y.txt (round 45a (2)'s scene: saved on her tablet, F removed on her laptop).
  Seen: ``test_a_folder_another_user_signed_at_her_dropped_folders_id_is_not_given_her_files`` (run,
    in a shared mount: y.txt shown at ``shared/bob/C/F/y.txt``, in bob's folder).
  Cause: ``absorb_node`` for a node not held (F dropped) takes bob's document as a new node (signer
    = owner = bob: ``may_take``); ``Inodes.add`` -> ``_rejoin`` links every node F's old inode held,
    never asking whose folder it is nor who signed it (``left_holding`` keeps no owner).
  Impact: her tablet's file shown on her desktop inside bob's share, under the folder name and place
    bob chose; her edits, moves, ``rm -r`` made there act on her files as if his; her own F coming
    back later finds bob's node at its id.  No alarm.
  Fix (suggested): note the folder's owner in ``left_holding`` and rejoin only into a node of that
    owner whose document that owner signed; and hole (3)'s check.
  Tests: that one.

Hole (3), medium, older than 45a (read: present before it; met here): a document naming another
  owner at the id of her held folder is taken as a state of her folder.
  Attack: as hole (2), but F held and live (nothing removed): bob's folder at F's id, in his C.
  Seen: ``test_a_folder_another_user_signed_at_her_folders_id_does_not_move_it_into_his_share``
    (run: her F and y.txt leave her root, shown at ``shared/bob/C/F``; no alarm).  A file the same
    way is not taken (its version is not there: ``_version_here`` waits; the control).
  Cause: ``absorb_node`` judges the signer against the document's ``owner`` (bob signed, bob owns:
    ``may_take``), never against the held node's owner; ``_update`` takes its ATTRS and CONTENTS (the
    folder's DEK too: bob's) and ``relink`` its names.  Only the load says ``owner-changed``
    (``Ledger`` ``mine``).
  Impact: her folder moved into another user's share on her device, with all it holds; its key is
    now bob's (probe, run: ``save_node`` then commits her signed state of F, placed in his C, under
    the key he chose, so he reads its attributes).
  Fix (suggested): refuse (``owner-changed``) any arrival whose ``owner`` is not the held node's, or
    whose id the ledger knows as hers (``mine``), on arrival as at load; the same in
    ``_admit_new_shares`` and ``admit_guests``.
  Tests: that one; the control ``..._file_keeps_its_place_control``.

Checked and held (read): ``_stands`` reads only the tree's own state; a node's ``seq`` comes from the
signed body it took (a refused one, ``keep``, leaves it); her own older states are refused by the
ledger, so a replay of this device's seq does not make a node live; a writer naming her device in his
``seq`` makes his file count as put here (``node.seq`` is raw; ``writer_seq`` keeps it apart only in the
ledger), but the outcome is the one his file brings anyway (F brought back, edit beats delete).
``Judged.above`` goes stale only by a new link: ``relink`` (and ``link_clashing`` within it) and
``_revive`` call ``linked``; ``_rejoin`` runs inside ``tree.add`` just before the folder's own link, which
resets it; a node made live inside a batch needs a state of this device's seq (refused) or unsaved
writes (not within a batch).  ``left_holding`` is bounded by the nodes still linked to dropped inodes
(each note drops up to two stale entries, adds at most one); no inode number is reused.
"""

from __future__ import annotations

import copy
import stat
from types import SimpleNamespace

import pytest

from fusevault.errors import CorruptData
from fusevault.vault.model.nodes import ROOT_INODE, node_doc
from fusevault.vault.services.absorbing import absorb_arrivals
from fusevault.vault.tree.arrivals import open_doc
from inprocess.conftest import ALICE_UID, BOB_UID, DIR, ME, ROOT, Ctx, make
from inprocess.test_attack_45a import _forgotten, _on_top, _shown
from inprocess.test_two_users import _read, _write

ALICE, BOB = Ctx(ALICE_UID, ALICE_UID), Ctx(BOB_UID, BOB_UID)


def _signed(volume, node, *, seq, links, deleted=False, rev_id="e" * 32, store=None) -> dict:
    """``volume``'s user's signed state of ``node`` as another device made it (``seq``), naming
    ``links`` (parent fid or inode, name), stored as the successor of the revision the store holds."""
    other = copy.copy(node)
    other.links, other.seq, other.over, other.rev = list(links), seq, None, None
    if deleted:
        other.trashed = (node.links[0][1] if node.links else b"x", 1)

    def fid_of(parent):
        return parent if isinstance(parent, str) else volume.tree.fid_of(parent)
    doc = node_doc(other, volume.key, fid_of, deleted=deleted)
    return _on_top(volume if store is None else SimpleNamespace(store=store), doc, rev_id)


def _loops(tree, node, limit: int = 1000) -> bool:
    """Whether walking up ``node``'s first names meets a folder twice (bounded: ``path_of`` is not)."""
    seen: set[int] = set()
    while node is not None and node.ino != ROOT_INODE and node.links and len(seen) < limit:
        if node.ino in seen:
            return True
        seen.add(node.ino)
        node = tree.get(node.links[0][0])
    return False


# --- hole (1)


async def _p_f_s(fs, *, move_p: bool):
    """P/F/S made on her laptop, F/y.txt on her tablet; F's removal (laptop) taken and forgotten,
    then (``move_p``) P's move into S, then the tablet's next save of y.txt: (F, y.txt, the batch)."""
    volume = fs.volume
    p = await fs.ops.mkdir(ROOT, b"P", DIR, ME)
    f = await fs.ops.mkdir(p.st_ino, b"F", DIR, ME)
    await fs.ops.mkdir(f.st_ino, b"S", DIR, ME)
    await make(fs.ops, b"y.txt", b"saved on her tablet", parent=f.st_ino)
    await volume.flush_pending()
    pn, top, s, y = (volume.resolve(x) for x in (b"P", b"P/F", b"P/F/S", b"P/F/y.txt"))
    for node in (pn, top, s):
        node.seq = ("laptop", 7)
    y.seq = ("tablet", 3)
    assert volume.ledger.was_at(top.fid) == [pn.fid], "F last seen here in P"
    absorb_arrivals(volume, [_signed(volume, top, seq=("laptop", 9), links=[], deleted=True)])
    _forgotten(volume, top)
    assert volume.tree.find(top.fid) is None, "F's removal taken, its node dropped (S, y.txt not live here)"
    if move_p:
        moved = _signed(volume, pn, seq=("laptop", 8), links=[(s.fid, b"P")], rev_id="a" * 32)
        absorb_arrivals(volume, [moved])
        assert pn.links == [(s.ino, b"P")], "P moved into S"
    out = absorb_arrivals(volume, [_signed(volume, y, seq=("tablet", 4), links=[(top.fid, b"y.txt")],
                                           rev_id="b" * 32)])
    assert volume.tree.find(top.fid) is not None, "F brought back for y.txt"
    return volume.tree.find(top.fid), y, out


async def test_a_folder_brought_back_into_a_folder_moved_under_it_makes_no_loop(fs) -> None:
    _, y, _ = await _p_f_s(fs, move_p=True)
    assert not _loops(fs.volume.tree, y), "a loop of folders above y.txt: path_of never ends there"


async def test_a_folder_brought_back_where_it_was_shows_what_it_held_control(fs) -> None:
    """Control: P not moved: F back in P, with S and y.txt in it (45a (2))."""
    await _p_f_s(fs, move_p=False)
    assert _shown(fs.volume, b"P/F/y.txt") and _shown(fs.volume, b"P/F/S")


# --- holes (2), (3)


async def _bobs_share(shared):
    """bob's folder C shared with alice (READ); alice's F/y.txt: (F, y.txt, C's inode for bob)."""
    drive = shared.drive
    alice = shared.volumes["alice"]
    c = await drive.mkdir(ROOT, b"C", stat.S_IFDIR | 0o755, BOB)
    answer = await drive.seat_of(BOB_UID).ops.session.requests.handle(
        {"cmd": "share", "path": "C", "with": "alice", "perm": "READ"})
    assert "error" not in answer, answer
    f = await drive.mkdir(ROOT, b"F", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, f.st_ino, b"y.txt", b"saved on her tablet", ALICE)
    await alice.flush_pending()
    return alice.resolve(b"F"), alice.resolve(b"F/y.txt"), c.st_ino


async def _planted(shared, c_ino: int, fid: str, name: bytes, *, folder: bool = True) -> dict:
    """bob's own node in C (a folder, or a file), signed by him at the id ``fid``, its key sealed to
    alice, stored on top of what the store holds at ``fid``."""
    bob = shared.volumes["bob"]
    if folder:
        await shared.drive.mkdir(c_ino, b"mine", stat.S_IFDIR | 0o755, BOB)
    else:
        await _write(shared.drive, c_ino, b"mine", b"bob's bytes", BOB)
    await bob.flush_pending()
    his = bob.resolve(b"C/mine")
    fake = copy.copy(his)
    fake.fid = fid
    assert bob.sharing.seal_keys(bob.layout, fake, bob.tree.covering(his), (his.dek, his.epoch)) >= 1
    links = [(bob.tree.fid_of(his.links[0][0]), name)]
    seq = (his.seq[0], his.seq[1] + 1)
    return _signed(bob, fake, seq=seq, links=links, rev_id="b" * 32, store=shared.store)


async def test_a_folder_another_user_signed_at_her_dropped_folders_id_is_not_given_her_files(shared) -> None:
    alice = shared.volumes["alice"]
    top, y, c_ino = await _bobs_share(shared)
    top.seq, y.seq = ("laptop", 7), ("tablet", 3)
    removal = _signed(alice, top, seq=("laptop", 9), links=[], deleted=True, store=shared.store)
    absorb_arrivals(alice, [removal])
    _forgotten(alice, top)
    assert alice.tree.find(top.fid) is None, "F's removal taken, its node dropped (y.txt the tablet's)"
    absorb_arrivals(alice, [await _planted(shared, c_ino, top.fid, b"F")])
    # Refused now as it comes (hole (3)'s fix: ``owner-changed``); the next test adds his node itself.
    taken = alice.tree.find(top.fid)
    assert taken is None or taken.owner != alice.key.user_id, "no folder of hers made at F's id"
    assert not _shown(alice, b"shared/bob/C/F/y.txt"), "her tablet's file shown in bob's folder"


async def test_a_node_of_another_owner_added_at_her_dropped_folders_id_is_not_given_her_files(shared) -> None:
    """Hole (2) past the arrival's check: bob's folder added at F's id (``Inodes.add``, as a path that
    does not judge owners would) is not given what her dropped F held (``left_holding`` notes F's
    owner); her own F, brought back after, is."""
    alice = shared.volumes["alice"]
    top, y, c_ino = await _bobs_share(shared)
    top.seq, y.seq = ("laptop", 7), ("tablet", 3)
    removal = _signed(alice, top, seq=("laptop", 9), links=[], deleted=True, store=shared.store)
    absorb_arrivals(alice, [removal])
    _forgotten(alice, top)
    planted = await _planted(shared, c_ino, top.fid, b"F")
    his, _ = open_doc(alice.tree, alice.authorship.admit(planted)[0])
    alice.tree.add(his)
    assert his.owner != alice.key.user_id and not his.children, "her tablet's file given bob's folder"
    alice.tree.purge_if_unused(his)
    assert alice.tree.find(top.fid) is None
    mine = copy.copy(top)
    mine.children = {}
    alice.tree.add(mine)
    assert b"y.txt" in mine.children, "her own F, added again, holds y.txt again (45a (2))"


async def test_a_folder_another_user_signed_at_her_folders_id_does_not_move_it_into_his_share(shared) -> None:
    alice = shared.volumes["alice"]
    top, _, c_ino = await _bobs_share(shared)
    absorb_arrivals(alice, [await _planted(shared, c_ino, top.fid, b"F")])
    assert _shown(alice, b"F/y.txt"), "her F moved out of her root"
    assert not _shown(alice, b"shared/bob/C/F")


async def test_a_file_another_user_signed_at_her_files_id_keeps_its_place_control(shared) -> None:
    """Control: the same for her file (bob's file at its id): not taken (its version is not there)."""
    alice = shared.volumes["alice"]
    mine = await _write(shared.drive, ROOT, b"doc.txt", b"alice's words", ALICE)
    await alice.flush_pending()
    top, _, c_ino = await _bobs_share(shared)
    doc_node = alice.resolve(b"doc.txt")
    absorb_arrivals(alice, [await _planted(shared, c_ino, doc_node.fid, b"doc.txt", folder=False)])
    assert _shown(alice, b"doc.txt") and not _shown(alice, b"shared/bob/C/doc.txt")
    assert await _read(shared.drive, mine.st_ino, ALICE) == b"alice's words"


@pytest.mark.timeout(30)
async def test_a_loop_of_folders_ends_every_walk_up(fs) -> None:
    """Hole (1), whatever makes a loop: ``path_of`` says it (CorruptData) and ``is_ancestor`` ends
    (True: a move it judges is refused), never spinning the mount's loop with growing memory."""
    volume = fs.volume
    a = await fs.ops.mkdir(ROOT, b"A", DIR, ME)
    await fs.ops.mkdir(a.st_ino, b"B", DIR, ME)
    tree, top, inner = volume.tree, volume.resolve(b"A"), volume.resolve(b"A/B")
    tree.unlink_entry(tree.root, b"A", top)
    tree.link_entry(inner, b"A", top)  # A in B in A: no path leads there
    with pytest.raises(CorruptData, match="cycle"):
        tree.path_of(inner)
    assert tree.is_ancestor(tree.root, inner), "above a loop: taken as an ancestor, the walk ends"
