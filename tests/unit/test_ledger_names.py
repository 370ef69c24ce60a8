"""The ledger's ``names`` (vault/model/ledger.py): the name each of the user's own nodes was last seen
under, which a node rebuilt from a refused deletion is put back under (vault/tree/undeleting.py
``name_of``; the mounts are in tests/mount/test_trust_attack_round14.py).  In-process, with
test_ledger_writers.py's stand-in tree."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from fusevault.crypto.keys import MasterKey
from fusevault.vault.model.alarms import Alarms
from fusevault.vault.model.ledger import Ledger
from fusevault.vault.model.nodes import Node, node_doc
from fusevault.vault.tree.undeleting import name_of
from unit.test_ledger_writers import Loaded

ALICE, BOB = "a" * 32, "b" * 32


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MasterKey:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))
    return MasterKey(ALICE, b"m" * 32)


def _loaded(key: MasterKey, named: dict[str, tuple[str, bytes | None]]) -> Loaded:
    """Nodes (fid -> (owner, name: None for one with no link)) in a root of inode 1."""
    nodes = []
    for ino, (fid, (owner, name)) in enumerate(named.items(), start=2):
        node = Node(ino, fid, owner, b"k" * 32, stat.S_IFDIR | 0o700, 0, 0)
        node.links = [(1, name)] if name is not None else []
        nodes.append(node)
    return Loaded(key, nodes)


def test_a_ledger_keeps_the_last_name_of_her_own_nodes_and_reads_it_again(
        key: MasterKey, tmp_path: Path) -> None:
    """A load learns the name of each of her own nodes (not of another's shared with her), the last
    one taken (a rename); a node with no name keeps the one it had; saved and read again, any bytes."""
    ledger = Ledger.open(key, tmp_path / "vault", "vault-id")
    store = None  # check_loaded asks the store only about files seen live and not loaded: none here
    odd = b"caf\xe9 \xff"  # not UTF-8: names are bytes
    ledger.check_loaded(_loaded(key, {"proj": (ALICE, b"proj"), "odd": (ALICE, odd), "his": (BOB, b"his")}),
                        store)  # type: ignore[arg-type]
    ledger.check_loaded(_loaded(key, {"proj": (ALICE, b"work"), "odd": (ALICE, None), "his": (BOB, b"his")}),
                        store)  # type: ignore[arg-type]
    ledger.save()
    again = Ledger.open(key, tmp_path / "vault", "vault-id")
    assert again.name_seen("proj") == b"work" and again.name_seen("odd") == odd
    assert again.name_seen("his") is None and ledger.name_seen("his") is None


def test_the_name_kept_is_the_links_own_object(key: MasterKey, tmp_path: Path) -> None:
    """Memory: the ledger holds the very ``bytes`` object the node's link holds (its dict slot is all a
    node costs), also after a ledger read from disk meets the loaded tree (docs/PERFORMANCE.md)."""
    ledger = Ledger.open(key, tmp_path / "vault", "vault-id")
    loaded = _loaded(key, {"proj": (ALICE, b"proj")})
    ledger.check_loaded(loaded, None)  # type: ignore[arg-type]
    ledger.save()
    again = Ledger.open(key, tmp_path / "vault", "vault-id")
    version = again.version
    loaded = _loaded(key, {"proj": (ALICE, bytes(bytearray(b"proj")))})
    again.check_loaded(loaded, None)  # type: ignore[arg-type]
    assert again.name_seen("proj") is loaded.find("proj").links[0][1]  # type: ignore[union-attr]
    assert again.version == version, "the same name seen again is no change to save"


def test_a_ledger_from_before_has_no_names(key: MasterKey, tmp_path: Path) -> None:
    """A ledger written before ``names`` opens (not damaged) and knows no name."""
    ledger = Ledger.open(key, tmp_path / "vault", "vault-id")
    ledger.check_loaded(_loaded(key, {"proj": (ALICE, b"proj")}), None)  # type: ignore[arg-type]
    ledger.save()
    data = json.loads(key.unseal_device("ledger", ledger.path.name, ledger.path.read_bytes()))
    del data["names"]
    ledger.path.write_bytes(key.seal_device("ledger", ledger.path.name, json.dumps(data).encode()))
    before = Ledger.open(key, tmp_path / "vault", "vault-id", Alarms())  # its own: for_user is per process
    assert before.name_seen("proj") is None and not before.alarms.as_list()


@pytest.mark.parametrize("seen", [b"proj", None])
def test_a_refused_deletions_name_never_comes_before_hers_and_is_never_a_dot_name(
        key: MasterKey, seen: bytes | None) -> None:
    """``name_of``: the name the ledger saw first, before her version's path; the deleter's document's
    name (here one whose attributes do not open: none) only when no other is known, and never a dot
    name (attack round 14 (3))."""
    doc = {"_id": "f" * 32}
    assert name_of(doc, key, [], "/old/plan", seen) == (seen or b"plan")
    assert name_of(doc, key, [], None, seen) == (seen or b"recovered ffffffff")
    assert name_of(doc, key, [], "/old/.hidden", b".hidden") == b".hidden", "her own dot name is hers"


def test_a_deleters_dot_name_is_never_taken(key: MasterKey) -> None:
    """A device that knows no name of her folder (a new device, a ledger lost): a refused deletion
    naming it ".proj" in the folder it was in does not hide it (the name made from its id instead);
    one naming it "plan" is the only name known, and taken."""
    parent = Node(1, "p" * 32, ALICE, b"r" * 32, stat.S_IFDIR | 0o700, 0, 0)
    folder = Node(2, "f" * 32, ALICE, b"k" * 32, stat.S_IFDIR | 0o700, 0, 0)
    fids = {1: parent.fid}
    for said, put_back in ((b".proj", b"recovered ffffffff"), (b"plan", b"plan")):
        folder.links = [(1, said)]
        doc = node_doc(folder, key, fids.get, deleted=True)
        assert name_of(doc, key, [parent.fid], None, None) == put_back
