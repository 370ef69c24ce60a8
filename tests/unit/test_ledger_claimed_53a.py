"""The ledger's claims after attack round 53a (vault/model/ledger.py): a take-back claimed unsaid and a
claim after it said (``claims_said``, saved); a claim on disk before her commit of its file whoever is
writing it (``claimed_at``, ``stamp``); a claim ended by her own removal only (``committed``).  The
scenes are in tests/inprocess/test_attack_53a.py."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from fusevault.crypto.keys import MasterKey
from fusevault.vault.model.ledger import Ledger

ALICE = "a" * 32


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MasterKey:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))
    return MasterKey(ALICE, b"m" * 32)


def _node(fid: str) -> SimpleNamespace:
    return SimpleNamespace(fid=fid, owner=ALICE, over=None, seq=None, placed=None, epoch=1, dek=b"k" * 32,
                           mode=0o40700, uid=0, gid=0, links=[])


def test_a_claim_after_a_take_back_is_said_once_and_kept_said(key: MasterKey, tmp_path: Path) -> None:
    ledger = Ledger.open(key, tmp_path / "vault", "vault-id")
    assert not ledger.claim("f", 1, said=False), "a take-back is not said"
    assert ledger.claim("f", 1), "his claim after it is"
    assert not ledger.claim("f", 1) and not ledger.claim("f", 2), "once a claim"
    ledger.save()
    again = Ledger.open(key, tmp_path / "vault", "vault-id")
    assert again.claims_said == {"f"} and not again.claim("f", 2), "said before the lock: not again"
    again.unclaim("f")
    assert again.claim("f", 2, said=False) is False and again.claim("f", 2), "a new claim is said again"


def test_her_commit_of_a_claimed_file_waits_for_the_claim_on_disk(key: MasterKey, tmp_path: Path) -> None:
    ledger = Ledger.open(key, tmp_path / "vault", "vault-id")
    ledger.save()
    ledger.claim("f", 1)
    ledger.urgent = False  # keep_saved took it and its write is under way (53a (3))
    ledger.stamp([_node("f")])
    assert Ledger.open(key, tmp_path / "vault", "vault-id").claimed == {"f": 1}


def test_only_her_own_removal_ends_a_claim(key: MasterKey, tmp_path: Path) -> None:
    ledger = Ledger.open(key, tmp_path / "vault", "vault-id")
    ledger.claim("f", 1)
    ledger.committed([_node("f")], [False])  # her commit at the claimed epoch: still his key
    assert ledger.claimed == {"f": 1}
    ledger.committed([_node("f")], [True])
    assert ledger.claimed == {} and ledger.claims_said == set()
