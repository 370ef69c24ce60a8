"""Opening a vault: layout, store and the unlocked user, with one-line errors."""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from fusevault.crypto.keys import MasterKey
from fusevault.errors import Unsafe, VaultInUse
from fusevault.store import Store, open_store
from fusevault.vault.format import layout as layouts
from fusevault.vault.format.layout import Layout, open_layout
from fusevault.vault.model import users


@dataclass
class Unlocked:
    layout: Layout
    store: Store
    user: dict
    key: MasterKey


def open_vault(path: Path) -> tuple[Layout, Store]:
    layout = open_layout(path)
    layouts.upgrade(layout)  # a command may write versions of the new format
    return layout, open_store(layout.root, layout.store)


def unlock_vault(path: Path, username: str | None, passphrase: bytes) -> Unlocked:
    layout, store = open_vault(path)
    try:
        user = users.find_user(store, username)
        key = users.unlock(user, passphrase)
    except BaseException:
        store.close()
        raise
    return Unlocked(layout, store, user, key)


def hold(layout: Layout) -> int:
    """Take the vault's lock for this process's life (one mount or watcher per vault).

    Two servers of one vault would each keep their own picture of the tree
    and overwrite each other's documents.  The kernel drops the lock when the
    process ends, however it ends, so a crash never leaves the vault locked.
    """
    fd = _lock_file(layout.root / "vault.lock")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise VaultInUse(f"{layout.root} is in use by another fusevault mount or watcher") from None
    layouts.upgrade(layout)
    return fd


# What opening a link (ELOOP), a folder (EISDIR) or a socket (ENXIO) at the lock's name gives.
NOT_A_FILE = (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.ENODEV, errno.EOPNOTSUPP)


def _lock_file(path: Path) -> int:
    """The lock file's descriptor, never opened through a link nor waited on: a writer of the vault
    folder who put a link there would have root's mount create or open the file it names (attack
    round 17 (2)); anything but a regular file is refused, naming it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
    except OSError as err:
        if err.errno not in NOT_A_FILE:
            raise
        fd = None
    if fd is not None and stat.S_ISREG(os.fstat(fd).st_mode):
        return fd
    if fd is not None:
        os.close(fd)
    raise Unsafe(f"{path} is no file fusevault made (a link, a folder, a pipe?): another hand put it "
                 "there; look at it, remove it and try again")
