"""Signed grants and pinned identities (issue 22, part 1), attacked as a server
or a writer of the vault folder would: a forged share, a forged group
membership, a replaced public key, a forged ``.vfkey`` with a higher epoch.

Each attack shows: nothing sealed to the attacker (no ``.vfkey`` on disk, no
FileKey on the server), the user's files unchanged, a warning in the mount's
log and in ``fusevault status``, and the mount still serving.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from pathlib import Path

import adversary
import pytest
from conftest import PASSPHRASE, docs_of, fusevault, mounted, wait_for

from fusevault.crypto.identity import Identity, open_file_key
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64e
from fusevault.errors import VaultError
from fusevault.vault.model import sharing
from fusevault.vault.model.trust import doc_fingerprint

BOB = "bob's own passphrase"


def _admin(vault: Path, *args: str, passphrase: str = PASSPHRASE):
    result = fusevault(*args, env={"FUSEVAULT_VAULT": str(vault), "FUSEVAULT_NEW_PASSPHRASE": passphrase},
                       passphrase=passphrase)
    assert result.returncode == 0, result.stderr
    return result


def _status(mnt: Path) -> str:
    result = fusevault("status", mnt, passphrase=None)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _log() -> str:
    logs = Path(os.environ["FUSEVAULT_STATE_DIR"]) / "logs"
    return "".join(p.read_text() for p in logs.glob("mount-*.log"))


def _user(vault: Path, name: str) -> dict:
    return next(u for u in docs_of(vault, "UserDetails") if u["username"] == name)


def _mallory(root_of: str) -> tuple[Identity, dict]:
    """An attacker's user document, with key pairs the attacker holds."""
    mal = uuid.uuid4().hex
    ident = Identity.new(mal)
    doc = {"_id": mal, "type": "UserDetails", "username": "mallory", "uid": 3001, "root": root_of,
           "created_at": int(time.time()), **ident.public_fields()}
    return ident, doc


def _forged_shares(alice: dict, mal: Identity, fids: list[str]) -> list[dict]:
    """Shares naming the victim's nodes: unsigned, signed by the attacker in
    her name, and the attacker's own grant on her node."""
    out = []
    for n, fid in enumerate(fids):
        base = {"type": "Share", "fid": fid, "grantee": mal.user_id, "group": False,
                "perm": "READ,WRITE", "created_at": int(time.time())}
        unsigned = {**base, "_id": f"share-{fid}-{mal.user_id}", "owner": alice["_id"]}
        out.append(unsigned if n % 2 == 0 else sign_doc(mal.user_id, mal.sign, unsigned))
    own = {"type": "Share", "fid": alice["root"], "grantee": mal.user_id, "group": False, "perm": "READ",
           "created_at": int(time.time()), "_id": f"share-{alice['root']}-x{mal.user_id}",
           "owner": mal.user_id}
    out.append(sign_doc(mal.user_id, mal.sign, own))
    return out


def _fid(vault: Path, path: str) -> str:
    """The file id of alice's file at ``path``."""
    from fusevault.store.local import LocalStore
    from fusevault.vault.format.layout import open_layout
    from fusevault.vault.model import users
    from fusevault.vault.volume import Volume

    store = LocalStore(vault / "store.sqlite")
    try:
        user = next(u for u in store.iter_type("UserDetails") if u["username"] == "alice")
        volume = Volume.load(open_layout(vault), store, users.unlock(user, PASSPHRASE.encode()), user["root"])
        return volume.resolve(path.encode()).fid
    finally:
        store.close()


def _keys_for(vault: Path, user_id: str) -> list[Path]:
    return [p for p in vault.rglob("*.vfkey") if user_id in p.name or p.parent.name == user_id]


def _first_device(url: str, tmp_path: Path) -> Path:
    vault = tmp_path / "laptop"
    assert fusevault("init", vault, "--user", "alice").returncode == 0
    added = fusevault("peer", "add", "server", url, "--vault", vault, passphrase=None)
    assert added.returncode == 0, added.stderr
    return vault


def _settled(mnt: Path) -> bool:
    result = fusevault("sync", "status", mnt, "--json", passphrase=None)
    (mount,) = json.loads(result.stdout)["mounts"]
    (peer,) = mount["peers"]
    return peer["error"] is None and peer["pending_up"] == 0 and peer["last_contact"] is not None


