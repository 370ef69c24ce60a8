"""The Volume facade in-process, beyond single FUSE requests: a restore
through the control socket's API (the session's ``Requests``), and a share
between two users of one vault in a shared mount's ``Drive`` (fs/drive.py),
each user's requests routed by the uid of their request context."""

from __future__ import annotations

import errno
import os
import stat

import pyfuse3
import pytest

from fusevault.vault.services.absorbing import save_leaving, settle_busy
from inprocess.conftest import (
    ALICE_UID,
    BOB_UID,
    FILE,
    ROOT,
    STRANGER_UID,
    Ctx,
    Fields,
    code_of,
    make,
    read_all,
    rewrite,
)

ALICE = Ctx(ALICE_UID, ALICE_UID)
BOB = Ctx(BOB_UID, BOB_UID)
STRANGER = Ctx(STRANGER_UID, STRANGER_UID)


# --- a restore (personal mount)


async def test_restore_in_place_brings_back_the_older_contents_as_a_new_version(fs):
    ops = fs.ops
    made = await make(ops, b"doc.txt", b"first draft")
    await rewrite(ops, made.st_ino, b"ruined")
    requests = ops.session.requests
    history = (await requests.handle({"cmd": "history", "path": "doc.txt"}))["versions"]
    answer = await requests.handle({"cmd": "restore", "path": "doc.txt", "version": history[0]["id"]})
    assert answer["restored"] == "doc.txt", answer
    assert await read_all(ops, made.st_ino) == b"first draft"
    after = (await requests.handle({"cmd": "history", "path": "doc.txt"}))["versions"]
    assert len(after) == 3  # nothing is lost: the ruined one stays


async def test_restore_to_a_new_name_and_out_of_the_trash(fs):
    ops = fs.ops
    made = await make(ops, b"doc.txt", b"kept")
    await rewrite(ops, made.st_ino, b"later")
    requests = ops.session.requests
    first = (await requests.handle({"cmd": "history", "path": "doc.txt"}))["versions"][0]
    answer = await requests.handle({"cmd": "restore", "path": "doc.txt", "version": first["id"],
                                    "to": "old/doc.txt"})
    assert answer["restored"] == "old/doc.txt", answer
    old = await ops.lookup((await ops.lookup(ROOT, b"old", Ctx())).st_ino, b"doc.txt", Ctx())
    assert await read_all(ops, old.st_ino) == b"kept"
    assert await read_all(ops, made.st_ino) == b"later"

    await ops.unlink(ROOT, b"doc.txt", Ctx())
    trash = await requests.handle({"cmd": "trash"})
    assert [t["path"] for t in trash["trash"]] == ["doc.txt"], trash
    answer = await requests.handle({"cmd": "restore", "path": "doc.txt"})
    assert "error" not in answer, answer
    back = await ops.lookup(ROOT, b"doc.txt", Ctx())
    assert await read_all(ops, back.st_ino) == b"later"


async def test_restore_of_what_never_was_is_an_error_not_a_crash(fs):
    answer = await fs.ops.session.requests.handle({"cmd": "restore", "path": "never.txt"})
    assert answer.get("code") and "error" in answer, answer


# --- two users in a shared mount


async def _write(drive, parent: int, name: bytes, data: bytes, ctx: Ctx) -> pyfuse3.EntryAttributes:
    info, entry = await drive.create(parent, name, FILE, os.O_RDWR, ctx)
    await drive.write(info.fh, 0, data)
    await drive.release(info.fh)
    return entry


async def _read(drive, ino: int, ctx: Ctx) -> bytes:
    info = await drive.open(ino, os.O_RDONLY, ctx)
    try:
        return await drive.read(info.fh, 0, 1 << 20)
    finally:
        await drive.release(info.fh)


async def _walk(drive, path: bytes, ctx: Ctx) -> pyfuse3.EntryAttributes:
    entry = await drive.getattr(ROOT, ctx)
    for name in path.split(b"/"):
        entry = await drive.lookup(entry.st_ino, name, ctx)
    return entry


async def _share(shared, path: str, perm: str) -> None:
    requests = shared.drive.seat_of(ALICE_UID).ops.session.requests
    answer = await requests.handle({"cmd": "share", "path": path, "with": "bob", "perm": perm})
    assert "error" not in answer, answer


async def _unshare(shared, path: str) -> None:
    requests = shared.drive.seat_of(ALICE_UID).ops.session.requests
    answer = await requests.handle({"cmd": "unshare", "path": path, "with": "bob"})
    assert "error" not in answer, answer


