"""Attack round 80c, an outsider: the CouchDB server between alice's devices (a real pouchdb-server on
loopback, ``couch`` fixture), holding what her devices pushed, with no key; through real mounts and the
real ``fusevault`` command.  Every planted document below is plain HTTP to the server's database: a
member who syncs through the same database (READ or WRITE) can put them there too.

Hole (1), medium (a flood: her disk filled with the server's bytes, for good): Record documents that no
  signed document names.
  Attacker: the server (or any writer of its database).  No key.
  Steps: alice's laptop syncs (a.txt pushed); the server PUTs 6 documents
    ``rec-<fresh fid>-<fresh vid>-m`` (type Record, owner her id, data: 4 MiB of noise behind a right
    record head; a manifest's place may be up to 2 GiB, store/places.py ``_RECORD_MOST``); her mount
    pulls; she runs ``fusevault gc --as-of 2099-01-01``.
  Seen: 6 new ``.vf`` files under users/<her id>/own/ (25 MB on disk), for file ids no node or version
    names; gc frees none of it; ``fusevault check`` says "unreferenced in .vf files: 0 B" (it walks
    only the files her nodes name); each such row is also pushed on to her other peers (a backup
    buddy: read, not run).  An owner id that is no user's makes a users/<that id>/own/ folder (run by
    hand: ``info`` and ``user list`` unmoved).  Nothing bounds how many: the server's storage is the
    only limit, and each pull writes what it is offered.
  Expected: what no signed version names is not kept for good: gc (or the pull, once its version
    never comes) removes a ``.vf`` no node names, as it removes a purged file's; check counts it.
  Cause: sync/replicator.py ``pull`` fetches and places every record id in the feed that is not
    placed here (``_placed``), whatever names it; sync/content_docs.py ``place_records`` /
    vault/files/placements.py ``append_arrived`` append it, unbounded; vault/services/gc.py
    ``collect``/``_remove_files`` walk only her nodes' files, so an orphan ``.vf`` is never removed.
  Fix (suggested): gc (and check) walk the ``own`` folders and drop (count) ``.vf`` files and places
    rows whose fid no node (live, trashed or held back) names, after a grace while for records that
    came before their version document; or hold arrived records of a version no document names yet
    in a bounded area.
  The same into her real file's ``.vf`` (4 records at one.txt's fid, fresh version ids): 16 MiB appended
    to it; ``check`` then says "unreferenced in .vf files: 16.0 MiB ... `fusevault gc` frees what old
    versions held", but gc says "0 B freed" and frees nothing (it frees a file's unused ranges only when
    it drops one of its versions: gc.py ``_thin``/``free_unused``): the command she is pointed to
    does not do what it is said to.
  Tests: ``test_80c_1_records_no_version_names_do_not_stay_on_her_disk``,
    ``test_80c_1_records_planted_in_her_files_vf_are_freed_by_gc`` (strict xfails until fixed: gc removes
    and punches records no document names, after a grace while shortened here, ``quick_gc_grace``;
    docs/SECURITY.md "Round 80c (1)").

Hole (2), low (``sync status`` says documents wait to go when none do; read, not run: until a later row
  of hers moves the checkpoint): one
  oversized block record from the server.
  Steps: as (1), one ``rec-<fid>-<vid>-0`` of 128 KiB (a block record is at most 64 KiB + 33:
    places.py ``_BLOCK_MOST``).
  Seen: the pull appends it and inserts its ``places`` row (``insert_arrived`` takes what
    ``place_records`` made, unchecked); the push then reads past it ("a places row of store.sqlite that
    fusevault never writes, left out": ``since``) but never moves its checkpoint past a tail of such
    rows (``_push_records`` advances only on rows ``since`` returned), while ``pending_up``
    (``count_since``) counts them: ``sync status`` says "up 1" for good while idle; a scene (or a
    script) that waits for her device to have sent everything waits forever.  The store now holds a row
    that its own check calls tampered with, put there by the pull.
  Expected: the pull refuses a record longer than its index allows (said, not placed); the push's
    checkpoint moves past rows it leaves out, and ``count_since`` does not count them.
  Cause: sync/content_docs.py ``place_records`` (no ``checked_place``); replicator.py
    ``_push_records``; store/places.py ``since``/``count_since``.
  Test: ``test_80c_2_an_oversized_block_record_does_not_hold_her_push_pending`` (strict xfail).

Hole (3), medium (every device's sync stops for good, and every join crashes: "internal error"): one
  Record document whose index is past SQLite's integer.
  Steps: the server PUTs ``rec-<fid>-<vid>-1000000000000000000000000000000`` (or ``-n<as many digits>``:
    a node index keeps its level in the low 3 bits, so it passes ``is_node_index``); her devices pull.
  Seen: every pull of every device fails ("sync with server failed ... OverflowError: Python int too
    large to convert to SQLite INTEGER"; ``sync status``: "internal error: see the mount's log",
    retried every second): the laptop's new two.txt never reaches the desktop, and nothing the laptop
    writes is pushed either (its round starts with the pull); ``fusevault init --join`` ends in
    "fusevault: internal error (OverflowError ...); please report it", exit 70.  Round 40b (2) fixed the
    same effect for a deletion or a non-record at a record's id; round 78c (1) bounds such an index
    read from store.sqlite, but not from the feed.
  Expected: the id refused as malformed (said once, not placed), the rest of the batch taken.
  Cause: sync/content_docs.py ``parse_record_id`` / ``_checked``: ``idx >= -1 or is_node_index(idx)``
    with no upper bound (places.py's ``_LOWEST``/``_HIGHEST`` are not applied); replicator.py
    ``_placed`` hands the index to store/places.py ``find`` (sqlite3 OverflowError), outside any catch.
  Fix (suggested): ``_checked`` (and ``parse_record_id``) refuse an index outside ``checked_place``'s
    bounds; ``_placed`` skips what ``malformed`` refuses.
  Tests: ``test_80c_3_a_record_id_with_a_huge_index_does_not_stop_a_join``,
    ``test_80c_3_a_record_id_with_a_huge_index_does_not_stop_her_pull`` (strict xfails).

Hole (4), medium (every device's sync stops for good, and every join crashes, as (3)): one document
  whose id holds a lone surrogate.
  Steps: the server (or a member writing its database) POSTs ``{"docs": [{"_id": "ab\\ud800cd",
    "type": "node"}]}`` to ``_bulk_docs`` (JSON may escape a lone surrogate; pouchdb-server stores it
    and lists it in ``_changes`` as such); her devices pull.
  Seen: "UnicodeEncodeError: 'utf-8' codec can't encode ...: surrogates not allowed" at every pull of
    every device ("internal error: see the mount's log", retried every second; neither device's new
    file reaches the other); ``init --join``: "fusevault: internal error (UnicodeEncodeError ...)", exit 70.
  Expected: the id refused (said once, as 40b (2) says a non-record at a record's id), the batch taken.
  Cause: encoding.py ``loads_untrusted`` takes lone surrogates (its own text is decoded with
    ``surrogatepass``, and ``\\ud800`` escapes pass); sync/replicator.py ``pull`` -> ``_not_ours`` binds
    the id to SQLite (``SELECT rev FROM docs WHERE id = ?``) outside any catch; a record id so made
    reaches ``_placed`` the same way (read, not run).
  Fix (suggested): ``loads_untrusted`` refuses a text holding a surrogate (RefusedJson, as it refuses
    NaN), or the pull drops an id (and a body) that is not valid Unicode, said once.
  The same with a good hex id and ``"type": "\\udc00"``: store/local.py ``put`` binds the clear type
    column (``body.get("type")``), same error, same effect.  (Held: a node or Share body with hex id
    whose ``owner``/``enc`` or a key is a lone surrogate: "refused a malformed Share document", sync on.)
  Tests: ``test_80c_4_a_document_id_with_a_lone_surrogate_does_not_stop_a_join[id|type]``,
    ``test_80c_4_a_document_id_with_a_lone_surrogate_does_not_stop_her_pull[id|type]`` (strict xfails).

Hole (5), low (a folder name of her drive read by the server; borderline: "settings" are listed as clear
  in SECURITY.md's Peers section, but "What is protected" names file and directory names, and this one is
  one): ``import_into``.
  Steps: alice makes "Divorce papers 2026/" in her drive and runs ``fusevault config set import_into
    "Divorce papers 2026"``; her device pushes.
  Seen: her UserDetails document on the server holds ``"import_into": "Divorce papers 2026"`` in clear
    (signed, not sealed); the folder's own node keeps its name sealed.  The same holds for the absolute
    paths ``source_dir_to_watch`` / ``target_dir_to_dump`` (local folder names: not run).
  Expected: names (of her drive, and her local folders) sealed under her key like the tree's; the
    signature can stay over the sealed value.
  Cause: vault/model (UserDetails settings fields, FORMAT.md "UserDetails"): settings are clear fields.
  Test: ``test_80c_5_the_server_does_not_read_the_name_of_her_import_folder`` (strict xfail).

Tried and held (run through pouchdb-server, not kept): a genuine FilesMetaData copied under a fresh id
(refused: "does not carry a valid signature", history unchanged); FileKey documents (``vfkey-u``/
``vfkey-g``) forged at fresh ids (no file, no folder written, sync on); her node and version documents
with ``epoch``/``owner``/``fid``/``sig``/``type`` set to 10**30 (refused and said, sync and a join go
on); a node / Share body with a lone surrogate in ``owner``/``enc`` or a key ("malformed Share", sync on);
alarm texts with server-made ids (printed through ``one_line``/``shown``).  Read, not run: a record id
``-00`` beside ``-0`` (places keep the first; no more than serving other bytes at the id); an answer past
JSON_LIMIT (bulk_get halves its ask).
Not tried (time): members' (READ/WRITE) scenes, groups, history/restore/trash under a replaying server.

Run (-n 2, this file, 2026-12-07 ~21:10 UTC): 10 xfailed; each fails with --runxfail at its own assertion.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from pathlib import Path

import httpx
import pytest
from conftest import (
    first_device,
    fusevault,
    mount_status,
    mounted,
    new_device,
    settled,
    sync_status,
    wait_for,
)

from fusevault.vault.format.manifest import KIND_MANIFEST
from fusevault.vault.format.vf import KIND_BLOCK, RECORD_HEAD

PLANTED = 6
MANIFEST_BYTES = 4 << 20  # each planted manifest record: 4 MiB (a manifest's place may be up to 2 GiB)
GRACE = 1.5  # past FUSEVAULT_GC_GRACE_SECONDS (``quick_gc_grace``): the planted .vf files left unchanged


def _vf_bytes(vault: Path, fids: set[str]) -> int:
    """What the vault folder holds on disk (allocated) for the ``.vf`` of ``fids``."""
    return sum(os.stat(path).st_blocks * 512
               for path in (vault / "users").glob("*/own/*.vf") if path.stem in fids)


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


@pytest.mark.usefixtures("quick_gc_grace")
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
        time.sleep(GRACE)  # gc's grace for records that came before their version's documents
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
        # Refused at the pull (larger than any block record), said, never placed: nothing left pending.
        wait_for(lambda: any("larger than any fusevault writes" in x["text"]
                             for x in mount_status(a)["alarms"]), "the oversized record refused")
        wait_for(lambda: sync_status(a)["pending_down"] == 0, "the pull")
        wait_for(lambda: settled(a), lambda: f"sync settled; it says {sync_status(a)}", timeout=30)
        assert _vf_bytes(laptop, fids) == 0


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
    joined = fusevault("init", str(tmp_path / "desktop"), "--join", url, "--user", "alice")
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


SURROGATE_BODIES = {
    "id": '{"docs": [{"_id": "ab\\ud800cd", "type": "node"}]}',
    "type": '{"docs": [{"_id": "%s", "type": "\\udc00"}]}' % ("a" * 32),
}


def _plant_surrogate(url: str, where: str) -> None:
    """One document whose id (or clear ``type``) holds a lone surrogate: JSON may say so (``\\ud800``),
    and pouchdb-server stores and lists it; UTF-8 (SQLite's text) has no such character."""
    body = SURROGATE_BODIES[where]
    httpx.post(f"{url}/_bulk_docs", content=body, timeout=60,
               headers={"Content-Type": "application/json"}).raise_for_status()


@pytest.mark.parametrize("where", list(SURROGATE_BODIES))
def test_80c_4_a_document_id_with_a_lone_surrogate_does_not_stop_a_join(couchdb_url: str, tmp_path: Path,
                                                                        where: str) -> None:
    laptop = first_device(couchdb_url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        (a / "one.txt").write_bytes(b"one")
        wait_for(lambda: settled(a), "the first push")
    _plant_surrogate(couchdb_url, where)
    joined = fusevault("init", str(tmp_path / "desktop"), "--join", couchdb_url, "--user", "alice")
    said = joined.stdout + joined.stderr
    assert "internal error" not in said and joined.returncode == 0, said[-400:]


@pytest.mark.parametrize("where", list(SURROGATE_BODIES))
def test_80c_4_a_document_id_with_a_lone_surrogate_does_not_stop_her_pull(couchdb_url: str, tmp_path: Path,
                                                                         where: str) -> None:
    laptop = first_device(couchdb_url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        (a / "one.txt").write_bytes(b"one")
        wait_for(lambda: settled(a), "the first push")
    desktop = new_device(couchdb_url, tmp_path, "desktop")
    _plant_surrogate(couchdb_url, where)
    with mounted(laptop, tmp_path / "a") as a, mounted(desktop, tmp_path / "b") as b:
        (a / "two.txt").write_bytes(b"written on the laptop after the plant")
        wait_for(lambda: (b / "two.txt").exists(), lambda: (
            f"two.txt on the desktop; the laptop's sync: {sync_status(a)}; the desktop's: {sync_status(b)}"),
            timeout=45)
        assert sync_status(b)["error"] is None, sync_status(b)


@pytest.mark.usefixtures("quick_gc_grace")
def test_80c_1_records_planted_in_her_files_vf_are_freed_by_gc(couch, tmp_path: Path) -> None:
    url, server = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        (a / "one.txt").write_bytes(b"first")
        wait_for(lambda: settled(a), "the first push")
        owner = _her_owner_id(server)
        (fid,) = {v["fid"] for v in server.all("FilesMetaData")}
        for _ in range(4):  # fresh version ids of her real file: appended to her own .vf
            vid = secrets.token_hex(16)
            server.put({"_id": f"rec-{fid}-{vid}-m", "type": "Record", "owner": owner, "fid": fid,
                        "data": base64.b64encode(_record(KIND_MANIFEST, MANIFEST_BYTES)).decode()})
        wait_for(lambda: _vf_bytes(laptop, {fid}) >= 4 * MANIFEST_BYTES, "the planted records pulled")
        wait_for(lambda: settled(a), lambda: f"the pull: {sync_status(a)}")
        time.sleep(GRACE)  # gc's grace for records that came before their version's documents
        gc = fusevault("gc", "--as-of", "2099-01-01", str(a))
        assert gc.returncode == 0, gc.stdout + gc.stderr
        kept = _vf_bytes(laptop, {fid})
        assert (a / "one.txt").read_bytes() == b"first"
    check = fusevault("check", str(laptop))
    assert "16.0 MiB" in check.stdout, f"the scene: check calls them unreferenced, for gc: {check.stdout}"
    assert kept < MANIFEST_BYTES, (f"{kept} bytes in one.txt's .vf after gc, which check calls unreferenced "
                                   "and says gc frees: gc said 0 B freed")


@pytest.mark.xfail(strict=True, reason="80c (5): the name of her import folder is clear text on the server")
def test_80c_5_the_server_does_not_read_the_name_of_her_import_folder(couch, tmp_path: Path) -> None:
    url, server = couch
    laptop = first_device(url, tmp_path)
    with mounted(laptop, tmp_path / "a") as a:
        (a / "Divorce papers 2026").mkdir()
        (a / "Divorce papers 2026" / "note.txt").write_bytes(b"hers")
        result = fusevault("config", "set", "import_into", "Divorce papers 2026", "--vault", str(laptop))
        assert result.returncode == 0, result.stdout + result.stderr
        wait_for(lambda: settled(a), "the push")
    held = json.dumps(server.all())
    assert "note.txt" not in held, "the scene: the file's name is sealed"
    assert "Divorce papers" not in held, "her folder's name (import_into) reached the server in clear"
