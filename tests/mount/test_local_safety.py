"""Other people on the same machine (issue 21): real Linux users made with
``useradd``, acting through ``setpriv``, against real mounts.

- the control socket of a shared mount outlives a flood from an unmapped
  user, idle and half-sent requests, and running out of file descriptors;
- a new vault is its owner's alone, and ``mount`` refuses key material
  others may read;
- a runtime folder another user made first gets no passphrase, and the
  client checks the socket's folder and server before it sends one;
- the mount server keeps no passphrase in its environment, dumps no core
  and cannot be dumped or traced.

The users run this very tree (PYTHONPATH) with an interpreter they may
execute and the virtualenv's site-packages, as in test_shared_mount.py.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
from conftest import PASSPHRASE, fusevault, homes_for, is_mounted, linux_users, mounted

import fusevault as package
from fusevault.errors import Unsafe
from fusevault.fs import control
from fusevault.paths import _socket_name

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("setpriv"),
    reason="needs root, useradd and setpriv (real Linux users)")

SECRETS = {"alice": "alice's passphrase", "bob": "bob's passphrase", "carol": "carol's passphrase"}
SITE = sysconfig.get_paths()["purelib"]
TREE = str(Path(package.__file__).resolve().parent.parent)
LAUNCH = ("import site, sys; site.addsitedir(sys.argv.pop(1)); import runpy; "
          "runpy.run_module('fusevault', run_name='__main__', alter_sys=True)")


@pytest.fixture(scope="module")
def linux() -> dict[str, pwd.struct_passwd]:
    """alice and bob (mapped in the shared vault), carol (a vault of her own), dave (nobody's)."""
    with linux_users("alice", "bob", "carol", "dave") as users:
        yield users


@pytest.fixture(scope="module")
def place(linux) -> Path:
    """A folder every one of them may enter, with a home each."""
    with homes_for(linux, "fvlocal") as base:
        yield base


def user_env(home: Path, runtime: bool = True, **extra: str) -> dict[str, str]:
    """Their environment: no XDG_RUNTIME_DIR; their own runtime folder unless ``runtime`` is False."""
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(home), "PYTHONPATH": TREE,
           "FUSEVAULT_INSECURE_FAST_KDF": "1", "FUSEVAULT_STATE_DIR": str(home / "state"),
           "FUSEVAULT_CONFIG_DIR": str(home / "config")}
    if runtime:
        env["FUSEVAULT_RUNTIME_DIR"] = str(home / "run")
    env.update(extra)
    return env


def as_user(user: pwd.struct_passwd, command: list[str], env: dict[str, str], **kwargs):
    """``command`` as that Linux user (uid, gid, groups) with exactly ``env``; a Popen with ``popen``."""
    full = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups",
            "env", "-i", *(f"{k}={v}" for k, v in env.items()), *command]
    if kwargs.pop("popen", False):
        return subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, **kwargs)
    return subprocess.run(full, capture_output=True, text=True, timeout=kwargs.pop("timeout", 300),
                          stdin=subprocess.DEVNULL, **kwargs)


@pytest.fixture(scope="module")
def python(linux, place) -> str:
    """An interpreter the test users may run (the virtualenv's may live under /root)."""
    minor = f"python3.{sys.version_info.minor}"
    for candidate in (sys.executable, f"/usr/bin/{minor}", f"/usr/local/bin/{minor}"):
        probe = as_user(linux["dave"], [candidate, "-S", "-c", LAUNCH, SITE, "--help"],
                        user_env(place / "dave"))
        if probe.returncode == 0:
            return candidate
    pytest.fail(f"no interpreter the test users may run imports fusevault from {SITE}")


