"""The records a reader uses are those their version's author signed (issue 22, second attack review).

The attacker is a READ recipient (bob) who holds a file's key (DEK) and can write the owner's
vault folder, store.sqlite included, but holds neither her master key nor her signing key.  He
reseals a record of alice's newest version in place under the file's key (valid AEAD), then
takes away or spoils what would tell: the version's document.  Each read must be EIO with an
alarm, never his bytes; ``check --repair`` must never sign them in alice's name.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import adversary
import pytest
from conftest import fusevault, mounted

from fusevault.crypto import aead
from fusevault.crypto.identity import open_file_key
from fusevault.encoding import b64d, b64e
from fusevault.vault.files.content import KIND_BLOCK, RECORD_HEAD, block_ad
from fusevault.vault.model import sharing
from mount.test_history import run_json
from mount.test_trust_writes import BOB, _key, _node_fid, _share_with_bob, _user, notes  # noqa: F401

DIGEST_FIELDS = ("records", "records_n", "manifest_sha256")


def _dek(vault: Path, fid: str) -> bytes:
    """The file's key, as bob opens it from the key alice shared with him."""
    alice, bob = _user(vault, "alice"), _key(vault, "bob", BOB)
    found = sharing.read_key(vault / "users" / bob.user_id / "shared" / f"{alice['_id']}_{fid}.vfkey")
    return open_file_key(bob.identity, alice["_id"], fid, found[0], found[1])


def _head(vault: Path, fid: str, dek: bytes) -> str:
    return json.loads(aead.unseal(dek, b64d(adversary.get(vault, fid)["enc"]), aead.ad("node", fid)))["head"]


def _older(vault: Path, fid: str, head: str) -> str:
    db = sqlite3.connect(vault / "store.sqlite")
    try:
        (vid,) = [r[0] for r in db.execute("SELECT DISTINCT vid FROM places WHERE fid=? AND vid<>?",
                                           (fid, head))]
    finally:
        db.close()
    return vid


def _reseal(vault: Path, fid: str, dek: bytes, vid: str, index: int, last: bool) -> None:
    """Reseal block ``index`` of version ``vid`` in place under the file's key."""
    (vf,) = list(vault.rglob(f"{fid}.vf"))
    data = bytearray(vf.read_bytes())
    ad = block_ad(fid, index, vid, last)
    for at in range(len(data) - RECORD_HEAD.size):
        rest, kind = RECORD_HEAD.unpack_from(data, at)
        if kind != KIND_BLOCK or not 0 < rest <= len(data) - at - 4:
            continue
        try:
            plain = aead.unseal(dek, bytes(data[at + RECORD_HEAD.size: at + 4 + rest]), ad)
        except Exception:
            continue
        forged = b"PLANTED BY BOB"[:len(plain)].ljust(len(plain), b"\0")
        data[at + RECORD_HEAD.size: at + 4 + rest] = aead.seal(dek, forged, ad)
        vf.write_bytes(bytes(data))
        return
    raise AssertionError(f"block {index} of {vid} not found")


def _without_digest(vault: Path, fid: str, dek: bytes, vid: str) -> None:
    """Reseal a version document's sealed part under the DEK, its digest left out (its signature
    no longer holds: bob cannot sign in alice's name)."""
    doc = adversary.get(vault, vid)
    ad = aead.ad("version", fid, vid)
    plain = json.loads(aead.unseal(dek, b64d(doc["enc"]), ad))
    plain = {k: v for k, v in plain.items() if k not in DIGEST_FIELDS}
    adversary.put(vault, {**doc, "enc": b64e(aead.seal(dek, json.dumps(plain).encode(), ad))})


def _refused(mnt: Path, path: Path, fid: str) -> None:
    with pytest.raises(OSError) as err:
        data = path.read_bytes()
        pytest.fail(f"served {data[:40]!r}")
    assert err.value.errno == 5
    status = fusevault("status", mnt, passphrase=None)
    assert status.returncode == 0 and "WARNING" in status.stdout and fid in status.stdout, status.stdout


