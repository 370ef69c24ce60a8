"""Manifests as trees (kind 4, vault format 4): a commit writes the nodes on
the path from each changed leaf to a new root and shares every other node
with the version it was made from, so a small edit of a big file writes a few
small nodes, not a list of all the file's runs.

The tree is a radix tree over block indices (docs/FORMAT.md): a leaf (level
0) at position ``p`` holds the runs of blocks ``[p * 2**8, (p + 1) * 2**8)``
(a run crossing that range is cut in two); a node of level ``l`` at position
``p`` has up to 64 children, child ``s`` being the node of level ``l - 1`` at
position ``64 * p + s``.  An empty range has no node (a hole costs nothing).
The root (kind 4, what the version document points at) is the one node at
position 0 of the lowest level that covers the file's stored blocks, and also
carries the size, block size and flags.  Every other node is a record of kind
5, sealed under the DEK with ``ad("manifest node", fid, writer vid, level,
position)`` and named by its parent by (offset, length, writer vid), as blocks
are: a node moved, swapped, replayed from another version or another place
fails authentication (EIO).

Kinds 6 and 7 (vault format 5) are the same tree made a Merkle tree: every
child reference also carries the SHA-256 of the child's sealed record, and
every leaf the SHA-256 of each block record it names, so the root's hash,
which the signed version document binds (``manifest_sha256``), vouches for
every node and block the version reaches, whoever wrote them and whether or
not their own version's document still exists (docs/SECURITY.md).  The root
is sealed with ``ad("manifest merkle", fid, vid)``, other nodes with
``ad("manifest merkle node", ...)``.  Kinds 4 and 5 are read as before; a
file's next commit writes its tree wholly in the hashed shape.

Nothing here touches the disk: ``Content`` (vault/files/content.py) reads and
writes the records, this module packs, checks and decides what to share.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Iterable

from fusevault.errors import CorruptData
from fusevault.vault.format.manifest import (
    BLOCK_SIZES,
    FLAG_PADDED,
    LEAF_BITS,
    MAX_FILE_SIZE,
    MIN_RECORD,
    RUN,
    BlockMap,
    Manifest,
    Run,
    max_blocks,
)

# LEAF_BITS (from manifest.py): a leaf covers 256 blocks: at most 256 runs, 8 KiB, however the file is cut
FAN_BITS = 6  # 64 children a node
FANOUT = 1 << FAN_BITS
MAX_LEVEL = 7  # 2**(8 + 6 * 7) blocks: past max_blocks() of every block size
ROOT_HEAD = struct.Struct("<QIBB")  # size, block size, flags, level
COUNT = struct.Struct("<HI")  # number of version ids, number of entries
CHILD = struct.Struct("<BQIH")  # slot, offset, record length, writer index
HCHILD = struct.Struct("<BQIH32s")  # the same and the SHA-256 of the child's record (kinds 6 and 7)
SHA = 32
NODE_LABEL = "manifest node"
HNODE_LABEL = "manifest merkle node"

# A leaf's content: runs with the writer's id instead of an index; in a
# hashed tree each run also holds the SHA-256 of its block records, in order.
LeafRun = tuple  # (first, count, offset, length, vid, last[, shas])
# A child reference: (slot, offset, length, writer vid[, SHA-256 of its record]).
Child = tuple
# What a node is, by (level, position): ((offset, length, writer vid), canonical
# content, SHA-256 of its record or None in an unhashed tree).
Tree = dict[tuple[int, int], tuple[tuple[int, int, str], tuple, bytes | None]]


def span(level: int) -> int:
    """How many blocks a node of ``level`` covers."""
    return 1 << (LEAF_BITS + FAN_BITS * level)


def root_level(end: int) -> int:
    level = 0
    while span(level) < end:
        level += 1
    return level


def node_index(level: int, pos: int) -> int:
    """The record index of a non-root node: negative, below the manifest's -1,
    so it never meets a block's (sync/content_docs.py names records by it)."""
    return -(2 + (pos << 3 | level))


