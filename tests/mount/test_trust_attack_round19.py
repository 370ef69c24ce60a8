"""Attack round 19 on issue 22 (the authenticated vault): what landed in c664974..74e9903 (main).

Asked for: her key fields ordered by a signed ``keys_seq`` and remembered per device
(vault/model/key_memory.py, users.unlock_here), signed Rotation documents (vault/services/share_ops.py
``_request``/``resume``/``rotate``, sharing.rotations, accounts.remove_member), and the uid map of root's
shared mount (fs/shared.py ``_read_uids``).  Seven holes, most severe first; real mounts, the real
``fusevault`` command, the store writer (tests/adversary.py) and a pouchdb-server throughout.

Holes
-----
1. A FORGED ``keys_seq`` BRINGS THE OLD PASSPHRASE (OR A REVOKED RECOVERY KEY) BACK, SILENTLY; OR LOCKS
   HER NEW PASSPHRASE OUT.  The store writer takes her body from before ``passwd`` (or before
   ``recovery-key revoke``) and sets ``keys_seq`` to 1000.  Its signature no longer holds, but
   key_memory.py:77 ``newest`` compares the store's (unverified) number with the remembered one and,
   being higher, unlocks with the store's fields (users.py:137-138); only then users.py:144 checks her
   signature, and a failure only means "not remembered".  The leaked passphrase mounts her vault on the
   device that made the change and reads her files; what is said comes after the key opened, and
   misleads: ``forged-user`` and ``forged-settings`` ("not signed with their key ... its settings are
   ignored", migrate.py), never that its key fields were used to open her vault; the revoked words run
   ``passwd --recovery`` and set a passphrase of the thief's choosing; and her new passphrase is refused
   (exit 3) on that device until the store is repaired.  Exactly round 18 hole 5, one field away.
   Cause: key_memory.py:77 (and the CLI's ``newest`` before ``passwd``/``recovery-key``: cli/vault.py:121,
   cli/recovery.py:169) trusts a sequence no signature was checked for.
   Fix: a store body overrides the remembered one only if her signature holds on it: unlock with the
   store's body, and if ``own_signature(doc, key)`` fails (or the key does not open), use the remembered
   fields (alarm ``forged``, subject ``keys <id>``); for ``passwd``/``recovery-key``/``passwd --recovery``
   do the same before anything is written (keep ``public_sign`` in the record to check before a key is
   open).  The server does the same: its relabelled body arrives while she is mounted, is stored
   without a word, and the leaked passphrase mounts her vault at her next unlock.
   Tests: test_her_older_keys_relabelled_with_a_higher_keys_seq_do_not_bring_the_old_passphrase_back,
   test_the_servers_older_keys_relabelled_with_a_higher_keys_seq_do_not_bring_the_old_passphrase_back
   (pouchdb-server),
   test_her_older_keys_relabelled_with_a_higher_keys_seq_do_not_lock_her_new_passphrase_out,
   test_a_revoked_recovery_key_relabelled_with_a_higher_keys_seq_opens_nothing.
   FIXED (key_memory.py ``newest``, ``_signed_by_her``): a store body above the one remembered counts
   only if the signing key remembered with it signed it; else the remembered fields decide (alarm
   ``rollback``, subject ``keys <id>``).  The device that creates a user remembers her keys from the
   start (users.create_user).

2. A RECOVERY KEY REVOKED ON ONE DEVICE IS BACK AFTER A GENUINE ``passwd`` ON ANOTHER, ON EVERY DEVICE,
   SILENTLY.  Her laptop revokes the recovery key (the words were stolen): keys_seq 1.  Her desktop,
   which has not seen that body (apart, or the server simply withholds it), changes her passphrase
   twice: keys_seq 2, still carrying the recovery wrapping it knew.  At the next sync the laptop takes
   the desktop's body quietly (a higher number, genuinely signed: key_memory.py:77, and ``remember``
   :88), and the revoked words reset her passphrase on the laptop that revoked them.  With one passwd
   on the desktop the numbers are equal and the laptop takes whichever body the sync keeps (an equal
   one replaces the kept one, :88), so a server that withholds the revocation from the desktop and
   serves the desktop's body gets the same with a single ``passwd``.  No alarm anywhere.
   Cause: ``keys_seq`` is a counter, not a history: two changes made apart are ordered as if one
   followed the other, and a revocation is just the absence of a field.
   Fix: each key body names the hash of the key fields it replaced (``keys_prev``, signed); a device
   takes a body newer than the kept one only if it descends from it, else it is a fork (alarm, kind
   ``keys-diverged``); and a revocation is a signed tombstone that survives merges (the hash of each
   revoked recovery wrapping kept in her document and in key_memory's record, never taken back).
   Test: test_a_recovery_key_revoked_on_the_laptop_stays_revoked_after_a_passwd_on_the_desktop
   (pouchdb-server).
   FIXED (key_memory.py ``newest``/``remember``, users.py ``judged``, ``_save``): a revocation is kept as
   the digest of the wrapping revoked (``revoked_recovery``, signed, carried by every later body, and in
   this device's record); a body that still carries it is taken without it, and written back so.

3. A GROUP OWNER'S GENUINE REQUEST, MADE FROM A FORGED CLEAR EPOCH (OR NAMING A HUGE ONE), IS REPLAYABLE:
   HER FILE RE-KEYED AND RE-SEALED AT EVERY REPLAY.  ``group member remove`` signs ``rotation_doc`` with
   the epoch the file's node document shows in clear (sharing.py:286, ``_clear_epoch`` :290): the group
   owner cannot read her node and checks no signature.  The store writer (or the server, for the group
   owner's device) shows him her node with ``epoch`` 2**53-1; his request then names it.  She acts on it
   (signed by crew's pinned owner), ``rotate`` tombstones it, and the store writer puts the same signed
   body back: share_ops.py:288 finds ``node.epoch`` (1, 2, ...) not above 2**53-1, so every replay
   re-keys the whole subtree and writes a new sealed copy of each file (measured: 74 KB -> 149 KB for
   two replays of one 37 KB file), at every unlock, and live: in root's shared mount each replay while
   she is unlocked is re-keyed at once (fs/arrivals.py ``_reshare`` runs ``resume``: epochs 0, 1, 2, 3
   for one request and two replays); no alarm at all.  A group owner can sign such an
   epoch himself (share_ops.py:327 checks only that it is a whole number).  This is round 18 hole 3's
   impact again (storage and CPU exhaustion, her history filled), through a signature.
   Cause: share_ops.py:288/:327 accept an epoch above the node's.  Fix: a request naming an epoch above
   the node's current one is not acted on (alarm ``forged``: no one asked for a key her file never had),
   so once a request is done every replay of it is; the group owner's device verifies her node's
   signature (her pinned key) before taking its clear epoch.
   Tests: test_the_group_owners_request_made_from_a_forged_clear_epoch_cannot_be_replayed_to_rekey_again,
   test_a_group_owners_request_naming_a_huge_epoch_rekeys_her_file_once_only,
   test_a_group_owners_request_replayed_while_she_is_unlocked_rekeys_her_file_once_only (root's shared
   mount, real Linux users).
   FIXED (share_ops.py ``resume``): a request naming an epoch above the file's is refused, said
   (``forged``) and dropped.  Known: a genuine request made while her other device's re-key had not yet
   reached this one is refused the same way (the alarm asks her to run ``unshare``).

4. A FORGED TOP ``keys_seq`` CAPS HER SEQUENCE: EVERY LATER ``passwd`` IS REPLAYABLE.  The store writer
   sets ``keys_seq`` to 2**53-1 on her current body (her own fields: she unlocks as ever; only a mount
   in between would say ``forged-user``, the ``passwd`` command says nothing).  Her next
   ``passwd`` writes ``next_seq`` = min(2**53-1, 2**53) (key_memory.py:104): the same number, every time
   from then on.  Her body from before her second passwd (genuinely signed, the leaked passphrase) put
   back is equal to the kept one, so it is taken (key_memory.py:77, :88) and the leaked passphrase opens
   her vault again, no alarm.  Cause: as hole 1 (an unverified store number counts in ``next_seq``), and
   the cap.  Fix: hole 1's (only a verified body's number counts); refuse to sign at the cap rather than
   repeat a number.  Test: test_a_forged_top_keys_seq_does_not_let_a_later_passwd_be_replayed.
   FIXED (key_memory.py ``next_seq``, users.py ``_save``): the store's number counts only if her
   signature holds on the body ``passwd`` starts from.  (The cap itself, 2**53-1 changes, stays.)

5. ``passwd`` ON TWO DEVICES APART: A FALSE ROLLBACK ALARM, AND HER DEVICES DISAGREE ON HER PASSPHRASE.
   The laptop changes her passphrase twice (keys_seq 2), the desktop once (keys_seq 1) and changes two
   settings, so the sync keeps the desktop's body (CouchDB's winner is the longer revision history, not
   the higher keys_seq).  The laptop then raises ``rollback`` ("a passphrase or recovery key change undone
   by the server or the vault folder?") about her own genuine change, and keeps its own keys: from then on
   only the laptop's passphrase opens the laptop and only the desktop's the desktop (until the laptop
   signs a body again, which then silently replaces the desktop's passphrase there).
   Cause: key_memory.py:77 with the rev-tree's choice of winner.  Fix: with hole 2's ``keys_prev``, a
   fork is said as such (not as a rollback) and resolved the same way on every device (the higher
   (keys_seq, hash of the key fields) wins everywhere, revocations merged), asking her to run passwd.
   Test: test_passwd_on_two_devices_apart_raises_no_rollback_alarm_and_both_agree (pouchdb-server).
   FIXED (key_memory.py ``newest``: ``seen`` digests tell a replay from a fork; users.py ``judged``, and
   fs/arrivals.py ``_keys_arrived`` live): a body of hers never seen here, made apart, is a fork, said as
   such (``keys-diverged``), and the higher (``keys_seq``, digest) wins on every device: the winner is
   written back over the store's row (its other fields kept, signed again), so her devices agree.

6. A CLAIM OF HER UID PLANTED BEFORE HER FIRST UNLOCK IN ROOT'S SHARED MOUNT HOLDS HER SEAT UNTIL REMOUNT.
   The store writer breaks her document's signature (a field added: it maps no uid) and adds a user of
   his own (self-signed) claiming her uid: the only claim that holds, so ``_read_uids`` maps her uid to
   his user.  Her first ``unlock`` makes the seat (fs/shared.py:138-154) bound to his user's id, and
   fails.  The administrator then puts her document back and removes the forgery; her unlock still
   fails ("user mallory is no longer in this vault", exit 12): ``agent_for``/``_seat_for``
   (fs/shared.py:126, :138) return the existing seat without looking at the map again.  Root never acts
   for her with his user (the passphrase decides), so this is denial only, but one the administrator's
   repair does not end (SECURITY.md says a planted claim stops her unlock "until the administrator
   removes it").  Fix: at each unlock of a locked seat, read the map again; a seat whose uid now maps to
   another user (or none, or is disputed) is dropped and made again.
   Test: test_a_claim_of_her_uid_planted_before_her_first_unlock_does_not_hold_her_seat_once_removed.
   FIXED (fs/shared.py ``_seat_for``, sessions.Agent ``retire``, drive.Drive ``unseat``): the map is read
   at every unlock of a locked seat; a seat whose uid it gives to another user (or to no one) is retired,
   its number (and inode numbers) never reused, and a new one made.

7. A FORGED ROTATION PLANTED BEFORE A MEMBER'S REMOVAL STANDS IN FOR THE GROUP OWNER'S SIGNED ONE: NO
   RE-KEY.  The store writer puts an unsigned ``rotate-<fid>`` for alice's file shared with @crew.  When
   bob (crew's owner) removes carol, sharing.py:285 (``store.get(doc_id_) is None``) writes no request for
   that file since one exists; alice's device refuses the unsigned one (alarm ``forged``, telling her to
   run ``unshare`` "if you revoked a share of it": she did not) and her file keeps the key carol held.
   A store writer could delete bob's request after the fact too (withholding); this way bob's command
   says nothing and the alarm misleads.  Fix: ``rotations`` writes its signed request over a pending one
   that does not verify under a key it trusts (or merges into it), and says so.
   Test: test_a_forged_request_planted_before_a_members_removal_does_not_stop_the_rekey.
   FIXED (sharing.py ``rotations``): a signed request replaces whatever stands under its id.

What held
---------
- A ``keys_seq`` of another type (true, 1.5, -5, "9", null) on her older body counts as 0: the newer keys
  this device saw apply, the old passphrase is refused and the new one opens:
  test_her_older_keys_with_a_keys_seq_of_another_type_do_not_bring_the_old_passphrase_back.
- A request signed by crew's owner for a file of hers not shared with crew re-keys nothing and is said
  (``forged``): test_a_group_owners_request_for_her_file_not_shared_with_the_group_rekeys_nothing.
- A request signed by crew's owner naming an epoch true, -1, 1.5, "0" or null re-keys nothing and is
  said: test_a_group_owners_request_naming_a_malformed_epoch_rekeys_nothing (2**53 cannot even be
  stored: the encoding refuses an integer a CouchDB server would round).
- An unsigned copy of bob's document moved to dave's uid maps no one in root's shared mount (root's
  device saw bob sign), and the others unlock:
  test_her_document_stripped_of_its_signature_and_moved_to_another_uid_maps_no_one.
- Not swept again: what tests/mount/test_trust_attack_round19_rotation.py shows (unsigned and
  other-user Rotations, the server's live Rotation, her own replayed request, a second claim of a uid).
"""

