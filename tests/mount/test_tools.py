"""Everyday programs inside a real mount: git, tar, rsync, sqlite3, cp, an editor's save."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

from conftest import remount

SOURCE_TREE = Path(subprocess.__file__).parent / "json"  # a few real files from the stdlib


def run(*cmd: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{cmd}: {result.stderr}"
    return result.stdout


def same_tree(a: Path, b: Path) -> None:
    cmp = filecmp.dircmp(a, b, ignore=[])
    assert not cmp.left_only and not cmp.right_only and not cmp.diff_files, cmp.report()
    for sub in cmp.common_dirs:
        same_tree(a / sub, b / sub)


def test_git_clone_status_commit(mnt: Path, tmp_path: Path, vault: Path) -> None:
    origin = tmp_path / "origin"
    git = ["git", "-c", "user.email=t@example.org", "-c", "user.name=t"]
    run("git", "init", "-q", origin)
    for i in range(3):
        (origin / f"file{i}.txt").write_text(f"content {i}\n" * 100)
        run(*git, "-C", origin, "add", ".")
        run(*git, "-C", origin, "commit", "-qm", f"commit {i}")
    run("git", "clone", "-q", origin, mnt / "clone")
    assert run("git", "-C", mnt / "clone", "status", "--porcelain") == ""
    (mnt / "clone" / "new.txt").write_text("new\n")
    run(*git, "-C", mnt / "clone", "add", "new.txt")
    run(*git, "-C", mnt / "clone", "commit", "-qm", "inside the mount")
    run("git", "-C", mnt / "clone", "gc", "-q")
    with remount(vault, mnt):
        assert run("git", "-C", mnt / "clone", "status", "--porcelain") == ""
        assert len(run("git", "-C", mnt / "clone", "log", "--oneline").splitlines()) == 4
        run("git", "-C", mnt / "clone", "fsck", "--strict")


def test_tar_extract_and_create(mnt: Path, tmp_path: Path) -> None:
    archive = tmp_path / "tree.tar"
    run("tar", "cf", archive, "-C", SOURCE_TREE.parent, SOURCE_TREE.name)
    run("tar", "xf", archive, "-C", mnt)
    same_tree(SOURCE_TREE, mnt / SOURCE_TREE.name)
    run("tar", "cf", tmp_path / "back.tar", "-C", mnt, SOURCE_TREE.name)
    out = tmp_path / "out"
    out.mkdir()
    run("tar", "xf", tmp_path / "back.tar", "-C", out)
    same_tree(SOURCE_TREE, out / SOURCE_TREE.name)


def test_rsync_archive_is_idempotent(mnt: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    run("cp", "-a", SOURCE_TREE, src)
    os.symlink("__init__.py", src / "link")
    os.chmod(src / "__init__.py", 0o600)
    run("rsync", "-a", f"{src}/", mnt / "dst")
    same_tree(src, mnt / "dst")
    assert os.readlink(mnt / "dst" / "link") == "__init__.py"
    assert os.stat(mnt / "dst" / "__init__.py").st_mode & 0o777 == 0o600
    # A second run finds nothing to do: times, modes and sizes all came through.
    assert run("rsync", "-ai", f"{src}/", mnt / "dst").strip() == ""


def test_sqlite_database_inside_the_mount(mnt: Path, vault: Path) -> None:
    db = mnt / "app.db"
    script = ("PRAGMA journal_mode=DELETE; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
              "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 5000) "
              "INSERT INTO t(v) SELECT hex(randomblob(40)) FROM n;"
              "UPDATE t SET v = 'changed' WHERE id % 7 = 0; DELETE FROM t WHERE id % 11 = 0;")
    run("sqlite3", db, script)
    run("sqlite3", db, "PRAGMA journal_mode=WAL; INSERT INTO t(v) VALUES ('wal');")
    with remount(vault, mnt):
        assert run("sqlite3", db, "PRAGMA integrity_check;").strip() == "ok"
        count = run("sqlite3", db, "SELECT count(*) FROM t; SELECT count(*) FROM t WHERE v='changed';")
        assert count.split() == [str(5000 - 5000 // 11 + 1), str(5000 // 7 - 5000 // 77)]


def test_editor_save_by_rename(mnt: Path, vault: Path) -> None:
    doc = mnt / "notes.txt"
    doc.write_text("first draft\n")
    os.chmod(doc, 0o640)
    # What vim, gedit and most editors do: write a temp file, fsync, rename over.
    tmp = mnt / ".notes.txt.swp"
    with open(tmp, "w") as f:
        f.write("second draft\n")
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o640)
    os.rename(tmp, doc)
    assert doc.read_text() == "second draft\n" and sorted(os.listdir(mnt)) == ["notes.txt"]
    with remount(vault, mnt):
        assert doc.read_text() == "second draft\n"


def test_cp_mv_and_python_scripts(mnt: Path, tmp_path: Path) -> None:
    run("cp", "-a", SOURCE_TREE, mnt / "copy")
    same_tree(SOURCE_TREE, mnt / "copy")
    run("mv", mnt / "copy", mnt / "moved")
    out = tmp_path / "out"
    run("mv", mnt / "moved", out)  # across file systems: copy then delete
    same_tree(SOURCE_TREE, out)
    assert os.listdir(mnt) == []
    (mnt / "hello.py").write_text("print('hi from the vault')\n")
    assert run(sys.executable, mnt / "hello.py").strip() == "hi from the vault"
