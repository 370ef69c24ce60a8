"""Issue 22, attack round 7: fusevault as it is at fe65463 (main), attacked through its entry points.

The attackers: a writer of the vault folder (store.sqlite, ``.vf`` files) or of the CouchDB
database, with no key of the owner; and users of the vault (a recipient whose share ended).
Each test asserts the SAFE behaviour (the holes were marked ``xfail(strict=True)`` until closed).

The shared-mount attacks run in-process (tests/inprocess/conftest.py's ``shared``: the mount's
``Drive`` with a seat for alice and one for bob over one store, each taking in what the other
commits, exactly as fs/shared.py composes them).  A document another process writes into the
store is taken in as fs/shared.py ``_watch_store`` hands it over: ``Arrivals.committed(None, ...)``,
that is ``absorb_arrivals`` for every unlocked seat.

Found at fe65463: 16 holes (in 9 kinds, below), all closed the same day (each test failed before its
fix; docs/SECURITY.md names them):
- (1) ``Tree.vouched`` binds (signer, head) only and outlives the share: bob's own vouched node document
  put back verbatim (no key needed) rolls alice's file back after his share ended; one he signs with that
  head moves her file out of the shared folder, or (at a newer epoch, ``owner_dek``) gives her file a DEK
  he chose, under which her next write is sealed.
- (5) the ledger knows a seq, not a place: an old node document from when a file sat in a folder shared
  since makes ``fill_missing`` seal its key to that folder's recipient.
- (3) a pinned user (group) takes the name of another pinned user (group) whose document is gone, by
  signing their own document again under that name: ``share --with carol`` (``@team``) seals to bob.
- (2) ``unshare`` with the grantee's user or group document withheld: "no user/group", nothing revoked.
- ``may_write`` asks WRITE of the union of grants over the document's parents, and ``covering``
  follows the first link only: a WRITE recipient adds a link to the owner's file anywhere in her tree,
  links a shared folder inside itself (a cycle: her ``unshare`` never finishes), and a READ recipient
  whose file is linked first into a folder he may write has his version served to the owner.
- a withheld member's document makes the owner sign them out of her group.
- a recipient's node document with a huge mode (2**40) or key epoch (2**64) stops the owner's mount
  (OverflowError, not CorruptData), or (READ) leads to her acknowledged write vanishing; a READ
  recipient's refused document (or, from a store writer with no key, a replayed one of a writer whose
  share ended) hides the owner's new file of that name at the next unlock.
Holds: a READ recipient's seat commits nothing, so vouches for nothing; a pinned user renamed to the name
of a pinned user still present gets no key (two claims: refused).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import adversary
import pyfuse3
import pytest
import trio
from attack_scenes import (
    ALICE,
    BOB,
    add_team,
    add_users,
    alices_files,
    ask,
    bobs_node_doc,
    group_doc,
    mounts_again,
    planted,
    read_back,
    recipients_dek,
    resigned,
    resigned_by_bob,
    rewrite,
    scene,
    share,
    team_with_plan,
)
from conftest import force_unmount, fusevault, mounted
from inprocess.conftest import (  # noqa: F401  (fixtures)
    ALICE_UID,
    FILE,
    ROOT,
    shared,
    template_vault,
    vault_copy,
)
from inprocess.test_two_users import _read, _walk, _write

from fusevault.crypto import aead
from fusevault.crypto.identity import seal_file_key
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64e
from fusevault.vault.model.nodes import open_node_attrs, open_node_doc
from mount.test_shared_admission import PLANTED, _bobs_forgery
from mount.test_shared_mount import SECRETS
from mount.test_trust_attack_round4 import _alice_dek, _bobs_dek
from mount.test_trust_writes import BOB as BOB_SECRET
from mount.test_trust_writes import _key, _node_fid, _user

# The scenes (alice's files and shares, bob's signed documents) are built in tests/attack_scenes.py; these
# names stay for the test files that import them from here (round 9a, tests/inprocess/test_link_grants.py).
_ask, _bobs_node_doc, _planted, _rewrite = ask, bobs_node_doc, planted, rewrite
_resigned_by_bob, _share = resigned_by_bob, share


# --- (1) the versions another seat vouched for (Tree.vouched)


def test_a_revoked_writer_cannot_replay_his_vouched_version_over_the_owners_later_one(
        shared) -> None:  # noqa: F811
    """alice shares log.txt with bob (WRITE); bob saves a version through his seat (alice's tree
    notes it as vouched for: (bob, its head)).  alice unshares (the file gets a new key) and writes
    again.  bob, who can write the vault folder, puts his own old node document back (his signature,
    his head, a seq the ledger has seen but not passed).  Safe: alice's file keeps her later bytes."""

    async def attack() -> tuple[bytes, bytes]:
        drive = shared.drive
        alice = shared.volumes["alice"]
        mine = await _write(drive, ROOT, b"log.txt", b"alice v1\n", ALICE)
        await ask(shared, "share", "log.txt", "WRITE")
        theirs = await _walk(drive, b"shared/alice/log.txt", BOB)
        await rewrite(drive, theirs.st_ino, b"bob's version\n", BOB)
        (hers,) = [node for node in alice.tree.nodes() if node.is_reg]
        kept = shared.store.get(hers.fid)  # bob's node document, as he signed it
        assert await _read(drive, mine.st_ino, ALICE) == b"bob's version\n"
        await ask(shared, "unshare", "log.txt")
        await rewrite(drive, mine.st_ino, b"alice, after bob's share ended\n", ALICE)
        before = await _read(drive, mine.st_ino, ALICE)
        planted(shared, kept)
        await trio.sleep(0)
        return before, await _read(drive, mine.st_ino, ALICE)

    before, after = trio.run(attack)
    assert before == b"alice, after bob's share ended\n"
    assert after == before, f"alice's file was rolled back to bob's version: {after!r}"



