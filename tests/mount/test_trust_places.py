"""Where the owner's files are: a WRITE grantee's document that moves one of them is judged against
the place this device last saw it in (the ledger's ``where``), at unlock as while mounted.

Before, at unlock the tree was built from the documents themselves, so the place a file came from was
unknown: bob, who holds WRITE on alice's folder team, could sign a document putting her private folder
in team (with a DEK of his own, sealed to her as ``owner_dek``: a folder has no versions that would
show it had another key) or give her file a second name there, and her next unlock sealed the keys of
everything under it to him (``fill_missing``).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import adversary
import trio
from conftest import fusevault, mounted
from inprocess.conftest import (  # noqa: F401  (fixtures)
    ROOT,
    shared,
    template_vault,
    vault_copy,
)
from inprocess.test_two_users import _walk

from fusevault.crypto import aead
from fusevault.crypto.identity import seal_file_key
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64e
from fusevault.vault.model.ledger import ledger_path
from fusevault.vault.model.nodes import open_node_attrs, open_node_doc
from mount.test_check import flip_enc
from mount.test_trust_attack_round4 import _bobs_dek
from mount.test_trust_attack_round7 import ALICE, BOB, _ask, _keys_for, _planted, _share
from mount.test_trust_writes import BOB as BOB_SECRET
from mount.test_trust_writes import CAROL, PASSPHRASE, _admin, _key, _node_fid, _user


def _bobs_move(vault: Path, fid: str, links: list) -> None:
    """bob signs a node document of alice's ``fid`` naming ``links``, under a DEK he picks and seals to
    alice's public key (``owner_dek``, epoch 0: what a grantee's new file carries).  The attributes are
    alice's (the test reads them with her key for brevity: bob could write any he likes)."""
    doc = adversary.get(vault, fid)
    alice = _key(vault, "alice", PASSPHRASE)
    _, attrs = open_node_doc(doc, alice)
    attrs["links"] = links
    attrs["seq"] = ["bobs-device", 1]  # a device of his: never seen here, so no rollback
    bob = _key(vault, "bob", BOB_SECRET)
    dek = aead.new_key()
    owner = doc["owner"]
    public = alice.identity.box.public_key()
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig", "en_file_dek")}
    body["owner_dek"] = b64e(seal_file_key(public, owner, owner, fid, 0, dek))
    body["epoch"] = 0
    body["enc"] = b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", fid)))
    adversary.put(vault, sign_doc(bob.user_id, bob.identity.sign, body))


def test_a_folder_writer_cannot_move_the_owners_private_folder_into_the_shared_one(
        vault: Path, tmp_path: Path) -> None:
    """alice keeps private/diary.txt and shares team with bob (WRITE).  bob signs a document of private
    (a key of his own for it) that puts it in team.  alice mounts again.  Safe: no key of diary.txt is
    sealed to bob, and her status names the refused move."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB_SECRET)
    bob = _user(vault, "bob")["_id"]
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "team").mkdir()
        (mnt / "private").mkdir()
        (mnt / "private" / "diary.txt").write_text("alice's own")
        (mnt / "team" / "plan.txt").write_text("the plan")
        assert _share(mnt, "team", "bob", "WRITE") is not None
    diary, team, private = (_node_fid(vault, "alice", n) for n in ("diary.txt", "team", "private"))
    assert not _keys_for(vault, bob, diary)
    _bobs_move(vault, private, [[team, "private"]])
    with mounted(vault, mnt):
        status = fusevault("status", mnt).stdout
        print(status[-3000:])
        print(sorted(p.name for p in (mnt / "team").iterdir()))
    assert not _keys_for(vault, bob, diary), "diary.txt's key was sealed to bob"


def test_a_folder_writers_real_move_inside_the_folder_is_taken_without_an_alarm(
        vault: Path, tmp_path: Path) -> None:
    """The same folder, used as it is meant to be: bob (WRITE on team) moves team/plan.txt into
    team/sub through his own mount, and writes it.  alice mounts again.  Safe and quiet: plan.txt is in
    team/sub with bob's bytes, her status has no warning, and carol, who is given team afterwards,
    gets plan.txt's key (its place is one the writer was judged to move it to)."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB_SECRET)
    _admin(vault, "user", "add", "carol", "--uid", "2002", passphrase=CAROL)
    carol = _user(vault, "carol")["_id"]
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "team" / "sub").mkdir(parents=True)
        (mnt / "team" / "plan.txt").write_text("the plan")
        assert _share(mnt, "team", "bob", "WRITE") is not None
    with mounted(vault, mnt, "--user", "bob", passphrase=BOB_SECRET):
        team = mnt / "shared" / "alice" / "team"
        (team / "plan.txt").rename(team / "sub" / "plan.txt")
        (team / "sub" / "plan.txt").write_text("the plan, moved and written by bob")
    plan = _node_fid(vault, "alice", "plan.txt")
    with mounted(vault, mnt):
        status = fusevault("status", mnt).stdout
        print(status[-3000:])
        assert (mnt / "team" / "sub" / "plan.txt").read_text() == "the plan, moved and written by bob"
        assert _share(mnt, "team", "carol", "READ") is not None
    assert "WARNING" not in status
    assert _keys_for(vault, carol, plan), "the file bob moved inside team got no key for team's new reader"


