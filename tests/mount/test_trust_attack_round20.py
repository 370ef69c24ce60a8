"""Attack round 20 on issue 22 (the authenticated vault): what landed in 3e89cc8..8ccbce8.

Asked for: her key fields ordered by ``keys_seq`` and remembered per device with the digests of the
bodies seen (vault/model/key_memory.py ``newest``/``remember``, users.py ``unlock_here``/``judged``/``_save``,
fs/arrivals.py ``_keys_arrived``), a group owner's signed Rotation naming an epoch the file never had
refused and dropped (share_ops.py ``resume``), root's shared mount re-reading its uid map at every unlock
of a locked seat and retiring seats (fs/shared.py ``_seat_for``, sessions.Agent ``retire``, drive.Drive
``unseat``).  Four holes, most severe first; real mounts, the real ``fusevault`` command, the store writer
(tests/adversary.py), a pouchdb-server and real Linux users throughout.

Holes
-----
All four are FIXED (the xfail marks removed; each test failed before its fix):
1. key_memory.py ``newest``/``retired``, users.py ``change_passphrase``/``reset_passphrase``: a ``passwd``
   retires the wrapping it replaced (``retired_wrappings``, signed, remembered per device); a body
   carrying a retired wrapping is MERGED with the other side (her newer wrapping, its recovery key, a
   sequence above both), said and written back.
2. key_memory.py ``_digests``: the lists are read only from a body she signed, only as lists of strings.
3. share_ops.py ``resume`` + vault/model/rotations_done.py: a group owner's request is carried out unless
   this device did it before, whatever epoch it names (moved up or down: both cases of its test).
4. drive.py ``add_seat``/``unseat``: a retired seat never unlocked frees its number; one ever unlocked
   keeps it and comes back to that user; a uid that had RETIRED_PER_UID users gets no new seat.

1. A PASSPHRASE SHE CHANGED BECAUSE IT LEAKED OPENS HER VAULT AGAIN, SILENTLY, AFTER TWO GENUINE
   RECOVERY-KEY CHANGES ON HER OTHER DEVICE.  The laptop runs ``passwd`` (the old passphrase leaked):
   keys_seq 1.  Her desktop, which has not seen that body (apart, or the server withholds it: the
   attacker who holds the leaked passphrase), runs ``recovery-key create`` twice (or create then revoke):
   keys_seq 2, its passphrase wrapping still the leaked one's.  At the next sync the laptop takes the
   desktop's body as newer (key_memory.py:100: hers, and a higher number), remembers it, and from then
   on the LEAKED passphrase mounts the laptop (exit 0) and the one she chose does not; nothing is said
   anywhere (no ``keys-diverged``, no ``rollback``).  With one recovery-key change on the desktop the
   numbers tie and the digest decides: half the time the same, with a ``keys-diverged`` alarm.
   Round 19 (2) again, for the passphrase wrapping instead of the recovery one: ``keys_seq`` is still
   a counter, not a history; ``seen`` only tells a fork from a replay at a number not above the kept
   one, and only recovery wrappings have tombstones (``revoked_recovery``).
   Cause: key_memory.py:100 (``hers and seq(doc) > seq(kept)`` taken as descent).
   Fix: each body names the digest of the key body it replaced (``keys_prev``, signed); a body is newer
   only if it descends from the kept one, else it is a fork; and the fork is merged per field rather
   than won whole: the passphrase wrapping of the side that ran ``passwd`` last (a ``passwd`` retires
   the wrapping it replaced: keep its digest signed, as ``revoked_recovery`` does, and never take a
   body whose passphrase wrapping is retired), the recovery field from the recovery-key side, minus
   revocations.
   Test: test_her_passphrase_changed_on_the_laptop_stays_changed_after_recovery_key_changes_on_the_desktop
   (pouchdb-server).

2. ONE FIELD OF ANOTHER TYPE MAKES EVERY MOUNT OF HERS END IN AN INTERNAL ERROR, ON EVERY DEVICE THAT
   REMEMBERS HER KEYS; A NO-KEY SERVER DOES IT.  The server (or the store writer) takes her current body
   and sets ``revoked_recovery`` to 5 (or true, or 1.5): its signature breaks, but her key fields are
   the same as remembered, so key_memory.py:100 (``same``) goes on to ``_without_revoked`` (:115), which
   unpacks the store's field unchecked (``revoked``, :132: ``[*5]``): TypeError.  ``fusevault mount``
   exits 70 ("internal error: the mount failed"), and so does every ``passwd``/``recovery-key`` command
   (they call ``newest`` too); live, ``_keys_arrived`` logs the exception and the row stays, so the next
   mount fails.  Only for a user with a recovery key (``_without_revoked`` reads the field only then).
   Nothing she can run repairs it: her vault is locked to her on every device that ever unlocked it
   until someone edits the store's row by hand.  Round 19's robustness promise (damaged key material on
   a device that remembers her keys is said and not used) does not hold for this field.
   Cause: key_memory.py:132 (``revoked`` trusts the type of ``doc[REVOKED_FIELD]``), reached from
   :100/:115 before any signature was checked.
   Fix: read ``revoked_recovery`` only from a body her remembered key signed (``_signed_by_her``), and as
   a list of strings whatever it holds (anything else counts as none), as ``remembered`` does for ``seen``.
   Tests: test_a_malformed_revoked_recovery_field_does_not_stop_her_unlock[5|True|1.5] (the store writer),
   test_the_servers_malformed_revoked_recovery_field_does_not_stop_her_next_mount (pouchdb-server).

3. A STORE WRITER TURNS A MEMBER'S REMOVAL INTO NO RE-KEY: THE REMOVED MEMBER KEEPS THE FILE'S KEY.
   The store writer shows crew's owner (bob) her node with its clear ``epoch`` one above the real one
   (her signature breaks; bob's device cannot check it: sharing.py:290 ``_clear_epoch``), bob removes
   carol (genuine, signed), and the writer puts her node back.  Her device finds the request names an
   epoch the file never had and, since round 19 (3)'s fix, refuses AND DROPS it (share_ops.py:294-301):
   the file keeps the key carol holds, so everything alice writes to it next is readable by carol (who,
   as a reader of the store or the server, is exactly the party the re-key is for).  It is said
   (``forged``, "asks for new keys from key epoch N, which the file never had ... run `fusevault
   unshare`"): but ``unshare --with @crew`` takes the file from the whole group, and nothing of the
   alarm says that carol still holds its key.  Cause: share_ops.py:294 (a signed request from crew's
   owner, naming a higher epoch, is dropped rather than done once), sharing.py:290 (the request's epoch
   is taken from a clear field nobody checked).
   Fix: do a signed request naming a higher epoch once, and record it as done where a replay cannot
   undo it (the new epoch set to ``max(node.epoch, request epoch) + 1``, or the request's digest in the
   ledger); and have the group owner's device take the epoch from her node only if her pinned key
   signed it (else ask for "the current epoch": no number).
   Test: test_a_forged_clear_epoch_does_not_turn_a_members_removal_into_no_rekey.

4. A LOCAL USER AND THE STORE WRITER USE UP ROOT'S SHARED MOUNT: NOBODY ELSE GETS A SEAT UNTIL REMOUNT.
   Since 8ccbce8 a seat whose uid the map gives to another user is retired and a new one made, and a
   retired seat keeps its number for good (drive.py:100, ``number = len(self.seats) + 1``; at most
   ``MAX_SEATS`` = 63: drive.py:98).  The store writer makes two users of his own (self-signed, as
   round 19 showed any writer can) claiming dave's uid, one at a time, alternating; dave (a local user
   of no vault user) asks ``unlock`` with any passphrase after each swap: each ask retires his seat and
   makes a new one (fs/shared.py:149, :164) before the passphrase is even tried.  63 asks (two seconds)
   and ``bob``'s first unlock is refused ("this shared mount has no room for another user: remount it"),
   as is every user not seated yet, and every seat an administrator's ``user remove``/``add`` would
   re-make.  Root repairs it by removing the forged users and remounting (every user's session ends);
   until the forged claims are found (the log names only "uid N is no longer X's"), the attacker does
   it again after each remount.  Before 8ccbce8 one local uid held at most one seat.
   Fix: reuse a retired seat's number once the kernel holds none of its inodes (forget counts), or
   retire a seat at most once per administrator change (a uid mapped to a user it had before gets that
   seat back); and make no seat before the passphrase opened the user's keys.
   Test: test_a_local_user_and_the_store_writer_cannot_use_up_the_shared_mounts_seats (real Linux users).

What held
---------
- ``revoked_recovery`` of another iterable type on her body ("abc", {"x": 1}, [None, 3]) is ignored
  where it does not crash: she mounts as ever on the device that remembers her keys:
  test_a_malformed_revoked_recovery_field_does_not_stop_her_unlock["abc"|{"x": 1}|[None, 3]].
- Hole 4's seats are made only for a uid the map gives to a user; dave's asks before the map was read
  again (``admits``, once a second) are refused as "no user of this vault" (seen while writing that test).
- Not swept again: round 19's files (keys_seq of other types, relabelled older keys, forks of two
  ``passwd``, revoked recovery keys after a ``passwd`` elsewhere, Rotations unsigned or replayed, uid
  claims planted before and during a session).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import adversary
import pytest
from conftest import first_device, fusevault, mounted, new_device, settled, wait_for
from services.test_trust_attack_round4 import _alarms

from fusevault.fs.drive import MAX_SEATS
from fusevault.paths import shared_socket
from mount import test_shared_mount as shared_mount
from mount.test_recovery_key import _init_with_words
from mount.test_shared_mount import SECRETS
from mount.test_trust_attack_round4 import _alice_dek
from mount.test_trust_attack_round19 import _crew_sharing_her_plan, _her_doc, _mount_status
from mount.test_trust_attack_round19_rotation import MALLORY, _shared
from mount.test_trust_writes import BOB, _admin, _user

NEW = "a new passphrase, the old one leaked"


def test_her_passphrase_changed_on_the_laptop_stays_changed_after_recovery_key_changes_on_the_desktop(
        couch, tmp_path: Path) -> None:
    url, _ = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        wait_for(lambda: settled(a), "the first push")
    desktop = new_device(url, tmp_path, "desktop")
    # The laptop, apart (or the server withholds its body from the desktop): PASSPHRASE leaked.
    changed = fusevault("passwd", laptop, env={"FUSEVAULT_NEW_PASSPHRASE": NEW})
    assert changed.returncode == 0, changed.stderr
    # The desktop, which never saw that change: a recovery key made, then made again (keys_seq 2).
    for n in (1, 2):
        made = fusevault("recovery-key", "create", desktop, "--recovery-key-file", tmp_path / f"words{n}")
        assert made.returncode == 0, made.stderr
    with mounted(desktop, tmp_path / "d") as d:
        wait_for(lambda: settled(d), "the desktop's push")
    user_id = _her_doc(laptop)["_id"]
    with mounted(laptop, tmp_path / "a", passphrase=NEW) as a:
        wait_for(lambda: (adversary.get(laptop, user_id) or {}).get("keys_seq", 0) >= 2, "the desktop's keys")
        wait_for(lambda: settled(a), "the sync to settle")
        said = [(x["kind"], x["subject"]) for x in _alarms(a)]
    leaked = _mount_status(laptop, tmp_path / "a")
    hers = _mount_status(laptop, tmp_path / "a", passphrase=NEW)
    assert (leaked, hers) == (3, 0), (f"on the laptop the leaked passphrase exits {leaked}, the one she "
                                      f"chose {hers} (said: {said})")


@pytest.mark.parametrize("shift", [1, -1])
def test_a_forged_clear_epoch_does_not_turn_a_members_removal_into_no_rekey(
        vault: Path, tmp_path: Path, shift: int) -> None:
    """``shift`` 1: hole 3 as found; -1: the other way (found while fixing it): her file re-keyed once,
    the store writer shows crew's owner its clear epoch one below, and his request looked done."""
    mnt = tmp_path / "mnt"
    fid = _crew_sharing_her_plan(vault, mnt)
    if shift < 0:
        with mounted(vault, mnt):
            for args in (("share", mnt / "plan.txt", "--with", "carol", "--perm", "READ"),
                         ("unshare", mnt / "plan.txt", "--with", "carol")):
                done = fusevault(*args, timeout=60)
                assert done.returncode == 0, done.stderr
    node = adversary.get(vault, fid)
    assert node is not None and node["epoch"] + shift >= 0
    dek = _alice_dek(vault, fid)
    # The store writer (carol's friend) shows crew's owner her file at another epoch in clear (her
    # signature on it broken: bob's device cannot check it), then puts her genuine body back.
    adversary.put(vault, {**node, "epoch": node["epoch"] + shift})
    _admin(vault, "group", "member", "remove", "crew", "carol", passphrase=BOB)  # genuine, signed by bob
    adversary.put(vault, node)
    with mounted(vault, mnt):
        said = [(a["kind"], a["text"][:100]) for a in _alarms(mnt) if a["subject"] == f"rotate-{fid}"]
    assert _alice_dek(vault, fid) != dek, f"carol, removed from crew, still holds its key (said: {said})"


