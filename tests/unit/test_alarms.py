"""vault/model/alarms.py: each alarm is said once, and its log line names the user it is about."""

from __future__ import annotations

import logging

import pytest

from fusevault.vault.model.alarms import Alarms, for_user


def test_the_log_line_names_the_user(caplog: pytest.LogCaptureFixture) -> None:
    """A shared mount's log holds every unlocked user's alarms."""
    alarms = for_user("a" * 32)
    with caplog.at_level(logging.WARNING, logger="fusevault.alarms"):
        alarms.warn("forged-settings", "a" * 32, "the settings in this user's document are not signed")
        alarms.warn("forged-settings", "a" * 32, "the settings in this user's document are not signed")
    assert [r.getMessage() for r in caplog.records] == [
        f"user {'a' * 32}: the settings in this user's document are not signed"]
    assert alarms.as_list()[0]["count"] == 2


def test_an_alarm_list_of_no_user_logs_the_text_alone(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fusevault.alarms"):
        Alarms().warn("pins", "x", "the pins kept on this device were damaged")
    assert [r.getMessage() for r in caplog.records] == ["the pins kept on this device were damaged"]