class Person:
    def __init__(self, user: pwd.struct_passwd, home: Path, python: str) -> None:
        self.user, self.home, self.python = user, home, python

    def fusevault(self, *args: str, runtime: bool = True, passphrase: str | None = None,
                  **extra: str) -> subprocess.CompletedProcess:
        env = user_env(self.home, runtime, **extra)
        if passphrase is not None:
            env["FUSEVAULT_PASSPHRASE"] = passphrase
        return as_user(self.user, [self.python, "-S", "-c", LAUNCH, SITE, *map(str, args)], env)

    def script(self, code: str, *args: str, popen: bool = False):
        """A small Python program of theirs (sockets only: no fusevault)."""
        return as_user(self.user, [self.python, "-S", "-c", code, *map(str, args)], user_env(self.home),
                       popen=popen)


@pytest.fixture(scope="module")
def people(linux, place, python) -> dict[str, Person]:
    return {name: Person(user, place / name, python) for name, user in linux.items()}


def one_line(result: subprocess.CompletedProcess, code: int, words: str) -> str:
    assert result.returncode == code, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def pid_of(mountpoint: Path) -> int:
    result = fusevault("status", mountpoint, "--json", passphrase=None)
    assert result.returncode == 0, result.stderr
    [mount] = json.loads(result.stdout)["mounts"]
    return mount["pid"]


# --- 1. the control socket survives abuse

FLOOD = r"""
import json, resource, socket, sys
path, count = sys.argv[1], int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if hard != resource.RLIM_INFINITY and hard < count + 64:
    count = hard - 64
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
held = []
for _ in range(count):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)  # blocking: waits while the server's backlog is full
    s.settimeout(120)
    held.append(s)
answers = {}
for s in held:
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    said = json.loads(data)["error"].split(":")[0] if data else "closed"
    answers[said] = answers.get(said, 0) + 1
print(json.dumps({"held": count, "answers": answers}))
"""

IDLE = r"""
import json, socket, sys
path, count = sys.argv[1], int(sys.argv[2])
held = []
for n in range(count):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)  # blocking: waits while the server's backlog is full
    s.settimeout(120)
    if n % 2:
        try:
            s.send(b'{"cmd": "sta')  # half a request, never finished
        except BrokenPipeError:
            pass  # refused at once: the answer is waiting
    held.append(s)
got = []
for s in held:
    data = b""
    try:
        while chunk := s.recv(4096):
            data += chunk
        got.append(data.decode())  # "": dropped without an answer
    except ConnectionResetError:  # closed with our half request unread, after its answer
        got.append(data.decode())
    except TimeoutError:
        got.append("still open")
print(json.dumps(got))
"""


@pytest.fixture(scope="module")
def shared(linux, place):
    """A shared mount (root, --allow-other) in which alice and bob are mapped; dave and carol are not."""
    vault = place / "shared-vault"
    assert fusevault("init", vault, "--user", "admin").returncode == 0
    for name in ("alice", "bob"):
        added = fusevault("user", "add", name, "--uid", str(linux[name].pw_uid),
                          env={"FUSEVAULT_VAULT": str(vault), "FUSEVAULT_NEW_PASSPHRASE": SECRETS[name]})
        assert added.returncode == 0, added.stderr
    mountpoint = place / "shared-mnt"
    # Idle clients are dropped after 2 s, not 5 (FUSEVAULT_CONTROL_READ_SECONDS, fs/control.py): the
    # scenes below wait for those drops; each request of theirs is sent at once, well within 2 s.
    with mounted(vault, mountpoint, "--allow-other", env={"FUSEVAULT_CONTROL_READ_SECONDS": "2"}):
        yield mountpoint


