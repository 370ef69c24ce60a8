"""The log's lines, the same in the ``fusevault`` command and in a mount server.

On standard error, ``fusevault: MESSAGE``, or under the journal ``<N>MESSAGE`` (systemd reads N as
the line's priority); in a mount's log file, with the time and level.  Every line is ``defused``
(encoding.py): a log line holds names from outside (a peer's, a sender's, a dropped file's, a
server's error text), and a terminal showing the log, or ``journalctl``, would obey the escape
sequences in them (attack rounds 22b (6), 23b (5)).  Every line is at most ``LINE_LIMIT`` characters
(``encoding.cut``: its start and end kept, its length said), and a mount's log file is capped
(``to_file``): a failed import of a file 256 folders deep wrote its ~390 KB location to root's
shared mount log at every retry, and the file grew without end (attack round 58c (5)).
"""

from __future__ import annotations

import copy
import logging
import logging.handlers
import sys
from pathlib import Path

from fusevault import systemd
from fusevault.encoding import cut, defused, one_line


class DefusedFormatter(logging.Formatter):
    """A formatter whose lines are ``defused`` after ``inner`` formatted them, and whose record is
    one line: a message holds names from outside, and a line break in one (a watched file's name,
    a store writer's user name) would write a line of its own into her log -- time, level and all
    in the log file, a line of her unit's under the journal (attack round 24b (2)).  This is the
    one place every log line passes: whatever a message forgot to ``shown``, it cannot break, nor
    make a line longer than ``LINE_LIMIT`` (cut once defused: written out, a character takes up to
    ten)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        text = defused(self.inner.format(self._one_record(record)))
        if len(text) <= LINE_LIMIT:
            return text
        return "\n".join(cut(line, LINE_LIMIT) for line in text.split("\n"))

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

# Characters a line of the log holds at most (16 KiB in UTF-8 at worst): a message names a few names
# of 255 bytes (~1,530 characters each written out), and a longer line is cut in its middle.
LINE_LIMIT = 4_000

# A mount's log file: rotated at FILE_LIMIT bytes, one older file kept (``NAME.log.1``): at most
# 2 x 16 MiB a mount, whatever is logged.
FILE_LIMIT = 16 * 2**20


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
    """A mount server's log file, once it runs in the background: capped (``FILE_LIMIT``, one older
    file kept), where a plain FileHandler grew without end (58c (5))."""
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=FILE_LIMIT, backupCount=1)
    inner = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(DefusedFormatter(inner))
    return handler
