"""The SHA-256 of block records a verified Merkle manifest tree names (kind 6,
vault/format/manifest_tree.py), by writer version and block index.

A committed version writes each block index once, so (writer vid, index)
names one record whatever manifest names it: entries are only ever added,
never changed, and a read in a worker thread can look one up while the
writer's thread commits (the manifest's map and tree are swapped meanwhile).

Memory is that of the hashes themselves, 32 bytes a stored block (a dense
1 GiB file of 16 KiB blocks: 2 MiB), never of holes: each (writer, leaf)
keeps one bytes object covering the slots from its first to its last block.
"""

from __future__ import annotations

from fusevault.vault.format.manifest_tree import LEAF_BITS, SHA

_SLOTS = 1 << LEAF_BITS
_NONE = bytes(SHA)


class BlockHashes:
    __slots__ = ("_by",)

    def __init__(self) -> None:
        self._by: dict[tuple[str, int], tuple[int, bytes]] = {}

    def add(self, vid: str, first: int, shas: bytes) -> None:
        """Blocks ``first``, ``first + 1``, ... of writer ``vid`` hash to ``shas`` (32 bytes each)."""
        count = len(shas) // SHA
        done = 0
        while done < count:
            index = first + done
            leaf, slot = index >> LEAF_BITS, index & (_SLOTS - 1)
            take = min(count - done, _SLOTS - slot)
            piece = shas[done * SHA: (done + take) * SHA]
            held = self._by.get((vid, leaf))
            if held is None:
                self._by[(vid, leaf)] = (slot, piece)
            else:
                lo, blob = held
                start, end = min(lo, slot), max(lo + len(blob) // SHA, slot + take)
                out = bytearray(_NONE * (end - start))
                out[(lo - start) * SHA:(lo - start) * SHA + len(blob)] = blob
                out[(slot - start) * SHA:(slot - start + take) * SHA] = piece
                self._by[(vid, leaf)] = (start, bytes(out))  # replaced whole: readers see one or the other
            done += take

    def get(self, vid: str, index: int) -> bytes | None:
        held = self._by.get((vid, index >> LEAF_BITS))
        if held is None:
            return None
        lo, blob = held
        k = (index & (_SLOTS - 1)) - lo
        if k < 0 or (k + 1) * SHA > len(blob):
            return None
        sha = blob[k * SHA:(k + 1) * SHA]
        return None if sha == _NONE else sha

    def get_run(self, vid: str, first: int, count: int) -> bytes | None:
        """The hashes of blocks [first, first + count) of ``vid``, all in one leaf
        (a leaf's run), in one slice; None if any is missing (``get`` says which)."""
        held = self._by.get((vid, first >> LEAF_BITS))
        if held is None:
            return None
        lo, blob = held
        k = (first & (_SLOTS - 1)) - lo
        if k < 0 or (k + count) * SHA > len(blob):
            return None
        shas = blob[k * SHA:(k + count) * SHA]
        return None if _NONE in shas else shas  # a missing one (or, never in practice, zeros astride two)
