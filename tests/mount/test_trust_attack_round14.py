"""Issue 22, attack round 14: the code that landed in rounds 11-13 and was never attacked itself (placement
stamps, lineage caps, refused deletions rebuilt, the store's CorruptData path and ``by_file``, the shared
mount's watcher, gc asking the ledger), and the store and documents around it.

The owner, alice; bob, a user of her vault (a READ recipient where said) who can write the vault folder;
carol, another reader; the CouchDB server.  Each test asserts the SAFE behaviour; holes are marked
``xfail(strict=True)``, each seen to fail for the reason named (``--runxfail``), with a control passing.

Found at 3e89cc8: 7 holes in 16 xfail tests, most severe first:
1. DATA LOSS, SILENT (a writer of the vault folder, no key).  One row put in store.sqlite whose ``seq``
   is no whole number: SQLite keeps 1e300 (REAL) or "x" (TEXT) in ``seq INTEGER``.  1e300:
   ``LocalStore.next_seq`` (MAX(seq)+1) gives 1e300 to every document of every later commit, and
   ``write_doc``'s INSERT OR REPLACE on the UNIQUE seq deletes whichever row held it: each commit keeps
   its last document only, and the next commit deletes that one (the planted row goes first: no
   trace).  Seen: she writes new.txt and notes.txt; at the next mount her root lists NOTHING (her root
   folder's row, updated, was deleted: notes.txt too).  No error, no alarm while she writes.  "x": every
   commit raises TypeError (EIO on every write).  Root's shared mount: the watcher's ``since`` becomes
   1e300 and nothing is ever after it: a member removed from a group keeps reading its folder (control:
   the same row with seq 10**6: he loses it).  Cause: store/local.py ``next_seq``, ``write_doc``,
   ``changes`` trust the column's type.  Fix: at open, a row whose ``typeof(seq)`` is not integer is
   damage (renumber it after the largest whole seq, or leave it out with a ``malformed`` alarm);
   ``next_seq``/``changes`` read whole numbers only; ``write_doc`` deletes by id then INSERTs (no
   REPLACE: a seq clash fails the commit, never deletes another document).
   Tests: test_a_row_whose_seq_is_no_whole_number_loses_none_of_her_writes (real, text),
   test_a_row_whose_seq_is_no_whole_number_does_not_make_the_shared_mount_miss_a_members_removal.
   FIXED (store/local.py): a seq is whole only if ``typeof(seq)`` is integer in 1..2**62 (WHOLE_SEQ);
   ``next_seq``, ``changes`` (and the push's count) read those only, the odd rows are counted in a
   warning at open; a ``since`` that is no seq of the store (a checkpoint in local_docs) reads as 0;
   ``write_doc`` deletes by id then INSERTs, so a clash fails the commit.  Also tests/services/
   test_store_rows.py (1e300, 5.5, "x", a BLOB, 2**63-1, -5; the clash; odd checkpoints).
2. WRITES AND DELETES OUTSIDE THE VAULT FOLDER (the CouchDB server, or a store writer; no key, nothing
   signed).  A UserDetails (or Group) document whose id is "../../escaped/x", with the shape
   ``shapes.well_formed`` asks: at every mount and every `user`/`group` command,
   ``meta_files.reconcile`` makes ``<id>/own``, ``<id>/shared`` and writes ``<id>/meta.inf`` (JSON,
   fields of the attacker's) at that path under ``users/``: any folder made, any file named meta.inf
   replaced, as the mounting user; root's shared mount reconciles as root (fs/shared.py ``serve``;
   read, not driven).  Worse, `user remove` of such a user (an administrator cleaning out a user she
   does not know) does ``shutil.rmtree(layout.user_dir(id))``: seen deleting a whole folder outside
   the vault folder ("removed user mallory", exit 0).  An absolute id ("/x") goes anywhere too (read).
   Cause: meta_files.reconcile, services/accounts.py (user removal), layout.user_dir/group_dir take an
   unsigned document's id as a path.  Fix: an id used as a path must be one name fusevault makes (32
   hex digits), else refused with an alarm (``shapes.user_ok``/``group_ok``), and the sync's pull
   refuses such ids; meta.inf written and folders removed under the vault root only (openat,
   O_NOFOLLOW, as export does).
   FIXED (layout.checked_id: every user, group and file id made a path must be 32 hex digits, else
   UnsafeId; shapes.user_ok/group_ok/share_ok refuse such documents (a ``malformed`` alarm), the pull
   refuses them from a peer (an alarm), `user remove` refuses first; meta.inf written, folders made and
   removed from the vault root with O_NOFOLLOW, a symbolic link refused (vault/format/inside.py); a node
   whose fid or owner is no id is left out as malformed; key files are not written through a link).
   Tests: test_a_planted_user_or_group_id_writes_nothing_outside_the_vault_folder (UserDetails, Group),
   test_a_servers_user_id_writes_nothing_outside_the_vault_folder,
   test_removing_a_planted_user_deletes_nothing_outside_the_vault_folder; more in
   tests/mount/test_vault_folder_ids.py and tests/unit/test_layout_ids.py.
3. FIXED (the ledger's ``names``: the name of each of her nodes in the last state this device took;
   ``undeleting.name_of`` takes it first, then her version's, the deleter's only when none is known and
   never a dot name).  Tests also: tests/unit/test_ledger_names.py,
   test_a_read_recipients_refused_deletion_does_not_give_back_a_name_she_renamed_away.
   A READ RECIPIENT RENAMES OR HIDES HER FOLDER (round 13 (3)'s fix covers files with a version only).
   bob, READ on alice's folder proj, signs a deletion of it naming it ".proj" (his attributes, sealed
   under the key his grant gives), or leaving out her wrapping of its key (she cannot open his
   attributes).  Refused ("it stays"), and put back as ".proj" (``ls`` shows nothing) or "recovered
   <fid>": every path to it breaks and her next commit signs his name.  Cause: undeleting.name_of: a
   folder has no version, so the refused document's name (or one made from the id) is all it takes.
   Fix: the ledger keeps the name (with ``where``) each of her nodes was last seen under; name_of takes
   it first; with none, never a name the deleter's document gives unless no other is known (and then
   never a dot name).  Test: test_a_read_recipients_refused_deletion_does_not_rename_the_owners_folder.
4. FIXED (``undeleting.rebuilt`` says when it made the key; ``keep_undeleted`` puts such a node in
   ``ledger.rolled``: before the mount serves it gets a key above every epoch seen or held by its
   grantees, sealed to them; no key kept in the ledger, so no new copy of one on disk).  Test also:
   test_a_read_recipients_refused_deletion_of_a_shared_file_with_no_version_does_not_lock_out_its_readers.
   A READ RECIPIENT LOCKS THE OTHER READERS OUT FOR GOOD.  proj shared READ with bob and carol.  bob's
   deletion of proj leaves out her wrapping (``en_file_dek``): refused, and rebuilt under a NEW random
   key (``first_key`` finds none).  Her next commit seals proj's document under it; carol's key file
   holds the old key at the same epoch 0, which ``fill_missing`` counts as good ("a key is only ever
   created, never replaced"): at her next mount carol sees proj as a folder named by its id that she may
   not enter (EACCES), though alice shares it still (control: his deletion keeping her wrapping: carol
   reads on).  The same for a folder ever given a new key (epoch > 0: a new key whatever his document
   holds) and a file with no version (read, not driven).  Cause: undeleting.rebuilt (``aead.new_key()``
   at the seen epoch).  Fix: a node rebuilt under a new key takes an epoch above every one seen and goes
   to ``ledger.rolled`` (its grantees' keys sealed again, as after a rollback); or the ledger keeps her
   folders' keys (sealed).
   Test: test_a_read_recipients_refused_deletion_of_a_shared_folder_does_not_lock_out_its_other_readers.
5. A ROW TYPED ONLY BY ITS COLUMN STOPS EVERY MOUNT AND EVERY ADMIN COMMAND (store writer, no key).  A
   row of type UserDetails, Group or Share (the type column, which ``iter_type`` selects on) whose body
   is ``{}``: ``shapes.ok`` picks its check by the BODY's type (none: no check), so reconcile's
   ``group_meta``/``user_meta`` raise KeyError ("internal error", exit 70) and ``all_grants`` raises
   CorruptData ("share document planted is malformed", exit 5).  Cause:
   vault/model/shapes.py ``ok``/``well_formed``.  Fix: well_formed checks the shape of the kind asked for
   (and that the body's type is it); all_grants leaves a bad Share out, as iter_type leaves out ``[]``.
   Test: test_a_row_typed_only_by_its_column_does_not_stop_her_mount (UserDetails, Group, Share).
   FIXED (vault/model/shapes.py): well_formed checks each row as the kind asked for, its body's type
   that kind, and no body's ``_deleted`` passes unchecked; sharing.grant_of takes a Share without
   ``group`` (share_ok allows it).  Also tests/unit/test_shapes_kind.py (``{}``, ``_deleted``, a
   well-formed document of another kind, as each kind; all_grants).
6. HER ROOT'S ROW MADE UNREADABLE STOPS HER MOUNT (store writer, no key; round 11 (9)'s fix bypassed).
   Her root folder's row given the body ``[]`` or JSON nested too deep: iter_type leaves it out, then
   ``rebuilding.root_again`` reads it with ``store.get``, which raises CorruptData: "document ... is not a
   JSON object", exit 5, at every mount.  Fix: root_again takes a root that does not read as missing (a
   rollback, said; an empty root in memory): seen passing with that one change.
   Test: test_a_root_row_that_does_not_read_does_not_stop_her_mount (no-object, too-deep).
   FIXED (vault/tree/loading.py): root_again takes a root whose row does not read as missing (said
   as a rollback), keeping the row's revision (store/unreadable.py carries it) so her next commit of the
   root replaces that row.  Also test_a_root_row_that_does_not_read_takes_her_next_writes_there.
7. A REPLACED FILE'S ROW THAT DOES NOT READ TAKES HER FILE'S HISTORY (store writer, no key; round 13
   (4)'s fix covers by_file only).  notes.txt saved as editors do (a new file renamed over it, which
   names the old one as replaced); the old file's row given the body ``[]``: `fusevault history
   notes.txt` fails ("document ... is not a JSON object", exit 5), her current file's versions with it,
   so no restore; gc runs the same ``lineage`` for each of her files (read, not driven: one such row
   would stop every gc run).  Cause: vault/model/history.py ``lineage``'s ``store.get(previous)``.  Fix:
   a replaced file whose row does not read ends the chain (a ``malformed`` alarm), as a gone one does.
   Test: test_a_replaced_files_row_that_does_not_read_does_not_take_her_files_history.
   FIXED (vault/model/history.py): lineage takes a replaced file whose row does not read as the end of
   the chain, with a ``malformed`` alarm.  Also test_a_replaced_files_row_that_does_not_read_does_not_stop_gc.
Holds (read, not driven, in the time): placement stamps bind vault, owner, fid, seq and parents; one not
newer than what this device saw from its device, naming a folder not hers or not held, or no folder, is
not followed, so a grantee carrying an older stamp of hers only has his own document judged from where
she put it.  Lineage: MAX_TIPS's join only refuses more (the safe side); ``record_id`` keys another
user's bodies by (owner, id), and only her own devices sign her vectors.  gc never purges a file whose
deletion was refused (the tree holds it); a replay of a writer's own newest deletion after her restore is
the documented per-device limit (docs/SECURITY.md "Rollback").  The shared mount's watcher otherwise held:
``committed`` catches per user, ``_reshare`` catches, a row that does not read is skipped alone; seq is the
one way found to stall it (fixed with (1)).  Seen, left: a row's ``rev`` made "x-0" by a store writer
makes every commit of that document fail (revs.next_rev's int(); not driven; FIXED: store/revs.py, a rev
that is none is generation 0, test_store_rows.py); a row whose id is a BLOB stops the mount too
(LocalStore._doc takes any id; seen together with (5)'s empty body, not isolated; FIXED: such a row does
not read, and is left out of the changes, test_store_rows.py).
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from urllib.parse import quote

import adversary
import httpx
import pytest
from attack_scenes import mounts_again, recipients_dek, scene
from conftest import fusevault, mounted, wait_for

from fusevault.crypto import aead
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64e
from fusevault.vault.model.nodes import VERSION, open_node_attrs
from mount.test_shared_mount import SECRETS, People, linux, people, place, python, shared_vault  # noqa: F401
from mount.test_shared_mount import pytestmark as SHARED_ONLY
from mount.test_trust_attack_round11 import bob_reads_proj_through_team, removed_bob_loses_proj
from mount.test_trust_writes import BOB as BOB_SECRET
from mount.test_trust_writes import CAROL, _key, _node_fid


def _plant_seq(vault: Path, seq: object, body: str = "{}", doc_id: str = "planted") -> None:
    """A row a store writer (no key) puts in the vault folder's SQLite store directly, whose ``seq``
    (the store's change counter) is not a whole number: SQLite keeps a column's value of another type
    as it is (``seq INTEGER`` is only an affinity)."""
    db = sqlite3.connect(vault / "store.sqlite", timeout=30)
    try:
        with db:
            db.execute("INSERT INTO docs (id, rev, seq, deleted, type, body, revs) "
                       "VALUES (?, '1-0', ?, 0, NULL, ?, NULL)", (doc_id, seq, body))
    finally:
        db.close()


@pytest.mark.parametrize("seq", [1e300, "x"], ids=["real", "text"])
def test_a_row_whose_seq_is_no_whole_number_loses_none_of_her_writes(
        vault: Path, tmp_path: Path, seq: object) -> None:
    """alice's notes.txt.  A store writer (no key) plants one row whose ``seq`` is 1e300 (a REAL, kept
    so by SQLite) or "x" (TEXT).  alice mounts, writes new.txt and notes.txt again, unmounts, mounts
    again.  Safe: both read what she wrote (the row is skipped or refused, never the end of her writes)."""
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "notes.txt").write_text("first")
    _plant_seq(vault, seq)
    with mounted(vault, mnt):
        (mnt / "new.txt").write_text("new file")
        (mnt / "notes.txt").write_text("second")
    with mounted(vault, mnt):
        listed = sorted(p.name for p in mnt.iterdir())
        print(listed)
        assert (mnt / "new.txt").read_text() == "new file"
        assert (mnt / "notes.txt").read_text() == "second"


@SHARED_ONLY
def test_a_row_whose_seq_is_no_whole_number_does_not_make_the_shared_mount_miss_a_members_removal(
        people: People, shared_vault: Path) -> None:  # noqa: F811
    """root's shared mount: alice shares proj with @team (bob a member); bob reads it.  A store writer
    plants ONE row whose ``seq`` is 1e300, and a marker after the last whole seq (their bodies do not
    read, which the watcher skips and says); then the administrator removes bob from team.  Safe: bob
    loses the group's folder while unlocked (round 13 (1)'s scene: the watcher, which reads the
    store's changes after the last seq it took in, must not be stalled by one row)."""
    bob_reads_proj_through_team(people)
    _plant_seq(shared_vault, 1e300, body="[]")
    db = sqlite3.connect(shared_vault / "store.sqlite", timeout=30)
    try:
        (last,) = db.execute("SELECT MAX(seq) FROM docs WHERE typeof(seq) = 'integer'").fetchone()
    finally:
        db.close()
    _plant_seq(shared_vault, last + 1, body="[]", doc_id="marker")
    # Their bodies do not read: the watcher skips each it reads with an alarm to each unlocked user,
    # so alice's status tells when the watcher has read past the marker (which comes before 1e300 in
    # the store's order: before the fix, with it), nothing else is waited on.
    wait_for(lambda: "document 'marker' in the store does not read" in
             people.fusevault("alice", "status", str(people.mnt)).stdout, "the watcher reading the row")
    removed_bob_loses_proj(people, shared_vault)