def node_of(index: int) -> tuple[int, int]:
    k = -index - 2
    return k & 7, k >> 3


def is_node_index(index: int) -> bool:
    return index <= -2 and node_of(index)[0] <= MAX_LEVEL


def node_ad_parts(fid: str, vid: str, level: int, pos: int, hashed: bool = False) -> tuple:
    return (HNODE_LABEL if hashed else NODE_LABEL, fid, vid, level, pos)


# --- packing


def _pack_body(entries: Iterable[tuple], vid_at: int, item: struct.Struct) -> bytes:
    entries = list(entries)
    vids = sorted({e[vid_at] for e in entries})
    number = {v: i for i, v in enumerate(vids)}
    out = [COUNT.pack(len(vids), len(entries))] + [uuid.UUID(v).bytes for v in vids]
    for e in entries:
        out.append(item.pack(*e[:vid_at], number[e[vid_at]], *e[vid_at + 1:]))
    return b"".join(out)


def pack_leaf(runs: tuple[LeafRun, ...]) -> bytes:
    if runs and len(runs[0]) == 7:  # hashed: the runs, then every block's SHA-256 in order
        return _pack_body([r[:6] for r in runs], 4, RUN) + b"".join(r[6] for r in runs)
    return _pack_body(runs, 4, RUN)


def pack_inner(children: tuple[Child, ...]) -> bytes:
    return _pack_body(children, 3, HCHILD if children and len(children[0]) == 5 else CHILD)


def pack_root(size: int, block_size: int, padded: bool, level: int, body: bytes) -> bytes:
    return ROOT_HEAD.pack(size, block_size, FLAG_PADDED if padded else 0, level) + body


def _unpack_body(data: bytes, pos: int, vid_at: int, item: struct.Struct,
                 rest: Callable[[list[tuple]], int] | None = None) -> list[tuple]:
    """The entries of a node's body; ``rest(entries)``: how many bytes follow them."""
    nvids, count = COUNT.unpack_from(data, pos)
    pos += COUNT.size
    vids = [uuid.UUID(bytes=data[pos + 16 * i: pos + 16 * (i + 1)]).hex for i in range(nvids)]
    pos += 16 * nvids
    if len(data) < pos + item.size * count:
        raise CorruptData("manifest node is malformed")
    out = []
    for k in range(count):
        e = item.unpack_from(data, pos + item.size * k)
        if e[vid_at] >= nvids:
            raise CorruptData("manifest node is malformed")
        out.append((*e[:vid_at], vids[e[vid_at]], *e[vid_at + 1:]))
    if len(data) != pos + item.size * count + (rest(out) if rest else 0):
        raise CorruptData("manifest node is malformed")
    return out


def _leaf(data: bytes, pos: int, at: int, block_size: int, hashed: bool = False) -> tuple[LeafRun, ...]:
    runs = _unpack_body(data, pos, 4, RUN, (lambda r: SHA * sum(e[1] for e in r)) if hashed else None)
    low, high = at * span(0), (at + 1) * span(0)
    position = low
    for first, count, _, length, _, last in runs:
        # Sealed, so only a bug or a newer writer could break these.
        if (first < position or count < 1 or first + count > high
                or not MIN_RECORD <= length <= MIN_RECORD + block_size or last not in (0, 1)):
            raise CorruptData("manifest leaf is malformed")
        position = first + count
    if hashed:  # the blocks' SHA-256, in order after the runs: each run takes its own
        tail = len(data) - SHA * sum(r[1] for r in runs)
        out = []
        for run in runs:
            out.append((*run, data[tail: tail + SHA * run[1]]))
            tail += SHA * run[1]
        return tuple(out)
    return tuple(runs)


