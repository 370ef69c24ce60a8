"""``fusevault user ...`` and ``fusevault group ...``: the people of a vault.

Whoever may write the vault directory administers its users and groups, as
root administers /etc/passwd; what each user can read is still decided by
their own keys.  A group's documents are signed by the group's owner (a
membership counts only then, vault/model/grants.py), so making a group and
changing its members asks for the owner's passphrase; removing a user or a
group only removes, and needs no key.  Every command here first makes the seed 003 meta.inf files
agree with the documents (``meta_files.reconcile``).  This module parses and
prints; removing a user or a member is vault/services/accounts.py's.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from fusevault import passphrase
from fusevault.cli.options import VAULT_ENV, Command, passphrase_options, vault_option
from fusevault.encoding import shown, shown_time
from fusevault.errors import InvalidInput

if TYPE_CHECKING:  # the vault's modules are imported by the commands (app.py: a cheap parser)
    from fusevault.store import Store
    from fusevault.vault.format.layout import Layout
    from fusevault.vault.model.trust import Trust


def _list_and_remove(actions, list_help: str, remove_help: str) -> None:
    q = actions.add_parser("list", help=list_help)
    q.add_argument("--json", action="store_true", help="machine-readable output")
    vault_option(q)
    q = actions.add_parser("remove", help=remove_help)
    q.add_argument("name")
    vault_option(q)


def add_commands(command: Command) -> None:
    p = command("user", "add, list and remove the users of a vault",
                "fusevault user add bob --uid 1001 --vault ~/vault\n"
                "  fusevault user list --vault ~/vault")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = actions.add_parser("add", help="add a user (asks for their new passphrase twice)")
    q.add_argument("name")
    q.add_argument("--uid", type=int, help="the Linux uid this user is (default: yours)")
    vault_option(q)
    # Their passphrase, never yours: adding a user needs no key of anyone's.
    group = q.add_argument_group(f"the new user's passphrase (default: ${passphrase.ENV_NEW} or a prompt)")
    group.add_argument("--new-passphrase-fd", type=int, metavar="N", help="read it from file descriptor N")
    group.add_argument("--new-passphrase-file", metavar="FILE", help="read it from FILE")
    _list_and_remove(actions, "users, their uids and groups",
                     "remove a user who owns no files and no group")
    q = actions.add_parser("show", help="a user's id, uid, groups and key fingerprint (compare it with them)",
                           description="With your passphrase (the user of your uid, or --as), also "
                           "whether their keys are the ones you pinned when you first met them.")
    q.add_argument("name")
    q.add_argument("--as", dest="caller", metavar="USER", help="you, to compare with your pins "
                   "(default: the user of your uid)")
    q.add_argument("--no-passphrase", action="store_true", help="do not unlock: no comparison with pins")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    vault_option(q)
    passphrase_options(q)
    q = actions.add_parser("trust", help="pin a user's current keys after checking their fingerprint",
                           description="Use after `user show` warned that their keys changed and you "
                           "compared the new fingerprint with them out of band.  A mount of yours "
                           "running meanwhile keeps the old pin until it is mounted again.")
    q.add_argument("name")
    q.add_argument("--fingerprint", required=True, help='the fingerprint they read to you ("xxxx xxxx ...")')
    q.add_argument("--as", dest="caller", metavar="USER", help="you (default: the user of your uid)")
    vault_option(q)
    passphrase_options(q)

    p = command("group", "add groups and set who is in them, with READ or WRITE",
                "fusevault group add team --vault ~/vault\n"
                "  fusevault group member add team bob --perm READ,WRITE --vault ~/vault\n"
                "  (add and member add/remove ask for the group owner's passphrase: they sign it)")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = actions.add_parser("add", help="add a group (its owner is a member with READ,WRITE; "
                           "asks for the owner's passphrase, who signs it)")
    q.add_argument("name")
    q.add_argument("--owner", help="the user who owns it (default: the user of your uid)")
    vault_option(q)
    passphrase_options(q)
    _list_and_remove(actions, "groups and their members", "remove a group")
    q = actions.add_parser("member", help="add, change or remove a member")
    members = q.add_subparsers(dest="member_action", metavar="ACTION", required=True)
    r = members.add_parser("add", help="add a member, or change their permission "
                           "(asks for the group owner's passphrase)")
    r.add_argument("group")
    r.add_argument("user")
    r.add_argument("--perm", required=True, help="READ, WRITE or READ,WRITE")
    vault_option(r)
    passphrase_options(r)
    r = members.add_parser("remove", help="take a member out of a group "
                           "(asks for the group owner's passphrase)")
    r.add_argument("group")
    r.add_argument("user")
    vault_option(r)
    passphrase_options(r)


@contextmanager
def administering(args: argparse.Namespace) -> Iterator[tuple[Layout, Store]]:
    from fusevault.vault.model import meta_files
    from fusevault.vault.services.opening import open_vault

    if args.vault is None:
        raise InvalidInput(f"which vault? pass --vault PATH or set ${VAULT_ENV}")
    layout, store = open_vault(args.vault)
    try:
        meta_files.reconcile(layout, store)
        yield layout, store
        meta_files.reconcile(layout, store)
    finally:
        store.close()


def cmd_user(args: argparse.Namespace) -> int:
    from fusevault.vault.model import users
    from fusevault.vault.services import accounts

    with administering(args) as (layout, store):
        if args.action == "add":
            if args.uid is not None and not 0 <= args.uid < 2**32:
                raise InvalidInput(f"{args.uid} is not a Linux uid")
            secret = passphrase.get(args.new_passphrase_fd, args.new_passphrase_file, env=passphrase.ENV_NEW,
                                    confirm=True, prompt=f"New passphrase for {args.name}: ",
                                    about=f"user {args.name} of vault {os.path.abspath(args.vault)}")
            users.create_user(layout, store, args.name, secret, uid=args.uid)
            print(f"added user {args.name}")
        elif args.action == "list":
            _print_users(store, args.json)
        elif args.action == "show":
            _show_user(args, store)
        elif args.action == "trust":
            _trust_user(args, store)
        else:
            sharers = accounts.remove_user(layout, store, args.name)
            print(f"removed user {args.name}")
            if sharers:
                # Their files get new keys only from their owners (signed): say whose turn it is.
                print(f"{', '.join(map(shown, sharers))} shared files with {args.name}: each gives them new "
                      f"keys with `fusevault unshare PATH --with {args.name}` "
                      "(their next mount names the files)")
    return 0


def _print_users(store: Store, as_json: bool) -> None:
    from fusevault.vault.services import accounts

    rows = accounts.user_rows(store)
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    for row in rows:
        # Every field a store writer wrote is shown(): a user name may hold a line break.
        ttl = row["passphrase_expiry_ttl"] or {}
        print(f"{shown(row['name']):<16} uid {shown(row['uid']):<6} created {_date(row['created_at'])}  "
              f"unlock for {shown(ttl.get('ttl'))} {shown(ttl.get('unit'))}  "
              f"groups: {', '.join(map(shown, row['groups'])) or '-'}")


def _unlock(args: argparse.Namespace, store: Store, user: dict, layout: Layout | None = None) -> Trust:
    """``user``'s keys, with their passphrase (the usual options or $FUSEVAULT_PASSPHRASE)."""
    from fusevault.vault.model import users
    from fusevault.vault.model.freshness import Freshness
    from fusevault.vault.model.trust import Trust

    secret = passphrase.get(args.passphrase_fd, args.passphrase_file,
                            prompt=f"Passphrase of {user['username']}: ",
                            about=f"user {user['username']} of vault {os.path.abspath(args.vault)}")
    key = users.unlock_here(args.vault, user, secret, store=store)
    if key.identity is None:
        raise InvalidInput(f"{user['username']} has no key pairs yet: they are made at their next mount")
    trust = Trust(store, key, root=args.vault)
    if layout is not None:  # the grants it signs are remembered on this device (vault/model/freshness.py)
        trust.fresh = Freshness.open(key, layout.root, layout.vault_id, trust.alarms)
    return trust


