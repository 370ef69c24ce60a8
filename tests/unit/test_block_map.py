"""BlockMap (vault/format/manifest.py) against a plain dict of blocks, over random puts and
cuts: ``put`` lays runs over in place with bisect (O(log runs) Python work per run), and
must give the same blocks as the obvious model; and BlockHashes keeps what it was given."""

from __future__ import annotations

import random

from fusevault.vault.format.block_hashes import BlockHashes
from fusevault.vault.format.manifest import HOLE, BlockMap


def test_put_and_cut_agree_with_a_dict_of_blocks() -> None:
    rnd = random.Random(7)
    for _ in range(200):
        blocks, model = BlockMap(), {}
        offset = 24
        for _ in range(rnd.randrange(1, 30)):
            if rnd.random() < 0.15 and model:
                n = rnd.randrange(0, max(model) + 2)
                blocks.cut(n)
                model = {i: e for i, e in model.items() if i < n}
                if n - 1 in model:  # a run cut short loses its last mark
                    model[n - 1] = (*model[n - 1][:3], 0)
                continue
            start = rnd.randrange(0, 600)
            count = rnd.randrange(1, 40)
            vidx = rnd.randrange(3)
            entries = []
            for i in range(start, start + count):
                last = int(i == start + count - 1 and rnd.random() < 0.3)
                entries.append((i, offset, 49, vidx, last))
                model[i] = (offset, 49, vidx, last)
                offset += 49
            blocks.put(entries)
        starts, runs = blocks.state
        assert starts == [r[0] for r in runs]
        assert all(a[0] + a[1] <= b[0] for a, b in zip(runs, runs[1:]))
        for i in range(0, 700):
            assert blocks.get(i) == model.get(i, HOLE), i


def test_block_hashes_are_kept_per_writer_and_index_and_holes_cost_nothing() -> None:
    hashes = BlockHashes()
    sha = [bytes([k % 251 + 1]) * 32 for k in range(600)]
    hashes.add("a", 250, b"".join(sha[250:300]))  # across a leaf boundary (256)
    hashes.add("a", 10, sha[10])
    hashes.add("b", 1 << 40, sha[5])  # far away: one entry, not a leaf's worth per hole
    assert hashes.get("a", 10) == sha[10] and hashes.get("a", 11) is None
    assert all(hashes.get("a", i) == sha[i] for i in range(250, 300))
    assert hashes.get("b", 10) is None and hashes.get("b", 1 << 40) == sha[5]
    # slots 10 to 255 of leaf 0, 256 to 299 of leaf 1, one far away
    assert sum(len(blob) for _, blob in hashes._by.values()) == 32 * (246 + 44 + 1)


def test_a_run_of_block_hashes_is_one_slice_and_none_if_any_is_missing() -> None:
    hashes = BlockHashes()
    sha = [bytes([k % 251 + 1]) * 32 for k in range(600)]
    hashes.add("a", 250, b"".join(sha[250:300]))
    hashes.add("a", 10, sha[10])
    assert hashes.get_run("a", 256, 44) == b"".join(sha[256:300])
    assert hashes.get_run("a", 250, 6) == b"".join(sha[250:256])
    assert hashes.get_run("a", 10, 1) == sha[10]
    assert hashes.get_run("a", 10, 2) is None  # 11 is not known
    assert hashes.get_run("a", 9, 2) is None
    assert hashes.get_run("a", 299, 2) is None and hashes.get_run("b", 256, 1) is None
