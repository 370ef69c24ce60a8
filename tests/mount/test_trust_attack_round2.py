"""Round 2 of an independent attack on issue 22's final state (Merkle manifests, vault format 5,
``fusevault upgrade``).  The attacker holds the file's key (a READ recipient, a backup buddy) and
can write the vault folder: the ``.vf`` and ``store.sqlite`` (its ``places`` rows included).

Each test asserts the SAFE behaviour: the read is EIO with an alarm in ``fusevault status``,
never the planted bytes, and the mount serves on.  A test that fails is a hole.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tarfile
import time
from pathlib import Path

import pytest
from conftest import fusevault, mounted

from fusevault.crypto import aead
from fusevault.vault.files.content import KIND_BLOCK, RECORD_HEAD, block_ad
from fusevault.vault.format import manifest_tree as tree
from fusevault.vault.format.manifest import KIND_HTREE, KIND_TREE, manifest_label
from mount.test_trust_merkle import (
    BLOCK,
    DATA,
    _file,
    _gc,
    _kinds,
    _live_docs,
    _read,
    _refused_at,
    _reseal_block,
    _rows,
    _two_versions,
    _vf,
)

FAR4 = 8 << 20  # the far block of the format 4 fixture's ``dense``


def _set_row(vault: Path, fid: str, vid: str, idx: int, **cols: object) -> None:
    """Rewrite a ``places`` row as a writer of the vault folder can."""
    db = sqlite3.connect(vault / "store.sqlite")
    try:
        sets = ", ".join(f"{k} = ?" for k in cols)
        cur = db.execute(f"UPDATE places SET {sets} WHERE fid = ? AND vid = ? AND idx = ?",
                         (*cols.values(), fid, vid, idx))
        assert cur.rowcount == 1
        db.commit()
    finally:
        db.close()


def _append(vault: Path, fid: str, record: bytes) -> int:
    """Append ``record`` at the end of the file's ``.vf``; its offset."""
    vf = _vf(vault, fid)
    with open(vf, "ab") as f:
        offset = f.seek(0, os.SEEK_END)
        f.write(record)
    return offset


def _upgrade(mnt: Path, fails: bool = False) -> dict:
    """``fusevault upgrade``'s report; with ``fails``, it must exit non-zero (a file not rewritten)."""
    result = fusevault("upgrade", mnt, "--json")
    assert (result.returncode != 0) == fails, (result.returncode, result.stdout, result.stderr)
    return json.loads(result.stdout)


