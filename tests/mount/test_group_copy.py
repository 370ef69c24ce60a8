"""Issue 22, attack round 13 (2): a member who writes the vault folder puts back an older signed body of
alice's group (himself in it).  Her `group member add/remove` build on the newest body her device admitted
or signed, kept on the device sealed (vault/model/group_copies.py), not on the store's replay; a copy
that does not open (or is older than what the device saw) is refused in one line; every state a kill -9
leaves the copy in still lets the command run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import adversary
import pytest
from attack_scenes import PEOPLE, add_team, add_users, alices_files, group_doc
from conftest import fusevault, mounted

from fusevault.crypto.identity import open_file_key
from fusevault.errors import CorruptData, Replayed, VaultError
from fusevault.vault.model import freshness, sharing, users
from mount.test_shared_mount import SECRETS, People, linux, people, place, python, shared_vault  # noqa: F401
from mount.test_shared_mount import pytestmark as SHARED_ONLY
from mount.test_trust_attack_round11 import bob_reads_proj_through_team, removed_bob_loses_proj
from mount.test_trust_grants import _fid
from mount.test_trust_writes import PASSPHRASE, _admin, _user


def _group(vault: Path, *args: str):
    """``fusevault group ARGS`` as alice (the owner of team), as the real command."""
    return fusevault("group", *args, env={"FUSEVAULT_VAULT": str(vault)}, passphrase=PASSPHRASE)


def _members(vault: Path) -> dict[str, str]:
    """team's members in the store, by name."""
    names = {_user(vault, n)["_id"]: n for n in ("alice", "bob", "carol")}
    return {names[u]: p for u, p in group_doc(vault, "team")["users"].items()}


def _state(vault: Path, kind: str) -> Path:
    """alice's device-state file of ``vault`` of ``kind`` (``groups``: the copies; ``grants``: the record of
    grants seen)."""
    record = freshness.state_path(vault, _user(vault, "alice")["_id"])
    return freshness.copies_path(record) if kind == "groups" else record


def _opens(vault: Path, name: str, fid: str, group_id: str) -> bool:
    """Whether ``name``'s key of alice's file ``fid`` through the group is of the file's current epoch."""
    person = users.unlock(_user(vault, name), PEOPLE[name][1].encode())
    path = vault / "groups" / group_id / "own" / fid / "keys" / f"{person.user_id}.vfkey"
    try:
        found = sharing.read_key(path)
        return found is not None and found[0] == adversary.get(vault, fid)["epoch"] and bool(
            open_file_key(person.identity, _user(vault, "alice")["_id"], fid, found[0], found[1]))
    except (VaultError, OSError):
        return False


def test_a_removal_over_a_replay_is_signed_without_him_and_read_so_by_every_reader(
        vault: Path, tmp_path: Path) -> None:
    """team has bob, then carol; alice shares proj with @team.  bob puts back the older team (bob alone).
    alice removes bob.  Safe: the command succeeds; `group list` shows alice and carol; at her next
    mount the body is taken (no replay): after a write carol holds the file's new key, bob does not."""
    add_users(vault, "bob", "carol")
    add_team(vault, "bob")
    older = group_doc(vault, "team")
    _admin(vault, "group", "member", "add", "team", "carol", "--perm", "READ")
    mnt = tmp_path / "mnt"
    alices_files(vault, mnt, {"proj": None, "proj/plan.txt": "step one"}, [("proj", "@team", "READ")])
    adversary.put(vault, older)
    result = _group(vault, "member", "remove", "team", "bob")
    print(result.returncode, result.stderr[-1000:])
    assert result.returncode == 0, f"alice cannot remove bob from her group: {result.stderr[-300:]}"
    assert _members(vault) == {"alice": "READ,WRITE", "carol": "READ"}
    (listed,) = json.loads(_group(vault, "list", "--json").stdout)
    assert listed["members"] == {"alice": "READ,WRITE", "carol": "READ"}
    with mounted(vault, mnt):
        (mnt / "proj" / "plan.txt").write_text("step two, after bob left")
    fid = _fid(vault, "proj/plan.txt")
    assert adversary.get(vault, fid)["epoch"] > 0
    assert _opens(vault, "carol", fid, older["_id"]), "her mount did not take the body she signed"
    assert not _opens(vault, "bob", fid, older["_id"]), "bob, removed, holds the new key"


