"""Rollback detection (vault/model/ledger.py): older states and vanished rows are
reported, in ``fusevault status`` and the mount's log, and an older state
offered while mounted is not taken in; concurrent edits on two devices never
raise an alarm.

The attacker rewrites the vault's store (tests/adversary.py) or the CouchDB
database it syncs with; they hold no key.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import adversary
import pytest
from conftest import (
    PouchServer,
    first_device,
    fusevault,
    laptop_and_desktop,
    mount_status,
    mounted,
    remount,
    settled,
    wait_for,
)

# One scene stops the server and starts it again: the devices retry it every second (conftest.py).
pytestmark = pytest.mark.usefixtures("quick_retry")


def alarms(mountpoint: Path) -> list[dict]:
    return mount_status(mountpoint)["alarms"]


def status_text(mountpoint: Path) -> str:
    result = fusevault("status", mountpoint, passphrase=None)
    assert result.returncode == 0, result.stderr
    return result.stdout


def logged(text: str) -> bool:
    logs = Path(os.environ["FUSEVAULT_STATE_DIR"]) / "logs"
    return any(text in p.read_text(errors="replace") for p in logs.glob("mount-*.log"))


def root_fid(vault: Path) -> str:
    (user,) = adversary.docs(vault, "UserDetails")
    return user["root"]


def nodes(vault: Path) -> dict[str, dict]:
    return {d["_id"]: d for d in adversary.docs(vault, "node")}


def changed(before: dict[str, dict], after: dict[str, dict], skip: str) -> list[str]:
    return [fid for fid, doc in after.items() if fid != skip and before.get(fid, {}).get("enc") != doc["enc"]]


def no_file_keys_for_strangers(vault: Path) -> None:
    # Nothing is ever sealed to anyone but alice here: no share, no FileKey.
    assert adversary.docs(vault, "Share") == []
    assert adversary.docs(vault, "FileKey") == []


def test_an_older_revision_of_one_file_put_back_in_the_store_is_reported(vault: Path, tmp_path: Path) -> None:
    """Her own older document of this device's put back: said, and not taken in (vault/tree/rebuilding.py
    ``replays_refused``, attack round 18 (7, 8)): the file keeps its newer contents, and the unlock
    commits them over the replay, so the next mount says nothing.  (Before: the older state was shown.)"""
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "report.txt").write_bytes(b"first draft")
        (mnt / "other.txt").write_bytes(b"untouched")
    old = nodes(vault)
    with mounted(vault, mnt):
        (mnt / "report.txt").write_bytes(b"final, signed off")
    new = nodes(vault)
    (fid,) = changed(old, new, root_fid(vault))
    adversary.put(vault, old[fid])  # the older body, as a new revision
    with mounted(vault, mnt):
        found = [a for a in alarms(mnt) if a["kind"] == "rollback"]
        assert [a["subject"] for a in found] == [fid]
        assert "report.txt" in found[0]["text"]
        assert "WARNING" in status_text(mnt) and fid in status_text(mnt)
        assert logged(f"rollback: an older state of /report.txt ({fid})")
        assert (mnt / "other.txt").read_bytes() == b"untouched"
        assert (mnt / "report.txt").read_bytes() == b"final, signed off"
        (mnt / "new.txt").write_bytes(b"still writes")
    with mounted(vault, mnt):
        assert alarms(mnt) == []
        assert (mnt / "report.txt").read_bytes() == b"final, signed off"
    no_file_keys_for_strangers(vault)


def test_a_server_serving_an_older_revision_is_refused_while_mounted(tmp_path: Path) -> None:
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop = first_device(url, tmp_path)
        couch = adversary.Server(url)
        with mounted(laptop, tmp_path / "a") as a:
            (a / "plan.txt").write_bytes(b"plan A")
            wait_for(lambda: settled(a), "the first push")
            old = {d["_id"]: d for d in couch.all("node")}
            (a / "plan.txt").write_bytes(b"plan B, the real one")
            wait_for(lambda: settled(a), "the second push")
            new = {d["_id"]: d for d in couch.all("node")}
            (fid,) = changed(old, new, root_fid(laptop))
            couch.put(old[fid])  # the server offers the older state as the newest revision
            wait_for(lambda: any(x["kind"] == "rollback" for x in alarms(a)), "the rollback to be reported")
            (alarm,) = [x for x in alarms(a) if x["kind"] == "rollback"]
            assert alarm["subject"] == fid and "plan.txt" in alarm["text"]
            assert fid in status_text(a)
            assert logged(f"rollback: an older state of /plan.txt ({fid})")
            assert (a / "plan.txt").read_bytes() == b"plan B, the real one"  # not taken in
            (a / "plan.txt").write_bytes(b"plan C")  # the next save goes on top of it
            wait_for(lambda: settled(a), "the third push")
            assert (a / "plan.txt").read_bytes() == b"plan C"
            (a / "more.txt").write_bytes(b"still serving")
            assert (a / "more.txt").read_bytes() == b"still serving"
        assert couch.all("FileKey") == [] and couch.all("Share") == []
    finally:
        server.stop()


def test_a_server_serving_an_older_revision_is_refused_at_the_next_mount_too(tmp_path: Path) -> None:
    """As above, but she writes nothing after: the refused replay must not stay the local store's
    current row (attack round 18 (7)).  Her newer state is committed over it at once (and pushed), so
    her next mount shows plan B, with nothing to refuse or say."""
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop = first_device(url, tmp_path)
        couch = adversary.Server(url)
        with mounted(laptop, tmp_path / "a") as a:
            (a / "plan.txt").write_bytes(b"plan A")
            wait_for(lambda: settled(a), "the first push")
            old = {d["_id"]: d for d in couch.all("node")}
            (a / "plan.txt").write_bytes(b"plan B, the real one")
            wait_for(lambda: settled(a), "the second push")
            new = {d["_id"]: d for d in couch.all("node")}
            (fid,) = changed(old, new, root_fid(laptop))
            replay = couch.put(old[fid])
            wait_for(lambda: any(x["kind"] == "rollback" for x in alarms(a)), "the rollback to be reported")
            wait_for(lambda: settled(a) and couch.get(fid)["_rev"] not in (replay, new[fid]["_rev"]),
                     "her newer state pushed over the replay")
            assert couch.get(fid)["enc"] != old[fid]["enc"]
            assert (a / "plan.txt").read_bytes() == b"plan B, the real one"
        assert adversary.get(laptop, fid)["_rev"] != replay
        with mounted(laptop, tmp_path / "a") as a:
            assert (a / "plan.txt").read_bytes() == b"plan B, the real one"
            assert alarms(a) == []
    finally:
        server.stop()


def test_a_deletion_and_a_restore_on_her_two_devices_raise_no_alarm(tmp_path: Path) -> None:
    """False-alarm guard for the refused replays of her own deletions (vault/tree/rebuilding.py
    ``deletion_replayed``): the laptop deletes and restores plan.txt (its own numbers grow); her
    desktop then deletes it (the desktop's numbers, lower): taken, at once and at the laptop's next
    mount (in the trash), with no alarm; the laptop restores it again: the desktop takes that."""
    with laptop_and_desktop(tmp_path, ("plan.txt",)) as (_server, laptop, a, desktop):
        os.unlink(a / "plan.txt")
        assert fusevault("restore", a / "plan.txt").returncode == 0
        (a / "plan.txt").write_bytes(b"restored on the laptop")
        wait_for(lambda: settled(a), "the laptop's push")
        with mounted(desktop, tmp_path / "b") as b:
            wait_for(lambda: (b / "plan.txt").exists() and (b / "plan.txt").read_bytes()
                     == b"restored on the laptop", "the desktop's pull")
            os.unlink(b / "plan.txt")
            wait_for(lambda: settled(b), "the desktop's push")
            wait_for(lambda: not (a / "plan.txt").exists(), "the laptop to take the deletion")
            with remount(laptop, a):
                assert os.listdir(a) == []
                assert alarms(a) == []
                assert fusevault("restore", a / "plan.txt").returncode == 0
                wait_for(lambda: settled(a), "the laptop's restore pushed")
                wait_for(lambda: (b / "plan.txt").exists(), "the desktop to take the restore")
            assert alarms(b) == []
        with mounted(laptop, a):  # the first remount's end unmounted it
            assert sorted(os.listdir(a)) == ["plan.txt"]
            assert alarms(a) == []


def test_a_rolled_back_store_is_one_alarm_and_the_mount_serves(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        for i in range(3):
            (mnt / f"doc{i}.txt").write_bytes(b"as it was")
    adversary.snapshot(vault, tmp_path / "snap")
    with mounted(vault, mnt):
        for i in range(2):
            (mnt / f"doc{i}.txt").write_bytes(b"newer words")
        os.unlink(mnt / "doc2.txt")  # deleted, and gone from the trash for good
        gc = fusevault("gc", mnt, "--as-of", "2099-01-01", "--json")
        assert gc.returncode == 0, gc.stderr
        (mnt / "later.txt").write_bytes(b"made after the snapshot")
    assert len(adversary.docs(vault, "node")) == 4  # the root, doc0, doc1, later.txt
    adversary.roll_back(vault, tmp_path / "snap")
    with mounted(vault, mnt):
        found = alarms(mnt)
        assert [a["kind"] for a in found] == ["store-rollback"], found
        # Two files edited, one deleted for good (back in an older state), and
        # the folder that gained later.txt; later.txt gone.
        assert "4 file(s) in an older state, 1 file(s) gone" in found[0]["text"]
        assert "store is older than this device has seen" in status_text(mnt)
        assert logged("4 file(s) in an older state, 1 file(s) gone")
        assert sorted(os.listdir(mnt)) == ["doc0.txt", "doc1.txt", "doc2.txt"]
        (mnt / "after.txt").write_bytes(b"serving")
        assert (mnt / "after.txt").read_bytes() == b"serving"
    no_file_keys_for_strangers(vault)


def test_a_deleted_node_row_is_reported_as_vanished(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "keep.txt").write_bytes(b"kept")
    before = nodes(vault)
    with mounted(vault, mnt):
        (mnt / "victim.txt").write_bytes(b"to be made to vanish")
    (fid,) = [f for f in nodes(vault) if f not in before]
    adversary.delete_row(vault, fid)
    with mounted(vault, mnt):
        found = alarms(mnt)
        assert [(a["kind"], a["subject"]) for a in found] == [("vanished", fid)]
        assert fid in status_text(mnt)
        assert logged(f"file {fid} vanished from the store without a deletion")
        assert (mnt / "keep.txt").read_bytes() == b"kept"
        (mnt / "new.txt").write_bytes(b"still writes")
    no_file_keys_for_strangers(vault)


def test_deleting_and_emptying_the_trash_raise_no_alarm(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        for name in ("a.txt", "b.txt"):
            (mnt / name).write_bytes(b"x")
    with mounted(vault, mnt):
        os.unlink(mnt / "a.txt")
        gc = fusevault("gc", mnt, "--as-of", "2099-01-01", "--json")
        assert gc.returncode == 0, gc.stderr
        os.unlink(mnt / "b.txt")  # in the trash, not collected
    assert len(adversary.docs(vault, "node")) == 2  # the root and b.txt: a.txt's is a tombstone
    with mounted(vault, mnt):
        assert alarms(mnt) == []
        with remount(vault, mnt):
            assert alarms(mnt) == []


def test_concurrent_edits_on_two_devices_raise_no_alarm(tmp_path: Path) -> None:
    with laptop_and_desktop(tmp_path, ("same.txt", "mine.txt", "yours.txt")) as (server, laptop, a, desktop):
        with mounted(desktop, tmp_path / "b") as b:
            for round_ in range(2):
                server.kill()  # apart from here
                (a / "same.txt").write_bytes(b"the laptop's words %d" % round_)
                (a / "mine.txt").write_bytes(b"laptop %d" % round_)
                time.sleep(0.05)
                (b / "same.txt").write_bytes(b"the desktop's words %d" % round_)
                (b / "yours.txt").write_bytes(b"desktop %d" % round_)
                server.start()

                def agreed(r: int = round_) -> bool:
                    return (settled(a) and settled(b)
                            and sorted(os.listdir(a)) == sorted(os.listdir(b))
                            and (a / "mine.txt").read_bytes() == (b / "mine.txt").read_bytes()
                            and (b / "yours.txt").read_bytes() == (a / "yours.txt").read_bytes()
                            and (a / "same.txt").read_bytes() == b"the desktop's words %d" % r
                            and (b / "same.txt").read_bytes() == b"the desktop's words %d" % r)

                wait_for(agreed, lambda: f"both devices to agree: {os.listdir(a)} {os.listdir(b)}")
                # Edits in turn, each on top of the other's: no alarm either.
                (a / "same.txt").write_bytes(b"laptop again")
                wait_for(lambda: (b / "same.txt").read_bytes() == b"laptop again", "the laptop's edit")
                (b / "same.txt").write_bytes(b"the desktop's words %d" % round_)
                wait_for(lambda r=round_: (a / "same.txt").read_bytes() == b"the desktop's words %d" % r,
                         "the desktop's edit")
            assert alarms(a) == [] and alarms(b) == []
            with remount(desktop, b):
                assert alarms(b) == []
        with remount(laptop, a):
            assert alarms(a) == []
            assert (a / "mine.txt").read_bytes() == b"laptop 1"


def test_a_node_whose_owner_is_changed_and_signature_stripped_is_reported(
        vault: Path, tmp_path: Path) -> None:
    """Attack review: the clear ``owner`` of alice's file set to another id and its ``sig`` removed:
    the file this device knew as hers is judged anyway, refused, and said."""
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "keep.txt").write_bytes(b"kept")
    before = nodes(vault)
    with mounted(vault, mnt):
        (mnt / "victim.txt").write_bytes(b"not to vanish silently")
    (fid,) = [f for f in nodes(vault) if f not in before]
    forged = {k: v for k, v in adversary.get(vault, fid).items() if k != "sig"}
    forged["owner"] = "0" * 32
    adversary.put(vault, forged)
    with mounted(vault, mnt):
        assert fid in [a["subject"] for a in alarms(mnt)]
        assert any("WARNING" in line and fid in line for line in status_text(mnt).splitlines())
        assert logged(fid)
        assert (mnt / "keep.txt").read_bytes() == b"kept"
        (mnt / "new.txt").write_bytes(b"still writes")
    no_file_keys_for_strangers(vault)


def test_a_file_of_the_users_that_now_names_another_owner_is_reported(vault: Path, tmp_path: Path) -> None:
    """Another user of the vault signs alice's node in their own name (a valid document of theirs):
    alice's device, which saw the file as hers, says so instead of taking it for a share that ended."""
    from mount.test_trust_writes import BOB, _admin, _key, _signed

    mnt = tmp_path / "mnt"
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    with mounted(vault, mnt):
        (mnt / "keep.txt").write_bytes(b"kept")
    before = nodes(vault)
    with mounted(vault, mnt):
        (mnt / "victim.txt").write_bytes(b"not to vanish silently")
    (fid,) = [f for f in nodes(vault) if f not in before]
    bob = _key(vault, "bob", BOB)
    doc = {k: v for k, v in adversary.get(vault, fid).items() if k not in ("sig", "_rev")}
    adversary.put(vault, _signed({**doc, "owner": bob.user_id}, bob))
    with mounted(vault, mnt):
        assert fid in [a["subject"] for a in alarms(mnt)]
        assert any("WARNING" in line and fid in line for line in status_text(mnt).splitlines())
        assert logged(fid)
        assert (mnt / "keep.txt").read_bytes() == b"kept"
        (mnt / "new.txt").write_bytes(b"still writes")


def test_a_file_rolled_back_into_a_shared_folder_under_an_older_key_gets_no_key_sealed_there(
        vault: Path, tmp_path: Path) -> None:
    """secret.txt sat in proj/, then moved to alice's root, was shared with bob and unshared (a new key);
    only then is proj shared with bob.  The store writer puts back secret.txt's document from proj/ under
    its older key: alice's device gives it a new key (a rollback under a revoked key), and, at that and at
    the next unlock (the new key's commit is this device's own), seals it to no one by proj's share."""
    from mount.test_trust_writes import BOB, _admin, _node_fid, _user

    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    bob = _user(vault, "bob")["_id"]
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "proj").mkdir()
        (mnt / "proj" / "secret.txt").write_text("while it sat in proj")
    fid = _node_fid(vault, "alice", "secret.txt")
    old = adversary.get(vault, fid)
    with mounted(vault, mnt):
        (mnt / "proj" / "secret.txt").rename(mnt / "secret.txt")
        assert fusevault("share", mnt / "secret.txt", "--with", "bob", "--perm", "READ").returncode == 0
        assert fusevault("unshare", mnt / "secret.txt", "--with", "bob").returncode == 0
        (mnt / "proj" / "plan.txt").write_text("the plan bob may read")
        assert fusevault("share", mnt / "proj", "--with", "bob", "--perm", "READ").returncode == 0

    def bobs_keys() -> list[Path]:
        return [p for p in vault.rglob(f"*{fid}*.vfkey") if bob in str(p)] + \
            [p for p in vault.rglob(f"{bob}.vfkey") if fid in str(p)]

    assert not bobs_keys()
    adversary.put(vault, old)
    for first in (True, False):
        with mounted(vault, mnt):
            assert not first or fid in [a["subject"] for a in alarms(mnt)]
            assert (mnt / "proj" / "plan.txt").exists()
        assert not bobs_keys(), "secret.txt's key was sealed to bob by the folder its older state names"