def test_the_control_socket_outlives_floods_idle_clients_and_running_out_of_descriptors(
        shared: Path, people: dict[str, Person]) -> None:
    socket_path = Path("/run/fusevault") / _socket_name(shared)
    log = Path(os.environ["FUSEVAULT_STATE_DIR"]) / "logs" / f"mount-{socket_path.stem}.log"
    pid = pid_of(shared)
    limit = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    try:
        # dave, mapped to nobody, holds 2000 connections while the server may
        # keep only 64 more descriptors: each is refused at once, unread.
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (len(os.listdir(f"/proc/{pid}/fd")) + 64, limit[1]))
        flood = people["dave"].script(FLOOD, socket_path, 2000)
        assert flood.returncode == 0, flood.stderr
        held, answers = json.loads(flood.stdout).values()
        dave = people["dave"].user.pw_uid
        refused, busy = f"uid {dave} is no user of this vault", f"too many requests at once from uid {dave}"
        assert held >= 900 and sum(answers.values()) == held and answers.get(refused), answers
        assert set(answers) <= {refused, busy}, answers  # each one answered, none left open
        assert is_mounted(shared) and pid_of(shared) == pid

        # bob, mapped, leaves 10 requests unsent or half sent while the server
        # has room for 3: accept waits (EMFILE) while the idle ones are dropped.
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (len(os.listdir(f"/proc/{pid}/fd")) + 3, limit[1]))
        idle = people["bob"].script(IDLE, socket_path, 10)
        assert idle.returncode == 0, idle.stderr
        assert json.loads(idle.stdout) == [""] * 10  # every one dropped, none answered
        assert "Too many open files" in log.read_text()
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, limit)
    # More at once than one uid may hold: the rest are told so at once.
    idle = people["bob"].script(IDLE, socket_path, control.MAX_PER_UID + 8)
    assert idle.returncode == 0, idle.stderr
    got = json.loads(idle.stdout)
    busy = [answer for answer in got if answer.startswith('{"error": "too many requests at once')]
    assert busy and all(answer == "" for answer in got if answer not in busy), got

    # The mount is up and serves a mapped user as ever.
    alice = people["alice"]
    unlocked = alice.fusevault("unlock", shared, passphrase=SECRETS["alice"])
    assert unlocked.returncode == 0, unlocked.stderr
    wrote = as_user(alice.user, ["sh", "-c", f"echo still here > {shared}/note && cat {shared}/note"],
                    user_env(alice.home))
    assert wrote.stdout == "still here\n", wrote.stderr
    assert pid_of(shared) == pid


# --- 2. nothing is readable by others


def opened_to_others(root: Path) -> list[str]:
    found = subprocess.run(["find", str(root), "-perm", "/077"], capture_output=True, text=True, check=True)
    return found.stdout.split()


def test_a_new_vault_is_its_owners_alone_and_mount_refuses_key_material_others_may_read(
        vault: Path, tmp_path: Path) -> None:
    assert opened_to_others(vault) == []
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "file.txt").write_text("x")
        assert (vault / "store.sqlite-wal").exists() and (vault / "store.sqlite-shm").exists()
        assert opened_to_others(vault) == []
    assert opened_to_others(vault) == []

    (vault / "store.sqlite").chmod(0o644)
    refused = one_line(fusevault("mount", vault, mnt), 25, "other users may read")
    assert str(vault / "store.sqlite") in refused and not is_mounted(mnt)
    fix = re.search(r"run `([^`]+)`", refused).group(1)
    assert fix == f"chmod -R go-rwx {vault}"
    subprocess.run(fix, shell=True, check=True)
    with mounted(vault, mnt):
        assert (mnt / "file.txt").read_text() == "x"


# --- 3. runtime folders are checked

TRAP = r"""
import os, socket, sys
folder, name, record = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(folder + "/mounts")
os.chmod(folder, 0o777)
os.chmod(folder + "/mounts", 0o777)
listener = socket.socket(socket.AF_UNIX)
listener.bind(folder + "/mounts/" + name)
os.chmod(folder + "/mounts/" + name, 0o777)
listener.listen(8)
print("ready", flush=True)
while True:
    conn, _ = listener.accept()
    conn.settimeout(5)
    data = b""
    try:
        while b"\n" not in data and (chunk := conn.recv(65536)):
            data += chunk
        conn.sendall(b'{"user": "you", "expires": 0}\n')
    except OSError:
        pass
    with open(record, "ab") as out:
        out.write(data + b"|")
    conn.close()
"""