async def test_a_file_is_nobody_elses_until_shared_then_read_only_for_read(shared):
    drive = shared.drive
    mine = await _write(drive, ROOT, b"doc.txt", b"alice's words", ALICE)
    # bob has his own root: alice's file is not in it, and her inode number is not his to use.
    with pytest.raises(pyfuse3.FUSEError) as err:
        await drive.lookup(ROOT, b"doc.txt", BOB)
    assert code_of(err) == errno.ENOENT
    for call in (drive.getattr(mine.st_ino, BOB), drive.open(mine.st_ino, os.O_RDONLY, BOB)):
        with pytest.raises(pyfuse3.FUSEError) as err:
            await call
        assert code_of(err) == errno.EACCES

    await _share(shared, "doc.txt", "READ")
    theirs = await _walk(drive, b"shared/alice/doc.txt", BOB)
    assert theirs.st_uid == BOB_UID and not theirs.st_mode & 0o222  # shown as bob's, without write bits
    assert await _read(drive, theirs.st_ino, BOB) == b"alice's words"
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC):
        with pytest.raises(pyfuse3.FUSEError) as err:
            await drive.open(theirs.st_ino, flags, BOB)
        assert code_of(err) == errno.EACCES, flags
    with pytest.raises(pyfuse3.FUSEError) as err:
        await drive.unlink((await _walk(drive, b"shared/alice", BOB)).st_ino, b"doc.txt", BOB)
    assert code_of(err) == errno.EACCES

    # What alice saves next, bob reads at once (the seats take in each other's commits).
    info = await drive.open(mine.st_ino, os.O_WRONLY | os.O_TRUNC, ALICE)
    await drive.write(info.fh, 0, b"alice's second words")
    await drive.release(info.fh)
    assert await _read(drive, theirs.st_ino, BOB) == b"alice's second words"


async def test_a_write_share_lets_bob_write_and_alice_read_it(shared):
    drive = shared.drive
    folder = await drive.mkdir(ROOT, b"team", stat.S_IFDIR | 0o755, ALICE)
    plan = await _write(drive, folder.st_ino, b"plan.txt", b"v1", ALICE)
    await _share(shared, "team", "WRITE")
    team = await _walk(drive, b"shared/alice/team", BOB)
    their_plan = await drive.lookup(team.st_ino, b"plan.txt", BOB)
    info = await drive.open(their_plan.st_ino, os.O_WRONLY | os.O_TRUNC, BOB)
    await drive.write(info.fh, 0, b"v2 by bob")
    await drive.release(info.fh)
    assert await _read(drive, plan.st_ino, ALICE) == b"v2 by bob"
    # A file bob makes in alice's folder is hers, and she reads it.
    await _write(drive, team.st_ino, b"notes.txt", b"bob's notes", BOB)
    notes = await drive.lookup(folder.st_ino, b"notes.txt", ALICE)
    assert await _read(drive, notes.st_ino, ALICE) == b"bob's notes"



async def test_unshare_takes_the_file_away(shared):
    drive = shared.drive
    await _write(drive, ROOT, b"doc.txt", b"for a while", ALICE)
    await _share(shared, "doc.txt", "WRITE")
    theirs = await _walk(drive, b"shared/alice/doc.txt", BOB)
    assert await _read(drive, theirs.st_ino, BOB) == b"for a while"
    await _unshare(shared, "doc.txt")
    with pytest.raises(pyfuse3.FUSEError) as err:
        await _walk(drive, b"shared/alice/doc.txt", BOB)
    assert code_of(err) == errno.ENOENT
    with pytest.raises(pyfuse3.FUSEError) as err:
        await drive.open(theirs.st_ino, os.O_RDONLY, BOB)
    assert code_of(err) in (errno.ENOENT, errno.EACCES)


async def test_a_share_ended_after_bob_made_a_file_in_it_leaves_his_saves_working(shared):
    """bob makes a file in alice's WRITE folder (his tree notes the folder's
    new mtime, saved lazily); alice ends the share; bob's next save of
    everything (a lock, an unmount) must not fail over the folder's times."""
    drive = shared.drive
    await drive.mkdir(ROOT, b"team", stat.S_IFDIR | 0o755, ALICE)
    await _share(shared, "team", "WRITE")
    team = await _walk(drive, b"shared/alice/team", BOB)
    await _write(drive, team.st_ino, b"notes.txt", b"bob's notes", BOB)
    await _unshare(shared, "team")
    assert await shared.volumes["bob"].save_all() == 0


async def test_a_stranger_sees_an_empty_root_and_is_refused_everything_else(shared, listing):
    drive = shared.drive
    await _write(drive, ROOT, b"doc.txt", b"private", ALICE)
    root = await drive.getattr(ROOT, STRANGER)
    assert stat.S_ISDIR(root.st_mode)
    assert await listing(drive, ROOT, STRANGER) == []
    for call in (drive.lookup(ROOT, b"doc.txt", STRANGER), drive.mkdir(ROOT, b"x", 0o755, STRANGER),
                 drive.create(ROOT, b"x", FILE, os.O_RDWR, STRANGER)):
        with pytest.raises(pyfuse3.FUSEError) as err:
            await call
        assert code_of(err) == errno.EACCES


