#!/usr/bin/env python3
"""SQLite commits, FUSE requests and wall time of each metadata phase, for one fusevault source tree.

    unshare -m --propagation private .venv/bin/python bench/commits.py [SOURCE_DIR] [PHASE ...]

SOURCE_DIR: the fusevault tree to run (default: this checkout; an older one
unpacked with ``git archive COMMIT | tar x -C DIR`` for a before/after).  Each
phase runs on its own mount of one vault (fast key derivation: a measuring
vault only) with ``FUSEVAULT_OP_STATS``; "commits" is the store's
``LocalStore.commits`` over that mount, its unmount included.  PHASE: the
first word of a phase's name (tar x always runs: the others use its tree).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def sh(*cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, **kw)


def renames(mnt: Path) -> None:
    for path in sorted((mnt / "t").rglob("*.py"))[:500]:
        os.rename(path, path.with_suffix(".pyx"))


def main() -> int:
    args = sys.argv[1:]
    source = Path(args.pop(0)).resolve() if args and Path(args[0]).is_dir() else REPO
    only = set(args)
    work = Path(tempfile.mkdtemp(prefix="fvcommits-", dir="/var/tmp"))
    env = dict(os.environ, FUSEVAULT_PASSPHRASE="benchmark passphrase", PYTHONPATH=str(source),
               FUSEVAULT_INSECURE_FAST_KDF="1", FUSEVAULT_RUNTIME_DIR=str(work / "run"),
               FUSEVAULT_STATE_DIR=str(work / "state"), FUSEVAULT_CONFIG_DIR=str(work / "config"))
    fv = [sys.executable, "-m", "fusevault"]
    archive = work / "t.tar"
    sh("tar", "cf", archive, "--exclude=site-packages", "--exclude=__pycache__", "--exclude=./test",
       "-C", Path(os.__file__).parent, ".")
    vault, mnt = work / "v", work / "m"
    mnt.mkdir()
    phases = [
        ("tar x", lambda m: ((m / "t").mkdir(), sh("tar", "xf", archive, "-C", m / "t"))),
        ("chmod -R", lambda m: sh("chmod", "-R", "go-w", m / "t")),
        ("touch (find -exec touch)",
         lambda m: sh("find", m / "t", "-name", "*.py", "-exec", "touch", "{}", "+")),
        ("rename 500 files", renames),
        ("mkdir 500", lambda m: [os.mkdir(m / f"d{i}") for i in range(500)]),
        ("rm -rf", lambda m: sh("rm", "-rf", m / "t")),
    ]
    try:
        sh(*fv, "init", vault, "--user", "bench", env=env)
        for name, run in phases:
            if only and name != "tar x" and name.split()[0] not in only:
                continue
            stats = work / "stats.json"
            with_stats = dict(env, FUSEVAULT_OP_STATS=str(stats))
            sh(*fv, "mount", vault, mnt, env=with_stats)
            start = time.perf_counter()
            run(mnt)
            wall = time.perf_counter() - start
            sh(*fv, "unmount", mnt, env=with_stats)
            ops = json.loads(stats.read_text())
            commits = ops.pop("store commits")["count"]
            requests = sum(o["count"] for o in ops.values())
            handlers = sum(o["seconds"] for o in ops.values())
            print(f"{name:26} {wall:7.2f} s wall  {handlers:6.2f} s in handlers  {commits:6} commits  "
                  f"{requests:7} requests", flush=True)
    finally:
        subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
