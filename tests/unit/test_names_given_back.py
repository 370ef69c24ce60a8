"""A refused name goes back to the node a clash showed beside it; a name is judged by the signer of
the state holding it, never by a refused document's (attack round 73d (4), (7); the scenes:
tests/inprocess/test_attack_73d.py).  Here the rules' own edges, on a small tree of nodes."""

from __future__ import annotations

import stat
from types import SimpleNamespace

from fusevault.vault.model.nodes import Node
from fusevault.vault.tree import linking, phantoms
from fusevault.vault.tree.arrivals import Absorbed, give_back, signed_state, stand_on
from fusevault.vault.tree.beside import Beside
from fusevault.vault.tree.inodes import Inodes

HERS, HIS = "a" * 32, "b" * 32


class _Tree:
    """What ``give_back``, ``stand_on`` and ``_signer_held`` use of a tree."""

    link_entry = staticmethod(Inodes.link_entry)
    unlink_entry = staticmethod(Inodes.unlink_entry)

    def __init__(self) -> None:
        self.key = SimpleNamespace(user_id=HERS)
        self.beside = Beside()
        self.held_signers: dict[str, tuple[str, str]] = {}
        self.nodes: dict[int, Node] = {}
        self.store = self  # no stored document: ``_signer_held`` falls back on the owner

    def get(self, ino: int | str) -> Node | None:  # a node by inode; as the store, a document by id
        return self.nodes.get(ino) if isinstance(ino, int) else None

    def add(self, ino: int, mode: int = stat.S_IFREG | 0o600, owner: str = HERS) -> Node:
        node = self.nodes[ino] = Node(ino, f"{ino:032x}", owner, b"k" * 32, mode, 0, 0)
        return node


def _folder_with_clash() -> tuple[_Tree, Node, Node, Node]:
    """Her folder: his file holds ``plan.txt``, hers shown beside it (noted, as ``link_clashing`` notes)."""
    tree = _Tree()
    folder, his, hers = tree.add(2, stat.S_IFDIR | 0o700), tree.add(3, owner=HIS), tree.add(4)
    tree.link_entry(folder, b"plan.txt", his)
    tree.link_entry(folder, b"plan (also 00000000).txt", hers)
    tree.beside.note(folder.ino, b"plan.txt", hers.ino, b"plan (also 00000000).txt")
    return tree, folder, his, hers


def test_a_refused_holders_name_goes_back_to_the_file_shown_beside_it() -> None:
    tree, folder, his, hers = _folder_with_clash()
    tree.unlink_entry(folder, b"plan.txt", his)  # refused
    out = Absorbed()
    give_back(tree, folder, b"plan.txt", out)
    assert folder.children == {b"plan.txt": hers.ino} and hers.links == [(folder.ino, b"plan.txt")]
    assert (folder.ino, b"plan (also 00000000).txt") in out.entries, "the kernel forgets the made name"


def test_a_file_renamed_since_its_clash_keeps_the_name_it_was_given() -> None:
    tree, folder, his, hers = _folder_with_clash()
    tree.unlink_entry(folder, b"plan (also 00000000).txt", hers)
    tree.link_entry(folder, b"mine.txt", hers)  # her own rename since
    tree.unlink_entry(folder, b"plan.txt", his)
    give_back(tree, folder, b"plan.txt", Absorbed())
    assert folder.children == {b"mine.txt": hers.ino}, "a stale note moves nothing"


def test_a_file_taken_out_meanwhile_gets_no_name_back() -> None:
    """Two names refused together: one refused node shown beside the other gets nothing
    (``names_judged_again`` gives back only once every name is judged)."""
    tree, folder, his, hers = _folder_with_clash()
    tree.unlink_entry(folder, b"plan.txt", his)
    tree.unlink_entry(folder, b"plan (also 00000000).txt", hers)  # refused too
    give_back(tree, folder, b"plan.txt", Absorbed())
    assert folder.children == {} and not hers.links


def test_a_name_taken_again_is_not_given_twice() -> None:
    tree, folder, his, hers = _folder_with_clash()
    tree.unlink_entry(folder, b"plan.txt", his)
    other = tree.add(5)
    tree.link_entry(folder, b"plan.txt", other)
    give_back(tree, folder, b"plan.txt", Absorbed())
    assert folder.children == {b"plan.txt": other.ino, b"plan (also 00000000).txt": hers.ino}


