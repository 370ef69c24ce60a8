"""Attack round 40a: the fixes of round 39 (c0b5a7a..d366947), attacked by variants.

Work in progress.
"""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest
import trio
from conftest import PASSPHRASE, fusevault
from inprocess.conftest import ALICE_UID, BOB, BOB_UID, ROOT, _composed
from inprocess.test_two_users import ALICE, _write

from fusevault.vault.model import sharing
from fusevault.vault.services import rotation

CAROL_SECRET = "carol's own passphrase"
HOLE_1 = ("hole 1: a genuine key file of hers copied to a group's key folder (a group its recipient is "
          "not in) is taken for a member's removal: any writer of the vault folder, or the server, "
          "re-keys her files (a shared folder: everything under it) at will")


def _admin(vault: Path, *args: str, secret: str = PASSPHRASE) -> None:
    done = fusevault(*args, env={"FUSEVAULT_VAULT": str(vault), "FUSEVAULT_NEW_PASSPHRASE": secret},
                     passphrase=PASSPHRASE)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def with_team(tmp_path: Path) -> Path:
    """alice's vault with bob and carol, and alice's group @team (carol in it, bob not)."""
    path = tmp_path / "vault"
    assert fusevault("init", path, "--user", "alice").returncode == 0
    _admin(path, "user", "add", "bob", "--uid", str(BOB_UID), secret=BOB)
    _admin(path, "user", "add", "carol", "--uid", "2204", secret=CAROL_SECRET)
    _admin(path, "group", "add", "team", "--owner", "alice")
    _admin(path, "group", "member", "add", "team", "carol", "--perm", "READ")
    return path


async def _ask(shared, cmd: str, path: str, who: str, perm: str = "READ") -> dict:
    requests = shared.drive.seat_of(ALICE_UID).ops.session.requests
    return await requests.handle({"cmd": cmd, "path": path, "with": who, "perm": perm})


@pytest.mark.parametrize("planted", [
    None,  # the control: her keys, where her share put them, cost no re-key
    pytest.param("file", marks=pytest.mark.xfail(strict=True, reason=HOLE_1)),
    pytest.param("folder", marks=pytest.mark.xfail(strict=True, reason=HOLE_1)),
])
def test_her_genuine_key_copied_into_a_groups_key_folder_costs_no_re_key(with_team: Path,
                                                                          planted: str | None) -> None:
    """alice shares docs with bob (READ); @team (carol) has nothing of hers.  A writer of the vault
    folder copies bob's key file of docs/notes.txt (or of docs itself), genuine and of the current
    epoch, to groups/<team>/own/<fid>/keys/<bob>.vfkey.  Nothing was revoked: her look-over of keys no
    share reaches (stale_keys.py, at every unlock and at every key, share, group or user arriving) must
    not re-key anything for it."""
    seats = {"alice": (PASSPHRASE, ALICE_UID), "bob": (BOB, BOB_UID)}
    with _composed(with_team, seats) as shared:
        async def attack() -> None:
            drive = shared.drive
            docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
            await _write(drive, docs.st_ino, b"notes.txt", b"hers", ALICE)
            assert "error" not in await _ask(shared, "share", "docs", "bob")
            volume = drive.seat_of(ALICE_UID).ops.session.volume
            folder, notes = volume.resolve(b"docs"), volume.resolve(b"docs/notes.txt")
            await rotation._rekey_unreached(volume)
            before = {n.fid: (n.epoch, n.dek) for n in (folder, notes)}
            (grant,) = [g for g in volume.sharing.grants if g.fid == folder.fid]
            (team,) = [gid for gid, g in volume.sharing.groups.items() if g.get("groupname") == "team"]
            if planted is not None:
                node = notes if planted == "file" else folder
                genuine = sharing.key_path(volume.layout, grant, grant.grantee, node.fid)
                copy = sharing.group_key_path(volume.layout, team, node.fid, grant.grantee)
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(genuine, copy)  # a vault-folder writer's (the server: a FileKey at its id)
            await rotation._rekey_unreached(volume)
            after = {n.fid: (n.epoch, n.dek) for n in (folder, notes)}
            assert after == before, f"re-keyed for a planted copy of a genuine key: {before} -> {after}"

        trio.run(attack)
