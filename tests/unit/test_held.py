"""host_access/held.py: a descriptor lent to a user's threads is closed once, and only once no call
holding it runs (attack round 56a (1))."""

from __future__ import annotations

import errno
import threading

import pytest

from fusevault.host_access.held import Held


def test_a_close_asked_for_while_a_call_holds_it_is_left_to_that_call() -> None:
    closed: list[str] = []
    held = Held("fd", closed.append)
    inside, release = threading.Event(), threading.Event()

    def using(thing: str) -> str:
        inside.set()
        release.wait(10)
        return f"used {thing}; closed {closed}"

    worker_result: list[str] = []
    worker = threading.Thread(target=lambda: worker_result.append(held.holding(using, held.thing)))
    worker.start()
    assert inside.wait(10)
    held.close()  # its caller gone: the clean-up runs beside the call
    assert closed == [] and not held.closed
    release.set()
    worker.join(10)
    assert worker_result == ["used fd; closed []"]  # the thing was open all through the call
    assert closed == ["fd"] and held.closed  # closed by the call, once it ended
    held.close()
    assert closed == ["fd"]  # once


def test_a_call_after_the_close_is_refused_and_never_runs() -> None:
    closed: list[str] = []
    held = Held("fd", closed.append)
    held.close()
    ran: list[str] = []
    with pytest.raises(OSError) as refused:
        held.holding(ran.append, held.thing)
    assert refused.value.errno == errno.ECANCELED
    assert ran == [] and closed == ["fd"]


def test_a_close_with_no_call_under_way_closes_at_once_and_once() -> None:
    closed: list[str] = []
    held = Held("fd", closed.append)
    assert held.holding(str.upper, held.thing) == "FD"
    assert closed == []
    held.close()
    held.close()
    assert closed == ["fd"]


def test_a_lent_one_keeps_the_thing_open_past_the_close_until_it_is_closed_itself() -> None:
    closed: list[str] = []
    held = Held("fd", closed.append)
    lent = held.lent()  # a file's clean-up holds its folder, queued past the export's close
    held.close()
    assert closed == [] and lent.holding(lambda thing: thing, lent.thing) == "fd"
    lent.close()
    lent.close()
    assert closed == ["fd"]  # once, when the last user let go
    with pytest.raises(OSError) as refused:
        held.lent()
    assert refused.value.errno == errno.ECANCELED