def _inner(data: bytes, pos: int, hashed: bool = False) -> tuple[Child, ...]:
    children = _unpack_body(data, pos, 3, HCHILD if hashed else CHILD)
    slot = -1
    for s, _, length, *_ in children:
        if s <= slot or s >= FANOUT or length < MIN_RECORD:
            raise CorruptData("manifest node is malformed")
        slot = s
    return tuple(children)


# --- reading


ReadNode = Callable[[int, int, str, int, int, bytes | None], bytes]


def load(root: bytes, read_node: ReadNode, hashed: bool = False) -> Manifest:
    """The manifest of a kind 4 (or, ``hashed``, kind 6) root; ``read_node(offset,
    length, vid, level, pos, sha)`` returns a node's plaintext, authenticated
    and, given ``sha``, checked against it.  A hashed manifest's ``block_shas``
    lists (vid, first index, SHA-256 of each block from there) of every run."""
    try:
        size, block_size, flags, level = ROOT_HEAD.unpack_from(root)
        if block_size not in BLOCK_SIZES:
            raise CorruptData("manifest has an unsupported block size")
        if flags & ~FLAG_PADDED:
            raise CorruptData("manifest has unknown flags (from a newer fusevault?)")
        if level > MAX_LEVEL or size > MAX_FILE_SIZE:
            raise CorruptData("manifest is malformed")
        tree: Tree = {}
        leaves: list[tuple[LeafRun, ...]] = []
        if level == 0:
            leaves.append(_leaf(root, ROOT_HEAD.size, 0, block_size, hashed))
        else:
            _walk(_inner(root, ROOT_HEAD.size, hashed), level, 0,
                  lambda p, pos: _leaf(p, 0, pos, block_size, hashed), read_node, tree, leaves, hashed)
    except (struct.error, ValueError):
        raise CorruptData("manifest is malformed") from None
    vids: list[str] = []
    number: dict[str, int] = {}
    runs: list[Run] = []
    shas: list[tuple[str, int, bytes]] = []
    for leaf in leaves:
        for first, count, offset, length, vid, last, *hashes in leaf:
            if vid not in number:
                number[vid] = len(vids)
                vids.append(vid)
            runs.append((first, count, offset, length, number[vid], last))
            if hashes:
                shas.append((vid, first, hashes[0]))
    if runs and runs[-1][0] + runs[-1][1] > max_blocks(block_size):
        raise CorruptData("manifest is malformed")
    return Manifest(size, vids, BlockMap(runs), bool(flags & FLAG_PADDED), tree=tree, block_size=block_size,
                    hashed=hashed, block_shas=shas)


def _walk(children: tuple[Child, ...], level: int, pos: int, leaf: Callable, read_node: ReadNode,
          tree: Tree, leaves: list, hashed: bool) -> None:
    for slot, offset, length, vid, *sha in children:
        child_level, child_pos = level - 1, pos * FANOUT + slot
        plain = read_node(offset, length, vid, child_level, child_pos, sha[0] if sha else None)
        if child_level == 0:
            canon = leaf(plain, child_pos)
            leaves.append(canon)
        else:
            canon = _inner(plain, 0, hashed)
        tree[(child_level, child_pos)] = ((offset, length, vid), canon, sha[0] if sha else None)
        if child_level:
            _walk(canon, child_level, child_pos, leaf, read_node, tree, leaves, hashed)


