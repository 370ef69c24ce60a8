"""Huge and sparse files through real mounts (issues 21 and 26): every size up
to the largest off_t is answered, never crashed on; holes cost nothing in
memory, on disk or in a manifest; manifests of the old shape still read."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import tarfile
import time
from pathlib import Path

import pytest
from conftest import fusevault, mounted, server_pids

MAX = (1 << 63) - 1  # the largest off_t: the largest file Linux lets FUSE have
MIB = 1 << 20
DATA = Path(__file__).parents[1] / "data"


def rss(mnt: Path) -> int:
    """The mount server's resident memory, in bytes."""
    total = 0
    for pid in server_pids(mnt):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total = max(total, int(line.split()[1]) * 1024)
    assert total, "no mount server found"
    return total


def vault_bytes(vault: Path) -> int:
    return sum(p.stat().st_size for p in vault.rglob("*") if p.is_file())


def run_json(*args) -> dict:
    result = fusevault(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_huge_sizes_work_in_little_memory_and_the_mount_keeps_saving(vault: Path, tmp_path: Path) -> None:
    before = vault_bytes(vault)
    with mounted(vault, tmp_path / "mnt") as mnt:
        memory = rss(mnt)
        (mnt / "d").mkdir()
        with open(mnt / "d" / "other", "wb") as other:  # written meanwhile: must survive
            other.write(b"kept" * 1000)
            fd = os.open(mnt / "huge", os.O_CREAT | os.O_RDWR)
            os.ftruncate(fd, MAX)
            os.pwrite(fd, b"end", MAX - 3)
            os.close(fd)  # a commit: EIO here was the bug
            (mnt / "pjd").touch()
            os.truncate(mnt / "pjd", 999_999_999_999_999)  # what pjdfstest does
            other.write(b"more")
        fd = os.open(mnt / "huge", os.O_RDWR)
        with pytest.raises(OSError) as beyond:
            os.posix_fallocate(fd, 1 << 62, 1 << 62)  # past the largest file
        assert beyond.value.errno == errno.EFBIG
        assert os.pread(fd, 3, MAX - 3) == b"end"
        assert os.pread(fd, MIB, 1 << 62) == bytes(MIB)  # a hole reads as zeros
        os.fsync(fd)
        os.close(fd)
        assert os.stat(mnt / "huge").st_size == MAX
        assert os.stat(mnt / "huge").st_blocks * 512 < MIB  # a hole takes no room
        assert os.stat(mnt / "pjd").st_size == 999_999_999_999_999
        assert rss(mnt) - memory < 100 * MIB, (memory, rss(mnt))
        directory_times = os.stat(mnt / "d").st_mtime_ns
        done = fusevault("unmount", mnt, passphrase=None)
        assert done.returncode == 0 and "unmounted" in done.stdout, done.stderr
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert os.stat(mnt / "huge").st_size == MAX
        fd = os.open(mnt / "huge", os.O_RDONLY)
        assert os.pread(fd, 3, MAX - 3) == b"end"  # (a larger read would pass the largest off_t)
        os.close(fd)
        assert os.stat(mnt / "pjd").st_size == 999_999_999_999_999
        assert (mnt / "d" / "other").read_bytes() == b"kept" * 1000 + b"more"
        assert os.stat(mnt / "d").st_mtime_ns == directory_times
        with open(mnt / "pjd", "r+b") as f:  # and it keeps working: shrink it, write it
            f.truncate(10)
            f.write(b"x")
        assert (mnt / "pjd").read_bytes() == b"x" + bytes(9)
    assert vault_bytes(vault) - before < 2 * MIB


def test_a_sparse_tebibyte_file_costs_kibibytes_and_reads_back(vault: Path, tmp_path: Path) -> None:
    size = (1 << 40) + 5
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "start").write_bytes(b"s")
        memory, before = rss(mnt), vault_bytes(vault)
        fd = os.open(mnt / "sparse", os.O_CREAT | os.O_RDWR)
        os.pwrite(fd, b"middle", (1 << 39) + 12345)
        os.pwrite(fd, b"hello", 1 << 40)
        for round in range(3):  # three versions
            os.pwrite(fd, b"head%d" % round, 0)
            os.fsync(fd)
        os.close(fd)
        assert os.stat(mnt / "sparse").st_size == size
        assert os.stat(mnt / "sparse").st_blocks * 512 <= 3 * 65536
        assert rss(mnt) - memory < 100 * MIB, (memory, rss(mnt))
        # three versions of a few blocks each, not of 2**24 manifest entries
        assert vault_bytes(vault) - before < MIB, vault_bytes(vault) - before
    with mounted(vault, tmp_path / "mnt") as mnt:
        memory = rss(mnt)
        with open(mnt / "sparse", "rb") as f:
            assert f.read(5) == b"head2"
            f.seek((1 << 39) + 12345 - 10)
            assert f.read(20) == bytes(10) + b"middle" + bytes(4)
            f.seek((1 << 40) - 4096)
            assert f.read() == bytes(4096) + b"hello"
            f.seek(1 << 35)
            assert f.read(MIB) == bytes(MIB)
        first = sorted(os.listdir(mnt / ".versions" / "sparse"))[0]
        with open(mnt / ".versions" / "sparse" / first, "rb") as f:
            assert f.read(5) == b"head0"
            f.seek(1 << 40)
            assert f.read() == b"hello"
        assert rss(mnt) - memory < 100 * MIB