def test_a_forged_share_from_the_server_gets_no_key(couchdb_url: str, tmp_path: Path) -> None:
    vault = _first_device(couchdb_url, tmp_path)
    server = adversary.Server(couchdb_url)
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "docs").mkdir()
        (mnt / "docs" / "secret.txt").write_text("the plan")
        (mnt / "top.txt").write_text("top")
        wait_for(lambda: _settled(mnt), "the first push")
    alice = _user(vault, "alice")
    folder = _fid(vault, "docs")
    mal, mal_doc = _mallory(alice["root"])
    server.put(mal_doc)
    for doc in _forged_shares(alice, mal, [alice["root"], folder]):
        server.put(doc)

    with mounted(vault, mnt):  # the victim's unlock (fill_missing), then writes (new files' keys)
        wait_for(lambda: _settled(mnt) and docs_of(vault, "Share"), "the forged shares to arrive")
        (mnt / "new.txt").write_text("made after the forgery")
        (mnt / "docs" / "more.txt").write_text("more")
        (mnt / "top.txt").write_text("top, changed")
        wait_for(lambda: _settled(mnt), "the push after the writes")
        assert _keys_for(vault, mal.user_id) == []
        assert not [d for d in server.all("FileKey") if mal.user_id in d["_id"]]
        wait_for(lambda: "refused share" in _status(mnt), "the forged shares to be refused")
        assert sorted(os.listdir(mnt)) == ["docs", "new.txt", "top.txt"]  # still serving
        assert (mnt / "docs" / "secret.txt").read_text() == "the plan"
        status = _status(mnt)
        assert "WARNING" in status and "refused share" in status
    with mounted(vault, mnt):  # an unlock with the forgeries already in the store
        (mnt / "docs" / "third.txt").write_text("third")
        wait_for(lambda: _settled(mnt), "the push after the writes")
        assert "refused share" in _status(mnt)
        assert (mnt / "top.txt").read_text() == "top, changed"
    assert "refused share" in _log()
    assert _keys_for(vault, mal.user_id) == []
    assert not [d for d in server.all("FileKey") if mal.user_id in d["_id"]]
    assert not [d for d in docs_of(vault, "FileKey") if mal.user_id in d["_id"]]


def test_a_forged_group_membership_gets_no_key(vault: Path, tmp_path: Path) -> None:
    _admin(vault, "group", "add", "team", "--owner", "alice")
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "proj").mkdir()
        (mnt / "proj" / "plan.txt").write_text("step one")
        assert fusevault("share", mnt / "proj", "--with", "@team", "--perm", "READ").returncode == 0
    alice = _user(vault, "alice")
    mal, mal_doc = _mallory(alice["root"])
    (group,) = adversary.docs(vault, "Group")
    # The group's owner's signature stays on the document: it no longer holds.
    adversary.put(vault, mal_doc, {**group, "users": {**group["users"], mal.user_id: "READ,WRITE"}})

    with mounted(vault, mnt):
        (mnt / "proj" / "later.txt").write_text("written after the forgery")
        assert _keys_for(vault, mal.user_id) == []
        wait_for(lambda: "refused group" in _status(mnt), "the forged group to be refused")
        assert (mnt / "proj" / "plan.txt").read_text() == "step one"
        assert sorted(os.listdir(mnt / "proj")) == ["later.txt", "plan.txt"]
    assert "refused group" in _log()
    assert _keys_for(vault, mal.user_id) == []
    assert not list((vault / "groups" / group["_id"]).rglob(f"{mal.user_id}.vfkey"))


