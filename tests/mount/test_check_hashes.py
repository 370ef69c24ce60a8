"""``fusevault check`` compares each version's blocks with its own Merkle tree only (issue 22).

``check`` reads every version of a file with one reader.  A version signed before digests
existed has no ``manifest_sha256``, so nothing checks its root but its AEAD: a holder of the
file's key can reseal it as a Merkle root (kind 6) whose leaves hold any hashes, for blocks
of any writer.  Had those hashes stood in for the ones of a version whose root its signature
vouches for, ``check`` would have vouched for a block resealed to match them.  It held before
too, because every version's manifest was loaded (adding its own tree's hashes back) just
before its blocks were compared; now each version starts from no hashes, so that no longer
depends on the order in which versions are read.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import adversary
from conftest import PASSPHRASE, fusevault, mounted

from fusevault.crypto import aead
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64d, b64e
from fusevault.vault.files.content import RECORD_HEAD
from fusevault.vault.format.manifest import KIND_HTREE
from mount.test_trust_merkle import BLOCK, _file, _read, _reseal_block, _rows, _vf, _write
from mount.test_trust_records import DIGEST_FIELDS
from mount.test_trust_writes import _key


def _signed_before_digests(vault: Path, fid: str, dek: bytes, vid: str) -> None:
    """alice's version ``vid`` as an older fusevault signed it: without its digest (her own signature)."""
    key = _key(vault, "alice", PASSPHRASE)
    doc = adversary.get(vault, vid)
    ad = aead.ad("version", fid, vid)
    plain = json.loads(aead.unseal(dek, b64d(doc["enc"]), ad))
    plain = {k: v for k, v in plain.items() if k not in DIGEST_FIELDS}
    doc = {**doc, "enc": b64e(aead.seal(dek, json.dumps(plain).encode(), ad))}
    adversary.put(vault, sign_doc(key.user_id, key.identity.sign, doc))


def test_a_root_without_a_digest_cannot_vouch_in_check_for_another_versions_block(
        vault: Path, tmp_path: Path) -> None:
    """alice's ``f``: version 1 writes blocks 0 and 1 (signed before digests), version 2
    rewrites block 0 and inherits block 1 (its signed root's tree holds block 1's hash).
    bob reseals block 1 in place and version 1's root with his record's hash in its leaf:
    version 1 checks out (nothing signed names its records: out of reach), but ``check`` reports
    version 2, and the current contents, as damaged; the mount refuses the read."""
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "other.txt").write_text("untouched")
        fd = os.open(mnt / "f", os.O_CREAT | os.O_RDWR)
        os.pwrite(fd, b"A" * BLOCK + b"B" * 4096, 0)
        os.close(fd)
        with open(mnt / "f", "r+b") as f:
            f.write(b"second")
    fid, dek, head = _file(vault, "f")
    (older,) = {v for v, *_ in _rows(vault, fid)} - {head}
    _signed_before_digests(vault, fid, dek, older)
    assert fusevault("check", vault).returncode == 0
    before, after = _reseal_block(vault, fid, dek, older, 1)
    (root_at, root_len), = [(o, n) for v, i, o, n in _rows(vault, fid) if v == older and i == -1]
    vf = _vf(vault, fid)
    root = _read(vf, root_at, root_len)
    assert root[4] == KIND_HTREE
    ad = aead.ad("manifest merkle", fid, older)
    plain = aead.unseal(dek, root[RECORD_HEAD.size:], ad)
    old_sha, new_sha = hashlib.sha256(before).digest(), hashlib.sha256(after).digest()
    assert plain.count(old_sha) == 1
    sealed = aead.seal(dek, plain.replace(old_sha, new_sha), ad)
    _write(vf, root_at, RECORD_HEAD.pack(len(sealed) + 1, KIND_HTREE) + sealed)
    found = fusevault("check", vault, "--json")
    assert found.returncode != 0, found.stdout
    (state,) = [f for f in json.loads(found.stdout)["files"] if f["fid"] == fid]
    versions = {v["id"]: v for v in state["versions"]}
    assert versions[older]["intact"], state  # nothing signed names its records (docs/SECURITY.md)
    assert not versions[head]["intact"], state
    assert "not the record its manifest tree names" in json.dumps(versions[head]), state
    with mounted(vault, tmp_path / "mnt") as mnt:
        try:
            data = (mnt / "f").read_bytes()
            raise AssertionError(f"served {data[BLOCK:BLOCK + 20]!r}")
        except OSError as err:
            assert err.errno == 5
        assert (mnt / "other.txt").read_text() == "untouched"
