"""A file of the watched folder, reached from the folder one name at a time, never through a link.

The inotify watch this service once used (watchfiles) watched through a folder linked into the
watched one and reported the paths under it as if they were in the watched folder (the first scan
followed no link).  Looked at, read and removed by its full path, such a path led anywhere: a link to
``~/Documents`` had her files imported and deleted from there, a link to the vault folder had
``store.sqlite`` deleted and the vault destroyed (tests/mount/test_trust_attack_round22b.py, hole 8);
the walk that replaced the watch (watcher.py, attack round 53b) follows no link either, but a name
it saw may be a link by the time it is used.  Every look, open and removal
of the importer goes through ``parent`` now: the folder a location lies in, opened part by part from
the watched folder with ``O_NOFOLLOW | O_DIRECTORY``, and the last name, used relative to it.  A link
or a non-folder on the way is "gone" (FileNotFoundError), as for a file removed meanwhile.

The watched folder itself may be a link (it is her setting), but it is opened once per watch
(``hold``), and checked by ``settings.check`` as the folder that descriptor really is; every path is
then reached from that descriptor, never from the folder's name again.  Whoever owns the folder the
watched one lies in can move it aside and put a link to ``~/Documents`` or to the vault folder in its
place: the names then still lead into the folder held, wherever it is now, and nowhere else (attack
round 23b, hole 4).
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from fusevault.encoding import name_start, shown
from fusevault.host_access import HostAccess
from fusevault.vault.model import settings as user_settings
from fusevault.vault.model.settings import Settings
from fusevault.vault.services.conflict_copies import copy_name

log = logging.getLogger(__name__)

# Each folder on the way: never a link (ELOOP), never anything but a folder (ENOTDIR).
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


# The watched folder itself: her setting may be a link, followed once, when the watch starts.
_WATCHED = os.O_RDONLY | os.O_DIRECTORY


def hold(host: HostAccess, settings: Settings, vault_root: str) -> int:
    """A descriptor of the watched folder, opened as ``host``'s user, once ``settings.check`` has
    passed for the folder it really is (not merely for what its name led to a moment before), and
    never one on a kernel pseudo file system (judged on the descriptor: attack round 69d (1))."""
    assert settings.source_dir_to_watch is not None
    user_settings.check(settings, vault_root, host)  # her setting, in the words she wrote it
    root = host.open(settings.source_dir_to_watch, _WATCHED)
    try:
        user_settings.refuse_pseudo_folder("source_dir_to_watch", settings.source_dir_to_watch, root)
        # Swapped between that check and the open: checked again, as the folder now held.
        held = replace(settings, source_dir_to_watch=real_path(root))
        user_settings.check(held, vault_root, host)
    except BaseException:
        os.close(root)
        raise
    return root


def real_path(fd: int) -> str:
    """Where the folder behind ``fd`` is now (the kernel's answer, no link left in it)."""
    path = os.readlink(f"/proc/self/fd/{fd}")
    if not path.startswith("/"):  # not a path at all; a removed folder ("... (deleted)") fails the check
        raise FileNotFoundError(errno.ENOENT, "the watched folder is gone", path)
    return path


@contextmanager
def parent(host: HostAccess, root: int, location: str) -> Iterator[tuple[int, str]]:
    """(a descriptor of the folder ``location`` lies in, its last name), opened as ``host``'s user
    from ``root`` (the held watched folder, left open: its owner closes it)."""
    parts = location.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise FileNotFoundError(errno.ENOENT, "not a name in the watched folder", location)
    folder = root
    try:
        for part in parts[:-1]:
            within = inner(host, folder, part, location)
            if folder != root:
                os.close(folder)
            folder = within
        yield folder, parts[-1]
    finally:
        if folder != root:
            os.close(folder)


def inner(host: HostAccess, folder: int, part: str, location: str) -> int:
    """The folder ``part`` of ``folder``, never through a link (then: gone)."""
    try:
        return host.open(part, _FOLDER, dir_fd=folder)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR):
            raise FileNotFoundError(errno.ENOENT, "a link or a file on the way", location) from None
        raise


