"""The watched source folder, the dump folder and their settings, through real mounts."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
from conftest import PASSPHRASE, force_unmount, fusevault, mount_status, mounted, server_pids

from fusevault.imports.import_records import Stamp
from fusevault.imports.importer import CHANGING, UNCHANGED, VERSION, Importer
from fusevault.imports.watcher import Pending
from fusevault.vault.model.settings import Settings, parse_ttl
from fusevault.vault.services.opening import unlock_vault
from fusevault.vault.services.placing import NoKernel, file_digest
from fusevault.vault.volume import Volume


def config(mnt: Path, key: str, value: object) -> subprocess.CompletedProcess:
    return fusevault("config", "set", key, str(value), "--mount", mnt, passphrase=None)


def watch(mnt: Path, source: Path, settle: float = 0.3, **more: object) -> None:
    for key, value in {"settle_seconds": settle, **more, "source_dir_to_watch": source}.items():
        result = config(mnt, key, value)
        assert result.returncode == 0, result.stderr


def wait_for(what: str, check: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.1)


def import_task(mnt: Path) -> dict:
    """The mount's import task, as ``fusevault status MOUNTPOINT --json`` lists it (``mount_status``)."""
    return mount_status(mnt)["tasks"]["import"]


def versions(mnt: Path, path: str) -> list[str]:
    return os.listdir(mnt / ".versions" / path)


def idle(mnt: Path) -> bool:
    task = import_task(mnt)
    return task["state"] == "idle" and not task["summary"].startswith("importing")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


def test_burst_of_1000_files_is_imported_once_each(mnt: Path, source: Path) -> None:
    watch(mnt, source)
    for i in range(1000):
        folder = source / f"d{i % 10}"
        folder.mkdir(exist_ok=True)
        (folder / f"f{i:04d}.txt").write_text(f"file {i}\n" * (i % 50))
    imported = mnt / "Imported"
    wait_for("1000 files", lambda: sum(len(os.listdir(d)) for d in imported.glob("d*")) == 1000)
    wait_for("the import to finish", lambda: idle(mnt))
    for i in range(1000):
        path = imported / f"d{i % 10}" / f"f{i:04d}.txt"
        assert path.read_text() == f"file {i}\n" * (i % 50), path
    assert import_task(mnt)["counts"]["new"] == 1000
    assert not [n for d in imported.glob("d*") for n in os.listdir(d) if n.startswith(".")]
    # Rewritten with the same contents: no new version; changed: one more.
    (source / "d1" / "f0001.txt").write_text("file 1\n")
    (source / "d2" / "f0002.txt").write_text("changed\n")
    wait_for("the change", lambda: (imported / "d2" / "f0002.txt").read_text() == "changed\n")
    wait_for("the import to finish", lambda: idle(mnt))
    assert len(versions(mnt, "Imported/d1/f0001.txt")) == 1
    assert len(versions(mnt, "Imported/d2/f0002.txt")) == 2
    assert import_task(mnt)["counts"]["new"] == 1000


def test_a_file_being_written_is_imported_once_complete(mnt: Path, source: Path) -> None:
    watch(mnt, source, settle=2)
    target = mnt / "Imported" / "slow.bin"
    chunks = [os.urandom(4096) for _ in range(20)]
    with open(source / "slow.bin", "wb") as f:
        for chunk in chunks:
            f.write(chunk)
            f.flush()
            time.sleep(0.2)  # a slow download: never quiet for the settle time
        assert not target.exists()
    wait_for("the finished file", target.exists)
    assert target.read_bytes() == b"".join(chunks)
    assert len(versions(mnt, "Imported/slow.bin")) == 1


def test_a_rename_in_the_source_moves_the_imported_file(mnt: Path, source: Path) -> None:
    watch(mnt, source)
    (source / "draft.txt").write_text("words\n")
    wait_for("the import", (mnt / "Imported" / "draft.txt").exists)
    (source / "done").mkdir()
    os.rename(source / "draft.txt", source / "done" / "final.txt")
    wait_for("the move", (mnt / "Imported" / "done" / "final.txt").exists)
    wait_for("the import to finish", lambda: idle(mnt))
    assert not (mnt / "Imported" / "draft.txt").exists()
    assert (mnt / "Imported" / "done" / "final.txt").read_text() == "words\n"
    assert len(versions(mnt, "Imported/done/final.txt")) == 1  # moved, not imported again
    assert import_task(mnt)["counts"] == {"new": 1, "moved": 1, "removed from source": 0, "bytes": 6}


