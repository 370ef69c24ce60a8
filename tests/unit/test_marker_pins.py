"""vault/format/marker_pins.py: a vault.json that names another vault id or store than this device
saw at that folder is refused before anything is opened (rounds 26c hole 1, 26d hole 1)."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from fusevault.errors import CorruptData
from fusevault.vault.format import layout as layouts
from fusevault.vault.format import marker_pins


def _rewrite(root: Path, **fields: object) -> None:
    marker = json.loads((root / "vault.json").read_text())
    marker.update(fields)
    (root / "vault.json").write_text(json.dumps(marker))


def test_init_remembers_and_a_reopen_is_accepted(tmp_path) -> None:
    made = layouts.create(tmp_path / "v", {"kind": "local"})
    assert layouts.open_layout(tmp_path / "v").vault_id == made.vault_id
    assert json.loads(marker_pins.record_path(tmp_path / "v").read_text()) == \
        {"vault_id": made.vault_id, "store": {"kind": "local"}}


@pytest.mark.parametrize("change", [
    {"vault_id": uuid.uuid4().hex},
    {"store": {"kind": "couchdb", "url": "http://127.0.0.1:9/his"}},
])
def test_another_id_or_store_is_refused_in_one_line(tmp_path, change) -> None:
    layouts.create(tmp_path / "v", {"kind": "local"})
    _rewrite(tmp_path / "v", **change)
    with pytest.raises(CorruptData, match="not followed") as refused:
        layouts.open_layout(tmp_path / "v")
    message = str(refused.value)
    assert "\n" not in message and str(marker_pins.record_path(tmp_path / "v")) in message


def test_a_forged_value_is_shown_defused(tmp_path) -> None:
    layouts.create(tmp_path / "v", {"kind": "local"})
    _rewrite(tmp_path / "v", store={"kind": "couchdb", "url": "http://x/\nfusevault: all is well"})
    with pytest.raises(CorruptData) as refused:
        layouts.open_layout(tmp_path / "v")
    assert "\n" not in str(refused.value)


def test_a_first_open_remembers_what_it_found(tmp_path) -> None:
    made = layouts.create(tmp_path / "v", {"kind": "local"})
    marker_pins.record_path(tmp_path / "v").unlink()  # a device that never opened it
    layouts.open_layout(tmp_path / "v")
    _rewrite(tmp_path / "v", vault_id=uuid.uuid4().hex)
    with pytest.raises(CorruptData):
        layouts.open_layout(tmp_path / "v")
    assert made.vault_id in marker_pins.record_path(tmp_path / "v").read_text()


def test_another_vault_made_at_the_path_by_init_is_accepted(tmp_path) -> None:
    layouts.create(tmp_path / "v", {"kind": "local"})
    shutil.rmtree(tmp_path / "v")
    again = layouts.create(tmp_path / "v", {"kind": "local"})
    assert layouts.open_layout(tmp_path / "v").vault_id == again.vault_id


def test_a_damaged_record_is_refused_not_overwritten(tmp_path) -> None:
    layouts.create(tmp_path / "v", {"kind": "local"})
    record = marker_pins.record_path(tmp_path / "v")
    record.write_text("{not json")
    with pytest.raises(CorruptData, match="damaged: remove it"):
        layouts.open_layout(tmp_path / "v")
    assert record.read_text() == "{not json"