def lstat(host: HostAccess, root: int, location: str) -> os.stat_result:
    with parent(host, root, location) as (folder, name):
        return host.lstat(name, dir_fd=folder)


def open_file(host: HostAccess, root: int, location: str, flags: int) -> int:
    with parent(host, root, location) as (folder, name):
        return host.open(name, flags, dir_fd=folder)


def open_folder(host: HostAccess, root: int, location: str) -> int:
    """A descriptor of the folder ``location`` ("": the watched folder, a copy of ``root``)."""
    if not location:
        return os.dup(root)
    with parent(host, root, location) as (folder, name):
        return inner(host, folder, name, location)


def entries(host: HostAccess, folder: int) -> Iterator[tuple[str, os.stat_result]]:
    """Every entry of the folder ``folder`` (a descriptor) with its lstat, a bounded page of its
    user's helper at a time (host_access/listing.py): a folder of any size is listed (55c, (2))."""
    position: int | None = 0
    while position is not None:
        page, position = host.scan_page(folder, position)
        yield from page


def remove_if(host: HostAccess, root: int, location: str, same: Callable[[os.stat_result], bool]) -> bool:
    """Remove the file if ``same(stat)`` says it is still the one meant, and only that file.

    Looked at, then removed by its name, it was whatever the name held at the removal: an editor's
    save (a new file renamed over the name) landing between the two was deleted, never imported
    (attack round 55c, (4)).  So the file is first moved to a private name of its folder (a random
    one: a plain rename(2), the one move that takes exactly what the name holds on every file system;
    RENAME_NOREPLACE's fallback, a link then an unlink of the name, would be the same race again),
    looked at there, where no save lands, and removed only if it is the one meant; anything else is
    put back (beside, under a copy's name, if its name was taken meanwhile).  A write into the very
    file (same inode) after that look is still lost with it, as it always was.

    ``same`` is asked at the look before the move, where the file is as it was imported, ctime and
    all (import_records.Stamp); the move itself sets the ctime, so the file at the private name is
    then asked to be the very file looked at (``_moved_unchanged``), not to pass ``same`` again."""
    with parent(host, root, location) as (folder, name):
        looked = host.lstat(name, dir_fd=folder)
        if not same(looked):
            return False  # changed already: nothing moved
        aside = f".{name_start(name)}.fvpart-remove-{secrets.token_hex(4)}"  # never imported (ignored)
        host.rename(name, aside, dir_fd=folder)
        try:
            moved = host.lstat(aside, dir_fd=folder)
        except BaseException:
            _put_back(host, folder, aside, name, None)
            raise
        if _moved_unchanged(looked, moved):
            host.unlink(aside, dir_fd=folder)
            return True
        _put_back(host, folder, aside, name, moved)
    return False


def _moved_unchanged(looked: os.stat_result, moved: os.stat_result) -> bool:
    """Whether ``moved`` is the file ``looked`` at, unchanged but for what a rename changes (ctime)."""
    def kept(st: os.stat_result) -> tuple[int, ...]:
        return st.st_dev, st.st_ino, stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns
    return kept(looked) == kept(moved)


def _put_back(host: HostAccess, folder: int, aside: str, name: str, moved: os.stat_result | None) -> None:
    """The file moved aside, back at its name; beside it under a copy's name if a new file took the
    name meanwhile; left aside (said in the log) only if neither can be done."""
    mtime = moved.st_mtime_ns if moved is not None else time.time_ns()
    raw = name.encode("utf-8", "surrogateescape")
    for taken in (name, copy_name(raw, "kept", mtime), copy_name(raw, f"kept {secrets.token_hex(3)}", mtime)):
        try:
            host.rename(aside, os.fsdecode(taken), dir_fd=folder, noreplace=True)
            return
        except FileExistsError:
            continue
        except OSError as err:
            log.warning("import: a file set aside to be removed stays as %s: %s", shown(aside), err.strerror)
            return
    log.warning("import: a file set aside to be removed stays as %s", shown(aside))
