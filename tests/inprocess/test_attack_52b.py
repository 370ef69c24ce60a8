"""Attack round 52b at 51t's fix (host_access/threads.py ``HostThreads``, one per user session).

(1) ``config set`` checks a folder on the mount's shared worker threads, not his, and is never given up
Attack: in an ``--allow-other-users`` mount a user mounts a FUSE file system of his own that never
  answers (tests/mount/test_trust_attack_51t.py's), asks ``fusevault config set target_dir_to_dump
  /his/fuse/x``, hangs up, locks, unlocks, and asks again, in a loop.
Seen: the folder check (``requests.do_config``: ``trio.to_thread.run_sync(user_settings.check, ...)``)
  runs in trio's default thread pool (40 threads for the whole process), without
  ``abandon_on_cancel``: his hangup leaves the thread counted; each unlock makes a new ``Session`` and
  so a new ``Requests.turn``, so every lock-unlock adds one more held thread of the shared pool.  In
  the run below, after 40 sessions a plain ``trio.to_thread.run_sync`` of anyone's (as another
  user's unlock does: sessions.py ``Agent.unlock``, ``_ttl``; kernel invalidations, fs/kernel.py; a
  new seat's helper, fs/shared.py; the sync's replicator) gets no thread.
  In the real mount each helper operation times out at ``HELPER_TIMEOUT`` (120 s) and a user's helper
  answers one call at a time (``AsUser._lock``): the k-th held check ends only after about k x 120 s
  (and each check makes up to four helper calls per folder, three folders: a FUSE answering every
  call after 119 s keeps one check for ~24 min), so a lock-unlock every few seconds keeps the pool
  full for as long as he goes on.  Read-only there: the run uses a host whose ``realpath`` never
  answers until the test lets it go (the helper's wait, in-process).
Cause: 51t moved the export's and the importer's host calls to the user's ``HostThreads``, but not
  the settings check (``do_config``), which also calls the host on a path of his choosing; and the
  per-user bound is per session (a fresh limiter per unlock), not per user.
Impact: every user of the shared mount: unlocks, cache invalidations, sync's work on threads stall
  (a stalled sync/unlock for all, by one local user); medium.
Fix (suggested): the check in ``self.host_threads.run`` (abandonable, his limiter); keep the
  user's ``HostThreads`` on his ``Agent`` (one per user for the mount's life), not per ``Session``.
Tests: ``test_his_stalled_settings_checks_do_not_take_the_mount_s_shared_threads`` (strict xfail),
  control ``test_one_stalled_settings_check_leaves_the_shared_threads_to_others``.

(2) His threads are per session: a lock-unlock gives him two more, each export leaks root's descriptors
Attack: the same user exports into his FUSE file system whose write and flush never answer, hangs
  up, locks, unlocks, exports again, in a loop.
Seen: an export's write (``Destination.as_user(_write_all)``, root's thread acting as him) and the
  close of its file (``_close``: the flush) wait for his daemon with no time limit: two threads of
  his ``HostThreads`` held for ever.  Its clean-ups then find no thread of his free: the temporary
  file's removal and ``Destination.close`` are given up after ``CLEAN_UP_WAIT``, so the destination
  folder's descriptors (opened for him by the helper, held by root) are never closed.  The next
  unlock's ``Session`` makes a fresh ``HostThreads``: two more threads held, more descriptors leaked.
  In the run below (write and close made to block; ``CLEAN_UP_WAIT`` cut to 0.2 s) each session
  costs two held threads and about two descriptors (the destination folder's, never closed; and
  the stub's unclosed file: a real close frees the number while its flush waits), without bound.
Cause: ``HostThreads`` is made in ``Session.__init__`` (sessions.py): "one per user" holds within one
  unlock only; and ``clean_up`` of ``Destination.close`` needs one of the very threads the stall holds.
Impact: root's mount process: threads and descriptors (RLIMIT_NOFILE) exhausted by one local user
  (EMFILE on the store's and every user's file opens): every user's mount fails; medium.
Fix (suggested): the ``HostThreads`` kept on the ``Agent`` (per user, for the mount's life); the
  folder descriptors closed on the loop (a close of a directory descriptor has no flush to wait on)
  or outside his limiter.
Tests: ``test_his_stalled_exports_hold_a_bounded_number_of_root_s_threads_and_descriptors`` (strict
  xfail).

Fixed (1), (2): the user's ``HostThreads`` is his ``Agent``'s, for the mount's life, given to each
``Session`` (sessions.py), and ``config set``'s folder check runs in them (``requests.do_config``); an
export's folder descriptors are closed on the loop (a folder's close waits for no flush).  The tests
above build each ``Session`` with the one ``HostThreads``, as the ``Agent`` does; the export's asserts
that no descriptor more is held for each further lock, unlock and stalled export (the first two
sessions' own: the stub's never-closed file, the store's connections of new worker threads).
"""

