"""Round 19 fixes on issue 22 (the authenticated vault): signed Rotation documents, and the uid map of
root's shared mount.

Holes
-----
1. A FORGED ``Rotation`` OF THE RIGHT SHAPE MADE HER CLIENT RE-KEY AND RE-SEAL A WHOLE SUBTREE (round 18
   hole 3, "still open").  A store writer or the sync server puts ``{"_id": "rotate-<fid>", "type":
   "Rotation", "owner": <her id>, "fid": <fid of a file of hers>}``: the shape fusevault wrote, and
   unsigned, so ``share_ops.resume`` (at unlock, and live after any Rotation or Group arrived:
   fs/arrivals.py ``_reshare``) gave everything under it new keys and sealed its current contents
   again (one re-key per document: time and storage, pushed to every peer).
   Cause: Rotation documents were unsigned (a group's owner and an administrator wrote them for her
   files, without her key).  Fix (vault/services/share_ops.py ``_request``, vault/model/sharing.py
   ``rotation_doc``/``rotations``): a Rotation is signed, by her (``unshare``) or by the owner of a group
   she shared the file with (``group member remove``, pinned as that group's owner on her device), and
   names the key epoch the file had when it was asked for; it is acted on only if the signature holds
   under the key this device trusts, its id is ``rotate-<fid>`` of the fid it names, the node is hers,
   and that node's epoch has not passed the request's (``rotate`` gives the named node its new key
   last, so a passed epoch means the whole subtree was done: a replay of her own older request asks for
   nothing and is deleted).  Anything else is said (alarm ``forged`` naming the document and the file)
   and left alone, at every unlock and live.  An unsigned one is never acted on: the store writer's,
   an administrator's ``user remove`` (no key of hers), and her own from before this change (an
   ``unshare`` a crash interrupted): the alarm asks her to run ``unshare`` for the file again, which
   finishes it even when nothing else is known of the share (a pending request is enough).
   Tests: test_a_forged_rotation_of_the_right_shape_rekeys_nothing (store writer),
   test_a_rotation_signed_by_another_user_rekeys_nothing,
   test_the_servers_rotation_of_the_right_shape_rekeys_nothing_while_she_is_mounted (pouchdb-server),
   test_her_own_signed_request_left_pending_is_finished_at_her_next_unlock,
   test_her_own_request_replayed_after_it_was_done_rekeys_nothing,
   test_a_genuine_unshare_still_rotates, test_an_administrators_user_remove_is_said_and_unshare_finishes_it,
   test_a_group_owners_member_removal_rotates_the_file_of_another_user_shared_with_the_group.
   Left: a group owner she shares with may ask for one re-key of what she shares with the group per
   document (as a member's removal and re-adding would); a request signed while a peer of hers had
   already given the file a newer key the group owner's device had not seen counts as done.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import adversary
from conftest import PASSPHRASE, first_device, fusevault, mounted, settled, wait_for
from services.test_trust_attack_round4 import _alarms

from fusevault.vault.model.nodes import open_node_doc
from mount import test_shared_mount as shared_mount
from mount.test_shared_mount import SECRETS, People
from mount.test_trust_attack_round4 import _alice_dek
from mount.test_trust_writes import BOB, _admin, _key, _node_fid, _signed, _user

CAROL = "carol's passphrase, long enough"


def _vault_bytes(vault: Path) -> int:
    """What the vault folder holds in file contents (a re-seal writes a new copy of each file)."""
    return sum(p.stat().st_size for p in (vault / "users").rglob("*.vf"))


def _versions(docs: list[dict], fid: str) -> set[str]:
    """The ids of ``fid``'s version documents: a re-seal writes a new one.  (Not the node's revision:
    reading the file may commit its access time, relatime, as any file system does.)"""
    return {d["_id"] for d in docs if d.get("fid") == fid}


def _with_plan(vault: Path, mnt: Path) -> str:
    with mounted(vault, mnt):
        (mnt / "plan.txt").write_bytes(b"her plan " * 4096)
    return _node_fid(vault, "alice", "plan.txt")


def _request(vault: Path, fid: str, epoch: int | None = None) -> dict:
    """A Rotation of the shape fusevault writes for alice's ``fid`` (unsigned)."""
    node = adversary.get(vault, fid)
    assert node is not None
    return {"_id": f"rotate-{fid}", "type": "Rotation", "owner": _user(vault, "alice")["_id"], "fid": fid,
            "epoch": node.get("epoch", 0) if epoch is None else epoch}


