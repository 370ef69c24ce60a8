"""Attack round 18 on issue 22 (the authenticated vault): what landed in e9b4751 (main).

Short round (about an hour).  Asked for: forged and replayed documents through a real pouchdb-server
while a mount is live, loading's rebuilding with forged documents, the trash, and root's state folder
under ``sudo -E``.  Round 17's file opens were not swept again.  Eight holes (the eighth a documented
limit), most severe first; real mounts throughout (the tombstones and replays through a live
pouchdb-server).

Holes
-----
1. THE SERVER ERASES HER ACCOUNT FROM HER DEVICE: A TOMBSTONE OF HER ``UserDetails`` IS TAKEN.
   The server (no key) deletes her user document (``DELETE /vault/<her id>?rev=...``, as any
   CouchDB client may).  The replicator takes the tombstone like any deletion (sync/replicator.py
   ``_takes`` checks ids, not deletions; store/replica.py stores it): the local row becomes
   ``{}``, deleted.  Her live mount serves on, but her next mount fails "the vault has no user"
   (exit 5), and every command with it.  Her passphrase-wrapped master key, her identity keys and
   her recovery key's wrapping lived only in that document (users/<id>/meta.inf holds none, and
   reconcile removes it for a user gone): on this device, and on every device that syncs after,
   nothing of hers opens any more, unless an old copy of store.sqlite exists.  No alarm.
   Impact: a no-key server destroys a user's access to all her files (permanent data loss for a
   vault with one device and no backup), the worst of "vanish".  A tombstone of a Group or another
   user's document is most likely taken the same way (not tested here).
   Cause: deletions of UserDetails (and of other signed documents) are not authenticated: a bare
   ``_deleted`` revision needs no signature (replicator ``_takes``; replica.store_revisions).
   Fix: never take a deletion of the document of a user this device unlocks (keep the last signed
   body; a deletion counts only as a signed "removed" body made by an administrator's or her own
   key, as ``user remove`` would then write), say a refused one (alarm), and keep a sealed copy of
   her own last signed UserDetails in the device state (as pins are) so a lost row is restored.
   Test: test_the_server_deleting_her_user_document_does_not_lock_her_out (pouchdb-server, live).
   FIXED (sync/replicator.py ``_deletion_taken``): a deletion a peer sends that would end the live
   current revision of a UserDetails document is not stored (an alarm, kind ``record``, subject
   ``deletion <id>``); a user is removed with ``user remove`` on each device.  Not done: a signed
   removal that would let a removal travel by sync.

2. THE SERVER REMOVES A LIVE FILE OF HERS, SILENTLY, WITH A BARE TOMBSTONE OF ITS NODE DOCUMENT.
   The server deletes plan.txt's node document (``DELETE``: a ``_deleted`` revision, unsigned).
   vault/model/ledger.py:437-439 ``admit`` takes any arriving ``_deleted`` as "a peer's gc of
   expired trash" and records the file as no longer live (``record(fid, None, False)``), without
   asking whether this device saw it deleted (in the trash) first.  Live the tree keeps showing
   it; the local row is the tombstone; at her next mount the file is gone and NO alarm is raised
   (the ledger was told it went legitimately; test_trust_rollback's "deleted node row is reported
   as vanished" holds only for a row removed from the store, not for one tombstoned by sync).
   Impact: a no-key server deletes any of her files and folders (with what is under them) without
   a trace; exactly issue 22's "deleting a node row makes files vanish silently", through sync.
   Cause: ledger.py:437-439.  Fix: take a tombstone only of a file this device last saw deleted
   (in the trash: ``entry[0]`` False) and old enough to have been purged; else refuse it (an
   alarm naming the file), and re-commit the tree's state over it (as for hole 7); a signed
   "purged" body from gc would make this exact.
   Tests: test_the_server_deleting_a_live_files_document_neither_removes_it_nor_goes_unsaid,
   test_the_server_deleting_a_live_folders_document_neither_removes_it_nor_goes_unsaid (a folder:
   it and the file in it gone at the next mount, no alarm).
   The same class: a bare tombstone of the version document (FilesMetaData) her live file's head
   names is taken too (replica stores any deletion): the file reads EIO at every mount from then
   on (live, it still read), with an alarm that blames "someone holding the file's key"; her
   records are still on disk, only the (signed) manifest's document is gone.  Fix: never take a
   deletion of a version a live node (or a version retention keeps) names; gc's own deletions are
   of versions no kept state names.
   Test: test_the_server_deleting_her_files_version_document_leaves_it_readable.
   FIXED for node documents (the same ``_deletion_taken``: a deletion ending the live current
   revision of a node not in the trash is refused and said; one closing a conflict's other branch, or
   of a node in the trash, as a peer's gc purges, is taken).  NOT fixed: the version document's
   deletion (still xfail: gc deletes version documents, and telling its deletions from a forgery
   needs the file's head, which the replicator does not read).  A device that never saw a file's
   deletion before a peer's gc purged it keeps the file, with the alarm (a false alarm after an
   absence longer than the trash's retention).
   FIXED (sync/replicator.py ``_judge_held``, fs/arrivals.py ``names``): a deletion of a version
   document is held and judged by the unlocked trees once its batch is taken in: one a live file shows
   as its head is refused (once caught up), kept and said; gc's are taken; locked, it waits for the
   unlock.  Tests: test_version_deletions_arriving_while_she_is_locked_wait_for_her_unlock,
   test_gc_on_one_device_deletes_the_same_versions_on_the_other_and_says_nothing.

3. AN UNSIGNED ``Rotation`` DOCUMENT IS OBEYED: HER WHOLE TREE RE-KEYED AND RE-SEALED, AGAIN AND AGAIN.
   The sync server (or whoever writes the vault folder's store) puts
   ``{"_id": "rotate-<anything>", "type": "Rotation", "owner": <her id>, "fid": <her root's fid>}``.
   vault/services/share_ops.py:266-270 (``resume``) acts on every Rotation document whose clear
   ``owner`` is hers: no signature, no check that she started it, any id.  ``rotate`` gives every
   node under the named one a new DEK and seals each file's current contents again under it (old
   versions keep theirs), then deletes only ``rotate-<fid>``: a forged document of another id stays,
   so it runs at EVERY unlock; live, every Group or Rotation document the server sends
   (fs/arrivals.py:86 ``_reshare`` -> ``resume``) runs it again.  Measured: a vault holding one
   8 MiB file grew 9 -> 17 -> 25 -> 33 MiB over three mounts (a full copy of her data per unlock,
   pushed to every peer); the CPU and disk cost is the size of her vault each time, until the disk
   is full.  No alarm.  (No key reaches anyone new: the new keys go to the current grantees.)
   Impact: a no-key party makes her client rewrite her whole vault at will (storage exhaustion,
   her mount busy re-sealing, her history filled with re-sealed copies).
   Cause: share_ops.py:266-270, a clear, unsigned document acted on; arrivals.py:86 re-runs it.
   Fix: sign Rotation documents (``trust.sign`` when ``unshare`` writes one) and act only on one
   signed by this user, whose id is ``rotate-<fid>`` of the fid it names, for a node she owns (a
   forged one: an alarm, left alone); or keep the pending rotation in the device state /
   a sealed private document instead of a clear one.  Do not let an arrival of one re-run ``resume``.
   Tests: test_a_forged_rotation_document_makes_her_client_rekey_nothing (the store writer),
   test_the_servers_rotation_document_rekeys_nothing_while_she_is_mounted (pouchdb-server, live).
   FIXED in part (share_ops.py ``_rotated``): a Rotation is acted on only in the shape fusevault
   writes (id ``rotate-<fid>`` of a file id, owned by her); others are said (kind ``malformed``).
   ``rotate`` deletes ``rotate-<fid>`` when done, so one forged document costs one re-key, never
   one per unlock.  Still open: a forged one of the right shape (Rotations are unsigned).
   FIXED (share_ops.py ``_request``, round 19): a Rotation is signed (by her, or by the pinned owner of a
   group she shares the file with) and names the epoch it asks to pass; any other is said (``forged``) and
   left alone, a replay of hers asks for nothing: tests/mount/test_trust_attack_round19_rotation.py.

4. A ROTATION DOCUMENT WHOSE ``fid`` IS NO STRING STOPS EVERY LATER MOUNT OF HERS.
   ``"fid": [...]`` (a list) reaches ``volume.find`` (share_ops.py:267) -> inodes.py:143
   ``self._by_fid.get(fid)``: TypeError (unhashable).  At unlock this leaves
   agent/sessions.py:86-91 ``_settle_shares`` (catches VaultError only) and the mount fails
   ("internal error: the mount failed", exit 70), at every mount from then on, until someone who
   knows removes the document by hand.  Sent by the server while she is mounted, the live mount
   survives (``_reshare`` catches Exception) and the document is stored: her NEXT mount fails.
   In a shared mount each user's unlock would fail the same way (seen in the code, not tested).
   Impact: a no-key party takes her drive away for good with one document.
   Cause: share_ops.py:267 (a clear field used with no type check); sessions.py:89-91 (only
   VaultError caught).  Fix: with hole 3's fix (a signed document of a known shape) this goes; also
   check ``isinstance(doc.get("fid"), str)`` before use, and have ``_settle_shares`` log, not raise,
   any error of settling (a bug a document reaches must never stop the unlock).
   Tests: test_a_rotation_document_with_a_malformed_fid_does_not_stop_her_mount (the store writer),
   test_the_servers_malformed_rotation_document_does_not_stop_her_next_mount (pouchdb-server).
   FIXED with 3 (its fid is checked to be an id before any use).

5. THE SERVER UNDOES HER ``passwd``: HER OLDER SIGNED USER DOCUMENT SERVED AGAIN IS TAKEN WHOLE.
   She changes her passphrase (the old one leaked); the server keeps her user document from
   before (genuinely signed by her) and PUTs it back as the newest revision.  Her device takes it
   (store/replica.py: a newer revision; nothing orders UserDetails bodies but the settings'
   ``settings_at_us``/vector, which confirmed.py uses for the settings only): at her next mount
   the OLD passphrase opens her vault, the new one no longer does, and no alarm says so.
   Impact: a passphrase change after a leak is silently undone by a no-key server; whoever holds
   the old passphrase and reaches her device (a stolen laptop, a shoulder-surfer) opens it again.
   (Her master key is unchanged by ``passwd``, so the server itself, holding the old wrapped copy,
   gains nothing new; the harm is to her device's unlock.)  Cause: UserDetails key fields are taken
   from the current revision with no "newest body seen" check (users.unlock reads the store's
   row; confirmed.py's seen-bodies order is used for settings only).  Fix: order her user
   document's key fields as the settings are (the signed vector/stamp; a body older than one seen
   here refused with an alarm, the newest seen kept in the device state) and keep her last wrapped
   key there so a replay never decides which passphrase opens her vault.
   Test: test_the_server_replaying_her_user_document_from_before_passwd_does_not_bring_the_old_
   passphrase_back.
   FIXED (vault/model/key_memory.py, users.unlock_here): every body that changes key fields carries a
   signed ``keys_seq``; each device remembers the newest key fields it saw, and an older body from the
   store or the server is not used (alarm ``rollback``, subject ``keys <id>``); passwd and the recovery
   key commands start from the newest too.  tests/mount/test_key_replay.py (the store writer's replay,
   a revoked recovery key put back, a genuine passwd from her other device: no alarm),
   tests/unit/test_key_memory.py.  Not covered: a device that never saw the newer body.

6. ROOT'S STATE UNDER ``sudo -E`` IS KEPT IN THE USER'S HOME, UNCHECKED: ITS LOG IS WRITTEN THROUGH
   HER LINKS, AND SHE RESETS ROOT'S TRUST.  paths.py:29-33 ``_dir`` (state_dir, config_dir) takes
   whatever folder the environment names (``sudo -E`` keeps HOME, so platformdirs gives the
   user's ``~/.local/state/fusevault``) with ``mkdir(exist_ok=True)``: no owner, link or mode check,
   unlike runtime_dir (``private_dir``).  (a) fs/daemon.py:249-253 ``_log_to_file`` opens
   ``logs/mount-<hash>.log`` with logging.FileHandler (append, links followed): with ``logs`` a link
   the user planted, root creates and appends to files in any folder (/etc/cron.d, /etc/sudoers.d,
   or appends to an existing file through a file link), i.e. root's rights lent to the user.
   (b) Root's ledger, pins, grants' freshness, verified and confirmed state land there: the user
   moves them away (a rename in her own folder) and root's next mount meets a rolled-back store,
   replayed grants, or re-pinned keys as if for the first time: no alarm (test b: a rolled-back
   store served silently).  Impact: "root's shared mount never lends root's rights" fails for an
   admin who runs ``sudo -E fusevault mount`` (common: to keep her FUSEVAULT_* settings), and root's
   TOFU/rollback memory is the user's to reset.  Cause: paths.py:29-33 (and the log's open at
   daemon.py:253).  Fix: check state and config folders as ``private_dir`` does (this euid's own,
   not a link, 0700; every component from a root-owned ancestor not writable by others when
   euid 0), or as root ignore HOME/XDG_* and use /var/lib/fusevault, /etc/fusevault; open the log
   with O_NOFOLLOW|O_APPEND relative to a checked folder descriptor.
   Tests: test_roots_mount_under_sudo_e_writes_nothing_through_the_users_state_folder,
   test_roots_rollback_ledger_under_sudo_e_cannot_be_reset_by_the_user (each passes also if the
   mount is refused with a message naming the state folder).
   FIXED (paths.py ``_own_place``): the state and config folders must be this user's own (not a
   link), and each folder above them this user's or root's (one others may write only if sticky):
   root's ``sudo -E`` mount is refused in one line naming the state folder.
   tests/unit/test_paths_own_place.py.

7. A REPLAYED REVISION "REFUSED WHILE MOUNTED" IS THE STORE'S CURRENT ROW: AT HER NEXT MOUNT IT IS
   TAKEN (A LIVE FILE GONE INTO THE TRASH).  The server keeps her signed deletion of plan.txt; she
   restores the file and writes on; the server serves the deletion again as a new revision while
   she is mounted.  Live it is refused and said (ledger.admit), and the file stays; but
   vault/model/ledger.py:443-448 only moves ``held.rev`` onto the replayed revision ("its next
   commit goes on top"), nothing is committed, so the local store's current row IS the replay.  If
   she does not write that file before unmounting, her next mount loads it: the file is gone from
   its folder (in the trash; a rollback alarm).  The same holds for a replayed older contents
   revision (test_trust_rollback.py's live test writes "plan C" right after, which hides this).
   SECURITY.md's "A server (or peer) offering an older revision while mounted: reported, and not
   taken in; the file keeps its newer contents" holds only until the next mount.
   Impact: the server makes a live file of hers vanish (or roll back) at her next mount, with only
   the alarm to tell (the same as a store writer's replay: hole 8).
   Cause: ledger.py:443-448 (absorbing refuses, the store keeps).  Fix: when an arrival is refused
   as a replay, commit the tree's newer state at once as the next revision over the replayed one
   (as conflicts.py ``_adopt`` does), so the store never holds the replay as current; or remember
   the refused revision id in the ledger and refuse it again at load (rebuild from the tree's
   last state: the ledger knows its place and name).
   Test: test_her_own_older_deletion_served_by_the_server_is_refused_live_and_at_her_next_mount.
   FIXED (services/absorbing.py ``absorb_node``, fs/arrivals.py ``_recommit``): a revision refused as
   a replay of her own node is followed at once by her newer state committed over it (and pushed), so
   the store never keeps the replay current; one left current anyway (she locked first) is refused at
   the next unlock as hole 8's.  Also for older contents: test_trust_rollback.py
   ``test_a_server_serving_an_older_revision_is_refused_at_the_next_mount_too``.

8. (Documented limit, "Not yet for a file": SECURITY.md Rollback.)  Her own older signed DELETION
   put back as the current row (by the store writer, or hole 7) moves her live file into the trash
   at the next mount: the folder no longer shows it; a rollback alarm names the fid; ``restore``
   brings back its newest contents (held, below).  ``replays_refused`` (loading.py:308-331) rebuilds
   only folders (``node.is_dir``), and a deleted document never becomes a node at all (loading.py
   skips every ``delete`` signed by the owner).  Fix: judge her own deletions as folders are: a
   deletion whose seq is older than one this device saw is refused and the file rebuilt in place
   from the ledger (``keep_undeleted`` already rebuilds refused deletions by another signer).
   Test: test_her_own_older_deletion_put_back_does_not_hide_the_live_file.
   FIXED (vault/tree/rebuilding.py ``deletion_replayed``, ``replays_refused``): her own deletion, and a
   file's older state, numbered by THIS device below a state it saw since, of a file it last saw live,
   is refused at unlock, the file rebuilt where it was with its newest version (an alarm), and the state
   rebuilt committed over the replay before the mount serves (share_ops.py ``_put_back_over_replays``).
   Not done: another device's older deletion (its numbers order none of this device's states).

What held
---------
- recovery.trash / restore: her own older deletion put back is said (a rollback alarm naming the
  file), the trash offers the file once (no second name), and ``restore`` brings back its newest
  contents, not the deleted state's -
  test_her_own_older_deletion_put_back_is_said_and_restore_brings_back_the_newest_contents (since
  hole 8's fix the file simply stays, said, the trash empty; the test asserts that now).
- The server's tombstone of her ROOT folder's document: at her next mount her files are all where
  they were (rebuilding.py ``root_again``), unlike a file's (hole 2) -
  test_the_server_deleting_her_root_folders_document_leaves_her_files_where_they_are.
- Live, a replayed deletion from the server is refused and said, the file stays (the first half of
  test_her_own_older_deletion_served_by_the_server_is_refused_live_and_at_her_next_mount; the
  xfail is its next mount).
- Read, not broken: encoding.loads_untrusted (size, depth, NaN/Infinity refused) guards every body
  from the server; the replicator refuses documents whose id names a path (``_takes``); a live
  arrival's failure is caught per user (fs/arrivals.py ``committed``); conflicts.py asks the ledger
  before settling a branch (round 4); freshness.py orders replayed Share/Group/Retention bodies by
  their signed vectors; key_mirror accepts a key only if the file's owner signed it.

Seen, not tested (for the next round)
-------------------------------------
- sync/key_mirror.py ``_document_wins``: a FileKey document the server deletes (only the document
  changed) removes the recipient's key file here (sharing.remove_key), and an older, genuinely
  signed FileKey (an earlier epoch) put back as a new revision is written over the current key file:
  a recipient's access to a shared file lost until the owner's next unlock re-seals (availability;
  nothing sealed to anyone new).  A later epoch than the file's could be required of a document
  that replaces a key file, and a deletion taken only if the grant is gone.  (Round 19: both
  fixed, tests/mount/test_trust_attack_round19_keys.py.)
- fs/shared.py:73 ``_read_uids``: the uid -> user map of a shared mount is read from clear,
  unsigned UserDetails ``uid`` fields; a later document naming another user's uid takes the seat
  (at most a denial of her unlock: the passphrase still decides).
  FIXED (fs/shared.py ``_read_uids``, round 19): only a document its user signed maps a uid, and a uid
  two users claim maps neither (an alarm for each): tests/mount/test_trust_attack_round19_rotation.py.
- Not reached: vault/tree/rebuilding.py ``rebuilt_in_place``/``replays_refused`` with forged documents
  through a mount (only read; no hole found by reading), conflicting revisions of Share/Group/
  UserDetails with a server-chosen winner (conflicts.py keeps CouchDB's pick for non-node types).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import adversary
import pytest
from conftest import PASSPHRASE, first_device, fusevault, mounted, new_device, settled, wait_for
from services.test_trust_attack_round4 import _alarms

from fusevault.vault.model.nodes import open_node_doc

USER_UID = 4242  # the user whose home root's `sudo -E` keeps (no login needed: only the owner counts)


def _users_home(tmp_path: Path) -> Path:
    """A home folder of an unprivileged user, as `sudo -E` leaves HOME pointing at it."""
    home = tmp_path / "home-of-the-user"
    (home / ".local" / "state").mkdir(parents=True)
    for folder in (home, home / ".local", home / ".local" / "state"):
        os.chown(folder, USER_UID, USER_UID)
    return home


def _as_sudo_e(home: Path) -> dict[str, str]:
    """The environment of `sudo -E fusevault ...`: HOME is the user's, no state-dir override."""
    return {"HOME": str(home), "XDG_STATE_HOME": "", "XDG_CONFIG_HOME": "", "FUSEVAULT_STATE_DIR": "",
            "FUSEVAULT_CONFIG_DIR": ""}


