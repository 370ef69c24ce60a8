"""Attack round 58c in a real shared mount (root, ``--allow-other``, real Linux users): the scene of
58c (1), whose mechanism and full account are in tests/unit/test_attack_58c.py.

bob's watched folder holds a chain of 256 folders (``MAX_DEPTH``) named with 255 bytes each and N
empty files in the deepest one (mode 000: kept by the walk, his import of each fails and is retried).
Each file the walk keeps is a location of ~65,800 characters in root's mount: ``MAX_NAMES`` (100,000)
counts names, never bytes.
Seen (N = 3,000): root's mount's peak RSS (VmHWM) grew 776 MB within 25 s (~260 KB a file: the walk's
``known`` and the one being built, ``Pending``, the failures said); at ``MAX_NAMES``: ~26 GB.
Control: the same files two short folders deep: 13 MB.

58c (5): the same folders named with 255 bytes not UTF-8, 20 files of his mode 000 in the deepest: each
failed import writes a log line of 389,724 bytes to root's mount log (the location, ``\\udcff`` a
byte), again at each retry (a minute): +7.4 MB in 20 s for 20 files.
"""

from __future__ import annotations

import os
from pathlib import Path

from conftest import wait_for

from mount import test_attack_53b as a53b
from mount import test_shared_mount as shared
from mount.test_shared_mount import People

linux, place, python, shared_vault, people = (shared.linux, shared.place, shared.python, shared.shared_vault,
                                              shared.people)

# Seen before the fix: ~260 KB a file, 776 MB for 3,000; 1,000 (~260 MB) stay far past the bound.
FILES = int(os.environ.get("N58C", "1000"))


def _peak_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _log_of(mount: int) -> Path:
    for fd in os.listdir(f"/proc/{mount}/fd"):
        try:
            target = os.readlink(f"/proc/{mount}/fd/{fd}")
        except OSError:
            continue
        if target.endswith(".log") and "/mount-" in target:
            return Path(target)
    raise AssertionError("the mount's log file is not open")


def _written_since(log: Path, before: int) -> bytes:
    with open(log, "rb") as lines:
        lines.seek(before)
        return lines.read()


def _said(written: bytes) -> int:
    """Failed imports said one by one (at most ``failures_said.PER_WINDOW`` a minute)."""
    return sum(b"import:" in line and b"failed" in line and b"said once" in line
               for line in written.splitlines())


def _growth_mb(people: People, depth: int, folder_name: bytes, tag: str) -> float:
    """bob watches a folder of ``FILES`` files ``depth`` folders deep: root's mount's peak RSS growth
    (MB) over three walks."""
    people.unlock("bob")
    bob = people.linux["bob"]
    inbox = people.place / "bob" / f"deep-58c-{tag}"
    people.ok("bob", f"rm -rf {inbox} && mkdir -p {inbox}")
    fd = os.open(inbox, os.O_RDONLY | os.O_DIRECTORY)
    try:  # as root (quicker than his shell), then given to him: his own folders and files
        for step in range(depth):
            name = b"%03d" % step + folder_name
            os.mkdir(name, dir_fd=fd)
            os.chown(name, bob.pw_uid, bob.pw_gid, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        for number in range(FILES):
            name = b"%06d" % number + b"f" * 249
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT, 0o000, dir_fd=fd))
            os.chown(name, bob.pw_uid, bob.pw_gid, dir_fd=fd)
    finally:
        os.close(fd)
    _, mount, _ = a53b._prepare(people)  # his helper and the mount's threads exist before counting
    before = _peak_kb(mount)
    log = _log_of(mount)
    start = log.stat().st_size
    done = people.fusevault("bob", "config", "set", "source_dir_to_watch", str(inbox), "--mount",
                            str(people.mnt))
    assert done.returncode == 0, done.stderr
    # A failed import said (each fails: mode 000): the walk kept every file before the first import.
    wait_for(lambda: _said(_written_since(log, start)) > 0, "a failed import said", timeout=120)
    grown = (_peak_kb(mount) - before) / 1024
    people.ok("bob", f"rm -rf {inbox}")  # rm walks it without recursion (shutil.rmtree would not)
    print(f"{tag}: root's mount peak RSS grew {grown:.0f} MB for {FILES} files {depth} folders deep")
    return grown


def test_58c_1_deep_long_names_in_his_watched_folder_cost_roots_mount_bytes_in_proportion(
        people: People) -> None:
    # Seen with 3,000 files: 776 MB (~260 KB a file); at MAX_NAMES ~26 GB.
    assert _growth_mb(people, 256, b"d" * 252, "deep") < 50


def test_control_58c_the_same_files_in_a_shallow_folder_cost_a_few_mb(people: People) -> None:
    assert _growth_mb(people, 2, b"d", "shallow") < 50


def test_58c_5_a_failed_import_of_a_deep_file_writes_a_bounded_log_line(people: People) -> None:
    people.unlock("bob")
    bob = people.linux["bob"]
    inbox = people.place / "bob" / "log-58c"
    people.ok("bob", f"rm -rf {inbox} && mkdir -p {inbox}")
    fd = os.open(inbox, os.O_RDONLY | os.O_DIRECTORY)
    try:  # as root (quicker than his shell), then given to him
        for step in range(256):
            name = b"%03d" % step + b"\xff" * 252
            os.mkdir(name, dir_fd=fd)
            os.chown(name, bob.pw_uid, bob.pw_gid, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        for number in range(20):  # his, mode 000: each import fails, retried every minute
            name = b"%06d" % number + b"\xff" * 249
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT, 0o000, dir_fd=fd))
            os.chown(name, bob.pw_uid, bob.pw_gid, dir_fd=fd)
    finally:
        os.close(fd)
    _, mount, _ = a53b._prepare(people)
    log = _log_of(mount)
    before = log.stat().st_size
    for key, value in (("settle_seconds", "0.3"), ("source_dir_to_watch", str(inbox))):
        done = people.fusevault("bob", "config", "set", key, value, "--mount", str(people.mnt))
        assert done.returncode == 0, done.stderr
    # Every file's failure said (20 files: one window's worth): before 58c (5), ~390 KB each.
    wait_for(lambda: _said(_written_since(log, before)) >= 20, "20 failures said", timeout=120)
    written = _written_since(log, before)
    people.ok("bob", f"rm -rf {inbox}")
    longest = max((len(line) for line in written.splitlines() if b"import:" in line), default=0)
    failures = sum(b"failed" in line and b"import:" in line for line in written.splitlines())
    print(f"root's mount log: +{len(written) / 2**20:.1f} MB, longest import line {longest} bytes, "
          f"{failures} failures said")
    assert longest <= 16 * 1024  # seen: ~390 KB a line (the location, each byte written \udcff)
    assert failures > 0  # said, cut (once a file: tests/unit/test_failures_said.py)
    assert len(written) < 1024 * 1024  # seen: +7.4 MB in 20 s
