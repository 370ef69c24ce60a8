"""Every FUSE operation of fs/operations.py's ``Operations``, in-process
(no kernel): results and the errno a user sees (S3QL's t3_fs_api is the model).

The fixture ``fs`` (conftest.py) is alice's personal mount; requests carry a
fake request context, and readdir's replies are caught by replacing
``pyfuse3.readdir_reply``, as S3QL's tests do.
"""

from __future__ import annotations

import errno
import os
import stat

import pyfuse3
import pytest
import trio
from conftest import PASSPHRASE

from inprocess.conftest import (
    DIR,
    FILE,
    ME,
    ROOT,
    Ctx,
    Fields,
    agent_for,
    code_of,
    make,
    read_all,
    rewrite,
)

# --- lookup and attributes


async def test_root_is_a_directory_and_lookup_finds_what_was_made(fs):
    ops = fs.ops
    root = await ops.getattr(ROOT, ME)
    assert stat.S_ISDIR(root.st_mode) and root.st_ino == ROOT
    made = await make(ops, b"a.txt", b"hello")
    found = await ops.lookup(ROOT, b"a.txt", ME)
    assert found.st_ino == made.st_ino and found.st_size == 5 and stat.S_ISREG(found.st_mode)
    assert (await ops.lookup(ROOT, b".", ME)).st_ino == ROOT
    assert (await ops.getattr(made.st_ino, ME)).st_size == 5


async def test_every_request_tells_sync_the_drive_is_in_use(fs):
    """fs/boundary.py notes each request, refused ones too, for sync's batches to wait
    (sync/foreground.py)."""
    from fusevault.sync.foreground import FOREGROUND

    FOREGROUND.last = before = -1.0
    await fs.ops.getattr(ROOT, ME)
    assert FOREGROUND.last > before
    FOREGROUND.last = -1.0
    with pytest.raises(pyfuse3.FUSEError):
        await fs.ops.lookup(ROOT, b"nothing", ME)
    assert FOREGROUND.last > before


async def test_lookup_of_a_missing_name_is_enoent(fs):
    with pytest.raises(pyfuse3.FUSEError) as err:
        await fs.ops.lookup(ROOT, b"nothing", ME)
    assert code_of(err) == errno.ENOENT


async def test_a_name_too_long_is_enametoolong(fs):
    with pytest.raises(pyfuse3.FUSEError) as err:
        await fs.ops.lookup(ROOT, b"x" * 256, ME)
    assert code_of(err) == errno.ENAMETOOLONG
    with pytest.raises(pyfuse3.FUSEError) as err:
        await fs.ops.mkdir(ROOT, b"x" * 256, DIR, ME)
    assert code_of(err) == errno.ENAMETOOLONG


async def test_lookup_in_a_file_is_enotdir(fs):
    made = await make(fs.ops, b"f")
    with pytest.raises(pyfuse3.FUSEError) as err:
        await fs.ops.lookup(made.st_ino, b"x", ME)
    assert code_of(err) == errno.ENOTDIR


async def test_new_nodes_belong_to_the_caller(fs):
    entry = await fs.ops.mkdir(ROOT, b"d", DIR, Ctx(uid=1234, gid=5678))
    assert (entry.st_uid, entry.st_gid) == (1234, 5678)


async def test_setattr_mode_owner_and_times(fs):
    ops = fs.ops
    made = await make(ops, b"f", b"data")
    attr = pyfuse3.EntryAttributes()
    attr.st_mode = stat.S_IFREG | 0o600
    attr.st_uid, attr.st_gid = 1001, 1002
    attr.st_atime_ns, attr.st_mtime_ns = 1_000_000_000 * 10**9, 1_100_000_000 * 10**9
    got = await ops.setattr(made.st_ino, attr, Fields(mode=True, uid=True, gid=True, atime=True, mtime=True),
                            None, ME)
    assert stat.S_IMODE(got.st_mode) == 0o600 and stat.S_ISREG(got.st_mode)
    assert (got.st_uid, got.st_gid) == (1001, 1002)
    assert (got.st_atime_ns, got.st_mtime_ns) == (1_000_000_000 * 10**9, 1_100_000_000 * 10**9)
    again = await ops.getattr(made.st_ino, ME)
    assert again.st_mtime_ns == got.st_mtime_ns and stat.S_IMODE(again.st_mode) == 0o600


