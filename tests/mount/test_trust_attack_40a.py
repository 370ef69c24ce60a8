"""Attack round 40a: the fixes of round 39 (c0b5a7a..d366947), attacked by variants.

Work in progress.
"""

from __future__ import annotations

import os
import shutil
import stat
import threading
from pathlib import Path

import adversary
import pytest
import trio
from conftest import PASSPHRASE, PouchServer, first_device, fusevault, mounted, new_device, settled, wait_for
from inprocess.conftest import ALICE_UID, BOB, BOB_UID, ROOT, _composed
from inprocess.test_two_users import ALICE, _read, _write

from fusevault.vault.files import open_files, rekeying
from fusevault.vault.files.sealing import Sealing
from fusevault.vault.model import sharing
from fusevault.vault.services import rotation
from fusevault.vault.services.absorbing import settle_busy
from mount.test_moving_out_of_a_share import _docs_and_other
from mount.test_trust_attack_39a import (
    BOBS,
    _bob_does,
    _bobs_edit,
    _her_newest_revision,
    _put_refused,
    _walk_bob,
)
from mount.test_trust_rollback import alarms
from mount.test_trust_writes import _key

CAROL_SECRET = "carol's own passphrase"
HOLE_2 = ("hole 2: his state held while her commit was busy stays held after her commit went over it; "
          "a refused revision stored over her commit before her re-key reopens the file makes the "
          "re-key seal his older contents over her newer edit")
HOLE_3 = ("hole 3: her own revision from before his edit, put beside it as a branch by the server, is "
          "an admissible leaf: his edit supersedes nothing, and her revision put back over it undoes it "
          "silently")
HOLE_4 = ("hole 4: her laptop's edit made over a WRITE member's edit made over her desktop's edit is "
          "said at the desktop to be a concurrent state served as following its edit (a false alarm): "
          "the laptop never saw the desktop's state, so its signed over does not name it")
HOLE_1 = ("hole 1: a genuine key file of hers copied to a group's key folder (a group its recipient is "
          "not in) is taken for a member's removal: any writer of the vault folder, or the server, "
          "re-keys her files (a shared folder: everything under it) at will")


def _admin(vault: Path, *args: str, secret: str = PASSPHRASE) -> None:
    done = fusevault(*args, env={"FUSEVAULT_VAULT": str(vault), "FUSEVAULT_NEW_PASSPHRASE": secret},
                     passphrase=PASSPHRASE)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def with_team(tmp_path: Path) -> Path:
    """alice's vault with bob and carol, and alice's group @team (carol in it, bob not)."""
    path = tmp_path / "vault"
    assert fusevault("init", path, "--user", "alice").returncode == 0
    _admin(path, "user", "add", "bob", "--uid", str(BOB_UID), secret=BOB)
    _admin(path, "user", "add", "carol", "--uid", "2204", secret=CAROL_SECRET)
    _admin(path, "group", "add", "team", "--owner", "alice")
    _admin(path, "group", "member", "add", "team", "carol", "--perm", "READ")
    return path


async def _ask(shared, cmd: str, path: str, who: str, perm: str = "READ") -> dict:
    requests = shared.drive.seat_of(ALICE_UID).ops.session.requests
    return await requests.handle({"cmd": cmd, "path": path, "with": who, "perm": perm})


@pytest.mark.parametrize("planted", [
    None,  # the control: her keys, where her share put them, cost no re-key
    pytest.param("file", marks=pytest.mark.xfail(strict=True, reason=HOLE_1)),
    pytest.param("folder", marks=pytest.mark.xfail(strict=True, reason=HOLE_1)),
])
def test_her_genuine_key_copied_into_a_groups_key_folder_costs_no_re_key(with_team: Path,
                                                                          planted: str | None) -> None:
    """alice shares docs with bob (READ); @team (carol) has nothing of hers.  A writer of the vault
    folder copies bob's key file of docs/notes.txt (or of docs itself), genuine and of the current
    epoch, to groups/<team>/own/<fid>/keys/<bob>.vfkey.  Nothing was revoked: her look-over of keys no
    share reaches (stale_keys.py, at every unlock and at every key, share, group or user arriving) must
    not re-key anything for it."""
    seats = {"alice": (PASSPHRASE, ALICE_UID), "bob": (BOB, BOB_UID)}
    with _composed(with_team, seats) as shared:
        async def attack() -> None:
            drive = shared.drive
            docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
            await _write(drive, docs.st_ino, b"notes.txt", b"hers", ALICE)
            assert "error" not in await _ask(shared, "share", "docs", "bob")
            volume = drive.seat_of(ALICE_UID).ops.session.volume
            folder, notes = volume.resolve(b"docs"), volume.resolve(b"docs/notes.txt")
            await rotation._rekey_unreached(volume)
            before = {n.fid: (n.epoch, n.dek) for n in (folder, notes)}
            (grant,) = [g for g in volume.sharing.grants if g.fid == folder.fid]
            (team,) = [gid for gid, g in volume.sharing.groups.items() if g.get("groupname") == "team"]
            if planted is not None:
                node = notes if planted == "file" else folder
                genuine = sharing.key_path(volume.layout, grant, grant.grantee, node.fid)
                copy = sharing.group_key_path(volume.layout, team, node.fid, grant.grantee)
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(genuine, copy)  # a vault-folder writer's (the server: a FileKey at its id)
            await rotation._rekey_unreached(volume)
            after = {n.fid: (n.epoch, n.dek) for n in (folder, notes)}
            assert after == before, f"re-keyed for a planted copy of a genuine key: {before} -> {after}"

        trio.run(attack)


