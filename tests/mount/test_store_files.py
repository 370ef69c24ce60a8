"""The mount's own database files stay linked whatever other processes do with the vault.

SQLite in WAL mode relies on POSIX advisory locks, which a process loses on
every descriptor of the file as soon as it closes any one of them.  If the
mount ever opened and closed ``store.sqlite`` outside SQLite (as an fsync of
the store once did), the next program that opened and closed the vault
(``fusevault info``, ``sqlite3``) believed itself the last user, checkpointed
and deleted the WAL under the mount: everything committed after that went to
an unlinked file and was gone at the next mount.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from conftest import fusevault, mounted, remount, server_pids


def deleted_store_files(pid: int) -> list[str]:
    """The mount's descriptors of store.sqlite* whose file was unlinked."""
    gone = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if "store.sqlite" in target and target.endswith(" (deleted)"):
            gone.append(target)
    return gone


def outside_readers(vault: Path) -> list[list[str]]:
    """Every way a vault is opened from outside its mount."""
    return [["info", str(vault)], ["user", "list", "--vault", str(vault)],
            ["config", "show", "--vault", str(vault)]]


def test_outside_readers_after_gc_and_fsync_lose_nothing(vault: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        for i in range(10):
            (mnt / "h.txt").write_text(f"v{i}\n")
        with open(mnt / "synced.txt", "w") as f:  # an fsync syncs the store too
            f.write("durable\n")
            f.flush()
            os.fsync(f.fileno())
        result = fusevault("retention", "--keep-all", "0", "--daily", "0", "--weekly", "0", "--trash", "0",
                           cwd=mnt)
        assert result.returncode == 0, result.stderr
        result = fusevault("gc", cwd=mnt)
        assert result.returncode == 0, result.stderr
        (pid,) = server_pids(mnt)
        for step, args in enumerate(outside_readers(vault)):
            result = fusevault(*args)
            assert result.returncode == 0, (args, result.stderr)
            (mnt / f"after-{step}.txt").write_text(f"written after {args[0]}\n")
        subprocess.run(["sqlite3", vault / "store.sqlite", "SELECT count(*) FROM docs"], check=True,
                       capture_output=True)
        (mnt / "after-sqlite3.txt").write_text("written after sqlite3\n")
        (mnt / "newdir").mkdir()
        assert deleted_store_files(pid) == []
        with remount(vault, mnt):
            names = sorted(p.name for p in mnt.iterdir())
            assert names == sorted(["h.txt", "synced.txt", "newdir", "after-sqlite3.txt",
                                    *(f"after-{i}.txt" for i in range(3))])
            assert (mnt / "h.txt").read_text() == "v9\n"
            assert (mnt / "after-2.txt").read_text() == "written after config\n"


def test_a_removed_wal_is_detected_and_unmount_says_it_could_not_save(vault: Path, tmp_path: Path) -> None:
    # What a careless program (or the old bug) does: the mount's WAL unlinked
    # under it.  The mount must notice at the next durable point, refuse to
    # go on writing into a file nobody will read, and unmount must not say
    # "unmounted" as if all were saved.
    mnt = tmp_path / "mnt"
    with mounted(vault, mnt):
        (mnt / "before.txt").write_text("before\n")
        (pid,) = server_pids(mnt)
        for suffix in ("-wal", "-shm"):
            (vault / f"store.sqlite{suffix}").unlink()
        assert deleted_store_files(pid)
        with open(mnt / "after.txt", "w") as f:
            f.write("after\n")
            f.flush()
            try:
                os.fsync(f.fileno())
                fsynced = True
            except OSError:
                fsynced = False
        assert not fsynced  # never a durable fsync over an unlinked WAL
        result = fusevault("unmount", mnt, passphrase=None)
        assert result.returncode == 21, result.stderr
        assert "could not be saved" in result.stderr
        assert "Traceback" not in result.stderr
