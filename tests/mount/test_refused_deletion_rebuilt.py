"""Issue 22, SECURITY.md's "not covered" items left by attack rounds 11-13 on a file rebuilt from a
refused deletion (vault/tree/undeleting.py, rebuilding.py ``keep_undeleted``) and on a writer's ``previous``.

The owner, alice; bob, a user of her vault who can write the vault folder (READ on her private/notes.txt,
or WRITE on team only: the scenes of tests/mount/test_trust_attack_round11.py).  Each test asserts the SAFE
behaviour.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import adversary
from attack_scenes import recipients_dek, resigned_by_bob
from conftest import fusevault, mounted

from fusevault.crypto import aead
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64e
from fusevault.vault.model.ledger import ledger_path
from fusevault.vault.model.nodes import open_node_attrs, open_node_doc
from mount.test_trust_attack_round11 import (
    _bobs_deletion,
    _bobs_read_deletion,
    _notes_read_to_bob,
    _private_and_team,
)
from mount.test_trust_writes import BOB as BOB_SECRET
from mount.test_trust_writes import PASSPHRASE, _key, _node_fid, _user


def _stat(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def test_a_refused_deletion_keeps_the_owners_mode_and_never_takes_the_deleters(
        vault: Path, tmp_path: Path) -> None:
    """alice's private/notes.txt, shared READ with bob; she makes it 0640 (no one else's to read).  bob
    signs a deletion of it (the file's key from his grant) whose sealed mode is 0666 and owner ids 4242.
    alice unlocks: the deletion is refused.  Safe: notes.txt is 0640 with the ids it had (what this device
    last saw of hers), never 0666 nor his ids (it came back 0600 with the root's ids before)."""
    mnt, notes, _old = _notes_read_to_bob(vault, tmp_path)
    with mounted(vault, mnt):
        os.chmod(mnt / "private" / "notes.txt", 0o640)
        before = _stat(mnt / "private" / "notes.txt")
    assert before[0] == 0o640
    attrs = open_node_attrs(adversary.get(vault, notes), recipients_dek(vault, "bob", BOB_SECRET, notes))
    attrs.update(links=[], seq=["bobs-device", 1], trashed=["private/notes.txt", attrs["mtime"]],
                 mode=stat.S_IFREG | 0o666, uid=4242, gid=4242)
    _bobs_read_deletion(vault, notes, attrs)
    with mounted(vault, mnt):
        status = fusevault("status", mnt).stdout
        after = _stat(mnt / "private" / "notes.txt")
        text = (mnt / "private" / "notes.txt").read_text()
    print(status[-1500:], oct(after[0]), after[1:])
    assert "who holds no WRITE where it was" in status
    assert text == "second: alice's final text"
    assert after == before, f"rebuilt as {oct(after[0])} {after[1:]}, was {oct(before[0])} {before[1:]}"


def test_a_refused_deletion_of_the_owners_folder_keeps_its_mode(vault: Path, tmp_path: Path) -> None:
    """alice's folder private (0750), never shared; bob (WRITE on team only) signs a deletion of it under
    a key of his own whose sealed mode is 0777.  Refused.  Safe: private is a folder, 0750 (0700 before)."""
    mnt = _private_and_team(vault, tmp_path, {"private/a.txt": "alice's a"})
    with mounted(vault, mnt):
        os.chmod(mnt / "private", 0o750)
        before = _stat(mnt / "private")
    _bobs_deletion(vault, _node_fid(vault, "alice", "private"), os.urandom(32),
                   {"mode": stat.S_IFDIR | 0o777, "uid": 4242, "gid": 4242})
    with mounted(vault, mnt):
        # A folder has no version to take its name from: it comes back under the one this device
        # last saw (the ledger's ``names``; attack round 14 (3)).
        (back,) = [path for path in mnt.iterdir() if (path / "a.txt").is_file()]
        after = _stat(back)
    assert back.name == "private"
    assert after == before, f"rebuilt as {oct(after[0])} {after[1:]}, was {oct(before[0])} {before[1:]}"


def test_a_refused_deletion_on_a_device_that_never_saw_the_mode_takes_no_access_from_the_deleter(
        vault: Path, tmp_path: Path) -> None:
    """As the first test, on a device whose ledger is gone (a new device: it never saw the file's mode).
    bob's refused deletion says 0777.  Safe: notes.txt is hers only (0600, or 0700: her own execute bit
    is all his word may add), never readable by a group or another user."""
    mnt, notes, _old = _notes_read_to_bob(vault, tmp_path)
    attrs = open_node_attrs(adversary.get(vault, notes), recipients_dek(vault, "bob", BOB_SECRET, notes))
    attrs.update(links=[], seq=["bobs-device", 1], trashed=["private/notes.txt", attrs["mtime"]],
                 mode=stat.S_IFREG | 0o777)
    _bobs_read_deletion(vault, notes, attrs)
    alice = _user(vault, "alice")["_id"]
    ledger = ledger_path(vault, alice)  # named by the folder and the user (vault/model/renamed.py)
    ledger.unlink()
    with mounted(vault, mnt):
        mode = _stat(mnt / "private" / "notes.txt")[0]
    assert mode & 0o077 == 0, f"rebuilt as {oct(mode)}: open to others on the deleter's word"


def test_the_trash_does_not_list_a_live_file_whose_deletion_was_refused(vault: Path, tmp_path: Path) -> None:
    """The scene of the first test: bob's deletion of notes.txt names ``trashed`` "private/notes.txt".
    Refused: the file is live.  Safe: `fusevault trash` lists nothing (it listed the live file), and
    `restore` of the path bob named finds no deleted file to put back there (a second name for it)."""
    mnt, notes, _old = _notes_read_to_bob(vault, tmp_path)
    attrs = open_node_attrs(adversary.get(vault, notes), recipients_dek(vault, "bob", BOB_SECRET, notes))
    attrs.update(links=[], seq=["bobs-device", 1], trashed=["elsewhere/notes.txt", attrs["mtime"]])
    _bobs_read_deletion(vault, notes, attrs)
    with mounted(vault, mnt):
        listed = fusevault("trash", mnt, "--json")
        restored = fusevault("restore", mnt / "elsewhere" / "notes.txt")
        print(listed.stdout, listed.stderr, restored.returncode, restored.stdout, restored.stderr)
        elsewhere = (mnt / "elsewhere").exists()
        text = (mnt / "private" / "notes.txt").read_text()
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["trash"] == [], "the trash lists alice's live file"
    assert restored.returncode != 0 and not elsewhere, "restore gave her live file a second name"
    assert text == "second: alice's final text"


def _as_before_replaced_by(vault: Path, fid: str) -> None:
    """alice's document of her replaced file ``fid`` as a version without ``replaced_by`` wrote it
    (re-signed by her: her own file, from before the field was recorded)."""
    alice = _key(vault, "alice", PASSPHRASE)
    doc = adversary.get(vault, fid)
    dek, attrs = open_node_doc(doc, alice)
    attrs.pop("replaced_by", None)
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig")}
    body["enc"] = b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", fid)))
    adversary.put(vault, sign_doc(alice.user_id, alice.identity.sign, body))


def test_a_writers_previous_naming_her_file_from_before_replaced_by_is_not_laundered_by_her_next_commit(
        vault: Path, tmp_path: Path) -> None:
    """A vault from before ``replaced_by``: alice's private/secret.txt saved by rename (an editor's save),
    the replaced file's document without the field.  bob (WRITE on team) signs team/plan.txt's document
    with ``previous`` naming that replaced file (not followed: round 9a).  alice unlocks and writes
    plan.txt: her commit carried bob's ``previous`` over, signed now by her, so plan.txt's history took
    her private secret's versions (her restore would copy them into the shared file).  Safe: her document
    of plan.txt names no such ``previous`` and its history is plan.txt's own."""
    mnt = _private_and_team(vault, tmp_path, {"private/secret.txt": "alice's first secret"})
    old = _node_fid(vault, "alice", "secret.txt")
    with mounted(vault, mnt):
        (mnt / "private" / ".secret.txt.tmp").write_text("alice's secret")
        (mnt / "private" / ".secret.txt.tmp").rename(mnt / "private" / "secret.txt")
    _as_before_replaced_by(vault, old)
    plan = _node_fid(vault, "alice", "plan.txt")
    resigned_by_bob(vault, plan, {"previous": old})
    with mounted(vault, mnt):
        (mnt / "team" / "plan.txt").write_text("alice's new plan")
    with mounted(vault, mnt):
        listed = fusevault("history", mnt / "team" / "plan.txt", "--json")
    print(listed.stdout, listed.stderr)
    paths = [v["path"] for v in json.loads(listed.stdout)["versions"]]
    attrs = open_node_doc(adversary.get(vault, plan), _key(vault, "alice", PASSPHRASE))[1]
    assert attrs.get("previous") != old, "alice's commit signed bob's previous as hers"
    assert not [p for p in paths if p.startswith("private/")], f"her secret is in plan.txt's history: {paths}"
