"""Issue 22, attack round 12: version vectors ordering signed bodies (vault/model/lineage.py, freshness.py,
confirmed.py) and closed files flushed in batches (vault/files/closed.py).

Each test asserts the SAFE behaviour; a hole is marked ``xfail(strict=True)`` until closed.  Where the entry
point is pure (``Freshness.admit``/``stamp``, ``confirmed._newest_seen``, ``ClosedFiles``) the test drives it
as tests/unit/test_freshness_vectors.py does: two devices are two records, a second user is a second owner
whose signatures hold; the two worst are also played with the real commands and mounts.

Found at commit 4a908bc (main): 9 holes in 12 xfail tests, most severe first
(all 9 FIXED):
1. FIXED (group member add/remove refuse a body not signed by the owner or not admitted here: exit 32).
   A removed group member comes back, signed by her (real commands; not new with vectors: the made_at_us rule
   did the same).  alice removes bob from team; the store's writer puts the older signed team (bob in it)
   back: every reader refuses it as a replay, but her next `group member add team carol` (or a remove of
   another member) re-signs that body with carol added and a vector above all her device saw: bob is in
   team again, everywhere, for good, and keys of the group's files are sealed to him.  Cause:
   cli/accounts.py ``cmd_group`` -> ``groups.set_member`` builds on ``find_group``'s store body, which is
   never put through ``freshness.admit`` (nor its signature checked).  Fix: build only on a body that is
   signed by the owner and admitted on this device (else refuse, with the replay alarm).
   Test: test_adding_a_member_never_re_signs_a_replayed_group_with_a_removed_member.
2. FIXED (freshness.record_id: another user's body is remembered under (owner, id); stamp floor bounded
   by MAX_AHEAD_US).  Another user's Share at her share id revokes her share on her device, for good
   (real commands).  Carol
   (any user of the vault who writes the vault folder) signs in her own name a Share with alice's id
   ``share-<fid>-<bob>`` (sharing.doc_id names no owner), a vector above alice's (her device ids are in clear
   in her bodies) and made_at_us 2**53-1; alice's device sees it once.  Then alice's own body, back, is
   refused as a replay ("nothing is shared", nothing sealed to bob), and her `share` fails ("internal
   error": the next made_at_us, 2**53, cannot be signed) on that device forever; a 1,024-device vector makes
   her next body's vector one no fusevault takes (refused on her other devices).  Cause: freshness.py keys
   ``seen``/``tips`` by document id alone and admits bodies of every owner into them; ``stamp`` takes any
   made_at_us seen as its floor (settings.save bounds its own by MAX_AHEAD_US; this does not);
   ``next_vector`` joins foreign vectors.  Fix: key the record by (owner, id), or refuse at
   grants.verified_grants a Share not signed by the owner of the node it names before ``admit``; bound the
   floor like settings.save.  Tests: test_a_users_share_under_her_share_id_does_not_revoke_her_share,
   test_a_grantee_body_under_her_share_id_does_not_move_her_record,
   test_a_grantee_body_under_her_share_id_leaves_her_next_body_valid.
3. FIXED (freshness.Freshness keeps when each deletion was seen here, ``deleted_at``; a body of hers made
   apart from the deleted ones and stamped after that time and every body seen is a new signing: it becomes
   the one tip, the deleted vectors are kept joined as ``buried`` (a body at or below them: a replay); the
   trade: her body signed BEFORE the unshare on a device whose clock ran ahead past the time the deletion
   was seen here, withheld, counts again; without that skew it is refused, concurrent alarm).
   False alarm, legitimate use (real commands): she shares notes.txt on her laptop and unshares it before her
   desktop synced; later she shares it again on the desktop.  The laptop refuses it as "concurrent" (alarm
   "the server may have withheld one"; nothing shared there) until she shares it again on the laptop; the
   made_at_us rule took it.  Cause: the deleted body's vector stays a tip (``Freshness._replay``/``saw``),
   and a device that never saw it signs {desktop: 1}.  Fix: after a deletion this device saw, a body
   concurrent with the deleted tips is a new signing if its made_at_us is above the time the deletion was
   seen here (kept in the record); alarm otherwise.  Tests:
   test_sharing_again_from_her_desktop_after_an_unshare_on_her_laptop_counts_there,
   test_sharing_again_on_a_device_that_never_saw_the_unshared_share_is_no_alarm.
4. FIXED (do_retention admits her current body before signing the drop).
   False alarm, legitimate use (real commands): she sets her policy on the laptop, the desktop shows it, she
   changes it on the laptop, then on the desktop (synced, no gc run meanwhile) `retention --follow-default`:
   the laptop shows "none that holds: two policies ... had not seen each other's" (KEEP_ALL) until she sets
   it again there.  Cause: requests.py ``do_retention`` signs ``retention.drop_own`` before ``policy_for``
   has admitted the current body on this device, so its vector is above only what the desktop saw.  Fix:
   ``policy_for`` (admit) first, as the "set" path does.
   Test: test_following_the_default_on_her_desktop_after_a_change_on_her_laptop_is_no_alarm.
5. FIXED (lineage.MAX_TIPS, MAX_DEVICE).  Unbounded record (DoS): bob signs 300 bodies of his own share
   with alice, no one above another; her device
   keeps all 300 as tips (refused or not), rewrites them sealed at each save and compares each new body with
   all (a 1,024-entry vector, device names of any length: MBs per body).  Cause: ``lineage.add``/``saw``
   never bound ``tips``; ``lineage.of`` bounds no device name.  Fix: cap the tips per id (past it: keep the
   join as one "concurrent" tip) and the device name length.  Test:
   test_a_flood_of_concurrent_bodies_keeps_her_record_bounded.
6. FIXED (flush_all waits for each batch in flight).
   Unmount or lock during a create storm: ``ClosedFiles.flush_all`` returns at once when nothing waits while
   the batch of the 1,024th close is still being flushed in its thread; ``save_all`` then syncs the store's
   log naming records not yet on disk (a power cut loses them; kill -9 does not).  Fix: flush_all also waits
   for the batches in flight.  Test: test_flush_all_returns_only_once_the_batch_in_flight_is_on_disk.
7. FIXED (the batch's files wait again: a later fsync or flush_all flushes them or raises).
   A batch whose flush failed (EIO from syncfs) is forgotten: the error is raised into a FUSE release (the
   kernel ignores it), the paths are in neither ``waiting`` nor ``in_flight``, and the next flush_all
   (unmount, lock) reports nothing.  From before h-flush (its flush_closed dropped the paths too).  Fix:
   remember the failure and make save_all report it (an alarm; the store's log not synced as if fine).
   Test: test_a_batch_that_failed_to_flush_is_not_forgotten.
8. FIXED (settings.save stamps above a body WITHOUT a vector however far ahead, at most 2**53-1; a
   vectored one's far-ahead stamp is still not followed: its vector orders it).
   Settings after a far-ahead body from before vectors: her device saw a vector-less body stamped more than
   MAX_AHEAD_US ahead (a laptop with a wrong clock, older code); she turns watching off there: settings.save
   dates it "now", ``_newest_seen`` has no tips and judges it by settings_at_us alone: never the newest (her
   safer value is not recorded as confirmed), and the far-ahead body, replayed, is the newest again.  Fix:
   when the body it replaces is her own signed one, settings.save stamps above it (clamped only at the 2**53
   limit), so the stamp rule still orders it.
   Test: test_settings_she_signs_after_a_far_ahead_body_from_before_vectors_are_the_newest.
9. FIXED (vault/model/device.py: a record keeps, with its device id, a digest of the machine id and its
   real path; read elsewhere, it signs under a new device id from its first signing there: freshness and
   confirmed; not caught: a clone at the same path with the same machine id).
   Two devices with one device id (a state directory copied to set up a new machine): they sign equal
   vectors and ``lineage.placed`` orders them by made_at_us: the laptop's (clock a day ahead) earlier WRITE,
   withheld and served later, silently replaces the READ she set after it on the desktop: the round 10b
   skew again.  Fix: equal vectors on two different bodies are concurrent unless one is a re-signing by
   older code (no vector field of its own), or bind the device id to the machine (refuse a copied record).
   Test: test_two_devices_with_one_device_id_are_not_ordered_by_their_clocks.

Holds: a vector with a float, negative, zero, boolean, huge or string count, an empty device name, no entry,
not a dict or 1,025 entries is refused with an alarm and leaves the record
(test_a_vector_no_fusevault_writes_is_refused_and_leaves_her_record); 7.0 for 7 is the same body
(test_a_whole_float_count_is_its_integer); her pre-vector body replayed after vectors were seen
(downgrade: test_a_body_from_before_vectors_replayed_after_vectors_is_refused); a record from before vectors
(no tips) still refuses a replay and takes her next body (test_a_record_from_before_vectors_refuses_a_replay);
a revoked grantee's own bodies at the id (same vector and a later stamp, or concurrent) never bring her
deleted share back (test_a_revoked_grantee_cannot_bring_her_share_back_with_bodies_of_his_own); `unshare`
takes bob's key back with carol's body at the id
(test_unshare_takes_the_key_back_with_another_users_body_at_her_share_id);
the unshare/re-share cycle on a device that saw the unshare
(test_sharing_again_after_an_unshare_on_a_device_that_saw_it_counts);
a far-ahead settings body WITH a vector is outranked by her next one
(test_settings_she_signs_after_a_far_ahead_vectored_body_are_the_newest); `config set` over her replayed older
user document re-signs its older values (a lost update, no alarm) but applies none of them
(test_config_set_over_a_replayed_user_document_applies_none_of_its_older_values).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import threading
import time
from pathlib import Path

import adversary
import pytest
import trio
from attack_scenes import add_team, add_users, group_doc
from conftest import fusevault, mounted
from unit.test_freshness_vectors import _Device as _VectorsDevice

from fusevault.crypto.keys import MasterKey
from fusevault.crypto.signing import sign_doc
from fusevault.errors import Replayed
from fusevault.vault.files import closed
from fusevault.vault.model import confirmed, freshness, lineage, retention, settings, sharing
from fusevault.vault.model import device as device_ids
from fusevault.vault.model.freshness import Freshness, stamp
from mount.test_trust_attack_round10b import _config, _set
from mount.test_trust_grants import notes_shared_with_bob
from mount.test_trust_settings import status
from mount.test_trust_writes import CAROL as CAROL_SECRET
from mount.test_trust_writes import PASSPHRASE, _admin, _key, _user

ALICE, BOB, CAROL = "a" * 32, "b" * 32, "c" * 32
FID = "f" * 32
DAY_NS = 86400 * 10**9
JS_EXACT = 2**53  # a CouchDB server holds integers exactly below this


class _Device(_VectorsDevice):
    """One of alice's devices (tests/unit/test_freshness_vectors.py), its record named as on every device."""

    def __init__(self, tmp_path: Path, name: str, skew_ns: int = 0) -> None:
        super().__init__(tmp_path, name, skew_ns)
        (tmp_path / name).mkdir()
        self.fresh = Freshness(self.fresh.key, tmp_path / name / "grants", self.alarms)

    def takes(self, doc: dict) -> bool:
        """Whether this device acts on the (signature-checked) grant body."""
        return freshness.admitted(self.fresh, [doc], "share") == [doc]

    def unshares(self, doc: dict) -> None:
        """``unshare`` on this device: taken back here, then gone from the store (share_ops.py)."""
        self.fresh.took_back(str(doc["_id"]))
        self.fresh.sweep(set())


