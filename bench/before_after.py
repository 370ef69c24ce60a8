#!/usr/bin/env python3
"""Two versions of fusevault side by side with gocryptfs: bench/run.py's random I/O,
small-file and tree rows (no sequential rows, no 100k mount), round-robin.

    .venv/bin/python bench/before_after.py BEFORE_DIR [--repeat 2] [--peer] [--workloads small,random]

BEFORE_DIR holds the other version's source (``git archive COMMIT | tar x -C DIR``);
"after" is this checkout.  ``--peer``: both with a sync peer (bench/run.py's
fusevault+peer), without gocryptfs.  The two versions swap places each round, so
that neither always meets the later load of a shared machine.  Prints each
round's JSON, then the rows per round.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--peer", action="store_true", help="both versions with a sync peer, no gocryptfs")
    parser.add_argument("--workloads", default="random,small,tree", help="some of random,small,tree")
    args = parser.parse_args()
    workloads = set(args.workloads.split(","))
    kind = bench.FuseVaultPeer if args.peer else bench.FuseVault

    class Before(kind):
        name = "fv-before"
        env = dict(bench.FuseVault.env, PYTHONPATH=str(Path(args.before).resolve()))

    class After(kind):
        name = "fv-after"

    work = Path(tempfile.mkdtemp(prefix="fvab-", dir="/var/tmp"))
    archive = work / "tree.tar"
    samples: dict[str, dict[str, list[float]]] = {}
    try:
        bench.sh("tar", "cf", archive, "--exclude=site-packages", "--exclude=__pycache__",
                 "--exclude=./test", "-C", bench.SOURCE, ".")
        for round_no in range(args.repeat):
            pair: list[type] = [Before, After] if round_no % 2 == 0 else [After, Before]
            for cls in pair if args.peer else [bench.GoCryptFS, *pair]:
                target = cls(work / f"{cls.name}-{round_no}")
                target.work.mkdir()
                mnt = target.mount()
                try:
                    result = {**(bench.random_io(mnt, 256, 8) if "random" in workloads else {}),
                              **(bench.small_files(mnt) if "small" in workloads else {}),
                              **(bench.tree(mnt, archive) if "tree" in workloads else {})}
                finally:
                    target.unmount()
                    target.cleanup()
                shutil.rmtree(target.work, ignore_errors=True)
                for row, value in result.items():
                    samples.setdefault(row, {}).setdefault(cls.name, []).append(value)
                print(round_no + 1, cls.name, json.dumps(result), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for row, by in samples.items():
        print(f"| {row} | " + " | ".join(f"{name} {' / '.join(f'{v:.2f}' for v in values)}"
                                        for name, values in by.items()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
