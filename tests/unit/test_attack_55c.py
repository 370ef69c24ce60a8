"""Attack round 55c at 53b's fixes and their review (07efc0b, ce41fe8): the shared mount's watched
folder (imports/watcher.py ``walk``, ``walked``, ``Pending``; source_paths.py), ``HostThreads``
(host_access/threads.py), the helpers (helper.py ``AsUser``, wire.py, spawner.py).  Threat: a local
user (not root) of a shared mount, or an honest user with an ordinary folder.  Real-mount scenes of (1)
and (2): tests/mount/test_attack_55c.py.

(1) medium: a clean-up given up before it started never runs: root's descriptors leak, one per lock
Attack: bob watches a folder; he stops his helper (``kill -STOP``, his own process), asks two exports
  and hangs up (his walk and one export now hold his two threads, waiting on the helper), locks, lets
  the helper go, unlocks; again.
Seen: ``test_a_clean_up_given_up_while_his_threads_are_held_still_closes`` (unit): the close asked by
  ``clean_up`` while every thread of his is held is given up after ``CLEAN_UP_WAIT`` before it ever
  started (it waited for the limiter: ``trio.to_thread.run_sync`` never runs a call cancelled while it
  waits for a token), and nothing runs it later: the descriptor stays open for good.  In the real
  mount (``tests/mount/test_attack_55c.py::test_a_lock_while_his_threads_are_held_leaks_no_descriptor_
  of_his_watched_folder``): root's descriptors of his watched folder 1 -> 2 -> 3 over two rounds (each
  lock also took 10.2 s).  Expected: closed once a thread of his is free.
Fixed: a clean-up given up before it started is queued and run by his next free thread (threads.py).
Cause: host_access/threads.py:64-67 ``clean_up`` (a deadline on the whole ``run``, limiter wait
  included; the log says "left to it", but nothing was left to run); callers watcher.py ``_watch``
  (``os.close, root``), importer.py ``_hash_source``/``_copy`` (``source.close``: a file object,
  closed later by its finalizer on the loop), exporting.py ``_write`` (``_close, fd`` and
  ``out.discard``: the temporary file left too), ``HostThreads.run``'s late ``discard``.
Impact: one root descriptor per lock (or settings change) with his threads held, ~25 s a round, without
  bound: RLIMIT_NOFILE (1024 for a service) reached in hours, then every user's opens fail (EMFILE).
  A FUSE folder of his that never answers does it without signals.
Fix (suggested): a clean-up that could not start is queued, not dropped: e.g. run it in a thread of
  its own outside the limiter (a close of a descriptor the mount holds is the mount's work), or keep
  a list of pending clean-ups run by the next thread of his that ends.

(2) medium: one folder of many names under the watched folder stops every import, for good, silently
Attack (or honest use): a folder under his watched folder whose listing, as the helper's JSON answer,
  passes wire.MAX_TOTAL (64 MiB): 45,000 names of 255 bytes not UTF-8 (each byte ``\\udcff``, 6 bytes
  in JSON), ~100,000 of 85 CJK characters, ~195,000 ASCII names of 200 bytes, ~400,000 short ones.
Seen: ``test_a_folder_of_many_names_in_the_watched_folder_does_not_stop_every_import``: ``walked``
  raises EIO ("the helper of uid .. is gone"); the walk concludes nothing, so nothing anywhere in the
  watched folder is ever imported; in the real mount (``::test_a_folder_of_many_names_in_his_watched_
  folder_leaves_his_imports_going``) his report.txt is not imported in 40 s while ``status`` says
  "import idle" (a log warning only); each walk kills his helper (``AsUser._forget``) and forks a new
  one, after root's mount took in 64 MiB.  Control (4,000 such names): walked, imported.
Cause: host_access/wire.py:19, :40 (the cap ends the answer as None), helper.py:60 (EIO), watcher.py
  :137 (EIO is not PASSED_OVER: the whole walk fails) and :241 (said in the log only).
Impact: honest data never imported (a big download folder, a maildir), nothing said to the user;
  another local user who may write into a folder under it stops it too.
Fix (suggested): a scan answered in bounded pages (the helper streams entries, or ``scan`` takes an
  offset/count) or names sent as bytes (base64/latin-1, not ``\\udcXX``); a folder past a cap passed
  over as unreadable (said in ``status``), not the whole walk failed.

(3) low: a chain of folders costs the walk depth^2/2 round trips to his helper
Seen: ``test_a_deep_chain_of_folders_costs_the_walk_calls_in_proportion``: 200 nested folders, 20,302
  helper calls per walk (a 400-deep chain through a helper on a socketpair: 80,602 calls, 7.7 s).
  10,000 levels (made in a second) are 50 million calls a walk, hours of one mount thread's and his
  helper's CPU per walk (``POLL_SHARE`` then waits four times that: his imports are seen every few
  hours).  In a real shared mount (a throwaway probe, not kept): a 3,000-deep chain kept root's mount
  at ~45% and his helper at ~40% of a core for the minute measured, one walk not done; alice's reads
  were not slowed (8-10 ms): a cost, bounded by ``POLL_SHARE`` on average, not a stall.  Control: 200
  folders side by side, at most 4 calls each.
Cause: watcher.py ``walk`` scans each folder by its location from ``root`` (source_paths.py:67-80
  ``parent`` opens every folder on the way again).  Fix: walk by descriptors (a folder opened from its
  parent's descriptor, held while its children are scanned, depth-first with a bound on held ones).

(4) low (data loss, narrow window): delete_file_from_source removes a file that was never imported
Seen: ``test_a_save_landing_between_the_look_and_the_unlink_is_not_removed``: an editor's save (a new
  file renamed over the name) landing between ``remove_if``'s lstat and its unlink (two helper round
  trips) is deleted: her newest version is gone, never imported.
Cause: source_paths.py:118-124 (look, then unlink by name: a name, not the file looked at).
Fixed: the file is moved to a private name, looked at there, removed only if it is the one imported,
  else put back (source_paths.py ``remove_if``, tests/unit/test_source_paths_remove.py).
Fix (suggested): rename the file to a private name of the folder first (renameat2 NOREPLACE), lstat
  that, then unlink it, or rename it back (NOREPLACE; kept beside under a conflict name if taken).

(5) medium-low: the names of his watched folder cost root's mount memory and loop time without bound
Attack: bob puts N names in his watched folder (hard links: 1,000,000 in 19 s here, ~30 bytes of his
  disk each, folders of 20,000 under the cap of (2)) and keeps them pending: ``settle_seconds`` 3600
  (each name pending for an hour; a ``touch`` now and then keeps it so), or names of a file he may not
  read (``chmod 000``: each open fails, retried every 60 s, ``Pending.retry``).
Seen: ``test_a_tick_with_nothing_due_does_not_look_at_every_pending_file_on_the_loop``: a tick with
  nothing due goes through all 100,000 entries.  Measured: ``Pending.due`` ~90 ns an entry (27 ms for
  300,000) at every 0.5 s tick, on the loop (watcher.py:259).  In a real shared mount (a throwaway
  probe with the fixtures of tests/mount/test_shared_mount.py, not kept: 3 min): 1,000,000 names, settle
  3600: root's mount RSS 64 MB -> 593 MB within 45 s, and it stays (the walk's ``known`` and
  ``Pending``: ~530 bytes a name); alice's ``cat`` of her file: worst 0.47 s while his names are noted,
  then ~80 ms at times (a tick).  10,000,000 names (a few minutes to make) are ~5 GB in root's mount
  (not run: the OOM killer ends the mount for every user) and a loop busy most of every tick.
Cause: watcher.py:84 ``Pending.due`` (a full scan and sort) at :259 on the loop; no bound on the names
  a watched folder holds (``walk``, ``known``, ``Pending``).  Fix (suggested): a heap of due times (a
  tick costs what is due); a cap on the files tracked per watch (past it: said in ``status``, the rest
  passed over until the folder shrinks).

What held (tests kept as controls, or read): a FIFO, socket or device swapped in is never waited on
  (``SOURCE_FLAGS`` O_NONBLOCK, fstat S_ISREG); a folder swapped for a link between the walk and the
  import leads nowhere (``parent`` O_NOFOLLOW per step); ``_Handover`` gives a late result to exactly
  one side (read, 53b's tests); the spawner's count per uid and its kill of a stopped helper (read;
  53b's tests); a walk never deletes (only ``_remove_source`` after an import, by stamp);
  ``test_control_a_folder_of_a_few_thousand_names_is_walked_through_his_helper``,
  ``test_control_a_wide_folder_costs_the_walk_one_call_per_folder``.
Leads not confirmed: with ``user_allow_other`` (off here) a source on a FUSE of his whose clean-up
  (1) gave up is closed by its file object's finalizer on the loop (importer.py ``_hash_source``/
  ``_copy``): a FLUSH his daemon never answers would freeze the mount as 51t's hole 1 did.
Not tried: 10,000,000 names (5); a btrfs subvolume under the watched folder (another st_dev: never
  walked, so never imported, silently; no btrfs here); an abandoned walk or ``remove_if`` using ``root`` after
  ``_watch`` closed it (a reused number sent to his helper: his rights still apply to every lookup,
  read only); many users at once; fork storms (bounded by HELPERS_PER_USER, read).
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
from fusevault.imports.locations import Location
from fusevault.imports.watcher import Pending, walk, walked


def _open_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_clean_up_given_up_while_his_threads_are_held_still_closes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
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
    assert Location.of("report.txt") in found and Location.of("report.txt") in changed


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
    assert Location.of("report.txt") in found and len(found) == 4_002


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


def test_a_deep_chain_of_folders_costs_the_walk_calls_in_proportion(tmp_path: Path) -> None:
    depth = 200
    _chain(tmp_path, depth)
    host = _Counted()
    root = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        found = walk(host, root)
    finally:
        os.close(root)
    assert list(map(str, found)) == ["/".join(["d"] * depth + ["deep.txt"])]
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
    assert (tmp_path / "notes.txt").read_text() == "her newest version, never imported"
    assert os.listdir(tmp_path) == ["notes.txt"]  # nothing left aside


class _Looked(dict):
    """``Pending.items`` with a count of the entries a look at it went through."""

    looked = 0

    def items(self):
        for item in super().items():
            _Looked.looked += 1
            yield item


def test_a_tick_with_nothing_due_does_not_look_at_every_pending_file_on_the_loop() -> None:
    pending = Pending(2.0)
    pending.items = _Looked()
    for number in range(100_000):  # names of one file of his he may not read (chmod 000, hard links)
        pending.retry(f"f{number // 10_000}/{number:05}.pdf", 0.0, 60)  # failed: again in 60 s
    _Looked.looked = 0
    assert pending.due(1.0) == []  # _take_settled's tick, on the loop: nothing due for a minute
    assert _Looked.looked <= 1_000, f"{_Looked.looked} entries looked at on the loop for nothing due"
