"""Attack round 58a: round 57a's fixes (b5672bf: ``Destination.drop_created``, ``discard_later``,
``watcher._on_device``) with 56a's ``Held`` and 55c (1)'s queued clean-ups, as a local user of the
shared mount (run as root) with folders, and a FUSE file system, of his own.

Hole (1), medium (a flood that stops the mount: EMFILE for every user).  Attacker: a local user of
the shared mount, nothing more than his own vault folder and his own export destination.  Steps: he
makes, in his vault, a folder holding N empty folders (or a chain N deep: folders cost him nothing)
and exports it (``fusevault export``) to an ordinary folder of his.  ``Destination._folder`` opens
each folder it makes and keeps every descriptor in ``Destination.fds`` until ``close`` at the
export's end; since 57a, ``discard_later`` keeps them all past ``close`` until a queued discard ran
(and a call of his given up while his FUSE holds it keeps them for as long as it holds it, for good if
it never answers: 53b's deferred close).  Seen: exporting 300 empty folders, root's process holds
~300 more descriptors at the export's end (one per folder, none let go); with N past the mount's
RLIMIT_NOFILE (1024 soft by default, and neither the mount nor its units raise it), every open of the
mount fails with EMFILE meanwhile: other users' files, the store, the helpers' sockets.  Expected: a
bounded number (the folders on the way to the current one, as the watcher's walk keeps since 55c (3),
``SPAN``), whatever the tree.  Cause: fusevault/vault/services/exporting.py:185-200 (``_folder``
stores every folder in ``self.fds``, nothing ever removed before ``close``) and
exporting.py:150-166 (``discard_later`` holds all of ``fds`` for one temporary file's parent).
Suggested fix: keep only the folders on the current way (``tree`` yields each folder before what it
holds, so a folder's descriptor can go once the next path is not under it; a file's clean-up holds
its own parent only: ``os.dup`` of it, or a ``Held`` per folder).
Tests: ``test_58a_1_an_export_of_many_folders_holds_a_descriptor_per_folder`` (306 held at once for
300 folders; run by hand under a soft RLIMIT_NOFILE of 1024, 1100 folders: the export itself and
another open of the process failed with EMFILE),
``test_58a_1_after_his_hangup_a_held_call_keeps_every_folder_open`` (his FUSE holding one open after
his hangup keeps all 300, for as long as it holds it),
``tests/inprocess/test_attack_58a.py::test_58a_1_his_export_of_many_folders_holds_a_descriptor_of_root_s_per_folder``
(the mount's own ``export`` request on a real volume: 301 for 300 folders); control (held):
``test_control_58a_1_an_export_of_many_files_in_one_folder_holds_few``.

Hole (2), low (an empty temporary file of his left in his own folder; root's descriptor is closed).
Attacker: the same user, his FUSE destination holding calls (his threads all held), as in 57a (3).
Steps: his export's ``create`` is held on the open of the temporary file (his FUSE); a second call of
his holds his other thread and a third waits for a thread; he hangs up; his FUSE answers the open.
``_run`` finds the result offered and asks ``clean_up(out.drop_created, ...)``; no thread of his is
free (the waiting call got the freed one, first come first served, and his FUSE holds it): queued
after ``CLEAN_UP_WAIT``; ``export``'s ``finally`` runs ``out.close()`` (nothing holds ``out``: the
create is over), the folders are closed; the queue runs: ``drop_created`` closes the descriptor, but
its ``self.discard`` meets ``_in_use``'s ECANCELED (suppressed): the temporary file stays.  The same
when the offer is refused (the thread runs ``drop_created`` itself) and the loop's ``refuse`` and
``out.close()`` (no checkpoint between) fall between ``create``'s ``_over()`` check and the offer: a
narrow race, not seen in 2,000 hangups at random times (switch interval 1 us) by hand.
Seen: ``.file.fvpart-export-*`` in his folder.  Expected: removed, as 57a
(1)'s fix says ("removed while the export's folders are open").  Cause:
fusevault/vault/services/exporting.py:280-284 (``drop_created`` uses ``discard``, refused once
``out`` is closed: 57a (3)'s hole, fixed for ``_write``'s discard only, by ``discard_later``).
Suggested fix: ``create`` hands back its result with ``out`` held (``_busy`` counted under the same
lock as its ``_over()`` check), released by ``drop_created`` or by ``_write``'s own clean-up.
Test: ``test_58a_2_a_queued_drop_created_after_the_exports_close_leaves_the_temporary_file``; control:
``test_control_58a_2_not_queued_it_is_removed``.

Tried, held: ``_on_device`` (a FUSE root may not ``fstat`` is not walked and closed; st_dev is the
kernel's for a FUSE, his daemon cannot choose it; a bind mount or /proc in his folder needs root or a
mount namespace root's process does not see; links are not followed); ``discard_later`` counts
exactly once per call (the clean-up's ``_CleanUp`` runs once, its ``_release`` in a ``finally``);
``drop_created`` unlinks by name with his rights only (``host.unlink``), so a file another user puts,
links or renames at the temporary name in a shared folder is removed only where he could remove it
himself; after ``close`` no unlink runs through a folder number that may be reused (``_in_use``
refuses first).  Not tried: a real mount with real users (the scenes here are in-process, his FUSE
played by a held call); the race of (2) without a queue but by hand (above), never seen.
Fixed after the round: (1) ``Destination`` goes through a ``host_access/way.py`` ``Way``: only the
folders on the way down to the current one, of those the root, the current one and one per power of
two of distance (``bit_length(depth) + 2`` at most), one let go opened again by name from the nearest
held; (2) ``create`` hands back its folder as a ``Held`` lent by the way's (``Held.lent``), kept open
until ``place`` or ``discard`` let it go; ``discard`` (``drop_created``'s, ``_write``'s) is never
refused by the export's close (``discard_later`` is gone).  New tests:
``test_58a_1_an_export_of_a_deep_chain_of_folders_holds_a_bounded_number``,
``test_58a_2_a_files_clean_up_holds_its_own_folder_only_and_is_never_refused``.
"""

