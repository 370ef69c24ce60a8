"""cli/terminal.py: what the command prints never acts on the terminal."""

from __future__ import annotations

import io
import logging
import sys

from fusevault.cli.terminal import Defused
from fusevault.encoding import defused, one_line, shown
from fusevault.log_lines import INDENT, DefusedFormatter
from fusevault.systemd import JournalFormatter
from fusevault.transfer.progress import DescriptionColumn

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


FORGED_LINE = "scan\n2026-12-04 09:00:00,000 ERROR fusevault.trust: FORGED"


def test_shown_writes_out_every_line_break_and_format_control() -> None:
    # Attack round 24b (2): a name with a line break writes a line of its own; U+061C reorders.
    for char in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\u061c\u200f\u202e\u2066\x1b":
        assert char not in shown("a" + char + "b"), repr(char)
    assert shown("thesis final.pdf") == "thesis final.pdf"
    assert shown(4242) == "4242" and shown(None) == "None"  # a store's field may be anything
    assert "\u061c" not in defused("a\u061cb")


def test_one_line_writes_out_every_break_str_splitlines_knows() -> None:
    text = "a\nb\rc\x0bd\x0ce\x1cf\x1dg\x1eh\x85i\u2028j\u2029k"
    assert len(one_line(text).splitlines()) == 1
    assert one_line("tab\tand é 名") == "tab\tand é 名"


def test_a_log_record_is_one_line_whatever_its_message_holds() -> None:
    record = logging.LogRecord("fusevault", logging.WARNING, __file__, 1, "import: %s failed",
                               (FORGED_LINE,), None)
    for inner in (logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"),
                  JournalFormatter("%(message)s")):
        line = DefusedFormatter(inner).format(record)
        assert len(line.splitlines()) == 1 and "scan\\n2026" in line, line
    assert record.getMessage() == "import: " + FORGED_LINE + " failed"  # the record itself is untouched


def test_a_traceback_in_the_log_cannot_pass_for_a_record_of_its_own() -> None:
    try:
        raise ValueError(FORGED_LINE)
    except ValueError:
        record = logging.LogRecord("fusevault", logging.ERROR, __file__, 1, "internal error", (),
                                   sys.exc_info())
    inner = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    text = DefusedFormatter(inner).format(record)
    first, *rest = text.splitlines()
    assert first.endswith("internal error") and any("Traceback" in line for line in rest)
    assert all(line.startswith(INDENT) for line in rest), text


def test_a_progress_description_never_acts_on_the_terminal() -> None:
    from rich.progress import Progress

    progress = Progress()
    progress.add_task("sending a\x1b]52;c;eA==\x1b\\\n\u202eb")
    [task] = progress.tasks
    shown_text = DescriptionColumn().render(task).plain
    assert "\x1b" not in shown_text and "\n" not in shown_text and "\u202e" not in shown_text