def test_sources_are_removed_only_once_durable_and_survive_a_kill(vault: Path, tmp_path: Path,
                                                                  source: Path) -> None:
    mnt = tmp_path / "mnt"
    contents = {f"p{i:02d}.jpg": os.urandom(1000 + i * 5000) for i in range(40)}
    with mounted(vault, mnt):
        watch(mnt, source, delete_file_from_source="on")
        for name, data in contents.items():
            (source / name).write_bytes(data)
        wait_for("the sources to go", lambda: not os.listdir(source))
        # Killed right after the last removal: what left the source must be in the vault.
        for pid in server_pids(mnt):
            os.kill(pid, signal.SIGKILL)
        force_unmount(mnt)
    with mounted(vault, mnt):
        for name, data in contents.items():
            assert (mnt / "Imported" / name).read_bytes() == data


def test_a_watcher_killed_mid_burst_loses_and_repeats_nothing(vault: Path, tmp_path: Path,
                                                              source: Path) -> None:
    mnt = tmp_path / "mnt"
    imported = mnt / "Imported"
    with mounted(vault, mnt):
        watch(mnt, source, settle=0.2)
        for i in range(600):
            (source / f"n{i:03d}.txt").write_text(f"{i}\n" * 100)
        wait_for("a part of the burst", lambda: imported.exists() and len(os.listdir(imported)) > 60)
        for pid in server_pids(mnt):
            os.kill(pid, signal.SIGKILL)
        force_unmount(mnt)
    with mounted(vault, mnt):
        names = {f"n{i:03d}.txt" for i in range(600)}
        wait_for("the rest", lambda: names <= set(os.listdir(imported)))
        wait_for("the import to finish", lambda: idle(mnt))
        for name in names:
            assert (imported / name).read_text() == f"{int(name[1:4])}\n" * 100
            assert len(versions(mnt, f"Imported/{name}")) == 1, name
        # A temporary file cut off by the kill is replaced when its file is imported again.
        assert set(os.listdir(imported)) == names


@contextlib.contextmanager
def read_only_folder(path: Path):
    path.mkdir()
    if os.geteuid() == 0:  # root may write anywhere a read-only file system is not
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], check=True)
        try:
            yield path
        finally:
            # Lazily: a watch of it holds the folder open (source_paths.hold) until the watch ends.
            subprocess.run(["umount", "--lazy", str(path)], check=True)
    else:
        path.chmod(0o555)
        yield path


def test_every_bad_setting_is_refused(mnt: Path, vault: Path, tmp_path: Path, source: Path) -> None:
    (tmp_path / "dump").mkdir()
    (source / "inner").mkdir()
    (mnt / "inside").mkdir()
    assert config(mnt, "source_dir_to_watch", source).returncode == 0
    with read_only_folder(tmp_path / "ro") as read_only:
        bad = [
            ("target_dir_to_dump", source / "inner", "must not be inside one another"),
            ("target_dir_to_dump", source.parent / "inbox" / ".." / "inbox", "must not be inside"),
            ("target_dir_to_dump", vault / "users", "inside the vault's own directory"),
            ("target_dir_to_dump", tmp_path / "missing", "not an existing folder"),
            ("target_dir_to_dump", read_only, "cannot write"),
            ("target_dir_to_dump", mnt / "inside", "inside the mounted vault"),
            ("peer_dir_for_storage", source / "inner", "must not be inside one another"),
            ("source_dir_to_watch", mnt / "inside", "inside the mounted vault"),
            ("source_dir_to_watch", mnt.parent, "contains the mounted vault"),
            ("source_dir_to_watch", vault / "users", "inside the vault's own directory"),
            ("passphrase_expiry_ttl", "10 weeks", "min, hr or day"),
            ("passphrase_expiry_ttl", "0 day", "min, hr or day"),
            ("delete_file_from_source", "maybe", "on or off"),
            ("settle_seconds", "-1", "0.1 to 3600"),
            ("import_into", "../out", "folder inside the vault"),
            ("import_into", ".versions/x", "folder inside the vault"),
        ]
        for key, value, message in bad:
            result = config(mnt, key, value)
            assert result.returncode == 12, (key, value, result.stderr)
            assert message in result.stderr and "Traceback" not in result.stderr
            assert len(result.stderr.strip().splitlines()) == 1
        assert config(mnt, "source_dir_to_watch", read_only).returncode == 0  # only read
        result = config(mnt, "delete_file_from_source", "on")
        assert result.returncode == 12 and "cannot write" in result.stderr
    shown = json.loads(fusevault("config", "show", "--mount", mnt, "--json", passphrase=None).stdout)
    assert shown["source_dir_to_watch"] == str(tmp_path / "ro")
    assert shown["target_dir_to_dump"] is None and shown["delete_file_from_source"] is False
    result = config(mnt, "passphrase_expiry_ttl", "10 day")
    assert result.returncode == 0 and "10 day" in result.stdout
    doc = json.loads(fusevault("config", "show", "--mount", mnt, "--json", passphrase=None).stdout)
    assert doc["passphrase_expiry_ttl"] == {"ttl": "10", "unit": "day"}  # seed 000's shape


