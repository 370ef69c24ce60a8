"""Issue 22, attack round 58d (an outsider: the threat table, the real command and mount).

Attackers: kill -9 during a command, then mount again ("nothing lost, nothing wrong"), together
with whoever writes the vault folder / the store (may withhold or delete any document).  The moment
of the kill is made certain with a pause point in the mount server (tests/hooks_58d/
sitecustomize.py, armed per test: it holds the next ``Volume.rekey`` until the test killed the
server; only the moment is chosen).

HOLE 58d (1), high (a revocation undone):
  steps: alice shares folder proj (secret.txt in it) with bob READ; bob keeps the DEK of secret.txt
  (his .vfkey).  alice runs ``unshare proj --with bob``; the mount is killed (kill -9) during the
  re-key (any moment between its put of the Share tombstone and her request, and the folder's own
  new key: a big folder's re-key lasts seconds).  The store's writer then withholds her signed
  request ``rotate-<fid of proj>`` (row removed, or a deletion as a replication brings one).
  alice mounts again and writes in secret.txt.
  seen: what she writes is sealed under the DEK bob kept (block 0 opens with it); no alarm.
  expected: her device, which took the share back itself (``trust.fresh.took_back``, saved before
  the re-key), finishes the re-key anyway, as ``unshare`` takes keys back with the Share withheld.
  control (passes): the same kill with the request left in the store: the next unlock finishes it
  (``test_control_an_unshare_killed_mid_rotation_is_finished_at_the_next_mount``).
  cause: fusevault/vault/services/share_ops.py:248-257 removes bob's key files (``remove_keys``)
  before ``rotation.rotate``; after a crash the only trace of the unfinished re-key is the store's
  Rotation document (vault/services/rotation.py:401 ``_rotation_pass`` reads only those), and
  stale_keys.py finds no key file of bob's left to count as a revocation.
  and her own way out fails: ``unshare`` run again says "proj is not shared with bob" (exit 4:
  the Share gone, no key file of bob's left, no request) and re-keys nothing
  (``test_her_unshare_run_again_after_the_kill_with_the_request_withheld_takes_the_key_back``;
  share_ops.py:208-209: her device's own ``remembered(share_id)`` is false once taken back).
  impact: the removed member reads everything she writes in the folder from then on (the DEK is the
  one he had), on every device of hers; the store's writer needs only to withhold one document
  after a crash or a kill.
  fix (suggested): keep the pending re-key in the device's state too (beside rotations_done: her
  own request's digest / the fid and epoch, written before the key files go, cleared when the folder
  has its new key) and finish it at unlock whatever the store holds; or remove the key files only
  after the re-key (stale_keys would then find them at unlock).
  not tried: a CouchDB peer's deletion of the request replicated while her mount was down (the
  tombstone case above is what it would put in the local store).

HOLE 58d (2), high (a revocation undone; same cause as (1), another way in, no crash needed):
  steps: alice shares proj (secret.txt in it) with bob READ; she moves secret.txt out of proj (to
  the root) and unmounts (``fusevault unmount``, or the mount is killed) while its re-key runs
  (held there by the pause point; as SECURITY.md's "Locked or unmounted right after the move"); the
  store's writer withholds her request ``rotate-<fid>``; she mounts again and writes in secret.txt.
  seen: what she writes is under the DEK bob kept.  expected: a new key (as with the request there:
  ``test_control_a_file_moved_out_of_a_share_unmounted_before_its_rekey_is_rekeyed_at_the_next_mount``).
  cause: vault/services/rotation.py:191-201 (``keep_moves_rekeyed``: ``_taken_back`` removes bob's
  keys and writes the request; the session ends before ``_rekey``): the request in the store is the
  only trace, and stale_keys.py finds no key of bob's left.  fix: as (1).

Held (kept as a passing control, it would catch a regression):
- ``test_a_file_back_from_the_trash_after_an_unshare_killed_before_its_new_key_is_not_under_the_revoked_key``:
  ``restore`` out of the trash after an unshare, killed (kill -9) after the file is back under its
  name (fsynced) and before its new key: at the next mount her writes are under a new key.
- ``test_control_the_whole_vault_folder_rolled_back_to_before_an_unshare_gives_bob_nothing_new``:
  the whole vault folder (store, key files, .vf files) put back to before a finished unshare: her
  next write is under a new key (stale keys found, the Share a replay here).
- ``test_control_a_members_removal_killed_mid_rekey_at_unlock_is_finished_whatever_the_store_withholds``:
  a group member's removal, its re-key at her unlock killed, every Rotation then withheld: finished
  at her next mount (rotations_done.py ``sealed_members``: the device's own memory, which (1) and (2)
  lack).
- the controls of (1) and (2): a kill -9 or an unmount mid re-key with the request left in the store
  is finished at the next mount.

Not tried: a CouchDB peer (not the vault folder's writer) withholding the request: her device's own
replica keeps it until a pull brings a deletion, and whether that can come before her unlock's
``resume`` was not looked at; the relay and links (send/receive, link get) were only read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PASSPHRASE, force_unmount, fusevault, is_mounted, mounted

from mount.test_trust_attack_round4 import BOB, _admin, _bobs_dek, _node_fid, _not_for_bob

HOOKS = Path(__file__).resolve().parents[1] / "hooks_58d"
ROOT = Path(__file__).resolve().parents[2]


def _wait(path: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never came"
        time.sleep(0.05)


def test_a_file_back_from_the_trash_after_an_unshare_killed_before_its_new_key_is_not_under_the_revoked_key(
        vault: Path, tmp_path: Path) -> None:
    """alice shares proj with bob, deletes proj/secret.txt, unshares proj, takes secret.txt out of
    the trash: the mount is killed (kill -9) after the file is back and before its new key.  She
    mounts again and writes in it.  Expected: what she writes is not under the DEK bob kept."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    mnt = tmp_path / "mnt"
    gate = tmp_path / "gate"
    gate.mkdir()
    env = {"PYTHONPATH": os.pathsep.join([str(HOOKS), str(ROOT)]), "PYTHON_FVTEST_REKEY_GATE": str(gate)}
    with mounted(vault, mnt, env=env):
        (mnt / "proj").mkdir()
        (mnt / "proj" / "secret.txt").write_text("shared for a while")
        (mnt / "proj" / "other.txt").write_text("stays")
        assert fusevault("share", mnt / "proj", "--with", "bob", "--perm", "READ").returncode == 0
    fid = _node_fid(vault, "alice", "secret.txt")
    revoked = _bobs_dek(vault, fid)
    with mounted(vault, mnt, env=env):
        os.unlink(mnt / "proj" / "secret.txt")
        assert fusevault("unshare", mnt / "proj", "--with", "bob").returncode == 0
        (gate / "armed").touch()
        restore = subprocess.Popen([sys.executable, "-m", "fusevault", "restore",
                                    str(mnt / "proj" / "secret.txt")],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   stdin=subprocess.DEVNULL)
        _wait(gate / "paused")
        assert (mnt / "proj" / "secret.txt").exists()
        folder = os.open(mnt / "proj", os.O_RDONLY)
        try:
            os.fsync(folder)  # the file back under its name is durable: what a kill after ~0.1 s sees too
        finally:
            os.close(folder)
        force_unmount(mnt)  # kill -9 of the server
        restore.communicate(timeout=60)
        assert not is_mounted(mnt)
    with mounted(vault, mnt):
        assert (mnt / "proj" / "secret.txt").exists(), "the restore was lost whole"
        (mnt / "proj" / "secret.txt").write_text("NEW: not for bob")
    _not_for_bob(vault, fid, revoked, b"NEW: not for bob")


