"""In a shared mount every request touches the host with its caller's rights, or not at all.

A shared mount runs as root.  What a user asks it to do on the host (export
into a folder, watch a folder, delete imported sources, reach a link
server, keep a backup buddy) used to run as root on paths the user chose:
any mapped user could become root.  Here real Linux users (useradd,
setpriv) try exactly that against a real shared mount, and what they may do
still works.  The personal-mount behaviour is in test_imports.py; the
helper itself in test_host_access.py.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import PASSPHRASE, fusevault, linux_users, mounted

from mount.test_shared_mount import LAUNCH, SITE

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("setpriv"),
    reason="needs root, useradd and setpriv (real Linux users)")

SECRET = "erin's passphrase"


def as_user(user: pwd.struct_passwd, *command: str, env: dict | None = None, home: Path,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``command`` as that Linux user (uid, gid, groups), with a clean environment (as in
    test_shared_mount.py, from a folder of the caller's choice)."""
    environment = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(home),
                   "FUSEVAULT_RUNTIME_DIR": str(home / "run"), "FUSEVAULT_STATE_DIR": str(home / "state"),
                   "FUSEVAULT_CONFIG_DIR": str(home / "config"), **(env or {})}
    # The user changes folder, not root: root may not enter a shared mount it has not unlocked.
    inside = ["sh", "-c", 'cd "$1" && shift && exec "$@"', "sh", str(cwd or home)]
    return subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups",
                           "env", "-i", *(f"{k}={v}" for k, v in environment.items()), *inside, *command],
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def erin() -> pwd.struct_passwd:
    with linux_users("erin") as users:
        yield users["erin"]


@pytest.fixture(scope="module")
def python(erin) -> str:
    """An interpreter erin can run this package with (see test_shared_mount.py)."""
    home = Path(tempfile.mkdtemp(prefix="fvrprobe", dir="/tmp"))
    os.chown(home, erin.pw_uid, erin.pw_gid)
    try:
        minor = f"python3.{sys.version_info.minor}"
        for candidate in (sys.executable, f"/usr/bin/{minor}", f"/usr/local/bin/{minor}"):
            if as_user(erin, candidate, "-S", "-c", LAUNCH, SITE, "--help", home=home).returncode == 0:
                return candidate
    finally:
        shutil.rmtree(home, ignore_errors=True)
    pytest.fail(f"no interpreter the test user may run imports fusevault from {SITE}")