def test_settings_live_in_the_vault_and_work_unmounted(vault: Path, tmp_path: Path,
                                                       source: Path) -> None:
    dump = tmp_path / "dump"
    dump.mkdir()
    result = fusevault("config", "set", "target_dir_to_dump", dump, "--vault", vault)
    assert result.returncode == 0, result.stderr
    result = fusevault("config", "set", "source_dir_to_watch", tmp_path, "--vault", vault)
    assert result.returncode == 12 and "contains the vault's own directory" in result.stderr
    with mounted(vault, tmp_path / "mnt") as mnt:
        shown = json.loads(fusevault("config", "show", "--mount", mnt, "--json", passphrase=None).stdout)
        assert shown["target_dir_to_dump"] == str(dump)
        result = fusevault("watch", vault)
        assert result.returncode == 17 and "in use" in result.stderr


def test_a_vault_named_by_a_relative_path_is_still_kept_out_of_the_settings(tmp_path: Path) -> None:
    """`mount vtest ../drive` and `--vault vtest` from the vault's parent folder:
    the watched folder may still not contain the vault (it would import the
    vault's own encrypted files, again and again)."""
    box = tmp_path / "box"  # holds the vault; the drive is mounted outside it
    box.mkdir()
    assert fusevault("init", box / "vtest", "--user", "alice").returncode == 0
    result = fusevault("config", "set", "source_dir_to_watch", box, "--vault", "vtest", cwd=box)
    assert result.returncode == 12 and "contains the vault's own directory" in result.stderr, result.stderr
    users = box / "vtest" / "users"
    result = fusevault("config", "set", "target_dir_to_dump", users, "--vault", "vtest", cwd=box)
    assert result.returncode == 12 and "inside the vault's own directory" in result.stderr, result.stderr
    (tmp_path / "drive").mkdir()
    result = fusevault("mount", "vtest", "../drive", cwd=box)
    assert result.returncode == 0, result.stderr
    try:
        result = config(tmp_path / "drive", "source_dir_to_watch", box)
        assert result.returncode == 12, result.stderr
        assert "contains the vault's own directory" in result.stderr
        (box / "inbox").mkdir()
        assert config(tmp_path / "drive", "source_dir_to_watch", box / "inbox").returncode == 0
    finally:
        assert fusevault("unmount", tmp_path / "drive", passphrase=None).returncode == 0


def test_watch_alone_imports_into_an_unmounted_vault(vault: Path, tmp_path: Path, source: Path) -> None:
    for key, value in (("source_dir_to_watch", source), ("settle_seconds", "0.2"),
                       ("import_into", "From laptop")):
        assert fusevault("config", "set", key, value, "--vault", vault).returncode == 0
    (source / "old.txt").write_text("there before\n")
    env = {**os.environ, "FUSEVAULT_PASSPHRASE": "correct horse battery staple"}
    import sys
    watcher = subprocess.Popen([sys.executable, "-m", "fusevault", "watch", vault], env=env,
                               stderr=subprocess.PIPE, text=True)
    try:
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(watcher.stderr), daemon=True)
        reader.start()
        wait_for("the first batch", lambda: any("1 new" in line for line in lines))
        (source / "new.txt").write_text("made later\n")
        wait_for("the second batch", lambda: sum("1 new" in line for line in lines) == 2)
    finally:
        watcher.send_signal(signal.SIGINT)
        assert watcher.wait(timeout=30) == 0
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "From laptop" / "old.txt").read_text() == "there before\n"
        assert (mnt / "From laptop" / "new.txt").read_text() == "made later\n"