def _said(alarms: list[dict], fid: str) -> list[dict]:
    return [a for a in alarms if a["subject"] == f"rotate-{fid}" and a["kind"] == "forged"]


def test_a_forged_rotation_of_the_right_shape_rekeys_nothing(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    fid = _with_plan(vault, mnt)
    dek, size = _alice_dek(vault, fid), _vault_bytes(vault)
    versions = _versions(adversary.docs(vault, "FilesMetaData"), fid)
    adversary.put(vault, _request(vault, fid))  # the store writer: no key of hers
    for _ in range(2):
        with mounted(vault, mnt):
            assert (mnt / "plan.txt").read_bytes() == b"her plan " * 4096
            found = _alarms(mnt)
    assert _alice_dek(vault, fid) == dek, "a forged Rotation gave her file a new key"
    now = _versions(adversary.docs(vault, "FilesMetaData"), fid)
    assert now == versions and _vault_bytes(vault) == size, (
        f"her file was re-sealed (alarms {found})")
    assert _said(found, fid), f"no alarm said the forged request: {found}"
    assert adversary.get(vault, f"rotate-{fid}") is not None  # left alone: it is no request of hers


def test_a_rotation_signed_by_another_user_rekeys_nothing(vault: Path, tmp_path: Path) -> None:
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    mnt = tmp_path / "mnt"
    fid = _with_plan(vault, mnt)
    with mounted(vault, mnt):
        pass  # bob pinned
    dek = _alice_dek(vault, fid)
    adversary.put(vault, _signed(_request(vault, fid), _key(vault, "bob", BOB)))
    with mounted(vault, mnt):
        found = _alarms(mnt)
    assert _alice_dek(vault, fid) == dek, "bob's Rotation for her file gave it a new key"
    assert _said(found, fid), found


def test_the_servers_rotation_of_the_right_shape_rekeys_nothing_while_she_is_mounted(
        couch: tuple[str, adversary.Server], tmp_path: Path) -> None:
    url, server = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        wait_for(lambda: settled(a), "the first push")
        before = {d["_id"] for d in server.all("node")}
        (a / "plan.txt").write_bytes(b"her plan")
        wait_for(lambda: settled(a), "the file pushed")
        (fid,) = {d["_id"] for d in server.all("node")} - before
        old = server.get(fid)
        versions = _versions(server.all("FilesMetaData"), fid)
        alice = next(u for u in server.all("UserDetails") if u.get("username") == "alice")
        server.put({"_id": f"rotate-{fid}", "type": "Rotation", "owner": alice["_id"], "fid": fid,
                    "epoch": old.get("epoch", 0)})
        wait_for(lambda: adversary.get(laptop, f"rotate-{fid}") is not None, "the forged document to arrive")
        wait_for(lambda: bool(_said(_alarms(a), fid)), "an alarm to say the forged request")
        (a / "marker.txt").write_bytes(b"after")  # a round trip through the mount
        wait_for(lambda: settled(a), "the marker pushed")
        assert (a / "plan.txt").read_bytes() == b"her plan"
        resealed = _versions(server.all("FilesMetaData"), fid) != versions
        assert not resealed, "the server's Rotation re-sealed her file"
    dek_then, _ = open_node_doc(old, _key(laptop, "alice", PASSPHRASE))
    assert _alice_dek(laptop, fid) == dek_then


def test_her_own_signed_request_left_pending_is_finished_at_her_next_unlock(
        vault: Path, tmp_path: Path) -> None:
    """As an ``unshare`` a crash interrupted leaves it: signed by her, at the file's current epoch."""
    mnt = tmp_path / "mnt"
    fid = _with_plan(vault, mnt)
    dek = _alice_dek(vault, fid)
    adversary.put(vault, _signed(_request(vault, fid), _key(vault, "alice", PASSPHRASE)))
    with mounted(vault, mnt):
        assert (mnt / "plan.txt").read_bytes() == b"her plan " * 4096
        found = _alarms(mnt)
    assert _alice_dek(vault, fid) != dek, "her own pending request was not finished"
    assert adversary.get(vault, f"rotate-{fid}") is None
    assert not _said(found, fid), found


def test_her_own_request_replayed_after_it_was_done_rekeys_nothing(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    fid = _with_plan(vault, mnt)
    done = _signed(_request(vault, fid), _key(vault, "alice", PASSPHRASE))
    adversary.put(vault, done)
    with mounted(vault, mnt):
        pass  # done: the file's epoch passed the request's
    dek, size = _alice_dek(vault, fid), _vault_bytes(vault)
    # The store writer (or the server) kept her signed request and puts it back, again and again.
    for _ in range(2):
        adversary.put(vault, {k: v for k, v in done.items() if k != "_rev"})
        with mounted(vault, mnt):
            found = _alarms(mnt)
        assert adversary.get(vault, f"rotate-{fid}") is None, "the replayed request was not dropped"
    assert _alice_dek(vault, fid) == dek and _vault_bytes(vault) == size, "a replayed request re-keyed"
    assert not _said(found, fid), found  # hers, and done: nothing to say


def _shared_with_bob(vault: Path, mnt: Path) -> str:
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    fid = _with_plan(vault, mnt)
    with mounted(vault, mnt):
        assert fusevault("share", mnt / "plan.txt", "--with", "bob", "--perm", "READ").returncode == 0
    return fid


def test_a_genuine_unshare_still_rotates(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    fid = _shared_with_bob(vault, mnt)
    dek = _alice_dek(vault, fid)
    with mounted(vault, mnt):
        done = fusevault("unshare", mnt / "plan.txt", "--with", "bob")
        assert done.returncode == 0, done.stderr
        found = _alarms(mnt)
    assert _alice_dek(vault, fid) != dek
    assert adversary.docs(vault, "Rotation") == [] and not _said(found, fid), found


def test_an_administrators_user_remove_is_said_and_unshare_finishes_it(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    fid = _shared_with_bob(vault, mnt)
    dek = _alice_dek(vault, fid)
    # No key of hers: its request for new keys is unsigned; the administrator is told whose turn it is.
    removed = fusevault("user", "remove", "bob", env={"FUSEVAULT_VAULT": str(vault)})
    assert removed.returncode == 0, removed.stderr
    assert "alice shared files with bob" in removed.stdout and "unshare" in removed.stdout, removed.stdout
    assert [d["fid"] for d in adversary.docs(vault, "Rotation")] == [fid]
    with mounted(vault, mnt):
        assert _said(_alarms(mnt), fid)
        assert _alice_dek(vault, fid) == dek
        done = fusevault("unshare", mnt / "plan.txt", "--with", "bob")
        assert done.returncode == 0, done.stderr
    assert _alice_dek(vault, fid) != dek
    assert adversary.docs(vault, "Rotation") == []


def test_a_group_owners_member_removal_rotates_the_file_of_another_user_shared_with_the_group(
        vault: Path, tmp_path: Path) -> None:
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    _admin(vault, "user", "add", "carol", "--uid", "2002", passphrase=CAROL)
    _admin(vault, "group", "add", "crew", "--owner", "bob", passphrase=BOB)
    _admin(vault, "group", "member", "add", "crew", "carol", "--perm", "READ", passphrase=BOB)
    mnt = tmp_path / "mnt"
    fid = _with_plan(vault, mnt)
    with mounted(vault, mnt):
        shared = fusevault("share", mnt / "plan.txt", "--with", "@crew", "--perm", "READ")
        assert shared.returncode == 0, shared.stderr
    dek = _alice_dek(vault, fid)
    _admin(vault, "group", "member", "remove", "crew", "carol", passphrase=BOB)
    (pending,) = adversary.docs(vault, "Rotation")
    assert pending["fid"] == fid and pending["sig"]["by"] == _user(vault, "bob")["_id"]
    with mounted(vault, mnt, "--user", "bob", passphrase=BOB):  # another user's request: not his to judge
        assert not [a for a in _alarms(mnt) if a["subject"] == f"rotate-{fid}"]
    with mounted(vault, mnt):
        found = _alarms(mnt)
    assert _alice_dek(vault, fid) != dek, "the group owner's signed request was not acted on"
    assert adversary.docs(vault, "Rotation") == [] and not _said(found, fid), found


# --- 2. the uid -> user map of root's shared mount (fs/shared.py ``_read_uids``)

MALLORY = "mallory's passphrase, the store writer's"
# Real Linux users and root's shared vault (tests/mount/test_shared_mount.py).
linux, place, python, shared_vault = (shared_mount.linux, shared_mount.place, shared_mount.python,
                                      shared_mount.shared_vault)


def _user_of_the_store_writer(tmp_path: Path, uid: int) -> dict:
    """A user document the store writer made with fusevault itself (keys of his own, signed by them),
    claiming ``uid``: made in a scratch vault of his and copied over."""
    scratch = tmp_path / "scratch"
    assert fusevault("init", scratch, "--user", "writer").returncode == 0
    _admin(scratch, "user", "add", "mallory", "--uid", str(uid), passphrase=MALLORY)
    return _user(scratch, "mallory")


@contextlib.contextmanager
def _shared(vault: Path, place: Path, linux, python, name: str) -> Iterator[People]:
    mountpoint = place / f"mnt-r19-{name}"
    mountpoint.mkdir()
    with mounted(vault, mountpoint, "--allow-other"):
        yield People(linux, place, python, mountpoint)


@shared_mount.pytestmark  # root, useradd and setpriv
def test_a_second_user_claiming_her_uid_never_takes_her_seat_in_the_shared_mount(
        shared_vault: Path, place: Path, linux, python, tmp_path: Path) -> None:
    mallory = _user_of_the_store_writer(tmp_path, linux["alice"].pw_uid)
    adversary.put(shared_vault, mallory)
    with _shared(shared_vault, place, linux, python, "claim") as people:
        # At alice's uid, the store writer's user (whose passphrase he knows) gets no seat ...
        taken = people.fusevault("alice", "unlock", str(people.mnt), passphrase=MALLORY)
        assert taken.returncode != 0, "the store writer's user took the seat of alice's uid"
        # ... nor does alice's own: which of the two is genuine is not the store's order to say.
        refused = people.fusevault("alice", "unlock", str(people.mnt), passphrase=SECRETS["alice"])
        assert refused.returncode != 0 and "claimed by several users" in refused.stderr, refused.stderr
        assert people.sh("alice", "ls -A $M").stdout == ""  # nothing of anyone's
        people.unlock("bob")  # the others are not touched
        adversary.delete_row(shared_vault, mallory["_id"])  # the administrator removes the forgery
        people.unlock("alice")
        assert people.ok("alice", "echo mine > $M/mine.txt && cat $M/mine.txt") == "mine\n"


@shared_mount.pytestmark
def test_a_user_document_whose_uid_was_changed_maps_no_one_in_the_shared_mount(
        shared_vault: Path, place: Path, linux, python) -> None:
    bob = _user(shared_vault, "bob")
    # The store writer moves bob's (signed) document onto dave's uid, a local user of no vault.
    adversary.put(shared_vault, {**bob, "uid": linux["dave"].pw_uid})
    with _shared(shared_vault, place, linux, python, "moved") as people:
        seated = people.fusevault("dave", "unlock", str(people.mnt), passphrase=SECRETS["bob"])
        assert seated.returncode != 0, "dave's uid got bob's seat from a document whose uid was changed"
        people.unlock("alice")
        assert people.ok("alice", "ls -A $M/") is not None
