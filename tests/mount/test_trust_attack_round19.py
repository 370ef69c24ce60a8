"""Attack round 19 on issue 22 (the authenticated vault): PLACEHOLDER, docstring written at the end."""

from __future__ import annotations

from pathlib import Path

import adversary
import pytest
from conftest import docs_of, fusevault, mounted
from services.test_trust_attack_round4 import _alarms

NEW = "a new passphrase, the old one leaked"


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