def _bobs_read_deletion(vault: Path, fid: str, *, keyless: bool = False, name: str | None = None) -> None:
    """bob, a READ recipient of alice's ``fid``, signs a deletion of it: her current document marked
    deleted, its attributes as she sealed them (opened and sealed again with the key his grant gives;
    ``name``: each of its names made that one), signed by him.  ``keyless``: without her wrapping of its
    key (``en_file_dek``: he leaves it out, as a grantee's client's document has none of hers)."""
    dek = recipients_dek(vault, "bob", BOB_SECRET, fid)
    doc = adversary.get(vault, fid)
    attrs = open_node_attrs(doc, dek)
    if name is not None:
        attrs["links"] = [[parent, name] for parent, _ in attrs["links"]]
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig") and not (keyless and k == "en_file_dek")}
    body["delete"] = True
    body["enc"] = b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", fid)))
    bob = _key(vault, "bob", BOB_SECRET)
    adversary.put(vault, sign_doc(bob.user_id, bob.identity.sign, body))


def _proj_read_to(vault: Path, tmp_path: Path, *readers: str) -> tuple[Path, str]:
    """alice's folder proj (plan.txt), shared READ with each of ``readers`` (bob first).  Returned: her
    mount point (unmounted) and proj's id."""
    mnt = scene(vault, tmp_path, {"proj": None, "proj/plan.txt": "plan"},
                [("proj", reader, "READ") for reader in readers], users=readers)
    return mnt, _node_fid(vault, "alice", "proj")


