"""What a writer of the vault folder cannot take away: the anchors of trust (issue 22, attacker review).

- "this user signs" is sealed with their private keys (crypto/identity.py), so stripping the signature of
  their user document does not make a new device sign what the attacker planted (vault/model/migrate.py);
- pins are kept on the device too (vault/model/trust.py): deleting the Pins document does not re-pin a
  replaced key;
- a user first met unsigned after signatures came is not "from before signatures", and one bad version
  does not break a file's history (vault/model/history.py);
- malformed Share, Group and UserDetails documents are refused, not crashed on (vault/model/shapes.py).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import adversary
import pytest
from conftest import fusevault, mounted

from fusevault.crypto.identity import open_file_key
from fusevault.encoding import b64e
from fusevault.errors import VaultError
from fusevault.vault.model import sharing
from mount.test_trust_grants import _mallory
from mount.test_trust_writes import BOB, _admin, _node_fid, _user


@pytest.fixture
def notes(vault: Path, tmp_path: Path) -> str:
    """alice's vault with notes.txt (two versions) and a folder; returns notes.txt's fid."""
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "notes.txt").write_text("first")
        (mnt / "notes.txt").write_text("genuine notes")
        (mnt / "docs").mkdir()
        (mnt / "docs" / "plan.txt").write_text("the plan")
    return _node_fid(vault, "alice", "notes.txt")


def _warnings(mnt: Path) -> list[str]:
    result = fusevault("status", mnt, passphrase=None)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if "WARNING" in line]


def _opens(vault: Path, owner: dict, fid: str, who: str, ident) -> bool:
    """Whether a ``.vfkey`` of ``owner``'s file ``fid`` sealed to ``who`` exists and opens."""
    path = vault / "users" / who / "shared" / f"{owner['_id']}_{fid}.vfkey"
    try:
        found = sharing.read_key(path)
        if found is None:
            return False
        open_file_key(ident, owner["_id"], fid, found[0], found[1])
    except (VaultError, OSError):
        return False
    return True


def _log(vault: Path) -> str:
    logs = Path(os.environ["FUSEVAULT_STATE_DIR"]) / "logs"
    return "".join(p.read_text() for p in logs.glob("*.log")) if logs.is_dir() else ""


def test_a_stripped_user_signature_gets_no_forged_share_signed_even_on_a_new_device(
        vault: Path, tmp_path: Path, notes: str, monkeypatch) -> None:
    alice = _user(vault, "alice")
    mal, mal_doc = _mallory(alice["root"])
    stripped = {k: v for k, v in alice.items() if k != "sig"}
    share = {"_id": f"share-{alice['root']}-{mal.user_id}", "type": "Share", "owner": alice["_id"],
             "fid": alice["root"], "grantee": mal.user_id, "group": False, "perm": "READ", "created_at": 1}
    adversary.put(vault, mal_doc, share, stripped)
    adversary.delete_row(vault, f"pins-{alice['_id']}")  # and the pins, which also say she signs
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "new-device-state"))
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "notes.txt").read_text() == "genuine notes"
        assert (mnt / "docs" / "plan.txt").read_text() == "the plan"
        assert any("not signed with their key" in w for w in _warnings(mnt))
    assert not _opens(vault, alice, notes, mal.user_id, mal), "every file key was sealed to the attacker"
    assert "sig" not in adversary.get(vault, share["_id"]), "the forged Share was signed in alice's name"


