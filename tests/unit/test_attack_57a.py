"""Attack round 57a: round 56a (1)'s ``Held`` (host_access/held.py) and its users (exporting._write,
the importer's sources, the watcher's folder) and round 55c (1)'s queued clean-ups (threads.py).

Hole (1), medium (a flood that stops the mount: root's descriptors leaked, one per export he hangs up
on at the right time; a temporary file left in his folder each time).  Attacker: a local user of the
shared mount with a FUSE file system of his own as export destination (round 51t's scene).  Steps: he
exports a file; his FUSE holds the ``open`` of the export's temporary file (``Destination._create``);
he hangs up; his FUSE answers the open.  ``Destination.create`` checks ``self._over()`` (not yet: the
loop has not run ``export``'s ``finally`` ``out.close()``), returns ``(parent, temp, fd)`` from its
thread; the call was given up (``abandon_on_cancel``) so trio drops the result; ``out.close()`` then
closes the folders only.  ``_write`` runs ``threads.run(out.create, rel)`` without ``discard=``, so
nothing closes the descriptor nor removes the temporary file: root's process keeps the descriptor
for its lifetime (one more per hangup; repeated, EMFILE for every user of the mount).  Seen: after the
given-up export, the temporary file's descriptor is still open in the mount's process and the file
is in his folder.  Expected: closed, and removed (as ``create`` does when it sees ``_over()``).
Cause: fusevault/vault/services/exporting.py:299 (``threads.run(out.create, rel)`` with no
``discard``) with the check-then-return of ``Destination.create`` (exporting.py:197-205): the
``_over()`` check and the hand-over to the caller are not one step; the window is between the
check and the loop taking the result (the loop busy, or the cancel arriving as the thread returns).
The test widens nothing in fusevault: the loop is kept busy (a blocking wait on the loop) until the
thread is out of ``create``, which is what a loaded loop does.  Suggested fix: run ``create`` with
``discard=`` (close the descriptor and discard the temporary file, as round 53b did for
``Destination`` itself), or hand its descriptor over as a ``Held`` made in the thread under the same
lock as ``_over``.
Test: ``test_57a_1_an_export_given_up_as_its_temporary_file_opens_leaks_roots_descriptor``;
control (held): ``test_control_57a_1_given_up_while_the_open_is_held_closes_and_removes_it`` (the
same hangup, ``out.close()`` run before the open returns: ``create`` sees ``_over()``).

Hole (2), medium (a flood that stops the mount: root's descriptors leaked, one per walk, every few
seconds, for the mount's life; round 51t lead (2)'s hole again, in round 55c (3)'s walk).  Attacker:
a local user of the shared mount watching a folder of his own, with a FUSE file system of his own
(mounted without ``allow_other``: root's process may not ``fstat`` it).  Steps: his watched folder
holds a folder ``sub``; after the walk has listed its parent (``_listed``: ``sub`` on the watched
folder's device, kept to walk), he mounts his FUSE on ``sub`` (the walk is depth first, last name
first: a big subtree walked before gives him time; he unmounts after).  ``walk`` opens ``sub`` as him
(``source_paths.inner``: his helper's open succeeds, it is his FUSE) and ``os.fstat(below)`` in
root's process fails (EACCES); the error leaves ``walk`` before ``below`` is in ``way``, so its
``finally`` does not close it.  The watcher logs "could not be looked at" and walks again: one more
descriptor per walk.  ``_held``'s closing ``os.fstat(fd)`` (a folder opened again on the way) is
outside its ``try`` too.  Seen (in-process, root's refusal played by ``os.fstat`` raising EACCES for
that descriptor): after the walk, the descriptor of ``sub`` is still open.  Expected: closed
(passed over, or the walk failed with nothing kept).  Cause: fusevault/imports/watcher.py:229
(``os.fstat(below)`` with ``below`` held by nobody) and watcher.py:272 (``_held``).  Suggested fix:
``below`` closed on any error of that check (a try around it, as ``open_source`` does since 51t),
and the device asked of the user's helper (``host.lstat(".", dir_fd=below)``), which may see it.
Test: ``test_57a_2_a_folder_root_may_not_fstat_leaks_its_descriptor_at_every_walk``; control (held):
``test_control_57a_2_the_same_walk_keeps_nothing``.

Hole (3), low (a partial file left in his own folder, with his own bytes; nothing of anyone else's).
Attacker: the same user, his FUSE destination holding calls past ``CLEAN_UP_WAIT`` (all his threads
held: two hung calls of his in the mount).  Steps: his export's first ``pwrite`` is held; he hangs up;
``_write`` asks ``clean_up(file.close)`` and ``clean_up(out.discard, parent, temp)``, both queued (55c
(1)): no thread of his is free; ``export``'s ``finally`` runs ``out.close()`` on the loop, and as the
given-up write holds the file (``Held``) and not ``out``, the folders are closed at once.  His FUSE
answers; the queue runs: ``out.discard`` meets ``_in_use``'s ECANCELED (suppressed), the temporary
file is never removed.  Seen: ``.file.fvpart-export-*`` stays in his folder.  Expected: removed (as
when the clean-up is not queued).  Cause: fusevault/vault/services/exporting.py:259-261 (``discard``
refused once ``out`` is closed) with ``export``'s ``out.close()`` (exporting.py:293) not waiting for
the queued clean-ups of its files.  Suggested fix: ``out`` held by each file's clean-up (close it from
the last of them), or ``discard`` by a descriptor of its own folder taken before the close.
Test: ``test_57a_3_a_queued_discard_after_the_exports_close_leaves_the_temporary_file``; control:
``test_control_57a_3_an_export_not_given_up_leaves_no_temporary_file``.

Read, not run (held as far as read): ``Held`` itself: ``holding`` counts before the call and
refuses after ``close``; the last holder closes exactly once (``_gone`` under the lock); ``close``
twice closes once.  exporting._write: ``Held`` made right after ``create`` with no await between;
every call on ``fd`` holds it (``as_user`` around ``holding``, so the deferred close runs with his
fsuid).  importer ``_hash_source``/``_copy``: ``open_source`` runs with ``discard=_close_source``, the
``Held`` is made with no await between; ``source.fileno()`` read on the loop before the close is
asked.  watcher ``_watch``: ``hold`` with ``discard=os.close``, ``clean_up(root.close)`` in ``finally``;
the walk and ``_take_settled`` both hold the root.  No deadlock seen: a close never waits for a call
(``close`` returns at once while busy; the last call closes in its own thread).  EAGAIN: each user has
his own ``HostThreads`` (requests.py, watcher.py, sessions.py), so his queue refuses only his work.
Not tried: a real mount (every scene here is in-process, his FUSE played by patched calls).

Fixed after the round: (1) ``create`` run with ``discard=Destination.drop_created`` (closed and removed
where it was made); (2) ``watcher._on_device`` (a folder root may not look at is not walked, its
descriptor closed; ``_held`` closes it on any error of the check); (3) ``Destination.discard_later``
(the folders kept open for a queued discard until it ran).
"""