# --- root's shared mount: retired seats (fs/shared.py ``_seat_for``, drive.Drive ``unseat``)

linux, place, python, shared_vault = (shared_mount.linux, shared_mount.place, shared_mount.python,
                                      shared_mount.shared_vault)

# Dave's own client of the control socket: one unlock request per line read, each answer printed.
KNOCK = """
import base64, json, socket, sys
for line in sys.stdin:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(sys.argv[1])
        try:
            sock.sendall(json.dumps({"cmd": "unlock", "passphrase": base64.b64encode(b"wrong").decode()})
                         .encode() + b"\\n")
        except BrokenPipeError:
            pass  # refused at accept: the answer says why
        data = b""
        while not data.endswith(b"\\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    print(data.decode().strip(), flush=True)
"""


def _writers_user(tmp_path: Path, name: str, uid: int) -> dict:
    scratch = tmp_path / f"scratch-{name}"
    assert fusevault("init", scratch, "--user", "writer").returncode == 0
    _admin(scratch, "user", "add", name, "--uid", str(uid), passphrase=MALLORY)
    return _user(scratch, name)


@shared_mount.pytestmark  # root, useradd and setpriv
def test_a_local_user_and_the_store_writer_cannot_use_up_the_shared_mounts_seats(
        shared_vault: Path, place: Path, linux, python, tmp_path: Path) -> None:
    dave = linux["dave"]
    claims = [_writers_user(tmp_path, name, dave.pw_uid) for name in ("m1", "m2")]
    with _shared(shared_vault, place, linux, python, "seats") as people:
        env = ["env", "-i", "PATH=/usr/bin:/bin"]
        knock = subprocess.Popen(
            ["setpriv", f"--reuid={dave.pw_uid}", f"--regid={dave.pw_gid}", "--init-groups", *env,
             python, "-S", "-c", KNOCK, str(shared_socket(people.mnt))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.1)  # admits(): a uid not known is looked up again at most once a second
        try:
            answers = []
            for turn in range(MAX_SEATS):
                # The store writer: dave's uid claimed by m1, then by m2, and so on (one claim at a time).
                adversary.delete_row(shared_vault, claims[(turn + 1) % 2]["_id"])
                adversary.put(shared_vault, claims[turn % 2])
                assert knock.stdin is not None and knock.stdout is not None
                try:
                    knock.stdin.write("go\n")
                    knock.stdin.flush()
                except BrokenPipeError:
                    raise AssertionError(knock.stderr.read()) from None
                answers.append(knock.stdout.readline().strip())
        finally:
            knock.kill()
            knock.wait()
        bob = people.fusevault("bob", "unlock", str(people.mnt), passphrase=SECRETS["bob"])
        assert bob.returncode == 0, f"bob has no seat: {bob.stderr.strip()} (dave was told {answers[-1]})"


@pytest.mark.parametrize("forged", [5, True, 1.5, "abc", {"x": 1}, [None, 3]])
def test_a_malformed_revoked_recovery_field_does_not_stop_her_unlock(tmp_path: Path, forged: object) -> None:
    vault = tmp_path / "vault"
    _init_with_words(vault)
    assert _mount_status(vault, tmp_path / "mnt") == 0  # her keys remembered on this device
    # The store writer: her current body (the same key fields) with a revoked_recovery of another type.
    adversary.put(vault, {**_her_doc(vault), "revoked_recovery": forged})
    opened = fusevault("mount", vault, tmp_path / "mnt")
    if opened.returncode == 0:
        fusevault("unmount", tmp_path / "mnt", passphrase=None)
    assert opened.returncode == 0, opened.stderr[-600:]


def test_the_servers_malformed_revoked_recovery_field_does_not_stop_her_next_mount(
        couch, tmp_path: Path) -> None:
    url, server = couch
    laptop = tmp_path / "laptop"
    _init_with_words(laptop)
    assert fusevault("peer", "add", "server", url, "--vault", laptop, passphrase=None).returncode == 0
    with mounted(laptop, tmp_path / "a") as a:
        wait_for(lambda: settled(a), "the first push")
        (body,) = server.all("UserDetails")
        server.put({**body, "revoked_recovery": 5})  # the server (no key): one field of another type
        wait_for(lambda: (adversary.get(laptop, body["_id"]) or {}).get("revoked_recovery") == 5,
                 "the server's body to arrive")
    assert _mount_status(laptop, tmp_path / "a") == 0, "her next mount ends in an internal error"