async def test_setattr_size_truncates_and_extends_with_zeros(fs):
    ops = fs.ops
    made = await make(ops, b"f", b"0123456789")
    attr = pyfuse3.EntryAttributes()
    attr.st_size = 4
    assert (await ops.setattr(made.st_ino, attr, Fields(size=True), None, ME)).st_size == 4
    assert await read_all(ops, made.st_ino) == b"0123"
    attr.st_size = 8
    assert (await ops.setattr(made.st_ino, attr, Fields(size=True), None, ME)).st_size == 8
    assert await read_all(ops, made.st_ino) == b"0123\0\0\0\0"


async def test_truncating_a_directory_is_eisdir(fs):
    made = await fs.ops.mkdir(ROOT, b"d", DIR, ME)
    attr = pyfuse3.EntryAttributes()
    attr.st_size = 0
    with pytest.raises(pyfuse3.FUSEError) as err:
        await fs.ops.setattr(made.st_ino, attr, Fields(size=True), None, ME)
    assert code_of(err) == errno.EISDIR


# --- making nodes


async def test_mkdir_and_its_errors(fs):
    ops = fs.ops
    made = await ops.mkdir(ROOT, b"d", DIR, ME)
    assert stat.S_ISDIR(made.st_mode) and made.st_nlink >= 2
    with pytest.raises(pyfuse3.FUSEError) as err:
        await ops.mkdir(ROOT, b"d", DIR, ME)
    assert code_of(err) == errno.EEXIST
    with pytest.raises(pyfuse3.FUSEError) as err:
        await ops.mkdir(ROOT + 10_000, b"e", DIR, ME)
    assert code_of(err) == errno.ENOENT


async def test_create_over_an_existing_name_is_eexist(fs):
    await make(fs.ops, b"f")
    with pytest.raises(pyfuse3.FUSEError) as err:
        await fs.ops.create(ROOT, b"f", FILE, os.O_RDWR | os.O_CREAT | os.O_EXCL, ME)
    assert code_of(err) == errno.EEXIST


async def test_mknod_makes_a_fifo_and_an_empty_file(fs):
    fifo = await fs.ops.mknod(ROOT, b"pipe", stat.S_IFIFO | 0o600, 0, ME)
    assert stat.S_ISFIFO(fifo.st_mode)
    plain = await fs.ops.mknod(ROOT, b"plain", FILE, 0, ME)
    assert stat.S_ISREG(plain.st_mode) and plain.st_size == 0
    assert await read_all(fs.ops, plain.st_ino) == b""
    with pytest.raises(pyfuse3.FUSEError) as err:  # only regular files open
        await fs.ops.open(fifo.st_ino, os.O_RDONLY, ME)
    assert code_of(err) == errno.EINVAL


async def test_symlink_and_readlink(fs):
    ops = fs.ops
    link = await ops.symlink(ROOT, b"ln", b"some/where", ME)
    assert stat.S_ISLNK(link.st_mode) and link.st_size == len(b"some/where")
    assert await ops.readlink(link.st_ino, ME) == b"some/where"
    made = await make(ops, b"f")
    with pytest.raises(pyfuse3.FUSEError) as err:
        await ops.readlink(made.st_ino, ME)
    assert code_of(err) == errno.EINVAL


async def test_link_shares_the_inode_and_survives_the_first_name(fs):
    ops = fs.ops
    made = await make(ops, b"a", b"both names")
    linked = await ops.link(made.st_ino, ROOT, b"b", ME)
    assert linked.st_ino == made.st_ino and linked.st_nlink == 2
    await ops.unlink(ROOT, b"a", ME)
    assert (await ops.getattr(made.st_ino, ME)).st_nlink == 1
    assert await read_all(ops, made.st_ino) == b"both names"
    with pytest.raises(pyfuse3.FUSEError) as err:
        await ops.link(made.st_ino, ROOT, b"b", ME)
    assert code_of(err) == errno.EEXIST


async def test_a_hard_link_to_a_directory_is_refused(fs):
    made = await fs.ops.mkdir(ROOT, b"d", DIR, ME)
    with pytest.raises(pyfuse3.FUSEError) as err:
        await fs.ops.link(made.st_ino, ROOT, b"d2", ME)
    assert code_of(err) == errno.EOPNOTSUPP


# --- removing