async def test_a_shared_mount_checks_the_owners_mode_bits(shared):
    """No default_permissions in a shared mount: the seat checks them."""
    drive = shared.drive
    mine = await _write(drive, ROOT, b"ro.txt", b"read only", ALICE)
    chmod = pyfuse3.EntryAttributes()
    chmod.st_mode = stat.S_IFREG | 0o400
    await drive.setattr(mine.st_ino, chmod, Fields(mode=True), None, ALICE)
    with pytest.raises(pyfuse3.FUSEError) as err:
        await drive.open(mine.st_ino, os.O_WRONLY, ALICE)
    assert code_of(err) == errno.EACCES
    assert await drive.access(mine.st_ino, os.R_OK, ALICE) is True
    with pytest.raises(pyfuse3.FUSEError) as err:
        await drive.access(mine.st_ino, os.W_OK, ALICE)
    assert code_of(err) == errno.EACCES
    assert await _read(drive, mine.st_ino, ALICE) == b"read only"


async def test_writes_saved_just_after_a_share_ended_survive_the_owners_second_look(shared):
    """bob has unsaved writes when alice ends his share: they are saved as her
    file's next version (his seat checked his rights when he wrote).  When
    that save lands while alice's mount is busy with the file (sealing it
    under a new key: its content lock held), her tree looks at the version
    again afterwards.  It used to refuse it on that second look (bob holds no
    WRITE now) and seal her older contents over it: bob's acknowledged
    writes were gone from her file (found by the shared-mount stress test)."""
    drive = shared.drive
    alice, bob = shared.volumes["alice"], shared.volumes["bob"]
    mine = await _write(drive, ROOT, b"log.txt", b"alice\n", ALICE)
    await _share(shared, "log.txt", "WRITE")
    theirs = await _walk(drive, b"shared/alice/log.txt", BOB)
    info = await drive.open(theirs.st_ino, os.O_WRONLY, BOB)
    await drive.write(info.fh, 6, b"bob\n")  # acknowledged, not saved yet
    await _unshare(shared, "log.txt")
    (hers,) = [node for node in alice.tree.nodes() if node.is_reg]
    his = bob.find(hers.fid)
    async with alice.content_lock(hers):  # alice's mount busy with the file
        await save_leaving(bob, [his])
    await settle_busy(alice, [hers])  # what the shared mount does once she is done
    assert await _read(drive, mine.st_ino, ALICE) == b"alice\nbob\n"
    await alice.rekey(hers)  # and the file goes back under a key bob does not hold
    assert await _read(drive, mine.st_ino, ALICE) == b"alice\nbob\n"
    await drive.release(info.fh)


async def test_an_open_file_follows_another_writers_version_opened_by_its_next_read(shared):
    """Taking in alice's version opens nothing on the trio thread (in a vault
    kept in CouchDB that asks the server): bob's open handle opens the new
    version, in a worker thread, when it next reads."""
    drive = shared.drive
    mine = await _write(drive, ROOT, b"doc.txt", b"first words", ALICE)
    await _share(shared, "doc.txt", "READ")
    theirs = await _walk(drive, b"shared/alice/doc.txt", BOB)
    held = await drive.open(theirs.st_ino, os.O_RDONLY, BOB)
    try:
        assert await drive.read(held.fh, 0, 100) == b"first words"
        info = await drive.open(mine.st_ino, os.O_WRONLY | os.O_TRUNC, ALICE)
        await drive.write(info.fh, 0, b"second words")
        await drive.release(info.fh)
        volume = drive.seat_of(BOB_UID).ops.session.volume
        (node,) = set(volume.files.handles.values())
        assert node.content is None  # the old one retired, the new one not opened yet
        assert await drive.read(held.fh, 0, 100) == b"second words"
        assert node.content is not None
    finally:
        await drive.release(held.fh)
    assert await _read(drive, theirs.st_ino, BOB) == b"second words"


async def test_unshare_without_pinned_keys_is_refused_in_one_line(shared):
    """A volume without its pinned keys (``volume.trust``: a user from before
    key pairs) is refused share and unshare alike, before anything changes."""
    drive = shared.drive
    await _write(drive, ROOT, b"doc.txt", b"shared a while", ALICE)
    await _share(shared, "doc.txt", "READ")
    alice = shared.volumes["alice"]
    trust, alice.tree.trust = alice.tree.trust, None
    try:
        requests = drive.seat_of(ALICE_UID).ops.session.requests
        answer = await requests.handle({"cmd": "unshare", "path": "doc.txt", "with": "bob"})
    finally:
        alice.tree.trust = trust
    assert "key pairs" in answer.get("error", ""), answer
    theirs = await _walk(drive, b"shared/alice/doc.txt", BOB)  # still shared: nothing changed
    assert await _read(drive, theirs.st_ino, BOB) == b"shared a while"
