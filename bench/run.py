#!/usr/bin/env python3
"""Side-by-side benchmark: a plain directory, gocryptfs, fusevault and fusevault with a peer, in one run.

    scripts/bench.sh [--repeat 2] [--quick] [--only plain,gocryptfs,fusevault,fusevault+peer]

Needs root (to drop the page cache), fio, gocryptfs and pouchdb-server
(scripts/bench.sh installs the first two).  "fusevault+peer" is the same kind
of vault with one sync peer: a pouchdb-server on loopback that the bench
starts, the vault added to it before the mount, the mount replicating to it
during every workload.  Prints a table of medians with the ratios
fusevault/gocryptfs and fusevault+peer/gocryptfs and writes
bench/results/<time>.json.  Everything the bench starts (mounts,
pouchdb-server) is stopped when it ends, also on failure, Ctrl-C or SIGTERM.
Not part of the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# -P: never the fusevault of the current folder (a checkout) before PYTHONPATH's (before_after.py's
# "before" ran the code of the folder it was started from).
FUSEVAULT = [sys.executable, "-P", "-m", "fusevault"]
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


# --- the four contestants; cleanup() must be safe to call at any point and twice


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

    def cleanup(self) -> None:
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

    def cleanup(self) -> None:
        if _is_mounted(self.mnt):
            subprocess.run(["fusermount3", "-uz", str(self.mnt)], capture_output=True)


class FuseVault:
    name = "fusevault"
    env = dict(os.environ, FUSEVAULT_PASSPHRASE=PASSPHRASE, PYTHONPATH=str(REPO))

    def __init__(self, work: Path) -> None:
        self.work = work
        self.vault, self.mnt = work / "fusevault.vault", work / "fusevault"
        self.env = dict(self.env, FUSEVAULT_RUNTIME_DIR=str(work / "run"),
                        FUSEVAULT_STATE_DIR=str(work / "state"), FUSEVAULT_CONFIG_DIR=str(work / "config"))

    def mount(self) -> Path:
        self.mnt.mkdir(exist_ok=True)
        if not self.vault.exists():
            sh(*FUSEVAULT, "init", self.vault, "--user", "bench", env=self.env)
        sh(*FUSEVAULT, "mount", self.vault, self.mnt, env=self.env)
        return self.mnt

    def unmount(self) -> None:
        sh(*FUSEVAULT, "unmount", self.mnt, env=self.env)

    def cleanup(self) -> None:
        """Unmount cleanly if still mounted; if that fails, kill the server and unmount lazily."""
        if not _is_mounted(self.mnt):
            return
        done = subprocess.run([*FUSEVAULT, "unmount", str(self.mnt)], env=self.env, capture_output=True,
                              timeout=300)
        if done.returncode != 0 or _is_mounted(self.mnt):
            for pid in _server_pids(self):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            subprocess.run(["fusermount3", "-uz", str(self.mnt)], capture_output=True)


class PouchDB:
    """A pouchdb-server on a loopback port, its data in tmpfs: the peer is another machine, so
    neither its disk writes nor its memory heap should weigh on this disk."""

    def __init__(self, work: Path) -> None:
        binary = os.environ.get("POUCHDB_SERVER") or shutil.which("pouchdb-server")
        if binary is None:
            raise SystemExit("pouchdb-server is not installed (npm install -g pouchdb-server)")
        self.binary = binary
        self.data = Path(tempfile.mkdtemp(prefix="fvbench-pouch-", dir="/dev/shm"))
        self.log = work / "pouchdb-server.log"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> str:
        with open(self.log, "ab") as log:
            # Its own session: a Ctrl-C must not kill it before the mount has been unmounted.
            self.proc = subprocess.Popen([self.binary, "--dir", str(self.data), "--host", "127.0.0.1",
                                          "--port", str(self.port)], cwd=self.data, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(self.url, timeout=1).read()
                return self.url
            except OSError as error:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"pouchdb-server did not start: {self.log.read_text()[-2000:]}") \
                        from error
                time.sleep(0.2)

    def doc_count(self, db: str) -> int:
        with urllib.request.urlopen(f"{self.url}/{db}", timeout=10) as answer:
            return json.load(answer)["doc_count"]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.data, ignore_errors=True)


class FuseVaultPeer(FuseVault):
    """The same vault with one peer, added before the mount: the mount syncs with it all along."""

    name = "fusevault+peer"
    DB = "benchvault"

    def __init__(self, work: Path) -> None:
        super().__init__(work)
        self.server = PouchDB(work)

    def mount(self) -> Path:
        url = self.server.start()
        self.mnt.mkdir(exist_ok=True)
        sh(*FUSEVAULT, "init", self.vault, "--user", "bench", env=self.env)
        sh(*FUSEVAULT, "peer", "add", "peer", f"{url}/{self.DB}", "--vault", self.vault, env=self.env)
        super().mount()
        self.wait_live()
        return self.mnt

    def sync_status(self) -> dict:
        out = sh(*FUSEVAULT, "sync", "status", self.mnt, "--json", env=self.env).stdout
        (mount,) = json.loads(out)["mounts"]
        (peer,) = mount["peers"]
        return peer

    def wait_live(self, timeout: float = 60) -> None:
        """Until the mount has reached its peer: a peer that is not live would measure nothing."""
        deadline = time.monotonic() + timeout
        while True:
            peer = self.sync_status()
            if peer["error"] is None and peer["last_contact"] is not None:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the mount never reached its peer: {peer}")
            time.sleep(0.2)

    def sync_lag(self, mnt: Path, files: tuple[int, int]) -> dict:
        """How long a change takes to reach the other device: a second device
        (joined to the same server, mounted) while both are idle; then how
        far behind the peer is right after a heavy workload (creating
        ``files``: dirs x files per dir) and how long it takes to catch up."""
        other = FuseVault(self.work / "other")  # its own vault, mount point and state
        other.work.mkdir()
        sh(*FUSEVAULT, "init", other.vault, "--join", f"{self.server.url}/{self.DB}", "--user", "bench",
           env=other.env)
        far = other.mount()
        try:
            idle = []
            for i in range(5):
                time.sleep(1)  # idle: nothing else in flight
                data, probe = os.urandom(64), f"probe{i}"
                start = time.perf_counter()
                (mnt / probe).write_bytes(data)
                idle.append(_until(lambda p=probe, d=data: _read_or_none(far / p) == d) - start)
            dirs, per_dir = files
            small_files_create(mnt / "heavy", dirs, per_dir)
            end = time.perf_counter()
            pending = self.sync_status()["pending_up"]  # documents and records not pushed yet
            arrived = _until(lambda: _count(far / "heavy") == dirs * per_dir, timeout=900, every=0.5) - end
        finally:
            other.unmount()
        sh("rm", "-rf", mnt / "heavy")
        return {"sync idle: to other device s": statistics.median(idle),
                f"sync after {dirs * per_dir} creates: pending up": float(pending),
                f"sync after {dirs * per_dir} creates: all on other device s": arrived}

    def unmount(self) -> None:
        peer = self.sync_status()
        docs = self.server.doc_count(self.DB)
        print(f"  fusevault+peer at unmount: {docs} documents on the peer, pending up "
              f"{peer['pending_up']}, error {peer['error']}", file=sys.stderr, flush=True)
        if peer["error"] is not None or docs == 0:
            raise RuntimeError(f"the peer was not live during the run: {peer}")
        super().unmount()
        self.server.stop()

    def cleanup(self) -> None:
        try:
            super().cleanup()
        finally:
            self.server.stop()


def _until(check, timeout: float = 120, every: float = 0.01) -> float:
    """perf_counter() once ``check`` holds (polled every ``every`` s); fails after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"still not there after {timeout} s")
        time.sleep(every)
    return time.perf_counter()


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _count(root: Path) -> int:
    try:
        return sum(len(os.listdir(d)) for d in root.iterdir())
    except OSError:
        return 0