def _prepared_state_folder(home: Path) -> Path:
    """What the user (no root) does before root's next `sudo -E` mount: root's state folder is hers."""
    state = home / ".local" / "state" / "fusevault"
    state.mkdir(mode=0o700)
    os.chown(state, USER_UID, USER_UID)
    return state


@contextlib.contextmanager
def _sudo_e_mount(vault: Path, mountpoint: Path, home: Path) -> Iterator[Path | None]:
    """Root's mount with the user's HOME; None if fusevault refuses it (a safe outcome: the refusal must
    name the state folder)."""
    mountpoint.mkdir(exist_ok=True)
    env = _as_sudo_e(home)
    result = fusevault("mount", vault, mountpoint, env=env)
    if result.returncode != 0:
        assert "state" in result.stderr.lower(), result.stderr
        yield None
        return
    try:
        yield mountpoint
    finally:
        assert fusevault("unmount", mountpoint, passphrase=None).returncode == 0


def test_roots_mount_under_sudo_e_writes_nothing_through_the_users_state_folder(
        vault: Path, tmp_path: Path) -> None:
    home = _users_home(tmp_path)
    # The user (no root) prepares root's state folder in her home before root's next `sudo -E` mount:
    # its logs folder is a link to a folder only root may write (think /etc/cron.d or /etc/sudoers.d).
    state = _prepared_state_folder(home)
    roots_only = tmp_path / "roots-only"
    roots_only.mkdir(mode=0o700)
    (state / "logs").symlink_to(roots_only)
    os.lchown(state / "logs", USER_UID, USER_UID)

    with _sudo_e_mount(vault, tmp_path / "mnt", home) as mnt:
        if mnt is not None:
            (mnt / "a.txt").write_bytes(b"root's mount works")
    written = sorted(p.name for p in roots_only.iterdir())
    assert written == [], f"root wrote {written} into a folder only root may write, through the user's link"


