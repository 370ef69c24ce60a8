"""cli/terminal.py: what the command prints never acts on the terminal."""

from __future__ import annotations

import io
import logging

from fusevault.cli.terminal import Defused
from fusevault.encoding import defused
from fusevault.log_lines import DefusedFormatter

HOSTILE = "a\x1b]52;c;b3duZWQ=\x07b\x1b[2K\x9b1A\u202ecod.exe\udc80"


def test_every_character_a_terminal_obeys_is_written_out_and_lines_and_tabs_stay() -> None:
    out = defused(HOSTILE + "\nnext\tcolumn é 名")
    assert not any(c in out for c in "\x1b\x07\x9b\u202e\udc80")
    assert out == ("a\\x1b]52;c;b3duZWQ=\\x07b\\x1b[2K\\x9b1A\\u202ecod.exe\\udc80"
                   "\nnext\tcolumn é 名")


def test_standard_output_and_the_log_are_defused() -> None:
    raw = io.StringIO()
    stream = Defused(raw)
    assert stream.write(HOSTILE) == len(HOSTILE)
    assert "\x1b" not in raw.getvalue() and stream.getvalue() == raw.getvalue()  # the rest is the stream's
    record = logging.LogRecord("fusevault", logging.ERROR, __file__, 1, "user %s", (HOSTILE,), None)
    line = DefusedFormatter(logging.Formatter("fusevault: %(message)s")).format(record)
    assert line.startswith("fusevault: user a\\x1b]52") and "\x07" not in line