from __future__ import annotations

import gc
import os
import stat
import threading
import time
import types
from pathlib import Path

import pytest
import trio

from fusevault.host_access import Direct
from fusevault.host_access import threads as threads_module
from fusevault.host_access.threads import HostThreads
from fusevault.host_access.way import Step
from fusevault.vault.model.nodes import Node
from fusevault.vault.services import exporting

OWNER = "a" * 32


def _descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


class _Volume:
    """A vault folder ``top`` holding ``count`` children, empty folders or empty files."""

    def __init__(self, count: int, folders: bool) -> None:
        self.nodes = {1: Node(1, "top", OWNER, b"k" * 32, stat.S_IFDIR | 0o700, 0, 0)}
        for ino in range(2, count + 2):
            kind = stat.S_IFDIR | 0o700 if folders else stat.S_IFREG | 0o600
            self.nodes[ino] = Node(ino, f"n{ino}", OWNER, b"k" * 32, kind, 0, 0)
        self.nodes[1].children = {f"n{ino:05d}".encode(): ino for ino in range(2, count + 2)}

    def resolve(self, path: bytes) -> Node:
        return self.nodes[1]

    def node(self, ino: int) -> Node:
        return self.nodes[ino]

    def path_of(self, node: Node) -> bytes:
        return b"/top"


def _most_held(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folders: bool) -> int:
    """Root's descriptors held at most during an export of 300 children, above those before."""
    dest = tmp_path / "his-folder"
    dest.mkdir()
    gc.collect()  # an earlier test's objects closing their descriptors later would move the count
    before = _descriptors()
    most = [0]

    class _Counting(Direct):
        def call(self, op, *args, fd=None):
            most[0] = max(most[0], _descriptors() - before)
            return super().call(op, *args, fd=fd)

    async def nothing(volume: object, node: object):
        return
        yield

    monkeypatch.setattr(exporting, "read_data", nothing)
    volume = _Volume(300, folders)
    trio.run(exporting.export, volume, b"/top", dest, False, _Counting())
    assert len(os.listdir(dest / "top")) == 300
    assert _descriptors() == before
    return most[0]


