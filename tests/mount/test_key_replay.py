"""Her key fields replayed: an older body of her user document, from before ``passwd`` or a revoked
recovery key, never decides again what opens her vault on a device that saw the newer one
(vault/model/key_memory.py; attack round 18, hole 5).  The server's replay is in
tests/mount/test_trust_attack_round18.py; here the store writer's, the recovery key's, and the
genuine change made on her other device (taken, no alarm)."""

from __future__ import annotations

import json
from pathlib import Path

import adversary
from conftest import PASSPHRASE, docs_of, first_device, fusevault, mounted, new_device, settled, wait_for
from services.test_trust_attack_round4 import _alarms

from mount.test_recovery_key import _init_with_words, _recover

NEW = "a new passphrase, the old one leaked"


def _her_doc(vault: Path) -> dict:
    (doc,) = docs_of(vault, "UserDetails")
    return doc


def _key_alarms(mnt: Path) -> list[dict]:
    return [a for a in _alarms(mnt) if a["kind"] == "rollback" and a["subject"].startswith("keys ")]


def test_her_body_from_before_passwd_put_back_in_the_store_does_not_bring_the_old_passphrase_back(
        vault: Path, tmp_path: Path) -> None:
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "plan.txt").write_bytes(b"her plan")
    before = _her_doc(vault)
    changed = fusevault("passwd", vault, env={"FUSEVAULT_NEW_PASSPHRASE": NEW})
    assert changed.returncode == 0, changed.stderr
    adversary.put(vault, before)  # the store writer: her older, genuinely signed body, current again
    old = fusevault("mount", vault, tmp_path / "mnt")
    if old.returncode == 0:
        fusevault("unmount", tmp_path / "mnt", passphrase=None)
    assert old.returncode == 3, f"the leaked passphrase opens her vault again: {old.stderr}"
    with mounted(vault, tmp_path / "mnt", passphrase=NEW) as mnt:
        assert (mnt / "plan.txt").read_bytes() == b"her plan"
        assert _key_alarms(mnt), _alarms(mnt)
        # A body she signs here (a setting changed) carries the newer keys, not the store's older ones.
        ttl = fusevault("config", "set", "passphrase_expiry_ttl", "4hr", "--mount", mnt, passphrase=None)
        assert ttl.returncode == 0, ttl.stderr
    newest = _her_doc(vault)
    assert newest["keys_seq"] == 1 and newest["salt"] != before["salt"], "her older keys signed again"
    # passwd on this device takes the newer keys too: the old passphrase is no "current" one.
    again = fusevault("passwd", vault, env={"FUSEVAULT_NEW_PASSPHRASE": "a third"})
    assert again.returncode == 3, again.stderr
    third = fusevault("passwd", vault, passphrase=NEW, env={"FUSEVAULT_NEW_PASSPHRASE": "a third"})
    assert third.returncode == 0, third.stderr
    assert _her_doc(vault)["keys_seq"] == 2


def test_a_revoked_recovery_key_put_back_in_the_store_opens_nothing(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    words = _init_with_words(vault)
    with_key = _her_doc(vault)
    revoked = fusevault("recovery-key", "revoke", vault)
    assert revoked.returncode == 0, revoked.stderr
    adversary.put(vault, with_key)  # her body from before the revocation, current again
    result = _recover(vault, words, "the thief's passphrase")
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    (tmp_path / "mnt").mkdir()
    assert fusevault("mount", vault, tmp_path / "mnt", passphrase="the thief's passphrase").returncode == 3
    with mounted(vault, tmp_path / "mnt") as mnt:  # her passphrase still opens it
        assert _key_alarms(mnt), _alarms(mnt)


def test_a_passwd_made_on_her_other_device_is_taken_without_an_alarm(couch, tmp_path: Path) -> None:
    url, server = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        (a / "plan.txt").write_bytes(b"her plan")
        wait_for(lambda: settled(a), "the first push")
        desktop = new_device(url, tmp_path, "desktop")
        changed = fusevault("passwd", desktop, env={"FUSEVAULT_NEW_PASSPHRASE": NEW})
        assert changed.returncode == 0, changed.stderr
        with mounted(desktop, tmp_path / "d", passphrase=NEW) as d:
            wait_for(lambda: settled(d), "the desktop's push")
        (user,) = [u for u in server.all("UserDetails") if u.get("username") == "alice"]
        wait_for(lambda: adversary.get(laptop, user["_id"]) is not None
                 and adversary.get(laptop, user["_id"]).get("keys_seq") == user["keys_seq"], "her new keys")
        wait_for(lambda: settled(a), "the sync to settle")
    assert fusevault("mount", laptop, tmp_path / "a").returncode == 3  # the old passphrase: gone here too
    with mounted(laptop, tmp_path / "a", passphrase=NEW) as a:
        assert (a / "plan.txt").read_bytes() == b"her plan"
        assert not _key_alarms(a), json.dumps(_alarms(a))
    assert PASSPHRASE != NEW
