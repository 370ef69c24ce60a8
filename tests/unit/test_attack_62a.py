"""Attack round 62a (2), a very short round at 8904923 (61a (1)'s ``Owed.taken`` as a dict).

(2) high when it meets its scene (honest use, an upgrade; a revocation undone): a record of re-keys owed
written by the build before 8904923 (rounds 59c to 61: ``"taken": [share ids]``, a list, written in
every record, ``[]`` when none) no longer opens: ``rekeys_owed.owed`` raises on ``not isinstance(taken,
dict)`` (rekeys_owed.py:96-97), takes the whole record for damaged, owes nothing, and the next ``owe``
sets it aside (``.damaged``).  Attacker: none (or anyone who can make her ``unshare`` be cut short /
her laptop lock before a re-key, then wait for her upgrade).  Steps: with the build before 8904923
alice's ``unshare docs --with bob`` is cut short after the debt is recorded (58d (1)'s scene; or a
file moved out of a share and the laptop locked before its re-key, 60a (1)); she upgrades; her next
unlock.  Seen: the debts are gone (``owed`` empty, ``damaged``; one ``log.error`` line, no alarm), so
the re-key owed is never made: docs stays under the key bob kept (the revocation undone, as before
58d).  Expected: the debts of an older record still owed (FORMAT.md says of ``taken`` only "absent in
records before them"; a list from 59c-61 is no damage), e.g. each listed Share taken at the next load
as before 8904923 (its stamp unknown: "whatever body is newest here", or SAFE_INTEGER), or at the least
the debts kept with ``taken`` empty.  Cause: rekeys_owed.py:96-97 (``record.get("taken", {})`` then
``isinstance(taken, dict)`` for the whole record).  Fix: accept a list (old format) as above; the
row-by-row leniency the debts already have.
Test: ``test_a_record_written_before_taken_had_stamps_still_owes_its_debts`` (unit, the old format
sealed as the build before wrote it: ``git show 8904923^:fusevault/vault/model/rekeys_owed.py``
``_write``); control ``test_control_a_record_of_this_build_owes_its_debts``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fusevault import paths
from fusevault.crypto.keys import MasterKey
from fusevault.vault.model import rekeys_owed

ALICE = "a" * 32
FID = "f" * 32


def _old_record(root: Path, key: MasterKey, taken: list[str]) -> None:
    """The record as the build before 8904923 wrote it (``_write``: ``"taken": sorted(taken & named)``)."""
    path = paths.confirmed_file(root, key.user_id, rekeys_owed.SUFFIX)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    plain = json.dumps({"owed": [{"fid": FID, "epoch": 3, "shares": ["share-1"], "token": "t" * 32}],
                        "taken": taken}).encode()
    path.write_bytes(key.seal_device(rekeys_owed.KIND, path.name, plain))


@pytest.mark.parametrize("taken", [["share-1"], []])
def test_a_record_written_before_taken_had_stamps_still_owes_its_debts(tmp_path: Path,
                                                                       taken: list[str]) -> None:
    key = MasterKey(ALICE, b"m" * 32)
    _old_record(tmp_path / "vault", key, taken)
    owed = rekeys_owed.owed(tmp_path / "vault", key)
    assert FID in owed and not owed.damaged


def test_control_a_record_of_this_build_owes_its_debts(tmp_path: Path) -> None:
    key = MasterKey(ALICE, b"m" * 32)
    rekeys_owed.owe(tmp_path / "vault", key, [(FID, 3, ["share-1"])], {"share-1": 5})
    owed = rekeys_owed.owed(tmp_path / "vault", key)
    assert FID in owed and not owed.damaged and owed.taken == {"share-1": 5}
