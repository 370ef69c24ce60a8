"""READ and WRITE are decided in the domain (the Volume and the services on
it), so no entry point can skip them: not FUSE, not the control socket's
restore, not the importer or the drop-box collector; and retention is each
user's own, so nobody's policy or gc reaches another's versions.

The first tests drive the Volume and its services in-process (two users'
trees over one store, as a shared mount's seats are); the last ones drive
every control-socket command through a real shared mount as real Linux users.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
from conftest import PASSPHRASE, docs_of, fusevault, homes_for, linux_users, mounted

from fusevault.errors import PermissionDenied
from fusevault.imports.importer import Importer
from fusevault.store.local import LocalStore
from fusevault.store.watched import WatchedStore
from fusevault.vault.format.layout import open_layout
from fusevault.vault.model import retention, users
from fusevault.vault.model.settings import Settings
from fusevault.vault.services import gc, placing, recovery, share_ops
from fusevault.vault.services.absorbing import absorb
from fusevault.vault.services.placing import NoKernel
from fusevault.vault.services.requests import Requests
from fusevault.vault.volume import Caller, Volume

BOB = "bob's own passphrase"
CAROL = "carol's own passphrase"
ME = Caller(0, 0)
FUTURE = 4102444800 * 10**9  # 2100-01-01: every version is old enough for any policy
AGGRESSIVE = {"keep_all_minutes": 0, "keep_all_days": 0, "daily_days": 0, "weekly_weeks": 0,
              "trash_days": 0}


def _admin(vault: Path, *args: str, passphrase: str = PASSPHRASE) -> None:
    env = {"FUSEVAULT_VAULT": str(vault)}
    if args[:2] == ("user", "add"):  # ``passphrase`` is the new user's (never the caller's)
        env["FUSEVAULT_NEW_PASSPHRASE"] = passphrase
    result = fusevault(*args, env=env, passphrase=passphrase)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def three(vault: Path) -> Path:
    """alice (the vault's first user), bob and carol."""
    _admin(vault, "user", "add", "bob", "--uid", "2101", passphrase=BOB)
    _admin(vault, "user", "add", "carol", "--uid", "2102", passphrase=CAROL)
    return vault


class Trees:
    """Users' trees over one store, each taking in what the others commit
    (as a shared mount's seats do, without FUSE)."""

    def __init__(self, vault: Path) -> None:
        self.vault = vault
        self.store = LocalStore(vault / "store.sqlite")
        self.trees: dict[str, Volume] = {}

    def _committed(self, writer: object, docs: list[dict]) -> None:
        for name, tree in self.trees.items():
            absorb(tree, docs, own=name == writer)

    def load(self, name: str, secret: str) -> Volume:
        user = next(u for u in self.store.iter_type("UserDetails") if u["username"] == name)
        store = WatchedStore(self.store, name, self._committed)
        tree = Volume.load(open_layout(self.vault), store, users.unlock(user, secret.encode()), user["root"])
        self.trees[name] = tree
        return tree

    async def close(self) -> None:
        for tree in self.trees.values():
            await tree.close()  # a watched store's close leaves the store open
        self.trees.clear()
        self.store.close()


async def _save(tree: Volume, ino: int, data: bytes) -> None:
    """Write the whole file, as a program saving it would: one version."""
    fh = await tree.open(ino, write=True)
    try:
        await tree.setattr(ino, size=0)
        await tree.write(fh, 0, data)
    finally:
        await tree.release(fh)


async def _read(tree: Volume, ino: int) -> bytes:
    fh = await tree.open(ino)
    try:
        return await tree.read(fh, 0, 1 << 20)
    finally:
        await tree.release(fh)


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _state(store: LocalStore, owner: str) -> dict:
    """Every document of ``owner``'s files (nodes and versions, with their
    revisions) and every retention document: what must not change."""
    nodes = {d["_id"]: d["_rev"] for d in store.iter_type("node") if d.get("owner") == owner}
    versions = {d["_id"]: d["_rev"] for d in store.iter_type("FilesMetaData") if d.get("fid") in nodes}
    policies = {d["_id"]: d["_rev"] for d in store.iter_type(retention.POLICY)}
    return {"nodes": nodes, "versions": versions, "policies": policies}


def _refused(call) -> None:
    async def attempt() -> None:
        with pytest.raises(PermissionDenied):
            await call()
    return attempt()


def test_a_read_recipient_changes_nothing_through_any_domain_operation(three: Path, tmp_path: Path) -> None:
    """Every mutating Volume method and every service on it (restore in place
    and --to, undelete, import, placing files, gc, retention), called for a
    READ recipient against the owner's file and folder: PermissionDenied, and
    the owner's documents are exactly as they were."""
    trees = Trees(three)
    store = trees.store
    source = tmp_path / "inbox"
    source.mkdir()
    (source / "planted.txt").write_text("imported into a READ folder")

    async def main() -> None:
        alice = trees.load("alice", PASSPHRASE)
        _, doc = await alice.create(1, b"doc.txt", 0o644, ME)
        await _save(alice, doc.ino, b"first")
        await _save(alice, doc.ino, b"second")
        team = await alice.mkdir(1, b"team", 0o755, ME)
        _, plan = await alice.create(team.ino, b"plan.txt", 0o644, ME)
        await _save(alice, plan.ino, b"plan one")
        await _save(alice, plan.ino, b"plan two")
        await alice.setxattr(plan.ino, b"user.tag", b"alice's")
        await share_ops.share(alice, b"doc.txt", "bob", "READ")
        await share_ops.share(alice, b"team", "bob", "READ")
        await alice.save_all()
        owner = alice.key.user_id
        before = _state(store, owner)

        bob = trees.load("bob", BOB)
        their_doc = bob.resolve(b"shared/alice/doc.txt")
        their_team = bob.resolve(b"shared/alice/team")
        their_plan = bob.resolve(b"shared/alice/team/plan.txt")
        assert await _read(bob, their_doc.ino) == b"second"  # READ reads
        assert len(await recovery.history(bob, b"shared/alice/doc.txt")) == 2  # and sees the history
        older = (await recovery.versions(bob, their_doc))[0]

        # Restore, in place and as a new file in the READ folder.
        await _refused(lambda: recovery.restore(bob, b"shared/alice/doc.txt"))
        await _refused(lambda: recovery.restore(bob, b"shared/alice/team/plan.txt", at=FUTURE))
        await _refused(lambda: recovery.restore(bob, b"shared/alice/doc.txt",
                                                to=b"shared/alice/team/planted.txt"))
        await _refused(lambda: recovery.restore(bob, b"shared/alice/doc.txt",
                                                to=b"shared/alice/team/deeper/planted.txt"))
        await _refused(lambda: recovery.restore(bob, b"shared/alice/doc.txt", to=b"shared/alice/x.txt"))
        await _refused(lambda: bob.restore_contents(their_doc, older.manifest, older.vid))
        # Files placed from inside (imports, drop boxes): folder, file, rename.
        await _refused(lambda: placing.make_dirs(bob, b"shared/alice/team", ME))
        await _refused(lambda: placing.make_dirs(bob, b"shared/alice/team/new", ME))
        await _refused(lambda: placing.write_file(bob, their_team, b"dropped.txt", _chunks(b"x"),
                                                  mode=0o644, caller=ME, kernel=NoKernel()))
        importer = Importer(bob, Settings(source_dir_to_watch=str(source), import_into="shared/alice/team"),
                            NoKernel())
        await importer.load()
        await _refused(lambda: importer.take("planted.txt"))
        # Every metadata change the FUSE layer would make.
        for call in (lambda: bob.mknod(their_team.ino, b"n", 0o100644, 0, ME),
                     lambda: bob.mkdir(their_team.ino, b"d", 0o755, ME),
                     lambda: bob.symlink(their_team.ino, b"l", b"plan.txt", ME),
                     lambda: bob.create(their_team.ino, b"c.txt", 0o644, ME),
                     lambda: bob.unlink(their_team.ino, b"plan.txt"),
                     lambda: bob.rename(their_team.ino, b"plan.txt", their_team.ino, b"moved.txt",
                                        noreplace=False, exchange=False),
                     lambda: bob.link(their_plan.ino, their_team.ino, b"hard.txt"),
                     lambda: bob.setattr(their_plan.ino, mode=0o666),
                     lambda: bob.setattr(their_plan.ino, size=0),
                     lambda: bob.setattr(their_plan.ino, mtime=0),
                     lambda: bob.setxattr(their_plan.ino, b"user.tag", b"bob's"),
                     lambda: bob.removexattr(their_plan.ino, b"user.tag"),
                     lambda: bob.save_node(their_plan),
                     lambda: bob.rekey(their_doc)):
            await _refused(call)
        with pytest.raises(PermissionDenied):
            await bob.open(their_doc.ino, write=True)
        fh = await bob.open(their_doc.ino)  # opened to read: no write gets through it
        await _refused(lambda: bob.write(fh, 0, b"overwritten"))
        await _refused(lambda: bob.fallocate(fh, 0, 0, 1 << 20))
        await bob.release(fh)
        with pytest.raises(PermissionDenied):
            bob.adopt(store.get(their_doc.fid))

        # gc and retention as bob, with the most aggressive policy there is.
        requests = Requests(bob)
        answer = await requests.handle({"cmd": "retention", "set": AGGRESSIVE})
        assert answer["source"] == retention.OWN, answer
        answer = await requests.handle({"cmd": "retention", "default": True, "set": AGGRESSIVE})
        assert answer["code"] == 22, answer
        report = await gc.collect(bob, retention.Policy(**AGGRESSIVE), FUTURE)
        assert report.versions_dropped == 0 and report.files_purged == 0
        answer = await requests.handle({"cmd": "gc", "as_of": "2100-01-01"})
        assert answer["versions_dropped"] == 0, answer
        await bob.save_all()

        after = _state(store, owner)
        assert after["nodes"] == before["nodes"] and after["versions"] == before["versions"]
        # Bob's own policy is the only new retention document; alice's stays the built-in one.
        assert set(after["policies"]) - set(before["policies"]) == {retention.own_id(bob.key.user_id)}
        assert retention.policy_for(store, owner, alice.trust) == (retention.Policy(), retention.BUILT_IN)
        assert await _read(alice, alice.resolve(b"doc.txt").ino) == b"second"
        assert await _read(alice, alice.resolve(b"team/plan.txt").ino) == b"plan two"
        assert sorted(alice.resolve(b"team").children) == [b"plan.txt"]
        assert alice.getxattr(alice.resolve(b"team/plan.txt").ino, b"user.tag") == b"alice's"
        await trees.close()

    trio.run(main)


def test_a_write_recipient_restores_and_places_files_in_the_share(three: Path) -> None:
    """WRITE allows what READ refuses: a restore in place (a new version, by
    its restorer) and a restored copy in the shared folder (the owner's)."""
    trees = Trees(three)

    async def main() -> None:
        alice = trees.load("alice", PASSPHRASE)
        team = await alice.mkdir(1, b"team", 0o755, ME)
        _, plan = await alice.create(team.ino, b"plan.txt", 0o644, ME)
        await _save(alice, plan.ino, b"plan one")
        await _save(alice, plan.ino, b"plan two")
        await share_ops.share(alice, b"team", "carol", "WRITE")

        carol = trees.load("carol", CAROL)
        _, version, node = await recovery.restore(carol, b"shared/alice/team/plan.txt")
        assert version is not None and await _read(carol, node.ino) == b"plan one"
        assert await _read(alice, plan.ino) == b"plan one"
        _, _, made = await recovery.restore(carol, b"shared/alice/team/plan.txt", vid=version.vid,
                                            to=b"shared/alice/team/old/plan-one.txt")
        assert made.owner == alice.key.user_id and await _read(carol, made.ino) == b"plan one"
        assert await _read(alice, alice.resolve(b"team/old/plan-one.txt").ino) == b"plan one"
        history = await recovery.history(carol, b"shared/alice/team/plan.txt")
        assert history[-1].author == carol.key.user_id
        # A file written after it was unlinked (a temporary file): WRITE was checked at open.
        their_team = carol.resolve(b"shared/alice/team")
        fh, _ = await carol.create(their_team.ino, b".tmp", 0o600, ME)
        await carol.unlink(their_team.ino, b".tmp")
        assert await carol.write(fh, 0, b"still writable") == 14
        await carol.release(fh)
        await trees.close()

    trio.run(main)


def test_each_users_policy_applies_to_their_own_files_only(three: Path) -> None:
    """bob's aggressive policy and gc never reach alice's versions (nor her
    trash, nor the version he wrote of her file); alice's own policy applies
    to her files; the vault's default (its administrator's) applies to
    carol, who has none of her own."""
    trees = Trees(three)

    async def make(tree: Volume, name: bytes, saves: int) -> None:
        _, node = await tree.create(1, name, 0o644, ME)
        for n in range(saves):
            await _save(tree, node.ino, b"save %d" % n)

    async def versions(tree: Volume, path: bytes) -> int:
        return len(await recovery.history(tree, path))

    async def main() -> None:
        alice = trees.load("alice", PASSPHRASE)
        await make(alice, b"a.txt", 3)
        await make(alice, b"gone.txt", 2)
        await alice.unlink(1, b"gone.txt")
        await share_ops.share(alice, b"a.txt", "bob", "WRITE")
        bob = trees.load("bob", BOB)
        await _save(bob, bob.resolve(b"shared/alice/a.txt").ino, b"bob's save")  # alice's file's newest
        await make(bob, b"b.txt", 3)
        carol = trees.load("carol", CAROL)
        await make(carol, b"c.txt", 3)

        # bob: his own aggressive policy; his gc thins his own file only.
        bobs = Requests(bob)
        await bobs.handle({"cmd": "retention", "set": AGGRESSIVE})
        answer = await bobs.handle({"cmd": "gc", "as_of": "2100-01-01"})
        assert answer["versions_dropped"] == 2 and await versions(bob, b"b.txt") == 1, answer
        assert await versions(alice, b"a.txt") == 4
        # alice's gc follows her policy (the built-in one), not bob's: nothing
        # of hers is old enough to go today, and her trash stays.
        alices = Requests(alice)
        answer = await alices.handle({"cmd": "gc"})
        assert await versions(alice, b"a.txt") == 4
        assert [t.path for t in recovery.trash(alice)] == [b"gone.txt"]
        assert answer["versions_dropped"] == 0 and answer["policy_source"] == retention.BUILT_IN, answer
        # alice's own policy applies to her files; bob's save is their newest, and stays.
        await alices.handle({"cmd": "retention", "set": {"keep_all_minutes": 0, "keep_all_days": 0,
                                                         "daily_days": 0, "weekly_weeks": 0}})
        answer = await alices.handle({"cmd": "gc"})
        assert answer["policy_source"] == retention.OWN, answer
        assert await versions(alice, b"a.txt") == 1
        assert await _read(alice, alice.resolve(b"a.txt").ino) == b"bob's save"
        assert [t.path for t in recovery.trash(alice)] == [b"gone.txt"]  # her trash_days: still 30

        # The vault's default (what `retention --default --vault` writes, or anyone who writes the
        # store) never keeps less than the built-in policy for carol, even once she chooses to follow it
        # (unsigned: attack round 10b); it reaches carol only.
        assert await versions(carol, b"c.txt") == 3
        default = retention.Policy(keep_all_minutes=0, keep_all_days=0, daily_days=0, weekly_weeks=0)
        retention.save_default(trees.store, default)
        carols = Requests(carol)
        answer = await carols.handle({"cmd": "gc"})
        assert answer["policy_source"] == retention.MERGED and answer["versions_dropped"] == 0, answer
        await carols.handle({"cmd": "retention", "follow_default": True})
        answer = await carols.handle({"cmd": "gc"})
        assert answer["policy_source"] == retention.MERGED and answer["versions_dropped"] == 0, answer
        answer = await bobs.handle({"cmd": "retention", "follow_default": True})
        assert answer["source"] == retention.MERGED, answer
        answer = await alices.handle({"cmd": "retention"})
        assert answer["source"] == retention.OWN and answer["policy"]["keep_all_days"] == 0, answer
        await trees.close()

    trio.run(main)


# --- the control socket of a real shared mount, as real Linux users

SECRETS = {"alice": "alice's passphrase", "bob": "bob's passphrase", "carol": "carol's passphrase"}
SITE = sysconfig.get_paths()["purelib"]
LAUNCH = ("import site, sys; site.addsitedir(sys.argv.pop(1)); import runpy; "
          "runpy.run_module('fusevault', run_name='__main__', alter_sys=True)")
real_users = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("setpriv"),
    reason="needs root, useradd and setpriv (real Linux users)")