def _planted_head(vault: Path, tmp_path: Path, notes: str) -> tuple[bytes, str]:  # noqa: F811
    _share_with_bob(vault, tmp_path)
    dek = _dek(vault, notes)
    head = _head(vault, notes, dek)
    _reseal(vault, notes, dek, head, 0, True)
    return dek, head


def test_the_current_versions_document_taken_away_refuses_the_mount_and_export(
        vault: Path, tmp_path: Path, notes: str) -> None:  # noqa: F811
    """Case 1: bob deletes the document of the version alice's signed node names: the mount and
    ``export`` refuse the file (EIO, an alarm; export exits 5 naming it), the rest serves."""
    _, head = _planted_head(vault, tmp_path, notes)
    adversary.delete_row(vault, head)
    dest = tmp_path / "out"
    dest.mkdir()
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused(mnt, mnt / "notes.txt", notes)
        assert (mnt / "docs" / "plan.txt").read_text() == "the plan"
        done = fusevault("export", mnt, dest)
        assert done.returncode == 5 and notes in done.stderr, done.stdout + done.stderr
        assert not any(b"PLANTED" in p.read_bytes() for p in dest.rglob("*") if p.is_file())


def test_the_current_versions_document_damaged_is_refused(vault: Path, tmp_path: Path,
                                                          notes: str) -> None:  # noqa: F811
    """Case 2: the document is there but does not open: EIO, never "nothing to compare with"."""
    _, head = _planted_head(vault, tmp_path, notes)
    adversary.put(vault, {**adversary.get(vault, head), "enc": b64e(b"\0" * 64)})
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused(mnt, mnt / "notes.txt", notes)


def test_the_current_versions_document_resealed_without_its_digest_is_refused(
        vault: Path, tmp_path: Path, notes: str) -> None:  # noqa: F811
    """Case 3: bob reseals the document under the DEK without the digest: it opens, but its
    signature (alice's) no longer holds, so it vouches for nothing: EIO."""
    dek, head = _planted_head(vault, tmp_path, notes)
    _without_digest(vault, notes, dek, head)
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused(mnt, mnt / "notes.txt", notes)


def test_an_older_versions_document_resealed_without_its_digest_is_refused_in_versions(
        vault: Path, tmp_path: Path, notes: str) -> None:  # noqa: F811
    """The same on an older version, read through .versions (held before this change too)."""
    _share_with_bob(vault, tmp_path)
    dek = _dek(vault, notes)
    older = _older(vault, notes, _head(vault, notes, dek))
    _reseal(vault, notes, dek, older, 0, True)
    _without_digest(vault, notes, dek, older)
    with mounted(vault, tmp_path / "mnt") as mnt:
        names = sorted(os.listdir(mnt / ".versions" / "notes.txt"))
        for name in names:  # the refused document is left out of the history, or its read is EIO
            try:
                got = (mnt / ".versions" / "notes.txt" / name).read_bytes()
            except OSError as err:
                assert err.errno == 5
                continue
            assert b"PLANTED" not in got
        assert (mnt / "notes.txt").read_text() == "genuine notes"


def test_kept_hashes_rewritten_or_cleared_do_not_help(vault: Path, tmp_path: Path,
                                                      notes: str) -> None:  # noqa: F811
    """bob rewrites the hash kept of his record in store.sqlite, then clears them all (as rows
    from before hashes): the signed digest still tells (held before this change too)."""
    dek, head = _planted_head(vault, tmp_path, notes)
    import hashlib
    db = sqlite3.connect(vault / "store.sqlite")
    offset, length = db.execute("SELECT offset, length FROM places WHERE fid=? AND vid=? AND idx=0",
                                (notes, head)).fetchone()
    (vf,) = list(vault.rglob(f"{notes}.vf"))
    with open(vf, "rb") as f:
        f.seek(offset)
        sha = hashlib.sha256(f.read(length)).hexdigest()
    db.execute("UPDATE places SET sha=? WHERE fid=? AND vid=? AND idx=0", (sha, notes, head))
    db.commit()
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused(mnt, mnt / "notes.txt", notes)
    db.execute("UPDATE places SET sha=NULL WHERE fid=?", (notes,))
    db.commit()
    db.close()
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused(mnt, mnt / "notes.txt", notes)


