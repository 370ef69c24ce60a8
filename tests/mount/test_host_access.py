"""Host paths touched with a user's rights (fusevault/host_access/), with a real Linux user.

What a hostile user of a shared mount would ask root to do on their behalf:
write where only root may, read root's files, climb out through a symbolic
link, keep a setuid bit.  The helper is the user, so the kernel refuses all
of it, and what the user may do works.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import shutil
import signal
import stat
import tempfile
import threading
from pathlib import Path

import pytest
from conftest import linux_users

from fusevault.host_access import Direct, Spawner


@pytest.fixture(scope="module")
def user() -> pwd.struct_passwd:
    with linux_users("dave") as users:
        yield users["dave"]


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


def test_openat_style_operations_stay_in_the_folder_they_were_given(helper, places) -> None:
    home = places["home"]
    folder = helper.open(str(home), os.O_RDONLY | os.O_DIRECTORY)
    try:
        # A link planted at the name: O_EXCL never opens it, O_NOFOLLOW never follows it.
        os.symlink(str(places["root_only"] / "rootme"), home / "planted")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        with pytest.raises(FileExistsError):
            helper.open("planted", flags, 0o755, dir_fd=folder)
        with pytest.raises(OSError) as refused:
            helper.open("planted", os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder)
        assert refused.value.errno == errno.ELOOP
        assert sorted(os.listdir(places["root_only"])) == ["secret"]
        helper.mkdir("sub", 0o755, dir_fd=folder)
        sub = helper.open("sub", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=folder)
        os.close(sub)
        fd = helper.open(".part", flags, 0o644, dir_fd=folder)
        os.write(fd, b"new\n")
        os.close(fd)
        (home / "kept").write_text("the user's own\n")
        with pytest.raises(FileExistsError):  # RENAME_NOREPLACE
            helper.rename(".part", "kept", dir_fd=folder, noreplace=True)
        assert (home / "kept").read_text() == "the user's own\n"
        helper.rename(".part", "kept", dir_fd=folder)
        assert (home / "kept").read_text() == "new\n"
        helper.symlink("kept", "link", dir_fd=folder)
        assert stat.S_ISLNK(helper.lstat("link", dir_fd=folder).st_mode)
        helper.unlink("link", dir_fd=folder)
        assert sorted(os.listdir(home)) == ["kept", "planted", "sub"]
    finally:
        os.close(folder)


def test_a_folder_of_any_size_comes_back_whole(helper, places) -> None:
    many = places["home"] / "many"
    many.mkdir()
    names = {f"{n:05d}-" + "x" * 60 for n in range(3000)}  # about 200 KiB of listing: several datagrams
    for name in names:
        (many / name).touch()
    assert set(helper.listdir(str(many))) == names
    found = dict(helper.scan(str(many)))
    assert set(found) == names and all(stat.S_ISREG(st.st_mode) for st in found.values())


def test_a_helper_that_died_or_hangs_is_started_again(helper, places) -> None:
    os.kill(helper._pid, signal.SIGKILL)
    with pytest.raises(OSError):
        helper.listdir(str(places["home"]))
    assert helper.listdir(str(places["home"])) == []  # a new helper
    stopped = helper._pid
    os.kill(stopped, signal.SIGSTOP)  # its user may stop it: the mount must not wait forever
    try:
        helper.timeout = 0.5
        with pytest.raises(OSError) as gone:
            helper.listdir(str(places["home"]))
        assert gone.value.errno == errno.EIO
        assert helper.listdir(str(places["home"])) == [] and helper._pid != stopped
    finally:
        # The helper given up is killed and reaped by the spawner itself now (attack round 53b (3)):
        # gone already, or going.
        with contextlib.suppress(ProcessLookupError):
            os.kill(stopped, signal.SIGKILL)


def test_helpers_hold_nothing_of_the_mount(user, places) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    read_end, write_end = os.pipe()  # like the pipe `fusevault mount` waits on
    spawner = Spawner()
    access = spawner.helper(user.pw_uid, user.pw_gid)
    try:
        os.close(write_end)
        os.set_blocking(read_end, False)
        assert os.read(read_end, 1) == b""  # end of file: nobody else holds the write end
        assert access.listdir(str(places["home"])) == []  # it answers: it has dropped to the user
        status = Path(f"/proc/{access._pid}/status").read_text()
        assert f"Uid:\t{user.pw_uid}\t{user.pw_uid}\t{user.pw_uid}" in status
        # Not dumpable: its /proc files stay root's, so its user cannot trace or read it.
        assert os.stat(f"/proc/{access._pid}/status").st_uid == 0
    finally:
        os.close(read_end)
        access.close()
        spawner.close()


def test_direct_access_takes_descriptors_too(tmp_path: Path) -> None:
    direct = Direct()
    folder = direct.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = direct.open("f", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o6755, dir_fd=folder)
        os.close(fd)
        assert os.lstat(tmp_path / "f").st_mode & 0o7000 == 0
        direct.symlink("f", "g", dir_fd=folder)
        with pytest.raises(FileExistsError):
            direct.rename("g", "f", dir_fd=folder, noreplace=True)
        assert [name for name, _ in sorted(direct.scan(str(tmp_path)))] == ["f", "g"]
    finally:
        os.close(folder)


def _thread_rights() -> dict[str, list[str]]:
    """The calling thread's ids (real, effective, saved, fs), groups and capabilities."""
    wanted = ("Uid", "Gid", "Groups", "CapEff", "CapPrm")
    lines = Path("/proc/thread-self/status").read_text().splitlines()
    return {key: rest.split() for key, _, rest in (line.partition(":") for line in lines) if key in wanted}


def test_a_thread_writing_for_the_user_has_his_rights_and_no_other_thread_does(helper, places,
                                                                                user) -> None:
    """What an export writes through the user's descriptor, root's process writes in a thread with
    his fsuid, fsgid and groups and no capability (quotas and ext4's reserve see him: round 45t (3));
    only that thread, only meanwhile (host_access/rights.py)."""
    before = _thread_rights()
    asked, seen_by_other = threading.Event(), {}

    def other() -> None:  # a thread of the mount already running: untouched
        asked.wait(30)
        seen_by_other.update(_thread_rights())

    running = threading.Thread(target=other)
    running.start()
    fd = helper.open(str(places["home"] / "mine"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with helper.thread_as_user():
            inside = _thread_rights()
            asked.set()
            running.join(30)
            os.pwrite(fd, b"his\n", 0)
            os.fchmod(fd, 0o640)  # his own file: his to change
            with pytest.raises(PermissionError):  # root's folder: not his
                os.open(places["root_only"] / "x", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    finally:
        os.close(fd)
    groups = sorted(os.getgrouplist(user.pw_name, user.pw_gid))
    assert inside["Uid"][3] == str(user.pw_uid) and inside["Gid"][3] == str(user.pw_gid)
    assert sorted(int(g) for g in inside["Groups"]) == groups
    assert int(inside["CapEff"][0], 16) == 0 and inside["CapPrm"] == before["CapPrm"]
    assert seen_by_other == before, "another thread of the process took the user's rights"
    assert _thread_rights() == before, "the thread kept the user's rights"
    assert (places["home"] / "mine").read_bytes() == b"his\n"
    assert os.listdir(places["root_only"]) == ["secret"]