def test_a_writer_of_one_file_cannot_give_it_a_name_in_another_shared_folder(
        vault: Path, tmp_path: Path) -> None:
    """alice shares notes.txt (in her root) with bob (WRITE on the file alone) and her folder club with
    carol (READ).  bob signs a node document of notes.txt that keeps its name in the root and adds one
    in club.  alice mounts again.  Safe: no key of notes.txt is sealed to carol."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB_SECRET)
    _admin(vault, "user", "add", "carol", "--uid", "2002", passphrase=CAROL)
    carol = _user(vault, "carol")["_id"]
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "club").mkdir()
        (mnt / "club" / "agenda.txt").write_text("for carol")
        (mnt / "notes.txt").write_text("for bob to edit, never for carol")
        assert _share(mnt, "notes.txt", "bob", "WRITE") is not None
        assert _share(mnt, "club", "carol", "READ") is not None
    notes, club = (_node_fid(vault, "alice", n) for n in ("notes.txt", "club"))
    root = adversary.get(vault, notes)  # alice's own document: its first link is her root
    doc_links = open_node_doc(root, _key(vault, "alice", PASSPHRASE))[1]["links"]
    dek = _bobs_dek(vault, notes)
    doc = adversary.get(vault, notes)
    attrs = open_node_attrs(doc, dek)
    attrs["links"] = [*doc_links, [club, "notes.txt"]]
    attrs["seq"] = ["bobs-device", 1]
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig")}
    body["enc"] = b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", notes)))
    bob = _key(vault, "bob", BOB_SECRET)
    adversary.put(vault, sign_doc(bob.user_id, bob.identity.sign, body))
    assert not _keys_for(vault, carol, notes)
    with mounted(vault, mnt):
        status = fusevault("status", mnt).stdout
        print(status[-3000:])
    assert not _keys_for(vault, carol, notes), "notes.txt's key was sealed to carol"
    assert "no share there gets its key" in status


def test_a_folder_writer_cannot_bring_the_owners_folder_back_from_the_trash_into_his_folder(
        shared) -> None:  # noqa: F811
    """While alice is mounted: her folder private (in her root) goes to the trash, and the kernel
    forgets it (her tree no longer holds it); bob (WRITE on team) signs a document of it, not deleted,
    named in team, under a key of his own sealed to her.  Safe: her tree refuses it (the folder it
    was last seen in, her root, is not his to write): team lists no private."""

    async def attack() -> list[bytes]:
        drive = shared.drive
        alice = shared.volumes["alice"]
        await drive.mkdir(ROOT, b"team", stat.S_IFDIR | 0o755, ALICE)
        made = await drive.mkdir(ROOT, b"private", stat.S_IFDIR | 0o700, ALICE)
        await _ask(shared, "share", "team", "WRITE")
        await _walk(drive, b"shared/alice/team", BOB)
        root = alice.tree.node(ROOT)
        team, private = (alice.tree.node(root.children[name]) for name in (b"team", b"private"))
        fid, team_fid = private.fid, team.fid
        await drive.rmdir(ROOT, b"private", ALICE)
        await drive.forget([(made.st_ino, private.lookups)])  # the kernel's FORGET: the tree drops it
        assert alice.tree.find(fid) is None
        doc = shared.store.get(fid)
        assert doc["delete"], "the removal is committed (a shared mount groups no commit)"
        _, attrs = open_node_doc(doc, alice.key)
        attrs.update(links=[[team_fid, "private"]], seq=["bobs-device", 1])
        bob = shared.volumes["bob"].key
        dek = aead.new_key()
        body = {k: v for k, v in doc.items() if k not in ("_rev", "sig", "en_file_dek")}
        body.update(delete=False, epoch=0, owner_dek=b64e(seal_file_key(
            alice.key.identity.box.public_key(), alice.key.user_id, alice.key.user_id, fid, 0, dek)))
        body["enc"] = b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", fid)))
        _planted(shared, sign_doc(bob.user_id, bob.identity.sign, body))
        await trio.sleep(0)
        return sorted(alice.tree.node(team.ino).children or {})

    assert b"private" not in trio.run(attack), "bob brought alice's private folder into team"


def test_a_folder_writer_cannot_delete_the_owners_private_file(vault: Path, tmp_path: Path) -> None:
    """alice keeps private/diary.txt and shares team with bob (WRITE).  bob copies diary.txt's node
    document, marks it deleted and signs it (a deletion needs no key).  alice mounts again.  Safe: the
    deletion is refused and said (he holds no WRITE where the file was): diary.txt is still there, with
    its bytes."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB_SECRET)
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "team").mkdir()
        (mnt / "private").mkdir()
        (mnt / "private" / "diary.txt").write_text("alice's own")
        assert _share(mnt, "team", "bob", "WRITE") is not None
    diary = _node_fid(vault, "alice", "diary.txt")
    doc = adversary.get(vault, diary)
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig")}
    body["delete"] = True
    bob = _key(vault, "bob", BOB_SECRET)
    adversary.put(vault, sign_doc(bob.user_id, bob.identity.sign, body))
    with mounted(vault, mnt):
        status = fusevault("status", mnt).stdout
        print(status[-3000:])
        assert (mnt / "private" / "diary.txt").read_text() == "alice's own"
    assert "who holds no WRITE where it was" in status


