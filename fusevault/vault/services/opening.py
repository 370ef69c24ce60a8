"""Opening a vault: layout, store and the unlocked user, with one-line errors."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from fusevault.crypto.keys import MasterKey
from fusevault.errors import VaultInUse
from fusevault.store import Store, open_store
from fusevault.vault.format import inside
from fusevault.vault.format import layout as layouts
from fusevault.vault.format.layout import Layout, open_layout
from fusevault.vault.model import users


@dataclass
class Unlocked:
    layout: Layout
    store: Store
    user: dict
    key: MasterKey

    def root(self) -> str:
        """Her root folder's id, as her own key vouches for it (``users.root_of``)."""
        return users.root_of(self.layout.root, self.user, self.key, self.store)


def open_vault(path: Path) -> tuple[Layout, Store]:
    layout = open_layout(path)
    layouts.upgrade(layout)  # a command may write versions of the new format
    return layout, open_store(layout.root, layout.store)


def unlock_vault(path: Path, username: str | None, passphrase: bytes) -> Unlocked:
    layout, store = open_vault(path)
    try:
        user = users.find_user(store, username)
        key = users.unlock_here(layout.root, user, passphrase, store=store)
    except BaseException:
        store.close()
        raise
    return Unlocked(layout, store, user, key)


def _lock_file(layout: Layout) -> int:
    """``vault.lock``, made if missing, never through a link: whoever may write the vault folder could
    put ``vault.lock -> /etc/nologin`` there, and root's shared mount would make that file (O_CREAT
    follows a dangling link).  A link or anything but a regular file there is refused, one line."""
    root = os.open(layout.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return inside.open_in(root, "vault.lock", os.O_RDWR)
    except FileNotFoundError:
        try:
            return inside.open_in(root, "vault.lock", os.O_RDWR | os.O_CREAT | os.O_EXCL)
        except FileExistsError:  # made meanwhile by another mount or watcher
            return inside.open_in(root, "vault.lock", os.O_RDWR)
    finally:
        os.close(root)


def hold(layout: Layout) -> int:
    """Take the vault's lock for this process's life (one mount or watcher per vault).

    Two servers of one vault would each keep their own picture of the tree
    and overwrite each other's documents.  The kernel drops the lock when the
    process ends, however it ends, so a crash never leaves the vault locked.
    """
    fd = _lock_file(layout)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise VaultInUse(f"{layout.root} is in use by another fusevault mount or watcher") from None
    layouts.upgrade(layout)
    return fd
