"""Users, groups and their seed 003 meta.inf files; key pairs; the unlock agent and its TTL."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
import trio
import trio.testing
from conftest import PASSPHRASE, docs_of, fusevault, mounted

from fusevault.agent.expiry import Expiry
from fusevault.crypto import aead
from fusevault.crypto.identity import Identity, open_file_key, open_identity, public_box, seal_file_key
from fusevault.crypto.kdf import KdfParams
from fusevault.crypto.keys import checksum, unwrap_master, wrap_master
from fusevault.errors import CorruptData
from fusevault.store.local import LocalStore
from fusevault.vault.model import users
from fusevault.vault.model.trust import self_signed


def _meta(path: Path) -> dict:
    return json.loads(path.read_text())


def _run(vault: Path, *args: str, **kwargs):
    env = {"FUSEVAULT_VAULT": str(vault)}
    if args[:2] == ("user", "add"):  # ``passphrase`` is the new user's (never the caller's)
        env["FUSEVAULT_NEW_PASSPHRASE"] = kwargs.pop("passphrase", PASSPHRASE)
    return fusevault(*args, env=env, **kwargs)


def test_users_and_groups_keep_both_lists_in_agreement(vault: Path) -> None:
    assert _run(vault, "user", "add", "bob", "--uid", "2001").returncode == 0
    assert _run(vault, "user", "add", "carol", "--uid", "2002").returncode == 0
    again = _run(vault, "user", "add", "bob", "--uid", "2003")
    assert again.returncode == 11 and "already exists" in again.stderr
    same_uid = _run(vault, "user", "add", "dave", "--uid", "2001")
    assert same_uid.returncode == 11 and "uid 2001" in same_uid.stderr
    assert _run(vault, "group", "add", "team", "--owner", "alice").returncode == 0
    assert _run(vault, "group", "add", "team", "--owner", "bob").returncode == 11
    assert _run(vault, "group", "member", "add", "team", "bob", "--perm", "write,read").returncode == 0
    assert _run(vault, "group", "member", "add", "team", "carol", "--perm", "READ").returncode == 0
    bad = _run(vault, "group", "member", "add", "team", "carol", "--perm", "EXECUTE")
    assert bad.returncode == 12 and "READ, WRITE or READ,WRITE" in bad.stderr

    ids = {u["username"]: u["_id"] for u in docs_of(vault, "UserDetails")}
    (group,) = docs_of(vault, "Group")
    meta = _meta(vault / "groups" / group["_id"] / "meta.inf")
    assert meta["GROUPNAME"] == "team" and meta["OWNER_ID"] == ids["alice"]
    assert sorted(meta["USERS"]) == sorted([f"{ids['alice']}:READ,WRITE", f"{ids['bob']}:READ,WRITE",
                                            f"{ids['carol']}:READ"])
    for name, perm in (("alice", "READ,WRITE"), ("bob", "READ,WRITE"), ("carol", "READ")):
        user_meta = _meta(vault / "users" / ids[name] / "meta.inf")
        assert user_meta["USERNAME"] == name and user_meta["GROUPS"] == [f"{group['_id']}:{perm}"]

    listed = json.loads(_run(vault, "group", "list", "--json").stdout)
    assert listed[0]["members"] == {"alice": "READ,WRITE", "bob": "READ,WRITE", "carol": "READ"}
    owner_out = _run(vault, "group", "member", "remove", "team", "alice")
    assert owner_out.returncode == 12 and "owns group team" in owner_out.stderr
    assert _run(vault, "group", "member", "remove", "team", "carol").returncode == 0
    assert _meta(vault / "users" / ids["carol"] / "meta.inf")["GROUPS"] == []
    assert f"{ids['carol']}:READ" not in _meta(vault / "groups" / group["_id"] / "meta.inf")["USERS"]

    # A member is removed only once the group's owner took them out (signed): a missing
    # user document is never taken for a removal (docs/SECURITY.md).
    refused = _run(vault, "user", "remove", "bob")
    assert refused.returncode == 12 and "member of the group(s) team" in refused.stderr
    assert (vault / "users" / ids["bob"]).exists()
    assert _run(vault, "group", "member", "remove", "team", "bob").returncode == 0
    assert _run(vault, "user", "remove", "bob").returncode == 0
    assert not (vault / "users" / ids["bob"]).exists()
    assert _meta(vault / "groups" / group["_id"] / "meta.inf")["USERS"] == [f"{ids['alice']}:READ,WRITE"]
    names = [u["name"] for u in json.loads(_run(vault, "user", "list", "--json").stdout)]
    assert names == ["alice", "carol"]
    assert _run(vault, "user", "remove", "nobody").returncode == 4


def test_a_crash_between_the_document_and_the_meta_files_is_repaired(vault: Path) -> None:
    assert _run(vault, "user", "add", "bob", "--uid", "2001").returncode == 0
    assert _run(vault, "group", "add", "team", "--owner", "alice").returncode == 0
    # As if the process died after committing "bob joins team" but before any
    # meta.inf was written: the document changes, the files do not.
    store = LocalStore(vault / "store.sqlite")
    (group,) = store.iter_type("Group")
    bob = users.find_user(store, "bob")
    store.put_many([{**group, "users": {**group["users"], bob["_id"]: "READ"}}])
    store.close()
    bob_meta = vault / "users" / bob["_id"] / "meta.inf"
    assert _meta(bob_meta)["GROUPS"] == []
    (vault / "groups" / group["_id"] / "meta.inf").unlink()

    assert _run(vault, "group", "list").returncode == 0  # any administrative command repairs
    assert _meta(bob_meta)["GROUPS"] == [f"{group['_id']}:READ"]
    assert f"{bob['_id']}:READ" in _meta(vault / "groups" / group["_id"] / "meta.inf")["USERS"]


def test_a_user_with_files_or_a_group_is_not_removed(vault: Path, tmp_path: Path) -> None:
    assert _run(vault, "user", "add", "bob", "--uid", "2001").returncode == 0
    with mounted(vault, tmp_path / "m", "--user", "bob"):
        (tmp_path / "m" / "notes.txt").write_text("bob's")
    refused = _run(vault, "user", "remove", "bob")
    assert refused.returncode == 12 and "still has 1 files" in refused.stderr
    assert _run(vault, "group", "add", "team", "--owner", "alice").returncode == 0
    refused = _run(vault, "user", "remove", "alice")
    assert refused.returncode == 12 and "owns the group(s) team" in refused.stderr
    assert _run(vault, "user", "list", "--json").stdout.count('"name"') == 2


def test_a_withheld_member_document_is_not_signed_out_by_another_member_change(vault: Path) -> None:
    """The store's writer withholds bob's user document while alice adds carol to her group: the group
    she signs still names bob (a missing document is not a removal: docs/SECURITY.md, Withholding)."""
    import adversary

    for name, uid in (("bob", "2001"), ("carol", "2002")):
        assert _run(vault, "user", "add", name, "--uid", uid).returncode == 0
    assert _run(vault, "group", "add", "team", "--owner", "alice").returncode == 0
    assert _run(vault, "group", "member", "add", "team", "bob", "--perm", "READ").returncode == 0
    (bob,) = [u for u in docs_of(vault, "UserDetails") if u["username"] == "bob"]
    adversary.delete_row(vault, bob["_id"])
    assert _run(vault, "group", "member", "add", "team", "carol", "--perm", "READ").returncode == 0
    adversary.put(vault, bob)
    (team,) = docs_of(vault, "Group")
    assert team["users"].get(bob["_id"]) == "READ", team["users"]


def test_every_user_has_key_pairs_only_their_passphrase_opens(vault: Path) -> None:
    assert _run(vault, "user", "add", "bob", "--uid", "2001", passphrase="bob's own").returncode == 0
    store = LocalStore(vault / "store.sqlite")
    try:
        bob = users.find_user(store, "bob")
        alice = users.find_user(store, "alice")
    finally:
        store.close()
    assert {"public_box", "public_sign", "en_private_keys"} <= bob.keys()
    identity = open_identity(users.unlock(bob, b"bob's own"), bob)
    with pytest.raises(CorruptData):  # alice's key does not open bob's private keys
        open_identity(users.unlock(alice, PASSPHRASE.encode()), bob)
    # A file key sealed to bob opens only for bob, that owner, file and epoch.
    dek = aead.new_key()
    blob = seal_file_key(public_box(bob), bob["_id"], alice["_id"], "f" * 32, 0, dek)
    assert open_file_key(identity, alice["_id"], "f" * 32, 0, blob) == dek
    for owner, fid, epoch in ((bob["_id"], "f" * 32, 0), (alice["_id"], "e" * 32, 0),
                              (alice["_id"], "f" * 32, 1)):
        with pytest.raises(CorruptData):
            open_file_key(identity, owner, fid, epoch, blob)
    with pytest.raises(CorruptData):
        open_file_key(Identity.new(bob["_id"]), alice["_id"], "f" * 32, 0, blob)


def test_the_ttl_wipes_at_its_deadline_and_a_new_unlock_starts_it_over() -> None:
    """Expiry on trio's MockClock: ten days pass in no real time."""
    expired: list[tuple[str, float]] = []

    async def main() -> None:
        async def on_expire(user_id: str) -> None:
            expired.append((user_id, trio.current_time()))

        expiry = Expiry(on_expire)
        async with trio.open_nursery() as nursery:
            await nursery.start(expiry.run)
            expiry.start("alice", 10 * 86400)
            expiry.start("bob", 60)
            await trio.sleep(59)
            assert expired == []
            expiry.start("bob", 60)  # bob unlocks again: a full minute from now
            await trio.sleep(59.5)
            assert expired == []
            await trio.sleep(1)
            assert [u for u, _ in expired] == ["bob"] and "bob" not in expiry.unlocked
            expiry.stop("alice")  # fusevault lock: nothing left to expire
            await trio.sleep(11 * 86400)
            assert [u for u, _ in expired] == ["bob"]
            expiry.start("alice", 600)
            await trio.sleep(601)
            assert [u for u, _ in expired] == ["bob", "alice"]
            assert expired[1][1] == pytest.approx(59 + 59.5 + 1 + 11 * 86400 + 600)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def _status(mountpoint: Path) -> dict:
    result = fusevault("status", mountpoint, "--json", passphrase=None)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["mounts"][0]


