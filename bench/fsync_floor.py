#!/usr/bin/env python3
"""The floor under a pyfuse3 fsync (issue 26's dense row), side by side with gocryptfs.

    .venv/bin/python -P bench/fsync_floor.py [--rewrites 300] [--mib 64] [--work /var/tmp]

bench/scale.py's dense row (a 4 KiB write at a random offset of a file written
whole, then fsync; the median fsync as the writer sees it) on four things in
one run, on the same disk:

- the disk alone: ``pwrite`` 4 KiB into a plain file, then ``fdatasync``;
- gocryptfs (the target);
- ``null``: a pyfuse3 + trio file system with one file and no work at all:
  writes land in a ``bytearray``, fsync returns at once. What any file system
  written with the user's chosen pyfuse3 pays per fsync before doing anything;
- ``passthrough``: the same, with each write ``pwrite`` to a backing file and
  fsync an ``fdatasync`` of it in a worker thread (the least a durable
  fsync can do).

Both pyfuse3 rows run with the kernel's writeback cache as fusevault's mount
does (the WRITE request then comes with the fsync) and without it.  Not a
test: a measurement for docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import errno
import os
import random
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KIB, MIB = 1 << 10, 1 << 20


def rewrites(path: Path, size: int, count: int, *, sync=os.fsync) -> float:
    """Median ms of ``sync`` after a 4 KiB pwrite at a random page of ``path``."""
    rng = random.Random(3)
    times = []
    fd = os.open(path, os.O_RDWR)
    try:
        for _ in range(count):
            os.pwrite(fd, rng.randbytes(4 * KIB), rng.randrange(0, size // 4096) * 4096)
            start = time.perf_counter()
            sync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
    return statistics.median(times) * 1000


def write_whole(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        for _ in range(size // MIB):
            f.write(os.urandom(MIB))
        f.flush()
        os.fsync(f.fileno())


# --- the pyfuse3 file system, run as a child: serve MOUNTPOINT [BACKING]


def serve(mountpoint: str, backing: str | None, writeback: bool) -> None:
    import pyfuse3
    import trio

    class One(pyfuse3.Operations):
        """One file, inode 2, named ``f``."""

        enable_writeback_cache = writeback

        def __init__(self) -> None:
            super().__init__()
            self.data = bytearray()
            self.fd = os.open(backing, os.O_RDWR | os.O_CREAT, 0o600) if backing else None
            self.limiter = trio.CapacityLimiter(1)

        def _attr(self, inode: int) -> pyfuse3.EntryAttributes:
            attr = pyfuse3.EntryAttributes()
            attr.st_ino = inode
            attr.st_mode = (stat.S_IFDIR | 0o755) if inode == pyfuse3.ROOT_INODE else (stat.S_IFREG | 0o644)
            attr.st_size = len(self.data)
            attr.st_nlink = 1
            attr.st_blksize = 4096
            attr.st_blocks = (len(self.data) + 511) // 512
            attr.attr_timeout = attr.entry_timeout = 300
            return attr

        async def getattr(self, inode, ctx=None):
            return self._attr(inode)

        async def lookup(self, parent, name, ctx=None):
            if parent != pyfuse3.ROOT_INODE or name != b"f":
                raise pyfuse3.FUSEError(errno.ENOENT)
            return self._attr(2)

        async def setattr(self, inode, attr, fields, fh, ctx):
            if fields.update_size:
                del self.data[attr.st_size:]
                self.data.extend(bytes(attr.st_size - len(self.data)))
            return self._attr(inode)

        async def create(self, parent, name, mode, flags, ctx):
            return pyfuse3.FileInfo(fh=2), self._attr(2)

        async def open(self, inode, flags, ctx):
            return pyfuse3.FileInfo(fh=inode)

        async def read(self, fh, off, size):
            return bytes(self.data[off:off + size])

        async def write(self, fh, off, buf):
            if off > len(self.data):
                self.data.extend(bytes(off - len(self.data)))
            self.data[off:off + len(buf)] = buf
            if self.fd is not None:
                os.pwrite(self.fd, buf, off)  # to the page cache: what a journal append costs
            return len(buf)

        async def fsync(self, fh, datasync):
            if self.fd is not None:
                await trio.to_thread.run_sync(os.fdatasync, self.fd, limiter=self.limiter)

        async def flush(self, fh):
            pass

        async def release(self, fh):
            pass

        async def opendir(self, inode, ctx):
            return inode

        async def readdir(self, fh, start_id, token):
            if start_id == 0 and self.data is not None:
                pyfuse3.readdir_reply(token, b"f", self._attr(2), 1)

        async def releasedir(self, fh):
            pass

    pyfuse3.init(One(), mountpoint, set(pyfuse3.default_options) | {"fsname=floor"})
    print("ready", flush=True)
    try:
        trio.run(pyfuse3.main)
    finally:
        pyfuse3.close(unmount=True)


def pyfuse3_row(work: Path, args, *, backing: bool, writeback: bool) -> float:
    mnt = Path(tempfile.mkdtemp(dir=work))
    argv = [sys.executable, "-P", __file__, "--serve", str(mnt), "--writeback", str(int(writeback))]
    if backing:
        argv += ["--backing", str(work / f"backing-{mnt.name}")]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        while not os.path.ismount(mnt):
            time.sleep(0.05)
        write_whole(mnt / "f", args.mib * MIB)
        return rewrites(mnt / "f", args.mib * MIB, args.rewrites)
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)
        child.wait(timeout=30)


def gocryptfs_row(work: Path, args) -> float:
    cipher, mnt, passfile = work / "gc-cipher", work / "gc-mnt", work / "gc-pass"
    cipher.mkdir()
    mnt.mkdir()
    passfile.write_text("bench\n")
    subprocess.run(["gocryptfs", "-q", "-init", "-passfile", passfile, cipher], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["gocryptfs", "-q", "-passfile", passfile, cipher, mnt], check=True)
    try:
        write_whole(mnt / "f", args.mib * MIB)
        return rewrites(mnt / "f", args.mib * MIB, args.rewrites)
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rewrites", type=int, default=300)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--work", default="/var/tmp")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--backing", help=argparse.SUPPRESS)
    parser.add_argument("--writeback", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.backing, bool(args.writeback))
        return 0
    work = Path(tempfile.mkdtemp(prefix="fsync-floor-", dir=args.work))
    rows: dict[str, float] = {}
    try:
        plain = work / "plain"
        write_whole(plain, args.mib * MIB)
        rows["disk: pwrite 4 KiB + fdatasync"] = rewrites(plain, args.mib * MIB, args.rewrites,
                                                          sync=os.fdatasync)
        rows["gocryptfs"] = gocryptfs_row(work, args)
        for writeback in (True, False):
            cache = "writeback cache" if writeback else "no writeback cache"
            rows[f"pyfuse3 null ({cache})"] = pyfuse3_row(work, args, backing=False, writeback=writeback)
            rows[f"pyfuse3 passthrough ({cache})"] = pyfuse3_row(work, args, backing=True,
                                                                 writeback=writeback)
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    print(f"| fsync after a 4 KiB rewrite, {args.mib} MiB file, median of {args.rewrites} | ms |")
    print("|---|---:|")
    for name, ms in rows.items():
        print(f"| {name} | {ms:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
