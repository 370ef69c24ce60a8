"""The ledger's ``kinds`` (vault/model/ledger.py): the type each of the user's own nodes was first seen
with, which the unlock holds a node to (vault/tree/loading.py ``_typed_as_seen``; the mounts are in
tests/mount/test_trust_attack_round11.py).  In-process, with test_ledger_writers.py's stand-in tree."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from fusevault.crypto.keys import MasterKey
from fusevault.vault.model.alarms import Alarms
from fusevault.vault.model.ledger import Ledger
from fusevault.vault.model.nodes import Node
from unit.test_ledger_writers import Loaded

ALICE, BOB = "a" * 32, "b" * 32


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MasterKey:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))
    return MasterKey(ALICE, b"m" * 32)


def _loaded(key: MasterKey, modes: dict[str, tuple[str, int]]) -> Loaded:
    return Loaded(key, [Node(ino, fid, owner, b"k" * 32, mode, 0, 0)
                        for ino, (fid, (owner, mode)) in enumerate(modes.items(), start=2)])


def test_a_ledger_learns_the_type_of_her_own_nodes_at_first_sight_only_and_keeps_it(
        key: MasterKey, tmp_path: Path) -> None:
    """A load learns the type of each of her own nodes (not of another's shared with her); a later load
    where a document says another type does not change what was learnt; it is saved and read again."""
    ledger = Ledger.open(key, tmp_path / "vault", "vault-id")
    store = None  # check_loaded asks the store only about files seen live and not loaded: none here
    file, folder = stat.S_IFREG | 0o600, stat.S_IFDIR | 0o700
    ledger.check_loaded(_loaded(key, {"plan": (ALICE, file), "team": (ALICE, folder), "his": (BOB, file)}),
                        store)  # type: ignore[arg-type]
    ledger.check_loaded(_loaded(key, {"plan": (ALICE, folder), "team": (ALICE, file), "his": (BOB, file)}),
                        store)  # type: ignore[arg-type]
    ledger.save()
    data = json.loads(key.unseal_device("ledger", ledger.path.name, ledger.path.read_bytes()))
    assert data["kinds"] == {"plan": stat.S_IFREG >> 12, "team": stat.S_IFDIR >> 12}
    ledger = Ledger.open(key, tmp_path / "vault", "vault-id")
    assert ledger.kind_seen("plan") == stat.S_IFREG and ledger.kind_seen("team") == stat.S_IFDIR
    assert ledger.kind_seen("his") is None


def test_a_ledger_from_before_has_no_types(key: MasterKey, tmp_path: Path) -> None:
    """A ledger written before ``kinds`` existed opens, and knows no type: each node is taken as its
    document says (today's behaviour), until this load's types are learnt."""
    ledger = Ledger.open(key, tmp_path / "vault", "vault-id")
    ledger.record("plan", ("dev", 1), True)
    ledger.save()
    data = json.loads(key.unseal_device("ledger", ledger.path.name, ledger.path.read_bytes()))
    del data["kinds"]
    ledger.path.write_bytes(key.seal_device("ledger", ledger.path.name, json.dumps(data).encode()))
    before = Ledger.open(key, tmp_path / "vault", "vault-id", Alarms())  # its own: for_user is per process
    assert before.fids.keys() == {"plan"} and before.kind_seen("plan") is None
    assert not before.alarms.as_list(), "a ledger from before is not damaged"


def test_a_ledger_keeps_the_last_mode_and_ids_of_her_own_nodes_and_reads_them_again(
        key: MasterKey, tmp_path: Path) -> None:
    """``modes``: the permission bits and owner ids of the last state of each of her own nodes a load
    took (not another's shared with her), saved and read again; a ledger from before has none."""
    ledger = Ledger.open(key, tmp_path / "vault", "vault-id")
    store = None
    his = (BOB, stat.S_IFREG | 0o644)
    for mode in (0o600, 0o640):
        ledger.check_loaded(_loaded(key, {"plan": (ALICE, stat.S_IFREG | mode), "his": his}),
                            store)  # type: ignore[arg-type]
    ledger.save()
    assert Ledger.open(key, tmp_path / "vault", "vault-id").mode_seen("plan") == (0o640, 0, 0)
    assert ledger.mode_seen("his") is None
    data = json.loads(key.unseal_device("ledger", ledger.path.name, ledger.path.read_bytes()))
    del data["modes"]
    ledger.path.write_bytes(key.seal_device("ledger", ledger.path.name, json.dumps(data).encode()))
    assert Ledger.open(key, tmp_path / "vault", "vault-id").mode_seen("plan") is None
