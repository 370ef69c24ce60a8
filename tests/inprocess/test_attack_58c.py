"""Attack round 58c, the importer's removal (``delete_file_from_source``): in-process, a real vault.
The full account of round 58c is in tests/unit/test_attack_58c.py; this is its hole (4).

(4) low (data loss, honest use): a new file at an imported file's name, with the same size, the same
  modification time and the inode number the import's removal freed, is removed never imported
Steps: a.txt ("version one!") is imported and removed (delete_file_from_source); a new a.txt of the
  same size ("version two!") is saved (written beside, renamed over), and gets the freed inode
  number back (ext4 gives the lowest free one of the folder's group: the same, at once, unless
  another process took it meanwhile: 3 runs of 4 here on a busy shared disk; else skipped); its
  modification time is the one the first had (``cp -p``, ``tar x``, ``rsync -t``, an unzip of an
  archive whose stamps were normalised: a reproducible build's SOURCE_DATE_EPOCH, /nix/store's 1 s).
Seen: ``test_58c_4_a_new_file_with_the_old_stamp_is_imported_before_it_is_removed``: ``take`` says
  UNCHANGED and removes it: "version two!" is gone, and the vault still holds "version one!".
Expected: imported (a new version) before it is removed, or left in the source.
Cause: importer.py ``take`` (``known[0].stamp == stamp``: UNCHANGED, then ``_remove_source``) and
  ``_remove_source``/``remove_if``'s ``same`` (``Stamp``: size, mtime, inode, device: none of them
  tells a new file from the old one once the number is reused; ctime, which no user sets, would);
  ``_remove_source`` checks the vault's copy against the record's SHA-256, never the source's.
Impact: a file never imported is deleted from her folder (the one copy of that version).
Fix (suggested): keep the file's ctime (or its birth time, statx) in the record and ask it before
  taking a file as unchanged or removing it (``remove_if`` looks before its move, where the rename
  has not changed the ctime yet), or hash the source before its removal.
The same cause in ``_find_moved``: a new file at ANOTHER name that got the freed inode number, the old
  size and mtime, was taken for the imported file moved (the vault's old file renamed to its name, its
  contents never imported), then removed as unchanged.
Fixed: ``Stamp`` holds ``ctime_ns`` (set by the kernel at every change, by no one else), asked by
  ``take`` and by ``remove_if`` at its look before the move (after it, the moved file is asked to be
  the one looked at: the rename sets the ctime); ``_find_moved`` (the rename changed the ctime) asks
  the file's contents to hash to what was imported.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from fusevault.errors import FsError
from fusevault.imports.import_records import RECORD, Stamp, record_id
from fusevault.imports.importer import MOVED, NEW, UNCHANGED, Importer
from fusevault.store.sealed import sealed_doc
from fusevault.vault.model.settings import Settings
from fusevault.vault.services.placing import NoKernel, file_digest
from fusevault.vault.volume import Volume
from inprocess.conftest import on_volume


def _saved_with_inode(path: Path, data: bytes, number: int) -> bool:
    """An editor's save (written beside, ``.NAME.part``, renamed over the name) that got inode
    ``number``: ext4 gives a file the lowest free number of its folder's group, the one just freed
    unless another process took it meanwhile (then the next save tries again)."""
    deadline = time.monotonic() + 10
    attempt = 0
    while time.monotonic() < deadline:
        made = path.parent / f".{path.name}.{attempt}.part"
        made.write_bytes(data)
        if os.lstat(made).st_ino == number:
            os.rename(made, path)
            return True
        os.unlink(made)
        attempt += 1
        time.sleep(0.05)
    return False


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


def test_58c_4_a_new_file_with_the_old_stamp_is_imported_before_it_is_removed(vault: Path,
                                                                            source: Path) -> None:
    settings = Settings(source_dir_to_watch=str(source), delete_file_from_source=True)
    a = source / "a.txt"
    stamped = 1_600_000_000 * 10**9  # the time the tool restores (seconds: a zip's, a build's epoch)

    async def main(volume: Volume) -> tuple[str, bool, bytes, bool]:
        importer = Importer(volume, settings, NoKernel())
        await importer.load()
        a.write_bytes(b"version one!")
        os.utime(a, ns=(stamped, stamped))
        first = os.lstat(a).st_ino
        outcome, _, removed = await importer.take("a.txt")
        assert outcome == "new" and removed and not a.exists()
        if not _saved_with_inode(a, b"version two!", first):
            pytest.skip("this file system did not give the freed inode number back")
        os.utime(a, ns=(stamped, stamped))
        outcome, _, removed = await importer.take("a.txt")
        node = volume.resolve(b"Imported/a.txt")
        in_vault = await file_digest(volume, node) == hashlib.sha256(b"version two!").hexdigest()
        return outcome, removed, a.read_bytes() if a.exists() else b"", in_vault

    outcome, removed, left, in_vault = on_volume(vault, main)
    print(f"second take: {outcome}, removed {removed}, left {left!r}, version two in the vault {in_vault}")
    assert in_vault or left == b"version two!"  # seen: UNCHANGED, removed, the vault holds version one


async def _digest(volume: Volume, path: bytes) -> str | None:
    """The SHA-256 of the vault's file at ``path``, None if there is none."""
    try:
        node = volume.resolve(path)
    except FsError:
        return None
    return await file_digest(volume, node)