def _is_mounted(path: Path) -> bool:
    target = os.path.realpath(path)
    with open("/proc/self/mountinfo") as mounts:
        return any(line.split()[4] == target for line in mounts)


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


def small_files_create(root: Path, dirs: int = 50, per_dir: int = 100) -> None:
    payload = os.urandom(1024)
    for d in range(dirs):
        sub = root / f"dir{d:02d}"
        sub.mkdir(parents=True)
        for f in range(per_dir):
            (sub / f"file{f:03d}").write_bytes(payload)


def small_files(mnt: Path) -> dict:
    root = mnt / "small"
    made = timed(lambda: small_files_create(root))
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


def hundred_k(fv: FuseVault, files: int) -> dict:
    """Mount time and server RSS of a fusevault vault holding ``files`` files."""
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


def _server_pids(fv: FuseVault) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"fusevault mount {fv.vault} {fv.mnt}"], capture_output=True,
                         text=True).stdout
    return [int(pid) for pid in out.split()]


def _server_pid(fv: FuseVault) -> int:
    return _server_pids(fv)[0]


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


HIGHER_IS_BETTER = ("MiB/s", "IOPS")


CONTESTANTS = {"plain": Plain, "gocryptfs": GoCryptFS, "fusevault": FuseVault,
               "fusevault+peer": FuseVaultPeer}
