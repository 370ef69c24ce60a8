"""The ledger's ``claimed`` and ``keys`` (vault/model/ledger.py; attack round 51b (1) to (3)): her files
whose node holds a key a member claimed, until her re-key; a keyed digest of her own key at the newest
epoch seen.  Both saved; a ledger from before them reads none.  The scenes are in
tests/inprocess/test_attack_51b.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fusevault.crypto.keys import MasterKey
from fusevault.vault.model.ledger import Ledger

ALICE = "a" * 32
HERS, OLDER, NEWER = b"h" * 32, b"o" * 32, b"n" * 32


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MasterKey:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))
    return MasterKey(ALICE, b"m" * 32)


def test_her_key_and_a_claim_are_kept_across_a_lock(key: MasterKey, tmp_path: Path) -> None:
    ledger = Ledger.open(key, tmp_path / "vault", "vault-id")
    ledger.keyed("f", 2)
    ledger.saw_key("f", 2, HERS)
    assert ledger.claim("f", 2) and not ledger.claim("f", 2), "new once"
    ledger.saw_key("f", 2, OLDER)  # her node holds his key at her epoch: not hers
    ledger.save()
    again = Ledger.open(key, tmp_path / "vault", "vault-id")
    assert again.claimed == {"f": 2}
    assert again.key_known("f", 2, HERS) is True and again.key_known("f", 2, OLDER) is False
    assert again.key_known("f", 3, HERS) is None and again.key_known("g", 2, HERS) is None
    data = json.loads(key.unseal_device("ledger", again.path.name, again.path.read_bytes()))
    assert HERS.hex() not in json.dumps(data) and "hhhh" not in json.dumps(data), "a digest, not the key"


def test_her_key_above_the_claimed_epoch_ends_the_claim(key: MasterKey, tmp_path: Path) -> None:
    ledger = Ledger.open(key, tmp_path / "vault", "vault-id")
    ledger.keyed("f", 2)
    ledger.claim("f", 2)
    ledger.keyed("f", 3)
    ledger.saw_key("f", 3, NEWER)  # her re-key committed
    assert "f" not in ledger.claimed and ledger.key_known("f", 3, NEWER)


def test_a_key_at_an_epoch_below_the_newest_seen_is_not_kept(key: MasterKey, tmp_path: Path) -> None:
    ledger = Ledger.open(key, tmp_path / "vault", "vault-id")
    ledger.keyed("f", 3)
    ledger.saw_key("f", 2, HERS)
    ledger.saw_key("g", 0, HERS)  # her first key: no older key of hers to claim
    assert ledger.keys == {}


def test_a_ledger_from_before_has_no_claims_nor_keys(key: MasterKey, tmp_path: Path) -> None:
    ledger = Ledger.open(key, tmp_path / "vault", "vault-id")
    ledger.keyed("f", 2)
    ledger.saw_key("f", 2, HERS)
    ledger.claim("g", 1)
    ledger.save()
    data = json.loads(key.unseal_device("ledger", ledger.path.name, ledger.path.read_bytes()))
    del data["claimed"], data["keys"]
    ledger.path.write_bytes(key.seal_device("ledger", ledger.path.name, json.dumps(data).encode()))
    again = Ledger.open(key, tmp_path / "vault", "vault-id")
    assert again.claimed == {} and again.key_known("f", 2, HERS) is None and again.epochs == {"f": 2}
