"""A refused name goes back to the node a clash showed beside it; a name is judged by the signer of
the state holding it, never by a refused document's (attack round 73d (4), (7); the scenes:
tests/inprocess/test_attack_73d.py).  Here the rules' own edges, on a small tree of nodes."""

from __future__ import annotations

import stat

from fusevault.vault.model.nodes import Node
from fusevault.vault.tree import phantoms
from fusevault.vault.tree.arrivals import Absorbed, give_back, signed_state, stand_on
from fusevault.vault.tree.beside import Beside
from fusevault.vault.tree.inodes import Inodes

HERS, HIS = "a" * 32, "b" * 32


class _Tree:
    """What ``give_back``, ``stand_on`` and ``_signer_held`` use of a tree."""

    link_entry = staticmethod(Inodes.link_entry)
    unlink_entry = staticmethod(Inodes.unlink_entry)

    def __init__(self) -> None:
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


def test_a_node_holds_one_note_at_a_time() -> None:
    """Each clash of a node replaces its note: a member renaming his file through many names keeps
    the notes as few as the nodes shown beside."""
    beside = Beside()
    for k in range(100):
        beside.note(2, b"n%d" % k, 7, b"n%d (also 7)" % k)
    assert list(beside.waiting(2, b"n99")) == [(7, b"n99 (also 7)")]
    assert all(not list(beside.waiting(2, b"n%d" % k)) for k in range(99))
    beside.drop(7)
    assert not list(beside.waiting(2, b"n99"))


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
