"""Round 41c: red-team attacks on the authenticated vault away from the sync layer, with fresh eyes.

Targets: group membership changes and re-keys, recipients' key files, share/unshare of folders with
subfolders, the recovery key and passwd, export and restore --to, history of a file moved between
shares, capability links, the import folder settings and records, user document fields, upgrade,
check --repair, and what a READ member (or a writer of the vault folder) can write that others act on.

Every test mounts real vaults in subprocesses (conftest ``mounted``); the attacker writes the vault
folder's store only (tests/adversary.py), with no key and no passphrase.  Each hole has an xfail
test asserting the SAFE behaviour (strict: it fails today) and a control.  Since, all six are fixed
(docs/SECURITY.md, "Attack round 41") and the xfail marks are gone; each test failed before its fix.

Holes
-----

(1) An older import record put back makes the watcher write the unchanged source over her edit.
    (severity: medium -- integrity, silent)

    Attack: the watched folder's report.txt was imported, then changed once and imported again (the
    new version); alice then edits Imported/report.txt in her vault.  A writer of the vault folder (or
    the server) had kept the first revision of her ImportRecord (sealed, but nothing binds a body to
    its revision) and puts it back as the newest.  Nothing in the watched folder changes.

    Seen (3 of 3 runs): at her next mount the watcher finds the source's stamp unlike the (replayed)
    record's, hashes it, finds neither the record's sha nor the vault file's contents equal to it, and
    imports the source as a new version over her edit: Imported/report.txt reads "the scanner's second
    copy", her correction is only an older entry of .versions; ``fusevault status`` says nothing (no
    alarm, the import task reports "1 new version").  Without the replay (control) her edit stays.

    Cause: fusevault/imports/import_records.py:61 (``load_records``: a sealed body is taken whatever
    revision it comes as; nothing on the device remembers the newest) and
    fusevault/imports/importer.py:150-159 (``take``: with a record, any source unlike it is written
    over the vault file, whatever the vault file holds now; the 40c (4) fix, "never written over",
    covers only a record that is missing, not one that is older).

    Impact: a store writer undoes any edit she made to an imported file whose source changed once
    since it was first imported, silently (the edit stays in the history).

    Fix (suggested): keep the newest record of each source on the device (as links/link_records.py
    ``keep`` does for links) and refuse an older one (alarm); and/or never write a source over a vault
    file whose contents are neither the record's sha nor the source's: import it beside
    (``beside=True``) with an ``import-record`` alarm, as for a missing record.

    Tests: ``test_her_edit_of_an_imported_file_is_not_overwritten_when_an_older_record_is_put_back``
    ``[replayed]`` (xfail), ``[control]``.

(2) One sealed record that does not open stops every `link revoke` (and every import).
    (severity: medium-high for links -- a published file cannot be taken back; low for imports)

    Attack: a writer of the vault folder adds ONE document of the clear type ``LinkRecord`` (or
    ``ImportRecord``) with her clear ``owner`` id and an ``enc`` of random bytes.  No key needed.

    Seen (3 of 3 runs each): ``fusevault link list`` and ``fusevault link revoke LINK`` both end
    "fusevault: authentication failed" (exit 5); the link keeps serving her file (``link get`` after
    the revoke returns it); ``fusevault status`` says nothing of it.  The 40c (6) fallback (this
    device's kept copy of the record) is never reached: ``_record`` reads all records first.  Drop
    boxes are not collected either.  With an ImportRecord planted, the import service stops
    ("waiting after an error ... authentication failed"): nothing more is imported, at every mount.

    Cause: fusevault/store/sealed.py:29-38 (``sealed_bodies`` raises CorruptData on the first body that
    does not open, ending the generator), used by fusevault/links/link_records.py:60
    (``load_records``) from fusevault/links/owner.py:92 (``_records``, first thing in ``_record``,
    ``listing``, ``collect``), and by fusevault/imports/import_records.py:61 from
    fusevault/imports/importer.py:113 (``Importer.load``).

    Impact: a store writer (or the server) keeps any link she published alive against her revoke
    (confidentiality: she cannot take a published file back through fusevault), and stops her
    imports and drop boxes, with no word of tampering.

    Fix (suggested): in ``sealed_bodies``, skip (and say, ``malformed`` alarm naming the id) a body
    that does not open, as history.versions_of does for versions; ``revoke`` falls back on the kept
    copy whatever the store holds.

    Tests: ``test_she_can_still_revoke_her_link_when_a_record_that_does_not_open_is_planted``
    ``[planted]`` (xfail), ``[control]``;
    ``test_the_watcher_still_imports_when_an_import_record_that_does_not_open_is_planted``
    ``[planted]`` (xfail), ``[control]``.

(3) Another user's signed node document, its clear ``owner`` and ``delete`` changed, fails her whole
    trash, every restore from it, and gc.  (severity: medium -- availability of trash/restore and of
    retention, no key needed)

    Attack: a writer of the vault folder changes two clear fields of bob's root folder's node
    document (signed by bob, untouched otherwise): ``owner`` to alice's id, ``delete`` to true.

    Seen (3 of 3 runs): alice's mount comes up and says "the clear field(s) delete, owner of file ...
    were changed in the store: the values its author signed are used"; but ``fusevault trash``,
    ``fusevault restore notes.txt`` (her deleted file) and ``fusevault gc`` all fail, exit 5, "node
    document <bob's root> fails authentication".  Nothing in her trash can be listed or restored and
    the retention policy frees nothing, for as long as the document stays.

    Cause: fusevault/vault/tree/authorship.py:175-210 (``admit`` / ``_as_signed``: the document with
    ``delete`` and ``owner`` put back as signed is judged, and ``accepts`` answers True for it), but
    the callers go on with the CLEAR document, selected by its clear fields:
    fusevault/vault/services/recovery.py:114 (``deleted_nodes``) and :98 (``open_node_doc`` of it under
    her key, uncaught), fusevault/vault/services/gc.py:192-201 (``detached_node``, uncaught); the same
    pattern in history.lineage (``previous`` chain).

    Impact: a store writer with no key takes away her trash and restore, and stops gc (disk fills,
    the retention policy she chose is not applied); the alarm says the signed values are used when
    they are not.

    Fix (suggested): ``accepts`` (and ``deleted_nodes``) work on the document ``admit`` returns (the
    signed values), so bob's document is not hers and not deleted; and open each trash/gc document in
    its own ``try``, leaving out (and saying) one that does not open, as versions_of does.

    Tests: ``test_her_trash_and_restore_work_when_another_users_document_is_made_to_name_her``
    ``[planted]`` (xfail), ``[control]``.

(4) A capability link publishes a file that only an older state of it puts in the linked folder.
    (severity: medium -- confidentiality: plaintext to everyone holding the link)

    Attack: her laptop (a state directory of its own) drafted pub/secret.txt; her desktop moved it to
    private/ (and wrote its final text there), then published pub/ with ``fusevault link create``.  A
    writer of the vault folder (or the server) had kept the laptop's signed node document of
    secret.txt (the state in pub/) and puts it back as the newest.  She later updates
    pub/readme.txt and runs ``fusevault link push pub LINK``, as one does.

    Seen (3 of 3 runs): her desktop shows the older state in pub/ and says so (rollback alarm: "the
    older state is shown"); it keeps the file ``behind`` so that no share of pub/ gets its key
    (docs/SECURITY.md, Rollback: "The folder an older state puts a file in is no place the owner
    chose").  But ``link push`` publishes pub/secret.txt (the draft) with readme.txt: ``link get``
    of her link now yields pub/secret.txt.  Without the replay (control) the link publishes
    readme.txt only.

    Cause: fusevault/links/owner.py:161-163 (``_publish`` walks ``exporting.tree``,
    fusevault/vault/services/exporting.py:40-63, every child in the tree) with no regard for
    ``volume.tree.behind`` (fusevault/vault/tree/inodes.py:236), which ``share``
    (``rotation.subtree(volume, node, volume.tree.behind)``), ``covering`` and ``fill_missing``
    honour.

    Impact: what the behind rule keeps from a share's members (a file an older state puts in a
    shared folder) goes to anyone with her link, in the clear, at her next ``push`` (or a new
    ``link create`` of the folder); the rollback alarm does not say the file will be published.

    Fix (suggested): publish through the same rule: leave out of a link (``_publish``, and
    ``link create``) every node in ``volume.tree.behind`` and what is under it, saying so in the
    command's answer (as ``share`` is silent on them, a link should at least name what it left out).

    Tests: ``test_a_link_does_not_publish_a_file_an_older_state_puts_in_its_folder`` ``[replayed]``
    (xfail), ``[control]``.

(5) Once a writer can no longer write a file (she moves it out of the share, or unshares), his
    genuine version is called a forgery at every mount and his edit is listed as hers.
    (severity: low -- integrity of the history's authorship, and false forgery alarms; no attacker
    needed, a WRITE member's ordinary edit)

    Scene: proj/ is shared with bob (WRITE); bob saves proj/notes.txt on his device (his personal
    mount of the vault); her mount reads it (``history``: the version is bob's).  She then moves
    notes.txt to private/ (``[moved-out]``) or runs ``unshare proj --with bob`` (``[unshared]``).

    Seen (3 of 3 runs each): at every later mount ``fusevault status`` says "refused a change of file
    ...: version <his> signed by <bob>, who holds no WRITE on it"; ``fusevault history`` no longer
    lists his version; the contents he wrote are there only as the version her re-key sealed again,
    listed with author alice.  So her history tells her she wrote bob's text, and a genuine edit
    raises the same alarm a forgery does.  Kept in the share (control): no alarm, author bob.
    (docs/SECURITY.md "Sharing and revoking" says a revoked writer's edit "stays readable in the
    history": its bytes do, not as his; tests/mount/test_trust_attack_39b.py checks only the texts.)

    Cause: fusevault/vault/tree/authorship.py:656-679 (``version_ok``: a version signed by someone
    other than the owner counts only if he may write the node NOW, ``may_write`` on the tree as it is,
    never as of when this device took the version in), used by history.versions_of and at load; and
    fusevault/vault/files/rekeying.py:123 (``_reseal``: the contents are sealed again as a new version
    signed by the owner, with no word of whose contents they are).

    Impact: misattribution (a revoked writer's text presented as the owner's own) and alarm fatigue
    (a forgery alarm at each mount for nothing forged), on the two everyday revocations.

    Fix (suggested): judge a writer's version by the grants in force when this device took it in
    (record the (version, signer) admitted, as the ledger records states; a version taken in while
    his WRITE held stays his); carry the original author (signed) into the version a re-key seals
    again, and list it as his.

    Tests: ``test_a_writers_genuine_version_stays_his_and_is_no_forgery_once_he_cannot_write_the_file``
    ``[moved-out]`` (xfail), ``[unshared]`` (xfail), ``[kept]`` (control).

(6) A group member's removal re-keys nothing when his own genuine edit is the current version of a
    file in the share: everything alice writes there next is sealed under the key he kept.
    (severity: HIGH -- confidentiality; the removed member only needs to have saved one file in the
    share, an ordinary edit, before his removal)

    Scene: carol's group crew has bob (WRITE); alice shares proj/ (a.txt, notes.txt, plan.txt,
    z.txt) with @crew (WRITE).  bob saves proj/notes.txt on his device; alice's mount reads it.  carol
    then takes bob out of crew (``group member remove``, signed: genuine).  bob keeps the group key
    files he could read (he can read the vault folder).  alice mounts and writes proj/plan.txt.

    Seen (3 of 3 runs): at her unlock bob's version of notes.txt, the file's current one, is judged
    under the grants after his removal and refused ("refused a change of file ...: version ... signed
    by <bob>, who holds no WRITE on it"); the removal's re-key (``_rekey_for_removals`` ->
    ``rotate(proj)``) fails on that file and stops: proj/, a.txt, plan.txt, z.txt all stay at epoch
    0.  What she writes into plan.txt is sealed under the epoch-0 DEK: the test opens bob's kept key
    file and decrypts "alice's plan, written after bob left crew".  notes.txt reads EIO (read or
    write) at every mount, and bob's edit is gone from its history.  ``fusevault status`` shows only
    the "refused a change" warning, nothing of a re-key that did not happen.  Control (bob never
    edited): everything re-keyed to epoch 1, his kept key opens nothing new.  The same head refusal
    (EIO, his edit gone from view, no re-key needed there) follows a demotion: carol's ``group member
    add crew bob --perm READ``, or alice's own ``share proj --with bob --perm READ``.  And after an
    administrator's ``user remove bob`` (a direct WRITE share), the remedy her status names, ``fusevault
    unshare proj --with bob``, fails (exit 5, "the document of version ... is not signed by who may
    write it"): proj/ stays at epoch 0 and bob's kept key decrypts what she writes next (3 of 3 runs).

    Cause: fusevault/vault/tree/authorship.py:656-679 (``version_ok``: a writer's version counts only
    if he may write the node NOW; the head he saved while his WRITE held is refused at the next load);
    then fusevault/vault/files/rekeying.py:34-55 (``rekey`` -> ``_reseal`` cannot read the refused
    head and raises) and fusevault/vault/services/rotation.py:74-92 (``rotate``: the first node whose
    re-key raises ends the rotation, the rest of the subtree and the folder itself, given its key
    last, untouched), from ``_rekey_for_removals`` (rotation.py:384-420) at ``resume``.  The unshare
    path escapes only because it re-keys in the session that took his version in (39b).

    Impact: a removed member (or one demoted) goes on reading every existing file of the share, and
    the folder's names, as she writes them, for as long as his edit stays current; he makes sure of it
    by saving any one file before he is removed.  Her own file is EIO meanwhile.

    Fix (suggested): judge a writer's version by the grants in force when this device took it in
    (see (5)), so his genuine head is not refused after his removal; and make a re-key never stop at
    one node: give each node its new key whatever its contents (seal the newest version that
    verifies, keep the rest in history), go on with the others, and say loudly any node left under
    the old key (an alarm naming it and the member who still holds it).

    Tests: ``test_what_she_writes_after_a_members_removal_is_not_under_the_key_he_kept``
    ``[his-edit-current]`` (xfail), ``[control]``;
    ``test_narrowing_a_writer_to_read_keeps_the_file_he_saved_readable`` ``[narrowed-to-read]``
    (xfail: EIO), ``[control]``.
    ``test_unshare_after_a_writers_user_removal_takes_the_key_back`` ``[his-edit-current]`` (xfail),
    ``[control]``.

What held
---------

- Export: every host step relative to a descriptor, O_NOFOLLOW / O_EXCL / RENAME_NOREPLACE, no
  setuid/setgid/sticky; a destination inside a mount refused.  Restore ``--to`` makes a new file
  (new id) and holds a file back from a folder a writer's deletion names.
- The recovery key and ``passwd``: a body her key did not sign is never signed over
  (``_refuse_unsigned``), a new device included; the words file is O_EXCL 0600; revoked and retired
  wrappings carried in her signed body.
- User documents: whole-document signatures; pins keep names (a rename onto another's name keeps the
  pinned one), keys (key-changed) and ``signs``; ``share --with`` goes through pins; a stripped
  identity or a forged ``root`` refused (40c fixes hold).
- Key files: only owner-signed records count, bound to owner/fid/recipient/epoch; planted folders,
  links and oversize entries at a key's name are skipped, never the end of an unshare.
- Records and manifests: the places table's cached hashes are checked against the signed digest and
  every read against them; ``upgrade`` fills only uncached hashes.
- Settings (watched folder, dump folder, import folder, delete-from-source): only confirmed settings
  act; the watcher reaches sources through held descriptors, never a link.
- Capability links: the link path is resolved without following vault symlinks; drops are written
  with safe mode bits, dropped links leading out removed; a shared mount refuses links.
- A battery of malformed documents (unsigned/garbage node, version, Share, Group, Retention,
  Rotation, UserDetails, Pins, FileKey) planted in the store: mount, trash, gc, restore, history,
  shares, config show, retention, user/group list all still answered (only the records of (2) and the
  signed-but-retagged node of (3) broke commands).
- Sharing a folder skips files kept ``behind``; unshare with documents withheld or forged.

Not tried
---------

- The sync layer (out of scope), send/receive and the relay; link store misbehaviour (serving older
  link versions, reusing version ids).
- The stale-key look-over (``_rekey_unreached``, 39b) over a file whose current version is a
  removed writer's (likely (6) again).
- ``check --repair`` rebuilding a lost folder on a device without the ledger; ``upgrade`` of files
  kept ``behind``; migration of format-2 vaults (documented out of reach).
- A shared mount (``--allow-other``) variant of (6) with both users unlocked.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import adversary
import pytest
from conftest import fusevault, mounted

# --- (1) an older import record put back


def _import_records(vault: Path) -> dict[str, dict]:
    return {d["_id"]: d for d in adversary.docs(vault, "ImportRecord")}


@pytest.mark.parametrize("replayed", [
    True,
    False], ids=["replayed", "control"])
def test_her_edit_of_an_imported_file_is_not_overwritten_when_an_older_record_is_put_back(
        vault: Path, tmp_path: Path, replayed: bool) -> None:
    from mount.test_imports import idle, import_task, wait_for, watch

    source = tmp_path / "inbox"
    source.mkdir()
    mnt = tmp_path / "mnt"
    imported = mnt / "Imported" / "report.txt"
    with mounted(vault, mnt):
        watch(mnt, source)
        (source / "report.txt").write_text("the scanner's first copy\n")
        wait_for("the import",
                 lambda: imported.exists() and imported.read_text() == "the scanner's first copy\n")
        wait_for("the watcher to be idle", lambda: idle(mnt))
    older = _import_records(vault)  # the store writer keeps a copy of the (sealed) record
    with mounted(vault, mnt):
        time.sleep(0.05)
        (source / "report.txt").write_text("the scanner's second copy\n")
        wait_for("the new version", lambda: imported.read_text() == "the scanner's second copy\n")
        wait_for("the watcher to be idle", lambda: idle(mnt))
        imported.write_text("the scanner's second copy, corrected by alice\n")
    assert _import_records(vault).keys() == older.keys()
    if replayed:
        # The vault-folder writer puts the older revision's body back as the record's newest.
        adversary.put(vault, *older.values())
    with mounted(vault, mnt):
        wait_for("the watcher's first pass", lambda: sum(import_task(mnt)["counts"].values()) >= 1
                 and idle(mnt))
        print("import:", import_task(mnt))
        now = imported.read_text()
        print("versions:", sorted(os.listdir(mnt / ".versions" / "Imported" / "report.txt")))
        st = fusevault("status", mnt)
        print(st.stdout[-3000:])
    print("her file reads:", repr(now))
    assert now == "the scanner's second copy, corrected by alice\n", \
        "her edit was overwritten by the unchanged source"


# --- (2) one record that does not open stops every link revoke (and the importer)


@pytest.fixture
def link_relay(redis_url: str, couchdb_server: str):
    """A relay that keeps links (a link store in a database of its own on the test server)."""
    import uuid

    from conftest import running_relay

    db = f"{couchdb_server}/links{uuid.uuid4().hex[:8]}"
    with running_relay(redis_url, "--couchdb", db) as (_, url):
        yield url


def _garbage_record(vault: Path, kind: str, prefix: str) -> dict:
    from fusevault.encoding import b64e
    from mount.test_trust_writes import _user

    return {"_id": prefix + "0" * 32, "type": kind, "owner": _user(vault, "alice")["_id"],
            "enc": b64e(os.urandom(64))}


@pytest.mark.parametrize("planted", [
    True,
    False], ids=["planted", "control"])
def test_she_can_still_revoke_her_link_when_a_record_that_does_not_open_is_planted(
        vault: Path, tmp_path: Path, link_relay: str, planted: bool) -> None:
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "one.txt").write_text("alice's file, published for a week\n")
        made = fusevault("link", "create", mnt / "one.txt", "--relay", link_relay)
        assert made.returncode == 0, made.stderr
    link = made.stdout.strip()
    if planted:
        # The vault-folder writer adds one document of the (clear) type LinkRecord in her name.
        adversary.put(vault, _garbage_record(vault, "LinkRecord", "link-"))
    with mounted(vault, mnt):
        listed = fusevault("link", "list", cwd=mnt)
        revoked = fusevault("link", "revoke", link, cwd=mnt)
        said = fusevault("status", mnt).stdout
    print("list:", listed.returncode, listed.stdout[-500:], listed.stderr[-300:])
    print("revoke:", revoked.returncode, revoked.stdout[-300:], revoked.stderr[-300:])
    print("status:", said[-1500:])
    (tmp_path / "out").mkdir()
    got = fusevault("link", "get", link, tmp_path / "out", passphrase=None)
    print("get after the revoke:", got.returncode, got.stderr[-300:])
    assert revoked.returncode == 0, revoked.stderr
    assert got.returncode != 0 and not (tmp_path / "out" / "one.txt").exists(), \
        "her link still serves her file after she revoked it"


@pytest.mark.parametrize("planted", [
    True,
    False], ids=["planted", "control"])
def test_the_watcher_still_imports_when_an_import_record_that_does_not_open_is_planted(
        vault: Path, tmp_path: Path, planted: bool) -> None:
    from mount.test_imports import watch

    source = tmp_path / "inbox"
    source.mkdir()
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        watch(mnt, source)
        (source / "first.txt").write_text("first\n")
        deadline = time.monotonic() + 30
        while not (mnt / "Imported" / "first.txt").exists():
            assert time.monotonic() < deadline
            time.sleep(0.1)
    if planted:
        adversary.put(vault, _garbage_record(vault, "ImportRecord", "import-"))
    with mounted(vault, mnt):
        (source / "second.txt").write_text("second\n")
        deadline = time.monotonic() + 20
        while not (mnt / "Imported" / "second.txt").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        there = (mnt / "Imported" / "second.txt").exists()
        said = fusevault("status", mnt).stdout
    print("status:", said[-1500:])
    assert there, "the new file in the watched folder was not imported"


# --- (3) another user's signed node document with its clear owner and delete changed


@pytest.mark.parametrize("planted", [
    True,
    False], ids=["planted", "control"])
def test_her_trash_and_restore_work_when_another_users_document_is_made_to_name_her(
        vault: Path, tmp_path: Path, planted: bool) -> None:
    from attack_scenes import add_users

    from mount.test_trust_writes import _user

    add_users(vault, "bob")
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "notes.txt").write_text("alice's notes\n")
        (mnt / "notes.txt").unlink()
    if planted:
        # The vault-folder writer changes two clear fields of bob's root folder's document (signed by
        # bob): its owner is alice's id, and it is deleted.  No key, no signature needed.
        bob = _user(vault, "bob")
        root = adversary.get(vault, bob["root"])
        adversary.put(vault, {**root, "owner": _user(vault, "alice")["_id"], "delete": True})
    with mounted(vault, mnt):
        listed = fusevault("trash", mnt, "--json")
        collected = fusevault("gc", mnt)
        restored = fusevault("restore", mnt / "notes.txt")
        back = (mnt / "notes.txt").read_text() if (mnt / "notes.txt").exists() else None
        said = fusevault("status", mnt).stdout
    print("trash:", listed.returncode, listed.stdout[-800:], listed.stderr[-500:])
    print("gc:", collected.returncode, collected.stdout[-500:], collected.stderr[-500:])
    print("restore:", restored.returncode, restored.stdout[-500:], restored.stderr[-500:])
    print("status:", said[-1500:])
    assert listed.returncode == 0, listed.stderr
    assert collected.returncode == 0, collected.stderr
    assert restored.returncode == 0 and back == "alice's notes\n", restored.stderr


# --- (4) a link publishes a file an older state put in its folder


def _link_files(link: str, into: Path) -> list[str]:
    into.mkdir()
    got = fusevault("link", "get", link, into, passphrase=None)
    assert got.returncode == 0, got.stderr
    return sorted(str(p.relative_to(into)) for p in into.rglob("*") if p.is_file())


@pytest.mark.parametrize("replayed", [
    True,
    False], ids=["replayed", "control"])
def test_a_link_does_not_publish_a_file_an_older_state_puts_in_its_folder(
        vault: Path, tmp_path: Path, link_relay: str, replayed: bool) -> None:
    from mount.test_sharing import _fid

    mnt = tmp_path / "mnt"
    laptop = {"FUSEVAULT_STATE_DIR": str(tmp_path / "laptop-state")}
    # Her laptop (a state directory of its own) drafts secret.txt in pub/.
    with mounted(vault, mnt, env=laptop):
        (mnt / "pub").mkdir()
        (mnt / "pub" / "readme.txt").write_text("for everyone\n")
        (mnt / "pub" / "secret.txt").write_text("salaries: a draft, never to be published\n")
    secret = _fid(vault, "alice", "pub/secret.txt")
    drafted = adversary.get(vault, secret)  # the store writer keeps a copy of that (signed) state
    # Her desktop moves it out of pub/ before publishing pub/ with a link.
    with mounted(vault, mnt):
        (mnt / "private").mkdir()
        os.rename(mnt / "pub" / "secret.txt", mnt / "private" / "secret.txt")
        (mnt / "private" / "secret.txt").write_text("salaries: final\n")
    with mounted(vault, mnt):
        made = fusevault("link", "create", mnt / "pub", "--relay", link_relay)
        assert made.returncode == 0, made.stderr
    link = made.stdout.strip()
    assert _link_files(link, tmp_path / "first") == ["pub/readme.txt"]
    if replayed:
        # The vault-folder writer puts the laptop's older state (in pub/) back as the newest.
        adversary.put(vault, drafted)
    with mounted(vault, mnt):
        shown = sorted(os.listdir(mnt / "pub"))
        (mnt / "pub" / "readme.txt").write_text("for everyone, updated\n")
        pushed = fusevault("link", "push", mnt / "pub", link)
        said = fusevault("status", mnt).stdout
    print("pub/ shows:", shown)
    print("push:", pushed.returncode, pushed.stdout[-300:], pushed.stderr[-300:])
    print("status:", said[-1500:])
    assert pushed.returncode == 0, pushed.stderr
    published = _link_files(link, tmp_path / "second")
    print("the link now publishes:", published)
    assert published == ["pub/readme.txt"], "the link published a file only an older state puts in pub/"


# --- (5) a writer's genuine version, once he can no longer write the file


@pytest.mark.parametrize("how", [
    "moved-out",
    "unshared",
    "kept"])
def test_a_writers_genuine_version_stays_his_and_is_no_forgery_once_he_cannot_write_the_file(
        vault: Path, tmp_path: Path, how: str) -> None:
    from attack_scenes import add_users, share

    from mount.test_trust_writes import BOB

    add_users(vault, "bob")
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "proj").mkdir()
        (mnt / "private").mkdir()
        (mnt / "proj" / "notes.txt").write_text("alice's first\n")
        assert share(mnt, "proj", "bob", "WRITE") is not None
    with mounted(vault, tmp_path / "b", "--user", "bob", passphrase=BOB) as b:
        (b / "shared" / "alice" / "proj" / "notes.txt").write_text("bob's edit\n")
    where = "proj"
    with mounted(vault, mnt):
        assert (mnt / where / "notes.txt").read_text() == "bob's edit\n"
        before = fusevault("history", mnt / where / "notes.txt", "--json")
        if how == "moved-out":
            os.rename(mnt / "proj" / "notes.txt", mnt / "private" / "notes.txt")
            where = "private"
        elif how == "unshared":
            done = fusevault("unshare", mnt / "proj", "--with", "bob")
            assert done.returncode == 0, done.stderr
    with mounted(vault, mnt):
        after = fusevault("history", mnt / where / "notes.txt", "--json")
        said = fusevault("status", mnt).stdout
    import json

    authors = lambda answer: [(v["author"], v["size"]) for v in json.loads(answer.stdout)["versions"]]  # noqa: E731
    print("before:", authors(before))
    print("after:", authors(after))
    print("status:", said[-1200:])
    assert ("bob", len("bob's edit\n")) in authors(before)
    assert "who holds no WRITE on it" not in said, "her device calls his genuine version a forgery"
    assert ("bob", len("bob's edit\n")) in authors(after), "his edit is no longer his in her history"


# --- (6) a group member's removal re-keys nothing when his edit is a file's current version


def _crew_with_bob_writing(vault: Path, tmp_path: Path, bob_edits: bool) -> tuple[Path, str]:
    """carol's group crew (bob in it, WRITE); alice's proj/ (four files) shared with @crew (WRITE);
    bob saves proj/notes.txt on his device (if ``bob_edits``) and her mount reads it.  (her mount
    point, crew's id)."""
    from attack_scenes import add_users, group_doc, share

    from mount.test_trust_writes import BOB, CAROL, _admin

    add_users(vault, "bob", "carol")
    _admin(vault, "group", "add", "crew", "--owner", "carol", passphrase=CAROL)
    _admin(vault, "group", "member", "add", "crew", "bob", "--perm", "WRITE", passphrase=CAROL)
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "proj").mkdir()
        for name in ("a.txt", "notes.txt", "plan.txt", "z.txt"):
            (mnt / "proj" / name).write_text(f"alice's {name}\n")
        assert share(mnt, "proj", "@crew", "WRITE") is not None
    if bob_edits:
        with mounted(vault, tmp_path / "b", "--user", "bob", passphrase=BOB) as b:
            (b / "groups" / "crew" / "proj" / "notes.txt").write_text("bob's edit\n")
    with mounted(vault, mnt):
        expected = "bob's edit\n" if bob_edits else "alice's notes.txt\n"
        assert (mnt / "proj" / "notes.txt").read_text() == expected
    return mnt, group_doc(vault, "crew")["_id"]


