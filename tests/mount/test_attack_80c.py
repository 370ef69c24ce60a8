"""Attack round 80c, an outsider: the CouchDB server between alice's devices (a real pouchdb-server on
loopback), holding what her devices pushed, with no key; through real mounts and the real command.

(docstring completed below, per hole)
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path

import httpx
from fusevault.vault.format.manifest import KIND_MANIFEST
from fusevault.vault.format.vf import KIND_BLOCK, RECORD_HEAD
from conftest import first_device, fusevault, mounted, new_device, settled, sync_status, wait_for

PLANTED = 6
MANIFEST_BYTES = 4 << 20  # each planted manifest record: 4 MiB (a place takes up to 2 GiB at a manifest's index)


def _vf_bytes(vault: Path, fids: set[str]) -> int:
    """What the vault folder holds on disk (allocated) for the ``.vf`` of ``fids``."""
    return sum(os.stat(path).st_blocks * 512 for path in (vault / "users").glob("*/own/*.vf") if path.stem in fids)


def _record(kind: int, length: int) -> bytes:
    """Noise shaped as a record: its head (length and kind) right, the rest random (no key needed)."""
    return RECORD_HEAD.pack(length - 4, kind) + os.urandom(length - RECORD_HEAD.size)


def _plant(url: str, owner: str, tail: str, records: list[bytes]) -> set[str]:
    """The server's own Record documents, each at a fresh file and version id no signed document names."""
    fids: set[str] = set()
    for data in records:
        fid, vid = secrets.token_hex(16), secrets.token_hex(16)
        fids.add(fid)
        doc = {"_id": f"rec-{fid}-{vid}-{tail}", "type": "Record", "owner": owner, "fid": fid,
               "data": base64.b64encode(data).decode()}
        httpx.put(f"{url}/{doc['_id']}", content=json.dumps(doc), timeout=60,
                  headers={"Content-Type": "application/json"}).raise_for_status()
    return fids


def _her_owner_id(server) -> str:
    (owner,) = {d["owner"] for d in server.all("node") if "owner" in d}
    return owner


def test_80c_1_records_no_version_names_do_not_stay_on_her_disk(couch, tmp_path: Path) -> None:
    url, server = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        (a / "a.txt").write_bytes(b"hers")
        wait_for(lambda: settled(a), "the first push")
        fids = _plant(url, _her_owner_id(server), "m",
                      [_record(KIND_MANIFEST, MANIFEST_BYTES) for _ in range(PLANTED)])
        wait_for(lambda: _vf_bytes(laptop, fids) >= PLANTED * MANIFEST_BYTES, "the planted records pulled")
        wait_for(lambda: settled(a), lambda: f"the pull: {sync_status(a)}")
        pulled = _vf_bytes(laptop, fids)
        gc = fusevault("gc", "--as-of", "2099-01-01", a)
        assert gc.returncode == 0, gc.stdout + gc.stderr
        kept = _vf_bytes(laptop, fids)
        assert (a / "a.txt").read_bytes() == b"hers"
    assert pulled >= PLANTED * MANIFEST_BYTES, f"the scene: the server's records were written here ({pulled})"
    assert kept == 0, (f"{kept} bytes of records no signed version names (the server's noise, {PLANTED} "
                       "files that no node or version document names) stay on her disk after gc")


def test_80c_2_an_oversized_block_record_does_not_hold_her_push_pending(couch, tmp_path: Path) -> None:
    url, server = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        (a / "a.txt").write_bytes(b"hers")
        wait_for(lambda: settled(a), "the first push")
        fids = _plant(url, _her_owner_id(server), "0", [_record(KIND_BLOCK, 1 << 17)])
        wait_for(lambda: _vf_bytes(laptop, fids) > 0, "the planted record pulled")
        wait_for(lambda: sync_status(a)["pending_down"] == 0, "the pull")
        wait_for(lambda: settled(a), lambda: f"sync settled; it says {sync_status(a)}", timeout=30)


def _plant_huge_index(url: str, owner: str) -> None:
    """One Record document whose index (its id's tail, digits) is past what SQLite's integer holds."""
    fid, vid = secrets.token_hex(16), secrets.token_hex(16)
    doc = {"_id": f"rec-{fid}-{vid}-{10**30}", "type": "Record", "owner": owner, "fid": fid,
           "data": base64.b64encode(_record(KIND_BLOCK, 100)).decode()}
    httpx.put(f"{url}/{doc['_id']}", content=json.dumps(doc), timeout=60,
              headers={"Content-Type": "application/json"}).raise_for_status()


def test_80c_3_a_record_id_with_a_huge_index_does_not_stop_a_join(couch, tmp_path: Path) -> None:
    url, server = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        (a / "one.txt").write_bytes(b"one")
        wait_for(lambda: settled(a), "the first push")
    _plant_huge_index(url, _her_owner_id(server))
    joined = fusevault("init", tmp_path / "desktop", "--join", url, "--user", "alice")
    said = joined.stdout + joined.stderr
    assert "internal error" not in said and joined.returncode == 0, said[-400:]


def test_80c_3_a_record_id_with_a_huge_index_does_not_stop_her_pull(couch, tmp_path: Path) -> None:
    url, server = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        (a / "one.txt").write_bytes(b"one")
        wait_for(lambda: settled(a), "the first push")
    desktop = new_device(url, tmp_path, "desktop")
    _plant_huge_index(url, _her_owner_id(server))
    with mounted(laptop, tmp_path / "a") as a, mounted(desktop, tmp_path / "b") as b:
        (a / "two.txt").write_bytes(b"written on the laptop after the plant")
        wait_for(lambda: (b / "two.txt").exists(), lambda: (
            f"two.txt on the desktop; the laptop's sync: {sync_status(a)}; the desktop's: {sync_status(b)}"),
            timeout=45)
        assert sync_status(b)["error"] is None, sync_status(b)
