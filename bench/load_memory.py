#!/usr/bin/env python3
"""Where the memory of a mount of many files goes: tracemalloc over ``Volume.load``.

    .venv/bin/python bench/load_memory.py [--files 20000]

Makes a vault of ``--files`` empty files through a mount (as bench/run.py's
100,000-file row, folders of 1,000), mounts it once (the device's cache of
verified signatures is then warm, as for the bench's timed mounts), then in
this process unlocks it and loads its tree as the mount's server does
(fs/personal.py ``serve``): once plain, for the RSS it adds per file, once
under tracemalloc, for the source lines that hold the memory afterwards.
The memory of a load grows with the number of files, so a smaller vault
shows the same per-file shares (the fixed part, the interpreter and its
modules, is measured apart: the RSS before the load).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import profile as prof  # noqa: E402

import run as bench  # noqa: E402

LOAD = """
import gc, sys, tracemalloc
from pathlib import Path
from fusevault.store import open_store
from fusevault.vault.services.opening import unlock_vault
from fusevault.vault.volume import Volume

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

vault, trace = Path(sys.argv[1]), sys.argv[2] == "trace"
unlocked = unlock_vault(vault, None, PASSPHRASE)
unlocked.store.close()
store = open_store(unlocked.layout.root, unlocked.layout.store)
gc.collect()
before = rss()
if trace:
    tracemalloc.start(1)
volume = Volume.load(unlocked.layout, store, unlocked.key, unlocked.user["root"])
gc.collect()
print(f"RSS before the load {before:.1f} MiB, after {rss():.1f} MiB, nodes {len(volume.nodes())}")
if trace:
    snap = tracemalloc.take_snapshot()
    stats = snap.statistics("lineno")
    total = sum(s.size for s in stats)
    print(f"traced: {total / 2**20:.1f} MiB in {sum(s.count for s in stats)} blocks")
    for s in stats[:20]:
        frame = s.traceback[0]
        where = f"{frame.filename}:{frame.lineno}"
        print(f"{s.size / total:6.1%} {s.size / 2**20:7.1f} MiB {s.count:8d}  {where}")
""".replace("PASSPHRASE", repr(bench.PASSPHRASE.encode()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=20_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fvmem-", dir="/var/tmp"))
    fv = bench.FuseVault(work)
    try:
        prof._empty_files(fv.mount(), args.files)
        fv.unmount()
        fv.mount()
        rss = bench._rss_mib(bench._server_pid(fv))
        print(f"server RSS after a mount of {args.files} files: {rss:.1f} MiB", flush=True)
        fv.unmount()
        for mode in ("plain", "trace"):
            subprocess.run([sys.executable, "-c", LOAD, str(fv.vault), mode], env=fv.env, check=True)
    finally:
        fv.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
