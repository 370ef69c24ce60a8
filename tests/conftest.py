"""Fixtures: real vaults, real FUSE mounts in a subprocess, a real pouchdb-server.

Every mount made through ``mounted`` is unmounted when the test ends, also
when it fails: first cleanly, then lazily with the server killed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

PASSPHRASE = "correct horse battery staple"
# Linux logins are machine-wide: each test process (a run, or an xdist worker of one) names its own, so
# that no other run or worker deletes a user this one is still using (or makes one it then deletes).
RUN_TAG = secrets.token_hex(3)


# Files that take minutes, longest first.  With pytest-xdist's `--dist loadfile` (scripts/test.sh) a
# file runs whole on one worker, in collection order: the long ones start first, so that no worker is
# left alone with one at the end.  A serial run keeps its order.  The attack rounds' two-device files
# are the longest (41b: 23 tests of 15-45 s each, about 9 min of a 4-worker run).
LONG_FILES = (
    "tests/mount/test_trust_attack_41b.py",
    "tests/mount/test_trust_attack_39a.py",
    "tests/mount/test_trust_attack_40a.py",
    "tests/services/test_sync.py",
    "tests/mount/test_trust_attack_41a.py",
    "tests/mount/test_trust_attack_45c.py",
    "tests/mount/test_trust_attack_46d.py",
    "tests/mount/test_trust_attack_45t.py",
    "tests/mount/test_shared_mount.py",
    "tests/mount/test_local_safety.py",
    "tests/mount/test_domain_permissions.py",
    "tests/services/test_relay.py",
    "tests/mount/test_posix.py",
    "tests/mount/test_imports.py",
    "tests/mount/test_conformance.py",
    "tests/mount/test_caller_rights.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    rank = {path: i for i, path in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(LONG_FILES)))  # stable



# --- a failed test shows the logs of the mounts it started
#
# A mount server logs to FUSEVAULT_STATE_DIR/logs (fs/daemon.py), a folder this session removes at its
# end: a failure seen once in a CI run (a wait that gave up) would otherwise leave nothing to read.
MOUNT_LOG_TAIL = 12_000  # characters of each log: its last minutes, not a whole session's


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if not report.failed or call.when != "call" or not os.environ.get("FUSEVAULT_STATE_DIR"):
        return
    logs = Path(os.environ["FUSEVAULT_STATE_DIR"]) / "logs"
    try:
        written = sorted(p for p in logs.iterdir() if p.stat().st_mtime >= call.start)
    except OSError:
        return
    for log in written:
        text = log.read_text(errors="replace")
        report.sections.append((f"mount log {log.name} (its end)", text[-MOUNT_LOG_TAIL:]))

# --- xdist workers: each in a mount namespace of its own
#
# A command run outside a mount finds mounts machine-wide (fusevault/mounts.py reads
# /proc/self/mountinfo: "say which vault" when there are several), so workers that share a mount
# namespace see each other's mounts.  The controller starts every worker through `unshare --mount
# --propagation private`: a worker, its mounts' servers and the commands it runs see only the mounts
# made inside it (copies of the ones that were there before are detached at its start, below).


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_setupnodes(config: pytest.Config, specs: list) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return  # no mount can be made then either: the mount tests fail saying so
    for spec in specs:
        if spec.popen and not spec.python:  # `-n N`; a --tx with a python of its own is left alone
            spec.python = shlex.join(["unshare", "--mount", "--propagation", "private", "--",
                                      sys.executable])


def _own_mount_namespace() -> bool:
    """This process's mount namespace is not its parent's (an xdist worker started through unshare)."""
    try:
        return os.readlink("/proc/self/ns/mnt") != os.readlink(f"/proc/{os.getppid()}/ns/mnt")
    except OSError:
        return False


def _detach_inherited_mounts() -> None:
    # Only ever in a namespace of this worker's own, whose mounts are private: detaching a copy there
    # leaves the mount where it was made (another run's, or a leftover) untouched.
    if not os.environ.get("PYTEST_XDIST_WORKER") or not _own_mount_namespace():
        return
    from fusevault.mounts import fusevault_mounts

    for point in reversed(fusevault_mounts()):  # as listed: no path lookup in a mount that may hang
        subprocess.run(["umount", "--lazy", "--no-canonicalize", point], capture_output=True)
    left = fusevault_mounts()
    if left:  # a command run outside a mount would find them: say so once, not as "say which vault"
        pytest.fail(f"this worker could not detach the mounts it inherited: {left}")


@pytest.fixture(autouse=True, scope="session")
def _environment():
    _detach_inherited_mounts()
    short = Path(tempfile.mkdtemp(prefix="fvt", dir="/tmp"))  # UNIX socket paths must be short
    saved = dict(os.environ)
    os.environ.update({
        "FUSEVAULT_INSECURE_FAST_KDF": "1",  # the one test-only switch (docs/SECURITY.md)
        "FUSEVAULT_RUNTIME_DIR": str(short / "run"),
        "FUSEVAULT_STATE_DIR": str(short / "state"),
        "FUSEVAULT_CONFIG_DIR": str(short / "config"),
        # A test starts Python often (every `fusevault` command, every mount server: ~25 in a
        # two-device test).  Without compiled bytecode (PYTHONDONTWRITEBYTECODE, set in some
        # environments) each one compiles the fusevault modules it imports again: a quarter of a
        # mount test's CPU.  Here they are compiled once per run (scripts/test.sh's folder) or per
        # worker, into this session's folder (never into the source tree); a stale one is recompiled
        # (its source's mtime is checked).
        "PYTHONPYCACHEPREFIX": os.environ.get("PYTHONPYCACHEPREFIX") or str(short / "pycache"),
    })
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ.pop("FUSEVAULT_PASSPHRASE", None)
    yield
    os.environ.clear()
    os.environ.update(saved)
    shutil.rmtree(short, ignore_errors=True)


def fusevault(*args: str, passphrase: str | None = PASSPHRASE, env: dict | None = None,
              timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """Run the real ``fusevault`` command."""
    full_env = dict(os.environ)
    if passphrase is not None:
        full_env["FUSEVAULT_PASSPHRASE"] = passphrase
    full_env.update(env or {})
    if "input" not in kwargs:
        kwargs["stdin"] = subprocess.DEVNULL
    return subprocess.run([sys.executable, "-m", "fusevault", *map(str, args)], env=full_env,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def is_mounted(path: Path) -> bool:
    target = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    target = os.path.join(target, os.path.basename(os.path.abspath(path)))
    with open("/proc/self/mountinfo") as mounts:
        return any(line.split()[4] == target for line in mounts)


def server_pids(mountpoint: Path) -> list[int]:
    out = subprocess.run(["pgrep", "-f", f"fusevault mount .* {mountpoint}"],
                         capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def force_unmount(mountpoint: Path) -> None:
    for pid in server_pids(mountpoint):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    subprocess.run(["fusermount3", "-uz", str(mountpoint)], capture_output=True)
    deadline = time.monotonic() + 10
    while is_mounted(mountpoint) and time.monotonic() < deadline:
        time.sleep(0.05)


@contextlib.contextmanager
def mounted(vault: Path, mountpoint: Path, *extra: str, passphrase: str = PASSPHRASE,
            env: dict | None = None):
    mountpoint.mkdir(exist_ok=True)
    result = fusevault("mount", vault, mountpoint, *extra, passphrase=passphrase, env=env)
    assert result.returncode == 0, result.stderr
    try:
        yield mountpoint
    finally:
        if is_mounted(mountpoint) and (not unmount(mountpoint) or is_mounted(mountpoint)):
            force_unmount(mountpoint)


def unmount(mountpoint: Path) -> bool:
    """``fusevault unmount MOUNTPOINT`` (no passphrase), asked in this process as the command asks
    (cli/mount.py ``cmd_unmount``: the server's pid, ``fusermount3 -u``, its exit waited for, what it
    could not save): every ``mounted`` ends with one, some thousands a run, and a command started for
    each was ~0.1 s of CPU starting Python.  Whether it said "unmounted".  The command itself is run
    where it is what is tested (test_cli.py, and the tests that unmount by hand)."""
    from fusevault.cli.mount import cmd_unmount

    with contextlib.redirect_stdout(None):
        try:
            return cmd_unmount(argparse.Namespace(mountpoint=mountpoint)) == 0
        except Exception:  # noqa: BLE001  (the command says any error and exits non-zero)
            return False


def login_name(name: str) -> str:
    """This process's Linux login for ``name`` (fv<tag>-name: at most 32 characters for short names)."""
    return f"fv{RUN_TAG}-{name}"


