"""Round 26c holes 1, 2, 4: the ledger and the record of grants are named by the vault folder's real
path and the user id (vault/model/renamed.py), one kept under an older fusevault's vault_id name is
moved once, and vault.json's vault_id is taken only as fusevault makes it (vault/format/layout.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fusevault import paths
from fusevault.crypto.keys import MasterKey
from fusevault.errors import CorruptData
from fusevault.vault.format import layout
from fusevault.vault.model import renamed
from fusevault.vault.model.alarms import Alarms
from fusevault.vault.model.ledger import Ledger, ledger_path

ALICE, VAULT_ID = "a" * 32, "c" * 32


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MasterKey:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))
    return MasterKey(ALICE, b"m" * 32)


def test_an_old_named_ledger_is_moved_to_its_new_name_and_keeps_what_it_saw(
        key: MasterKey, tmp_path: Path) -> None:
    root = tmp_path / "vault"
    root.mkdir()
    old = renamed.legacy_path("ledger", root, VAULT_ID, ALICE)
    assert old is not None
    old.parent.mkdir(parents=True)
    data = {"format": 1, "device": "d" * 16, "counter": 7, "fids": {}}
    old.write_bytes(key.seal_device("ledger", old.name, json.dumps(data).encode()))
    ledger = Ledger.open(key, root, VAULT_ID, Alarms())
    assert ledger.path == ledger_path(root, ALICE)
    assert ledger.path == paths.state_dir() / "ledger" / paths.record_name(root, ALICE)
    assert (ledger.device, ledger.counter, old.exists(), ledger.path.exists()) == ("d" * 16, 7, False, True)
    # Another vault_id later (vault.json rewritten): the same ledger, never a fresh one.
    assert Ledger.open(key, root, "e" * 32, Alarms()).counter == 7


def test_no_old_name_is_made_of_an_id_fusevault_never_makes(tmp_path: Path) -> None:
    assert renamed.legacy_path("ledger", tmp_path, "../../x/made/y", ALICE) is None


@pytest.mark.parametrize("vault_id", ["../../x/made/y", "c" * 32 + "\nfusevault: WARNING", "C" * 32, 7, None])
def test_vault_json_with_an_id_fusevault_never_makes_is_refused_as_damaged(tmp_path: Path, vault_id) -> None:
    made = layout.create(tmp_path / "v", {"kind": "local"})
    marker = json.loads((made.root / "vault.json").read_text())
    marker["vault_id"] = vault_id
    (made.root / "vault.json").write_text(json.dumps(marker))
    with pytest.raises(CorruptData, match="is damaged: its vault id") as err:
        layout.open_layout(made.root)
    assert "\n" not in str(err.value)
    assert layout.open_layout(layout.create(tmp_path / "w", {"kind": "local"}).root).vault_id