@pytest.fixture(scope="module")
def linux() -> dict[str, pwd.struct_passwd]:
    """alice, bob, carol (vault users) and dave (none)."""
    with linux_users("alice", "bob", "carol", "dave") as users:
        yield users


@pytest.fixture(scope="module")
def place(linux) -> Path:
    with homes_for(linux, "fvdomain") as base:
        yield base


def _as_user(user: pwd.struct_passwd, *command: str, env: dict, home: Path) -> subprocess.CompletedProcess:
    environment = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(home),
                   "FUSEVAULT_RUNTIME_DIR": str(home / "run"), "FUSEVAULT_STATE_DIR": str(home / "state"),
                   "FUSEVAULT_CONFIG_DIR": str(home / "config"), **env}
    if os.environ.get("PYTHONPATH"):  # the code under test, also when it is not the installed one
        environment["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups",
                           "env", "-i", *(f"{k}={v}" for k, v in environment.items()), *command],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def python(linux, place) -> str:
    minor = f"python3.{sys.version_info.minor}"
    for candidate in (sys.executable, f"/usr/bin/{minor}", f"/usr/local/bin/{minor}"):
        probe = _as_user(linux["dave"], candidate, "-S", "-c", LAUNCH, SITE, "--help", env={},
                         home=place / "dave")
        if probe.returncode == 0:
            return candidate
    pytest.fail(f"no interpreter the test users may run imports fusevault from {SITE}")


