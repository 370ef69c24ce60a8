"""Signed writes (issue 22): node and version documents count only when
signed by their owner or by a WRITE grantee of theirs.

Each attack writes into the vault's store (or the CouchDB database it syncs
with) what a store writer, a READ recipient or a WRITE grantee could, and
shows: the change is not obeyed (the files as they were), an alarm in
``fusevault status`` and in the mount's log, and the mount still serving.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import adversary
import pytest
from conftest import PASSPHRASE, docs_of, fusevault, mounted

from fusevault.crypto import aead
from fusevault.crypto.identity import open_file_key, public_box, seal_file_key
from fusevault.crypto.keys import MasterKey
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64d, b64e
from fusevault.vault.model import sharing, users

BOB = "bob's own passphrase"
CAROL = "carol's own passphrase"
MALLORY = "mallory's own passphrase"


def _admin(vault: Path, *args: str, passphrase: str = PASSPHRASE) -> None:
    result = fusevault(*args, env={"FUSEVAULT_VAULT": str(vault), "FUSEVAULT_NEW_PASSPHRASE": passphrase},
                       passphrase=passphrase)
    assert result.returncode == 0, result.stderr


def _user(vault: Path, name: str) -> dict:
    return next(u for u in docs_of(vault, "UserDetails") if u["username"] == name)


def _key(vault: Path, name: str, passphrase: str) -> MasterKey:
    return users.unlock(_user(vault, name), passphrase.encode())


def _signed(doc: dict, key: MasterKey) -> dict:
    return sign_doc(key.user_id, key.identity.sign, doc)


def _node_fid(vault: Path, owner: str, name: str) -> str:
    """The fid of ``owner``'s node named ``name`` (the test knows its DEK path: via the owner's key)."""
    key = _key(vault, owner, PASSPHRASE)
    for doc in docs_of(vault, "node"):
        if doc.get("owner") != key.user_id or doc.get("delete"):
            continue
        from fusevault.vault.model.nodes import open_node_doc
        _, attrs = open_node_doc(doc, key)
        if any(n == name for _, n in attrs["links"]):
            return doc["_id"]
    raise AssertionError(f"no node {name}")


def _attrs(name: str, parent: str, size: int = 0) -> dict:
    now = time.time_ns()
    return {"mode": 0o100644, "uid": os.getuid(), "gid": os.getgid(), "rdev": 0, "size": size,
            "atime": now, "mtime": now, "ctime": now, "btime": now, "links": [[parent, name]], "xattrs": {},
            "target": None, "head": None, "manifest": None, "trashed": None, "previous": None, "epoch": 0}


def _sealed(fid: str, dek: bytes, attrs: dict) -> str:
    return b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", fid)))


def _planted(vault: Path, owner: str, name: str, fid: str | None = None, epoch: int = 0) -> dict:
    """A node of ``owner``'s with a new DEK sealed to their public key: what anyone can make."""
    user = _user(vault, owner)
    fid = fid or uuid.uuid4().hex
    dek = aead.new_key()
    attrs = {**_attrs(name, user["root"]), "epoch": epoch}
    return {"_id": fid, "type": "node", "owner": user["_id"],
            "owner_dek": b64e(seal_file_key(public_box(user), user["_id"], user["_id"], fid, epoch, dek)),
            "epoch": epoch, "delete": False, "enc": _sealed(fid, dek, attrs)}


def _warned(mnt: Path, fid: str) -> None:
    """The refusal is in ``fusevault status`` and in the mount's log."""
    status = fusevault("status", mnt, passphrase=None)
    assert status.returncode == 0, status.stderr
    assert any("WARNING" in line and fid in line for line in status.stdout.splitlines()), status.stdout
    logs = Path(os.environ["FUSEVAULT_STATE_DIR"]) / "logs"
    assert any(fid in p.read_text() for p in logs.glob("mount-*.log"))


def _serving(mnt: Path) -> None:
    (mnt / "after.txt").write_text("still serving")
    assert (mnt / "after.txt").read_text() == "still serving"
    os.unlink(mnt / "after.txt")


@pytest.fixture
def notes(vault: Path, tmp_path: Path) -> str:
    """alice's vault with notes.txt (two versions) and a folder; returns notes.txt's fid."""
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "notes.txt").write_text("first")
        (mnt / "notes.txt").write_text("genuine notes")
        (mnt / "docs").mkdir()
        (mnt / "docs" / "plan.txt").write_text("the plan")
    return _node_fid(vault, "alice", "notes.txt")