def test_a_deleted_pins_document_does_not_let_a_replaced_key_receive_file_keys(
        vault: Path, tmp_path: Path) -> None:
    from fusevault.crypto.identity import Identity
    from fusevault.crypto.signing import sign_doc

    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    with mounted(vault, tmp_path / "mnt") as mnt:  # alice meets bob: his keys are pinned
        (mnt / "notes.txt").write_text("for bob")
    alice, bob = _user(vault, "alice"), _user(vault, "bob")
    assert adversary.get(vault, f"pins-{alice['_id']}") is not None
    evil = Identity.new(bob["_id"])
    adversary.put(vault, sign_doc(bob["_id"], evil.sign, {**bob, **evil.public_fields()}))
    adversary.delete_row(vault, f"pins-{alice['_id']}")
    with mounted(vault, tmp_path / "mnt") as mnt:
        fusevault("share", mnt / "notes.txt", "--with", "bob", "--perm", "READ")
        warnings = _warnings(mnt)
        assert any("missing or older in the store" in w for w in warnings), warnings
        assert any("keys of user 'bob' changed" in w for w in warnings), warnings
        assert (mnt / "notes.txt").read_text() == "for bob"
    fid = _node_fid(vault, "alice", "notes.txt")
    assert not _opens(vault, alice, fid, bob["_id"], evil), "the file key was sealed to the attacker's key"
    assert adversary.get(vault, f"pins-{alice['_id']}") is not None  # written back from the device copy


def test_a_made_up_legacy_users_unsigned_version_does_not_break_the_owners_history(
        vault: Path, tmp_path: Path, notes: str) -> None:
    with mounted(vault, tmp_path / "mnt") as mnt:
        versions = sorted(os.listdir(mnt / ".versions" / "notes.txt"))
    alice = _user(vault, "alice")
    _, eve = _mallory(alice["root"])  # unsigned: "a user from before signatures"
    version = {"_id": uuid.uuid4().hex, "type": "FilesMetaData", "fid": notes, "owner": eve["_id"],
               "epoch": 0, "delete": False, "enc": b64e(os.urandom(80))}
    adversary.put(vault, eve, version)
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert sorted(os.listdir(mnt / ".versions" / "notes.txt")) == versions
        assert (mnt / "notes.txt").read_text() == "genuine notes"
        assert any(eve["_id"] in w or "mallory" in w for w in _warnings(mnt))


def test_one_bad_version_is_refused_and_the_rest_of_the_history_lists(vault: Path, tmp_path: Path) -> None:
    """A user from before signatures met at alice's first unlock (so legacy: its unsigned documents pass
    the signature check) puts a version that does not open: only that one is left out, and said."""
    alice = _user(vault, "alice")
    _, eve = _mallory(alice["root"])
    adversary.put(vault, eve)
    with mounted(vault, tmp_path / "mnt") as mnt:  # alice's first unlock: eve is pinned as legacy
        (mnt / "notes.txt").write_text("first")
        (mnt / "notes.txt").write_text("genuine notes")
        versions = sorted(os.listdir(mnt / ".versions" / "notes.txt"))
    notes = _node_fid(vault, "alice", "notes.txt")
    version = {"_id": uuid.uuid4().hex, "type": "FilesMetaData", "fid": notes, "owner": eve["_id"],
               "epoch": 0, "delete": False, "enc": b64e(os.urandom(80))}
    adversary.put(vault, version)
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert sorted(os.listdir(mnt / ".versions" / "notes.txt")) == versions
        assert (mnt / "notes.txt").read_text() == "genuine notes"
        assert any(version["_id"] in w for w in _warnings(mnt))


def test_a_malformed_group_of_a_made_up_user_locks_nobody_out(vault: Path, tmp_path: Path) -> None:
    alice = _user(vault, "alice")
    _, eve = _mallory(alice["root"])
    group = {"_id": uuid.uuid4().hex, "type": "Group", "owner": eve["_id"], "groupname": "g",
             "users": [alice["_id"]], "created_at": 1}
    adversary.put(vault, eve, group)
    (tmp_path / "mnt").mkdir()
    result = fusevault("mount", vault, tmp_path / "mnt")
    try:
        assert result.returncode == 0, result.stderr + _log(vault)[-600:]
        assert any(group["_id"] in w for w in _warnings(tmp_path / "mnt"))
        (tmp_path / "mnt" / "x.txt").write_text("still serving")
    finally:
        fusevault("unmount", tmp_path / "mnt", passphrase=None)
    shown = fusevault("user", "show", "alice", "--no-passphrase", env={"FUSEVAULT_VAULT": str(vault)},
                      passphrase=None)
    assert shown.returncode == 0, shown.stderr
