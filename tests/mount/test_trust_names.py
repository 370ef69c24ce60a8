"""Names from documents are checked; export cannot leave its folder; sidecars are authenticated first.

The attacker here holds a file's key (a WRITE recipient, say) and the
owner's signing key is not needed for the attack on names: a node
document with a name such as ``../../../escaped.txt`` is sealed validly.
The test builds it with fusevault's own functions and the owner's keys
(sealed under the DEK and signed), so it passes every other check and only
the name check stands in the way.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from adversary import Server, put
from conftest import PASSPHRASE, fusevault, mounted
from services.test_sync import settled, wait_for

from fusevault.crypto import aead
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64e
from fusevault.vault.files.content import check_vfmeta, vfmeta_bytes
from fusevault.vault.model.nodes import NODE, open_node_doc
from fusevault.vault.services.opening import unlock_vault

BAD_NAMES = ["../../../escaped.txt", "a/b", "nul\x00x", ".", "..", "", "x" * 256]


def _nodes_by_name(vault: Path) -> tuple[dict, dict]:
    """(name -> node document, fid -> name) of alice's tree, read with her key."""
    unlocked = unlock_vault(vault, "alice", PASSPHRASE.encode())
    try:
        by_name, names = {}, {}
        for doc in unlocked.store.iter_type(NODE):
            _, attrs = open_node_doc(doc, unlocked.key)
            for _, name in attrs["links"]:
                by_name[name] = doc
                names[doc["_id"]] = name
        return by_name, names
    finally:
        unlocked.store.close()


def _rename_in_store(vault: Path, doc: dict, new_name: str) -> None:
    """Seal and sign a node document whose link carries ``new_name`` (a valid document, bad name)."""
    def rename(attrs: dict) -> None:
        attrs["links"] = [[parent, new_name] for parent, _ in attrs["links"]]
    _reseal(vault, doc, rename)


def _reseal(vault: Path, doc: dict, change, *, store: bool = True) -> dict:
    """``doc`` with its sealed attributes changed, sealed under its DEK and signed (put in the store)."""
    unlocked = unlock_vault(vault, "alice", PASSPHRASE.encode())
    try:
        key = unlocked.key
        dek, attrs = open_node_doc(doc, key)
        change(attrs)
        plain = json.dumps(attrs, separators=(",", ":")).encode()
        sealed = aead.seal(dek, plain, aead.ad("node", doc["_id"]))
        forged = {k: v for k, v in doc.items() if k != "sig"}
        forged["enc"] = b64e(sealed)
        forged = sign_doc(key.user_id, key.identity.sign, forged)
    finally:
        unlocked.store.close()
    if store:
        put(vault, forged)
    return forged


def _logs() -> str:
    logs = Path(os.environ["FUSEVAULT_STATE_DIR"]) / "logs"
    return "".join(p.read_text(errors="replace") for p in logs.glob("mount-*.log"))


def _make_files(vault: Path, mountpoint: Path, count: int) -> None:
    with mounted(vault, mountpoint) as mnt:
        (mnt / "docs").mkdir()
        for i in range(count):
            (mnt / "docs" / f"f{i}.txt").write_bytes(f"file {i}\n".encode())
        (mnt / "docs" / "keep.txt").write_bytes(b"kept\n")


def test_a_traversal_name_is_refused_the_folder_lists_and_export_stays_inside(vault: Path,
                                                                               tmp_path: Path) -> None:
    _make_files(vault, tmp_path / "mnt", 1)
    by_name, _ = _nodes_by_name(vault)
    victim = by_name["f0.txt"]
    _rename_in_store(vault, victim, "../../../escaped.txt")
    dest = tmp_path / "out" / "a" / "b"
    dest.mkdir(parents=True)
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert sorted(os.listdir(mnt / "docs")) == ["keep.txt"]  # no EIO: the rest lists
        assert (mnt / "docs" / "keep.txt").read_bytes() == b"kept\n"
        status = fusevault("status", mnt, passphrase=None)
        assert status.returncode == 0, status.stderr
        assert "WARNING" in status.stdout and victim["_id"] in status.stdout
        assert "refused a link" in status.stdout
        assert victim["_id"] in _logs() and "refused a link" in _logs()
        done = fusevault("export", mnt / "docs", dest)
        assert done.returncode == 0, done.stderr
        assert (dest / "docs" / "keep.txt").read_bytes() == b"kept\n"
        (mnt / "docs" / "new.txt").write_bytes(b"still serving\n")  # the mount still serves
        assert (mnt / "docs" / "new.txt").read_bytes() == b"still serving\n"
    escaped = [p for p in tmp_path.rglob("escaped.txt")]
    assert escaped == []
    assert sorted(p.name for p in (dest / "docs").iterdir()) == ["keep.txt"]


