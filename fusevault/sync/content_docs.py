"""Content records as CouchDB documents, and back into this replica's ``.vf``.

A record travels as ``{"_id": "rec-<fid>-<vid>-<idx>", "type": "Record",
"owner", "fid", "data": base64}``.  Its id names it everywhere and its bytes
never change, so its one revision is derived from the id: two replicas that
send the same record make the same revision, and ``_revs_diff`` tells each
side exactly which records the other lacks.  What arrives is only appended:
a forged or damaged record fails authentication when read (EIO), it never
reads as other bytes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from itertools import groupby

from fusevault.encoding import b64d, b64e
from fusevault.errors import CorruptData, PeerUnavailable
from fusevault.store.places import PlaceRow, checked_place
from fusevault.vault.files.placements import append_arrived, vf_for_reading
from fusevault.vault.format.layout import Layout
from fusevault.vault.format.manifest import (
    KIND_HNODE,
    KIND_HTREE,
    KIND_MANIFEST,
    KIND_NODE,
    KIND_RUNS,
    KIND_TREE,
)
from fusevault.vault.format.manifest_tree import is_node_index
from fusevault.vault.format.vf import KIND_BLOCK, MANIFEST_INDEX, RECORD_HEAD

RECORD = "Record"
RECORDS_BATCH = 32  # records asked of a peer per request: about 2.8 MB at 64 KiB blocks
_HEX_ID = re.compile(r"[0-9a-f]{32}")
log = logging.getLogger(__name__)


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


# The most digits a record's index is given in: any index of a file of up to 2**62 bytes fits, and every
# such index is an integer SQLite stores.  A longer one (a peer's: "-1000...000", 31 digits) raised
# OverflowError where the pull looked it up, and every pull and join of every device stopped.
INDEX_DIGITS = 18


def parse_record_id(doc_id: str) -> tuple[str, str, int]:
    _, fid, vid, tail = doc_id.split("-")
    if tail == "m":
        return fid, vid, MANIFEST_INDEX
    digits = tail[1:] if tail.startswith("n") else tail
    if not digits.isdigit() or not digits.isascii():  # never a sign: a node is never a block
        raise ValueError(f"malformed record id {doc_id!r}")
    if len(digits) > INDEX_DIGITS:  # a peer's id: SQLite holds 8-byte integers (attack round 80c (3))
        raise ValueError(f"malformed record id {doc_id!r}")
    return fid, vid, -2 - int(digits) if tail.startswith("n") else int(digits)


def is_record(doc_id: str) -> bool:
    return doc_id.startswith("rec-")


def record_rev(doc_id: str) -> str:
    return "1-" + hashlib.sha256(doc_id.encode()).hexdigest()[:32]


def read_records(layout: Layout, rows: list[PlaceRow] | list[tuple]) -> list[dict]:
    """Documents for place rows this replica holds (in file order: grouped by owner and file).

    A record whose bytes are gone (its file collected since) is left out."""
    docs = []
    rows = [PlaceRow(*row) for row in rows]  # a PlaceRow, or its first six fields
    for (owner, fid), group in groupby(rows, key=lambda r: (r.owner, r.fid)):
        try:
            fd = vf_for_reading(layout, owner, fid)
        except FileNotFoundError:
            continue
        except CorruptData as err:
            # A link or a foreign file in its place: its bytes are never sent to a peer.
            log.warning("records not sent to peers: %s", err)
            continue
        try:
            for row in group:
                if not checked_place(row.idx, row.offset, row.length):
                    continue  # a row fusevault never writes: no record to send (attack round 78c (4))
                data = os.pread(fd, row.length, row.offset)
                if not _whole(data, row.length):
                    continue  # a hole the garbage collector punched
                doc_id = record_id(fid, row.vid, row.idx)
                docs.append({"_id": doc_id, "_rev": record_rev(doc_id), "type": RECORD,
                             "owner": owner, "fid": fid, "data": b64e(data)})
        finally:
            os.close(fd)
    return docs


def _whole(data: bytes, length: int) -> bool:
    if len(data) != length or length < RECORD_HEAD.size:
        return False
    rest, kind = RECORD_HEAD.unpack_from(data)
    return rest == length - 4 and kind in (KIND_BLOCK, KIND_MANIFEST, KIND_RUNS, KIND_TREE, KIND_NODE,
                                             KIND_HTREE, KIND_HNODE)


def place_records(layout: Layout, docs: list[dict]) -> list[PlaceRow]:
    """Append arrived records to their files here; their place rows, each with
    the SHA-256 of the record as it came (checked against the version that
    names it before it is used: vault/files/placements.py)."""
    rows = []
    checked = [(_checked(doc), _data(doc)) for doc in docs]
    for (owner, fid), group in groupby(checked, key=lambda c: (c[0][3], c[0][0])):
        arrived = list(group)
        try:
            places = append_arrived(layout, owner, fid, [data for _, data in arrived])
        except CorruptData as err:
            # Not taken (the file's reads stay refused until its records come whole); the rest are.
            log.warning("records from a peer were not kept: %s", err)
            continue
        rows += [PlaceRow(fid, vid, idx, owner, offset, length, 1, hashlib.sha256(data).hexdigest())
                 for ((fid, vid, idx, owner), data), (offset, length) in zip(arrived, places)]
    return rows


def record_sha(doc: dict) -> str:
    """SHA-256 of the record a Record document carries."""
    return hashlib.sha256(_data(doc)).hexdigest()


def malformed(doc: dict) -> str | None:
    """Why ``doc``, offered at a record's id, is no record to place (a deletion, a bad id, owner or
    data), or None."""
    if doc.get("_deleted"):
        return "a deletion"
    try:
        _, _, idx, _ = _checked(doc)
        data = _data(doc)
    except PeerUnavailable:
        return "a document that is no record"
    if not checked_place(idx, 0, len(data)):
        # Larger than any record of its kind: placed, its row was one the store's own check then left
        # out of every push, whose count kept it pending for good (attack round 80c (2)).
        return "a record larger than any fusevault writes"
    return None


def _checked(doc: dict) -> tuple[str, str, int, str]:
    # The server is not trusted: ids become file names only once they are ids.
    try:
        fid, vid, idx = parse_record_id(doc["_id"])
        owner = doc["owner"]
    except (KeyError, ValueError, AttributeError):  # an id that is no text: a number (attack round 82a (1))
        raise PeerUnavailable(f"a peer sent a malformed record {doc.get('_id')!r}") from None
    if not (_HEX_ID.fullmatch(fid) and _HEX_ID.fullmatch(vid) and _HEX_ID.fullmatch(str(owner))
            and doc.get("fid") == fid and (idx >= -1 or is_node_index(idx))):
        raise PeerUnavailable(f"a peer sent a malformed record {doc.get('_id')!r}")
    return fid, vid, idx, owner


def _data(doc: dict) -> bytes:
    try:
        return b64d(doc["data"])
    except (KeyError, TypeError, ValueError):
        raise PeerUnavailable(f"a peer sent a malformed record {doc.get('_id')!r}") from None