def _root_fid(vault: Path) -> str:
    """alice's root folder's id (her user document names it)."""
    user = next(u for u in adversary.docs(vault, "UserDetails") if u.get("username") == "alice")
    return user["root"]


@pytest.mark.parametrize("body", ["[]", "[" * 200 + "]" * 200], ids=["no-object", "too-deep"])
def test_a_root_row_that_does_not_read_does_not_stop_her_mount(
        vault: Path, tmp_path: Path, body: str) -> None:
    """alice's notes.txt.  A store writer (no key) puts a body that does not read in her root folder's
    row (JSON that is no object, or nested deeper than fusevault reads).  Safe: her vault mounts and
    notes.txt reads (round 11 (9): a root not in the store is a rollback, said, and made empty in memory;
    what is in it loads into it)."""
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "notes.txt").write_text("alice's notes")
    _unreadable_root(vault, body)
    with mounts_again(vault, mnt):
        assert (mnt / "notes.txt").read_text() == "alice's notes"


def _unreadable_root(vault: Path, body: str) -> None:
    root = _root_fid(vault)
    db = sqlite3.connect(vault / "store.sqlite", timeout=30)
    try:
        with db:
            assert db.execute("UPDATE docs SET body = ? WHERE id = ?", (body, root)).rowcount == 1
    finally:
        db.close()


