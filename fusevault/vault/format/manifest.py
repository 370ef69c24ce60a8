"""A version's list of blocks, as runs: what it costs grows with the blocks
stored, never with the file's apparent size.

A run is ``(index, count, offset, length, vidx, last)``: blocks ``index`` to
``index + count - 1``, each a record of ``length`` bytes, one after the other
in the ``.vf`` from ``offset``, all written by version ``vids[vidx]``; when
``last`` is 1 the run's final block is the file's last one.  Blocks between
runs are holes (they read as zeros).  A file written in one go is one or two
runs, and a hole of any length costs nothing, so a 1 TiB sparse file with
4 KiB of data has a manifest of a few dozen bytes.

Two manifest records exist (docs/FORMAT.md):

- kind 2 (format 1): one entry per block, holes included.  Read as before,
  never written any more: a file's next version is written as kind 3.
- kind 3 (format 2): the runs.  Read as before, never written any more.
- kind 4 (format 4): a tree of nodes (kind 5) whose leaves hold the runs;
  a commit shares every unchanged node with the version before
  (vault/format/manifest_tree.py).  Read as before, never written any more.
- kind 6 (format 5): the same tree as a Merkle tree (nodes of kind 7): each
  reference holds the SHA-256 of the record it names, blocks included.

The map is replaced, never edited in place (``BlockMap.state`` is swapped
whole), so a read in a worker thread always sees one consistent version of it
while the writer seals blocks in another.
"""

from __future__ import annotations

import struct
import uuid
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from operator import itemgetter

from fusevault.errors import CorruptData
from fusevault.vault.format.padding import padme