def test_58c_4_a_new_file_at_another_name_with_the_freed_inode_is_imported_not_taken_as_moved(
        vault: Path, source: Path) -> None:
    """``_find_moved``: a.txt imported and removed; b.txt, a new file of the same size, saved with a.txt's
    freed inode number and its mtime.  Before the fix: taken as a.txt moved (the vault's a.txt renamed
    to b.txt, holding version one), and removed from the source at the next look as unchanged."""
    settings = Settings(source_dir_to_watch=str(source), delete_file_from_source=True)
    a, b = source / "a.txt", source / "b.txt"
    stamped = 1_600_000_000 * 10**9

    async def main(volume: Volume) -> tuple[str, str, bytes, str | None, str | None]:
        importer = Importer(volume, settings, NoKernel())
        await importer.load()
        a.write_bytes(b"version one!")
        os.utime(a, ns=(stamped, stamped))
        first = os.lstat(a).st_ino
        outcome, _, removed = await importer.take("a.txt")
        assert outcome == NEW and removed and not a.exists()
        if not _saved_with_inode(b, b"version two!", first):
            pytest.skip("this file system did not give the freed inode number back")
        os.utime(b, ns=(stamped, stamped))
        outcome, _, _ = await importer.take("b.txt")
        again, _, _ = await importer.take("b.txt")  # before the fix: unchanged, removed
        in_b, in_a = await _digest(volume, b"Imported/b.txt"), await _digest(volume, b"Imported/a.txt")
        return outcome, again, b.read_bytes() if b.exists() else b"", in_a, in_b

    outcome, again, left, in_a, in_b = on_volume(vault, main)
    print(f"b.txt: {outcome}, then {again}; left {left!r}")
    assert outcome != MOVED  # seen: moved (the vault's a.txt renamed to b.txt)
    assert in_b == hashlib.sha256(b"version two!").hexdigest() or left == b"version two!"
    assert in_a == hashlib.sha256(b"version one!").hexdigest()  # a.txt's import kept


def test_control_58c_4_a_file_moved_in_the_source_moves_its_vault_file(vault: Path, source: Path) -> None:
    """A rename in the source (which sets the file's ctime) is still a move: the vault's file renamed,
    nothing copied, and the record stamped anew (the next look: unchanged, nothing read)."""
    settings = Settings(source_dir_to_watch=str(source), delete_file_from_source=False)
    a, b = source / "a.txt", source / "b.txt"

    async def main(volume: Volume) -> tuple[str, str, bool, str]:
        importer = Importer(volume, settings, NoKernel())
        await importer.load()
        a.write_bytes(b"version one!")
        assert (await importer.take("a.txt"))[0] == NEW
        fid = volume.resolve(b"Imported/a.txt").fid
        os.rename(a, b)
        outcome, written, _ = await importer.take("b.txt")
        assert written == 0
        again, _, _ = await importer.take("b.txt")
        moved = volume.resolve(b"Imported/b.txt")
        gone = not volume.holds(fid) or volume.path_of(volume.find(fid)) != b"Imported/a.txt"
        return outcome, again, gone and moved.fid == fid, await file_digest(volume, moved)

    outcome, again, same_file, digest = on_volume(vault, main)
    assert (outcome, again, same_file) == (MOVED, UNCHANGED, True)
    assert digest == hashlib.sha256(b"version one!").hexdigest()


def test_58c_4_a_record_from_before_ctime_is_read_once_never_imported_again(vault: Path,
                                                                            source: Path) -> None:
    """A record saved by a version before ``ctime_ns`` (its stamp of four fields) is still read: its
    file is hashed once (no stamp equals it), found imported (nothing written), and stamped anew."""
    settings = Settings(source_dir_to_watch=str(source), delete_file_from_source=False)
    a = source / "a.txt"

    async def main(volume: Volume) -> tuple[int, Stamp, str, int]:
        importer = Importer(volume, settings, NoKernel())
        await importer.load()
        a.write_bytes(b"version one!")
        assert (await importer.take("a.txt"))[0] == NEW
        record, rev = importer.records["a.txt"]
        body = asdict(record)
        del body["stamp"]["ctime_ns"]  # as a version before it wrote it
        doc = sealed_doc(volume.key, RECORD, record_id(volume.key, "a.txt"), body, rev)
        await volume.store_call(volume.store.put_many, [doc])
        fresh = Importer(volume, settings, NoKernel())
        await fresh.load()
        before = fresh.records["a.txt"][0].stamp.ctime_ns
        outcome, written, _ = await fresh.take("a.txt")
        again = await fresh.take("a.txt")
        assert again[0] == UNCHANGED
        return before, fresh.records["a.txt"][0].stamp, outcome, written

    before, stamp, outcome, written = on_volume(vault, main)
    assert before == -1 and (outcome, written) == (UNCHANGED, 0)
    assert stamp == Stamp.of(os.lstat(a))
