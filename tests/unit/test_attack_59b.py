"""Attack round 59b, unit: round 58b's binding of each id to its owner (vault/model/ledger.py
``owners``, ``mine``, ``saw_owner``, ``owner_refused``), the user's OWN files.

Hole (2), medium: a file of hers made on her other device and taken here by an arrival is never bound
  to her: ``Ledger.admit`` calls ``saw_owner(fid, fresh.owner)``, which skips the user's own ("bound by
  ``_own``"), but ``admit`` never calls ``_own`` (only ``committed`` and ``check_loaded`` do).  So until
  this device commits the file or loads it at an unlock, ``owner_seen(X)`` is None: a state of another
  owner's file at X is no "owner-changed" to the ledger; taken, it binds X to him, and her own file is
  refused on her own device from then on.
  Attacker: bob, a user of the vault who replicates (a peer, or the CouchDB server): every id is in the
    database; he chooses the id of a file of his own and shares it with her.
  Steps: alice's laptop makes notes.txt (id X); her desktop's seat takes it by an arrival (``admit``:
    her seq recorded in ``fids``, X not in ``mine`` nor ``owners``); the desktop locks (ledger saved).
    The server puts a bare tombstone over her X; bob makes his own file at X and shares it with her.
    Her desktop unlocks: loading.py ``_read`` asks ``owner_refused(X, bob)`` (X not in ``mine``:
    False), opens bob's document as his share, ``check_loaded`` binds X to bob.  Her laptop's next
    state of notes.txt (or hers served again) is refused there: ``owner-changed``, "saw as bob's".
  Seen (``test_59b_2_her_own_file_taken_by_an_arrival_is_bound_to_her``): after ``admit`` of her own
    state and a save/reopen, ``owner_seen(X)`` is None and ``owner_refused(X, "bob")`` False; bob's
    state at X is taken (``admit`` True) and binds X to bob; her own next state from her laptop is
    refused (``owner-changed``).  Expected, as for a file this device committed (control
    ``test_control_59b_2_her_own_file_committed_here_refuses_his``): bob's refused, hers taken.
  Cause: vault/model/ledger.py ``admit`` (~817-820: ``saw_owner`` only; no ``_own`` for the user's
    own), ``saw_owner`` (~760: ``owner != self.key.user_id``), ``owner_seen`` (``mine`` or ``owners``).
  Impact: 58b (1)'s refusal turned on the user: her own file (every file she makes on another device,
    until this device commits it or unlocks with it stored) refused for good on this device, her later
    edits never shown there, said as if hers were the intruder; the open list's limit names only "her
    own new file on a device that took first a file of his", not one that took hers first.
  Through a real seat and unlock: tests/inprocess/test_attack_59b.py
    ``::test_59b_2_her_own_file_from_her_laptop_is_bound_to_her_on_the_desktop`` (seen and control
    there too).  Hole (1) there has the same shape for another owner's file reached by a new share.
  Fix (suggested): in ``admit``, ``self._own(fid)`` when ``fresh.owner == self.key.user_id`` (as
    ``committed`` and ``check_loaded`` do), or have ``saw_owner`` record the user's own in ``mine``.

Fixed: ``saw_owner`` binds the user's own into ``mine`` (first owner wins), the one binding every way
  a state is taken calls; the arrival binds her laptop's file to her, bob's state at X is refused
  after the lock and said, hers taken.  A bare tombstone binds nothing (control).
"""

from __future__ import annotations

import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fusevault.crypto.keys import MasterKey
from fusevault.crypto.signing import sign_doc
from fusevault.vault.model.alarms import Alarms
from fusevault.vault.model.ledger import Ledger

X = "e" * 32
ME = "c" * 32  # the ledger's user (alice)
KEY = MasterKey(ME, b"m" * 32)
LAPTOP = "d" * 16  # her other device
NOWHERE = SimpleNamespace(find=lambda fid: None)  # the tree (``Held``): holds nothing at X


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))
    return Ledger.open(KEY, tmp_path / "vault", "vault-id", Alarms())


def _state(owner: str, rev: str) -> dict:
    body = {"_id": X, "_rev": rev, "type": "node", "owner": owner, "delete": False, "enc": "", "epoch": 0}
    return sign_doc(owner, Ed25519PrivateKey.generate(), body)


def _fresh(owner: str, seq: tuple[str, int]) -> SimpleNamespace:
    return SimpleNamespace(fid=X, owner=owner, epoch=0, seq=seq, over=None, mode=stat.S_IFREG | 0o644,
                           uid=1000, gid=1000, dek=b"k" * 32, links=[("f" * 32, b"notes.txt")])


def _taken(ledger: Ledger, owner: str, seq: tuple[str, int], rev: str) -> bool:
    """A state of ``owner``'s file X, signed by its owner and opened here, offered as an arrival."""
    return ledger.admit(NOWHERE, _state(owner, rev), _fresh(owner, seq))  # type: ignore[arg-type]


def _locked(ledger: Ledger, tmp_path: Path) -> Ledger:
    ledger.save()
    return Ledger.open(KEY, tmp_path / "vault", "vault-id", Alarms())


def _said(ledger: Ledger, kind: str) -> list[dict]:
    return [each for each in ledger.alarms.as_list() if each["kind"] == kind and each["subject"] == X]


def _after_bobs(ledger: Ledger) -> dict:
    return {"bob's refused": not _taken(ledger, "bob", ("b" * 16, 1), "5-bob"),
            "bound": ledger.owner_seen(X),
            "her next taken": _taken(ledger, ME, (LAPTOP, 4), "7-hers"),
            "said": [each["kind"] for each in ledger.alarms.as_list() if each["subject"] == X]}


def test_59b_2_her_own_file_taken_by_an_arrival_is_bound_to_her(ledger: Ledger, tmp_path: Path) -> None:
    assert _taken(ledger, ME, (LAPTOP, 3), "3-hers")  # her laptop's notes.txt, arrived here
    assert X in ledger.mine and ledger.owner_seen(X) == ME  # bound by the arrival itself
    again = _locked(ledger, tmp_path)  # the desktop locks
    assert again.owner_seen(X) == ME and again.owner_refused(X, "bob", say=False)
    seen = _after_bobs(again)
    assert seen["bob's refused"] and seen["bound"] == ME and seen["her next taken"], seen
    assert seen["said"] == ["owner-changed"], seen  # bob's, said; hers never


def test_control_59b_2_a_bare_tombstone_binds_nothing(ledger: Ledger, tmp_path: Path) -> None:
    assert ledger.admit(NOWHERE, {"_id": X, "_rev": "2-gone", "_deleted": True}, None)  # type: ignore[arg-type]
    assert ledger.owner_seen(X) is None and _locked(ledger, tmp_path).owner_seen(X) is None


def test_control_59b_2_her_own_file_committed_here_refuses_his(ledger: Ledger, tmp_path: Path) -> None:
    node = _fresh(ME, (ledger.device, 1))
    ledger.committed([node], [False])  # type: ignore[list-item]
    again = _locked(ledger, tmp_path)
    assert again.owner_seen(X) == ME
    seen = _after_bobs(again)
    assert seen["bob's refused"] and seen["bound"] == ME and seen["her next taken"], seen