class Trap:
    """dave listening where someone else's passphrase might be sent."""

    def __init__(self, dave: Person, folder: Path, name: str) -> None:
        self.folder, self.record = folder, dave.home / f"got-{folder.name}"
        shutil.rmtree(folder, ignore_errors=True)
        self.proc = dave.script(TRAP, folder, name, self.record, popen=True)
        assert self.proc.stdout.readline() == "ready\n"

    def heard(self) -> bytes:
        return self.record.read_bytes() if self.record.exists() else b""

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self.proc.stdout.close()
        shutil.rmtree(self.folder, ignore_errors=True)


def test_a_runtime_folder_another_user_made_first_gets_no_passphrase(
        shared: Path, people: dict[str, Person], place: Path, tmp_path: Path) -> None:
    alice, carol, dave = people["alice"], people["carol"], people["dave"]
    # root's own mount, in a place carol can see
    vault = place / "roots-vault"
    assert fusevault("init", vault, "--user", "root").returncode == 0
    personal = place / "personal-mnt"
    # dave made /tmp/fusevault-<uid> of alice and of carol first, sockets and all.
    traps = [Trap(dave, Path(f"/tmp/fusevault-{alice.user.pw_uid}"), _socket_name(shared)),
             Trap(dave, Path(f"/tmp/fusevault-{carol.user.pw_uid}"), _socket_name(personal))]
    try:
        with mounted(vault, personal):
            # Carol, without a session runtime folder: refused, one line, nothing sent.
            asked = carol.fusevault("unlock", personal, runtime=False, passphrase=SECRETS["carol"])
            taken = f"/tmp/fusevault-{carol.user.pw_uid} belongs to uid {dave.user.pw_uid}"
            refused = one_line(asked, 25, taken)
            assert "FUSEVAULT_RUNTIME_DIR" in refused
            # The same folder named on purpose: refused too.
            one_line(carol.fusevault("unlock", personal, passphrase=SECRETS["carol"],
                                     FUSEVAULT_RUNTIME_DIR=f"/tmp/fusevault-{carol.user.pw_uid}"),
                     25, "belongs to uid")
            # Her own mount is refused before the passphrase is even read.
            assert carol.fusevault("init", carol.home / "vault", "--user", "carol",
                                   passphrase=SECRETS["carol"]).returncode == 0
            (carol.home / "mnt").mkdir()
            os.chown(carol.home / "mnt", carol.user.pw_uid, carol.user.pw_gid)
            one_line(carol.fusevault("mount", carol.home / "vault", carol.home / "mnt", runtime=False),
                     25, "belongs to uid")
        # Alice, in a shared mount, unlocks through root's socket in /run/fusevault.
        unlocked = alice.fusevault("unlock", shared, runtime=False, passphrase=SECRETS["alice"])
        assert unlocked.returncode == 0 and "unlocked alice" in unlocked.stdout, unlocked.stderr
        assert [trap.heard() for trap in traps] == [b"", b""]
    finally:
        for trap in traps:
            trap.close()


def test_the_client_checks_the_sockets_folder_and_server_before_it_sends(
        people: dict[str, Person], place: Path, tmp_path: Path) -> None:
    dave = people["dave"]
    trap = Trap(dave, dave.home / "trap", "x.sock")
    unlock = {"cmd": "unlock", "passphrase": "c2VjcmV0"}
    try:
        with pytest.raises(Unsafe, match="not yours or root's alone"):
            control.request(trap.folder / "mounts" / "x.sock", unlock)
        # The same listener in a folder of root's: its server is dave's.
        safe = tmp_path / "safe"
        safe.mkdir(mode=0o700)
        os.rename(trap.folder / "mounts" / "x.sock", safe / "x.sock")
        with pytest.raises(Unsafe, match=f"served by uid {dave.user.pw_uid}"):
            control.request(safe / "x.sock", unlock)
        deadline = time.monotonic() + 30
        while trap.heard() != b"|":  # it saw a connection, and nothing came over it
            assert time.monotonic() < deadline and b"c2VjcmV0" not in trap.heard(), trap.heard()
            time.sleep(0.05)
    finally:
        trap.close()


# --- 4. the daemon keeps secrets to itself


