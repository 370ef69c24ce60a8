"""The people of a vault, as its administrator changes them: removing a user,
taking a member out of a group, and the tables `user list` / `group list` show.

Whoever may write the vault directory administers it (the CLI, cli/accounts.py,
only parses and prints); what each user can read is still decided by their own
keys.  Removing only removes and needs no key; a group's documents are its
owner's to sign, so taking a member out asks for the owner's Trust.
"""

from __future__ import annotations

import logging
import os

from fusevault.errors import CorruptData, InvalidInput, Replayed
from fusevault.store import Store, tombstone
from fusevault.vault.format import inside
from fusevault.vault.format.layout import Layout, checked_id
from fusevault.vault.model import grants, groups, shapes, sharing, users
from fusevault.vault.model.trust import Trust
from fusevault.vault.services.opening import hold

log = logging.getLogger(__name__)


def remove_user(layout: Layout, store: Store, name: str) -> list[str]:
    """``name`` and every document of theirs, in one transaction; refused while they own
    files or groups, are a member of a group, or are the only user.  Returns the names of the
    users who had shared files with them: each is asked (an unsigned request, said at their
    next mount: rotation.py ``_request``) to give those files new keys with ``unshare``."""
    user = users.find_user(store, name)
    # Its folder is removed below: an id that is no name fusevault makes ("../../x", planted, unsigned)
    # is refused here, before anything is changed (layout.py ``checked_id``, UnsafeId).
    checked_id("user", user["_id"])
    everyone = list(store.iter_type(users.USER))
    if len(everyone) == 1:
        raise InvalidInput(f"{name} is the only user of this vault")
    owned = users.owned_docs(store, user["_id"])
    files = [d for d in owned if d.get("type") == "node" and not d.get("delete")
             and d["_id"] != user["root"]]
    if files:
        raise InvalidInput(f"{name} still has {len(files)} files and folders: "
                           "delete them or move them to another user first")
    owns = [g["groupname"] for g in shapes.well_formed(store, groups.GROUP) if g["owner"] == user["_id"]]
    if owns:
        raise InvalidInput(f"{name} owns the group(s) {', '.join(owns)}: remove them first")
    # A membership ends only as the group's owner signs it (`group member remove`):
    # a user document that is merely missing (withheld by the store's writer) is
    # not told from a removal, so no device takes anyone out of a group by it.
    member = [g["groupname"] for g in shapes.well_formed(store, groups.GROUP)
              if user["_id"] in (g.get("users") or {})]
    if member:
        raise InvalidInput(f"{name} is a member of the group(s) {', '.join(member)}: take them out first "
                           "(`fusevault group member remove GROUP USER`, the group owner's passphrase)")
    lock = hold(layout)  # not while a mount serves the vault
    try:
        shares = [d for d in store.iter_type(sharing.SHARE) if d.get("grantee") == user["_id"]]
        changes = [tombstone(d) for d in [user, *owned, *shares]]
        changes += sharing.rotations(store, [sharing.grant_of(d) for d in shares])
        store.put_many(changes)  # one transaction
        store.sync()
        # What is left there (the .vf of files in their trash) no document names any more.
        # Under the vault root only: a symbolic link users/<id> -> elsewhere is refused, never followed.
        try:
            inside.remove_tree(layout.root, ["users"], user["_id"])
        except FileNotFoundError:
            pass  # never had a folder here (as the rmtree before, which ignored it)
        except (OSError, CorruptData) as err:
            log.warning("the folder of removed user %s is left: %s", name, err)
    finally:
        os.close(lock)
    names = {d["_id"]: d.get("username") for d in everyone}
    return sorted({str(names.get(d.get("owner")) or d.get("owner")) for d in shares})