def _carols_body_seen_at_her_share(vault: Path, mnt: Path) -> dict:
    """alice's notes.txt shared with bob; carol's own Share at its id (a vector above alice's, made_at_us
    2**53-1) seen once by alice's device, then alice's body back in the store: alice's body."""
    hers = notes_shared_with_bob(vault, mnt, "READ")
    add_users(vault, "carol")
    carol = _key(vault, "carol", CAROL_SECRET)
    body = {k: v for k, v in hers.items() if k not in ("_rev", "sig")}
    poison = {**body, "owner": carol.user_id, freshness.FIELD: JS_EXACT - 1,
              lineage.FIELD: {**{d: lineage.MAX_COUNT for d in hers[lineage.FIELD]}, "carol-device": 1}}
    adversary.put(vault, sign_doc(carol.user_id, carol.identity.sign, poison))
    with mounted(vault, mnt):
        pass  # alice's device sees carol's body
    adversary.put(vault, hers)  # alice's own body is back (her other device, or carol putting it back)
    return hers


def _share(owner: str = ALICE, perm: str = "READ", grantee: str = CAROL) -> dict:
    return {"_id": sharing.doc_id(FID, grantee), "type": "Share", "owner": owner, "fid": FID,
            "grantee": grantee, "group": False, "perm": perm}


