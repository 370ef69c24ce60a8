"""Attack round 49t (1), in-process: a file's history includes the file it replaced by a rename
(``history.lineage``), and ``.versions`` showed every version with the live file's mode and owner.
So another user who may write her folder replaced her 0600 file with his own and read its versions
(the mount tests: tests/mount/test_trust_attack_49t.py).  Here, without a kernel: the view's own
check (``Reader``) keeps her versions out of his listing and lookup and refuses his open, a version
is shown with its own file's owner and the strictest mode, and a restore writes her version's
contents nowhere he may read them.
"""

from __future__ import annotations

import errno
import os
import stat

import pyfuse3
import pytest

from fusevault.vault.model.history import Holder, Version
from fusevault.vault.model.nodes import Node
from fusevault.vault.services.recovery import kept_as, restore, versions
from fusevault.vault.services.versions_view import NAME, Reader, readable, shown
from inprocess.conftest import ALICE_UID, ROOT, STRANGER_UID, Ctx, Fields, read_all

# pid 0: no /proc entry, so no supplementary groups are read for these callers.
ALICE = Ctx(ALICE_UID, ALICE_UID, pid=0)
HIM = Ctx(STRANGER_UID, STRANGER_UID, pid=0)
PRIVATE = b"ALICE PRIVATE\n"


async def _write(ops, parent: int, name: bytes, data: bytes, mode: int, ctx: Ctx) -> int:
    info, entry = await ops.create(parent, name, stat.S_IFREG | 0o644, os.O_RDWR | os.O_CREAT, ctx)
    await ops.write(info.fh, 0, data)
    await ops.flush(info.fh)
    await ops.release(info.fh)
    attr = pyfuse3.EntryAttributes()
    attr.st_mode = stat.S_IFREG | mode
    await ops.setattr(entry.st_ino, attr, Fields(mode=True), None, ctx)
    return entry.st_ino


async def _names(ops, ino: int, ctx: Ctx, listing) -> list[bytes]:
    return [name for name in await listing(ops, ino, ctx) if name not in (b".", b"..")]


async def _her_plan_replaced_by_him(fs) -> tuple[int, int]:
    """team/ (0777, hers) holds her 0600 plan.txt; he renames his own file over it.  Returns the
    inodes of team/ and of .versions/team/plan.txt (looked up by root, who sees it all)."""
    ops = fs.ops
    ops.allow_other = True  # `mount --allow-other-users`
    team = await ops.mkdir(ROOT, b"team", stat.S_IFDIR | 0o777, ALICE)
    await _write(ops, team.st_ino, b"plan.txt", PRIVATE, 0o600, ALICE)
    await _write(ops, team.st_ino, b".t", b"mine\n", 0o644, HIM)
    await ops.rename(team.st_ino, b".t", team.st_ino, b"plan.txt", 0, HIM)
    await fs.volume.flush_pending()
    view = await ops.lookup(ROOT, NAME, Ctx())
    mirror = await ops.lookup(view.st_ino, b"team", Ctx())
    return team.st_ino, (await ops.lookup(mirror.st_ino, b"plan.txt", Ctx())).st_ino


async def test_his_rename_over_her_private_file_shows_him_none_of_its_versions(fs, listing) -> None:
    ops = fs.ops
    _, plan = await _her_plan_replaced_by_him(fs)
    everything = await _names(ops, plan, Ctx(), listing)
    assert len(everything) == 2, everything  # hers and his: the history is kept whole
    his = await _names(ops, plan, HIM, listing)
    assert len(his) == 1, f"he is shown her private file's version: {his}"
    hers = next(name for name in everything if name not in his)
    with pytest.raises(pyfuse3.FUSEError) as looked:
        await ops.lookup(plan, hers, HIM)
    assert looked.value.errno == errno.ENOENT
    version = await ops.lookup(plan, hers, Ctx())  # looked up by root: its inode known to the kernel
    assert (version.st_uid, stat.S_IMODE(version.st_mode)) == (ALICE_UID, 0o400), \
        "shown with her file's owner and the strictest of its mode and the live one's"
    with pytest.raises(pyfuse3.FUSEError) as opened:
        await ops.open(version.st_ino, os.O_RDONLY, HIM)
    assert opened.value.errno == errno.EACCES
    assert await read_all(ops, version.st_ino) == PRIVATE  # root reads it, as the kernel lets root
    assert await _names(ops, plan, ALICE, listing) == everything  # she reads both (his is 0644)