from __future__ import annotations

import os
import threading
import time
import types
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from fusevault.host_access import Direct
from fusevault.host_access.threads import HostThreads
from fusevault.host_access.way import Step
from fusevault.vault.services import exporting


class _HisFuse(Direct):
    """His FUSE file system: the open of the export's temporary file is held until released."""

    def __init__(self) -> None:
        super().__init__()
        self.opened, self.release = threading.Event(), threading.Event()
        self.fds: list[int] = []

    def open(self, path: str, flags: int, mode: int = 0o600, *, dir_fd: int | None = None) -> int:
        fd = super().open(path, flags, mode, dir_fd=dir_fd)
        if ".fvpart-export-" in os.fsdecode(path):
            self.fds.append(fd)
            self.opened.set()
            self.release.wait(10)
        return fd


def _hangup(tmp_path: Path, close_before_answer: bool) -> tuple[_HisFuse, Path, HostThreads]:
    dest = tmp_path / "his-fuse-folder"
    dest.mkdir()
    host = _HisFuse()
    node = types.SimpleNamespace(size=3, mode=0o100600, atime=0, mtime=0)
    threads = HostThreads()

    async def main() -> None:
        out = exporting.Destination(host, dest)
        try:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(exporting._write, None, node, out, threads, Step(None, "file"), False)
                    await trio.to_thread.run_sync(host.opened.wait)
                    scope.cancel()  # his hangup: the export is given up
                    if close_before_answer:
                        out.close()  # export's ``finally`` ran before his FUSE answered
                    host.release.set()  # his FUSE answers the open
                    if not close_before_answer:
                        # The loop busy elsewhere until the thread is out of ``create``.
                        deadline = time.monotonic() + 10
                        while out._busy and time.monotonic() < deadline:
                            time.sleep(0.01)
        finally:
            out.close()  # as ``export``'s finally
        with trio.fail_after(10):
            while threads.limiter.borrowed_tokens:
                await trio.sleep(0.01)

    try:
        trio.run(main)
    finally:
        host.release.set()
    return host, dest, threads


def _open_on(fd: int, dest: Path) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}").startswith(str(dest))
    except OSError:
        return False


