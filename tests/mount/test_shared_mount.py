"""One shared mount (root, ``--allow-other``) used by real Linux users at once.

The users are made with ``useradd`` and act through ``setpriv``: their own
uid and gid, their own shells and programs, their own ``fusevault unlock``.
Their ``fusevault`` is this package run by an interpreter they may execute:
the virtualenv's interpreter may live under /root, which they cannot enter,
so the first of (the virtualenv's, the system's python3.X of the same
version) that can import the package as that user is used, with the
virtualenv's site-packages.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
from conftest import PASSPHRASE, docs_of, fusevault, homes_for, is_mounted, linux_users, login_name, mounted

from fusevault.paths import _socket_name

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("setpriv"),
    reason="needs root, useradd and setpriv (real Linux users)")

SECRETS = {"alice": "alice's passphrase", "bob": "bob's passphrase", "carol": "carol's passphrase"}
SITE = sysconfig.get_paths()["purelib"]
LAUNCH = ("import site, sys; site.addsitedir(sys.argv.pop(1)); import runpy; "
          "runpy.run_module('fusevault', run_name='__main__', alter_sys=True)")


@pytest.fixture(scope="module")
def linux() -> dict[str, pwd.struct_passwd]:
    """Linux users for alice, bob, carol (vault users) and dave (none)."""
    with linux_users("alice", "bob", "carol", "dave") as users:
        yield users


@pytest.fixture(scope="module")
def place(linux) -> Path:
    """A folder every one of them may enter, with a home and runtime dir each."""
    with homes_for(linux, "fvshared") as base:
        yield base


def as_user(user: pwd.struct_passwd, *command: str, env: dict | None = None,
            home: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``command`` as that Linux user (their uid, gid and groups), with a clean environment."""
    environment = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    if home is not None:
        environment.update({"HOME": str(home), "FUSEVAULT_RUNTIME_DIR": str(home / "run"),
                            "FUSEVAULT_STATE_DIR": str(home / "state"),
                            "FUSEVAULT_CONFIG_DIR": str(home / "config")})
    environment.update(env or {})
    return subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups",
                           "env", "-i", *(f"{k}={v}" for k, v in environment.items()), *command],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def python(linux, place) -> str:
    """An interpreter the test users can run this package with."""
    minor = f"python3.{sys.version_info.minor}"
    for candidate in (sys.executable, f"/usr/bin/{minor}", f"/usr/local/bin/{minor}"):
        probe = as_user(linux["dave"], candidate, "-S", "-c", LAUNCH, SITE, "--help", home=place / "dave")
        if probe.returncode == 0:
            return candidate
    pytest.fail(f"no interpreter the test users may run imports fusevault from {SITE}")


class People:
    """The test's Linux users, each acting in the shared mount."""

    def __init__(self, linux, place: Path, python: str, mountpoint: Path) -> None:
        self.linux, self.place, self.python, self.mnt = linux, place, python, mountpoint

    def sh(self, name: str, script: str) -> subprocess.CompletedProcess:
        """A shell command line as that user, inside the mount (``$M`` is the mount point)."""
        return as_user(self.linux[name], "sh", "-c", script, env={"M": str(self.mnt)},
                       home=self.place / name)

    def ok(self, name: str, script: str) -> str:
        result = self.sh(name, script)
        assert result.returncode == 0, f"{name}: {script}: {result.stderr}"
        return result.stdout

    def denied(self, name: str, script: str) -> None:
        result = self.sh(name, script)
        assert result.returncode != 0, f"{name} was allowed: {script}"
        assert "Permission denied" in result.stderr, result.stderr

    def fusevault(self, name: str, *args: str, passphrase: str | None = None) -> subprocess.CompletedProcess:
        env = {"FUSEVAULT_PASSPHRASE": passphrase} if passphrase else {}
        return as_user(self.linux[name], self.python, "-S", "-c", LAUNCH, SITE, *args, env=env,
                       home=self.place / name)

    def unlock(self, name: str) -> None:
        result = self.fusevault(name, "unlock", str(self.mnt), passphrase=SECRETS[name])
        assert result.returncode == 0, result.stderr