async def test_unlink_and_its_errors(fs):
    ops = fs.ops
    await make(ops, b"f")
    await ops.unlink(ROOT, b"f", ME)
    with pytest.raises(pyfuse3.FUSEError) as err:
        await ops.lookup(ROOT, b"f", ME)
    assert code_of(err) == errno.ENOENT
    with pytest.raises(pyfuse3.FUSEError) as err:
        await ops.unlink(ROOT, b"f", ME)
    assert code_of(err) == errno.ENOENT
    await ops.mkdir(ROOT, b"d", DIR, ME)
    with pytest.raises(pyfuse3.FUSEError) as err:
        await ops.unlink(ROOT, b"d", ME)
    assert code_of(err) == errno.EISDIR


async def test_rmdir_and_its_errors(fs):
    ops = fs.ops
    d = await ops.mkdir(ROOT, b"d", DIR, ME)
    await make(ops, b"inside", parent=d.st_ino)
    with pytest.raises(pyfuse3.FUSEError) as err:
        await ops.rmdir(ROOT, b"d", ME)
    assert code_of(err) == errno.ENOTEMPTY
    await make(ops, b"f")
    with pytest.raises(pyfuse3.FUSEError) as err:
        await ops.rmdir(ROOT, b"f", ME)
    assert code_of(err) == errno.ENOTDIR
    await ops.unlink(d.st_ino, b"inside", ME)
    await ops.rmdir(ROOT, b"d", ME)
    with pytest.raises(pyfuse3.FUSEError) as err:
        await ops.lookup(ROOT, b"d", ME)
    assert code_of(err) == errno.ENOENT


async def test_an_unlinked_open_file_stays_readable_and_writable_until_released(fs):
    ops = fs.ops
    info, _ = await ops.create(ROOT, b"tmp", FILE, os.O_RDWR, ME)
    fh = info.fh
    await ops.write(fh, 0, b"still here")
    await ops.unlink(ROOT, b"tmp", ME)
    assert await ops.read(fh, 0, 100) == b"still here"
    assert await ops.write(fh, 10, b"!") == 1
    assert await ops.read(fh, 0, 100) == b"still here!"
    await ops.release(fh)


# --- renaming


async def test_rename_moves_and_replaces(fs):
    ops = fs.ops
    d = await ops.mkdir(ROOT, b"d", DIR, ME)
    a = await make(ops, b"a", b"new contents")
    await make(ops, b"b", b"old contents")
    await ops.rename(ROOT, b"a", ROOT, b"b", 0, ME)  # replaces b
    assert (await ops.lookup(ROOT, b"b", ME)).st_ino == a.st_ino
    assert await read_all(ops, a.st_ino) == b"new contents"
    with pytest.raises(pyfuse3.FUSEError) as err:
        await ops.lookup(ROOT, b"a", ME)
    assert code_of(err) == errno.ENOENT
    await ops.rename(ROOT, b"b", d.st_ino, b"moved", 0, ME)
    assert (await ops.lookup(d.st_ino, b"moved", ME)).st_ino == a.st_ino


async def test_rename_errors(fs):
    ops = fs.ops
    d = await ops.mkdir(ROOT, b"d", DIR, ME)
    full = await ops.mkdir(ROOT, b"full", DIR, ME)
    await make(ops, b"x", parent=full.st_ino)
    await make(ops, b"f")
    cases = [
        ((ROOT, b"missing", ROOT, b"y", 0), errno.ENOENT),
        ((ROOT, b"d", ROOT, b"full", 0), errno.ENOTEMPTY),  # a directory over a non-empty one
        ((ROOT, b"f", ROOT, b"d", 0), errno.EISDIR),  # a file over a directory
        ((ROOT, b"d", ROOT, b"f", 0), errno.ENOTDIR),  # a directory over a file
        ((ROOT, b"d", d.st_ino, b"inside", 0), errno.EINVAL),  # into itself
        ((ROOT, b"f", ROOT, b"d", 1 << 10), errno.EINVAL),  # a flag nobody knows
    ]
    for args, code in cases:
        with pytest.raises(pyfuse3.FUSEError) as err:
            await ops.rename(*args, ME)
        assert code_of(err) == code, args