from __future__ import annotations

from pathlib import Path

import adversary
import pytest
from conftest import PASSPHRASE, docs_of, first_device, fusevault, mounted, new_device, settled, wait_for
from services.test_trust_attack_round4 import _alarms

from fusevault.vault.model import users
from fusevault.vault.model.nodes import open_node_doc
from mount import test_shared_mount as shared_mount
from mount.test_recovery_key import _init_with_words, _recover
from mount.test_shared_mount import SECRETS, _wait_until
from mount.test_trust_attack_round4 import _alice_dek
from mount.test_trust_attack_round19_rotation import (
    CAROL,
    _shared,
    _user_of_the_store_writer,
    _vault_bytes,
    _with_plan,
)
from mount.test_trust_writes import BOB, _admin, _key, _node_fid, _signed, _user

NEW = "a new passphrase, the old one leaked"
THIRD = "a third passphrase, long enough"
DESKTOP = "the desktop's new passphrase"


def _her_doc(vault: Path) -> dict:
    (doc,) = docs_of(vault, "UserDetails")
    return doc


def _mount_status(vault: Path, mnt: Path, **kw) -> int:
    mnt.mkdir(exist_ok=True)
    result = fusevault("mount", vault, mnt, **kw)
    if result.returncode == 0:
        fusevault("unmount", mnt, passphrase=None)
    return result.returncode


