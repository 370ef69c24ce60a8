"""Manifests as trees (issue 26, vault/format/manifest_tree.py) through real mounts: any
tampering with a node is EIO; a commit writes the changed path only and
shares the rest, which gc keeps; a small edit of a big file stays small."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import time
from pathlib import Path

import pytest
from conftest import fusevault, mounted

KIB, MIB = 1 << 10, 1 << 20
FAR = 1 << 36  # 64 GiB: a tree of several levels


def run_json(*args) -> dict:
    result = fusevault(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def places(vault: Path) -> list[tuple[str, str, int, str, int, int]]:
    """(fid, vid, idx, owner, offset, length) of every record written here, in commit order."""
    db = sqlite3.connect(vault / "store.sqlite")
    rows = db.execute("SELECT fid, vid, idx, owner, offset, length FROM places ORDER BY n").fetchall()
    db.close()
    return rows


def vf(vault: Path, owner: str, fid: str) -> Path:
    return vault / "users" / owner / "own" / f"{fid}.vf"


def read_at(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def write_at(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def assert_eio(mnt: Path, name: str) -> None:
    with pytest.raises(OSError) as err:
        fd = os.open(mnt / name, os.O_RDONLY)
        try:
            for offset in (0, FAR // 2, FAR):
                os.pread(fd, 4096, offset)
        finally:
            os.close(fd)
    assert err.value.errno == errno.EIO


def two_leaves(mnt: Path) -> None:
    """A file whose tree has two leaves of the same shape (one run each), far apart."""
    fd = os.open(mnt / "f", os.O_CREAT | os.O_RDWR)
    os.pwrite(fd, b"a" * 4096, 0)
    os.pwrite(fd, b"z" * 4096, FAR // 2)
    os.pwrite(fd, b"e" * 4096, FAR)  # the final block: its leaf's run is marked last
    os.close(fd)


@pytest.mark.parametrize("attack", ["flip", "swap", "replay"])
def test_a_tampered_tree_node_gives_eio(vault: Path, tmp_path: Path, attack: str) -> None:
    with mounted(vault, tmp_path / "mnt") as mnt:
        two_leaves(mnt)
        if attack == "replay":
            with open(mnt / "f", "r+b") as f:  # a second version: a new leaf for the middle block
                f.seek(FAR // 2)
                f.write(b"y" * 4096)
    rows = places(vault)
    nodes = [r for r in rows if r[2] <= -2]
    leaves = [r for r in nodes if (-r[2] - 2) & 7 == 0]
    fid, vid, _, owner, _, _ = rows[-1]
    path = vf(vault, owner, fid)
    if attack == "flip":
        _, _, _, _, offset, length = nodes[0]
        byte = read_at(path, offset + length // 2, 1)[0]
        write_at(path, offset + length // 2, bytes([byte ^ 1]))
    elif attack == "swap":  # two leaves of the same length, each in the other's place
        first, second = [r for r in leaves if r[1] == vid][:2]
        assert first[5] == second[5]
        a, b = read_at(path, first[4], first[5]), read_at(path, second[4], second[5])
        write_at(path, first[4], b)
        write_at(path, second[4], a)
    else:  # the first version's leaf of the middle block where the second's is
        old, new = [r for r in leaves if r[2] == leaves[-1][2]][-2:]
        assert old[1] != new[1] and old[5] == new[5]
        write_at(path, new[4], read_at(path, old[4], old[5]))
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert_eio(mnt, "f")


def test_a_commit_writes_the_changed_path_and_gc_keeps_what_it_shares(vault: Path, tmp_path: Path) -> None:
    with mounted(vault, tmp_path / "mnt") as mnt:
        two_leaves(mnt)
        first = len(places(vault))
        with open(mnt / "f", "r+b") as f:
            f.seek(8192)
            f.write(b"b" * 4096)
        rows = places(vault)[first:]
        second_nodes = [r for r in rows if r[2] <= -2]
        # The leaf of block 0 and the nodes above it, not the other leaves.
        assert len([r for r in rows if r[2] >= 0]) == 1
        assert 1 <= len(second_nodes) <= 7 and all((-r[2] - 2) >> 3 == 0 for r in second_nodes)
        run_json("retention", mnt, "--keep-all", "1", "--daily", "0", "--weekly", "0")
        later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3 * 86400))
        assert run_json("gc", mnt, "--as-of", later)["versions_dropped"] == 1
    expected = {0: b"a" * 4096 + bytes(4096) + b"b" * 4096, FAR // 2: b"z" * 4096, FAR: b"e" * 4096}
    with mounted(vault, tmp_path / "mnt") as mnt:  # the far leaves are the first version's: kept
        fd = os.open(mnt / "f", os.O_RDONLY)
        for offset, data in expected.items():
            assert os.pread(fd, len(data), offset) == data
        os.close(fd)
    result = fusevault("check", vault)  # nothing damaged, nothing unreferenced: nodes are counted
    assert result.returncode == 0, result.stdout + result.stderr


def disk_bytes(path: Path) -> int:
    """Bytes the vault takes on disk (allocated blocks: holes are free), once
    the store's write-ahead log is folded into it (the log grows to a few MiB
    and is reused, whatever the versions)."""
    db = sqlite3.connect(path / "store.sqlite")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def test_a_4k_rewrite_of_a_big_sparse_file_adds_less_than_64k(vault: Path, tmp_path: Path) -> None:
    import random

    rng = random.Random(26)
    size = 100 << 30
    with mounted(vault, tmp_path / "mnt") as mnt:
        fd = os.open(mnt / "big", os.O_CREAT | os.O_RDWR)
        os.ftruncate(fd, size)
        # 1,024 pieces of data far apart: about as many runs (a manifest of
        # runs rewritten whole would be 31 KiB a version).
        pieces = sorted({rng.randrange(0, size // MIB) * MIB for _ in range(1024)})
        for offset in pieces:
            os.pwrite(fd, rng.randbytes(64 * KIB), offset)
        os.close(fd)
    before = disk_bytes(vault)
    count = 20
    with mounted(vault, tmp_path / "mnt") as mnt:
        fd = os.open(mnt / "big", os.O_RDWR)
        for k in range(count):
            offset = rng.choice(pieces) + rng.randrange(0, 16) * 4096  # rewriting data
            os.pwrite(fd, (b"%02d" % k) * 2048, offset)
            os.fsync(fd)
        os.close(fd)
    grown = (disk_bytes(vault) - before) / count
    # A 16 KiB block (vault/format/manifest.py NEW_BLOCK_SIZE), the tree nodes on
    # its path, the version's documents: about 20 KiB.  With 64 KiB blocks
    # and a manifest of every run (format 3): about 98 KiB.
    print(f"vault growth per 4 KiB rewrite: {grown / KIB:.1f} KiB")
    assert grown < 64 * KIB, grown


def test_old_files_keep_their_64k_blocks_until_rewritten_whole(tmp_path: Path) -> None:
    """A vault of format 1 (64 KiB blocks, kind 2 manifests): an edit in place
    keeps the file's block size, a file rewritten from nothing gets 16 KiB
    blocks; both read back after a remount and after gc."""
    import random

    from mount.test_scale import _format1_vault

    vault = _format1_vault(tmp_path)
    sparse = b"head" + bytes(4 * 65536 - 4) + b"tail!"
    fresh = random.Random(2).randbytes(100_000)
    with mounted(vault, tmp_path / "mnt") as mnt:
        first = len(places(vault))
        with open(mnt / "sparse", "r+b") as f:
            f.seek(10)
            f.write(b"X")
        sparse = sparse[:10] + b"X" + sparse[11:]
        edited = [r for r in places(vault)[first:] if r[2] >= 0]
        first = len(places(vault))
        (mnt / "dense").write_bytes(fresh)  # truncated to nothing, then written
        rewritten = [r for r in places(vault)[first:] if r[2] >= 0]
    assert [r[5] for r in edited] == [65536 + 33]  # padded: a whole 64 KiB block
    assert [r[5] for r in rewritten][:-1] == [16384 + 33] * 6  # padme(100,000) = 102,400: 7 blocks
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "sparse").read_bytes() == sparse
        assert (mnt / "dense").read_bytes() == fresh
        run_json("retention", mnt, "--keep-all", "1", "--daily", "0", "--weekly", "0")
        later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3 * 86400))
        assert run_json("gc", mnt, "--as-of", later)["versions_dropped"] >= 2
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "sparse").read_bytes() == sparse
        assert (mnt / "dense").read_bytes() == fresh
