"""Attack round 49t (2)-(5): the parsers a person's typing goes through refuse in one line (InvalidInput,
exit 12) what a later step raised on (a traceback, exit 70), and what is shown of a stored time, or
said of a failed decoding, never crashes nor keeps a secret's detail.  The commands themselves:
tests/mount/test_trust_attack_49t.py."""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import asdict

import pytest

from fusevault import passphrase
from fusevault.cli import agent, guard, links
from fusevault.crypto.signing import canonical
from fusevault.encoding import shown_time
from fusevault.errors import InvalidInput
from fusevault.store.couch import split_url
from fusevault.urls import http_url
from fusevault.vault.model import retention
from fusevault.vault.model.peers import parse_url
from fusevault.vault.model.settings import LONGEST_TTL, Settings, parse_ttl

# --- (2) retention windows


@pytest.mark.parametrize("field", sorted(retention.LONGEST))
def test_a_retention_window_above_its_bound_is_refused_and_at_it_is_taken(field: str) -> None:
    most = retention.LONGEST[field]
    with pytest.raises(InvalidInput, match="at most"):
        retention.changed(retention.Policy(), {field: 99999999999999999999})
    with pytest.raises(InvalidInput, match="at most"):
        retention.changed(retention.Policy(), {field: most + 1})
    policy = retention.changed(retention.Policy(), {field: most})
    canonical(asdict(policy))  # a signed document holds it exactly (no ValueError)


# --- (3) durations and times


def test_a_ttl_beyond_ten_years_is_refused_and_ten_years_taken() -> None:
    for text in ("99999999999999999999 day", "3654 day", "87697 hr", f"{'9' * 400} min"):
        with pytest.raises(InvalidInput, match="at most"):
            parse_ttl(text)
    assert parse_ttl("3653 day") == {"ttl": "3653", "unit": "day"}
    assert parse_ttl("8 hr") == {"ttl": "8", "unit": "hr"}


def test_a_stored_ttl_beyond_the_bound_counts_as_the_bound_and_nan_as_none() -> None:
    """One saved by an older version, or from another device's document."""
    assert Settings(passphrase_expiry_ttl={"ttl": "99999999999999999999", "unit": "day"}).ttl_seconds() \
        == LONGEST_TTL
    assert Settings(passphrase_expiry_ttl={"ttl": "1e400", "unit": "day"}).ttl_seconds() == LONGEST_TTL
    with pytest.raises(ValueError):
        Settings(passphrase_expiry_ttl={"ttl": "nan", "unit": "day"}).ttl_seconds()
    assert Settings().ttl_seconds() == 8 * 3600


def test_a_link_expiry_beyond_ten_years_is_refused() -> None:
    for text in ("9999999999999999999999w", "99999999999d", "3654d"):
        with pytest.raises(InvalidInput, match="at most"):
            links.parse_duration(text)
    assert links.parse_duration("3653d") == 3653 * 86400
    assert links.parse_duration("7d") == 7 * 86400


def test_a_time_beyond_time_t_is_shown_as_never_not_raised() -> None:
    assert shown_time(10**30) == "never"
    assert shown_time(1e20) == "never"
    assert shown_time(math.inf) == "never"
    assert shown_time(math.nan) == "unknown"
    assert shown_time(None) == "unknown"
    assert shown_time(-1e20) == "unknown"
    assert shown_time(0, "%Y") in ("1969", "1970")
    assert links._when(1e25) == "never"


def test_unlock_with_an_expiry_beyond_time_t_says_it_unlocked(monkeypatch, capsys) -> None:
    """A TTL already stored (an older version, a confirmed one from another device): the mount
    unlocks, and the command says so (it exited 70)."""
    monkeypatch.setattr(passphrase, "get", lambda *a, **k: b"pass")
    monkeypatch.setattr(agent, "ask", lambda *a, **k: {"user": "alice", "expires": 1e25})
    assert agent.cmd_unlock(argparse.Namespace(passphrase_fd=None, passphrase_file=None)) == 0
    assert capsys.readouterr().out == "unlocked alice until never\n"


# --- (4) URLs and ports


@pytest.mark.parametrize("url", ["http://256.1.1.1:9/db", "http://[::1/db", "http://[zz]:9/db",
                                 "http://127.0.0.1:99999/db", "http://h:-1/db", "file:///db", "http:///db",
                                 "http://1.2.3.400/db"])
def test_a_mistyped_url_is_invalid_input_in_every_url_check(url: str) -> None:
    for check in (http_url, parse_url, split_url):
        with pytest.raises(InvalidInput):
            check(url)


def test_the_url_checks_keep_their_words_and_take_good_urls() -> None:
    with pytest.raises(InvalidInput, match="not a valid port"):
        parse_url("http://127.0.0.1:99999/db")
    with pytest.raises(InvalidInput, match="not a CouchDB database URL"):
        parse_url("http://127.0.0.1:5984/")
    assert parse_url("http://[::1]:5984/db") == {"scheme": "http", "host": "::1", "port": 5984, "db": "db"}
    assert parse_url("https://couch.example/db")["port"] == 443
    assert split_url("http://[::1]:5984/db") == ("http://[::1]:5984/", "db")
    assert http_url("https://relay.example").hostname == "relay.example"


def test_a_refused_url_never_echoes_its_credentials() -> None:
    for url in ("http://alice:hunter2@[::1/db", "http://alice:hunter2@256.1.1.1/db",
                "http://alice:hunter2@h:99999/db"):
        with pytest.raises(InvalidInput) as refused:
            http_url(url)
        assert "hunter2" not in str(refused.value) and "alice" not in str(refused.value)


# --- (5) a passphrase's bytes


def test_a_passphrase_in_the_environment_is_its_bytes(monkeypatch) -> None:
    monkeypatch.setenv(passphrase.ENV, os.fsdecode(b"secret\xffpass"))  # as a Latin-1 shell passes it
    assert passphrase.get() == b"secret\xffpass"
    monkeypatch.setenv(passphrase.ENV, "h\u00e9")
    assert passphrase.get() == "h\u00e9".encode()


def test_a_crash_line_keeps_no_detail_of_the_text_a_codec_failed_on() -> None:
    for fails in (lambda: os.fsdecode(b"secret\xffpass").encode(), lambda: b"secret\xffpass".decode(),
                  lambda: "ab\udcff\udcfe".encode(), lambda: "x\u1234".encode("ascii")):
        with pytest.raises(UnicodeError) as caught:
            fails()
        said = guard._unsaid(f"Traceback ...\nUnicodeError: {caught.value}")
        assert "position" not in said and "\\udcff" not in said and "0xff" not in said, said
        assert "codec can't" in said