def test_names_with_slash_nul_dots_empty_or_too_long_are_refused(vault: Path, tmp_path: Path) -> None:
    _make_files(vault, tmp_path / "mnt", len(BAD_NAMES))
    by_name, _ = _nodes_by_name(vault)
    victims = [by_name[f"f{i}.txt"] for i in range(len(BAD_NAMES))]
    for doc, bad in zip(victims, BAD_NAMES):
        _rename_in_store(vault, doc, bad)
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert sorted(os.listdir(mnt / "docs")) == ["keep.txt"]
        assert sorted(os.listdir(mnt)) == ["docs"]
        status = fusevault("status", mnt, "--json", passphrase=None)
        assert status.returncode == 0, status.stderr
        refused = {a["subject"] for a in json.loads(status.stdout)["mounts"][0]["alarms"]
                   if a["kind"] == "bad-name"}
        assert refused == {doc["_id"] for doc in victims}


def test_a_bad_name_arriving_from_the_server_is_refused_while_mounted(couchdb_url: str,
                                                                      tmp_path: Path) -> None:
    vault = tmp_path / "laptop"
    assert fusevault("init", vault, "--user", "alice").returncode == 0
    added = fusevault("peer", "add", "server", couchdb_url, "--vault", vault, passphrase=None)
    assert added.returncode == 0, added.stderr
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "docs").mkdir()
        (mnt / "docs" / "f0.txt").write_bytes(b"file 0\n")
        (mnt / "docs" / "keep.txt").write_bytes(b"kept\n")
        wait_for(lambda: settled(mnt), "the files to reach the server")
    by_name, _ = _nodes_by_name(vault)
    victim = by_name["f0.txt"]
    forged = _rename_in_server_doc(vault, victim)
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert sorted(os.listdir(mnt / "docs")) == ["f0.txt", "keep.txt"]
        Server(couchdb_url).put(forged)

        def refused() -> bool:
            status = fusevault("status", mnt, "--json", passphrase=None)
            return any(a["kind"] == "bad-name" and a["subject"] == victim["_id"]
                       for a in json.loads(status.stdout)["mounts"][0]["alarms"])
        wait_for(refused, "the forged name to arrive")
        assert sorted(os.listdir(mnt / "docs")) == ["keep.txt"]  # the old name left, the new is refused
        assert (mnt / "docs" / "keep.txt").read_bytes() == b"kept\n"


def _rename_in_server_doc(vault: Path, doc: dict) -> dict:
    def rename(attrs: dict) -> None:
        attrs["links"] = [[parent, "../../../escaped.txt"] for parent, _ in attrs["links"]]
    return _reseal(vault, doc, rename, store=False)


def test_a_trash_entry_whose_old_path_leaves_the_vault_is_refused(vault: Path, tmp_path: Path) -> None:
    _make_files(vault, tmp_path / "mnt", 2)
    with mounted(vault, tmp_path / "mnt") as mnt:
        os.unlink(mnt / "docs" / "f0.txt")
        os.unlink(mnt / "docs" / "f1.txt")
    deleted = {}
    unlocked = unlock_vault(vault, "alice", PASSPHRASE.encode())
    try:
        for doc in unlocked.store.iter_type(NODE):
            _, attrs = open_node_doc(doc, unlocked.key)
            if attrs.get("trashed"):
                deleted[attrs["trashed"][0]] = doc
    finally:
        unlocked.store.close()
    assert sorted(deleted) == ["docs/f0.txt", "docs/f1.txt"]

    def escape(attrs: dict) -> None:
        attrs["trashed"] = ["../../escaped.txt", attrs["trashed"][1]]
    _reseal(vault, deleted["docs/f0.txt"], escape)
    with mounted(vault, tmp_path / "mnt") as mnt:
        listed = fusevault("trash", mnt, "--json")
        assert listed.returncode == 0, listed.stderr
        assert [t["path"] for t in json.loads(listed.stdout)["trash"]] == ["docs/f1.txt"]
        status = fusevault("status", mnt, "--json", passphrase=None)
        refused = [a["subject"] for a in json.loads(status.stdout)["mounts"][0]["alarms"]
                   if a["kind"] == "bad-name"]
        assert refused == [deleted["docs/f0.txt"]["_id"]]
        restored = fusevault("restore", mnt / "docs" / "f1.txt")
        assert restored.returncode == 0, restored.stderr
        assert (mnt / "docs" / "f1.txt").read_bytes() == b"file 1\n"
    assert list(tmp_path.rglob("escaped.txt")) == []


