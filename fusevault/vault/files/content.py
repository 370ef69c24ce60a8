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

import hashlib
import logging
import os
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from fusevault.crypto import aead
from fusevault.errors import CorruptData, Forged
from fusevault.vault.files import placements
from fusevault.vault.files.block_cache import BlockCache, Key
from fusevault.vault.files.sealing import Sealing
from fusevault.vault.files.sidecar import check_vfmeta, vfmeta_bytes, write_vfmeta
from fusevault.vault.format import inside
from fusevault.vault.format import manifest_tree as tree
from fusevault.vault.format.block_hashes import BlockHashes
from fusevault.vault.format.layout import Layout
from fusevault.vault.format.manifest import (
    BLOCK_SIZE,  # noqa: F401  (volume.py and fs/operations.py take it from here)
    KIND_HNODE,
    KIND_HTREE,
    KIND_MANIFEST,
    KIND_NODE,
    KIND_RUNS,
    KIND_TREE,
    MAX_FILE_SIZE,  # noqa: F401  (volume.py takes it from here)
    MIN_RECORD,
    NEW_BLOCK_SIZE,
    Manifest,
    manifest_label,
)
from fusevault.vault.format.padding import PADME
from fusevault.vault.format.vf import (  # noqa: F401  (the framing, as readers of contents knew it here)
    HEADER,
    KIND_BLOCK,
    MANIFEST_INDEX,
    RECORD_HEAD,
    append_lock,
    block_ad,
    header_for,
    record_length,
)

if TYPE_CHECKING:
    from fusevault.vault.model.alarms import Alarms

log = logging.getLogger(__name__)


def _padded_content_seen(layout: Layout) -> None:
    # vault.json is clear text: a writer of the vault folder could switch
    # padding off.  Padded files stay padded (Content.padded); and once a
    # padded file is seen, new files are padded too, so an editor that saves
    # by writing a new file and renaming it does not unpad a document.
    log.warning("vault.json says size padding %r, but this vault holds padded files (another "
                "replica pads, or vault.json was changed): every file written from now on is padded",
                layout.padding)
    layout.padding = PADME


