"""What the importer keeps of its records (imports/import_records.py, importer.py ``load``/``take``):
none naming a path past PATH_MAX, none whose vault file is gone and whose source a whole walk no
longer saw (attack rounds 63c (1), 64c (2)); in-process, a real vault."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from fusevault.host_access.threads import HostThreads
from fusevault.imports import importer as importing
from fusevault.imports import watcher
from fusevault.imports.import_records import Record, record_doc, record_id
from fusevault.imports.importer import Importer
from fusevault.imports.watcher import walk
from fusevault.tasks import TaskState
from fusevault.vault.model.settings import Settings
from fusevault.vault.services.placing import NoKernel, make_dirs, write_file
from fusevault.vault.volume import Volume
from inprocess.conftest import on_volume


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


async def _once(data: bytes) -> AsyncIterator[bytes | int]:
    yield data


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

    locations, docs_gone, file_kept, own_kept = on_volume(vault, body)
    assert locations == ["a.txt"]  # seen before the fix: the ~5,000-byte ones held too
    assert docs_gone and file_kept and own_kept


async def _walked(importer: Importer, passed_over: str | None = None) -> None:
    """A walk of the watched folder as the watch makes one, and what it tells the importer."""
    found = await importer.in_source(walk)
    await importer.drop_unseen(found, passed_over or found.passed_over)


def test_records_whose_vault_file_and_source_are_gone_are_dropped_after_a_walk_without_them(
        vault: Path, source: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Gone from both: kept at ``load`` (a single look), dropped (document deleted) after a whole walk
    of the watched folder did not see the source.  Gone from one only: kept (it still decides: a
    source unchanged is not imported again; a vault file is found by a move)."""
    monkeypatch.setattr(importing, "SLACK", 0, raising=False)  # a drop due at once
    settings = Settings(source_dir_to_watch=str(source))
    for name in ("both.txt", "vault.txt", "source.txt"):
        (source / name).write_bytes(name.encode())

    async def body(volume: Volume) -> tuple[list[str], list[str], bool, str]:
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
        at_load = sorted(fresh.records)
        await _walked(fresh)
        outcome = (await fresh.take("vault.txt"))[0]  # its record stands: unchanged, not imported again
        fresh.close()
        return at_load, sorted(fresh.records), volume.store.get(record_id(volume.key, "both.txt")) is None, \
            outcome

    at_load, locations, doc_gone, outcome = on_volume(vault, body)
    assert at_load == ["both.txt", "source.txt", "vault.txt"]  # 64c (2): nothing dropped at load
    assert locations == ["source.txt", "vault.txt"]  # seen before 63c (1): both.txt's kept for good
    assert doc_gone and outcome == "unchanged"


@pytest.mark.parametrize("walked", ["empty", "passed_over", "whole"])
def test_a_walk_that_may_not_have_seen_the_folder_whole_drops_no_record(
        vault: Path, source: Path, monkeypatch: pytest.MonkeyPatch, walked: str) -> None:
    """64c (2): a file imported, deleted from her vault, its source out of sight (its folder moved
    away): a walk that found nothing (the watched folder empty: a disk not mounted yet, the folder
    removed) or passed something over drops no record, and the source, back, is not imported again.
    Control ``whole``: a whole walk that saw other files but not it is the evidence that it is gone:
    its record dropped, the source back later is new (the open list's limit)."""
    monkeypatch.setattr(importing, "SLACK", 0, raising=False)  # a drop due at once
    settings = Settings(source_dir_to_watch=str(source))
    (source / "docs").mkdir()
    (source / "docs" / "a.txt").write_bytes(b"deleted from her vault")
    if walked != "empty":
        (source / "other.txt").write_bytes(b"another file the walk sees")

    async def body(volume: Volume) -> tuple[bool, str]:
        importer = Importer(volume, settings, NoKernel())
        await importer.load()
        assert (await importer.take("docs/a.txt"))[0] == "new"
        await volume.unlink(volume.resolve(b"Imported/docs").ino, b"a.txt")  # deleted by her
        os.rename(source / "docs", source.parent / "docs.away")
        await _walked(importer, "more than 100000 names: the rest passed over" if walked == "passed_over"
                      else None)
        held = "docs/a.txt" in importer.records
        os.rename(source.parent / "docs.away", source / "docs")
        outcome = (await importer.take("docs/a.txt"))[0]
        importer.close()
        return held, outcome

    held, outcome = on_volume(vault, body)
    if walked == "whole":
        assert not held and outcome == "new"
    else:
        assert held and outcome == "unchanged"  # seen before 64c (2): dropped at the next start


