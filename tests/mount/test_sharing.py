"""Sharing files with users and groups: keys at seed 003's places, what a
recipient sees and may do in their mount, and revoking with a new file key."""

from __future__ import annotations

import base64
import errno
import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import PASSPHRASE, docs_of, fusevault, mounted

from fusevault.crypto.identity import open_file_key
from fusevault.errors import CorruptData, NotFound
from fusevault.store.local import LocalStore
from fusevault.vault.format.layout import open_layout
from fusevault.vault.model import users
from fusevault.vault.model.nodes import open_node_attrs
from fusevault.vault.volume import Volume

BOB = "bob's own passphrase"
CAROL = "carol's own passphrase"


def _admin(vault: Path, *args: str, passphrase: str = PASSPHRASE):
    """As the vault's administrator; ``passphrase`` is a new user's with ``user add``."""
    result = fusevault(*args, env={"FUSEVAULT_VAULT": str(vault), "FUSEVAULT_NEW_PASSPHRASE": passphrase},
                       passphrase=passphrase)
    assert result.returncode == 0, result.stderr
    return result


def _denied(call) -> None:
    with pytest.raises(OSError) as info:
        call()
    assert info.value.errno == errno.EACCES, info.value


@pytest.fixture
def people(vault: Path) -> dict:
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    _admin(vault, "user", "add", "carol", "--uid", "2002", passphrase=CAROL)
    _admin(vault, "group", "add", "team", "--owner", "alice")
    _admin(vault, "group", "member", "add", "team", "bob", "--perm", "READ,WRITE")
    ids = {u["username"]: u["_id"] for u in docs_of(vault, "UserDetails")}
    ids["team"] = docs_of(vault, "Group")[0]["_id"]
    return ids


def _fid(vault: Path, owner: str, path: str) -> str:
    """The file id of the owner's file at ``path``."""
    store = LocalStore(vault / "store.sqlite")
    try:
        user = next(u for u in store.iter_type("UserDetails") if u["username"] == owner)
        key = users.unlock(user, PASSPHRASE.encode())
        volume = Volume.load(open_layout(vault), store, key, user["root"])
        return volume.resolve(path.encode()).fid
    finally:
        store.close()


