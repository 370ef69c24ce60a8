#!/usr/bin/env python3
"""Where a dense file's fsync spends its time, stage by stage (issue 26).

    .venv/bin/python bench/fsync_stages.py [--mib 1024] [--rewrites 100] [--gocryptfs] [--no-stages]
                                           [--chunks N]

bench/scale.py's dense row (4 KiB at a random offset of a file of --mib MiB
written whole, then fsync), with the wall time of each stage of the server's
fsync path logged per call: a ``sitecustomize`` put on the server's
PYTHONPATH wraps the functions below (only when PYTHONFS26STAGES names the log;
the mount server keeps PYTHON* variables).  Prints the median fsync as the
writer sees it and each stage's median.  ``--gocryptfs``: the same rewrites
on gocryptfs instead, for the side-by-side figure.  docs/PERFORMANCE.md
quotes its output.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import run as bench  # noqa: E402

STAGES = '''
import functools, os, time
OUT = os.environ.get("PYTHONFS26STAGES")
if OUT:
    _log = open(OUT, "a", buffering=1)

    def _wrap(cls, name, label):
        fn = getattr(cls, name)
        if fn.__code__.co_flags & 0x80:  # a coroutine function
            async def timed(*args, **kw):
                start = time.perf_counter()
                try:
                    return await fn(*args, **kw)
                finally:
                    _log.write(f"{label} {(time.perf_counter() - start) * 1e3:.3f}\\n")
        else:
            def timed(*args, **kw):
                start = time.perf_counter()
                try:
                    return fn(*args, **kw)
                finally:
                    _log.write(f"{label} {(time.perf_counter() - start) * 1e3:.3f}\\n")
        setattr(cls, name, functools.wraps(fn)(timed))

    from fusevault.fs import operations
    from fusevault.store import local
    from fusevault.vault.files import open_files, sealing
    from fusevault.vault.tree import inodes
    for cls, name, label in [
            (operations.Operations, "write", "0 write request (the kernel's write-back)"),
            (operations.Operations, "setattr", "0 setattr request"),
            (operations.Operations, "fsync", "1 fsync request (Operations.fsync)"),
            (open_files.Files, "commit_content", "2 commit_content"),
            (open_files.Files, "commit_version", "3 commit_version"),
            (sealing.Sealing, "seal_durably", "4 seal + .vf flush (worker thread)"),
            (sealing.Sealing, "seal_version", "4a seal_version"),
            (sealing.Sealing, "fsync", "4b .vf fdatasync"),
            (inodes.Inodes, "commit", "5 documents + COMMIT (loop)"),
            (local.LocalStore, "put_many", "5a put_many (COMMIT)"),
            (local.LocalStore, "sync", "6 WAL flush (worker thread)"),
            (local.LocalStore, "check_linked", "6a check_linked")]:
        if hasattr(cls, name):
            _wrap(cls, name, label)
'''


def _cpu_s(pid: int) -> tuple[float, float]:
    """The CPU time (user, system; every thread) process ``pid`` used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _by_chunk(times: list[float], log: Path, chunks: int) -> None:
    """The writer's and the sealing's median fsync over each slice of the rewrites, in order."""
    seal = [float(line.rpartition(" ")[2]) for line in log.read_text().splitlines() if line.startswith("4a ")]
    size = max(1, len(times) // chunks)
    for start in range(0, len(times), size):
        part = seal[start:start + size]
        sealed = f", seal_version {statistics.median(part):.2f} ms" if part else ""
        print(f"  rewrites {start}-{start + size}: fsync median "
              f"{statistics.median(times[start:start + size]) * 1e3:.2f} ms{sealed}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--rewrites", type=int, default=100)
    parser.add_argument("--gocryptfs", action="store_true")
    parser.add_argument("--no-stages", action="store_true", help="no wrappers: the fsync time alone")
    parser.add_argument("--chunks", type=int, default=0,
                        help="also the medians of each of this many consecutive slices of the rewrites "
                             "(does the cost grow with the file's history?)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fvstages-", dir="/var/tmp"))
    log = work / "stages.txt"
    if args.gocryptfs:
        fs = bench.GoCryptFS(work)
    else:
        fs = bench.FuseVault(work)
        (work / "site").mkdir()
        (work / "site" / "sitecustomize.py").write_text(STAGES)
        fs.env = dict(fs.env, PYTHONPATH=f"{work / 'site'}:{bench.REPO}")
        if not args.no_stages:
            fs.env["PYTHONFS26STAGES"] = str(log)
    try:
        mnt = fs.mount()
        path = mnt / "dense.bin"
        with open(path, "wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(1 << 20))
            f.flush()
            os.fsync(f.fileno())
        log.write_text("")
        rng, times = random.Random(3), []
        cpu = _cpu_s(bench._server_pid(fs)) if not args.gocryptfs else (0.0, 0.0)
        fd = os.open(path, os.O_RDWR)
        try:
            for _ in range(args.rewrites):
                os.pwrite(fd, rng.randbytes(4096), rng.randrange(0, (args.mib << 20) - 4096) // 4096 * 4096)
                start = time.perf_counter()
                os.fsync(fd)
                times.append(time.perf_counter() - start)
        finally:
            os.close(fd)
        if not args.gocryptfs:  # all threads of the server, user + system
            user, system = (b - a for a, b in zip(cpu, _cpu_s(bench._server_pid(fs))))
            print(f"server CPU per fsync: user {user / args.rewrites * 1e3:.2f} ms, "
                  f"system {system / args.rewrites * 1e3:.2f} ms")
        if args.chunks:
            _by_chunk(times, log, args.chunks)
        times.sort()
        print(f"{fs.name}: fsync median {statistics.median(times) * 1e3:.2f} ms, "
              f"p10 {times[len(times) // 10] * 1e3:.2f}, p90 {times[len(times) * 9 // 10] * 1e3:.2f} "
              f"(load average {os.getloadavg()[0]:.1f})")
        stages = collections.defaultdict(list)
        for line in log.read_text().splitlines():
            label, _, ms = line.rpartition(" ")
            stages[label].append(float(ms))
        for label in sorted(stages):
            ms = stages[label]
            print(f"  {label:40s} median {statistics.median(ms):7.3f} ms  (n={len(ms)})")
        fs.unmount()
    finally:
        fs.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