def _manifest_kinds(vault: Path) -> dict[str, int]:
    """The kind byte of every version's manifest record: 2 (format 1), 3 (runs) or 4 (tree)."""
    db = sqlite3.connect(vault / "store.sqlite")
    rows = db.execute("SELECT vid, owner, fid, offset FROM places WHERE idx = -1").fetchall()
    db.close()
    kinds = {}
    for vid, owner, fid, offset in rows:
        with open(vault / "users" / owner / "own" / f"{fid}.vf", "rb") as f:
            f.seek(offset + 4)
            kinds[vid] = f.read(1)[0]
    return kinds


def _format1_vault(tmp_path: Path) -> Path:
    """A vault written by fusevault before manifests held runs (padding padme):
    ``dense`` (1,000 random bytes), ``doc`` (two versions), ``sparse`` ("head"
    at 0, "tail!" at 262,144, holes between)."""
    with tarfile.open(DATA / "format1-vault.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "vault"


def test_a_vault_of_format_1_reads_writes_runs_and_survives_gc(tmp_path: Path) -> None:
    import random

    vault = _format1_vault(tmp_path)
    old = _manifest_kinds(vault)
    assert set(old.values()) == {2}
    dense = random.Random(1).randbytes(1000)
    sparse = b"head" + bytes(4 * 65536 - 4) + b"tail!"
    assert json.loads((vault / "vault.json").read_text())["format"] == 1
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "dense").read_bytes() == dense
        assert (mnt / "sparse").read_bytes() == sparse
        assert [(mnt / ".versions" / "doc" / n).read_bytes()
                for n in sorted(os.listdir(mnt / ".versions" / "doc"))] == [b"first\n" * 1000,
                                                                             b"second\n" * 2000]
        with open(mnt / "sparse", "r+b") as f:  # the new version shares the old one's tail block
            f.seek(10)
            f.write(b"X")
        sparse = sparse[:10] + b"X" + sparse[11:]
        assert (mnt / "sparse").read_bytes() == sparse
    kinds = _manifest_kinds(vault)
    assert {vid: kinds[vid] for vid in old} == old and set(kinds.values()) == {2, 6}
    # The first writer marks it format 5: an older fusevault now refuses it in one line.
    assert json.loads((vault / "vault.json").read_text())["format"] == 5
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "sparse").read_bytes() == sparse
        run_json("retention", mnt, "--keep-all", "1", "--daily", "0", "--weekly", "0")
        later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3 * 86400))
        # gc first recommits ``doc`` (a kind 2 head with older versions to drop) as a Merkle tree,
        # checking its blocks while their documents are here; then doc's two format 1 versions and
        # sparse's first go.
        assert run_json("gc", mnt, "--as-of", later)["versions_dropped"] == 3
        assert (mnt / "dense").read_bytes() == dense  # a format 1 version, kept
        assert (mnt / "doc").read_bytes() == b"second\n" * 2000
        assert (mnt / "sparse").read_bytes() == sparse  # runs pointing at format 1 blocks
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "dense").read_bytes() == dense
        assert (mnt / "doc").read_bytes() == b"second\n" * 2000
        assert (mnt / "sparse").read_bytes() == sparse


@pytest.mark.parametrize("part", ["kind", "runs", "flags"])
def test_a_tampered_manifest_root_gives_eio(vault: Path, tmp_path: Path, part: str) -> None:
    with mounted(vault, tmp_path / "mnt") as mnt:
        with open(mnt / "f", "wb") as f:
            f.write(b"a" * 100_000)
            f.seek(1 << 30)
            f.write(b"b")
    (vid, kind), = _manifest_kinds(vault).items()
    assert kind == 6  # a Merkle tree's root (vault/format/manifest_tree.py; its nodes: test_tree_manifest.py)
    db = sqlite3.connect(vault / "store.sqlite")
    owner, fid, offset, length = db.execute(
        "SELECT owner, fid, offset, length FROM places WHERE idx = -1").fetchone()
    db.close()
    # The root's plaintext: size, block size, flags, level, then its children.
    where = {"kind": offset + 4, "runs": offset + length - 16 - 3, "flags": offset + 17 + 12}[part]
    path = vault / "users" / owner / "own" / f"{fid}.vf"
    with open(path, "r+b") as f:
        f.seek(where)
        byte = f.read(1)[0]
        f.seek(where)
        f.write(bytes([2 if part == "kind" else byte ^ 1]))
    with mounted(vault, tmp_path / "mnt") as mnt:
        with pytest.raises(OSError) as err:
            (mnt / "f").read_bytes()
        assert err.value.errno == errno.EIO


