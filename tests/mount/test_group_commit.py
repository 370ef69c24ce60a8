"""Group commit: a new file's document waits for its first commit, never past close.

A file made by create(2) is committed together with its first version (and
a fchmod/futimens made while it is open) when it is closed, flushed or
fsynced: one store transaction instead of two or three.  What close
acknowledged must survive ``kill -9``; what was never closed may be lost.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import force_unmount, fusevault, mounted, server_pids

# Files made and closed in a tight loop, the way tar and cp make them: empty
# ones (nothing but the create to commit), written ones, ones given a mode
# and times while open, and folders; each logged only once close returned.
WRITER = textwrap.dedent("""
    import os, sys
    mnt, log = sys.argv[1], sys.argv[2]
    i = 0
    with open(log, "a") as journal:
        while True:
            folder = f"{mnt}/d{i // 50:03d}"
            if i % 50 == 0:
                os.mkdir(folder)
            name = f"{folder}/f{i:05d}"
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            if i % 4:
                os.write(fd, (f"{i}:" * (1 + i % 700)).encode())
            if i % 3 == 0:
                os.fchmod(fd, 0o600)
                os.utime(fd, ns=(i * 10**9, i * 10**9))
            os.close(fd)
            journal.write(f"{name}\\n"); journal.flush()
            i += 1
""")


def _expected(i: int) -> bytes:
    return (f"{i}:" * (1 + i % 700)).encode() if i % 4 else b""


def test_kill_9_right_after_many_creates_and_closes_keeps_every_closed_file(vault: Path,
                                                                           tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    journal = tmp_path / "journal"
    with mounted(vault, mnt):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(mnt), str(journal)],
                                  stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        # Past a batch of closed files flushed as they close (vault/files/closed.py: 1,024).
        while not journal.exists() or len(journal.read_text().splitlines()) < 1100:
            assert time.monotonic() < deadline and writer.poll() is None
            time.sleep(0.01)
        for pid in server_pids(mnt):  # mid-loop: the writer is creating the next files
            os.kill(pid, 9)
        force_unmount(mnt)
        writer.wait(30)
    written = journal.read_text().splitlines()
    assert len(written) >= 1100
    with mounted(vault, mnt):
        for name in written:
            i = int(Path(name).name[1:])
            path = Path(name)
            assert path.read_bytes() == _expected(i), name
            info = path.stat()
            if i % 3 == 0:
                assert stat.S_IMODE(info.st_mode) == 0o600, name
                assert info.st_mtime_ns == i * 10**9, name
            else:
                assert stat.S_IMODE(info.st_mode) == 0o644, name
        # A file being made when the server died: gone or whole, never a broken mount.
        assert sorted(os.listdir(mnt))


def test_a_new_file_is_seen_while_open_and_saved_by_close_and_unmount(vault: Path, tmp_path: Path) -> None:
    # Not yet committed while open, but there for everyone on this mount; saved
    # by close even with nothing written (only the create to commit), and by
    # unmount when still open then.
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        fd = os.open(mnt / "empty", os.O_WRONLY | os.O_CREAT, 0o640)
        try:
            assert "empty" in os.listdir(mnt)
            os.rename(mnt / "empty", mnt / "renamed")  # commits it early: still one file
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
        (mnt / "touched").touch()
        os.mkdir(mnt / "dir")
    with mounted(vault, mnt):
        assert sorted(os.listdir(mnt)) == ["dir", "renamed", "touched"]
        assert stat.S_IMODE(os.stat(mnt / "renamed").st_mode) == 0o600
        assert (mnt / "touched").read_bytes() == b""


# --- group commit of metadata changes (unlink, rename, chmod, mkdir ...)


def _commits(stats: Path) -> int:
    return json.loads(stats.read_text())["store commits"]["count"]


def test_removals_renames_and_chmods_that_arrive_together_share_commits(vault: Path, tmp_path: Path,
                                                                       monkeypatch) -> None:
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        for i in range(120):
            (mnt / f"f{i:03d}").write_bytes(b"x")
    stats = tmp_path / "stats.json"
    monkeypatch.setenv("FUSEVAULT_OP_STATS", str(stats))
    monkeypatch.setenv("FUSEVAULT_GROUP_WINDOW", "5")  # the count, not the machine's speed
    with mounted(vault, mnt):
        for i in range(40):
            os.mkdir(mnt / f"d{i:03d}")
            os.chmod(mnt / f"f{i:03d}", 0o600)
            os.rename(mnt / f"f{i + 40:03d}", mnt / f"d{i:03d}" / "moved")
            os.unlink(mnt / f"f{i + 80:03d}")
        os.chmod(mnt / "d000", 0o700)
    changes = 40 * 4 + 1
    # Each change was its own store transaction (and a rename another for the
    # times the kernel wrote back): now they ride together.
    assert _commits(stats) < changes // 4, _commits(stats)
    monkeypatch.delenv("FUSEVAULT_OP_STATS")
    monkeypatch.delenv("FUSEVAULT_GROUP_WINDOW")
    with mounted(vault, mnt):
        assert sorted(os.listdir(mnt)) == sorted([f"d{i:03d}" for i in range(40)]
                                                 + [f"f{i:03d}" for i in range(40)])
        for i in range(40):
            assert stat.S_IMODE(os.stat(mnt / f"f{i:03d}").st_mode) == 0o600
            assert (mnt / f"d{i:03d}" / "moved").read_bytes() == b"x"
        assert stat.S_IMODE(os.stat(mnt / "d000").st_mode) == 0o700


REMOVER = textwrap.dedent("""
    import os, sys
    mnt, log = sys.argv[1], sys.argv[2]
    count, server, kill_at = map(int, sys.argv[3:6])
    with open(log, "a") as journal:
        for i in range(count):
            os.unlink(f"{mnt}/f{i:04d}")
            if i % 50 == 49:  # what fsyncdir acknowledged must survive kill -9
                fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
                os.fsync(fd)
                os.close(fd)
                journal.write(f"{i}\\n"); journal.flush()
                if i == kill_at:  # at once: well inside the group commit's window
                    os.kill(server, 9)
                    break