def test_57a_1_an_export_given_up_as_its_temporary_file_opens_leaks_roots_descriptor(tmp_path: Path) -> None:
    host, dest, _ = _hangup(tmp_path, close_before_answer=False)
    [fd] = host.fds
    leaked = _open_on(fd, dest)
    if leaked:
        os.close(fd)
    assert not leaked, "root's descriptor of the temporary file is still open"
    assert not [p.name for p in dest.iterdir() if ".fvpart-export-" in p.name]


def test_control_57a_1_given_up_while_the_open_is_held_closes_and_removes_it(tmp_path: Path) -> None:
    host, dest, _ = _hangup(tmp_path, close_before_answer=True)
    [fd] = host.fds
    assert not _open_on(fd, dest)
    assert not [p.name for p in dest.iterdir() if ".fvpart-export-" in p.name]


def _walk_sub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refused: bool) -> int:
    from fusevault.imports import watcher

    watched = tmp_path / "watched"
    (watched / "sub").mkdir(parents=True)
    (watched / "sub" / "f").write_bytes(b"x")
    opened: list[int] = []

    class _His(Direct):
        def open(self, path: str, flags: int, mode: int = 0o600, *, dir_fd: int | None = None) -> int:
            fd = super().open(path, flags, mode, dir_fd=dir_fd)
            if path == "sub":
                opened.append(fd)  # his FUSE, mounted on ``sub`` after the listing
            return fd

    real_fstat = os.fstat

    def roots_fstat(fd: int) -> os.stat_result:
        if refused and opened and fd == opened[0] and _open_on(fd, watched):
            raise PermissionError(13, "Permission denied")  # root on his FUSE (no allow_other)
        return real_fstat(fd)

    monkeypatch.setattr(os, "fstat", roots_fstat)
    root = os.open(watched, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            watcher.walk(_His(), root)
        except PermissionError:
            pass  # the watcher logs it and walks again soon
    finally:
        os.close(root)
        monkeypatch.setattr(os, "fstat", real_fstat)
    [fd] = opened
    leaked = _open_on(fd, watched)
    if leaked:
        os.close(fd)
    return leaked


def test_57a_2_a_folder_root_may_not_fstat_leaks_its_descriptor_at_every_walk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not _walk_sub(tmp_path, monkeypatch, refused=True), "the descriptor of sub is still open"


def test_control_57a_2_the_same_walk_keeps_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not _walk_sub(tmp_path, monkeypatch, refused=False)


def _queued_discard(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hang_up: bool) -> list[str]:
    from fusevault.host_access import threads as threads_module

    dest = tmp_path / "his-fuse-folder"
    dest.mkdir()
    payload = b"X" + b"HIS BYTES" * 3
    real_pwrite = os.pwrite
    held, release, seen = threading.Event(), threading.Event(), {}

    def his_fuse_pwrite(fd: int, data: bytes, offset: int) -> int:
        if "fd" in seen or not hang_up:
            return real_pwrite(fd, data, offset)
        seen["fd"] = fd
        real_pwrite(fd, bytes(data[:1]), offset)
        held.set()
        release.wait(10)  # his FUSE holds the first write past the clean-ups' wait
        return 1

    async def one_piece(volume: object, node: object) -> AsyncIterator[tuple[int, bytes]]:
        yield 0, payload

    monkeypatch.setattr(os, "pwrite", his_fuse_pwrite)
    monkeypatch.setattr(exporting, "read_data", one_piece)
    monkeypatch.setattr(threads_module, "CLEAN_UP_WAIT", 0.2)  # ten seconds in the mount
    node = types.SimpleNamespace(size=len(payload), mode=0o100600, atime=0, mtime=0)
    threads = HostThreads(1)  # his threads all held (two in the mount: two hung calls of his)

    async def main() -> None:
        out = exporting.Destination(Direct(), dest)
        try:
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(exporting._write, None, node, out, threads, Step(None, "file"), False)
                    if hang_up:
                        await trio.to_thread.run_sync(held.wait)
                        scope.cancel()  # his hangup: file.close and out.discard queued
        finally:
            out.close()  # export's finally: the given-up write holds the file only, not ``out``
        release.set()  # his FUSE answers; the queued clean-ups run
        with trio.fail_after(10):
            while threads._queued or threads._draining or threads.limiter.borrowed_tokens:
                await trio.sleep(0.01)

    try:
        trio.run(main)
    finally:
        release.set()
    return [p.name for p in dest.iterdir() if ".fvpart-export-" in p.name]


def test_57a_3_a_queued_discard_after_the_exports_close_leaves_the_temporary_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _queued_discard(tmp_path, monkeypatch, hang_up=True) == []


def test_control_57a_3_an_export_not_given_up_leaves_no_temporary_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _queued_discard(tmp_path, monkeypatch, hang_up=False) == []
