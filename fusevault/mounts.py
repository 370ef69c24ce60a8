"""Which fusevault mounts exist, read from /proc/self/mountinfo (no stat of a mount point)."""

from __future__ import annotations

import errno
import os
import threading
from dataclasses import dataclass
from pathlib import Path

FSTYPE = "fuse.fusevault"


def unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mount_path(path: Path) -> Path:
    """Absolute path of a mount point without stat()ing it (a hung mount would block)."""
    path = Path(os.path.abspath(path))
    return Path(os.path.realpath(path.parent)) / path.name


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo."""

    point: str
    fstype: str
    options: tuple[str, ...]  # the super block's options: user_id=, allow_other, ...

    @property
    def fusevault(self) -> bool:
        return self.fstype == FSTYPE

    @property
    def owner(self) -> int | None:
        """The uid that made a FUSE mount (the kernel's ``user_id=``); None for other kinds."""
        for option in self.options:
            if option.startswith("user_id="):
                return int(option.removeprefix("user_id="))
        return None

    @property
    def shared(self) -> bool:
        """A FUSE mount other users may use (``--allow-other``)."""
        return "allow_other" in self.options

    def mine(self) -> bool:
        """Made by the caller (root may act on any)."""
        return os.geteuid() == 0 or self.owner == os.geteuid()


def _entries() -> list[Mount]:
    found = []
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            fields, _, rest = line.partition(" - ")
            fstype, _source, options = (rest.split() + ["", "", ""])[:3]
            found.append(Mount(unescape(fields.split()[4]), fstype, tuple(options.split(","))))
    return found


def find(path: Path) -> Mount | None:
    """What is mounted at ``path`` (the last mount there), or None."""
    target = str(mount_path(path))
    matches = [m for m in _entries() if m.point == target]
    return matches[-1] if matches else None


def is_mounted(path: Path) -> bool:
    return find(path) is not None


def fusevault_mounts() -> list[str]:
    """Mount points of every fusevault mount this process can see."""
    return [m.point for m in _entries() if m.fusevault]


def visible_mounts() -> list[str]:
    """The fusevault mounts the caller can ask about: their own and shared ones (root: all).

    Another user's personal mount answers only its owner: listing it would
    only say that it does not answer."""
    return [m.point for m in _entries() if m.fusevault and (m.mine() or m.shared)]


ALIVE, DEAD, HUNG = "alive", "dead", "hung"


def probe(path: Path, timeout: float = 5.0) -> str:
    """Whether the file system mounted at ``path`` answers: ALIVE, DEAD (its
    server is gone: ENOTCONN) or HUNG (no answer within ``timeout``).

    statvfs, unlike stat, is never answered from the kernel's cache; it runs in
    a daemon thread so that a hung server cannot hang this command."""
    outcome: list[str] = []

    def ask() -> None:
        try:
            os.statvfs(path)
            outcome.append(ALIVE)
        except OSError as err:
            outcome.append(DEAD if err.errno in (errno.ENOTCONN, errno.ECONNABORTED) else ALIVE)

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else HUNG


def within(path: str, folder: str) -> bool:
    """True when ``path`` is ``folder`` or inside it (both absolute and normalised)."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")