def _format4(tmp_path: Path) -> Path:
    with tarfile.open(DATA / "format4-vault.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "vault"


def _far_writer(vault: Path, fid: str) -> str:
    (writer,) = {v for v, i, *_ in _rows(vault, fid) if i == FAR4 // BLOCK}
    return writer


# --- 1. downgrade: the head's Merkle root replaced by an unhashed (kind 4) root


@pytest.mark.parametrize("row_sha", ["genuine", "forged"])
def test_head_manifest_downgraded_to_kind_4_through_an_arrived_place_row_is_refused(
        vault: Path, tmp_path: Path, row_sha: str) -> None:
    """bob seals a kind 4 root of the same runs (no hashes) under the DEK, appends it to the
    ``.vf`` and points the head's manifest place row at it (``arrived = 1``, as a peer's record);
    the row's sha is left genuine (so the expected list matches the signed digest) or set to the
    forged record's hash.  Either way the manifest read is not the one ``manifest_sha256`` names."""
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "other.txt").write_text("untouched")
        (mnt / "f").write_bytes(b"A" * BLOCK + b"B" * 100)
    fid, dek, head = _file(vault, "f")
    (offset, length), = [(o, n) for v, i, o, n in _rows(vault, fid) if v == head and i == -1]
    record = _read(_vf(vault, fid), offset, length)
    assert record[4] == KIND_HTREE
    plain = aead.unseal(dek, record[RECORD_HEAD.size:], aead.ad(manifest_label(KIND_HTREE), fid, head))
    manifest = tree.load(plain, lambda *a: pytest.fail("a one-leaf file"), hashed=True)
    (runs,) = tree.leaves_of(manifest).values()
    root = tree.pack_root(manifest.size, manifest.block_size, manifest.padded, 0, tree.pack_leaf(runs))
    sealed = aead.seal(dek, root, aead.ad(manifest_label(KIND_TREE), fid, head))
    forged = RECORD_HEAD.pack(len(sealed) + 1, KIND_TREE) + sealed
    at = _append(vault, fid, forged)
    cols: dict[str, object] = {"offset": at, "length": len(forged), "arrived": 1}
    if row_sha == "forged":
        cols["sha"] = hashlib.sha256(forged).hexdigest()
    _set_row(vault, fid, head, -1, **cols)
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused_at(mnt, "f", 0, fid)


# --- 2. an inherited block redirected by a place row (Merkle tree, older document gone)


def test_inherited_block_redirected_to_a_resealed_copy_by_an_arrived_row_is_refused(
        vault: Path, tmp_path: Path) -> None:
    """After gc, bob appends a resealed copy of an inherited block and points its place row at it
    (arrived, with the copy's hash): the Merkle leaf's hash still names the original record."""
    fid, dek, older = _two_versions(vault, tmp_path, [0, BLOCK])
    (offset, length), = [(o, n) for v, i, o, n in _rows(vault, fid) if v == older and i == 1]
    record = _read(_vf(vault, fid), offset, length)
    ad = block_ad(fid, 1, older, True)
    plain = aead.unseal(dek, record[RECORD_HEAD.size:], ad)  # the last block
    sealed = aead.seal(dek, b"PLANTED BY BOB".ljust(len(plain), b"\0"), ad)
    copy = RECORD_HEAD.pack(len(sealed) + 1, KIND_BLOCK) + sealed
    at = _append(vault, fid, copy)
    _set_row(vault, fid, older, 1, offset=at, length=len(copy), arrived=1,
             sha=hashlib.sha256(copy).hexdigest())
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused_at(mnt, "f", BLOCK, fid)


def test_inherited_node_replaced_by_an_unhashed_node_of_the_same_place_is_refused(
        vault: Path, tmp_path: Path) -> None:
    """A hash-less child in a hashed tree: bob overwrites the inherited far leaf (kind 7) with a
    kind 5 leaf of the same runs sealed under the kind 5 associated data, pointed at by its place
    row (arrived).  The parent's hash names the kind 7 record."""
    far = 1 << 36
    fid, dek, older = _two_versions(vault, tmp_path, [0, far])
    pos = (far // BLOCK) >> tree.LEAF_BITS
    index = tree.node_index(0, pos)
    (offset, length), = [(o, n) for v, i, o, n in _rows(vault, fid) if v == older and i == index]
    record = _read(_vf(vault, fid), offset, length)
    hashed_ad = aead.ad(*tree.node_ad_parts(fid, older, 0, pos, True))
    plain = aead.unseal(dek, record[RECORD_HEAD.size:], hashed_ad)
    runs = tree._leaf(plain, 0, pos, BLOCK, hashed=True)
    bare = tree.pack_leaf(tuple(r[:6] for r in runs))
    sealed = aead.seal(dek, bare, aead.ad(*tree.node_ad_parts(fid, older, 0, pos, False)))
    forged = RECORD_HEAD.pack(len(sealed) + 1, 5) + sealed
    at = _append(vault, fid, forged)
    _set_row(vault, fid, older, index, offset=at, length=len(forged), arrived=1,
             sha=hashlib.sha256(forged).hexdigest())
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused_at(mnt, "f", far, fid)


# --- 3. upgrade: can it launder a tampered record into a signed Merkle tree?


def test_upgrade_does_not_launder_a_tampered_block_whose_version_document_lives(tmp_path: Path) -> None:
    """Format 4 vault: bob reseals the far block of ``dense`` (written by its older version, whose
    signed document with its digest is still here), then the owner runs ``fusevault upgrade``.
    The recommit reads the block, its version's digest refuses it: the file is not rewritten (a
    failure reported), the read stays EIO with an alarm."""
    vault = _format4(tmp_path)
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "other.txt").write_text("untouched")
    fid, dek, head = _file(vault, "dense")
    writer = _far_writer(vault, fid)
    assert writer != head and writer in _live_docs(vault)
    _reseal_block(vault, fid, dek, writer, FAR4 // BLOCK)
    with mounted(vault, tmp_path / "mnt") as mnt:
        report = _upgrade(mnt, fails=True)
        assert report["files_failed"] >= 1, report
    assert _kinds(vault, fid)[_file(vault, "dense")[2]] == KIND_TREE  # not recommitted over it
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused_at(mnt, "dense", FAR4, fid)


@pytest.mark.parametrize("row", ["forged sha", "null sha"])
def test_upgrade_does_not_launder_a_tampered_block_with_a_forged_or_missing_place_digest(
        tmp_path: Path, row: str) -> None:
    """As above, and bob also sets the block's place row sha to his record's hash (so no reader
    hashes the ``.vf``), or to NULL (a row from before hashes were kept: ``upgrade``'s
    ``fill_digests`` hashes bob's record and writes it back).  The version's signed digest over
    its rows' hashes no longer matches: refused, never written into a signed tree."""
    vault = _format4(tmp_path)
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "other.txt").write_text("untouched")
    fid, dek, head = _file(vault, "dense")
    writer = _far_writer(vault, fid)
    _, after = _reseal_block(vault, fid, dek, writer, FAR4 // BLOCK)
    _set_row(vault, fid, writer, FAR4 // BLOCK,
             sha=hashlib.sha256(after).hexdigest() if row == "forged sha" else None)
    with mounted(vault, tmp_path / "mnt") as mnt:
        report = _upgrade(mnt, fails=True)
        assert report["files_failed"] >= 1, report
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused_at(mnt, "dense", FAR4, fid)


def _format4_after_gc(tmp_path: Path) -> tuple[Path, str, bytes, str]:
    """The format 4 fixture after a gc that keeps only each file's newest version: gc first
    recommits ``dense`` (a kind 4 tree inheriting its far block from an older version) as a Merkle
    tree, checking that block against the older version's document, and only then drops it."""
    vault = _format4(tmp_path)
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "other.txt").write_text("untouched")
        _gc(mnt)
    fid, dek, head = _file(vault, "dense")
    writer = _far_writer(vault, fid)
    assert writer != head and writer not in _live_docs(vault), "gc kept the older document"
    assert _kinds(vault, fid)[head] == KIND_HTREE, "gc dropped documents an unhashed tree needs"
    return vault, fid, dek, writer


def test_upgrade_does_not_launder_a_tampered_block_whose_version_document_gc_dropped(
        tmp_path: Path) -> None:
    """Format 4 vault, gc run before any edit.  bob reseals the far block ``dense`` inherits
    (valid AEAD), then the owner runs ``fusevault upgrade``: the owner's signed Merkle tree must
    not vouch for bob's record.  It does not: gc hashed the block into the tree, checked against
    its document, before dropping the document (before gc did so, upgrade signed it in)."""
    vault, fid, dek, writer = _format4_after_gc(tmp_path)
    _reseal_block(vault, fid, dek, writer, FAR4 // BLOCK)
    with mounted(vault, tmp_path / "mnt") as mnt:
        head = _file(vault, "dense")[2]
        _upgrade(mnt)  # the fixture's other files, kept whole by gc (nothing to drop), are rewritten
        assert _file(vault, "dense")[2] == head  # already a Merkle tree: not recommitted
        _refused_at(mnt, "dense", FAR4, fid)


def test_gc_keeps_every_version_of_an_old_shape_file_whose_inherited_block_is_tampered(
        tmp_path: Path) -> None:
    """bob reseals the far block before the owner's gc: the recommit that gc makes first finds
    the record is not the one its version's signed document names, so gc keeps every version of
    ``dense`` (the document that tells stays) and says so; the read is EIO with an alarm."""
    vault = _format4(tmp_path)
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "other.txt").write_text("untouched")
    fid, dek, head = _file(vault, "dense")
    writer = _far_writer(vault, fid)
    _reseal_block(vault, fid, dek, writer, FAR4 // BLOCK)
    with mounted(vault, tmp_path / "mnt") as mnt:
        fusevault("retention", mnt, "--keep-all", "1", "--daily", "0", "--weekly", "0")
        result = fusevault("gc", mnt, "--json", "--as-of", time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3 * 86400)))
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["kept_unverified"] == 1, result.stdout
        assert writer in _live_docs(vault) and _file(vault, "dense")[2] == head
        _refused_at(mnt, "dense", FAR4, fid)


