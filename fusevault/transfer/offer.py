"""What ``fusevault send`` offers: the files and folders given, walked into files, symlinks that
stay inside their folder, and what is skipped; all refused before a session opens if unreadable."""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from fusevault.errors import InvalidInput, PermissionDenied, VaultError
from fusevault.transfer import crypto


@dataclass
class Outgoing:
    fid: str
    name: str  # as the receiver will see it: "report.pdf" or "photos/2026/a.jpg"
    path: Path
    size: int

    @property
    def chunks(self) -> int:
        return crypto.chunk_count(self.size)


@dataclass
class Offer:
    files: list[Outgoing] = field(default_factory=list)
    links: list[dict] = field(default_factory=list)     # {"name", "target"}
    skipped: list[dict] = field(default_factory=list)   # {"name", "why"}

    def manifest(self) -> dict:
        return {"files": [{"id": f.fid, "name": f.name, "size": f.size, "chunks": f.chunks}
                          for f in self.files],
                "links": self.links, "skipped": self.skipped}


def link_stays_inside(name: str, target: str) -> bool:
    """Whether a symlink at ``name`` (``folder/...``) to ``target`` stays in ``folder``, by its text."""
    if not target or target.startswith("/") or "\0" in target:
        return False
    top = name.split("/")[0]
    resolved = os.path.normpath(os.path.join(os.path.dirname(name), target))
    return resolved == top or resolved.startswith(top + "/")


def _unreadable(path: Path, err: OSError) -> VaultError:
    return PermissionDenied(f"cannot read {path}: {err.strerror or 'permission denied'}")


def _check_readable(path: Path) -> None:
    """Refused before a session opens: nothing is offered that cannot be sent."""
    if not os.access(path, os.R_OK | (os.X_OK if path.is_dir() else 0)):
        raise PermissionDenied(f"cannot read {path}: permission denied")


def collect(paths: list[Path]) -> Offer:
    offer, names = Offer(), set()

    def add(name: str) -> None:
        if name in names:
            raise InvalidInput(f"two files would arrive as {name}: send them separately")
        names.add(name)

    def refuse(err: OSError) -> None:  # os.walk's onerror: a folder it cannot list
        raise _unreadable(Path(err.filename or given), err)

    for given in paths:
        try:
            given.lstat()
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EPERM):
                raise _unreadable(given, err) from None
            raise InvalidInput(f"{given} is not a file or folder here") from None
        if given.is_symlink() or not given.exists():
            raise InvalidInput(f"{given} is not a file or folder here")
        if not given.is_dir():
            if not given.is_file():
                raise InvalidInput(f"{given} is not a regular file")
            _check_readable(given)
            add(given.name)
            offer.files.append(Outgoing("", given.name, given, given.stat().st_size))
            continue
        top, root_real = given.resolve().name, os.path.realpath(given)
        _check_readable(given)
        # os.walk never follows a symlinked folder
        for dirpath, dirnames, filenames in os.walk(given, onerror=refuse):
            dirnames.sort()
            for entry in sorted(dirnames + filenames):
                path = Path(dirpath) / entry
                name = f"{top}/{path.relative_to(given).as_posix()}"
                mode = os.lstat(path).st_mode
                if stat.S_ISDIR(mode):
                    continue
                if stat.S_ISLNK(mode):
                    target = os.readlink(path)
                    real = os.path.realpath(path)
                    inside = real == root_real or real.startswith(root_real + "/")
                    if link_stays_inside(name, target) and inside:
                        add(name)
                        offer.links.append({"name": name, "target": target})
                    else:
                        why = f"a symlink to {target}, outside the folder"
                        offer.skipped.append({"name": name, "why": why})
                elif stat.S_ISREG(mode):
                    _check_readable(path)
                    add(name)
                    offer.files.append(Outgoing("", name, path, os.lstat(path).st_size))
                else:
                    offer.skipped.append({"name": name, "why": "not a regular file, folder or symlink"})
    if not offer.files:
        raise InvalidInput("nothing to send: the folders hold no files")
    width = len(str(len(offer.files) - 1))  # ids sort as numbers do, on both sides
    for i, f in enumerate(offer.files):
        f.fid = str(i).zfill(width)
    return offer