def test_roots_rollback_ledger_under_sudo_e_cannot_be_reset_by_the_user(vault: Path, tmp_path: Path) -> None:
    home = _users_home(tmp_path)
    state = _prepared_state_folder(home)
    mnt = tmp_path / "mnt"
    with _sudo_e_mount(vault, mnt, home) as m:
        if m is None:
            return  # refused: nothing of root's trust is kept where the user may reach it
        (m / "plan.txt").write_bytes(b"as it was")
    adversary.snapshot(vault, tmp_path / "snap")
    with _sudo_e_mount(vault, mnt, home) as m:
        assert m is not None
        (m / "plan.txt").write_bytes(b"the newer plan")
    kept = sorted(p.name for p in state.iterdir())
    # The user owns the folder: she moves root's memory of what it has seen out of the way (a rename in
    # her own folder needs no right on what root made inside), and the store writer (in a shared vault,
    # another local user; or she) puts the old store back.
    shutil.move(state, home / ".local" / "state" / "moved-away")
    adversary.roll_back(vault, tmp_path / "snap")
    with _sudo_e_mount(vault, mnt, home) as m:
        assert m is not None
        contents = (m / "plan.txt").read_bytes()
        found = _alarms(m)
    assert contents == b"the newer plan" or any(a["kind"] == "store-rollback" for a in found), (
        f"root's mount took the rolled-back store silently ({contents!r}, alarms {found}); root's state "
        f"kept in the user's folder: {kept}")


