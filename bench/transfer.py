#!/usr/bin/env python3
"""send -> relay -> receive over loopback: fusevault against magic-wormhole, in one run.

    bench/transfer.py [--mib 1024] [--repeat 1] [--wormhole-bin /tmp/mwvenv/bin]

fusevault: a redis-server and `fusevault relay` on loopback, `fusevault send`,
then `fusevault receive` timed from its start to its exit (key exchange,
transfer, verification, fsync, rename included).  magic-wormhole (PyPI
magic-wormhole, with magic-wormhole-mailbox-server and
magic-wormhole-transit-relay, in a venv of their own: see --wormhole-bin):
its mailbox and transit relay on loopback, `wormhole receive` timed the same
way, once through the transit relay (--no-listen on both sides: the same path
as fusevault's) and once direct (its default: the two ends connect to each
other when they can).  Every received file is compared with the sent one.
The runs alternate, so a busy machine slows each alike; the load average is
printed with the results.  Not part of the test suite.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FUSEVAULT = [sys.executable, "-m", "fusevault"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not start")
        time.sleep(0.1)


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 1).close()
        return True
    except OSError:
        return False


def digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


class Servers:
    """The relays of both tools, on loopback, for the whole run."""

    def __init__(self, work: Path, wormhole_bin: Path | None) -> None:
        self.procs: list[subprocess.Popen] = []
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "FUSEVAULT_STATE_DIR": str(work / "state"),
                    "FUSEVAULT_RUNTIME_DIR": str(work / "run"), "FUSEVAULT_CONFIG_DIR": str(work / "config")}
        redis_port, relay_port = free_port(), free_port()
        self.start(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                    "--appendonly", "no", "--dir", str(work)])
        wait_for(lambda: listening(redis_port), "redis-server")
        self.start([*FUSEVAULT, "relay", "--listen", f"127.0.0.1:{relay_port}",
                    "--redis", f"redis://127.0.0.1:{redis_port}/0"], env=self.env)
        self.relay = f"http://127.0.0.1:{relay_port}"
        wait_for(lambda: _health(self.relay), "fusevault relay")
        self.wormhole = None
        if wormhole_bin is not None:
            mailbox, transit = free_port(), free_port()
            twist = str(wormhole_bin / "twist")
            self.start([twist, "wormhole-mailbox", f"--port=tcp:{mailbox}:interface=127.0.0.1",
                        f"--channel-db={work / 'channels.sqlite'}"])
            self.start([twist, "transitrelay", f"--port=tcp:{transit}:interface=127.0.0.1"])
            wait_for(lambda: listening(mailbox) and listening(transit), "the magic-wormhole servers")
            self.wormhole = [str(wormhole_bin / "wormhole"), "--relay-url", f"ws://127.0.0.1:{mailbox}/v1",
                             "--transit-helper", f"tcp:127.0.0.1:{transit}"]

    def start(self, command: list[str], env: dict | None = None) -> None:
        self.procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                           env=env))

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _health(url: str) -> bool:
    try:
        urllib.request.urlopen(url + "/health", timeout=1).read()
        return True
    except OSError:
        return False


def fusevault_run(servers: Servers, source: Path, out: Path) -> float:
    sender = subprocess.Popen([*FUSEVAULT, "send", str(source), "--relay", servers.relay], env=servers.env,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        found = re.match(r"Session (\d+), code (\S+)", sender.stdout.readline())
        if not found:
            raise SystemExit("fusevault send did not start")
        start = time.perf_counter()
        subprocess.run([*FUSEVAULT, "receive", found.group(1), "--relay", servers.relay, "-o", str(out)],
                       env={**servers.env, "FUSEVAULT_CODE": found.group(2)}, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elapsed = time.perf_counter() - start
        sender.wait(60)
        return elapsed
    finally:
        if sender.poll() is None:
            sender.kill()
        sender.wait()


def wormhole_run(servers: Servers, source: Path, out: Path, direct: bool) -> float:
    listen = [] if direct else ["--no-listen"]
    sender = subprocess.Popen([*servers.wormhole, "send", *listen, "--hide-progress", str(source)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        code = None
        while code is None:
            line = sender.stderr.readline()
            if not line:
                raise SystemExit("wormhole send did not start")
            found = re.search(r"Wormhole code is: (\S+)", line)
            code = found.group(1) if found else None
        start = time.perf_counter()
        subprocess.run([*servers.wormhole, "receive", *listen, "--accept-file", "--hide-progress",
                        "-o", str(out / source.name), code], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elapsed = time.perf_counter() - start
        sender.wait(60)
        return elapsed
    finally:
        if sender.poll() is None:
            sender.kill()
        sender.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024, help="size of the file sent (default 1024)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--wormhole-bin", type=Path, default=Path("/tmp/mwvenv/bin"),
                        help="where twist and wormhole are (a venv with magic-wormhole, "
                             "magic-wormhole-mailbox-server and magic-wormhole-transit-relay)")
    parser.add_argument("--dir", type=Path, help="where the files go (default: a temporary folder)")
    args = parser.parse_args()
    wormhole_bin = args.wormhole_bin if (args.wormhole_bin / "wormhole").exists() else None
    if wormhole_bin is None:
        print(f"no magic-wormhole in {args.wormhole_bin}: fusevault only", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="fv-transfer-", dir=args.dir))
    servers = None
    try:
        source = work / "payload.bin"
        with open(source, "wb") as f:
            for _ in range(args.mib):
                f.write(os.urandom(1 << 20))
        want = digest(source)
        servers = Servers(work, wormhole_bin)
        runs = {"fusevault (relay)": lambda out: fusevault_run(servers, source, out)}
        if servers.wormhole:
            runs["magic-wormhole (transit relay)"] = lambda out: wormhole_run(servers, source, out, False)
            runs["magic-wormhole (direct)"] = lambda out: wormhole_run(servers, source, out, True)
        times: dict[str, list[float]] = {name: [] for name in runs}
        for i in range(args.repeat):
            for name, run in runs.items():
                out = work / f"out-{i}-{len(times[name])}-{name.split()[0]}"
                out.mkdir()
                times[name].append(run(out))
                if digest(out / source.name) != want:
                    raise SystemExit(f"{name}: the received file differs")
                shutil.rmtree(out)
                print(f"  {name}: {args.mib / times[name][-1]:.1f} MiB/s", file=sys.stderr)
        load = os.getloadavg()
        print(f"{args.mib} MiB over loopback, {args.repeat} run(s) each, median; "
              f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs")
        print(f"{'':34} {'seconds':>8} {'MiB/s':>8}")
        for name, values in times.items():
            seconds = statistics.median(values)
            print(f"{name:34} {seconds:8.1f} {args.mib / seconds:8.1f}")
    finally:
        if servers is not None:
            servers.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
