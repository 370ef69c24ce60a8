"""Attack round 55c: the shared mount's watched folder and helpers after 53b (07efc0b, ce41fe8).

Threat: a local user (not root) of a shared mount, or an honest user with an ordinary big folder.

(placeholder: filled below)
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest
import trio

from fusevault.host_access import Direct
from fusevault.host_access import threads as host_threads
from fusevault.host_access.helper import AsUser, serve_requests
from fusevault.host_access.threads import THREADS, HostThreads
from fusevault.imports import source_paths
from fusevault.imports.import_records import Stamp
from fusevault.imports.watcher import Pending, walk, walked


def _open_count() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.xfail(strict=True, reason="55c (1): a clean-up given up while his threads are all held never runs: root's descriptor of his folder leaks")
def test_a_clean_up_given_up_while_his_threads_are_held_still_closes(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(host_threads, "CLEAN_UP_WAIT", 0.3)
    release = threading.Event()
    held = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)  # root's descriptor of his watched folder

    async def main() -> None:
        threads = HostThreads()
        with trio.move_on_after(0.3):  # his watch and an export, stalled on his stopped helper, given up
            async with trio.open_nursery() as nursery:
                for _ in range(THREADS):
                    nursery.start_soon(threads.run, release.wait)
        await threads.clean_up(os.close, held)  # _watch's finally: given up after CLEAN_UP_WAIT
        release.set()  # he lets his helper go on: his threads end
        with trio.fail_after(5):
            while threads.limiter.borrowed_tokens:
                await trio.sleep(0.05)
        await trio.sleep(0.3)

    trio.run(main)
    try:
        os.fstat(held)
    except OSError:
        return  # closed, as it should be
    os.close(held)
    pytest.fail("root's descriptor of his folder is still open, and nobody will close it")


def _serve(sock: socket.socket) -> None:
    try:
        serve_requests(sock)
    except OSError:
        pass  # the mount's end closed under a long answer


def _helper() -> AsUser:
    """A helper as the shared mount has one (host_access/helper.py), on a line of its own: the same
    wire (SOCK_SEQPACKET, wire.py), the same loop, in a thread of this test (its uid is the test's)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    threading.Thread(target=_serve, args=(theirs,), daemon=True).start()
    return AsUser(os.getuid(), os.getgid(), ours, 0)


def _linked(folder: Path, count: int, name: bytes) -> None:
    """``count`` names of one file in ``folder`` (hard links: quick to make, as many names as files)."""
    folder.mkdir()
    (folder / "first").write_bytes(b"x")
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for number in range(count):
            os.link("first", b"%06d" % number + name, src_dir_fd=fd, dst_dir_fd=fd)
    finally:
        os.close(fd)


@pytest.mark.xfail(strict=True, reason="55c (2): one folder of ~40k names (150k-400k honest ones) under the watched folder fails every walk (EIO): nothing is imported, for good")
def test_a_folder_of_many_names_in_the_watched_folder_does_not_stop_every_import(tmp_path: Path) -> None:
    (tmp_path / "report.txt").write_text("hers, to import")
    # 42,000 names of 255 bytes not UTF-8: 1,675 bytes each in the helper's JSON answer (\udcff per
    # byte), 70 MB in all, past wire.MAX_TOTAL (64 MiB).  ASCII names of 200 bytes do it at ~195,000.
    _linked(tmp_path / "inbox", 42_000, b"\xff" * 249)
    host = _helper()
    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        found, _, changed = walked(host, root, {})
    finally:
        os.close(root)
        host.close()
    assert "report.txt" in found and "report.txt" in changed


def test_control_a_folder_of_a_few_thousand_names_is_walked_through_his_helper(tmp_path: Path) -> None:
    (tmp_path / "report.txt").write_text("hers, to import")
    _linked(tmp_path / "inbox", 4_000, b"\xff" * 249)  # 6.7 MB of answer: in pieces, under the cap
    host = _helper()
    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        found = walk(host, root)
    finally:
        os.close(root)
        host.close()
    assert "report.txt" in found and len(found) == 4_002


class _Counted(Direct):
    """His helper's calls counted (each is a round trip to it: a datagram each way, a descriptor)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def call(self, op, *args, fd=None):
        self.calls += 1
        return super().call(op, *args, fd=fd)


def _chain(top: Path, depth: int) -> None:
    """``top/d/d/.../d`` (``depth`` folders), made one step at a time (a path past PATH_MAX is fine)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        os.close(os.open("deep.txt", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
    finally:
        os.close(fd)


@pytest.mark.xfail(strict=True, reason="55c (3): a walk costs his helper depth squared / 2 round trips for a chain of folders (10,000 deep: 50 million a walk)")
def test_a_deep_chain_of_folders_costs_the_walk_calls_in_proportion(tmp_path: Path) -> None:
    depth = 200
    _chain(tmp_path, depth)
    host = _Counted()
    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        found = walk(host, root)
    finally:
        os.close(root)
    assert list(found) == ["/".join(["d"] * depth + ["deep.txt"])]
    print(f"{host.calls} calls of his helper for {depth} folders")
    assert host.calls <= 4 * (depth + 1)  # seen: 20,302 (one open per folder on the way, for each folder)


def test_control_a_wide_folder_costs_the_walk_one_call_per_folder(tmp_path: Path) -> None:
    for number in range(200):
        (tmp_path / f"d{number}").mkdir()
        (tmp_path / f"d{number}" / "f.txt").write_text("x")
    host = _Counted()
    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        found = walk(host, root)
    finally:
        os.close(root)
    assert len(found) == 200 and host.calls <= 4 * 201


class _SavedMeanwhile(Direct):
    """An editor's save (a new file renamed over the name) lands right after the importer's look."""

    def __init__(self, folder: Path, name: str) -> None:
        super().__init__()
        self.folder, self.name, self.saved = folder, name, False

    def lstat(self, path, *, dir_fd=None):
        found = super().lstat(path, dir_fd=dir_fd)
        if path == self.name and not self.saved:
            self.saved = True
            (self.folder / ".save.tmp").write_text("her newest version, never imported")
            os.rename(self.folder / ".save.tmp", self.folder / self.name)
        return found


@pytest.mark.xfail(strict=True, reason="55c (4): delete_file_from_source removes a file saved over the imported one between its look and the unlink")
def test_a_save_landing_between_the_look_and_the_unlink_is_not_removed(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("the version imported")
    imported = Stamp.of(os.lstat(tmp_path / "notes.txt"))  # the record's stamp
    host = _SavedMeanwhile(tmp_path, "notes.txt")
    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        source_paths.remove_if(host, root, "notes.txt", lambda st: Stamp.of(st) == imported)
    finally:
        os.close(root)
    assert host.saved
    assert (tmp_path / "notes.txt").exists(), "her newest version, never imported, was deleted"


class _Looked(dict):
    """``Pending.items`` with a count of the entries a look at it went through."""

    looked = 0

    def items(self):
        for item in super().items():
            _Looked.looked += 1
            yield item


@pytest.mark.xfail(strict=True, reason="55c (5): every tick (0.5 s) looks at every file pending on the mount's loop: 200k files he may not read block it ~0.25 s in 0.5")
def test_a_tick_with_nothing_due_does_not_look_at_every_pending_file_on_the_loop() -> None:
    pending = Pending(2.0)
    pending.items = _Looked()
    for number in range(100_000):  # names of one file of his he may not read (chmod 000, hard links)
        pending.retry(f"f{number // 10_000}/{number:05}.pdf", 0.0, 60)  # failed: again in 60 s
    _Looked.looked = 0
    assert pending.due(1.0) == []  # _take_settled's tick, on the loop: nothing due for a minute
    assert _Looked.looked <= 1_000, f"{_Looked.looked} entries looked at on the loop for nothing due"