def _admin(vault: Path, *args: str, passphrase: str = PASSPHRASE) -> None:
    """As the vault's administrator; ``passphrase`` is a new user's with ``user add``."""
    result = fusevault(*args, env={"FUSEVAULT_VAULT": str(vault), "FUSEVAULT_NEW_PASSPHRASE": passphrase},
                       passphrase=passphrase)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def shared_vault(tmp_path: Path, linux) -> Path:
    """root administers the vault (its first user); alice, bob and carol are mapped by uid."""
    vault = tmp_path / "vault"
    assert fusevault("init", vault, "--user", "admin").returncode == 0
    for name in ("alice", "bob", "carol"):
        _admin(vault, "user", "add", name, "--uid", str(linux[name].pw_uid), passphrase=SECRETS[name])
    # The group's owner signs it: alice's passphrase.
    _admin(vault, "group", "add", "team", "--owner", "alice", passphrase=SECRETS["alice"])
    _admin(vault, "group", "member", "add", "team", "bob", "--perm", "WRITE", passphrase=SECRETS["alice"])
    return vault


@pytest.fixture
def people(shared_vault: Path, place: Path, linux, python, request):
    mountpoint = place / f"mnt-{request.node.name[:20]}"
    mountpoint.mkdir()
    with mounted(shared_vault, mountpoint, "--allow-other"):
        yield People(linux, place, python, mountpoint)


def test_each_user_gets_what_the_shares_allow_and_nothing_else(people: People) -> None:
    # Bob is unlocked before anything is shared with him: shares reach him live.
    people.unlock("bob")
    people.unlock("alice")
    people.ok("alice", 'echo "for bob to read" > $M/notes.txt && mkdir $M/proj'
                       ' && echo plan > $M/proj/plan.txt'
                       ' && echo "alice only" > $M/private.txt')
    assert people.ok("alice", "ls $M").split() == ["notes.txt", "private.txt", "proj"]
    assert people.fusevault("alice", "share", f"{people.mnt}/notes.txt", "--with", "bob",
                            "--perm", "READ").returncode == 0
    assert people.fusevault("alice", "share", f"{people.mnt}/proj", "--with", "@team",
                            "--perm", "WRITE").returncode == 0

    # Bob: his own (empty) tree, and what is shared with him, shown as his.
    assert people.ok("bob", "ls $M").split() == ["groups", "shared"]
    assert people.ok("bob", "ls $M/shared/alice").split() == ["notes.txt"]
    assert people.ok("bob", "cat $M/shared/alice/notes.txt") == "for bob to read\n"
    assert people.ok("bob", "stat -c %U $M/shared/alice/notes.txt").strip() == login_name("bob")
    people.denied("bob", "echo more >> $M/shared/alice/notes.txt")
    people.denied("bob", "truncate -s 0 $M/shared/alice/notes.txt")
    people.denied("bob", "rm -f $M/shared/alice/notes.txt")
    people.denied("bob", "mv $M/shared/alice/notes.txt $M/shared/alice/renamed.txt")
    people.ok("bob", "echo 'bob was here' >> $M/groups/team/proj/plan.txt"
                     " && echo new > $M/groups/team/proj/from-bob.txt")
    # Alice sees bob's writes at once (no remount, no unlock).
    assert people.ok("alice", "cat $M/proj/plan.txt") == "plan\nbob was here\n"
    assert people.ok("alice", "cat $M/proj/from-bob.txt") == "new\n"
    assert people.ok("alice", "stat -c %U $M/proj/from-bob.txt").strip() == login_name("alice")

    # Carol is a vault user with nothing shared: locked, then an empty tree.
    people.denied("carol", "ls $M")
    people.unlock("carol")
    assert people.ok("carol", "ls -A $M") == ""
    assert people.ok("carol", "find $M | wc -l").strip() == "1"
    result = people.sh("carol", "cat $M/private.txt $M/shared/alice/notes.txt $M/proj/plan.txt")
    assert result.returncode != 0 and "for bob" not in result.stdout and "plan" not in result.stdout
    # Dave is no vault user: an empty, read-only root and nothing more.
    assert people.ok("dave", "ls -lA $M").strip() == "total 0"
    people.denied("dave", "touch $M/mine.txt")

    # Revoked while bob is unlocked: gone at once, names and all.
    assert people.fusevault("alice", "unshare", f"{people.mnt}/notes.txt", "--with", "bob").returncode == 0
    result = people.sh("bob", "cat $M/shared/alice/notes.txt")
    assert result.returncode != 0 and "for bob" not in result.stdout
    assert people.ok("bob", "ls $M").split() == ["groups"]
    assert people.ok("alice", "cat $M/notes.txt") == "for bob to read\n"

    # Bob's status shows him, not the others; root's shows everyone.
    assert "unlocked bob" in people.fusevault("bob", "status").stdout
    assert "alice" not in people.fusevault("bob", "status").stdout
    everyone = fusevault("status", passphrase=None).stdout
    assert all(f"unlocked {name}" in everyone for name in ("alice", "bob", "carol"))


