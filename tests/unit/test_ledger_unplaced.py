"""The ledger's ``unplaced`` (vault/model/ledger.py ``trashed_elsewhere``/``left_from``): a file of hers
whose deletion came from another device of hers has no known place here, so its history is hers alone
to write (vault/tree/authorship.py ``writes_where_it_left``; the mounts are in
tests/mount/test_trust_attack_round22.py, hole 2).  In-process, with test_ledger_writers.py's stand-in
tree."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from fusevault.crypto.keys import MasterKey
from fusevault.vault.model.ledger import Ledger
from fusevault.vault.model.nodes import Node, node_doc
from unit.test_ledger_writers import Loaded

ALICE = "a" * 32


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MasterKey:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))
    return MasterKey(ALICE, b"m" * 32)


def _file(key: MasterKey, seq: tuple[str, int], linked: bool) -> Node:
    node = Node(3, "notes", ALICE, b"k" * 32, stat.S_IFREG | 0o600, 0, 0)
    node.seq, node.links = seq, [(2, b"notes.txt")] if linked else []
    return node


def _docs_folder() -> Node:
    return Node(2, "docs", ALICE, b"k" * 32, stat.S_IFDIR | 0o700, 0, 0)


class _Store:
    """The store as the load reads it: one document per file."""

    def __init__(self, docs: dict[str, dict]) -> None:
        self.docs = docs

    def get(self, fid: str) -> dict | None:
        return self.docs.get(fid)


def test_her_deletion_from_another_device_leaves_no_known_place(key: MasterKey, tmp_path: Path) -> None:
    """Seen in docs, then her state with no name from another device taken in: no place (kept, saved and
    read again), ``was_at`` unchanged; one of this device's own changes nothing; placed again, known."""
    ledger = Ledger.open(key, tmp_path / "vault", "vault-id")
    ledger.arrived("notes", ["docs"], True)
    ledger.trashed_elsewhere("notes", (ledger.device, 7))  # this device's own deletion: it knows where
    assert ledger.left_from("notes") == ["docs"]
    ledger.trashed_elsewhere("notes", ("laptop", 9))
    assert ledger.left_from("notes") is None and ledger.was_at("notes") == ["docs"]
    ledger.save()
    again = Ledger.open(key, tmp_path / "vault", "vault-id")
    assert again.left_from("notes") is None
    again.arrived("notes", ["private"], True)  # restored (there or here): its place is known again
    assert again.left_from("notes") == ["private"]


def test_a_writers_document_placing_her_file_leaves_its_place_unknown(key: MasterKey, tmp_path: Path) -> None:
    """Her deletion from another device taken in: a writer's document placing the file again (refused by
    ``may_write``; not hers in any case) makes no place known; only a state she signed does (round 23a 3)."""
    ledger = Ledger.open(key, tmp_path / "vault", "vault-id")
    ledger.arrived("notes", ["docs"], True)
    ledger.trashed_elsewhere("notes", ("laptop", 9))
    ledger.arrived("notes", ["docs"], False)
    assert ledger.place_unknown("notes") and ledger.left_from("notes") is None
    ledger.arrived("notes", ["private"], True)
    assert not ledger.place_unknown("notes") and ledger.left_from("notes") == ["private"]


def test_her_deletion_met_first_at_a_load_leaves_no_known_place(key: MasterKey, tmp_path: Path) -> None:
    """The desktop saw notes in docs; at its next load the store holds her trashed state from the
    laptop (newer than seen): no known place.  The same state loaded again changes nothing more."""
    ledger = Ledger.open(key, tmp_path / "vault", "vault-id")
    docs = _docs_folder()
    ledger.check_loaded(Loaded(key, [docs, _file(key, ("laptop", 1), True)]), None)  # type: ignore[arg-type]
    assert ledger.left_from("notes") == ["docs"]
    trashed = _file(key, ("laptop", 3), False)
    trashed.rev = "3-x"
    store = _Store({"notes": node_doc(trashed, key, lambda ino: "docs", deleted=True)})
    ledger.check_loaded(Loaded(key, [docs]), store)  # type: ignore[arg-type]
    assert ledger.left_from("notes") is None and not ledger.seen_live("notes")
