"""In a mount shared by several users, a version document is judged by its file's owner's view
(issue 22): not by whichever user's tree was loaded last.

The record check (vault/files/placements.py) takes a version's digest only from a document
its judge admits.  With one judge for the whole mount, the last user loaded decided: for a
file outside that user's tree it knows only whether the signer holds WRITE on *something*
of the owner's.  So bob, a READ recipient of alice's ``notes.txt`` with WRITE on her folder
``proj``, who can write the vault folder, replaces the document of her current version with
one signed by him whose digest names the block and root he resealed: with carol (who sees
none of alice's files) unlocked last, alice's own read served his bytes.  Now alice's view
decides (bob holds no WRITE on that file): EIO, an alarm in her ``status``, the rest serves.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import struct
from pathlib import Path

import adversary
from conftest import docs_of, mounted

from fusevault.crypto import aead
from fusevault.crypto.identity import open_file_key
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64d, b64e
from fusevault.vault.files.content import KIND_BLOCK, RECORD_HEAD, block_ad
from fusevault.vault.format.manifest import KIND_HTREE
from fusevault.vault.model import sharing, users
from fusevault.vault.model.nodes import node_from_doc, open_node_attrs
from mount.test_shared_mount import (  # noqa: F401  (fixtures)
    SECRETS,
    People,
    linux,
    place,
    pytestmark,
    python,
    shared_vault,
)

PLANTED = b"PLANTED BY BOB"


def _user(vault: Path, name: str) -> dict:
    return next(u for u in docs_of(vault, "UserDetails") if u["username"] == name)


def _rows(vault: Path, fid: str, vid: str) -> dict[int, tuple[int, int]]:
    db = sqlite3.connect(vault / "store.sqlite")
    try:
        return {i: (o, n) for i, o, n in db.execute(
            "SELECT idx, offset, length FROM places WHERE fid=? AND vid=?", (fid, vid))}
    finally:
        db.close()


def _clear_hashes(vault: Path, fid: str, vid: str) -> None:
    """The kept hashes cleared, as in rows from before hashes (hashed from the .vf when read)."""
    db = sqlite3.connect(vault / "store.sqlite")
    try:
        with db:
            db.execute("UPDATE places SET sha=NULL WHERE fid=? AND vid=?", (fid, vid))
    finally:
        db.close()


def _reseal(vf: Path, offset: int, length: int, kind: int, dek: bytes, ad: bytes,
            change) -> tuple[bytes, bytes]:
    with open(vf, "r+b") as f:
        f.seek(offset)
        record = f.read(length)
        plain = change(aead.unseal(dek, record[RECORD_HEAD.size:], ad))
        sealed = aead.seal(dek, plain, ad)
        new = RECORD_HEAD.pack(len(sealed) + 1, kind) + sealed
        assert len(new) == length
        f.seek(offset)
        f.write(new)
    return record, new


def _bobs_forgery(vault: Path) -> tuple[str, str]:
    """bob's work on alice's ``notes.txt``: block 0 and the root of her current version resealed
    in place, and the version's document replaced by one he signed whose digest names them.
    (fid, version id)."""
    alice = _user(vault, "alice")
    bob = users.unlock(_user(vault, "bob"), SECRETS["bob"].encode())
    keys = list((vault / "users" / bob.user_id / "shared").glob(f"{alice['_id']}_*.vfkey"))
    for path in keys:  # the one of notes.txt (not proj's, nor plan.txt's, which he may write)
        fid = path.stem.split("_", 1)[1]
        found = sharing.read_key(path)
        dek = open_file_key(bob.identity, alice["_id"], fid, found[0], found[1])
        node = adversary.get(vault, fid)
        attrs = open_node_attrs(node, dek)
        if any(name == b"notes.txt" for _, name in node_from_doc(node, dek, attrs)[1]):
            break
    else:
        raise AssertionError("bob holds no key of alice's notes.txt")
    vid = attrs["head"]
    rows = _rows(vault, fid, vid)
    (vf,) = list(vault.rglob(f"{fid}.vf"))
    ad = block_ad(fid, 0, vid, True)
    old_block, new_block = _reseal(vf, *rows[0], KIND_BLOCK, dek, ad,
                                   lambda p: PLANTED[:len(p)].ljust(len(p), b"\0"))
    old_sha, new_sha = hashlib.sha256(old_block).digest(), hashlib.sha256(new_block).digest()
    _, new_root = _reseal(vf, *rows[-1], KIND_HTREE, dek, aead.ad("manifest merkle", fid, vid),
                          lambda p: p.replace(old_sha, new_sha))
    assert set(rows) == {-1, 0}, rows  # one block, a root that is its leaf
    doc = adversary.get(vault, vid)
    vad = aead.ad("version", fid, vid)
    plain = json.loads(aead.unseal(dek, b64d(doc["enc"]), vad))
    plain.update(manifest_sha256=hashlib.sha256(new_root).hexdigest(), records_n=1,
                 records=hashlib.sha256(struct.pack("<q", 0) + new_sha).hexdigest())
    doc = {**doc, "enc": b64e(aead.seal(dek, json.dumps(plain).encode(), vad))}
    adversary.put(vault, sign_doc(bob.user_id, bob.identity.sign, doc))
    _clear_hashes(vault, fid, vid)
    return fid, vid


def test_a_version_signed_by_a_read_recipient_is_judged_by_the_owners_view(
        shared_vault: Path, place: Path, linux, python) -> None:  # noqa: F811
    mountpoint = place / "mnt-admission"
    mountpoint.mkdir()
    with mounted(shared_vault, mountpoint, "--allow-other"):
        people = People(linux, place, python, mountpoint)
        people.unlock("alice")
        people.ok("alice", "echo genuine > $M/notes.txt && mkdir $M/proj && echo plan > $M/proj/plan.txt"
                           " && echo untouched > $M/other.txt")
        for path, perm in (("notes.txt", "READ"), ("proj", "WRITE")):
            assert people.fusevault("alice", "share", f"{mountpoint}/{path}", "--with", "bob",
                                    "--perm", perm).returncode == 0
    fid, vid = _bobs_forgery(shared_vault)
    with mounted(shared_vault, mountpoint, "--allow-other"):
        people.unlock("alice")
        people.unlock("carol")  # loaded last: sees nothing of alice's
        result = people.sh("alice", "cat $M/notes.txt")
        assert "PLANTED" not in result.stdout, "alice was served bob's bytes"
        assert result.returncode != 0 and "Input/output error" in result.stderr, result.stderr
        status = people.fusevault("alice", "status").stdout
        assert any("WARNING" in line and fid in line for line in status.splitlines()), status
        assert people.ok("alice", "cat $M/other.txt") == "untouched\n"
        assert people.ok("alice", "cat $M/proj/plan.txt") == "plan\n"
