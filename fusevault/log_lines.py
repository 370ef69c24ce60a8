"""The log's lines, the same in the ``fusevault`` command and in a mount server.

On standard error, ``fusevault: MESSAGE``, or under the journal ``<N>MESSAGE`` (systemd reads N as
the line's priority); in a mount's log file, with the time and level.  Every line is ``defused``
(encoding.py): a log line holds names from outside (a peer's, a sender's, a dropped file's, a
server's error text), and a terminal showing the log, or ``journalctl``, would obey the escape
sequences in them (attack rounds 22b (6), 23b (5)).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from fusevault import systemd
from fusevault.encoding import defused


class DefusedFormatter(logging.Formatter):
    """A formatter whose lines are ``defused`` after ``inner`` formatted them."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return defused(self.inner.format(record))


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
