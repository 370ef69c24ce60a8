"""A vault kept in CouchDB (``init --couchdb``) checks every record it reads against the signed
version document too (issue 22), although it has no ``places`` table.

The attacker holds a file's key (a READ recipient, or a server colluding with one) and can write
the vault folder, where the records sit (the CouchDB database holds the documents only): he
reseals records in place under the file's key, or appends his own and reseals the manifest root
to name them.  Every such read is EIO with an alarm in ``fusevault status``, never his bytes,
and the mount serves on.  Before, the root was checked by its AEAD only (and a refused node or
block raised no alarm).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import struct
import tarfile
from pathlib import Path

import adversary
import httpx
import pytest
from conftest import PASSPHRASE, docs_of, fusevault, mounted

from fusevault.crypto import aead
from fusevault.encoding import b64d, b64e
from fusevault.vault.files.content import HEADER, KIND_BLOCK, RECORD_HEAD, block_ad
from fusevault.vault.format import manifest_tree as tree
from fusevault.vault.format.manifest import KIND_HNODE, KIND_HTREE
from fusevault.vault.model import users
from fusevault.vault.model.nodes import open_node_doc

DATA = Path(__file__).resolve().parent.parent / "data"
BLOCK = 16 * 1024
FAR = 1 << 36  # block 2**22: a tree of several levels
PLANTED = b"PLANTED BY BOB"


@pytest.fixture
def couch_vault(tmp_path: Path, couchdb_url: str) -> tuple[Path, adversary.Server]:
    vault = tmp_path / "vault"
    result = fusevault("init", vault, "--user", "alice", "--couchdb", couchdb_url)
    assert result.returncode == 0, result.stderr
    return vault, adversary.Server(couchdb_url)


def _file(server: adversary.Server, name: str) -> tuple[str, bytes, str, tuple[int, int]]:
    """(fid, DEK, current version, its manifest's place) of alice's ``name``: bob holds the DEK."""
    (user,) = [u for u in server.all("UserDetails") if u.get("username") == "alice"]
    key = users.unlock(user, PASSPHRASE.encode())
    for doc in server.all("node"):
        if doc.get("owner") != key.user_id or doc.get("delete"):
            continue
        dek, attrs = open_node_doc(doc, key)
        if any(n == name for _, n in attrs["links"]):
            return doc["_id"], dek, attrs["head"], tuple(attrs["manifest"])
    raise AssertionError(f"no node {name}")


def _vf(vault: Path, fid: str) -> Path:
    (vf,) = list(vault.rglob(f"{fid}.vf"))
    return vf


def _records(vf: Path) -> list[tuple[int, bytes]]:
    """(offset, record) of every record of a ``.vf``, in order."""
    data, at, out = vf.read_bytes(), HEADER.size, []
    while at + RECORD_HEAD.size <= len(data):
        rest, _ = RECORD_HEAD.unpack_from(data, at)
        out.append((at, data[at:at + 4 + rest]))
        at += 4 + rest
    return out


def _find(vf: Path, dek: bytes, kind: int, *ads: bytes) -> tuple[int, bytes, bytes, bytes]:
    """(offset, record, plaintext, AD) of the one record of ``kind`` that opens under one of ``ads``."""
    found = []
    for offset, record in _records(vf):
        if record[4] != kind:
            continue
        for ad in ads:
            try:
                found.append((offset, record, aead.unseal(dek, record[RECORD_HEAD.size:], ad), ad))
            except Exception:
                continue
    assert len(found) == 1, f"{len(found)} records found"
    return found[0]


def _sealed(kind: int, dek: bytes, plain: bytes, ad: bytes) -> bytes:
    sealed = aead.seal(dek, plain, ad)
    return RECORD_HEAD.pack(len(sealed) + 1, kind) + sealed


def _write(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _block_ads(fid: str, index: int, vid: str) -> tuple[bytes, bytes]:
    return block_ad(fid, index, vid, False), block_ad(fid, index, vid, True)


def _reseal_block(vf: Path, fid: str, dek: bytes, vid: str, index: int) -> tuple[bytes, bytes]:
    """Block ``index`` resealed in place with bob's bytes (valid AEAD): (record before, after)."""
    offset, record, plain, ad = _find(vf, dek, KIND_BLOCK, *_block_ads(fid, index, vid))
    new = _sealed(KIND_BLOCK, dek, PLANTED[:len(plain)].ljust(len(plain), b"\0"), ad)
    assert len(new) == len(record)
    _write(vf, offset, new)
    return record, new


def _refused(mnt: Path, name: str, offset: int, fid: str) -> None:
    """A read of ``name`` at ``offset`` is EIO, never bob's bytes; the alarm is in ``status``
    and the mount's log; the rest of the mount serves."""
    with pytest.raises(OSError) as err:
        fd = os.open(mnt / name, os.O_RDONLY)
        try:
            data = os.pread(fd, 4096, offset)
            pytest.fail(f"served {data[:40]!r}")
        finally:
            os.close(fd)
    assert err.value.errno == 5
    status = fusevault("status", mnt, passphrase=None)
    assert status.returncode == 0, status.stderr
    assert any("WARNING" in line and fid in line for line in status.stdout.splitlines()), status.stdout
    logs = Path(os.environ["FUSEVAULT_STATE_DIR"]) / "logs"
    assert any(fid in p.read_text() for p in logs.glob("mount-*.log"))
    assert (mnt / "other.txt").read_text() == "untouched"
    (mnt / "after.txt").write_text("still serving")
    assert (mnt / "after.txt").read_text() == "still serving"
    os.unlink(mnt / "after.txt")


def _planted_root(vault: Path, server: adversary.Server, tmp_path: Path) -> tuple[str, bytes, str, bytes]:
    """alice's ``f`` (two versions); bob appends a block of his own to its ``.vf`` (sealed under the
    file's key, as block 0 of her current version) and reseals her current version's root in
    place to name it, with its hash.  (fid, DEK, current version, the new root record)."""
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "other.txt").write_text("untouched")
        (mnt / "f").write_text("first version")
        (mnt / "f").write_text("genuine contents")
    fid, dek, head, (root_at, root_len) = _file(server, "f")
    vf = _vf(vault, fid)
    root_ad = aead.ad("manifest merkle", fid, head)
    at, record, plain, ad = _find(vf, dek, KIND_BLOCK, *_block_ads(fid, 0, head))
    planted = _sealed(KIND_BLOCK, dek, PLANTED[:len(plain)].ljust(len(plain), b"\0"), ad)
    end = vf.stat().st_size
    _write(vf, end, planted)
    root = vf.read_bytes()[root_at:root_at + root_len]
    assert root[4] == KIND_HTREE
    root_plain = aead.unseal(dek, root[RECORD_HEAD.size:], root_ad)
    old_sha, old_at = hashlib.sha256(record).digest(), struct.pack("<Q", at)
    assert root_plain.count(old_sha) == 1 and root_plain.count(old_at) == 1
    forged = root_plain.replace(old_sha, hashlib.sha256(planted).digest())
    forged = forged.replace(old_at, struct.pack("<Q", end))
    new_root = _sealed(KIND_HTREE, dek, forged, root_ad)
    assert len(new_root) == root_len
    _write(vf, root_at, new_root)
    return fid, dek, head, new_root