@SHARED_ONLY
def test_a_removal_over_a_replay_takes_the_group_from_him_in_the_shared_mount(
        people: People, shared_vault: Path) -> None:  # noqa: F811
    """root's shared mount, alice and bob unlocked: alice shares proj with @team, bob reads it; carol is
    added.  bob puts back the team from before carol; alice removes bob.  Safe: the removal runs, and bob,
    unlocked, loses the group's folder (the shared mount takes the body she signed over her copy)."""
    bob_reads_proj_through_team(people)
    older = group_doc(shared_vault, "team")
    _admin(shared_vault, "group", "member", "add", "team", "carol", "--perm", "READ",
           passphrase=SECRETS["alice"])
    adversary.put(shared_vault, older)
    removed_bob_loses_proj(people, shared_vault)  # the removal must run (exit 0), then bob loses proj


@pytest.mark.parametrize("change", ["add", "remove"])
def test_a_member_change_over_a_replay_never_brings_back_one_removed_on_this_device(
        vault: Path, change: str) -> None:
    """team has bob and carol; alice removes carol.  bob puts back the body with both.  alice then gives
    bob WRITE (``add``) or removes him (``remove``).  Safe: the command succeeds, and carol, removed on
    this device, is not in what she signs (it builds on her device's copy, not on the replay)."""
    add_users(vault, "bob", "carol")
    add_team(vault, "bob", "carol")
    older = group_doc(vault, "team")
    _admin(vault, "group", "member", "remove", "team", "carol")
    adversary.put(vault, older)
    if change == "add":
        result = _group(vault, "member", "add", "team", "bob", "--perm", "READ,WRITE")
        expected = {"alice": "READ,WRITE", "bob": "READ,WRITE"}
    else:
        result = _group(vault, "member", "remove", "team", "bob")
        expected = {"alice": "READ,WRITE"}
    print(result.returncode, result.stderr[-1000:])
    assert result.returncode == 0, result.stderr[-300:]
    assert _members(vault) == expected


def _damage(path: Path, how: str, older: bytes) -> None:
    if how == "tampered":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 1
        path.write_bytes(bytes(data))
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:40])
    elif how == "another-users":  # her own bytes, in a file another local user made
        os.chown(path, int(PEOPLE["bob"][0]), int(PEOPLE["bob"][0]))
    elif how == "symlink":
        target = path.with_name("elsewhere")
        path.rename(target)
        path.symlink_to(target)
    else:  # "older": her own sealed copy from before carol was added, put back
        path.write_bytes(older)


@pytest.mark.parametrize("how", ["tampered", "truncated", "another-users", "symlink", "older"])
def test_a_device_copy_that_does_not_hold_is_refused_in_one_line(vault: Path, how: str) -> None:
    """team has bob, then carol (alice's device keeps a copy).  The copy is damaged (``how``).  alice
    removes bob.  Safe: refused, one line naming the copy, no traceback, nothing signed; once she removes
    the file the command runs."""
    add_users(vault, "bob", "carol")
    add_team(vault, "bob")
    older = _state(vault, "groups").read_bytes()
    _admin(vault, "group", "member", "add", "team", "carol", "--perm", "READ")
    before = group_doc(vault, "team")
    copy = _state(vault, "groups")
    _damage(copy, how, older)
    result = _group(vault, "member", "remove", "team", "bob")
    print(result.returncode, result.stderr)
    assert result.returncode == CorruptData.exit_code, result.stderr[-300:]
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "copy" in result.stderr and str(copy) in result.stderr
    assert group_doc(vault, "team") == before, "signed over a copy that does not hold"
    copy.unlink()
    assert _group(vault, "member", "remove", "team", "bob").returncode == 0
    assert _members(vault) == {"alice": "READ,WRITE", "carol": "READ"}