class People:
    """The Linux users acting in one shared mount of ``vault``."""

    def __init__(self, linux, place: Path, python: str, mountpoint: Path, vault: Path) -> None:
        self.linux, self.place, self.python, self.mnt, self.vault = linux, place, python, mountpoint, vault

    def ok(self, name: str, script: str) -> str:
        """A shell command line as that user (``$M`` is the mount point)."""
        result = _as_user(self.linux[name], "sh", "-c", script, env={"M": str(self.mnt)},
                          home=self.place / name)
        assert result.returncode == 0, f"{name}: {script}: {result.stderr}"
        return result.stdout

    def run(self, name: str, *args: str, passphrase: str | None = None) -> subprocess.CompletedProcess:
        """``fusevault ARGS`` as that user, in the mount when they may enter it
        (commands without a path find the mount from there, or as the only one)."""
        env = {"FUSEVAULT_PASSPHRASE": passphrase} if passphrase else {}
        command = (self.python, "-S", "-c", LAUNCH, SITE, *map(str, args))
        return _as_user(self.linux[name], "sh", "-c", 'cd "$0" 2>/dev/null; exec "$@"', str(self.mnt),
                        *command, env=env, home=self.place / name)

    def unlock(self, name: str) -> None:
        result = self.run(name, "unlock", self.mnt, passphrase=SECRETS[name])
        assert result.returncode == 0, result.stderr