async def test_rename_noreplace(fs):
    ops = fs.ops
    await make(ops, b"a", b"A")
    b = await make(ops, b"b", b"B")
    with pytest.raises(pyfuse3.FUSEError) as err:
        await ops.rename(ROOT, b"a", ROOT, b"b", pyfuse3.RENAME_NOREPLACE, ME)
    assert code_of(err) == errno.EEXIST
    assert await read_all(ops, b.st_ino) == b"B"
    await ops.rename(ROOT, b"a", ROOT, b"c", pyfuse3.RENAME_NOREPLACE, ME)
    assert await read_all(ops, (await ops.lookup(ROOT, b"c", ME)).st_ino) == b"A"


async def test_rename_exchange(fs):
    ops = fs.ops
    a = await make(ops, b"a", b"A")
    d = await ops.mkdir(ROOT, b"d", DIR, ME)
    await ops.rename(ROOT, b"a", ROOT, b"d", pyfuse3.RENAME_EXCHANGE, ME)
    assert (await ops.lookup(ROOT, b"a", ME)).st_ino == d.st_ino
    assert (await ops.lookup(ROOT, b"d", ME)).st_ino == a.st_ino
    with pytest.raises(pyfuse3.FUSEError) as err:
        await ops.rename(ROOT, b"a", ROOT, b"nothing", pyfuse3.RENAME_EXCHANGE, ME)
    assert code_of(err) == errno.ENOENT


# --- file contents


async def test_write_read_at_offsets_with_a_hole(fs):
    ops = fs.ops
    info, entry = await ops.create(ROOT, b"f", FILE, os.O_RDWR, ME)
    assert await ops.write(info.fh, 0, b"abc") == 3
    assert await ops.write(info.fh, 100_000, b"xyz") == 3
    assert await ops.read(info.fh, 1, 2) == b"bc"
    assert await ops.read(info.fh, 3, 5) == b"\0" * 5
    assert await ops.read(info.fh, 100_000, 10) == b"xyz"
    assert await ops.read(info.fh, 200_000, 10) == b""  # past the end
    await ops.fsync(info.fh, False)
    await ops.release(info.fh)
    assert (await ops.getattr(entry.st_ino, ME)).st_size == 100_003


async def test_contents_survive_a_reload_of_the_tree(fs, vault_copy):
    """What was written and released is in the store: a new Volume reads it."""
    from fusevault.store import open_store
    from fusevault.vault.format.layout import open_layout
    from fusevault.vault.volume import Volume

    data = os.urandom(300_000)
    await make(fs.ops, b"big", data)
    await fs.ops.fsyncdir(0, False)
    layout = open_layout(vault_copy)
    store = open_store(layout.root, layout.store)
    try:
        again = Volume.load(layout, store, fs.volume.key, fs.volume.root.fid)
        node = again.resolve(b"big")
        fh = await again.open(node.ino)
        assert await again.read(fh, 0, 1 << 20) == data
        await again.release(fh)
    finally:
        store.close()


async def test_open_with_o_trunc_empties_the_file(fs):
    ops = fs.ops
    made = await make(ops, b"f", b"old old old")
    await rewrite(ops, made.st_ino, b"new")
    assert await read_all(ops, made.st_ino) == b"new"
    assert (await ops.getattr(made.st_ino, ME)).st_size == 3


async def test_opening_a_directory_is_eisdir(fs):
    d = await fs.ops.mkdir(ROOT, b"d", DIR, ME)
    with pytest.raises(pyfuse3.FUSEError) as err:
        await fs.ops.open(d.st_ino, os.O_RDONLY, ME)
    assert code_of(err) == errno.EISDIR


async def test_a_released_handle_is_ebadf(fs):
    info, _ = await fs.ops.create(ROOT, b"f", FILE, os.O_RDWR, ME)
    await fs.ops.release(info.fh)
    with pytest.raises(pyfuse3.FUSEError) as err:
        await fs.ops.read(info.fh, 0, 10)
    assert code_of(err) == errno.EBADF
    with pytest.raises(pyfuse3.FUSEError) as err:
        await fs.ops.write(info.fh, 0, b"x")
    assert code_of(err) == errno.EBADF


async def test_every_release_after_writes_is_one_version(fs):
    ops = fs.ops
    made = await make(ops, b"f", b"one")
    await rewrite(ops, made.st_ino, b"two")
    await read_all(ops, made.st_ino)  # reading makes no version
    answer = await ops.session.requests.handle({"cmd": "history", "path": "f"})
    assert [v["size"] for v in answer["versions"]] == [3, 3], answer


# --- directories