def test_two_users_writing_one_group_file_keep_every_version(people: People) -> None:
    people.unlock("alice")
    people.unlock("bob")
    people.ok("alice", "mkdir $M/proj && echo v1 > $M/proj/doc.txt")
    assert people.fusevault("alice", "share", f"{people.mnt}/proj", "--with", "@team",
                            "--perm", "WRITE").returncode == 0
    doc = "$M/groups/team/proj/doc.txt"
    people.ok("bob", f"echo v2-bob > {doc}")
    people.ok("alice", "echo v3-alice > $M/proj/doc.txt")
    people.ok("bob", f"echo v4-bob > {doc}")
    # Alice opens the file and holds it open while bob writes and closes his.
    alice_waits = subprocess.Popen(
        ["setpriv", f"--reuid={people.linux['alice'].pw_uid}", f"--regid={people.linux['alice'].pw_gid}",
         "--init-groups", "sh", "-c",
         f"exec 3>{people.mnt}/proj/doc.txt; echo open; read line; echo v5-alice >&3"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert alice_waits.stdout.readline() == "open\n"
        people.ok("bob", f"echo v6-bob > {doc}")
        alice_waits.communicate("go\n", timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            alice_waits.kill()
    assert alice_waits.returncode == 0
    assert people.ok("alice", "cat $M/proj/doc.txt") == people.ok("bob", f"cat {doc}")

    history = people.fusevault("alice", "history", f"{people.mnt}/proj/doc.txt", "--json")
    assert history.returncode == 0, history.stderr
    versions = json.loads(history.stdout)["versions"]
    authors = [v["author"] for v in versions]
    assert authors.count("bob") >= 3 and authors.count("alice") >= 3, authors
    contents = set()
    for n, version in enumerate(versions):
        copy = f"{people.mnt}/proj/copy-{n}.txt"
        restored = people.fusevault("alice", "restore", f"{people.mnt}/proj/doc.txt",
                                    "--version", version["id"], "--to", copy)
        assert restored.returncode == 0, restored.stderr
        contents.add(people.ok("alice", f"cat {copy}"))
    assert {"v1\n", "v2-bob\n", "v3-alice\n", "v4-bob\n", "v5-alice\n", "v6-bob\n"} <= contents


def test_a_users_ttl_and_lock_end_only_their_access(shared_vault: Path, place: Path, linux, python,
                                                     request) -> None:
    _admin(shared_vault, "config", "set", "passphrase_expiry_ttl", "0.05 min", "--vault",
           str(shared_vault), "--user", "bob", passphrase=SECRETS["bob"])
    mountpoint = place / "mnt-ttl"
    mountpoint.mkdir()
    with mounted(shared_vault, mountpoint, "--allow-other"):
        people = People(linux, place, python, mountpoint)
        people.unlock("alice")
        people.ok("alice", "echo shared > $M/notes.txt")
        assert people.fusevault("alice", "share", f"{mountpoint}/notes.txt", "--with", "bob",
                                "--perm", "READ").returncode == 0
        people.unlock("bob")
        assert people.ok("bob", "cat $M/shared/alice/notes.txt") == "shared\n"
        # Bob's TTL (3 s) runs out by itself: his requests are refused, alice's are not.
        deadline = time.monotonic() + 60
        while people.sh("bob", "cat $M/shared/alice/notes.txt").returncode == 0:
            assert time.monotonic() < deadline, "bob's keys were never wiped"
            time.sleep(0.5)
        people.denied("bob", "ls $M")
        assert "locked" in people.fusevault("bob", "status").stdout
        assert people.ok("alice", "cat $M/notes.txt") == "shared\n"
        # Unlocked again, then locked by hand: the same, at once.
        people.unlock("bob")
        assert people.ok("bob", "cat $M/shared/alice/notes.txt") == "shared\n"
        assert people.fusevault("bob", "lock").returncode == 0
        people.denied("bob", "cat $M/shared/alice/notes.txt")
        assert people.ok("alice", "cat $M/notes.txt") == "shared\n"
        # A wrong passphrase opens nothing; a uid that is no vault user is told so.
        wrong = people.fusevault("bob", "unlock", str(mountpoint), passphrase="not bob's")
        assert wrong.returncode == 3, wrong.stderr
        people.denied("bob", "ls $M")
        stranger = people.fusevault("dave", "unlock", str(mountpoint), passphrase="anything")
        assert stranger.returncode == 22 and "no user of this vault" in stranger.stderr


# --- revokes while recipients hold files open (nothing they were told was written is lost)

# A program run as a test user: opens, writes and closes one file on command,
# answering each command with "ok" or the errno it failed with.
HOLD = r"""
import os, sys
fd = None
for line in sys.stdin:
    cmd, _, arg = line.rstrip("\n").partition(" ")
    try:
        if cmd == "open":
            fd = os.open(arg, os.O_WRONLY | os.O_APPEND)
        elif cmd == "write":
            os.write(fd, (arg + "\n").encode())
        elif cmd == "close":
            fd, was = None, fd
            os.close(was)
        print("ok", flush=True)
    except OSError as err:
        print("err", err.errno, flush=True)
"""

# A program run as a test user until a stop file appears: opens one file, appends
# a few lines, closes it, again and again; prints what happened to each line (JSON).
WRITE_LOOP = r"""
import json, os, random, sys, time
path, tag, stop = sys.argv[1], sys.argv[2], sys.argv[3]
n = 0
while not os.path.exists(stop):
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except OSError as err:
        print(json.dumps(["open", err.errno]), flush=True)
        time.sleep(0.02)
        continue
    written = []
    for _ in range(random.randint(1, 4)):
        n += 1
        line = f"{tag}-{n}"
        try:
            os.write(fd, (line + "\n").encode())
            written.append(line)
        except OSError as err:
            print(json.dumps(["write", line, err.errno]), flush=True)
        time.sleep(random.random() * 0.03)
    try:
        os.close(fd)
        print(json.dumps(["kept", written]), flush=True)
    except OSError as err:
        print(json.dumps(["close", written, err.errno]), flush=True)
"""


def _popen_as(people: People, name: str, *command: str) -> subprocess.Popen:
    user = people.linux[name]
    return subprocess.Popen(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups",
                             "env", "-i", "PATH=/usr/bin:/bin", *command],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


class Holder:
    """A test user's process holding one file open across what others do."""

    def __init__(self, people: People, name: str) -> None:
        self.proc = _popen_as(people, name, people.python, "-S", "-c", HOLD)

    def do(self, command: str) -> str:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.stdout.close()


def _mount_log_problems(mountpoint: Path) -> list[str]:
    """Errors in the log of the mount at ``mountpoint`` (named after it, so
    other tests' mounts are not read), each with the traceback that follows it."""
    name = Path(_socket_name(mountpoint)).stem
    log = Path(os.environ["FUSEVAULT_STATE_DIR"]) / "logs" / f"mount-{name}.log"
    try:
        text = log.read_text()
    except FileNotFoundError:
        return []
    return [entry for entry in re.split(r"\n(?=\d{4}-\d\d-\d\d )", text)
            if "Traceback" in entry or "failed" in entry or "unexpected error" in entry]


def test_a_revoke_while_the_recipient_has_unsaved_writes_keeps_them_and_refuses_more(
        people: People) -> None:
    people.unlock("alice")
    people.unlock("bob")
    people.ok("alice", "mkdir $M/proj && echo plan > $M/proj/plan.txt")
    share = ("share", f"{people.mnt}/proj", "--with", "@team", "--perm", "WRITE")
    assert people.fusevault("alice", *share).returncode == 0
    bob = Holder(people, "bob")
    try:
        assert bob.do(f"open {people.mnt}/groups/team/proj/plan.txt") == "ok"
        assert bob.do("write before the revoke") == "ok"  # acknowledged, not yet saved
        assert people.fusevault("alice", "unshare", f"{people.mnt}/proj", "--with", "@team").returncode == 0
        # What bob was told was written is in alice's file; a write after the
        # revoke is refused at once, and his close reports nothing lost.
        assert people.ok("alice", "cat $M/proj/plan.txt") == "plan\nbefore the revoke\n"
        assert bob.do("write after the revoke") == f"err {errno.EACCES}"
        assert bob.do("close") == "ok"
    finally:
        bob.close()
    assert people.ok("alice", "cat $M/proj/plan.txt") == "plan\nbefore the revoke\n"
    gone = people.sh("bob", "cat $M/groups/team/proj/plan.txt")
    assert gone.returncode != 0 and "plan" not in gone.stdout
    # His lock and a new unlock work; shared again, he sees the file and writes it.
    assert people.fusevault("bob", "lock").returncode == 0
    people.unlock("bob")
    assert people.fusevault("alice", *share).returncode == 0
    people.ok("bob", "echo 'after the new share' >> $M/groups/team/proj/plan.txt")
    assert people.ok("alice", "cat $M/proj/plan.txt") == "plan\nbefore the revoke\nafter the new share\n"

    # An empty file has no version to seal again: a revoke gives it a new key
    # only.  Contents held open across it (the owner's, and a recipient's
    # whose share came back) used to keep the old key and seal the next
    # version with it under a document of the new one: EIO ever after.
    people.ok("alice", "touch $M/proj/bob.txt $M/proj/alice.txt")
    bob, alice = Holder(people, "bob"), Holder(people, "alice")
    try:
        assert bob.do(f"open {people.mnt}/groups/team/proj/bob.txt") == "ok"
        assert alice.do(f"open {people.mnt}/proj/alice.txt") == "ok"
        assert people.fusevault("alice", "unshare", f"{people.mnt}/proj", "--with", "@team").returncode == 0
        assert people.fusevault("alice", *share).returncode == 0
        for holder, line in ((bob, "from bob"), (alice, "from alice")):
            assert holder.do(f"write {line}") == "ok"
            assert holder.do("close") == "ok"
    finally:
        bob.close()
        alice.close()
    assert people.ok("alice", "cat $M/proj/bob.txt $M/proj/alice.txt") == "from bob\nfrom alice\n"
    assert people.ok("bob", "cat $M/groups/team/proj/bob.txt") == "from bob\n"
    assert _mount_log_problems(people.mnt) == []


def test_shares_come_and_go_while_the_owner_changes_the_folders_above_them(people: People) -> None:
    """The share root's real parent (alice's root, which bob cannot open) and
    the shared/ folders the kernel forgot after a revoke used to be dropped
    from bob's tree: the next revoke failed half done (KeyError) and no later
    share reached him until he locked."""
    people.unlock("alice")
    people.unlock("bob")
    people.ok("alice", "echo one > $M/notes.txt")
    for round in range(3):
        assert people.fusevault("alice", "share", f"{people.mnt}/notes.txt", "--with", "bob",
                                "--perm", "READ").returncode == 0
        assert people.ok("bob", "cat $M/shared/alice/notes.txt") == "one\n", round
        people.ok("alice", "touch $M && chmod 755 $M")  # commits alice's root
        unshare = people.fusevault("alice", "unshare", f"{people.mnt}/notes.txt", "--with", "bob")
        assert unshare.returncode == 0, unshare.stderr
        assert people.sh("bob", "cat $M/shared/alice/notes.txt").stdout == ""
        assert people.ok("bob", "ls -A $M") == ""
        time.sleep(0.5)  # the kernel forgets the names it was told are gone
    problems = _mount_log_problems(people.mnt)
    assert not [entry for entry in problems if "Traceback" in entry], "\n".join(problems)


def test_revokes_and_shares_while_several_users_write_lose_nothing_acknowledged(
        shared_vault: Path, place: Path, linux, python) -> None:
    """Alice revokes and shares again, over and over, while she, bob (through
    the group) and carol (through a share with her) append to files in the
    folder, holding them open for a while: every line whose write and close
    succeeded is in its file afterwards, also after a remount."""
    mountpoint = place / "mnt-stress"
    mountpoint.mkdir()
    paths = {"alice": "proj/alice.txt", "bob": "groups/team/proj/bob.txt",
             "carol": "shared/alice/proj/carol.txt"}
    group = ("@team", "WRITE")
    with mounted(shared_vault, mountpoint, "--allow-other"):
        people = People(linux, place, python, mountpoint)
        for name in ("alice", "bob", "carol"):
            people.unlock(name)
        people.ok("alice", "mkdir $M/proj && touch $M/proj/alice.txt $M/proj/bob.txt $M/proj/carol.txt")

        def share(target: str, perm: str = "WRITE") -> None:
            done = people.fusevault("alice", "share", f"{mountpoint}/proj", "--with", target, "--perm", perm)
            assert done.returncode == 0, done.stderr + "\n".join(_mount_log_problems(people.mnt))

        def unshare(target: str) -> None:
            done = people.fusevault("alice", "unshare", f"{mountpoint}/proj", "--with", target)
            assert done.returncode == 0, done.stderr + "\n".join(_mount_log_problems(people.mnt))

        share(*group)
        share("carol")
        stop = place / "stop-writing"
        stop.unlink(missing_ok=True)
        writers = {name: _popen_as(people, name, python, "-S", "-c", WRITE_LOOP,
                                   f"{mountpoint}/{path}", name, str(stop))
                   for name, path in paths.items()}
        try:
            for round in range(8):
                unshare(group[0])
                if round % 2:
                    unshare("carol")
                    share("carol")
                share(*group)
            time.sleep(1)
            stop.touch()
            outcomes = {name: [json.loads(line) for line in proc.communicate(timeout=60)[0].splitlines()]
                        for name, proc in writers.items()}
        finally:
            stop.touch()
            for proc in writers.values():
                if proc.poll() is None:
                    proc.kill()
        kept = {name: [line for event in events if event[0] == "kept" for line in event[1]]
                for name, events in outcomes.items()}
        assert all(len(lines) >= 5 for lines in kept.values()), kept
        # The revokes took effect: bob was turned away at least once.
        assert any(event[0] in ("open", "write") for event in outcomes["bob"]), outcomes["bob"]

        def check() -> None:
            for name in paths:
                text = people.ok("alice", f"cat $M/proj/{name}.txt").splitlines()
                missing = [line for line in kept[name] if line not in text]
                assert not missing, f"{name}'s acknowledged lines are gone: {missing}\n" + "\n".join(
                    _mount_log_problems(people.mnt))

        check()
        for name in ("bob", "carol"):  # their seats lock and unlock as usual
            assert people.fusevault(name, "lock").returncode == 0
            people.unlock(name)
        people.ok("bob", "echo last >> $M/groups/team/proj/bob.txt")
        kept["bob"].append("last")
        problems = _mount_log_problems(people.mnt)
        assert not [entry for entry in problems if "Traceback" in entry], "\n".join(problems)
        done = fusevault("unmount", mountpoint, passphrase=None)
        assert done.returncode == 0, done.stderr
    with mounted(shared_vault, mountpoint, "--allow-other"):
        people.unlock("alice")
        check()


def _wait_until(people: People, check, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting: {what}\n" + "\n".join(
            _mount_log_problems(people.mnt))
        time.sleep(0.3)


def test_group_members_added_and_removed_while_unlocked_gain_and_lose_its_files(
        people: People, shared_vault: Path) -> None:
    for name in ("alice", "bob", "carol"):
        people.unlock(name)
    people.ok("alice", "mkdir $M/proj && echo plan > $M/proj/plan.txt")
    assert people.fusevault("alice", "share", f"{people.mnt}/proj", "--with", "@team",
                            "--perm", "WRITE").returncode == 0
    assert people.ok("bob", "cat $M/groups/team/proj/plan.txt") == "plan\n"
    assert people.ok("carol", "ls -A $M") == ""
    # The administrator adds carol to the group: she gets the folder without
    # locking, and writes in it; alice sees it at once.
    _admin(shared_vault, "group", "member", "add", "team", "carol", "--perm", "WRITE",
           passphrase=SECRETS["alice"])
    _wait_until(people, lambda: people.sh("carol", "cat $M/groups/team/proj/plan.txt").stdout == "plan\n",
                "carol to see the group's folder")
    people.ok("carol", "echo carol >> $M/groups/team/proj/plan.txt")
    assert people.ok("alice", "cat $M/proj/plan.txt") == "plan\ncarol\n"
    # And removes her: the folder leaves her tree without locking, and alice's
    # unlocked seat gives it new keys at once (sealed for bob, not for carol).
    _admin(shared_vault, "group", "member", "remove", "team", "carol", passphrase=SECRETS["alice"])
    _wait_until(people, lambda: people.sh("carol", "ls -A $M").stdout == "",
                "carol to lose the group's folder")
    refused = people.sh("carol", "cat $M/groups/team/proj/plan.txt")
    assert refused.returncode != 0 and "plan" not in refused.stdout
    _wait_until(people, lambda: not docs_of(shared_vault, "Rotation"), "alice's seat to finish the rotation")
    nodes = [d for d in docs_of(shared_vault, "node") if not d.get("delete") and d.get("epoch", 0) > 0]
    assert len(nodes) == 2, nodes  # proj and plan.txt, each under a new key
    people.ok("bob", "echo bob >> $M/groups/team/proj/plan.txt")
    assert people.ok("alice", "cat $M/proj/plan.txt") == "plan\ncarol\nbob\n"
    assert people.ok("bob", "cat $M/groups/team/proj/plan.txt") == "plan\ncarol\nbob\n"
    assert people.ok("carol", "ls -A $M") == ""
    problems = _mount_log_problems(people.mnt)
    assert not [entry for entry in problems if "Traceback" in entry], "\n".join(problems)


def test_a_write_member_copies_into_the_share_with_modes_kept(people: People) -> None:
    """rsync -a, cp -a and mv set the modes of what they copy in: a WRITE
    member may, for the share's files; setuid and setgid are dropped."""
    people.unlock("alice")
    people.unlock("bob")
    people.ok("alice", "mkdir $M/proj && echo plan > $M/proj/plan.txt && chmod 644 $M/proj/plan.txt")
    assert people.fusevault("alice", "share", f"{people.mnt}/proj", "--with", "@team",
                            "--perm", "WRITE").returncode == 0
    src = people.place / "bob" / "src"
    people.ok("bob", f"rm -rf {src} && mkdir -p {src}/sub && echo run > {src}/run.sh"
                     f" && chmod 755 {src}/run.sh && echo note > {src}/sub/note.txt"
                     f" && chmod 640 {src}/sub/note.txt"
                     f" && chmod 750 {src}/sub && echo s > {src}/setuid && chmod 4755 {src}/setuid")
    proj = "$M/groups/team/proj"
    people.ok("bob", f"rsync -a {src}/ {proj}/by-rsync/")
    people.ok("bob", f"cp -a {src} {proj}/by-cp")
    # From bob's own files in the mount: another owner, so mv copies (EXDEV).
    people.ok("bob", f"cp -a {src} $M/mine && mv $M/mine {proj}/by-mv")
    expected = "run.sh 755\nsetuid 755\nsub 750\nsub/note.txt 640\n"
    for copy in ("by-rsync", "by-cp", "by-mv"):
        listing = f"cd {proj}/{copy} && stat -c '%n %a' run.sh setuid sub sub/note.txt"
        assert people.ok("bob", listing) == expected, copy
        assert people.ok("bob", f"cat {proj}/{copy}/sub/note.txt") == "note\n"
    # The owner sees the same modes on what is now her file.
    assert people.ok("alice", "stat -c '%a' $M/proj/by-cp/run.sh $M/proj/by-mv/sub").split() == ["755", "750"]
    # The owner's own files too; the owner and group stay hers.
    people.ok("bob", f"chmod 664 {proj}/plan.txt")
    assert people.ok("alice", "stat -c '%a' $M/proj/plan.txt").strip() == "664"
    refused = people.sh("bob", f"chown {people.linux['carol'].pw_uid} {proj}/plan.txt")
    assert refused.returncode != 0 and "not permitted" in refused.stderr, refused.stderr
    # fallocate reaches the writer's seat too.
    people.ok("bob", f"fallocate -l 100000 {proj}/reserved")
    assert people.ok("alice", "stat -c %s $M/proj/reserved").strip() == "100000"


def test_a_user_sees_and_unmounts_only_their_own_mounts(people: People, tmp_path: Path) -> None:
    """Root's own mount is not in alice's status (she could not ask it anyway); the shared one
    is, and only root unmounts either, with a line that says so."""
    own, own_mnt = tmp_path / "roots-vault", tmp_path / "roots-mnt"
    assert fusevault("init", own, "--user", "root").returncode == 0
    with mounted(own, own_mnt):
        people.unlock("alice")
        status = people.fusevault("alice", "status")
        assert status.returncode == 0 and "unlocked alice" in status.stdout, status.stderr
        assert str(own_mnt) not in status.stdout and "does not answer" not in status.stdout, status.stdout
        asked = people.fusevault("alice", "status", str(own_mnt))
        assert asked.returncode == 6 and "another user's mount" in asked.stderr, asked.stderr
        everyone = fusevault("status", passphrase=None).stdout
        assert str(own_mnt) in everyone and str(people.mnt) in everyone
        for mountpoint in (people.mnt, own_mnt):
            refused = people.fusevault("alice", "unmount", str(mountpoint))
            assert refused.returncode == 22, refused.stderr
            assert refused.stderr.splitlines() == [
                f"fusevault: {mountpoint} is root's {'shared ' if mountpoint == people.mnt else ''}mount: "
                "only root can unmount it"]
            assert is_mounted(mountpoint)