@pytest.fixture
def people(tmp_path: Path, place: Path, linux, python, request):
    """root's vault (its first user is admin) with alice, bob and carol mapped, mounted shared."""
    vault = tmp_path / "vault"
    assert fusevault("init", vault, "--user", "admin").returncode == 0
    for name in ("alice", "bob", "carol"):
        _admin(vault, "user", "add", name, "--uid", str(linux[name].pw_uid), passphrase=SECRETS[name])
    mountpoint = place / f"mnt-{request.node.name[:24]}"
    mountpoint.mkdir()
    with mounted(vault, mountpoint, "--allow-other"):
        yield People(linux, place, python, mountpoint, vault)


def _refusal(result: subprocess.CompletedProcess, code: int, what: str) -> None:
    assert result.returncode == code, f"{what}: exit {result.returncode}: {result.stdout}{result.stderr}"
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr


def _alices(vault: Path) -> dict:
    """alice's files and versions (by revision), her user document, and every retention document."""
    alice = next(u for u in docs_of(vault, "UserDetails") if u["username"] == "alice")
    nodes = {d["_id"]: d["_rev"] for d in docs_of(vault, "node") if d.get("owner") == alice["_id"]}
    versions = {d["_id"]: d["_rev"] for d in docs_of(vault, "FilesMetaData") if d.get("fid") in nodes}
    return {"nodes": nodes, "versions": versions, "user": alice,
            "policies": {d["_id"]: d for d in docs_of(vault, retention.POLICY)}}


