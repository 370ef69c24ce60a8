"""Sealing a version looks only at what changed since the last one (issue 26).

A version's manifest must mark its final block last and, padded, give every
other block a whole record; ``Sealing._stale`` finds the blocks that break
that.  It used to look at every run of the file at every version, and the
pending version's runs were found by another pass over all of them, so a file
with a long history of scattered writes paid for its history at every fsync.
Now the blocks that can be marked wrong are noted as they are sealed
(``_marks``); these tests check that the short look finds exactly what the
full one does, over random writes, truncates and flushes, padded or not, and
that every version reads back as written, from a fresh reader too."""

from __future__ import annotations

import os
import random
import uuid

import pytest

from fusevault.vault.files.content import Content
from fusevault.vault.format import layout as layouts
from fusevault.vault.format import padding as paddings
from fusevault.vault.format.manifest import BlockMap

BS = 16 * 1024


def new_content(tmp_path, padding: str) -> Content:
    layout = layouts.create(tmp_path / "vault", {"type": "local"}, padding=padding)
    owner = uuid.uuid4().hex
    layout.own_dir(owner).mkdir(parents=True)
    return Content(layout, owner, uuid.uuid4().hex, os.urandom(32), None, None)


def stale_both_ways(content: Content, size: int) -> tuple[dict, dict]:
    """``_stale`` with the marks noted since the last version, and with every run looked at."""
    target = content._target(size)
    short = content._stale(size, target)
    marks, content._marks = content._marks, None
    try:
        full = content._stale(size, target)
    finally:
        content._marks = marks
    return short, full


def reread(content: Content, place: tuple[int, int], vid: str, size: int) -> bytes:
    reader = Content(content.layout, content.owner, content.fid, content.dek, place, vid,
                     check_sidecar=False, vouch=False)
    try:
        return reader.read(0, size, size)
    finally:
        reader.close()


@pytest.mark.parametrize("padding", [paddings.NONE, paddings.PADME])
@pytest.mark.parametrize("seed", range(4))
def test_the_short_look_finds_what_the_full_one_does(tmp_path, padding: str, seed: int) -> None:
    rng = random.Random(seed)
    content = new_content(tmp_path, padding)
    model = bytearray()
    for step in range(120):
        op = rng.random()
        if op < 0.55:  # a write, inside or past the end (a hole between)
            offset = rng.randrange(0, len(model) + 3 * BS + 1)
            data = rng.randbytes(rng.choice([1, 100, 4096, BS, 3 * BS + 7]))
            content.write(offset, data)
            if offset > len(model):
                model.extend(bytes(offset - len(model)))
            model[offset:offset + len(data)] = data
        elif op < 0.75:  # shorter or longer
            size = rng.randrange(0, len(model) + 4 * BS + 1)
            content.truncate(size)
            model = model[:size] + bytearray(max(0, size - len(model)))
        elif op < 0.85:
            content.flush_blocks(len(model), keep_last=rng.random() < 0.5)
        short, full = stale_both_ways(content, len(model))
        assert short == full, step
        if rng.random() < 0.4:
            vid, place, _ = content.seal_version(len(model))
            assert content.read(0, len(model), len(model)) == model, step
            assert reread(content, place, vid, len(model)) == model, step
    content.close()


def test_a_small_edit_of_a_long_history_looks_at_a_few_runs(tmp_path) -> None:
    """300 scattered one-block rewrites leave hundreds of runs; the next
    version looks at the runs it wrote and the final block's, not at all."""
    rng = random.Random(7)
    content = new_content(tmp_path, paddings.PADME)
    size = 1024 * BS
    content.write(0, os.urandom(size))
    content.seal_version(size)
    for _ in range(300):
        content.write(rng.randrange(0, 1023) * BS + 5, b"edit")
        content.seal_version(size)
    assert len(content.manifest.blocks.runs) > 300
    content.write(rng.randrange(0, 1023) * BS, b"one more")
    final = -(-content._target(size) // BS) - 1
    assert len(content._runs_to_check(final)) <= 2
    short, full = stale_both_ways(content, size)
    assert short == full == {}
    vid, place, _ = content.seal_version(size)
    assert [i for i, _, _ in content.sealed if i >= 0] == [content.sealed[-2][0]]  # the one block it wrote
    assert reread(content, place, vid, size)[:BS * 2] == content.read(0, BS * 2, size)
    content.close()


def test_the_count_of_stored_blocks_follows_every_change() -> None:
    """``BlockMap.stored`` over the whole map is kept by ``put`` from what
    each call replaced (not summed over every run at every version)."""
    rng = random.Random(11)
    blocks = BlockMap()
    for step in range(400):
        op = rng.random()
        if op < 0.8:
            first = rng.randrange(0, 600)
            entries = [(i, rng.randrange(1 << 30), 100, rng.randrange(4), int(rng.random() < 0.1))
                       for i in sorted(rng.sample(range(first, first + 40), rng.randrange(1, 12)))]
            blocks.put(entries)
        elif op < 0.9:
            blocks.cut(rng.randrange(0, 700))
        else:
            blocks = blocks.renumber({v: 3 - v for v in range(4)})
        assert blocks.stored(0, 1 << 20) == sum(run[1] for run in blocks.runs), step
        assert blocks.stored(0, 1 << 20) == len(list(blocks.blocks())), step


def test_a_put_does_not_count_every_run_again(monkeypatch) -> None:
    from fusevault.vault.format import manifest

    blocks = BlockMap([(i * 2, 1, i * 100, 100, 0, 0) for i in range(2000)])  # 2,000 runs, holes between
    assert blocks.stored(0, 1 << 20) == 2000
    counted = []
    real = manifest._COUNT
    monkeypatch.setattr(manifest, "_COUNT", lambda run: counted.append(run) or real(run))
    for k in range(20):
        blocks.put([(k * 2 + 1, 10 ** 6, 100, 1, 0)])  # a hole filled: two runs and it join
        assert blocks.stored(0, 1 << 20) == 2001 + k
    assert len(counted) < 200  # a few runs a put, not 2,000
