"""imports/failures_said.py: a failed import is said in the log once, not at every retry, and at most
``PER_WINDOW`` failures a window (attack round 58c (5): a failure of each of his files, ~390 KB a line
for a deep one, written to root's shared mount log again every minute, for as long as the files stay)."""

from __future__ import annotations

import errno
import logging

import pytest
import trio

from fusevault.encoding import shown
from fusevault.imports import failures_said
from fusevault.imports.failures_said import PER_WINDOW, WINDOW, FailuresSaid
from fusevault.imports.importer import NEW
from fusevault.imports.watcher import ImportService, Pending
from fusevault.tasks import ERROR_LIMIT, TaskState


class _Failing:
    """An importer whose takes fail (his files of mode 000) until ``fixed`` names them."""

    def __init__(self) -> None:
        self.fixed: set[str] = set()

    async def take(self, location: str) -> tuple[str, int, bool]:
        if location in self.fixed:
            return NEW, 1, False
        raise PermissionError(errno.EACCES, "Permission denied")


def _said(caplog: pytest.LogCaptureFixture, location: str) -> int:
    return sum(f"import: {location} failed" in r.getMessage() for r in caplog.records)


def test_58c_5_a_failure_retried_every_minute_is_said_once_until_it_succeeds(
        caplog: pytest.LogCaptureFixture) -> None:
    service = ImportService(None, TaskState("import"), None)  # type: ignore[arg-type]
    importer, pending = _Failing(), Pending(0.1)

    async def batches(n: int, ready: list[str]) -> None:
        for _ in range(n):
            await service._batch(importer, pending, ready)  # type: ignore[arg-type]

    with caplog.at_level(logging.INFO, logger="fusevault.imports.watcher"):
        trio.run(batches, 5, ["a.txt", "b.txt"])
        assert (_said(caplog, "a.txt"), _said(caplog, "b.txt")) == (1, 1)  # seen: 5 each
        assert service.task.counts["failed"] == 10 and "b.txt" in (service.task.last_error or "")
        importer.fixed.add("a.txt")
        trio.run(batches, 1, ["a.txt"])
        importer.fixed.clear()
        trio.run(batches, 2, ["a.txt", "b.txt"])
    assert (_said(caplog, "a.txt"), _said(caplog, "b.txt")) == (2, 1)  # said again once it had succeeded


def test_at_most_per_window_failures_are_said_the_rest_at_a_later_window() -> None:
    said = FailuresSaid()
    first = [said.to_say(f"f{n}", 0.0) for n in range(PER_WINDOW + 5)]
    assert first == [True] * PER_WINDOW + [False] * 5
    assert not said.to_say("f0", 1.0)  # said already
    assert said.to_say(f"f{PER_WINDOW}", WINDOW + 1)  # not said yet: said in the next window
    said.done("f0")
    assert said.to_say("f0", WINDOW + 2)


def test_the_files_said_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(failures_said, "KEPT", 10)
    monkeypatch.setattr(failures_said, "PER_WINDOW", 1000)
    said = FailuresSaid()
    assert all(said.to_say(f"f{n}", 0.0) for n in range(30))
    assert len(said._said) == 10
    assert said.to_say("f0", 0.0) and not said.to_say("f29", 0.0)  # the oldest forgotten first


def test_58c_5_the_last_error_fusevault_status_shows_is_cut_its_ends_kept() -> None:
    deep = "/".join(f"{step:03d}" + "\udcff" * 252 for step in range(256))
    task = TaskState("import")
    task.failed(f"{shown(deep)}: Permission denied")
    assert task.last_error is not None and len(task.last_error) <= ERROR_LIMIT  # seen: 389,7xx
    assert task.last_error.startswith("'000") and task.last_error.endswith("': Permission denied")