def test_upgrade_after_a_tampered_block_of_a_format_5_file_changes_nothing(vault: Path,
                                                                           tmp_path: Path) -> None:
    """Format 5: bob reseals an inherited block after gc, then upgrade runs: the file is already
    in the newest shape, nothing is recommitted, the read stays EIO."""
    fid, dek, older = _two_versions(vault, tmp_path, [0, BLOCK, 2 * BLOCK])
    _reseal_block(vault, fid, dek, older, 2)
    _, _, head = _file(vault, "f")
    with mounted(vault, tmp_path / "mnt") as mnt:
        _upgrade(mnt)
    assert _file(vault, "f")[2] == head
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused_at(mnt, "f", 2 * BLOCK, fid)


def test_upgrade_says_how_many_blocks_it_could_not_check(tmp_path: Path) -> None:
    """Format 1 vault: its versions were signed before digests existed, so nothing signed names
    their records (docs/SECURITY.md, "Out of reach": AEAD only).  bob reseals block 0 of
    ``dense`` in place; ``fusevault upgrade`` cannot tell, and hashes what is there into the
    Merkle tree the owner signs (trust on first upgrade).  What it must not do is pass over it:
    it counts the blocks it took unchecked, in its report and its one-line answer."""
    from mount.test_scale import _format1_vault

    vault = _format1_vault(tmp_path)
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "other.txt").write_text("untouched")
    fid, dek, head = _file(vault, "dense")
    _reseal_block(vault, fid, dek, head, 0)
    with mounted(vault, tmp_path / "mnt") as mnt:
        report = _upgrade(mnt)
        assert report["blocks_unchecked"] >= 1, report
        again = fusevault("upgrade", mnt)
        assert again.returncode == 0 and "no signed digest" not in again.stdout, again.stdout
    assert _kinds(vault, fid)[_file(vault, "dense")[2]] == KIND_HTREE