def test_a_watch_drops_the_records_gone_once_they_have_doubled(vault: Path, source: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Files imported (removed from the source) then deleted from the vault, one after the other, in
    one watch, a walk seeing each before its import (as the watch's do): the records held stay within
    twice those live (and ``SLACK``), never one a file."""
    monkeypatch.setattr(importing, "SLACK", 4, raising=False)
    settings = Settings(source_dir_to_watch=str(source), delete_file_from_source=True)

    async def body(volume: Volume) -> list[int]:
        importer = Importer(volume, settings, NoKernel())
        await importer.load()
        held = []
        for number in range(40):
            name = f"{number:03d}.txt"
            (source / name).write_bytes(b"x")
            await _walked(importer)
            assert (await importer.take(name))[:3:2] == ("new", True)
            await volume.unlink(volume.resolve(b"Imported").ino, name.encode())
            held.append(len(importer.records))
        importer.close()
        return held

    held = on_volume(vault, body)
    print(f"records held after each import: {held}")
    assert max(held) <= 2 * 0 + 4 + 1  # seen before 63c (1): 40, one a file deleted


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

    length, outcome = on_volume(vault, body)
    assert outcome == "moved"
    assert length <= 4096  # seen before the fix: ~5,000 bytes



def test_a_file_found_at_its_place_under_a_link_past_path_max_is_recorded_at_its_place(
        vault: Path, source: Path) -> None:
    """64c (1): the source's contents already at its place in the vault, as a hard link of a file
    whose first name lies past PATH_MAX: the record names the place it was found at (within the bound,
    ``_recorded_at``), never a path ``load_records`` would drop, so the next start holds it and the
    unchanged source is not imported again."""
    settings = Settings(source_dir_to_watch=str(source))
    (source / "a.txt").write_bytes(b"hers, linked")

    async def body(volume: Volume) -> tuple[list[str], int, bool, str]:
        importer = Importer(volume, settings, NoKernel())
        parent = await make_dirs(volume, b"Imported", importer.caller)
        deep = parent
        for step in range(20):
            deep = await volume.mkdir(deep.ino, b"%02d" % step + b"d" * 248, 0o700, importer.caller)
        node, _ = await write_file(volume, deep, b"a.txt", _once(b"hers, linked"), mode=0o600,
                                   caller=importer.caller, kernel=NoKernel())
        await volume.link(node.ino, parent.ino, b"a.txt")  # at the place too, its first name the deep one
        await importer.load()
        outcomes = [(await importer.take("a.txt"))[0]]
        length = len(os.fsencode(importer.records["a.txt"][0].vault_path))
        importer.close()
        fresh = Importer(volume, settings, NoKernel())
        await fresh.load()
        held = "a.txt" in fresh.records
        outcomes.append((await fresh.take("a.txt"))[0])
        fresh.close()
        return outcomes, length, held, os.fsdecode(volume.path_of(node))

    outcomes, length, held, first = on_volume(vault, body)
    assert len(first.encode()) > 4096  # the scene: its first name past the bound
    assert outcomes == ["unchanged", "unchanged"] and held and length == len(b"Imported/a.txt")


def test_the_watch_hands_its_walks_to_the_importer_which_drops_the_records_gone(
        vault: Path, source: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The watch itself (``ImportService._watch``): after its walks, the record whose vault file and
    source are gone is dropped (document deleted), the other kept: the bound of 63c (1), now reached
    on a walk's evidence only (64c (2))."""
    monkeypatch.setattr(importing, "SLACK", 0, raising=False)  # a drop due at once
    settings = Settings(source_dir_to_watch=str(source), settle_seconds=0.1)
    for name in ("gone.txt", "stays.txt"):
        (source / name).write_bytes(name.encode())

    async def body(volume: Volume) -> tuple[bool, bool]:
        importer = Importer(volume, settings, NoKernel())
        await importer.load()
        for name in ("gone.txt", "stays.txt"):
            assert (await importer.take(name))[0] == "new"
        importer.close()
        await volume.unlink(volume.resolve(b"Imported").ino, b"gone.txt")
        (source / "gone.txt").unlink()
        service = watcher.ImportService(volume, TaskState("import"), NoKernel(), threads=HostThreads())
        with trio.move_on_after(10):  # a walk a second: dropped after the first
            async with trio.open_nursery() as nursery:
                nursery.start_soon(service._watch, settings)
                while volume.store.get(record_id(volume.key, "gone.txt")) is not None:
                    await trio.sleep(0.05)
                nursery.cancel_scope.cancel()
        return (volume.store.get(record_id(volume.key, "gone.txt")) is None,
                volume.store.get(record_id(volume.key, "stays.txt")) is not None)

    dropped, kept = on_volume(vault, body)
    assert dropped and kept