BLOCK_SIZE = 64 * 1024  # of every file before format 4 (kinds 2 and 3 say so)
# What a new file is cut into (format 4, kind 4 manifests record it): a
# 4 KiB edit seals 16 KiB, not 64 (docs/PERFORMANCE.md has the numbers).
NEW_BLOCK_SIZE = 16 * 1024
BLOCK_SIZES = (NEW_BLOCK_SIZE, BLOCK_SIZE)
# The largest file the format addresses: the largest off_t, which is also the
# largest size Linux lets a FUSE file have.  Anything larger is EFBIG (the
# kernel says so first).  Its padded size is 2**63, still a u64.
MAX_FILE_SIZE = (1 << 63) - 1
MAX_BLOCKS = -(-padme(MAX_FILE_SIZE) // BLOCK_SIZE)
MIN_RECORD = 4 + 1 + 12 + 16  # length, kind, nonce, tag: an empty block
FULL_RECORD = MIN_RECORD + BLOCK_SIZE

KIND_MANIFEST = 2  # format 1: an entry per block
KIND_RUNS = 3  # format 2: runs
KIND_TREE = 4  # format 4: the root of a tree of runs (vault/format/manifest_tree.py)
KIND_NODE = 5  # format 4: any other node of that tree
KIND_HTREE = 6  # format 5: the root of a Merkle tree of runs (every reference holds its record's hash)
KIND_HNODE = 7  # format 5: any other node of that tree
MANIFEST_HEAD = struct.Struct("<QIH")  # size, block size, number of version ids
ENTRY = struct.Struct("<QIHB")  # format 1: offset, record length, writer version index, last flag
RUN = struct.Struct("<QQQIHB")  # format 2: index, count, offset, record length, writer index, last
PADDED = b"\x01"  # format 1's trailer in a padded version; format 2 always has a flags byte
FLAG_PADDED = 1
HOLE = (0, 0, 0, 0)
LEAF_BITS = 8  # a manifest tree's leaf covers 2**8 blocks (manifest_tree.py)

Run = tuple[int, int, int, int, int, int]
Entry = tuple[int, int, int, int]


def manifest_label(kind: int) -> str:
    """The associated data label of a manifest record of ``kind``: a record's
    kind byte is clear, so each shape is sealed under its own label."""
    return {KIND_MANIFEST: "manifest", KIND_TREE: "manifest tree",
            KIND_HTREE: "manifest merkle"}.get(kind, "manifest runs")


_COUNT = itemgetter(1)  # a run's number of blocks


def _joins(a: Run, b: Run) -> bool:
    return (a[0] + a[1] == b[0] and a[2] + a[1] * a[3] == b[2] and a[3] == b[3]
            and a[4] == b[4] and not a[5])


def _join_all(runs: Iterable[Run]) -> list[Run]:
    out: list[Run] = []
    for run in runs:
        if out and _joins(out[-1], run):
            prev = out[-1]
            out[-1] = (prev[0], prev[1] + run[1], prev[2], prev[3], prev[4], run[5])
        else:
            out.append(run)
    return out


class BlockMap:
    """Blocks by index, stored as sorted runs (see the module's docstring)."""

    __slots__ = ("state", "touched", "_count")

    def __init__(self, runs: Iterable[Run] = ()) -> None:
        # (the run list it counts, how many blocks it holds): kept up to date by
        # ``put`` from what each call replaced, so a version's allocated size does
        # not sum every run (a file's runs grow with its history of scattered writes).
        self._count: tuple[list[Run], int] | None = None
        self._swap(_join_all(runs))
        # The leaves (manifest_tree.py: 2**LEAF_BITS blocks each) set since the
        # manifest's tree was last built (its writer resets it to an empty set
        # then), so the next build looks at those alone; None: unknown, every leaf.
        self.touched: set[int] | None = None

    def _swap(self, runs: list[Run]) -> None:
        self.state = ([r[0] for r in runs], runs)

    @property
    def runs(self) -> list[Run]:
        return self.state[1]

    @property
    def end(self) -> int:
        """One past the highest stored block."""
        runs = self.state[1]
        return runs[-1][0] + runs[-1][1] if runs else 0

    def get(self, index: int) -> Entry:
        """(offset, length, vidx, last) of the block at ``index``; HOLE for a hole."""
        starts, runs = self.state
        k = bisect_right(starts, index) - 1
        if k < 0:
            return HOLE
        first, count, offset, length, vidx, last = runs[k]
        if index >= first + count:
            return HOLE
        return offset + (index - first) * length, length, vidx, last if index == first + count - 1 else 0

    def _window(self, lo: int, hi: int) -> tuple[int, int]:
        """Positions [a, b) of the runs that overlap blocks [lo, hi)."""
        starts, runs = self.state
        a = bisect_right(starts, lo) - 1
        if a < 0 or runs[a][0] + runs[a][1] <= lo:
            a += 1
        return a, bisect_left(starts, hi)

    def overlapping(self, lo: int, hi: int) -> list[Run]:
        a, b = self._window(lo, hi)
        return self.state[1][a:b]

    def holes(self, lo: int, hi: int) -> Iterator[tuple[int, int]]:
        """[start, stop) of each hole within blocks [lo, hi)."""
        position = lo
        for first, count, *_ in self.overlapping(lo, hi):
            if first > position:
                yield position, first
            position = max(position, first + count)
        if position < hi:
            yield position, hi

    def stored(self, lo: int, hi: int) -> int:
        """How many blocks in [lo, hi) are stored (not holes)."""
        runs = self.state[1]
        if runs and lo <= runs[0][0] and hi >= runs[-1][0] + runs[-1][1]:
            # All of them (a version's allocated size, at every commit).
            return self._total(runs)
        return sum(min(f + c, hi) - max(f, lo) for f, c, *_ in self.overlapping(lo, hi))

    def _total(self, runs: list[Run]) -> int:
        """How many blocks ``runs`` (this map's list, now or just before) hold."""
        count = self._count  # once: a reader in another thread may look while the writer swaps
        if count is not None and count[0] is runs:
            return count[1]
        total = sum(map(_COUNT, runs))  # in C, not per run in Python
        self._count = (runs, total)
        return total

    def put(self, entries: list[tuple[int, int, int, int, int]]) -> None:
        """Set blocks: ``entries`` of (index, offset, length, vidx, last), sorted by index.

        One copy of the runs a call, then each new run is laid over them with
        bisect and slice assignment (no Python loop over the runs)."""
        if self.touched is not None:
            self.touched.update(entry[0] >> LEAF_BITS for entry in entries)
        total = self._total(self.state[1])
        starts, runs = list(self.state[0]), list(self.state[1])
        for new in _join_all((i, 1, o, n, v, last) for i, o, n, v, last in entries):
            total += _overlay(starts, runs, new)
        self.state = (starts, runs)
        self._count = (runs, total)

    def cut(self, nblocks: int) -> None:
        """Drop every block from ``nblocks`` on (a run cut short loses its last mark)."""
        self.touched = None  # leaves dropped: the next tree looks at all of them
        a, _ = self._window(nblocks, nblocks + 1)
        runs = self.state[1][:a]
        if a < len(self.state[1]):
            first, count, offset, length, vidx, last = self.state[1][a]
            if first < nblocks:
                runs.append((first, nblocks - first, offset, length, vidx, 0))
        self._swap(runs)

    def renumber(self, mapping: dict[int, int]) -> BlockMap:
        out = BlockMap()
        out._swap([(f, c, o, n, mapping[v], last) for f, c, o, n, v, last in self.state[1]])
        out._count = (out.state[1], self._total(self.state[1]))  # the same blocks
        # Leaves name writers by id, not by number: renumbering changes none.
        out.touched = None if self.touched is None else set(self.touched)
        return out

    def blocks(self, runs: Iterable[Run] | None = None) -> Iterator[tuple[int, int, int, int, int]]:
        """(index, offset, length, vidx, last) of every stored block (of ``runs``)."""
        for first, count, offset, length, vidx, last in (self.state[1] if runs is None else runs):
            for k in range(count):
                yield first + k, offset + k * length, length, vidx, last if k == count - 1 else 0


def _overlay(starts: list[int], runs: list[Run], new: Run) -> int:
    """Lay ``new`` over ``runs`` (and their ``starts``), in place; how many
    more blocks they hold."""
    lo, hi = new[0], new[0] + new[1]
    a = bisect_right(starts, lo) - 1
    if a < 0 or runs[a][0] + runs[a][1] <= lo:
        a += 1
    b = bisect_left(starts, hi)
    middle: list[Run] = []
    if a < b and runs[a][0] < lo:  # the part of the first overlapped run before the new one
        first, _, offset, length, vidx, _ = runs[a]
        middle.append((first, lo - first, offset, length, vidx, 0))
    middle.append(new)
    if a < b and runs[b - 1][0] + runs[b - 1][1] > hi:  # the part of the last one after it
        first, count, offset, length, vidx, last = runs[b - 1]
        k = hi - first
        middle.append((hi, count - k, offset + k * length, length, vidx, last))
    before = runs[a - 1:a] if a > 0 else []
    after = runs[b:b + 1]
    joined = _join_all(before + middle + after)
    grown = sum(map(_COUNT, joined)) - sum(map(_COUNT, runs[max(a - 1, 0):b + 1]))
    runs[max(a - 1, 0):b + 1] = joined
    starts[max(a - 1, 0):b + 1] = [r[0] for r in joined]
    return grown


@dataclass
class Manifest:
    size: int
    vids: list[str]
    blocks: BlockMap = field(default_factory=BlockMap)
    padded: bool = False
    # Kind 4: the nodes of the tree this manifest was read from or last
    # written as, by (level, position), so the next commit shares the
    # unchanged ones (vault/format/manifest_tree.py); empty for kinds 2 and 3.
    tree: dict = field(default_factory=dict)
    # Where its nodes sit here, (offset, length) each: what gc keeps.
    nodes: list[tuple[int, int]] = field(default_factory=list)
    block_size: int = BLOCK_SIZE
    # Kind 6: the tree holds every record's hash (a commit may share its
    # nodes); a kind 4 tree is written anew, hashed, at the next commit.
    hashed: bool = False
    # Kind 6, as read: (writer vid, first index, SHA-256 of each block record
    # from there) of every run, for the reader to keep (vault/format/block_hashes.py).
    block_shas: list[tuple[str, int, bytes]] = field(default_factory=list)

    def pack(self) -> bytes:
        """The format 2 (runs) shape (kept for tools and tests; versions are written as trees)."""
        runs = self.blocks.runs
        out = [MANIFEST_HEAD.pack(self.size, BLOCK_SIZE, len(self.vids))]
        out += [uuid.UUID(v).bytes for v in self.vids]
        out.append(struct.pack("<Q", len(runs)))
        out += [RUN.pack(*r) for r in runs]
        out.append(bytes([FLAG_PADDED if self.padded else 0]))
        return b"".join(out)

    @classmethod
    def unpack(cls, data: bytes, kind: int = KIND_RUNS) -> Manifest:
        try:
            size, block_size, nvids = MANIFEST_HEAD.unpack_from(data)
            pos = MANIFEST_HEAD.size
            vids = [uuid.UUID(bytes=data[pos + 16 * i: pos + 16 * (i + 1)]).hex for i in range(nvids)]
            pos += 16 * nvids
            if kind == KIND_MANIFEST:
                (count,) = struct.unpack_from("<I", data, pos)
                pos += 4
                entries = [ENTRY.unpack_from(data, pos + ENTRY.size * i) for i in range(count)]
                pos += ENTRY.size * count
                runs = [(i, 1, o, n, v, last) for i, (o, n, v, last) in enumerate(entries) if n]
                trailer = data[pos:]
                if trailer not in (b"", PADDED):
                    raise CorruptData("manifest has an unknown padding (from a newer fusevault?)")
                padded = trailer == PADDED
            else:
                (count,) = struct.unpack_from("<Q", data, pos)
                pos += 8
                if len(data) != pos + RUN.size * count + 1:
                    raise CorruptData("manifest is malformed")
                runs = [RUN.unpack_from(data, pos + RUN.size * i) for i in range(count)]
                flags = data[-1]
                if flags & ~FLAG_PADDED:
                    raise CorruptData("manifest has unknown flags (from a newer fusevault?)")
                padded = bool(flags & FLAG_PADDED)
        except (struct.error, ValueError):
            raise CorruptData("manifest is malformed") from None
        if block_size != BLOCK_SIZE:
            raise CorruptData("manifest has an unsupported block size")
        _check_runs(runs, nvids, size)
        return cls(size, vids, BlockMap(runs), padded)


def max_blocks(block_size: int) -> int:
    """How many blocks of ``block_size`` the largest file, padded, has."""
    return -(-padme(MAX_FILE_SIZE) // block_size)


def _check_runs(runs: list[Run], nvids: int, size: int) -> None:
    # Sealed, so only a bug or a newer writer could break these; checked so
    # that nothing here ever trusts a count it cannot bound.
    position = 0
    for first, count, _, length, vidx, last in runs:
        if (first < position or count < 1 or not MIN_RECORD <= length <= FULL_RECORD
                or vidx >= nvids or last not in (0, 1) or first + count > MAX_BLOCKS):
            raise CorruptData("manifest is malformed")
        position = first + count
    if size > MAX_FILE_SIZE:
        raise CorruptData("manifest is malformed")