def test_share_read_and_write_through_the_recipients_mount_and_revoke(vault: Path, tmp_path: Path,
                                                                       people: dict) -> None:
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt, "--user", "alice"):
        (mnt / "notes.txt").write_text("hello bob")
        (mnt / "proj").mkdir()
        (mnt / "proj" / "plan.txt").write_text("step one\n")
        shared = fusevault("share", mnt / "notes.txt", "--with", "bob", "--perm", "READ")
        assert shared.returncode == 0, shared.stderr
        assert "shared notes.txt with bob (READ" in shared.stdout
        assert fusevault("share", mnt / "proj", "--with", "@team", "--perm", "WRITE").returncode == 0
        refused = fusevault("share", mnt / "notes.txt", "--with", "nobody", "--perm", "READ")
        assert refused.returncode == 4 and "no user 'nobody'" in refused.stderr
        assert fusevault("share", mnt / "notes.txt", "--with", "bob", "--perm", "RUN").returncode == 12
        listing = json.loads(fusevault("shares", "--json", "--mount", mnt).stdout)
        assert {(e["path"], e["with"], e["perm"]) for e in listing} == {
            ("notes.txt", "bob", "READ"), ("proj", "@team", "READ,WRITE")}
        (mnt / "proj" / "later.txt").write_text("made after the share")

    notes, proj = _fid(vault, "alice", "notes.txt"), _fid(vault, "alice", "proj")
    later = _fid(vault, "alice", "proj/later.txt")
    alice, bob = people["alice"], people["bob"]
    alices_key = next(u for u in docs_of(vault, "UserDetails") if u["_id"] == alice)["public_sign"]
    # The keys are at seed 003's places, also for a file made in the folder after it was shared.
    assert (vault / "users" / bob / "shared" / f"{alice}_{notes}.vfkey").exists()
    for fid in (proj, later):
        assert (vault / "groups" / people["team"] / "own" / fid / "keys" / f"{bob}.vfkey").exists()
        # A group's key names (signed) the group, its owner and her signing key as alice's pins admitted
        # them (44b (1), 46c (1)).
        record = json.loads((vault / "groups" / people["team"] / "own" / fid / "keys" / f"{bob}.vfkey")
                            .read_text())
        assert (record["group"], record["group_owner"], record["group_owner_key"]) == (
            people["team"], alice, alices_key)
    user_key = json.loads((vault / "users" / bob / "shared" / f"{alice}_{notes}.vfkey").read_text())
    assert not {"group", "group_owner", "group_owner_key"} & user_key.keys()
    bob_meta = json.loads((vault / "users" / bob / "meta.inf").read_text())
    assert bob_meta["SHARED_FILES"] == [f"{alice}:{notes}:READ"]
    sidecar = json.loads((vault / "users" / alice / "own" / f"{notes}.vfmeta").read_text())
    assert sidecar["ACL"] == [f"{bob}:READ"]
    assert json.loads((vault / "users" / alice / "own" / f"{later}.vfmeta").read_text())["ACL"] == [
        f"{people['team']}:READ,WRITE"]

    with mounted(vault, mnt, "--user", "bob", passphrase=BOB):
        assert sorted(os.listdir(mnt)) == ["groups", "shared"]
        assert os.listdir(mnt / "shared") == ["alice"]
        note = mnt / "shared" / "alice" / "notes.txt"
        assert note.read_text() == "hello bob"
        assert oct(note.stat().st_mode & 0o222) == "0o0"  # READ: shown without write bits
        _denied(lambda: note.write_text("changed"))
        _denied(lambda: open(note, "r+b"))
        _denied(lambda: os.truncate(note, 0))
        _denied(lambda: os.rename(note, mnt / "shared" / "alice" / "other"))
        _denied(lambda: os.unlink(note))
        _denied(lambda: os.chmod(note, 0o666))
        _denied(lambda: (mnt / "shared" / "alice" / "new.txt").write_text("no"))
        plan = mnt / "groups" / "team" / "proj" / "plan.txt"
        assert sorted(os.listdir(plan.parent)) == ["later.txt", "plan.txt"]
        with open(plan, "a") as out:
            out.write("step two, by bob\n")
        (plan.parent / "bobs.txt").write_text("bob made this")
        subprocess.run(["cp", "/etc/hostname", str(plan.parent / "copied")], check=True)
        moved = subprocess.run(["mv", str(plan.parent / "bobs.txt"), str(mnt / "mine.txt")],
                               capture_output=True, text=True)
        assert moved.returncode == 0, moved.stderr  # across owners: EXDEV, so mv copies
        assert (mnt / "mine.txt").read_text() == "bob made this"
        os.chmod(plan, 0o4660)  # WRITE sets mode bits (cp -a, rsync -a), never setuid
        assert plan.stat().st_mode & 0o7777 == 0o660
        os.chown(plan, plan.stat().st_uid, plan.stat().st_gid)  # the owner shown: no change
        with pytest.raises(PermissionError) as refused:
            os.chown(plan, 4242, -1)  # another owner: the file stays its owner's
        assert refused.value.errno == errno.EPERM

    with mounted(vault, mnt, "--user", "carol", passphrase=CAROL):
        assert os.listdir(mnt) == []

    with mounted(vault, mnt, "--user", "alice"):
        assert (mnt / "proj" / "plan.txt").read_text() == "step one\nstep two, by bob\n"
        assert (mnt / "proj" / "plan.txt").stat().st_mode & 0o7777 == 0o660
        assert (mnt / "proj" / "copied").read_bytes() == Path("/etc/hostname").read_bytes()
        assert not (mnt / "proj" / "bobs.txt").exists()
        history = json.loads(fusevault("history", mnt / "proj" / "plan.txt", "--json").stdout)
        assert [v["author"] for v in history["versions"]] == ["alice", "bob"]
        old_key = (vault / "users" / bob / "shared" / f"{alice}_{notes}.vfkey").read_bytes()
        out = fusevault("unshare", mnt / "notes.txt", "--with", "bob")
        assert out.returncode == 0, out.stderr
        assert not (vault / "users" / bob / "shared" / f"{alice}_{notes}.vfkey").exists()
        assert (mnt / "notes.txt").read_text() == "hello bob"  # the owner keeps their file
        (mnt / "notes.txt").write_text("after the revoke")
        versions = json.loads(fusevault("history", mnt / "notes.txt", "--json").stdout)["versions"]
        assert len(versions) == 3  # the original, the same contents under the new key, the new text
        first = fusevault("restore", mnt / "notes.txt", "--version", versions[0]["id"],
                          "--to", mnt / "restored.txt")
        assert first.returncode == 0, first.stderr
        assert (mnt / "restored.txt").read_text() == "hello bob"  # a version from the old epoch
        assert fusevault("shares", "--mount", mnt).stdout.strip() == "proj  ->  @team  READ,WRITE"
        assert json.loads((vault / "users" / bob / "meta.inf").read_text())["SHARED_FILES"] == []

    # What bob could have kept (the old key) does not open what was written after the revoke.
    store = LocalStore(vault / "store.sqlite")
    try:
        bob_doc = store.get(bob)
        old = json.loads(old_key)
        dek = open_file_key(users.unlock(bob_doc, BOB.encode()).identity, alice, notes, old["epoch"],
                            base64.b64decode(old["key"]))
        node = store.get(notes)
        assert node["epoch"] == 1 and old["epoch"] == 0
        with pytest.raises(CorruptData):
            open_node_attrs(node, dek)
    finally:
        store.close()
    with mounted(vault, mnt, "--user", "bob", passphrase=BOB):
        assert sorted(os.listdir(mnt)) == ["groups", "mine.txt"]
        assert (mnt / "groups" / "team" / "proj" / "plan.txt").exists()


