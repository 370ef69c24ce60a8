"""Writing a file's contents: dirty blocks, truncation, padding, and sealing a
version (its blocks, its manifest tree, the digest its document signs).

``Sealing`` is the writing half of ``Content`` (vault/files/content.py), which
holds the state both halves use: the open ``.vf``, the manifest, the dirty
blocks.  Records are only ever appended (docs/FORMAT.md).
"""

from __future__ import annotations

import hashlib
import os
import struct
import uuid
from typing import TYPE_CHECKING

from fusevault.crypto import aead
from fusevault.errors import CorruptData
from fusevault.store.places import note_written
from fusevault.vault.format import manifest_tree as tree
from fusevault.vault.format.atomic import datasync_file, fsync_dir
from fusevault.vault.format.block_hashes import BlockHashes
from fusevault.vault.format.manifest import (
    KIND_HNODE,
    KIND_HTREE,
    MAX_FILE_SIZE,
    NEW_BLOCK_SIZE,
    BlockMap,
    Manifest,
    Run,
    manifest_label,
)
from fusevault.vault.format.padding import padme
from fusevault.vault.format.vf import KIND_BLOCK, MANIFEST_INDEX, append_lock, block_ad, record_length

if TYPE_CHECKING:
    from fusevault.vault.format.layout import Layout

WRITE_BATCH = 128  # blocks sealed and appended at a time (8 MiB): padding can be many


def _fit(data: bytes | bytearray, length: int) -> bytes | bytearray:
    """A block cut or zero-filled to ``length``.  Cutting only drops zeros:
    no stored or dirty block holds a non-zero byte past the file's end (a
    truncate cuts them, padding is zeros), and ``length`` reaches the end."""
    if len(data) == length:
        return data
    return bytes(data[:length]) + bytes(max(0, length - len(data)))