def absent_nodes(root: bytes, read_node: ReadNode, absent: Callable[[str, int, bytes | None], bool],
                 hashed: bool = False) -> list[tuple[str, int, bytes | None]]:
    """(writer vid, record index, SHA-256 of its record as its parent names it or None in an
    unhashed tree) of the nodes the tree of ``root`` names that ``absent(vid, index, that hash)`` says
    are not here (a copy of other bytes may be: attack round 46a (3)), as the walk from the root
    meets them: what lies under an absent node is not known until it
    is here (a later walk goes on from it).  Only inner nodes are read (leaves name blocks, no node),
    so the work is the tree's height and the nodes its version names, whatever any list of absent
    records holds (attack round 42a (2), (8)).  The hash lets a node fetched again be checked before
    it is kept (attack round 43a (1))."""
    try:
        _, _, _, level = ROOT_HEAD.unpack_from(root)
        if level > MAX_LEVEL:
            raise CorruptData("manifest is malformed")
        out: list[tuple[str, int, bytes | None]] = []
        if level:
            _absent_under(_inner(root, ROOT_HEAD.size, hashed), level, 0, read_node, absent, out, hashed)
    except (struct.error, ValueError):
        raise CorruptData("manifest is malformed") from None
    return out


def _absent_under(children: tuple[Child, ...], level: int, pos: int, read_node: ReadNode,
                  absent: Callable[[str, int, bytes | None], bool], out: list[tuple[str, int, bytes | None]],
                  hashed: bool) -> None:
    for slot, offset, length, vid, *sha in children:
        child_level, child_pos = level - 1, pos * FANOUT + slot
        index = node_index(child_level, child_pos)
        if absent(vid, index, sha[0] if sha else None):
            out.append((vid, index, sha[0] if sha else None))
        elif child_level:
            plain = read_node(offset, length, vid, child_level, child_pos, sha[0] if sha else None)
            _absent_under(_inner(plain, 0, hashed), child_level, child_pos, read_node, absent, out, hashed)


# --- writing


def leaves_of(manifest: Manifest) -> dict[int, tuple[LeafRun, ...]]:
    """The runs of ``manifest`` cut into leaves, by position (without hashes)."""
    vids = manifest.vids
    out: dict[int, list[LeafRun]] = {}
    width = span(0)
    for first, count, offset, length, vidx, last in manifest.blocks.runs:
        vid = vids[vidx]
        while count:
            pos = first >> LEAF_BITS
            take = min(count, (pos + 1) * width - first)
            out.setdefault(pos, []).append((first, take, offset, length, vid, last if take == count else 0))
            first, count, offset = first + take, count - take, offset + take * length
    return {pos: tuple(runs) for pos, runs in out.items()}


def leaf_runs(manifest: Manifest, pos: int) -> tuple[LeafRun, ...]:
    """The runs of the leaf at ``pos``, cut as ``leaves_of`` cuts them (bisect, not a walk of all runs)."""
    lo, hi = pos * span(0), (pos + 1) * span(0)
    vids = manifest.vids
    out = []
    for first, count, offset, length, vidx, last in manifest.blocks.overlapping(lo, hi):
        if first < lo:
            count, offset, first = count - (lo - first), offset + (lo - first) * length, lo
        take = min(count, hi - first)
        out.append((first, take, offset, length, vids[vidx], last if take == count else 0))
    return tuple(out)


WriteNodes = Callable[[list[tuple[int, int, bytes]]], list[tuple[int, int, bytes]]]
# The SHA-256 of the records of blocks [first, first + count) of writer ``vid``, in order.
BlockShas = Callable[[str, int, int], bytes]


