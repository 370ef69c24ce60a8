"""Attack round 24a on issue 22 (the authenticated vault): the fixes of round 23a that landed on main
(f58294e, 66eaa0e: ``Store.deleted`` on both backends and share_ops.py ``_groups_removed`` /
``_rekey_for_removals``; b499425: the ledger's ``unplaced`` / authorship ``_place_unknown``), from the
server / sync peer / store writer / group member side.  Real mounts, the real ``fusevault`` command, a
pouchdb-server of the test's own, root's shared mount where said.

Status: every hole below is fixed and its test passes (a bare deletion of a grant in force, arriving
through sync, is taken in as a change of groups and shares: fs/arrivals.py ``_typed``; a grantee's device
keeps which of another owner's files her signed state put in the trash: the ledger's ``owner_trashed``,
authorship ``_back_from_owners_trash``); docs/SECURITY.md "Attack round 24" says what holds now.

Holes
-----
1. A GROUP REMOVED THROUGH SYNC WHILE SHE IS MOUNTED IS NOT TAKEN IN: NO RE-KEY, AND A FILE SHE MAKES IN
   THE FOLDER SHE SHARED WITH IT IS SEALED TO ITS FORMER MEMBERS, UNTIL HER NEXT UNLOCK, NOTHING SAID.
   A deletion that arrives through peer sync is a bare tombstone (``_id``, ``_rev``, ``_deleted``: no
   ``type``).  fs/arrivals.py:100 (``committed``) starts ``_reshare`` (share_ops.resume ->
   ``_rekey_for_removals`` -> round 23a's ``_groups_removed``) only for documents of ``type`` Group or
   Rotation, and vault/services/absorbing.py:87 reads the shares and groups again
   (``volume.sharing.reload``, which is also where freshness.py ``sweep`` records a grant deleted,
   grants.py:64) only for a document of a SHARING_TYPES ``type``: neither ever looks at the group's
   tombstone.  So ``volume.sharing`` keeps admitting the removed group with its old members: plan.txt
   (shared with @crew: bob, carol) keeps the key they hold for everything she writes, and a file she makes
   in proj (shared with @crew) gets its key sealed to carol and bob, for as long as the mount runs (or
   until some typed group change comes).  Root's shared mount does it right: its store watcher
   (fs/shared.py:228-230) gives a removed document the type Group on purpose ("read as a change of
   groups"), and an administrator's ``group remove`` there re-keys at once (the passing control below).
   SECURITY.md, "Attack round 23": "at her next unlock or change of groups each file she shared with it
   is re-keyed once"; round 22a: "at every unlock and every group change taken in"; "Sharing and
   revoking": "a member removed from a group ... loses their keys at once".  (SECURITY.md:591-593 says an
   administrator's ``group remove`` is "seen by the owner's device only at its next unlock", of a device
   with no store watcher; here the deletion is in her store, delivered by the sync that takes in every
   other group change at once.)
   Fix: in ``Arrivals.committed`` (or where the replicator hands over ``arrival.current``) treat a bare
   deletion as fs/shared.py does: a possible change of groups (start ``_reshare``) and of shares (reload
   ``volume.sharing`` in ``absorb``), e.g. by looking up the type the store knew before the deletion, or
   simply by reading any ``_deleted`` arrival as SHARING_TYPES.
   Tests: test_a_group_removed_through_sync_while_she_is_mounted_rekeys_before_she_writes_again,
   test_a_file_she_makes_after_a_group_removed_through_sync_is_not_sealed_to_its_former_members.

2. THE SAME TOMBSTONE, STORED BUT NEVER LOOKED AT, IS UNDONE FOR GOOD BY THE SERVER SERVING THE GROUP'S OLD
   BODY AFTER IT: HER NEXT UNLOCK RE-KEYS NOTHING, NOTHING SAID.  Hole 1's consequence with one more
   document: crew's deletion reaches her store while she is mounted (hole 1: not taken in, freshness
   never records it deleted); the server then serves crew's last genuine body as a revision after the
   tombstone (``_takes`` takes a live body).  At her next unlock the store holds crew live with its old
   members, freshness never saw it deleted, so it is admitted, ``_groups_removed`` sees no deletion and
   ``sealed_members`` matches: plan.txt stays under the key carol and bob hold, no alarm.  A device whose
   unlock (or a reload) saw the tombstone records the deletion and refuses that body as a replay
   (SECURITY.md "A revoked grant cannot be put back": "no newer than a deleted one (..., ``group
   remove``, a deletion from a peer), is a replay"); this device had the deletion in its own store and
   forgot it only because the mount ignored it, so it is not "a device that never saw the deletion".
   Fix: hole 1's (a tombstone arriving while mounted is swept like one read at unlock, so the old body is
   then a replay), or have the replicator note deletions of grant ids in freshness as it stores them.
   Test: test_a_group_removal_her_mounted_device_stored_is_not_undone_by_the_server_serving_the_group_again.

3. ON A READ GRANTEE'S DEVICE A WRITER STILL BRINGS BACK INTO HIS FOLDER THE OWNER'S FILE SHE MOVED OUT OF
   IT AND DELETED, WITH THE CONTENTS OF HIS CHOICE, SHOWN AS HERS, NOTHING SAID.  Round 23a (3)'s fix
   (b499425) is the owner's device only: ``Authorship._place_unknown`` (vault/tree/authorship.py:274)
   is ``owner == self.user_id and ...``, and for a file not in the tree ``may_write`` takes the folders
   it leaves from ``was_at`` only ``if held is None and owner == self.user_id`` (authorship.py:263-266);
   the ledger keeps ``where`` and ``unplaced`` for the user's own files only.  On carol's device (READ on
   alice's docs, as bob WRITE), alice's docs/notes.txt left her tree when alice moved it to private/
   (which carol cannot see) and deleted it; bob (a peer, or the server) serves alice's node live again,
   links [docs, notes.txt], her first text's head/manifest, signed by him: judged only by the folder it
   enters (docs, which bob writes), so carol's device shows shared/alice/docs/notes.txt = "first" as
   alice's file, no alarm.  The laptop, in the same scene, refuses it (``forged-write``: the passing
   control).  Impact: alice's move out of bob's reach and her deletion are undone for every reader of the
   folder, as alice's file, in the folder she took it out of, with contents he picks (here her old
   version; a version he signs as a writer of docs not tried), and nothing says so.  Scope note:
   SECURITY.md "the rollback ledger keeps, for each of the user's own files, the folders it sat in"
   scopes the place memory to her own files; nothing in "Out of reach" concedes a grantee's view, and
   the promise that no device shows wrong bytes as her file covers carol's.  The maintainers may judge it
   a documented limit; then SECURITY.md should say so.
   Fix: a grantee's tree remembers, per file of another owner it showed, where it last saw it (or at
   least that the owner's own signed state took it out of every folder this user can see): a writer's
   document putting it back in is then judged as a move from a folder he does not write (refused,
   ``forged-write``); or the owner's trashing state, signed by her, is final against any non-owner's
   document with an older or concurrent seq.
   Test: test_a_writer_cannot_bring_back_on_a_readers_device_her_file_she_moved_out_of_his_folder_and_deleted
   [carol] (the hole; [laptop] is the passing control).

What held
---------
- Hole 1's window ends at her next unlock: the tombstone in her store, unmounted and mounted again,
  plan.txt gets a new DEK (``_groups_removed`` with ``LocalStore.deleted``; run, not kept).
- Root's shared mount: the administrator's ``group remove team`` while alice (the sharer) is unlocked
  re-keys proj and plan.txt at once (the store watcher's removed documents are typed Group): kept as the
  passing control
  test_a_group_removed_while_its_sharer_is_unlocked_in_the_shared_mount_rekeys_at_once.
- Her ``unshare`` on the laptop reaching her mounted desktop through sync: a file she makes afterwards in
  the folder on the desktop is not sealed to bob (before the unshare it was: the test's control), kept as
  test_a_file_made_on_her_desktop_after_her_unshare_on_the_laptop_is_not_sealed_to_the_revoked_user.
- ``group remove`` then a FORGED body at the group's id in store.sqlite (the old body with its name
  changed, signature broken): no re-key (the store no longer holds a deletion) but a ``forged`` alarm
  ("refused group ...: does not carry a valid signature"): said, not silent (run, not kept).
- ``_groups_removed`` wants the device's own record of sealing to members (``sealed_members``) and the
  store's deletion: a bare deletion by the server or a store writer costs one re-key (conceded), after
  which the record is empty and the group is refused as a replay until its owner signs a newer body, so
  no loop; re-keys are bounded by the group owner's genuine signings (read).  ``remember_members`` keeps
  4096 shares, filled only by her own group shares (read).  ``CouchStore.deleted``: a live leaf kept by
  the server hides a deletion only as withholding does (read).
- The ledger's ``unplaced`` (b499425): ``arrived`` no longer clears it for a document she did not sign
  and ``Authorship.may_write`` refuses a writer's document placing her own unplaced file before any
  stamp logic; ``_at`` is reached otherwise only from her own commits (``committed``), her stamp
  (``saw_placed``, newer than seen) and ``check_loaded`` for states of hers not moved (read).
- ``key_memory.own_body``/``signing_base``: a body she did not sign is replaced by the kept one, checked
  again; with no kept body ``Forged`` and nothing signed (read; the no-record case is "a device with no
  memory", conceded).
- Not tried for lack of time: ``CouchStore.deleted`` given a non-list answer by a hostile CouchDB
  server at unlock (``_, _, leaves = ...``: a TypeError there would stop her unlock, where a withholding
  server stops it anyway); a group owner's stream of changes exhausting PASSES; the ``init --couchdb``
  backend's mount (no store watcher: "at the next unlock", as documented).
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path

import adversary
import pytest
from attack_scenes import recipients_dek
from conftest import PouchServer, docs_of, first_device, fusevault, mounted, new_device, settled, wait_for
from services.test_trust_attack_round4 import _alarms

from fusevault.crypto import aead
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64e
from fusevault.errors import CorruptData
from fusevault.vault.format.layout import Layout
from fusevault.vault.model.nodes import open_node_attrs
from fusevault.vault.model.sharing import group_key_path
from mount import test_shared_mount as shared_mount
from mount.test_shared_mount import People
from mount.test_shared_mount import _admin as _shared_admin
from mount.test_trust_attack_round4 import _alice_dek
from mount.test_trust_attack_round19 import _crew_sharing_her_plan
from mount.test_trust_attack_round22 import docs_shared_with_bob
from mount.test_trust_writes import BOB, CAROL, _admin, _key, _node_fid, _user

linux, place, python, shared_vault, people = (shared_mount.linux, shared_mount.place, shared_mount.python,
                                              shared_mount.shared_vault, shared_mount.people)


def _http(method: str, url: str) -> dict:
    with urllib.request.urlopen(urllib.request.Request(url, method=method)) as answer:
        return json.loads(answer.read())


def _deleted_here(vault: Path, doc_id: str) -> bool:
    with adversary.store_of(vault) as store:
        return store.deleted(doc_id)


def test_a_group_removed_through_sync_while_she_is_mounted_rekeys_before_she_writes_again(
        tmp_path: Path) -> None:
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop = first_device(url, tmp_path)
        mnt = tmp_path / "a"
        fid = _crew_sharing_her_plan(laptop, mnt)
        dek = _alice_dek(laptop, fid)  # carol's and bob's, through crew
        (crew,) = [g["_id"] for g in adversary.docs(laptop, "Group")]
        with mounted(laptop, mnt) as m:
            wait_for(lambda: settled(m), "the first push")
            # `group remove crew` on the administrator's device (another device of this vault), synced to
            # the server: the same tombstone as a bare DELETE of the group's document on the server.
            rev = _http("GET", f"{url}/{crew}")["_rev"]
            _http("DELETE", f"{url}/{crew}?rev={rev}")
            wait_for(lambda: _deleted_here(laptop, crew), "the group's deletion in her store")
            time.sleep(3)  # a member removed through sync is re-keyed within a second (round 23a, held)
            (m / "plan.txt").write_text("written after crew was removed")
            time.sleep(1)
            after = _alice_dek(laptop, fid)
            said = [(a["kind"], a["text"][:100]) for a in _alarms(m)]
        assert after != dek, (
            f"crew was removed (its deletion reached her store through sync while she was mounted), yet "
            f"what alice writes to plan.txt is sealed under the key carol and bob hold, until her next "
            f"unlock; said: {said}")
    finally:
        server.stop()




def test_a_group_removal_her_mounted_device_stored_is_not_undone_by_the_server_serving_the_group_again(
        tmp_path: Path) -> None:
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop = first_device(url, tmp_path)
        mnt = tmp_path / "a"
        fid = _crew_sharing_her_plan(laptop, mnt)
        dek = _alice_dek(laptop, fid)  # carol's and bob's, through crew
        (old,) = adversary.docs(laptop, "Group")
        crew = old["_id"]
        with mounted(laptop, mnt) as m:
            wait_for(lambda: settled(m), "the first push")
            rev = _http("GET", f"{url}/{crew}")["_rev"]
            _http("DELETE", f"{url}/{crew}?rev={rev}")  # `group remove crew`, synced
            wait_for(lambda: _deleted_here(laptop, crew), "the group's deletion in her store")
            time.sleep(2)
            # The server then serves crew's last genuine body again, as a revision after the deletion.
            body = json.dumps({k: v for k, v in old.items() if k != "_rev"}).encode()
            request = urllib.request.Request(f"{url}/{crew}", data=body, method="PUT",
                                             headers={"Content-Type": "application/json"})
            urllib.request.urlopen(request).close()
            wait_for(lambda: not _deleted_here(laptop, crew) and adversary.get(laptop, crew) is not None,
                     "the group's body back in her store")
            wait_for(lambda: settled(m), "the sync")
        with mounted(laptop, mnt) as m:  # her next unlock
            (m / "plan.txt").write_text("written after crew was removed, and an unlock since")
            said = [(a["kind"], a["text"][:100]) for a in _alarms(m)]
        assert _alice_dek(laptop, fid) != dek or said, (
            f"crew's deletion reached her store (through sync, while she was mounted) and was never taken "
            f"in; the server served crew's old body after it, and her next unlock re-keys nothing: what "
            f"alice writes to plan.txt stays under the key carol and bob hold, nothing said ({said})")
    finally:
        server.stop()

def test_a_file_she_makes_after_a_group_removed_through_sync_is_not_sealed_to_its_former_members(
        tmp_path: Path) -> None:
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop = first_device(url, tmp_path)
        mnt = tmp_path / "a"
        _admin(laptop, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
        _admin(laptop, "user", "add", "carol", "--uid", "2002", passphrase=CAROL)
        _admin(laptop, "group", "add", "crew", "--owner", "bob", passphrase=BOB)
        _admin(laptop, "group", "member", "add", "crew", "carol", "--perm", "READ", passphrase=BOB)
        (crew,) = [g["_id"] for g in adversary.docs(laptop, "Group")]
        carol = _user(laptop, "carol")["_id"]
        with mounted(laptop, mnt) as m:
            (m / "proj").mkdir()
            shared = fusevault("share", m / "proj", "--with", "@crew", "--perm", "READ")
            assert shared.returncode == 0, shared.stderr
            wait_for(lambda: settled(m), "the first push")
            rev = _http("GET", f"{url}/{crew}")["_rev"]
            _http("DELETE", f"{url}/{crew}?rev={rev}")  # `group remove crew`, synced (or the server's)
            wait_for(lambda: _deleted_here(laptop, crew), "the group's deletion in her store")
            time.sleep(3)
            (m / "proj" / "new.txt").write_text("made after crew was removed")
            time.sleep(2)
            fid = _node_fid(laptop, "alice", "new.txt")
            said = [(a["kind"], a["text"][:100]) for a in _alarms(m)]
        layout = Layout(laptop, "", {})
        assert not group_key_path(layout, crew, fid, carol).exists(), (
            f"crew was removed (its deletion in her store, through sync, while she was mounted), yet the key "
            f"of new.txt, which alice made in proj after that, is sealed to carol, its former member; "
            f"said: {said}")
    finally:
        server.stop()

def test_a_group_removed_while_its_sharer_is_unlocked_in_the_shared_mount_rekeys_at_once(
        people: People, shared_vault: Path) -> None:
    people.unlock("alice")
    before = {d["_id"] for d in docs_of(shared_vault, "node")}
    people.ok("alice", "mkdir $M/proj && echo plan > $M/proj/plan.txt")
    shared = people.fusevault("alice", "share", f"{people.mnt}/proj", "--with", "@team", "--perm", "WRITE")
    assert shared.returncode == 0, shared.stderr

    def epochs() -> list[int]:  # of proj and plan.txt
        return [d.get("epoch", 0) for d in docs_of(shared_vault, "node") if d["_id"] not in before]

    assert epochs() == [0, 0]
    _shared_admin(shared_vault, "group", "remove", "team")  # the administrator's, while alice is unlocked
    assert docs_of(shared_vault, "Group") == []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and 0 in epochs():
        time.sleep(0.3)
    people.ok("alice", "echo written after team was removed >> $M/proj/plan.txt")
    assert 0 not in epochs(), (
        f"team was removed while alice was unlocked in root's shared mount, yet proj and plan.txt keep the "
        f"key bob holds (epochs {epochs()}) and what she writes is sealed under it, until she locks")


def test_a_file_made_on_her_desktop_after_her_unshare_on_the_laptop_is_not_sealed_to_the_revoked_user(
        tmp_path: Path) -> None:
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop = first_device(url, tmp_path)
        _admin(laptop, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
        with mounted(laptop, tmp_path / "a") as a:
            (a / "proj").mkdir()
            shared = fusevault("share", a / "proj", "--with", "bob", "--perm", "READ")
            assert shared.returncode == 0, shared.stderr
            wait_for(lambda: settled(a), "the first push")
            desktop = new_device(url, tmp_path, "desktop")
            (share,) = [s["_id"] for s in adversary.docs(laptop, "Share")]
            with mounted(desktop, tmp_path / "d") as d:
                wait_for(lambda: settled(d) and (d / "proj").is_dir(), "the desktop to take in proj")
                (d / "proj" / "before.txt").write_text("made on the desktop while bob may read proj")
                time.sleep(1)
                alice, bob = _user(desktop, "alice")["_id"], _user(desktop, "bob")["_id"]
                control = _node_fid(desktop, "alice", "before.txt")
                # The control: bob may read proj, and the desktop seals him a new file's key.
                assert (desktop / "users" / bob / "shared" / f"{alice}_{control}.vfkey").exists()
                gone = fusevault("unshare", a / "proj", "--with", "bob")  # on her laptop
                assert gone.returncode == 0, gone.stderr
                wait_for(lambda: _deleted_here(desktop, share), "her unshare's deletion in the desktop's "
                         "store")
                time.sleep(3)
                (d / "proj" / "new.txt").write_text("made on the desktop after bob's share was revoked")
                time.sleep(2)
                fid = _node_fid(desktop, "alice", "new.txt")
                said = [(x["kind"], x["text"][:100]) for x in _alarms(d)]
        sealed = desktop / "users" / bob / "shared" / f"{alice}_{fid}.vfkey"
        assert not sealed.exists(), (
            f"alice unshared proj from bob on her laptop (the Share's deletion reached her mounted desktop), "
            f"yet new.txt, made in proj on the desktop afterwards, has its key sealed to bob; said: {said}")
    finally:
        server.stop()


@pytest.mark.parametrize("where", [
    "carol",
    "laptop"])  # the control: the device that made the move refuses it with an alarm
def test_a_writer_cannot_bring_back_on_a_readers_device_her_file_she_moved_out_of_his_folder_and_deleted(
        tmp_path: Path, where: str) -> None:
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop = first_device(url, tmp_path)
        docs_shared_with_bob(laptop, tmp_path / "a")  # docs/notes.txt "first", bob WRITE on docs
        _admin(laptop, "user", "add", "carol", "--uid", "2002", passphrase=CAROL)
        fid, docs = _node_fid(laptop, "alice", "notes.txt"), _node_fid(laptop, "alice", "docs")
        dek = recipients_dek(laptop, "bob", BOB, fid)  # bob's, while he wrote docs
        first = open_node_attrs(adversary.get(laptop, fid), dek)  # her first text, as bob saw it
        with mounted(laptop, tmp_path / "a") as a:
            shared = fusevault("share", a / "docs", "--with", "carol", "--perm", "READ")
            assert shared.returncode == 0, shared.stderr
            (a / "docs" / "notes.txt").write_text("her notes")
            wait_for(lambda: settled(a), "the first push")
        carols = tmp_path / "carols"  # carol's own device
        joined = fusevault("init", carols, "--join", url, "--user", "carol", passphrase=CAROL)
        assert joined.returncode == 0, joined.stderr
        seen = tmp_path / "c" / "shared" / "alice" / "docs" / "notes.txt"
        with mounted(carols, tmp_path / "c", "--user", "carol", passphrase=CAROL) as c:
            wait_for(lambda: settled(c) and seen.exists(), "carol's device to see docs/notes.txt")
        with mounted(laptop, tmp_path / "a") as a:  # alice takes it out of bob's folder, and deletes it
            os.rename(a / "docs" / "notes.txt", a / "private" / "notes.txt")
            wait_for(lambda: settled(a), "the move pushed")
            os.unlink(a / "private" / "notes.txt")
            wait_for(lambda: settled(a), "the deletion pushed")
        with mounted(carols, tmp_path / "c", "--user", "carol", passphrase=CAROL) as c:
            wait_for(lambda: settled(c) and not seen.exists(), "carol's device to see it go")
        # bob (a peer, or the server) serves her trashed node live again in docs, signed by him, with her
        # first text.
        device = carols if where == "carol" else laptop
        trashed = adversary.get(device, fid)
        assert trashed is not None and trashed.get("delete")
        # Her move out of docs took bob's key back and gave notes.txt a new one (rotation.py
        # ``keep_moves_rekeyed``): the key he kept opens her trashed state no longer.  Given the new key
        # all the same (the worst case), his document is still judged by where she put the file.
        with pytest.raises(CorruptData):
            open_node_attrs(trashed, dek)
        dek = _alice_dek(device, fid)
        attrs = {k: v for k, v in open_node_attrs(trashed, dek).items() if k != "trashed"}
        attrs["links"] = [[docs, "notes.txt"]]
        attrs.update({k: first[k] for k in ("head", "manifest", "size", "allocated")})
        body = {k: v for k, v in trashed.items() if not k.startswith("_") and k != "sig"}
        body.update({"_id": fid, "delete": False,
                     "enc": b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", fid)))})
        bob = _key(laptop, "bob", BOB)
        adversary.put(device, sign_doc(bob.user_id, bob.identity.sign, body))
        if where == "carol":
            view = mounted(carols, tmp_path / "c", "--user", "carol", passphrase=CAROL)
            shown = seen
        else:
            view = mounted(laptop, tmp_path / "a")
            shown = tmp_path / "a" / "docs" / "notes.txt"
        with view as m:
            time.sleep(1)
            back = shown.exists()
            try:
                text = shown.read_text() if back else None
            except OSError as err:  # under her new key, his state names records sealed under the old one
                text = str(err)
            said = [(x["kind"], x["text"][:110]) for x in _alarms(m) if fid in x["text"]]
        assert not back or said, (
            f"bob, a writer of docs, brought back into docs alice's notes.txt that she moved out of it and "
            f"deleted, with the text of his choice ({text!r}), and {where}'s device shows it there as "
            f"alice's file, nothing said")
    finally:
        server.stop()
