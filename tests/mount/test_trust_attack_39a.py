"""Attack round 39a.

(docstring filled in at the end)
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
import trio
from conftest import PASSPHRASE, fusevault, mounted
from inprocess.conftest import ALICE_UID, BOB, BOB_UID, ROOT, _composed
from inprocess.test_two_users import ALICE, _read, _write

from fusevault.crypto.signing import sign_doc
from fusevault.vault.files import rekeying
from fusevault.vault.services.absorbing import absorb
from mount.test_moving_out_of_a_share import CAROL, _current_dek, _key_of
from mount.test_trust_attack_round37b import _notes_in_docs_sub
from mount.test_trust_rollback import alarms
from mount.test_trust_writes import BOB as BOB_PW
from mount.test_trust_writes import _admin, _key

HOLE_2 = "hole 2: a move inside the share, then its old folder removed, judged failed: no share gets its key"
CAROL_SECRET = "carol's own passphrase"
BOBS = type(ALICE)(BOB_UID, BOB_UID)


@pytest.fixture
def three(tmp_path: Path) -> Path:
    """alice's vault with bob and carol (carol never unlocks here: she is the one revoked)."""
    path = tmp_path / "vault"
    assert fusevault("init", path, "--user", "alice").returncode == 0
    for name, uid, secret in (("bob", BOB_UID, BOB), ("carol", 2204, CAROL_SECRET)):
        added = fusevault("user", "add", name, "--uid", str(uid),
                          env={"FUSEVAULT_VAULT": str(path), "FUSEVAULT_NEW_PASSPHRASE": secret})
        assert added.returncode == 0, added.stderr
    return path


async def _ask(shared, cmd: str, path: str, who: str, perm: str = "READ") -> dict:
    requests = shared.drive.seat_of(ALICE_UID).ops.session.requests
    return await requests.handle({"cmd": cmd, "path": path, "with": who, "perm": perm})


def _paused_re_seal(monkeypatch, fid: str) -> tuple[trio.Event, threading.Event]:
    """The re-seal of ``fid`` stops once its contents are sealed again, before the commit: (set when
    it got there, to set to let it go on)."""
    real, there, go, tries = rekeying._sealed_again, trio.Event(), threading.Event(), []

    def sealed_again(files, node, dek, epoch):
        fresh = real(files, node, dek, epoch)
        if node.fid == fid and not tries:
            tries.append(node)
            trio.from_thread.run_sync(there.set)
            go.wait(60)
        return fresh

    monkeypatch.setattr(rekeying, "_sealed_again", sealed_again)
    return there, go


def _put_refused(volume, vault: Path, fid: str, how: str, before: dict) -> None:
    """What the server (or carol's device, or a writer of the vault folder) puts over the current
    revision of ``fid``, bob's: the same document with a broken signature (``forged``), signed by
    carol, who holds its key while she may read docs (``carol's``, refused: she holds no WRITE), or
    her own document before his edit (``replayed``: the ledger refuses it, his was made over it)."""
    store = volume.store.inner
    current = store.get(fid)
    if how == "forged":
        doc = {**current, "sig": "A" * len(str(current["sig"]))}
    elif how == "replayed":
        doc = {**before, "_rev": current["_rev"]}
    else:
        key = _key(vault, "carol", CAROL_SECRET)
        doc = sign_doc(key.user_id, key.identity.sign, {k: v for k, v in current.items() if k != "sig"})
    (rev,) = store.put_many([doc])
    absorb(volume, [{**doc, "_rev": rev}], own=False)


@pytest.mark.parametrize("refused", [
    None,  # the control: his edit alone is sealed again and kept
    "forged",
    "carol's",
    "replayed",
])
def test_a_write_members_edit_during_the_re_key_is_not_committed_over(three: Path, monkeypatch,
                                                                      refused: str | None) -> None:
    """alice unshares docs from carol (READ); bob (WRITE on docs) saves notes.txt while the re-key
    seals it again.  His version waits (``awaiting``) and is the one sealed next.  A refused revision
    put over his (a broken signature) must not make the re-key commit her older contents over his."""
    seats = {"alice": (PASSPHRASE, ALICE_UID), "bob": (BOB, BOB_UID)}
    with _composed(three, seats) as shared:
        async def attack() -> None:
            drive = shared.drive
            docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
            notes = await _write(drive, docs.st_ino, b"notes.txt", b"hers", ALICE)
            for who, perm in (("bob", "WRITE"), ("carol", "READ")):
                assert "error" not in await _ask(shared, "share", "docs", who, perm)
            volume = drive.seat_of(ALICE_UID).ops.session.volume
            node = volume.resolve(b"docs/notes.txt")
            old = (node.dek, node.epoch)
            bobs = await _walk_bob(drive)
            there, go = _paused_re_seal(monkeypatch, node.fid)
            answer = {}
            async with trio.open_nursery() as nursery:
                async def unshare() -> None:
                    answer.update(await _ask(shared, "unshare", "docs", "carol"))

                nursery.start_soon(unshare)
                await there.wait()
                before = volume.store.inner.get(node.fid)
                info = await drive.open(bobs, os.O_WRONLY | os.O_TRUNC, BOBS)
                await drive.write(info.fh, 0, b"bob's edit")
                await drive.release(info.fh)
                assert node.fid in volume.sharing.awaiting  # his version waits for the re-seal
                if refused:
                    _put_refused(volume, three, node.fid, refused, before)
                go.set()
            assert "error" not in answer, answer
            assert (node.dek, node.epoch) != old, "not re-keyed"
            assert await _read(drive, notes.st_ino, ALICE) == b"bob's edit", "his edit was committed over"
            assert await _read(drive, bobs, BOBS) == b"bob's edit", "his edit was committed over"

        trio.run(attack)


