"""What the ``fusevault`` command prints never acts on the terminal that shows it.

Names from outside (a store writer's user name, a peer's name, a CouchDB server's error text, a
dropped file's name in the trash, a watched file's name in an import error) reached standard output
and the log raw, escape sequences and all: set the clipboard, overwrite the line above (attack
rounds 22b (6) and 23b (3, 5, 7, 9)).  Each message passing them through ``encoding.shown`` is one
defence; this is the other, at the boundary: standard output (here) and the log's lines
(log_lines.py) go through ``encoding.defused``, which writes out every character a terminal
would obey.  The progress bars (rich) write their own cursor movements to the real standard
error, not through here; their descriptions are defused by transfer/progress.py's column.
``defused`` keeps line breaks (tables and help are many lines on purpose): a name from outside is
kept on its line by ``shown`` where a command prints it, and a log record by log_lines.py.
"""

from __future__ import annotations

from typing import Any, TextIO

from fusevault.encoding import defused


class Defused:
    """A text stream whose writes are ``defused``; everything else is the stream's own."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(defused(text))
        return len(text)  # what the caller asked for: print() and friends count on it

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
