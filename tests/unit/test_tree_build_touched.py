"""manifest_tree.build after a few blocks were set: it looks at the touched leaves and
their ancestors only (BlockMap.touched), not every leaf of the file, and writes exactly
the nodes, in the same order, with the same root, as a build that looks at every leaf."""

from __future__ import annotations

import hashlib
import random
import uuid

import pytest

from fusevault.vault.format import manifest_tree
from fusevault.vault.format.manifest import Manifest


class Writer:
    """Seals nothing: appends node plaintexts at growing offsets (as a .vf would)."""

    def __init__(self) -> None:
        self.end = 24
        self.written: list[tuple[int, int, bytes]] = []

    def __call__(self, plains: list[tuple[int, int, bytes]]) -> list[tuple[int, int, bytes]]:
        out = []
        for level, pos, plain in plains:
            self.written.append((level, pos, plain))
            out.append((self.end, len(plain) + 33, hashlib.sha256(plain).digest()))
            self.end += len(plain) + 33
        return out


def block_shas(vid: str, first: int, count: int) -> bytes:
    return b"".join(hashlib.sha256(f"{vid}:{i}".encode()).digest() for i in range(first, first + count))


def test_a_build_after_small_changes_equals_a_build_of_every_leaf(monkeypatch: pytest.MonkeyPatch) -> None:
    rnd = random.Random(26)
    full_leaves_of = manifest_tree.leaves_of
    shortcuts = 0
    for _ in range(20):
        vids = [uuid.UUID(int=rnd.getrandbits(128)).hex for _ in range(4)]
        touched = Manifest(0, list(vids), block_size=16384, hashed=True)
        whole = Manifest(0, list(vids), block_size=16384, hashed=True)
        w_touched, w_whole = Writer(), Writer()
        offset = 24
        for step in range(25):
            if step and rnd.random() < 0.1:  # a truncation: the next build looks at every leaf
                n = rnd.randrange(0, touched.blocks.end + 1)
                touched.blocks.cut(n)
                whole.blocks.cut(n)
            for _ in range(rnd.randrange(1, 4)):
                # Mostly small edits in a file of up to ~70,000 blocks (past one leaf level
                # and, now and then, growing by one: a new root level).
                start = rnd.randrange(0, 70_000 if rnd.random() < 0.9 else 300)
                count = rnd.choice([1, 1, 2, 5, 300, 1000])
                vidx = rnd.randrange(len(vids))
                entries = [(start + k, offset + k * 16417, 16417, vidx, 0) for k in range(count)]
                offset += count * 16417
                touched.blocks.put(entries)
                whole.blocks.put(entries)
            whole.blocks.touched = None
            incremental = bool(touched.tree) and touched.blocks.touched is not None and (
                manifest_tree.root_level(touched.blocks.end) == 1 + max(lv for lv, _ in touched.tree))

            def refuse(manifest: Manifest) -> dict:
                raise AssertionError("a build after small changes walked every leaf")

            monkeypatch.setattr(manifest_tree, "leaves_of", refuse if incremental else full_leaves_of)
            root_a, tree_a = manifest_tree.build(touched, w_touched, vids[0], block_shas)
            monkeypatch.setattr(manifest_tree, "leaves_of", full_leaves_of)
            root_b, tree_b = manifest_tree.build(whole, w_whole, vids[0], block_shas)
            assert root_a == root_b
            assert tree_a == tree_b
            assert w_touched.written == w_whole.written
            shortcuts += incremental
            touched.tree, touched.blocks.touched = tree_a, set()
            whole.tree = tree_b
    assert shortcuts > 100  # the shortcut was taken, and agreed every time
