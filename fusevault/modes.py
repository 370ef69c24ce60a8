"""The modes of what fusevault writes for a user from modes someone else gave (a link, a drop).

Light on purpose: the command keeps her umask at its first line (cli/app.py), before anything is
imported that would slow ``fusevault --version``.
"""

from __future__ import annotations

import os

_her_umask: int | None = None


def keep_her_umask(mask: int) -> None:
    """The umask she ran the command with: the command itself runs under 077 (cli/app.py)."""
    global _her_umask
    _her_umask = mask


def her_umask() -> int:
    """What a mode written for her as someone else gave it is masked with (``link get``: a link's
    0666 file or 0777 folder is not made writable by every local user, attack round 26b2 (5)):
    her own umask, as ``tar`` and ``cp`` use it; in-process, the current one."""
    if _her_umask is not None:
        return _her_umask
    mask = os.umask(0)
    os.umask(mask)
    return mask
