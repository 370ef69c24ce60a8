"""File contents: sealed blocks and manifests appended to the file's ``.vf``.

``.vf`` layout (docs/FORMAT.md has the details)::

    header   b"FVVF" | u8 format | 3 zero bytes | 16-byte file id
    record   u32 length of the rest | u8 kind | nonce(12) | ciphertext | tag(16)

A block record (kind 1) holds up to BLOCK_SIZE bytes of plaintext, sealed with
the file id, block index, id of the version that wrote it and a last-block
flag in the associated data.  A manifest record (kind 2) lists, for one
version, the size and where each block is.  In a vault with size padding
(vault/format/padding.py) the blocks are those of a file of the padded size: the
last one zero-filled and whole, then blocks of zeros, sealed like any other;
the manifest holds the true size and says the version is padded, and reads
stop at the true size.  Records are only ever appended,
so a version never overwrites the blocks of an older one: versions share
every block they did not change, and a torn append after a crash is garbage
no manifest points at.

The methods here are synchronous (CPU and pread/pwrite); the Volume decides
whether a call is small enough for the trio loop or goes to a worker thread.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import struct
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from fusevault.crypto import aead
from fusevault.encoding import b64d, b64e
from fusevault.errors import CorruptData
from fusevault.store.places import note_written
from fusevault.vault.format import manifest_tree as tree
from fusevault.vault.format.atomic import atomic_write, fsync_dir
from fusevault.vault.format.layout import Layout
from fusevault.vault.format.manifest import (
    BLOCK_SIZE,  # noqa: F401  (volume.py and fs/operations.py take it from here)
    KIND_MANIFEST,
    KIND_NODE,
    KIND_RUNS,
    KIND_TREE,
    MAX_FILE_SIZE,
    MIN_RECORD,
    NEW_BLOCK_SIZE,
    Manifest,
    manifest_label,
)
from fusevault.vault.format.padding import PADME, padme

if TYPE_CHECKING:
    from fusevault.vault.model.alarms import Alarms

log = logging.getLogger(__name__)

VF_FORMAT = 1
HEADER = struct.Struct("<4sB3x16s")
RECORD_HEAD = struct.Struct("<IB")
KIND_BLOCK = 1
MANIFEST_INDEX = -1  # a version's manifest among its records (vault/files/records.py)
WRITE_BATCH = 128  # blocks sealed and appended at a time (8 MiB): padding can be many


# Appends to one .vf are serialised across the Contents of a process (one per
# unlocked user holding the file open): a fixed set of locks, by path.
_APPEND_LOCKS = [threading.Lock() for _ in range(64)]


def append_lock(path: str) -> threading.Lock:
    return _APPEND_LOCKS[hash(path) % len(_APPEND_LOCKS)]


def header_for(fid: str) -> bytes:
    return HEADER.pack(b"FVVF", VF_FORMAT, uuid.UUID(fid).bytes)


@functools.lru_cache(maxsize=4096)
def _block_ad_parts(fid: str, vid: str) -> tuple[bytes, bytes]:
    return aead.ad("block", fid), aead.ad("", vid)[len(aead.ad("")):]


_INDEX_PART = struct.Struct("<Iq")  # an int part of aead.ad: its length (8), then it


def block_ad(fid: str, index: int, vid: str, last: bool) -> bytes:
    """``aead.ad("block", fid, index, vid, int(last))``, from cached pieces: it
    is built for every block read or written (16 KiB blocks: 64 a MiB)."""
    head, vid_part = _block_ad_parts(fid, vid)
    return head + _INDEX_PART.pack(8, index) + vid_part + _INDEX_PART.pack(8, int(last))


def vfmeta_bytes(fid: str, owner: str, dek: bytes, acl: list[str], epoch: int = 0) -> bytes:
    """The seed 003 sidecar, authenticated (not encrypted: it holds no secret)."""
    fields = {"FILE_ID": fid, "OWNER_ID": owner, "ACL": acl, "format": VF_FORMAT}
    if epoch:
        fields["epoch"] = epoch
    canon = json.dumps(fields, sort_keys=True).encode()
    fields["tag"] = b64e(aead.seal(dek, b"", aead.ad("vfmeta", canon)))
    return json.dumps(fields, indent=1).encode()


def check_vfmeta(data: bytes, fid: str, owner: str, dek: bytes, epoch: int = 0,
                 alarms: Alarms | None = None) -> dict | None:
    """The sidecar's fields once authenticated; None when it must be written again from the documents.

    Nothing in it is used before its tag is checked under ``dek``: then its
    FILE_ID and OWNER_ID must be the node's.  One that does not authenticate
    is of another epoch of the file's key, or forged.  Its ``epoch`` is then
    only a claim: older than ``dek``'s (a crash between a revoke and the
    rewrite), the sidecar is written again from the documents; newer (a
    recipient not given the file's new key yet, or the owner's mount holding
    a version a recipient wrote under the older key), it cannot be checked
    and nothing is rewritten: the reader relies on the header and on the
    records' own authentication (the sidecar holds no secret and decides
    nothing), and raises an alarm when the claim cannot be true (another
    file's or owner's sidecar).  The same epoch and no authentication: EIO."""
    try:
        fields = json.loads(data)
        tag = b64d(fields.pop("tag"))
        canon = json.dumps(fields, sort_keys=True).encode()
        claimed = int(fields.get("epoch", 0))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise CorruptData(f"sidecar of {fid} is damaged") from None
    try:
        aead.unseal(dek, tag, aead.ad("vfmeta", canon))
    except CorruptData:
        if claimed < epoch:
            return None
        if claimed == epoch:
            _sidecar_alarm(alarms, fid, f"the sidecar of file {fid} fails authentication")
            raise CorruptData(f"sidecar of {fid} fails authentication") from None
        if fields.get("FILE_ID") != fid or fields.get("OWNER_ID") != owner:
            _sidecar_alarm(alarms, fid, f"the sidecar of file {fid} claims a newer key but names another "
                           "file or owner: forged; not used (the file's records are checked on their own)")
        return {}  # unchecked: nothing of it is used, nothing is rewritten
    if fields.get("FILE_ID") != fid or fields.get("OWNER_ID") != owner:
        _sidecar_alarm(alarms, fid, f"the sidecar of file {fid} names another file or owner")
        raise CorruptData(f"sidecar of {fid} belongs to another file or owner")
    return None if claimed < epoch else fields


def _sidecar_alarm(alarms: Alarms | None, fid: str, text: str) -> None:
    if alarms is not None:
        alarms.warn("sidecar", fid, text)
    else:
        log.warning("%s", text)


def record_length(plain: int) -> int:
    return RECORD_HEAD.size + aead.OVERHEAD + plain


def _fit(data: bytes | bytearray, length: int) -> bytes | bytearray:
    """A block cut or zero-filled to ``length``.  Cutting only drops zeros:
    no stored or dirty block holds a non-zero byte past the file's end (a
    truncate cuts them, padding is zeros), and ``length`` reaches the end."""
    if len(data) == length:
        return data
    return bytes(data[:length]) + bytes(max(0, length - len(data)))


def _padded_content_seen(layout: Layout) -> None:
    # vault.json is clear text: a writer of the vault folder could switch
    # padding off.  Padded files stay padded (Content.padded); and once a
    # padded file is seen, new files are padded too, so an editor that saves
    # by writing a new file and renaming it does not unpad a document.
    log.warning("vault.json says size padding %r, but this vault holds padded files (another "
                "replica pads, or vault.json was changed): every file written from now on is padded",
                layout.padding)
    layout.padding = PADME


class Content:
    """The contents of one file while it is open: stored blocks plus dirty ones."""

    def __init__(self, layout: Layout, owner: str, fid: str, dek: bytes,
                 manifest_loc: tuple[int, int] | None, head: str | None, *,
                 acl: list[str] | None = None, check_sidecar: bool = True, epoch: int = 0,
                 alarms: Alarms | None = None, vouch: bool = True) -> None:
        self.layout = layout
        self.alarms = alarms  # the reader's, for a sidecar that is not what it claims
        self.owner = owner
        self.fid = fid
        self.dek = dek
        self.fd: int | None = None
        self.end = 0
        self.dirty: dict[int, bytearray] = {}
        self.pending_vid = uuid.uuid4().hex
        self.changed = False
        self.synced = True
        self.new_files = False
        self.sealed: list[tuple[int, int, int]] = []
        # SHA-256 of each block record the pending version sealed, by index,
        # taken as it is sealed: the version document binds them
        # (``digests``) without the data being read again.
        self._record_sha: dict[int, bytes] = {}
        self.digests: dict = {}
        # The sidecar's ACL when this writes it first; a reader of a version
        # from before the file's key changed cannot check the sidecar (it is
        # authenticated with the current key) and relies on the header.
        self.acl = acl or []
        self.check_sidecar = check_sidecar
        self.epoch = epoch
        # Paths as plain strings, built once: this runs for every file opened.
        self.vf_path = str(layout.vf_path(owner, fid))
        self.vfmeta_path = str(layout.vfmeta_path(owner, fid))
        self.stored = manifest_loc is not None
        # Records that came from peers sit elsewhere in this replica's .vf
        # than their manifest says (vault/files/records.py): looked up per version.
        self._moved: dict[tuple[str, int], tuple[int, int]] = {}
        self._looked_up: set[str] = set()
        # SHA-256 of each record of a committed version, by index, once its
        # signed digest vouched for them (vault/files/records.py): every record
        # read is compared with them.  None: nothing to compare with (a
        # version from before the digest).
        self._shas: dict[str, dict[int, bytes] | None] = {}
        self.vouch = vouch  # False: `fusevault check`, which compares and reports on its own
        if manifest_loc is None:
            self.manifest = Manifest(0, [], block_size=NEW_BLOCK_SIZE)
        else:
            self.manifest = self.load_manifest(manifest_loc, head or "")
        # Versions this writes are padded when the vault pads, and always
        # once the file was padded: a changed vault.json cannot unpad it.
        self.padded = self.manifest.padded or layout.padding == PADME

    def load_manifest(self, place: tuple[int, int], vid: str, dek: bytes | None = None) -> Manifest:
        """The manifest of version ``vid``, stored at ``place`` (offset, length)."""
        self._open_fd()
        offset, length = self.where(*place, vid, -1, dek)
        record = os.pread(self.fd, length, offset)
        self._vouch(vid, MANIFEST_INDEX, record, dek)
        # Format 1 and 2 manifests (an entry per block, runs) are read as
        # before; a file's next version is written as a tree (vault/format/manifest_tree.py).
        kind = record[4] if len(record) > 4 else 0
        known = (KIND_MANIFEST, KIND_RUNS, KIND_TREE)
        sealed = self._check_record(record, length, kind if kind in known else KIND_TREE)
        plain = aead.unseal(dek or self.dek, sealed, aead.ad(manifest_label(kind), self.fid, vid))
        if kind == KIND_TREE:
            nodes: list[tuple[int, int]] = []
            manifest = tree.load(plain, lambda *ref: self._read_node(*ref, dek, nodes))
            manifest.nodes = nodes
        else:
            manifest = Manifest.unpack(plain, kind)
        if manifest.padded and self.layout.padding != PADME:
            _padded_content_seen(self.layout)
        return manifest

    def _read_node(self, offset: int, length: int, vid: str, level: int, pos: int, dek: bytes | None,
                   nodes: list[tuple[int, int]]) -> bytes:
        """The plaintext of a non-root node of a manifest tree, authenticated."""
        offset, length = self.where(offset, length, vid, tree.node_index(level, pos))
        nodes.append((offset, length))
        index = tree.node_index(level, pos)
        record = os.pread(self.fd, length, offset)
        self._vouch(vid, index, record, dek)
        sealed = self._check_record(record, length, KIND_NODE)
        return aead.unseal(dek or self.dek, sealed, aead.ad(*tree.node_ad_parts(self.fid, vid, level, pos)))

    def where(self, offset: int, length: int, vid: str, index: int,
              dek: bytes | None = None) -> tuple[int, int]:
        """The place here of the record of version ``vid`` at ``index`` (-1: its
        manifest): a record that came from a peer sits where it was appended."""
        places = self.layout.places
        if places is None or not places.any_arrived:
            return offset, length
        if vid not in self._looked_up:  # new to this reader: it may have arrived since
            self._moved = places.arrived_of(self.fid)
            self._looked_up = {v for v, _ in self._moved} | {vid}
        moved = self._moved.get((vid, index))
        return (offset, length) if moved is None else moved

    def _expected(self, vid: str, dek: bytes | None) -> dict[int, bytes] | None:
        """What the records of version ``vid`` must hash to (once per version)."""
        if vid == self.pending_vid:
            return self._record_sha  # sealed by this Content a moment ago, not committed yet
        try:
            return self._shas[vid]
        except KeyError:
            pass
        places = self.layout.places
        if places is None:  # a vault kept in CouchDB keeps no places (docs/SECURITY.md)
            shas, final = None, True
        else:
            shas, final = places.version_shas(self.fid, vid, dek or self.dek, self._read_raw)
        if final:
            self._shas[vid] = shas
        return shas

    def _vouch(self, vid: str, index: int, record: bytes, dek: bytes | None = None) -> None:
        """Forged (EIO, an alarm) unless ``record`` is the one version ``vid``'s
        signed digest names at ``index``: a record resealed in place under the
        file's key authenticates, and only this tells."""
        if not self.vouch:
            return
        shas = self._expected(vid, dek)
        if shas is not None and hashlib.sha256(record).digest() != shas.get(index):
            self.layout.places.refuse_record(self.fid, vid, index)

    def _read_raw(self, offset: int, length: int) -> bytes:
        self._open_fd()
        return os.pread(self.fd, length, offset)

    @property
    def bs(self) -> int:
        """This file's block size: its manifest says (64 KiB before format 4)."""
        return self.manifest.block_size

    @property
    def full_record(self) -> int:
        return MIN_RECORD + self.manifest.block_size

    def rekey(self, dek: bytes, acl: list[str], epoch: int) -> None:
        """Start over under a new DEK (a revoked share): no stored block is
        used again, the caller writes every byte anew and, once the version
        is committed, the sidecar (``write_sidecar``)."""
        self.dek = dek
        self.acl = acl
        self.epoch = epoch
        self.manifest = Manifest(0, [], block_size=NEW_BLOCK_SIZE)
        self.dirty = {}
        self._record_sha = {}
        self.changed = True

    def write_sidecar(self) -> None:
        atomic_write(Path(self.vfmeta_path),
                     vfmeta_bytes(self.fid, self.owner, self.dek, self.acl, self.epoch))

    def reset_to(self, place: tuple[int, int], vid: str) -> int:
        """Make an older version's blocks the pending contents; return its size.

        Nothing is copied: the next version's manifest points at the same records.
        """
        self.manifest = self.load_manifest(place, vid)
        self.padded = self.padded or self.manifest.padded
        self.dirty = {}
        self.changed = True
        return self.manifest.size

    # --- the .vf file

    def _open_fd(self, create: bool = False) -> None:
        if self.fd is not None:
            return
        if not self.stored and create:
            # No version was ever committed: whatever a crash left is garbage.
            self._create_files()
            return
        try:
            self.fd = os.open(self.vf_path, os.O_RDWR)
        except FileNotFoundError:
            raise CorruptData(f"content of {self.fid} is missing") from None
        header = os.pread(self.fd, HEADER.size, 0)
        if header != header_for(self.fid):
            raise CorruptData(f"content of {self.fid} has a damaged header")
        if self.check_sidecar:
            try:
                with open(self.vfmeta_path, "rb") as sidecar:
                    current = check_vfmeta(sidecar.read(), self.fid, self.owner, self.dek, self.epoch,
                                           self.alarms)
            except FileNotFoundError:
                current = None  # the file came from a peer: no sidecar here yet
            if current is None:
                # Missing, or a crash between a key change and the sidecar's
                # rewrite left it at the older key: written from the documents.
                self.write_sidecar()
        self.end = os.fstat(self.fd).st_size

    def _create_files(self) -> None:
        with append_lock(self.vf_path):
            if not self._join_files():
                self._write_new_files()

    def _join_files(self) -> bool:
        """Another user of a shared mount began this file a moment ago: append to theirs."""
        try:
            fd = os.open(self.vf_path, os.O_RDWR)
        except FileNotFoundError:
            return False
        if os.pread(fd, HEADER.size, 0) != header_for(self.fid) or not os.path.exists(self.vfmeta_path):
            os.close(fd)
            return False  # what a crash left: begun again
        self.fd = fd
        self.end = os.fstat(fd).st_size
        return True

    def _write_new_files(self) -> None:
        # own/ exists from the user's creation.  No temporary file needed:
        # the .vf does not exist yet, and a missing .vf makes the next
        # attempt write the sidecar again from scratch.
        fd = os.open(self.vfmeta_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, vfmeta_bytes(self.fid, self.owner, self.dek, self.acl, self.epoch))
        finally:
            os.close(fd)
        fd = os.open(self.vf_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.pwrite(fd, header_for(self.fid), 0)
        self.fd = fd
        self.end = HEADER.size
        self.new_files = True

    def _check_record(self, record: bytes, length: int, kind: int) -> bytes:
        """The sealed part of a record, after checking its length and kind."""
        if len(record) != length or length < RECORD_HEAD.size + aead.OVERHEAD:
            raise CorruptData(f"content of {self.fid} is truncated")
        rest, got_kind = RECORD_HEAD.unpack_from(record)
        if rest != length - 4 or got_kind != kind:
            raise CorruptData(f"content of {self.fid} has a damaged record")
        return record[RECORD_HEAD.size:]

    @staticmethod
    def _record(kind: int, sealed: bytes) -> bytes:
        return RECORD_HEAD.pack(len(sealed) + 1, kind) + sealed

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    # --- blocks

    def _stored_block(self, index: int) -> bytes:
        manifest = self.manifest  # once: sealing a version may swap it (_drop_unused_vids)
        vids = manifest.vids
        offset, length, vidx, last = manifest.blocks.get(index)
        if not length:
            return b""
        self._open_fd()
        if vidx < len(vids):
            offset, length = self.where(offset, length, vids[vidx], index)
        record = os.pread(self.fd, length, offset)
        if vidx < len(vids):
            self._vouch(vids[vidx], index, record)
        return self._open_block(index, record, length, vids, vidx, last)

    def read(self, offset: int, size: int, file_size: int) -> bytes:
        """Plaintext of [offset, offset+size) cut at file_size.

        Safe without the file's lock: stored records never change once
        appended, and entries and dirty blocks are replaced, never edited in
        place, by the writer (see _write_blocks).
        """
        end = min(offset + size, file_size)
        if end <= offset:
            return b""
        first, last = offset // self.bs, (end - 1) // self.bs
        blocks = self._blocks(range(first, last + 1))
        out = []
        for index, data in zip(range(first, last + 1), blocks):
            start = max(offset - index * self.bs, 0)
            stop = min(end - index * self.bs, self.bs)
            chunk = bytes(data[start:stop])
            if len(chunk) < stop - start:  # a hole or a short block reads as zeros
                chunk += bytes(stop - start - len(chunk))
            out.append(chunk)
        return b"".join(out)

    def _blocks(self, indices: range) -> list[bytes | bytearray]:
        """Blocks by index; stored records next to each other come in one pread."""
        manifest = self.manifest  # once: sealing a version may swap it (_drop_unused_vids)
        blocks, vids = manifest.blocks, manifest.vids
        found: dict[int, bytes | bytearray] = {}
        runs: list[list[tuple[int, int, int, int, int]]] = []
        for index in indices:
            dirty = self.dirty.get(index)
            if dirty is not None:
                found[index] = dirty
                continue
            entry = blocks.get(index)  # a hole past the end too (truncated by a concurrent writer)
            if entry[1] == 0:
                found[index] = b""
                continue
            if entry[2] < len(vids):
                entry = (*self.where(entry[0], entry[1], vids[entry[2]], index), *entry[2:])
            if runs and runs[-1][-1][1] + runs[-1][-1][2] == entry[0]:
                runs[-1].append((index, *entry))
            else:
                runs.append([(index, *entry)])
        for run in runs:
            start = run[0][1]
            data = os.pread(self.fd, run[-1][1] + run[-1][2] - start, start)
            for index, offset, length, vidx, last in run:
                record = data[offset - start: offset - start + length]
                if vidx < len(vids):
                    self._vouch(vids[vidx], index, record)
                found[index] = self._open_block(index, record, length, vids, vidx, last)
        return [found[i] for i in indices]

    def _open_block(self, index: int, record: bytes, length: int, vids: list[str],
                    vidx: int, last: int) -> bytes:
        sealed = self._check_record(record, length, KIND_BLOCK)
        try:
            vid = vids[vidx]
        except IndexError:
            raise CorruptData(f"manifest of {self.fid} is damaged") from None
        return aead.unseal(self.dek, sealed, block_ad(self.fid, index, vid, bool(last)))

    def blocks_to_load(self, offset: int, size: int) -> int:
        """How many stored blocks a read or write here would decrypt."""
        first, last = offset // self.bs, (offset + max(size, 1) - 1) // self.bs
        stored = self.manifest.blocks.stored(first, last + 1)
        return stored - sum(1 for i in self.dirty if first <= i <= last and self.manifest.blocks.get(i)[1])

    def write(self, offset: int, data: bytes | memoryview) -> None:
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            index, start = divmod(offset + pos, self.bs)
            take = min(self.bs - start, len(view) - pos)
            block = self.dirty.get(index)
            if block is None:
                if start == 0 and take == self.bs:
                    block = bytearray()
                else:
                    block = bytearray(self._stored_block(index))
                self.dirty[index] = block
            if len(block) < start:
                block.extend(bytes(start - len(block)))
            block[start:start + take] = view[pos:pos + take]
            pos += take
        self.changed = True

    def truncate(self, size: int) -> None:
        if size == 0 and self.bs != NEW_BLOCK_SIZE:
            # Nothing of the file is kept: from here on it is cut like a new one.
            self.dirty = {}
            self.manifest = Manifest(0, list(self.manifest.vids), padded=self.manifest.padded,
                                     tree=self.manifest.tree, block_size=NEW_BLOCK_SIZE)
        nblocks = -(-size // self.bs)
        for index in [i for i in self.dirty if i >= nblocks]:
            del self.dirty[index]
        if self.manifest.blocks.end > nblocks:
            self.manifest.blocks.cut(nblocks)
        tail = size % self.bs
        index = nblocks - 1
        # Only a block that holds bytes needs cutting: a hole stays a hole
        # however far the file grows (vault/format/manifest.py).
        if tail and nblocks and (index in self.dirty or self.manifest.blocks.get(index)[1]):
            block = self.dirty.get(index)
            if block is None:
                block = bytearray(self._stored_block(index))
            del block[tail:]
            self.dirty[index] = block
        self.changed = True

    def dirty_bytes(self) -> int:
        return len(self.dirty) * self.bs

    def seal_bytes(self, file_size: int) -> int:
        """About how much sealing a version of ``file_size`` bytes now encrypts:
        the dirty blocks, and the padding blocks not written yet."""
        if not self.padded:
            return self.dirty_bytes()
        target = self._target(file_size)
        nblocks = -(-target // self.bs)
        real = -(-file_size // self.bs)
        missing = [i for lo, hi in self.manifest.blocks.holes(real, self._fill_to(file_size, target))
                   for i in range(lo, hi) if i not in self.dirty]
        final = nblocks - 1
        if nblocks and final not in self.dirty and not self.manifest.blocks.get(final)[1]:
            missing.append(final)
        return (len(self.dirty) + len(set(missing))) * self.bs

    def data_ranges(self, file_size: int) -> list[tuple[int, int]]:
        """[start, end) of the byte ranges below ``file_size`` that are not
        holes: what a copy has to read (the rest reads as zeros)."""
        spans = [(f * self.bs, (f + c) * self.bs) for f, c, *_ in self.manifest.blocks.runs]
        spans += [(i * self.bs, (i + 1) * self.bs) for i in list(self.dirty)]
        out: list[tuple[int, int]] = []
        for start, end in sorted(spans):
            end = min(end, file_size)
            if start >= end:
                continue
            if out and start <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], end))
            else:
                out.append((start, end))
        return out

    def allocated(self, file_size: int) -> int:
        """Bytes of the file's data the stored version holds (not its holes)."""
        real = -(-file_size // self.bs)
        return min(file_size, self.manifest.blocks.stored(0, real) * self.bs)

    def _target(self, file_size: int) -> int:
        """How long the stored content of a file of ``file_size`` bytes is."""
        return padme(file_size) if self.padded else file_size

    def _fill_to(self, file_size: int, target: int) -> int:
        """Padded: the blocks past the file's end up to here are stored (as
        zeros), as well as the final one.

        A file with no holes fills all of them, so its stored length is its
        padded size.  A sparse file stores only as many as its stored data
        would take padded: so a hole costs nothing, padding included (a file
        of 1 TiB + 5 bytes would otherwise store 16 GiB of padding zeros), and
        the disk shows padme() of the data it holds."""
        if not self.padded:
            return 0
        nblocks = -(-target // self.bs)
        real = -(-file_size // self.bs)
        blocks = self.manifest.blocks
        data = blocks.stored(0, real) + sum(1 for i in self.dirty if i < real and not blocks.get(i)[1])
        return min(nblocks, real + -(-padme(data * self.bs) // self.bs) - data)

    # --- sealing a version

    def _vidx(self, vid: str) -> int:
        try:
            return self.manifest.vids.index(vid)
        except ValueError:
            self.manifest.vids.append(vid)
            return len(self.manifest.vids) - 1

    def _seal_block(self, index: int, data: bytes | bytearray, last: bool) -> bytes:
        sealed = aead.seal(self.dek, bytes(data), block_ad(self.fid, index, self.pending_vid, last))
        return self._record(KIND_BLOCK, sealed)

    def _append(self, records: list[tuple[int | None, bytes, bool]]) -> list[tuple[int, int]]:
        self._open_fd(create=True)
        with append_lock(self.vf_path):
            # In a shared mount another user's Content may have appended to
            # this .vf since: the end is where the file ends now.
            start = offset = max(self.end, os.fstat(self.fd).st_size)
            places = []
            for _, record, _ in records:
                places.append((offset, len(record)))
                offset += len(record)
            os.pwritev(self.fd, [r for _, r, _ in records], start)
            self.end = offset
        self.synced = False
        return places

    def flush_blocks(self, file_size: int, keep_last: bool = True) -> None:
        """Seal and append dirty blocks to bound memory; the last one may stay."""
        nblocks = -(-file_size // self.bs)
        indices = sorted(i for i in self.dirty if not (keep_last and i >= nblocks - 1))
        self._write_blocks(indices, self._target(file_size))

    def _write_blocks(self, indices: list[int], target: int) -> None:
        """Seal the dirty blocks at ``indices`` of stored content ``target`` bytes long."""
        nblocks = -(-target // self.bs)
        final = target - (nblocks - 1) * self.bs
        for start in range(0, len(indices), WRITE_BATCH):
            records = []
            for i in indices[start:start + WRITE_BATCH]:
                last = i == nblocks - 1
                data = self.dirty[i]
                if self.padded:  # every block whole, the final one ending at the padded size
                    data = _fit(data, final if last else self.bs)
                records.append((i, self._seal_block(i, data, last), last))
            places = self._append(records)
            for i, record, _ in records:
                self._record_sha[i] = hashlib.sha256(record).digest()
            vidx = self._vidx(self.pending_vid)
            # The map first, then the dirty blocks go: a concurrent read finds
            # each block in one or the other.
            self.manifest.blocks.put([(index, offset, length, vidx, int(last))
                                      for (index, _, last), (offset, length) in zip(records, places)])
            for index, _, _ in records:
                del self.dirty[index]

    def _stale(self, file_size: int, target: int) -> dict[int, bool]:
        """Stored blocks the next manifest cannot list as they are, and whether
        each holds bytes of the file (else zeros will do).

        The final block is marked last and is never a hole.  Padded content
        also has every block whole (the final one ending at the padded size)
        and the blocks from the file's end to ``_fill_to`` stored; holes
        inside the file stay holes.  Only runs and holes are looked at, never
        every index: the cost follows the blocks stored, not the size."""
        nblocks = -(-target // self.bs)
        if not nblocks:
            return {}
        real = -(-file_size // self.bs)
        final = nblocks - 1
        final_length = record_length(target - final * self.bs)
        blocks, dirty = self.manifest.blocks, self.dirty
        stale: dict[int, bool] = {}
        for run in blocks.runs:
            first, count, _, length, _, last = run
            suspect = last or first <= final < first + count or (self.padded and length != self.full_record)
            if not suspect:
                continue
            for index, _, length, _, last in blocks.blocks([run]):
                if index == final:
                    wrong = not last or (self.padded and length != final_length)
                else:
                    wrong = bool(last) or (self.padded and length != self.full_record)
                if wrong:
                    stale[index] = index < real
        if not blocks.get(final)[1]:
            stale[final] = False
        if self.padded:
            for lo, hi in blocks.holes(real, self._fill_to(file_size, target)):
                stale.update((i, False) for i in range(lo, hi))
        return {i: data for i, data in stale.items() if i not in dirty}

    def seal_version(self, file_size: int) -> tuple[str, tuple[int, int], bytes]:
        """Write every dirty block and a manifest; return (vid, manifest place, nonce).

        ``sealed`` then lists (index, offset, length) of the records this
        version wrote, its manifest at index -1: their places (vault/files/records.py)."""
        if file_size > MAX_FILE_SIZE:
            raise CorruptData(f"{self.fid} is larger than the format holds")  # the Volume refuses first
        target = self._target(file_size)
        nblocks = -(-target // self.bs)
        if self.manifest.blocks.end > nblocks:
            self.manifest.blocks.cut(nblocks)
        # A block sealed with the wrong last-block flag (or, padded, length)
        # is re-sealed, and a final hole becomes a real block, so the end of
        # the file is marked; padding past the file's end is zeros.
        for index, holds_data in sorted(self._stale(file_size, target).items()):
            self.dirty[index] = bytearray(self._stored_block(index)) if holds_data else bytearray()
        self._write_blocks(sorted(self.dirty), target)
        self._drop_unused_vids()
        vid = self.pending_vid
        self.manifest.size = file_size
        self.manifest.padded = self.padded
        written_nodes: list[tuple[int, int, int]] = []
        root, nodes = tree.build(self.manifest, lambda plains: self._write_nodes(plains, written_nodes), vid)
        nonce = os.urandom(aead.NONCE_SIZE)
        sealed = aead.seal_with_nonce(self.dek, nonce, root,
                                      aead.ad(manifest_label(KIND_TREE), self.fid, vid))
        manifest_record = self._record(KIND_TREE, sealed)
        (place,) = self._append([(None, manifest_record, False)])
        self.manifest.tree = nodes
        blocks = self.manifest.blocks
        if vid in self.manifest.vids:
            mine = self.manifest.vids.index(vid)
            written = [(i, o, n) for i, o, n, _, _ in blocks.blocks([r for r in blocks.runs if r[4] == mine])]
        else:
            written = []
        written = sorted(written_nodes) + written  # in index order: the nodes' indices are negative
        self.sealed = written + [(-1, *place)]
        self.digests = self._digests(written, manifest_record)
        # What this version's records hash to: its place rows keep them (store/places.py)
        # and this Content's own reads of them compare with them.
        shas = {i: self._record_sha[i] for i, _, _ in written if i in self._record_sha}
        shas[MANIFEST_INDEX] = hashlib.sha256(manifest_record).digest()
        note_written(self.fid, vid, {i: sha.hex() for i, sha in shas.items()})
        if len(shas) == len(written) + 1:
            self._shas[vid] = shas
        self._record_sha = {}
        self.pending_vid = uuid.uuid4().hex
        self.changed = False
        return vid, place, nonce

    def _write_nodes(self, plains: list[tuple[int, int, bytes]],
                     written: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
        """Seal and append non-root nodes of the pending version's manifest tree."""
        vid = self.pending_vid
        records = []
        for level, pos, plain in plains:
            sealed = aead.seal(self.dek, plain, aead.ad(*tree.node_ad_parts(self.fid, vid, level, pos)))
            records.append((tree.node_index(level, pos), self._record(KIND_NODE, sealed), False))
        places = self._append(records)
        for (index, record, _), (offset, length) in zip(records, places):
            self._record_sha[index] = hashlib.sha256(record).digest()
            written.append((index, offset, length))
        return places

    def _digests(self, written: list[tuple[int, int, int]], manifest_record: bytes) -> dict:
        """What the version document seals about the records this version wrote
        (docs/FORMAT.md, FilesMetaData): a replica that receives them checks
        them against it (vault/files/records.py).  Only this version's records are
        hashed, as they were sealed: a small edit of a big file costs one
        block's hash and the manifest's."""
        records = hashlib.sha256()
        for index, offset, length in written:  # in index order
            sha = self._record_sha.get(index)
            if sha is None:  # not sealed by this Content (cannot happen): read it back
                self._open_fd()
                sha = hashlib.sha256(os.pread(self.fd, length, offset)).digest()
            records.update(struct.pack("<q", index) + sha)  # as "<Q" for a block
        return {"records": records.hexdigest(), "records_n": len(written),
                "manifest_sha256": hashlib.sha256(manifest_record).hexdigest()}

    def _drop_unused_vids(self) -> None:
        """Forget writers no block of the file comes from any more, so a manifest
        does not grow with every version ever made (nor show how many there were).

        A new Manifest replaces the old at once: a read in another thread
        pairs the blocks with the version ids of the same manifest."""
        manifest = self.manifest
        used = sorted({run[4] for run in manifest.blocks.runs})
        if len(used) == len(manifest.vids):
            return
        renumber = {old: new for new, old in enumerate(used)}
        self.manifest = Manifest(manifest.size, [manifest.vids[i] for i in used],
                                 manifest.blocks.renumber(renumber), manifest.padded, manifest.tree,
                                 block_size=manifest.block_size)

    def fsync(self) -> None:
        if self.fd is not None and not self.synced:
            os.fsync(self.fd)
            self.synced = True
        if self.new_files:  # the sidecar and both directory entries
            fd = os.open(self.vfmeta_path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            fsync_dir(self.layout.own_dir(self.owner))
            self.new_files = False
