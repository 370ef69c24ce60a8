#!/usr/bin/env python3
"""Profile one benchmark workload inside a fusevault mount, with py-spy or strace.

    .venv/bin/python bench/profile.py WORKLOAD [--peer] [--strace]

WORKLOAD is one of create, ls, rm, tar-x, tar-c, seq-write, seq-read,
rand-read, rand-write, dense-fsync (bench/scale.py's dense row), mount (the
mount of bench/run.py's 100,000-file vault; ``--files N`` for another size:
prepared through a mount, then mounted once unprofiled so that the device's
cache of verified signatures is warm, as for the bench's 2nd and 3rd mounts;
profiled: the server from just after it starts until ``fusevault mount``
returns, real key derivation; prints the server's RSS then).  Mounts a fresh
vault (with ``--peer``: with one live
sync peer, as bench/run.py's "fusevault+peer"), prepares what the workload
needs unprofiled (the 5,000 files that ls and rm work on, the tree tar c
reads), then runs the workload while py-spy samples the server and prints
where it spent its time (own time and time inside fusevault functions).  With
``--strace``, ``strace -c -w -f`` counts the server's system calls and the
wall time spent in them, all threads together (it slows the server down:
the times it shows are shares, not speeds).  py-spy is
found on PATH, in $PY_SPY, or next to the interpreter (``pip install
--target /tmp/bench-tools py-spy`` puts it in /tmp/bench-tools/bin).
docs/PERFORMANCE.md quotes its output.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import run as bench  # noqa: E402


def _create(mnt: Path, work: Path) -> None:
    bench.small_files_create(mnt / "small")


def _tar_x(mnt: Path, work: Path) -> None:
    (mnt / "tree").mkdir()
    bench.sh("tar", "xf", work / "tree.tar", "-C", mnt / "tree")


def _tar_c(mnt: Path, work: Path) -> None:
    bench.drop_caches()
    subprocess.run(f"tar cf - -C {mnt / 'tree'} . | cat > /dev/null", shell=True, check=True)


def _seq_write(mnt: Path, work: Path) -> None:
    bench.sh("dd", "if=/dev/zero", f"of={mnt / 'seq.bin'}", "bs=1M", "count=512", "conv=fsync")


def _seq_read(mnt: Path, work: Path) -> None:
    bench.drop_caches()
    bench.sh("dd", f"if={mnt / 'seq.bin'}", "of=/dev/null", "bs=1M")


def _fio_file(mnt: Path, work: Path) -> None:
    bench.fio(mnt, "randread", 256, 1)


def _nothing(mnt: Path, work: Path) -> None:
    pass


def _dense_write(mnt: Path, work: Path) -> None:
    with open(mnt / "dense.bin", "wb") as f:
        for _ in range(1024):
            f.write(os.urandom(1 << 20))
        f.flush()
        os.fsync(f.fileno())


def _dense_fsync(mnt: Path, work: Path) -> float:
    """bench/scale.py's dense row: 4 KiB at a random offset of the 1 GiB file, then fsync (x300);
    the median fsync in ms."""
    import random
    import statistics

    rng, times = random.Random(3), []
    fd = os.open(mnt / "dense.bin", os.O_RDWR)
    try:
        for _ in range(300):
            os.pwrite(fd, rng.randbytes(4096), rng.randrange(0, (1 << 30) - 4096) // 4096 * 4096)
            start = time.perf_counter()
            os.fsync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
    return statistics.median(times) * 1000


# name: (prepared unprofiled, profiled)
WORKLOADS = {
    "create": (_nothing, _create),
    "ls": (_create, lambda mnt, work: (bench.drop_caches(), bench.sh("ls", "-lR", mnt / "small"))),
    "rm": (_create, lambda mnt, work: bench.sh("rm", "-rf", mnt / "small")),
    "tar-x": (_nothing, _tar_x),
    "tar-c": (_tar_x, _tar_c),
    "seq-write": (_nothing, _seq_write),
    "seq-read": (_seq_write, _seq_read),
    # fio lays its file out (writes it whole) before the first job: done unprofiled, as in bench/run.py
    # where the read job's layout is not counted and the write job finds the file there
    "rand-read": (_fio_file, lambda mnt, work: bench.fio(mnt, "randread", 256, 8)),
    "rand-write": (_fio_file, lambda mnt, work: bench.fio(mnt, "randwrite", 256, 8)),
    "dense-fsync": (_dense_write, _dense_fsync),
}


def _py_spy() -> str:
    for candidate in (os.environ.get("PY_SPY"), shutil.which("py-spy"),
                      str(Path(sys.executable).parent / "py-spy"), "/tmp/bench-tools/bin/py-spy"):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("py-spy not found: pip install --target /tmp/bench-tools py-spy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workload", choices=sorted([*WORKLOADS, "mount"]))
    parser.add_argument("--peer", action="store_true", help="a vault with one live sync peer")
    parser.add_argument("--strace", action="store_true", help="count system calls instead of sampling")
    parser.add_argument("--files", type=int, default=100_000, help="mount: how many files the vault holds")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, bench._terminate)
    if args.workload == "mount":
        if args.peer or args.strace:
            parser.error("mount: py-spy of a vault without peers only")
        return profile_mount(args.files)
    work = Path(tempfile.mkdtemp(prefix="fvprof-", dir="/var/tmp"))
    fv = (bench.FuseVaultPeer if args.peer else bench.FuseVault)(work)
    try:
        bench.sh("tar", "cf", work / "tree.tar", "--exclude=site-packages", "--exclude=__pycache__",
                 "--exclude=./test", "-C", bench.SOURCE, ".")
        mnt = fv.mount()
        prepare, workload = WORKLOADS[args.workload]
        prepare(mnt, work)
        pid = bench._server_pid(fv)
        raw = work / "profile.txt"
        if args.strace:
            tool = subprocess.Popen(["strace", "-c", "-w", "-f", "-p", str(pid), "-o", str(raw)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            tool = subprocess.Popen([_py_spy(), "record", "-p", str(pid), "-f", "raw", "-o", str(raw),
                                     "-r", "250", "--threads", "--nonblocking"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        try:
            result: list = []
            took = bench.timed(lambda: result.append(workload(mnt, work)))
            shown = f" -> {result[0]}" if isinstance(result[0], (int, float, dict)) else ""
            print(f"{args.workload}{' with a peer' if args.peer else ''}: {took:.2f} s{shown}", flush=True)
        finally:
            tool.send_signal(signal.SIGINT)
            tool.wait(60)
        fv.unmount()
        if args.strace:
            print(raw.read_text())
        else:
            summarize(raw)
    finally:
        fv.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def profile_mount(files: int) -> int:
    """py-spy on the server of one ``fusevault mount`` of a vault of ``files`` empty files."""
    work = Path(tempfile.mkdtemp(prefix="fvprof-", dir="/var/tmp"))
    fv = bench.FuseVault(work)
    try:
        mnt = fv.mount()
        made = bench.timed(lambda: _empty_files(mnt, files))
        print(f"{files} empty files made in {made:.1f} s", flush=True)
        fv.unmount()
        first = bench.timed(fv.mount)
        print(f"first mount (fills the cache of verified signatures): {first:.2f} s", flush=True)
        fv.unmount()
        raw = work / "profile.txt"
        start = time.perf_counter()
        command = subprocess.Popen([*bench.FUSEVAULT, "mount", str(fv.vault), str(fv.mnt)], env=fv.env,
                                   stdout=subprocess.DEVNULL)
        server = _child_of(command.pid)
        for _ in range(200):  # py-spy refuses a process that has not yet started its interpreter: retry
            tool = subprocess.Popen([_py_spy(), "record", "-p", str(server), "-f", "raw", "-o", str(raw),
                                     "-r", "250", "--threads", "--nonblocking"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                tool.wait(0.05)
            if tool.returncode is None:
                break
        try:
            if command.wait(600) != 0:
                raise RuntimeError(f"fusevault mount exited {command.returncode}")
            took = time.perf_counter() - start
        finally:
            tool.send_signal(signal.SIGINT)
            tool.wait(60)
        print(f"mount of {files} files (profiled): {took:.2f} s, server RSS {bench._rss_mib(server):.1f} MiB")
        fv.unmount()
        summarize(raw)
    finally:
        fv.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _empty_files(mnt: Path, files: int) -> None:
    """As bench/run.py's hundred_k: folders of 1,000 empty files."""
    for d in range(max(1, files // 1000)):
        sub = mnt / f"d{d:03d}"
        sub.mkdir()
        for f in range(min(files, 1000)):
            os.close(os.open(sub / f"f{f:04d}", os.O_CREAT | os.O_WRONLY, 0o644))


def _child_of(pid: int) -> int:
    """The mount server: the command's child (fs/daemon.py starts it as a new program)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            found = children.read_text().split()
            if found:
                return int(found[0])
        time.sleep(0.002)
    raise RuntimeError("the mount command started no server")


def summarize(raw: Path) -> None:
    own: collections.Counter = collections.Counter()
    inside: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if frames[-1].startswith(("EpollIOManager.get_events", "WorkerThread._work", "get_events",
                                  "_work (trio")):
            continue  # idle: waiting for the kernel or for work
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            if "fusevault/" in frame and "fusevault/cli/" not in frame:
                inside[frame] += int(count)
    print(f"\nbusy samples: {total}\n-- own time")
    for frame, count in own.most_common(15):
        print(f"{count / total:6.1%}  {frame[:120]}")
    print("-- inside fusevault functions (inclusive)")
    for frame, count in inside.most_common(20):
        print(f"{count / total:6.1%}  {frame[:120]}")


if __name__ == "__main__":
    sys.exit(main())
