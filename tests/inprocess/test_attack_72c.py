"""Attack round 72c (4), in-process: a WRITE member pushes her file's record past its bounds.

(4) high (with 71d's server: a revocation undone on her other device).
  Attacker: bob, a WRITE member of her folder team, then removed; and the server of 71d (1) that serves
  her desktop his old Share again.
  Steps: while a member, bob makes folders in team (hers: a node made in her folder is owned by its
  owner, vault/tree/namespace.py:107) and hard-links her plan.txt into each (``link`` allows it: same
  owner, and the name gives the file to nobody new, ``_may_add_name``).  With 4,096 folders over the
  file, her re-key at his removal finds ``_above`` (vault/files/rekeying.py) 4,097 entries, past
  ``sealed_for.MAX_TO``: ``record`` returns None, and the node keeps no record.  Her desktop, served the
  old Share, then seals the new key to bob "as before" (``fill_missing`` with no record: the 71d (1)
  hole, which tests/unit/test_attack_72c.py ``[new_file]`` also shows for a node without a record).
  Seen (run here with a lowered bound, ``MAX_TO`` patched to 8, so the test stays quick: the same
  code path): after her unshare of bob, plan.txt's re-key (epoch 1) carries ``sealed_for`` None.
  Expected: a record whatever the number of folders over the file (or a record that says "too many":
  nothing extended on another device), so the bound is no member's lever.
  Cause: vault/model/sealed_for.py ``record`` (None past MAX_TO for ``above``, by design "sealed as
  before"), vault/files/rekeying.py ``_above`` (counts every folder over every name, capped at 4,096
  folders, so 4,097 entries reach past MAX_TO = 4,096).
  Fix: past the bounds, write a record that names the recipients only and marks ``above`` as
  incomplete (a share on any folder then counts as left out unless named), or bound hard links of a
  member's making; MAX_TO above the walk's cap at the least.

Control kept: ``[few]`` (bob's links under the bound: the record is written, bob left out of ``to``).
Not run: 4,096 real folders (each a commit: about 8,000 operations; the bound patched instead), nor
the desktop half end to end (its logic is 71d (1)'s test and the unit ``fill_missing`` test).
"""

from __future__ import annotations

import stat

import pytest

from fusevault.vault.model import sealed_for
from inprocess.conftest import ROOT
from inprocess.test_two_users import ALICE, BOB, _share, _unshare, _walk, _write


@pytest.mark.parametrize("past", [
    pytest.param(False, id="few"),
    pytest.param(True, id="past_bound", marks=pytest.mark.xfail(strict=True, reason=(
        "72c (4): a WRITE member's hard links of her file past MAX_TO leave her re-key with no "
        "sealed_for: her other device seals a replayed grant as before"))),
])
async def test_72c_4_bobs_links_leave_her_rekey_without_a_record(shared, monkeypatch, past: bool) -> None:
    monkeypatch.setattr(sealed_for, "MAX_TO", 8)
    drive, alice = shared.drive, shared.volumes["alice"]
    folder = await drive.mkdir(ROOT, b"team", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, folder.st_ino, b"plan.txt", b"v1", ALICE)
    await _share(shared, "team", "WRITE")
    team = await _walk(drive, b"shared/alice/team", BOB)
    plan = await drive.lookup(team.st_ino, b"plan.txt", BOB)
    for n in range(9 if past else 2):  # entries: the file, her root, team and n folders
        sub = await drive.mkdir(team.st_ino, b"d%d" % n, stat.S_IFDIR | 0o755, BOB)
        await drive.link(plan.st_ino, sub.st_ino, b"plan.txt", BOB)
    await _unshare(shared, "team")
    node = alice.resolve(b"team/plan.txt")
    assert node.epoch >= 1  # her re-key at his removal ran
    record = sealed_for.in_force(node.sealed_for, node.epoch)
    assert record is not None
    assert not any(":" + shared.volumes["bob"].key.user_id + ":" in r for r in record["to"])