# --- an unsigned Rotation document (vault/services/share_ops.py resume)


def _alice(vault: Path) -> dict:
    (user,) = [u for u in adversary.docs(vault, "UserDetails") if u.get("username") == "alice"]
    return user


def _fid_named(vault: Path, before: set[str]) -> str:
    (fid,) = {d["_id"] for d in adversary.docs(vault, "node")} - before
    return fid


def test_a_forged_rotation_document_makes_her_client_rekey_nothing(vault: Path, tmp_path: Path) -> None:
    from mount.test_trust_attack_round4 import _alice_dek

    mnt = tmp_path / "mnt"
    before = {d["_id"] for d in adversary.docs(vault, "node")}
    with mounted(vault, mnt):
        (mnt / "plan.txt").write_bytes(b"her plan")
    fid = _fid_named(vault, before)
    dek = _alice_dek(vault, fid)
    # The store writer (no key) asks for a key rotation of her whole tree; an id of his own, so
    # the rotation's end (which deletes rotate-<fid> only) never removes it: every unlock again.
    adversary.put(vault, {"_id": "rotate-forged", "type": "Rotation", "owner": _alice(vault)["_id"],
                          "fid": _alice(vault)["root"]})
    for _ in range(2):
        with mounted(vault, mnt):
            assert (mnt / "plan.txt").read_bytes() == b"her plan"
    assert _alice_dek(vault, fid) == dek, "an unsigned Rotation document gave her file a new key"


