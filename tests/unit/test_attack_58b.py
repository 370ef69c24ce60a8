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

Fixed: each entry names the owner whose signature it was found under (``wrappings: fid -> (owner,
epoch, wrapping)``, saved); ``wrapping_signed(fid, owner, epoch)`` answers a state of that owner's file
only, ``saw_wrapping`` replaces an entry of another owner's whatever its epoch, ``wrapping_looked`` is
bound to the owner too, and an entry saved before (no owner) is dropped at load (looked for again).

Held (control kept): ``test_control_her_own_entry_is_carried_for_a_members_state_of_her_file``.

Still open (strict xfail): the ledger's ``epochs`` is keyed by the id alone too: bob's own file X taken
here at epoch 9, alice's signed deletion of her file at X (epoch 2, not opened here) is judged a replay
(``under_older_key``): refused, said as a rollback at each unlock, her trash not noted
(``test_58b_1_his_files_epoch_judges_her_state_at_the_id``); so is ``fids`` (the newest ``seq`` of
each device): bob's own file X signed naming her device at a high count, her later states of her file at
X from that device are older than seen, refused as replays
(``test_58b_1_his_files_seqs_judge_her_states_at_the_id``; the cause alone, not run through an unlock).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fusevault.crypto.keys import MasterKey
from fusevault.crypto.signing import sign_doc
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


def test_58b_1_his_own_files_wrapping_is_carried_for_hers_at_the_id(ledger: Ledger) -> None:
    assert _opened(ledger, "bob", "bob", 0, BOBS_OWN) == BOBS_OWN  # bob's own file X, shared with carol
    carried = _opened(ledger, "alice", "bob", 0, HIS_FOR_HER)  # alice's file at X, made by bob
    assert carried == HIS_FOR_HER and isinstance(carried, guests.MembersWrapping), carried


def test_58b_1_his_entry_at_a_higher_epoch_keeps_hers_from_being_kept(ledger: Ledger) -> None:
    _opened(ledger, "bob", "bob", 9, BOBS_OWN)
    assert _opened(ledger, "alice", "alice", 2, HERS) == HERS  # her signed state of her file at X
    carried = _opened(ledger, "alice", "bob", 2, {"en_file_dek": "Z" * 80})  # a member's state over hers
    assert carried == HERS, f"hers not kept: {carried} carried"


def test_control_her_own_entry_is_carried_for_a_members_state_of_her_file(ledger: Ledger) -> None:
    assert _opened(ledger, "alice", "alice", 2, HERS) == HERS
    assert _opened(ledger, "alice", "bob", 2, {"en_file_dek": "Z" * 80}) == HERS


def test_58b_1_another_owners_entry_is_replaced_by_hers_and_never_answers_for_her(ledger: Ledger) -> None:
    """The rule at the ledger: an entry answers for its owner's file only, and hers replaces another
    owner's whatever the epochs; his own again (his file back at the id) replaces hers."""
    ledger.saw_wrapping(X, "bob", 9, BOBS_OWN)
    assert ledger.wrapping_signed(X, "alice", 9) is None and ledger.wrapping_signed(X, "bob", 9) == BOBS_OWN
    ledger.saw_wrapping(X, "alice", 0, HERS)
    assert ledger.wrapping_signed(X, "alice", 0) == HERS and ledger.wrapping_signed(X, "bob", 9) is None
    ledger.saw_wrapping(X, "alice", 0, BOBS_OWN)  # hers at that epoch kept already: no change
    assert ledger.wrapping_signed(X, "alice", 0) == HERS


def test_58b_1_a_look_for_another_owners_file_at_the_id_is_no_look_for_hers(ledger: Ledger) -> None:
    """``wrapping_looked`` (none of hers among these versions) is bound to the owner looked for."""
    assert not ledger.wrapping_looked(X, "bob", b"d" * 32)
    assert ledger.wrapping_looked(X, "bob", b"d" * 32)
    assert not ledger.wrapping_looked(X, "alice", b"d" * 32), "looked for bob's file: not for hers"


def test_58b_1_an_entry_saved_before_the_owner_was_kept_is_dropped(ledger: Ledger, tmp_path: Path) -> None:
    """A ledger saved before this fix (``[epoch, wrapping]``): whose file the entry was found for is not
    known, so it is dropped (hers looked for again), never taken as anyone's; the rest of the ledger
    is kept."""
    ledger.saw_wrapping("f" * 32, "alice", 2, HERS)
    ledger.save()
    key = MasterKey("c" * 32, b"m" * 32)
    data = json.loads(key.unseal_device("ledger", ledger.path.name, ledger.path.read_bytes()))
    assert data["wrappings"] == {"f" * 32: ["alice", 2, HERS]}, "the owner is saved with the entry"
    data["wrappings"] = {X: [0, BOBS_OWN], "f" * 32: ["alice", 2, HERS]}
    ledger.path.write_bytes(key.seal_device("ledger", ledger.path.name, json.dumps(data).encode()))
    again = Ledger.open(key, tmp_path / "vault", "vault-id")
    assert again.device == ledger.device and again.wrappings == {"f" * 32: ("alice", 2, HERS)}
    assert _opened(again, "alice", "bob", 0, HIS_FOR_HER) == HIS_FOR_HER  # a member's, marked
    assert str(again.path) not in str(again.alarms.as_list()), "dropped unsaid: not a damaged ledger"


def _hers_at(epoch: int, delete: bool) -> dict:
    body = {"_id": X, "_rev": "3-x", "type": "node", "owner": "alice", "delete": delete, "enc": "",
            "epoch": epoch}
    return sign_doc("alice", Ed25519PrivateKey.generate(), body)


@pytest.mark.xfail(strict=True, reason="58b (1), still open: the ledger's epochs is keyed by the file id "
                                       "alone: bob's own file's epoch judges alice's state of her file there")
def test_58b_1_his_files_epoch_judges_her_state_at_the_id(ledger: Ledger) -> None:
    ledger.record(X, None, True)
    ledger.keyed(X, 9)  # bob's own file X taken on carol's device at epoch 9 (his re-key)
    assert not ledger.under_older_key(X, _hers_at(2, True)), "her deletion of her file at X judged a replay"


def test_control_her_own_older_epoch_is_a_replay(ledger: Ledger) -> None:
    ledger.record(X, None, True)
    ledger.keyed(X, 3)  # alice's file X taken at epoch 3
    assert ledger.under_older_key(X, _hers_at(2, True))


@pytest.mark.xfail(strict=True, reason="58b (1), still open: the ledger's fids (newest seq per device) is "
                                       "keyed by the file id alone: bob's own file's seqs judge hers there")
def test_58b_1_his_files_seqs_judge_her_states_at_the_id(ledger: Ledger) -> None:
    """Cause alone (not run through an unlock): bob signs his own file X naming her device (read in any
    of her states he can open) at a high count; his own, so not kept apart (``writer_seq``).  Her states
    of her file at X, later, from that device, are then older than seen: refused as replays."""
    hers = ("a" * 16, 5)  # her device, her count
    ledger.record(X, (hers[0], 10**9), True)  # bob's own state of his file X, taken here
    assert not ledger.older(X, hers), "her state of her file at X judged older than his"


def test_control_her_own_older_seq_is_a_replay(ledger: Ledger) -> None:
    ledger.record(X, ("a" * 16, 9), True)
    assert ledger.older(X, ("a" * 16, 5))