def test_a_writer_cannot_move_the_owners_file_out_of_the_shared_folder_by_reusing_a_vouched_head(
        shared) -> None:  # noqa: F811
    """alice shares her folder team with bob (WRITE); bob saves team/plan.txt through his seat (vouched
    for: (bob, its head)).  bob then writes into the store a node document of plan.txt signed by him, with
    that same head, that puts it in alice's own root folder (where he holds no WRITE).  Safe: alice's
    tree refuses the move: plan.txt stays in team/ and nothing named plan.txt shows in her root."""

    async def attack() -> list[bytes]:
        drive = shared.drive
        alice = shared.volumes["alice"]
        folder, _ = await team_with_plan(shared, plan=b"v1", diary=None, walk=False)
        team = await _walk(drive, b"shared/alice/team", BOB)
        theirs = await drive.lookup(team.st_ino, b"plan.txt", BOB)
        await rewrite(drive, theirs.st_ino, b"v2 by bob", BOB)
        (plan,) = [node for node in alice.tree.nodes() if node.is_reg]
        root_fid = alice.tree.node(ROOT).fid
        planted(shared, bobs_node_doc(shared, plan.fid, {"links": [[root_fid, "moved-by-bob.txt"]]}))
        await trio.sleep(0)
        found = []
        for parent in (ROOT, folder.st_ino):
            for name in (b"plan.txt", b"moved-by-bob.txt"):
                try:
                    await drive.lookup(parent, name, ALICE)
                    found.append(name if parent == folder.st_ino else b"/" + name)
                except pyfuse3.FUSEError:
                    pass
        return found

    assert trio.run(attack) == [b"plan.txt"], "bob moved alice's file where he holds no WRITE"


