"""The ledger's ``owner_trashed`` (vault/model/ledger.py ``trashed_by_owner``): on a grantee's device,
another user's file her own signed state put in the trash is hers alone to bring back
(vault/tree/authorship.py ``_back_from_owners_trash``; the mount is
tests/mount/test_trust_attack_round24a.py, hole 3).  In-process: the ledger alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fusevault.crypto.keys import MasterKey
from fusevault.crypto.signing import sign_doc
from fusevault.vault.model.ledger import Ledger

CAROL, ALICE, BOB = "c" * 32, "a" * 32, "b" * 32


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MasterKey:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))
    return MasterKey(CAROL, b"m" * 32)


def _state(signer: str, owner: str, delete: bool) -> dict:
    body = {"_id": "notes", "_rev": "1-x", "type": "node", "owner": owner, "delete": delete, "enc": ""}
    return sign_doc(signer, Ed25519PrivateKey.generate(), body)


def test_her_own_deletion_of_her_file_is_hers_alone_to_undo(key: MasterKey, tmp_path: Path) -> None:
    """Alice's signed trashing of her file, taken in on carol's device: noted (saved, read again); her
    signed live state ends it.  A writer's deletion notes nothing; carol's own files are not noted."""
    ledger = Ledger.open(key, tmp_path / "vault", "vault-id")
    assert ledger.admit(None, _state(BOB, ALICE, True), None)  # type: ignore[arg-type]
    assert not ledger.trashed_by_owner("notes")
    ledger.admit(None, _state(ALICE, ALICE, True), None)  # type: ignore[arg-type]
    assert ledger.trashed_by_owner("notes")
    ledger.save()
    again = Ledger.open(key, tmp_path / "vault", "vault-id")
    assert again.trashed_by_owner("notes")
    again.admit(None, _state(BOB, ALICE, False), None)  # type: ignore[arg-type]  # (refused before: judged)
    assert again.trashed_by_owner("notes")
    again.admit(None, _state(ALICE, ALICE, False), None)  # type: ignore[arg-type]  # her restore
    assert not again.trashed_by_owner("notes")
    again.admit(None, _state(CAROL, CAROL, True), None)  # type: ignore[arg-type]
    assert not again.trashed_by_owner("notes")


class _Empty:
    """A tree holding none of the files (the ledger only asks where one shows)."""

    def find(self, fid: str | None) -> None:
        return None


def _at_epoch(signer: str, owner: str, delete: bool, epoch: int) -> dict:
    body = {"_id": "notes", "_rev": "2-x", "type": "node", "owner": owner, "delete": delete, "enc": "",
            "epoch": epoch}
    return sign_doc(signer, Ed25519PrivateKey.generate(), body)


def test_her_state_under_an_older_key_than_one_taken_here_is_a_replay(key: MasterKey, tmp_path: Path) -> None:
    """Carol's device took alice's file at key epoch 2 (her restore re-keys it): her deletion signed at
    epoch 1, which does not open here, is older: refused, said (rollback), her trash not noted, and
    saved so (attack round 25a (1), (2)).  One at the epoch taken, a writer's, or carol's own is not
    judged so."""
    ledger = Ledger.open(key, tmp_path / "vault", "vault-id")
    ledger.record("notes", None, True)
    ledger.keyed("notes", 2)
    ledger.save()
    again = Ledger.open(key, tmp_path / "vault", "vault-id")
    assert not again.admit(_Empty(), _at_epoch(ALICE, ALICE, True, 1), None)  # type: ignore[arg-type]
    assert "rollback" in again.alarms and not again.trashed_by_owner("notes") and again.seen_live("notes")
    assert not again.under_older_key("notes", _at_epoch(BOB, ALICE, True, 1))
    assert not again.under_older_key("notes", _at_epoch(CAROL, CAROL, True, 1))
    assert again.admit(_Empty(), _at_epoch(ALICE, ALICE, True, 2), None)  # type: ignore[arg-type]
    assert again.trashed_by_owner("notes")
