"""Manifest trees are Merkle trees (issue 22's last gap, vault format 5): every record a version
reaches, blocks and tree nodes it inherits from older versions included, is checked against the
SHA-256 its parent node holds, up to the root its signed version document binds.

The attacker holds the file's key (a READ recipient, a backup buddy) and can write the vault
folder.  Before format 5, a block or node the newest version inherits from a version whose
document gc dropped was checked by AEAD only: resealed in place under the file's key, it was
served.  Now each read is EIO with an alarm in ``fusevault status``, and the mount serves on.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import tarfile
import time
from pathlib import Path

import pytest
from conftest import PASSPHRASE, docs_of, fusevault, mounted

from fusevault.crypto import aead
from fusevault.vault.files.content import KIND_BLOCK, RECORD_HEAD, block_ad
from fusevault.vault.format import manifest_tree as tree
from fusevault.vault.format.manifest import KIND_HNODE
from fusevault.vault.model.nodes import open_node_doc
from mount.test_trust_writes import _key, _serving, _warned

DATA = Path(__file__).resolve().parent.parent / "data"
BLOCK = 16 * 1024
FAR = 1 << 36  # block 2**22: a tree of several levels


def _file(vault: Path, name: str) -> tuple[str, bytes, str]:
    """(fid, DEK, current version) of alice's file ``name``: the attacker holds the DEK."""
    key = _key(vault, "alice", PASSPHRASE)
    for doc in docs_of(vault, "node"):
        if doc.get("owner") != key.user_id or doc.get("delete"):
            continue
        dek, attrs = open_node_doc(doc, key)
        if any(n == name for _, n in attrs["links"]):
            return doc["_id"], dek, attrs["head"]
    raise AssertionError(f"no node {name}")


def _rows(vault: Path, fid: str) -> list[tuple[str, int, int, int]]:
    """(vid, idx, offset, length) of every record of ``fid`` here."""
    db = sqlite3.connect(vault / "store.sqlite")
    try:
        return db.execute("SELECT vid, idx, offset, length FROM places WHERE fid=? ORDER BY n",
                          (fid,)).fetchall()
    finally:
        db.close()


def _live_docs(vault: Path) -> set[str]:
    db = sqlite3.connect(vault / "store.sqlite")
    try:
        return {r[0] for r in db.execute("SELECT id FROM docs WHERE deleted=0")}
    finally:
        db.close()


def _gc(mnt: Path) -> None:
    """Keep only the newest version of each file: older documents go."""
    for args in (("retention", mnt, "--keep-all", "1", "--daily", "0", "--weekly", "0"),
                 ("gc", mnt, "--as-of", time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                      time.gmtime(time.time() + 3 * 86400)))):
        result = fusevault(*args, "--json")
        assert result.returncode == 0, result.stderr


def _vf(vault: Path, fid: str) -> Path:
    (vf,) = list(vault.rglob(f"{fid}.vf"))
    return vf


