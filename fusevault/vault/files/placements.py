"""Whether the records a reader is about to use are the ones their version's author sealed.

Each version document binds the records it wrote (``records``, ``records_n``,
``manifest_sha256``: docs/FORMAT.md), and this replica keeps each record's
place and SHA-256 (store/places.py).  A reader checks a version's list
against its sealed document once (``version_shas``), then compares every
record it reads with it (vault/files/content.py); a record that differs is
refused (``refuse_record``): EIO, and an alarm for ``fusevault status``.
Records from peers are appended here wherever the ``.vf`` ends
(``append_arrived``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
from collections.abc import Callable
from pathlib import Path

from fusevault.crypto import aead
from fusevault.encoding import b64d
from fusevault.errors import CorruptData, Forged
from fusevault.store.places import Places
from fusevault.vault.format.vf import HEADER, MANIFEST_INDEX, append_lock, header_for

log = logging.getLogger(__name__)


def alarm(places: Places, subject: str, text: str) -> None:
    """Report a refusal to every user of the mount (``fusevault status``), or the log."""
    if not places.alarms:
        log.warning("%s", text)
    for alarms in places.alarms:
        alarms.warn("record", subject, text)


def version_shas(places: Places, fid: str, vid: str, dek: bytes,
                 read: Callable[[int, int], bytes]) -> tuple[dict[int, bytes] | None, bool]:
    """The SHA-256 of each record version ``vid`` wrote (index -1: its manifest,
    below: its manifest tree's nodes), once the list matches the digest its
    sealed document holds: each read of one of them is compared with it
    (``refuse_record``).  Own records and records from peers alike: a holder
    of the file's key who can write the vault folder can reseal a record in
    place, and only this digest tells.

    Returns (hashes, final): hashes None when there is nothing to compare
    with (a version from before the digest, or its document is gone or does
    not open); final False when that may change (its document has not
    arrived yet).  Raises Forged (EIO, an alarm) when the records differ from
    the digest, CorruptData while some are missing.  ``read(offset,
    length)``: a record's bytes here, for rows written before their hash was kept."""
    if (fid, vid) in places.refused:
        raise Forged(f"records of version {vid} of {fid} do not match it")
    rows = places.of_version(fid, vid)
    body = places.document_body(vid)
    if body is None:
        if any(row.arrived for row in rows):
            # Retention dropped the version's document before it came here:
            # nothing to check against (docs/SECURITY.md says so).
            log.info("records of version %s of %s arrived without its document: not checked", vid, fid)
            return None, False
        return None, True  # being committed by this process, or dropped by retention
    try:
        plain = json.loads(aead.unseal(dek, b64d(json.loads(body)["enc"]), aead.ad("version", fid, vid)))
        if not isinstance(plain, dict):
            raise ValueError
    except (CorruptData, KeyError, TypeError, ValueError):
        if any(row.arrived for row in rows):  # from a peer: refused, as it always was
            alarm(places, f"{fid}/{vid}", f"file {fid}: version {vid} that came from a peer is refused "
                  "(EIO): its version document does not open with the file's key (a forgery?)")
            raise Forged(f"records of version {vid} of {fid} do not match it") from None
        # Written here and damaged (or of an older key): nothing to compare with, as when it is
        # gone; `fusevault check` reports it and `--repair` gives the contents
        # a new version document (docs/SECURITY.md, "The records a version names").
        log.warning("version %s of %s: its document does not open: its records are not checked", vid, fid)
        return None, True
    if "records" not in plain and "manifest_sha256" not in plain:
        return None, True  # a version from before records were bound
    shas: dict[int, bytes] = {}
    try:
        for row in rows:
            shas[row.idx] = bytes.fromhex(row.sha) if row.sha else \
                hashlib.sha256(read(row.offset, row.length)).digest()
    except (TypeError, ValueError):
        _forged(places, fid, vid, "the hashes kept of its records")
    manifest = shas.get(MANIFEST_INDEX)
    if manifest is None:
        raise CorruptData(f"not every record of version {vid} of {fid} is here yet")
    if manifest.hex() != plain.get("manifest_sha256"):
        _forged(places, fid, vid, "its manifest record")
    blocks = [(idx, sha) for idx, sha in sorted(shas.items()) if idx != MANIFEST_INDEX]
    expected_n = plain.get("records_n", 0)
    if len(blocks) < expected_n:
        raise CorruptData(f"not every record of version {vid} of {fid} is here yet")
    digest = hashlib.sha256()
    for idx, sha in blocks:  # manifest tree nodes (negative indices) first, then blocks
        digest.update(struct.pack("<q", idx) + sha)
    if len(blocks) != expected_n or digest.hexdigest() != plain.get("records"):
        _forged(places, fid, vid, "its block records")
    return shas, True


def refuse_record(places: Places, fid: str, vid: str, idx: int) -> None:
    """A record read here is not the one its version's digest vouched for: Forged (EIO)."""
    what = "its manifest" if idx == MANIFEST_INDEX else f"record {idx}"
    alarm(places, f"{fid}/{vid}/{idx}", f"file {fid}: {what} of version {vid} is not what its author "
          "sealed: refused (EIO) (resealed in place by someone holding the file's key?)")
    raise Forged(f"file {fid}: {what} of version {vid} is not what its author sealed")


def _forged(places: Places, fid: str, vid: str, what: str) -> None:
    places.refused.add((fid, vid))
    alarm(places, f"{fid}/{vid}", f"file {fid}: version {vid} is refused (EIO): {what} differ from what "
          "its author sealed (a forgery by someone holding the file's key?)")
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
