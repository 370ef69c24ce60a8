"""Issue 22, attack round 6: fusevault as it is at 6c94ad1 (main), attacked through its real entry points.

The attackers: a writer of the vault folder (store.sqlite, ``.vf`` files, sidecars) or of the
CouchDB database, with no key at all; and users of the vault.  Each test asserts the SAFE
behaviour; the ones that fail are marked ``xfail(strict=True)`` with where the hole is.

Found at 6c94ad1: 4 holes, all 4 closed (their tests pass; none is marked any more):
- HOLE: a pinned user's name, once their document is gone from the store, is taken by a planted
  self-signed document: it is pinned as a new user and ``share --with bob`` seals to it.
- HOLE: the same for a pinned group's name (``share --with @team`` seals to the planted owner).
- HOLE: in a shared mount a user's judge of version documents outlives their lock: alone it
  decides for their files over a wiped tree, so WRITE anywhere admits a READ recipient's version.
- HOLE: ``unshare`` with the Share document withheld by the store says "not shared" and revokes
  nothing: the file stays under the key the recipient holds.  Closed: what the device remembers of
  the share, or key files left for the grantee, take the key back anyway (a user, a group, with the
  key file withheld too); a forged body at the Share's id turns the revoke nowhere else; nothing
  known still says "not shared".
- holds: a version naming another loaded user (or its signer) as owner is refused by that judge.
"""

from __future__ import annotations

from pathlib import Path

import adversary
import pytest
from attack_scenes import (
    NOTES_AND_PROJ,
    add_team,
    add_users,
    alice_shares_in,
    alices_files,
    group_doc,
    scene,
    share,
)
from conftest import fusevault, mounted

from fusevault.crypto.identity import open_file_key
from fusevault.crypto.signing import sign_doc
from fusevault.errors import NotFound
from fusevault.vault.model import sharing, users
from mount.test_shared_admission import _bobs_forgery
from mount.test_shared_mount import (  # noqa: F401  (fixtures)
    SECRETS,
    People,
    linux,
    place,
    python,
    shared_vault,
)
from mount.test_shared_mount import pytestmark as needs_users
from mount.test_trust_attack_round4 import _alice_dek, _bobs_dek
from mount.test_trust_grants import _mallory
from mount.test_trust_writes import BOB, _key, _node_fid, _user


def _grantees(vault: Path) -> set[str]:
    return {d.get("grantee") for d in adversary.docs(vault, "Share") if not d.get("_deleted")}


def _sealed_to(vault: Path, user_id: str) -> list[Path]:
    """Key files (``.vfkey``) sealed to ``user_id`` under the vault folder (the meta.inf that
    shows every user document, seed 003, is no key)."""
    return [p for p in vault.rglob("*.vfkey") if user_id in str(p.relative_to(vault))]


def test_a_pinned_users_name_taken_over_after_their_document_is_deleted_gets_no_key(
        vault: Path, tmp_path: Path) -> None:
    """alice meets bob (his keys pinned on her mount).  The store writer deletes bob's user document
    and plants a self-signed one of its own claiming the name ``bob`` (and bob's uid).  alice shares
    notes.txt ``--with bob``: SAFE is a refusal, or at least nothing sealed to the impostor."""
    mnt = scene(vault, tmp_path, {"notes.txt": "for bob's eyes, and nobody else's",
                                  "other.txt": "shared once so that bob is surely met and pinned"},
                [("other.txt", "bob", "READ")])
    real = _user(vault, "bob")
    ident, impostor = _mallory(_user(vault, "alice")["root"])
    impostor.update(username="bob", uid=real["uid"])
    adversary.delete_row(vault, real["_id"])
    adversary.put(vault, sign_doc(ident.user_id, ident.sign, impostor))
    with mounted(vault, mnt):
        answer = share(mnt, "notes.txt", "bob")
    assert not _sealed_to(vault, ident.user_id), answer
    assert ident.user_id not in _grantees(vault), answer