class Sealing:
    """The writing half of ``Content``: what it changes, and sealing it as a version."""

    MANIFEST_KIND = KIND_HTREE  # the manifest a version is sealed with: the newest shape

    layout: Layout
    fid: str
    dek: bytes
    fd: int | None
    end: int
    dirty: dict[int, bytearray]
    manifest: Manifest
    padded: bool
    pending_vid: str
    changed: bool
    synced: bool
    new_files: bool
    sealed: list[tuple[int, int, int]]
    digests: dict
    vf_path: str
    vfmeta_path: str
    owner: str
    _record_sha: dict[int, bytes]
    stored_kind: int
    _shas: dict[str, dict[int, bytes] | None]
    _hashes: BlockHashes
    unchecked: int
    # The only blocks whose last mark or record length can be wrong since the
    # last version was sealed (its final block, and every block sealed since
    # with a last mark or a short record), for the block map they were noted
    # on; None or another map (loaded, cut to nothing, rekeyed): not known,
    # every run is looked at (``_stale``).
    _marks: tuple[BlockMap, set[int]] | None
    # How many writers the manifest had when unused ones were last dropped.
    _vids_kept: int
    # ``pending_vid`` was never added to a manifest's writers (``_vidx``).
    _vid_fresh: bool

    if TYPE_CHECKING:
        bs: int
        full_record: int

        def _open_fd(self, create: bool = False) -> None: ...
        def _stored_block(self, index: int) -> bytes: ...
        def _record(self, kind: int, sealed: bytes) -> bytes: ...
        def where(self, offset: int, length: int, vid: str, index: int,
                  dek: bytes | None = None) -> tuple[int, int]: ...
        def _vouch(self, vid: str, index: int, record: bytes, dek: bytes | None = None) -> None: ...
        def _expected(self, vid: str, dek: bytes | None) -> dict[int, bytes] | None: ...
        def _open_block(self, index: int, record: bytes, length: int, vids: list[str],
                        vidx: int, last: int) -> bytes: ...

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
                                     tree=self.manifest.tree, block_size=NEW_BLOCK_SIZE,
                                     hashed=self.manifest.hashed)
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
        holes: what a copy has to read (the rest reads as zeros).

        The dirty blocks are taken first, the map's runs second: a flush in
        another worker thread (``_write_blocks``) puts a block in the map
        before it drops it from ``dirty``, so a block gone from ``dirty``
        when it is looked at is in the map read after it.  The other order
        missed a block flushed between the two looks, and an export wrote
        zeros for it (attack round 46f (4))."""
        dirty = list(self.dirty)
        runs = self.manifest.blocks.runs
        spans = [(f * self.bs, (f + c) * self.bs) for f, c, *_ in runs]
        spans += [(i * self.bs, (i + 1) * self.bs) for i in dirty]
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
        vids = self.manifest.vids
        if vids and vids[-1] == vid:  # the pending version's, appended last: no scan of every writer
            return len(vids) - 1
        if vid == self.pending_vid and self._vid_fresh:  # a new random id: in no list yet
            self._vid_fresh = False
            vids.append(vid)
            return len(vids) - 1
        try:
            return vids.index(vid)
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
            self._note_marks([index for (index, _, last), (_, length) in zip(records, places)
                              if last or length != self.full_record])
            for index, _, _ in records:
                del self.dirty[index]

    def _note_marks(self, indices: list[int]) -> None:
        marks = self._marks
        if marks is not None and marks[0] is self.manifest.blocks:
            marks[1].update(indices)

    def _runs_to_check(self, final: int) -> list[Run]:
        """The runs ``_stale`` must look at: every run, or, when the marks
        since the last version are known (``_marks``), the runs holding them
        and the final block.  A version leaves no block but its final one
        marked last, nor (padded) with a short record, so no other run can be
        stale: the cost of a small edit does not grow with the runs a long
        history of scattered writes left (issue 26)."""
        blocks, marks = self.manifest.blocks, self._marks
        if marks is None or marks[0] is not blocks:
            return blocks.runs
        found: dict[int, Run] = {}
        for index in sorted(marks[1] | {final}):
            for run in blocks.overlapping(index, index + 1):
                found[run[0]] = run
        return [found[first] for first in sorted(found)]

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
        for first, count, _, length, _, run_last in self._runs_to_check(final):
            end = first + count
            odd = self.padded and length != self.full_record  # every block of the run is suspect
            if not (run_last or first <= final < end or odd):
                continue
            # Else only the run's last block (the one that can carry the mark) and the
            # final one can be wrong: not every block of a long run.
            ends = {end - 1, final} if first <= final < end else (end - 1,)
            for index in range(first, end) if odd else ends:
                last = run_last if index == end - 1 else 0
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
        version wrote, its manifest at index -1: their places (store/places.py)."""
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
        root, nodes = tree.build(self.manifest, lambda plains: self._write_nodes(plains, written_nodes), vid,
                                 self._block_shas)
        nonce = os.urandom(aead.NONCE_SIZE)
        sealed = aead.seal_with_nonce(self.dek, nonce, root,
                                      aead.ad(manifest_label(self.MANIFEST_KIND), self.fid, vid))
        manifest_record = self._record(self.MANIFEST_KIND, sealed)
        self.stored_kind = self.MANIFEST_KIND
        (place,) = self._append([(None, manifest_record, False)])
        self.manifest.tree = nodes
        self.manifest.blocks.touched = set()  # the next build starts from this tree
        self.manifest.hashed = True
        blocks = self.manifest.blocks
        vids = self.manifest.vids
        if vids and vids[-1] == vid or vid in vids:  # its own writer is the last one, as a rule
            # The index once, not per run: a file rewritten N times has N writers and many runs.
            mine = self._vidx(vid)
            mine_runs = self._runs_of(mine)
            written = [(i, o, n) for i, o, n, _, _ in blocks.blocks(mine_runs)]
            for first, count, *_ in mine_runs:  # this reader's reads of them are checked as any other's
                self._hashes.add(vid, first, self._block_shas(vid, first, count))
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
            if self.layout.places is not None:  # sealed here: every reader of this mount may trust them
                self.layout.places.vouched[(self.fid, vid)] = shas
        self._record_sha = {}
        self.pending_vid = uuid.uuid4().hex
        self._vid_fresh = True
        self.changed = False
        self._marks = (blocks, {nblocks - 1} if nblocks else set())
        return vid, place, nonce

    def _runs_of(self, vidx: int) -> list[Run]:
        """The runs of writer ``vidx``, the pending version's: only blocks it
        sealed (``_record_sha``, indices from 0; its tree nodes' are negative)
        can be in them, so only the runs over those are looked at, not every run."""
        blocks = self.manifest.blocks
        out: dict[int, Run] = {}
        indices = sorted(i for i in self._record_sha if i >= 0)
        k = 0
        while k < len(indices):  # by ranges of consecutive indices: one look-up each
            lo = hi = indices[k]
            while k < len(indices) and indices[k] == hi:
                hi += 1
                k += 1
            out.update((run[0], run) for run in blocks.overlapping(lo, hi) if run[4] == vidx)
        return [out[first] for first in sorted(out)]

    def _write_nodes(self, plains: list[tuple[int, int, bytes]],
                     written: list[tuple[int, int, int]]) -> list[tuple[int, int, bytes]]:
        """Seal and append non-root nodes of the pending version's manifest tree;
        (offset, length, SHA-256 of the record) of each, for its parent."""
        vid = self.pending_vid
        records = []
        for level, pos, plain in plains:
            sealed = aead.seal(self.dek, plain, aead.ad(*tree.node_ad_parts(self.fid, vid, level, pos, True)))
            records.append((tree.node_index(level, pos), self._record(KIND_HNODE, sealed), False))
        places = self._append(records)
        out = []
        for (index, record, _), (offset, length) in zip(records, places):
            sha = self._record_sha[index] = hashlib.sha256(record).digest()
            written.append((index, offset, length))
            out.append((offset, length, sha))
        return out

    def _block_shas(self, vid: str, first: int, count: int) -> bytes:
        """The SHA-256 of the records of blocks [first, first + count), all
        written by ``vid``, for a leaf of the version being sealed: this
        version's own as they were sealed, an older one's as a verified Merkle
        tree named it, else (a block of a kind 2, 3 or 4 manifest, once per
        file) read, checked as any read is, and hashed."""
        if vid != self.pending_vid and (known := self._hashes.get_run(vid, first, count)) is not None:
            return known  # a leaf's run of an older writer: one slice, not a look-up per block
        out = []
        for index in range(first, first + count):
            sha = self._record_sha.get(index) if vid == self.pending_vid else self._hashes.get(vid, index)
            out.append(sha if sha is not None else self._hash_stored(vid, index))
        return b"".join(out)

    def _hash_stored(self, vid: str, index: int) -> bytes:
        manifest = self.manifest
        offset, length, vidx, last = manifest.blocks.get(index)
        if not length or manifest.vids[vidx] != vid:
            raise CorruptData(f"manifest of {self.fid} does not hold block {index} of {vid}")
        self._open_fd()
        offset, length = self.where(offset, length, vid, index)
        record = os.pread(self.fd, length, offset)
        if self._hashes.get(vid, index) is None and self._expected(vid, None) is None:
            self.unchecked += 1  # nothing signed names it: hashed as it is (docs/SECURITY.md)
        self._vouch(vid, index, record)  # its own version's signed digest, where it has one
        self._open_block(index, record, length, manifest.vids, vidx, last)  # never hash what does not open
        return hashlib.sha256(record).digest()

    def _digests(self, written: list[tuple[int, int, int]], manifest_record: bytes) -> dict:
        """What the version document seals about the records this version wrote
        (docs/FORMAT.md, FilesMetaData): a replica that receives them checks
        them against it (vault/files/placements.py).  Only this version's records are
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
        # Looked at once the writers have doubled since: every run is read, so at
        # every version it was a cost that grew with the file's history.
        # Unused writers are in memory only (each tree leaf names its own).
        if len(manifest.vids) < 2 * self._vids_kept + 8:
            return
        used = sorted({run[4] for run in manifest.blocks.runs})
        self._vids_kept = len(used)
        if len(used) == len(manifest.vids):
            return
        renumber = {old: new for new, old in enumerate(used)}
        self.manifest = Manifest(manifest.size, [manifest.vids[i] for i in used],
                                 manifest.blocks.renumber(renumber), manifest.padded, manifest.tree,
                                 block_size=manifest.block_size, hashed=manifest.hashed)

    def seal_durably(self, file_size: int) -> tuple[str, tuple[int, int], bytes]:
        """``seal_version``, then its records flushed to disk (fsync): one worker-thread call."""
        sealed = self.seal_version(file_size)
        self.fsync()
        return sealed

    def fsync(self) -> None:
        if not self.synced and self.fd is None and not os.path.exists(self.vf_path):
            self.synced = True  # records a closed Content appended, to a file since gone: nothing to flush
        if not self.synced:
            self._open_fd()  # a Content that took over records a closed one appended
            # Data and what reading it back needs (the size after an append);
            # not the modification time, which no one reads.
            os.fdatasync(self.fd)
            self.synced = True
        if self.new_files:  # the sidecar and both directory entries
            datasync_file(self.vfmeta_path)
            fsync_dir(self.layout.own_dir(self.owner))
            self.new_files = False
