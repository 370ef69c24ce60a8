"""Issue 22, attack round 3: the gc fix of round 2 (``_hashed_first``: an own old-shape file is
recommitted as a Merkle tree before gc drops any of its versions' documents) attacked along the
paths that do not go through it.

The attacker, bob, holds the file's key and can write the vault folder (store.sqlite included).
Each test asserts the SAFE behaviour: a block bob resealed is never read as good (EIO + alarm),
and never signed into a Merkle tree the owner commits.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from conftest import fusevault, mounted

from fusevault.vault.format.manifest import KIND_HTREE
from mount.test_trust_attack_round2 import FAR4, _far_writer, _format4
from mount.test_trust_merkle import BLOCK, _file, _kinds, _refused_at, _reseal_block


def _as_of(days: int = 3) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + days * 86400))


def _gc_newest_only(mnt: Path, *extra: str) -> dict:
    """Keep only the newest version of each file (the trash kept 30 days): older documents go."""
    result = fusevault("retention", mnt, "--keep-all", "1", "--daily", "0", "--weekly", "0", "--json")
    assert result.returncode == 0, result.stderr
    result = fusevault("gc", mnt, "--json", "--as-of", _as_of(), *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# --- 1. a file in the trash: gc thins it (``_thin`` for deleted nodes) with no recommit first


def test_a_trashed_old_shape_file_restored_after_gc_does_not_serve_a_resealed_inherited_block(
        tmp_path: Path) -> None:
    """Format 4 vault: the owner deletes ``dense`` (kind 4, its far block inherited from its older
    version); gc thins the trash (keeps its last version, drops the older one's document).  bob
    reseals the far block; the owner restores ``dense`` from the trash.  Safe: the read is EIO
    with an alarm (gc hashed it first, or kept the document that checks it); never bob's bytes,
    and the next edit never signs bob's block into a Merkle tree."""
    vault = _format4(tmp_path)
    fid, dek, head = _file(vault, "dense")
    writer = _far_writer(vault, fid)
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "other.txt").write_text("untouched")
        os.unlink(mnt / "dense")
        _gc_newest_only(mnt)
    _reseal_block(vault, fid, dek, writer, FAR4 // BLOCK)
    with mounted(vault, tmp_path / "mnt") as mnt:
        restored = fusevault("restore", mnt / "dense")
        assert restored.returncode == 0, restored.stderr
        _refused_at(mnt, "dense", FAR4, fid)


def test_a_trashed_old_shape_file_restored_after_gc_and_edited_does_not_sign_a_resealed_block(
        tmp_path: Path) -> None:
    """As above, and the owner's first edit after the restore (no read of the far block): the
    commit writes a Merkle tree (kind 6).  Safe: bob's block is not vouched for by it (the read
    after the edit is EIO with an alarm)."""
    vault = _format4(tmp_path)
    fid, dek, head = _file(vault, "dense")
    writer = _far_writer(vault, fid)
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "other.txt").write_text("untouched")
        os.unlink(mnt / "dense")
        _gc_newest_only(mnt)
    _reseal_block(vault, fid, dek, writer, FAR4 // BLOCK)
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert fusevault("restore", mnt / "dense").returncode == 0
        with open(mnt / "dense", "r+b") as f:
            f.seek(20)
            f.write(b"third")
    assert _kinds(vault, fid)[_file(vault, "dense")[2]] == KIND_HTREE
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused_at(mnt, "dense", FAR4, fid)

