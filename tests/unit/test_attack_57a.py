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
Cause: fusevault/vault/services/exporting.py:300 (``threads.run(out.create, rel)`` with no
``discard``) with the check-then-return of ``Destination.create`` (exporting.py:203-208): the
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
Not tried: a queued ``out.discard`` run after ``out.close()`` (it is refused, ECANCELED, suppressed:
the temporary file stays; read only), a real mount.
"""

from __future__ import annotations

import os
import threading
import time
import types
from pathlib import Path

import pytest
import trio

from fusevault.host_access import Direct
from fusevault.host_access.threads import HostThreads
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
                    nursery.start_soon(exporting._write, None, node, out, threads, "file", False)
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


@pytest.mark.xfail(strict=True, reason="57a (1): an export given up as its temporary file opens leaks "
                   "root's descriptor and the temporary file (create run without discard)")
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