@contextlib.contextmanager
def linux_users(*names: str) -> Iterator[dict[str, pwd.struct_passwd]]:
    """Real Linux users (useradd), by ``name``; the ones made here are deleted again, also on failure."""
    made = []
    try:
        for name in names:
            login = login_name(name)
            try:
                pwd.getpwnam(login)
            except KeyError:
                subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", login],
                               check=True, capture_output=True)
                made.append(login)
        yield {name: pwd.getpwnam(login_name(name)) for name in names}
    finally:
        for login in made:
            subprocess.run(["userdel", login], capture_output=True)


@contextlib.contextmanager
def homes_for(users: dict[str, pwd.struct_passwd], prefix: str) -> Iterator[Path]:
    """A folder every one of ``users`` may enter, with a home each (``base / name``, theirs)."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        base.chmod(0o755)
        for name, user in users.items():
            home = base / name
            home.mkdir()
            os.chown(home, user.pw_uid, user.pw_gid)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def docs_of(vault: Path, kind: str) -> list[dict]:
    """Every document of one type in a vault's embedded store."""
    from fusevault.store.local import LocalStore

    store = LocalStore(vault / "store.sqlite")
    try:
        return list(store.iter_type(kind))
    finally:
        store.close()


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 24 MiB tmpfs (a disk that fills up), and a mount point beside it; both cleaned up
    however the test ends.  (small, mountpoint)."""
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", small], check=True)
    mnt = tmp_path / "mnt"
    try:
        yield small, mnt
    finally:
        if is_mounted(mnt):
            force_unmount(mnt)
        subprocess.run(["umount", "-l", small], check=True)


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    path = tmp_path / "vault"
    result = fusevault("init", path, "--user", "alice")
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture
def mnt(vault: Path, tmp_path: Path):
    with mounted(vault, tmp_path / "mnt") as mountpoint:
        yield mountpoint


def remount(vault: Path, mountpoint: Path):
    """Unmount a fixture's mount and mount it again (a context manager)."""
    result = fusevault("unmount", mountpoint, passphrase=None)
    assert result.returncode == 0, result.stderr
    return mounted(vault, mountpoint)