def test_a_planted_node_is_refused_unsigned_or_signed_by_a_user_without_write(vault: Path, tmp_path: Path,
                                                                             notes: str) -> None:
    _admin(vault, "user", "add", "mallory", "--uid", "2003", passphrase=MALLORY)
    unsigned = _planted(vault, "alice", "URGENT-from-your-bank.txt")
    by_mallory = _signed(_planted(vault, "alice", "URGENT-2.txt"), _key(vault, "mallory", MALLORY))
    adversary.put(vault, unsigned, by_mallory)
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert sorted(os.listdir(mnt)) == ["docs", "notes.txt"]
        assert (mnt / "notes.txt").read_text() == "genuine notes"
        assert (mnt / "docs" / "plan.txt").read_text() == "the plan"
        _warned(mnt, unsigned["_id"])
        _warned(mnt, by_mallory["_id"])
        _serving(mnt)


def test_replaced_contents_with_a_new_key_and_a_forged_owner_dek_are_refused(vault: Path, tmp_path: Path,
                                                                             notes: str) -> None:
    """epoch + 1 and a DEK sealed to alice's public key, over her existing file, by a store writer.

    At unlock the forged document is refused, with the alarm: her file is rebuilt from her own newest
    version (issue 22; it was left out before), never the forged (empty) contents."""
    old = adversary.get(vault, notes)
    forged = _planted(vault, "alice", "notes.txt", fid=notes, epoch=old["epoch"] + 1)
    adversary.put(vault, forged)
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "notes.txt").read_text() == "genuine notes"  # never the forged (empty) contents
        assert (mnt / "docs" / "plan.txt").read_text() == "the plan"
        _warned(mnt, notes)
        _serving(mnt)


