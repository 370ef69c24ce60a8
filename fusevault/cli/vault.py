"""``fusevault init | passwd | info``: making a vault, a user's passphrase, what a vault holds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fusevault import passphrase
from fusevault.cli import recovery as recovery_cli
from fusevault.cli.options import Command, credential_options, login_name, passphrase_options
from fusevault.cli.options import about as _about
from fusevault.encoding import shown
from fusevault.errors import InvalidInput


def add_init(command: Command) -> None:
    p = command("init", "create a vault and its first user", "fusevault init ~/vault --user alice")
    p.add_argument("vault", type=Path)
    p.add_argument("--user", default=login_name(), help="user name (default: your login name)")
    p.add_argument("--couchdb", metavar="URL",
                   help="keep the metadata documents in this CouchDB database (http://host:port/db)")
    p.add_argument("--join", metavar="URL",
                   help="a new replica of the vault a peer database holds (with --user: whose "
                        "passphrase opens it); this device syncs with it from then on")
    p.add_argument("--peer-name", default="origin", help="the peer's name with --join (default: origin)")
    p.add_argument("--padding", choices=("padme", "none"), default="padme",
                   help="size padding: padme (default) stores each file as long as one of few sizes "
                        "(at most 12%% more, 3.2%% from 64 KiB), so its exact size does not show; "
                        "none stores exact sizes")
    credential_options(p)
    passphrase_options(p)
    recovery_cli.output_options(p, at_init=True)


def add_commands(command: Command) -> None:
    p = command("passwd", "change a user's passphrase (re-wraps the master key only)",
                "FUSEVAULT_PASSPHRASE=old FUSEVAULT_NEW_PASSPHRASE=new fusevault passwd ~/vault")
    p.add_argument("vault", type=Path)
    p.add_argument("--user")
    passphrase_options(p)
    p.add_argument("--new-passphrase-fd", type=int, metavar="N")
    p.add_argument("--new-passphrase-file", metavar="FILE")
    p.add_argument("--recovery", action="store_true",
                   help="forgot the passphrase: give the recovery key's 24 words instead")
    recovery_cli.input_options(p)

    p = command("info", "show format, users and sizes without the passphrase", "fusevault info ~/vault")
    p.add_argument("vault", type=Path)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def cmd_init(args: argparse.Namespace) -> int:
    from fusevault.crypto import recovery
    from fusevault.store import open_store
    from fusevault.vault.format import layout
    from fusevault.vault.model import meta_files, users

    layout.check_new(args.vault)  # before asking for a passphrase twice
    if args.join:
        return _join(args)
    store_config: dict = {"kind": "local"}
    if args.couchdb:
        # Only here: the couchdb package costs an `init` a third of its start (it loads pkg_resources).
        from fusevault.store.couch import CouchStore, split_url, strip_credentials

        split_url(args.couchdb)  # one line for a mistyped URL, before strip_credentials reads it (50d (4))
        url = strip_credentials(args.couchdb)
        CouchStore(args.couchdb, create=True).close()
        store_config = {"kind": "couchdb", "url": url}
    secret = passphrase.get(args.passphrase_fd, args.passphrase_file, confirm=True,
                            prompt="New passphrase: ", about=_about(args.vault, args.user))
    output = recovery_cli.Output(args) if recovery_cli.wanted_at_init(args) else None
    recovery_secret = recovery.new_secret() if output is not None else None
    try:
        created = layout.create(args.vault, store_config, padding=args.padding)
        store = open_store(created.root, store_config)
        try:
            users.create_user(created, store, args.user, secret, recovery_secret=recovery_secret)
            meta_files.reconcile(created, store)
        finally:
            store.close()
    except BaseException:
        if output is not None:
            output.abandon()
        raise
    print(f"created vault {args.vault} for user {args.user}")
    if output is not None:
        print(output.write(recovery_secret))
    elif not args.no_recovery_key:
        print(f"no recovery key was made (not run on a terminal): `fusevault recovery-key create "
              f"{args.vault}` makes one")
    return 0


def _join(args: argparse.Namespace) -> int:
    import trio

    from fusevault.sync.join import join
    from fusevault.vault.model.peers import credentials_source

    if args.couchdb:
        raise InvalidInput("--join makes a replica with its own store: leave out --couchdb")
    if args.recovery_key or args.recovery_key_fd is not None or args.recovery_key_file is not None:
        raise InvalidInput("--join brings your user (and any recovery key) from the peer: "
                           "`fusevault recovery-key create` makes a new one")
    source = credentials_source(args.credentials_file, args.credentials_env)
    secret = passphrase.get(args.passphrase_fd, args.passphrase_file, prompt=f"Passphrase of {args.user}: ",
                            about=_about(args.vault, args.user))
    got = trio.run(join, args.vault, args.join, source, args.user, secret, args.peer_name, args.padding)
    print(f"joined: {args.vault} is a replica of the vault at {args.join} for user {args.user} "
          f"({got['documents']} documents, {got['records']} blocks); mount it to sync")
    return 0


def cmd_passwd(args: argparse.Namespace) -> int:
    from fusevault.vault.model import key_memory, users
    from fusevault.vault.services.opening import open_vault

    _, store = open_vault(args.vault)  # before asking for anything
    try:
        # Her newest keys this device saw, not an older body the store may offer (key_memory).
        user, _ = key_memory.newest(args.vault, users.find_user(store, args.user))
        about = _about(args.vault, user["username"])
        if args.recovery or args.recovery_fd is not None or args.recovery_file is not None:
            # Forgotten: the words open the master key (checked before a new passphrase is asked).
            words = recovery_cli.read_secret(args.recovery_fd, args.recovery_file)
            users.recover(user, words)
            new = passphrase.get(args.new_passphrase_fd, args.new_passphrase_file, env=passphrase.ENV_NEW,
                                 confirm=True, prompt="New passphrase: ", about=about)
            users.reset_passphrase(store, args.vault, user, words, new)
            print(f"passphrase reset with the recovery key for user {shown(user['username'])} "
                  "(the recovery key still works)")
            return 0
        old = passphrase.get(args.passphrase_fd, args.passphrase_file, prompt="Current passphrase: ",
                             about=about)
        opened = users.check_passphrase(args.vault, user, old)  # a wrong one said before a new one is asked
        new = passphrase.get(args.new_passphrase_fd, args.new_passphrase_file, env=passphrase.ENV_NEW,
                             confirm=True, prompt="New passphrase: ", about=about)
        if new == old:
            raise InvalidInput("the new passphrase is the same as the old one")
        users.change_passphrase(store, args.vault, user, old, new, opened)
    finally:
        store.close()
    print(f"passphrase changed for user {shown(user['username'])}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from fusevault.vault.services import info

    facts = info.gather(args.vault)
    if args.json:
        print(json.dumps(facts, indent=1))
    else:
        for key, value in facts.items():
            # vault.json's facts are the vault folder's text: each on its own line, never a line of its own.
            print(f"{key.replace('_', ' ')}: {shown(value)}")
    return 0


COMMANDS = {"init": cmd_init, "passwd": cmd_passwd, "info": cmd_info}