def test_a_revoked_writer_cannot_give_the_owners_file_a_key_he_chose_with_a_vouched_head(
        shared) -> None:  # noqa: F811
    """As above, bob's share of log.txt ended (the file has a new key) after a save of his was vouched
    for.  bob writes into the store a node document signed by him with that head, at the file's current
    key epoch, whose DEK is one he made and sealed to alice's public key (``owner_dek``, which anyone
    can).  alice then saves new contents.  Safe: they are not sealed under bob's DEK."""
    chosen = aead.new_key()

    async def attack() -> bytes:
        drive = shared.drive
        alice, bob = shared.volumes["alice"], shared.volumes["bob"]
        mine = await _write(drive, ROOT, b"log.txt", b"alice v1\n", ALICE)
        await ask(shared, "share", "log.txt", "WRITE")
        theirs = await _walk(drive, b"shared/alice/log.txt", BOB)
        await rewrite(drive, theirs.st_ino, b"bob's version\n", BOB)
        (hers,) = [node for node in alice.tree.nodes() if node.is_reg]
        fid, old = hers.fid, bob.find(hers.fid).dek
        kept = shared.store.get(fid)
        await ask(shared, "unshare", "log.txt")
        epoch = hers.epoch + 1  # above the sidecar's: it is written again from the documents
        attrs = {**open_node_attrs(kept, old), "epoch": epoch, "seq": ["b0b0b0b0b0b0b0b0", 1],
                 "manifest": None, "size": 0}  # the head stays (vouched), its manifest is not named
        body = {k: v for k, v in kept.items() if k not in ("_rev", "sig", "en_file_dek")}
        public = alice.key.identity.box.public_key()  # alice's public_box, in her user document
        body.update(epoch=epoch, owner_dek=b64e(seal_file_key(public, alice.key.user_id, alice.key.user_id,
                                                              fid, epoch, chosen)),
                    enc=b64e(aead.seal(chosen, json.dumps(attrs).encode(), aead.ad("node", fid))))
        planted(shared, sign_doc(bob.key.user_id, bob.key.identity.sign, body))
        await trio.sleep(0)
        await rewrite(drive, mine.st_ino, b"alice's next secret, never for bob\n", ALICE)
        assert await _read(drive, mine.st_ino, ALICE) == b"alice's next secret, never for bob\n"
        dek, _ = open_node_doc(shared.store.get(fid), alice.key)
        return dek

    assert trio.run(attack) != chosen, "alice's new contents are sealed under the DEK bob chose"




def test_a_read_recipients_seat_commits_nothing_so_vouches_for_nothing(shared) -> None:  # noqa: F811
    """Holds: bob (READ on alice's folder team) tries, through his seat, an xattr on her file and a new file
    in her folder, then saves everything.  Both are refused, nothing he signed is in the store, and alice's
    tree holds no version vouched for by his seat (``Tree.vouched`` stays empty)."""

    async def attack() -> tuple[list[str], dict, set]:
        drive = shared.drive
        alice, bob = shared.volumes["alice"], shared.volumes["bob"]
        folder = await drive.mkdir(ROOT, b"team", stat.S_IFDIR | 0o755, ALICE)
        await _write(drive, folder.st_ino, b"log.txt", b"alice v1\n", ALICE)
        await ask(shared, "share", "team", "READ")
        theirs = await _walk(drive, b"shared/alice/team/log.txt", BOB)
        team = await _walk(drive, b"shared/alice/team", BOB)
        assert await _read(drive, theirs.st_ino, BOB) == b"alice v1\n"
        refused = []
        for name, call in (("setxattr", drive.setxattr(theirs.st_ino, b"user.x", b"y", BOB)),
                           ("create", drive.create(team.st_ino, b"new.txt", FILE, os.O_RDWR, BOB))):
            try:
                await call
            except pyfuse3.FUSEError:
                refused.append(name)
        assert await bob.save_all() == 0
        docs = [shared.store.get(n.fid) or {} for n in alice.tree.nodes() if n.dek]
        signers = {doc.get("sig", {}).get("by") for doc in docs}
        return refused, dict(alice.tree.vouched), signers

    refused, vouched, signers = trio.run(attack)
    assert refused == ["setxattr", "create"] and not vouched
    assert shared.volumes["bob"].key.user_id not in signers


# --- a WRITE recipient's own signed documents (no vouching involved)


def test_a_writer_cannot_add_a_link_to_the_owners_file_in_a_folder_he_may_not_write(
        shared) -> None:  # noqa: F811
    """alice shares her folder team with bob (WRITE).  bob, who can write the vault folder, writes into
    the store a node document of team/plan.txt signed by him that keeps its name in team and adds a second
    one in alice's root folder (where he holds no WRITE).  Safe: alice's root shows no new name."""

    async def attack() -> list[bytes]:
        drive = shared.drive
        alice = shared.volumes["alice"]
        await team_with_plan(shared, plan=b"v1", diary=None)
        (plan,) = [node for node in alice.tree.nodes() if node.is_reg]
        team = alice.tree.node(plan.links[0][0]).fid
        root_fid = alice.tree.node(ROOT).fid
        assert not alice.tree.vouched
        planted(shared, bobs_node_doc(shared, plan.fid, {
            "links": [[team, "plan.txt"], [root_fid, "planted-by-bob.txt"]]}))
        await trio.sleep(0)
        found = []
        for name in (b"planted-by-bob.txt",):
            try:
                await drive.lookup(ROOT, name, ALICE)
                found.append(name)
            except pyfuse3.FUSEError:
                pass
        return found

    assert trio.run(attack) == [], "bob put a name in alice's root folder, where he holds no WRITE"



