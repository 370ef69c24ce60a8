"""``fusevault upgrade`` (issue 26): every file's current manifest rewritten in the newest shape at
once, the hashes of old place rows kept; idempotent; old versions still read, also after gc."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

from conftest import fusevault, mounted

from fusevault.vault.files.content import Content
from mount.test_scale import _format1_vault, _manifest_kinds


def upgrade(where: Path) -> dict:
    """The report, without the count of blocks nothing signed could vouch for
    (tests/mount/test_trust_attack_round2.py looks at that)."""
    result = fusevault("upgrade", where, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    report.pop("blocks_unchecked")
    return report


def run_json(*args) -> dict:
    result = fusevault(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def current_kinds(vault: Path) -> set[int]:
    """The kind of each file's current manifest (the head its node names)."""
    kinds = _manifest_kinds(vault)
    db = sqlite3.connect(vault / "store.sqlite")
    heads = {vid for (vid,) in db.execute(
        "SELECT vid FROM places p WHERE idx = -1 AND n = (SELECT MAX(n) FROM places q "
        "WHERE q.fid = p.fid AND q.idx = -1)")}
    db.close()
    return {kinds[vid] for vid in heads}


def unhashed(vault: Path) -> int:
    db = sqlite3.connect(vault / "store.sqlite")
    (count,) = db.execute("SELECT COUNT(*) FROM places WHERE sha IS NULL").fetchone()
    db.close()
    return count


def test_upgrade_rewrites_old_manifests_once_and_old_versions_still_read(tmp_path: Path) -> None:
    import random

    vault = _format1_vault(tmp_path)  # kind-2 manifests, places without hashes
    dense = random.Random(1).randbytes(1000)
    sparse = b"head" + bytes(4 * 65536 - 4) + b"tail!"
    old_doc = [b"first\n" * 1000, b"second\n" * 2000]
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert unhashed(vault) > 0 and current_kinds(vault) == {2}
        assert upgrade(mnt) == {"files_rewritten": 3, "files_failed": 0, "digests_filled": 9}
        assert current_kinds(vault) == {Content.MANIFEST_KIND} and unhashed(vault) == 0
        assert shas_are_the_records(vault)
        # Nothing left to do:
        assert upgrade(mnt) == {"files_rewritten": 0, "files_failed": 0, "digests_filled": 0}
        assert (mnt / "dense").read_bytes() == dense
        assert (mnt / "sparse").read_bytes() == sparse
        versions = sorted(os.listdir(mnt / ".versions" / "doc"))
        assert [(mnt / ".versions" / "doc" / n).read_bytes() for n in versions][:2] == old_doc
    with mounted(vault, tmp_path / "mnt") as mnt:  # a new process: nothing to do either
        assert upgrade(mnt) == {"files_rewritten": 0, "files_failed": 0, "digests_filled": 0}
        gc_now(mnt)  # the default policy: the vault's versions are from long ago, thinned to one a day
        kept = sorted(os.listdir(mnt / ".versions" / "doc"))
        assert len(kept) >= 2 and versions[1] in kept  # "second", written by the old format, is kept
        assert {(mnt / ".versions" / "doc" / n).read_bytes() for n in kept} <= set(old_doc)
        assert (mnt / ".versions" / "doc" / versions[1]).read_bytes() == old_doc[1]
        assert 2 in set(_manifest_kinds(vault).values())
        # Then only the current versions are kept: their new manifests name the old blocks.
        run_json("retention", mnt, "--keep-all", "1", "--daily", "0", "--weekly", "0")
        assert gc_now(mnt, days=3)["versions_dropped"] >= 3
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "dense").read_bytes() == dense
        assert (mnt / "sparse").read_bytes() == sparse
        assert (mnt / "doc").read_bytes() == old_doc[1]


def gc_now(mnt: Path, days: int = 0) -> dict:
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + days * 86400))
    return run_json("gc", mnt, "--as-of", later)


def shas_are_the_records(vault: Path) -> bool:
    """Every place row's sha is the SHA-256 of the record at its place."""
    import hashlib

    db = sqlite3.connect(vault / "store.sqlite")
    rows = db.execute("SELECT owner, fid, offset, length, sha FROM places").fetchall()
    db.close()
    for owner, fid, offset, length, sha in rows:
        with open(vault / "users" / owner / "own" / f"{fid}.vf", "rb") as f:
            f.seek(offset)
            if hashlib.sha256(f.read(length)).hexdigest() != sha:
                return False
    return bool(rows)


def test_upgrade_fills_the_hashes_a_signed_digest_then_checks(vault: Path, tmp_path: Path) -> None:
    """Rows of versions whose documents bind their records (a digest): the hashes written back are
    the ones the reader compares with the digest, so a wrong one would read EIO."""
    data = os.urandom(300_000)
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "f").write_bytes(data)
    db = sqlite3.connect(vault / "store.sqlite")
    rows = db.execute("UPDATE places SET sha = NULL").rowcount
    db.commit()
    db.close()
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert upgrade(mnt) == {"files_rewritten": 0, "files_failed": 0, "digests_filled": rows}
        assert unhashed(vault) == 0 and shas_are_the_records(vault)
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "f").read_bytes() == data


def test_upgrade_of_a_vault_that_is_not_mounted(tmp_path: Path) -> None:
    vault = _format1_vault(tmp_path)
    assert upgrade(vault)["files_rewritten"] == 3
    assert current_kinds(vault) == {Content.MANIFEST_KIND} and unhashed(vault) == 0
    assert upgrade(vault) == {"files_rewritten": 0, "files_failed": 0, "digests_filled": 0}
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "sparse").read_bytes() == b"head" + bytes(4 * 65536 - 4) + b"tail!"


def test_upgrade_of_a_place_that_is_neither_a_mount_nor_a_vault_is_one_line(tmp_path: Path) -> None:
    result = fusevault("upgrade", tmp_path)
    assert result.returncode == 6, result.stderr  # MountPointError
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_a_damaged_file_is_counted_and_the_others_are_upgraded(tmp_path: Path) -> None:
    vault = _format1_vault(tmp_path)
    db = sqlite3.connect(vault / "store.sqlite")
    owner, fid, offset = db.execute("SELECT owner, fid, offset FROM places WHERE idx = -1 "
                                    "ORDER BY n DESC LIMIT 1").fetchone()
    db.close()
    with open(vault / "users" / owner / "own" / f"{fid}.vf", "r+b") as f:  # its current manifest
        f.seek(offset + 20)
        byte = f.read(1)
        f.seek(offset + 20)
        f.write(bytes([byte[0] ^ 1]))
    result = fusevault("upgrade", vault, "--json")
    assert result.returncode == 5, result.stderr
    report = json.loads(result.stdout)
    report.pop("blocks_unchecked")
    assert report == {"files_rewritten": 2, "files_failed": 1, "digests_filled": 9}
    result = fusevault("upgrade", vault)
    assert result.returncode == 5
    assert "0 file(s) rewritten in the newest format (1 could not be read" in result.stdout