def test_a_root_row_that_does_not_read_takes_her_next_writes_there(vault: Path, tmp_path: Path) -> None:
    """Round 14 (6)'s fix, abused: her root's row made ``[]``; she mounts (an empty root, said) and
    makes new.txt in it.  Safe: the commit of her root replaces that row (its revision kept, not a
    conflict on every write), and new.txt and notes.txt read at the next mount."""
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "notes.txt").write_text("alice's notes")
    _unreadable_root(vault, "[]")
    with mounted(vault, mnt):
        (mnt / "new.txt").write_text("new file")
    with mounted(vault, mnt):
        assert (mnt / "new.txt").read_text() == "new file"
        assert (mnt / "notes.txt").read_text() == "alice's notes"


def _plant_row(vault: Path, doc_id: str, doc_type: str, body: dict) -> None:
    """A row a store writer (no key) puts in the vault folder's store: ``doc_type`` in the row's type
    column (which ``LocalStore.iter_type`` selects on), ``body`` as its JSON."""
    db = sqlite3.connect(vault / "store.sqlite", timeout=30)
    try:
        with db:
            (seq,) = db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM docs").fetchone()
            db.execute("INSERT INTO docs (id, rev, seq, deleted, type, body, revs) "
                       "VALUES (?, '1-0', ?, 0, ?, ?, NULL)", (doc_id, seq, doc_type, json.dumps(body)))
    finally:
        db.close()


