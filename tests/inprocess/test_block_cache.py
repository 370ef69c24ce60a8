"""The cache of verified, decrypted blocks and the readahead of sequential
reads (vault/files/block_cache.py, issue 25): fewer worker-thread hops, never
a stale byte, tampering still EIO, memory bounded.  In-process: the requests
the kernel would send, 128 KiB each for a sequential reader."""

from __future__ import annotations

import errno
import os

import pyfuse3
import pytest
import trio
import trio.testing

from fusevault.vault.files.block_cache import CACHE_BYTES, BlockCache
from inprocess.conftest import ALICE_UID, BOB_UID, ME, ROOT, Ctx, Fields, code_of, make

KIB = 1024
REQUEST = 128 * KIB  # what the kernel asks at a time
BS = 16 * KIB  # a new file's block size


def pattern(size: int, seed: int) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(size))


def count_hops(monkeypatch, volume) -> list[int]:
    """How many times the file layer went to a worker thread."""
    tree = volume.files.tree
    real = tree.in_thread
    hops = [0]

    async def counted(fn, *args):
        hops[0] += 1
        return await real(fn, *args)

    monkeypatch.setattr(tree, "in_thread", counted)
    return hops


async def read_seq(ops, fh: int, start: int, end: int) -> bytes:
    out = []
    for offset in range(start, end, REQUEST):
        out.append(await ops.read(fh, offset, min(REQUEST, end - offset)))
    return b"".join(out)


async def test_a_sequential_reader_hops_to_a_thread_for_one_request_in_several(fs, monkeypatch):
    ops = fs.ops
    data = pattern(4 * 1024 * KIB, 1)
    made = await make(ops, b"big", data)
    hops = count_hops(monkeypatch, fs.volume)
    info = await ops.open(made.st_ino, os.O_RDONLY, ME)
    try:
        assert await read_seq(ops, info.fh, 0, len(data)) == data
    finally:
        await ops.release(info.fh)
    requests = len(data) // REQUEST
    # Before the cache: one hop per request (32).  Now the window grows to
    # 1 MiB: one hop serves up to 9 requests.
    assert hops[0] <= requests // 4, (hops[0], requests)
    assert len(fs.volume.files.cache) == 0  # the file's blocks went with its last handle


async def test_a_request_inside_a_window_under_way_waits_for_it_instead_of_reading_it_again(fs, monkeypatch):
    """The kernel sends a sequential reader's next request before the last is
    answered: the one a window under way will hold is served from it."""
    ops = fs.ops
    data = pattern(1024 * KIB, 10)
    made = await make(ops, b"f", data)
    info = await ops.open(made.st_ino, os.O_RDONLY, ME)
    try:
        assert await ops.read(info.fh, 0, REQUEST) == data[:REQUEST]
        tree = fs.volume.files.tree
        real, hops, held = tree.in_thread, [0], trio.Event()

        async def slow_hop(fn, *args):  # the thread's answer comes after the next request
            hops[0] += 1
            await held.wait()
            return await real(fn, *args)

        monkeypatch.setattr(tree, "in_thread", slow_hop)
        got = {}

        async def read(offset: int) -> None:
            got[offset] = await ops.read(info.fh, offset, REQUEST)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read, REQUEST)  # its window: the next 128 KiB
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(read, 2 * REQUEST)
            await trio.testing.wait_all_tasks_blocked()
            held.set()
        assert got == {o: data[o:o + REQUEST] for o in (REQUEST, 2 * REQUEST)}
        assert hops[0] == 1
    finally:
        await ops.release(info.fh)


async def test_random_reads_get_no_readahead(fs, monkeypatch):
    ops = fs.ops
    data = pattern(2 * 1024 * KIB, 2)
    made = await make(ops, b"f", data)
    info = await ops.open(made.st_ino, os.O_RDONLY, ME)
    try:
        for offset in (1500 * KIB, 100 * KIB, 900 * KIB, 40 * KIB):
            assert await ops.read(info.fh, offset, 4 * KIB) == data[offset:offset + 4 * KIB]
        # Only the four blocks read were decrypted and kept.
        assert len(fs.volume.files.cache) == 4
    finally:
        await ops.release(info.fh)


