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
import logging

from fusevault.errors import CorruptData
from fusevault.store import Store
from fusevault.vault.format import inside
from fusevault.vault.format.layout import Layout, checked_id, is_id
from fusevault.vault.model import shapes
from fusevault.vault.model.groups import GROUP
from fusevault.vault.model.sharing import Grant, all_grants, shared_files
from fusevault.vault.model.users import USER

log = logging.getLogger(__name__)


def user_meta(user: dict, groups: list[dict], grants: list[Grant]) -> dict:
    # OWN_FILES is not repeated here: it is the listing of own/, so it can
    # never disagree with it (docs/FORMAT.md).
    uid = user["_id"]
    return {"USER_ID": uid, "USERNAME": user["username"], "CREATED_AT": user.get("created_at"),
            "GROUPS": sorted(f"{g['_id']}:{g['users'][uid]}" for g in groups
                             if uid in (g.get("users") or {})),
            "SHARED_FILES": shared_files(grants, uid)}


def group_meta(group: dict) -> dict:
    return {"GROUP_ID": group["_id"], "GROUPNAME": group["groupname"], "OWNER_ID": group["owner"],
            "CREATED_AT": group.get("created_at"),
            "USERS": sorted(f"{u}:{p}" for u, p in (group.get("users") or {}).items())}


def _write_if_changed(layout: Layout, kind: str, place_id: str, meta: dict) -> bool:
    # Under the vault root only, no link followed (vault/format/inside.py): root's shared mount does this.
    names = [kind, checked_id(kind[:-1], place_id)]
    data = json.dumps(meta, indent=1).encode()
    if inside.read_file(layout.root, names, "meta.inf") == data:
        return False
    inside.write_file(layout.root, names, "meta.inf", data)
    return True


def reconcile(layout: Layout, store: Store) -> int:
    """Make every meta.inf match the documents; return how many files changed.  A place refused (an id
    that is no name fusevault makes, a symbolic link on the way) is logged and left alone."""
    users = list(shapes.well_formed(store, USER))
    groups = list(shapes.well_formed(store, GROUP))
    grants = all_grants(store)
    changed = 0
    for user in users:
        try:
            layout.make_user_dirs(user["_id"])
            changed += _write_if_changed(layout, "users", user["_id"], user_meta(user, groups, grants))
        except CorruptData as err:
            log.warning("meta.inf of user %r not written: %s", user["_id"], err)
    live_users = {u["_id"] for u in users}
    for group in groups:
        # A member whose user document is missing (withheld, or removed
        # before `user remove` asked for `group member remove` first) stays
        # in the group's signed document (only its owner may change it) but
        # is listed nowhere.
        group = {**group, "users": {u: p for u, p in (group.get("users") or {}).items() if u in live_users}}
        try:
            changed += _write_if_changed(layout, "groups", group["_id"], group_meta(group))
        except CorruptData as err:
            log.warning("meta.inf of group %r not written: %s", group["_id"], err)
    live_groups = {g["_id"] for g in groups}
    for kind, live in (("users", live_users), ("groups", live_groups)):
        try:
            for name in inside.places(layout.root, kind):  # real folders only: a link is never followed
                # Only an empty place of an id with no document goes: the files of a removed owner and
                # the key files shared with a user are never deleted here, nor anything fusevault did
                # not name; a document refused for its shape (a store writer's revision) or unreadable
                # is not a removal (round 15 (1)).
                if (is_id(name) and name not in live and not _has_document(store, name)
                        and not any(inside.holds_files(layout.root, [kind, name, sub])
                                    for sub in ("own", "shared"))):
                    inside.remove_tree(layout.root, [kind], name)
                    changed += 1
        except CorruptData as err:
            log.warning("the vault folder's %s: %s", kind, err)
    return changed


def _has_document(store: Store, doc_id: str) -> bool:
    """Whether the store holds a live row of ``doc_id``, readable or not."""
    try:
        return store.get(doc_id) is not None
    except CorruptData:
        return True