def test_a_replaced_files_row_that_does_not_read_does_not_take_her_files_history(
        vault: Path, tmp_path: Path) -> None:
    """alice writes notes.txt, then saves it as an editor does (a new file renamed over it: the new file
    names the old one as the file it replaced), then writes it again.  A store writer (no key) puts the
    body ``[]`` in the replaced file's row.  Safe: `fusevault history notes.txt` still lists her versions
    of the file she has (the replaced file's are left out, as a row that does not read is elsewhere)."""
    mnt = tmp_path / "mnt"
    _replaced_row_unreadable(vault, mnt)
    with mounted(vault, mnt):
        after = fusevault("history", mnt / "notes.txt")
    print("after:", after.returncode, after.stdout, after.stderr)
    assert after.returncode == 0, f"her file's history does not list: {after.stderr[-300:]}"
    assert len(after.stdout.splitlines()) >= 3  # the heading and her two versions of the file she has


def _replaced_row_unreadable(vault: Path, mnt: Path) -> None:
    """notes.txt written, saved as editors do (a new file renamed over it), written again; then the
    replaced file's row given the body ``[]`` by a store writer."""
    with mounted(vault, mnt):
        (mnt / "notes.txt").write_text("first")
    replaced = _node_fid(vault, "alice", "notes.txt")
    with mounted(vault, mnt):
        (mnt / ".notes.txt.swp").write_text("second")
        os.rename(mnt / ".notes.txt.swp", mnt / "notes.txt")
        (mnt / "notes.txt").write_text("third")
        listed = fusevault("history", mnt / "notes.txt")
    print("before:", listed.returncode, listed.stdout, listed.stderr)
    assert listed.returncode == 0 and "first" not in listed.stderr
    db = sqlite3.connect(vault / "store.sqlite", timeout=30)
    try:
        with db:
            assert db.execute("UPDATE docs SET body = '[]' WHERE id = ?", (replaced,)).rowcount == 1
    finally:
        db.close()