def group_base(group: dict, owner: Trust, removing: bool = False) -> dict:
    """What a member change of ``group`` (the store's body) signs over: the newest body of it this device
    admitted or signed.  That is the store's body if its owner signed it and this device admits it (no
    older than, nor concurrent with, one seen here), else this device's copy of the newest one
    (vault/model/group_copies.py), or, if the two were signed apart, the members both keep.  Re-signing
    a replayed body would make it the newest everywhere, a removed member back for good (attack round
    12); refusing would let a member who writes the vault folder keep himself in by a replay (round 13
    (2)), and leave a group signed apart on two devices changed by none.  With no copy here (a new
    device, one from before copies), a removal (``removing``) still signs over her signed store body, the
    member out, with a vector above every body seen: anyone a newer body had removed is back in it
    (docs/SECURITY.md)."""
    name = group.get("groupname")
    fresh = owner.fresh
    if fresh is not None and fresh.copies.damaged is not None:
        raise CorruptData(f"this device's copy of your groups {fresh.copies.path} is not used: "
                          f"{fresh.copies.damaged}; nothing was signed over group {name} (remove that file "
                          "to go on without it)")
    if fresh is not None and group.get("_id") in fresh.stale:
        raise CorruptData(f"this device's copy of group {name} ({fresh.copies.path}) is older than a body "
                          "of it this device saw (an older copy put back): nothing was signed over it "
                          "(remove that file to go on without it)")
    signed = grants.signed_by_owner(owner, group, "group")
    if fresh is None:
        if not signed:
            raise Replayed(f"group {name} in the store is not signed by its owner: refused to sign over it "
                           "(see `fusevault status` alarms); the store's writer may have replaced it")
        return group
    if signed and fresh.admit(group, "group", "nothing was signed over it"):
        return group
    owner.save()  # the alarm, and what was seen, stay on this device
    if fresh.was_deleted(fresh.record_id(group)):  # never sign a group she removed back to life
        raise Replayed(f"group {name} was removed (as this device saw): the store's body is a replay; "
                       "nothing was signed over it")
    copy = fresh.copy_of(str(group.get("_id")))
    if copy is not None:  # the newest body she saw: the store's is a replay, or not hers
        return {**copy, "_rev": group.get("_rev")}
    if not signed:
        raise Replayed(f"group {name} in the store is not signed by its owner: refused to sign over it "
                       "(see `fusevault status` alarms); the store's writer may have replaced it")
    kept = fresh.copies.bodies.get(str(group.get("_id")))
    if kept is not None and fresh.made_apart(fresh.record_id(group), [kept, group]):
        # Her two bodies signed apart (the server withheld one from the other device): the one signed now,
        # above both, keeps no one either removed and no right either took away.
        owner.alarms.warn("group-joined", str(group.get("_id")),
                          f"group {name}: two bodies of it were signed on devices that had not seen each "
                          "other's; the one signed now keeps only the members both keep, with the rights "
                          "both give (add again any one the other device added)")
        return {**kept, "users": groups.common_members(kept, group), "_rev": group.get("_rev")}
    if fresh.concurrent(fresh.record_id(group)):
        raise Replayed(f"group {name} in the store is concurrent with one this device saw (signed on devices "
                       "that had not seen each other's): refused to sign over it; sign it on the device that "
                       "saw both and try again")
    if removing:  # no copy: her older body, the member out, above all seen (a removal is never blocked)
        owner.alarms.warn("group-rebuilt", str(group.get("_id")),
                          f"group {name}: the store holds an older body of it and this device kept no copy "
                          "of the newest; the removal was signed over the older body (members a newer body "
                          "had removed are in it again: check `fusevault group list`)")
        return group
    raise Replayed(f"group {name} in the store is older than one this device saw and this device kept no "
                   "copy of the newest: a replay, refused to sign over it; put its newest body back (or "
                   "sign it on the device that saw it) and try again")


def remove_member(layout: Layout, store: Store, group: dict, user: dict, owner: Trust) -> None:
    """Take ``user`` out of ``group``, signed by its owner (``owner``, unlocked)."""
    group = group_base(group, owner, removing=True)
    # Their keys go now; the files get new keys at their owners' next unlock.
    lost = [g for g in sharing.all_grants(store) if g.group and g.grantee == group["_id"]]
    groups.set_member(store, group, user, None, sharing.rotations(store, lost, owner.sign), sign=owner.sign)
    owner.save()  # the older bodies of the group are replays on this device from now
    sharing.drop_group_keys(layout, group["_id"], user["_id"])


def user_rows(store: Store) -> list[dict]:
    """Every user, by name: id, uid, when made, groups (name:permission), unlock TTL."""
    all_groups = list(shapes.well_formed(store, groups.GROUP))
    rows = []
    for user in sorted(store.iter_type(users.USER), key=lambda u: u["username"]):
        mine = sorted(f"{g['groupname']}:{g['users'][user['_id']]}" for g in all_groups
                      if user["_id"] in g.get("users", {}))
        rows.append({"name": user["username"], "id": user["_id"], "uid": user.get("uid"),
                     "created_at": user.get("created_at"), "groups": mine,
                     "passphrase_expiry_ttl": user.get("passphrase_expiry_ttl")})
    return rows


def group_rows(store: Store) -> list[dict]:
    """Every group, by name: id, owner's name, when made, members' names and permissions."""
    names = {u["_id"]: u["username"] for u in store.iter_type(users.USER)}
    return [{"name": g["groupname"], "id": g["_id"], "owner": names.get(g["owner"], g["owner"]),
             "created_at": g.get("created_at"),
             "members": {names.get(u, u): p for u, p in sorted(g.get("users", {}).items())}}
            for g in sorted(shapes.well_formed(store, groups.GROUP), key=lambda g: g["groupname"])]