def test_a_rotation_document_with_a_malformed_fid_does_not_stop_her_mount(
        vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "plan.txt").write_bytes(b"her plan")
    adversary.put(vault, {"_id": "rotate-forged", "type": "Rotation", "owner": _alice(vault)["_id"],
                          "fid": ["not", "an", "id"]})
    with mounted(vault, mnt):
        assert (mnt / "plan.txt").read_bytes() == b"her plan"
        (mnt / "after.txt").write_bytes(b"serving")


def _her_user(server: adversary.Server) -> dict:
    (user,) = [u for u in server.all("UserDetails") if u.get("username") == "alice"]
    return user


def _pushed(server: adversary.Server, a: Path, data: bytes, kind: str = "node") -> str:
    """plan.txt written with ``data`` and pushed: the id of the new document of ``kind`` it made."""
    wait_for(lambda: settled(a), "the first push")
    before = {d["_id"] for d in server.all(kind)}
    (a / "plan.txt").write_bytes(data)
    wait_for(lambda: settled(a), "the file pushed")
    (new,) = {d["_id"] for d in server.all(kind)} - before
    return new


def test_the_servers_rotation_document_rekeys_nothing_while_she_is_mounted(
        couch: tuple[str, adversary.Server], tmp_path: Path) -> None:
    from mount.test_trust_attack_round4 import _alice_dek

    url, server = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        fid = _pushed(server, a, b"her plan")
        alice = _her_user(server)
        old = server.get(fid)
        versions = {d["_id"] for d in server.all("FilesMetaData") if d.get("fid") == fid}
        server.put({"_id": "rotate-forged", "type": "Rotation", "owner": alice["_id"], "fid": alice["root"]})
        wait_for(lambda: adversary.get(laptop, "rotate-forged") is not None, "the forged document to arrive")
        wait_for(lambda: settled(a), "the sync to settle")
        (a / "marker.txt").write_bytes(b"after")  # a round trip through the mount
        wait_for(lambda: settled(a), "the marker pushed")
        assert (a / "plan.txt").read_bytes() == b"her plan"
        # A re-seal writes a new version (the node's revision may change by an access time: relatime).
        rekeyed = {d["_id"] for d in server.all("FilesMetaData") if d.get("fid") == fid} != versions
    dek_now = _alice_dek(laptop, fid)
    dek_then, _ = _opened(laptop, old)
    assert dek_now == dek_then and not rekeyed, "the server's Rotation document gave her file a new key"