async def _walk_bob(drive) -> int:
    entry = await drive.getattr(ROOT, BOBS)
    for name in (b"shared", b"alice", b"docs", b"notes.txt"):
        entry = await drive.lookup(entry.st_ino, name, BOBS)
    return entry.st_ino


DAVE = "dave's own passphrase"


@pytest.mark.parametrize("removed", [
    False,  # the control: his move inside docs alone
    pytest.param(True, marks=pytest.mark.xfail(strict=True, reason=HOLE_2)),
])
def test_a_write_members_move_inside_the_share_then_rmdir_keeps_it_shared(tmp_path: Path,
                                                                          removed: bool) -> None:
    """bob (WRITE on docs; carol READ on docs) moves docs/sub/notes.txt to docs/notes.txt, then removes
    the empty docs/sub (both his to do).  notes.txt never left docs: after her next unlock, and after a
    re-key of docs (her unshare of dave), carol must hold its current key, and no alarm blames bob."""
    vault = tmp_path / "vault"
    assert fusevault("init", vault, "--user", "alice").returncode == 0
    mnt = tmp_path / "mnt"
    fid, kept = _notes_in_docs_sub(vault, mnt)
    _admin(vault, "user", "add", "dave", "--uid", "2003", passphrase=DAVE)
    with mounted(vault, mnt) as a:
        assert fusevault("share", a / "docs", "--with", "dave", "--perm", "READ").returncode == 0
    with mounted(vault, tmp_path / "b", "--user", "bob", passphrase=BOB_PW) as b:
        hers = b / "shared" / "alice"
        (hers / "docs" / "sub" / "notes.txt").rename(hers / "docs" / "notes.txt")
        if removed:
            (hers / "docs" / "sub").rmdir()
    with mounted(vault, mnt) as a:
        said = alarms(a)
        assert (a / "docs" / "notes.txt").read_text() == "first"
        assert fusevault("unshare", a / "docs", "--with", "dave").returncode == 0
        (a / "docs" / "notes.txt").write_text("for carol still")
        said += alarms(a)
    now = _current_dek(vault, fid)
    print(said)
    assert now != kept  # the unshare of dave re-keyed it
    assert _key_of(vault, "carol", CAROL, fid) == now, "carol, who may read docs, lost notes.txt"
    assert _key_of(vault, "bob", BOB_PW, fid) == now, "bob, who may write docs, lost notes.txt"
    assert not [s for s in said if "no share" in str(s)], said


def test_a_replay_of_her_revision_over_a_write_members_edit_is_refused(three: Path) -> None:
    """bob (WRITE on docs) saves alice's docs/notes.txt over her revision; the server (or a writer of
    the vault folder) then puts her revision back, as it was, as the newest one: his edit must stay
    (her document is older than his, which was made over it)."""
    seats = {"alice": (PASSPHRASE, ALICE_UID), "bob": (BOB, BOB_UID)}
    with _composed(three, seats) as shared:
        async def attack() -> None:
            drive = shared.drive
            docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
            notes = await _write(drive, docs.st_ino, b"notes.txt", b"hers", ALICE)
            assert "error" not in await _ask(shared, "share", "docs", "bob", "WRITE")
            volume = drive.seat_of(ALICE_UID).ops.session.volume
            node = volume.resolve(b"docs/notes.txt")
            bobs = await _walk_bob(drive)
            before = volume.store.inner.get(node.fid)
            info = await drive.open(bobs, os.O_WRONLY | os.O_TRUNC, BOBS)
            await drive.write(info.fh, 0, b"bob's edit")
            await drive.release(info.fh)
            assert await _read(drive, notes.st_ino, ALICE) == b"bob's edit"
            _put_refused(volume, three, node.fid, "replayed", before)
            assert await _read(drive, notes.st_ino, ALICE) == b"bob's edit", "his edit undone by a replay"
            assert await _read(drive, bobs, BOBS) == b"bob's edit", "his edit undone by a replay"

        trio.run(attack)