async def test_her_version_is_not_restored_into_his_file(fs) -> None:
    """Restored in place, her version comes back as her file was (hers, 0600), not in his 0644 file;
    copied out (``--to``), the new file is made as hers."""
    ops = fs.ops
    await _her_plan_replaced_by_him(fs)
    volume = fs.volume
    live = volume.resolve(b"team/plan.txt")
    hers = next(v for v in await versions(volume, live) if v.fid != live.fid)
    await restore(volume, b"team/plan.txt", vid=hers.vid, to=b"team/back.txt")
    back = volume.resolve(b"team/back.txt")
    assert (back.uid, back.gid, stat.S_IMODE(back.mode)) == (ALICE_UID, ALICE_UID, 0o600), \
        "copied out as her file's, not as his (0644)"
    assert await read_all(ops, back.ino) == PRIVATE
    await restore(volume, b"team/plan.txt", vid=hers.vid)
    assert (live.uid, live.gid, stat.S_IMODE(live.mode)) == (ALICE_UID, ALICE_UID, 0o600), \
        "her contents written into a file he owns and reads"
    assert await read_all(ops, live.ino) == PRIVATE


async def test_her_own_rename_over_her_private_file_restores_it_private(fs, listing) -> None:
    """``mv draft.txt diary.txt`` (0644 over 0600, both hers): her old version is shown 0400, and
    restoring it narrows the file to the stricter mode before its contents are back."""
    ops = fs.ops
    ops.allow_other = True
    await _write(ops, ROOT, b"diary.txt", b"SECRET diary\n", 0o600, ALICE)
    await _write(ops, ROOT, b"draft.txt", b"public text\n", 0o644, ALICE)
    await ops.rename(ROOT, b"draft.txt", ROOT, b"diary.txt", 0, ALICE)
    await fs.volume.flush_pending()
    view = await ops.lookup(ROOT, NAME, Ctx())
    diary = (await ops.lookup(view.st_ino, b"diary.txt", Ctx())).st_ino
    assert len(await _names(ops, diary, HIM, listing)) == 1  # the draft's only
    volume = fs.volume
    live = volume.resolve(b"diary.txt")
    secret = next(v for v in await versions(volume, live) if v.fid != live.fid)
    await restore(volume, b"diary.txt", vid=secret.vid)
    assert stat.S_IMODE(volume.resolve(b"diary.txt").mode) == 0o600
    assert await read_all(ops, live.ino) == b"SECRET diary\n"


def _node(mode: int, uid: int) -> Node:
    return Node(7, "f" * 32, "alice", b"", stat.S_IFREG | mode, uid, uid)


def _version(holder: Holder | None) -> Version:
    return Version("v", "g" * 32, "1-x", 1, 1, 1, "alice", "p", (0, 0), holder=holder)


def test_a_version_is_shown_with_the_strictest_mode_and_its_own_files_owner() -> None:
    own, replaced = _version(None), _version(Holder(stat.S_IFREG | 0o644, ALICE_UID, ALICE_UID))
    live = _node(0o600, STRANGER_UID)  # chmod'ed since: the live mode is the stricter
    assert shown(live, own) == (0o400, STRANGER_UID, STRANGER_UID)  # its own: the live file's
    assert shown(live, replaced) == (0o400, ALICE_UID, ALICE_UID)
    assert kept_as(live, replaced) == (0o600 & 0o644, ALICE_UID, ALICE_UID)
    reader = Reader(STRANGER_UID, frozenset({STRANGER_UID}))
    assert readable(reader, live, own) and not readable(reader, live, replaced)
    assert not readable(Reader(ALICE_UID, frozenset({ALICE_UID})), live, replaced)  # the live file too
    assert readable(Reader(0, frozenset({0})), live, replaced) and readable(None, live, replaced)


def test_a_reader_is_checked_by_owner_group_and_others() -> None:
    member = Reader(5, frozenset({5, 100}))
    assert member.may_read(0o040, 1, 100) and not member.may_read(0o404, 1, 100)
    assert member.may_read(0o400, 5, 100) and not member.may_read(0o044, 5, 100)
    assert member.may_read(0o004, 1, 2) and not member.may_read(0o440, 1, 2)