def test_a_grantee_body_under_her_share_id_does_not_move_her_record(tmp_path: Path) -> None:
    laptop = _Device(tmp_path, "laptop")
    hers = laptop.sign(_share())
    assert laptop.takes(hers)
    # Bob (a grantee of the file: he knows its id and carol's) signs, in his own name, a Share under the same
    # id: a vector naming her device at the top and a made_at_us far past 2**53; a writer of the vault folder
    # puts it in the place of hers.  It verifies (signed by the owner it names).
    poison = {**_share(owner=BOB, perm="WRITE"), freshness.FIELD: JS_EXACT - 1,
              lineage.FIELD: {laptop.fresh.device: lineage.MAX_COUNT, "bob-device": 1}}
    laptop.takes(poison)  # its grant is on her node, not his: Guests.covering ignores it; her record does not
    # Her own body, back in the store (her other device, the writer putting it back), must still count ...
    assert laptop.takes(hers), laptop.alarms.as_list()
    # ... and what she signs next must still be a body a CouchDB server keeps exactly and orders.
    again = laptop.sign(_share(perm="WRITE"))
    assert again[freshness.FIELD] < JS_EXACT
    assert again[lineage.FIELD][laptop.fresh.device] < lineage.MAX_COUNT


def test_sharing_again_on_a_device_that_never_saw_the_unshared_share_is_no_alarm(tmp_path: Path) -> None:
    laptop, desktop = _Device(tmp_path, "laptop"), _Device(tmp_path, "desktop")
    first = laptop.sign(_share(perm="WRITE"))  # shared on the laptop ...
    assert laptop.takes(first)
    laptop.unshares(first)  # ... and unshared there before the desktop ever synced
    time.sleep(0.001)
    again = desktop.sign(_share(perm="READ"))  # days later she shares it again on the desktop
    assert desktop.takes(again)
    assert laptop.takes(again), laptop.alarms.as_list()  # sequential use: hers, on both
    assert not laptop.alarms.as_list()


def test_unshare_takes_the_key_back_with_another_users_body_at_her_share_id(
        vault: Path, tmp_path: Path) -> None:
    """Holds (deny an unshare): carol's poisoned body at alice's share id (above), alice's own refused as a
    replay since; alice unshares notes.txt from bob: his key file is gone (the unshare goes by the id and
    the keys held, not by the admitted body)."""
    mnt = tmp_path / "mnt"
    hers = _carols_body_seen_at_her_share(vault, mnt)
    keys = list((vault / "users" / hers["grantee"] / "shared").glob(f"*_{hers['fid']}.vfkey"))
    assert keys
    with mounted(vault, mnt):
        assert fusevault("unshare", mnt / "notes.txt", "--with", "bob").returncode == 0
    assert not [k for k in keys if k.exists()]