def test_an_ordinary_edit_does_not_launder_a_tampered_block_whose_version_document_gc_dropped(
        tmp_path: Path) -> None:
    """As the upgrade case, with no upgrade: the owner's first edit of ``dense`` after bob
    resealed its far block.  Safe: EIO + alarm (gc hashed it into the tree before)."""
    vault, fid, dek, writer = _format4_after_gc(tmp_path)
    _reseal_block(vault, fid, dek, writer, FAR4 // BLOCK)
    with mounted(vault, tmp_path / "mnt") as mnt:
        with open(mnt / "dense", "r+b") as f:
            f.seek(20)
            f.write(b"third")
    assert _kinds(vault, fid)[_file(vault, "dense")[2]] == KIND_HTREE
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused_at(mnt, "dense", FAR4, fid)


def test_check_reports_a_block_resealed_after_gc(tmp_path: Path) -> None:
    """The gc-dropped case seen by ``fusevault check``, before and after an upgrade."""
    vault, fid, dek, writer = _format4_after_gc(tmp_path)
    _reseal_block(vault, fid, dek, writer, FAR4 // BLOCK)
    before = fusevault("check", vault)
    assert before.returncode != 0, before.stdout
    with mounted(vault, tmp_path / "mnt") as mnt:
        _upgrade(mnt)
    after = fusevault("check", vault)
    assert after.returncode != 0, after.stdout