def test_a_writer_cannot_link_the_shared_folder_inside_itself(shared) -> None:  # noqa: F811
    """alice shares her folder team (with team/sub/plan.txt) with bob (WRITE).  bob, who can write the vault
    folder, signs a node document of team itself that keeps its name in alice's root and adds one,
    ``loop``, in team/sub.  Safe: alice's tree takes no such link (a folder is never its own descendant)."""

    async def attack() -> bool:
        drive = shared.drive
        alice = shared.volumes["alice"]
        folder = await drive.mkdir(ROOT, b"team", stat.S_IFDIR | 0o755, ALICE)
        sub = await drive.mkdir(folder.st_ino, b"sub", stat.S_IFDIR | 0o755, ALICE)
        await _write(drive, sub.st_ino, b"plan.txt", b"v1", ALICE)
        await ask(shared, "share", "team", "WRITE")
        await _walk(drive, b"shared/alice/team/sub/plan.txt", BOB)
        root = alice.tree.node(ROOT)
        team = alice.tree.node(root.children[b"team"])
        inner = alice.tree.node(team.children[b"sub"])
        links = [[root.fid, "team"], [inner.fid, "loop"]]
        planted(shared, bobs_node_doc(shared, team.fid, {"links": links}))
        await trio.sleep(0)
        try:
            await _walk(drive, b"team/sub/loop/sub/loop/sub/plan.txt", ALICE)
        except pyfuse3.FUSEError:
            return False
        return True

    assert not trio.run(attack), "alice's folder team now lies inside itself (team/sub/loop is team)"


# --- the real mount, its command and the vault folder


def _keys_for(vault: Path, user_id: str, fid: str) -> list[Path]:
    """Key files (``.vfkey``) of ``fid`` sealed to ``user_id`` under the vault folder."""
    return [p for p in vault.rglob("*.vfkey")
            if user_id in str(p.relative_to(vault)) and fid in str(p.relative_to(vault))]


# --- (5) the ledger does not remember where a file was


def test_an_old_node_document_from_when_a_file_sat_in_a_folder_shared_since_gets_no_key_sealed(
        vault: Path, tmp_path: Path) -> None:
    """alice keeps secret.txt in proj/, then moves it to her root and writes it again; only then does
    she share proj with bob (READ).  The store writer puts back secret.txt's node document from when
    it sat in proj/ (a rollback: the ledger says so, but knows a seq, not a place).  alice mounts
    again (share_ops.resume seals keys nobody sealed yet: ``fill_missing``).  Safe: no key of
    secret.txt is ever sealed to bob (his key would open every version of it, the newest too)."""
    mnt = scene(vault, tmp_path, {"proj": None, "proj/secret.txt": "a secret while it sat in proj"})
    bob = _user(vault, "bob")["_id"]
    fid = _node_fid(vault, "alice", "secret.txt")
    old = adversary.get(vault, fid)
    with mounted(vault, mnt):
        (mnt / "proj" / "secret.txt").rename(mnt / "secret.txt")
        (mnt / "secret.txt").write_text("the newest secret: never for bob")
        (mnt / "proj" / "plan.txt").write_text("the plan bob may read")
        assert share(mnt, "proj", "bob") is not None
    assert not _keys_for(vault, bob, fid)
    adversary.put(vault, old)
    with mounted(vault, mnt):
        print(fusevault("status", mnt).stdout[-3000:])
        listed = sorted(p.name for p in (mnt / "proj").iterdir())
        print("proj holds:", listed)
    assert not _keys_for(vault, bob, fid), f"secret.txt's key was sealed to bob (proj lists {listed})"


# --- (3) a pinned user's name, held after their document is deleted


