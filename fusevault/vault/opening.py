"""Opening a vault: layout, store and the unlocked user, with one-line errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fusevault.crypto.keys import MasterKey
from fusevault.store import Store, open_store
from fusevault.vault import users
from fusevault.vault.layout import Layout, open_layout


@dataclass
class Unlocked:
    layout: Layout
    store: Store
    user: dict
    key: MasterKey


def open_vault(path: Path) -> tuple[Layout, Store]:
    layout = open_layout(path)
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