def test_her_older_keys_relabelled_with_a_higher_keys_seq_do_not_bring_the_old_passphrase_back(
        vault: Path, tmp_path: Path) -> None:
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "plan.txt").write_bytes(b"her plan")
    before = _her_doc(vault)
    changed = fusevault("passwd", vault, env={"FUSEVAULT_NEW_PASSPHRASE": NEW})
    assert changed.returncode == 0, changed.stderr
    # The store writer: her body from before passwd, with a keys_seq above any (its signature broken:
    # keys_seq is covered, but nothing checks it before the number decides which fields are used).
    adversary.put(vault, {**before, "keys_seq": 1000})
    opened = fusevault("mount", vault, tmp_path / "mnt")
    if opened.returncode == 0:
        try:
            plan = (tmp_path / "mnt" / "plan.txt").read_bytes()
            said = [(a["kind"], a["text"][:90]) for a in _alarms(tmp_path / "mnt")]
        finally:
            fusevault("unmount", tmp_path / "mnt", passphrase=None)
        raise AssertionError(f"the leaked passphrase opens her vault again ({plan!r}; said: {said})")
    assert opened.returncode == 3, opened.stderr
    with mounted(vault, tmp_path / "mnt", passphrase=NEW) as mnt:
        assert (mnt / "plan.txt").read_bytes() == b"her plan"


