"""What the importer keeps of its records (imports/import_records.py, importer.py ``load``/``take``):
none naming a path past PATH_MAX, none whose vault file and source are both gone (attack round 63c
(1)); in-process, a real vault."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import trio
from conftest import PASSPHRASE

from fusevault.imports import importer as importing
from fusevault.imports.import_records import Record, record_doc, record_id
from fusevault.imports.importer import Importer
from fusevault.vault.model.settings import Settings
from fusevault.vault.services.opening import unlock_vault
from fusevault.vault.services.placing import NoKernel
from fusevault.vault.volume import Volume


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


def _run(vault: Path, settings: Settings, body) -> object:
    unlocked = unlock_vault(vault, None, PASSPHRASE.encode())

    async def main() -> object:
        volume = Volume.load(unlocked.layout, unlocked.store, unlocked.key, unlocked.user["root"])
        try:
            return await body(volume)
        finally:
            await volume.close()

    return trio.run(main)


def test_a_record_past_path_max_is_dropped_at_load_its_vault_file_kept(vault: Path, source: Path) -> None:
    """A record naming a path past PATH_MAX (written before the bound, or by whoever writes the store)
    is not held: its document is deleted; the vault file it names stays."""
    settings = Settings(source_dir_to_watch=str(source))
    (source / "a.txt").write_bytes(b"kept")
    deep = "/".join(f"{step:02d}" + "d" * 248 for step in range(20)) + "/a.txt"  # ~5,000 bytes

    async def body(volume: Volume) -> tuple[list[str], bool, bool, bool]:
        importer = Importer(volume, settings, NoKernel())
        await importer.load()
        assert (await importer.take("a.txt"))[0] == "new"
        record = importer.records["a.txt"][0]
        for location, vault_path in ((deep, "Imported/a.txt"), ("b.txt", f"Imported/{deep}")):
            await volume.store_call(volume.store.put_many, [record_doc(volume.key, Record(
                location, record.stamp, record.sha256, record.fid, vault_path, time.time_ns()))])
        importer.close()
        fresh = Importer(volume, settings, NoKernel())
        await fresh.load()
        fresh.close()
        gone = [volume.store.get(record_id(volume.key, where)) is None for where in (deep, "b.txt")]
        return sorted(fresh.records), all(gone), volume.holds(record.fid), \
            volume.store.get(record_id(volume.key, "a.txt")) is not None

    locations, docs_gone, file_kept, own_kept = _run(vault, settings, body)
    assert locations == ["a.txt"]  # seen before the fix: the ~5,000-byte ones held too
    assert docs_gone and file_kept and own_kept


def test_records_whose_vault_file_and_source_are_gone_are_dropped_at_load(vault: Path, source: Path) -> None:
    """Gone from both: dropped (document deleted).  Gone from one only: kept (it still decides: a
    source unchanged is not imported again; a vault file is found by a move)."""
    settings = Settings(source_dir_to_watch=str(source))
    for name in ("both.txt", "vault.txt", "source.txt"):
        (source / name).write_bytes(name.encode())

    async def body(volume: Volume) -> tuple[list[str], bool, str]:
        importer = Importer(volume, settings, NoKernel())
        await importer.load()
        for name in ("both.txt", "vault.txt", "source.txt"):
            assert (await importer.take(name))[0] == "new"
        importer.close()
        folder = volume.resolve(b"Imported")
        await volume.unlink(folder.ino, b"both.txt")
        await volume.unlink(folder.ino, b"vault.txt")
        (source / "both.txt").unlink()
        (source / "source.txt").unlink()
        fresh = Importer(volume, settings, NoKernel())
        await fresh.load()
        outcome = (await fresh.take("vault.txt"))[0]  # its record stands: unchanged, not imported again
        fresh.close()
        return sorted(fresh.records), volume.store.get(record_id(volume.key, "both.txt")) is None, outcome

    locations, doc_gone, outcome = _run(vault, settings, body)
    assert locations == ["source.txt", "vault.txt"]  # seen before the fix: both.txt's kept for good
    assert doc_gone and outcome == "unchanged"


def test_a_watch_drops_the_records_gone_once_they_have_doubled(vault: Path, source: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Files imported (removed from the source) then deleted from the vault, one after the other, in
    one watch: the records held stay within twice those live (and ``SLACK``), never one a file."""
    monkeypatch.setattr(importing, "SLACK", 4, raising=False)
    settings = Settings(source_dir_to_watch=str(source), delete_file_from_source=True)

    async def body(volume: Volume) -> list[int]:
        importer = Importer(volume, settings, NoKernel())
        await importer.load()
        held = []
        for number in range(40):
            name = f"{number:03d}.txt"
            (source / name).write_bytes(b"x")
            assert (await importer.take(name))[:3:2] == ("new", True)
            await volume.unlink(volume.resolve(b"Imported").ino, name.encode())
            held.append(len(importer.records))
        importer.close()
        return held

    held = _run(vault, settings, body)
    print(f"records held after each import: {held}")
    assert max(held) <= 2 * 0 + 4 + 1  # seen before the fix: 40, one a file deleted


def test_a_file_moved_by_hand_past_path_max_keeps_its_record_short(vault: Path, source: Path) -> None:
    """A vault file moved by hand deep in her vault, its source then renamed: the moved record keeps
    the place it was put at (a path within PATH_MAX), not the deep one."""
    settings = Settings(source_dir_to_watch=str(source))
    (source / "a.txt").write_bytes(b"moved")

    async def body(volume: Volume) -> tuple[int, str]:
        importer = Importer(volume, settings, NoKernel())
        await importer.load()
        assert (await importer.take("a.txt"))[0] == "new"
        folder = volume.resolve(b"Imported")
        parent = folder
        for step in range(20):
            parent = await volume.mkdir(parent.ino, b"%02d" % step + b"d" * 248, 0o700, importer.caller)
        await volume.rename(folder.ino, b"a.txt", parent.ino, b"a.txt", noreplace=True, exchange=False)
        os.rename(source / "a.txt", source / "b.txt")
        outcome = (await importer.take("b.txt"))[0]
        importer.close()
        record = importer.records["b.txt"][0]
        return len(os.fsencode(record.vault_path)), outcome

    length, outcome = _run(vault, settings, body)
    assert outcome == "moved"
    assert length <= 4096  # seen before the fix: ~5,000 bytes

