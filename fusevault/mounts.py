"""Which fusevault mounts exist, read from /proc/self/mountinfo (no stat of a mount point)."""

from __future__ import annotations

import os
from pathlib import Path

FSTYPE = "fuse.fusevault"


def unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mount_path(path: Path) -> Path:
    """Absolute path of a mount point without stat()ing it (a hung mount would block)."""
    path = Path(os.path.abspath(path))
    return Path(os.path.realpath(path.parent)) / path.name


def _entries() -> list[tuple[str, str]]:
    found = []
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            fields, _, rest = line.partition(" - ")
            found.append((unescape(fields.split()[4]), rest.split()[0]))
    return found


def is_mounted(path: Path) -> bool:
    target = str(mount_path(path))
    return any(point == target for point, _ in _entries())


def fusevault_mounts() -> list[str]:
    """Mount points of every fusevault mount this process can see."""
    return [point for point, fstype in _entries() if fstype == FSTYPE]


def within(path: str, folder: str) -> bool:
    """True when ``path`` is ``folder`` or inside it (both absolute and normalised)."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")
