"""The log's lines, the same in the ``fusevault`` command and in a mount server.

On standard error, ``fusevault: MESSAGE``, or under the journal ``<N>MESSAGE`` (systemd reads N as
the line's priority); in a mount's log file, with the time and level.  Every line is ``defused``
(encoding.py): a log line holds names from outside (a peer's, a sender's, a dropped file's, a
server's error text), and a terminal showing the log, or ``journalctl``, would obey the escape
sequences in them (attack rounds 22b (6), 23b (5)).
"""

from __future__ import annotations

import copy
import logging
import sys
from pathlib import Path

from fusevault import systemd
from fusevault.encoding import defused, one_line


class DefusedFormatter(logging.Formatter):
    """A formatter whose lines are ``defused`` after ``inner`` formatted them, and whose record is
    one line: a message holds names from outside, and a line break in one (a watched file's name,
    a store writer's user name) would write a line of its own into her log -- time, level and all
    in the log file, a line of her unit's under the journal (attack round 24b (2)).  This is the
    one place every log line passes: whatever a message forgot to ``shown``, it cannot break."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return defused(self.inner.format(self._one_record(record)))

    def _one_record(self, record: logging.LogRecord) -> logging.LogRecord:
        """A copy of ``record`` (other handlers format the original) whose message is one line and
        whose traceback and stack lines are indented: a traceback is many lines on purpose, but its
        last line holds the exception's text, which may hold a name from outside; indented, no line
        of it can pass for a record of its own."""
        flat = copy.copy(record)
        flat.msg, flat.args = one_line(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            flat.exc_text = self.inner.formatException(record.exc_info)
        if flat.exc_text:
            flat.exc_text = _indented(flat.exc_text)
        if record.stack_info:
            flat.stack_info = _indented(record.stack_info)
        return flat


def _indented(text: str) -> str:
    # splitlines: every break the journal's formatter would split at is indented too.
    return "\n".join(INDENT + line for line in text.splitlines())


INDENT = "  | "  # what starts every line of a record after its first


def to_stderr(verbose: bool) -> None:
    """The process's log on standard error (a command's, or a server's in the foreground)."""
    handler = logging.StreamHandler(sys.stderr)
    if systemd.under_journal():  # the journal adds the unit's name and reads the level
        inner: logging.Formatter = systemd.JournalFormatter("%(message)s")
    else:
        inner = logging.Formatter("fusevault: %(message)s")
    handler.setFormatter(DefusedFormatter(inner))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    logging.getLogger("httpx").setLevel(logging.DEBUG if verbose else logging.WARNING)


def to_file(path: Path) -> logging.Handler:
    """A mount server's log file, once it runs in the background."""
    handler = logging.FileHandler(path)
    inner = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(DefusedFormatter(inner))
    return handler
