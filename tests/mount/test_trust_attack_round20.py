"""Attack round 20 (draft)."""

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


@pytest.mark.xfail(strict=True, reason="hole 1: the desktop's body (keys_seq 2, her leaked passphrase's "
                   "wrapping) is taken quietly as newer (key_memory.newest): a higher number is no descent")
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
        wait_for(lambda: (adversary.get(laptop, user_id) or {}).get("keys_seq") == 2, "the desktop's keys")
        wait_for(lambda: settled(a), "the sync to settle")
        said = [(x["kind"], x["subject"]) for x in _alarms(a)]
    leaked = _mount_status(laptop, tmp_path / "a")
    assert leaked == 3, f"the passphrase she changed on this device opens her vault again (said: {said})"


@pytest.mark.xfail(strict=True, reason="hole 3: the request bob signed from the forged clear epoch is "
                   "refused and dropped (share_ops.resume): no re-key, carol keeps the key")
def test_a_forged_clear_epoch_does_not_turn_a_members_removal_into_no_rekey(
        vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    fid = _crew_sharing_her_plan(vault, mnt)
    node = adversary.get(vault, fid)
    assert node is not None
    dek = _alice_dek(vault, fid)
    # The store writer (carol's friend) shows crew's owner her file one epoch ahead in clear (her
    # signature on it broken: bob's device cannot check it), then puts her genuine body back.
    adversary.put(vault, {**node, "epoch": node["epoch"] + 1})
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
@pytest.mark.xfail(strict=True, reason="hole 4: every retired seat keeps its number (drive.add_seat): "
                   "MAX_SEATS of them and nobody else gets a seat until remount")
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


CRASHES = pytest.mark.xfail(strict=True, reason="hole 2: key_memory.revoked unpacks a store field no check "
                             "covered (TypeError): the mount ends in an internal error")


@pytest.mark.parametrize("forged", [pytest.param(5, marks=CRASHES), pytest.param(True, marks=CRASHES),
                                    pytest.param(1.5, marks=CRASHES), "abc", {"x": 1}, [None, 3]])
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


@CRASHES
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