def test_her_older_keys_relabelled_with_a_higher_keys_seq_do_not_lock_her_new_passphrase_out(
        vault: Path, tmp_path: Path) -> None:
    before = _her_doc(vault)
    changed = fusevault("passwd", vault, env={"FUSEVAULT_NEW_PASSPHRASE": NEW})
    assert changed.returncode == 0, changed.stderr
    adversary.put(vault, {**before, "keys_seq": 1000})
    assert _mount_status(vault, tmp_path / "mnt", passphrase=NEW) == 0, "her new passphrase opens nothing"


def test_a_revoked_recovery_key_relabelled_with_a_higher_keys_seq_opens_nothing(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    words = _init_with_words(vault)
    with_key = _her_doc(vault)
    revoked = fusevault("recovery-key", "revoke", vault)
    assert revoked.returncode == 0, revoked.stderr
    adversary.put(vault, {**with_key, "keys_seq": 1000})
    thief = _recover(vault, words, "the thief's passphrase")
    assert thief.returncode != 0, "the revoked words set a new passphrase of the thief's choosing"


@pytest.mark.parametrize("forged", [True, 1.5, -5, "9", None])
def test_her_older_keys_with_a_keys_seq_of_another_type_do_not_bring_the_old_passphrase_back(
        vault: Path, tmp_path: Path, forged: object) -> None:
    before = _her_doc(vault)
    changed = fusevault("passwd", vault, env={"FUSEVAULT_NEW_PASSPHRASE": NEW})
    assert changed.returncode == 0, changed.stderr
    adversary.put(vault, {**before, "keys_seq": forged})  # counts as 0: below the 1 this device saw
    assert _mount_status(vault, tmp_path / "mnt") == 3, f"keys_seq {forged!r}: the old passphrase opens"
    assert _mount_status(vault, tmp_path / "mnt", passphrase=NEW) == 0


def test_a_forged_top_keys_seq_does_not_let_a_later_passwd_be_replayed(vault: Path, tmp_path: Path) -> None:
    adversary.put(vault, {**_her_doc(vault), "keys_seq": 2**53 - 1})  # her own fields: she unlocks as ever
    first = fusevault("passwd", vault, env={"FUSEVAULT_NEW_PASSPHRASE": NEW})
    assert first.returncode == 0, first.stderr
    leaked = _her_doc(vault)  # genuinely signed by her, NEW's wrapping
    second = fusevault("passwd", vault, passphrase=NEW, env={"FUSEVAULT_NEW_PASSPHRASE": "a third one"})
    assert second.returncode == 0, second.stderr
    assert _her_doc(vault)["keys_seq"] > leaked["keys_seq"]  # the forged number counted for nothing
    adversary.put(vault, leaked)  # her body from before the second passwd, current again
    assert _mount_status(vault, tmp_path / "mnt", passphrase=NEW) == 3, "the leaked passphrase opens again"


# --- Rotation documents (vault/services/share_ops.py ``_request``/``resume``; sharing.rotations)

def _crew_sharing_her_plan(vault: Path, mnt: Path) -> str:
    """alice's plan.txt shared with @crew (owner bob, member carol); its fid."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    _admin(vault, "user", "add", "carol", "--uid", "2002", passphrase=CAROL)
    _admin(vault, "group", "add", "crew", "--owner", "bob", passphrase=BOB)
    _admin(vault, "group", "member", "add", "crew", "carol", "--perm", "READ", passphrase=BOB)
    fid = _with_plan(vault, mnt)
    with mounted(vault, mnt):
        shared = fusevault("share", mnt / "plan.txt", "--with", "@crew", "--perm", "READ")
        assert shared.returncode == 0, shared.stderr
    return fid


def test_the_group_owners_request_made_from_a_forged_clear_epoch_cannot_be_replayed_to_rekey_again(
        vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    fid = _crew_sharing_her_plan(vault, mnt)
    node = adversary.get(vault, fid)
    assert node is not None
    # The store writer (no key) shows bob's device her file at a huge clear epoch (her signature broken:
    # nothing of bob's checks it, he cannot read her node), then puts her genuine body back.
    adversary.put(vault, {**node, "epoch": 2**53 - 1})
    _admin(vault, "group", "member", "remove", "crew", "carol", passphrase=BOB)  # genuine, signed by bob
    (signed,) = adversary.docs(vault, "Rotation")
    adversary.put(vault, node)
    with mounted(vault, mnt):  # the genuine request: one re-key
        pass
    assert adversary.docs(vault, "Rotation") == []
    dek, size = _alice_dek(vault, fid), _vault_bytes(vault)
    for _ in range(2):  # the store writer (or the server) replays bob's signed request
        adversary.put(vault, signed)
        with mounted(vault, mnt):
            found = _alarms(mnt)
    assert _alice_dek(vault, fid) == dek and _vault_bytes(vault) == size, (
        f"a replayed request re-keyed her file again ({size} -> {_vault_bytes(vault)} bytes; said: "
        f"{[(a['kind'], a['subject']) for a in found]})")


def laptop_with_words(url: str, tmp_path: Path) -> tuple[Path, str]:
    """Her first device, made with recovery words, syncing with ``url``: (its vault, the words)."""
    laptop = tmp_path / "laptop"
    words = _init_with_words(laptop)
    assert fusevault("peer", "add", "server", url, "--vault", laptop, passphrase=None).returncode == 0
    with mounted(laptop, tmp_path / "a") as a:
        wait_for(lambda: settled(a), "the first push")
    return laptop, words


def test_a_recovery_key_revoked_on_the_laptop_stays_revoked_after_a_passwd_on_the_desktop(
        couch, tmp_path: Path) -> None:
    url, _ = couch
    laptop, words = laptop_with_words(url, tmp_path)
    desktop = new_device(url, tmp_path, "desktop")
    # On the laptop, apart (or the server withholds it from the desktop): the words were stolen.
    revoked = fusevault("recovery-key", "revoke", laptop)
    assert revoked.returncode == 0, revoked.stderr
    # On the desktop, which never saw the revocation: two genuine passphrase changes.
    for old, new in ((PASSPHRASE, NEW), (NEW, THIRD)):
        changed = fusevault("passwd", desktop, passphrase=old, env={"FUSEVAULT_NEW_PASSPHRASE": new})
        assert changed.returncode == 0, changed.stderr
    with mounted(desktop, tmp_path / "d", passphrase=THIRD) as d:
        wait_for(lambda: settled(d), "the desktop's push")
    user_id = _her_doc(laptop)["_id"]
    with mounted(laptop, tmp_path / "a") as a:  # the laptop meets the desktop's keys
        wait_for(lambda: (adversary.get(laptop, user_id) or {}).get("keys_seq") == 2, "the desktop's keys")
        wait_for(lambda: settled(a), "the sync to settle")
        said = [(x["kind"], x["subject"]) for x in _alarms(a)]
    thief = _recover(laptop, words, "the thief's passphrase")
    assert thief.returncode != 0, f"the words she revoked on this device open her vault again (said: {said})"


def test_passwd_on_two_devices_apart_raises_no_rollback_alarm_and_both_agree(couch, tmp_path: Path) -> None:
    url, _ = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        wait_for(lambda: settled(a), "the first push")
    desktop = new_device(url, tmp_path, "desktop")
    for old, new in ((PASSPHRASE, NEW), (NEW, THIRD)):  # the laptop, apart: twice (keys_seq 2)
        changed = fusevault("passwd", laptop, passphrase=old, env={"FUSEVAULT_NEW_PASSPHRASE": new})
        assert changed.returncode == 0, changed.stderr
    # The desktop, apart: once (keys_seq 1), and two settings, so its body is the one the sync keeps.
    changed = fusevault("passwd", desktop, env={"FUSEVAULT_NEW_PASSPHRASE": DESKTOP})
    assert changed.returncode == 0, changed.stderr
    with mounted(desktop, tmp_path / "d", passphrase=DESKTOP) as d:
        for ttl in ("4hr", "8hr"):
            done = fusevault("config", "set", "passphrase_expiry_ttl", ttl, "--mount", d, passphrase=None)
            assert done.returncode == 0, done.stderr
        wait_for(lambda: settled(d), "the desktop's push")
    user_id = _her_doc(laptop)["_id"]
    stamp = _her_doc(desktop)["settings_at_us"]  # the desktop's body (its keys may be written over at once)
    with mounted(laptop, tmp_path / "a", passphrase=THIRD) as a:
        wait_for(lambda: (adversary.get(laptop, user_id) or {}).get("settings_at_us") == stamp,
                 "the desktop's body")
        wait_for(lambda: settled(a), "the sync to settle")
    with mounted(desktop, tmp_path / "d", passphrase=DESKTOP) as d:
        wait_for(lambda: settled(d), "the desktop's pull")
    on_laptop = {p: _mount_status(laptop, tmp_path / "a", passphrase=p) for p in (THIRD, DESKTOP)}
    on_desktop = {p: _mount_status(desktop, tmp_path / "d", passphrase=p) for p in (THIRD, DESKTOP)}
    with mounted(laptop, tmp_path / "a", passphrase=next(p for p, s in on_laptop.items() if s == 0)) as a:
        said = [x for x in _alarms(a) if x["subject"].startswith("keys ")]
    assert on_laptop == on_desktop and not said, f"laptop {on_laptop}, desktop {on_desktop}; said: {said}"


def _bobs_request(vault: Path, fid: str, epoch: object) -> dict:
    """A Rotation for alice's ``fid`` signed by bob (crew's owner) naming ``epoch``."""
    body = {"_id": f"rotate-{fid}", "type": "Rotation", "owner": _user(vault, "alice")["_id"], "fid": fid,
            "epoch": epoch}
    return _signed(body, _key(vault, "bob", BOB))


def test_a_group_owners_request_naming_a_huge_epoch_rekeys_her_file_once_only(
        vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    fid = _crew_sharing_her_plan(vault, mnt)
    signed = _bobs_request(vault, fid, 2**53 - 1)
    adversary.put(vault, signed)
    with mounted(vault, mnt):  # once: as a member's removal would
        pass
    dek, size = _alice_dek(vault, fid), _vault_bytes(vault)
    adversary.put(vault, signed)  # replayed (by bob, the store writer, or the server)
    with mounted(vault, mnt):
        pass
    assert _alice_dek(vault, fid) == dek and _vault_bytes(vault) == size, "the replay re-keyed her file again"


def test_a_group_owners_request_for_her_file_not_shared_with_the_group_rekeys_nothing(
        vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    _crew_sharing_her_plan(vault, mnt)
    with mounted(vault, mnt):
        (mnt / "secret.txt").write_bytes(b"not for the crew")
    fid = _node_fid(vault, "alice", "secret.txt")
    dek = _alice_dek(vault, fid)
    adversary.put(vault, _bobs_request(vault, fid, adversary.get(vault, fid)["epoch"]))
    with mounted(vault, mnt):
        found = [a for a in _alarms(mnt) if a["subject"] == f"rotate-{fid}"]
    assert _alice_dek(vault, fid) == dek, "crew's owner re-keyed a file of hers not shared with crew"
    assert [a["kind"] for a in found] == ["forged"], found


@pytest.mark.parametrize("epoch", [True, -1, 1.5, "0", None])
def test_a_group_owners_request_naming_a_malformed_epoch_rekeys_nothing(
        vault: Path, tmp_path: Path, epoch: object) -> None:
    mnt = tmp_path / "mnt"
    fid = _crew_sharing_her_plan(vault, mnt)
    dek = _alice_dek(vault, fid)
    adversary.put(vault, _bobs_request(vault, fid, epoch))
    with mounted(vault, mnt):
        found = [a for a in _alarms(mnt) if a["subject"] == f"rotate-{fid}"]
    assert _alice_dek(vault, fid) == dek, f"a request naming epoch {epoch!r} re-keyed her file"
    assert found, "not said"


# --- root's shared mount: the uid -> user map (fs/shared.py ``_read_uids``)

# Real Linux users and root's shared vault (tests/mount/test_shared_mount.py).
linux, place, python, shared_vault = (shared_mount.linux, shared_mount.place, shared_mount.python,
                                      shared_mount.shared_vault)

@shared_mount.pytestmark  # root, useradd and setpriv
def test_a_claim_of_her_uid_planted_before_her_first_unlock_does_not_hold_her_seat_once_removed(
        shared_vault: Path, place: Path, linux, python, tmp_path: Path) -> None:
    alice = _user(shared_vault, "alice")
    mallory = _user_of_the_store_writer(tmp_path, linux["alice"].pw_uid)
    # The store writer: alice's document with a field added (its signature broken: it maps no uid) and
    # a user of his own claiming her uid, the only claim that holds.
    adversary.put(shared_vault, {**alice, "note": "x"}, mallory)
    with _shared(shared_vault, place, linux, python, "seat") as people:
        first = people.fusevault("alice", "unlock", str(people.mnt), passphrase=SECRETS["alice"])
        assert first.returncode != 0, "alice unlocked a seat the map gave to another user"
        # The administrator puts things right: her genuine document, the forgery gone.
        adversary.put(shared_vault, alice)
        adversary.delete_row(shared_vault, mallory["_id"])
        again = people.fusevault("alice", "unlock", str(people.mnt), passphrase=SECRETS["alice"])
        assert again.returncode == 0, f"her seat is still the forger's user's: {again.stderr}"
        assert people.ok("alice", "echo mine > $M/mine.txt && cat $M/mine.txt") == "mine\n"


@shared_mount.pytestmark
def test_a_claim_of_her_uid_planted_while_she_is_unlocked_does_not_take_her_open_seat(
        shared_vault: Path, place: Path, linux, python, tmp_path: Path) -> None:
    """The other side of hole 6's fix (the map read at every unlock of a locked seat): a seat in use is
    never retired under her.  Her document broken and a claim of her uid planted while she is unlocked:
    she goes on reading and writing her files, and an unlock (her TTL renewed) keeps her seat."""
    alice = _user(shared_vault, "alice")
    with _shared(shared_vault, place, linux, python, "open-seat") as people:
        people.unlock("alice")
        people.ok("alice", "echo before > $M/kept.txt")
        adversary.put(shared_vault, {**alice, "note": "x"},
                      _user_of_the_store_writer(tmp_path, linux["alice"].pw_uid))
        people.unlock("alice")
        assert people.ok("alice", "cat $M/kept.txt && echo after >> $M/kept.txt && cat $M/kept.txt") == \
            "before\nbefore\nafter\n"


@shared_mount.pytestmark
def test_her_document_stripped_of_its_signature_and_moved_to_another_uid_maps_no_one(
        shared_vault: Path, place: Path, linux, python) -> None:
    bob = _user(shared_vault, "bob")
    # Unsigned, as from before signatures: root's device saw bob sign (his `user add`): a forgery.
    adversary.put(shared_vault, {**{k: v for k, v in bob.items() if k != "sig"}, "uid": linux["dave"].pw_uid})
    with _shared(shared_vault, place, linux, python, "unsigned") as people:
        seated = people.fusevault("dave", "unlock", str(people.mnt), passphrase=SECRETS["bob"])
        assert seated.returncode != 0, "dave's uid got bob's seat from an unsigned copy of his document"
        people.unlock("alice")  # the others are not touched
        assert people.ok("alice", "echo mine > $M/mine.txt && cat $M/mine.txt") == "mine\n"


def test_a_forged_request_planted_before_a_members_removal_does_not_stop_the_rekey(
        vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    fid = _crew_sharing_her_plan(vault, mnt)
    dek = _alice_dek(vault, fid)
    adversary.put(vault, {"_id": f"rotate-{fid}", "type": "Rotation", "owner": _user(vault, "alice")["_id"],
                          "fid": fid, "epoch": adversary.get(vault, fid)["epoch"]})  # unsigned: refused
    _admin(vault, "group", "member", "remove", "crew", "carol", passphrase=BOB)  # genuine, by crew's owner
    with mounted(vault, mnt):
        said = [(a["kind"], a["text"][:60]) for a in _alarms(mnt) if a["subject"] == f"rotate-{fid}"]
    assert _alice_dek(vault, fid) != dek, f"carol, removed, still holds the file's key (said: {said})"


def test_the_servers_older_keys_relabelled_with_a_higher_keys_seq_do_not_bring_the_old_passphrase_back(
        couch, tmp_path: Path) -> None:
    url, server = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        wait_for(lambda: settled(a), "the first push")
    (before,) = server.all("UserDetails")
    changed = fusevault("passwd", laptop, env={"FUSEVAULT_NEW_PASSPHRASE": NEW})
    assert changed.returncode == 0, changed.stderr
    with mounted(laptop, tmp_path / "a", passphrase=NEW) as a:
        wait_for(lambda: settled(a), "the new keys pushed")
        server.put({**before, "keys_seq": 1000})  # the server: her older body, relabelled
        wait_for(lambda: (adversary.get(laptop, before["_id"]) or {}).get("keys_seq") == 1000
                 or bool([x for x in _alarms(a) if x["subject"].startswith(("keys ", before["_id"]))]),
                 "the server's body taken or refused")
        said = [x for x in _alarms(a) if before["_id"] in x["subject"]]
    assert _mount_status(laptop, tmp_path / "a") == 3, f"the leaked passphrase opens again (said: {said})"


def _epoch_of(vault: Path, fid: str) -> int:
    return (adversary.get(vault, fid) or {}).get("epoch", 0)


@shared_mount.pytestmark
def test_a_group_owners_request_replayed_while_she_is_unlocked_rekeys_her_file_once_only(
        shared_vault: Path, place: Path, linux, python) -> None:
    _admin(shared_vault, "group", "add", "crew", "--owner", "bob", passphrase=SECRETS["bob"])
    _admin(shared_vault, "group", "member", "add", "crew", "carol", "--perm", "READ",
           passphrase=SECRETS["bob"])
    with _shared(shared_vault, place, linux, python, "replay") as people:
        people.unlock("alice")
        people.ok("alice", "echo plan > $M/plan.txt")
        shared = people.fusevault("alice", "share", f"{people.mnt}/plan.txt", "--with", "@crew",
                                  "--perm", "READ")
        assert shared.returncode == 0, shared.stderr
        key = users.unlock(_user(shared_vault, "alice"), SECRETS["alice"].encode())
        (fid,) = [d["_id"] for d in docs_of(shared_vault, "node") if d.get("owner") == key.user_id
                  and any(n == "plan.txt" for _, n in open_node_doc(d, key)[1]["links"])]
        body = {"_id": f"rotate-{fid}", "type": "Rotation", "owner": key.user_id, "fid": fid,
                "epoch": 2**53 - 1}
        signed = _signed(body, users.unlock(_user(shared_vault, "bob"), SECRETS["bob"].encode()))
        epochs = [_epoch_of(shared_vault, fid)]
        for _ in range(3):  # once as a member's removal would, then replayed twice (the store writer)
            adversary.put(shared_vault, signed)
            _wait_until(people, lambda: not adversary.docs(shared_vault, "Rotation"), "the request taken")
            epochs.append(_epoch_of(shared_vault, fid))
    assert epochs[2:] == [epochs[1]] * 2, f"her file re-keyed at each replay, live: epochs {epochs}"