def test_a_pinned_groups_name_taken_over_after_its_document_is_deleted_gets_no_key(
        vault: Path, tmp_path: Path) -> None:
    """alice owns group ``team`` (bob a member).  The store writer deletes the group document and plants
    its own group ``team`` owned by a user it planted (signed by that user), with itself as member.
    alice shares notes.txt ``--with @team``: SAFE is a refusal, or nothing sealed to the planted user."""
    mnt = scene(vault, tmp_path, {"notes.txt": "for the team alice made",
                                  "other.txt": "shared once so that team is surely met and pinned"},
                [("other.txt", "@team", "READ")], team=["bob"])
    team = group_doc(vault, "team")
    ident, mallory = _mallory(_user(vault, "alice")["root"])
    planted = {"_id": "f" * 32, "type": "Group", "groupname": "team", "owner": ident.user_id,
               "created_at": team["created_at"], "users": {ident.user_id: "READ,WRITE"}}
    adversary.delete_row(vault, team["_id"])
    adversary.put(vault, sign_doc(ident.user_id, ident.sign, mallory),
                  sign_doc(ident.user_id, ident.sign, planted))
    with mounted(vault, mnt):
        answer = share(mnt, "notes.txt", "@team")
    assert not _sealed_to(vault, ident.user_id), answer
    assert planted["_id"] not in _grantees(vault), answer


# --- a shared mount: the judge of a locked owner's version documents


@needs_users
def test_a_locked_owners_stale_judge_does_not_admit_a_read_recipients_version(
        shared_vault: Path, place: Path, linux, python) -> None:  # noqa: F811
    """alice shares notes.txt with bob and carol (READ) and her folder proj with bob (WRITE).  bob, who
    can write the vault folder, reseals her current version's block and signs its document himself
    (``_bobs_forgery``, as in round 4).  In a shared mount alice unlocks and then locks; carol reads
    notes.txt.  Safe: carol is never served bob's bytes (carol's own view refuses them; so would alice's
    while unlocked, test_shared_admission)."""
    mountpoint = place / "mnt-stale-judge"
    mountpoint.mkdir()
    with mounted(shared_vault, mountpoint, "--allow-other"):
        people = People(linux, place, python, mountpoint)
        alice_shares_in(people, mountpoint, *NOTES_AND_PROJ)
    _bobs_forgery(shared_vault)
    with mounted(shared_vault, mountpoint, "--allow-other"):
        people.unlock("alice")
        people.unlock("carol")
        locked = people.fusevault("alice", "lock", str(mountpoint))
        assert locked.returncode == 0, locked.stderr
        result = people.sh("carol", "cat $M/shared/alice/notes.txt")
        print("carol read:", result.returncode, result.stdout, result.stderr)
        assert "PLANTED" not in result.stdout, "carol was served bob's bytes"


# --- unshare when the store withholds the Share document


def test_unshare_with_the_share_document_withheld_still_takes_the_key_back(
        vault: Path, tmp_path: Path) -> None:
    """alice shares notes.txt with bob (READ).  The store writer (bob, or a server he colludes with)
    deletes the Share document.  alice unshares, then writes.  Safe: what she writes afterwards is not
    sealed under the DEK bob opened from his key file (the revoke happens, or the write is refused)."""
    mnt = scene(vault, tmp_path, {"notes.txt": "shared with bob for a while"}, [("notes.txt", "bob", "READ")])
    fid = _node_fid(vault, "alice", "notes.txt")
    kept = _bobs_dek(vault, fid)
    (share,) = [d for d in adversary.docs(vault, "Share") if d.get("fid") == fid]
    adversary.delete_row(vault, share["_id"])
    with mounted(vault, mnt):
        done = fusevault("unshare", mnt / "notes.txt", "--with", "bob")
        print("unshare:", done.returncode, done.stdout, done.stderr)
        try:
            (mnt / "notes.txt").write_text("written after alice revoked bob: not for bob")
        except OSError as err:
            print("write refused:", err)
    assert _alice_dek(vault, fid) != kept, "alice's file is still under the key bob holds"