@real_users
def test_no_control_socket_command_lets_others_change_the_owners_files(people: People) -> None:
    """Every control-socket command as (a) bob, a READ recipient of alice's
    file and folder, (b) carol, mapped but locked, (c) dave, no user of the
    vault: what would change anything of alice's is refused in one line (22
    permission denied, 20 locked), and alice's files, history, settings and
    policy are untouched whatever each command answers."""
    M = str(people.mnt)
    people.unlock("alice")
    people.ok("alice", "echo first > $M/doc.txt && echo second > $M/doc.txt && mkdir $M/team"
                       " && echo plan > $M/team/plan.txt && echo 'plan two' > $M/team/plan.txt")
    for path in ("doc.txt", "team"):
        shared = people.run("alice", "share", f"{M}/{path}", "--with", "bob", "--perm", "READ")
        assert shared.returncode == 0, shared.stderr
    people.unlock("bob")
    assert people.ok("bob", "cat $M/shared/alice/doc.txt") == "second\n"
    before = _alices(people.vault)
    doc, team = f"{M}/shared/alice/doc.txt", f"{M}/shared/alice/team"
    nowhere = ("--relay", "http://127.0.0.1:9")

    # (a) bob, READ: what would change alice's files is refused...
    for args in (("restore", doc),
                 ("restore", f"{team}/plan.txt", "--at", "2100-01-01"),
                 ("restore", doc, "--to", f"{team}/planted.txt"),
                 ("restore", doc, "--to", f"{team}/new/planted.txt"),
                 ("share", doc, "--with", "carol", "--perm", "READ"),
                 ("unshare", doc, "--with", "bob"),
                 ("retention", "--default", "--keep-all", "0", "--vault", people.vault)):
        _refusal(people.run("bob", *args), 22, " ".join(map(str, args)))
    # Links are made from a personal mount: a shared mount refuses them all (12).
    for args in (("link", "create", team, "--append", *nowhere), ("link", "list"), ("link", "collect"),
                 ("link", "revoke", "nosuchlink"), ("link", "push", doc, "nosuchlink")):
        _refusal(people.run("bob", *args), 12, " ".join(map(str, args)))
    # ...what reads, or changes only bob's own things, is answered.
    history = people.run("bob", "history", doc, "--json")
    assert history.returncode == 0 and len(json.loads(history.stdout)["versions"]) == 2, history.stderr
    for args in (("trash",), ("shares",), ("config", "show"),
                 ("retention", "--keep-every", "0", "--keep-all", "0", "--daily", "0", "--weekly", "0",
                  "--trash", "0"),
                 ("gc", "--as-of", "2100-01-01"), ("export", doc, people.place / "bob")):
        result = people.run("bob", *args)
        assert result.returncode == 0, f"{args}: {result.stderr}"

    # (b) carol, mapped but locked: 20.  (c) dave, no user of the vault: 22, at the socket.
    commands = (("history", doc), ("restore", doc), ("restore", doc, "--to", f"{team}/x.txt"), ("trash", M),
                ("gc", M), ("retention", M, "--keep-all", "0"), ("config", "show", "--mount", M),
                ("export", doc, "/tmp"), ("share", doc, "--with", "carol", "--perm", "READ"),
                ("unshare", doc, "--with", "bob"), ("shares", "--mount", M), ("link", "list"),
                ("link", "collect"), ("link", "revoke", "x"),
                ("link", "push", doc, "x"), ("link", "create", team, "--append", *nowhere))
    for name, code in (("carol", 20), ("dave", 22)):
        for args in commands:
            _refusal(people.run(name, *args), code, f"{name}: {' '.join(args)}")

    after = _alices(people.vault)
    assert after["nodes"] == before["nodes"] and after["versions"] == before["versions"]
    assert after["user"] == before["user"]
    assert all(d.get("user") != after["user"]["_id"] for d in after["policies"].values())
    assert retention.POLICY_ID not in after["policies"]  # nobody set the vault's default
    assert people.ok("alice", "cat $M/doc.txt $M/team/plan.txt") == "second\nplan two\n"
    assert people.ok("alice", "ls $M/team").split() == ["plan.txt"]