def test_lock_wipes_the_keys_and_unlock_brings_the_same_files_back(mnt: Path) -> None:
    (mnt / "dir").mkdir()
    (mnt / "dir" / "a.txt").write_text("before the lock")
    inode = os.stat(mnt / "dir" / "a.txt").st_ino
    unsaved = open(mnt / "dir" / "b.txt", "w")  # open across the lock, written but not closed
    unsaved.write("written, not closed")
    unsaved.flush()
    assert _status(mnt)["unlocked"][0]["user"] == "alice"

    assert fusevault("lock", mnt, passphrase=None).returncode == 0
    with pytest.raises(PermissionError):
        os.listdir(mnt)
    with pytest.raises(PermissionError):
        open(mnt / "dir" / "a.txt").read()
    with pytest.raises(OSError):  # the handle from before the lock is refused too
        unsaved.write("more")
        unsaved.flush()
    with pytest.raises(OSError):
        unsaved.close()
    history = fusevault("history", mnt / "dir" / "a.txt", passphrase=None)
    assert history.returncode == 20 and "locked" in history.stderr
    assert _status(mnt)["unlocked"] == []
    again = fusevault("lock", mnt, passphrase=None)
    assert again.returncode == 0 and "already locked" in again.stdout

    wrong = fusevault("unlock", mnt, passphrase="not it")
    assert wrong.returncode == 3 and wrong.stderr.strip() == "fusevault: wrong passphrase"
    with pytest.raises(PermissionError):
        os.listdir(mnt)

    unlocked = fusevault("unlock", mnt)
    assert unlocked.returncode == 0 and "unlocked alice until" in unlocked.stdout
    assert sorted(os.listdir(mnt / "dir")) == ["a.txt", "b.txt"]
    assert (mnt / "dir" / "a.txt").read_text() == "before the lock"
    assert (mnt / "dir" / "b.txt").read_text() == "written, not closed"  # saved by the lock
    assert os.stat(mnt / "dir" / "a.txt").st_ino == inode
    (mnt / "dir" / "c.txt").write_text("after")
    assert (mnt / "dir" / "c.txt").read_text() == "after"
    status = _status(mnt)["unlocked"][0]
    assert status["user"] == "alice" and status["expires"] > time.time() + 3600


