"""Test-only knobs that only ever shorten a wait: FUSEVAULT_CONTROL_READ_SECONDS (fs/control.py, the
control socket's wait for a request: never longer, or a silent client would hold its connection
longer), FUSEVAULT_STOP_GRACE_SECONDS (cli/transfer.py, a stopped transfer's wait for the relay
to end its session), FUSEVAULT_SAY_REFUSED_SECONDS (sync/key_mirror.py, the while before a refused
key deletion is said: never longer, or a forged deletion would go unsaid longer) and
FUSEVAULT_RETRY_MAX_SECONDS (sync/replicator.py, the ceiling of the back-off while a peer is away:
never longer, or a peer back would be met later); none is ever zero."""

from __future__ import annotations

import pytest

from fusevault.cli import transfer
from fusevault.fs import control
from fusevault.sync import key_mirror, replicator


@pytest.mark.parametrize(("text", "seconds"), [
    ("", control.READ_SECONDS), ("2", 2), ("1", 1), ("5", 5),
    ("0", control.READ_SECONDS), ("6", control.READ_SECONDS), ("3600", control.READ_SECONDS),
    ("-1", control.READ_SECONDS), ("0.5", control.READ_SECONDS), ("nan", control.READ_SECONDS),
    ("２", control.READ_SECONDS),  # a digit to str.isdigit, and to int(), but not ASCII
])
def test_the_control_read_wait_is_only_ever_shortened(monkeypatch, text: str, seconds: int) -> None:
    monkeypatch.setenv("FUSEVAULT_CONTROL_READ_SECONDS", text)
    assert control._read_timeout() == seconds


@pytest.mark.parametrize(("text", "seconds"), [
    ("", transfer.GRACE_SECONDS), ("2", 2), ("1", 1), ("15", 15),
    ("0", transfer.GRACE_SECONDS), ("16", transfer.GRACE_SECONDS), ("-1", transfer.GRACE_SECONDS),
    ("0.5", transfer.GRACE_SECONDS), ("nan", transfer.GRACE_SECONDS), ("２", transfer.GRACE_SECONDS),
])
def test_a_stopped_transfers_grace_is_only_ever_shortened(monkeypatch, text: str, seconds: int) -> None:
    monkeypatch.setenv("FUSEVAULT_STOP_GRACE_SECONDS", text)
    assert transfer._grace() == seconds


@pytest.mark.parametrize(("text", "seconds"), [
    ("", key_mirror.SAY_REFUSED_SECONDS), ("3", 3), ("1", 1), ("15", 15),
    ("0", key_mirror.SAY_REFUSED_SECONDS), ("16", key_mirror.SAY_REFUSED_SECONDS),
    ("-1", key_mirror.SAY_REFUSED_SECONDS), ("0.5", key_mirror.SAY_REFUSED_SECONDS),
    ("nan", key_mirror.SAY_REFUSED_SECONDS), ("２", key_mirror.SAY_REFUSED_SECONDS),
])
def test_the_while_before_a_refused_deletion_is_said_is_only_ever_shortened(monkeypatch, text: str,
                                                                             seconds: int) -> None:
    monkeypatch.setenv("FUSEVAULT_SAY_REFUSED_SECONDS", text)
    assert key_mirror._say_refused_after() == seconds


def test_the_while_the_pull_is_behind_is_the_defaults_whatever_the_knob_says() -> None:
    assert key_mirror.SAY_REFUSED_BEHIND_AFTER == 6 * key_mirror.SAY_REFUSED_SECONDS


@pytest.mark.parametrize(("text", "seconds"), [
    ("", replicator.BACKOFF_MAX), ("1", 1), ("8", 8), ("30", 30),
    ("0", replicator.BACKOFF_MAX), ("31", replicator.BACKOFF_MAX), ("-1", replicator.BACKOFF_MAX),
    ("0.5", replicator.BACKOFF_MAX), ("nan", replicator.BACKOFF_MAX), ("２", replicator.BACKOFF_MAX),
])
def test_the_back_off_ceiling_while_a_peer_is_away_is_only_ever_lowered(monkeypatch, text: str,
                                                                        seconds: int) -> None:
    monkeypatch.setenv("FUSEVAULT_RETRY_MAX_SECONDS", text)
    assert replicator._backoff_ceiling() == seconds