def _show_user(args: argparse.Namespace, store: Store) -> None:
    from fusevault.vault.model import groups, shapes, users
    from fusevault.vault.model.trust import doc_fingerprint, self_signed

    user = users.find_user(store, args.name)
    mine = sorted(f"{g['groupname']}:{g['users'][user['_id']]}"
                  for g in shapes.well_formed(store, groups.GROUP) if user["_id"] in (g.get("users") or {}))
    row = {"name": user["username"], "id": user["_id"], "uid": user.get("uid"), "groups": mine,
           "fingerprint": doc_fingerprint(user), "self_signed": self_signed(user), "pinned": None}
    if not args.no_passphrase:
        trust = _unlock(args, store, users.find_user(store, args.caller))
        trust.observe(store.iter_type(users.USER))
        trust.save()
        pinned = trust.fingerprint_of(user["_id"])
        row["pinned"] = pinned
        row["matches_pin"] = pinned == row["fingerprint"]
    if args.json:
        print(json.dumps(row, indent=1))
        return
    print(f"{shown(row['name'])}  id {shown(row['id'])}  uid {shown(row['uid'])}  "
          f"groups: {', '.join(map(shown, mine)) or '-'}")
    signed = "self-signed" if row["self_signed"] else "NOT self-signed"
    print(f"key fingerprint {row['fingerprint']}  ({signed})")
    if row["pinned"] is not None and not row["matches_pin"]:
        print(f"WARNING: you pinned {row['pinned']} for {shown(row['name'])}: their keys changed; check with "
              f"them, then `fusevault user trust {shown(row['name'])} --fingerprint ...`")
    elif row["pinned"] is not None:
        print("matches the keys you pinned")


