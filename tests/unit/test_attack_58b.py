"""Attack round 58b, unit: the cause of 58b (1) alone (tests/inprocess/test_attack_58b.py runs it through
carol's and alice's unlocks and gives the steps, impact and a suggested fix).

Hole (1), medium: vault/model/ledger.py ``wrappings`` holds one entry per file id, whoever owned the
file then (``wrapping_signed(fid, epoch)``, ``saw_wrapping``), and guests.py ``carried_wrapping``
answers it first for a member's state of any owner's file at that id.  Bob's own file X, opened on
carol's device (his state signed by its owner, bob: ``_remember`` keeps his ``en_file_dek``), then
alice's file at the same id X (bob's new file in her folder: his ``owner_dek`` sealed to her, signed by
him): carol carries bob's own wrapping of his old key for alice's file
(``test_58b_1_his_own_files_wrapping_is_carried_for_hers_at_the_id``).  Kept at a higher epoch (bob
re-keys his own file, or an unshare did), the entry instead stops alice's own wrapping from being kept
at her lower epoch at all (``saw_wrapping`` keeps only a newer epoch), so round 56b's memory never
holds hers for that file and 56b (3) is open again there
(``test_58b_1_his_entry_at_a_higher_epoch_keeps_hers_from_being_kept``).
Fix (suggested): the owner in each entry, ``wrapping_signed`` asked for ``fresh.owner``; an entry of
another owner replaced by hers whatever its epoch.

Held (control kept): ``test_control_her_own_entry_is_carried_for_a_members_state_of_her_file``.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from fusevault.crypto.keys import MasterKey
from fusevault.errors import Forged
from fusevault.vault.model.ledger import Ledger
from fusevault.vault.tree import guests

X = "e" * 32
BOBS_OWN = {"en_file_dek": "B" * 80}  # bob's wrapping of his own file's key (his master key)
HIS_FOR_HER = {"owner_dek": "S" * 120}  # a member's new file: its key sealed to alice
HERS = {"en_file_dek": "A" * 80}


class Trust:
    """A signature holds when the document says ``good``."""

    def verify(self, doc: dict, author: str | None = None) -> str:
        if doc["sig"]["ed25519"] != "good":
            raise Forged("fails")
        return doc["sig"]["by"]

    def verified_before(self, doc: dict, signer: str) -> bool:
        return False


class Store:
    def by_file(self, kind: str, fid: str) -> list[dict]:
        return []  # none of alice's versions served (or readable): as in 56b (3)'s scene

    def get(self, doc_id: str) -> dict | None:
        return None


def _opened(ledger: Ledger, owner: str, signer: str, epoch: int, wrapping: dict) -> dict:
    state = {"_id": X, "_rev": "1-a", "type": "node", "owner": owner, "epoch": epoch, **wrapping,
             "sig": {"by": signer, "ed25519": "good"}}
    fresh = SimpleNamespace(fid=X, owner=owner, epoch=epoch, head=None, wrapped=None)
    return guests.carried_wrapping(state, fresh, Trust(), Store(), None, ledger)  # type: ignore[arg-type]


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))
    return Ledger.open(MasterKey("c" * 32, b"m" * 32), tmp_path / "vault", "vault-id")


@pytest.mark.xfail(strict=True, reason="58b (1): a wrapping kept for bob's own file at an id is carried for "
                                       "alice's file at that id")
def test_58b_1_his_own_files_wrapping_is_carried_for_hers_at_the_id(ledger: Ledger) -> None:
    assert _opened(ledger, "bob", "bob", 0, BOBS_OWN) == BOBS_OWN  # bob's own file X, shared with carol
    carried = _opened(ledger, "alice", "bob", 0, HIS_FOR_HER)  # alice's file at X, made by bob
    assert carried == HIS_FOR_HER and isinstance(carried, guests.MembersWrapping), carried


@pytest.mark.xfail(strict=True, reason="58b (1): an entry of bob's own file at a higher epoch keeps alice's "
                                       "wrapping of her file at that id from being kept")
def test_58b_1_his_entry_at_a_higher_epoch_keeps_hers_from_being_kept(ledger: Ledger) -> None:
    _opened(ledger, "bob", "bob", 9, BOBS_OWN)
    assert _opened(ledger, "alice", "alice", 2, HERS) == HERS  # her signed state of her file at X
    carried = _opened(ledger, "alice", "bob", 2, {"en_file_dek": "Z" * 80})  # a member's state over hers
    assert carried == HERS, f"hers not kept: {carried} carried"


def test_control_her_own_entry_is_carried_for_a_members_state_of_her_file(ledger: Ledger) -> None:
    assert _opened(ledger, "alice", "alice", 2, HERS) == HERS
    assert _opened(ledger, "alice", "bob", 2, {"en_file_dek": "Z" * 80}) == HERS