def test_the_servers_malformed_rotation_document_does_not_stop_her_next_mount(
        couch: tuple[str, adversary.Server], tmp_path: Path) -> None:
    url, server = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        (a / "plan.txt").write_bytes(b"her plan")
        wait_for(lambda: settled(a), "the file pushed")
        alice = _her_user(server)
        server.put({"_id": "rotate-x", "type": "Rotation", "owner": alice["_id"], "fid": [alice["root"]]})
        wait_for(lambda: adversary.get(laptop, "rotate-x") is not None, "the forged document to arrive")
        wait_for(lambda: settled(a), "the sync to settle")
        (a / "live.txt").write_bytes(b"the live mount still serves")
    result = fusevault("mount", laptop, tmp_path / "a")
    if result.returncode == 0:
        assert fusevault("unmount", tmp_path / "a", passphrase=None).returncode == 0
    assert result.returncode == 0, f"her next mount failed: {result.stderr}"


def _opened(vault: Path, doc: dict) -> tuple[bytes, dict]:
    from mount.test_trust_attack_round4 import _key

    return open_node_doc(doc, _key(vault, "alice", PASSPHRASE))


# --- the trash (vault/services/recovery.py) with her own older deletion put back


def _deleted_then_restored(vault: Path, tmp_path: Path) -> tuple[Path, str, dict]:
    """She writes plan.txt, deletes it, restores it from the trash and writes on.  (mount point,
    fid, her genuine signed deletion document, which the store writer kept.)"""
    mnt = tmp_path / "mnt"
    before = {d["_id"] for d in adversary.docs(vault, "node")}
    with mounted(vault, mnt):
        (mnt / "plan.txt").write_bytes(b"first plan")
    fid = _fid_named(vault, before)
    with mounted(vault, mnt):
        os.unlink(mnt / "plan.txt")
    deletion = adversary.get(vault, fid)
    assert deletion is not None and deletion.get("delete")
    with mounted(vault, mnt):
        restored = fusevault("restore", mnt / "plan.txt")
        assert restored.returncode == 0, restored.stderr
        (mnt / "plan.txt").write_bytes(b"the newer plan")
    return mnt, fid, deletion


def test_her_own_older_deletion_put_back_does_not_hide_the_live_file(vault: Path, tmp_path: Path) -> None:
    mnt, fid, deletion = _deleted_then_restored(vault, tmp_path)
    adversary.put(vault, deletion)
    with mounted(vault, mnt):
        assert sorted(os.listdir(mnt)) == ["plan.txt"], "her live file vanished into the trash"
        assert (mnt / "plan.txt").read_bytes() == b"the newer plan"


def test_her_own_older_deletion_put_back_is_said_and_restore_brings_back_the_newest_contents(
        vault: Path, tmp_path: Path) -> None:
    """held: the replayed deletion is said (a rollback alarm naming the file).  Since hole 8's fix the
    file simply stays (refused, rebuilt where this device last saw it, with its newest contents), so
    the trash offers nothing to restore; the unlock commits her newer state over the replay, so the
    next mount finds nothing to refuse, says nothing, and the trash is still empty.  (Before: the trash
    offered the file once and ``restore`` brought back its newest contents.)"""
    mnt, fid, deletion = _deleted_then_restored(vault, tmp_path)
    adversary.put(vault, deletion)
    with mounted(vault, mnt):
        assert any(a["kind"] == "rollback" and a["subject"] == fid for a in _alarms(mnt)), _alarms(mnt)
        trash = fusevault("trash", mnt, "--json")
        assert trash.returncode == 0, trash.stderr
        assert json.loads(trash.stdout)["trash"] == []
        assert (mnt / "plan.txt").read_bytes() == b"the newer plan"
    assert not adversary.get(vault, fid).get("delete"), "the replay is still the store's current row"
    with mounted(vault, mnt):
        assert _alarms(mnt) == []
        assert sorted(os.listdir(mnt)) == ["plan.txt"]
        assert (mnt / "plan.txt").read_bytes() == b"the newer plan"


def test_her_own_older_deletion_served_by_the_server_is_refused_live_and_at_her_next_mount(
        couch: tuple[str, adversary.Server], tmp_path: Path) -> None:
    """The server keeps her signed deletion of plan.txt and, after she restored it and wrote on,
    serves it as the newest revision while she is mounted; then she mounts again."""
    url, server = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        fid = _pushed(server, a, b"first plan")
        os.unlink(a / "plan.txt")
        wait_for(lambda: settled(a) and server.get(fid).get("delete"), "the deletion pushed")
        deletion = server.get(fid)
        assert fusevault("restore", a / "plan.txt").returncode == 0
        (a / "plan.txt").write_bytes(b"the newer plan")
        wait_for(lambda: settled(a) and not server.get(fid).get("delete"), "the restore pushed")
        rev = server.put(deletion)
        wait_for(lambda: adversary.get(laptop, fid) is not None and _known(laptop, fid, rev),
                 "the replayed deletion to arrive")
        wait_for(lambda: settled(a), "the sync to settle")
        live = sorted(os.listdir(a))
        said = any(a_["subject"] == fid for a_ in _alarms(a))
    with mounted(laptop, tmp_path / "a") as a:
        again = sorted(os.listdir(a))
        contents = (a / "plan.txt").read_bytes() if "plan.txt" in again else None
    assert live == ["plan.txt"] and said, (live, said)
    assert again == ["plan.txt"] and contents == b"the newer plan", (
        f"at her next mount the server's replayed deletion hid her file: {again}")


def _deleted_or_refused(vault: Path, mnt: Path, doc_id: str) -> bool:
    """The server's deletion of ``doc_id`` came: taken (the row is gone), or refused, and said."""
    return adversary.get(vault, doc_id) is None or any(a["subject"] == f"deletion {doc_id}"
                                                        for a in _alarms(mnt))


