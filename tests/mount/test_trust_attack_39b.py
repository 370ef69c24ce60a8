"""Attack round 39b: revocation (unshare, a member's removal from a group) against a member's devices.

The attacker's tests, with the fixes made since (docs/SECURITY.md, "Attack round 39").

Holes (both fixed)
------------------
1. A file her other device made before it knew of a member's removal from @team kept the removed
   member's key: her laptop did the removal offline, her desktop (not told yet) made proj/new.txt and
   sealed its key to bob; nothing re-keyed it, and what she wrote into it afterwards bob could read.
   Fixed: vault/services/stale_keys.py (a member out of the group's signed body).
   ``test_a_file_her_other_device_made_before_it_knew_of_a_removal_is_re_keyed_where_it_is_known``.
2. The same with her unshare of proj from bob (a user share), on every device of hers.  Fixed: the
   same (a share her laptop's ``unshare`` took back).
   ``test_a_file_her_other_device_made_before_her_unshare_reached_it_is_re_keyed``.

What held
---------
- (a) A revoked WRITE member's device pushing versions through her unshare: nothing he wrote after
  was taken, and her write after it is under a key he does not hold.
- (c) A file in a user share and a group share, one revoked: the other keeps its key, the revoked
  one does not open the new key.

Not tried
---------
- (d) restore of an old version or a trashed file after an unshare (by reading: a restore from the
  trash re-keys, recovery.py); (e) the cost of a member's moves out of a share and back, again and
  again (begun, not finished).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import adversary
import pytest
from attack_scenes import recipients_dek
from conftest import PouchServer, first_device, fusevault, mounted, new_device, settled, wait_for

from fusevault.crypto.identity import open_file_key
from fusevault.vault.model.sharing import read_key
from mount.test_trust_attack_round4 import _alice_dek
from mount.test_trust_attack_round30b import _bobs_group_dek
from mount.test_trust_grants import _fid
from mount.test_trust_rollback import alarms
from mount.test_trust_writes import BOB, CAROL, _admin, _key, _user

# Some scenes stop the server and start it again: the devices retry it every second (conftest.py).
pytestmark = pytest.mark.usefixtures("quick_retry")


def _opens(vault: Path, name: str, passphrase: str, fid: str) -> set[bytes]:
    """Every DEK of alice's ``fid`` that ``name`` opens from a key file in ``vault`` (user or group)."""
    alice, them = _user(vault, "alice")["_id"], _key(vault, name, passphrase)
    paths = [vault / "users" / them.user_id / "shared" / f"{alice}_{fid}.vfkey",
             *vault.glob(f"groups/*/own/{fid}/keys/{them.user_id}.vfkey")]
    found = [(p, read_key(p)) for p in paths if p.exists()]
    return {open_file_key(them.identity, alice, fid, k[0], k[1]) for _, k in found if k is not None}