class Erin:
    """erin, acting in the shared mount; ``base`` holds her home and root's folders."""

    def __init__(self, user: pwd.struct_passwd, python: str, base: Path, mnt: Path) -> None:
        self.user, self.python, self.base, self.mnt = user, python, base, mnt
        self.home = base / "erin"

    def sh(self, script: str) -> subprocess.CompletedProcess:
        return as_user(self.user, "sh", "-c", script, env={"M": str(self.mnt)}, home=self.home)

    def ok(self, script: str) -> str:
        result = self.sh(script)
        assert result.returncode == 0, f"{script}: {result.stderr}"
        return result.stdout

    def fusevault(self, *args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return as_user(self.user, self.python, "-S", "-c", LAUNCH, SITE, *map(str, args),
                       env={"FUSEVAULT_PASSPHRASE": SECRET}, home=self.home, cwd=cwd)

    def owned(self, path: Path) -> bool:
        info = os.lstat(path)
        return (info.st_uid, info.st_gid) == (self.user.pw_uid, self.user.pw_gid)


def root_folder(path: Path, mode: int) -> Path:
    path.mkdir()
    path.chmod(mode)
    return path


@pytest.fixture
def erin_in_shared_mount(erin, python, tmp_path: Path):
    """root mounts a vault with --allow-other; erin is mapped to it and unlocked."""
    base = Path(tempfile.mkdtemp(prefix="fvrights", dir="/tmp"))  # tmp_path is root's alone
    base.chmod(0o755)
    home = base / "erin"
    home.mkdir(mode=0o755)
    os.chown(home, erin.pw_uid, erin.pw_gid)
    vault = tmp_path / "vault"
    assert fusevault("init", vault, "--user", "admin").returncode == 0
    added = fusevault("user", "add", "erin", "--uid", erin.pw_uid,
                      env={"FUSEVAULT_VAULT": str(vault), "FUSEVAULT_NEW_PASSPHRASE": SECRET})
    assert added.returncode == 0, added.stderr
    try:
        with mounted(vault, base / "mnt", "--allow-other") as mnt:
            person = Erin(erin, python, base, mnt)
            person.vault = vault
            unlocked = person.fusevault("unlock", mnt)
            assert unlocked.returncode == 0, unlocked.stderr
            yield person
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_export_cannot_make_root_write_a_setuid_binary(erin_in_shared_mount: Erin) -> None:
    erin = erin_in_shared_mount
    erin.ok("cp /usr/bin/id $M/rootme && chmod 4755 $M/rootme && mkdir $M/tools && cp /usr/bin/id $M/tools/")
    assert erin.ok("stat -c %a $M/rootme").strip() == "4755"
    root_only = root_folder(erin.base / "bin", 0o755)  # like /usr/local/bin: anyone reads, root writes

    # Into a folder only root may write: refused, nothing written there.
    for what in ("rootme", "tools"):
        refused = erin.fusevault("export", erin.mnt / what, root_only)
        assert refused.returncode == 22 and "Permission denied" in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
    assert os.listdir(root_only) == []

    # Into her own folder: hers, and never setuid.
    out = erin.home / "out"
    erin.ok(f"mkdir {out}")
    done = erin.fusevault("export", erin.mnt / "rootme", out)
    assert done.returncode == 0, done.stderr
    made = out / "rootme"
    assert erin.owned(made) and stat.S_IMODE(os.lstat(made).st_mode) == 0o755
    assert made.read_bytes() == Path("/usr/bin/id").read_bytes()
    assert erin.fusevault("export", erin.mnt / "tools", out).returncode == 0
    assert erin.owned(out / "tools") and erin.owned(out / "tools" / "id")


def test_export_replaces_only_what_the_caller_may_and_follows_no_link(erin_in_shared_mount: Erin) -> None:
    erin = erin_in_shared_mount
    erin.ok("echo secret plans > $M/plans.txt && mkdir $M/docs && echo a > $M/docs/a.txt")
    victim = root_folder(erin.base / "root-only", 0o755) / "victim"
    victim.write_text("root's file\n")
    out = erin.home / "out"
    erin.ok(f"mkdir {out} && echo mine > {out}/plans.txt")

    # Her own file is kept unless she says --overwrite.
    kept = erin.fusevault("export", erin.mnt / "plans.txt", out)
    assert kept.returncode == 11 and "--overwrite" in kept.stderr
    assert (out / "plans.txt").read_text() == "mine\n"
    assert erin.fusevault("export", erin.mnt / "plans.txt", out, "--overwrite").returncode == 0
    assert (out / "plans.txt").read_text() == "secret plans\n" and erin.owned(out / "plans.txt")

    # Links she planted at the temporary name the export used to take, at the
    # final name and in place of a folder: none is followed.
    erin.ok(f"rm {out}/plans.txt && ln -s {victim} {out}/.plans.txt.fvpart-export"
            f" && ln -s {victim} {out}/plans.txt && ln -s {victim.parent} {out}/docs")
    assert erin.fusevault("export", erin.mnt / "plans.txt", out, "--overwrite").returncode == 0
    assert not (out / "plans.txt").is_symlink() and (out / "plans.txt").read_text() == "secret plans\n"
    assert os.readlink(out / ".plans.txt.fvpart-export") == str(victim)
    refused = erin.fusevault("export", erin.mnt / "docs", out, "--overwrite")
    assert refused.returncode != 0 and "links are not followed" in refused.stderr, refused.stderr
    assert victim.read_text() == "root's file\n" and os.listdir(victim.parent) == ["victim"]
    assert stat.S_IMODE(os.lstat(victim).st_mode) == 0o644

    # --overwrite replaces only what she may: not root's file in a sticky folder like /tmp.
    sticky = root_folder(erin.base / "sticky", 0o1777)
    (sticky / "plans.txt").write_text("root's own\n")
    refused = erin.fusevault("export", erin.mnt / "plans.txt", sticky, "--overwrite")
    assert refused.returncode == 22, refused.stderr
    assert (sticky / "plans.txt").read_text() == "root's own\n"
    assert os.listdir(sticky) == ["plans.txt"]  # and no temporary file left behind


def wait_for(what: str, check, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.2)


def test_the_watched_folder_is_read_and_emptied_with_the_users_rights(erin_in_shared_mount: Erin) -> None:
    erin = erin_in_shared_mount
    secrets = root_folder(erin.base / "secrets", 0o700)
    (secrets / "id_ed25519").write_text("root's key\n")
    refused = erin.fusevault("config", "set", "source_dir_to_watch", secrets, "--mount", erin.mnt)
    assert refused.returncode == 12 and "you cannot read" in refused.stderr, refused.stderr

    inbox = erin.home / "inbox"
    erin.ok(f"mkdir {inbox} && echo hers > {inbox}/mine.txt")
    shared_drop = root_folder(inbox / "drop", 0o1777)  # root's, open to all, like /tmp
    (shared_drop / "roots.txt").write_text("root's, readable by all\n")
    (shared_drop / "roots.txt").chmod(0o644)
    erin.ok(f"echo hers too > {shared_drop}/hers.txt")
    private = root_folder(inbox / "private", 0o700)
    (private / "secret.txt").write_text("root's only\n")
    for key, value in (("settle_seconds", "0.3"), ("delete_file_from_source", "on"),
                       ("source_dir_to_watch", inbox)):
        result = erin.fusevault("config", "set", key, value, "--mount", erin.mnt)
        assert result.returncode == 0, result.stderr

    wait_for("the imports", lambda: erin.sh("cat $M/Imported/mine.txt $M/Imported/drop/hers.txt"
                                            " $M/Imported/drop/roots.txt").returncode == 0)
    wait_for("her sources removed", lambda: not (inbox / "mine.txt").exists()
             and not (shared_drop / "hers.txt").exists())
    # What she may read came in; what she may not delete stays; root's secret is not hers.
    assert erin.ok("cat $M/Imported/drop/roots.txt") == "root's, readable by all\n"
    assert (shared_drop / "roots.txt").read_text() == "root's, readable by all\n"
    assert (private / "secret.txt").exists()
    assert erin.sh("ls $M/Imported/private").returncode != 0
    assert sorted(os.listdir(inbox)) == ["drop", "private"]


def test_links_and_backup_buddies_are_refused_in_a_shared_mount(erin_in_shared_mount: Erin) -> None:
    erin = erin_in_shared_mount
    erin.ok("echo hello > $M/hello.txt && mkdir $M/Inbox")
    for args in (("create", erin.mnt / "hello.txt", "--relay", "http://127.0.0.1:9"),
                 ("create", erin.mnt / "Inbox", "--append", "--relay", "http://127.0.0.1:9"),
                 ("push", erin.mnt / "hello.txt", "some-id"), ("collect",), ("list",)):
        refused = erin.fusevault("link", *args, cwd=erin.mnt)  # the mount she is in
        assert refused.returncode == 12, (args, refused.stderr)
        assert refused.stderr.strip().endswith(
            "links are made from a personal mount: a shared mount (--allow-other) runs as root "
            "and reaches no link server for a user"), refused.stderr
    tasks = json.loads(erin.fusevault("status", erin.mnt, "--json").stdout)["mounts"][0]["tasks"]
    assert tasks["drop boxes (erin)"]["state"] == "off (shared mount)"

    # A backup buddy kept in erin's folder would be written there by root: not kept.
    kept = erin.home / "kept"
    erin.ok(f"mkdir {kept}")
    assert erin.fusevault("config", "set", "peer_dir_for_storage", kept, "--mount", erin.mnt).returncode == 0
    added = fusevault("peer", "add", "friend", "http://127.0.0.1:9/friend", "--store-only", "--user", "erin",
                      "--offline", "--vault", erin.vault, passphrase=SECRET)
    assert added.returncode == 0, added.stderr

    def friend() -> dict | None:
        answer = json.loads(fusevault("sync", "status", erin.mnt, "--json", passphrase=None).stdout)
        return next((p for p in answer["mounts"][0]["peers"] or [] if p["name"] == "friend"), None)

    wait_for("the peer", lambda: (friend() or {}).get("state") == "stopped")
    assert "keeps no backup buddy" in friend()["error"]
    assert os.listdir(kept) == []


def test_a_personal_mount_exports_no_setuid_bit_either(vault: Path, tmp_path: Path) -> None:
    with mounted(vault, tmp_path / "mnt", passphrase=PASSPHRASE) as mnt:
        shutil.copy("/usr/bin/id", mnt / "tool")
        os.chmod(mnt / "tool", 0o6755)
        (tmp_path / "out").mkdir()
        result = fusevault("export", mnt / "tool", tmp_path / "out", passphrase=None)
        assert result.returncode == 0, result.stderr
        assert stat.S_IMODE(os.lstat(tmp_path / "out" / "tool").st_mode) == 0o755
