"""The device copy of her groups' newest bodies (vault/model/group_copies.py) follows the bodies this
device ADMITS (a newer one her other device signed, taken at a mount: vault/model/grants.py
``verified_grants``), not only those it signs: else a replay of an older body, after she removed a member
on her laptop, has this device sign the removal over the replay, the member back in
(docs/SECURITY.md, group member add/remove over a replayed older group)."""

from __future__ import annotations

from pathlib import Path

from fusevault.crypto.keys import MasterKey
from fusevault.vault.model import freshness
from fusevault.vault.model.alarms import Alarms
from fusevault.vault.model.freshness import Freshness, stamp

ALICE, BOB, CAROL = "a" * 32, "b" * 32, "c" * 32
TEAM = "e" * 32


def _device(tmp_path: Path, name: str) -> Freshness:
    return Freshness(MasterKey(ALICE, b"\1" * 32), tmp_path / name, Alarms())


def test_a_body_of_her_group_admitted_here_is_the_copy_member_changes_build_on(tmp_path: Path) -> None:
    laptop, desktop = _device(tmp_path, "laptop"), _device(tmp_path, "desktop")
    both = stamp(laptop, {"_id": TEAM, "type": "Group", "owner": ALICE, "groupname": "team",
                          "users": {ALICE: "READ,WRITE", BOB: "READ", CAROL: "READ"}})
    assert desktop.admit(both, "group")
    carol_out = stamp(laptop, {**both, "users": {ALICE: "READ,WRITE", BOB: "READ"}})  # on her laptop
    assert desktop.admit(carol_out, "group")  # taken by the desktop's mount
    desktop.save()
    opened = _device(tmp_path, "desktop")  # a later `group member` command on the desktop
    opened._read()
    opened._take_copies(freshness.GroupCopies.open(opened.key, opened.copies.path))
    assert opened.copy_of(TEAM) == carol_out, "the body admitted here is not the device's copy"
    assert not desktop.admit(both, "group"), "the replay is still refused"
