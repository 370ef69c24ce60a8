"""Closed files not flushed yet (vault/files/closed.py): flushed in small batches as they close.

A close commits without flushing the ``.vf``; what it left is flushed in
batches, so that no large flush waits for whatever comes next, and an fsync
through a later handle still flushes a file whose batch is under way.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import trio

from fusevault.vault.files import closed, open_files
from fusevault.vault.files.open_files import Files


class Closed:
    """What ``Files.close`` reads of a Content: its records appended, not flushed
    (and its file id, whose cached blocks go)."""

    def __init__(self, vf_path: str, new_files: bool = True) -> None:
        self.vf_path = vf_path
        self.fid = os.path.basename(vf_path)
        self.synced = False
        self.new_files = new_files

    def close(self) -> None:
        pass


class Node:
    content = None


class Tree:
    async def in_thread(self, fn, *args):
        return await trio.to_thread.run_sync(fn, *args)


def _vf_files(tmp_path: Path, count: int) -> list[str]:
    paths = []
    for i in range(count):
        path = tmp_path / f"{i:04d}.vf"
        path.write_bytes(b"records")
        (tmp_path / f"{i:04d}.vfmeta").write_bytes(b"sidecar")
        paths.append(str(path))
    return paths


def test_closed_files_are_flushed_in_small_batches_as_they_close(tmp_path: Path) -> None:
    # Before: 4,096 closed files waited, then one thread flushed them all
    # (during the listing that followed a create); now a batch of 1,024 at most.
    files = Files(Tree())  # type: ignore[arg-type]

    async def main() -> None:
        for path in _vf_files(tmp_path, 1100):
            files.close(Closed(path))  # type: ignore[arg-type]
            await files.flush_closed()  # as each release does

    trio.run(main)
    assert len(files.unflushed) < 1024


def test_a_file_whose_batch_is_being_flushed_is_flushed_again_by_its_fsync(tmp_path: Path,
                                                                          monkeypatch) -> None:
    # A Content opened while the batch holding its file is under way takes the
    # file as not flushed: its fsync must not return before the records are on
    # disk, whatever the batch's thread has done so far.  (Before, the batch's
    # files were forgotten as it started: the new Content took itself as flushed.)
    release = threading.Event()
    started = threading.Event()

    def slow_flush(paths: dict[str, bool]) -> None:
        started.set()
        release.wait(30)

    monkeypatch.setattr(closed, "flush_paths", slow_flush)
    monkeypatch.setattr(open_files, "flush_paths", slow_flush, raising=False)  # where it was before
    files = Files(Tree())  # type: ignore[arg-type]
    paths = _vf_files(tmp_path, 4096)  # enough for a flush before as now
    reopened = [Closed(paths[7], new_files=False), Closed(paths[8], new_files=False)]
    for content in reopened:
        content.synced = True  # as a Content just opened

    async def main() -> None:
        for path in paths:
            files.close(Closed(path))  # type: ignore[arg-type]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(files.flush_closed)
            with trio.move_on_after(30):
                while not started.is_set():
                    await trio.sleep(0.01)
            try:
                files._adopt(Node(), reopened[0])  # type: ignore[arg-type]
            finally:
                release.set()
        files._adopt(Node(), reopened[1])  # type: ignore[arg-type]

    trio.run(main)
    assert started.is_set()
    assert (reopened[0].synced, reopened[0].new_files) == (False, True)
    assert (reopened[1].synced, reopened[1].new_files) == (True, False)  # its batch is done


@pytest.mark.parametrize("count", [3, closed.SYNCFS_FROM + 1], ids=["file by file", "syncfs"])
def test_flush_paths_takes_files_and_folders_that_are_gone(tmp_path: Path, count: int) -> None:
    # gc or an unlink may remove a closed file (or its whole folder) before its batch.
    (tmp_path / "kept").mkdir()
    paths = _vf_files(tmp_path / "kept", count)
    os.unlink(paths[0])
    closed.flush_paths({**dict.fromkeys(paths, True), str(tmp_path / "gone" / "x.vf"): True})


def test_a_batch_whose_flush_failed_waits_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Before: a batch was forgotten once its flush began, so after a failed
    # syncfs (EIO) a later fsync of one of its files took it as on disk.
    files = Files(Tree())  # type: ignore[arg-type]
    paths = _vf_files(tmp_path, closed.FLUSH_BATCH)

    def failing(batch: dict[str, bool]) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(closed, "flush_paths", failing)

    async def main() -> None:
        for path in paths:
            files.close(Closed(path))  # type: ignore[arg-type]
        with pytest.raises(OSError):
            await files.flush_closed()

    trio.run(main)
    assert files.unflushed.take(paths[0]) is True, "a file whose flush failed counts as on disk"
    assert len(files.unflushed) == closed.FLUSH_BATCH - 1