def test_a_write_grantees_owner_dek_never_replaces_the_owners_key(vault: Path, tmp_path: Path) -> None:
    """bob may write alice's shared folder, and makes files there (owner_dek): he may not give
    one of alice's files a key of his own, at the same epoch or the next."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "proj").mkdir()
        (mnt / "proj" / "plan.txt").write_text("alice's plan")
        (mnt / "proj" / "todo.txt").write_text("alice's todo")
        assert fusevault("share", mnt / "proj", "--with", "bob", "--perm", "WRITE").returncode == 0
    with mounted(vault, tmp_path / "mnt", "--user", "bob", passphrase=BOB) as mnt:
        (mnt / "shared" / "alice" / "proj" / "by-bob.txt").write_text("bob's new file")
    bob = _key(vault, "bob", BOB)
    proj = _node_fid(vault, "alice", "proj")
    alice = _user(vault, "alice")
    forged = []
    for name, epoch in (("plan.txt", 0), ("todo.txt", 1)):
        fid, dek = _node_fid(vault, "alice", name), aead.new_key()
        sealed = seal_file_key(public_box(alice), alice["_id"], alice["_id"], fid, epoch, dek)
        doc = {"_id": fid, "type": "node", "owner": alice["_id"], "owner_dek": b64e(sealed), "epoch": epoch,
               "delete": False, "enc": _sealed(fid, dek, {**_attrs(name, proj), "epoch": epoch})}
        adversary.put(vault, _signed(doc, bob))
        forged.append(fid)
    with mounted(vault, tmp_path / "mnt") as mnt:
        listed = sorted(os.listdir(mnt / "proj"))
        assert "by-bob.txt" in listed and (mnt / "proj" / "by-bob.txt").read_text() == "bob's new file"
        # never bob's empty contents: hers, rebuilt from her own versions (issue 22)
        assert (mnt / "proj" / "plan.txt").read_text() == "alice's plan"
        assert (mnt / "proj" / "todo.txt").read_text() == "alice's todo"
        for fid in forged:
            _warned(mnt, fid)
        _serving(mnt)


def _recipient_forgery(vault: Path, fid: str, name: str, key: MasterKey) -> tuple[dict, dict]:
    """A node and a version document of alice's file, sealed under its DEK (which a READ recipient
    holds) and signed by that recipient: a valid AEAD everywhere."""
    alice = _user(vault, "alice")
    found = sharing.read_key(vault / "users" / key.user_id / "shared" / f"{alice['_id']}_{fid}.vfkey")
    dek = open_file_key(key.identity, alice["_id"], fid, found[0], found[1])
    doc = adversary.get(vault, fid)
    attrs = json.loads(aead.unseal(dek, b64d(doc["enc"]), aead.ad("node", fid)))
    vid = uuid.uuid4().hex
    attrs.update(size=3, head=vid, links=[[attrs["links"][0][0], name]])
    node = {k: v for k, v in doc.items() if k not in ("sig", "_rev")}
    node["enc"] = _sealed(fid, dek, attrs)
    plain = {"file_entry_ts": time.time_ns(), "file_location": "", "file_name": name,
             "file_iv": b64e(b"\0" * 12), "size": 3, "mtime": attrs["mtime"], "author": key.user_id,
             "manifest": attrs["manifest"], "parents": []}
    version = {"_id": vid, "type": "FilesMetaData", "fid": fid, "owner": alice["_id"],
               **{k: doc[k] for k in ("en_file_dek", "owner_dek") if k in doc}, "epoch": doc["epoch"],
               "delete": False,
               "enc": b64e(aead.seal(dek, json.dumps(plain).encode(), aead.ad("version", fid, vid)))}
    return _signed(node, key), _signed(version, key)


def test_a_read_recipients_forged_version_is_refused_by_the_owner_and_other_recipients(
        vault: Path, tmp_path: Path, notes: str) -> None:
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    _admin(vault, "user", "add", "carol", "--uid", "2002", passphrase=CAROL)
    with mounted(vault, tmp_path / "mnt") as mnt:
        for who in ("bob", "carol"):
            assert fusevault("share", mnt / "notes.txt", "--with", who, "--perm", "READ").returncode == 0
        versions = sorted(os.listdir(mnt / ".versions" / "notes.txt"))
    node, version = _recipient_forgery(vault, notes, "notes.txt", _key(vault, "bob", BOB))
    adversary.put(vault, version)  # a version alone: not in alice's history
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert sorted(os.listdir(mnt / ".versions" / "notes.txt")) == versions
        assert (mnt / "notes.txt").read_text() == "genuine notes"
        _warned(mnt, notes)
    adversary.put(vault, node)  # and the node naming it
    with mounted(vault, tmp_path / "mnt") as mnt:  # the owner: rebuilt from hers (issue 22), alarmed
        assert sorted(os.listdir(mnt)) == ["docs", "notes.txt"]
        assert (mnt / "notes.txt").read_text() == "genuine notes"
        _warned(mnt, notes)
        _serving(mnt)
    with mounted(vault, tmp_path / "mnt", "--user", "carol", passphrase=CAROL) as mnt:  # another recipient
        assert not (mnt / "shared" / "alice" / "notes.txt").exists()
        _warned(mnt, notes)


def test_a_read_recipients_forgery_arriving_while_mounted_changes_nothing(
        vault: Path, tmp_path: Path, notes: str, couchdb_url: str) -> None:
    """Through the CouchDB server alice syncs with: the node keeps what it had."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    assert fusevault("peer", "add", "server", couchdb_url, "--vault", vault, passphrase=None).returncode == 0
    server = adversary.Server(couchdb_url)
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert fusevault("share", mnt / "notes.txt", "--with", "bob", "--perm", "READ").returncode == 0
        versions = sorted(os.listdir(mnt / ".versions" / "notes.txt"))
        _wait(lambda: server.get(notes) is not None, "notes.txt on the server")
        node, version = _recipient_forgery(vault, notes, "renamed.txt", _key(vault, "bob", BOB))
        server.put(version)
        server.put({**node, "_rev": server.get(notes)["_rev"]})
        _wait(lambda: _alarmed(mnt, notes), "the alarm")
        assert sorted(os.listdir(mnt)) == ["docs", "notes.txt"]
        assert (mnt / "notes.txt").read_text() == "genuine notes"
        _wait(lambda: version["_id"] in {d["_id"] for d in docs_of_mounted(vault)}, "the version here")
        assert sorted(os.listdir(mnt / ".versions" / "notes.txt")) == versions
        _warned(mnt, notes)
        _serving(mnt)


def docs_of_mounted(vault: Path) -> list[dict]:
    return docs_of(vault, "FilesMetaData")


def _alarmed(mnt: Path, fid: str) -> bool:
    status = fusevault("status", mnt, passphrase=None).stdout
    return any("WARNING" in line and fid in line for line in status.splitlines())