@pytest.mark.parametrize("state", ["temp-files-left", "record-behind-copy"])
def test_every_kill_9_state_of_the_device_copy_lets_the_command_run(vault: Path, state: str) -> None:
    """team has bob, then carol.  Her device is left as a kill -9 leaves it: temp files of both writes
    half-written (``temp-files-left``), or killed between the copy's rename and the record's
    (``record-behind-copy``: the record of grants seen from before carol).  bob puts back the team
    without carol; alice removes bob.  Safe: the command runs and builds on the newest body (carol in)."""
    add_users(vault, "bob", "carol")
    add_team(vault, "bob")
    older = group_doc(vault, "team")
    record = _state(vault, "grants")
    record_then = record.read_bytes()
    _admin(vault, "group", "member", "add", "team", "carol", "--perm", "READ")
    if state == "record-behind-copy":
        record.write_bytes(record_then)
    else:
        for path in (_state(vault, "groups"), record):
            path.with_name(f".{path.name}.tmp99999.1").write_bytes(path.read_bytes()[:30])
    adversary.put(vault, older)
    result = _group(vault, "member", "remove", "team", "bob")
    print(result.returncode, result.stderr[-1000:])
    assert result.returncode == 0, result.stderr[-300:]
    assert _members(vault) == {"alice": "READ,WRITE", "carol": "READ"}


@pytest.mark.parametrize("change", ["add", "remove"])
def test_with_no_copy_on_the_device_a_removal_over_a_replay_still_runs_and_an_addition_is_refused(
        vault: Path, change: str) -> None:
    """team has bob, then carol; her device's copy is gone (a device from before copies; the record of
    bodies seen is kept).  bob puts back the team without carol.  Safe: removing bob still runs (over the
    replay, bob out, an alarm saying members a newer body removed may be back); adding is refused in one
    line (exit 32) and nothing is signed."""
    add_users(vault, "bob", "carol")
    add_team(vault, "bob")
    older = group_doc(vault, "team")
    _admin(vault, "group", "member", "add", "team", "carol", "--perm", "READ")
    _state(vault, "groups").unlink(missing_ok=True)  # (before copies there was none)
    adversary.put(vault, older)
    replayed = group_doc(vault, "team")
    if change == "remove":
        result = _group(vault, "member", "remove", "team", "bob")
        print(result.returncode, result.stderr[-1000:])
        assert result.returncode == 0, result.stderr[-300:]
        assert _members(vault) == {"alice": "READ,WRITE"}
        assert "members a newer body had removed are in it again" in result.stderr
    else:
        result = _group(vault, "member", "add", "team", "bob", "--perm", "READ,WRITE")
        print(result.returncode, result.stderr[-1000:])
        assert result.returncode == Replayed.exit_code and "Traceback" not in result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("fusevault: group team in the store is older"), result.stderr
        assert group_doc(vault, "team") == replayed


def test_a_group_signed_apart_on_two_devices_can_be_changed_and_keeps_no_one_either_removed(
        vault: Path, tmp_path: Path) -> None:
    """team has bob and carol.  Her laptop (its own state) removes carol; the server then serves her desktop
    the body before (the laptop's withheld), and the desktop removes bob: two bodies signed apart.  The
    desktop is then served the laptop's body (bob in, carol out) and she gives alice's team carol back.
    Safe: the command runs (it is not blocked by the two bodies), bob, removed on the desktop, is not in
    what she signs, and the laptop, which saw the other body, takes it (removes carol on it again)."""
    add_users(vault, "bob", "carol")
    add_team(vault, "bob", "carol")
    both = group_doc(vault, "team")
    laptop = {"FUSEVAULT_VAULT": str(vault), "FUSEVAULT_STATE_DIR": str(tmp_path / "laptop")}
    done = fusevault("group", "member", "remove", "team", "carol", env=laptop, passphrase=PASSPHRASE)
    assert done.returncode == 0, done.stderr
    laptops = group_doc(vault, "team")
    adversary.put(vault, both)  # the server withholds the laptop's body from the desktop
    assert _group(vault, "member", "remove", "team", "bob").returncode == 0
    adversary.put(vault, laptops)  # and now serves it: signed apart from the desktop's
    result = _group(vault, "member", "add", "team", "carol", "--perm", "READ")
    print(result.returncode, result.stderr[-1000:])
    assert result.returncode == 0, f"a group signed apart blocks her: {result.stderr[-300:]}"
    assert _members(vault) == {"alice": "READ,WRITE", "carol": "READ"}
    again = fusevault("group", "member", "remove", "team", "carol", env=laptop, passphrase=PASSPHRASE)
    print(again.returncode, again.stderr[-1000:])
    assert again.returncode == 0, again.stderr[-300:]
    assert _members(vault) == {"alice": "READ,WRITE"}
