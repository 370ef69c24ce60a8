"""Attack round 81a, through the real command and mount: 80b (5)'s fix bypassed by an older validation
string of hers.

(4) medium (80b (5)'s refusal bypassed for every user made before it: her key pairs replaced in the
    store by new ones, her files signed anew with keys no device of hers knew (what others sealed to
    her genuine public key then opens with none of hers there: not tested); nothing refused.  The
    planted Share stays unsigned: ``minted``, the fix's other half, holds).
    Attacker: whoever writes the vault folder (no key of hers).  Steps: alice's user document holds,
    or once held, a validation string of the older text (``VALIDATION_TEXT``: every user made before
    80b (5)'s fix, whatever passphrase changes since; the text is sealed under her master key with
    ``ad("validation", user_id)`` only, bound to neither the wrapping's salt nor its sealed master key,
    so an older body's string opens under her current wrapping).  The writer puts that older string in
    her current document (``checksum`` is a plain SHA-256 of the clear fields: made again), takes off
    every trace of her key pairs and every ``sig`` of hers (as 80b (5)), and plants an unsigned Share
    of her proj with bob.  Alice mounts on a device with no mark of hers.  Seen: the mount succeeds;
    ``users.unlock`` finds the older text (``pairs_sealed`` False), ``ensure_identity`` takes her for a
    user from before key pairs and mints new ones (``minted``), replacing her public keys in the store;
    ``migrate.sign_own`` signs her nodes and versions with them (the planted Share is left unsigned,
    said: that half of the fix holds).  Expected: as 80b (5)'s fix says of "her document stripped of
    its pairs and every signature": refused, one line, nothing made.  The same older string also
    passes ``users.recover`` (``check_master``) and makes ``passwd --recovery`` on such a device seal
    the older text into her NEW wrapping (``_has_pairs``), so the downgrade outlives the writer.
    Cause: crypto/keys.py ``wrap_master`` / ``_validation`` (the validation string's AD names the user
    only) and vault/model/users.py ``unlock`` (``pairs_sealed`` of whatever string the document holds).
    Fix (suggested): bind the validation string to its wrapping (AD with the salt and ``en_master_kek``,
    and the recovery wrapping's check likewise), so only the string written with the wrapping that
    opened counts; or keep "has pairs" inside what the passphrase's KEK itself seals (``en_master_kek``'s
    plaintext or AD).
    Tests: ``test_81a_4_an_older_validation_string_of_hers_gets_no_new_pairs_minted_on_a_new_device``,
    ``test_81a_4_passwd_recovery_over_an_older_validation_string_keeps_her_wrapping_saying_pairs[older_string]``
    (control: ``[control_stripped_only]``, her body stripped alone: the new wrapping still says pairs).

(6) low-medium (her live file hidden, unsaid: 80b (4) again where the store cannot be written).
    Attacker: whoever writes the vault folder (no key).  Steps: 80b (4)'s stale ``docs_kind`` entry
    (her node's body written at another kind, then put back past the indexes), and store.sqlite left
    one she can read and not write (on a shared folder: his own copy, mode 0444, put in its place; or
    the vault on read-only media).  At her mount ``_settle_indexes``' ``REINDEX docs_kind`` fails
    ("attempt to write a readonly database"), ``_index_step``'s ``DROP INDEX`` fails the same
    (suppressed), so the stale index stays and ``iter_type('node')`` never selects victim.txt: the
    mount serves without it, nothing said about it.  Expected: an index not rebuilt is not trusted
    (the selections ``NOT INDEXED``, or the JSON ones checked against the bodies), or the mount refuses,
    said.  Cause: store/local.py ``_index_step`` (a failed rebuild leaves the index in place when it
    cannot be dropped either).  The test makes the file read-only with a read-only bind mount (the
    tests run as root, whom a mode does not stop).
    Test: ``test_81a_6_a_store_she_cannot_write_does_not_keep_a_stale_index_hiding_her_file``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import adversary
import pytest
from conftest import PASSPHRASE, fusevault, mounted
from inprocess.test_attack_80b import _index_says_other_kind

from mount.test_attack_80b import OWNED, TRACES
from mount.test_sharing import _fid
from mount.test_trust_attack_40c import _alices_proj, _bobs_keys_of_alices, _planted_share, _user


def _older_validation_string(alice: dict) -> str:
    """A validation string of the older text under alice's master key: what her every body from before
    80b (5)'s fix held (the vault folder's writer kept one; the test makes one with her passphrase)."""
    from fusevault.crypto.kdf import KdfParams
    from fusevault.crypto.keys import unwrap_master, wrap_master

    master = unwrap_master(alice["_id"], alice, PASSPHRASE.encode())
    return wrap_master(alice["_id"], master, b"her passphrase then", KdfParams.from_doc(alice["kdf"]),
                       pairs=False)["en_validation_string"]


def test_81a_4_an_older_validation_string_of_hers_gets_no_new_pairs_minted_on_a_new_device(
        vault: Path, tmp_path: Path) -> None:
    mnt, proj = _alices_proj(vault, tmp_path)
    adversary.put(vault, _planted_share(vault, proj))
    alice = _swapped(vault)
    device = {"FUSEVAULT_STATE_DIR": str(tmp_path / "new-device-state")}  # no mark, no memory
    said = fusevault("mount", vault, mnt, env=device)
    if said.returncode == 0:
        fusevault("unmount", mnt)
        with mounted(vault, mnt, env=device):  # her next mount there: the migration done
            pass
    now = _user(vault, "alice")
    assert _bobs_keys_of_alices(vault) == [], "the planted Share acted on"
    assert said.returncode != 0 and now.get("public_sign") in (None, alice["public_sign"]), (
        f"mount exit {said.returncode}; her public key {alice['public_sign']} -> {now.get('public_sign')} "
        f"(new pairs minted: her wrapping's older validation string taken as hers)")


def _swapped(vault: Path, older: bool = True) -> dict:
    """The writer's steps of (4): her current wrapping with an older validation string of hers (checksum
    made again), every trace of her pairs and every signature of hers off.  Her body before, returned."""
    from fusevault.crypto.keys import checksum

    alice = _user(vault, "alice")
    swapped = {**{k: v for k, v in alice.items() if k not in TRACES},
               **({"en_validation_string": _older_validation_string(alice)} if older else {})}
    swapped["checksum"] = checksum(swapped)
    adversary.put(vault, swapped)
    for kind in OWNED:
        for doc in adversary.docs(vault, kind):
            if doc.get("owner") == alice["_id"] and "sig" in doc:
                adversary.put(vault, {k: v for k, v in doc.items() if k != "sig"})
    return alice


@pytest.mark.parametrize("older", [True, False], ids=["older_string", "control_stripped_only"])
def test_81a_4_passwd_recovery_over_an_older_validation_string_keeps_her_wrapping_saying_pairs(
        vault: Path, tmp_path: Path, older: bool) -> None:
    from fusevault.crypto.keys import open_master

    words = tmp_path / "words"
    made = fusevault("recovery-key", "create", vault, "--recovery-key-file", words)
    assert made.returncode == 0, made.stderr
    _alices_proj(vault, tmp_path)
    _swapped(vault, older)
    device = {"FUSEVAULT_STATE_DIR": str(tmp_path / "new-device-state"), "FUSEVAULT_NEW_PASSPHRASE": "new"}
    reset = fusevault("passwd", vault, "--recovery", "--recovery-file", words, passphrase=None, env=device)
    now = _user(vault, "alice")
    says_pairs = open_master(now["_id"], now, b"new")[1] if reset.returncode == 0 else None
    assert reset.returncode != 0 or says_pairs, (
        f"passwd --recovery exit {reset.returncode}: her new wrapping says she has no key pairs; "
        f"{(reset.stdout + reset.stderr)[-200:]}")


def test_81a_6_a_store_she_cannot_write_does_not_keep_a_stale_index_hiding_her_file(
        vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "keep.txt").write_bytes(b"kept")
        (mnt / "victim.txt").write_bytes(b"to be hidden")
    fid = _fid(vault, "alice", "victim.txt")
    _index_says_other_kind(vault, fid)
    store = vault / "store.sqlite"
    subprocess.run(["mount", "--bind", store, store], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", store], check=True)
        said = fusevault("mount", vault, mnt)
        if said.returncode != 0:
            return  # refused, said
        try:
            listed = sorted(p.name for p in mnt.iterdir())
            status = fusevault("status", mnt, "--json", passphrase=None)
        finally:
            fusevault("unmount", mnt)
    finally:
        subprocess.run(["umount", store], check=True)
    assert "keep.txt" in listed, f"the scene: the mount serves ({listed})"
    assert "victim.txt" in listed or fid in status.stdout, (
        f"victim.txt ({fid}) hidden, unsaid: {listed}; the mount said {(said.stdout + said.stderr)[-200:]!r}")
