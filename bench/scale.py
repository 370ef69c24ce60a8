#!/usr/bin/env python3
"""Scale benchmark (issue 26): what a small edit of a big file costs, in one run
against gocryptfs on the same machine.

    .venv/bin/python bench/scale.py [--only fusevault,gocryptfs] [--sparse-gib 100] [--data-mib 1024]
                                    [--dense-mib 1024] [--rewrites 100] [--fsx-ops 100000]
                                    [--wire-gib 10] [--wire-data-mib 1024] [--wire-edits 5] [--wire-only]

Needs root and gocryptfs (apt-get install gocryptfs); fsx from
/work/shared/conformance (or --fsx-kit DIR).  Prints a table and the JSON of
every measurement.  Rows:

- sparse: a file of --sparse-gib GiB holding --data-mib MiB (1 MiB pieces at
  random places); then --rewrites times a 4 KiB write at a random offset and
  fsync: the median fsync time and the vault's growth per rewrite.
- dense: the same in a file of --dense-mib MiB written whole.
- open: open() of a 1 TiB sparse file on a fresh mount (median of 20).
- rss: the fusevault server's largest resident memory over the run.
- wire: a sparse file of --wire-gib GiB holding --wire-data-mib MiB (1 MiB
  pieces at random places) in a vault with one peer, a pouchdb-server on
  loopback behind a counting TCP proxy; once the peer has it all,
  --wire-edits times a 4 KiB write at a random offset inside the data and
  fsync, each waited for until the peer has it: the bytes that crossed the
  proxy per edit (HTTP included; up: to the peer, down: its answers), median.
  ``--wire-only``: only this row.
- fsx: fsx -N --fsx-ops -c 20, and what it added to the vault, then after
  `fusevault gc --as-of` an hour later (past the window where every version
  stays); with ``--fsx-only``, on a new vault (else gc also collects the
  other rows' files).  Sizes with fusevault's store log folded in.

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import FUSEVAULT, GoCryptFS, sh  # noqa: E402
from run import FuseVault as _FuseVault  # noqa: E402
from run import FuseVaultPeer as _FuseVaultPeer  # noqa: E402

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
CONFORMANCE = Path("/work/shared/conformance")


class FuseVault(_FuseVault):
    def store(self) -> Path:
        return self.vault

    def pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-f", f"fusevault mount {self.vault} {self.mnt}"],
                             capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def gc(self) -> None:
        # As an hour from now: past the window in which every version stays.
        later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        sh(*FUSEVAULT, "gc", self.mnt, "--as-of", later, env=self.env)


class GoCrypt(GoCryptFS):
    def mount(self) -> Path:
        if not self.cipher.exists():
            return super().mount()
        sh("gocryptfs", "-q", "-passfile", self.passfile, self.cipher, self.mnt)  # again
        return self.mnt

    def store(self) -> Path:
        return self.cipher

    def pids(self) -> list[int]:
        return []

    def gc(self) -> None:
        pass


def disk_bytes(path: Path) -> int:
    """Bytes the directory takes on disk (allocated blocks: holes are free)."""
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


class RssWatch:
    """The largest VmRSS of the given processes, sampled every 0.2 s."""

    def __init__(self, pids) -> None:
        self.pids, self.peak = pids, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            for pid in self.pids():
                try:
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            self.peak = max(self.peak, int(line.split()[1]) * KIB)
                except OSError:
                    pass

    def done(self) -> int:
        self.stop.set()
        self.thread.join()
        return self.peak


def folded_bytes(fs) -> int:
    """disk_bytes once fusevault's store has folded its write-ahead log in
    (the log grows to a few MiB while mounted and is reused: not per version)."""
    if isinstance(fs, FuseVault):
        import sqlite3

        db = sqlite3.connect(fs.store() / "store.sqlite")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
    return disk_bytes(fs.store())


def rewrites(fs, path: Path, apparent: int, count: int, seed: int) -> dict:
    rng = random.Random(seed)
    folded = folded_bytes(fs)
    before = disk_bytes(fs.store())
    times = []
    fd = os.open(path, os.O_RDWR)
    try:
        for _ in range(count):
            offset = rng.randrange(0, apparent - 4 * KIB) // 4096 * 4096
            os.pwrite(fd, rng.randbytes(4 * KIB), offset)
            start = time.perf_counter()
            os.fsync(fd)
            times.append(time.perf_counter() - start)
    finally:
        os.close(fd)
    os.sync()
    grown = disk_bytes(fs.store()) - before
    grown_folded = folded_bytes(fs) - folded
    return {"fsync ms (median)": statistics.median(times) * 1000,
            "added KiB per rewrite": grown / count / KIB,
            "added KiB per rewrite, store log folded": grown_folded / count / KIB}


def sparse(fs, mnt: Path, args) -> dict:
    path, apparent = mnt / "sparse.bin", args.sparse_gib * GIB
    rng = random.Random(1)
    with open(path, "wb") as f:
        f.truncate(apparent)
        for _ in range(args.data_mib):
            f.seek(rng.randrange(0, apparent // MIB) * MIB)
            f.write(rng.randbytes(MIB))
        f.flush()
        os.fsync(f.fileno())
    return {f"sparse {k}": v for k, v in rewrites(fs, path, apparent, args.rewrites, 2).items()}


def dense(fs, mnt: Path, args) -> dict:
    path = mnt / "dense.bin"
    with open(path, "wb") as f:
        for _ in range(args.dense_mib):
            f.write(os.urandom(MIB))
        f.flush()
        os.fsync(f.fileno())
    return {f"dense {k}": v for k, v in rewrites(fs, path, args.dense_mib * MIB, args.rewrites, 3).items()}


def open_huge(fs, mnt: Path) -> dict:
    path = mnt / "tebibyte.bin"
    with open(path, "wb") as f:
        f.write(b"head")
        f.seek(1 << 40)
        f.write(b"tail")
    fs.unmount()
    fs.mount()  # a fresh mount: nothing cached
    times = []
    for _ in range(20):
        start = time.perf_counter()
        fd = os.open(path, os.O_RDONLY)
        times.append(time.perf_counter() - start)
        os.pread(fd, 4, 1 << 40)
        os.close(fd)
    return {"open 1 TiB sparse ms (median)": statistics.median(times) * 1000}


class CountingProxy:
    """A TCP proxy on loopback that counts the bytes each way: what a peer gets on the wire."""

    def __init__(self, port: int) -> None:
        self.target = ("127.0.0.1", port)
        self.up = self.down = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.target)
            threading.Thread(target=self.pump, args=(client, server, "up"), daemon=True).start()
            threading.Thread(target=self.pump, args=(server, client, "down"), daemon=True).start()

    def pump(self, source: socket.socket, sink: socket.socket, way: str) -> None:
        try:
            while data := source.recv(1 << 16):
                with self.lock:
                    setattr(self, way, getattr(self, way) + len(data))
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def counts(self) -> tuple[int, int]:
        with self.lock:
            return self.up, self.down

    def close(self) -> None:
        self.listener.close()


class FuseVaultPeer(_FuseVaultPeer, FuseVault):
    """A vault with one peer, reached through a CountingProxy."""

    def mount(self) -> Path:
        url = self.server.start()
        self.proxy = CountingProxy(int(url.rsplit(":", 1)[1]))
        self.mnt.mkdir(exist_ok=True)
        sh(*FUSEVAULT, "init", self.vault, "--user", "bench", env=self.env)
        sh(*FUSEVAULT, "peer", "add", "peer", f"http://127.0.0.1:{self.proxy.port}/{self.DB}",
           "--vault", self.vault, env=self.env)
        FuseVault.mount(self)
        self.wait_live()
        return self.mnt

    def settled(self, records_before: int = -1, timeout: float = 3600) -> dict:
        """Until nothing waits to go up (and more records went up than ``records_before``)."""
        deadline = time.monotonic() + timeout
        while True:
            peer = self.sync_status()
            if peer["error"] is None and peer["pending_up"] == 0 and peer["records_up"] > records_before:
                return peer
            if time.monotonic() > deadline:
                raise RuntimeError(f"the peer never caught up: {peer}")
            time.sleep(0.5)

    def cleanup(self) -> None:
        try:
            super().cleanup()
        finally:
            self.proxy.close()


def wire(work: Path, args) -> dict:
    """What a 4 KiB edit of a big sparse file sends to a peer (see the module's docstring)."""
    fs = FuseVaultPeer(work)
    try:
        mnt = fs.mount()
        path, apparent = mnt / "wire.bin", args.wire_gib * GIB
        rng = random.Random(4)
        pieces = sorted(rng.sample(range(apparent // MIB), args.wire_data_mib))
        with open(path, "wb") as f:
            f.truncate(apparent)
            for piece in pieces:
                f.seek(piece * MIB)
                f.write(rng.randbytes(MIB))
            f.flush()
            os.fsync(f.fileno())
        start = time.monotonic()
        fs.settled()
        print(f"  wire: {args.wire_data_mib} MiB reached the peer in {time.monotonic() - start:.0f} s",
              file=sys.stderr, flush=True)
        ups, downs, records = [], [], []
        fd = os.open(path, os.O_RDWR)
        try:
            for _ in range(args.wire_edits):
                time.sleep(2)  # let the pull side's requests of the last edit end
                before = fs.sync_status()
                up, down = fs.proxy.counts()
                offset = rng.choice(pieces) * MIB + rng.randrange(0, MIB - 4 * KIB) // 4096 * 4096
                os.pwrite(fd, rng.randbytes(4 * KIB), offset)
                os.fsync(fd)
                after = fs.settled(before["records_up"])
                time.sleep(2)  # the answers to the last push
                now_up, now_down = fs.proxy.counts()
                ups.append(now_up - up)
                downs.append(now_down - down)
                records.append(after["records_up"] - before["records_up"])
        finally:
            os.close(fd)
        print(f"  wire: up {ups}, down {downs}, records {records}", file=sys.stderr, flush=True)
        fs.unmount()
    finally:
        fs.cleanup()
    return {f"{args.wire_gib} GiB sparse, {args.wire_data_mib} MiB data: 4 KiB edit to a peer, "
            "KiB up (median)": statistics.median(ups) / KIB,
            "same, KiB down (median)": statistics.median(downs) / KIB,
            "same, records sent (median)": statistics.median(records)}


def fsx(fs, mnt: Path, args) -> dict:
    before = folded_bytes(fs)  # (with the other rows, their files' versions: --fsx-only for a clean measure)
    run = subprocess.run([CONFORMANCE / "fsx.sh", mnt, str(args.fsx_ops), "-c", "20"],
                         capture_output=True, text=True)
    os.sync()
    grown = folded_bytes(fs) - before
    fs.gc()
    os.sync()
    return {"fsx passed": run.returncode == 0, "store MiB added by fsx": grown / MIB,
            "store MiB added by fsx, after gc": (folded_bytes(fs) - before) / MIB}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="fusevault,gocryptfs")
    parser.add_argument("--sparse-gib", type=int, default=100)
    parser.add_argument("--data-mib", type=int, default=1024)
    parser.add_argument("--dense-mib", type=int, default=1024)
    parser.add_argument("--rewrites", type=int, default=100)
    parser.add_argument("--fsx-ops", type=int, default=100000, help="0: no fsx")
    parser.add_argument("--fsx-only", action="store_true", help="only the fsx row, on a new vault")
    parser.add_argument("--wire-gib", type=int, default=10)
    parser.add_argument("--wire-data-mib", type=int, default=1024)
    parser.add_argument("--wire-edits", type=int, default=5)
    parser.add_argument("--wire-only", action="store_true", help="only the wire row")
    parser.add_argument("--work", default="/var/tmp")
    args = parser.parse_args()
    import tempfile

    results: dict[str, dict] = {}
    if args.wire_only or ("fusevault" in args.only.split(",") and not args.fsx_only):
        work = Path(tempfile.mkdtemp(prefix="scale-wire-", dir=args.work))
        try:
            results["fusevault"] = wire(work, args)
        finally:
            subprocess.run(["rm", "-rf", str(work)])
        print("fusevault", json.dumps(results["fusevault"]), flush=True)
    if args.wire_only:
        args.only = ""
    for name in filter(None, args.only.split(",")):
        work = Path(tempfile.mkdtemp(prefix=f"scale-{name}-", dir=args.work))
        fs = {"fusevault": FuseVault, "gocryptfs": GoCrypt}[name](work)
        mnt = fs.mount()
        watch = RssWatch(fs.pids)
        row: dict = {}
        try:
            if not args.fsx_only:
                row.update(sparse(fs, mnt, args))
                (mnt / "sparse.bin").unlink()
                row.update(dense(fs, mnt, args))
                (mnt / "dense.bin").unlink()
                row.update(open_huge(fs, mnt))
            if args.fsx_ops:
                row.update(fsx(fs, mnt, args))
        finally:
            row["server RSS MiB (peak)"] = watch.done() / MIB
            fs.unmount()
            subprocess.run(["rm", "-rf", str(work)])
        results[name] = {**results.get(name, {}), **row}
        print(name, json.dumps(row), flush=True)
    keys = list(dict.fromkeys(k for row in results.values() for k in row))
    names = list(results)
    print(f"| {'measure':<36} | " + " | ".join(f"{n:>10}" for n in names) + " |")
    print(f"|{'-' * 38}|" + "|".join("-" * 12 for _ in names) + "|")
    for key in keys:
        cells = []
        for n in names:
            v = results[n].get(key, "")
            cells.append(f"{v:>10.1f}" if isinstance(v, float) else f"{v!s:>10}")
        print(f"| {key:<36} | " + " | ".join(cells) + " |")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