def test_a_ttl_of_a_few_seconds_locks_the_mount_by_itself(vault: Path, tmp_path: Path) -> None:
    assert _run(vault, "config", "set", "passphrase_expiry_ttl", "0.1 min", "--vault",
                vault).returncode == 0
    with mounted(vault, tmp_path / "m") as mnt:
        (mnt / "a.txt").write_text("short-lived")
        unlocked = _status(mnt)["unlocked"][0]
        assert unlocked["expires"] - unlocked["since"] == pytest.approx(6)
        deadline = time.monotonic() + 60
        while _status(mnt)["unlocked"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _status(mnt)["unlocked"] == []
        with pytest.raises(PermissionError):
            (mnt / "a.txt").read_text()
        assert fusevault("unlock", mnt).returncode == 0
        assert (mnt / "a.txt").read_text() == "short-lived"


def test_passwd_changes_one_user_and_the_mount_takes_the_new_passphrase(vault: Path, tmp_path: Path) -> None:
    assert _run(vault, "user", "add", "bob", "--uid", "2001", passphrase="bob old").returncode == 0
    changed = fusevault("passwd", vault, "--user", "bob", passphrase="bob old",
                        env={"FUSEVAULT_NEW_PASSPHRASE": "bob new"})
    assert changed.returncode == 0, changed.stderr
    wrong = fusevault("passwd", vault, "--user", "bob", passphrase="bob old",
                      env={"FUSEVAULT_NEW_PASSPHRASE": "x"})
    assert wrong.returncode == 3
    with mounted(vault, tmp_path / "a"):  # alice's passphrase is untouched
        pass
    with mounted(vault, tmp_path / "b", "--user", "bob", passphrase="bob new") as mnt:
        assert fusevault("lock", mnt, passphrase=None).returncode == 0
        # Changed while mounted: the next unlock reads the user's document again.
        assert fusevault("passwd", vault, "--user", "bob", passphrase="bob new",
                         env={"FUSEVAULT_NEW_PASSPHRASE": "bob newer"}).returncode == 0
        assert fusevault("unlock", mnt, passphrase="bob new").returncode == 3
        assert fusevault("unlock", mnt, passphrase="bob newer").returncode == 0
        assert os.listdir(mnt) == []


def test_a_locked_mount_unmounts_cleanly_and_mounts_again(vault: Path, tmp_path: Path) -> None:
    with mounted(vault, tmp_path / "m") as mnt:
        (mnt / "kept.txt").write_text("saved before the lock")
        assert fusevault("lock", mnt, passphrase=None).returncode == 0
        text = fusevault("status", mnt, passphrase=None)
        assert "locked: run `fusevault unlock`" in text.stdout
        done = fusevault("unmount", mnt, passphrase=None)
        assert done.returncode == 0, done.stderr
    with mounted(vault, tmp_path / "m") as mnt:
        assert (mnt / "kept.txt").read_text() == "saved before the lock"


def test_a_user_from_before_key_pairs_gets_them_at_the_next_mount(vault: Path, tmp_path: Path) -> None:
    # A vault from before key pairs (and so before signatures): no key pair, nothing signed.
    store = LocalStore(vault / "store.sqlite")
    alice = users.find_user(store, "alice")
    # Her wrapping as it was then: its validation string the older text, which says nothing of pairs.
    master = unwrap_master(alice["_id"], alice, PASSPHRASE.encode())
    fields = wrap_master(alice["_id"], master, PASSPHRASE.encode(), KdfParams.from_doc(alice["kdf"]),
                         pairs=False)
    stripped = ("public_box", "public_sign", "en_private_keys", "sig")
    old = {**{k: v for k, v in alice.items() if k not in stripped}, **fields, "checksum": checksum(fields)}
    root = {k: v for k, v in store.get(alice["root"]).items() if k != "sig"}
    store.put_many([old, root])
    store.close()
    # Seen by a device that never saw this vault signed (this one made it, and remembers).
    fresh = {"FUSEVAULT_STATE_DIR": str(tmp_path / "another-device")}
    (tmp_path / "m").mkdir()
    result = fusevault("mount", vault, tmp_path / "m", env=fresh)
    assert result.returncode == 0, result.stderr
    assert fusevault("unmount", tmp_path / "m", passphrase=None, env=fresh).returncode == 0
    store = LocalStore(vault / "store.sqlite")
    try:
        alice = users.find_user(store, "alice")
    finally:
        store.close()
    identity = open_identity(users.unlock(alice, PASSPHRASE.encode()), alice)
    assert identity.public_fields()["public_box"] == alice["public_box"]
    assert self_signed(alice)  # and the unlock that gave them signed what was hers


def test_unlocking_again_while_unlocked_shows_the_new_unlock(mnt: Path) -> None:
    first = _status(mnt)["unlocked"][0]
    result = fusevault("config", "set", "passphrase_expiry_ttl", "10 day", "--mount", mnt, passphrase=None)
    assert result.returncode == 0, result.stderr
    asked = time.time()
    assert first["since"] < asked
    result = fusevault("unlock", mnt)
    assert result.returncode == 0, result.stderr
    again = _status(mnt)["unlocked"][0]
    assert again["since"] >= asked
    assert again["expires"] - again["since"] == pytest.approx(10 * 86400)
    text = fusevault("status", mnt, passphrase=None).stdout
    assert re.search(r"unlocked alice \d+ s ago, for 9 d more", text), text