def _bobs_kept_dek(vault: Path, group: str, fid: str) -> bytes:
    """The DEK bob opens from the group key file of alice's ``fid`` he holds (and keeps)."""
    from fusevault.crypto.identity import open_file_key
    from fusevault.vault.model import sharing
    from mount.test_trust_writes import BOB, _key, _user

    bob = _key(vault, "bob", BOB)
    found = sharing.read_key(vault / "groups" / group / "own" / fid / "keys" / f"{bob.user_id}.vfkey")
    assert found is not None
    return open_file_key(bob.identity, _user(vault, "alice")["_id"], fid, found[0], found[1])


@pytest.mark.parametrize("bob_edits", [
    True,
    False], ids=["his-edit-current", "control"])
def test_what_she_writes_after_a_members_removal_is_not_under_the_key_he_kept(
        vault: Path, tmp_path: Path, bob_edits: bool) -> None:
    from fusevault.vault.model.nodes import open_node_doc
    from mount.test_sharing import _fid
    from mount.test_trust_attack_round4 import _block_0
    from mount.test_trust_writes import CAROL, PASSPHRASE, _admin, _key

    mnt, crew = _crew_with_bob_writing(vault, tmp_path, bob_edits)
    plan = _fid(vault, "alice", "proj/plan.txt")
    kept = _bobs_kept_dek(vault, crew, plan)  # bob keeps his key files (he reads the vault folder)
    # carol, crew's owner, takes bob out of her group (signed, genuine).
    _admin(vault, "group", "member", "remove", "crew", "bob", passphrase=CAROL)
    with mounted(vault, mnt):
        (mnt / "proj" / "plan.txt").write_text("alice's plan, written after bob left crew\n")
        said = fusevault("status", mnt).stdout
    print("status:", said[-1500:])
    doc = adversary.get(vault, plan)
    _, attrs = open_node_doc(doc, _key(vault, "alice", PASSPHRASE))
    print("plan.txt epoch:", doc.get("epoch"))
    read = _block_0(vault, plan, kept, attrs["head"])
    print("bob reads with the key he kept:", read)
    assert b"after bob left" not in read, "what she wrote after his removal is sealed under the key he kept"


