"""Attack round 47d (2): 46d (1)'s net ``conflict_rules.within_readers`` counts readers, not rights.

Attack: alice's file sits in folder B, shared to bob WRITE.  She moves it to folder A, shared to bob
READ only (bob keeps reading, but no longer writes it); the move re-keys it.  A state of the old key
made apart from her move (her own older device's rename in B, or a state a member's device carries)
names B.  Seen: conflict settling takes the old state's names (B) beside her re-keyed state: ``wider``
is empty, as ``Inodes.readers_under`` gives ``{"bob"}`` under A and under B alike.  Cause:
``readers_under`` returns grantee ids without their rights; ``within_readers`` compares sets.
Impact: the file goes back under the share that gives bob WRITE, which her move had just taken
(a right given back wrongly, silently: no ``concurrent-move`` alarm).  Fix (suggested): compare
grants with rights (``gives_as_much`` per grantee, as ``Guests.new_readers`` does), or return
``(grantee, perm)`` pairs from ``readers_under``.  Tests:
``test_a_name_under_a_write_share_where_the_kept_names_give_read_is_not_taken`` (strict xfail),
control ``test_control_a_name_under_a_new_reader_is_not_taken``.

47d (3): the same net passes a name in a folder not held here.  Attack: the server withholds her
folder B (shared to carol) from the device that settles the conflict (a new device's load, a folder
document held back).  Seen: ``readers_under`` gives no readers for a folder it does not hold, so
``wider`` is empty and the old key's state naming B is taken, unsaid; when B arrives, the file sits
under carol's share the re-key had kept its new key from.  Cause: "not known" is read as "nobody".
Fix (suggested): a name in a folder not held here is not taken (keep the keeper's, or judge again when
the folder arrives).  Test: ``test_a_name_in_a_folder_not_held_here_is_not_taken`` (strict xfail).
"""

from __future__ import annotations

import stat
from types import SimpleNamespace

from fusevault.vault.model.nodes import Node
from fusevault.vault.model.sharing import Grant
from fusevault.vault.services.conflict_rules import Leaf, within_readers
from fusevault.vault.tree.guests import Guests
from fusevault.vault.tree.inodes import Inodes

FID, A, B = "f" * 32, "a" * 32, "b" * 32
ALICE = "alice"


def _node(parent: str, epoch: int = 0, dek: bytes = b"o" * 32) -> Node:
    node = Node(2, FID, ALICE, dek, stat.S_IFREG | 0o644, 1000, 1000, when=1)
    node.epoch = epoch
    node.links = [(parent, b"x")]  # type: ignore[list-item]  (a document's names: folder fids)
    return node


def _leaf(node: Node, rev: str) -> Leaf:
    return Leaf({"_id": FID, "_rev": rev, "owner": ALICE}, node, list(node.links), [rev])  # type: ignore[arg-type]


def _settle(grants: list[Grant]) -> tuple[Leaf, Leaf, Leaf, list[str]]:
    root = Node(1, "r" * 32, ALICE, None, stat.S_IFDIR | 0o755, 1000, 1000, when=1)
    tree = Inodes(None, None, SimpleNamespace(user_id=ALICE), root)  # type: ignore[arg-type]
    for fid in (A, B):
        folder = Node(0, fid, ALICE, None, stat.S_IFDIR | 0o755, 1000, 1000, when=1)
        tree.add(folder)
        folder.links = [(root.ino, fid[:1].encode())]
    tree.sharing = Guests(ALICE, grants, {}, {"bob": {}, "carol": {}, ALICE: {}})
    said: list[str] = []
    alarms = SimpleNamespace(warn=lambda kind, subject, text: said.append(kind))
    volume = SimpleNamespace(find=lambda fid: None, tree=tree, trust=SimpleNamespace(alarms=alarms))
    keeper = _leaf(_node(A, 1, b"n" * 32), "4-d")  # her move to A, re-keyed
    other = _leaf(_node(B), "4-l")  # the old key's state, named in B
    return keeper, other, within_readers(volume, keeper, other), said  # type: ignore[arg-type]


def test_control_a_name_under_a_new_reader_is_not_taken() -> None:
    keeper, _, named, said = _settle([Grant(ALICE, A, "bob", False, "READ"),
                                      Grant(ALICE, B, "bob", False, "READ"),
                                      Grant(ALICE, B, "carol", False, "READ")])
    assert named is keeper and said == ["concurrent-move"]


def test_a_name_under_a_write_share_where_the_kept_names_give_read_is_not_taken() -> None:
    keeper, _, named, said = _settle([Grant(ALICE, A, "bob", False, "READ"),
                                      Grant(ALICE, B, "bob", False, "WRITE")])
    assert named is keeper, "the old key's names put it back under bob's WRITE share her move left"
    assert said == ["concurrent-move"]


def test_a_name_in_a_folder_not_held_here_is_not_taken() -> None:
    root = Node(1, "r" * 32, ALICE, None, stat.S_IFDIR | 0o755, 1000, 1000, when=1)
    tree = Inodes(None, None, SimpleNamespace(user_id=ALICE), root)  # type: ignore[arg-type]
    folder = Node(0, A, ALICE, None, stat.S_IFDIR | 0o755, 1000, 1000, when=1)
    tree.add(folder)
    folder.links = [(root.ino, b"a")]
    tree.sharing = Guests(ALICE, [Grant(ALICE, A, "bob", False, "READ")], {}, {"bob": {}, ALICE: {}})
    said: list[str] = []
    alarms = SimpleNamespace(warn=lambda kind, subject, text: said.append(kind))
    volume = SimpleNamespace(find=lambda fid: None, tree=tree, trust=SimpleNamespace(alarms=alarms))
    keeper = _leaf(_node(A, 1, b"n" * 32), "4-d")
    other = _leaf(_node(B), "4-l")  # B: her folder, not held here (withheld)
    named = within_readers(volume, keeper, other)  # type: ignore[arg-type]
    assert named is keeper, "the old key's name in a folder not held here is taken, unsaid"