def _known(vault: Path, doc_id: str, rev: str) -> bool:
    from fusevault.store import replica

    with adversary.store_of(vault) as store:
        return rev in replica._known(store, doc_id)


def test_the_server_deleting_her_user_document_does_not_lock_her_out(
        couch: tuple[str, adversary.Server], tmp_path: Path) -> None:
    """The server (no key) deletes her UserDetails document (a tombstone, as a CouchDB client may):
    her device takes it; can she still mount, and is the deletion said?"""
    url, server = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        (a / "plan.txt").write_bytes(b"her plan")
        wait_for(lambda: settled(a), "the file pushed")
        alice = _her_user(server)
        server.delete(alice["_id"])
        wait_for(lambda: _deleted_or_refused(laptop, a, alice["_id"]), "the tombstone (or its refusal)")
        wait_for(lambda: settled(a), "the sync to settle")
        assert (a / "plan.txt").read_bytes() == b"her plan"
    result = fusevault("mount", laptop, tmp_path / "a")
    if result.returncode == 0:
        assert (tmp_path / "a" / "plan.txt").read_bytes() == b"her plan"
        assert fusevault("unmount", tmp_path / "a", passphrase=None).returncode == 0
    assert result.returncode == 0, f"her next mount failed: {result.stderr}"


def test_the_server_deleting_a_live_files_document_neither_removes_it_nor_goes_unsaid(
        couch: tuple[str, adversary.Server], tmp_path: Path) -> None:
    """The server tombstones the node document of a live file of hers (no signed deletion: a bare
    ``_deleted`` revision, as expired trash purged by a peer's gc arrives)."""
    url, server = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        fid = _pushed(server, a, b"her plan")
        server.delete(fid)
        wait_for(lambda: _deleted_or_refused(laptop, a, fid), "the tombstone (or its refusal)")
        wait_for(lambda: settled(a), "the sync to settle")
        live = sorted(os.listdir(a))
        said_live = fid in json.dumps(_alarms(a))
    with mounted(laptop, tmp_path / "a") as a:
        again = sorted(os.listdir(a))
        said_again = fid in json.dumps(_alarms(a))
    assert live == ["plan.txt"] or said_live, f"her live file vanished silently: {live}"
    assert again == ["plan.txt"] or said_again, f"at her next mount her file is gone silently: {again}"
    assert live == ["plan.txt"] and again == ["plan.txt"], (
        f"the server's bare tombstone removed her live file (live {live}, said {said_live}; next mount "
        f"{again}, said {said_again})")


@pytest.mark.usefixtures("quick_longpoll")  # waits on pulls once caught up again
def test_the_server_deleting_her_files_version_document_leaves_it_readable(
        couch: tuple[str, adversary.Server], tmp_path: Path) -> None:
    """The server tombstones the version document (FilesMetaData) of a live file's newest version."""
    url, server = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        vid = _pushed(server, a, b"her plan", "FilesMetaData")
        server.delete(vid)
        wait_for(lambda: _deleted_or_refused(laptop, a, vid), "the tombstone (or its refusal)")
        wait_for(lambda: settled(a), "the sync to settle")
        live = (a / "plan.txt").read_bytes()
        said_live = any(a_["subject"] == f"deletion {vid}" for a_ in _alarms(a))
    with mounted(laptop, tmp_path / "a") as a:
        again = sorted(os.listdir(a))
        try:
            contents: bytes | str = (a / "plan.txt").read_bytes()
        except OSError as err:
            contents = f"{type(err).__name__}: {err}"
        said = _alarms(a)
    assert live == b"her plan"
    assert again == ["plan.txt"] and contents == b"her plan", (
        f"after the server's tombstone of its version: {again}, {contents!r}, alarms {said}")
    assert said_live, "the server's deletion of her file's version was refused unsaid"


def _held(vault: Path) -> set[str]:
    """The deletions of version documents the laptop's replicator holds for a verdict."""
    from fusevault.store import replica

    with adversary.store_of(vault) as store:
        return set(replica.get_local(store, "sync-server").get("held") or {})


@pytest.mark.usefixtures("quick_longpoll")  # waits on pulls once caught up again
def test_version_deletions_arriving_while_she_is_locked_wait_for_her_unlock(
        couch: tuple[str, adversary.Server], tmp_path: Path) -> None:
    """Locked, no tree tells a live file's version from one gc may drop: the server's deletions of
    plan.txt's newest version (forged) and of its older one (as a peer's gc would) are held, and
    judged at her unlock: the older one deleted, the newest refused and said (still held: taken only
    if her tree's head moves on)."""
    url, server = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        older = _pushed(server, a, b"first plan", "FilesMetaData")
        newest = _pushed(server, a, b"her plan", "FilesMetaData")
        assert fusevault("lock", a, passphrase=None).returncode == 0
        server.delete(older)
        server.delete(newest)
        wait_for(lambda: _held(laptop) == {older, newest}, "the deletions held while she is locked")
        assert adversary.get(laptop, older) is not None and adversary.get(laptop, newest) is not None
        assert fusevault("unlock", a).returncode == 0
        wait_for(lambda: _held(laptop) == {newest}, "the held deletions judged after her unlock")
        wait_for(lambda: any(x["subject"] == f"deletion {newest}" for x in _alarms(a)), "the refusal said")
        said = True
        gone, kept = adversary.get(laptop, older) is None, adversary.get(laptop, newest) is not None
        assert (a / "plan.txt").read_bytes() == b"her plan"
    assert gone and kept and said, (gone, kept, said)
    with mounted(laptop, tmp_path / "a") as a:
        assert (a / "plan.txt").read_bytes() == b"her plan"


def _version_ids(vault: Path) -> set[str]:
    return {d["_id"] for d in adversary.docs(vault, "FilesMetaData")}