def test_sharing_again_from_her_desktop_after_an_unshare_on_her_laptop_counts_there(
        vault: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real commands, sequential use of two devices: on her laptop alice shares notes.txt with bob and
    unshares it again (before her desktop ever synced it).  A week later she shares it with bob on the
    desktop.  Safe: the laptop shares it with bob too, with no alarm (the made_at_us rule did)."""
    mnt = tmp_path / "mnt"
    notes_shared_with_bob(vault, mnt, "READ,WRITE")
    with mounted(vault, mnt):
        assert fusevault("unshare", mnt / "notes.txt", "--with", "bob").returncode == 0
    laptop = os.environ.get("FUSEVAULT_STATE_DIR")
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "desktop-state"))
    with mounted(vault, mnt):
        assert fusevault("share", mnt / "notes.txt", "--with", "bob", "--perm", "READ").returncode == 0
    if laptop is None:
        monkeypatch.delenv("FUSEVAULT_STATE_DIR")
    else:
        monkeypatch.setenv("FUSEVAULT_STATE_DIR", laptop)
    with mounted(vault, mnt):
        alarms = [a["text"] for a in status(mnt).get("alarms", [])]
        listed = fusevault("shares", "--mount", mnt, passphrase=None).stdout
        assert "bob" in listed, (listed, alarms)
        assert not alarms, alarms


def test_a_flood_of_concurrent_bodies_keeps_her_record_bounded(tmp_path: Path) -> None:
    laptop = _Device(tmp_path, "laptop")
    # Bob owns a share with her (his own id: he may sign it at will) and signs bodies no one of which saw
    # another; the server serves them one after another.
    for n in range(300):
        body = {"_id": sharing.doc_id("e" * 32, ALICE), "type": "Share", "owner": BOB, "fid": "e" * 32,
                "grantee": ALICE, "group": False, "perm": "READ", freshness.FIELD: n + 1,
                lineage.FIELD: {f"{n:04d}" + "x" * 60: 1}}
        laptop.takes(body)
    laptop.fresh.save()
    kept = laptop.fresh.tips[laptop.fresh.record_id(body)]  # bob's bodies: under (bob, id)
    assert len(kept) <= 64, (len(kept), laptop.fresh.path.stat().st_size)


def test_two_devices_with_one_device_id_are_not_ordered_by_their_clocks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    laptop = _Device(tmp_path, "laptop", skew_ns=DAY_NS)  # clock a day ahead
    first = laptop.sign(_share(perm="READ"))
    laptop.fresh.save()
    # Her desktop is set up by copying the laptop's state directory: same record, same device id.
    desktop = _Device(tmp_path, "desktop")
    desktop.fresh.path.write_bytes(laptop.fresh.path.read_bytes())
    monkeypatch.setattr(freshness, "state_path", lambda *_: desktop.fresh.path)
    desktop.fresh = Freshness.open(laptop.fresh.key, tmp_path, "vault", desktop.alarms)
    assert desktop.fresh.device == laptop.fresh.device
    assert desktop.takes(first)
    write = laptop.sign(_share(perm="WRITE"))  # withheld from the desktop by the server
    read = desktop.sign(_share(perm="READ"))  # her last word, on the desktop (its clock right)
    assert desktop.takes(read)
    # Served now: the laptop's earlier WRITE must not silently replace the READ she set after it.
    assert not desktop.takes(write)
    assert desktop.alarms.as_list()


class _UserStore:
    """Her user document as the store holds it (one body at a time)."""

    def __init__(self, doc: dict) -> None:
        self.doc = doc

    def get(self, doc_id: str) -> dict:
        return dict(self.doc)

    def put_many(self, docs: list[dict]) -> None:
        self.doc = docs[0]

    def sync(self) -> None:
        pass


def test_settings_she_signs_after_a_far_ahead_body_from_before_vectors_are_the_newest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))
    key, root = MasterKey(ALICE, b"\1" * 32), tmp_path / "vault"
    ahead = time.time_ns() // 1000 + 2 * settings.MAX_AHEAD_US
    # Signed by fusevault from before vectors on a device whose clock ran two years ahead: a watched folder.
    old = {"_id": ALICE, "type": "UserDetails", **settings.Settings(source_dir_to_watch="/in").as_dict(),
           settings.STAMP: ahead}
    assert confirmed._newest_seen(root, key, old)
    store = _UserStore(old)
    # Now, on this device (new code, clock right), she turns watching off.
    settings.save(store, ALICE, settings.Settings(), lambda doc: doc, confirmed.next_vector(root, key))
    current = store.doc
    assert confirmed._newest_seen(root, key, current)  # hers, the newest
    assert not confirmed._newest_seen(root, key, old)  # the older one, replayed, is not


def test_a_users_share_under_her_share_id_does_not_revoke_her_share(vault: Path, tmp_path: Path) -> None:
    """The real commands: alice shares notes.txt with bob.  Carol (another user of the vault, who writes the
    vault folder) signs in her own name a Share with alice's id (share-<fid>-<bob>), a vector above alice's
    (her device's id is in clear in alice's body) and made_at_us 2**53-1 (the largest it may sign), and puts
    it in the place of alice's;
    alice mounts once.  Then alice's body is back (her other device, or carol putting it back).  Safe:
    alice's share with bob still counts (listed, no replay alarm), and her next share is one a CouchDB
    server holds exactly."""
    mnt = tmp_path / "mnt"
    hers = _carols_body_seen_at_her_share(vault, mnt)
    with mounted(vault, mnt):
        alarms = [a["text"] for a in status(mnt).get("alarms", [])]
        listed = fusevault("shares", "--mount", mnt, passphrase=None).stdout
        assert not [a for a in alarms if "replay" in a], alarms
        assert "bob" in listed, listed
        assert fusevault("share", mnt / "notes.txt", "--with", "bob", "--perm", "READ,WRITE").returncode == 0
    assert adversary.get(vault, hers["_id"])[freshness.FIELD] < JS_EXACT


def test_a_grantee_body_under_her_share_id_leaves_her_next_body_valid(tmp_path: Path) -> None:
    laptop, desktop = _Device(tmp_path, "laptop"), _Device(tmp_path, "desktop")
    hers = laptop.sign(_share())
    assert laptop.takes(hers) and desktop.takes(hers)
    poison = {**_share(owner=BOB), freshness.FIELD: 1,
              lineage.FIELD: {f"bob{n:04d}": 1 for n in range(lineage.MAX_ENTRIES)}}
    laptop.takes(poison)  # concurrent with hers: refused, yet kept as a tip of her id
    again = laptop.sign(_share(perm="WRITE"))  # she changes the share on the laptop
    lineage.of(again)  # a vector fusevault takes ...
    assert desktop.takes(again), desktop.alarms.as_list()  # ... and her desktop acts on it


@pytest.mark.parametrize("vector", [
    {"d": 1.5}, {"d": -1}, {"d": 0}, {"d": True}, {"d": lineage.MAX_COUNT + 1}, {"d": "1"}, {"": 1}, {},
    [["d", 1]], {f"d{n}": 1 for n in range(lineage.MAX_ENTRIES + 1)}])
def test_a_vector_no_fusevault_writes_is_refused_and_leaves_her_record(
        tmp_path: Path, vector: object) -> None:
    """Holds: a float, negative, zero, boolean, huge or string count, an empty device, no entry, no dict,
    1,025 entries: refused with an alarm (``lineage.of``), and her record is as it was."""
    laptop = _Device(tmp_path, "laptop")
    hers = laptop.sign(_share())
    assert laptop.takes(hers)
    before = (dict(laptop.fresh.seen), dict(laptop.fresh.tips))
    assert not laptop.takes({**hers, lineage.FIELD: vector})
    assert "replayed-grant" in laptop.alarms
    assert (laptop.fresh.seen, laptop.fresh.tips) == before
    assert laptop.takes(hers)


def test_a_whole_float_count_is_its_integer(tmp_path: Path) -> None:
    """Holds: 7.0 for 7 (one canonical form) is the same body, neither refused nor a replay."""
    laptop = _Device(tmp_path, "laptop")
    hers = laptop.sign(_share())
    assert laptop.takes(hers)
    rewritten = {**hers, lineage.FIELD: {d: float(n) for d, n in hers[lineage.FIELD].items()}}
    assert laptop.takes(rewritten) and not laptop.alarms.as_list()


def test_a_body_from_before_vectors_replayed_after_vectors_is_refused(tmp_path: Path) -> None:
    """Holds (downgrade): her pre-vector body, seen, then a vectored one: the old one back is a replay."""
    laptop, desktop = _Device(tmp_path, "laptop"), _Device(tmp_path, "desktop")
    old = {**_share(perm="WRITE"), freshness.FIELD: time.time_ns() // 1000 - 10**6}  # signed by older code
    assert laptop.takes(old) and desktop.takes(old)
    current = desktop.sign(_share(perm="READ"))
    assert laptop.takes(current)
    for device in (laptop, desktop):
        assert not device.takes(old)
        assert "replayed-grant" in device.alarms


def test_a_record_from_before_vectors_refuses_a_replay(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Holds: a state file with no ``tips`` (written before vectors) still refuses her older body, and takes
    her newer vectored one."""
    laptop = _Device(tmp_path, "laptop")
    old = {**_share(perm="WRITE"), freshness.FIELD: 100}
    newer = {**_share(perm="READ"), freshness.FIELD: 200}
    assert laptop.takes(old) and laptop.takes(newer)
    laptop.fresh.tips.clear()  # as the record from before vectors has it
    laptop.fresh.save()
    monkeypatch.setattr(freshness, "state_path", lambda *_: laptop.fresh.path)
    reopened = Freshness.open(laptop.fresh.key, tmp_path, "vault", laptop.alarms)
    laptop.fresh = reopened
    assert not laptop.takes(old)
    assert laptop.takes(laptop.sign(_share(perm="WRITE")))
    assert not laptop.takes(newer)


def test_a_revoked_grantee_cannot_bring_her_share_back_with_bodies_of_his_own(tmp_path: Path) -> None:
    """Holds: after her unshare, bob's own bodies under that id (the same vector and a later stamp, or one
    concurrent) never make her deleted share count again."""
    laptop = _Device(tmp_path, "laptop")
    hers = laptop.sign(_share(grantee=BOB))
    assert laptop.takes(hers)
    laptop.fresh.sweep(set())  # unshared
    same = {**_share(owner=BOB, grantee=BOB), freshness.FIELD: hers[freshness.FIELD] + 1,
            lineage.FIELD: dict(hers[lineage.FIELD])}
    apart = {**_share(owner=BOB, grantee=BOB), freshness.FIELD: hers[freshness.FIELD] + 2,
             lineage.FIELD: {"bob-device": 1}}
    for his in (apart, same):
        laptop.takes(his)
        assert not laptop.takes(hers)


def test_sharing_again_after_an_unshare_on_a_device_that_saw_it_counts(tmp_path: Path) -> None:
    """Holds: the unshare/re-share cycle where the sharing device saw the unshare: newer, no alarm; the
    first body, back, is a replay."""
    laptop, desktop = _Device(tmp_path, "laptop"), _Device(tmp_path, "desktop")
    first = laptop.sign(_share(perm="WRITE"))
    assert laptop.takes(first) and desktop.takes(first)
    laptop.unshares(first)
    desktop.fresh.sweep(set())  # the laptop's unshare, seen on the desktop: said there (round 28a (1))
    again = desktop.sign(_share(perm="READ"))
    assert laptop.takes(again) and desktop.takes(again)
    assert not laptop.alarms.as_list()
    assert [a["kind"] for a in desktop.alarms.as_list()] == ["share-missing"]
    assert not laptop.takes(first) and not desktop.takes(first)


# --- abuse of the round 12 (3) fix: a new signing after a deletion, never an unshare undone


def _reopened(device: _Device, monkeypatch: pytest.MonkeyPatch) -> None:
    """The device's record, saved and read back (what a new mount of it holds)."""
    device.fresh.save()
    monkeypatch.setattr(freshness, "state_path", lambda *_: device.fresh.path)
    device.fresh = Freshness.open(device.fresh.key, device.fresh.path.parent, "vault", device.alarms)


def test_a_body_she_signed_apart_before_the_unshare_served_after_it_is_refused(tmp_path: Path) -> None:
    """Holds (the trade of the (3) fix): her desktop shares notes.txt with carol (WRITE) while her laptop
    shares it too, neither seeing the other's; the server withholds the desktop's; she unshares on the
    laptop.  Served now, the desktop's body (stamped before the laptop saw the deletion) must not bring the
    share back: refused, with the concurrent alarm (a fix taking any body made apart after a deletion fails
    here)."""
    laptop, desktop = _Device(tmp_path, "laptop"), _Device(tmp_path, "desktop")
    withheld = desktop.sign(_share(perm="WRITE"))
    first = laptop.sign(_share(perm="READ"))
    assert laptop.takes(first)
    time.sleep(0.001)
    laptop.fresh.sweep(set())  # unshared on the laptop
    assert not laptop.takes(withheld)
    assert "concurrent-grant" in laptop.alarms
    assert not laptop.takes(first)  # and her unshared body stays a replay


def test_the_unshared_body_replayed_after_she_shares_again_elsewhere_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Holds: the laptop takes the desktop's new share after its own unshare (the (3) fix), the record read
    back from disk between each step; then the server puts the unshared WRITE body back: a replay, refused,
    and the new READ still counts; what the laptop signs next is above both (the desktop takes it)."""
    laptop, desktop = _Device(tmp_path, "laptop"), _Device(tmp_path, "desktop")
    first = laptop.sign(_share(perm="WRITE"))
    assert laptop.takes(first)
    laptop.fresh.sweep(set())
    _reopened(laptop, monkeypatch)  # when the deletion was seen is kept
    time.sleep(0.001)
    again = desktop.sign(_share(perm="READ"))
    assert desktop.takes(again) and laptop.takes(again)
    _reopened(laptop, monkeypatch)  # the deleted body's vector is kept
    assert not laptop.takes(first)
    assert "replayed-grant" in laptop.alarms
    assert laptop.takes(again)
    later = laptop.sign(_share(perm="READ,WRITE"))
    assert desktop.takes(later), desktop.alarms.as_list()
    assert lineage.compare(later[lineage.FIELD], first[lineage.FIELD]) is lineage.Order.NEWER
    for device in (laptop, desktop):
        assert not device.takes(first) and not device.takes(again)


@pytest.mark.parametrize("made", [JS_EXACT, 2**64, float("inf"), float("nan"), 1e300, True, None, "9" * 20])
def test_a_stamp_no_fusevault_signs_never_makes_a_body_a_new_signing_after_an_unshare(
        tmp_path: Path, made: object) -> None:
    """Holds: after her unshare on the laptop, a body made apart (a desktop that never saw the share) whose
    made_at_us is none fusevault signs (at or past 2**53, not finite, not an integer, absent) is not taken as
    a new signing: refused with an alarm, and the deletion stays."""
    laptop, desktop = _Device(tmp_path, "laptop"), _Device(tmp_path, "desktop")
    assert laptop.takes(laptop.sign(_share(perm="WRITE")))
    laptop.fresh.sweep(set())
    body = desktop.sign(_share(perm="READ"))
    body = {k: v for k, v in body.items() if k != freshness.FIELD}
    if made is not None:
        body[freshness.FIELD] = made
    assert not laptop.takes(body)
    assert laptop.alarms.as_list()
    assert laptop.fresh.seen[sharing.doc_id(FID, CAROL)][2]  # still deleted


@pytest.mark.parametrize("count", [float("inf"), float("nan"), lineage.MAX_COUNT + 1, 2**64, 1e300])
def test_a_vector_count_no_fusevault_signs_never_makes_a_body_a_new_signing_after_an_unshare(
        tmp_path: Path, count: object) -> None:
    """Holds: the same with the body's own device count huge or not finite: refused as malformed, and her
    record (deletion, tips) is as it was."""
    laptop, desktop = _Device(tmp_path, "laptop"), _Device(tmp_path, "desktop")
    assert laptop.takes(laptop.sign(_share(perm="WRITE")))
    laptop.fresh.sweep(set())
    before = (dict(laptop.fresh.seen), dict(laptop.fresh.tips), dict(laptop.fresh.deleted_at))
    time.sleep(0.001)
    body = desktop.sign(_share(perm="READ"))
    body[lineage.FIELD] = {desktop.fresh.device: count}
    assert not laptop.takes(body)
    assert "replayed-grant" in laptop.alarms
    assert (laptop.fresh.seen, laptop.fresh.tips, laptop.fresh.deleted_at) == before


def test_another_users_body_after_her_unshare_leaves_her_share_deleted(tmp_path: Path) -> None:
    """Holds: bob's own body at her share id after her unshare (a vector made apart, the largest stamp a
    server holds: a new signing by the (3) rule, were it hers) moves only his record: her unshared body,
    back, is still a replay, and her deletion stays."""
    laptop = _Device(tmp_path, "laptop")
    hers = laptop.sign(_share(grantee=BOB))
    assert laptop.takes(hers)
    laptop.fresh.sweep(set())
    his = {**_share(owner=BOB, grantee=BOB), freshness.FIELD: JS_EXACT - 1, lineage.FIELD: {"bob-device": 1}}
    laptop.takes(his)
    assert laptop.fresh.seen[sharing.doc_id(FID, BOB)][2]
    assert not laptop.takes(hers)


# --- abuse of the round 12 (9) fix: a copied record signs under a new id; the original never grows one


def test_a_record_copied_to_another_machine_at_the_same_path_signs_under_a_new_id(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The state directory restored on a new machine (same path, another machine id): its first body is
    signed under a new device id, above all the record saw."""
    machine = tmp_path / "machine-id"
    machine.write_text("1" * 32 + "\n")
    monkeypatch.setattr(device_ids, "MACHINE_IDS", (str(machine),))
    laptop = _Device(tmp_path, "laptop")
    first = laptop.sign(_share(perm="READ"))
    laptop.fresh.save()
    machine.write_text("2" * 32 + "\n")  # the same record, read on the new machine
    monkeypatch.setattr(freshness, "state_path", lambda *_: laptop.fresh.path)
    desktop = Freshness.open(laptop.fresh.key, tmp_path, "vault", laptop.alarms)
    again = stamp(desktop, _share(perm="WRITE"))
    assert desktop.device != laptop.fresh.device
    assert set(again[lineage.FIELD]) == {laptop.fresh.device, desktop.device}
    assert lineage.compare(again[lineage.FIELD], first[lineage.FIELD]) is lineage.Order.NEWER


