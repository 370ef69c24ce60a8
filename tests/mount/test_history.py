"""Version history through a real mount: .versions/, history, restore, trash, gc."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import fusevault, mounted

from fusevault.vault.model.history import iso_name


def run_json(*args) -> dict:
    result = fusevault(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def edit(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def disk_usage(vault: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in vault.rglob("*") if p.is_file())


def test_every_closed_state_is_a_version_readable_from_dot_versions(mnt: Path) -> None:
    contents = [f"edit {i}\n".encode() * (i + 1) for i in range(5)]
    for data in contents:
        edit(mnt / "notes.txt", data)
    assert ".versions" not in os.listdir(mnt)  # hidden from listings, reachable by name
    assert "notes.txt" in os.listdir(mnt / ".versions")
    names = sorted(os.listdir(mnt / ".versions" / "notes.txt"))
    assert len(names) == 5
    assert all(n.startswith(iso_name(time.time_ns())[:10]) and n.endswith(".txt") for n in names)
    assert [(mnt / ".versions" / "notes.txt" / n).read_bytes() for n in names] == contents
    # cp and diff work on them like on any file
    subprocess.run(["cp", mnt / ".versions" / "notes.txt" / names[1], mnt / "copy.txt"], check=True)
    assert (mnt / "copy.txt").read_bytes() == contents[1]
    old = mnt / ".versions" / "notes.txt" / names[0]
    assert old.stat().st_size == len(contents[0])

    history = run_json("history", mnt / "notes.txt")["versions"]
    assert [v["size"] for v in history] == [len(c) for c in contents]
    assert {v["author"] for v in history} == {"alice"}


def test_versions_tree_is_read_only_and_its_name_is_reserved(mnt: Path) -> None:
    (mnt / "d").mkdir()
    edit(mnt / "d" / "f", b"one")
    (name,) = os.listdir(mnt / ".versions" / "d" / "f")
    version = mnt / ".versions" / "d" / "f" / name
    for attempt in (lambda: open(version, "r+b"), lambda: (mnt / ".versions" / "d" / "new").mkdir(),
                    lambda: version.unlink(), lambda: os.rename(version, mnt / "x"),
                    lambda: os.chmod(version, 0o666), lambda: (mnt / ".versions").rmdir()):
        with pytest.raises(OSError) as err:
            attempt()
        assert err.value.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.EXDEV), attempt
    with pytest.raises(FileExistsError):
        (mnt / ".versions").mkdir()
    assert version.read_bytes() == b"one"


def test_restore_makes_an_old_version_the_newest_and_keeps_the_rest(mnt: Path) -> None:
    contents = [b"first", b"second", b"third"]
    for data in contents:
        edit(mnt / "f.txt", data)
    with open(mnt / "f.txt", "rb") as reader:  # the kernel's cached pages must not survive a restore
        assert reader.read() == b"third"
    first = run_json("history", mnt / "f.txt")["versions"][0]
    answer = run_json("restore", mnt / "f.txt", "--version", first["id"][:10])
    assert answer["version"]["id"] == first["id"]
    assert (mnt / "f.txt").read_bytes() == b"first"
    assert len(run_json("history", mnt / "f.txt")["versions"]) == 4

    # without --at or --version: the previous version
    run_json("restore", mnt / "f.txt")
    assert (mnt / "f.txt").read_bytes() == b"third"
    # --at a .versions name; --to writes a new file and leaves the original alone
    names = sorted(os.listdir(mnt / ".versions" / "f.txt"))
    assert len(names) == 5
    run_json("restore", mnt / "f.txt", "--version", first["id"], "--to", mnt / "sub" / "copy.txt")
    assert (mnt / "sub" / "copy.txt").read_bytes() == b"first"
    assert (mnt / "f.txt").read_bytes() == b"third"
    result = fusevault("restore", mnt / "f.txt", "--at", "2001-01-01")
    assert result.returncode == 12 and "no version" in result.stderr
    assert "Traceback" not in result.stderr


def test_delete_and_undelete(mnt: Path) -> None:
    (mnt / "dir" / "deep").mkdir(parents=True)
    edit(mnt / "dir" / "deep" / "gone.txt", b"version one")
    edit(mnt / "dir" / "deep" / "gone.txt", b"version two")
    subprocess.run(["rm", "-rf", mnt / "dir"], check=True)
    trash = run_json("trash", mnt)["trash"]
    assert [t["path"] for t in trash] == ["dir/deep/gone.txt"]
    assert [v["size"] for v in run_json("history", mnt / "dir" / "deep" / "gone.txt")["versions"]] == [11, 11]

    run_json("restore", mnt / "dir" / "deep" / "gone.txt")
    assert (mnt / "dir" / "deep" / "gone.txt").read_bytes() == b"version two"
    assert run_json("trash", mnt)["trash"] == []
    # its two, and its contents sealed again under the new key a file out of the trash gets
    versions = sorted(os.listdir(mnt / ".versions" / "dir" / "deep" / "gone.txt"))
    assert [(mnt / ".versions" / "dir" / "deep" / "gone.txt" / v).read_bytes() for v in versions] == \
        [b"version one", b"version two", b"version two"]

    # a deleted file comes back at an older version on request; a name in the way is refused
    os.unlink(mnt / "dir" / "deep" / "gone.txt")
    edit(mnt / "dir" / "deep" / "gone.txt", b"a new file")
    result = fusevault("restore", mnt / "dir" / "deep" / "gone.txt", "--at", "1h")
    assert result.returncode == 12, result.stderr  # the live file has no version an hour old


def test_restore_out_of_the_trash_in_place_of_nothing(mnt: Path, vault: Path) -> None:
    edit(mnt / "a", b"1")
    edit(mnt / "a", b"22")
    os.unlink(mnt / "a")
    first = run_json("history", mnt / "a")["versions"][0]
    run_json("restore", mnt / "a", "--version", first["id"])
    assert (mnt / "a").read_bytes() == b"1"
    # 1, 22, the restored 1, and the restored 1 sealed again under the file's new key
    assert [v["size"] for v in run_json("history", mnt / "a")["versions"]] == [1, 2, 1, 1]


def test_small_rewrites_of_a_large_file_grow_the_vault_little(mnt: Path, vault: Path) -> None:
    with open(mnt / "large", "wb") as f:
        for _ in range(100):
            f.write(os.urandom(1 << 20))
    before = disk_usage(vault)
    for i in range(10):
        with open(mnt / "large", "r+b") as f:
            f.seek(i * 7 * (1 << 20) + 1234)
            f.write(os.urandom(4096))
    grown = disk_usage(vault) - before
    assert grown < 4 * (1 << 20), grown  # "well under 10 MiB": blocks, manifests, documents
    assert len(os.listdir(mnt / ".versions" / "large")) == 11


def test_gc_applies_the_policy_frees_blocks_and_spares_open_versions(vault: Path, tmp_path: Path) -> None:
    with mounted(vault, tmp_path / "mnt") as mnt:
        contents = [os.urandom(1 << 20) for _ in range(5)]
        for data in contents:
            edit(mnt / "big", data)
        edit(mnt / "trashed", b"bye")
        os.unlink(mnt / "trashed")
        later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3 * 86400))
        # the default policy keeps everything this young
        assert run_json("gc", mnt, "--dry-run")["versions_dropped"] == 0
        run_json("retention", mnt, "--keep-all", "1", "--daily", "0", "--weekly", "0", "--trash", "2")
        names = sorted(os.listdir(mnt / ".versions" / "big"))
        held = open(mnt / ".versions" / "big" / names[1], "rb")  # noqa: SIM115
        try:
            before = disk_usage(vault)
            report = run_json("gc", mnt, "--as-of", later)
            # one per day for 0 days, one per week for 0 weeks: only the current
            # version and the one open right now stay; the trash is emptied
            assert report["kept_open"] == 1 and report["files_purged"] == 1
            assert report["versions_dropped"] == 3 + 1
            assert sorted(os.listdir(mnt / ".versions" / "big")) == [names[1], names[4]]
            assert held.read() == contents[1]
            assert before - disk_usage(vault) >= 2.5 * (1 << 20)
            assert run_json("trash", mnt)["trash"] == []
        finally:
            held.close()
        report = run_json("gc", mnt, "--as-of", later)
        assert report["versions_dropped"] == 1 and report["kept_open"] == 0
        assert (mnt / "big").read_bytes() == contents[4]
        assert len(os.listdir(mnt / ".versions" / "big")) == 1
    with mounted(vault, tmp_path / "mnt") as mnt:  # and it all mounts again, intact
        assert (mnt / "big").read_bytes() == contents[4]
    contents_on_disk = sum(p.stat().st_blocks * 512 for p in vault.rglob("*.vf"))
    assert contents_on_disk < 1.2 * (1 << 20), contents_on_disk


def test_history_of_a_vault_that_is_not_mounted(vault: Path, tmp_path: Path) -> None:
    with mounted(vault, tmp_path / "mnt") as mnt:
        edit(mnt / "f", b"a")
        edit(mnt / "f", b"bb")
        # --vault finds the running mount and asks it
        assert len(run_json("history", "f", "--vault", vault)["versions"]) == 2
    assert [v["size"] for v in run_json("history", "f", "--vault", vault)["versions"]] == [1, 2]
    run_json("restore", "f", "--vault", vault)
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "f").read_bytes() == b"a"
    result = fusevault("history", tmp_path / "elsewhere")
    assert result.returncode == 6 and "not inside a mounted vault" in result.stderr


def test_saving_by_rename_keeps_one_history(mnt: Path, vault: Path) -> None:
    """Editors and rsync write a new file and rename it over the old one."""
    saves = [f"save {i}\n".encode() for i in range(3)]
    for data in saves:
        edit(mnt / ".notes.txt.tmp", data)
        os.rename(mnt / ".notes.txt.tmp", mnt / "notes.txt")
    names = sorted(os.listdir(mnt / ".versions" / "notes.txt"))
    assert [(mnt / ".versions" / "notes.txt" / n).read_bytes() for n in names] == saves
    assert run_json("trash", mnt)["trash"] == []  # replaced, not deleted
    first = run_json("history", mnt / "notes.txt")["versions"][0]
    run_json("restore", mnt / "notes.txt", "--version", first["id"])
    assert (mnt / "notes.txt").read_bytes() == saves[0]
    assert len(run_json("history", mnt / "notes.txt")["versions"]) == 4

    run_json("retention", mnt, "--keep-all", "1", "--daily", "0", "--weekly", "0")
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3 * 86400))
    assert run_json("gc", mnt, "--as-of", later)["versions_dropped"] == 3
    assert len(list(vault.rglob("*.vf"))) == 1  # the replaced files' contents are gone
    assert (mnt / "notes.txt").read_bytes() == saves[0]
    assert len(os.listdir(mnt / ".versions" / "notes.txt")) == 1


def test_truncating_an_empty_file_makes_no_version(mnt: Path) -> None:
    (mnt / "log").touch()
    for _ in range(3):
        subprocess.run(f": > {mnt / 'log'}", shell=True, check=True)  # open(O_TRUNC), nothing to cut
    assert os.listdir(mnt / ".versions" / "log") == []
    subprocess.run(f"echo one > {mnt / 'log'}", shell=True, check=True)
    subprocess.run(f": > {mnt / 'log'}", shell=True, check=True)  # this one cuts: a version
    assert (mnt / "log").read_bytes() == b""
    assert len(os.listdir(mnt / ".versions" / "log")) >= 2


def test_overwriting_a_file_makes_one_version_per_save(mnt: Path) -> None:
    """``echo x > f`` truncates at open, and the shell closes a duplicate of the
    descriptor (a flush) before writing: still one version per save, none empty."""
    for text in ("v1", "v2", "v3"):
        subprocess.run(f"echo {text} > {mnt / 'f'}", shell=True, check=True)
    assert [v["size"] for v in run_json("history", mnt / "f")["versions"]] == [3, 3, 3]
    assert sorted((mnt / ".versions" / "f" / n).read_bytes()
                  for n in os.listdir(mnt / ".versions" / "f")) == [b"v1\n", b"v2\n", b"v3\n"]

    g = mnt / "g"
    g.write_bytes(b"a")
    # An in-place save: open(O_TRUNC), a duplicate closed, a write, close.
    fd = os.open(g, os.O_WRONLY | os.O_TRUNC)
    os.close(os.dup(fd))
    os.write(fd, b"bb")
    os.close(fd)
    # ftruncate(0), then writes on the same handle before close.
    fd = os.open(g, os.O_RDWR)
    os.ftruncate(fd, 0)
    os.close(os.dup(fd))
    os.pwrite(fd, b"ccc", 0)
    os.close(fd)
    # Truncated to empty and closed: that is a version.
    subprocess.run(f": > {g}", shell=True, check=True)
    assert [v["size"] for v in run_json("history", g)["versions"]] == [1, 2, 3, 0]
    assert g.read_bytes() == b""


def test_a_deleted_empty_file_comes_back(vault: Path, tmp_path: Path) -> None:
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "d").mkdir()
        (mnt / "d" / "empty").touch()
        (mnt / "d" / "empty").chmod(0o600)
        (mnt / "other").touch()
        subprocess.run(["rm", "-r", mnt / "d", mnt / "other"], check=True)
        assert sorted(t["path"] for t in run_json("trash", mnt)["trash"]) == ["d/empty", "other"]
        result = fusevault("restore", mnt / "d" / "empty")
        assert result.returncode == 0, result.stderr
        assert result.stdout == "restored d/empty (an empty file)\n"
        assert (mnt / "d" / "empty").read_bytes() == b""
        assert (mnt / "d" / "empty").stat().st_mode & 0o777 == 0o600
        assert run_json("restore", mnt / "other", "--to", mnt / "copy")["version"] is None
        assert (mnt / "copy").read_bytes() == b""
        assert [t["path"] for t in run_json("trash", mnt)["trash"]] == ["other"]
        (mnt / "d" / "empty").write_text("now with contents")
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "d" / "empty").read_text() == "now with contents"
        assert (mnt / "copy").exists()


def test_trash_leaves_out_programs_temporary_files_and_lists_one_folder(mnt: Path, tmp_path: Path) -> None:
    (mnt / "proj" / "sub").mkdir(parents=True)
    (mnt / "other").mkdir()
    real = ["other/c.txt", "proj/a.txt", "proj/sub/b.txt"]
    for path in [*real, "notes.txt"]:
        (mnt / path).write_text(f"{path}\n")
    env = {**os.environ, "HOME": str(tmp_path), "GIT_CONFIG_NOSYSTEM": "1"}
    git = ["git", "-c", "user.name=a", "-c", "user.email=a@example.org"]
    subprocess.run(["git", "init", "-q"], cwd=mnt / "proj", env=env, check=True)
    subprocess.run([*git, "add", "a.txt"], cwd=mnt / "proj", env=env, check=True)
    subprocess.run([*git, "commit", "-qm", "a"], cwd=mnt / "proj", env=env, check=True)
    subprocess.run(["sqlite3", mnt / "other" / "db.sqlite", "create table t(a); insert into t values (1);"],
                   check=True)
    subprocess.run(["vim", "-u", "NONE", "-i", "NONE", "-es", "-c", "set swapfile", "-c", "s/notes/new/",
                    "-c", "wq", mnt / "notes.txt"], env=env, check=True)
    by_hand = ["old.txt~", ".#old.txt", "film.mkv.part", "other/.~lock.report.odt#", "4913",
               "proj/.goutputstream-X1Y2Z3", "proj/page.html.crdownload"]
    for path in [*by_hand, *real]:
        (mnt / path).write_text("x")
        os.unlink(mnt / path)

    listing = fusevault("trash", mnt)
    assert listing.returncode == 0, listing.stderr
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["DELETED", "SIZE", "PATH"]
    assert sorted(line.split()[-1] for line in lines[1:-1]) == real
    assert lines[-1].startswith("(") and "--all shows them" in lines[-1]

    everything = run_json("trash", mnt, "--all")
    paths = {t["path"] for t in everything["trash"]}
    assert set(real) | set(by_hand) <= paths and everything["hidden"] == 0
    made_by_programs = paths - set(real) - set(by_hand)
    assert any(p.endswith("-journal") for p in made_by_programs), made_by_programs
    assert any(p.startswith("proj/.git/") and p.endswith(".lock") for p in made_by_programs), made_by_programs
    assert ".notes.txt.swp" in made_by_programs
    default = run_json("trash", mnt)
    assert sorted(t["path"] for t in default["trash"]) == real
    assert default["hidden"] == len(everything["trash"]) - len(real)

    assert sorted(t["path"] for t in run_json("trash", mnt / "proj")["trash"]) == real[1:]
    assert [t["path"] for t in run_json("trash", mnt / "proj" / "sub")["trash"]] == ["proj/sub/b.txt"]
    inside = fusevault("trash", ".", "--json", cwd=mnt / "other")
    assert [t["path"] for t in json.loads(inside.stdout)["trash"]] == ["other/c.txt"]
    # A temporary file still comes back by its path.
    run_json("restore", mnt / "film.mkv.part")
    assert (mnt / "film.mkv.part").read_text() == "x"


def test_gc_dry_run_says_how_much_it_would_free(mnt: Path, vault: Path) -> None:
    for _ in range(4):
        edit(mnt / "big", os.urandom(1 << 20))
    edit(mnt / "small", b"x" * 100)
    edit(mnt / "small", b"y" * 100)
    edit(mnt / "trashed", os.urandom(300_000))
    os.unlink(mnt / "trashed")
    run_json("retention", mnt, "--keep-all", "1", "--daily", "0", "--weekly", "0", "--trash", "2")
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3 * 86400))

    def contents_on_disk() -> int:
        return sum(p.stat().st_blocks * 512 for p in vault.rglob("*.v*"))

    before = contents_on_disk()
    dry = run_json("gc", mnt, "--dry-run", "--as-of", later)
    assert contents_on_disk() == before  # nothing punched or removed
    assert dry["versions_dropped"] == 3 + 1 + 1 and dry["files_purged"] == 1
    assert dry["bytes_freed"] >= 3 * (1 << 20) + 290_000, dry
    text = fusevault("gc", mnt, "--dry-run", "--as-of", later)
    assert text.returncode == 0 and "MiB would be freed" in text.stdout, text.stdout
    real = run_json("gc", mnt, "--as-of", later)
    assert real["versions_dropped"] == dry["versions_dropped"]
    assert real["bytes_freed"] == dry["bytes_freed"] == before - contents_on_disk()


def test_a_restore_to_a_longer_version_reads_whole_where_the_kernel_cached_it(mnt: Path) -> None:
    # With the writeback cache the kernel keeps its own idea of a file's size:
    # a restore must tell it, or the file reads cut short at the old size.
    long, short = os.urandom(200_000), b"short\n"
    edit(mnt / "f.bin", long)
    edit(mnt / "f.bin", short)
    assert (mnt / "f.bin").read_bytes() == short  # cached at the short size
    versions = run_json("history", mnt / "f.bin")["versions"]
    run_json("restore", mnt / "f.bin", "--version", versions[0]["id"])
    assert os.stat(mnt / "f.bin").st_size == len(long)
    assert (mnt / "f.bin").read_bytes() == long
    edit(mnt / "g.bin", short)
    edit(mnt / "g.bin", long)
    edit(mnt / "g.bin", short)
    middle = run_json("history", mnt / "g.bin")["versions"][1]["id"]
    with open(mnt / "g.bin", "rb") as held:  # also for a program that holds it open
        assert held.read() == short
        run_json("restore", mnt / "g.bin", "--version", middle)
        assert os.fstat(held.fileno()).st_size == len(long)
        assert os.pread(held.fileno(), len(long) + 10, 0) == long


def _sql(vault: Path, query: str) -> int:
    """One number from the vault's store, read by the sqlite3 program (as any reader would)."""
    done = subprocess.run(["sqlite3", vault / "store.sqlite", query], capture_output=True, text=True,
                          check=True)
    return int(done.stdout.strip())