def test_a_file_repaired_where_only_an_old_version_says_it_was_gets_no_key_there(
        vault: Path, tmp_path: Path) -> None:
    """Round 9b's repair attack (tests/mount/test_trust_attack_round9b.py) on a device that does not know
    where the file was (its ledger lost): plan.txt, written in S and moved to P, then S shared with bob
    (READ); its node document damaged; `check --repair` can only put it back where its version says, in
    S.  Safe: it is kept behind there: bob gets no key to it, at the repair's new key or at the next
    unlock."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB_SECRET)
    bob = _user(vault, "bob")["_id"]
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "S").mkdir()
        (mnt / "P").mkdir()
        (mnt / "S" / "plan.txt").write_text("alice's private plan")
        (mnt / "S" / "plan.txt").rename(mnt / "P" / "plan.txt")
        assert _share(mnt, "S", "bob", "READ") is not None
    fid = _node_fid(vault, "alice", "plan.txt")
    alice = _user(vault, "alice")["_id"]
    ledger = ledger_path(vault, alice)  # named by the folder and the user (vault/model/renamed.py)
    ledger.unlink()
    flip_enc(vault, fid)
    done = fusevault("check", vault, "--repair", "--json")
    print(done.stdout[-3000:], done.stderr[-2000:])
    assert json.loads(done.stdout)["repaired"] is True
    with mounted(vault, mnt):
        assert sorted(os.listdir(mnt / "S")) == ["plan.txt"]  # where its version says: still hers
        assert (mnt / "S" / "plan.txt").read_text() == "alice's private plan"
    assert not _keys_for(vault, bob, fid), "bob was given plan.txt's key"
