"""Issue 22, attack round 13: the code that landed in the hour before 1b1a2d5 (vault/tree/undeleting.py and
loading.py: a refused deletion rebuilt from the owner's own material; placement stamps; freshness
``record_id``; lineage caps; accounts ``checked_group``; the shared mount's watcher; gc asking the ledger).

The owner, alice; bob, a user of her vault who can write the vault folder.  Each test asserts the SAFE
behaviour; holes are marked ``xfail(strict=True)``, each seen to fail for the reason named (``--runxfail``).

Found at 1b1a2d5: 4 holes in 8 xfail tests, most severe first (all FIXED):
1. FIXED (``_doc`` raises CorruptData; ``by_file`` skips such a body alone).
   A ROW WHOSE BODY IS NO OBJECT (any writer of the vault folder, no key).  A row put in store.sqlite whose
   body is valid JSON but not an object (``[]``).  ``LocalStore._doc`` does ``doc["_id"] = ...`` on it:
   TypeError, not the CorruptData every reader skips (``iter_type``, the watcher's ``_take_in``).  Impact:
   typed ``node`` or ``Group``, every user's mount fails ("internal error", exit 70) until the row is
   removed by hand; untyped, root's shared mount's watcher fails its batch and reads it again forever
   (round 11 (2)'s fix: never leave a batch), so a `group member remove` written after it is never taken
   in: the removed member keeps reading the group's folder while unlocked (seen: 20 s; with ``{}`` planted
   instead the removal is taken in).  Fix: ``_doc`` raises CorruptData for a body that is not a dict (and
   ``_take_in``/``iter_type`` keep skipping it alone).  Tests:
   test_a_row_whose_body_is_no_object_does_not_stop_her_mount (node, Group),
   test_a_row_whose_body_is_no_object_is_refused_as_one_that_does_not_read,
   test_a_row_whose_body_is_no_object_does_not_make_the_shared_mount_miss_a_members_removal.
2. FIXED (the owner's device keeps the newest body of her group it admitted or signed, sealed:
   vault/model/group_copies.py; `group member add/remove` build on it, a vector above both; with no copy a
   removal still signs over the replay, the member out; more in tests/mount/test_group_copy.py).
   A MEMBER KEEPS HIMSELF IN (round 12 (1)'s fix, fail-closed the wrong way).  alice's team has bob, then
   carol; bob (who writes the vault folder) puts the older signed team back.  Readers refuse it as a replay
   (fine), but `group member remove team bob` now exits 32 ("a replay, refused to sign over it; put its
   newest body back"): she holds no copy of the newest body, so she cannot take bob out; bob stays a member
   everywhere, and each time she re-adds/removes he can replay again.  Her only way out seen by reading:
   `group remove` of the whole group (not tried).  Cause: accounts.checked_group refuses instead of building
   on what this device admitted.  Fix: keep the newest admitted group body on the device (the trust record,
   sealed) and build add/remove on it, never on the store's; or for a removal sign over the store body
   with the removed member out AND every member this device saw removed kept out (a vector above both).
   Test: test_a_member_replaying_an_older_group_body_cannot_stop_his_removal.
3. FIXED (name_of: the path of her version the file is rebuilt from first; no unchecked scan).
   A READ recipient renames the owner's file (and can hide it under a dot name).  alice's
   private/notes.txt is shared READ with bob.  bob opens her node document with the file's key (his
   grant), writes in it a deletion whose ``links`` name her folder private (its fid is in the links he
   just opened) with another name (".notes.txt"), or names no folder and says
   ``trashed: ["x/.notes.txt", ...]``, signs it himself.  At her unlock the deletion is refused (no
   WRITE) and the file rebuilt from her own newest signed version (good: its bytes are hers), but under
   BOB's name: ``undeleting.name_of`` takes the refused document's ``links``/``trashed`` name before the
   name in her own signed version.  So a reader renames her file (a write he does not hold), can hide it
   (a dot name: ``ls`` shows nothing), or make it look like another file; her next commit signs the new
   name as hers.  Cause: name_of's order (the deleter's word first).  Fix: her newest signed version's
   path first (or a name the ledger kept with ``where``); the refused document's name only for a file with
   no version (and then at least never a name this device did not see).
   Also (read, not driven): name_of's version name comes from ``_versions``, which checks no signer: any
   document with the chosen version's ``vid`` and an ``owner_dek`` he sealed to her names it; take the
   name from the very version ``_newest_version`` chose.
   Test: test_a_read_recipients_refused_deletion_does_not_rename_the_owners_file (links, trashed).
4. FIXED (``LocalStore.by_file`` leaves out a body that does not read, as ``iter_type`` does).
   A VERSION ROW THAT DOES NOT READ TAKES HER FILE'S HISTORY (any writer of the vault folder, no key).
   A row of type FilesMetaData whose body names her file's ``fid`` (SQLite's ``json_extract`` reads it)
   but is nested deeper than fusevault reads: ``LocalStore.by_file`` raises CorruptData for the whole
   list, so `fusevault history notes.txt` fails ("document planted is not valid JSON", exit 5): she
   cannot list nor restore an older version (the way back from a bad write or a rollback); the same
   by_file is in undeleting (a refused deletion's rebuild), authorship ``_wrapped_otherwise`` and check
   (not driven).  Control: the same row typed otherwise, history lists her 2 versions.  Fix: by_file
   skips a body that does not read, as iter_type does (a ``malformed`` alarm).
   Test: test_a_version_row_that_does_not_read_does_not_take_her_files_history.
Holds (read, not driven, in the time): _newest_version takes a writer's version only when he writes in
every folder this device (or her stamp) puts the file in, and only versions whose ``owner`` is hers;
``first_key`` takes only her own wrapping at epoch 0, never an ``owner_dek``; a clash with a name in the
folder gets " (recovered <fid>)", so no file of hers is hidden by a clashing name; ``names.problem``
refuses ``..``, "/", NUL, so no name leaves the folder; a row of type User whose body is ``[]`` does not
stop her mount (the User case of test (1) passed).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import adversary
import pytest
from attack_scenes import add_team, add_users, group_doc, recipients_dek
from conftest import fusevault, mounted

from fusevault.errors import CorruptData
from fusevault.vault.model.nodes import open_node_attrs
from mount.test_shared_mount import SECRETS, People, linux, people, place, python, shared_vault  # noqa: F401
from mount.test_shared_mount import pytestmark as SHARED_ONLY
from mount.test_trust_attack_round11 import (
    _bobs_read_deletion,
    _notes_read_to_bob,
    bob_reads_proj_through_team,
    removed_bob_loses_proj,
)
from mount.test_trust_writes import BOB as BOB_SECRET
from mount.test_trust_writes import PASSPHRASE, _admin, _node_fid


@pytest.mark.parametrize("how", ["links", "trashed"])
def test_a_read_recipients_refused_deletion_does_not_rename_the_owners_file(
        vault: Path, tmp_path: Path, how: str) -> None:
    """alice's private/notes.txt ("first", then "second"), shared READ with bob.  bob signs a deletion of
    it whose sealed attributes (under the file's key, from his grant) name it ".notes.txt" in her folder
    private (``links``: the folder's fid is in the attributes he opened) or ``trashed`` as
    "x/.notes.txt".  alice unlocks: the deletion is refused (READ only).  Safe: private lists notes.txt,
    reading "second", and no other name (a READ recipient renames nothing of hers)."""
    mnt, notes, _old = _notes_read_to_bob(vault, tmp_path)
    attrs = open_node_attrs(adversary.get(vault, notes), recipients_dek(vault, "bob", BOB_SECRET, notes))
    if how == "links":
        attrs.update(links=[[parent, ".notes.txt"] for parent, _name in attrs["links"]])
    else:
        attrs.update(links=[], trashed=["x/.notes.txt", attrs["mtime"]])
    attrs.update(seq=["bobs-device", 1])
    _bobs_read_deletion(vault, notes, attrs)
    with mounted(vault, mnt):
        status = fusevault("status", mnt).stdout
        print(status[-2000:])
        listed = sorted(os.listdir(mnt / "private"))
        text = {name: (mnt / "private" / name).read_text() for name in listed}
    print(listed, text)
    assert "who holds no WRITE where it was" in status
    assert listed == ["notes.txt"], f"bob, a READ recipient, renamed alice's file: {listed}"
    assert text["notes.txt"] == "second: alice's final text"


def test_a_member_replaying_an_older_group_body_cannot_stop_his_removal(vault: Path) -> None:
    """The real commands: alice's group team has bob (READ), then carol.  bob, who writes the vault folder,
    puts back the older signed team (bob alone: every reader refuses it as a replay, so nothing shows).
    alice then removes bob (`group member remove team bob`).  Safe: the command succeeds and the team
    she signs has no bob (it builds on the newest body her device saw, not on the store's replay)."""
    add_users(vault, "bob", "carol")
    add_team(vault, "bob")
    older = group_doc(vault, "team")
    bob = older["users"].keys() - {older["owner"]}
    _admin(vault, "group", "member", "add", "team", "carol", "--perm", "READ")
    adversary.put(vault, older)  # bob's replay: he stays in it
    result = fusevault("group", "member", "remove", "team", "bob",
                       env={"FUSEVAULT_VAULT": str(vault)}, passphrase=PASSPHRASE)
    print(result.returncode, result.stderr[-1000:])
    now = group_doc(vault, "team")
    assert result.returncode == 0, f"alice cannot remove bob from her group: {result.stderr[-300:]}"
    assert not bob & now["users"].keys(), "bob is still in alice's group"


def _plant_raw(vault: Path, doc_id: str, doc_type: str | None, body: str) -> None:
    """A row a store writer puts in the vault folder's SQLite store directly (no key needed), as the
    store's newest change: ``body`` is JSON, but not necessarily an object."""
    db = sqlite3.connect(vault / "store.sqlite", timeout=30)
    try:
        with db:
            (seq,) = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM docs").fetchone()
            db.execute("INSERT INTO docs (id, rev, seq, deleted, type, body, revs) "
                       "VALUES (?, ?, ?, 0, ?, ?, NULL)", (doc_id, "1-0", seq, doc_type, body))
    finally:
        db.close()


HOLE_NO_OBJECT = "hole (1): LocalStore._doc raises TypeError on a body that is no object"


@pytest.mark.parametrize("doc_type", ["node", "Group"])
def test_a_row_whose_body_is_no_object_does_not_stop_her_mount(
        vault: Path, tmp_path: Path, doc_type: str) -> None:
    """alice's notes.txt.  A store writer plants a row of type ``doc_type`` whose body is the JSON ``[]``
    (valid JSON, no object).  Safe: alice mounts and reads notes.txt (the row is left out, as one nested too
    deep is: LocalStore.iter_type skips CorruptData)."""
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "notes.txt").write_text("alice's notes")
    _plant_raw(vault, "planted", doc_type, "[]")
    with mounted(vault, mnt):
        assert (mnt / "notes.txt").read_text() == "alice's notes"


def test_a_row_whose_body_is_no_object_is_refused_as_one_that_does_not_read(vault: Path) -> None:
    """The store watcher of root's shared mount (fs/shared.py ``_take_in``) and every reader skip a row
    alone only when ``LocalStore.get`` raises CorruptData; anything else fails the whole batch, which the
    watcher reads again forever (a later `group member remove` never taken in).  A store writer plants a
    row (no type) whose body is ``[]``.  Safe: reading it raises CorruptData."""
    _plant_raw(vault, "planted", None, "[]")
    with adversary.store_of(vault) as store:
        with pytest.raises(CorruptData):
            store.get("planted")


@SHARED_ONLY
def test_a_row_whose_body_is_no_object_does_not_make_the_shared_mount_miss_a_members_removal(
        people: People, shared_vault: Path) -> None:  # noqa: F811
    """root's shared mount: alice shares proj with @team (bob a member); bob reads it.  A store writer
    plants ONE row (no type) whose body is ``[]``; then the administrator removes bob from team.  Safe:
    bob loses the group's folder while unlocked (round 11 (2)'s scene, one row enough)."""
    bob_reads_proj_through_team(people)
    _plant_raw(shared_vault, "planted", None, "[]")
    removed_bob_loses_proj(people, shared_vault)


def test_a_version_row_that_does_not_read_does_not_take_her_files_history(
        vault: Path, tmp_path: Path) -> None:
    """alice writes notes.txt twice (two versions).  A store writer (no key) plants a row of type
    FilesMetaData whose body names the file (``fid``, which SQLite's index reads) but is nested deeper
    than fusevault reads.  Safe: `fusevault history` still lists her two versions (the row is left out,
    as ``iter_type`` leaves one out), so she can still restore an older one."""
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "notes.txt").write_text("first")
        (mnt / "notes.txt").write_text("second")
    notes = _node_fid(vault, "alice", "notes.txt")
    deep = "[" * 200 + "]" * 200
    _plant_raw(vault, "planted", "FilesMetaData", f'{{"fid": "{notes}", "a": {deep}}}')
    with mounted(vault, mnt):
        listed = fusevault("history", mnt / "notes.txt")
    print(listed.returncode, listed.stdout, listed.stderr)
    assert listed.returncode == 0, f"her file's history does not list: {listed.stderr[-300:]}"
    assert len(listed.stdout.splitlines()) == 3  # the heading and her two versions
