"""Whether the records a reader is about to use are the ones their version's author sealed.

Each version document binds the records it wrote (``records``, ``records_n``,
``manifest_sha256``: docs/FORMAT.md), and this replica keeps each record's
place and SHA-256 (store/places.py).  A reader checks a version's list
against its sealed document once (``version_shas``), then compares every
record it reads with it (vault/files/content.py); a record that differs is
refused (``refuse_record``): EIO, and an alarm for ``fusevault status``.
Records from peers are appended here wherever the ``.vf`` ends
(``append_arrived``).

A vault kept in CouchDB has no ``places`` table (store/couch.py
``CouchPlaces``): the same check takes a version's records from its own
manifest, read where its signed document says and compared with
``manifest_sha256`` first (``_rows_from_manifest``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
from collections.abc import Callable
from typing import NoReturn

from fusevault.crypto import aead
from fusevault.encoding import b64d, loads_untrusted
from fusevault.errors import CorruptData, Forged
from fusevault.store.places import PlaceRow, Places, sealed_here
from fusevault.vault.format import inside
from fusevault.vault.format.layout import Layout
from fusevault.vault.format.manifest import KIND_HTREE
from fusevault.vault.format.vf import HEADER, MANIFEST_INDEX, append_lock, header_for

log = logging.getLogger(__name__)


def alarm(places: Places, subject: str, text: str) -> None:
    """Report a refusal to every user of the mount (``fusevault status``), or the log."""
    if not places.alarms:
        log.warning("%s", text)
    for alarms in places.alarms:
        alarms.warn("record", subject, text)


def version_shas(places: Places, fid: str, vid: str, dek: bytes,
                 read: Callable[[int, int], bytes],
                 head: bool = False,
                 own_records: OwnRecords | None = None) -> tuple[dict[int, bytes] | None, bool]:
    """The SHA-256 of each record version ``vid`` wrote (index -1: its manifest,
    below: its manifest tree's nodes), once the list matches the digest its
    signed document holds: each read of one of them is compared with it
    (``refuse_record``).  Own records and records from peers alike: a holder
    of the file's key who can write the vault folder can reseal a record in
    place, and only this digest tells.

    The digest is taken only from a document whose signature and author hold
    (``places.admit``: vault/tree/authorship.py ``version_ok``, as history
    admits versions): a document that exists but does not open, is not
    admitted, or holds no digest though it is signed by a writer who wrote
    one is refused (Forged: EIO, an alarm), never "not checked".

    Returns (hashes, final): hashes None when there is nothing to compare
    with: a version signed before digests existed, or one whose document is
    gone and that is not the file's current version (``head``: named by its
    signed node), as retention drops older versions' documents
    (docs/SECURITY.md, "Out of reach").  final False when that may change.
    Raises Forged when the records differ from the digest or the current
    version's document is missing, CorruptData while some are missing.
    ``read(offset, length)``: a record's bytes here, for rows written before
    their hash was kept.  ``own_records``: where a vault kept in CouchDB finds
    the records a version wrote without a ``places`` table
    (``_rows_from_manifest``)."""
    if (fid, vid) in places.refused:
        raise Forged(f"records of version {vid} of {fid} do not match it")
    if (fid, vid) in places.vouched and places.judged(fid, vid):
        # The records are checked once per version for the life of the process,
        # the document once per judge (a shared mount: each user's view judges it).
        return places.vouched[(fid, vid)], True
    rows = places.of_version(fid, vid)
    body = places.document_body(vid)
    if body is None:
        if head and sealed_here(fid, vid):
            return None, False  # sealed by this process a moment ago: its commit is on its way
        if head and not any(row.arrived for row in rows):
            # The version its signed node names, written here: its document is
            # committed with the node, so it is gone only if someone took it away.
            _forged(places, fid, vid, "its version document is missing, so its records")
        if head:  # from a peer: its document has not arrived yet; read it once it has
            raise CorruptData(f"the document of version {vid} of {fid} is not here yet")
        if any(row.arrived for row in rows):
            # Retention dropped the version's document before it came here:
            # nothing to check against (docs/SECURITY.md says so).
            log.info("records of version %s of %s arrived without its document: not checked", vid, fid)
            return None, False
        if not places.rows_kept and not sealed_here(fid, vid):
            # A vault kept in CouchDB: the server may delete any document, and nothing
            # here (no rows) tells a document retention dropped from one it took away
            # while a holder of the key resealed a record the current version inherits
            # (a format 4 manifest names blocks by the version that wrote them).
            # Refused: such records are never read with nothing vouching for them.
            places.refused.add((fid, vid))
            alarm(places, f"{fid}/{vid}", f"file {fid}: version {vid} is refused (EIO): its version "
                  "document is missing (deleted in the database?), so nothing vouches for the records it "
                  "wrote (`fusevault upgrade` cannot vouch for them either)")
            raise Forged(f"the document of version {vid} of {fid} is missing: nothing vouches for it")
        return None, True  # being committed by this process, or dropped by retention
    try:
        doc = loads_untrusted(body)
        plain = loads_untrusted(aead.unseal(dek, b64d(doc["enc"]), aead.ad("version", fid, vid)))
        if not isinstance(plain, dict) or not isinstance(doc, dict):
            raise ValueError
        doc["_id"] = vid  # kept beside the body (store/local.py), signed with it
        if doc.get("fid") != fid:
            # Its clear ``fid`` is what the signature and the writer's grant are
            # judged by (vault/tree/authorship.py): a version of another file,
            # one its signer may write, vouches for nothing here.
            raise ValueError
    except (CorruptData, KeyError, TypeError, ValueError):
        # Damaged, or resealed by a holder of the file's key: nothing here
        # tells which, and what it vouches for cannot be known: refused.
        _forged(places, fid, vid, "its version document does not open, so its records")
    if places.admit is not None and not places.admits(fid, vid, doc):  # it said why (an alarm)
        # Refused under these views only (another user's view may admit it): no ``refused``.
        raise Forged(f"the document of version {vid} of {fid} is not signed by who may write it")
    if (fid, vid) in places.vouched:  # its records were checked under another view
        return places.vouched[(fid, vid)], True
    if "records" not in plain and "manifest_sha256" not in plain:
        # Signed before digests existed (docs/SECURITY.md): AEAD only.  A writer
        # who signed it with a digest cannot have it read without one: the
        # signature (checked above) covers the sealed fields.
        places.vouched[(fid, vid)] = None
        return None, True
    if not places.rows_kept:  # a vault kept in CouchDB: the rows from the version's own manifest
        rows = _rows_from_manifest(places, fid, vid, plain, read, own_records)
        if rows is None:  # a Merkle root: the tree's hashes check everything below it
            shas_root = {MANIFEST_INDEX: bytes.fromhex(plain["manifest_sha256"])}
            places.vouched[(fid, vid)] = shas_root
            return shas_root, True
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
    places.vouched[(fid, vid)] = shas
    return shas, True


def signed_root(places: Places, fid: str, vid: str, dek: bytes, judge: bool = False) -> bytes | None:
    """The manifest root (SHA-256) version ``vid``'s signed document names, where that document is
    here, opens under the file's key as this file's, and is admitted: already (sealed by this process,
    or judged by every view that decides: ``places.judged``) or, ``judge``, by the views now
    (``places.admits_now``, which caches no verdict: a version judged where its file is held before
    the revision that brings it would have its refusal cached, attack round 46a (2); judging for
    good is the take's, absorbing.py ``_judged_while_granted``); None else.  ``judge`` is for a
    writer's old version, whose verdicts a restart or an unlock dropped (47a (1)).
    Unlike ``version_shas`` it needs none of the version's records here: a record withheld made a
    version "not vouched" (46a (1))."""
    if (fid, vid) in places.refused:
        return None
    judged = places.judged(fid, vid)
    if not (judged or judge):
        return None
    if judged and (checked := places.vouched.get((fid, vid))) is not None and MANIFEST_INDEX in checked:
        return checked[MANIFEST_INDEX]  # its records checked against its digest already (``version_shas``)
    if (body := places.document_body(vid)) is None:
        return None
    try:
        doc = loads_untrusted(body)
        plain = loads_untrusted(aead.unseal(dek, b64d(doc["enc"]), aead.ad("version", fid, vid)))
        if not isinstance(doc, dict) or not isinstance(plain, dict) or doc.get("fid") != fid:
            return None
        doc["_id"] = vid  # kept beside the body (store/local.py), signed with it
        if not judged and not places.admits_now(fid, vid, doc):  # it said why (an alarm)
            return None
        root = plain.get("manifest_sha256")
        return bytes.fromhex(root) if isinstance(root, str) and len(root) == 64 else None
    except (CorruptData, KeyError, TypeError, ValueError):
        return None


# (offset, length) of a version's manifest record -> (index, offset, length) of
# each record that version wrote, as its manifest names them (vault/files/content.py).
OwnRecords = Callable[[tuple[int, int]], list[tuple[int, int, int]]]


def _rows_from_manifest(places: Places, fid: str, vid: str, plain: dict, read: Callable[[int, int], bytes],
                        own_records: OwnRecords | None) -> list[PlaceRow] | None:
    """The records version ``vid`` wrote, where no ``places`` table keeps them
    (a vault kept in CouchDB): its manifest record, where its signed document
    says, must hash to ``manifest_sha256`` (Forged otherwise: a holder of the
    file's key resealed it in place).  None for a Merkle root (kind 6), below
    which every node and block is checked against the hash its parent holds,
    as everywhere; else its manifest names the blocks and tree nodes it wrote,
    each hashed from the ``.vf`` here for the ``records`` digest (once per
    version per process: only versions from before vault format 5)."""
    place, expected = plain.get("manifest"), plain.get("manifest_sha256")
    if not (isinstance(place, list) and len(place) == 2 and all(isinstance(n, int) and n >= 0 for n in place)
            and isinstance(expected, str)):
        _forged(places, fid, vid, "the place and hash of its manifest")
    offset, length = place
    record = read(offset, length)
    if hashlib.sha256(record).hexdigest() != expected:
        _forged(places, fid, vid, "its manifest record")
    if len(record) > 4 and record[4] == KIND_HTREE:
        return None
    rows = [PlaceRow(fid, vid, MANIFEST_INDEX, "", offset, length, 0, expected)]
    if own_records is None:
        raise CorruptData(f"the records of version {vid} of {fid} cannot be listed here")
    try:
        listed = own_records((offset, length))
    except (CorruptData, Forged, ValueError):
        _forged(places, fid, vid, "the records its manifest names")
    return rows + [PlaceRow(fid, vid, idx, "", off, n) for idx, off, n in listed]


def refuse_record(places: Places, fid: str, vid: str, idx: int) -> None:
    """A record read here is not the one its version's digest vouched for: Forged (EIO)."""
    what = "its manifest" if idx == MANIFEST_INDEX else f"record {idx}"
    alarm(places, f"{fid}/{vid}/{idx}", f"file {fid}: {what} of version {vid} is not what its author "
          "sealed: refused (EIO) (resealed in place by someone holding the file's key?)")
    raise Forged(f"file {fid}: {what} of version {vid} is not what its author sealed")


def _forged(places: Places, fid: str, vid: str, what: str) -> NoReturn:
    places.refused.add((fid, vid))
    alarm(places, f"{fid}/{vid}", f"file {fid}: version {vid} is refused (EIO): {what} differ from what "
          "its author sealed (a forgery by someone holding the file's key?)")
    raise Forged(f"records of version {vid} of {fid} do not match it")


def append_arrived(layout: Layout, owner: str, fid: str, records: list[bytes]) -> list[tuple[int, int]]:
    """Append records a peer sent to this replica's ``.vf``; their places here.

    The peer's bytes are unchecked here (they are checked against the version
    that names them when read), so where they go is: the ``.vf`` is reached
    from the vault root with no link followed (vault/format/inside.py), made
    new with O_EXCL, and an existing one is appended to only if it is a regular
    file that begins with this file's header.  Anything else there (a link to
    ~/.ssh/authorized_keys planted by whoever may write the vault folder) is
    refused (CorruptData), never written (attack round 16 (1))."""
    if not records:
        return []
    with append_lock(str(layout.vf_path(owner, fid))):
        fd = _open_vf(layout, owner, fid)
        try:
            st = os.fstat(fd)
            end = st.st_size
            if end >= HEADER.size and os.pread(fd, HEADER.size, 0) != header_for(fid):
                raise CorruptData(f"refused a peer's records of {fid}: the file in its place in the vault "
                                  "folder is not that file's (its header differs)")
            if end < HEADER.size:  # new here (or a crash left a torn header)
                if st.st_nlink != 1:
                    raise CorruptData(f"refused a peer's records of {fid}: the file in its place in the "
                                      "vault folder has other names (a hard link)")
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


def vf_for_reading(layout: Layout, owner: str, fid: str) -> int:
    """The ``.vf`` of ``fid`` opened read-only, reached with no link followed, its header checked
    (CorruptData: something else is in its place; FileNotFoundError: none)."""
    fd = inside.open_file(layout.root, layout.own_names(owner), layout.vf_path(owner, fid).name, os.O_RDONLY)
    if os.pread(fd, HEADER.size, 0) != header_for(fid):
        os.close(fd)
        raise CorruptData(f"the file in the place of {fid} in the vault folder is not that file's "
                          "(its header differs)")
    return fd


def _open_vf(layout: Layout, owner: str, fid: str) -> int:
    """The ``.vf`` of ``fid`` opened for appending, made new (and its folders) if there is none."""
    names, name = layout.own_names(owner), layout.vf_path(owner, fid).name
    try:
        return inside.open_file(layout.root, names, name, os.O_RDWR, make=True)
    except FileNotFoundError:
        pass
    try:
        return inside.open_file(layout.root, names, name, os.O_RDWR | os.O_CREAT | os.O_EXCL)
    except FileExistsError:  # made meanwhile (by a shared mount's user): checked as any other
        return inside.open_file(layout.root, names, name, os.O_RDWR)