async def _cached_handle(ops, data: bytes) -> tuple[int, int]:
    """A file of ``data``, open, read end to end so its blocks are cached."""
    made = await make(ops, b"f", data)
    info = await ops.open(made.st_ino, os.O_RDONLY, ME)
    assert await read_seq(ops, info.fh, 0, len(data)) == data
    return made.st_ino, info.fh


async def test_a_write_through_another_handle_is_read_not_the_cached_block(fs):
    ops = fs.ops
    data = pattern(1024 * KIB, 3)
    ino, fh = await _cached_handle(ops, data)
    assert len(fs.volume.files.cache) > 0
    other = await ops.open(ino, os.O_RDWR, ME)
    await ops.write(other.fh, 300 * KIB + 5, b"NEW" * 1000)
    expected = bytearray(data)
    expected[300 * KIB + 5:300 * KIB + 5 + 3000] = b"NEW" * 1000
    assert await read_seq(ops, fh, 0, len(data)) == expected  # dirty: not yet committed
    await ops.release(other.fh)  # committed: new records, the old ones still cached
    assert await read_seq(ops, fh, 0, len(data)) == expected
    await ops.release(fh)


async def test_a_truncate_then_rewrite_is_read_not_the_cached_blocks(fs):
    ops = fs.ops
    data = pattern(1024 * KIB, 4)
    ino, fh = await _cached_handle(ops, data)
    attr = pyfuse3.EntryAttributes()
    attr.st_size = 5000
    await ops.setattr(ino, attr, Fields(size=True), None, ME)
    attr.st_size = len(data)
    await ops.setattr(ino, attr, Fields(size=True), None, ME)
    assert await read_seq(ops, fh, 0, len(data)) == data[:5000] + bytes(len(data) - 5000)
    other = await ops.open(ino, os.O_WRONLY | os.O_TRUNC, ME)
    again = pattern(len(data), 5)
    await ops.write(other.fh, 0, again)
    await ops.release(other.fh)
    assert await read_seq(ops, fh, 0, len(data)) == again
    await ops.release(fh)


async def test_another_writers_version_is_read_not_the_cached_blocks(shared):
    """bob's open handle has alice's file cached; her new version comes in (as
    a peer's does: absorbed, the open contents switched): he reads it."""
    from inprocess.test_two_users import _share, _walk

    drive = shared.drive
    alice, bob = Ctx(ALICE_UID, ALICE_UID), Ctx(BOB_UID, BOB_UID)
    first = pattern(1024 * KIB, 6)
    info = await drive.create(ROOT, b"doc", 0o100644, os.O_RDWR | os.O_CREAT, alice)
    await drive.write(info[0].fh, 0, first)
    await drive.release(info[0].fh)
    await _share(shared, "doc", "READ")
    theirs = await _walk(drive, b"shared/alice/doc", bob)
    held = await drive.open(theirs.st_ino, os.O_RDONLY, bob)
    try:
        assert await read_seq(drive, held.fh, 0, len(first)) == first
        assert len(shared.volumes["bob"].files.cache) > 0
        mine = await drive.open(info[1].st_ino, os.O_WRONLY, alice)
        await drive.write(mine.fh, 200 * KIB, b"changed by alice" * 100)
        await drive.release(mine.fh)
        expected = bytearray(first)
        expected[200 * KIB:200 * KIB + 1600] = b"changed by alice" * 100
        assert await read_seq(drive, held.fh, 0, len(first)) == expected
    finally:
        await drive.release(held.fh)


def _flip_block(volume, ino: int, index: int) -> None:
    """Flip one byte of the ciphertext of the record of block ``index``."""
    node = volume.tree.require(ino)
    content = volume.files.content(node)
    offset, length, _, _ = content.manifest.blocks.get(index)
    with open(content.vf_path, "r+b") as vf:
        vf.seek(offset + length - 20)
        byte = vf.read(1)
        vf.seek(offset + length - 20)
        vf.write(bytes([byte[0] ^ 1]))
    volume.files.release_content(node)