async def test_readdir_lists_entries_with_dot_and_dotdot_and_hides_versions(fs, listing):
    ops = fs.ops
    d = await ops.mkdir(ROOT, b"d", DIR, ME)
    for name in (b"a", b"b", b"c"):
        await make(ops, name, parent=d.st_ino)
    assert sorted(await listing(ops, d.st_ino)) == [b".", b"..", b"a", b"b", b"c"]
    root = await listing(ops, ROOT)
    assert b"d" in root and b".versions" not in root


async def test_readdir_resumes_at_the_offset_the_kernel_gives(fs, monkeypatch):
    ops = fs.ops
    names = [b"n%02d" % i for i in range(12)]
    for name in names:
        await make(ops, name)
    got: list = []

    def reply(token, name, attr, next_id):
        if len(token) >= 5:  # the kernel's buffer is full
            return False
        token.append((name, next_id))
        return True

    monkeypatch.setattr(pyfuse3, "readdir_reply", reply)
    fh = await ops.opendir(ROOT, ME)
    offset = 0
    for _ in range(len(names)):  # 14 entries, 5 at a time: a readdir that does not advance fails
        batch: list = []
        await ops.readdir(fh, offset, batch)
        if not batch:
            break
        got += batch
        offset = batch[-1][1]
    else:
        pytest.fail("readdir never came to the end")
    await ops.releasedir(fh)
    listed = [name for name, _ in got]
    assert len(listed) == len(set(listed))
    assert sorted(set(listed) - {b".", b".."}) == names


async def test_a_name_removed_while_listing_is_skipped(fs, monkeypatch):
    ops = fs.ops
    for name in (b"a", b"b"):
        await make(ops, name)
    monkeypatch.setattr(pyfuse3, "readdir_reply",
                        lambda token, name, attr, next_id: token.append(name) or True)
    fh = await ops.opendir(ROOT, ME)
    await ops.unlink(ROOT, b"b", ME)
    listed: list = []
    await ops.readdir(fh, 0, listed)
    await ops.releasedir(fh)
    assert b"a" in listed and b"b" not in listed


async def test_opendir_of_a_file_is_enotdir(fs):
    made = await make(fs.ops, b"f")
    with pytest.raises(pyfuse3.FUSEError) as err:
        await fs.ops.opendir(made.st_ino, ME)
    assert code_of(err) == errno.ENOTDIR


async def test_lookup_counts_are_kept_until_forget(fs):
    ops = fs.ops
    made = await make(ops, b"f")
    node = fs.volume.get(made.st_ino)
    before = node.lookups
    await ops.lookup(ROOT, b"f", ME)
    await ops.lookup(ROOT, b"f", ME)
    assert node.lookups == before + 2
    await ops.forget([(made.st_ino, 2)])
    assert node.lookups == before


# --- statfs, xattrs, access


async def test_statfs(fs):
    st = await fs.ops.statfs(ME)
    assert st.f_namemax == 255 and st.f_bsize > 0 and st.f_blocks >= st.f_bfree


async def test_xattrs(fs):
    ops = fs.ops
    made = await make(ops, b"f")
    await ops.setxattr(made.st_ino, b"user.colour", b"blue", ME)
    assert await ops.getxattr(made.st_ino, b"user.colour", ME) == b"blue"
    assert await ops.listxattr(made.st_ino, ME) == [b"user.colour"]
    await ops.removexattr(made.st_ino, b"user.colour", ME)
    assert await ops.listxattr(made.st_ino, ME) == []
    with pytest.raises(pyfuse3.FUSEError) as err:
        await ops.getxattr(made.st_ino, b"user.colour", ME)
    assert code_of(err) == pyfuse3.ENOATTR
    with pytest.raises(pyfuse3.FUSEError) as err:
        await ops.removexattr(made.st_ino, b"user.colour", ME)
    assert code_of(err) == pyfuse3.ENOATTR
    with pytest.raises(pyfuse3.FUSEError) as err:
        await ops.setxattr(made.st_ino, b"trusted.x", b"1", ME)
    assert code_of(err) == errno.EOPNOTSUPP


async def _set_refused(ops, ino: int, name: bytes, value: bytes) -> int:
    with pytest.raises(pyfuse3.FUSEError) as err:
        await ops.setxattr(ino, name, value, ME)
    return code_of(err)