def test_gc_on_one_device_deletes_the_same_versions_on_the_other_and_says_nothing(
        couch: tuple[str, adversary.Server], tmp_path: Path) -> None:
    """held (hole 2's fix must not refuse gc): the laptop's gc thins plan.txt's old versions (the one the
    desktop shows among them: the laptop's newer one comes with the deletion) and purges a file from the
    trash; the desktop, mounted, deletes the same version documents, and nothing is said."""
    url, server = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        for text in (b"first", b"second", b"third"):
            (a / "plan.txt").write_bytes(text)
        (a / "old.txt").write_bytes(b"into the trash")
        wait_for(lambda: settled(a), "the files pushed")
        os.unlink(a / "old.txt")
        wait_for(lambda: settled(a), "the deletion pushed")
        desktop = new_device(url, tmp_path, "desktop")
        with mounted(desktop, tmp_path / "b") as b:
            in_step = lambda: settled(b) and _version_ids(desktop) == _version_ids(laptop)  # noqa: E731
            wait_for(in_step, "the desktop in step")
            assert (b / "plan.txt").read_bytes() == b"third"
            # Its newest version, pushed with gc's deletion of the one the desktop shows until it arrives.
            (a / "plan.txt").write_bytes(b"fourth")
            gc = fusevault("gc", a, "--as-of", "2099-01-01", "--json")
            assert gc.returncode == 0, gc.stderr
            report = json.loads(gc.stdout)
            assert report["files_purged"] == 1 and report["versions_dropped"] >= 4, report
            dropped = {d["version"] for d in report["dropped"]}
            wait_for(lambda: settled(a), "the gc's deletions pushed")
            wait_for(in_step, lambda: f"the desktop to drop {dropped & _version_ids(desktop)}")
            assert (b / "plan.txt").read_bytes() == b"fourth" and sorted(os.listdir(b)) == ["plan.txt"]
            said = [x for x in _alarms(b) if str(x["subject"]).startswith("deletion ")]
    assert not dropped & _version_ids(desktop) and not said, said


def test_the_server_deleting_her_root_folders_document_leaves_her_files_where_they_are(
        couch: tuple[str, adversary.Server], tmp_path: Path) -> None:
    """held: the server tombstones the node document of her root folder; at her next mount her files
    are all where they were (loading's ``root_again``)."""
    url, server = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        (a / "docs").mkdir()
        (a / "docs" / "plan.txt").write_bytes(b"her plan")
        (a / "top.txt").write_bytes(b"at the top")
        wait_for(lambda: settled(a), "the files pushed")
        alice = _her_user(server)
        server.delete(alice["root"])
        wait_for(lambda: _deleted_or_refused(laptop, a, alice["root"]), "the tombstone (or its refusal)")
        wait_for(lambda: settled(a), "the sync to settle")
    with mounted(laptop, tmp_path / "a") as a:
        again = sorted(os.listdir(a))
        said = _alarms(a)
    assert again == ["docs", "top.txt"], f"after the server's tombstone of her root: {again}, alarms {said}"


def test_the_server_deleting_a_live_folders_document_neither_removes_it_nor_goes_unsaid(
        couch: tuple[str, adversary.Server], tmp_path: Path) -> None:
    url, server = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        wait_for(lambda: settled(a), "the first push")
        before = {d["_id"] for d in server.all("node")}
        (a / "docs").mkdir()
        wait_for(lambda: settled(a), "the folder pushed")
        (fid,) = {d["_id"] for d in server.all("node")} - before
        (a / "docs" / "plan.txt").write_bytes(b"her plan")
        wait_for(lambda: settled(a), "the file pushed")
        server.delete(fid)
        wait_for(lambda: _deleted_or_refused(laptop, a, fid), "the tombstone (or its refusal)")
        wait_for(lambda: settled(a), "the sync to settle")
    with mounted(laptop, tmp_path / "a") as a:
        again = sorted(os.listdir(a))
        said = fid in json.dumps(_alarms(a))
        inside = sorted(os.listdir(a / "docs")) if "docs" in again else None
    assert again == ["docs"] and inside == ["plan.txt"], (
        f"the server's tombstone of her folder: next mount shows {again} (docs holds {inside}), said {said}")


NEW = "a new passphrase, the old one leaked"


def test_the_server_replaying_her_user_document_from_before_passwd_does_not_bring_the_old_passphrase_back(
        couch: tuple[str, adversary.Server], tmp_path: Path) -> None:
    """She changes her passphrase (the old one leaked); the server keeps her signed user document from
    before and serves it again as the newest revision.  The old passphrase must not open her
    vault on her device again."""
    url, server = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        (a / "plan.txt").write_bytes(b"her plan")
        wait_for(lambda: settled(a), "the first push")
        alice = _her_user(server)
    changed = fusevault("passwd", laptop, env={"FUSEVAULT_NEW_PASSPHRASE": NEW})
    assert changed.returncode == 0, changed.stderr
    with mounted(laptop, tmp_path / "a", passphrase=NEW) as a:
        wait_for(lambda: settled(a) and server.get(alice["_id"])["_rev"] != alice["_rev"],
                 "the change pushed")
        rev = server.put(alice)  # her older, signed body, as the newest revision
        wait_for(lambda: _known(laptop, alice["_id"], rev), "the replayed document to arrive")
        wait_for(lambda: settled(a), "the sync to settle")
        said = _alarms(a)
    old = fusevault("mount", laptop, tmp_path / "a")  # the leaked passphrase
    if old.returncode == 0:
        assert fusevault("unmount", tmp_path / "a", passphrase=None).returncode == 0
    assert old.returncode != 0, f"the old passphrase opens her vault again (alarms while mounted: {said})"
