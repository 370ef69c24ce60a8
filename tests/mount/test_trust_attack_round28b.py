"""Attack round 28b: one user on two devices (laptop and desktop), the server as attacker.

Status: holes 1-5 are fixed and their tests pass.  A node document now signs, sealed with its other
attributes, the newest state of each of her other devices it was made over (``over``: vault/model/nodes.py
``Node.over``, made by ledger.py ``made_over`` at each commit, taken only from a document its owner signed).
Each device's ledger remembers them (``covered``): a state at or below one of them is an ancestor of a state
seen, so put back it is a replay (``Ledger.older``), said and not taken, as a state older than its own
device's newest always was.  A writer's ``over`` counts for nothing, and his ``seq`` reaches her lineage
only as far as her device took states of that device (``made_over``).

Holes
=====

1. The laptop's older state, replayed to the desktop after the desktop edited the file on top of it.
   Attacker: the CouchDB server (no key).  She writes plan.txt on her laptop ("laptop v2", seq
   (laptop, n)); her desktop takes it in, and she then edits the file on the desktop ("desktop v3",
   seq (desktop, m), made on top of the laptop's state).  The server keeps the laptop's revision body
   and later puts it back as the newest revision of the file (``adversary.Server.put``: a new
   revision over the current one, her valid signature untouched).
   Seen: the desktop takes it in, silently: plan.txt reads "laptop v2" again, no rollback alarm, no
   line in ``status``; the desktop's own edit is gone from view.  The laptop does the same (hole 2).
   Cause: fusevault/vault/model/ledger.py:323-332 ``Ledger.older`` compares a state's ``seq`` only
   with the newest seen *from the same device*; ``Ledger.admit`` (ledger.py:462-495) refuses only
   ``older``.  The desktop's ledger holds {laptop: n, desktop: m}: (laptop, n) is not below n, so it is
   "not older", although the desktop itself committed over exactly that state.  docs/SECURITY.md
   ("Rollback", "What is not detectable") excuses only a replay of another device's newest state
   "after which this device saw newer states from other devices only"; here this device made the
   newer state itself.
   Impact: the server silently reverts any file she last edited on one device to the state her other
   device wrote before: wrong bytes shown, no alarm, on the very device where she made the newer edit.
   Fix: when this device commits a node over a state of another device's (``Ledger.stamp`` /
   ``committed``), remember that state's seq as superseded (as ``closed`` does for settled leaves:
   ``older`` is then true for it and anything below it from that device); better, sign into each node
   document the seq(s) it was made over (a per-document version vector: ``seq`` plus the ``base``
   seqs), so every device can order states of different devices.
   Test: ``test_the_laptops_older_state_replayed_after_the_desktops_edit_is_refused_on_the_desktop``.

2. The same replay on the laptop: its OWN older state, after it took the desktop's newer edit.
   Seen: the laptop takes the replay of its own document silently (plan.txt reads "laptop v2", no
   alarm).  docs/SECURITY.md ("Rollback") claims "An older state THIS device wrote (her own
   document, replayed) is not taken in".
   Cause: as hole 1: ledger.py ``older`` / ``own_replay`` (609-617) judge (laptop, n) against the
   laptop's own newest number n only; that the desktop's (desktop, m) was made on top of it is not
   known to the ledger (no signed base in the document).
   Impact: as hole 1, on the other device.
   Fix: as hole 1 (the signed base seq in each node document lets the laptop know that (laptop, n)
   was superseded by (desktop, m) when it takes the desktop's state in).
   Test: ``test_the_laptops_own_older_state_replayed_after_the_desktops_edit_is_refused_on_the_laptop``.

3. The laptop's deletion, replayed to the desktop after the desktop restored (and edited) the file.
   She deletes plan.txt on the laptop (seq (laptop, n)); the desktop takes the deletion; on the desktop
   she runs ``fusevault restore`` and edits the file ("restored and edited on the desktop"); the laptop
   takes that.  The server then puts the laptop's deletion body back as the newest revision.
   Seen: plan.txt vanishes from the desktop's mount (into the trash), no rollback alarm, nothing in
   ``status``: a genuine file she restored and edited on this very device hidden, silently.
   Cause: as hole 1: ``Ledger.admit`` (ledger.py:462-495) takes the deletion since (laptop, n) is not
   below the newest number seen from the laptop; ``trashed_elsewhere`` (ledger.py:519) then even marks
   the file as deleted elsewhere, place unknown.  docs/SECURITY.md "Rollback" lists "her other device's
   older state (or deletion) put back" as "shown, and said": here nothing is said.
   Impact: the server hides any file she restored on one device by replaying the deletion made on the
   other; she sees no warning (``restore`` brings the newest contents back, if she notices).
   Fix: as hole 1 (a commit made over another device's state supersedes that state's seq; with a signed
   base in each document, the laptop's deletion is known to be below the desktop's restore on every
   device).
   Test: ``test_the_laptops_deletion_replayed_after_the_desktops_restore_does_not_hide_the_file``.

4. The laptop's older state replayed as a CouchDB conflict branch after the desktop renamed and
   edited the file.  She writes "laptop v2" to plan.txt on the laptop; the desktop takes it; on the
   desktop she renames plan.txt to final.txt and writes "desktop v3".  The server writes the laptop's
   v2 revision back as a new leaf beside the current one (``_bulk_docs`` with ``new_edits: false``,
   as tests/services/test_trust_attack_round4.py does for one device).
   Seen: the desktop settles the "conflict" by rule 3: it keeps the contents "desktop v3" under the
   replayed branch's name: the mount shows plan.txt (b"desktop v3"), final.txt is gone, no alarm.
   Her rename is undone silently.
   Cause: fusevault/vault/services/conflicts.py:162-168 ``replayed`` asks ``Ledger.replayed``
   (ledger.py:624), which is per-device ``older`` or a ``closed`` leaf: (laptop, n) is neither on the
   desktop, so the replay is judged a concurrent edit; ``decide`` (conflicts.py:213-220, rule 3: the
   side with older contents "changed only names") then gives the kept contents the replay's names.
   docs/SECURITY.md "Rollback" claims for a replayed branch "never settled in ... no rename is
   undone, no file is moved back into a folder shared since"; across two devices it is settled in.
   Impact: the server undoes her renames made on one device by replaying the other device's older
   state as a branch, silently (hole 5: with a folder shared since, the key goes to its members).
   Fix: as hole 1 (a state this device committed over is superseded; a signed base seq in each node
   document tells every device that the branch is an ancestor of the current state, not concurrent).
   Test: ``test_the_laptops_older_state_replayed_as_a_branch_does_not_undo_the_desktops_rename``.

5. Hole 4 with a share: the file's key sealed to a member the file was moved away from.
   On the laptop she writes proj/secret.txt ("a draft, in the project for a moment"); the desktop takes
   it; on the desktop she moves it to private/ and writes "the secret, never for bob", then shares proj
   with bob (READ).  The server writes the laptop's revision from when the file sat in proj back as a
   branch (the round 4 attack, across two devices; the server may collude with bob).
   Seen: the desktop settles it in (rule 3): secret.txt is back in proj with the newest contents, no
   alarm, and after her next unlock of the desktop bob's ``.vfkey`` for it opens to the file's current
   key (``_bobs_dek == _alice_dek``): bob reads "the secret, never for bob".  Control, the same scene
   without the replay: secret.txt stays in private/, bob holds no key
   (``test_a_file_moved_out_on_the_desktop_before_a_share_stays_out_without_a_replay``).
   Cause: as hole 4 (conflict_rules.py ``replayed`` -> ledger.py ``replayed``/``older`` per device; rule 3
   takes the replay's names); the settled-in place is then a place she chose (the ledger's ``where``),
   so ``fill_missing`` seals the key to the share's members.  docs/SECURITY.md "Rollback" names this
   very case ("no file is moved back into a folder shared since (where the owner's device would seal
   its key to the recipient)") as held: it holds with one device only
   (tests/services/test_trust_attack_round4.py).
   Impact: confidentiality: a server colluding with a share member gets her file's current contents
   (and every later version under that key) by replaying her other device's older placement.
   Fix: as hole 1; in the meantime, a branch whose seq is from another device and is not above the
   newest seen from it (``not newer``) while this device has committed the file since could at least
   be refused as a replay with an alarm (the device committed over it: it cannot be concurrent).
   Test:
   ``test_the_laptops_older_state_replayed_as_a_branch_does_not_move_the_file_back_into_a_shared_folder``.

Holes 1-5 are one cause (per-device ordering only).  docs/SECURITY.md's "What is not detectable"
names a near case ("a rollback to exactly the newest state written by another device that this device
has seen, after which this device saw newer states from other devices only"); these three are outside
its words (the newer state was made on this device, or the replayed state is this device's own), and
the while-mounted claim ("A server (or peer) offering an older revision while mounted: reported, and
not taken in") does not hold for them.

What held
=========

- Control for holes 1-2: the same scene with the desktop's OWN earlier state replayed on the
  desktop (seq (desktop, m-1) below (desktop, m)) is refused with a rollback alarm and the file
  keeps "desktop v3" (``test_the_desktops_own_older_state_replayed_is_refused_on_the_desktop``): the
  detection works within one device's numbers only.
- A device whose state folder (its ledger) is restored from an older backup, after it edited and
  deleted a file: its ``restore`` of that file afterwards reaches the other device and is taken, no
  false rollback alarm, the contents right
  (``test_a_restore_made_on_a_device_whose_state_folder_came_back_from_a_backup_is_not_a_false_rollback``;
  the counter is raised at load from the device's own numbers in the loaded tree, ledger.py:664; which
  document carried the number here was not traced).
- Keys across devices: ``passwd`` on the desktop, taken by the mounted laptop; the server then puts her
  body from before the passwd back as the newest revision and it reaches the laptop's store: the old
  passphrase still unlocks nothing there (exit 3), the new one does
  (``test_her_body_from_before_a_passwd_on_the_desktop_served_to_the_laptop_brings_no_old_passphrase_back``).

Not tried (time: a one-hour round)
==================================

Recovery-key create/revoke on one device with the old body offered to the other (only passwd was
tried), marker pins with two vault folders of one vault on one machine, settings from a peer through a
conflict or a replay (read only: ``confirmed.effective`` compares TTLs with ``_ttl``, where a
non-finite value counts as infinite and is pending, and ``parse_ttl`` admits only digits, so a TTL
of NaN/negative cannot be signed by her fusevault), conflicts whose settled leaves are replayed
across devices, a lost ledger (a new state folder) against the server replaying, the holes above at
the next mount (``check_loaded``, same per-device ``older``) rather than while mounted.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path

import adversary
import httpx
from conftest import (
    PouchServer,
    first_device,
    fusevault,
    laptop_and_desktop,
    mount_status,
    mounted,
    new_device,
    settled,
    wait_for,
)


def alarms(mountpoint: Path) -> list[dict]:
    return mount_status(mountpoint)["alarms"]


def root_fid(vault: Path) -> str:
    (user,) = adversary.docs(vault, "UserDetails")
    return user["root"]


def changed(before: dict[str, dict], after: dict[str, dict], skip: str) -> list[str]:
    return [fid for fid, doc in after.items() if fid != skip and before.get(fid, {}).get("enc") != doc["enc"]]


def _rollbacks(mountpoint: Path) -> list[dict]:
    return [x for x in alarms(mountpoint) if x["kind"] == "rollback"]


def _scene(tmp_path: Path, replay_of: str, watch: str) -> tuple[bytes, list[dict]]:
    """Laptop writes "laptop v2", desktop takes it and writes "desktop v3" on top, laptop takes that.
    The server then puts back the node body of ``replay_of`` ("laptop": the laptop's v2; "desktop":
    the desktop's own earlier "desktop v1").  Returns what ``watch`` ("a" or "b") shows once the
    replay has reached it, and its rollback alarms."""
    with laptop_and_desktop(tmp_path, ("plan.txt",)) as (server, laptop, a, desktop):
        couch = adversary.Server(f"{server.url}/vault")
        root = root_fid(laptop)
        with mounted(desktop, tmp_path / "b") as b:
            wait_for(lambda: (b / "plan.txt").exists() and settled(b), "the desktop's first pull")
            before = {d["_id"]: d for d in couch.all("node")}
            if replay_of == "desktop":
                (b / "plan.txt").write_bytes(b"desktop v1")
                wait_for(lambda: settled(b) and (a / "plan.txt").read_bytes() == b"desktop v1",
                         "the desktop's v1 on the laptop")
            else:
                (a / "plan.txt").write_bytes(b"laptop v2")
                wait_for(lambda: settled(a) and (b / "plan.txt").read_bytes() == b"laptop v2",
                         "the laptop's v2 on the desktop")
            old = {d["_id"]: d for d in couch.all("node")}
            (fid,) = changed(before, old, root)
            (b / "plan.txt").write_bytes(b"desktop v3")
            wait_for(lambda: settled(b) and settled(a) and (a / "plan.txt").read_bytes() == b"desktop v3",
                     "the desktop's v3 on the laptop")
            assert couch.get(fid)["enc"] != old[fid]["enc"]
            assert _rollbacks(a) == [] and _rollbacks(b) == []
            couch.put(old[fid])  # the server serves the older body as the newest revision
            mnt = a if watch == "a" else b

            wait_for(lambda: bool(_rollbacks(mnt)) or (mnt / "plan.txt").read_bytes() != b"desktop v3",
                     "the replay to reach the device (taken in, or refused with an alarm)")
            wait_for(lambda: settled(mnt), "the device to settle")
            return (mnt / "plan.txt").read_bytes(), _rollbacks(mnt)


def test_the_laptops_older_state_replayed_after_the_desktops_edit_is_refused_on_the_desktop(
        tmp_path: Path) -> None:
    shown, rollbacks = _scene(tmp_path, "laptop", "b")
    assert shown == b"desktop v3", f"the desktop shows {shown!r}, rollback alarms: {rollbacks}"
    assert rollbacks


def test_the_laptops_own_older_state_replayed_after_the_desktops_edit_is_refused_on_the_laptop(
        tmp_path: Path) -> None:
    shown, rollbacks = _scene(tmp_path, "laptop", "a")
    assert shown == b"desktop v3", f"the laptop shows {shown!r}, rollback alarms: {rollbacks}"
    assert rollbacks


def test_the_desktops_own_older_state_replayed_is_refused_on_the_desktop(tmp_path: Path) -> None:
    shown, rollbacks = _scene(tmp_path, "desktop", "b")
    assert shown == b"desktop v3"
    assert rollbacks and "plan.txt" in rollbacks[0]["text"]


def test_the_laptops_deletion_replayed_after_the_desktops_restore_does_not_hide_the_file(
        tmp_path: Path) -> None:
    with laptop_and_desktop(tmp_path, ("plan.txt",)) as (server, laptop, a, desktop):
        couch = adversary.Server(f"{server.url}/vault")
        root = root_fid(laptop)
        with mounted(desktop, tmp_path / "b") as b:
            wait_for(lambda: (b / "plan.txt").exists() and settled(b), "the desktop's first pull")
            before = {d["_id"]: d for d in couch.all("node")}
            (a / "plan.txt").unlink()  # deleted on the laptop
            wait_for(lambda: settled(a) and not (b / "plan.txt").exists(), "the deletion on the desktop")
            deleted = {d["_id"]: d for d in couch.all("node")}
            (fid,) = changed(before, deleted, root)
            assert deleted[fid].get("delete")
            restored = fusevault("restore", b / "plan.txt")  # brought back on the desktop
            assert restored.returncode == 0, restored.stderr
            (b / "plan.txt").write_bytes(b"restored and edited on the desktop")
            wait_for(lambda: settled(b) and settled(a) and (a / "plan.txt").exists()
                     and (a / "plan.txt").read_bytes() == b"restored and edited on the desktop",
                     "the restore on the laptop")
            assert _rollbacks(a) == [] and _rollbacks(b) == []
            couch.put(deleted[fid])  # the server serves the laptop's deletion again
            wait_for(lambda: bool(_rollbacks(b)) or not (b / "plan.txt").exists(),
                     "the replay to reach the desktop (taken in, or refused with an alarm)")
            wait_for(lambda: settled(b), "the desktop to settle")
            assert (b / "plan.txt").exists(), f"plan.txt gone from the desktop; alarms: {alarms(b)}"
            assert (b / "plan.txt").read_bytes() == b"restored and edited on the desktop"
            assert _rollbacks(b)


def _ledger_of(vault: Path) -> Path:
    """The ledger file of alice's vault folder ``vault`` (vault/model/ledger.py ``ledger_path``)."""
    (user,) = adversary.docs(vault, "UserDetails")
    name = hashlib.sha256(f"{os.path.realpath(vault)}\0{user['_id']}".encode()).hexdigest()[:32]
    return Path(os.environ["FUSEVAULT_STATE_DIR"]) / "ledger" / name


def test_a_restore_made_on_a_device_whose_state_folder_came_back_from_a_backup_is_not_a_false_rollback(
        tmp_path: Path) -> None:
    with laptop_and_desktop(tmp_path, ("plan.txt",)) as (_server, _laptop, a, desktop):
        with mounted(desktop, tmp_path / "b") as b:
            wait_for(lambda: (b / "plan.txt").exists() and settled(b), "the desktop's first pull")
        backup = _ledger_of(desktop).read_bytes()  # her home folder's backup, taken now
        with mounted(desktop, tmp_path / "b") as b:
            (b / "plan.txt").write_bytes(b"edited on the desktop")
            os.unlink(b / "plan.txt")
            wait_for(lambda: settled(b) and not (a / "plan.txt").exists(), "the deletion on the laptop")
        _ledger_of(desktop).write_bytes(backup)  # her home folder restored from that backup
        with mounted(desktop, tmp_path / "b") as b:
            restored = fusevault("restore", b / "plan.txt")
            assert restored.returncode == 0, restored.stderr
            assert (b / "plan.txt").read_bytes() == b"edited on the desktop"
            wait_for(lambda: settled(b), "the desktop's push")
            wait_for(lambda: (a / "plan.txt").exists() or bool(_rollbacks(a)),
                     "the restore to reach the laptop (taken, or refused)")
            assert _rollbacks(a) == [], f"a false rollback alarm on the laptop: {_rollbacks(a)}"
            assert (a / "plan.txt").read_bytes() == b"edited on the desktop"


def _replay_as_branch(couch: adversary.Server, old: dict) -> str:
    """``old`` (a genuine revision with its ``_revisions``) put back as a new leaf beside the current one
    (as tests/services/test_trust_attack_round4.py does): a CouchDB conflict branch."""
    revs = old["_revisions"]
    rev_id = "0" * 8 + secrets.token_hex(12)
    body = {k: v for k, v in old.items() if k not in ("_rev", "_revisions")}
    body["_rev"] = f"{revs['start'] + 1}-{rev_id}"
    body["_revisions"] = {"start": revs["start"] + 1, "ids": [rev_id, *revs["ids"]]}
    r = httpx.post(f"{couch.url}/_bulk_docs", content=json.dumps({"docs": [body], "new_edits": False}),
                   headers={"Content-Type": "application/json"}, timeout=30)
    r.raise_for_status()
    return body["_rev"]


def test_the_laptops_older_state_replayed_as_a_branch_does_not_undo_the_desktops_rename(
        tmp_path: Path) -> None:
    with laptop_and_desktop(tmp_path, ("plan.txt",)) as (server, laptop, a, desktop):
        couch = adversary.Server(f"{server.url}/vault")
        root = root_fid(laptop)
        with mounted(desktop, tmp_path / "b") as b:
            wait_for(lambda: (b / "plan.txt").exists() and settled(b), "the desktop's first pull")
            before = {d["_id"]: d for d in couch.all("node")}
            (a / "plan.txt").write_bytes(b"laptop v2")
            wait_for(lambda: settled(a) and (b / "plan.txt").read_bytes() == b"laptop v2",
                     "the laptop's v2 on the desktop")
            (fid,) = changed(before, {d["_id"]: d for d in couch.all("node")}, root)
            old = couch.get(fid, revs="true")
            os.rename(b / "plan.txt", b / "final.txt")  # renamed and edited on the desktop
            (b / "final.txt").write_bytes(b"desktop v3")
            wait_for(lambda: settled(b) and settled(a) and sorted(os.listdir(a)) == ["final.txt"]
                     and (a / "final.txt").read_bytes() == b"desktop v3", "the desktop's v3 on the laptop")
            assert _rollbacks(a) == [] and _rollbacks(b) == []
            _replay_as_branch(couch, old)
            wait_for(lambda: bool(_rollbacks(b)) or sorted(os.listdir(b)) != ["final.txt"],
                     "the branch to reach the desktop (settled in, or refused with an alarm)")
            wait_for(lambda: settled(b), "the desktop to settle")
            assert sorted(os.listdir(b)) == ["final.txt"], (
                f"the desktop shows {[(n, (b / n).read_bytes()) for n in os.listdir(b)]}; "
                f"alarms: {alarms(b)}")
            assert (b / "final.txt").read_bytes() == b"desktop v3"
            assert _rollbacks(b)


def test_the_laptops_older_state_replayed_as_a_branch_does_not_move_the_file_back_into_a_shared_folder(
        tmp_path: Path) -> None:
    in_proj, bob_has, rollbacks = _moved_out_then_shared(tmp_path, replay=True)
    assert in_proj == [], f"secret.txt moved back into proj: {in_proj}; bob has its key: {bob_has}; " \
        f"alarms {rollbacks}"
    assert not bob_has, "her desktop sealed secret.txt's key to bob"
    assert rollbacks


def test_a_file_moved_out_on_the_desktop_before_a_share_stays_out_without_a_replay(tmp_path: Path) -> None:
    """Control for hole 5: the same scene, no replay: secret.txt stays in private/, bob has no key."""
    assert _moved_out_then_shared(tmp_path, replay=False) == ([], False, [])


def _moved_out_then_shared(tmp_path: Path, replay: bool) -> tuple[list[str], bool, list[dict]]:
    from mount.test_trust_attack_round4 import _alice_dek, _bobs_dek
    from mount.test_trust_writes import BOB, _admin

    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        couch = adversary.Server(url)
        laptop = first_device(url, tmp_path)
        _admin(laptop, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
        with mounted(laptop, tmp_path / "a") as a:
            (a / "proj").mkdir()
            (a / "private").mkdir()
            wait_for(lambda: settled(a), "the first push")
            before = {d["_id"] for d in couch.all("node")}
            (a / "proj" / "secret.txt").write_bytes(b"a draft, in the project for a moment")
            wait_for(lambda: settled(a), "the file pushed")
            (fid,) = {d["_id"] for d in couch.all("node")} - before
            old = couch.get(fid, revs="true")
            desktop = new_device(url, tmp_path, "desktop")
            with mounted(desktop, tmp_path / "b") as b:
                wait_for(lambda: (b / "proj" / "secret.txt").exists() and settled(b), "the desktop's pull")
                os.rename(b / "proj" / "secret.txt", b / "private" / "secret.txt")  # moved out on the desktop
                (b / "private" / "secret.txt").write_bytes(b"the secret, never for bob")
                wait_for(lambda: settled(b) and settled(a) and (a / "private" / "secret.txt").exists()
                         and (a / "private" / "secret.txt").read_bytes() == b"the secret, never for bob",
                         "the move on the laptop")
                shared = fusevault("share", b / "proj", "--with", "bob", "--perm", "READ")
                assert shared.returncode == 0, shared.stderr
                wait_for(lambda: settled(b) and settled(a), "the share pushed")
                assert _rollbacks(a) == [] and _rollbacks(b) == []
                if replay:
                    _replay_as_branch(couch, old)
                else:
                    (b / "private" / "marker.txt").write_bytes(b"a later write instead")
                wait_for(lambda: bool(_rollbacks(b)) or (b / "proj" / "secret.txt").exists()
                         or (b / "private" / "marker.txt").exists(),
                         "the branch to reach the desktop (settled in, or refused with an alarm)")
                wait_for(lambda: settled(b), "the desktop to settle")
                in_proj = sorted(os.listdir(b / "proj"))
                rollbacks = _rollbacks(b)
            with mounted(desktop, tmp_path / "b"):  # her next unlock there: keys of her shares filled in
                wait_for(lambda: settled(tmp_path / "b"), "the sync after the unlock")
        try:
            bob_has = _bobs_dek(desktop, fid) == _alice_dek(desktop, fid)
        except Exception:
            bob_has = False
        return in_proj, bob_has, rollbacks
    finally:
        server.stop()


def test_her_body_from_before_a_passwd_on_the_desktop_served_to_the_laptop_brings_no_old_passphrase_back(
        tmp_path: Path) -> None:
    """Held: passwd on the desktop, the laptop (mounted) takes the new keys; the server then serves the
    laptop her body from before the passwd as the newest revision: the old passphrase still unlocks
    nothing on the laptop, and the new one does."""

    new = "a new passphrase, the old one leaked"
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        couch = adversary.Server(url)
        laptop = first_device(url, tmp_path)
        with mounted(laptop, tmp_path / "a") as a:
            (a / "plan.txt").write_bytes(b"her plan")
            wait_for(lambda: settled(a), "the first push")
            (old,) = [u for u in couch.all("UserDetails") if u.get("username") == "alice"]
            desktop = new_device(url, tmp_path, "desktop")
            changed_ = fusevault("passwd", desktop, env={"FUSEVAULT_NEW_PASSPHRASE": new})
            assert changed_.returncode == 0, changed_.stderr
            with mounted(desktop, tmp_path / "d", passphrase=new) as d:
                wait_for(lambda: settled(d), "the desktop's push")
            (user,) = [u for u in couch.all("UserDetails") if u.get("username") == "alice"]
            wait_for(lambda: (adversary.get(laptop, user["_id"]) or {}).get("keys_seq") == user["keys_seq"],
                     "her new keys on the laptop")
            wait_for(lambda: settled(a), "the sync to settle")
            couch.put(old)  # the server serves her body from before the passwd
            wait_for(lambda: (adversary.get(laptop, user["_id"]) or {}).get("keys_seq") != user["keys_seq"],
                     "the old body in the laptop's store")
        assert fusevault("mount", laptop, tmp_path / "a").returncode == 3  # the old passphrase: refused
        with mounted(laptop, tmp_path / "a", passphrase=new) as a:
            assert (a / "plan.txt").read_bytes() == b"her plan"
    finally:
        server.stop()