""")


@pytest.mark.parametrize(("kill_at", "peer"), [(549, False), (-1, False), (549, True)])
def test_kill_9_during_removals_keeps_what_fsyncdir_acknowledged_and_never_a_later_change_alone(
        vault: Path, tmp_path: Path, kill_at: int, peer: bool, request) -> None:
    # kill_at: the remover kills the server itself right after an fsyncdir
    # returned; -1: the test kills it at some moment while removals go on.
    # peer: the vault syncs with a pouchdb-server meanwhile (grouping stays on).
    count = 1500
    mnt = tmp_path / "mnt"
    journal = tmp_path / "journal"
    if peer:
        added = fusevault("peer", "add", "server", request.getfixturevalue("couchdb_url"), "--vault", vault,
                          passphrase=None)
        assert added.returncode == 0, added.stderr
    with mounted(vault, mnt):
        for i in range(count):
            (mnt / f"f{i:04d}").write_bytes(b"y")
    with mounted(vault, mnt):
        (server,) = server_pids(mnt)
        remover = subprocess.Popen([sys.executable, "-c", REMOVER, str(mnt), str(journal), str(count),
                                    str(server), str(kill_at)], stderr=subprocess.DEVNULL)
        if kill_at < 0:
            deadline = time.monotonic() + 120
            while not journal.exists() or len(journal.read_text().splitlines()) < 4:
                assert time.monotonic() < deadline and remover.poll() is None
                time.sleep(0.01)
            os.kill(server, 9)  # mid-loop: removals acknowledged since the last fsyncdir may be lost
        remover.wait(60)
        force_unmount(mnt)
    synced = int(journal.read_text().splitlines()[-1])
    with mounted(vault, mnt):
        left = sorted(int(name[1:]) for name in os.listdir(mnt))
    # The store holds the state of one moment: the first ``gone`` removals, in
    # order, never a later one without an earlier one; at least all fsyncdir saw.
    gone = count - len(left)
    assert left == list(range(gone, count))
    assert gone > synced
    if kill_at >= 0:
        assert gone == kill_at + 1


def test_a_group_commit_that_fails_is_reported_and_saved_once_it_can_be(small_disk) -> None:
    small, mnt = small_disk
    vault = small / "vault"
    assert fusevault("init", vault, "--user", "alice").returncode == 0
    with mounted(vault, mnt):
        for i in range(40):
            (mnt / f"f{i:02d}").write_bytes(b"z")
        filler = small / "filler"
        with open(filler, "wb") as out, contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * (1 << 16))
                out.flush()
        removed = []
        for i in range(40):
            try:
                os.unlink(mnt / f"f{i:02d}")
            except OSError as err:  # a failed window's commit, reported here: not removed
                assert err.errno == errno.ENOSPC
                continue
            removed.append(f"f{i:02d}")
        fd = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with pytest.raises(OSError) as info:  # never success over a failed save
                os.fsync(fd)
            assert info.value.errno == errno.ENOSPC
            filler.unlink()
            os.fsync(fd)  # now it can be saved: what was acknowledged is durable
        finally:
            os.close(fd)
        for pid in server_pids(mnt):
            os.kill(pid, 9)
        force_unmount(mnt)
    with mounted(vault, mnt):
        assert sorted(os.listdir(mnt)) == sorted(f"f{i:02d}" for i in range(40) if f"f{i:02d}" not in removed)