NAMES = list(CONTESTANTS)
WORKLOADS = ["seq", "random", "small", "tree", "mount", "sync"]  # sync: fusevault+peer only


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl-C does: through the finally blocks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="small sizes, to try the script")
    parser.add_argument("--only", default=",".join(NAMES))
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help="some of " + ",".join(WORKLOADS) + " (the 100k-file mount runs with 'mount')")
    parser.add_argument("--workdir", default="/var/tmp", help="where vaults go (same disk for all)")
    args = parser.parse_args()
    names = args.only.split(",")
    unknown = set(names) - set(CONTESTANTS)
    if unknown:
        parser.error(f"unknown contestant(s) {', '.join(sorted(unknown))}; known: {', '.join(NAMES)}")
    workloads = args.workloads.split(",")
    if set(workloads) - set(WORKLOADS):
        parser.error(f"unknown workload(s); known: {', '.join(WORKLOADS)}")
    signal.signal(signal.SIGTERM, _terminate)
    seq, rand, seconds, files = (64, 32, 2, 2000) if args.quick else (512, 256, 8, 100_000)
    creates = (5, 100) if args.quick else (50, 100)  # the sync workload's heavy part: dirs, files each
    work = Path(tempfile.mkdtemp(prefix="fvbench-", dir=args.workdir))
    archive = work / "tree.tar"
    samples: dict[str, dict[str, list[float]]] = {}
    partial = REPO / "bench" / "results" / time.strftime("%Y%m%d-%H%M%S-partial.json")
    partial.parent.mkdir(exist_ok=True)
    started: list = []  # every contestant mounted, so that the finally below stops what is left
    try:
        sh("tar", "cf", archive, "--exclude=site-packages", "--exclude=__pycache__", "--exclude=./test",
           "-C", SOURCE, ".")
        # Round-robin: the disk's state drifts (writeback, discard), so each
        # round measures every contestant under the same conditions.
        for round_no in range(args.repeat):
            for name in names:
                target = CONTESTANTS[name](work / f"{name.replace('+', '-')}-{round_no}")
                target.work.mkdir()
                started.append(target)
                mnt = target.mount()
                try:
                    runs = {"seq": (seq_write_read, seq), "random": (random_io, rand, seconds),
                            "small": (small_files,), "tree": (tree, archive)}
                    if isinstance(target, FuseVaultPeer):
                        runs["sync"] = (target.sync_lag, creates)
                    for result in (run(mnt, *rest) for workload, (run, *rest) in runs.items()
                                   if workload in workloads):
                        for row, value in result.items():
                            samples.setdefault(row, {}).setdefault(name, []).append(value)
                finally:
                    target.unmount()
                started.remove(target)
                shutil.rmtree(target.work, ignore_errors=True)
                partial.write_text(json.dumps(samples, indent=1))  # what a run cut short leaves
                print(f"  round {round_no + 1}: {name} done", file=sys.stderr, flush=True)
        if "fusevault" in names and "mount" in workloads:
            hundred = FuseVault(work / "100k")
            started.append(hundred)
            for row, value in hundred_k(hundred, files).items():
                samples.setdefault(row, {})["fusevault"] = [value]
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        for target in started:
            try:
                target.cleanup()
            except Exception as error:  # noqa: BLE001 - clean up the others all the same
                print(f"cleanup of {target.work}: {error}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
    report(samples, seq, rand, files, names)
    return 0


def report(samples: dict, seq: int, rand: int, files: int, names: list[str]) -> None:
    table = []
    for row, by_target in samples.items():
        medians = {t: statistics.median(v) for t, v in by_target.items()}
        gc = medians.get("gocryptfs")
        ratios = {t: medians[t] / gc for t in ("fusevault", "fusevault+peer") if t in medians and gc}
        table.append({"row": row, "median": medians, "samples": by_target, "ratios": ratios,
                      "higher_is_better": row.endswith(HIGHER_IS_BETTER)})
    shown = [n for n in NAMES if n in names]
    print(f"\n{'row':26}" + "".join(f"{n:>16}" for n in shown) + f"{'fv/gc':>9}{'fv+peer/gc':>12}  target")
    for entry in table:
        cells = "".join(f"{entry['median'][n]:16.2f}" if n in entry["median"] else f"{'-':>16}"
                        for n in shown)
        ratios = entry["ratios"]
        if not ratios:
            goal = {"mount 100k files s": "< 2 s", "RSS 100k files MiB": "< 200 MiB"}.get(entry["row"])
            verdict = f"{goal} {'met' if _absolute_met(entry) else 'NOT met'}" if goal else ""
            print(f"{entry['row']:26}{cells}{'':>21}  {verdict}")
            continue
        columns = "".join(f"{ratios[t]:{w}.2f}" if t in ratios else f"{'-':>{w}}"
                          for t, w in (("fusevault", 9), ("fusevault+peer", 12)))
        verdicts = []
        for t, short in (("fusevault", "fv"), ("fusevault+peer", "fv+peer")):
            if t in ratios:
                good = ratios[t] >= 1.0 if entry["higher_is_better"] else ratios[t] <= 1.0
                verdicts.append(f"{short} {'met' if good else 'NOT met'}")
        print(f"{entry['row']:26}{cells}{columns}  {', '.join(verdicts)}")
    results = REPO / "bench" / "results"
    results.mkdir(exist_ok=True)
    out = results / time.strftime("%Y%m%d-%H%M%S.json")
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "nproc": os.cpu_count(),
                               "loadavg": os.getloadavg(),
                               "sizes": {"seq_mib": seq, "rand_mib": rand, "files": files},
                               "rows": table}, indent=1))
    print(f"\nwrote {out}")


def _absolute_met(entry: dict) -> bool:
    value = entry["median"].get("fusevault")
    limit = {"mount 100k files s": 2.0, "RSS 100k files MiB": 200.0}.get(entry["row"])
    return value is not None and limit is not None and value < limit


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("interrupted; what the bench started is stopped", file=sys.stderr)
        sys.exit(130)
