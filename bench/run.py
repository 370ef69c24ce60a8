#!/usr/bin/env python3
"""Side-by-side benchmark: a plain directory, gocryptfs and fusevault, in one run.

    scripts/bench.sh [--repeat 3] [--quick] [--only plain,gocryptfs,fusevault]

Needs root (to drop the page cache), fio and gocryptfs (scripts/bench.sh
installs them).  Prints a table of medians with the ratio fusevault/gocryptfs
and writes bench/results/<time>.json.  Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FUSEVAULT = [sys.executable, "-m", "fusevault"]
PASSPHRASE = "benchmark passphrase"
SOURCE = Path(os.__file__).parent  # the standard library: a real tree of a few thousand files


def sh(*cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, **kw)


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# --- the three contestants


class Plain:
    name = "plain"

    def __init__(self, work: Path) -> None:
        self.work = work
        self.mnt = work / "plain"

    def mount(self) -> Path:
        self.mnt.mkdir()
        return self.mnt

    def unmount(self) -> None:
        pass


class GoCryptFS:
    name = "gocryptfs"

    def __init__(self, work: Path) -> None:
        self.work = work
        self.cipher, self.mnt = work / "gocrypt.cipher", work / "gocrypt"
        self.passfile = work / "gocrypt.pass"

    def mount(self) -> Path:
        self.passfile.write_text(PASSPHRASE)
        self.cipher.mkdir()
        self.mnt.mkdir()
        sh("gocryptfs", "-init", "-q", "-passfile", self.passfile, self.cipher)
        sh("gocryptfs", "-q", "-passfile", self.passfile, self.cipher, self.mnt)
        return self.mnt

    def unmount(self) -> None:
        sh("fusermount3", "-u", self.mnt)


class FuseVault:
    name = "fusevault"
    env = dict(os.environ, FUSEVAULT_PASSPHRASE=PASSPHRASE, PYTHONPATH=str(REPO))

    def __init__(self, work: Path) -> None:
        self.work = work
        self.vault, self.mnt = work / "fusevault.vault", work / "fusevault"
        self.env = dict(self.env, FUSEVAULT_RUNTIME_DIR=str(work / "run"),
                        FUSEVAULT_STATE_DIR=str(work / "state"))

    def mount(self) -> Path:
        self.mnt.mkdir(exist_ok=True)
        if not self.vault.exists():
            sh(*FUSEVAULT, "init", self.vault, "--user", "bench", env=self.env)
        sh(*FUSEVAULT, "mount", self.vault, self.mnt, env=self.env)
        return self.mnt

    def unmount(self) -> None:
        sh(*FUSEVAULT, "unmount", self.mnt, env=self.env)


# --- workloads: each returns {row: value}


def seq_write_read(mnt: Path, size_mib: int) -> dict:
    path = mnt / "seq.bin"
    elapsed = timed(lambda: sh("dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={size_mib}",
                               "conv=fsync"))
    drop_caches()
    read = timed(lambda: sh("dd", f"if={path}", "of=/dev/null", "bs=1M"))
    path.unlink()
    return {"seq write MiB/s": size_mib / elapsed, "cold seq read MiB/s": size_mib / read}


def fio(mnt: Path, rw: str, size_mib: int, seconds: int) -> float:
    out = sh("fio", "--name=bench", f"--filename={mnt / 'fio.dat'}", f"--size={size_mib}m", "--bs=4k",
             f"--rw={rw}", "--ioengine=psync", f"--runtime={seconds}", "--time_based",
             "--invalidate=1", "--output-format=json").stdout
    job = json.loads(out)["jobs"][0]
    return job["read" if rw == "randread" else "write"]["iops"]


def random_io(mnt: Path, size_mib: int, seconds: int) -> dict:
    result = {"rand 4K read IOPS": fio(mnt, "randread", size_mib, seconds),
              "rand 4K write IOPS": fio(mnt, "randwrite", size_mib, seconds)}
    (mnt / "fio.dat").unlink()
    return result


def small_files(mnt: Path, dirs: int = 50, per_dir: int = 100) -> dict:
    root = mnt / "small"
    payload = os.urandom(1024)

    def create() -> None:
        for d in range(dirs):
            sub = root / f"dir{d:02d}"
            sub.mkdir(parents=True)
            for f in range(per_dir):
                (sub / f"file{f:03d}").write_bytes(payload)

    made = timed(create)
    drop_caches()
    listed = timed(lambda: sh("ls", "-lR", root))
    removed = timed(lambda: sh("rm", "-rf", root))
    return {"create 5000 x 1 KiB s": made, "ls -lR s": listed, "rm -rf s": removed}


def tree(mnt: Path, archive: Path) -> dict:
    dest = mnt / "tree"
    dest.mkdir()
    extract = timed(lambda: sh("tar", "xf", archive, "-C", dest))
    drop_caches()
    du = timed(lambda: sh("du", "-s", dest))
    drop_caches()
    back = timed(lambda: subprocess.run(f"tar cf - -C {dest} . | cat > /dev/null", shell=True, check=True))
    sh("rm", "-rf", dest)
    return {"tar x s": extract, "du -s s": du, "tar c s": back}


def hundred_k(work: Path, files: int) -> dict:
    """Mount time and server RSS of a fusevault vault holding ``files`` files."""
    fv = FuseVault(work / "100k")
    fv.work.mkdir()
    mnt = fv.mount()
    for d in range(files // 1000):
        sub = mnt / f"d{d:03d}"
        sub.mkdir()
        for f in range(1000):
            os.close(os.open(sub / f"f{f:04d}", os.O_CREAT | os.O_WRONLY, 0o644))
    fv.unmount()
    times, rss = [], []
    for _ in range(3):
        times.append(timed(fv.mount))
        rss.append(_rss_mib(_server_pid(fv)))
        fv.unmount()
    return {"mount 100k files s": statistics.median(times), "RSS 100k files MiB": statistics.median(rss)}


def _server_pid(fv: FuseVault) -> int:
    out = sh("pgrep", "-f", f"fusevault mount {fv.vault} {fv.mnt}").stdout.split()
    return int(out[0])


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


HIGHER_IS_BETTER = ("MiB/s", "IOPS")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, to try the script")
    parser.add_argument("--only", default="plain,gocryptfs,fusevault")
    parser.add_argument("--workdir", default="/var/tmp", help="where vaults go (same disk for all)")
    args = parser.parse_args()
    seq, rand, seconds, files = (64, 32, 2, 2000) if args.quick else (512, 256, 8, 100_000)
    work = Path(tempfile.mkdtemp(prefix="fvbench-", dir=args.workdir))
    archive = work / "tree.tar"
    sh("tar", "cf", archive, "--exclude=site-packages", "--exclude=__pycache__", "--exclude=./test",
       "-C", SOURCE, ".")
    samples: dict[str, dict[str, list[float]]] = {}
    kinds = {"plain": Plain, "gocryptfs": GoCryptFS, "fusevault": FuseVault}
    try:
        # Round-robin: the disk's state drifts (writeback, discard), so each
        # round measures every contestant under the same conditions.
        for round_no in range(args.repeat):
            for name in args.only.split(","):
                target = kinds[name](work / f"{name}-{round_no}")
                target.work.mkdir()
                mnt = target.mount()
                try:
                    for result in (seq_write_read(mnt, seq), random_io(mnt, rand, seconds),
                                   small_files(mnt), tree(mnt, archive)):
                        for row, value in result.items():
                            samples.setdefault(row, {}).setdefault(name, []).append(value)
                finally:
                    target.unmount()
                shutil.rmtree(target.work, ignore_errors=True)
                print(f"  round {round_no + 1}: {name} done", file=sys.stderr, flush=True)
        if "fusevault" in args.only:
            for row, value in hundred_k(work, files).items():
                samples.setdefault(row, {})["fusevault"] = [value]
    finally:
        for leftover in work.glob("*/fusevault"):
            subprocess.run(["fusermount3", "-uz", str(leftover)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    report(samples, seq, rand, files)
    return 0


def report(samples: dict, seq: int, rand: int, files: int) -> None:
    table = []
    for row, by_target in samples.items():
        medians = {t: statistics.median(v) for t, v in by_target.items()}
        ratio = None
        if "fusevault" in medians and "gocryptfs" in medians and medians["gocryptfs"]:
            ratio = medians["fusevault"] / medians["gocryptfs"]
        table.append({"row": row, "median": medians, "samples": by_target, "ratio": ratio,
                      "higher_is_better": row.endswith(HIGHER_IS_BETTER)})
    names = ["plain", "gocryptfs", "fusevault"]
    print(f"\n{'row':26}" + "".join(f"{n:>12}" for n in names) + f"{'fv/gocrypt':>12}  target")
    for entry in table:
        cells = "".join(f"{entry['median'][n]:12.2f}" if n in entry["median"] else f"{'-':>12}"
                        for n in names)
        ratio = entry["ratio"]
        if ratio is None:
            goal = {"mount 100k files s": "< 2 s", "RSS 100k files MiB": "< 200 MiB"}.get(entry["row"])
            verdict = f"{goal} {'met' if _absolute_met(entry) else 'NOT met'}" if goal else ""
            print(f"{entry['row']:26}{cells}{'':>12}  {verdict}")
        else:
            good = ratio >= 1.0 if entry["higher_is_better"] else ratio <= 1.0
            print(f"{entry['row']:26}{cells}{ratio:12.2f}  {'met' if good else 'NOT met'}")
    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    out = results / time.strftime("%Y%m%d-%H%M%S.json")
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "nproc": os.cpu_count(),
                               "sizes": {"seq_mib": seq, "rand_mib": rand, "files": files},
                               "rows": table}, indent=1))
    print(f"\nwrote {out}")


def _absolute_met(entry: dict) -> bool:
    value = entry["median"].get("fusevault")
    limit = {"mount 100k files s": 2.0, "RSS 100k files MiB": 200.0}.get(entry["row"])
    return value is not None and limit is not None and value < limit


if __name__ == "__main__":
    sys.exit(main())
