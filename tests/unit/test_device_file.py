"""A record this device keeps, read and written (vault/model/device_file.py): whoever else can write her
state folder, or a link planted there, gets ``Damaged``: never a hang on a FIFO, a read through a link,
another user's file taken for hers, or all memory for a huge one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fusevault.crypto.keys import MasterKey
from fusevault.vault.model import device_file

KEY = MasterKey("a" * 32, b"m" * 32)
KIND = "test-record"


def _written(path: Path, record: dict) -> Path:
    device_file.write(path, KEY, KIND, json.dumps(record).encode())
    return path


def test_a_record_written_reads_back_and_none_kept_is_none(tmp_path: Path) -> None:
    assert device_file.read_json(tmp_path / "none", KEY, KIND) is None
    path = _written(tmp_path / "rec", {"debts": [1]})
    assert device_file.read_json(path, KEY, KIND) == {"debts": [1]}
    with pytest.raises(device_file.Damaged, match="does not open"):
        device_file.read_json(path, KEY, "another-kind")  # bound to its kind
    moved = tmp_path / "other-name"
    os.rename(path, moved)
    with pytest.raises(device_file.Damaged, match="does not open"):
        device_file.read_json(moved, KEY, KIND)  # and to its file name


def test_a_link_in_place_of_a_record_is_damaged_not_followed(tmp_path: Path) -> None:
    good = _written(tmp_path / "good", {"x": 1})
    link = tmp_path / "rec"
    link.symlink_to(good)
    with pytest.raises(device_file.Damaged, match="link"):
        device_file.read_json(link, KEY, KIND)


def test_a_fifo_in_place_of_a_record_is_damaged_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "rec"
    os.mkfifo(fifo)
    with pytest.raises(device_file.Damaged, match="not a file"):
        device_file.read_json(fifo, KEY, KIND)  # opened O_NONBLOCK: no writer, no hang


def test_another_users_file_in_place_of_a_record_is_damaged(tmp_path: Path) -> None:
    path = _written(tmp_path / "rec", {"x": 1})
    if os.geteuid() != 0:
        pytest.skip("needs root to give the file away")
    os.chown(path, 65534, 65534)
    with pytest.raises(device_file.Damaged, match="not a file of this user's"):
        device_file.read_json(path, KEY, KIND)


def test_a_huge_sparse_file_in_place_of_a_record_is_damaged_unread(tmp_path: Path) -> None:
    path = tmp_path / "rec"
    with open(path, "wb") as f:
        f.truncate(device_file.LIMIT + (1 << 30))  # a GiB past the limit, no block written
    with pytest.raises(device_file.Damaged, match="larger"):
        device_file.read_json(path, KEY, KIND)
    small = _written(tmp_path / "small", {"x": "y" * 200})
    with pytest.raises(device_file.Damaged, match="larger"):
        device_file.read_json(small, KEY, KIND, limit=64)


def test_a_write_over_a_damaged_record_sets_it_aside(tmp_path: Path) -> None:
    path = tmp_path / "rec"
    path.write_bytes(b"not sealed")
    with pytest.raises(device_file.Damaged):
        device_file.read_json(path, KEY, KIND)
    device_file.write(path, KEY, KIND, b'{"x": 2}', set_aside=True)
    assert (tmp_path / "rec.damaged").read_bytes() == b"not sealed"
    assert device_file.read_json(path, KEY, KIND) == {"x": 2}