def test_a_late_group_member_gets_keys_and_a_removed_one_is_rotated_out(vault: Path, tmp_path: Path,
                                                                      people: dict) -> None:
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt, "--user", "alice"):
        (mnt / "team").mkdir()
        (mnt / "team" / "doc.txt").write_text("for the team")
        assert fusevault("share", mnt / "team", "--with", "@team", "--perm", "READ").returncode == 0
    doc = _fid(vault, "alice", "team/doc.txt")
    keys = vault / "groups" / people["team"] / "own" / doc / "keys"
    assert sorted(p.name for p in keys.iterdir()) == [f"{people['bob']}.vfkey"]

    # carol joins later: no passphrase needed now, her keys come at alice's next unlock.
    _admin(vault, "group", "member", "add", "team", "carol", "--perm", "READ")
    with mounted(vault, mnt, "--user", "carol", passphrase=CAROL):
        assert os.listdir(mnt) == []
    with mounted(vault, mnt, "--user", "alice"):
        pass  # unlocking seals the keys a member lacks, before the mount serves
    assert (keys / f"{people['carol']}.vfkey").exists()
    with mounted(vault, mnt, "--user", "carol", passphrase=CAROL):
        assert (mnt / "groups" / "team" / "team" / "doc.txt").read_text() == "for the team"

    # bob leaves: his keys go at once, the file's key changes at alice's next unlock.
    _admin(vault, "group", "member", "remove", "team", "bob")
    assert not (keys / f"{people['bob']}.vfkey").exists()
    assert [d["fid"] for d in docs_of(vault, "Rotation")] == [_fid(vault, "alice", "team")]
    with mounted(vault, mnt, "--user", "alice"):
        assert (mnt / "team" / "doc.txt").read_text() == "for the team"
    assert docs_of(vault, "Rotation") == []
    epochs = {d["_id"]: d.get("epoch", 0) for d in docs_of(vault, "node")}
    assert epochs[doc] == 1
    with mounted(vault, mnt, "--user", "carol", passphrase=CAROL):
        assert (mnt / "groups" / "team" / "team" / "doc.txt").read_text() == "for the team"
    with mounted(vault, mnt, "--user", "bob", passphrase=BOB):
        assert os.listdir(mnt) == []


def test_a_write_member_copies_into_the_share_with_modes_kept(vault: Path, tmp_path: Path,
                                                             people: dict) -> None:
    """rsync -a and cp -a into a WRITE share of a personal mount keep the modes."""
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt, "--user", "alice"):
        (mnt / "proj").mkdir()
        assert fusevault("share", mnt / "proj", "--with", "@team", "--perm", "WRITE").returncode == 0
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "run.sh").write_text("run")
    (src / "sub" / "note.txt").write_text("note")
    modes = {"run.sh": 0o755, "sub": 0o750, "sub/note.txt": 0o640}
    with mounted(vault, mnt, "--user", "bob", passphrase=BOB):
        proj = mnt / "groups" / "team" / "proj"
        shown = proj.stat()
        for path in [src, *src.rglob("*")]:  # bob's own files, as the share shows its files to him
            os.chown(path, shown.st_uid, shown.st_gid)
        for name, mode in modes.items():
            (src / name).chmod(mode)
        copied = subprocess.run(["rsync", "-a", f"{src}/", str(proj / "by-rsync")],
                                capture_output=True, text=True)
        assert copied.returncode == 0, copied.stderr
        copied = subprocess.run(["cp", "-a", str(src), str(proj / "by-cp")], capture_output=True, text=True)
        assert copied.returncode == 0 and not copied.stderr, copied.stderr
        for copy in ("by-rsync", "by-cp"):
            assert {name: (proj / copy / name).stat().st_mode & 0o7777 for name in modes} == modes, copy
            assert (proj / copy / "sub" / "note.txt").read_text() == "note"
    with mounted(vault, mnt, "--user", "alice"):
        assert (mnt / "proj" / "by-cp" / "run.sh").stat().st_mode & 0o7777 == 0o755


