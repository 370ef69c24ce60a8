"""Host paths touched with a user's rights (fusevault/host_access.py), with a real Linux user.

What a hostile user of a shared mount would ask root to do on their behalf:
write where only root may, read root's files, climb out through a symbolic
link, keep a setuid bit.  The helper is the user, so the kernel refuses all
of it, and what the user may do works.
"""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from fusevault.host_access import Direct, Spawner

LOGIN = "fvt-dave"


@pytest.fixture(scope="module")
def user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(LOGIN)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", LOGIN],
                       check=True, capture_output=True)
        return pwd.getpwnam(LOGIN)


@pytest.fixture
def helper(user):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    spawner = Spawner()
    access = spawner.helper(user.pw_uid, user.pw_gid)
    yield access
    access.close()
    spawner.close()


@pytest.fixture
def places(user):
    base = Path(tempfile.mkdtemp(prefix="fvhost", dir="/tmp"))  # pytest's tmp_path is root's alone
    base.chmod(0o755)
    yield _places(base, user)
    shutil.rmtree(base, ignore_errors=True)


def _places(base: Path, user) -> dict[str, Path]:
    root_only = base / "root-only"
    root_only.mkdir(mode=0o755)  # anyone may look in, only root may write
    secret = root_only / "secret"
    secret.write_text("root's\n")
    secret.chmod(0o600)
    home = base / "home"
    home.mkdir(mode=0o700)
    os.chown(home, user.pw_uid, user.pw_gid)
    return {"root_only": root_only, "secret": secret, "home": home}


def test_the_helper_cannot_write_where_only_root_may(helper, places) -> None:
    with pytest.raises(PermissionError):
        helper.open(str(places["root_only"] / "rootme"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
    with pytest.raises(PermissionError):
        helper.mkdir(str(places["root_only"] / "d"))
    with pytest.raises(PermissionError):
        helper.unlink(str(places["secret"]))
    with pytest.raises(PermissionError):
        helper.rename(str(places["secret"]), str(places["home"] / "stolen"))
    assert sorted(os.listdir(places["root_only"])) == ["secret"]


def test_the_helper_cannot_read_roots_files(helper, places) -> None:
    with pytest.raises(PermissionError):
        helper.open(str(places["secret"]), os.O_RDONLY)
    assert helper.access(str(places["secret"]), os.R_OK) is False
    assert helper.access(str(places["home"]), os.W_OK) is True


def test_a_symbolic_link_does_not_lend_more_rights(helper, places) -> None:
    link = places["home"] / "escape"
    helper.symlink(str(places["root_only"]), str(link))
    assert os.readlink(link) == str(places["root_only"])
    with pytest.raises(PermissionError):
        helper.open(str(link / "planted"), os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    with pytest.raises(OSError) as refused:  # O_NOFOLLOW on the last component is the caller's to ask
        helper.open(str(link), os.O_RDONLY | os.O_NOFOLLOW)
    assert refused.value.errno == errno.ELOOP


def test_what_the_user_may_do_works_and_belongs_to_them(helper, places, user) -> None:
    home = places["home"]
    helper.mkdir(str(home / "out"), 0o755)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    fd = helper.open(str(home / "out" / ".part"), flags, 0o4755)
    try:
        os.write(fd, b"plaintext\n")  # the mount writes through the user's descriptor
    finally:
        os.close(fd)
    helper.chmod(str(home / "out" / ".part"), 0o6755)
    helper.utime(str(home / "out" / ".part"), (1_000_000_000, 2_000_000_000))
    helper.rename(str(home / "out" / ".part"), str(home / "out" / "file"))
    made = home / "out" / "file"
    info = os.lstat(made)
    assert (info.st_uid, info.st_gid) == (user.pw_uid, user.pw_gid)
    assert info.st_mode & 0o7777 == 0o755  # never setuid, setgid or sticky
    assert made.read_bytes() == b"plaintext\n"
    seen = helper.lstat(str(made))
    assert (seen.st_size, seen.st_mtime_ns, seen.st_ino) == (10, 2_000_000_000, info.st_ino)
    assert helper.listdir(str(home / "out")) == ["file"]
    assert helper.realpath(str(home / "out" / "..")) == str(home)
    helper.unlink(str(made))
    assert not made.exists()


def test_the_spawner_never_makes_a_root_helper(user) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    spawner = Spawner()
    try:
        with pytest.raises(OSError):
            spawner.helper(0, 0)
        access = spawner.helper(user.pw_uid, user.pw_gid)
        access.close()
    finally:
        spawner.close()


def test_a_helper_that_died_is_an_error_not_a_hang(helper, places) -> None:
    os.kill(helper._pid, signal.SIGKILL)
    with pytest.raises(OSError) as gone:
        helper.listdir(str(places["home"]))
    assert gone.value.errno == errno.EIO


def test_direct_access_is_the_same_interface(tmp_path: Path) -> None:
    direct = Direct()
    direct.mkdir(str(tmp_path / "d"))
    fd = direct.open(str(tmp_path / "d" / "f"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o4777)
    os.close(fd)
    assert os.lstat(tmp_path / "d" / "f").st_mode & 0o7000 == 0
    assert direct.listdir(str(tmp_path / "d")) == ["f"]
