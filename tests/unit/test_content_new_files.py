"""A new file's ``.vf`` that is already there (vault/files/content.py ``_join_files``).

A conflict copy's id is derived from the edit it keeps, so the same new file is made on every device
that settles the conflict, and another device's records of it can arrive (placements.py
``append_arrived``) before this device writes its own.  The new file then appends to that ``.vf``:
making it anew removed the other device's records, and its version of the copy read EIO here (seen in
CI; tests/services/test_sync.py has the two devices)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from fusevault.vault.files.content import Content
from fusevault.vault.files.placements import append_arrived
from fusevault.vault.format import layout as layouts


def _vault(path: Path, owner: str) -> layouts.Layout:
    layout = layouts.create(path, {"type": "local"})
    layout.own_dir(owner).mkdir(parents=True)
    return layout


def _sealed_records(content: Content, size: int) -> list[bytes]:
    """The records of the version ``content`` seals, as a peer sends them."""
    content.seal_version(size)
    fd = os.open(content.vf_path, os.O_RDONLY)
    try:
        return [os.pread(fd, length, offset) for _, offset, length in content.sealed]
    finally:
        os.close(fd)


def test_a_new_file_whose_records_from_another_device_came_first_keeps_them(tmp_path: Path) -> None:
    owner, fid, dek = uuid.uuid4().hex, uuid.uuid4().hex, os.urandom(32)
    desktop = Content(_vault(tmp_path / "desktop", owner), owner, fid, dek, None, None)
    desktop.write(0, b"the copy, as the desktop wrote it")
    records = _sealed_records(desktop, 33)
    desktop.close()
    laptop = _vault(tmp_path / "laptop", owner)
    places = append_arrived(laptop, owner, fid, records)

    mine = Content(laptop, owner, fid, dek, None, None)  # the laptop makes the same new file
    mine.write(0, b"the copy, as the laptop wrote it")
    vid, place, _ = mine.seal_version(32)
    mine.close()

    with open(laptop.vf_path(owner, fid), "rb") as vf:
        assert [os.pread(vf.fileno(), length, offset) for offset, length in places] == records
    reader = Content(laptop, owner, fid, dek, place, vid, vouch=False)
    try:
        assert reader.read(0, 32, 32) == b"the copy, as the laptop wrote it"
    finally:
        reader.close()


def test_a_new_file_is_not_written_through_a_hard_link_at_its_name(tmp_path: Path) -> None:
    owner, fid, dek = uuid.uuid4().hex, uuid.uuid4().hex, os.urandom(32)
    layout = _vault(tmp_path / "vault", owner)
    append_arrived(layout, owner, fid, [b"a record"])
    elsewhere = tmp_path / "elsewhere"
    os.link(layout.vf_path(owner, fid), elsewhere)  # put there by whoever may write the vault folder
    before = elsewhere.read_bytes()

    mine = Content(layout, owner, fid, dek, None, None)
    mine.write(0, b"new")
    mine.seal_version(3)
    mine.close()

    assert elsewhere.read_bytes() == before
    assert os.stat(layout.vf_path(owner, fid)).st_nlink == 1
