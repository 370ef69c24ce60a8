"""The commands that open a file's ``.vf`` and sidecar outside the mount's own reads (``fusevault check``,
``fusevault gc``; ``upgrade``'s digests go through placements.vf_for_reading) reach them as the mount
does (vault/format/inside.py): whatever a writer of the vault folder (no key) puts in their place or on
their way is reported or refused, never followed, never waited on.  The in-process cases are in
tests/unit/test_vault_folder_opens.py."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from conftest import fusevault, mounted

from mount.test_check import DAMAGED
from mount.test_history import edit, run_json


@pytest.mark.parametrize("kind", ["link", "fifo"])
def test_check_reports_a_vf_that_is_no_file_never_reads_through_it(vault: Path, tmp_path: Path,
                                                                   kind: str) -> None:
    with mounted(vault, tmp_path / "mnt") as mnt:
        edit(mnt / "plan.txt", b"alice's plan\n")
    (vf,) = vault.glob("users/*/own/*.vf")
    copy = tmp_path / "outside.vf"  # the file's own bytes, outside: read through a link, all is "clean"
    shutil.copyfile(vf, copy)
    vf.unlink()
    if kind == "link":
        vf.symlink_to(copy)
    else:
        os.mkfifo(vf, 0o600)
    result = fusevault("check", vault, timeout=60)
    assert result.returncode == DAMAGED, result.stdout + result.stderr
    assert "plan.txt" in result.stdout and "no regular file" in result.stdout, result.stdout


def test_gc_removes_nothing_through_a_folder_made_a_link(vault: Path, tmp_path: Path) -> None:
    """A deleted file's ``.vf`` goes at gc; its owner's ``own/`` made a link to another folder that
    holds a file of that name: nothing there is removed (before: the path was followed)."""
    with mounted(vault, tmp_path / "mnt") as mnt:
        edit(mnt / "gone.txt", b"bye")
        (vf,) = vault.glob("users/*/own/*.vf")
        os.unlink(mnt / "gone.txt")
        run_json("retention", mnt, "--keep-all", "1", "--daily", "0", "--weekly", "0", "--trash", "2")
        own = vf.parent
        elsewhere = tmp_path / "elsewhere"
        shutil.copytree(own, elsewhere)
        own.rename(own.with_name("own-moved"))
        own.symlink_to(elsewhere)
        later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3 * 86400))
        run_json("gc", mnt, "--as-of", later)
    assert (elsewhere / vf.name).exists() and (elsewhere / vf.with_suffix(".vfmeta").name).exists()


def test_check_counts_no_orphan_that_is_no_file_and_never_waits_on_one(vault: Path, tmp_path: Path) -> None:
    """A named pipe (or a link) named as a content file no document names, put in her own/: ``check``
    lists no such orphan and returns (before: it opened the pipe and waited for a writer for ever)."""
    with mounted(vault, tmp_path / "mnt") as mnt:
        edit(mnt / "plan.txt", b"alice's plan\n")
    (vf,) = vault.glob("users/*/own/*.vf")
    os.mkfifo(vf.with_name("f" * 32 + ".vf"), 0o600)
    vf.with_name("e" * 32 + ".vf").symlink_to(vf)
    result = fusevault("check", vault, "--json", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "f" * 32 not in result.stdout and "e" * 32 not in result.stdout
