"""A member's removal from a group she shares with re-keys her file from the group owner's signed body,
whether or not his Rotation request reaches her (attack round 22a (3)), once; a group withheld or a
member added asks for no new key.

vault/services/share_ops.py ``_rekey_for_removals``, vault/model/rotations_done.py ``sealed_members``."""

from __future__ import annotations

from pathlib import Path

import adversary
from conftest import mounted

from mount.test_trust_attack_round4 import _alice_dek
from mount.test_trust_attack_round19 import _crew_sharing_her_plan
from mount.test_trust_writes import BOB, _admin


def test_a_removal_without_its_request_rekeys_her_file_once(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    fid = _crew_sharing_her_plan(vault, mnt)
    dek = _alice_dek(vault, fid)
    _admin(vault, "group", "member", "remove", "crew", "carol", passphrase=BOB)  # genuine, signed by bob
    (request,) = adversary.docs(vault, "Rotation")
    adversary.delete_row(vault, request["_id"])  # withheld
    with mounted(vault, mnt):
        pass
    rekeyed = _alice_dek(vault, fid)
    assert rekeyed != dek
    with mounted(vault, mnt):  # carried out once: the next unlock finds nothing to do
        pass
    assert _alice_dek(vault, fid) == rekeyed


def test_a_group_withheld_is_no_removal(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    fid = _crew_sharing_her_plan(vault, mnt)
    dek = _alice_dek(vault, fid)
    (group,) = adversary.docs(vault, "Group")
    adversary.delete_row(vault, group["_id"])  # the server withholds the group's body: no one is out of it
    with mounted(vault, mnt):
        pass
    assert _alice_dek(vault, fid) == dek
    adversary.put(vault, group)  # back, carol still in it
    with mounted(vault, mnt):
        pass
    assert _alice_dek(vault, fid) == dek


def test_a_member_added_asks_for_no_new_key(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    fid = _crew_sharing_her_plan(vault, mnt)
    _admin(vault, "user", "add", "dave", "--uid", "2003", passphrase="dave's passphrase")
    _admin(vault, "group", "member", "add", "crew", "dave", "--perm", "READ", passphrase=BOB)
    dek = _alice_dek(vault, fid)
    with mounted(vault, mnt):
        pass
    assert _alice_dek(vault, fid) == dek