def _limits(pid: int) -> tuple[str, str]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max core file size"):
            soft, hard = line.split()[4:6]
            return soft, hard
    raise AssertionError("no core limit")


def _status(pid: int, field: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(field)


def test_the_mount_server_keeps_no_passphrase_in_its_environment_and_dumps_no_core(mnt: Path) -> None:
    pid = pid_of(mnt)
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"FUSEVAULT_PASSPHRASE" not in environ and PASSPHRASE.encode() not in environ
    assert _limits(pid) == ("0", "0")
    if int(_status(os.getpid(), "CapEff"), 16) >> 14 & 1:  # CAP_IPC_LOCK: its memory stays out of swap
        assert int(_status(pid, "VmLck").split()[0]) > 0


def test_a_users_mount_server_cannot_be_dumped_or_traced(people: dict[str, Person], place: Path) -> None:
    carol = people["carol"]
    vault, mnt = carol.home / "own-vault", carol.home / "own-mnt"
    assert carol.fusevault("init", vault, "--user", "carol", passphrase=SECRETS["carol"]).returncode == 0
    mnt.mkdir()
    os.chown(mnt, carol.user.pw_uid, carol.user.pw_gid)
    # /dev/fuse may be root's alone here: a mount namespace of the test's own
    # gets a node everyone may open, as most distributions have.
    device = place / "dev"
    device.mkdir(exist_ok=True)
    env = user_env(carol.home, FUSEVAULT_PASSPHRASE=SECRETS["carol"])
    command = shlex.join(["setpriv", f"--reuid={carol.user.pw_uid}", f"--regid={carol.user.pw_gid}",
                          "--init-groups", "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                          carol.python, "-S", "-c", LAUNCH, SITE, "mount", str(vault), str(mnt)])
    script = (f"mount -t tmpfs -o mode=755,size=64k fvdev {device} && mknod -m 666 {device}/fuse c 10 229"
              f" && mount --bind {device}/fuse /dev/fuse && exec {command}")
    result = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                            capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    if "mounted" not in result.stdout and ("mknod" in result.stderr or "mount:" in result.stderr):
        pytest.skip(f"cannot give the test user a FUSE device: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    [pid] = [int(p) for p in os.listdir("/proc") if p.isdigit() and _runs(int(p), str(mnt))]
    try:
        assert _status(pid, "Uid").split()[0] == str(carol.user.pw_uid)
        # Not dumpable: what /proc/PID holds is root's, so carol's own processes
        # cannot read its memory or environment, nor ptrace it.
        assert os.stat(f"/proc/{pid}/environ").st_uid == 0 and os.stat(f"/proc/{pid}/mem").st_uid == 0
        assert _limits(pid) == ("0", "0")
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        assert b"PASSPHRASE" not in environ and SECRETS["carol"].encode() not in environ
        peek = as_user(carol.user, ["cat", f"/proc/{pid}/environ"], user_env(carol.home))
        assert peek.returncode != 0 and "Permission denied" in peek.stderr
    finally:
        os.kill(pid, signal.SIGTERM)  # it saves and unmounts inside its namespace
        deadline = time.monotonic() + 60
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def _runs(pid: int, mountpoint: str) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"mount" in argv and mountpoint.encode() in argv


def _alive(pid: int) -> bool:
    try:
        return _status(pid, "State")[0] != "Z"
    except (OSError, AssertionError):
        return False


def test_a_request_nested_too_deep_to_parse_is_refused_and_the_mount_serves_on(mnt: Path) -> None:
    """JSON nested thousands deep makes the parser raise RecursionError, not
    ValueError: it used to escape the control socket's task and take the
    whole mount down (on a shared mount, any admitted user could)."""
    import socket

    from fusevault import paths

    (mnt / "f.txt").write_bytes(b"hello")
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(str(paths.socket_of(mnt)))
        s.sendall(b"[" * 5000 + b"\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    assert json.loads(data) == {"error": "bad request"}
    assert is_mounted(mnt) and (mnt / "f.txt").read_bytes() == b"hello"
    assert fusevault("status", mnt).returncode == 0