def test_unshare_with_the_share_document_and_the_key_file_withheld_still_gives_a_new_key(
        vault: Path, tmp_path: Path) -> None:
    """The store writer deletes both the Share document and bob's key file (bob already opened it):
    only alice's device remembers the share (grants seen, vault/model/freshness.py).  Her unshare still
    gives the file a new key; a second unshare says "not shared" (taken back here already)."""
    mnt = scene(vault, tmp_path, {"notes.txt": "shared with bob for a while"}, [("notes.txt", "bob", "READ")])
    fid = _node_fid(vault, "alice", "notes.txt")
    kept = _bobs_dek(vault, fid)
    (share,) = [d for d in adversary.docs(vault, "Share") if d.get("fid") == fid]
    adversary.delete_row(vault, share["_id"])
    for key in _sealed_to(vault, _user(vault, "bob")["_id"]):
        key.unlink()
    with mounted(vault, mnt):
        done = fusevault("unshare", mnt / "notes.txt", "--with", "bob")
        print("unshare:", done.returncode, done.stdout, done.stderr)
        assert done.returncode == 0, done.stderr
        (mnt / "notes.txt").write_text("written after alice revoked bob: not for bob")
        again = fusevault("unshare", mnt / "notes.txt", "--with", "bob")
        assert again.returncode == NotFound.exit_code and "not shared" in again.stderr, again.stderr
    assert _alice_dek(vault, fid) != kept, "alice's file is still under the key bob holds"


def test_a_forged_share_body_does_not_turn_unshare_to_another_file(vault: Path, tmp_path: Path) -> None:
    """alice shares notes.txt and other.txt with bob.  The store writer replaces the Share body of
    notes.txt (same id) with one naming another owner and other.txt.  ``unshare notes.txt --with bob``
    takes back notes.txt's key (bob's key file of it goes) and nothing else: other.txt keeps its key
    and bob his key of it, and no Rotation is left behind."""
    mnt = scene(vault, tmp_path, {"notes.txt": "shared with bob for a while",
                                  "other.txt": "still shared with bob"},
                [("notes.txt", "bob", "READ"), ("other.txt", "bob", "READ")])
    fid, other = _node_fid(vault, "alice", "notes.txt"), _node_fid(vault, "alice", "other.txt")
    kept, others = _bobs_dek(vault, fid), _alice_dek(vault, other)
    ident, mallory = _mallory(_user(vault, "alice")["root"])
    (share,) = [d for d in adversary.docs(vault, "Share") if d.get("fid") == fid]
    adversary.put(vault, sign_doc(ident.user_id, ident.sign, mallory),
                  {**share, "owner": ident.user_id, "fid": other})
    with mounted(vault, mnt):
        done = fusevault("unshare", mnt / "notes.txt", "--with", "bob")
        print("unshare:", done.returncode, done.stdout, done.stderr)
        assert done.returncode == 0, done.stderr
        (mnt / "notes.txt").write_text("written after alice revoked bob: not for bob")
    alice, bob = _user(vault, "alice")["_id"], _user(vault, "bob")["_id"]
    assert not (vault / "users" / bob / "shared" / f"{alice}_{fid}.vfkey").exists()
    assert _alice_dek(vault, fid) != kept
    assert _alice_dek(vault, other) == others and _bobs_dek(vault, other) == others
    assert not adversary.docs(vault, "Rotation")


def _bobs_group_dek(vault: Path, group_id: str, fid: str) -> bytes:
    """The DEK bob opens from his ``.vfkey`` of alice's file shared with a group he is in."""
    alice, bob = _user(vault, "alice"), _key(vault, "bob", BOB)
    found = sharing.read_key(vault / "groups" / group_id / "own" / fid / "keys" / f"{bob.user_id}.vfkey")
    assert found is not None
    return open_file_key(bob.identity, alice["_id"], fid, found[0], found[1])