def _trust_user(args: argparse.Namespace, store: Store) -> None:
    from fusevault.vault.model import users
    from fusevault.vault.model.trust import doc_fingerprint

    user = users.find_user(store, args.name)
    trust = _unlock(args, store, users.find_user(store, args.caller))
    if user["_id"] == trust.user_id:
        raise InvalidInput("your own keys are always trusted")
    trust.repin(user, args.fingerprint)
    trust.save()
    store.sync()
    print(f"pinned the keys of {shown(user['username'])} ({doc_fingerprint(user)})")


def _date(when: int) -> str:
    return shown_time(when, "%Y-%m-%d", late="unknown")  # the store's word: any number (49t (3))


def cmd_group(args: argparse.Namespace) -> int:
    from fusevault.vault.model import groups, users
    from fusevault.vault.services import accounts

    with administering(args) as (layout, store):
        if args.action == "add":
            owner = users.find_user(store, args.owner)
            trust = _unlock(args, store, owner, layout)
            groups.create_group(store, args.name, owner, trust.sign)
            trust.save()
            print(f"added group {args.name}, owned by {shown(owner['username'])}")
        elif args.action == "list":
            _print_groups(store, args.json)
        elif args.action == "remove":
            groups.remove_group(store, groups.find_group(store, args.name))
            print(f"removed group {args.name}")
        else:
            group = groups.find_group(store, args.group)
            user = users.find_user(store, args.user)
            owner = store.get(group["owner"])
            if owner is None:
                raise InvalidInput(f"the owner of group {args.group} is no longer a user: remove the group")
            trust = _unlock(args, store, owner, layout)
            if args.member_action == "add":
                group = accounts.group_base(group, trust)
                doc = groups.set_member(store, group, user, args.perm, sign=trust.sign)
                trust.save()
                print(f"{args.user} is in {args.group} with {shown(doc['users'][user['_id']])}")
            else:
                accounts.remove_member(layout, store, group, user, trust)
                print(f"{args.user} is no longer in {args.group}")
    return 0


def _print_groups(store: Store, as_json: bool) -> None:
    from fusevault.vault.services import accounts

    rows = accounts.group_rows(store)
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    if not rows:
        print("no groups")
    for row in rows:
        members = ", ".join(f"{shown(n)}:{shown(p)}" for n, p in sorted(row["members"].items()))
        print(f"{shown(row['name']):<16} owner {shown(row['owner']):<12} members: {members}")


COMMANDS = {"user": cmd_user, "group": cmd_group}