async def test_a_tampered_block_is_eio_after_a_cached_read_of_its_neighbour(fs):
    """The readahead after block 4 takes in block 5, which fails its checks:
    left out, so reading 0..4 works and reading 5 is EIO, every time."""
    ops = fs.ops
    data = pattern(1024 * KIB, 7)
    made = await make(ops, b"f", data)
    _flip_block(fs.volume, made.st_ino, 5)
    info = await ops.open(made.st_ino, os.O_RDONLY, ME)
    try:
        for offset in range(0, 5 * BS, 16 * KIB):  # sequential: the window grows over block 5
            assert await ops.read(info.fh, offset, 16 * KIB) == data[offset:offset + 16 * KIB]
        for _ in range(2):
            with pytest.raises(pyfuse3.FUSEError) as err:
                await ops.read(info.fh, 5 * BS + 100, 10)
            assert code_of(err) == errno.EIO
        assert await ops.read(info.fh, 6 * BS, 100) == data[6 * BS:6 * BS + 100]
    finally:
        await ops.release(info.fh)


async def test_a_large_file_read_end_to_end_keeps_the_cache_bounded(fs):
    ops = fs.ops
    size = 3 * CACHE_BYTES
    dense = pattern(size, 8)
    made = await make(ops, b"dense", dense)
    sparse = await make(ops, b"sparse")
    attr = pyfuse3.EntryAttributes()
    attr.st_size = 64 * CACHE_BYTES
    await ops.setattr(sparse.st_ino, attr, Fields(size=True), None, ME)
    cache = fs.volume.files.cache
    for ino, length in ((made.st_ino, size), (sparse.st_ino, 64 * CACHE_BYTES)):
        info = await ops.open(ino, os.O_RDONLY, ME)
        try:
            most = 0
            for offset in range(0, length, REQUEST):
                got = await ops.read(info.fh, offset, REQUEST)
                if ino == made.st_ino:
                    assert got == dense[offset:offset + REQUEST]
                else:
                    assert got == bytes(REQUEST)
                most = max(most, cache.size)
                assert cache.size <= CACHE_BYTES and len(cache) <= CACHE_BYTES // BS
            # The sparse file's holes are not cached; its final block is stored.
            assert most > CACHE_BYTES // 2 if ino == made.st_ino else most <= BS
        finally:
            await ops.release(info.fh)


async def test_lock_and_unmount_drop_every_cached_block(fs):
    ops = fs.ops
    data = pattern(512 * KIB, 9)
    _, fh = await _cached_handle(ops, data)
    files = fs.volume.files
    assert files.cache.size > 0
    files.close_contents()  # what unmount (Volume.close) and lock (Volume.wipe) do
    assert files.cache.size == 0 and len(files.cache) == 0


async def test_a_key_lost_drops_the_files_cached_blocks(fs):
    """A share that no longer reaches this user (Inodes.forget_key): no plaintext of
    that file stays in the cache until the lock (only the lock dropped it before)."""
    ops = fs.ops
    data = pattern(512 * KIB, 11)
    ino, fh = await _cached_handle(ops, data)
    files = fs.volume.files
    node = files.tree.get(ino)
    assert files.cache.size > 0
    files.tree.forget_key(node)
    assert files.cache.size == 0 and len(files.cache) == 0
    await ops.release(fh)


def test_the_lru_evicts_the_oldest_and_drops_a_file():
    cache = BlockCache(budget=3 * BS)
    for i in range(4):
        cache.put(("a", "v", i, i * BS, BS, 0), bytes(BS))
    assert cache.get(("a", "v", 0, 0, BS, 0)) is None and cache.size == 3 * BS
    cache.put(("b", "v", 0, 0, BS, 0), bytes(BS))
    cache.drop_file("a")
    assert len(cache) == 1 and cache.size == BS
