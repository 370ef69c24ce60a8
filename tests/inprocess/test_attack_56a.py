"""Attack round 56a (1), the other descriptors lent to a user's threads: the importer's source file
and the watched folder (tests/unit/test_attack_56a.py has the export's file, the hole as found).

A call on his watched folder is given up when its caller is (a lock, an unmount, a new setting) and
goes on in its thread: ``source_pieces`` steps ``lseek`` after ``lseek`` on the source, the importer's
look-ups open names from the folder's descriptor.  Closed beside it, the number went to the mount's
next file and the call went on there (an ``lseek`` moves another file's offset; a look-up is made
from another folder).  Fixed: every call using one of them holds it (host_access/held.py), the close
is left to the last one.  Each test: a call held on his file system, its caller given up, the close
asked for; the number is still his file's while the call runs, and closed once it ended.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from fusevault.host_access.threads import HostThreads
from fusevault.imports import source_paths, watcher
from fusevault.imports.importer import Importer
from fusevault.tasks import TaskState
from fusevault.vault.model.settings import Settings
from fusevault.vault.services.placing import NoKernel


def _identity(fd: int) -> tuple[int, int] | None:
    """(device, inode) of the file ``fd`` is open on, None if it is closed."""
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _holding_first(real: Callable[..., Any], fd_of: Callable[..., int]) -> tuple[Callable[..., Any], dict,
                                                                                 threading.Event]:
    """``real`` whose first call is held until released (his FUSE), noting the descriptor it uses."""
    seen: dict = {}
    release = threading.Event()

    def held(*args: Any) -> Any:
        if "fd" not in seen:
            fd = fd_of(*args)
            seen["fd"], seen["file"] = fd, _identity(fd)
            seen["held"].set()
            release.wait(10)
        return real(*args)

    seen["held"] = threading.Event()
    return held, seen, release


async def _given_up_then_closed(importer: Importer, seen: dict, release: threading.Event,
                                close: Callable[[], Any], held: Path) -> None:
    threads = importer.threads
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(importer.take, "scan.pdf")
            await trio.to_thread.run_sync(seen["held"].wait)
            scope.cancel()  # the import is given up (a lock): its clean-ups run
    st = held.stat()
    assert seen["file"] == (st.st_dev, st.st_ino)  # the call held is the one on his file
    await close()
    # While the given-up call runs, its number is still his file's: nobody else's file can take it.
    assert _identity(seen["fd"]) == seen["file"]
    release.set()
    with trio.fail_after(10):
        while threads.limiter.borrowed_tokens:
            await trio.sleep(0.01)
    # ... and closed once it ended, in its own thread: nothing kept.
    assert seen["file"] not in {_identity(int(each)) for each in os.listdir("/proc/self/fd")}


async def test_56a_1_the_source_is_closed_only_once_a_given_up_read_of_it_ended(
        fs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "scans"
    source.mkdir()
    (source / "scan.pdf").write_bytes(b"a scan")
    importer = Importer(fs.volume, Settings(source_dir_to_watch=str(source), import_into="In"), NoKernel(),
                        threads=HostThreads())
    await importer.load()
    # ``source_pieces``' first lseek on the source (SEEK_DATA), held by his FUSE; then the next ones.
    lseek, seen, release = _holding_first(os.lseek, lambda fd, *_: fd)
    monkeypatch.setattr(os, "lseek", lseek)
    try:
        await _given_up_then_closed(importer, seen, release, trio.lowlevel.checkpoint, source / "scan.pdf")
    finally:
        release.set()
        monkeypatch.undo()
        importer.close()


async def test_56a_1_the_watched_folder_is_closed_only_once_a_given_up_look_up_from_it_ended(
        fs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "scans"
    source.mkdir()
    (source / "scan.pdf").write_bytes(b"a scan")
    importer = Importer(fs.volume, Settings(source_dir_to_watch=str(source), import_into="In"), NoKernel(),
                        threads=HostThreads())
    await importer.load()
    # The first look-up of a name from the watched folder, held by his FUSE.
    lstat, seen, release = _holding_first(source_paths.lstat, lambda host, root, location: root)
    monkeypatch.setattr(source_paths, "lstat", lstat)

    async def stop_watching() -> None:
        importer.close()  # the watched folder's descriptor: left to the look-up still under way

    try:
        await _given_up_then_closed(importer, seen, release, stop_watching, source)
    finally:
        release.set()


async def test_56a_1_the_watched_folder_is_closed_only_once_a_given_up_walk_of_it_ended(
        fs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "scans"
    source.mkdir()
    service = watcher.ImportService(fs.volume, TaskState("import"), NoKernel(), threads=HostThreads())
    # The first walk of the watched folder, held by his FUSE (a walk opens name after name from it).
    walked, seen, release = _holding_first(watcher.walked, lambda host, root, known: root)
    monkeypatch.setattr(watcher, "walked", walked)
    try:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(service._watch, Settings(source_dir_to_watch=str(source)))
                await trio.to_thread.run_sync(seen["held"].wait)
                scope.cancel()  # the watch is given up (a lock, new settings): the folder's close runs
        st = source.stat()
        assert seen["file"] == (st.st_dev, st.st_ino)
        assert _identity(seen["fd"]) == seen["file"]  # still his folder while the walk runs
        release.set()
        with trio.fail_after(10):
            while service.threads.limiter.borrowed_tokens:
                await trio.sleep(0.01)
        assert seen["file"] not in {_identity(int(each)) for each in os.listdir("/proc/self/fd")}
    finally:
        release.set()