def _wait(check, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.2)


@pytest.mark.parametrize("field", ["delete", "owner"])
def test_a_changed_clear_field_is_detected_and_not_obeyed(vault: Path, tmp_path: Path, notes: str,
                                                          field: str) -> None:
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    doc = adversary.get(vault, notes)
    adversary.put(vault, {**doc, field: True if field == "delete" else _user(vault, "bob")["_id"]})
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert sorted(os.listdir(mnt)) == ["docs", "notes.txt"]  # shown as its author signed it
        assert (mnt / "notes.txt").read_text() == "genuine notes"
        _warned(mnt, notes)
        (mnt / "notes.txt").write_text("written again")  # its next commit puts the signed fields back
    assert adversary.get(vault, notes)[field] == doc[field]


def test_an_unsigned_node_in_a_migrated_owners_name_is_refused(vault: Path, tmp_path: Path,
                                                              notes: str) -> None:
    """Stripping the signature (and setting ``delete``) is refused, with an alarm: the file is rebuilt
    from her own versions (issue 22; it was left out before), never deleted."""
    doc = {k: v for k, v in adversary.get(vault, notes).items() if k != "sig"}
    adversary.put(vault, {**doc, "delete": True})
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "notes.txt").read_text() == "genuine notes"
        assert (mnt / "docs" / "plan.txt").read_text() == "the plan"
        _warned(mnt, notes)
        _serving(mnt)


