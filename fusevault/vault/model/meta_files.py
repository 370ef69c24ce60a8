"""Seed 003's meta.inf files, written from the documents.

The documents are the truth (one store transaction per change); meta.inf
files are a readable projection of them.  ``reconcile`` rewrites every file
that differs and removes those of users and groups that are gone, so the
two-way lists (user ``GROUPS`` and group ``USERS``) agree in the files as
they do in the documents, also after a crash between a commit and the file
writes: every administrative command and every mount reconciles first.
"""

from __future__ import annotations

import json
import shutil

from fusevault.store import Store
from fusevault.vault.format.atomic import atomic_write
from fusevault.vault.format.layout import Layout
from fusevault.vault.model import shapes
from fusevault.vault.model.groups import GROUP
from fusevault.vault.model.sharing import Grant, all_grants, shared_files
from fusevault.vault.model.users import USER


def user_meta(user: dict, groups: list[dict], grants: list[Grant]) -> dict:
    # OWN_FILES is not repeated here: it is the listing of own/, so it can
    # never disagree with it (docs/FORMAT.md).
    uid = user["_id"]
    return {"USER_ID": uid, "USERNAME": user["username"], "CREATED_AT": user["created_at"],
            "GROUPS": sorted(f"{g['_id']}:{g['users'][uid]}" for g in groups
                             if uid in (g.get("users") or {})),
            "SHARED_FILES": shared_files(grants, uid)}


def group_meta(group: dict) -> dict:
    return {"GROUP_ID": group["_id"], "GROUPNAME": group["groupname"], "OWNER_ID": group["owner"],
            "CREATED_AT": group["created_at"],
            "USERS": sorted(f"{u}:{p}" for u, p in (group.get("users") or {}).items())}


def _write_if_changed(path, meta: dict) -> bool:
    data = json.dumps(meta, indent=1).encode()
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)
    return True


def reconcile(layout: Layout, store: Store) -> int:
    """Make every meta.inf match the documents; return how many files changed."""
    users = list(shapes.well_formed(store, USER))
    groups = list(shapes.well_formed(store, GROUP))
    grants = all_grants(store)
    changed = 0
    for user in users:
        layout.make_user_dirs(user["_id"])
        changed += _write_if_changed(layout.user_dir(user["_id"]) / "meta.inf",
                                     user_meta(user, groups, grants))
    live_users = {u["_id"] for u in users}
    for group in groups:
        # A member whose user document is missing (withheld, or removed
        # before `user remove` asked for `group member remove` first) stays
        # in the group's signed document (only its owner may change it) but
        # is listed nowhere.
        group = {**group, "users": {u: p for u, p in (group.get("users") or {}).items() if u in live_users}}
        changed += _write_if_changed(layout.group_dir(group["_id"]) / "meta.inf", group_meta(group))
    live_groups = {g["_id"] for g in groups}
    for kind, live in (("users", live_users), ("groups", live_groups)):
        for entry in (layout.root / kind).iterdir():
            if entry.is_dir() and entry.name not in live and not any((entry / "own").glob("*")):
                # Only an empty place goes: the files of a removed owner are never deleted here.
                shutil.rmtree(entry)
                changed += 1
    return changed
