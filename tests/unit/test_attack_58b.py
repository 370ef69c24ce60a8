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

Then (strict xfails, flipped): the ledger's ``epochs`` is keyed by the id alone too: bob's own file X
taken here at epoch 9, alice's signed deletion of her file at X (epoch 2, not opened here) was judged a
replay (``under_older_key``): refused, said as a rollback at each unlock, her trash not noted
(``test_58b_1_his_files_epoch_judges_her_state_at_the_id``); so was ``fids`` (the newest ``seq`` of
each device): bob's own file X signed naming her device at a high count, her later states of her file at
X from that device were older than seen, refused as replays
(``test_58b_1_his_files_seqs_judge_her_states_at_the_id``).

Fixed: a file's key is wrapped bound to (owner, fid) and no commit gives a node another owner, so two
owners at one id are never honest.  The ledger binds each id to the owner it first took a state of it
under (``owners``, saved; the user's own: ``mine``), and a document naming another owner at a known id
is refused as such, said once (``owner_refused``: at arrivals ``admit`` and arrivals.py
``owner_changed``, at loads loading.py and ``check_loaded``), never judged by the records of the file
first seen there (``under_older_key`` asks it too), never changing them.  A ledger saved before learns
the binding from the next state taken at each id
(``test_58b_1_the_owner_first_seen_is_kept_in_the_sealed_ledger``,
``test_58b_1_a_live_file_at_a_known_id_naming_another_owner_at_load``; control
``test_control_the_first_owners_own_older_state_is_still_a_replay``).
"""

from __future__ import annotations

import json
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fusevault.crypto.keys import MasterKey
from fusevault.crypto.signing import sign_doc
from fusevault.errors import Forged
from fusevault.vault.model.alarms import Alarms
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
    return Ledger.open(MasterKey("c" * 32, b"m" * 32), tmp_path / "vault", "vault-id", Alarms())  # its own


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


def _state(owner: str, signer: str, epoch: int, delete: bool = False, rev: str = "3-x") -> dict:
    body = {"_id": X, "_rev": rev, "type": "node", "owner": owner, "delete": delete, "enc": "",
            "epoch": epoch}
    return sign_doc(signer, Ed25519PrivateKey.generate(), body)


NOWHERE = SimpleNamespace(find=lambda fid: None)  # the tree (``Held``): holds nothing at X


def _taken(ledger: Ledger, owner: str, epoch: int, seq: tuple[str, int] | None, rev: str = "2-b") -> bool:
    """A state of ``owner``'s file X, signed by her and opened here, offered to the ledger (an arrival)."""
    fresh = SimpleNamespace(fid=X, owner=owner, epoch=epoch, seq=seq, over=None, mode=stat.S_IFREG | 0o644)
    return ledger.admit(NOWHERE, _state(owner, owner, epoch, rev=rev), fresh)  # type: ignore[arg-type]


def _said(ledger: Ledger, kind: str) -> list[dict]:
    return [each for each in ledger.alarms.as_list() if each["kind"] == kind and each["subject"] == X]


def test_58b_1_his_files_epoch_judges_her_state_at_the_id(ledger: Ledger) -> None:
    """Bob's own file X taken on carol's device at epoch 9 (his re-key); then alice's signed deletion of
    her file at X (bob's new file in her folder; epoch 2, not opened here).  Judged by his epoch it was
    a replay, said as a rollback at each unlock, her trash not noted.  Now: the id is bob's as first seen
    here, so her document is no state of that file: refused as another owner's, said once, and none of
    his records judge it (nor does it change them)."""
    assert _taken(ledger, "bob", 9, None)
    assert ledger.epochs[X] == 9 and ledger.owner_seen(X) == "bob"
    hers = _hers_at(2, True)
    assert not ledger.under_older_key(X, hers), "her deletion of her file at X judged a replay by his epoch"
    assert not ledger.admit(NOWHERE, hers, None)  # type: ignore[arg-type]
    assert not ledger.admit(NOWHERE, hers, None)  # type: ignore[arg-type]
    assert not _said(ledger, "rollback"), ledger.alarms.as_list()
    assert [each["count"] for each in _said(ledger, "owner-changed")] == [2], "said once (then counted)"
    assert X not in ledger.owner_trashed and ledger.epochs[X] == 9 and ledger.owner_seen(X) == "bob"


def test_control_her_own_older_epoch_is_a_replay(ledger: Ledger) -> None:
    ledger.record(X, None, True)
    ledger.keyed(X, 3)  # alice's file X taken at epoch 3
    assert ledger.under_older_key(X, _hers_at(2, True))


def test_58b_1_his_files_seqs_judge_her_states_at_the_id(ledger: Ledger) -> None:
    """Bob signs his own file X naming her device (read in any of her states he can open) at a high
    count; his own, so not kept apart (``writer_seq``), taken here.  Her later state of her file at X
    from that device was then older than seen: refused as a replay.  Now refused as another owner's at
    the id (said once), never judged by his counts, which it leaves as they were."""
    hers = ("a" * 16, 5)  # her device, her count
    assert _taken(ledger, "bob", 0, (hers[0], 10**9))  # bob's own state of his file X, taken here
    seen = dict(ledger.fids[X][1])
    assert not _taken(ledger, "alice", 0, hers, rev="3-c")
    assert not _said(ledger, "rollback") and _said(ledger, "owner-changed"), ledger.alarms.as_list()
    assert ledger.fids[X][1] == seen and ledger.owner_seen(X) == "bob"


def test_control_the_first_owners_own_older_state_is_still_a_replay(ledger: Ledger) -> None:
    """The binding takes nothing from the rollback ledger: bob's own older state of his file at X,
    put back, is a replay (said), and his newer one is taken."""
    assert _taken(ledger, "bob", 0, ("b" * 16, 9))
    assert not _taken(ledger, "bob", 0, ("b" * 16, 5), rev="1-old")
    assert _said(ledger, "rollback") and not _said(ledger, "owner-changed")
    assert _taken(ledger, "bob", 0, ("b" * 16, 10), rev="3-new")


def test_58b_1_the_owner_first_seen_is_kept_in_the_sealed_ledger(ledger: Ledger, tmp_path: Path) -> None:
    """The binding is saved (sealed with the rest), and judges at the next unlock; a ledger saved before
    it (no ``owners``) learns it from the next state taken at each id; a malformed entry is dropped
    (learnt again), never a damaged ledger."""
    key = MasterKey("c" * 32, b"m" * 32)
    assert _taken(ledger, "bob", 0, ("b" * 16, 9))
    ledger.save()
    data = json.loads(key.unseal_device("ledger", ledger.path.name, ledger.path.read_bytes()))
    assert data["owners"] == {X: "bob"}
    again = Ledger.open(key, tmp_path / "vault", "vault-id", Alarms())
    assert not _taken(again, "alice", 0, ("a" * 16, 5), rev="3-c"), "her state at his id, after an unlock"
    for before in ({}, {X: 7}, {X: ""}):
        data["owners"] = before
        if not before:
            del data["owners"]
        ledger.path.write_bytes(key.seal_device("ledger", ledger.path.name, json.dumps(data).encode()))
        old = Ledger.open(key, tmp_path / "vault", "vault-id", Alarms())
        assert old.device == ledger.device and old.owners == {} and X in old.fids
        assert str(old.path) not in str(old.alarms.as_list()), "not a damaged ledger"
        assert _taken(old, "bob", 0, ("b" * 16, 10), rev="3-new") and old.owner_seen(X) == "bob"


def test_58b_1_a_live_file_at_a_known_id_naming_another_owner_at_load(ledger: Ledger) -> None:
    """At an unlock, bob's live file X (seen here) is gone from the tree, the store serving alice's
    deletion of her file at X: said once as another owner's, kept as not live (never "vanished"),
    never a rollback nor her trash, his records kept."""
    assert _taken(ledger, "bob", 9, ("b" * 16, 3))
    hers = _hers_at(2, True)
    volume = SimpleNamespace(find=lambda fid: None, holds=lambda fid: False, nodes=lambda: [],
                             key=SimpleNamespace(user_id="c" * 32), layout=SimpleNamespace(vault_id="v"))
    store = SimpleNamespace(get=lambda fid: hers if fid == X else None)
    ledger.check_loaded(volume, store)  # type: ignore[arg-type]
    ledger.check_loaded(volume, store)  # type: ignore[arg-type]
    assert not _said(ledger, "rollback") and not _said(ledger, "vanished"), ledger.alarms.as_list()
    assert [each["count"] for each in _said(ledger, "owner-changed")] == [1]
    assert not ledger.seen_live(X) and X not in ledger.owner_trashed and ledger.epochs[X] == 9


def test_control_her_own_older_seq_is_a_replay(ledger: Ledger) -> None:
    ledger.record(X, ("a" * 16, 9), True)
    assert ledger.older(X, ("a" * 16, 5))