def test_a_replaced_files_row_that_does_not_read_does_not_stop_gc(vault: Path, tmp_path: Path) -> None:
    """Round 14 (7)'s fix, driven where it was only read: gc follows the same lineage for each of her
    files.  Safe: gc runs (as of far ahead, so every policy applies), and notes.txt reads after."""
    mnt = tmp_path / "mnt"
    _replaced_row_unreadable(vault, mnt)
    with mounted(vault, mnt):
        gc = fusevault("gc", mnt, "--as-of", "2099-01-01", "--json")
        print("gc:", gc.returncode, gc.stdout[-500:], gc.stderr[-500:])
        assert gc.returncode == 0, f"gc failed: {gc.stderr[-300:]}"
        assert (mnt / "notes.txt").read_text() == "third"


@pytest.mark.parametrize("kind", ["UserDetails", "Group"])
def test_a_planted_user_or_group_id_writes_nothing_outside_the_vault_folder(
        vault: Path, tmp_path: Path, kind: str) -> None:
    """A store writer (no key, nothing signed) plants a UserDetails (or Group) row whose id is
    "../../escaped/x" and whose body has the shape ``shapes.well_formed`` asks.  alice mounts (every
    mount, and every administrative command, reconciles meta.inf files first; root's shared mount
    does it as root).  Safe: nothing is made outside the vault folder, and her mount comes up."""
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "notes.txt").write_text("alice's notes")
    body = ({"type": kind, "username": "x", "created_at": 1} if kind == "UserDetails" else
            {"type": kind, "groupname": "x", "owner": "x", "created_at": 1, "users": {}})
    _plant_row(vault, "../../escaped/x", kind, body)
    with mounts_again(vault, mnt):
        made = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "escaped").rglob("*"))
        print("made outside the vault folder:", made)
        assert not (tmp_path / "escaped").exists(), f"a planted id wrote outside the vault folder: {made}"
        assert (mnt / "notes.txt").read_text() == "alice's notes"


def test_a_servers_user_id_writes_nothing_outside_the_vault_folder(tmp_path: Path, couchdb_url: str) -> None:
    """alice's vault kept in a CouchDB database (``init --couchdb``).  The server (no key) adds a
    UserDetails document whose id is "../../escaped/x" (ids may hold "/": percent-encoded in the URL).
    Safe: alice's mount makes nothing outside the vault folder, and comes up."""
    vault = tmp_path / "vault"
    assert fusevault("init", vault, "--user", "alice", "--couchdb", couchdb_url).returncode == 0
    body = {"type": "UserDetails", "username": "x", "created_at": 1}
    put = httpx.put(f"{couchdb_url}/{quote('../../escaped/x', safe='')}", json=body, timeout=30)
    print(put.status_code, put.text)
    put.raise_for_status()
    mnt = tmp_path / "mnt"
    with mounts_again(vault, mnt):
        made = sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "escaped").rglob("*"))
        print("made outside the vault folder:", made)
        assert not (tmp_path / "escaped").exists(), f"the server's id wrote outside the vault folder: {made}"


