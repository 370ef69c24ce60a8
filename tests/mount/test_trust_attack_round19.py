"""Attack round 19 on issue 22 (the authenticated vault): PLACEHOLDER, docstring written at the end."""

from __future__ import annotations

from pathlib import Path

import adversary
import pytest
from conftest import PASSPHRASE, docs_of, first_device, fusevault, mounted, new_device, settled, wait_for
from services.test_trust_attack_round4 import _alarms

from mount import test_shared_mount as shared_mount
from mount.test_recovery_key import _init_with_words, _recover
from mount.test_shared_mount import SECRETS
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


@pytest.mark.xfail(strict=True, reason="hole 1: a forged keys_seq is trusted before her signature is checked "
                   "(key_memory.newest): her older body, relabelled, brings the old passphrase back")
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
            said = [a for a in _alarms(tmp_path / "mnt") if "keys" in a["subject"] or a["kind"] == "forged"]
        finally:
            fusevault("unmount", tmp_path / "mnt", passphrase=None)
        raise AssertionError(f"the leaked passphrase opens her vault again ({plan!r}; said: {said})")
    assert opened.returncode == 3, opened.stderr
    with mounted(vault, tmp_path / "mnt", passphrase=NEW) as mnt:
        assert (mnt / "plan.txt").read_bytes() == b"her plan"


@pytest.mark.xfail(strict=True, reason="hole 1: a forged keys_seq is trusted (key_memory.newest): her older "
                   "body relabelled locks her new passphrase out on the device that made it")
def test_her_older_keys_relabelled_with_a_higher_keys_seq_do_not_lock_her_new_passphrase_out(
        vault: Path, tmp_path: Path) -> None:
    before = _her_doc(vault)
    changed = fusevault("passwd", vault, env={"FUSEVAULT_NEW_PASSPHRASE": NEW})
    assert changed.returncode == 0, changed.stderr
    adversary.put(vault, {**before, "keys_seq": 1000})
    assert _mount_status(vault, tmp_path / "mnt", passphrase=NEW) == 0, "her new passphrase opens nothing"


@pytest.mark.xfail(strict=True, reason="hole 1: a forged keys_seq is trusted (key_memory.newest): her body "
                   "from before the revocation, relabelled, makes the revoked words reset her passphrase")
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


@pytest.mark.xfail(strict=True, reason="hole 2: a forged keys_seq of 2**53-1 caps her sequence (next_seq): "
                   "every later passwd signs the same number, so any of them replayed is taken quietly")
def test_a_forged_top_keys_seq_does_not_let_a_later_passwd_be_replayed(vault: Path, tmp_path: Path) -> None:
    adversary.put(vault, {**_her_doc(vault), "keys_seq": 2**53 - 1})  # her own fields: she unlocks as ever
    first = fusevault("passwd", vault, env={"FUSEVAULT_NEW_PASSPHRASE": NEW})
    assert first.returncode == 0, first.stderr
    leaked = _her_doc(vault)  # genuinely signed by her, NEW's wrapping
    second = fusevault("passwd", vault, passphrase=NEW, env={"FUSEVAULT_NEW_PASSPHRASE": "a third one"})
    assert second.returncode == 0, second.stderr
    assert _her_doc(vault)["keys_seq"] == leaked["keys_seq"] == 2**53 - 1
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


@pytest.mark.xfail(strict=True, reason="hole 3: the epoch a group owner's request names is the clear one the "
                   "store shows (sharing._clear_epoch): a forged one makes his genuine request replayable")
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
        f"{[a for a in found if a['subject'] == f'rotate-{fid}']})")


@pytest.mark.xfail(strict=True, reason="hole 4: keys_seq orders key changes of two devices made apart as if "
                   "one followed the other: a passwd on a device that never saw the revocation undoes it")
def test_a_recovery_key_revoked_on_the_laptop_stays_revoked_after_a_passwd_on_the_desktop(
        couch, tmp_path: Path) -> None:
    url, _ = couch
    laptop = tmp_path / "laptop"
    words = _init_with_words(laptop)
    assert fusevault("peer", "add", "server", url, "--vault", laptop, passphrase=None).returncode == 0
    with mounted(laptop, tmp_path / "a") as a:
        wait_for(lambda: settled(a), "the first push")
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
        said = [x for x in _alarms(a) if x["subject"].startswith("keys ")]
    thief = _recover(laptop, words, "the thief's passphrase")
    assert thief.returncode != 0, f"the words she revoked on this device open her vault again (said: {said})"


@pytest.mark.xfail(strict=True, reason="hole 5: two genuine key changes made apart: the one the sync keeps is"
                   " called a rollback on the other device, which keeps its own (the devices disagree)")
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
    with mounted(laptop, tmp_path / "a", passphrase=THIRD) as a:
        wait_for(lambda: (adversary.get(laptop, user_id) or {}).get("keys_seq") == 1, "the desktop's body")
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


@pytest.mark.xfail(strict=True, reason="hole 3: a group owner's signed request names any epoch (share_ops."
                   "_request checks only that it is a whole number): one above hers is replayable for ever")
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
@pytest.mark.xfail(strict=True, reason="hole 6: a seat is bound to the user the map named at its uid's first "
                   "unlock (fs/shared.py _seat_for) and never looked at again: a claim planted then holds it")
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


@pytest.mark.xfail(strict=True, reason="hole 7: sharing.rotations writes no request for a file whose "
                   "rotate-<fid> exists: a store writer's unsigned one stands in for the owner's")
def test_a_forged_request_planted_before_a_members_removal_does_not_stop_the_rekey(
        vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    fid = _crew_sharing_her_plan(vault, mnt)
    dek = _alice_dek(vault, fid)
    adversary.put(vault, {"_id": f"rotate-{fid}", "type": "Rotation", "owner": _user(vault, "alice")["_id"],
                          "fid": fid, "epoch": adversary.get(vault, fid)["epoch"]})  # unsigned: refused
    _admin(vault, "group", "member", "remove", "crew", "carol", passphrase=BOB)  # genuine, by crew's owner
    with mounted(vault, mnt):
        pass
    assert _alice_dek(vault, fid) != dek, "carol, removed from crew, still holds the key of what alice writes"