def test_gc_drops_the_place_rows_of_what_it_freed_and_gives_space_back(mnt: Path, vault: Path) -> None:
    """A file saved hundreds of times (an editor, fsx): after gc, the store
    keeps rows only for the records still there, and the pages the dropped
    versions' documents and rows took are given back to the disk."""
    for i in range(300):
        edit(mnt / "often.txt", os.urandom(48 << 10) + str(i).encode())
    rows_before = _sql(vault, "SELECT COUNT(*) FROM places")
    pages_before = _sql(vault, "PRAGMA page_count")
    assert rows_before >= 300 * 4
    run_json("retention", mnt, "--keep-all", "1", "--daily", "0", "--weekly", "0")
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3 * 86400))
    assert run_json("gc", mnt, "--as-of", later)["versions_dropped"] == 299
    # The current version's four blocks, its manifest and its tree's root.
    assert _sql(vault, "SELECT COUNT(*) FROM places") <= 8
    pages_after, free_after = _sql(vault, "PRAGMA page_count"), _sql(vault, "PRAGMA freelist_count")
    assert free_after < 64
    assert pages_after < pages_before / 2
    assert (mnt / "often.txt").read_bytes()[-3:] == b"299"
    assert (mnt / "often.txt").stat().st_size == (48 << 10) + 3
