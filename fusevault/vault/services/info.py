"""What ``fusevault info`` shows: counts only, no names, no passphrase needed."""

from __future__ import annotations

from pathlib import Path

from fusevault.vault.format.layout import FORMAT_VERSION
from fusevault.vault.model.nodes import NODE, VERSION
from fusevault.vault.model.users import USER, has_recovery_key
from fusevault.vault.services.opening import open_vault


def gather(path: Path) -> dict:
    layout, store = open_vault(path)
    try:
        user_docs = list(store.iter_type(USER))
        users = len(user_docs)
        # Whether a recovery key exists (a clear field; never its words, which are stored nowhere).
        recovery_keys = sum(1 for d in user_docs if has_recovery_key(d))
        nodes = sum(1 for d in store.iter_type(NODE) if not d.get("delete"))
        versions = sum(1 for _ in store.iter_type(VERSION))
    finally:
        store.close()
    stored = sum(f.stat().st_size for f in (layout.root / "users").glob("*/own/*.vf"))
    return {
        "format": FORMAT_VERSION,
        "vault_id": layout.vault_id,
        "store": layout.store.get("kind", "local"),
        # What this replica writes (vault.json; absent in a vault from before
        # padding: "none").  Clear text, as docs/SECURITY.md says.
        "padding": layout.padding,
        "users": users,
        "users_with_recovery_key": recovery_keys,
        # Entries (files, directories, links) minus each user's root directory.
        "entries": max(nodes - users, 0),
        "versions": versions,
        "stored_bytes": stored,
    }
