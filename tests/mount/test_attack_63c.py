"""Attack round 63c (1) in a real shared mount (root, ``--allow-other``, real Linux users); its full
account is in tests/inprocess/test_attack_63c.py's docstring.

bob watches a folder of his (``delete_file_from_source``) holding a chain of 256 folders named with
255 bytes each (``MAX_DEPTH``); he puts empty files in its deepest folder, a batch at a time: each is
imported (an empty file in his vault) and removed from his folder, so no walk ever holds more than a
batch of names.  Each import leaves a record naming the file's whole location and vault path
(~65,800 characters each) in root's mount, for good.
Seen (``FILES`` = 1,000, 100 a batch): root's mount's RSS grew 138 MB (~140 KB a file imported), the
files all imported and removed within ~70 s; nothing gives it back while his seat runs, and every
restart of his watch loads it all again.  At that pace 10,000 files are ~1.4 GB, 100,000 ~14 GB.
Control (``test_control_63c_1_the_same_files_at_the_top_of_his_folder_cost_a_few_mb``): the same
1,000 files at the top of his folder: 8 MB.  The tests run 400 (``N63C``) against a 25 MB bound.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from mount import test_attack_53b as a53b
from mount import test_shared_mount as shared
from mount.test_shared_mount import People

linux, place, python, shared_vault, people = (shared.linux, shared.place, shared.python, shared.shared_vault,
                                              shared.people)

FILES = int(os.environ.get("N63C", "400"))  # 1,000 when found; 400 keep the suite quick and the
# deep scene's 140 KB a file (56 MB) well over the bound
BOUND_MB = 25
BATCH = 100


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _failed(people: People) -> int:
    """Imports bob's watch has counted failed (each retry counted again)."""
    done = people.fusevault("bob", "status", str(people.mnt), "--json")
    tasks = json.loads(done.stdout)["mounts"][0]["tasks"] if done.returncode == 0 else {}
    return sum(task.get("counts", {}).get("failed", 0) for task in tasks.values())


def _growth_mb(people: People, depth: int, folder_name: bytes, tag: str) -> tuple[float, int]:
    """(root's mount's RSS growth in MB, files imported) once bob's ``FILES`` files ``depth`` folders
    deep were imported and removed, ``BATCH`` at a time (or, past PATH_MAX, all refused)."""
    people.unlock("bob")
    bob = people.linux["bob"]
    inbox = people.place / "bob" / f"records-63c-{tag}"
    people.ok("bob", f"rm -rf {inbox} && mkdir -p {inbox}")
    fd = os.open(inbox, os.O_RDONLY | os.O_DIRECTORY)
    for step in range(depth):  # as root (quicker than his shell), then given to him
        name = b"%03d" % step + folder_name
        os.mkdir(name, dir_fd=fd)
        os.chown(name, bob.pw_uid, bob.pw_gid, dir_fd=fd)
        inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = inner
    try:
        _, mount, _ = a53b._prepare(people)  # his helper and the mount's threads exist before counting
        for key, value in (("settle_seconds", "0.3"), ("delete_file_from_source", "true"),
                           ("source_dir_to_watch", str(inbox))):
            done = people.fusevault("bob", "config", "set", key, value, "--mount", str(people.mnt))
            assert done.returncode == 0, done.stderr
        time.sleep(3)  # the watch started, its first walk done
        before = _rss_kb(mount)
        made = 0
        deadline = time.monotonic() + 240
        while made < FILES and time.monotonic() < deadline:
            for number in range(made, made + BATCH):
                name = b"%06d.txt" % number
                os.close(os.open(name, os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
                os.chown(name, bob.pw_uid, bob.pw_gid, dir_fd=fd)
            made += BATCH
            while os.listdir(fd) and time.monotonic() < deadline:  # imported and removed
                if _failed(people) >= made:  # or refused, every one (then they stay: all at once)
                    break
                time.sleep(0.5)
        left = len(os.listdir(fd))
        time.sleep(2)
        grown = (_rss_kb(mount) - before) / 1024
    finally:
        os.close(fd)
        people.ok("bob", f"rm -rf {inbox}")  # rm walks it without recursion
    print(f"{tag}: root's mount RSS grew {grown:.0f} MB, {made - left} files imported {depth} deep")
    return grown, made - left


def test_63c_1_files_imported_from_deep_long_names_cost_roots_mount_in_proportion_to_their_names(
        people: People) -> None:
    """Fixed: past PATH_MAX nothing is imported (said once a file), nothing recorded, nothing lost."""
    grown, imported = _growth_mb(people, 256, b"d" * 252, "deep")
    assert imported == 0 and _failed(people) >= FILES  # seen: each imported, removed, its record kept
    assert grown < BOUND_MB  # seen: 138 MB for 1,000 files


def test_63c_1_near_path_max_files_imported_cost_roots_mount_a_few_kb_each(people: People) -> None:
    """The deepest a file is imported from (15 folders of 255 bytes: ~3,900 bytes): its record holds
    its path twice at most."""
    grown, imported = _growth_mb(people, 15, b"d" * 252, "near")
    assert imported >= FILES // 2
    assert grown < BOUND_MB


def test_control_63c_1_the_same_files_at_the_top_of_his_folder_cost_a_few_mb(people: People) -> None:
    grown, imported = _growth_mb(people, 0, b"d", "shallow")
    assert imported >= FILES // 2
    assert grown < BOUND_MB