def test_a_node_holds_a_note_per_name_it_lost_and_drops_them_at_once() -> None:
    """A note per name lost (74b (1)): one name noted again replaces its note; ``drop`` (its names
    decided again, or it left) takes every note of the node, the others' stay."""
    beside = Beside()
    for k in range(100):
        beside.note(k, b"n", 7, b"n (also 7)")
        beside.note(k, b"n", 7, b"n (also 7 2)")  # the same name lost again: one note
    beside.note(0, b"n", 8, b"n (also 8)")
    assert len(beside) == 101 and beside.waiting(99, b"n") == [(7, b"n (also 7 2)", True)]
    beside.drop(7)
    assert len(beside) == 1 and beside.waiting(0, b"n") == [(8, b"n (also 8)", True)]


def test_a_name_lost_where_the_file_shows_already_is_added_beside_its_own() -> None:
    """Her file shows in the folder as ``copy.txt``; ``plan.txt``, which it also wants there, lost to
    his (noted anchored at ``copy.txt``): his refused, hers is added, ``copy.txt`` kept (74b (1))."""
    tree = _Tree()
    folder, his, hers = tree.add(2, stat.S_IFDIR | 0o700), tree.add(3, owner=HIS), tree.add(4)
    tree.link_entry(folder, b"plan.txt", his)
    tree.link_entry(folder, b"copy.txt", hers)
    tree.beside.wait(folder.ino, b"plan.txt", hers.ino, b"copy.txt")
    tree.unlink_entry(folder, b"plan.txt", his)  # refused
    give_back(tree, folder, b"plan.txt", Absorbed())
    assert folder.children == {b"copy.txt": hers.ino, b"plan.txt": hers.ino}
    assert sorted(hers.links) == [(2, b"copy.txt"), (2, b"plan.txt")] and not len(tree.beside)


def test_a_name_lost_beside_a_made_name_follows_it_when_that_one_is_given_back() -> None:
    """Two names of hers lost in one folder: shown beside the first, the second noted anchored at
    that made name; both holders refused, the first given back, then the second beside it."""
    tree, folder, his, hers = _folder_with_clash()
    other = tree.add(5, owner=HIS)
    tree.link_entry(folder, b"notes.txt", other)
    tree.beside.wait(folder.ino, b"notes.txt", hers.ino, b"plan (also 00000000).txt")
    tree.unlink_entry(folder, b"plan.txt", his)
    tree.unlink_entry(folder, b"notes.txt", other)
    give_back(tree, folder, b"plan.txt", Absorbed())
    give_back(tree, folder, b"notes.txt", Absorbed())
    assert folder.children == {b"plan.txt": hers.ino, b"notes.txt": hers.ino}


def test_the_name_freed_goes_to_the_file_her_rule_ranks_first() -> None:
    """Three waiting beside his refused name in her folder: hers before his, then the one named last
    (74b (4)); the others stay beside it, noted."""
    tree, folder, his, first = _folder_with_clash()
    last, theirs = tree.add(6), tree.add(7, owner=HIS)
    first.ctime, last.ctime, theirs.ctime = 1, 2, 3
    for node in (last, theirs):
        shown = b"plan (also %d).txt" % node.ino
        tree.link_entry(folder, shown, node)
        tree.beside.note(folder.ino, b"plan.txt", node.ino, shown)
    tree.unlink_entry(folder, b"plan.txt", his)
    give_back(tree, folder, b"plan.txt", Absorbed())
    assert folder.children[b"plan.txt"] == last.ino
    beside = sorted(ino for ino, _, _ in tree.beside.waiting(folder.ino, b"plan.txt"))
    assert beside == [first.ino, theirs.ino]


def test_a_refused_revision_never_says_who_signed_the_names_held() -> None:
    """Her state (no note), then a refused revision: her names are hers; a writer's state, then one:
    his still, carried over revisions refused one after another."""
    tree = _Tree()
    hers, his = tree.add(3), tree.add(4)
    hers.rev = his.rev = "1-a"
    signed_state(tree, hers, HERS)
    signed_state(tree, his, "c" * 32)  # a writer's state of her file
    for rev in ("2-b", "3-c"):
        stand_on(tree, hers, rev)
        stand_on(tree, his, rev)
    assert (hers.rev, his.rev) == ("3-c", "3-c")
    assert phantoms._signer_held(tree, hers) == HERS
    assert phantoms._signer_held(tree, his) == "c" * 32