def test_removing_a_planted_user_deletes_nothing_outside_the_vault_folder(
        vault: Path, tmp_path: Path) -> None:
    """A store writer (or the server, as above) adds a user "mallory" whose id is "../../victim" (no key,
    nothing signed); tmp_path/victim holds a file of someone's.  The administrator, seeing a user she
    does not know in her vault, runs `fusevault user remove mallory`.  Safe: the file outside the vault
    folder is still there (whatever the command says)."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("not the vault's")
    _plant_row(vault, "../../victim", "UserDetails",
               {"type": "UserDetails", "username": "mallory", "created_at": 1, "root": "0" * 32})
    done = fusevault("user", "remove", "mallory", env={"FUSEVAULT_VAULT": str(vault)})
    print(done.returncode, done.stdout[-500:], done.stderr[-500:])
    left = sorted(str(p.relative_to(tmp_path)) for p in victim.rglob("*")) if victim.exists() else None
    print("left outside the vault folder:", left)
    assert (victim / "precious.txt").exists(), "removing a planted user deleted a folder outside the vault"


@pytest.mark.parametrize("kind", ["UserDetails", "Group", "Share"])
def test_a_row_typed_only_by_its_column_does_not_stop_her_mount(
        vault: Path, tmp_path: Path, kind: str) -> None:
    """A store writer (no key) plants a row of type ``kind`` (the row's type column) whose body is
    ``{}``: no ``type`` field, so ``shapes.ok`` has no shape to check it against.  Safe: alice's vault
    mounts and notes.txt reads (a row that is no document of its kind is left out, as ``[]`` is)."""
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "notes.txt").write_text("alice's notes")
    _plant_row(vault, "f" * 32, kind, {})  # an id fusevault could make: layout.checked_id passes it
    with mounts_again(vault, mnt):
        assert (mnt / "notes.txt").read_text() == "alice's notes"


@pytest.mark.parametrize("how", ["dot-name", "keyless"])
def test_a_read_recipients_refused_deletion_does_not_rename_the_owners_folder(
        vault: Path, tmp_path: Path, how: str) -> None:
    """alice's folder proj (plan.txt) shared READ with bob.  bob signs a deletion of proj naming it
    ".proj" in her root (``dot-name``), or one without her wrapping of its key, so that she cannot open
    the name in it (``keyless``).  alice unlocks: refused ("it stays").  Safe: her root lists proj and
    nothing else, holding plan.txt (round 13 (3), a folder's case: a READ recipient renames nothing)."""
    mnt, proj = _proj_read_to(vault, tmp_path, "bob")
    if how == "dot-name":
        _bobs_read_deletion(vault, proj, name=".proj")
    else:
        _bobs_read_deletion(vault, proj, keyless=True)
    _refused_under(vault, mnt, "proj")


def _refused_under(vault: Path, mnt: Path, name: str) -> None:
    """alice unlocks: bob's deletion is refused, and her root lists her folder under ``name`` only,
    holding plan.txt."""
    with mounted(vault, mnt):
        status = fusevault("status", mnt).stdout
        listed = sorted(os.listdir(mnt))
        print(status[-1500:], listed)
        assert "who holds no WRITE where it was" in status
        assert listed == [name], f"bob, a READ recipient, renamed alice's folder: {listed}"
        assert (mnt / name / "plan.txt").read_text() == "plan"


def test_a_read_recipients_refused_deletion_of_a_shared_folder_does_not_lock_out_its_other_readers(
        vault: Path, tmp_path: Path) -> None:
    """alice's folder proj (plan.txt) shared READ with bob and with carol; carol reads it.  bob signs a
    deletion of proj that leaves out alice's wrapping of its key.  alice unlocks (refused: "it stays")
    and writes a file in it.  Safe: carol, at her next mount, still reads proj's files (a READ
    recipient takes nothing from another reader; alice's own commit over his document mends it)."""
    mnt, proj = _proj_read_to(vault, tmp_path, "bob", "carol")
    with mounted(vault, tmp_path / "carol", "--user", "carol", passphrase=CAROL) as cmnt:
        assert (cmnt / "shared" / "alice" / "proj" / "plan.txt").read_text() == "plan"
    _bobs_read_deletion(vault, proj, keyless=True)
    with mounted(vault, mnt):
        status = fusevault("status", mnt).stdout
        print(status[-1500:])
        (folder,) = os.listdir(mnt)  # its name is (3)'s: whichever it is, she writes in it
        print("alice sees", folder, sorted(os.listdir(mnt / folder)))
        assert (mnt / folder / "plan.txt").read_text() == "plan"
        (mnt / folder / "more.txt").write_text("more")
        os.utime(mnt / folder)
    assert "who holds no WRITE where it was" in status
    with mounted(vault, tmp_path / "carol", "--user", "carol", passphrase=CAROL) as cmnt:
        print(fusevault("status", cmnt).stdout[-1500:])
        shared = cmnt / "shared" / "alice"
        listed = sorted(os.listdir(shared)) if shared.exists() else []
        print("carol sees", listed)
        assert len(listed) == 1, "carol lost alice's shared folder"
        assert (shared / listed[0] / "plan.txt").read_text() == "plan"


def test_a_read_recipients_refused_deletion_does_not_give_back_a_name_she_renamed_away(
        vault: Path, tmp_path: Path) -> None:
    """(3), the fix's own abuse: alice's folder proj, shared READ with bob, which she then renames work.
    bob signs a deletion of it naming it "proj" again (a plausible name, no dot: the old one).  Safe: it
    stays work, the name this device last saw (before the fix: the deleter's name, "proj")."""
    mnt, proj = _proj_read_to(vault, tmp_path, "bob")
    with mounted(vault, mnt):
        os.rename(mnt / "proj", mnt / "work")
    _bobs_read_deletion(vault, proj, name="proj")
    _refused_under(vault, mnt, "work")


def test_a_read_recipients_refused_deletion_of_a_shared_file_with_no_version_does_not_lock_out_its_readers(
        vault: Path, tmp_path: Path) -> None:
    """(4), a file's case: proj holds empty.txt, made and never written (no version: its key is kept
    only in its document and its readers' key files), shared READ with bob and carol; carol reads it.
    bob signs a deletion of empty.txt without alice's wrapping of its key.  alice unlocks (refused) and
    touches it (a commit of its document).  Safe: carol still opens empty.txt (before the fix: sealed
    under a new key at the epoch her key file holds the old one of)."""
    mnt, _proj = _proj_read_to(vault, tmp_path, "bob", "carol")
    with mounted(vault, mnt):
        os.close(os.open(mnt / "proj" / "empty.txt", os.O_CREAT | os.O_WRONLY, 0o644))
    empty = _node_fid(vault, "alice", "empty.txt")
    with adversary.store_of(vault) as store:
        assert not list(store.by_file(VERSION, empty)), "the scene: empty.txt has no version"
    with mounted(vault, tmp_path / "carol", "--user", "carol", passphrase=CAROL) as cmnt:
        assert (cmnt / "shared" / "alice" / "proj" / "empty.txt").read_text() == ""
    _bobs_read_deletion(vault, empty, keyless=True)
    with mounted(vault, mnt):
        status = fusevault("status", mnt).stdout
        listed = sorted(os.listdir(mnt / "proj"))
        print(status[-1500:], listed)
        assert listed == ["empty.txt", "plan.txt"]  # (3): its name is hers
        os.utime(mnt / "proj" / "empty.txt")
    assert "who holds no WRITE where it was" in status
    with mounted(vault, tmp_path / "carol", "--user", "carol", passphrase=CAROL) as cmnt:
        print(fusevault("status", cmnt).stdout[-1500:])
        proj = cmnt / "shared" / "alice" / "proj"
        print("carol sees", sorted(os.listdir(proj)))
        assert (proj / "empty.txt").read_text() == "", "carol lost alice's file"