# --- sidecars: authenticated before any field is used


def _sidecar_case(vault: Path, tmp_path: Path) -> tuple[Path, dict, bytes, bytes]:
    """A file ``s.bin`` written and unmounted: (its sidecar path, its node document, its DEK, its bytes)."""
    data = os.urandom(200_000)
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "s.bin").write_bytes(data)
    by_name, _ = _nodes_by_name(vault)
    doc = by_name["s.bin"]
    unlocked = unlock_vault(vault, "alice", PASSPHRASE.encode())
    try:
        dek, _ = open_node_doc(doc, unlocked.key)
    finally:
        unlocked.store.close()
    return vault / "users" / doc["owner"] / "own" / f"{doc['_id']}.vfmeta", doc, dek, data


def _sidecar_alarms(mnt: Path) -> list[dict]:
    status = fusevault("status", mnt, "--json", passphrase=None)
    assert status.returncode == 0, status.stderr
    return [a for a in json.loads(status.stdout)["mounts"][0]["alarms"] if a["kind"] == "sidecar"]


def test_a_forged_sidecar_of_a_newer_epoch_naming_another_owner_is_not_used(vault: Path,
                                                                              tmp_path: Path) -> None:
    sidecar, doc, _, data = _sidecar_case(vault, tmp_path)
    genuine = json.loads(sidecar.read_bytes())
    forged = {"FILE_ID": doc["_id"], "OWNER_ID": "0" * 32, "ACL": ["0" * 32 + ":READ,WRITE"],
              "format": genuine["format"], "epoch": genuine.get("epoch", 0) + 1,
              "tag": b64e(os.urandom(16))}
    sidecar.write_text(json.dumps(forged))
    before = sidecar.read_bytes()
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "s.bin").read_bytes() == data  # the records' own authentication holds
        found = _sidecar_alarms(mnt)
        assert [a["subject"] for a in found] == [doc["_id"]] and "forged" in found[0]["text"]
        assert doc["_id"] in _logs()
    assert sidecar.read_bytes() == before  # nothing rewritten on the strength of an unchecked claim


def test_an_authenticated_sidecar_naming_another_owner_is_refused(vault: Path, tmp_path: Path) -> None:
    """A holder of the file's key can seal a sidecar; its OWNER_ID must still be the node's."""
    sidecar, doc, dek, _ = _sidecar_case(vault, tmp_path)
    genuine = json.loads(sidecar.read_bytes())
    sidecar.write_bytes(vfmeta_bytes(doc["_id"], "0" * 32, dek, ["0" * 32 + ":READ,WRITE"],
                                     genuine.get("epoch", 0)))
    with mounted(vault, tmp_path / "mnt") as mnt:
        with pytest.raises(OSError) as err:
            (mnt / "s.bin").read_bytes()
        assert err.value.errno == errno.EIO
        assert [a["subject"] for a in _sidecar_alarms(mnt)] == [doc["_id"]]
        (mnt / "other.txt").write_bytes(b"still serving\n")
        assert (mnt / "other.txt").read_bytes() == b"still serving\n"


def test_a_sidecar_of_an_older_epoch_is_written_again_from_the_documents(vault: Path,
                                                                           tmp_path: Path) -> None:
    """A forged sidecar that claims an older key is replaced by one made from the documents."""
    sidecar, doc, dek, data = _sidecar_case(vault, tmp_path)
    genuine = json.loads(sidecar.read_bytes())
    forged = dict(genuine, OWNER_ID="0" * 32, epoch=-1, tag=b64e(os.urandom(16)))
    sidecar.write_text(json.dumps(forged))
    with mounted(vault, tmp_path / "mnt") as mnt:
        assert (mnt / "s.bin").read_bytes() == data
    fields = check_vfmeta(sidecar.read_bytes(), doc["_id"], doc["owner"], dek, genuine.get("epoch", 0))
    assert fields is not None and fields["OWNER_ID"] == doc["owner"]


def test_user_and_group_names_that_would_be_dot_folders_are_refused(vault: Path) -> None:
    """A user's or group's name is a folder name in shared/ and groups/: never '.' or '..'."""
    env = {"FUSEVAULT_VAULT": str(vault)}
    adding = {**env, "FUSEVAULT_NEW_PASSPHRASE": PASSPHRASE}
    for name in (".", ".."):
        user = fusevault("user", "add", name, "--uid", "3001", env=adding)
        assert user.returncode == 12 and "invalid user name" in user.stderr, user.stderr
        group = fusevault("group", "add", name, "--owner", "alice", env=env)
        assert group.returncode == 12 and "invalid group name" in group.stderr, group.stderr