def build(manifest: Manifest, write_nodes: WriteNodes, vid: str, block_shas: BlockShas) -> tuple[bytes, Tree]:
    """Write the nodes of ``manifest`` that its previous tree (``manifest.tree``)
    does not already hold, level by level, in the hashed shape (kinds 6 and 7;
    ``write_nodes`` seals and appends (level, pos, plaintext) and returns each
    one's (offset, length, SHA-256 of its record)); return the root's plaintext
    and the new tree.  A tree read in the unhashed shape (kind 4) shares
    nothing: the whole tree is written anew, hashed.  Only the leaves whose
    runs changed ask ``block_shas``: a commit costs what it changed."""
    old = manifest.tree if manifest.hashed else {}
    top = root_level(manifest.blocks.end)
    touched = manifest.blocks.touched
    if old and touched is not None and top == 1 + max(level for level, _ in old):
        return _build_touched(manifest, old, touched, top, write_nodes, vid, block_shas)
    level_nodes: dict[int, tuple] = {}
    for pos, runs in leaves_of(manifest).items():
        level_nodes[pos] = _leaf_node(old, pos, runs, block_shas)
    tree: Tree = {}
    for level in range(top):
        refs: dict[int, tuple[int, int, str, bytes]] = {}
        fresh = []
        for pos, canon in sorted(level_nodes.items()):
            before = old.get((level, pos))
            if before is not None and before[1] == canon:
                tree[(level, pos)] = before
                refs[pos] = (*before[0], before[2])
            else:
                fresh.append((pos, canon))
        if fresh:
            plains = [(level, pos, pack_leaf(c) if level == 0 else pack_inner(c)) for pos, c in fresh]
            for (pos, canon), (offset, length, sha) in zip(fresh, write_nodes(plains)):
                tree[(level, pos)] = ((offset, length, vid), canon, sha)
                refs[pos] = (offset, length, vid, sha)
        parents: dict[int, list[Child]] = {}
        for pos in sorted(refs):
            offset, length, writer, sha = refs[pos]
            parents.setdefault(pos >> FAN_BITS, []).append((pos & (FANOUT - 1), offset, length, writer, sha))
        level_nodes = {pos: tuple(children) for pos, children in parents.items()}
    body = level_nodes.get(0, ())
    packed = pack_leaf(body) if top == 0 else pack_inner(body)
    return pack_root(manifest.size, manifest.block_size, manifest.padded, top, packed), tree


def _leaf_node(old: Tree, pos: int, runs: tuple[LeafRun, ...], block_shas: BlockShas) -> tuple:
    before = old.get((0, pos))
    if before is not None and tuple(r[:6] for r in before[1]) == runs:
        return before[1]  # the same runs: the same records, so the same hashes
    return tuple((*r, block_shas(r[4], r[0], r[1])) for r in runs)


def _build_touched(manifest: Manifest, old: Tree, touched: set[int], top: int, write_nodes: WriteNodes,
                   vid: str, block_shas: BlockShas) -> tuple[bytes, Tree]:
    """``build`` when only blocks of the ``touched`` leaves were set since ``old``
    was built (no cut, the same root level): the same nodes, written in the same
    order, but only the touched leaves and their ancestors are looked at, so a
    commit's work follows what changed, not how many leaves the file has."""
    tree: Tree = dict(old)
    changed = sorted(touched)
    for level in range(top):
        fresh = []
        for pos in changed:
            if level == 0:
                canon = _leaf_node(old, pos, leaf_runs(manifest, pos), block_shas)
            else:
                canon = _children(tree, level - 1, pos)
            before = old.get((level, pos))
            if not canon:  # nothing under it (cannot happen without a cut)
                tree.pop((level, pos), None)
            elif before is None or before[1] != canon:
                fresh.append((pos, canon))
        if fresh:
            plains = [(level, pos, pack_leaf(c) if level == 0 else pack_inner(c)) for pos, c in fresh]
            for (pos, canon), (offset, length, sha) in zip(fresh, write_nodes(plains)):
                tree[(level, pos)] = ((offset, length, vid), canon, sha)
        changed = sorted({pos >> FAN_BITS for pos, _ in fresh})
    body = _children(tree, top - 1, 0)
    return pack_root(manifest.size, manifest.block_size, manifest.padded, top, pack_inner(body)), tree


def _children(tree: Tree, level: int, parent: int) -> tuple[Child, ...]:
    """The child references of the node at (``level`` + 1, ``parent``), from the nodes of ``level``."""
    out = []
    for slot in range(FANOUT):
        node = tree.get((level, parent * FANOUT + slot))
        if node is not None:
            out.append((slot, *node[0], node[2]))
    return tuple(out)
