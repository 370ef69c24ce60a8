"""Where content records sit, so that versions can travel between replicas.

A manifest names each block by the version that wrote it and its index, and
its offset in the ``.vf`` of the replica that wrote it.  Records that came
from a peer are appended to this replica's ``.vf`` wherever it ends, so each
replica keeps a table of places (``places`` in store.sqlite): one row per
record of every committed version, written with the version's documents.
A record is named the same everywhere (``record_id``); rows of records that
arrived say where they went here, and a reader looks there first.  A vault
that never synced has no arrived rows and reads exactly as before.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import struct
import threading
from collections.abc import Callable
from pathlib import Path

from fusevault.crypto import aead
from fusevault.encoding import b64d
from fusevault.errors import CorruptData, Forged
from fusevault.vault.files.content import HEADER, append_lock, header_for

log = logging.getLogger(__name__)

MANIFEST_INDEX = -1


def record_id(fid: str, vid: str, idx: int) -> str:
    """``rec-<fid>-<vid>-<i>``: ``i`` is a block's index, ``m`` the manifest
    (its root), ``n<k>`` the manifest tree node of index ``-2 - k``
    (vault/format/manifest_tree.py: ``k`` encodes its level and position)."""
    if idx == MANIFEST_INDEX:
        tail = "m"
    elif idx < MANIFEST_INDEX:
        tail = f"n{-idx - 2}"
    else:
        tail = str(idx)
    return f"rec-{fid}-{vid}-{tail}"


def parse_record_id(doc_id: str) -> tuple[str, str, int]:
    _, fid, vid, tail = doc_id.split("-")
    if tail == "m":
        return fid, vid, MANIFEST_INDEX
    digits = tail[1:] if tail.startswith("n") else tail
    if not digits.isdigit() or not digits.isascii():  # never a sign: a node is never a block
        raise ValueError(f"malformed record id {doc_id!r}")
    return fid, vid, -2 - int(digits) if tail.startswith("n") else int(digits)


def is_record(doc_id: str) -> bool:
    return doc_id.startswith("rec-")


class Placements:
    """Read access to the places of records that arrived from peers.

    Reads come from the trio thread and from worker threads: each thread has
    its own read-only SQLite connection (WAL lets them read while the mount writes).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()
        self._arrived: bool | None = None
        # (fid, vid) -> False: its records do not match its version document
        # (refused for the life of the process).  What matched is not kept
        # here: each reader compares with hashes it checked itself.
        self._verified: dict[tuple[str, str], bool] = {}
        # Where refusals are reported (the Alarms of each user of the mount).
        self.alarms: list = []

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                                  check_same_thread=False)
        return db

    @property
    def any_arrived(self) -> bool:
        if self._arrived is None:
            try:
                self._arrived = self._db().execute(
                    "SELECT 1 FROM places WHERE arrived = 1 LIMIT 1").fetchone() is not None
            except sqlite3.Error:  # no store yet, or one from before sync
                return False
        return self._arrived

    def note_arrival(self) -> None:
        self._arrived = True

    def arrived_of(self, fid: str) -> dict[tuple[str, int], tuple[int, int]]:
        rows = self._db().execute(
            "SELECT vid, idx, offset, length FROM places WHERE fid = ? AND arrived = 1", (fid,))
        return {(vid, idx): (offset, length) for vid, idx, offset, length in rows}

    def alarm(self, subject: str, text: str) -> None:
        if not self.alarms:
            log.warning("%s", text)
        for alarms in self.alarms:
            alarms.warn("record", subject, text)

    def version_shas(self, fid: str, vid: str, dek: bytes,
                     read: Callable[[int, int], bytes]) -> tuple[dict[int, bytes] | None, bool]:
        """The SHA-256 of each record version ``vid`` wrote (index -1: its manifest,
        below: its manifest tree's nodes), once the list matches the digest its
        sealed document holds: each read of one of them is compared with it
        (``refuse_record``).  Own records and records from peers alike: a holder
        of the file's key who can write the vault folder can reseal a record in
        place, and only this digest tells.

        Returns (hashes, final): hashes None when there is nothing to compare
        with (a version from before the digest, or its document is gone);
        final False when that may change (its document has not arrived yet).
        Raises Forged (EIO, an alarm) when the records differ from the digest,
        CorruptData while some are missing.  ``read(offset, length)``: a
        record's bytes here, for rows written before their hash was kept."""
        if self._verified.get((fid, vid)) is False:
            raise Forged(f"records of version {vid} of {fid} do not match it")
        db = self._db()
        rows = db.execute("SELECT idx, offset, length, sha, arrived FROM places WHERE fid = ? AND vid = ? "
                          "ORDER BY idx", (fid, vid)).fetchall()
        row = db.execute("SELECT body FROM docs WHERE id = ? AND deleted = 0", (vid,)).fetchone()
        if row is None:
            if any(arrived for *_, arrived in rows):
                # Retention dropped the version's document before it came here:
                # nothing to check against (docs/SECURITY.md says so).
                log.info("records of version %s of %s arrived without its document: not checked", vid, fid)
                return None, False
            return None, True  # being committed by this process, or dropped by retention
        try:
            sealed = b64d(json.loads(row[0])["enc"])
            plain = json.loads(aead.unseal(dek, sealed, aead.ad("version", fid, vid)))
            if not isinstance(plain, dict):
                raise ValueError
        except (CorruptData, KeyError, TypeError, ValueError):
            # Damaged (or of an older key): nothing to compare with, as when it is
            # gone; `fusevault check` reports it and `--repair` gives the contents
            # a new version document (docs/SECURITY.md, "Out of reach").
            log.warning("version %s of %s: its document does not open: its records are not checked", vid, fid)
            return None, True
        if "records" not in plain and "manifest_sha256" not in plain:
            return None, True  # a version from before records were bound
        shas: dict[int, bytes] = {}
        try:
            for idx, offset, length, sha, _ in rows:
                shas[idx] = bytes.fromhex(sha) if sha else hashlib.sha256(read(offset, length)).digest()
        except (TypeError, ValueError):
            self._forged(fid, vid, "the hashes kept of its records")
        manifest = shas.get(MANIFEST_INDEX)
        if manifest is None:
            raise CorruptData(f"not every record of version {vid} of {fid} is here yet")
        if manifest.hex() != plain.get("manifest_sha256"):
            self._forged(fid, vid, "its manifest record")
        blocks = [(idx, sha) for idx, sha in sorted(shas.items()) if idx != MANIFEST_INDEX]
        expected_n = plain.get("records_n", 0)
        if len(blocks) < expected_n:
            raise CorruptData(f"not every record of version {vid} of {fid} is here yet")
        digest = hashlib.sha256()
        for idx, sha in blocks:  # manifest tree nodes (negative indices) first, then blocks
            digest.update(struct.pack("<q", idx) + sha)
        if len(blocks) != expected_n or digest.hexdigest() != plain.get("records"):
            self._forged(fid, vid, "its block records")
        return shas, True

    def refuse_record(self, fid: str, vid: str, idx: int) -> None:
        """A record read here is not the one its version's digest vouched for: Forged (EIO)."""
        what = "its manifest" if idx == MANIFEST_INDEX else f"record {idx}"
        self.alarm(f"{fid}/{vid}/{idx}", f"file {fid}: {what} of version {vid} is not what its author "
                   "sealed: refused (EIO) (resealed in place by someone holding the file's key?)")
        raise Forged(f"file {fid}: {what} of version {vid} is not what its author sealed")

    def _forged(self, fid: str, vid: str, what: str) -> None:
        self._verified[(fid, vid)] = False
        self._refuse(fid, vid, f"{what} differ from what its author sealed")

    def _refuse(self, fid: str, vid: str, why: str) -> None:
        self.alarm(f"{fid}/{vid}", f"file {fid}: version {vid} is refused (EIO): "
                   f"{why} (a forgery by someone holding the file's key?)")
        raise Forged(f"records of version {vid} of {fid} do not match it")


def append_arrived(vf_path: Path, fid: str, records: list[bytes]) -> list[tuple[int, int]]:
    """Append records a peer sent to this replica's ``.vf``; their places here."""
    if not records:
        return []
    vf_path.parent.mkdir(parents=True, exist_ok=True)
    with append_lock(str(vf_path)):
        fd = os.open(vf_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            end = os.fstat(fd).st_size
            if end < HEADER.size:  # new here (or a crash left a torn header)
                os.pwrite(fd, header_for(fid), 0)
                end = HEADER.size
            places = []
            for record in records:
                places.append((end, len(record)))
                end += len(record)
            os.pwritev(fd, records, places[0][0])
            os.fsync(fd)
        finally:
            os.close(fd)
    return places
