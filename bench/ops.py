#!/usr/bin/env python3
"""Per-request counts and handler times of each benchmark phase in a fusevault mount.

    .venv/bin/python bench/ops.py

For every phase it prints the wall time, the FUSE requests the kernel sent,
and how long fusevault's handlers took; the difference is time outside
fusevault (kernel, libfuse, pyfuse3, the disk).  docs/PERFORMANCE.md quotes it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import run as bench  # noqa: E402

PHASES = [
    ("create 5000 x 1 KiB", lambda mnt, w: _create(mnt)),
    ("ls -lR", lambda mnt, w: (bench.drop_caches(), bench.sh("ls", "-lR", mnt / "small"))),
    ("rm -rf", lambda mnt, w: bench.sh("rm", "-rf", mnt / "small")),
    ("tar x", lambda mnt, w: ((mnt / "tree").mkdir(),
                             bench.sh("tar", "xf", w / "tree.tar", "-C", mnt / "tree"))),
    ("tar c", lambda mnt, w: (bench.drop_caches(), bench.subprocess.run(
        f"tar cf - -C {mnt / 'tree'} . | cat > /dev/null", shell=True, check=True))),
    ("cold seq read 512 MiB", lambda mnt, w: (bench.sh("dd", "if=/dev/zero", f"of={mnt / 's'}", "bs=1M",
                                                       "count=512", "conv=fsync"), bench.drop_caches(),
                                              bench.sh("dd", f"if={mnt / 's'}", "of=/dev/null", "bs=1M"))),
    ("rand 4K write 8 s", lambda mnt, w: bench.fio(mnt, "randwrite", 256, 8)),
    ("rand 4K read 8 s", lambda mnt, w: bench.fio(mnt, "randread", 256, 8)),
]


def _create(mnt: Path) -> None:
    payload = os.urandom(1024)
    for d in range(50):
        sub = mnt / "small" / f"dir{d:02d}"
        sub.mkdir(parents=True)
        for f in range(100):
            (sub / f"file{f:03d}").write_bytes(payload)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="fvops-", dir="/var/tmp"))
    bench.sh("tar", "cf", work / "tree.tar", "--exclude=site-packages", "--exclude=__pycache__",
             "--exclude=./test", "-C", bench.SOURCE, ".")
    fv = bench.FuseVault(work)
    try:
        for phase, run in PHASES:
            stats = work / "stats.json"
            fv.env = dict(fv.env, FUSEVAULT_OP_STATS=str(stats))
            mnt = fv.mount()
            wall = bench.timed(lambda: run(mnt, work))  # noqa: B023
            fv.unmount()
            ops = json.loads(stats.read_text())
            inside = sum(o["seconds"] for o in ops.values())
            print(f"\n{phase}: {wall:.2f} s wall, {inside:.2f} s in handlers")
            for op, o in sorted(ops.items(), key=lambda kv: -kv[1]["seconds"])[:6]:
                print(f"  {op:10} {o['count']:8} requests  {o['seconds'] / o['count'] * 1e6:8.1f} us each"
                      f"  {o['seconds']:6.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