@pytest.mark.parametrize("narrowed", [
    True,
    False], ids=["narrowed-to-read", "control"])
def test_narrowing_a_writer_to_read_keeps_the_file_he_saved_readable(
        vault: Path, tmp_path: Path, narrowed: bool) -> None:
    from attack_scenes import add_users, share

    from mount.test_trust_writes import BOB

    add_users(vault, "bob")
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "proj").mkdir()
        (mnt / "proj" / "notes.txt").write_text("alice's first\n")
        assert share(mnt, "proj", "bob", "WRITE") is not None
    with mounted(vault, tmp_path / "b", "--user", "bob", passphrase=BOB) as b:
        (b / "shared" / "alice" / "proj" / "notes.txt").write_text("bob's edit\n")
    with mounted(vault, mnt):
        assert (mnt / "proj" / "notes.txt").read_text() == "bob's edit\n"
        if narrowed:  # she lets bob read proj/ from now on, no longer write it
            assert share(mnt, "proj", "bob", "READ") is not None
    with mounted(vault, mnt):
        try:
            now = (mnt / "proj" / "notes.txt").read_text()
        except OSError as err:
            now = str(err)
        said = fusevault("status", mnt).stdout
    print("notes.txt reads:", repr(now))
    print("status:", said[-1200:])
    assert now == "bob's edit\n", "the file he saved while he could write no longer reads"


