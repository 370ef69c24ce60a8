"""Progress bars (rich) with rate and time left, on stderr when it is a terminal."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    Task,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from fusevault.encoding import defused, one_line


class DescriptionColumn(TextColumn):
    """A task's description, never acting on the terminal.  A description holds a name from
    outside, which its maker passes through ``shown``; rich writes a text's ESC through to the
    terminal as it is (it drops only BEL, BS, VT, FF and CR), so one forgotten ``shown`` would let
    a name set her clipboard or erase the line above (attack round 24b (3)).  Here every character
    a terminal obeys and every line break is written out, whoever made the task.  (The console
    itself cannot go through ``defused``: rich's own cursor movements are escape sequences.)"""

    def __init__(self) -> None:
        # markup=False: a name's "[...]" would otherwise be read as markup (styles, or a
        # MarkupError for "[/x]").
        super().__init__("{task.description}", markup=False)

    def render(self, task: Task) -> Text:
        return Text(one_line(defused(task.description)), style=self.style, justify=self.justify)


def transfer_progress() -> Progress:
    return Progress(DescriptionColumn(), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not sys.stderr.isatty())
