"""Test-only knobs that only ever shorten a wait (docs/SECURITY.md "The test-only switch").

The suite's scenes that wait for something said after a while (an alarm at the first quiet longpoll,
a refused deletion said, an idle client dropped, a stopped transfer's grace) shorten that while with
an environment variable: whole seconds from 1 to the default; anything else (longer, zero, not a
number, a non-ASCII digit) is the default, so a knob can never lengthen a wait nor remove one.
"""

from __future__ import annotations

import os


def shortened(name: str, default: int) -> int:
    """``default`` seconds, or fewer (1 at least) where the environment variable ``name`` says so."""
    text = os.environ.get(name, "")
    ok = text.isascii() and text.isdigit() and 1 <= int(text) <= default
    return int(text) if ok else default