def test_check_repair_never_signs_contents_it_cannot_verify(vault: Path, tmp_path: Path,
                                                            notes: str) -> None:  # noqa: F811
    """Case 5: bob reseals a block and spoils the document that would tell.  ``check --repair``
    (what docs/SECURITY.md tells alice to run) does not give his bytes a new version signed by
    her: it says so and restores the newest version that verifies."""
    _, head = _planted_head(vault, tmp_path, notes)
    adversary.put(vault, {**adversary.get(vault, head), "enc": b64e(b"\0" * 64)})
    first = fusevault("check", vault, "--json", "--repair")
    (state,) = [f for f in json.loads(first.stdout)["files"] if f["fid"] == notes]
    assert "could not be verified" in state["repair"] and "restored version" in state["repair"], state
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "notes.txt").read_text() == "first"
    again = fusevault("check", vault, "--json")
    (state,) = [f for f in json.loads(again.stdout)["files"] if f["fid"] == notes]
    assert all(not v["intact"] for v in state["versions"] if v["id"] == head)


def test_check_repair_leaves_a_file_with_no_version_that_verifies(vault: Path, tmp_path: Path) -> None:
    """The same on a file with one version: nothing verifies, so nothing is signed and the file
    stays where it is (its read is EIO); the repair line says why."""
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "notes.txt").write_text("only version")
    only = _node_fid(vault, "alice", "notes.txt")
    _, head = _planted_head(vault, tmp_path, only)
    adversary.put(vault, {**adversary.get(vault, head), "enc": b64e(b"\0" * 64)})
    first = fusevault("check", vault, "--json", "--repair")
    (state,) = [f for f in json.loads(first.stdout)["files"] if f["fid"] == only]
    assert state["repair"].startswith("not repaired: its current contents could not be verified"), state
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused(mnt, mnt / "notes.txt", only)


def test_a_file_whose_older_version_gc_dropped_still_reads(vault: Path, tmp_path: Path) -> None:
    """Blocks the newest version inherits from one whose document gc dropped have no signed
    digest of their own left; the newest version's Merkle tree vouches for them
    (tests/mount/test_trust_merkle.py): they still read, across mounts, and the file keeps its
    bytes."""
    block = 16384
    data = bytearray(os.urandom(block * 4))
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "big.bin").write_bytes(bytes(data))
        with open(mnt / "big.bin", "r+b") as f:
            f.seek(block * 3)
            f.write(b"B" * 100)
        data[block * 3: block * 3 + 100] = b"B" * 100
        run_json("retention", mnt, "--keep-all", "1", "--daily", "0", "--weekly", "0")
        later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3 * 86400))
        assert run_json("gc", mnt, "--as-of", later)["versions_dropped"] >= 1
        assert (mnt / "big.bin").read_bytes() == bytes(data)
    fid = _node_fid(vault, "alice", "big.bin")
    db = sqlite3.connect(vault / "store.sqlite")
    vids = {r[0] for r in db.execute("SELECT DISTINCT vid FROM places WHERE fid=?", (fid,))}
    live = {r[0] for r in db.execute("SELECT id FROM docs WHERE deleted=0")}
    db.close()
    assert vids - live, "gc kept every version document: the case is not exercised"
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "big.bin").read_bytes() == bytes(data)
    assert fusevault("check", vault, "--json").returncode == 0