def test_a_replaced_public_key_of_a_pinned_user_receives_nothing(vault: Path, tmp_path: Path) -> None:
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):  # alice meets bob: his keys are pinned
        (mnt / "notes.txt").write_text("for bob")
    bob = _user(vault, "bob")
    genuine = doc_fingerprint(bob)
    # The attacker replaces bob's keys by theirs (signed with their key, so "self-signed").
    evil = Identity.new(bob["_id"])
    forged = sign_doc(bob["_id"], evil.sign, {**bob, **evil.public_fields()})
    adversary.put(vault, forged)

    with mounted(vault, mnt):
        shared = fusevault("share", mnt / "notes.txt", "--with", "bob", "--perm", "READ")
        assert shared.returncode == 0, shared.stderr
        (path,) = list((vault / "users" / bob["_id"] / "shared").glob("*.vfkey"))
        record = json.loads(path.read_bytes())
        fid = path.name[:-6].split("_", 1)[1]
        with pytest.raises(VaultError):  # not sealed to the new key
            open_file_key(evil, _user(vault, "alice")["_id"], fid, record["epoch"],
                          base64.b64decode(record["key"]))
        assert f"bob: key fingerprint {genuine}" in shared.stdout
        status = _status(mnt)
        assert "WARNING" in status and "keys of user 'bob' changed" in status
        assert (mnt / "notes.txt").read_text() == "for bob"
    assert "keys of user 'bob' changed" in _log()
    shown = _admin(vault, "user", "show", "bob")
    assert "WARNING" in shown.stdout and genuine in shown.stdout
    shown = json.loads(_admin(vault, "user", "show", "bob", "--json").stdout)
    assert shown["pinned"] == genuine and not shown["matches_pin"]
    # After checking with bob out of band, alice re-pins (here: to the new key).
    wrong = fusevault("user", "trust", "bob", "--fingerprint", genuine, "--vault", vault)
    assert wrong.returncode != 0 and "not the one given" in wrong.stderr
    new = json.loads(_admin(vault, "user", "show", "bob", "--json").stdout)["fingerprint"]
    assert fusevault("user", "trust", "bob", "--fingerprint", new, "--vault", vault).returncode == 0
    assert json.loads(_admin(vault, "user", "show", "bob", "--json").stdout)["matches_pin"]


def test_a_forged_key_with_a_higher_epoch_does_not_replace_the_genuine_one(couchdb_url: str,
                                                                          tmp_path: Path) -> None:
    vault = _first_device(couchdb_url, tmp_path)
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    server = adversary.Server(couchdb_url)
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "notes.txt").write_text("for bob")
        assert fusevault("share", mnt / "notes.txt", "--with", "bob", "--perm", "READ").returncode == 0
        wait_for(lambda: _settled(mnt) and server.all("FileKey"), "the key to reach the server")
    bob = _user(vault, "bob")
    (path,) = list((vault / "users" / bob["_id"] / "shared").glob("*.vfkey"))
    genuine = path.read_bytes()
    (key_doc,) = server.all("FileKey")
    # Sealed to bob's real key, by the server, with a DEK of its choosing.
    from fusevault.crypto.identity import public_box, seal_file_key

    alice = _user(vault, "alice")
    fid = path.name[:-6].split("_", 1)[1]
    epoch = key_doc["epoch"] + 5
    sealed = seal_file_key(public_box(bob), bob["_id"], alice["_id"], fid, epoch, os.urandom(32))
    server.put({**key_doc, "epoch": epoch, "key": b64e(sealed)})
    with mounted(vault, mnt):
        wait_for(lambda: _settled(mnt), "the pull of the forged key")
        assert path.read_bytes() == genuine  # not replaced on disk
        wait_for(lambda: "not signed by the file's owner" in _status(mnt), "the forged key to be refused")
        wait_for(lambda: _settled(mnt) and server.get(key_doc["_id"])["epoch"] == key_doc["epoch"],
                 "the genuine key to replace the forged document on the server")
        assert (mnt / "notes.txt").read_text() == "for bob"
    assert "not signed by the file's owner" in _log()
    assert path.read_bytes() == genuine
    assert sharing.read_key(path).epoch == key_doc["epoch"]


# --- replayed grants (vault/model/freshness.py): a genuinely signed body put back after it was revoked


def _bob_opens(vault: Path, path: Path, owner: str, fid: str) -> bool:
    """Whether the key at ``path`` is of the file's current epoch and opens for bob."""
    from fusevault.vault.model import users

    bob = users.unlock(_user(vault, "bob"), BOB.encode())
    try:
        found = sharing.read_key(path)
        return found is not None and found[0] == adversary.get(vault, fid)["epoch"] and bool(
            open_file_key(bob.identity, owner, fid, found[0], found[1]))
    except (VaultError, OSError):
        return False