def test_a_record_read_back_where_it_was_written_keeps_its_id(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Holds: the record reopened on its own machine and path (each mount, each reboot), and one from before
    the binding (no "bound"), keep their device id: her vectors never grow an entry for nothing."""
    laptop = _Device(tmp_path, "laptop")
    signed = [laptop.sign(_share(perm="READ"))]
    for _ in range(3):
        _reopened(laptop, monkeypatch)
        signed.append(laptop.sign(_share(perm="READ")))
    laptop.fresh.save()  # as a record from before the binding: without it ...
    plain = json.loads(laptop.fresh.key.unseal_device("grants", laptop.fresh.path.name,
                                                      laptop.fresh.path.read_bytes()))
    del plain["bound"]
    laptop.fresh.path.write_bytes(laptop.fresh.key.seal_device("grants", laptop.fresh.path.name,
                                                               json.dumps(plain).encode()))
    laptop.fresh = Freshness.open(laptop.fresh.key, tmp_path, "vault", laptop.alarms)  # ... read back
    signed.append(laptop.sign(_share(perm="READ")))
    assert [list(s[lineage.FIELD]) for s in signed] == [[laptop.fresh.device]] * 5
    assert [s[lineage.FIELD][laptop.fresh.device] for s in signed] == [1, 2, 3, 4, 5]


def test_a_settings_record_copied_elsewhere_signs_under_a_new_id(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same for her settings (vault/model/confirmed.py): the state directory copied for the desktop, its
    next settings body is signed under a new device id, while the laptop's keeps its own."""
    key, root = MasterKey(ALICE, b"\1" * 32), tmp_path / "vault"
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "laptop"))
    first = confirmed.next_vector(root, key)
    assert confirmed.next_vector(root, key) == first  # the same id, read again
    shutil.copytree(tmp_path / "laptop", tmp_path / "desktop")
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "desktop"))
    copied = confirmed.next_vector(root, key)
    assert set(copied) != set(first)
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "laptop"))
    assert confirmed.next_vector(root, key) == first