def test_a_vault_from_before_signatures_mounts_whole_then_refuses_unsigned_nodes(tmp_path: Path) -> None:
    """A format 1 vault (unsigned documents) mounts with every file; its owner's first unlock signs
    them, and from then on an unsigned node document in her name is refused."""
    import random
    import tarfile

    with tarfile.open(Path(__file__).parents[1] / "data" / "format1-vault.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    vault = tmp_path / "vault"
    assert not any("sig" in d for d in docs_of(vault, "node"))
    dense = random.Random(1).randbytes(1000)
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert sorted(os.listdir(mnt)) == ["dense", "doc", "sparse"]
        assert (mnt / "dense").read_bytes() == dense
        assert (mnt / "doc").read_bytes() == b"second\n" * 2000
        assert len(os.listdir(mnt / ".versions" / "doc")) == 2
    assert all("sig" in d for d in docs_of(vault, "node") + docs_of(vault, "FilesMetaData"))
    fid = _node_fid(vault, "alice", "dense")
    adversary.put(vault, {k: v for k, v in adversary.get(vault, fid).items() if k != "sig"})
    with mounted(vault, tmp_path / "mnt") as mnt:  # refused: rebuilt from her signed versions (issue 22)
        assert sorted(os.listdir(mnt)) == ["dense", "doc", "sparse"]
        assert (mnt / "dense").read_bytes() == dense
        assert (mnt / "doc").read_bytes() == b"second\n" * 2000
        _warned(mnt, fid)
        _serving(mnt)


def test_a_read_recipients_version_naming_itself_as_owner_stays_out_of_the_owners_history(
        vault: Path, tmp_path: Path, notes: str) -> None:
    """A version's ``owner`` must be the owner of the file its ``fid`` names (attack review): bob,
    holding READ, signs one of alice's file in his own name; it is neither listed, restorable nor
    counted by gc."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert fusevault("share", mnt / "notes.txt", "--with", "bob", "--perm", "READ").returncode == 0
        versions = sorted(os.listdir(mnt / ".versions" / "notes.txt"))
    bob = _key(vault, "bob", BOB)
    _, version = _recipient_forgery(vault, notes, "notes.txt", bob)
    version = _signed({**{k: v for k, v in version.items() if k != "sig"}, "owner": bob.user_id}, bob)
    adversary.put(vault, version)
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert sorted(os.listdir(mnt / ".versions" / "notes.txt")) == versions
        listed = fusevault("history", mnt / "notes.txt", passphrase=None)
        assert listed.returncode == 0 and version["_id"][:12] not in listed.stdout, listed.stdout
        restored = fusevault("restore", mnt / "notes.txt", "--version", version["_id"], passphrase=None)
        assert restored.returncode != 0
        assert (mnt / "notes.txt").read_text() == "genuine notes"
        _warned(mnt, notes)
        _serving(mnt)


def _reseal_block_0(vault: Path, notes: str) -> dict:
    """What a READ recipient (bob) who can write alice's vault folder can do: reseal block 0 of
    notes.txt's newest version in place under the file's key (valid AEAD, same associated data).
    Returns the file's attributes as alice sealed them."""
    from fusevault.vault.files.content import KIND_BLOCK, RECORD_HEAD, block_ad

    alice, bob = _user(vault, "alice"), _key(vault, "bob", BOB)
    found = sharing.read_key(vault / "users" / bob.user_id / "shared" / f"{alice['_id']}_{notes}.vfkey")
    dek = open_file_key(bob.identity, alice["_id"], notes, found[0], found[1])
    attrs = json.loads(aead.unseal(dek, b64d(adversary.get(vault, notes)["enc"]), aead.ad("node", notes)))
    (vf,) = list(vault.rglob(f"{notes}.vf"))
    data = bytearray(vf.read_bytes())
    ad = block_ad(notes, 0, attrs["head"], True)
    for at in range(len(data) - RECORD_HEAD.size):
        rest, kind = RECORD_HEAD.unpack_from(data, at)
        if kind != KIND_BLOCK or not 0 < rest <= len(data) - at - 4:
            continue
        sealed = bytes(data[at + RECORD_HEAD.size: at + 4 + rest])
        try:
            plain = aead.unseal(dek, sealed, ad)
        except Exception:
            continue
        forged = b"PLANTED BY BOB"[:len(plain)].ljust(len(plain), b"\0")
        data[at + RECORD_HEAD.size: at + 4 + rest] = aead.seal(dek, forged, ad)
        break
    else:
        raise AssertionError("block 0 of the head version not found")
    vf.write_bytes(bytes(data))
    return attrs


def _share_with_bob(vault: Path, tmp_path: Path) -> None:
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert fusevault("share", mnt / "notes.txt", "--with", "bob", "--perm", "READ").returncode == 0


def test_a_block_resealed_in_place_by_a_key_holder_is_found_by_check(vault: Path, tmp_path: Path,
                                                                     notes: str) -> None:
    """Attack review: a READ recipient who can write the vault folder reseals block 0 of alice's
    newest version under the file's key.  ``fusevault check`` compares every version's records
    with the digest its signed document holds, and reports it."""
    _share_with_bob(vault, tmp_path)
    clean = fusevault("check", vault, "--json")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    attrs = _reseal_block_0(vault, notes)
    result = fusevault("check", vault, "--json")
    assert result.returncode == 26, result.stdout + result.stderr  # errors.Damaged
    (state,) = [f for f in json.loads(result.stdout)["files"] if f["fid"] == notes]
    (newest,) = [v for v in state["versions"] if v["id"] == attrs["head"]]
    assert not newest["intact"] and "not those its version document names" in newest["problem"]
    assert all(v["intact"] for v in state["versions"] if v["id"] != attrs["head"])


def test_a_block_resealed_in_place_by_a_key_holder_is_refused_by_the_mount_and_export(
        vault: Path, tmp_path: Path, notes: str) -> None:
    """The same resealing, seen by alice's own mount: the record she wrote is not the one her
    signed version document names, so the read is EIO (never bob's bytes), ``status`` shows the
    alarm, ``export`` refuses it (one line naming the file, a distinct exit code), and the rest of the
    vault serves."""
    _share_with_bob(vault, tmp_path)
    _reseal_block_0(vault, notes)
    dest = tmp_path / "out"
    dest.mkdir()
    with mounted(vault, tmp_path / "mnt") as mnt:
        with pytest.raises(OSError) as err:
            (mnt / "notes.txt").read_bytes()
        assert err.value.errno == 5
        assert (mnt / "docs" / "plan.txt").read_text() == "the plan"  # the rest serves
        status = fusevault("status", mnt, passphrase=None)
        assert status.returncode == 0, status.stderr
        assert "WARNING" in status.stdout and notes in status.stdout
        assert "not what its author sealed" in status.stdout
        done = fusevault("export", mnt, dest)
        assert done.returncode == 5 and notes in done.stderr, done.stdout + done.stderr  # errors.CorruptData
        assert not any(b"PLANTED" in p.read_bytes() for p in dest.rglob("*") if p.is_file())
        (mnt / "docs" / "new.txt").write_text("still serving")
        assert (mnt / "docs" / "new.txt").read_text() == "still serving"
