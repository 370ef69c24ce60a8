"""Round 46d (1) (tests/unit/test_attack_46d.py): her move out of a share back to the folder her placement
stamp names, beside her later rename in the share.  Two layers: a commit that changes the file's
folders from those of the state it was made over signs a new stamp (vault/tree/inodes.py
``_place_stamps``), and, whatever the stamps say, names of a state of another key that would widen who
reads the file are not taken, said (vault/services/conflict_rules.py ``within_readers``, who reads by
``Inodes.readers_under``)."""

from __future__ import annotations

import stat
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fusevault.vault.model.nodes import Node
from fusevault.vault.model.sharing import Grant
from fusevault.vault.services.conflict_rules import Leaf, within_readers
from fusevault.vault.tree.guests import Guests
from fusevault.vault.tree.inodes import Inodes

FID, A, B = "f" * 32, "a" * 32, "b" * 32
ALICE, DESKTOP = "alice", "d" * 16


def _node(parent: str, epoch: int = 0, dek: bytes = b"o" * 32) -> Node:
    node = Node(2, FID, ALICE, dek, stat.S_IFREG | 0o644, 1000, 1000, when=1)
    node.epoch = epoch
    node.links = [(parent, b"x")]  # type: ignore[list-item]  (a document's names: folder fids)
    return node


def _leaf(node: Node, rev: str) -> Leaf:
    return Leaf({"_id": FID, "_rev": rev, "owner": ALICE}, node, list(node.links), [rev])  # type: ignore[arg-type]


def _stamped(placed: dict, was_at: list[str] | None, parents: list[str]) -> dict | None:
    """The stamp ``_place_stamps`` leaves on her node committed in ``parents`` at desktop 7, its stamp
    ``placed``, the state it was made over here in ``was_at``."""
    node = _node(parents[0])
    node.placed, node.seq = dict(placed), (DESKTOP, 7)
    tree = SimpleNamespace(
        key=SimpleNamespace(identity=SimpleNamespace(sign=Ed25519PrivateKey.generate()), user_id=ALICE),
        ledger=SimpleNamespace(behind={}, was_at=lambda fid: was_at, seen_live=lambda fid: True),
        layout=SimpleNamespace(vault_id="v" * 32), is_deleted=lambda node: False)
    Inodes._place_stamps(tree, [node], [parents])  # type: ignore[arg-type]
    return node.placed


def test_a_move_back_to_the_folder_her_stamp_names_signs_a_stamp_of_its_commit() -> None:
    placed = {"parents": [A], "seq": [DESKTOP, 3], "sig": "s"}
    moved_back = _stamped(placed, [B], [A])  # a member had moved it to B; she moves it back to A
    assert moved_back is not None and moved_back["parents"] == [A] and moved_back["seq"] == [DESKTOP, 7]
    assert _stamped(placed, [A], [A]) == placed  # kept where it was (a re-key in place): the stamp it had
    assert _stamped(placed, None, [A]) == placed  # where it was not known here: no move told by it


def _volume(readers: dict[str, set[str]], said: list[str]) -> SimpleNamespace:
    alarms = SimpleNamespace(warn=lambda kind, subject, text: said.append(kind))
    def readers_under(node: Node, links: list, known: list | None = None) -> list[Grant]:
        return [Grant(ALICE, p, who, False, "READ") for p, _ in links for who in sorted(readers[p])]
    tree = SimpleNamespace(readers_under=readers_under)
    return SimpleNamespace(find=lambda fid: None, tree=tree, trust=SimpleNamespace(alarms=alarms))


@pytest.mark.parametrize("wider", [True, False], ids=["into-a-share", "no-wider"])
def test_names_of_another_key_that_widen_who_reads_are_not_taken(wider: bool) -> None:
    """The keeper re-keyed in A (read by nobody else); the other state, of the old key, names B."""
    said: list[str] = []
    volume = _volume({A: set(), B: {"bob", "group:team"} if wider else set()}, said)
    keeper, other = _leaf(_node(A, 1, b"n" * 32), "4-d"), _leaf(_node(B), "4-l")
    named = within_readers(volume, keeper, other)  # type: ignore[arg-type]
    assert named is (keeper if wider else other)
    assert said == (["concurrent-move"] if wider else [])


def test_names_of_the_same_key_are_taken_as_decided() -> None:
    """One key on both sides: no re-key to undo (a share she made since is hers to have made)."""
    said: list[str] = []
    volume = _volume({A: set(), B: {"bob"}}, said)
    keeper, other = _leaf(_node(A), "4-d"), _leaf(_node(B), "4-l")
    assert within_readers(volume, keeper, other) is other and not said  # type: ignore[arg-type]


def test_readers_under_names_count_every_grantee_and_recipient_above_them() -> None:
    """``Inodes.readers_under``: the shares above a document's names (folder fids), a group and each
    of its members, from the folder's own grants up; the owner herself is no other reader."""
    root = Node(1, "r" * 32, ALICE, None, stat.S_IFDIR | 0o755, 1000, 1000, when=1)
    tree = Inodes(None, None, SimpleNamespace(user_id=ALICE), root)  # type: ignore[arg-type]
    folders = {}
    for fid in (A, B):
        folder = Node(0, fid, ALICE, None, stat.S_IFDIR | 0o755, 1000, 1000, when=1)
        tree.add(folder)
        folder.links = [(root.ino, fid[:1].encode())]
        folders[fid] = folder
    grants = [Grant(ALICE, "r" * 32, "dave", False, "READ"), Grant(ALICE, B, "team", True, "WRITE")]
    tree.sharing = Guests(ALICE, grants, {"team": {"users": {"carol": "WRITE", ALICE: "WRITE"}}},
                          {"carol": {}, ALICE: {}})
    node = _node(A)
    def readers(links: list) -> set[str] | None:
        found = tree.readers_under(node, links, [(A, b"x")])
        return None if found is None else {f"group:{g.grantee}" if g.group else g.grantee for g in found}
    assert readers([(A, b"x")]) == {"dave"}
    assert readers([(B, b"x")]) == {"dave", "group:team", "carol"}
    assert readers([("n" * 32, b"x")]) is None  # a folder not held here: not known (round 47d (3))
    team = [(g.grantee, g.perm) for g in tree.readers_under(node, [(B, b"x")]) or () if g.fid == B]
    assert team == [("team", "WRITE"), ("carol", "WRITE")]  # with their rights (round 47d (2))
