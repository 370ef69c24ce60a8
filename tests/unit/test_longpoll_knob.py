"""FUSEVAULT_LONGPOLL_SECONDS (sync/couch_api.py): tests may shorten the pull's quiet longpoll, never
lengthen it or make it zero (a longpoll of 0 s would be a busy loop of requests to the peer)."""

from __future__ import annotations

import pytest

from fusevault.sync import couch_api


@pytest.mark.parametrize(("text", "seconds"), [
    ("", couch_api.LONGPOLL_SECONDS), ("2", 2), ("1", 1), ("20", 20),
    ("0", couch_api.LONGPOLL_SECONDS), ("21", couch_api.LONGPOLL_SECONDS),
    ("3600", couch_api.LONGPOLL_SECONDS), ("-1", couch_api.LONGPOLL_SECONDS),
    ("0.5", couch_api.LONGPOLL_SECONDS), ("nan", couch_api.LONGPOLL_SECONDS),
    ("２", couch_api.LONGPOLL_SECONDS),  # a digit to str.isdigit, and to int(), but not ASCII
])
def test_the_longpoll_is_only_ever_shortened(monkeypatch, text: str, seconds: int) -> None:
    monkeypatch.setenv("FUSEVAULT_LONGPOLL_SECONDS", text)
    assert couch_api._longpoll_seconds() == seconds