def test_a_pinned_user_cannot_take_the_name_of_another_pinned_user_whose_document_is_gone(
        vault: Path, tmp_path: Path) -> None:
    """alice meets bob and carol (both pinned).  bob, who can write the vault folder, deletes carol's
    user document and signs his own (his keys, his id) again with the username ``carol``.  alice shares
    notes.txt ``--with carol``: safe is a refusal, or at least nothing sealed to bob."""
    mnt = scene(vault, tmp_path, {"notes.txt": "for carol's eyes, and nobody else's",
                                  "other.txt": "shared once so that bob and carol are surely met and pinned"},
                [("other.txt", "bob", "READ"), ("other.txt", "carol", "READ")], users=("bob", "carol"))
    fid = _node_fid(vault, "alice", "notes.txt")
    bob, carol = _user(vault, "bob"), _user(vault, "carol")
    key = _key(vault, "bob", BOB_SECRET)
    renamed = {k: v for k, v in bob.items() if k not in ("_rev", "sig")}
    renamed["username"] = "carol"
    adversary.delete_row(vault, carol["_id"])
    adversary.put(vault, sign_doc(key.user_id, key.identity.sign, renamed))
    with mounted(vault, mnt):
        answer = share(mnt, "notes.txt", "carol")
    assert not _keys_for(vault, bob["_id"], fid), answer
    assert bob["_id"] not in {d.get("grantee") for d in adversary.docs(vault, "Share")
                              if d.get("fid") == fid and not d.get("_deleted")}, answer


def test_a_pinned_group_cannot_take_the_name_of_another_pinned_group_whose_document_is_gone(
        vault: Path, tmp_path: Path) -> None:
    """alice owns group ``team`` (carol a member); bob owns group ``bobs`` (alice met both: pinned).
    bob, who can write the vault folder, deletes the document of ``team`` and signs his own group again
    with the name ``team``.  alice shares notes.txt ``--with @team``: safe is a refusal, or at least
    nothing sealed to bob."""
    add_users(vault, "bob", "carol")
    add_team(vault, "carol")
    bob = _user(vault, "bob")
    key = _key(vault, "bob", BOB_SECRET)
    team = group_doc(vault, "team")
    bobs = {"_id": "e" * 32, "type": "Group", "groupname": "bobs", "owner": bob["_id"],
            "created_at": team["created_at"], "users": {bob["_id"]: "READ,WRITE"}}
    adversary.put(vault, sign_doc(key.user_id, key.identity.sign, bobs))
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "notes.txt").write_text("for the team alice made")
        (mnt / "other.txt").write_text("shared once so that team is surely met and pinned")
        assert share(mnt, "other.txt", "@team") is not None
        print(fusevault("group", "list", env={"FUSEVAULT_VAULT": str(vault)}).stdout)
    fid = _node_fid(vault, "alice", "notes.txt")
    adversary.delete_row(vault, team["_id"])
    adversary.put(vault, sign_doc(key.user_id, key.identity.sign, {**bobs, "groupname": "team"}))
    with mounted(vault, mnt):
        answer = share(mnt, "notes.txt", "@team")
    assert not _keys_for(vault, bob["_id"], fid), answer
    assert bobs["_id"] not in {d.get("grantee") for d in adversary.docs(vault, "Share")
                               if d.get("fid") == fid and not d.get("_deleted")}, answer


# --- (2) unshare when the store withholds what it names


def test_unshare_with_the_grantees_user_document_withheld_still_takes_the_key_back(
        vault: Path, tmp_path: Path) -> None:
    """alice shares notes.txt with bob (READ; bob pinned).  The store writer withholds bob's user document
    (deletes its row; the Share and bob's key file stay).  alice unshares ``--with bob`` (and, if that is
    refused, with bob's id), then writes.  Safe: what she writes afterwards is not under the DEK bob
    opened from his key file (the revoke happens, whatever the store withholds)."""
    mnt = scene(vault, tmp_path, {"notes.txt": "shared with bob for a while"},
                [("notes.txt", "bob", "READ")])
    bob = _user(vault, "bob")
    fid = _node_fid(vault, "alice", "notes.txt")
    kept = _bobs_dek(vault, fid)
    adversary.delete_row(vault, bob["_id"])
    with mounted(vault, mnt):
        for target in ("bob", bob["_id"]):
            done = fusevault("unshare", mnt / "notes.txt", "--with", target)
            print("unshare", target, done.returncode, done.stdout, done.stderr)
            if done.returncode == 0:
                break
        (mnt / "notes.txt").write_text("written after alice revoked bob: not for bob")
    assert _alice_dek(vault, fid) != kept, "alice's file is still under the key bob holds"