def test_a_manifest_root_resealed_to_name_planted_bytes_is_refused(couch_vault, tmp_path: Path) -> None:
    """bob's planted root (``_planted_root``): every record below it checks out against it, and
    before, the root was checked by its AEAD only, so the mount served his bytes.  Now the root
    is not the one ``manifest_sha256`` in her signed version document names: EIO and an alarm.
    ``check`` finds it, ``check --repair`` restores her newest version that verifies, which
    reads."""
    vault, server = couch_vault
    fid, _, head, _ = _planted_root(vault, server, tmp_path)
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused(mnt, "f", 0, fid)
    found = fusevault("check", vault, "--json")
    assert found.returncode != 0
    (state,) = [f for f in json.loads(found.stdout)["files"] if f["fid"] == fid]
    assert any(not v["intact"] for v in state["versions"] if v["id"] == head), state
    repaired = fusevault("check", vault, "--json", "--repair")
    (state,) = [f for f in json.loads(repaired.stdout)["files"] if f["fid"] == fid]
    assert "restored version" in state["repair"], state
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "f").read_text() == "first version"
        assert (mnt / "other.txt").read_text() == "untouched"


def test_a_resealed_block_and_leaf_below_the_root_are_refused(couch_vault, tmp_path: Path) -> None:
    """Below the root the Merkle tree's hashes hold in a vault kept in CouchDB as everywhere: a far
    block resealed in place (valid AEAD) is refused, then also with the leaf that names it
    resealed to hold the new record's hash (the leaf's record is not the one its parent
    names).  Each is EIO with an alarm in ``status`` (before: EIO without one)."""
    vault, server = couch_vault
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "other.txt").write_text("untouched")
        fd = os.open(mnt / "f", os.O_CREAT | os.O_RDWR)
        os.pwrite(fd, b"A" * 4096, 0)
        os.pwrite(fd, b"Z" * 4096, FAR)
        os.close(fd)
    fid, dek, head, _ = _file(server, "f")
    vf = _vf(vault, fid)
    before, after = _reseal_block(vf, fid, dek, head, FAR // BLOCK)
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "f").open("rb").read(4) == b"AAAA"
        _refused(mnt, "f", FAR, fid)
    leaf = (0, (FAR // BLOCK) >> tree.LEAF_BITS)
    ad = aead.ad(*tree.node_ad_parts(fid, head, *leaf, True))
    offset, _, plain, _ = _find(vf, dek, KIND_HNODE, ad)
    old_sha, new_sha = hashlib.sha256(before).digest(), hashlib.sha256(after).digest()
    assert plain.count(old_sha) == 1
    _write(vf, offset, _sealed(KIND_HNODE, dek, plain.replace(old_sha, new_sha), ad))
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused(mnt, "f", FAR, fid)


def _format4_in_couchdb(tmp_path: Path, couchdb_url: str) -> Path:
    """tests/data/format4-vault.tar.gz (kind 4 manifests, with digests; see
    tests/mount/test_trust_merkle.py) moved into a CouchDB database: its documents put there,
    vault.json naming it, no store.sqlite left."""
    with tarfile.open(DATA / "format4-vault.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    vault = tmp_path / "vault"
    db = sqlite3.connect(vault / "store.sqlite")
    kinds = {row[0] for row in db.execute("SELECT DISTINCT type FROM docs WHERE deleted = 0")}
    db.close()
    httpx.put(couchdb_url, timeout=30).raise_for_status()
    docs = [{k: v for k, v in d.items() if k != "_rev"} for kind in kinds for d in docs_of(vault, kind)]
    httpx.post(f"{couchdb_url}/_bulk_docs", json={"docs": docs}, timeout=60).raise_for_status()
    config = json.loads((vault / "vault.json").read_text())
    config["store"] = {"kind": "couchdb", "url": couchdb_url}
    (vault / "vault.json").write_text(json.dumps(config))
    for name in ("store.sqlite", "store.sqlite-wal", "store.sqlite-shm"):
        (vault / name).unlink(missing_ok=True)
    return vault


def test_a_block_of_a_format_4_version_resealed_is_refused_by_its_records_digest(
        tmp_path: Path, couchdb_url: str) -> None:
    """Manifests from before vault format 5 (kind 4) hold no hashes: each block is checked
    against the ``records`` digest of the version that wrote it, whose records a vault kept in
    CouchDB finds from that version's own manifest.  ``dense`` reads whole (no false alarm);
    its far block, written by its first version and inherited by the second, resealed in
    place under the file's key, is EIO with an alarm (before: served)."""
    vault = _format4_in_couchdb(tmp_path, couchdb_url)
    server = adversary.Server(couchdb_url)
    rnd = random.Random(5)
    dense = bytearray(rnd.randbytes(40_000) + bytes((8 << 20) - 40_000) + rnd.randbytes(40_000))
    dense[300:300 + 1400] = b"second version" * 100
    fid, dek, head, _ = _file(server, "dense")
    writers = {d["_id"] for d in server.all("FilesMetaData") if d.get("fid") == fid} - {head}
    assert len(writers) == 1
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "other.txt").write_text("untouched")
        assert (mnt / "dense").read_bytes() == dense
    far = (8 << 20) // BLOCK
    (writer,) = writers
    _reseal_block(_vf(vault, fid), fid, dek, writer, far)
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused(mnt, "dense", far * BLOCK, fid)


def test_a_version_document_resealed_in_the_database_to_name_a_planted_root_is_refused(
        couch_vault, tmp_path: Path) -> None:
    """bob also writes into the CouchDB database: the document of alice's current version,
    resealed under the file's key with his root's hash as ``manifest_sha256`` (her signature
    kept, which no longer holds).  The digest counts only from a document whose signature and
    author hold: EIO and an alarm, never his bytes."""
    vault, server = couch_vault
    fid, dek, head, new_root = _planted_root(vault, server, tmp_path)
    doc = server.get(head)
    ad = aead.ad("version", fid, head)
    plain = json.loads(aead.unseal(dek, b64d(doc["enc"]), ad))
    plain["manifest_sha256"] = hashlib.sha256(new_root).hexdigest()
    server.put({**doc, "enc": b64e(aead.seal(dek, json.dumps(plain).encode(), ad))})
    with mounted(vault, tmp_path / "mnt") as mnt:
        _refused(mnt, "f", 0, fid)
