"""Retention and version naming as pure functions, with time fully controlled."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import trio
import trio.testing

from fusevault.errors import InvalidInput
from fusevault.vault.model.history import NS, Version, parse_when, pick, version_names
from fusevault.vault.model.retention import Policy, to_drop
from fusevault.vault.services.requests import collect_periodically


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()) * NS


def version(when: str, vid: str | None = None) -> Version:
    return Version(vid or when, "f", "1-x", at(when), 1, at(when), "u", "f", (0, 0))


NOW = "2026-11-21T12:00:00"
HISTORY = [version(t) for t in [
    "2025-01-01T10:00:00",                          # beyond the weekly tier
    "2026-09-07T09:00:00", "2026-09-09T09:00:00",   # one ISO week (37): keep the 9th
    "2026-09-14T09:00:00",                          # week 38
    "2026-11-01T08:00:00", "2026-11-01T20:00:00",   # one day: keep 20:00
    "2026-11-02T08:00:00",                          # the only one that day
    "2026-11-19T01:00:00", "2026-11-19T02:00:00", "2026-11-21T11:00:00",  # within keep-all
]]


def test_policy_tiers_drop_exactly_what_they_say() -> None:
    policy = Policy(keep_all_days=3, daily_days=30, weekly_weeks=20)
    dropped = {v.vid for v in to_drop(HISTORY, at(NOW), policy)}
    assert dropped == {"2025-01-01T10:00:00", "2026-09-07T09:00:00", "2026-11-01T08:00:00"}


def test_weekly_forever_and_kept_versions() -> None:
    policy = Policy(keep_all_days=3, daily_days=30, weekly_weeks=None)
    dropped = {v.vid for v in to_drop(HISTORY, at(NOW), policy)}
    assert dropped == {"2026-09-07T09:00:00", "2026-11-01T08:00:00"}
    kept = to_drop(HISTORY, at(NOW), policy, keep={"2026-09-07T09:00:00"})
    assert {v.vid for v in kept} == {"2026-11-01T08:00:00"}


def test_nothing_beyond_keep_all_when_tiers_are_zero() -> None:
    policy = Policy(keep_all_days=1, daily_days=0, weekly_weeks=0)
    dropped = to_drop(HISTORY, at(NOW), policy, keep={HISTORY[-1].vid})
    assert [v.vid for v in dropped] == [v.vid for v in reversed(HISTORY[:-1])]


def test_the_choice_is_stable_from_one_run_to_the_next() -> None:
    policy = Policy(keep_all_days=3, daily_days=30, weekly_weeks=20)
    survivors = [v for v in HISTORY if v not in to_drop(HISTORY, at(NOW), policy)]
    later = at("2026-11-21T18:00:00")
    assert to_drop(survivors, later, policy) == []


def test_bad_policies_are_refused() -> None:
    with pytest.raises(InvalidInput):
        Policy(keep_all_days=-1)


def test_version_names_are_stable_and_sorted() -> None:
    a, b, c = version("2026-11-21T10:04:05", "a"), version("2026-11-21T10:04:05", "b"), version(
        "2026-11-21T10:04:06", "c")
    names = version_names([a, b, c], ".txt")
    assert list(names) == ["2026-11-21T10-04-05.000Z.txt", "2026-11-21T10-04-05.000Z~2.txt",
                           "2026-11-21T10-04-06.000Z.txt"]
    assert list(names) == sorted(names)
    assert list(version_names([a, c], ".txt"))[1] == "2026-11-21T10-04-06.000Z.txt"


def test_times_people_type() -> None:
    now = at(NOW)
    assert parse_when("2d", now) == now - 2 * 86400 * NS
    assert parse_when("2026-11-21T10:04:05Z") == at("2026-11-21T10:04:05") + NS - 1
    assert parse_when("2026-11-21T10-04-05.250Z.txt") == at("2026-11-21T10:04:05") + 251 * 10**6 - 1
    with pytest.raises(InvalidInput):
        parse_when("last tuesday")
    assert pick(HISTORY, at=at("2026-11-01T12:00:00")).vid == "2026-11-01T08:00:00"
    assert pick(HISTORY).vid == HISTORY[-2].vid
    with pytest.raises(InvalidInput):
        pick(HISTORY, at=at("2000-01-01T00:00:00"))


def test_background_collection_runs_on_schedule() -> None:
    """The mount's gc task, driven by trio's MockClock (no real waiting)."""
    runs: list[float] = []

    class Counting:  # stands in for Requests: only the schedule is under test
        async def handle(self, request: dict) -> dict:
            runs.append(trio.current_time())
            return {"versions_dropped": 0, "files_purged": 0, "bytes_freed": 0}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(collect_periodically, Counting(), 600, 3600)
            await trio.sleep(600 + 3 * 3600 + 1)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert runs == [600, 4200, 7800, 11400]