def test_58a_1_an_export_of_many_folders_holds_a_descriptor_per_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    held = _most_held(tmp_path, monkeypatch, folders=True)
    assert held < 64, f"{held} descriptors of his folders held at once by root's process"


def test_control_58a_1_an_export_of_many_files_in_one_folder_holds_few(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _most_held(tmp_path, monkeypatch, folders=False) < 64


def test_58a_1_after_his_hangup_a_held_call_keeps_every_folder_open(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "his-fuse-folder"
    dest.mkdir()
    volume = _Volume(300, folders=True)
    last = 302
    volume.nodes[last] = Node(last, "f", OWNER, b"k" * 32, stat.S_IFREG | 0o600, 0, 0)
    volume.nodes[1].children[b"zz-file"] = last  # exported last, its open held by his FUSE
    host = _HisFuse()
    before = _descriptors()
    kept = [0]

    async def main() -> None:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(exporting.export, volume, b"/top", dest, False, host, HostThreads())
                await trio.to_thread.run_sync(host.opened.wait)
                scope.cancel()  # his hangup: ``export``'s ``finally`` closes ``out``
        kept[0] = _descriptors() - before  # his FUSE still holds the open (for good, if it never answers)
        host.release.set()

    try:
        trio.run(main)
    finally:
        host.release.set()
        deadline = time.monotonic() + 10  # the given-up create ends and lets them go
        while _descriptors() > before and time.monotonic() < deadline:
            time.sleep(0.01)
    assert _descriptors() == before
    assert kept[0] < 64, f"{kept[0]} of root's descriptors kept after his hangup"


class _HisFuse(Direct):
    """His FUSE file system: the open of the export's temporary file is held until released."""

    def __init__(self) -> None:
        super().__init__()
        self.opened, self.release = threading.Event(), threading.Event()

    def open(self, path: str, flags: int, mode: int = 0o600, *, dir_fd: int | None = None) -> int:
        fd = super().open(path, flags, mode, dir_fd=dir_fd)
        if ".fvpart-export-" in os.fsdecode(path):
            self.opened.set()
            self.release.wait(10)
        return fd


def _drop_created(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads_held: bool) -> list[str]:
    dest = tmp_path / "his-fuse-folder"
    dest.mkdir()
    host = _HisFuse()
    node = types.SimpleNamespace(size=3, mode=0o100600, atime=0, mtime=0)
    monkeypatch.setattr(threads_module, "CLEAN_UP_WAIT", 0.2)  # ten seconds in the mount
    threads = HostThreads()  # his two threads
    offered = threading.Event()
    real_offer = threads_module._Handover.offer

    def offer(self, result):  # only watched: the test's loop waits for the thread to be done
        try:
            return real_offer(self, result)
        finally:
            offered.set()

    monkeypatch.setattr(threads_module._Handover, "offer", offer)
    his_fuse_answers = threading.Event()
    before = _descriptors()

    def hung_call() -> None:  # another call of his, held by his FUSE
        his_fuse_answers.wait(10)

    async def main() -> None:
        async with trio.open_nursery() as others:
            out = exporting.Destination(host, dest)
            try:
                with trio.CancelScope() as scope:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(exporting._write, None, node, out, threads, Step(None, "file"),
                                           False)
                        await trio.to_thread.run_sync(host.opened.wait)
                        if threads_held:
                            others.start_soon(threads.run, hung_call)  # his other thread
                            others.start_soon(threads.run, hung_call)  # waits for one of his
                            while threads.limiter.statistics().tasks_waiting < 1:
                                await trio.sleep(0.01)
                        scope.cancel()  # his hangup: the export is given up
                        host.release.set()  # his FUSE answers the open
                        offered.wait(10)  # the loop busy elsewhere until the thread offered it
            finally:
                out.close()  # export's ``finally``
            his_fuse_answers.set()
            with trio.fail_after(10):
                while threads._queued or threads._draining or threads.limiter.borrowed_tokens:
                    await trio.sleep(0.01)

    try:
        trio.run(main)
    finally:
        host.release.set()
        his_fuse_answers.set()
    assert _descriptors() == before  # root's descriptor of the file closed either way
    return [p.name for p in dest.iterdir() if ".fvpart-export-" in p.name]


def test_58a_2_a_queued_drop_created_after_the_exports_close_leaves_the_temporary_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _drop_created(tmp_path, monkeypatch, threads_held=True) == []


def test_control_58a_2_not_queued_it_is_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _drop_created(tmp_path, monkeypatch, threads_held=False) == []


class _Chain:
    """A vault chain of ``depth`` folders, each holding the next folder ("d") and then a file
    ("f", exported after all that is under "d": the export comes back up to every folder)."""

    def __init__(self, depth: int) -> None:
        self.nodes: dict[int, Node] = {}
        for level in range(depth):
            folder, file = 2 * level + 1, 2 * level + 2
            self.nodes[folder] = Node(folder, "d", OWNER, b"k" * 32, stat.S_IFDIR | 0o700, 0, 0)
            self.nodes[file] = Node(file, "f", OWNER, b"k" * 32, stat.S_IFREG | 0o600, 0, 0)
            self.nodes[folder].children = {b"f": file}
            if level:
                self.nodes[folder - 2].children[b"d"] = folder

    def resolve(self, path: bytes) -> Node:
        return self.nodes[1]

    def node(self, ino: int) -> Node:
        return self.nodes[ino]

    def path_of(self, node: Node) -> bytes:
        return b"/top"


def test_58a_1_an_export_of_a_deep_chain_of_folders_holds_a_bounded_number(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    depth = 1500
    dest = tmp_path / "his-folder"
    dest.mkdir()
    gc.collect()  # an earlier test's objects closing their descriptors later would move the count
    before = _descriptors()
    most = [0]

    class _Counting(Direct):
        def call(self, op, *args, fd=None):
            most[0] = max(most[0], _descriptors() - before)
            return super().call(op, *args, fd=fd)

    async def nothing(volume: object, node: object):
        return
        yield

    monkeypatch.setattr(exporting, "read_data", nothing)
    try:
        answer = trio.run(exporting.export, _Chain(depth), b"/top", dest, False, _Counting())
        assert answer["files"] == depth
        assert _descriptors() <= before, "a descriptor of the export left open"
        assert most[0] < 32, f"{most[0]} descriptors of his folders held at once by root's process"
        here, levels = dest / "top", 0
        while here.is_dir():  # every file where it belongs, no temporary file left
            assert sorted(p.name for p in here.iterdir()) == (["d", "f"] if levels < depth - 1 else ["f"])
            here, levels = here / "d", levels + 1
        assert levels == depth
    finally:  # also when it fails: left, the chain broke pytest's clean-up of later runs (RecursionError)
        _remove_chain(dest / "top")


def _remove_chain(top: Path) -> None:
    """Removed here: deeper than shutil.rmtree (pytest's clean-up of tmp_path) recurses."""
    if not top.is_dir():
        return
    folders = [top]
    while (folders[-1] / "d").is_dir():
        folders.append(folders[-1] / "d")
    for folder in reversed(folders):
        for each in folder.iterdir():
            if not each.is_dir():
                each.unlink()
        folder.rmdir()


def test_58a_2_a_files_clean_up_holds_its_own_folder_only_and_is_never_refused(tmp_path: Path) -> None:
    before = _descriptors()
    out = exporting.Destination(Direct(), tmp_path)
    parent, temp, fd = out.create(Step.of("a/b/c/d/e/f/g/h/report.txt"))
    out.close()  # the export over, this file's clean-up still to run (queued, his threads all held)
    assert _descriptors() - before == 2  # the file's and its own folder's: not the way down to it
    out.discard(parent, temp)
    os.close(fd)
    assert _descriptors() == before
    assert os.listdir(tmp_path / "a/b/c/d/e/f/g/h") == []  # removed, not refused
