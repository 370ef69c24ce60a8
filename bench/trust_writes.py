#!/usr/bin/env python3
"""What signing and checking node documents costs (issue 22, signed writes).

    unshare -m --propagation private env PYTHONPATH=. .venv/bin/python bench/trust_writes.py [--files 5000]

Through the real command and a real mount: ``create N files`` (each made and
closed: one node document, signed, per file) and the unlock of the vault
holding them (``fusevault mount``: every node document verified).  Medians of
three mounts.  Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PASS = "bench passphrase of the trust work"


def run(*args: str) -> None:
    env = {**os.environ, "FUSEVAULT_PASSPHRASE": PASS}
    done = subprocess.run([sys.executable, "-m", "fusevault", *args], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=5000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fvb", dir="/tmp"))
    os.environ.update({"FUSEVAULT_INSECURE_FAST_KDF": "1", "FUSEVAULT_RUNTIME_DIR": str(work / "run"),
                       "FUSEVAULT_STATE_DIR": str(work / "state"),
                       "FUSEVAULT_CONFIG_DIR": str(work / "config")})
    vault, mnt = work / "vault", work / "mnt"
    mnt.mkdir()
    run("init", str(vault), "--user", "alice")
    run("mount", str(vault), str(mnt))
    start = time.perf_counter()
    for i in range(args.files):
        with open(mnt / f"f{i:05d}", "w") as f:
            f.write("x")
    create = time.perf_counter() - start
    run("unmount", str(mnt))
    unlocks = []
    for _ in range(3):
        start = time.perf_counter()
        run("mount", str(vault), str(mnt))
        unlocks.append(time.perf_counter() - start)
        assert len(os.listdir(mnt)) >= args.files
        run("unmount", str(mnt))
    print(f"create {args.files} files: {create:.2f} s; unlock (mount) median of 3: "
          f"{statistics.median(unlocks):.2f} s {[round(u, 2) for u in unlocks]}")


if __name__ == "__main__":
    main()
