"""``Files.recommit_newest_shape`` (vault/files/open_files.py), what ``fusevault upgrade``
calls for each file: a file of vault format 4 (a kind 4 manifest tree) is committed again as a
Merkle tree (kind 6) with the same bytes; a file already in that shape is left alone."""

from __future__ import annotations

import os
import random
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusevault.vault.format.manifest import KIND_HTREE, KIND_TREE
from inprocess.conftest import Composed, _composed

DATA = Path(__file__).resolve().parent.parent / "data"


@pytest.fixture
def old_fs(tmp_path: Path) -> Iterator[Composed]:
    """alice's mount of a vault written by fusevault 4 (see tests/mount/test_trust_merkle.py)."""
    with tarfile.open(DATA / "format4-vault.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    with _composed(tmp_path / "vault") as composed:
        yield composed


def _kind(volume, node) -> int:
    content = volume.files.content(node)
    content._open_fd()
    return os.pread(content.fd, 5, node.manifest[0])[4]


async def test_recommit_writes_a_format_4_file_as_a_merkle_tree_with_the_same_bytes(old_fs):
    volume = old_fs.volume
    rnd = random.Random(5)
    dense = bytearray(rnd.randbytes(40_000) + bytes((8 << 20) - 40_000) + rnd.randbytes(40_000))
    dense[300:300 + 1400] = b"second version" * 100
    node = volume.tree.resolve(b"dense")
    head = node.head
    assert _kind(volume, node) == KIND_TREE
    assert await volume.files.recommit_newest_shape(node) is True
    assert node.head != head and _kind(volume, node) == KIND_HTREE
    volume.files.release_content(node)
    node.content = None  # read back from the new manifest, as a new open does
    content = volume.files.content(node)
    assert content.manifest.hashed and content.read(0, len(dense), node.size) == bytes(dense)
    again = node.head
    assert await volume.files.recommit_newest_shape(node) is False
    assert node.head == again