def shared_then_unshared(vault: Path, mnt: Path) -> tuple[dict, str, Path, dict]:
    """alice's notes.txt shared READ with bob, then unshared: (alice, fid, bob's key file path, the
    genuine Share body she signed before the unshare)."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    with mounted(vault, mnt):
        (mnt / "notes.txt").write_text("genuine notes")
        assert fusevault("share", mnt / "notes.txt", "--with", "bob", "--perm", "READ").returncode == 0
    alice, bob = _user(vault, "alice"), _user(vault, "bob")
    fid = _fid(vault, "notes.txt")
    path = vault / "users" / bob["_id"] / "shared" / f"{alice['_id']}_{fid}.vfkey"
    old = next(d for d in docs_of(vault, "Share") if d["fid"] == fid)  # genuine, signed by alice
    with mounted(vault, mnt):
        done = fusevault("unshare", mnt / "notes.txt", "--with", "bob")
        assert done.returncode == 0, done.stderr
    return alice, fid, path, old


def test_a_share_replayed_after_unshare_gets_no_new_key(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    alice, fid, path, old = shared_then_unshared(vault, mnt)
    assert adversary.get(vault, fid)["epoch"] > 0 and not _bob_opens(vault, path, alice["_id"], fid)

    adversary.put(vault, old)  # the server keeps the old body and puts it back
    with mounted(vault, mnt):
        (mnt / "notes.txt").write_text("written after bob was revoked")
        assert not _bob_opens(vault, path, alice["_id"], fid), "the replayed Share sealed the new key"
        status = _status(mnt)
        assert "WARNING" in status and "a replay" in status
        assert "nothing is shared" in fusevault("shares", "--mount", mnt, passphrase=None).stdout
        assert (mnt / "notes.txt").read_text() == "written after bob was revoked"
        # Sharing again is a newer signing: it counts.
        assert fusevault("share", mnt / "notes.txt", "--with", "bob", "--perm", "READ").returncode == 0
        assert _bob_opens(vault, path, alice["_id"], fid)
    assert "a replay" in _log()


def test_a_group_replayed_after_member_remove_gets_no_new_keys(vault: Path, tmp_path: Path) -> None:
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    _admin(vault, "group", "add", "team", "--owner", "alice")
    _admin(vault, "group", "member", "add", "team", "bob", "--perm", "READ")
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "proj").mkdir()
        (mnt / "proj" / "plan.txt").write_text("step one")
        assert fusevault("share", mnt / "proj", "--with", "@team", "--perm", "READ").returncode == 0
    (old,) = adversary.docs(vault, "Group")
    bob = _user(vault, "bob")
    _admin(vault, "group", "member", "remove", "team", "bob")
    with mounted(vault, mnt):
        (mnt / "proj" / "plan.txt").write_text("step two, after bob left")
    alice, fid = _user(vault, "alice"), _fid(vault, "proj/plan.txt")
    path = vault / "groups" / old["_id"] / "own" / fid / "keys" / f"{bob['_id']}.vfkey"
    assert adversary.get(vault, fid)["epoch"] > 0 and not _bob_opens(vault, path, alice["_id"], fid)

    adversary.put(vault, old)  # the body signed while bob was a member, put back
    with mounted(vault, mnt):
        (mnt / "proj" / "plan.txt").write_text("step three")
        assert not _bob_opens(vault, path, alice["_id"], fid), "the removed member holds the new key again"
        status = _status(mnt)
        assert "WARNING" in status and "a replay" in status
        assert (mnt / "proj" / "plan.txt").read_text() == "step three"
    assert "a replay" in _log()


def notes_shared_with_bob(vault: Path, mnt: Path, perm: str) -> dict:
    """bob added; alice's notes.txt written and shared with him (``perm``): its Share document."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    with mounted(vault, mnt):
        (mnt / "notes.txt").write_text("genuine notes")
        assert fusevault("share", mnt / "notes.txt", "--with", "bob", "--perm", perm).returncode == 0
    (share,) = adversary.docs(vault, "Share")
    return share


def test_a_share_replayed_after_a_downgrade_to_read_does_not_grant_write(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    old = notes_shared_with_bob(vault, mnt, "READ,WRITE")
    with mounted(vault, mnt):
        assert fusevault("share", mnt / "notes.txt", "--with", "bob", "--perm", "READ").returncode == 0
    adversary.put(vault, old)  # READ,WRITE again
    with mounted(vault, mnt):
        listed = fusevault("shares", "--mount", mnt, passphrase=None).stdout
        assert "READ,WRITE" not in listed, listed
        status = _status(mnt)
        assert "WARNING" in status and "a replay" in status
        assert (mnt / "notes.txt").read_text() == "genuine notes"