def test_the_load_takes_a_free_name_where_the_file_shows_already() -> None:
    """At the load (and a share's admission), her file lost ``plan.txt`` to his, refused since; it shows
    in the folder as ``copy.txt``: the free name is taken (her hard link), not skipped (74b (1))."""
    tree = _Tree()
    tree.find = lambda fid: next((node for node in tree.nodes.values() if node.fid == fid), None)
    folder, hers = tree.add(2, stat.S_IFDIR | 0o700), tree.add(4)
    tree.link_entry(folder, b"copy.txt", hers)
    assert linking._link_beside(tree, hers, [(folder.fid, b"plan.txt")]) == [(folder.ino, b"plan.txt")]
    assert folder.children == {b"copy.txt": hers.ino, b"plan.txt": hers.ino}


def test_a_holder_swapped_out_keeps_its_notes_at_the_name_it_shows_under_now() -> None:
    """76b (1), (2): notes shown at the name lost move to the made name, each keeping whether it
    replaces it; a made name lost says so (not noted again); another folder's notes stay."""
    beside = Beside()
    beside.note(2, b"plan.txt", 4, b"M1")  # shown as its made name M1 for plan.txt
    beside.wait(2, b"other.txt", 4, b"M1")  # anchored at M1
    beside.wait(5, b"plan.txt", 4, b"M1")  # another folder: a name M1 there too
    assert beside.moved(4, 2, b"M1", b"M2") is True, "M1 was a made name of it"
    assert beside.waiting(2, b"plan.txt") == [(4, b"M2", True)]
    assert beside.waiting(2, b"other.txt") == [(4, b"M2", False)]
    assert beside.waiting(5, b"plan.txt") == [(4, b"M1", False)]
    assert beside.moved(4, 2, b"copy.txt", b"M3") is False and len(beside) == 3, "nothing shown there"
    assert beside.made(4, 2, b"M2") and not beside.made(4, 5, b"M1")


def test_a_name_freed_replaces_the_made_name_its_waiter_shows_under() -> None:
    """76b (6): a waiter anchored at a made name of its own (another name it lost there) takes the name
    freed in its place, and its note replacing that made name is anchored at the name given."""
    tree, folder, his, hers = _folder_with_clash()
    other = tree.add(5, owner=HIS)
    tree.link_entry(folder, b"b.txt", other)
    tree.beside.wait(folder.ino, b"b.txt", hers.ino, b"plan (also 00000000).txt")
    tree.unlink_entry(folder, b"b.txt", other)  # refused
    give_back(tree, folder, b"b.txt", Absorbed())
    assert folder.children == {b"plan.txt": his.ino, b"b.txt": hers.ino}
    assert tree.beside.waiting(folder.ino, b"plan.txt") == [(hers.ino, b"b.txt", False)]


def test_a_name_that_looks_made_is_no_made_name_without_its_note() -> None:
    """Hostile names: her own file named like a made name (``plan (also 00000000).txt``), anchored
    there, keeps it: the name given back goes beside it (only a note makes a name a made one)."""
    tree = _Tree()
    folder, his, hers = tree.add(2, stat.S_IFDIR | 0o700), tree.add(3, owner=HIS), tree.add(4)
    tree.link_entry(folder, b"plan (also 00000000).txt", hers)
    tree.link_entry(folder, b"plan.txt", his)
    tree.beside.wait(folder.ino, b"plan.txt", hers.ino, b"plan (also 00000000).txt")
    tree.unlink_entry(folder, b"plan.txt", his)  # refused
    give_back(tree, folder, b"plan.txt", Absorbed())
    assert folder.children == {b"plan (also 00000000).txt": hers.ino, b"plan.txt": hers.ino}


def test_a_name_freed_goes_first_to_a_file_shown_beside_then_to_one_showing_there() -> None:
    """76b (3): of two waiting, the one shown only under a made name takes the name, though the other
    (showing there under a name of its own) was named last, as ``clash`` never takes a name from its
    holder for a node showing in the folder already; the other stays waiting, anchored."""
    tree, folder, his, hers = _folder_with_clash()
    later = tree.add(5)
    later.ctime = hers.ctime + 1
    tree.link_entry(folder, b"copy.txt", later)
    tree.beside.wait(folder.ino, b"plan.txt", later.ino, b"copy.txt")
    tree.unlink_entry(folder, b"plan.txt", his)  # refused
    give_back(tree, folder, b"plan.txt", Absorbed())
    assert folder.children == {b"plan.txt": hers.ino, b"copy.txt": later.ino}
    assert tree.beside.waiting(folder.ino, b"plan.txt") == [(later.ino, b"copy.txt", False)]