def test_a_users_tree_takes_in_what_another_user_commits(vault: Path, tmp_path: Path, people: dict) -> None:
    """vault/services/absorbing.py on two Volumes over one store (a shared mount's
    seats, without FUSE): creates, writes, renames, deletes and a revoke."""
    import trio

    from fusevault.store.watched import WatchedStore
    from fusevault.vault.services.absorbing import absorb
    from fusevault.vault.volume import Caller

    with mounted(vault, tmp_path / "mnt", "--user", "alice") as mnt:
        (mnt / "proj").mkdir()
        (mnt / "proj" / "plan.txt").write_text("one\n")
        assert fusevault("share", mnt / "proj", "--with", "bob", "--perm", "WRITE").returncode == 0

    store = LocalStore(vault / "store.sqlite")
    layout = open_layout(vault)
    trees: dict[str, Volume] = {}

    def committed(writer: object, docs: list[dict]) -> None:
        for name, tree in trees.items():
            absorb(tree, docs, own=name == writer)

    def load(name: str, secret: str) -> Volume:
        user = next(u for u in store.iter_type("UserDetails") if u["username"] == name)
        return Volume.load(layout, WatchedStore(store, name, committed), users.unlock(user, secret.encode()),
                           user["root"])

    async def write(tree: Volume, ino: int, data: bytes) -> None:
        fh = await tree.open(ino)
        await tree.setattr(ino, size=0)
        await tree.write(fh, 0, data)
        await tree.release(fh)

    def bob_sees(path: str):
        tree = trees["bob"]
        try:
            return tree.resolve(f"shared/alice/{path}".encode())
        except NotFound:
            return None

    async def main() -> None:
        trees["alice"], trees["bob"] = load("alice", PASSPHRASE), load("bob", BOB)
        alice, bob = trees["alice"], trees["bob"]
        proj = alice.resolve(b"proj")
        assert bob_sees("proj/plan.txt") is not None
        # A new file and its contents.
        _, new = await alice.create(proj.ino, b"new.txt", 0o644, Caller(0, 0))
        await write(alice, new.ino, b"written by alice")
        seen = bob_sees("proj/new.txt")
        assert seen is not None and seen is not new  # bob's own node for it
        fh = await bob.open(seen.ino)
        assert await bob.read(fh, 0, 100) == b"written by alice"
        # Alice writes again while bob has it open: his reads follow the new version.
        await write(alice, new.ino, b"second")
        assert await bob.read(fh, 0, 100) == b"second"
        await bob.release(fh)
        # Bob writes; alice's node follows, and its next commit does not conflict.
        await write(bob, seen.ino, b"bob's turn")
        fh = await alice.open(new.ino)
        assert await alice.read(fh, 0, 100) == b"bob's turn"
        await alice.release(fh)
        await alice.setattr(new.ino, mode=0o600)
        # A rename and a delete.
        await alice.rename(proj.ino, b"new.txt", proj.ino, b"renamed.txt", noreplace=False, exchange=False)
        assert bob_sees("proj/new.txt") is None and bob_sees("proj/renamed.txt") is seen
        await alice.unlink(proj.ino, b"renamed.txt")
        assert bob_sees("proj/renamed.txt") is None
        # A revoke: bob's tree loses the folder and its keys at once.
        from fusevault.vault.services import share_ops

        await share_ops.unshare(alice, b"proj", "bob")
        assert bob_sees("proj") is None and b"shared" not in bob.root.children
        assert all(not n.dek for n in bob.nodes() if n.owner == people["alice"])
        for tree in trees.values():
            await tree.close()

    try:
        trio.run(main)
    finally:
        store.close()