# --- pouchdb-server, a real CouchDB-protocol server on loopback


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PouchServer:
    """A pouchdb-server process on a loopback port: started, killed, started again."""

    def __init__(self, workdir: Path, *, in_memory: bool = False) -> None:
        self.binary = os.environ.get("POUCHDB_SERVER") or shutil.which("pouchdb-server")
        if self.binary is None:
            pytest.fail("pouchdb-server is not installed (npm install -g pouchdb-server)")
        self.workdir = workdir
        self.in_memory = in_memory
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> str:
        storage = ["--in-memory"] if self.in_memory else ["--dir", str(self.workdir / "data")]
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "server.log", "ab")
        self.proc = subprocess.Popen([self.binary, *storage, "--host", "127.0.0.1", "--port", str(self.port)],
                                     cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(self.url, timeout=1).read()
                return self.url
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.proc.kill()
                    pytest.fail(f"pouchdb-server did not start: {(self.workdir / 'server.log').read_text()}")
                time.sleep(0.05)  # a refused connection costs nothing: answer as soon as it listens

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def couchdb_server(tmp_path_factory):
    server = PouchServer(tmp_path_factory.mktemp("pouchdb"), in_memory=True)
    yield server.start()
    server.stop()


@pytest.fixture
def couchdb_url(couchdb_server: str) -> str:
    return f"{couchdb_server}/fv{uuid.uuid4().hex[:12]}"


# --- two devices of one vault, meeting on a CouchDB-protocol server

LONG = 120  # generous (a loaded CI machine): waits end as soon as the condition holds


def wait_for(check, what, timeout: float = LONG):
    """Poll ``check`` until it gives something true (OSError counts as not yet); fail saying ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what() if callable(what) else what}")
        # Every wait pays half a poll on average after its condition came true; a look is a
        # socket request (``sync_status``) or a store read: cheap against a mount's work.
        time.sleep(0.1)


@pytest.fixture
def quick_longpoll(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mounts this test starts wait 2 s, not 20, on a quiet longpoll (FUSEVAULT_LONGPOLL_SECONDS,
    sync/couch_api.py): for a scene that waits for what the pull does once caught up again (a refused
    deletion said at the first quiet longpoll past its while, held deletions judged after an unlock),
    which is then up to 20 s of waiting for nothing per step.  Not for a test of the pull's wake-up
    (``Replicator.want_again``: asked now, not after the longpoll), which a short longpoll would hide."""
    monkeypatch.setenv("FUSEVAULT_LONGPOLL_SECONDS", "2")


@pytest.fixture
def quick_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mounts this test starts retry a peer that went away every second, not after 1, 2, 4, 8 s
    (FUSEVAULT_RETRY_MAX_SECONDS, sync/replicator.py): for a scene that stops the server and starts it
    again (two devices apart, then together), whose devices otherwise meet again up to 4 s after the
    server is back.  Not for a scene that needs a device to stay away after the server's start (the
    batch test_sync_folder_removal.py writes while the desktop's sync waits its 8 s out)."""
    monkeypatch.setenv("FUSEVAULT_RETRY_MAX_SECONDS", "1")


@pytest.fixture
def quick_gc_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """The mounts (and commands) this test starts let gc take records no document names once their
    ``.vf`` was left unchanged for 1 s, not a day (FUSEVAULT_GC_GRACE_SECONDS, vault/services/gc.py):
    for a scene that collects what the server planted a moment before (attack round 80c (1))."""
    monkeypatch.setenv("FUSEVAULT_GC_GRACE_SECONDS", "1")


def sync_answer(mountpoint: Path) -> dict:
    """The mount's answer to ``fusevault sync status MOUNTPOINT --json``: its peers and its
    ``uncommitted`` count.  Asked in this process, as that command asks (cli/status.py ``gather``):
    tests poll it every 0.1 s while they wait, and a command started per poll was a seventh of a
    two-device test's CPU.  The command itself is run where it is what is tested
    (tests/services/test_sync.py, test_caller_rights.py)."""
    from fusevault.cli.status import gather

    mounts = gather(mountpoint, "sync-status")
    assert mounts, f"no vault is mounted at {mountpoint}"
    (mount,) = mounts
    return mount


def sync_status(mountpoint: Path) -> dict:
    """The mount's one peer, as ``fusevault sync status MOUNTPOINT --json`` lists it (``sync_answer``)."""
    (peer,) = sync_answer(mountpoint)["peers"]
    return peer


def mount_status(mountpoint: Path) -> dict:
    """The mount's entry of ``fusevault status MOUNTPOINT --json`` (its alarms, tasks, pid), asked in
    this process as that command asks (cli/status.py ``gather``), as ``sync_status`` is: the tests
    poll alarms and the import task while they wait, and a command started per poll kept a core busy
    starting Python.  The command's own output is tested where it is what is tested (test_cli.py,
    test_service.py, test_trust_settings.py)."""
    from fusevault.cli.status import gather

    mounts = gather(mountpoint, "status")
    assert len(mounts) == 1, f"not one vault mounted at {mountpoint}: {mounts}"
    return mounts[0]


def settled(mountpoint: Path) -> bool:
    """Nothing waits to be pushed: no committed document (``pending_up``) and no change still in its
    group-commit window (GROUP_WINDOW, vault/tree/inodes.py), which the store, and so
    ``pending_up``, does not count yet: the mount's ``uncommitted`` (fs/lifecycle.py) does, read in
    the same answer, so one look tells that (a second look 0.5 s on used to wait the window out).
    A second look 0.2 s on stays, for what a background task (a re-key, a conflict's copy asked by
    an arrival) commits right after an answer that saw nothing: not what this helper is for, but a
    scene may have leant on it, and a flaky suite costs more than its 0.2 s."""
    def quiet() -> bool:
        answer = sync_answer(mountpoint)
        (peer,) = answer["peers"]
        return (peer["error"] is None and peer["pending_up"] == 0 and peer["last_contact"] is not None
                and answer["uncommitted"] == 0)

    if not quiet():
        return False
    time.sleep(0.2)
    return quiet()


def new_device(url: str, tmp_path: Path, name: str) -> Path:
    vault = tmp_path / name
    result = fusevault("init", vault, "--join", url, "--user", "alice")
    assert result.returncode == 0, result.stderr
    return vault


@pytest.fixture
def couch(tmp_path: Path):
    """A pouchdb-server of this test's own and an adversary's hand on its database (tests/adversary.py)."""
    import adversary

    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        yield url, adversary.Server(url)
    finally:
        server.stop()


def first_device(url: str, tmp_path: Path) -> Path:
    vault = tmp_path / "laptop"
    assert fusevault("init", vault, "--user", "alice").returncode == 0
    added = fusevault("peer", "add", "server", url, "--vault", vault, passphrase=None)
    assert added.returncode == 0, added.stderr
    return vault


@contextlib.contextmanager
def laptop_and_desktop(tmp_path: Path,
                       names: tuple[str, ...]) -> Iterator[tuple[PouchServer, Path, Path, Path]]:
    """Two devices of alice's vault that meet on a pouchdb-server of the test's own (to kill and start
    again): the laptop mounted at ``tmp_path / "a"`` with ``names`` in it ("as it was") pushed, and the
    desktop joined, not mounted.  Yields (server, laptop, its mount, desktop); the server is stopped."""
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop = first_device(url, tmp_path)
        with mounted(laptop, tmp_path / "a") as a:
            for name in names:
                (a / name).write_bytes(b"as it was")
            wait_for(lambda: settled(a), "the first push")
            yield server, laptop, a, new_device(url, tmp_path, "desktop")
    finally:
        server.stop()


# --- redis-server and the relay, real processes on loopback


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    """A redis-server of the test file's own: nothing a relay left in it (an open session, an address's
    call count) reaches another file, whichever files ran before on this worker (or in this run)."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server)")
    port = _free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("redis-server did not start")
        time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def transfer_relay(redis_url: str):
    """A relay on an empty redis: a session a test leaves open (a sender killed after a refusal)
    holds its address's one open session for an hour, and the next test's sender is refused."""
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    client.close()
    with running_relay(redis_url) as (_, url):
        yield url


@contextlib.contextmanager
def running_relay(redis: str, *args: str, script: list[str] | None = None):
    """A relay process on a free port; yields (process, URL); always stopped."""
    port = _free_port()
    command = script or [sys.executable, "-m", "fusevault", "relay"]
    if script:
        command = [*script, f"127.0.0.1:{port}", redis]
    else:
        command = [*command, "--listen", f"127.0.0.1:{port}", "--redis", redis, *args]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the relay did not start: {proc.stderr.read().decode()}")
                time.sleep(0.1)
        yield proc, url
    finally:
        proc.kill()
        proc.wait(10)
        proc.stderr.close()
