"""Groups (seed 003): a name, an owner and members with READ/WRITE.

The Group document is the one place membership is written: its ``users``
map is seed 003's group ``USERS``, and each user's ``GROUPS`` list is read
from the same documents.  The two lists therefore cannot disagree, and the
meta.inf files that show them are rewritten from the documents after every
change and whenever a vault is administered (``meta_files.reconcile``), so
a crash between the two leaves files that the next command repairs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from fusevault.errors import AlreadyExists, InvalidInput, VaultNotFound
from fusevault.store import Store, tombstone
from fusevault.vault.format.layout import validate_name
from fusevault.vault.model import shapes
from fusevault.vault.model.nodes import new_id

GROUP = "Group"
PERMS = ("READ", "WRITE", "READ,WRITE")


def parse_perm(text: str) -> str:
    """``READ``, ``WRITE`` or both, in any order and case, as seed 003 writes it."""
    words = {w.strip().upper() for w in text.replace("+", ",").split(",") if w.strip()}
    if not words or not words <= {"READ", "WRITE"}:
        raise InvalidInput(f"invalid permission {text!r}: use READ, WRITE or READ,WRITE")
    return ",".join(w for w in ("READ", "WRITE") if w in words)


def can_write(perm: str) -> bool:
    return "WRITE" in perm.split(",")


def find_group(store: Store, name: str, pick: Callable[[list[dict]], dict | None] | None = None) -> dict:
    """The group named ``name``; several claiming it (a planted one: the store's
    order is its writer's) are refused unless ``pick`` (the groups the caller
    trusts) chooses one."""
    return shapes.one_named(list(shapes.well_formed(store, GROUP)), "groupname", name, "group", pick,
                            ", and remove the one that is not yours")


Sign = Callable[[dict], dict]  # the group owner's Trust.sign


def create_group(store: Store, name: str, owner: dict, sign: Sign) -> dict:
    validate_name("group", name)
    if any(d.get("groupname") == name for d in store.iter_type(GROUP)):
        raise AlreadyExists(f"group {name!r} already exists")
    # The owner is a member with every right: the group's files are theirs to share on.
    doc = {"_id": new_id(), "type": GROUP, "groupname": name, "owner": owner["_id"],
           "created_at": int(time.time()), "users": {owner["_id"]: "READ,WRITE"}}
    doc = sign(doc)  # a membership counts only in a document its owner signed
    store.put_many([doc])
    store.sync()
    return doc


def set_member(store: Store, group: dict, user: dict, perm: str | None,
               extra: list[dict] | None = None, *, sign: Sign) -> dict:
    """Add or change a member (``perm``), or remove one (``perm=None``),
    signed by the group's owner (``sign``); ``extra`` documents are committed
    in the same transaction."""
    # Every membership the owner signed stays: one whose user document is missing now
    # (withheld by the store's writer) is not a removal (`user remove` refuses a member).
    members = dict(group.get("users") or {})
    if perm is None:
        if user["_id"] not in members:
            raise VaultNotFound(f"{user['username']} is not in group {group['groupname']}")
        if user["_id"] == group["owner"]:
            raise InvalidInput(f"{user['username']} owns group {group['groupname']} and stays in it")
        del members[user["_id"]]
    else:
        members[user["_id"]] = parse_perm(perm)
    doc = sign({**group, "users": members})
    doc["_rev"] = store.put_many([doc, *(extra or [])])[0]
    store.sync()
    return doc


def common_members(one: dict, other: dict) -> dict[str, str]:
    """The members two bodies of a group signed apart both keep, each with the rights both give: no one
    either body removed, no right either took away (the safe join; one the other added is left out)."""
    theirs = other.get("users") or {}
    members = {}
    for user, perm in (one.get("users") or {}).items():
        both = set(str(perm).split(",")) & set(str(theirs.get(user, "")).split(","))
        if both & {"READ", "WRITE"}:
            members[user] = ",".join(w for w in ("READ", "WRITE") if w in both)
    return members


def groups_of(store: Store, user_id: str) -> dict[str, str]:
    """Seed 003's user ``GROUPS``: group id -> permission."""
    return {g["_id"]: g["users"][user_id] for g in shapes.well_formed(store, GROUP)
            if user_id in (g.get("users") or {})}


def remove_group(store: Store, group: dict) -> None:
    store.put_many([tombstone(group)])
    store.sync()