def _unshare_killed_mid_rotation(vault: Path, tmp_path: Path) -> tuple[Path, str, str, bytes]:
    """alice shares proj (secret.txt in it) with bob READ; her ``unshare`` is killed (kill -9 of the
    mount) at its first re-key: the Share gone, bob's key files removed, her signed request put.
    (mount point, proj's fid, secret.txt's fid, the DEK bob kept)"""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    mnt = tmp_path / "mnt"
    gate = tmp_path / "gate"
    gate.mkdir()
    env = {"PYTHONPATH": os.pathsep.join([str(HOOKS), str(ROOT)]), "PYTHON_FVTEST_REKEY_GATE": str(gate)}
    with mounted(vault, mnt, env=env):
        (mnt / "proj").mkdir()
        (mnt / "proj" / "secret.txt").write_text("shared for a while")
        assert fusevault("share", mnt / "proj", "--with", "bob", "--perm", "READ").returncode == 0
    folder, fid = _node_fid(vault, "alice", "proj"), _node_fid(vault, "alice", "secret.txt")
    revoked = _bobs_dek(vault, fid)
    with mounted(vault, mnt, env=env):
        (gate / "armed").touch()
        unshare = subprocess.Popen([sys.executable, "-m", "fusevault", "unshare", str(mnt / "proj"),
                                    "--with", "bob"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   stdin=subprocess.DEVNULL)
        _wait(gate / "paused")
        force_unmount(mnt)  # kill -9 of the server
        unshare.communicate(timeout=60)
        assert not is_mounted(mnt)
    return mnt, folder, fid, revoked


def test_control_an_unshare_killed_mid_rotation_is_finished_at_the_next_mount(
        vault: Path, tmp_path: Path) -> None:
    mnt, _, fid, revoked = _unshare_killed_mid_rotation(vault, tmp_path)
    with mounted(vault, mnt):
        (mnt / "proj" / "secret.txt").write_text("NEW: not for bob")
    _not_for_bob(vault, fid, revoked, b"NEW: not for bob")


@pytest.mark.parametrize("withheld", ["row removed", "tombstone"])
def test_an_unshare_killed_mid_rotation_whose_request_the_store_withholds_is_finished_at_the_next_mount(
        vault: Path, tmp_path: Path, withheld: str) -> None:
    """As above, and the store's writer then withholds her signed request (``rotate-<fid>``), as it
    may withhold any document.  Expected: her device, which took the share back itself, still
    finishes the re-key; what she writes next is not under the DEK bob kept."""
    mnt, folder, fid, revoked = _unshare_killed_mid_rotation(vault, tmp_path)
    import adversary

    assert adversary.get(vault, f"rotate-{folder}") is not None
    if withheld == "row removed":
        adversary.delete_row(vault, f"rotate-{folder}")
    else:  # a deletion, as a peer's replication brings one
        with adversary.store_of(vault) as store:
            request = store.get(f"rotate-{folder}")
            store.put_many([{"_id": request["_id"], "_rev": request["_rev"], "_deleted": True}])
    with mounted(vault, mnt):
        (mnt / "proj" / "secret.txt").write_text("NEW: not for bob")
    _not_for_bob(vault, fid, revoked, b"NEW: not for bob")


def _moved_out_and_unmounted_mid_rekey(vault: Path, tmp_path: Path, how: str) -> tuple[Path, str, str, bytes]:
    """alice shares proj (secret.txt in it) with bob READ, moves secret.txt out of proj; its re-key is
    held, and the mount ended (``unmount``, or kill -9) meanwhile.  (mount point, fid, DEK bob kept)"""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    mnt = tmp_path / "mnt"
    gate = tmp_path / "gate"
    gate.mkdir()
    env = {"PYTHONPATH": os.pathsep.join([str(HOOKS), str(ROOT)]), "PYTHON_FVTEST_REKEY_GATE": str(gate)}
    with mounted(vault, mnt, env=env):
        (mnt / "proj").mkdir()
        (mnt / "proj" / "secret.txt").write_text("shared for a while")
        assert fusevault("share", mnt / "proj", "--with", "bob", "--perm", "READ").returncode == 0
    fid = _node_fid(vault, "alice", "secret.txt")
    revoked = _bobs_dek(vault, fid)
    with mounted(vault, mnt, env=env):
        (gate / "armed").touch()
        os.rename(mnt / "proj" / "secret.txt", mnt / "secret.txt")
        _wait(gate / "paused")
        root = os.open(mnt, os.O_RDONLY)
        try:
            os.fsync(root)  # the move is durable: what a kill after ~0.1 s sees too
        finally:
            os.close(root)
        if how == "unmount":
            done = fusevault("unmount", mnt)
            assert done.returncode == 0, done.stderr
        else:
            force_unmount(mnt)
        assert not is_mounted(mnt)
    return mnt, fid, revoked


@pytest.mark.parametrize("how", ["unmount", "kill -9"])
def test_control_a_file_moved_out_of_a_share_unmounted_before_its_rekey_is_rekeyed_at_the_next_mount(
        vault: Path, tmp_path: Path, how: str) -> None:
    mnt, fid, revoked = _moved_out_and_unmounted_mid_rekey(vault, tmp_path, how)
    with mounted(vault, mnt):
        assert not (mnt / "proj" / "secret.txt").exists(), "the move was lost"
        (mnt / "secret.txt").write_text("NEW: not for bob")
    assert _node_fid(vault, "alice", "secret.txt") == fid
    _not_for_bob(vault, fid, revoked, b"NEW: not for bob")


@pytest.mark.parametrize("how", ["unmount", "kill -9"])
def test_a_file_moved_out_of_a_share_unmounted_before_its_rekey_whose_request_is_withheld_is_rekeyed(
        vault: Path, tmp_path: Path, how: str) -> None:
    """As above, and the store's writer withholds her request ``rotate-<fid>``."""
    mnt, fid, revoked = _moved_out_and_unmounted_mid_rekey(vault, tmp_path, how)
    import adversary

    assert adversary.get(vault, f"rotate-{fid}") is not None
    adversary.delete_row(vault, f"rotate-{fid}")
    with mounted(vault, mnt):
        assert not (mnt / "proj" / "secret.txt").exists(), "the move was lost"
        (mnt / "secret.txt").write_text("NEW: not for bob")
    assert _node_fid(vault, "alice", "secret.txt") == fid
    _not_for_bob(vault, fid, revoked, b"NEW: not for bob")


def test_control_the_whole_vault_folder_rolled_back_to_before_an_unshare_gives_bob_nothing_new(
        vault: Path, tmp_path: Path) -> None:
    """alice shares proj with bob READ; the vault folder's writer keeps a copy of the whole folder;
    alice unshares (done); the writer puts the whole folder back (Share, bob's key files, the old
    nodes); alice mounts and writes in proj/secret.txt.  Held: not under the DEK bob kept."""
    import adversary

    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "proj").mkdir()
        (mnt / "proj" / "secret.txt").write_text("shared for a while")
        assert fusevault("share", mnt / "proj", "--with", "bob", "--perm", "READ").returncode == 0
    fid = _node_fid(vault, "alice", "secret.txt")
    revoked = _bobs_dek(vault, fid)
    shutil.copytree(vault, tmp_path / "snap", symlinks=True)
    with mounted(vault, mnt):
        assert fusevault("unshare", mnt / "proj", "--with", "bob").returncode == 0
    shutil.rmtree(vault)
    shutil.copytree(tmp_path / "snap", vault, symlinks=True)
    assert adversary.get(vault, f"rotate-{fid}") is None
    with mounted(vault, mnt):
        (mnt / "proj" / "secret.txt").write_text("NEW: not for bob")
    _not_for_bob(vault, fid, revoked, b"NEW: not for bob")


