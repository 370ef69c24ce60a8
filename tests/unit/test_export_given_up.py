"""vault/services/exporting.py ``Destination``: a call given up at the caller's hangup (its thread left
to finish, host_access/threads.py) keeps no descriptor and leaves no temporary file once it ends.

Attack round 53b (1) (tests/mount/test_attack_53b.py): a folder's descriptor opened by a call given
up was stored after ``close`` had emptied ``fds`` (``folder``), a temporary file's descriptor and the
file were left (``create``): root's descriptors of his folder, one per hangup."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from fusevault.host_access import Direct
from fusevault.host_access.way import Step
from fusevault.vault.services.exporting import Destination


class _Held(Direct):
    """Opens wait for the test from the moment it arms them (his helper stopped, then let go)."""

    def __init__(self) -> None:
        super().__init__()
        self.armed, self.waiting, self.release = False, threading.Event(), threading.Event()

    def call(self, op, *args, fd=None):
        if op == "open" and self.armed:
            self.waiting.set()
            self.release.wait(10)
        return super().call(op, *args, fd=fd)


def _descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def _given_up(tmp_path: Path, work) -> BaseException | None:
    """``work(out)`` in a thread, ``out`` closed (the export over) while its open waits."""
    host = _Held()
    before = _descriptors()
    out = Destination(host, tmp_path)
    host.armed = True
    failed: list[BaseException] = []

    def run() -> None:
        try:
            work(out)
        except BaseException as err:
            failed.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    assert host.waiting.wait(10)
    out.close()  # the export's ``finally``: its call given up
    host.release.set()
    thread.join(10)
    assert _descriptors() == before  # nothing of his folder kept
    return failed[0] if failed else None


def test_a_file_created_for_an_export_given_up_is_closed_and_removed(tmp_path: Path) -> None:
    failed = _given_up(tmp_path, lambda out: out.create(Step(None, "report.txt")))
    assert isinstance(failed, OSError) and failed.errno == errno.ECANCELED
    assert os.listdir(tmp_path) == []  # no temporary file left


def test_a_folder_opened_for_an_export_given_up_is_closed(tmp_path: Path) -> None:
    _given_up(tmp_path, lambda out: out.folder(Step.of("a/b")))
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b"]  # made, as asked, and let go


def test_nothing_is_opened_for_an_export_over(tmp_path: Path) -> None:
    out = Destination(Direct(), tmp_path)
    out.close()
    with pytest.raises(OSError) as over:
        out.folder(Step(None, "a"))
    assert over.value.errno == errno.ECANCELED
    assert os.listdir(tmp_path) == []


def test_a_finished_export_keeps_its_file(tmp_path: Path) -> None:
    out = Destination(Direct(), tmp_path)
    try:
        parent, temp, fd = out.create(Step(None, "report.txt"))
        os.write(fd, b"data\n")
        os.close(fd)
        out.place(parent, temp, Step(None, "report.txt"), False)
    finally:
        out.close()
    assert (tmp_path / "report.txt").read_bytes() == b"data\n"