def _proj_with_bob(url: str, tmp_path: Path, perm: str = "WRITE",
                   others: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """Her laptop (mounted at tmp_path/a while it builds) with proj/notes.txt shared with bob (``perm``),
    pushed; bob's own device joined (not mounted); ``others``: more files in proj beside notes.txt,
    there before the share, so each is shared as notes.txt is.  (her laptop's vault, bob's vault)."""
    laptop = first_device(url, tmp_path)
    _admin(laptop, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    with mounted(laptop, tmp_path / "a") as a:
        (a / "proj").mkdir()
        for name in ("notes.txt", *others):
            (a / "proj" / name).write_text("hers, before")
        shared = fusevault("share", a / "proj", "--with", "bob", "--perm", perm)
        assert shared.returncode == 0, shared.stderr
        wait_for(lambda: settled(a), "the share pushed")
    bobs = tmp_path / "bobs"
    joined = fusevault("init", bobs, "--join", url, "--user", "bob", passphrase=BOB)
    assert joined.returncode == 0, joined.stderr
    return laptop, bobs


def _bob_writing(path: Path, stop: threading.Event, written: list[tuple[float, str]]) -> None:
    """bob's honest client: a new version of ``path`` ten times a second, until ``stop``."""
    n = 0
    while not stop.wait(0.1):
        n += 1
        text = f"bob's version {n}"
        try:
            path.write_text(text)
        except OSError:
            continue
        written.append((time.monotonic(), text))


# --- (a) a WRITE member's second device keeps pushing versions during and after the unshare


def test_a_revoked_writers_device_pushing_versions_through_the_unshare_gets_nothing_new(
        couch: tuple[str, adversary.Server], tmp_path: Path) -> None:
    url, _ = couch
    laptop, bobs = _proj_with_bob(url, tmp_path)
    fid = _fid(laptop, "proj/notes.txt")
    kept = recipients_dek(laptop, "bob", BOB, fid)
    stop, written = threading.Event(), []
    with mounted(laptop, tmp_path / "a") as a, \
            mounted(bobs, tmp_path / "b", "--user", "bob", passphrase=BOB) as b:
        theirs = b / "shared" / "alice" / "proj" / "notes.txt"
        wait_for(lambda: theirs.read_text() == "hers, before", "bob's device to show notes.txt")
        writer = threading.Thread(target=_bob_writing, args=(theirs, stop, written), daemon=True)
        writer.start()
        try:
            wait_for(lambda: len(written) > 5, "bob's first versions")
            # A version of his stored and not taken in yet (its records on their way) failed the
            # re-key's commit, exit 13, until the re-key waited for it (vault/files/rekeying.py,
            # tests/inprocess/test_rekey_behind_the_store.py): now the first unshare does it.
            unshared = fusevault("unshare", a / "proj", "--with", "bob")
            ended = time.monotonic()
            assert unshared.returncode == 0, unshared.stderr
            time.sleep(4)  # he keeps writing: each version his mount still takes is pushed
        finally:
            stop.set()
            writer.join()
        wait_for(lambda: settled(b) and settled(a), "both sides settled")
        late = [text for at, text in written if at > ended + 0.5]
        shown = (a / "proj" / "notes.txt").read_text()
        (a / "proj" / "notes.txt").write_text("hers, after the unshare")
        wait_for(lambda: settled(a), "her write pushed")
        print("bob's late writes:", late[:3], len(late), "shown at her laptop:", shown)
        assert _alice_dek(laptop, fid) != kept, "her write after the unshare is under the key bob kept"
        assert shown not in late, f"her laptop took bob's version {shown!r}, written after his share ended"
    assert _alice_dek(laptop, fid) != kept


# --- (b) a member's removal, and a file her other device made before it knew of it


def _team_dek(vault: Path, fid: str) -> bytes | None:
    """The DEK bob opens from the group key file of alice's ``fid`` in ``vault`` (None: no such file)."""
    (group,) = adversary.docs(vault, "Group")
    alice, bob = _user(vault, "alice")["_id"], _user(vault, "bob")["_id"]
    path = vault / "groups" / group["_id"] / "own" / fid / "keys" / f"{bob}.vfkey"
    return _bobs_group_dek(vault, path, alice, fid) if path.exists() else None



def test_a_file_her_other_device_made_before_it_knew_of_a_removal_is_re_keyed_where_it_is_known(
        tmp_path: Path) -> None:
    """alice's laptop removes bob from @team (proj is shared with it) while it is off the network; her
    desktop, which has not heard of it, makes proj/new.txt (its key sealed to bob: it cannot know) and
    syncs.  Her laptop then comes online, takes new.txt in and she writes into it: what she writes
    after bob left must not be under the key bob opens."""
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop = first_device(url, tmp_path)
        _admin(laptop, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
        _admin(laptop, "group", "add", "team", "--owner", "alice")
        _admin(laptop, "group", "member", "add", "team", "bob", "--perm", "READ")
        with mounted(laptop, tmp_path / "a") as a:
            (a / "proj").mkdir()
            (a / "proj" / "notes.txt").write_text("hers, before")
            shared = fusevault("share", a / "proj", "--with", "@team", "--perm", "READ")
            assert shared.returncode == 0, shared.stderr
            wait_for(lambda: settled(a), "the share pushed")
        desktop = new_device(url, tmp_path, "desktop")
        _admin(laptop, "group", "member", "remove", "team", "bob")  # the laptop is not mounted: not pushed
        with mounted(desktop, tmp_path / "d") as d:
            wait_for(lambda: (d / "proj" / "notes.txt").read_text() == "hers, before", "the desktop's pull")
            (d / "proj" / "new.txt").write_text("the desktop's, before it knew")
            wait_for(lambda: settled(d), "the desktop's push")
        fid = _fid(desktop, "proj/new.txt")
        kept = _team_dek(desktop, fid)
        assert kept is not None and kept == _alice_dek(desktop, fid)  # sealed to bob: it could not know
        server.kill()
        notes = _fid(laptop, "proj/notes.txt")
        with mounted(laptop, tmp_path / "a") as a:  # offline: her unlock re-keys proj for the removal
            wait_for(lambda: _team_dek(laptop, notes) is None,
                     "the removal's re-key")
            server.start()
            wait_for(lambda: (a / "proj" / "new.txt").read_text() == "the desktop's, before it knew",
                     "new.txt at her laptop")
            wait_for(lambda: settled(a), "the laptop's sync")
            (a / "proj" / "new.txt").write_text("hers, after bob left @team")
            wait_for(lambda: settled(a), "her write pushed")
            first = _alice_dek(laptop, fid)
            said = alarms(a)
        with mounted(laptop, tmp_path / "a") as a:  # her next unlock, online
            wait_for(lambda: settled(a), "the laptop's sync")
            (a / "proj" / "new.txt").write_text("hers, at her next unlock")
            wait_for(lambda: settled(a), "her write pushed")
            second = _alice_dek(laptop, fid)
            said += alarms(a)
        print("alarms:", said, "bob's key file of new.txt at her laptop:", _team_dek(laptop, fid) is not None)
        assert first != kept and second != kept, (
            f"proj/new.txt, written at her laptop after bob left @team (her laptop did the removal), is "
            f"under the key bob opens from his group key file (first session: {first == kept}, next unlock: "
            f"{second == kept})")
    finally:
        server.stop()


def _bobs_user_dek(vault: Path, fid: str) -> bytes | None:
    """The DEK bob opens from his (user share) key file of alice's ``fid`` in ``vault``, or None."""
    try:
        return recipients_dek(vault, "bob", BOB, fid)
    except AssertionError:
        return None



def test_a_file_her_other_device_made_before_her_unshare_reached_it_is_re_keyed(tmp_path: Path) -> None:
    """proj shared with bob (user share, READ).  Her desktop makes proj/new.txt and syncs; her laptop,
    off the network before it got new.txt, unshares proj from bob; online again it takes new.txt in,
    and she writes into it; then her desktop comes back, takes the unshare in and she writes there
    too.  Neither write may be under the key bob holds of new.txt."""
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop = first_device(url, tmp_path)
        _admin(laptop, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
        with mounted(laptop, tmp_path / "a") as a:
            (a / "proj").mkdir()
            (a / "proj" / "notes.txt").write_text("hers, before")
            shared = fusevault("share", a / "proj", "--with", "bob", "--perm", "READ")
            assert shared.returncode == 0, shared.stderr
            wait_for(lambda: settled(a), "the share pushed")
        desktop = new_device(url, tmp_path, "desktop")
        with mounted(desktop, tmp_path / "d") as d:
            wait_for(lambda: (d / "proj" / "notes.txt").read_text() == "hers, before", "the desktop's pull")
            (d / "proj" / "new.txt").write_text("the desktop's")
            wait_for(lambda: settled(d), "the desktop's push")
        fid = _fid(desktop, "proj/new.txt")
        kept = _bobs_user_dek(desktop, fid)
        assert kept is not None and kept == _alice_dek(desktop, fid)
        server.kill()
        with mounted(laptop, tmp_path / "a") as a:
            unshared = fusevault("unshare", a / "proj", "--with", "bob")  # offline: new.txt not here yet
            assert unshared.returncode == 0, unshared.stderr
            server.start()
            wait_for(lambda: (a / "proj" / "new.txt").read_text() == "the desktop's", "new.txt at her laptop")
            wait_for(lambda: settled(a), "the laptop's sync")
            (a / "proj" / "new.txt").write_text("hers, after the unshare")
            wait_for(lambda: settled(a), "her write pushed")
            at_laptop = _alice_dek(laptop, fid)
            said = alarms(a)
        with mounted(desktop, tmp_path / "d") as d:  # the desktop, online: takes the unshare in
            wait_for(lambda: settled(d) and (d / "proj" / "new.txt").read_text() == "hers, after the unshare",
                     "the desktop's pull")
            (d / "proj" / "new.txt").write_text("hers, at the desktop after the unshare")
            wait_for(lambda: settled(d), "the desktop's push")
            at_desktop = _alice_dek(desktop, fid)
            said += alarms(d)
        print("alarms:", said, "bob's key file at laptop/desktop:", _bobs_user_dek(laptop, fid) is not None,
              _bobs_user_dek(desktop, fid) is not None)
        assert at_laptop != kept and at_desktop != kept, (
            f"proj/new.txt, written after proj was unshared from bob, is under the key bob holds (at her "
            f"laptop, which unshared: {at_laptop == kept}; at her desktop: {at_desktop == kept})")
    finally:
        server.stop()


# --- (c) one file under a user share and a group share: each revoked alone


@pytest.mark.parametrize("revoke", ["unshare bob", "carol leaves @team"])
def test_one_of_two_shares_revoked_keeps_the_other_and_takes_the_revoked(
        vault: Path, tmp_path: Path, revoke: str) -> None:
    """proj shared with bob (user share, READ) and with @team (carol in it, READ); proj/sub/notes.txt.
    One is revoked while she is mounted; she writes: the other keeps the new key, the revoked gets none."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    _admin(vault, "user", "add", "carol", "--uid", "2002", passphrase=CAROL)
    _admin(vault, "group", "add", "team", "--owner", "alice")
    _admin(vault, "group", "member", "add", "team", "carol", "--perm", "READ")
    with mounted(vault, tmp_path / "a") as a:
        (a / "proj" / "sub").mkdir(parents=True)
        (a / "proj" / "sub" / "notes.txt").write_text("hers, before")
        for who in ("bob", "@team"):
            assert fusevault("share", a / "proj", "--with", who, "--perm", "READ").returncode == 0
    fid = _fid(vault, "proj/sub/notes.txt")
    kept = _alice_dek(vault, fid)
    assert kept in _opens(vault, "bob", BOB, fid) and kept in _opens(vault, "carol", CAROL, fid)
    stays, goes = ("carol", CAROL), ("bob", BOB)
    if revoke != "unshare bob":  # the removal is taken in at her next unlock (docs/SECURITY.md)
        stays, goes = goes, stays
        _admin(vault, "group", "member", "remove", "team", "carol")
    with mounted(vault, tmp_path / "a") as a:
        if revoke == "unshare bob":
            assert fusevault("unshare", a / "proj", "--with", "bob").returncode == 0
        wait_for(lambda: _alice_dek(vault, fid) != kept, "the re-key")
        (a / "proj" / "sub" / "notes.txt").write_text("hers, after")
        wait_for(lambda: _alice_dek(vault, fid) in _opens(vault, *stays, fid), f"{stays[0]}'s new key")
        now = _alice_dek(vault, fid)
    assert now not in _opens(vault, *goes, fid)
    assert now != kept


def _bobs_edit_then_unshared(url: str, tmp_path: Path) -> tuple[Path, Path, str]:
    """bob (WRITE on proj) saves notes.txt on his device; her laptop takes his version in, never
    reading it, and she unshares proj from him (mounted at tmp_path/a).  (her laptop's vault, the
    mount point, what the unshare said when it failed, or "")."""
    laptop, bobs = _proj_with_bob(url, tmp_path)
    with mounted(bobs, tmp_path / "b", "--user", "bob", passphrase=BOB) as b:
        theirs = b / "shared" / "alice" / "proj" / "notes.txt"
        wait_for(lambda: theirs.exists() and settled(b), "bob's device to show notes.txt")
        theirs.write_text("bob's edit")
        wait_for(lambda: settled(b), "bob's push")
    a = tmp_path / "a"
    with mounted(laptop, a):
        wait_for(lambda: settled(a) and (a / "proj" / "notes.txt").stat().st_size == len("bob's edit"),
                 "her laptop to take his version in")
        unshared = fusevault("unshare", a / "proj", "--with", "bob")
        read = (a / "proj" / "notes.txt").read_text() if unshared.returncode == 0 else ""
    return laptop, a, unshared.stderr if unshared.returncode else read


def test_unsharing_a_writer_whose_last_edit_was_never_read_here_keeps_his_edit(
        couch: tuple[str, adversary.Server], tmp_path: Path) -> None:
    """His version was written while he could write: the revoke's re-key seals it again and she
    reads it.  (A version judged first at that read, under the grants after the revoke, was refused:
    exit 5, and notes.txt read EIO.)"""
    _, _, read = _bobs_edit_then_unshared(couch[0], tmp_path)
    assert read == "bob's edit"


def test_a_revoked_writers_versions_stay_readable_in_the_history(
        couch: tuple[str, adversary.Server], tmp_path: Path) -> None:
    """His version, written while he could write, stays readable in ``.versions`` after her next
    mount."""
    laptop, a, read = _bobs_edit_then_unshared(couch[0], tmp_path)
    assert read == "bob's edit"
    with mounted(laptop, a):
        old = a / ".versions" / "proj" / "notes.txt"
        texts = [p.read_text() for p in sorted(old.iterdir())]
        assert "bob's edit" in texts, texts
