"""Attack round 75b, through a real mount and a CouchDB-protocol server (pouchdb-server): hole (3) of
``tests/inprocess/test_attack_75b.py`` (its docstring gives the scene, cause and fix), made by the
server itself with no key: an unsigned node revision of her private file, sealed under a DEK sealed to
her public key, put as a winning sibling of her revision (``_bulk_docs`` with ``new_edits: false``).
Her mount pulls it, refuses it, settles the conflict, and signs the server's mode 0777 and ``user.evil``
into her file: ``stat`` and ``getxattr`` through her mount show them.
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import adversary
import httpx
from conftest import first_device, mounted, settled, wait_for

from fusevault.crypto import aead
from fusevault.crypto.identity import public_box, seal_file_key
from fusevault.encoding import b64e


def _servers_branch(url: str, fid: str) -> str:
    """What the server alone makes of her file (all of it clear to it), pushed as a winning branch."""
    server = adversary.Server(url)
    hers = server.get(fid, revs="true")
    assert hers is not None
    owner, epoch = hers["owner"], hers["epoch"]
    (version,) = [d for d in server.all("FilesMetaData") if d.get("fid") == fid]
    now = time.time_ns()
    attrs = {"mode": stat.S_IFREG | 0o777, "uid": 2202, "gid": 2202, "rdev": 0, "size": 0, "atime": now,
             "mtime": now, "ctime": now, "btime": now, "links": [[os.urandom(16).hex(), "x"]],
             "xattrs": {"user.evil": b64e(b"the server was here")}, "target": None, "head": version["_id"],
             "manifest": None, "trashed": None, "previous": None, "epoch": epoch,
             "changed": {"mode": now, "xattrs": now, "owner": now}, "seq": ["server", 1]}
    dek = os.urandom(32)
    doc = {"_id": fid, "type": "node", "owner": owner, "epoch": epoch, "delete": False,
           "owner_dek": b64e(seal_file_key(public_box(server.get(owner)), owner, owner, fid, epoch, dek)),
           "enc": b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", fid)))}
    history = hers["_revisions"]
    start = history["start"] + 1
    doc["_rev"] = f"{start}-{'f' * 32}"
    doc["_revisions"] = {"start": start, "ids": ["f" * 32, "e" * 32, *history["ids"][1:]]}
    httpx.post(f"{url}/_bulk_docs", json={"docs": [doc], "new_edits": False}, timeout=30).raise_for_status()
    return doc["_rev"]


def _live_leaves(url: str, fid: str) -> int:
    got = httpx.get(f"{url}/{fid}", params={"open_revs": "all"}, headers={"Accept": "application/json"},
                    timeout=30).raise_for_status().json()
    return sum(1 for row in got if "ok" in row and not row["ok"].get("_deleted"))


def _current(url: str, fid: str) -> str:
    return httpx.get(f"{url}/{fid}", timeout=30).raise_for_status().json()["_rev"]


def _shown(path: Path) -> tuple[int, bytes | None]:
    try:
        evil = os.getxattr(path, "user.evil")
    except OSError:
        evil = None
    return stat.S_IMODE(os.stat(path).st_mode), evil


def test_75b_3_the_servers_unsigned_branch_does_not_chmod_her_file_through_her_mount(
        couchdb_url: str, tmp_path: Path) -> None:
    laptop = first_device(couchdb_url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        (a / "diary.txt").write_bytes(b"alice's own\n")
        os.chmod(a / "diary.txt", 0o600)
        wait_for(lambda: settled(a), "her push")
        fid = adversary.Server(couchdb_url).all("FilesMetaData")[0]["fid"]
        before = _shown(a / "diary.txt")
        injected = _servers_branch(couchdb_url, fid)
        # Her mount pulled it and settled the conflict: one live leaf left on the server, not the injected.
        wait_for(lambda: _live_leaves(couchdb_url, fid) == 1 and _current(couchdb_url, fid) != injected
                 and settled(a), "her mount to settle the server's branch")
        after = _shown(a / "diary.txt")
    assert before == (0o600, None)
    assert after == before, f"her mount shows {after}"
