"""The records a signed version names are checked before they are used (issue 22, part 3).

Anyone holding a file's key (a READ recipient, or a server colluding with
one) can seal a block or manifest record that authenticates.  Two replicas
meet through a real pouchdb-server; the attacker, holding the key (the
owner's, in the test, playing a READ recipient who has the DEK), puts a
forged record on the server.  The replica that receives it must refuse the
version (EIO), never serve the forged bytes, and say so in its log and in
``fusevault status``.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from adversary import Server
from conftest import PASSPHRASE, fusevault, mounted

from fusevault import paths
from fusevault.crypto import aead
from fusevault.encoding import b64d
from fusevault.vault.files.content import KIND_BLOCK, RECORD_HEAD, block_ad
from fusevault.vault.format.manifest import KIND_HTREE, NEW_BLOCK_SIZE, manifest_label
from fusevault.vault.model.history import version_plain
from fusevault.vault.services.opening import unlock_vault
from services.test_sync import first_device, new_device, settled, wait_for

GENUINE = b"".join(bytes([65 + i]) * NEW_BLOCK_SIZE for i in range(3)) + b"the end"
DRAFT = b"the first draft, long superseded"
FINAL = b"the final text as it was signed, a little longer"


def _dek_of(vault: Path, fid: str, version: dict) -> bytes:
    """The file's key, as any holder of it has it."""
    unlocked = unlock_vault(vault, None, PASSPHRASE.encode())
    try:
        return unlocked.key.unwrap_dek(fid, b64d(version["en_file_dek"]))
    finally:
        unlocked.store.close()


def _versions(server: Server, fid: str) -> list[dict]:
    """The version documents of ``fid`` on the server."""
    return [d for d in server.all("FilesMetaData") if d.get("fid") == fid]


def _only_file(server: Server) -> str:
    (fid,) = {d["fid"] for d in server.all("FilesMetaData")}
    return fid


def _record(kind: int, sealed: bytes) -> str:
    return base64.b64encode(RECORD_HEAD.pack(len(sealed) + 1, kind) + sealed).decode()


def _status(mountpoint: Path) -> str:
    result = fusevault("status", mountpoint, passphrase=None)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _log(mountpoint: Path) -> str:
    path = paths.state_dir() / "logs" / f"mount-{paths.control_socket(mountpoint).stem}.log"
    return path.read_text()


def _read_fails_with_eio(path: Path) -> None:
    try:
        data = path.read_bytes()
    except OSError as err:
        assert err.errno == 5, err
        return
    raise AssertionError(f"read {len(data)} bytes, {data[:16]!r}...: the forged version was served")


def test_a_forged_block_record_is_refused_by_the_replica_it_reaches_first(
        couchdb_url: str, tmp_path: Path) -> None:
    laptop = first_device(couchdb_url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        (a / "report.txt").write_bytes(GENUINE)
        wait_for(lambda: settled(a), "the laptop to send the file")
    server = Server(couchdb_url)
    fid = _only_file(server)
    (version,) = _versions(server, fid)
    vid = version["_id"]
    dek = _dek_of(laptop, fid, version)
    # The holder of the key seals other bytes as block 1 of that version:
    # the record authenticates, and it replaces the genuine one on the server.
    forged = aead.seal(dek, b"F" * NEW_BLOCK_SIZE, block_ad(fid, 1, vid, False))
    doc = server.get(f"rec-{fid}-{vid}-1")
    server.put(dict(doc, data=_record(KIND_BLOCK, forged)))

    desktop = new_device(couchdb_url, tmp_path, "desktop")
    with mounted(desktop, tmp_path / "b") as b:
        wait_for(lambda: (b / "report.txt").exists(), "the file to reach the desktop")
        _read_fails_with_eio(b / "report.txt")
        status = _status(b)
        assert "WARNING" in status and vid in status, status
        assert vid in _log(b)
        # The mount still serves: a new file, and the others.
        (b / "mine.txt").write_bytes(b"written on the desktop")
        assert (b / "mine.txt").read_bytes() == b"written on the desktop"
        _read_fails_with_eio(b / "report.txt")  # refused again, never the forged bytes
    # The laptop, which wrote it, still has its own bytes.
    with mounted(laptop, tmp_path / "a") as a:
        assert (a / "report.txt").read_bytes() == GENUINE


def test_a_forged_manifest_record_is_refused_and_a_replaced_record_is_reported(
        couchdb_url: str, tmp_path: Path) -> None:
    laptop = first_device(couchdb_url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        (a / "report.txt").write_bytes(DRAFT)
        wait_for(lambda: settled(a), "the laptop to send the first version")
        (a / "report.txt").write_bytes(FINAL)
        server = Server(couchdb_url)
        fid = _only_file(server)
        dek = _dek_of(laptop, fid, _versions(server, fid)[0])

        def sent() -> list[tuple[int, int, str]]:
            return sorted((p["file_entry_ts"], p["size"], d["_id"])
                          for d in _versions(server, fid) for p in [version_plain(d, dek)])

        wait_for(lambda: settled(a) and sent()[-1][1] == len(FINAL), "the laptop to send the second version")
        final = sent()[-1]
        first = next(v for v in sent() if v[1] == len(DRAFT))
        # The manifest of the first version, sealed as the final one's: it
        # authenticates, and would read the first draft in its place.
        old = b64d(server.get(f"rec-{fid}-{first[2]}-m")["data"])
        plain = aead.unseal(dek, old[RECORD_HEAD.size:], aead.ad(manifest_label(KIND_HTREE), fid, first[2]))
        forged = aead.seal(dek, plain, aead.ad(manifest_label(KIND_HTREE), fid, final[2]))
        doc = server.get(f"rec-{fid}-{final[2]}-m")
        server.put(dict(doc, data=_record(KIND_HTREE, forged)))

        desktop = new_device(couchdb_url, tmp_path, "desktop")
        with mounted(desktop, tmp_path / "b") as b:
            wait_for(lambda: (b / "report.txt").exists(), "the file to reach the desktop")
            _read_fails_with_eio(b / "report.txt")
            status = _status(b)
            assert "WARNING" in status and final[2] in status, status
            assert final[2] in _log(b)
            os.listdir(b)  # still serving
            (b / "mine.txt").write_bytes(b"ok")
            assert (b / "mine.txt").read_bytes() == b"ok"

        # The laptop kept its own copy, and reports the one offered in its place.
        wait_for(lambda: "other bytes" in _status(a), lambda: f"the laptop to report it: {_status(a)}")
        assert f"rec-{fid}-{final[2]}-m" in _log(a)
        assert (a / "report.txt").read_bytes() == FINAL