def test_unshare_from_a_group_with_the_share_document_withheld_still_takes_the_key_back(
        vault: Path, tmp_path: Path) -> None:
    """alice shares her folder proj with @team (bob a member).  The store writer deletes the Share
    document.  ``unshare proj --with @team`` still takes the keys back (one line, a note that the share
    was missing), and what alice writes next in proj is not under the DEK bob opened from the group's
    key file.  A second unshare finds nothing left to take back: "not shared"."""
    add_users(vault, "bob")
    add_team(vault, "bob")
    team = group_doc(vault, "team")
    mnt = tmp_path / "mnt"
    alices_files(vault, mnt, {"proj": None, "proj/plan.txt": "the team's plan, for a while"},
                 [("proj", "@team", "READ")])
    fid = _node_fid(vault, "alice", "plan.txt")
    kept = _bobs_group_dek(vault, team["_id"], fid)
    (share,) = [d for d in adversary.docs(vault, "Share") if d.get("grantee") == team["_id"]]
    adversary.delete_row(vault, share["_id"])
    with mounted(vault, mnt):
        done = fusevault("unshare", mnt / "proj", "--with", "@team")
        print("unshare:", done.returncode, done.stdout, done.stderr)
        assert done.returncode == 0, done.stderr
        assert "no longer has" in done.stdout and "tampered" in done.stdout
        (mnt / "proj" / "plan.txt").write_text("written after alice revoked the team: not for bob")
        again = fusevault("unshare", mnt / "proj", "--with", "@team")
        assert again.returncode == NotFound.exit_code and "not shared" in again.stderr, again.stderr
    assert not _sealed_to(vault, _user(vault, "bob")["_id"])
    assert _alice_dek(vault, fid) != kept, "alice's file is still under the key bob holds"


def test_unshare_of_what_was_never_shared_says_not_shared(vault: Path, tmp_path: Path) -> None:
    """Nothing known of a share (no Share document, none seen on this device, no key file): unshare
    answers "not shared" with NotFound's exit code and changes nothing (no Rotation, no new key)."""
    mnt = scene(vault, tmp_path, {"notes.txt": "never shared", "proj": None,
                                  "proj/plan.txt": "shared through its folder only"},
                [("proj", "bob", "READ")], team=["bob"])
    fid = _node_fid(vault, "alice", "notes.txt")
    before = _alice_dek(vault, fid)
    with mounted(vault, mnt):
        for path, target in (("notes.txt", "bob"), ("notes.txt", "@team"), ("proj/plan.txt", "bob")):
            done = fusevault("unshare", mnt / path, "--with", target)
            print("unshare:", path, target, done.returncode, done.stdout, done.stderr)
            assert done.returncode == NotFound.exit_code, done.stderr
            assert "not shared" in done.stderr
    assert _alice_dek(vault, fid) == before
    assert not adversary.docs(vault, "Rotation")
    assert _bobs_dek(vault, _node_fid(vault, "alice", "plan.txt"))  # the folder's share still holds


# --- a shared mount: the clear ``owner`` of a version document chooses its judge


@needs_users
@pytest.mark.parametrize("named", ["bob", "carol"])
def test_a_version_naming_another_loaded_user_as_owner_is_not_judged_by_that_user_alone(
        shared_vault: Path, place: Path, linux, python, named: str) -> None:  # noqa: F811
    """``Places._deciding`` picks the judge by the version document's clear ``owner``.  bob (READ on
    alice's notes.txt, WRITE on her proj) forges her current version, then names ``named`` (himself,
    or carol, both unlocked) as its owner and signs it.  Safe: neither alice nor carol is served his
    bytes (the named user's judge checks the owner against the file's: authorship.version_ok)."""
    mountpoint = place / f"mnt-owner-{named}"
    mountpoint.mkdir()
    with mounted(shared_vault, mountpoint, "--allow-other"):
        people = People(linux, place, python, mountpoint)
        alice_shares_in(people, mountpoint, *NOTES_AND_PROJ)
    _, vid = _bobs_forgery(shared_vault)
    bob = users.unlock(_user(shared_vault, "bob"), SECRETS["bob"].encode())
    doc = {**adversary.get(shared_vault, vid), "owner": _user(shared_vault, named)["_id"]}
    adversary.put(shared_vault, sign_doc(bob.user_id, bob.identity.sign, doc))
    with mounted(shared_vault, mountpoint, "--allow-other"):
        for who in ("alice", "bob", "carol"):
            people.unlock(who)
        for who, path in (("carol", "shared/alice/notes.txt"), ("alice", "notes.txt")):
            result = people.sh(who, f"cat $M/{path}")
            print(who, "read:", result.returncode, result.stdout, result.stderr)
            assert "PLANTED" not in result.stdout, f"{who} was served bob's bytes"