@pytest.mark.parametrize("bob_edits", [
    True,
    False], ids=["his-edit-current", "control"])
def test_unshare_after_a_writers_user_removal_takes_the_key_back(
        vault: Path, tmp_path: Path, bob_edits: bool) -> None:
    from attack_scenes import add_users, share

    from fusevault.vault.model.nodes import open_node_doc
    from mount.test_sharing import _fid
    from mount.test_trust_attack_round4 import _block_0, _bobs_dek
    from mount.test_trust_writes import BOB, PASSPHRASE, _admin, _key

    add_users(vault, "bob")
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "proj").mkdir()
        for name in ("a.txt", "notes.txt", "plan.txt"):
            (mnt / "proj" / name).write_text(f"alice's {name}\n")
        assert share(mnt, "proj", "bob", "WRITE") is not None
    if bob_edits:
        with mounted(vault, tmp_path / "b", "--user", "bob", passphrase=BOB) as b:
            (b / "shared" / "alice" / "proj" / "notes.txt").write_text("bob's edit\n")
    with mounted(vault, mnt):
        (mnt / "proj" / "notes.txt").read_text()
    plan = _fid(vault, "alice", "proj/plan.txt")
    kept = _bobs_dek(vault, plan)  # bob keeps his key files
    _admin(vault, "user", "remove", "bob")  # an administrator removes him (no key needed)
    with mounted(vault, mnt):
        # Her status asks her to run unshare for proj/: she does, then writes.
        unshared = fusevault("unshare", mnt / "proj", "--with", "bob")
        (mnt / "proj" / "plan.txt").write_text("alice's plan, written after bob was removed\n")
    print("unshare:", unshared.returncode, unshared.stdout[-300:], unshared.stderr[-300:])
    doc = adversary.get(vault, plan)
    _, attrs = open_node_doc(doc, _key(vault, "alice", PASSPHRASE))
    read = _block_0(vault, plan, kept, attrs["head"])
    print("plan.txt epoch:", doc.get("epoch"), "bob reads:", read)
    assert b"after bob was removed" not in read, "what she wrote after his removal is under the key he kept"
    assert unshared.returncode == 0, unshared.stderr
