"""``fusevault peer ...`` and ``fusevault sync status``: replicas of a vault.

Peers are CouchDB databases (a CouchDB server, pouchdb-server, or anything
speaking its replication protocol).  A running mount replicates with every
peer in the background; these commands change the list, which the mount
picks up within a second, and show how replication is doing.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from functools import partial
from pathlib import Path

from fusevault.cli.options import VAULT_ENV, Command, credential_options, passphrase_options, vault_option
from fusevault.cli.status import answers, span
from fusevault.encoding import one_line, shown
from fusevault.errors import AlreadyExists, InvalidInput

# trio, the sync package and the vault's modules are imported by the functions that use
# them: app.py imports this module for its parsers, and every command builds them.


def add_commands(command: Command) -> None:
    p = command("peer", "the CouchDB databases this vault syncs with",
                "fusevault peer add nas http://nas.local:5984/vault --vault ~/vault\n"
                "  fusevault peer list --vault ~/vault")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = actions.add_parser("add", help="sync with one more CouchDB database (made if missing)")
    q.add_argument("name")
    q.add_argument("url", help="http://host:port/database")
    q.add_argument("--store-only", action="store_true",
                   help="another vault, kept encrypted under your peer_dir_for_storage for its "
                        "owner (a backup buddy): never opened, no key held")
    q.add_argument("--user", help="whose peer_dir_for_storage, with --store-only (default: the only user)")
    q.add_argument("--offline", action="store_true",
                   help="add it without reaching it now (the mount syncs once it can)")
    credential_options(q)
    vault_option(q)
    passphrase_options(q)  # --store-only: the folder this device confirmed, under her key
    q = actions.add_parser("list", help="the peers")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    vault_option(q)
    q = actions.add_parser("confirm", help="sync with a peer this device did not add itself "
                           "(after checking where it points)")
    q.add_argument("name")
    q.add_argument("--yes", action="store_true", help="without asking")
    vault_option(q)
    q = actions.add_parser("remove", help="stop syncing with a peer (what it has stays there)")
    q.add_argument("name")
    vault_option(q)

    p = command("sync", "how syncing with peers is going, per mount and peer",
                "fusevault sync status\n  fusevault sync status ~/Private --json")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    q = actions.add_parser("status", help="last contact, pending up and down, errors")
    q.add_argument("mountpoint", nargs="?", type=Path, help="only this mount")
    q.add_argument("--json", action="store_true", help="machine-readable output")


def cmd_peer(args: argparse.Namespace) -> int:
    from fusevault.vault.model import peers as peer_docs
    from fusevault.vault.services.opening import open_vault

    if args.vault is None:
        raise InvalidInput(f"which vault? pass --vault PATH or set ${VAULT_ENV}")
    layout, store = open_vault(args.vault)
    try:
        if layout.store.get("kind", "local") != "local":
            raise InvalidInput("this vault keeps its documents in CouchDB already: it has no peers")
        if args.action == "add":
            _add(layout, store, args)
        elif args.action == "confirm":
            _confirm(layout, store, args)
        elif args.action == "remove":
            count = peer_docs.remove_peer(store, layout.root, args.name)
            store.sync()
            print(f"removed peer {args.name}" if count == 1 else f"removed {count} peers named {args.name}")
        else:
            _print_peers(peer_docs.peers(store), args.json)
    finally:
        store.close()
    return 0


def _add(layout, store, args: argparse.Namespace) -> None:
    """Check the peer (reachable, and not another vault's database), then save it."""
    import trio

    from fusevault.sync.probe import check_peer
    from fusevault.vault.model import peers as peer_docs

    source = peer_docs.credentials_source(args.credentials_file, args.credentials_env)
    dump_to = _storage_dir(layout, store, args) if args.store_only else None
    url = peer_docs.url_of(peer_docs.parse_url(args.url))
    for peer in peer_docs.peers(store):  # refused before anything is asked of the server
        if peer["name"] == args.name:
            raise AlreadyExists(f"there is already a peer named {args.name}")
        if peer_docs.url_of(peer) == url:
            raise AlreadyExists(f"{url} is already the peer {peer['name']}")
    if args.offline:
        state = "not checked (--offline): the mount syncs once it reaches it"
    else:
        held = trio.run(partial(check_peer, url, source, layout.vault_id, store_only=args.store_only))
        state = {"empty": "reachable, empty", "this vault": "reachable, holds this vault",
                 "another vault": "reachable, holds its owner's vault"}[held]
    doc = peer_docs.add_peer(store, args.name, args.url, source, dump_to)
    store.sync()
    peer_docs.confirm_peer(layout.root, doc)
    kept = f"; kept encrypted in {dump_to}" if dump_to else ""
    print(f"added peer {args.name}: {peer_docs.url_of(doc)}, {state}{kept} (a running mount "
          "syncs with it within a second)")


def _confirm(layout, store, args: argparse.Namespace) -> None:
    """Show a peer (URL, credentials source, folder) and, once agreed, let this device sync with it."""
    from fusevault.vault.model import peers as peer_docs

    peer = peer_docs.find_peer(store, args.name, layout.root)
    if peer_docs.is_confirmed(layout.root, peer):
        print(f"peer {args.name} is already confirmed on this device")
        return
    _print_peers([peer], False)
    if not args.yes:
        if not os.isatty(0):
            raise InvalidInput(f"check the peer above, then `fusevault peer confirm {args.name} --yes`")
        if input("sync with it from this device? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing changed")
            return
    peer_docs.confirm_peer(layout.root, peer)
    print(f"confirmed peer {args.name} on this device (a running mount syncs with it within a second)")


def _storage_dir(layout, store, args: argparse.Namespace) -> str:
    """Her ``peer_dir_for_storage`` as this device confirmed it, under her key: a writer of the vault
    folder signed her user document with a key of his naming any folder, and the document's own
    signature said nothing (attack round 23b (6), as round 22b (5) for ``receive --vault``)."""
    from fusevault import passphrase
    from fusevault.vault.model import confirmed, users

    user = users.find_user(store, args.user)
    secret = passphrase.get(args.passphrase_fd, args.passphrase_file, about=str(args.vault))
    key = users.unlock_here(layout.root, user, secret, store=store)
    base = confirmed.load(store, key, layout.root).peer_dir_for_storage
    if not base:
        raise InvalidInput(f"{user['username']} has no peer_dir_for_storage: set it with "
                           "`fusevault config set peer_dir_for_storage DIR` first")
    return str(Path(base) / args.name)


def _print_peers(peers: list[dict], as_json: bool) -> None:
    from fusevault.vault.model import peers as peer_docs

    rows = [{"name": p["name"], "url": peer_docs.url_of(p), "host": p["host"], "port": p["port"],
             "credentials": _source(p.get("credentials")),
             "path_to_dump_chunks": p.get("path_to_dump_chunks")} for p in peers]
    if as_json:
        print(json.dumps(rows, indent=1))
        return
    if not rows:
        print("no peers: add one with `fusevault peer add NAME URL`")
    for row in rows:
        # A store writer's text (a planted peer), shown to her in `peer confirm` too (26c (8)).
        dump = row["path_to_dump_chunks"]
        kept = f"  stored for its owner in {shown(dump)}" if dump else ""
        print(f"{shown(row['name']):<16} {shown(row['url'])}  credentials: {shown(row['credentials'])}{kept}")


def _source(source: dict | None) -> str:
    if not source:
        return "none"
    return f"file {shown(source['file'])}" if "file" in source else f"${shown(source['env'])}"


def cmd_sync(args: argparse.Namespace) -> int:
    mounts = answers(args, "sync-status")
    if mounts is None:
        return 0
    if not mounts:
        print("no vault is mounted: peers sync while their vault is mounted")
    for mount in mounts:
        _print_mount(mount)
    return 0


def _print_mount(mount: dict) -> None:
    if "error" in mount:
        print(f"{shown(mount['mountpoint'])}: {one_line(mount['error'])}")
        return
    if mount.get("peers") is None:
        print(f"{shown(mount['mountpoint'])}: its documents are kept in CouchDB; no peer sync")
        return
    print(f"{shown(mount['mountpoint'])}: {len(mount['peers'])} peer(s)")
    for peer in mount["peers"]:
        contact = f"{span(time.time() - peer['last_contact'])} ago" if peer["last_contact"] else "never"
        down = "?" if peer["pending_down"] is None else peer["pending_down"]
        # A peer's name is a store writer's text, its error a server's: neither writes a line of its own.
        print(f"  {shown(peer['name']):<12} {peer['state']:<16} last contact {contact}, pending "
              f"up {peer['pending_up']} down {down}; sent {peer['records_up']} blocks "
              f"{peer['docs_up']} docs, received {peer['records_down']} blocks {peer['docs_down']} docs")
        if peer["error"]:
            print(f"  {'':<12} error: {one_line(peer['error'])}")


COMMANDS = {"peer": cmd_peer, "sync": cmd_sync}