def test_unshare_with_the_groups_document_withheld_still_takes_the_key_back(
        vault: Path, tmp_path: Path) -> None:
    """alice shares notes.txt with her group ``team`` (bob a member).  The store writer withholds the
    group's document.  alice unshares ``--with @team`` (and, if refused, with the group's id), then writes.
    Safe: what she writes afterwards is not under the DEK bob opened from the group's key file."""
    add_users(vault, "bob")
    add_team(vault, "bob")
    team = group_doc(vault, "team")
    mnt = tmp_path / "mnt"
    alices_files(vault, mnt, {"notes.txt": "shared with the team for a while"},
                 [("notes.txt", "@team", "READ")])
    fid = _node_fid(vault, "alice", "notes.txt")
    (before,) = [p for p in vault.rglob("*.vfkey") if team["_id"] in str(p) and fid in str(p)
                 and _user(vault, "bob")["_id"] in p.name]
    adversary.delete_row(vault, team["_id"])
    with mounted(vault, mnt):
        for target in ("@team", "@" + team["_id"]):
            done = fusevault("unshare", mnt / "notes.txt", "--with", target)
            print("unshare", target, done.returncode, done.stdout, done.stderr)
            if done.returncode == 0:
                break
        (mnt / "notes.txt").write_text("written after alice revoked the team: not for bob")
    node = adversary.get(vault, fid)
    assert node is not None and node.get("epoch", 0) > 0, (
        f"alice's file is still under the key sealed for the team ({before.name}, epoch 0)")


def test_a_writer_cannot_add_a_link_to_the_owners_file_in_her_private_folder_at_unlock(
        vault: Path, tmp_path: Path) -> None:
    """The same through a real mount, taken in at unlock: alice shares team with bob (WRITE) and keeps
    private/.  bob signs a node document of team/plan.txt naming it in team and in private/.  Safe:
    alice's private/ lists nothing new."""
    mnt = scene(vault, tmp_path, {"team": None, "private": None, "private/diary.txt": "alice's own",
                                  "team/plan.txt": "the plan"}, [("team", "bob", "WRITE")])
    fid, team, private = (_node_fid(vault, "alice", name) for name in ("plan.txt", "team", "private"))
    resigned_by_bob(vault, fid, {"links": [[team, "plan.txt"], [private, "planted-by-bob.txt"]]})
    with mounted(vault, mnt):
        listed = sorted(p.name for p in (mnt / "private").iterdir())
        print(fusevault("status", mnt).stdout[-2000:])
    assert listed == ["diary.txt"], f"bob put a name in alice's private folder: {listed}"


def test_a_writer_cannot_make_the_owners_tree_a_cycle_through_a_real_mount(
        vault: Path, tmp_path: Path) -> None:
    """alice shares team (team/sub/plan.txt) with bob (WRITE).  bob signs a node document of team that keeps
    its name and adds ``loop`` in team/sub.  alice mounts again, lists team/sub and unshares team.  Safe: no
    ``loop`` there, and the unshare finishes."""
    mnt = scene(vault, tmp_path, {"team/sub": None, "team/sub/plan.txt": "the plan"},
                [("team", "bob", "WRITE")])
    team, sub = _node_fid(vault, "alice", "team"), _node_fid(vault, "alice", "sub")
    links = open_node_attrs(adversary.get(vault, team), _bobs_dek(vault, team))["links"]
    resigned_by_bob(vault, team, {"links": [*links, [sub, "loop"]]})
    listed: list[str] = []
    try:
        with mounted(vault, mnt):
            listed = sorted(p.name for p in (mnt / "team" / "sub").iterdir())
            try:
                done = fusevault("unshare", mnt / "team", "--with", "bob", timeout=60)
                finished = done.returncode == 0
                print("unshare:", done.returncode, done.stdout, done.stderr)
            except subprocess.TimeoutExpired:
                finished = False
                print("unshare did not finish in 60 s")
    finally:
        force_unmount(mnt)
    assert "loop" not in listed and finished, f"team/sub lists {listed}; the unshare finished: {finished}"