@real_users
def test_a_write_recipient_restores_and_the_default_policy_is_roots(people: People) -> None:
    """A WRITE recipient's restore works through the socket; bob's aggressive
    policy and gc leave alice's versions alone; root's default reaches carol,
    who has no policy of her own, and not alice, who has one."""
    M = str(people.mnt)
    for name in ("alice", "bob", "carol"):
        people.unlock(name)
    people.ok("alice", "mkdir $M/team && echo one > $M/team/plan.txt && echo two > $M/team/plan.txt"
                       " && echo a1 > $M/a.txt && echo a2 > $M/a.txt && echo a3 > $M/a.txt")
    assert people.run("alice", "share", f"{M}/team", "--with", "bob", "--perm", "WRITE").returncode == 0
    people.ok("carol", "echo c1 > $M/c.txt && echo c2 > $M/c.txt && echo c3 > $M/c.txt")

    restored = people.run("bob", "restore", f"{M}/shared/alice/team/plan.txt")
    assert restored.returncode == 0, restored.stderr
    assert people.ok("alice", "cat $M/team/plan.txt") == "one\n"

    def count(name: str, path: str) -> int:
        answer = people.run(name, "history", f"{M}/{path}", "--json")
        assert answer.returncode == 0, answer.stderr
        return len(json.loads(answer.stdout)["versions"])

    aggressive = ("--keep-every", "0", "--keep-all", "0", "--daily", "0", "--weekly", "0", "--trash", "0")
    assert people.run("bob", "retention", *aggressive).returncode == 0
    assert people.run("bob", "gc", "--as-of", "2100-01-01").returncode == 0
    assert people.run("alice", "gc").returncode == 0
    assert count("alice", "a.txt") == 3 and count("alice", "team/plan.txt") == 3

    assert people.run("alice", "retention", "--keep-all", "30").returncode == 0
    default = fusevault("retention", "--default", "--keep-every", "0", "--keep-all", "0", "--daily", "0",
                        "--weekly", "0", "--vault", people.vault, passphrase=None)
    assert default.returncode == 0 and "(the vault's default)" in default.stdout, default.stderr
    shown = people.run("carol", "retention")  # never shorter than built in, until she follows it
    assert "(the vault's default, never shorter than the built-in one)" in shown.stdout, shown.stderr
    assert people.run("carol", "retention", "--follow-default").returncode == 0
    shown = people.run("carol", "retention")  # unsigned: never shorter, even followed (round 10b)
    assert "(the vault's default, never shorter than the built-in one)" in shown.stdout, shown.stderr
    for name in ("alice", "carol"):
        assert people.run(name, "gc").returncode == 0
    assert count("carol", "c.txt") == 3
    assert count("alice", "a.txt") == 3  # her own policy keeps every version for 30 days
