"""Progress bars (rich) with rate and time left, on stderr when it is a terminal."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)


def transfer_progress() -> Progress:
    # markup=False: a description holds a name from outside (already ``shown``), whose "[...]"
    # rich would otherwise read as markup (styles, or a MarkupError for "[/x]").
    return Progress(TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not sys.stderr.isatty())
