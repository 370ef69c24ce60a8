"""The alarms a caller gives are the ones warned, also while still empty: an empty ``Alarms`` is falsy
(``__len__``), and ``alarms or for_user(...)`` took the process-wide list instead, so a view's
alarms (or a test's) missed what was refused (vault/model/ledger.py, vault/model/confirmed.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusevault.crypto.keys import MasterKey
from fusevault.vault.model import confirmed
from fusevault.vault.model.alarms import Alarms, for_user
from fusevault.vault.model.ledger import Ledger

USER = "c" * 32  # no other test warns for this user


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))


def test_a_ledger_warns_the_alarms_it_was_given(tmp_path: Path) -> None:
    key, given = MasterKey(USER, b"m" * 32), Alarms()
    ledger = Ledger.open(key, tmp_path / "vault", "vault-id", given)
    assert ledger.alarms is given
    ledger.save()
    ledger.path.write_bytes(b"damaged")
    Ledger.open(key, tmp_path / "vault", "vault-id", given)
    assert "ledger" in given and "ledger" not in for_user(USER)


def test_confirmed_settings_warn_the_alarms_they_were_given(tmp_path: Path) -> None:
    key, given = MasterKey(USER, b"m" * 32), Alarms()
    path, _ = confirmed._file(tmp_path / "vault", USER)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"damaged")
    assert confirmed.read(tmp_path / "vault", key, given) is None
    assert "confirmed-settings" in given and "confirmed-settings" not in for_user(USER)
