"""The rollback ledger and documents other users signed (vault/model/ledger.py): whose counter counts
as a device's, and who may end ``behind``.  In-process, with a stand-in for the loaded tree (the
ledger only asks it for its nodes, their places and what it holds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusevault.crypto.keys import MasterKey
from fusevault.vault.model.alarms import Alarms
from fusevault.vault.model.ledger import Ledger
from fusevault.vault.model.nodes import Node

ALICE, BOB = "a" * 32, "b" * 32


class Loaded:
    """What ``check_loaded`` reads of a tree: its nodes (with their links) and their fids."""

    def __init__(self, key: MasterKey, nodes: list[Node]) -> None:
        self.key = key
        self.layout = None
        self._nodes = {node.ino: node for node in nodes}

    def nodes(self) -> list[Node]:
        return list(self._nodes.values())

    def holds(self, fid: str | None) -> bool:
        return any(node.fid == fid for node in self._nodes.values())

    def find(self, fid: str | None) -> Node | None:
        return next((node for node in self._nodes.values() if node.fid == fid), None)

    def path_of(self, node: Node) -> bytes:
        return node.fid.encode()


def _node(ino: int, fid: str, owner: str, seq: tuple[str, int] | None, parent: int | None = None) -> Node:
    node = Node(ino, fid, owner, b"k" * 32, 0o100600, 0, 0)
    node.seq = seq
    node.links = [(parent, b"name")] if parent is not None else []
    return node


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))
    key = MasterKey(BOB, b"m" * 32)
    made = Ledger(key, tmp_path / "ledger", Alarms())
    made.device, made.counter = "bobs-device", 100
    return made


def test_the_users_own_documents_of_anothers_file_move_the_counter_after_a_crash(ledger: Ledger) -> None:
    """bob (a WRITE grantee) committed alice's shared file up to n = 105 and was killed before his ledger
    was saved (at 100).  Loaded again, his own signed document of her file must move his counter past
    105, or his next writes would carry numbers alice's device already saw (and be refused as
    rollbacks).  Failed before: a document another than its owner signed was always kept apart."""
    root = _node(1, "root", BOB, None)
    theirs = _node(2, "f1", ALICE, ("bobs-device", 105), parent=1)
    ledger.check_loaded(Loaded(ledger.key, [root, theirs]), store=None, signers={"f1": BOB})  # type: ignore[arg-type]
    assert ledger.counter == 105


def test_a_writers_newer_document_does_not_end_behind_at_unlock(ledger: Ledger) -> None:
    """bob's file f1 was loaded in an older state and kept behind in folder d; a grantee's newer document
    of it (a state never seen here) arrives before the next unlock.  Safe: still behind (as while
    mounted: ``arrived``); only the owner's own newer state ends it.  Failed before."""
    root = _node(1, "root", BOB, None)
    folder = _node(2, "d", BOB, ("bobs-device", 1), parent=1)
    mine = _node(3, "f1", BOB, ("carols-device", 7), parent=2)
    ledger.behind["f1"] = ["d"]
    ledger.check_loaded(Loaded(ledger.key, [root, folder, mine]), store=None,  # type: ignore[arg-type]
                        signers={"f1": "c" * 32})
    assert ledger.behind.get("f1") == ["d"]