@pytest.mark.parametrize("withheld", [False, True], ids=["control", "request-withheld"])
def test_control_a_members_removal_killed_mid_rekey_at_unlock_is_finished_whatever_the_store_withholds(
        vault: Path, tmp_path: Path, withheld: bool) -> None:
    """alice's group team (bob READ), her proj shared with @team; she takes bob out (signed requests);
    her next mount's unlock re-keys, and is killed (kill -9) at its first re-key; the store's writer
    withholds every Rotation.  Held: she mounts again, and what she writes is not under bob's DEK."""
    import adversary
    from attack_scenes import add_team, add_users, group_doc, share

    from mount.test_trust_attack_41c import _bobs_kept_dek

    add_users(vault, "bob")
    add_team(vault, "bob")
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "proj").mkdir()
        (mnt / "proj" / "secret.txt").write_text("shared for a while")
        assert share(mnt, "proj", "@team", "READ") is not None
    team = group_doc(vault, "team")["_id"]
    fid = _node_fid(vault, "alice", "secret.txt")
    kept = _bobs_kept_dek(vault, team, fid)
    _admin(vault, "group", "member", "remove", "team", "bob")
    assert adversary.docs(vault, "Rotation")
    gate = tmp_path / "gate"
    gate.mkdir()
    (gate / "armed").touch()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HOOKS), str(ROOT)]),
           "PYTHON_FVTEST_REKEY_GATE": str(gate), "FUSEVAULT_PASSPHRASE": PASSPHRASE}
    mnt.mkdir(exist_ok=True)
    mount = subprocess.Popen([sys.executable, "-m", "fusevault", "mount", str(vault), str(mnt)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    _wait(gate / "paused")
    force_unmount(mnt)
    mount.communicate(timeout=60)
    if withheld:
        for doc in adversary.docs(vault, "Rotation"):
            adversary.delete_row(vault, doc["_id"])
    with mounted(vault, mnt):
        (mnt / "proj" / "secret.txt").write_text("NEW: not for bob")
    _not_for_bob(vault, fid, kept, b"NEW: not for bob")


def test_her_unshare_run_again_after_the_kill_with_the_request_withheld_takes_the_key_back(
        vault: Path, tmp_path: Path) -> None:
    """(1), and alice, seeing her unshare fail, runs it again before writing (what a user does)."""
    mnt, folder, fid, revoked = _unshare_killed_mid_rotation(vault, tmp_path)
    import adversary

    adversary.delete_row(vault, f"rotate-{folder}")
    with mounted(vault, mnt):
        again = fusevault("unshare", mnt / "proj", "--with", "bob")
        print(again.returncode, again.stdout, again.stderr)
        (mnt / "proj" / "secret.txt").write_text("NEW: not for bob")
    _not_for_bob(vault, fid, revoked, b"NEW: not for bob")