class Content(Sealing):
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
        self._vid_fresh = True
        self.changed = False
        self.synced = True
        self.new_files = False
        self.sealed: list[tuple[int, int, int]] = []
        # SHA-256 of each block record the pending version sealed, by index,
        # taken as it is sealed: the version document binds them
        # (``digests``) without the data being read again.
        self._record_sha: dict[int, bytes] = {}
        self._marks = None  # not known yet: the first version looks at every run (Sealing._stale)
        self._vids_kept = 0
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
        # Opened from the vault root with no link followed (vault/format/inside.py):
        # whoever may write the vault folder can put a link where a file or its
        # folder is, and the mount (root's, if shared) must not open through it.
        self._own = layout.own_names(owner)
        self.stored = manifest_loc is not None
        # Records that came from peers sit elsewhere in this replica's .vf
        # than their manifest says (vault/files/placements.py): looked up per version.
        self._moved: dict[tuple[str, int], tuple[int, int] | None] = {}  # None: a bad row
        # Copies of a record placed again after gc punched it, by hash (store/places.py ``copies``):
        # versions naming other bytes for it each read the copy they name (attack round 46a (3)).
        self._copies: dict[tuple[str, int], dict[bytes, tuple[int, int]]] = {}
        self._looked_up: set[str] = set()
        # How many arrivals had placed records when ``_moved``/``_copies`` were looked up
        # (store/places.py ``Places.arrivals``): looked up again once one placed records of this file.
        self._arrivals_seen = -1
        # SHA-256 of each record of a committed version, by index, once its
        # signed digest vouched for them (vault/files/placements.py): every record
        # read is compared with them.  None: nothing to compare with (a
        # version from before the digest).
        self._shas: dict[str, dict[int, bytes] | None] = {}
        # SHA-256 of each block record a verified Merkle manifest (kind 6)
        # names: compared with every read, whether or not the version that
        # wrote the block still has its document (vault/format/block_hashes.py).
        self._hashes = BlockHashes()
        self.vouch = vouch  # False: `fusevault check`, which compares and reports on its own
        # Blocks hashed into a new Merkle tree with nothing signed to check them
        # against first (their version's document gone, or signed before
        # digests): `fusevault upgrade` says how many (docs/SECURITY.md).
        self.unchecked = 0
        self.head = head  # the version its signed node names: its document must be here
        # A vault kept in CouchDB: checking a record may fetch its version's
        # document from the server, so reads go to a worker thread.
        self.asks_server = layout.places is not None and not layout.places.rows_kept
        self.stored_kind = self.MANIFEST_KIND  # the kind of the current version's manifest record
        if manifest_loc is None:
            self.manifest = Manifest(0, [], block_size=NEW_BLOCK_SIZE, hashed=True)
        else:
            self.manifest = self.load_manifest(manifest_loc, head or "")
            self.stored_kind = self._kind_read
        # Versions this writes are padded when the vault pads, and always
        # once the file was padded: a changed vault.json cannot unpad it.
        self.padded = self.manifest.padded or layout.padding == PADME

    def load_manifest(self, place: tuple[int, int], vid: str, dek: bytes | None = None) -> Manifest:
        """The manifest of version ``vid``, stored at ``place`` (offset, length)."""
        kind, plain = self._manifest_root(place, vid, dek)
        if kind in (KIND_TREE, KIND_HTREE):
            hashed = kind == KIND_HTREE
            nodes: list[tuple[int, int]] = []
            manifest = tree.load(plain, lambda *ref: self._read_node(*ref, dek, nodes, hashed), hashed)
            manifest.nodes = nodes
            for writer, first, shas in manifest.block_shas:
                self._hashes.add(writer, first, shas)
            manifest.block_shas = []
        else:
            manifest = Manifest.unpack(plain, kind)
        if manifest.padded and self.layout.padding != PADME:
            _padded_content_seen(self.layout)
        return manifest

    def _manifest_root(self, place: tuple[int, int], vid: str, dek: bytes | None) -> tuple[int, bytes]:
        """The kind and plaintext of version ``vid``'s manifest record (a tree's root), authenticated."""
        self._open_fd()
        offset, length = self.where(*place, vid, -1, dek)
        record = os.pread(self.fd, length, offset)
        self._vouch(vid, MANIFEST_INDEX, record, dek)
        # Format 1 and 2 manifests (an entry per block, runs) are read as
        # before; a file's next version is written as a tree (vault/format/manifest_tree.py).
        kind = self._kind_read = record[4] if len(record) > 4 else 0
        known = (KIND_MANIFEST, KIND_RUNS, KIND_TREE, KIND_HTREE)
        sealed = self._check_record(record, length, kind if kind in known else KIND_HTREE)
        return kind, aead.unseal(dek or self.dek, sealed, aead.ad(manifest_label(kind), self.fid, vid))

    def absent_manifest_nodes(self, place: tuple[int, int], vid: str,
                              absent: Callable[[str, int, bytes | None], bool]
                              ) -> list[tuple[str, int, bytes | None]]:
        """(writer vid, index, SHA-256 its parent names or None) of the manifest tree nodes version
        ``vid``'s tree names that ``absent`` says are not here, met walking down from its root (a
        manifest that is no tree has none): the manifest does not load without them (manifest_tree.py
        ``absent_nodes``)."""
        kind, plain = self._manifest_root(place, vid, None)
        if kind not in (KIND_TREE, KIND_HTREE):
            return []
        hashed = kind == KIND_HTREE
        return tree.absent_nodes(plain, lambda *ref: self._read_node(*ref, None, [], hashed), absent, hashed)

    def block_sha(self, vid: str, index: int) -> bytes | None:
        """The SHA-256 a Merkle manifest this reader loaded names for block ``index`` of
        writer ``vid`` (what every read of it is compared with, ``_vouch``), or None (none names it,
        or an unhashed manifest)."""
        return self._hashes.get(vid, index)

    def in_newest_shape(self) -> bool:
        """Whether the current version's manifest is in the shape a commit writes now: if not,
        ``fusevault upgrade`` recommits it (``Files.recommit_newest_shape``).  A new format of
        manifests changes ``Sealing.MANIFEST_KIND`` (or, for a change the kind does not show, this test)."""
        return self.stored_kind == self.MANIFEST_KIND

    def _read_node(self, offset: int, length: int, vid: str, level: int, pos: int, sha: bytes | None,
                   dek: bytes | None, nodes: list[tuple[int, int]], hashed: bool) -> bytes:
        """The plaintext of a non-root node of a manifest tree, authenticated;
        in a Merkle tree, its record is the one its parent's hash names."""
        offset, length = self.where(offset, length, vid, tree.node_index(level, pos), sha=sha)
        nodes.append((offset, length))
        index = tree.node_index(level, pos)
        record = os.pread(self.fd, length, offset)
        if sha is not None:
            if hashlib.sha256(record).digest() != sha:
                self._refuse(vid, index)
        else:
            self._vouch(vid, index, record, dek)
        sealed = self._check_record(record, length, KIND_HNODE if hashed else KIND_NODE)
        return aead.unseal(dek or self.dek, sealed,
                           aead.ad(*tree.node_ad_parts(self.fid, vid, level, pos, hashed)))

    def _refuse(self, vid: str, index: int) -> None:
        """EIO, and an alarm where this replica keeps them."""
        if self.layout.places is None:
            raise Forged(f"file {self.fid}: record {index} of version {vid} is not what its author sealed")
        placements.refuse_record(self.layout.places, self.fid, vid, index)

    def where(self, offset: int, length: int, vid: str, index: int,
              dek: bytes | None = None, sha: bytes | None = None) -> tuple[int, int]:
        """The place here of the record of version ``vid`` at ``index`` (-1: its
        manifest): a record that came from a peer sits where it was appended.
        ``sha``: the SHA-256 the reading version names for it: of the copies of a
        record placed again after gc punched it, the one with that hash."""
        places = self.layout.places
        if places is None or not places.any_arrived:
            return offset, length
        # Looked up again for a writer new to this reader, and once records of this file arrived since
        # it looked: a record placed again (a copy, or the last of a version's records to come) is
        # read by a handle opened before it came (attack rounds 50a (3), 51a (1)).  Once per arrival,
        # not per read: a hash named by no copy here reads the place and is refused as before.
        if vid not in self._looked_up or places.placed_since(self.fid, self._arrivals_seen):
            self._arrivals_seen = places.arrivals  # before the queries: an arrival meanwhile is seen next
            self._moved = places.arrived_of(self.fid)
            self._copies = places.copies_of(self.fid)
            self._looked_up = {v for v, _ in self._moved} | {vid}
        if sha is not None and (copy := self._copies.get((vid, index), {}).get(sha)) is not None:
            return copy
        if (vid, index) not in self._moved:
            return offset, length
        moved = self._moved[(vid, index)]
        if moved is None:  # a row fusevault never writes (store/places.py ``checked_place``): damage, EIO
            placements.alarm(places, f"{self.fid}/{vid}/{index}", f"file {self.fid}: the place kept here of "
                             f"record {index} of version {vid} is not one fusevault writes (store.sqlite's "
                             "places table changed?): refused (EIO)")
            raise CorruptData(f"file {self.fid}: the place of record {index} of version {vid} is damaged")
        return moved

    def _expected(self, vid: str, dek: bytes | None) -> dict[int, bytes] | None:
        """What the records of version ``vid`` must hash to (once per version)."""
        if vid == self.pending_vid:
            return self._record_sha  # sealed by this Content a moment ago, not committed yet
        try:
            return self._shas[vid]
        except KeyError:
            pass
        places = self.layout.places
        if places is None:  # a store of an unknown kind: nothing to compare with
            shas, final = None, True
        else:
            shas, final = placements.version_shas(places, self.fid, vid, dek or self.dek, self._read_raw,
                                                  head=vid == self.head,
                                                  own_records=lambda at: self._own_records(at, vid, dek))
        if final:
            self._shas[vid] = shas
        return shas

    def _vouch(self, vid: str, index: int, record: bytes, dek: bytes | None = None) -> None:
        """Forged (EIO, an alarm) unless ``record`` is the one version ``vid``'s
        signed digest names at ``index``: a record resealed in place under the
        file's key authenticates, and only this tells.  A block a verified
        Merkle manifest names is compared with the hash it holds, which the
        current version's signed document vouches for through the tree."""
        known = self._hashes.get(vid, index) if index >= 0 else None
        if known is not None:
            if hashlib.sha256(record).digest() != known:
                self._refuse(vid, index)
            return
        if not self.vouch:
            return
        shas = self._expected(vid, dek)
        if shas is not None and hashlib.sha256(record).digest() != shas.get(index):
            placements.refuse_record(self.layout.places, self.fid, vid, index)

    def _own_records(self, place: tuple[int, int], vid: str, dek: bytes | None) -> list[tuple[int, int, int]]:
        """(index, offset, length) of every record version ``vid`` wrote (the blocks
        and tree nodes its manifest at ``place`` names with its own id): where no
        ``places`` table keeps them (a vault kept in CouchDB), so that its
        ``records`` digest can be checked (vault/files/placements.py).  Read by
        a reader of its own, which vouches for nothing: the caller checks."""
        reader = Content(self.layout, self.owner, self.fid, dek or self.dek, None, None,
                         check_sidecar=False, vouch=False)
        try:
            manifest = reader.load_manifest(place, vid)
        finally:
            reader.close()
        nodes = (manifest.tree or {}).items()
        out = [(tree.node_index(level, pos), offset, length)
               for (level, pos), ((offset, length, writer), *_) in nodes if writer == vid]
        vids = manifest.vids
        out += [(index, offset, length) for index, offset, length, vidx, _ in manifest.blocks.blocks()
                if vidx < len(vids) and vids[vidx] == vid]
        return out

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
        self.manifest = Manifest(0, [], block_size=NEW_BLOCK_SIZE, hashed=True)
        self.dirty = {}
        self._record_sha = {}
        self.changed = True

    def write_sidecar(self) -> None:
        write_vfmeta(self.layout, self.owner, self.fid, self.dek, self.acl, self.epoch)

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
            fd = inside.open_file(self.layout.root, self._own, os.path.basename(self.vf_path), os.O_RDWR)
        except FileNotFoundError:
            raise CorruptData(f"content of {self.fid} is missing") from None
        if os.pread(fd, HEADER.size, 0) != header_for(self.fid):
            os.close(fd)
            raise CorruptData(f"content of {self.fid} has a damaged header")
        self.fd = fd
        if self.check_sidecar:
            self._keep_sidecar()
        self.end = os.fstat(self.fd).st_size

    def _keep_sidecar(self) -> bool:
        """The sidecar written from the documents unless it is current; whether it was written."""
        # None: none here (the file came from a peer), or no regular file: written anew.
        sidecar = inside.read_file(self.layout.root, self._own, os.path.basename(self.vfmeta_path))
        if sidecar is not None and check_vfmeta(sidecar, self.fid, self.owner, self.dek, self.epoch,
                                                self.alarms) is not None:
            return False
        # Missing, or a crash between a key change and the sidecar's
        # rewrite left it at the older key: written from the documents.
        self.write_sidecar()
        return True

    def _create_files(self) -> None:
        with append_lock(self.vf_path):
            if not self._join_files():
                self._write_new_files()

    def _join_files(self) -> bool:
        """This new file's ``.vf`` is here already: another user of a shared mount began the same
        file a moment ago, or another device's records of it came first (a conflict copy, whose id
        every device derives alike: tests/unit/test_content_new_files.py).  Appended to, never made
        anew over theirs; what a crash left of a file never committed is only space here."""
        try:
            fd = inside.open_file(self.layout.root, self._own, os.path.basename(self.vf_path), os.O_RDWR)
        except (FileNotFoundError, CorruptData):
            return False  # none, or no file of ours: made anew (what is there is removed)
        if os.pread(fd, HEADER.size, 0) != header_for(self.fid) or os.fstat(fd).st_nlink != 1 or _sparse(fd):
            os.close(fd)
            return False  # not this file's (a torn header, a hard link, a hole): made anew
        self.fd = fd
        self.new_files = self._keep_sidecar()  # a peer's records come with none: its entry synced too
        self.end = os.fstat(fd).st_size
        return True

    def _write_new_files(self) -> None:
        # own/ exists from the user's creation.  No temporary file needed:
        # the .vf does not exist yet, and a missing .vf makes the next
        # attempt write the sidecar again from scratch.
        folder = inside.open_dir(self.layout.root, self._own)
        try:
            fd = _made_new(folder, os.path.basename(self.vfmeta_path), os.O_WRONLY)
            try:
                os.write(fd, vfmeta_bytes(self.fid, self.owner, self.dek, self.acl, self.epoch))
            finally:
                os.close(fd)
            fd = _made_new(folder, os.path.basename(self.vf_path), os.O_RDWR)
        finally:
            os.close(folder)
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
            offset, length = self.where(offset, length, vids[vidx], index,
                                        sha=self._hashes.get(vids[vidx], index))
        record = os.pread(self.fd, length, offset)
        if vidx < len(vids):
            self._vouch(vids[vidx], index, record)
        return self._open_block(index, record, length, vids, vidx, last)

    def read(self, offset: int, size: int, file_size: int, fresh: list[tuple[Key, bytes]] | None = None,
             ahead: int = 0) -> bytes:
        """Plaintext of [offset, offset+size) cut at file_size.

        Safe without the file's lock: stored records never change once
        appended, and entries and dirty blocks are replaced, never edited in
        place, by the writer (see _write_blocks).  ``fresh``: where to put
        each stored block read and verified, under its key for the block
        cache (vault/files/block_cache.py), with those of up to ``ahead``
        bytes of readahead after the request.  A readahead block that fails
        its checks is left out (EIO comes when it is asked for).
        """
        end = min(offset + size, file_size)
        if end <= offset:
            return b""
        first, last = offset // self.bs, (end - 1) // self.bs
        blocks = self._blocks(range(first, last + 1), fresh)
        if ahead > 0 and fresh is not None:
            stop = min(-(-min(end + ahead, file_size) // self.bs), last + 1 + -(-ahead // self.bs))
            try:
                self._blocks(range(last + 1, stop), fresh)
            except CorruptData:
                pass
        return self._cut(offset, end, first, blocks)

    def cached(self, offset: int, size: int, file_size: int, cache: BlockCache) -> bytes | None:
        """[offset, offset+size) from dirty blocks, holes and ``cache`` alone;
        None if a stored block it needs is not cached (on the trio loop: no I/O)."""
        end = min(offset + size, file_size)
        if end <= offset:
            return b""
        manifest = self.manifest
        vids = manifest.vids
        first, last = offset // self.bs, (end - 1) // self.bs
        blocks: list[bytes | bytearray] = []
        for index in range(first, last + 1):
            data = self.dirty.get(index)
            if data is None:
                entry = manifest.blocks.get(index)
                if entry[1] == 0:
                    data = b""
                elif entry[2] >= len(vids):
                    return None
                else:
                    data = cache.get(self._key(index, entry, vids))
                    if data is None:
                        return None
            blocks.append(data)
        return self._cut(offset, end, first, blocks)

    def _key(self, index: int, entry: tuple[int, int, int, int], vids: list[str]) -> Key:
        """With the hash the manifest names: two versions naming other bytes for one record read
        other copies of it (``where``), never each other's from the cache."""
        offset, length, vidx, last = entry
        return (self.fid, vids[vidx], index, offset, length, last, self._hashes.get(vids[vidx], index))

    def _cut(self, offset: int, end: int, first: int, blocks: list[bytes | bytearray]) -> bytes:
        out = []
        for index, data in zip(range(first, first + len(blocks)), blocks):
            start = max(offset - index * self.bs, 0)
            stop = min(end - index * self.bs, self.bs)
            chunk = bytes(data[start:stop])
            if len(chunk) < stop - start:  # a hole or a short block reads as zeros
                chunk += bytes(stop - start - len(chunk))
            out.append(chunk)
        return b"".join(out)

    def _blocks(self, indices: range,
                fresh: list[tuple[Key, bytes]] | None = None) -> list[bytes | bytearray]:
        """Blocks by index; stored records next to each other come in one pread.
        ``fresh``: gets (key, plaintext) of each stored block, once verified."""
        manifest = self.manifest  # once: sealing a version may swap it (_drop_unused_vids)
        blocks, vids = manifest.blocks, manifest.vids
        found: dict[int, bytes | bytearray] = {}
        runs: list[list[tuple[int, int, int, int, int]]] = []
        keys: dict[int, Key] = {}  # by the manifest's entry, not where ``where`` found the record
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
                if fresh is not None:
                    keys[index] = self._key(index, entry, vids)
                entry = (*self.where(entry[0], entry[1], vids[entry[2]], index,
                                     sha=self._hashes.get(vids[entry[2]], index)), *entry[2:])
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
                found[index] = plain = self._open_block(index, record, length, vids, vidx, last)
                if index in keys and fresh is not None:
                    fresh.append((keys[index], plain))
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


def _sparse(fd: int) -> bool:
    """Whether the file has a hole.  A ``.vf`` is only ever appended to, so one with a hole was
    planted: a sparse file of the largest size the file system allows, taking no space, past whose
    end every record appended fails (EFBIG), so the new file it was planted for could never be
    sealed (attack round 37b (3)).  A file system with no SEEK_HOLE shows none."""
    try:
        return os.lseek(fd, 0, os.SEEK_HOLE) < os.fstat(fd).st_size
    except OSError:
        return False


def _made_new(folder: int, name: str, flags: int) -> int:
    """``name`` made new (O_EXCL) in the folder ``folder`` (an fd): what a crash left there, or what
    someone put there (a link: removed, never followed), goes first."""
    try:
        return inside.open_in(folder, name, flags | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        try:
            os.unlink(name, dir_fd=folder)
        except IsADirectoryError:
            raise CorruptData(f"refused to write {name} in the vault folder: a folder is in its "
                              "place") from None
        return inside.open_in(folder, name, flags | os.O_CREAT | os.O_EXCL)