def test_a_read_recipient_cannot_write_the_owners_file_by_linking_it_into_a_folder_he_may_write(
        vault: Path, tmp_path: Path) -> None:
    """alice shares notes.txt with bob (READ) and her folder proj with him (WRITE).  bob, who can write the
    vault folder, reseals her current version of notes.txt with his own bytes and signs its document
    (``_bobs_forgery``), and signs a node document of notes.txt that keeps its name and adds one in proj/
    (listed first).
    alice mounts again and reads notes.txt.  Safe: she is never served bob's bytes."""
    add_users(vault, "bob", passphrase=SECRETS["bob"])  # the passphrase _bobs_forgery unlocks him with
    mnt = tmp_path / "mnt"
    alices_files(vault, mnt, {"notes.txt": "genuine\n", "proj": None, "proj/plan.txt": "plan\n"},
                 [("notes.txt", "bob", "READ"), ("proj", "bob", "WRITE")])
    fid, _ = _bobs_forgery(vault)
    proj = _node_fid(vault, "alice", "proj")
    dek = recipients_dek(vault, "bob", SECRETS["bob"], fid)
    links = open_node_attrs(adversary.get(vault, fid), dek)["links"]
    # First: the ACL follows the first link.
    resigned(vault, fid, {"links": [[proj, "notes-in-proj.txt"], *links]}, dek, "bob", SECRETS["bob"])
    with mounted(vault, mnt):
        try:
            read = (mnt / "notes.txt").read_bytes()
        except OSError as err:
            read = str(err).encode()
        print("alice read:", read, sorted(p.name for p in (mnt / "proj").iterdir()))
    assert not read.startswith(PLANTED[:len(b"genuine\n")]), (
        f"alice was served bob's bytes in her notes.txt (bob holds READ on it): {read!r}")


# --- the owner's groups, when the store withholds a member's document


def test_a_withheld_member_document_does_not_make_the_owner_sign_them_out_of_her_group(
        vault: Path, tmp_path: Path) -> None:
    """alice's group team has bob as a member (pinned on her device).  The store writer withholds bob's user
    document while alice mounts once; then it is back.  Safe: alice's group still names bob (withholding
    may delay, never make the owner sign a change she did not choose)."""
    add_users(vault, "bob")
    add_team(vault, "bob")
    bob = _user(vault, "bob")  # as it was before alice met him
    mnt = tmp_path / "mnt"
    alices_files(vault, mnt, {"notes.txt": "for the team"}, [("notes.txt", "@team", "READ")])
    adversary.delete_row(vault, bob["_id"])
    with mounted(vault, mnt):
        (mnt / "other.txt").write_text("a day's work while bob's document was away")
    adversary.put(vault, bob)
    with mounted(vault, mnt):
        (mnt / "more.txt").write_text("bob's document is back")
    team = group_doc(vault, "team")
    assert bob["_id"] in (team.get("users") or {}), f"alice's group team no longer names bob: {team}"


# --- huge numbers in a recipient's signed document


@pytest.mark.parametrize("perm", ["READ", "WRITE"])
def test_a_recipients_node_document_with_a_huge_mode_does_not_stop_the_owners_mount(
        vault: Path, tmp_path: Path, perm: str) -> None:
    """alice shares notes.txt with bob.  bob, who can write the vault folder, signs a node document of it
    whose sealed mode is 2**40.  Safe: alice still mounts and reads her other files."""
    mnt = scene(vault, tmp_path, {"notes.txt": "shared with bob", "diary.txt": "alice's own"},
                [("notes.txt", "bob", perm)])
    resigned_by_bob(vault, _node_fid(vault, "alice", "notes.txt"), {"mode": 2**40})
    with mounts_again(vault, mnt):
        assert (mnt / "diary.txt").read_text() == "alice's own"