def test_a_sparse_tebibyte_file_syncs_byte_exact_and_an_edit_sends_a_block(
        couchdb_url: str, tmp_path: Path) -> None:
    from services.test_sync import first_device, new_device, record_ids, settled, wait_for

    laptop = first_device(couchdb_url, tmp_path)
    far = 1 << 40
    with mounted(laptop, tmp_path / "a") as a:
        fd = os.open(a / "sparse", os.O_CREAT | os.O_RDWR)
        os.pwrite(fd, b"head", 0)
        os.pwrite(fd, b"tail", far)
        os.close(fd)
        wait_for(lambda: settled(a), "the laptop to send the file")
        sent = set(record_ids(couchdb_url))
        desktop = new_device(couchdb_url, tmp_path, "desktop")
        with mounted(desktop, tmp_path / "b") as b:
            fd = os.open(b / "sparse", os.O_RDONLY)
            assert os.fstat(fd).st_size == far + 4
            assert os.pread(fd, 8, 0) == b"head" + bytes(4)
            assert os.pread(fd, 8, far - 4) == bytes(4) + b"tail"
            assert os.pread(fd, MIB, far // 2) == bytes(MIB)
            os.close(fd)
            with open(a / "sparse", "r+b") as f:  # 4 KiB in the middle of the hole
                f.seek(far // 2)
                f.write(b"e" * 4096)
            wait_for(lambda: settled(a), "the laptop to send the edit")
            new = set(record_ids(couchdb_url)) - sent
            # One block, the manifest's root and the tree nodes on the path
            # to its leaf (vault/format/manifest_tree.py), nothing per hole nor per other node.
            blocks = [n for n in new if n.rsplit("-", 1)[1].isdigit()]
            nodes = [n for n in new if n.rsplit("-", 1)[1].startswith("n")]
            assert len(blocks) == 1 and len(new) == 2 + len(nodes) and len(nodes) <= 7, new
            wait_for(lambda: os.stat(b / "sparse").st_mtime_ns == os.stat(a / "sparse").st_mtime_ns,
                     "the edit to reach the desktop")
            fd = os.open(b / "sparse", os.O_RDONLY)
            assert os.pread(fd, 4098, far // 2 - 1) == bytes(1) + b"e" * 4096 + bytes(1)
            assert os.pread(fd, 4, far) == b"tail" and os.pread(fd, 4, 0) == b"head"
            os.close(fd)


def test_versions_older_than_the_window_are_thinned_to_one_per_minute() -> None:
    from datetime import UTC, datetime

    from fusevault.vault.model.history import NS, Version
    from fusevault.vault.model.retention import MINUTE, Policy, to_drop

    start = int(datetime(2026, 11, 21, 12, 0, tzinfo=UTC).timestamp()) * NS
    # a thousand saves in one minute, then three a minute later
    times = [start + i * (MINUTE // 1000) for i in range(1000)] + [start + MINUTE + i * NS for i in range(3)]
    versions = [Version(str(t), "f", "1-x", t, 1, t, "u", "f", (0, 0)) for t in times]
    policy = Policy()
    assert policy.keep_all_minutes == 10 and "every version for 10 minutes" in policy.describe()
    assert to_drop(versions, start + 5 * MINUTE, policy) == []  # inside the window: all stay
    later = start + 30 * MINUTE
    kept = [v for v in versions if v not in to_drop(versions, later, policy, keep={versions[-1].vid})]
    assert [v.time for v in kept] == [times[999], times[-1]]  # the last of each minute
    assert to_drop(versions, later, Policy(keep_all_minutes=60)) == []


def test_a_file_saved_many_times_keeps_a_few_versions_and_its_latest(vault: Path, tmp_path: Path) -> None:
    with mounted(vault, tmp_path / "mnt") as mnt:
        for i in range(200):
            with open(mnt / "f", "wb") as f:
                f.write(b"save %d" % i)
                os.fsync(f.fileno())
        made = len(os.listdir(mnt / ".versions" / "f"))
        assert made >= 200  # (each save truncates first: a version of its own)
        assert run_json("retention", mnt)["policy"]["keep_all_minutes"] == 10
        assert "every version for 10 minutes" in fusevault("retention", mnt).stdout
        later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        report = run_json("gc", mnt, "--as-of", later)
        left = len(os.listdir(mnt / ".versions" / "f"))
        assert report["versions_dropped"] == made - left and left <= 3, left  # the minutes it spanned
        assert (mnt / "f").read_bytes() == b"save 199"
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "f").read_bytes() == b"save 199"
