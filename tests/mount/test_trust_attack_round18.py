"""Attack round 18 on issue 22 (the authenticated vault).

(Docstring filled in as the round goes: holes most severe first, then what held.)
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
from conftest import PASSPHRASE, PouchServer, first_device, fusevault, mounted, settled, wait_for

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


def _alarms(mountpoint: Path) -> list[dict]:
    result = fusevault("status", mountpoint, "--json", passphrase=None)
    assert result.returncode == 0, result.stderr
    (mount,) = json.loads(result.stdout)["mounts"]
    return mount["alarms"]


@pytest.mark.xfail(strict=True, reason="hole: paths.state_dir() takes a folder the user owns for root's "
                   "state; its logs link is followed and root writes where the user points it")
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


@pytest.mark.xfail(strict=True, reason="hole: root's rollback ledger (pins, grants) under sudo -E live in a "
                   "folder the user owns: she moves them away and a rolled-back store is taken silently")
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


@pytest.mark.xfail(strict=True, reason="hole: share_ops.resume acts on any Rotation document (unsigned, any "
                   "id): a forged one naming her root gives every file of hers a new key at each unlock")
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


@pytest.mark.xfail(strict=True, reason="hole: share_ops.resume looks up a Rotation's fid as it is: a list "
                   "raises TypeError out of the unlock (sessions._settle_shares catches VaultError only)")
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


@pytest.fixture
def couch(tmp_path: Path) -> Iterator[tuple[str, adversary.Server]]:
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        yield url, adversary.Server(url)
    finally:
        server.stop()


@pytest.mark.xfail(strict=True, reason="hole: a Rotation document from the sync server is acted on (arrivals "
                   "._reshare -> share_ops.resume): her whole tree gets new keys while she works")
def test_the_servers_rotation_document_rekeys_nothing_while_she_is_mounted(
        couch: tuple[str, adversary.Server], tmp_path: Path) -> None:
    from mount.test_trust_attack_round4 import _alice_dek

    url, server = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        wait_for(lambda: settled(a), "the first push")
        before = {d["_id"] for d in server.all("node")}
        (a / "plan.txt").write_bytes(b"her plan")
        wait_for(lambda: settled(a), "the file pushed")
        (fid,) = {d["_id"] for d in server.all("node")} - before
        alice = [u for u in server.all("UserDetails") if u.get("username") == "alice"][0]
        old = server.get(fid)
        server.put({"_id": "rotate-forged", "type": "Rotation", "owner": alice["_id"], "fid": alice["root"]})
        wait_for(lambda: adversary.get(laptop, "rotate-forged") is not None, "the forged document to arrive")
        wait_for(lambda: settled(a), "the sync to settle")
        (a / "marker.txt").write_bytes(b"after")  # a round trip through the mount
        wait_for(lambda: settled(a), "the marker pushed")
        assert (a / "plan.txt").read_bytes() == b"her plan"
        rekeyed = server.get(fid)["_rev"] != old["_rev"]
    dek_now = _alice_dek(laptop, fid)
    dek_then, _ = _opened(laptop, old)
    assert dek_now == dek_then and not rekeyed, "the server's Rotation document gave her file a new key"


@pytest.mark.xfail(strict=True, reason="hole: a Rotation document from the sync server whose fid is a list "
                   "stops her every later mount (TypeError at share_ops.py:267, unlock)")
def test_the_servers_malformed_rotation_document_does_not_stop_her_next_mount(
        couch: tuple[str, adversary.Server], tmp_path: Path) -> None:
    url, server = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        (a / "plan.txt").write_bytes(b"her plan")
        wait_for(lambda: settled(a), "the file pushed")
        alice = [u for u in server.all("UserDetails") if u.get("username") == "alice"][0]
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


@pytest.mark.xfail(strict=True, reason="hole (documented limit, 'not yet for a file'): her own older signed "
                   "deletion put back as the current row hides her live file (moved into the trash)")
def test_her_own_older_deletion_put_back_does_not_hide_the_live_file(vault: Path, tmp_path: Path) -> None:
    mnt, fid, deletion = _deleted_then_restored(vault, tmp_path)
    adversary.put(vault, deletion)
    with mounted(vault, mnt):
        assert sorted(os.listdir(mnt)) == ["plan.txt"], "her live file vanished into the trash"
        assert (mnt / "plan.txt").read_bytes() == b"the newer plan"


def test_her_own_older_deletion_put_back_is_said_and_restore_brings_back_the_newest_contents(
        vault: Path, tmp_path: Path) -> None:
    """held: the replayed deletion is said (a rollback alarm naming the file), the trash offers the file
    once, and ``restore`` brings back its newest contents (the versions are not rolled back)."""
    mnt, fid, deletion = _deleted_then_restored(vault, tmp_path)
    adversary.put(vault, deletion)
    with mounted(vault, mnt):
        assert any(a["kind"] == "rollback" and a["subject"] == fid for a in _alarms(mnt)), _alarms(mnt)
        trash = fusevault("trash", mnt, "--json")
        assert trash.returncode == 0, trash.stderr
        assert [t["path"] for t in json.loads(trash.stdout)["trash"]].count("plan.txt") == 1
        restored = fusevault("restore", mnt / "plan.txt")
        assert restored.returncode == 0, restored.stderr
        assert (mnt / "plan.txt").read_bytes() == b"the newer plan"


@pytest.mark.xfail(strict=True, reason="hole: a replayed revision refused live stays the current row of the "
                   "local store: at her next mount her file is gone into the trash (fs arrivals refuse, replica "
                   "keeps)")
def test_her_own_older_deletion_served_by_the_server_is_refused_live_and_at_her_next_mount(
        couch: tuple[str, adversary.Server], tmp_path: Path) -> None:
    """The server keeps her signed deletion of plan.txt and, after she restored it and wrote on,
    serves it as the newest revision while she is mounted; then she mounts again."""
    url, server = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        wait_for(lambda: settled(a), "the first push")
        before = {d["_id"] for d in server.all("node")}
        (a / "plan.txt").write_bytes(b"first plan")
        wait_for(lambda: settled(a), "the file pushed")
        (fid,) = {d["_id"] for d in server.all("node")} - before
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


def _known(vault: Path, doc_id: str, rev: str) -> bool:
    from fusevault.store import replica

    with adversary.store_of(vault) as store:
        return rev in replica._known(store, doc_id)