async def _until(what, timeout: float = 30) -> None:
    with trio.fail_after(timeout):
        while not what():
            await trio.sleep(0.01)


def _paused_commit(monkeypatch, fid: str) -> tuple[trio.Event, threading.Event]:
    """The first sealing of ``fid``'s contents (her own save) stops once sealed, before its commit:
    (set when there, to set to let it go on).  Sealed in a worker thread, whatever its size."""
    monkeypatch.setattr(open_files, "INLINE_SEAL", -1)
    real, there, go, tries = Sealing.seal_version, trio.Event(), threading.Event(), []

    def seal_version(self, file_size: int):
        sealed = real(self, file_size)
        if self.fid == fid and not tries:
            tries.append(self)
            trio.from_thread.run_sync(there.set)
            go.wait(60)
        return sealed

    monkeypatch.setattr(Sealing, "seal_version", seal_version)
    return there, go


def _paused_re_key(monkeypatch, fid: str) -> tuple[trio.Event, trio.Event]:
    """The re-key of ``fid`` stops once it holds the file, before it looks for a newer state to seal."""
    real, there, go = rekeying._next_epoch, trio.Event(), trio.Event()

    async def next_epoch(files, node):
        if node.fid == fid and not there.is_set():
            there.set()
            await go.wait()
        return await real(files, node)

    monkeypatch.setattr(rekeying, "_next_epoch", next_epoch)
    return there, go


@pytest.mark.parametrize("refused", [
    None,  # the control: her edit, saved over his, is the one sealed again
    pytest.param("forged", marks=pytest.mark.xfail(strict=True, reason=HOLE_2)),
])
def test_her_edit_saved_over_his_before_her_re_key_is_the_one_sealed_again(with_team: Path, monkeypatch,
                                                                           refused: str | None) -> None:
    """docs is shared with bob (WRITE) and carol (READ).  alice saves docs/notes.txt; while her save
    is sealed (a big file), she unshares docs from carol (its re-key waits for her save), and bob's
    save of the same file lands: taken in while her file is busy, it is held (``Guests.held``).  Her
    save then commits over his (hers is the newest state).  Then a refused revision (a broken
    signature: the server, or a writer of the vault folder) is stored over hers before the re-key
    looks at the file.  The re-key must seal her newest edit, not his older one held from before."""
    seats = {"alice": (PASSPHRASE, ALICE_UID), "bob": (BOB, BOB_UID)}
    with _composed(with_team, seats) as shared:
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
            sealed, commit = _paused_commit(monkeypatch, node.fid)
            holding, go = _paused_re_key(monkeypatch, node.fid)
            answer: dict = {}
            async with trio.open_nursery() as nursery:
                async def her_save() -> None:
                    info = await drive.open(notes.st_ino, os.O_WRONLY | os.O_TRUNC, ALICE)
                    await drive.write(info.fh, 0, b"hers, newer")
                    await drive.release(info.fh)

                async def unshare() -> None:
                    answer.update(await _ask(shared, "unshare", "docs", "carol"))

                nursery.start_soon(her_save)
                await sealed.wait()
                nursery.start_soon(unshare)
                await _until(lambda: node.lock.statistics().tasks_waiting >= 1)  # the re-key waits
                info = await drive.open(bobs, os.O_WRONLY | os.O_TRUNC, BOBS)
                await drive.write(info.fh, 0, b"bob's edit")
                await drive.release(info.fh)
                assert node.fid in volume.sharing.held  # his state, held while her file is busy
                nursery.start_soon(settle_busy, volume, [node])  # as the mount does (fs/arrivals.py)
                commit.set()
                await holding.wait()  # her save committed (over his); the re-key holds the file
                if refused:
                    _put_refused(volume, with_team, node.fid, refused, {})
                go.set()
            assert "error" not in answer, answer
            assert (node.dek, node.epoch) != old, "not re-keyed"
            assert await _read(drive, notes.st_ino, ALICE) == b"hers, newer", "her newer edit was replaced"
            assert await _read(drive, bobs, BOBS) == b"hers, newer", "her newer edit was replaced"

        trio.run(attack)