# --- closed files flushed in batches (vault/files/closed.py, merge of h-flush): the order save_all promises


def test_flush_all_returns_only_once_the_batch_in_flight_is_on_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    unmounting = threading.Event()  # the batch's syncfs is slow; it ends once unmount has begun
    monkeypatch.setattr(closed, "flush_paths", lambda paths: unmounting.wait(30))
    files = closed.ClosedFiles()
    left: list = []

    async def main() -> None:
        for n in range(closed.FLUSH_BATCH):  # the 1,024th close starts a batch (a release handler awaits it)
            files.add(f"/vault/files/{n:04d}.vf", True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(files.flush_some)
            while not files.in_flight:
                await trio.sleep(0)
            unmounting.set()
            await files.flush_all()  # save_all: "records first: the log that names them is flushed next"
            left.extend(files.in_flight)  # still being flushed: the store's log would now be synced first

    trio.run(main)
    assert not left


def test_settings_she_signs_after_a_far_ahead_vectored_body_are_the_newest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Holds: the same far-ahead stamp on a body WITH a vector: her next body (dated 'now', below it) is
    above it by its vector: the newest; the far-ahead one, replayed, is not."""
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))
    key, root = MasterKey(ALICE, b"\1" * 32), tmp_path / "vault"
    ahead = time.time_ns() // 1000 + 2 * settings.MAX_AHEAD_US
    old = {"_id": ALICE, "type": "UserDetails", **settings.Settings(source_dir_to_watch="/in").as_dict(),
           settings.STAMP: ahead, lineage.FIELD: {"laptop": 3}}
    assert confirmed._newest_seen(root, key, old)
    store = _UserStore(old)
    settings.save(store, ALICE, settings.Settings(), lambda doc: doc, confirmed.next_vector(root, key))
    assert store.doc[settings.STAMP] < ahead
    assert confirmed._newest_seen(root, key, store.doc)
    assert not confirmed._newest_seen(root, key, old)


@pytest.mark.parametrize("far", [2**60, JS_EXACT - 1, JS_EXACT, float("inf"), float("nan"), True, "9" * 30])
def test_a_far_stamp_planted_without_a_vector_leaves_her_stamps_exact_and_ordered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, far: object) -> None:
    """Holds (abuse of the (8) fix, which follows a vector-less body's stamp however far ahead): the store's
    writer plants her user document without a vector, stamped at or past 2**53, not finite, or not an
    integer.  What she signs then is stamped with an integer a server holds exactly (at most 2**53-1), and
    her next body is newer than it (by its vector), the one before a replay."""
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))
    key, root = MasterKey(ALICE, b"\1" * 32), tmp_path / "vault"
    store = _UserStore({"_id": ALICE, "type": "UserDetails", **settings.Settings().as_dict(),
                        settings.STAMP: far})
    bodies = []
    for watched in ("/in", None):
        settings.save(store, ALICE, settings.Settings(source_dir_to_watch=watched), lambda doc: doc,
                      confirmed.next_vector(root, key))
        bodies.append(store.doc)
        stamp_ = store.doc[settings.STAMP]
        assert type(stamp_) is int and stamp_ < JS_EXACT, stamp_
        assert confirmed._newest_seen(root, key, store.doc)
    assert not confirmed._newest_seen(root, key, bodies[0])


def test_a_batch_that_failed_to_flush_is_not_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    def eio(paths: dict[str, bool]) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    flushed: list[str] = []
    files = closed.ClosedFiles()
    outcome: list[str] = []

    async def main() -> None:
        for n in range(closed.FLUSH_BATCH):
            files.add(f"/vault/files/{n:04d}.vf", True)
        monkeypatch.setattr(closed, "flush_paths", eio)
        with pytest.raises(OSError):
            await files.flush_some()  # the 1,024th close: its release's error goes nowhere
        monkeypatch.setattr(closed, "flush_paths", lambda paths: flushed.extend(paths))
        try:
            await files.flush_all()  # save_all at unmount or lock
            outcome.append("flushed again" if "/vault/files/0000.vf" in flushed else "forgotten")
        except OSError:
            outcome.append("reported")

    trio.run(main)
    assert outcome != ["forgotten"]


def test_following_the_default_on_her_desktop_after_a_change_on_her_laptop_is_no_alarm(
        vault: Path, tmp_path: Path) -> None:
    """The real commands, sequential use: she sets her policy on the laptop, her desktop shows it, she
    changes it on the laptop (synced to the desktop, which runs no gc meanwhile), then on the desktop she
    chooses to follow the vault's default.  Safe: the laptop follows the default too, with no alarm."""
    desktop = {"FUSEVAULT_STATE_DIR": str(tmp_path / "desktop-state")}

    def retention_on(env: dict | None, *args: str) -> dict:
        done = fusevault("retention", "--vault", vault, "--json", *args, env=env)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    retention_on(None, "--keep-all", "30")
    assert retention_on(desktop)["source"] == retention.OWN
    retention_on(None, "--keep-all", "60")
    retention_on(desktop, "--follow-default")
    shown = retention_on(None)
    assert shown["source"] not in retention.UNKNOWN, shown


def test_adding_a_member_never_re_signs_a_replayed_group_with_a_removed_member(vault: Path) -> None:
    """The real commands: alice's group team has bob; she removes him (`group member remove`).  The store's
    writer puts the older signed team back (bob in it).  She adds carol (`group member add`).  Safe: bob is
    not in the team she signs (the command refuses the replay, or builds on the newest body she saw)."""
    add_users(vault, "bob", "carol")
    add_team(vault, "bob")
    older = group_doc(vault, "team")
    bob = older["users"].keys() - {older["owner"]}
    _admin(vault, "group", "member", "remove", "team", "bob")
    adversary.put(vault, older)  # the replay: refused by every reader of grants, but not by `member add`
    result = fusevault("group", "member", "add", "team", "carol", "--perm", "READ",
                       env={"FUSEVAULT_VAULT": str(vault)}, passphrase=PASSPHRASE)
    now = group_doc(vault, "team")
    if result.returncode == Replayed.exit_code:  # refused, with one line saying why, and nothing re-signed
        assert "replay" in result.stderr and "Traceback" not in result.stderr, result.stderr
        del now["_rev"]
        assert now == {k: v for k, v in older.items() if k != "_rev"}
    else:  # or built on the newest body she saw
        assert result.returncode == 0, result.stderr
        assert not bob & now["users"].keys()


def test_config_set_over_a_replayed_user_document_applies_none_of_its_older_values(vault: Path) -> None:
    """Holds (the settings analogue of the group re-signing above): she sets a 10-minute unlock; the
    store's writer puts her older user document back (the default TTL); she sets another key.  The body
    she signs then carries the older TTL with a vector above all (re-signed: a lost update, no alarm),
    but the TTL that applies stays 10 minutes (a longer one only waits for `config confirm`)."""
    _set(vault, "settle_seconds", "3")
    older = _user(vault, "alice")
    _set(vault, "passphrase_expiry_ttl", "10min")
    adversary.put(vault, older)
    _set(vault, "settle_seconds", "4")
    assert _user(vault, "alice")["passphrase_expiry_ttl"] == older["passphrase_expiry_ttl"]  # re-signed
    shown = _config(vault)
    assert shown["passphrase_expiry_ttl"] == {"ttl": "10", "unit": "min"}, shown