async def test_a_files_xattrs_past_their_cap_are_enospc(fs):
    """Attack round 49t (6): a file's extended attributes hold at most 64 KiB in all (names and values)
    and 1024 names; a set past either is ENOSPC (as ext4), and nothing of it is kept."""
    ops = fs.ops
    made = await make(ops, b"f")
    await ops.setxattr(made.st_ino, b"user.a", b"x" * 60000, ME)
    assert await _set_refused(ops, made.st_ino, b"user.b", b"y" * 6000) == errno.ENOSPC
    assert await ops.listxattr(made.st_ino, ME) == [b"user.a"]
    await ops.setxattr(made.st_ino, b"user.a", b"z" * (64 * 1024 - 6), ME)  # a value replaced: up to the cap
    assert await _set_refused(ops, made.st_ino, b"user.a", b"z" * (64 * 1024 - 5)) == errno.ENOSPC
    assert await ops.getxattr(made.st_ino, b"user.a", ME) == b"z" * (64 * 1024 - 6)
    await ops.removexattr(made.st_ino, b"user.a", ME)  # room again
    for i in range(1024):
        await ops.setxattr(made.st_ino, b"user.%d" % i, b"", ME)
    assert await _set_refused(ops, made.st_ino, b"user.one-more", b"") == errno.ENOSPC
    await ops.setxattr(made.st_ino, b"user.0", b"v", ME)  # one it has, within the bytes: taken
    assert len(await ops.listxattr(made.st_ino, ME)) == 1024


def test_a_file_over_the_xattr_cap_from_before_loads_reads_and_may_shrink(vault_copy):
    """A file whose extended attributes hold more than the cap (a vault from before it) is committed,
    loads again and reads whole; a set that adds is ENOSPC, one that makes it hold less is taken, a
    removal too (attack round 49t (6))."""
    from inprocess.conftest import _composed

    big = {b"user.k%d" % i: os.urandom(60000) for i in range(5)}
    with _composed(vault_copy) as fs:
        async def fill() -> None:
            made = await make(fs.ops, b"old")
            node = fs.volume.get(made.st_ino)
            node.xattrs = dict(big)  # as a vault from before the cap holds it
            await fs.volume.tree.save_node(node)
        trio.run(fill)
    with _composed(vault_copy) as fs:
        async def read() -> None:
            ops = fs.ops
            ino = (await ops.lookup(ROOT, b"old", ME)).st_ino
            assert sorted(await ops.listxattr(ino, ME)) == sorted(big)
            for name, value in big.items():
                assert await ops.getxattr(ino, name, ME) == value
            assert await _set_refused(ops, ino, b"user.new", b"1") == errno.ENOSPC
            assert await _set_refused(ops, ino, b"user.k0", b"x" * 60001) == errno.ENOSPC
            await ops.setxattr(ino, b"user.k0", b"smaller", ME)
            await ops.removexattr(ino, b"user.k1", ME)
            assert await ops.getxattr(ino, b"user.k0", ME) == b"smaller"
            assert len(await ops.listxattr(ino, ME)) == 4
        trio.run(read)


async def test_access(fs):
    made = await make(fs.ops, b"f")
    assert await fs.ops.access(made.st_ino, os.R_OK | os.W_OK, ME) is True
    with pytest.raises(pyfuse3.FUSEError) as err:
        await fs.ops.access(ROOT + 10_000, os.R_OK, ME)
    assert code_of(err) == errno.ENOENT


# --- the .versions tree


async def test_versions_tree_lists_and_reads_old_versions(fs, listing):
    ops = fs.ops
    made = await make(ops, b"doc.txt", b"first")
    await rewrite(ops, made.st_ino, b"second, longer")
    top = await ops.lookup(ROOT, b".versions", ME)
    assert stat.S_ISDIR(top.st_mode)
    assert b"doc.txt" in await listing(ops, top.st_ino)
    mirror = await ops.lookup(top.st_ino, b"doc.txt", ME)
    assert stat.S_ISDIR(mirror.st_mode)
    names = [n for n in await listing(ops, mirror.st_ino) if n not in (b".", b"..")]
    assert len(names) == 2
    contents = set()
    for name in names:
        entry = await ops.lookup(mirror.st_ino, name, ME)
        assert stat.S_ISREG(entry.st_mode) and not entry.st_mode & 0o222
        info = await ops.open(entry.st_ino, os.O_RDONLY, ME)
        contents.add(await ops.read(info.fh, 0, 100))
        await ops.release(info.fh)
    assert contents == {b"first", b"second, longer"}
    assert await ops.access(mirror.st_ino, os.R_OK, ME) is True
    assert await ops.access(mirror.st_ino, os.W_OK, ME) is False