def _read(path: Path, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def _write(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _reseal_block(vault: Path, fid: str, dek: bytes, vid: str, index: int) -> tuple[bytes, bytes]:
    """Reseal block ``index`` of version ``vid`` in place under the file's key (valid AEAD);
    (the record before, the record after)."""
    (offset, length), = [(o, n) for v, i, o, n in _rows(vault, fid) if v == vid and i == index]
    vf = _vf(vault, fid)
    record = _read(vf, offset, length)
    for last in (False, True):
        ad = block_ad(fid, index, vid, last)
        try:
            plain = aead.unseal(dek, record[RECORD_HEAD.size:], ad)
        except Exception:
            continue
        forged = b"PLANTED BY BOB"[:len(plain)].ljust(len(plain), b"\0")
        sealed = aead.seal(dek, forged, ad)
        new = RECORD_HEAD.pack(len(sealed) + 1, KIND_BLOCK) + sealed
        assert len(new) == length
        _write(vf, offset, new)
        return record, new
    raise AssertionError(f"block {index} of {vid} does not open")


def _node(vault: Path, fid: str, dek: bytes, vid: str, level: int, pos: int) -> tuple[int, bytes, tuple]:
    """(offset, plaintext, AD) of a node of version ``vid``'s hashed manifest tree."""
    index = tree.node_index(level, pos)
    (offset, length), = [(o, n) for v, i, o, n in _rows(vault, fid) if v == vid and i == index]
    record = _read(_vf(vault, fid), offset, length)
    assert record[4] == KIND_HNODE, "not a Merkle tree node"
    ad = aead.ad(*tree.node_ad_parts(fid, vid, level, pos, True))
    return offset, aead.unseal(dek, record[RECORD_HEAD.size:], ad), ad


def _reseal_node(vault: Path, fid: str, dek: bytes, offset: int, plain: bytes, ad: bytes) -> None:
    sealed = aead.seal(dek, plain, ad)
    _write(_vf(vault, fid), offset, RECORD_HEAD.pack(len(sealed) + 1, KIND_HNODE) + sealed)


def _refused_at(mnt: Path, name: str, offset: int, fid: str) -> None:
    """A read of ``name`` at ``offset`` is EIO, the alarm in status and the log; the mount serves on."""
    with pytest.raises(OSError) as err:
        fd = os.open(mnt / name, os.O_RDONLY)
        try:
            data = os.pread(fd, 4096, offset)
            pytest.fail(f"served {data[:40]!r}")
        finally:
            os.close(fd)
    assert err.value.errno == 5
    _warned(mnt, fid)
    assert (mnt / "other.txt").read_text() == "untouched"
    _serving(mnt)


def _two_versions(vault: Path, tmp_path: Path, writes: list[int], gc: bool = True) -> tuple[str, bytes, str]:
    """alice's ``f`` written at each offset of ``writes`` (4 KiB each), then a second version
    that rewrites block 0 only: the rest is inherited from the first.  With ``gc`` the first
    version's document is dropped.  (fid, DEK, first version)."""
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "other.txt").write_text("untouched")
        fd = os.open(mnt / "f", os.O_CREAT | os.O_RDWR)
        for offset in writes:
            os.pwrite(fd, bytes([65 + offset % 26]) * 4096, offset)
        os.close(fd)
        with open(mnt / "f", "r+b") as f:
            f.write(b"second")
        if gc:
            _gc(mnt)
    fid, dek, head = _file(vault, "f")
    (older,) = {v for v, *_ in _rows(vault, fid)} - {head}
    assert not gc or older not in _live_docs(vault), "gc kept the first version's document"
    return fid, dek, older


def test_an_inherited_block_resealed_after_gc_dropped_its_document_is_refused(vault: Path,
                                                                             tmp_path: Path) -> None:
    """The attack that worked before format 5: nothing signed named that block's record any more."""
    fid, dek, older = _two_versions(vault, tmp_path, [0, BLOCK, 2 * BLOCK, 3 * BLOCK])
    _reseal_block(vault, fid, dek, older, 2)
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused_at(mnt, "f", 2 * BLOCK, fid)
    found = fusevault("check", vault)  # and `fusevault check` reports it
    assert found.returncode != 0 and "not the record its manifest tree names" in found.stdout, found.stdout


def test_an_inherited_leaf_resealed_to_vouch_for_a_resealed_block_is_refused(vault: Path,
                                                                              tmp_path: Path) -> None:
    """bob reseals a far block and the leaf that names it, with his record's hash in it: the
    leaf's record is not the one its parent's hash names (the parent is the current version's)."""
    fid, dek, older = _two_versions(vault, tmp_path, [0, FAR])
    before, after = _reseal_block(vault, fid, dek, older, FAR // BLOCK)
    offset, plain, ad = _node(vault, fid, dek, older, 0, (FAR // BLOCK) >> tree.LEAF_BITS)
    old_sha, new_sha = hashlib.sha256(before).digest(), hashlib.sha256(after).digest()
    assert plain.count(old_sha) == 1
    _reseal_node(vault, fid, dek, offset, plain.replace(old_sha, new_sha), ad)
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused_at(mnt, "f", FAR, fid)


def test_swapped_child_hashes_in_an_inherited_inner_node_are_refused(vault: Path, tmp_path: Path) -> None:
    """An inner node the newest version inherits, resealed with two children's hashes swapped:
    each child's record no longer matches the hash its parent holds."""
    second = FAR + (BLOCK << tree.LEAF_BITS)  # the next leaf: both under one level 1 node
    fid, dek, older = _two_versions(vault, tmp_path, [0, FAR, second], gc=False)
    offset, plain, ad = _node(vault, fid, dek, older, 1, (FAR // BLOCK) >> (tree.LEAF_BITS + tree.FAN_BITS))
    nvids, count = tree.COUNT.unpack_from(plain)
    assert count == 2
    at = tree.COUNT.size + 16 * nvids
    first = list(tree.HCHILD.unpack_from(plain, at))
    other = list(tree.HCHILD.unpack_from(plain, at + tree.HCHILD.size))
    first[4], other[4] = other[4], first[4]
    swapped = plain[:at] + tree.HCHILD.pack(*first) + tree.HCHILD.pack(*other)
    _reseal_node(vault, fid, dek, offset, swapped, ad)
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused_at(mnt, "f", second, fid)


def _kinds(vault: Path, fid: str) -> dict[str, int]:
    """The manifest kind of each version of ``fid`` whose manifest is here."""
    vf = _vf(vault, fid)
    return {vid: _read(vf, offset, 5)[4] for vid, idx, offset, _ in _rows(vault, fid) if idx == -1}


def test_a_format_4_file_reads_and_its_next_commit_is_a_merkle_tree_that_holds_after_gc(
        tmp_path: Path) -> None:
    """A vault written by fusevault 4 (kind 4 trees): ``dense`` (40,000 random bytes at 0 and at
    8 MiB, then "second version" * 100 at 300: two versions), ``sparse`` ("head" at 0, "tail!"
    at 64 GiB).  It reads as before; the first edit writes the whole tree hashed (kind 6), the
    vault becomes format 5, and after gc dropped the format 4 version, a block the new version
    inherits from it, resealed, is refused."""
    import random

    with tarfile.open(DATA / "format4-vault.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    vault = tmp_path / "vault"
    rnd = random.Random(5)
    dense = bytearray(rnd.randbytes(40_000) + bytes((8 << 20) - 40_000) + rnd.randbytes(40_000))
    dense[300:300 + 1400] = b"second version" * 100
    fid, dek, _ = _file(vault, "dense")
    assert set(_kinds(vault, fid).values()) == {4}
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "other.txt").write_text("untouched")
        assert (mnt / "dense").read_bytes() == dense
        with open(mnt / "sparse", "rb") as f:
            assert f.read(4) == b"head" and os.pread(f.fileno(), 10, 1 << 36) == b"tail!"
        with open(mnt / "dense", "r+b") as f:
            f.seek(20)
            f.write(b"third")
        dense[20:25] = b"third"
    fid, dek, head = _file(vault, "dense")
    kinds = _kinds(vault, fid)
    assert kinds[head] == 6 and sorted(kinds.values()) == [4, 4, 6]
    assert '"format": 5' in (vault / "vault.json").read_text()
    with mounted(vault, tmp_path / "mnt") as mnt:
        _gc(mnt)
        assert (mnt / "dense").read_bytes() == dense
    assert fusevault("check", vault).returncode == 0
    older = {v for v, *_ in _rows(vault, fid)} - {head}
    assert older and not older & _live_docs(vault)
    (writer,) = {v for v, i, *_ in _rows(vault, fid) if i == (8 << 20) // BLOCK}  # the far block's
    assert writer in older
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "dense").read_bytes() == dense
    _reseal_block(vault, fid, dek, writer, (8 << 20) // BLOCK)
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused_at(mnt, "dense", 8 << 20, fid)


def test_a_tree_node_hash_is_per_record_not_per_content(vault: Path, tmp_path: Path) -> None:
    """An inherited block resealed with the same bytes (a new nonce) is refused too: the tree
    names the record, not what it decrypts to."""
    fid, dek, older = _two_versions(vault, tmp_path, [0, BLOCK])
    (offset, length), = [(o, n) for v, i, o, n in _rows(vault, fid) if v == older and i == 1]
    vf = _vf(vault, fid)
    record = _read(vf, offset, length)
    for last in (False, True):
        try:
            plain = aead.unseal(dek, record[RECORD_HEAD.size:], block_ad(fid, 1, older, last))
        except Exception:
            continue
        sealed = aead.seal(dek, plain, block_ad(fid, 1, older, last))
        _write(vf, offset, RECORD_HEAD.pack(len(sealed) + 1, KIND_BLOCK) + sealed)
        break
    else:
        raise AssertionError("block 1 does not open")
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused_at(mnt, "f", BLOCK, fid)

