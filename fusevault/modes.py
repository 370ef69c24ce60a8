"""The modes of what fusevault writes for a user from modes someone else gave (a link, a drop, an
import), and of the folders it makes for her.

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


def given_mode(mode: int) -> int:
    """The mode of a file written for her with a mode someone else gave (a drop, an import from her
    watched folder, which others may write to): never setuid, setgid or sticky, less her umask, and
    never writable by group or others whatever was given.  A 0666 drop in a drive opened to other
    users was theirs to rewrite (attack round 52t (6)), and so was an import of a 0666 (or 06777)
    file another user left in her watched folder (53d (5)); ``link get`` masks alike."""
    return mode & 0o777 & ~(her_umask() | 0o022)  # 0o777: host_access SAFE_MODE_BITS


def folder_mode() -> int:
    """The mode of a folder made for her (a drop's, a drop box's, an import's, ``restore --to``'s):
    her umask kept, as ``mkdir -p`` keeps it; 0755 whatever it was listed what was dropped for her
    to every local user of a drive opened to them (attack round 53d (6))."""
    return given_mode(0o777)