async def test_versions_tree_is_read_only(fs):
    ops = fs.ops
    made = await make(ops, b"doc.txt", b"first")
    top = await ops.lookup(ROOT, b".versions", ME)
    mirror = await ops.lookup(top.st_ino, b"doc.txt", ME)
    attr = pyfuse3.EntryAttributes()
    attr.st_size = 0
    refused = [
        ops.mkdir(top.st_ino, b"x", DIR, ME),
        ops.create(mirror.st_ino, b"x", FILE, os.O_RDWR, ME),
        ops.unlink(top.st_ino, b"doc.txt", ME),
        ops.rmdir(ROOT, b".versions", ME),
        ops.rename(ROOT, b".versions", ROOT, b"v", 0, ME),
        ops.rename(ROOT, b"doc.txt", top.st_ino, b"doc.txt", 0, ME),
        ops.setattr(mirror.st_ino, attr, Fields(size=True), None, ME),
        ops.setxattr(mirror.st_ino, b"user.x", b"1", ME),
        ops.link(made.st_ino, top.st_ino, b"l", ME),
    ]
    for call in refused:
        with pytest.raises(pyfuse3.FUSEError) as err:
            await call
        assert code_of(err) == errno.EROFS, call
    with pytest.raises(pyfuse3.FUSEError) as err:  # the name is taken
        await ops.mkdir(ROOT, b".versions", DIR, ME)
    assert code_of(err) == errno.EEXIST
    with pytest.raises(pyfuse3.FUSEError) as err:
        await ops.lookup(top.st_ino, b"not-there", ME)
    assert code_of(err) == errno.ENOENT
    with pytest.raises(pyfuse3.FUSEError) as err:
        await ops.getxattr(mirror.st_ino, b"user.x", ME)
    assert code_of(err) == pyfuse3.ENOATTR
    assert await ops.listxattr(mirror.st_ino, ME) == []


# --- fallocate (fs/fallocate.py calls it), and the session gate


async def test_fallocate_grows_a_file_with_zeros_and_never_shrinks_it(fs):
    ops = fs.ops
    info, entry = await ops.create(ROOT, b"f", FILE, os.O_RDWR, ME)
    await ops.write(info.fh, 0, b"abc")
    await ops.fallocate(info.fh, 0, 0, 10)
    assert (await ops.getattr(entry.st_ino, ME)).st_size == 10
    await ops.fallocate(info.fh, 0, 0, 2)
    await ops.fallocate(info.fh, 1, 0, 100)  # FALLOC_FL_KEEP_SIZE: nothing to reserve
    assert (await ops.getattr(entry.st_ino, ME)).st_size == 10
    assert await ops.read(info.fh, 0, 100) == b"abc" + b"\0" * 7
    with pytest.raises(pyfuse3.FUSEError) as err:  # FALLOC_FL_PUNCH_HOLE | KEEP_SIZE
        await ops.fallocate(info.fh, 0x02 | 0x01, 0, 1)
    assert code_of(err) == errno.EOPNOTSUPP
    await ops.release(info.fh)


async def test_a_locked_user_gets_eacces_and_unlock_brings_the_same_inodes_back(fs):
    ops = fs.ops
    made = await make(ops, b"f", b"before the lock")
    agent = agent_for(fs)
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run, fs.volume, 3600)
        await ops.lookup(ROOT, b"f", ME)  # the kernel holds a reference over the lock
        assert await agent.lock("a test") is True
        for call in (ops.getattr(made.st_ino, ME), ops.lookup(ROOT, b"f", ME),
                     ops.open(made.st_ino, os.O_RDONLY, ME), ops.mkdir(ROOT, b"d", DIR, ME),
                     ops.opendir(ROOT, ME), ops.statfs(ME)):
            with pytest.raises(pyfuse3.FUSEError) as err:
                await call
            assert code_of(err) == errno.EACCES
        await ops.forget([(made.st_ino, 1)])  # the kernel may forget while locked
        await agent.unlock(PASSPHRASE.encode())
        again = await ops.lookup(ROOT, b"f", ME)
        assert again.st_ino == made.st_ino
        assert await read_all(ops, made.st_ino) == b"before the lock"
        nursery.cancel_scope.cancel()