from __future__ import annotations

import os
import threading

import trio

from fusevault.agent.sessions import Session
from fusevault.host_access import Direct
from fusevault.host_access import threads as host_threads
from fusevault.host_access.threads import HostThreads
from fusevault.tasks import Tasks
from fusevault.vault.services import exporting
from fusevault.vault.services.placing import NoKernel
from inprocess.conftest import make

STALL = "/stalling-fuse-of-his"


class StallingHost(Direct):
    """His rights (this process's here), on a folder of his whose file system never answers."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release = release
        self.entered = 0
        self.lock = threading.Lock()

    def realpath(self, path: str) -> str:
        if path.startswith(STALL):
            with self.lock:
                self.entered += 1
            self.release.wait(120)  # the helper's HELPER_TIMEOUT; the test releases it sooner
        return super().realpath(path)


async def _stall_settings_checks(fs, sessions: int) -> bool:
    """``sessions`` lock-unlocks, each with his ``config set`` on his stalling folder, hung up;
    then whether a plain worker thread of anyone's is still answered."""
    release = threading.Event()
    host = StallingHost(release)
    limiter = trio.to_thread.current_default_thread_limiter()
    answered = False
    threads = HostThreads()  # his Agent's, kept across his unlocks
    async with trio.open_nursery() as nursery:
        try:
            for n in range(sessions):
                session = Session(fs.volume, NoKernel(), Tasks(), host, threads)  # his next unlock
                scope = trio.CancelScope()

                async def ask(session=session, scope=scope) -> None:
                    with scope:
                        await session.requests.handle(
                            {"cmd": "config", "set": {"target_dir_to_dump": f"{STALL}/x"}})

                nursery.start_soon(ask)
                with trio.move_on_after(0.5):  # past his own threads, his next checks wait for one
                    while host.entered < n + 1:
                        await trio.sleep(0.01)
                scope.cancel()  # he hangs up (and locks)
            await trio.sleep(0.1)
            held = limiter.borrowed_tokens
            with trio.move_on_after(3):
                await trio.to_thread.run_sync(lambda: None)  # another user's unlock, say
                answered = True
            print(f"shared threads held: {held} of {limiter.total_tokens}; answered: {answered}")
        finally:
            release.set()
    return answered


async def test_one_stalled_settings_check_leaves_the_shared_threads_to_others(fs):
    assert await _stall_settings_checks(fs, 1)


async def test_his_stalled_settings_checks_do_not_take_the_mount_s_shared_threads(fs):
    # The shared pool cut to 8 threads (40 by default): as many sessions as it has threads held it
    # dry before the fix, and the run waits out each check past his own threads (76 s at 40).
    limiter = trio.to_thread.current_default_thread_limiter()
    limiter.total_tokens, before = 8, limiter.total_tokens
    try:
        assert await _stall_settings_checks(fs, limiter.total_tokens)
    finally:
        limiter.total_tokens = before


async def test_his_stalled_exports_hold_a_bounded_number_of_root_s_threads_and_descriptors(
        fs, tmp_path, monkeypatch):
    await make(fs.ops, b"f.txt", b"data to export")
    release = threading.Event()
    stalled = []

    def never_answers(*_args) -> None:  # his FUSE's write, then its flush at close: no time limit
        stalled.append(1)
        release.wait(60)

    monkeypatch.setattr(exporting, "_write_all", never_answers)
    monkeypatch.setattr(exporting, "_close", never_answers)
    monkeypatch.setattr(host_threads, "CLEAN_UP_WAIT", 0.2)
    dest = tmp_path / "his-fuse"
    dest.mkdir()

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before_fds, first_fds = fds(), 0
    sessions = 6
    threads = HostThreads()  # his Agent's, kept across his unlocks
    try:
        for n in range(sessions):
            session = Session(fs.volume, NoKernel(), Tasks(), Direct(), threads)  # his next unlock
            with trio.move_on_after(1.5):  # he hangs up
                await session.requests.handle({"cmd": "export", "path": "/", "dest": str(dest)})
            with trio.fail_after(10):
                # His write holds a thread; its close is left to it, not run beside it (56a (1)).
                while len(stalled) < min(n + 1, host_threads.THREADS):
                    await trio.sleep(0.01)
            if n == 1:
                first_fds = fds()  # the stub's unclosed file, the store's connections of new workers
        held_threads = len(stalled)  # root's threads waiting on his file system now (none returned)
        leaked_fds = fds() - before_fds
        print(f"after {sessions} sessions: {held_threads} threads held, {leaked_fds} more descriptors")
        # One user's stalled folder should hold at most his two threads, whatever he repeats.
        assert held_threads <= host_threads.THREADS, held_threads
        # Root's descriptors: none more for each further lock, unlock and stalled export of his.
        assert fds() - first_fds <= 0, (leaked_fds, fds() - first_fds)
    finally:
        release.set()