def test_export_writes_whole_files_to_the_dump_folder(mnt: Path, tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    dump.mkdir()
    (mnt / "taxes" / "2025").mkdir(parents=True)
    (mnt / "taxes" / "2025" / "return.pdf").write_bytes(b"%PDF" + os.urandom(300_000))
    (mnt / "taxes" / "notes.txt").write_text("ask about receipts\n")
    os.utime(mnt / "taxes" / "notes.txt", (1_700_000_000, 1_700_000_000))
    os.symlink("2025/return.pdf", mnt / "taxes" / "latest")
    result = fusevault("export", mnt / "taxes", passphrase=None)
    assert result.returncode == 12 and "target_dir_to_dump" in result.stderr
    assert config(mnt, "target_dir_to_dump", dump).returncode == 0
    result = fusevault("export", mnt / "taxes", passphrase=None)
    assert result.returncode == 0, result.stderr
    out = dump / "taxes"
    assert (out / "2025" / "return.pdf").read_bytes() == (mnt / "taxes" / "2025" / "return.pdf").read_bytes()
    assert (out / "notes.txt").stat().st_mtime == 1_700_000_000
    assert os.readlink(out / "latest") == "2025/return.pdf"
    assert not [p for p in out.rglob(".*")]
    (mnt / "taxes" / "notes.txt").write_text("new\n")
    result = fusevault("export", mnt / "taxes", passphrase=None)
    assert result.returncode == 11 and "--overwrite" in result.stderr
    assert (out / "notes.txt").read_text() == "ask about receipts\n"  # nothing written
    result = fusevault("export", mnt / "taxes", "--overwrite", passphrase=None)
    assert result.returncode == 0 and (out / "notes.txt").read_text() == "new\n"
    result = fusevault("export", mnt / "taxes" / "notes.txt", mnt, passphrase=None)
    assert result.returncode == 12 and "inside the mounted vault" in result.stderr


def test_export_of_a_symlink_is_the_link_itself(mnt: Path, tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    dump.mkdir()
    (mnt / "docs").mkdir()
    (mnt / "docs" / "report.txt").write_text("the report\n")
    os.symlink("docs/report.txt", mnt / "latest")
    os.symlink("docs", mnt / "folder")
    os.symlink("/etc/hostname", mnt / "outside")
    for name in ("latest", "folder", "outside"):
        result = fusevault("export", mnt / name, dump, passphrase=None)
        assert result.returncode == 0, result.stderr
        assert json.loads(fusevault("export", mnt / name, dump, "--overwrite", "--json",
                                    passphrase=None).stdout)["exported"] == str(dump / name)
    assert sorted(os.listdir(dump)) == ["folder", "latest", "outside"]
    assert os.readlink(dump / "latest") == "docs/report.txt"
    assert os.readlink(dump / "folder") == "docs"
    assert os.readlink(dump / "outside") == "/etc/hostname"
    # A trailing slash means the folder the link points at, as for cp -a.
    result = fusevault("export", f"{mnt / 'folder'}/", dump, passphrase=None)
    assert result.returncode == 0, result.stderr
    assert (dump / "docs" / "report.txt").read_text() == "the report\n"


def test_pending_files_are_taken_only_when_unchanged_for_the_settle_time() -> None:
    pending = Pending(settle=2.0)
    first, second = Stamp(10, 1, 7, 1), Stamp(20, 2, 7, 1)
    pending.seen("a", first, now=0.0)
    assert pending.due(1.9) == [] and pending.due(2.0) == ["a"]
    assert not pending.settled("a", second, now=2.0)  # grew since: wait again
    assert pending.due(3.9) == [] and pending.due(4.0) == ["a"]
    assert pending.settled("a", second, now=4.0) and pending.due(100) == []
    pending.retry("a", now=10.0, after=60)  # its import failed
    assert pending.due(69) == [] and not pending.settled("a", second, now=70.0)
    assert pending.settled("a", second, now=72.0)  # stable for a settle time again
    pending.seen("dir/x", first, 0.0)
    pending.seen("dir/y", first, 0.0)
    pending.forget("dir")
    assert pending.due(100) == []


def test_ttl_text_becomes_seed_000_shape() -> None:
    assert parse_ttl("10 day") == {"ttl": "10", "unit": "day"}
    assert parse_ttl("30min") == {"ttl": "30", "unit": "min"}
    assert parse_ttl("8 hours") == {"ttl": "8", "unit": "hr"}


def test_a_file_changed_while_importing_stays_in_the_source(vault: Path, source: Path) -> None:
    # The Importer on an unmounted Volume: a writer appending between two
    # chunks of the copy is made certain by wrapping the chunk reader, as no
    # real writer can be timed into that window.
    unlocked = unlock_vault(vault, None, PASSPHRASE.encode())
    settings = Settings(source_dir_to_watch=str(source), delete_file_from_source=True)
    log = source / "grow.log"
    log.write_bytes(b"a" * 3_000_000)

    async def main() -> None:
        volume = Volume.load(unlocked.layout, unlocked.store, unlocked.key, unlocked.user["root"])
        try:
            importer = Importer(volume, settings, NoKernel())
            await importer.load()
            read_chunks = importer._chunks

            async def appending(f):
                appended = False
                async for data in read_chunks(f):
                    yield data
                    if not appended:
                        appended = True
                        with open(log, "ab") as w:
                            w.write(b"b" * 10)

            importer._chunks = appending
            outcome, _, removed = await importer.take("grow.log")
            assert outcome == CHANGING and not removed and log.exists()
            importer._chunks = read_chunks
            final = log.read_bytes()
            outcome, _, removed = await importer.take("grow.log")
            # The copy may already hold the final state (then it is only recorded).
            assert outcome in (VERSION, UNCHANGED) and removed and not log.exists()
            node = volume.resolve(b"Imported/grow.log")
            assert await file_digest(volume, node) == hashlib.sha256(final).hexdigest()
        finally:
            await volume.close()

    trio.run(main)
