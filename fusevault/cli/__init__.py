"""The ``fusevault`` command, one module per group of commands (app.py puts them together).

``main`` is the console script and ``python -m fusevault``.  It imports app.py
only when called: the mount's server imports guard.py from here (fs/daemon.py)
and needs none of the command's parsers.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    from fusevault.cli.app import main as run

    return run(argv)