@pytest.mark.parametrize("perm", ["READ", "WRITE"])
def test_a_recipients_node_document_with_a_huge_epoch_does_not_lose_the_owners_next_write(
        vault: Path, tmp_path: Path, perm: str) -> None:
    """bob signs a node document of alice's shared notes.txt whose sealed key epoch is 2**64 (above what a
    CouchDB server keeps exactly).  alice mounts and writes notes.txt.  Safe: her write is saved (it reads
    back after a remount), or the write is refused at once; it never vanishes after a success."""
    mnt = scene(vault, tmp_path, {"notes.txt": "shared with bob"}, [("notes.txt", "bob", perm)])
    resigned_by_bob(vault, _node_fid(vault, "alice", "notes.txt"), {"epoch": 2**64})
    wrote = False
    with mounted(vault, mnt):
        try:
            (mnt / "notes.txt").write_text("alice's next words")
            wrote = True
        except OSError as err:
            print("the write was refused:", err)
    now = read_back(vault, mnt, "notes.txt")
    assert not wrote or now == "alice's next words", f"alice's acknowledged write is gone: {now!r}"


def test_a_read_recipients_refused_document_does_not_hide_the_owners_new_file_of_that_name(
        vault: Path, tmp_path: Path) -> None:
    """alice shares notes.txt with bob (READ).  bob, who can write the vault folder, signs her node document
    of it again, unchanged, in his own name.  alice mounts: it is refused (left out, an alarm), so she
    writes notes.txt afresh.  Safe: at her next mount notes.txt holds what she wrote."""
    mnt = scene(vault, tmp_path, {"notes.txt": "shared with bob"}, [("notes.txt", "bob", "READ")])
    resigned_by_bob(vault, _node_fid(vault, "alice", "notes.txt"), {})
    with mounted(vault, mnt):
        (mnt / "notes.txt").write_text("alice's next words")
    now = read_back(vault, mnt, "notes.txt")
    assert now == "alice's next words", f"alice's acknowledged write is gone: {now!r}"


def test_a_replayed_document_of_an_ended_writer_does_not_hide_the_owners_new_file(
        vault: Path, tmp_path: Path) -> None:
    """alice shares notes.txt with bob (WRITE); bob saves it (a node document he signed, from his device).
    alice unshares.  The store writer, with no key, puts bob's document back; alice mounts (it is refused:
    bob holds no WRITE now), finds notes.txt gone and writes it afresh.  Safe: at her next mount notes.txt
    holds what she wrote."""
    mnt = scene(vault, tmp_path, {"notes.txt": "shared with bob"}, [("notes.txt", "bob", "WRITE")])
    fid = _node_fid(vault, "alice", "notes.txt")
    resigned_by_bob(vault, fid, {"seq": ["b0b0b0b0b0b0b0b0", 1]})  # bob's save, from his own device
    bobs = adversary.get(vault, fid)
    with mounted(vault, mnt):
        assert (mnt / "notes.txt").read_text() == "shared with bob"
        done = fusevault("unshare", mnt / "notes.txt", "--with", "bob")
        assert done.returncode == 0, done.stderr
    adversary.put(vault, bobs)
    with mounted(vault, mnt):
        (mnt / "notes.txt").write_text("alice's next words")
    now = read_back(vault, mnt, "notes.txt")
    assert now == "alice's next words", f"alice's acknowledged write is gone: {now!r}"


def test_a_pinned_user_renamed_to_a_present_pinned_users_name_gets_no_key(
        vault: Path, tmp_path: Path) -> None:
    """Holds: as above, but carol's document stays: two pinned users claim ``carol``.  alice's
    ``share --with carol`` is refused (or seals to carol only): nothing is sealed to bob."""
    mnt = scene(vault, tmp_path, {"notes.txt": "for carol's eyes, and nobody else's",
                                  "other.txt": "shared once so that bob and carol are surely met and pinned"},
                [("other.txt", "bob", "READ"), ("other.txt", "carol", "READ")], users=("bob", "carol"))
    fid = _node_fid(vault, "alice", "notes.txt")
    bob = _user(vault, "bob")
    key = _key(vault, "bob", BOB_SECRET)
    renamed = {k: v for k, v in bob.items() if k not in ("_rev", "sig")}
    adversary.put(vault, sign_doc(key.user_id, key.identity.sign, {**renamed, "username": "carol"}))
    with mounted(vault, mnt):
        answer = share(mnt, "notes.txt", "carol")
    assert not _keys_for(vault, bob["_id"], fid), answer