def _her_sibling(url: str, fid: str, alice_id: str) -> None:
    """A second leaf next to the current revision of ``fid`` on the server (new_edits=false): her own
    revision from before it, genuine, as it was, under a revision id that loses to the current one."""
    import httpx
    couch = adversary.Server(url)
    current = couch.get(fid, revs="true")
    hers = _her_newest_revision(couch, fid, alice_id)
    gen = int(current["_rev"].split("-")[0])
    ids = current["_revisions"]["ids"]
    sibling = {**{k: v for k, v in hers.items() if not k.startswith("_")}, "_id": fid,
               "_rev": f"{gen}-{'0' * 32}", "_revisions": {"start": gen, "ids": ["0" * 32, *ids[1:]]}}
    r = httpx.post(f"{url}/_bulk_docs", json={"docs": [sibling], "new_edits": False}, timeout=30)
    r.raise_for_status()


@pytest.mark.parametrize("branched", [
    False,  # the control (round 39a's): his edit supersedes hers, her revision put back is refused
    pytest.param(True, marks=pytest.mark.xfail(strict=True, reason=HOLE_3)),
])
def test_her_replay_over_his_edit_that_came_with_her_own_old_state_as_a_branch_is_refused(
        tmp_path: Path, branched: bool) -> None:
    """Round 39a (3)'s personal-mount fix counts only a branch the settling would not refuse: the
    server adds, next to bob's revision, her own revision from before his edit (genuine, signed by
    her: admissible), so his edit is taken in "in conflict" and supersedes nothing; then it puts her
    revision back as the newest.  Her laptop must keep his edit."""
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop = first_device(url, tmp_path)
        fid = _docs_and_other(laptop, tmp_path / "a")
        alice_id = _key(laptop, "alice", PASSPHRASE).user_id
        couch = adversary.Server(url)
        with mounted(laptop, tmp_path / "a") as a:
            wait_for(lambda: settled(a), "the laptop's push")
        _bob_does(url, tmp_path, "docs/notes.txt", _bobs_edit)
        if branched:
            _her_sibling(url, fid, alice_id)
        with mounted(laptop, tmp_path / "a") as a:
            wait_for(lambda: settled(a) and (a / "docs" / "notes.txt").read_text() == "bob's edit",
                     "his edit at her laptop")
            seq = couch.seq() + 1  # its change (read after it, her own push may come first)
            couch.put(_her_newest_revision(couch, fid, alice_id))
            wait_for(lambda: adversary.pulled_past(laptop, seq) and settled(a), "the replay offered")
            seen = (a / "docs" / "notes.txt").read_text()
            said = alarms(a)
        print(seen, said)
        assert seen == "bob's edit", "his edit undone by the replay"
    finally:
        server.stop()


@pytest.mark.parametrize("bob_between", [
    False,  # the control: her laptop edits over her desktop's edit, which it took in
    pytest.param(True, marks=pytest.mark.xfail(strict=True, reason=HOLE_4)),
])
def test_her_two_devices_edits_one_after_the_other_with_a_writers_edit_between_raise_no_alarm(
        tmp_path: Path, bob_between: bool) -> None:
    """Nothing concurrent: her desktop edits docs/notes.txt; bob (WRITE on docs) edits it over hers;
    her laptop takes his edit in and edits it over his; her desktop then takes the laptop's edit in.
    Each edit is made over the one before.  No ``concurrent`` alarm (a server rewriting history,
    absorbing.py ``_served_over``) may be raised: it is a false alarm on legitimate use."""
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop = first_device(url, tmp_path)
        _docs_and_other(laptop, tmp_path / "a")
        notes = Path("docs") / "notes.txt"
        with mounted(laptop, tmp_path / "a") as a:
            wait_for(lambda: settled(a), "the laptop's push")
        desktop = new_device(url, tmp_path, "desktop")
        with mounted(desktop, tmp_path / "d") as d:
            wait_for(lambda: (d / notes).exists() and (d / notes).read_text() == "first" and settled(d),
                     "the desktop's pull")
            (d / notes).write_text("the desktop's edit")
            wait_for(lambda: settled(d), "the desktop's push")
        if bob_between:
            _bob_does(url, tmp_path, "docs/notes.txt", _bobs_edit)
        seen = "bob's edit" if bob_between else "the desktop's edit"
        with mounted(laptop, tmp_path / "a") as a:
            wait_for(lambda: settled(a) and (a / notes).read_text() == seen, "the laptop's pull")
            (a / notes).write_text("the laptop's edit")
            wait_for(lambda: settled(a), "the laptop's push")
            said = alarms(a)
        with mounted(desktop, tmp_path / "d") as d:
            wait_for(lambda: settled(d) and (d / notes).read_text() == "the laptop's edit",
                     "the desktop's pull")
            said += alarms(d)
        print(said)
        assert not [x for x in said if x["kind"] in ("concurrent", "rollback")], said
    finally:
        server.stop()
