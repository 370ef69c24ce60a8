#!/usr/bin/env python3
"""Profile one benchmark workload inside a fusevault mount with py-spy.

    .venv/bin/python bench/profile.py create|ls|rm|tar-x|tar-c|seq-write|seq-read|rand-read

Mounts a fresh vault, runs the workload while py-spy samples the server, and
prints where the server spent its time (own time and time inside fusevault
functions).  docs/PERFORMANCE.md quotes its output.
"""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import run as bench  # noqa: E402

WORKLOADS = {
    "create": lambda mnt, work: bench.small_files(mnt),
    "ls": lambda mnt, work: bench.small_files(mnt),
    "rm": lambda mnt, work: bench.small_files(mnt),
    "tar-x": lambda mnt, work: bench.tree(mnt, work / "tree.tar"),
    "tar-c": lambda mnt, work: bench.tree(mnt, work / "tree.tar"),
    "seq-write": lambda mnt, work: bench.seq_write_read(mnt, 512),
    "seq-read": lambda mnt, work: bench.seq_write_read(mnt, 512),
    "rand-read": lambda mnt, work: bench.fio(mnt, "randread", 256, 8),
}


def main() -> int:
    name = sys.argv[1]
    work = Path(tempfile.mkdtemp(prefix="fvprof-", dir="/var/tmp"))
    bench.sh("tar", "cf", work / "tree.tar", "--exclude=site-packages", "--exclude=__pycache__",
             "--exclude=./test", "-C", bench.SOURCE, ".")
    fv = bench.FuseVault(work)
    mnt = fv.mount()
    pid = bench._server_pid(fv)
    raw = work / "profile.txt"
    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "-p", str(pid),
                            "-f", "raw", "-o", str(raw), "-r", "250", "--threads", "--nonblocking"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    try:
        print(WORKLOADS[name](mnt, work))
    finally:
        spy.send_signal(2)
        spy.wait(30)
        fv.unmount()
    own: collections.Counter = collections.Counter()
    inside: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if frames[-1].startswith(("EpollIOManager.get_events", "WorkerThread._work")):
            continue  # idle: waiting for the kernel or for work
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            if "fusevault/" in frame and "fusevault/cli/" not in frame:
                inside[frame] += int(count)
    print(f"\nbusy samples: {total}\n-- own time")
    for frame, count in own.most_common(12):
        print(f"{count / total:6.1%}  {frame[:110]}")
    print("-- inside fusevault functions (inclusive)")
    for frame, count in inside.most_common(14):
        print(f"{count / total:6.1%}  {frame[:110]}")
    os.system(f"rm -rf {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
