"""The ``fusevault`` command."""

from __future__ import annotations

import argparse
import json
import logging
import os
import pwd
import subprocess
import sys
import time
from pathlib import Path

from fusevault import (
    __version__,
    cli_accounts,
    cli_agent,
    cli_check,
    cli_files,
    cli_guard,
    cli_help,
    cli_history,
    cli_links,
    cli_recovery,
    cli_sharing,
    cli_status,
    cli_sync,
    cli_transfer,
    passphrase,
    paths,
)
from fusevault.errors import InvalidInput, MountPointError, SaveFailed

log = logging.getLogger("fusevault")

EPILOG = """\
examples:
  fusevault init ~/vault                 create a vault (asks a passphrase twice)
  fusevault mount ~/vault ~/Private      mount it; returns once it is ready
  fusevault history ~/Private/notes.txt  its versions; see also restore, trash
  fusevault send report.pdf              hand a file to someone (they `fusevault receive`)

Passphrases never go on the command line: give them at the prompt, in
FUSEVAULT_PASSPHRASE, or with --passphrase-fd N / --passphrase-file F.
"""


def login_name() -> str:
    """The caller's login name: of their uid, else $USER or $LOGNAME (a uid with no
    passwd entry, as in some containers), else "user"."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("USER") or os.environ.get("LOGNAME") or "user"


def _passphrase_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("passphrase (default: $FUSEVAULT_PASSPHRASE or a prompt)")
    group.add_argument("--passphrase-fd", type=int, metavar="N", help="read it from file descriptor N")
    group.add_argument("--passphrase-file", metavar="FILE", help="read it from FILE")


def build_parser() -> argparse.ArgumentParser:
    parser = cli_help.GroupedHelp(
        prog="fusevault", description="An end-to-end encrypted drive, mounted with FUSE.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"fusevault {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    parser.add_argument("--runtime-dir", help="sockets of running mounts ($FUSEVAULT_RUNTIME_DIR)")
    parser.add_argument("--state-dir", help="logs ($FUSEVAULT_STATE_DIR)")
    parser.add_argument("--config-dir", help="settings ($FUSEVAULT_CONFIG_DIR)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=argparse.ArgumentParser)

    def command(name: str, help: str, example: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, epilog=f"example:\n  {example}",
                              formatter_class=argparse.RawDescriptionHelpFormatter)

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
    cli_sync.credential_options(p)
    _passphrase_options(p)
    cli_recovery.output_options(p, at_init=True)

    p = command("mount", "unlock a vault and mount it", "fusevault mount ~/vault ~/Private")
    p.add_argument("vault", type=Path)
    p.add_argument("mountpoint", type=Path)
    p.add_argument("--user", help="which user of the vault (default: the only one)")
    p.add_argument("--foreground", "-f", action="store_true", help="stay attached, log to stderr")
    p.add_argument("--allow-other", action="store_true",
                   help="a shared mount (root): every Linux user mapped with `user add --uid` "
                        "unlocks their own keys in it with `fusevault unlock`")
    p.add_argument("--allow-other-users", action="store_true",
                   help="your drive, usable by other Linux users (a service, a container) as far as "
                        "its mode bits allow, checked by the kernel; a non-root user needs "
                        "user_allow_other in /etc/fuse.conf")
    p.add_argument("-o", dest="options", action="append", default=[], metavar="OPTION[,OPTION...]",
                   help="mount options as in /etc/fstab: allow_other (= --allow-other-users), "
                        "default_permissions (always on)")
    _passphrase_options(p)

    p = command("unmount", "save everything and unmount", "fusevault unmount ~/Private")
    p.add_argument("mountpoint", type=Path)

    p = command("passwd", "change a user's passphrase (re-wraps the master key only)",
                "FUSEVAULT_PASSPHRASE=old FUSEVAULT_NEW_PASSPHRASE=new fusevault passwd ~/vault")
    p.add_argument("vault", type=Path)
    p.add_argument("--user")
    _passphrase_options(p)
    p.add_argument("--new-passphrase-fd", type=int, metavar="N")
    p.add_argument("--new-passphrase-file", metavar="FILE")
    p.add_argument("--recovery", action="store_true",
                   help="forgot the passphrase: give the recovery key's 24 words instead")
    cli_recovery.input_options(p)

    p = command("info", "show format, users and sizes without the passphrase", "fusevault info ~/vault")
    p.add_argument("vault", type=Path)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    cli_history.add_commands(command, _passphrase_options)
    cli_transfer.add_commands(command)
    cli_links.add_commands(command, _passphrase_options, cli_transfer.relay_option)
    cli_files.add_commands(command, _passphrase_options)
    cli_status.add_commands(command)
    cli_accounts.add_commands(command, _passphrase_options)
    cli_sharing.add_commands(command, _passphrase_options)
    cli_agent.add_commands(command, _passphrase_options)
    cli_sync.add_commands(command)
    cli_check.add_commands(command, _passphrase_options)
    cli_recovery.add_commands(command, _passphrase_options)
    cli_help.add_commands(command)
    return parser


def cmd_init(args: argparse.Namespace) -> int:
    from fusevault.crypto import recovery
    from fusevault.store import open_store
    from fusevault.store.couch import strip_credentials
    from fusevault.vault.format import layout
    from fusevault.vault.model import meta_files, users

    layout.check_new(args.vault)  # before asking for a passphrase twice
    if args.join:
        return _join(args)
    store_config: dict = {"kind": "local"}
    if args.couchdb:
        from fusevault.store.couch import CouchStore

        url = strip_credentials(args.couchdb)
        CouchStore(args.couchdb, create=True).close()
        store_config = {"kind": "couchdb", "url": url}
    secret = passphrase.get(args.passphrase_fd, args.passphrase_file, confirm=True,
                            prompt="New passphrase: ", about=_about(args.vault, args.user))
    output = cli_recovery.Output(args) if cli_recovery.wanted_at_init(args) else None
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


def _about(vault: Path, user: str | None) -> str:
    """Which vault (and user) a passphrase is for, as a systemd password agent shows it."""
    where = f"vault {os.path.abspath(vault)}"
    return f"{where} (user {user})" if user else where


def cmd_mount(args: argparse.Namespace) -> int:
    from fusevault.fs import daemon, mount

    _mount_options(args)
    mountpoint = mount.prepare(args.vault, args.mountpoint)
    secret = None
    if args.allow_other:
        if os.geteuid() != 0:
            raise InvalidInput("a shared mount (--allow-other) is root's to make: run it as root")
        if args.user:
            raise InvalidInput("a shared mount serves every user with a uid: leave out --user")
        if args.allow_other_users or args.options:
            raise InvalidInput("--allow-other (each user unlocks their own keys) takes no -o and no "
                               "--allow-other-users (others use one user's drive)")
    else:
        paths.control_socket(mountpoint)  # a runtime folder others could reach: refused before asking
        secret = passphrase.get(args.passphrase_fd, args.passphrase_file, about=_about(args.vault, args.user))
    mount = {"vault": str(args.vault), "mountpoint": str(args.mountpoint), "user": args.user,
             "allow_other": args.allow_other, "allow_other_users": args.allow_other_users,
             "verbose": args.verbose,
             "dirs": {"runtime": args.runtime_dir, "state": args.state_dir, "config": args.config_dir}}
    answer = daemon.launch(args.argv, mount, secret, foreground=args.foreground)
    if answer == "ok":
        print(f"mounted {args.vault} at {mountpoint}")
        return 0
    code, _, message = answer.partition(" ")
    log.error("%s", message or "the mount server exited before it was ready")
    return int(code) if code.isdigit() else 1


def _mount_options(args: argparse.Namespace) -> None:
    """``-o a,b`` as in /etc/fstab, into the flags they stand for; then whether
    FUSE lets this user open the mount to others (before a passphrase or a fork)."""
    from fusevault.fs.mount import user_allow_other

    for option in ",".join(args.options).split(","):
        if option == "allow_other":
            args.allow_other_users = True
        elif option not in ("", "default_permissions"):
            raise InvalidInput(f"unknown mount option {option!r}: -o takes allow_other, default_permissions")
    if args.allow_other_users and os.geteuid() != 0 and not user_allow_other():
        raise MountPointError("only root may let other users into a mount, unless /etc/fuse.conf has a "
                              "line `user_allow_other`: add it (as root), or mount as root")


def cmd_unmount(args: argparse.Namespace) -> int:
    from fusevault.fs import control
    from fusevault.mounts import mount_path

    mountpoint = mount_path(args.mountpoint)
    _check_unmount(args.mountpoint)
    pid = None
    socket_path = paths.socket_of(mountpoint)  # before: a server that exits removes it
    try:
        pid = control.request(socket_path, {"cmd": "status"}).get("pid")
    except (OSError, ValueError):
        pass  # no server answering (it died): unmounting still cleans up
    result = subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True, text=True)
    if result.returncode != 0:
        if "busy" in result.stderr.lower():
            raise MountPointError(f"{args.mountpoint} is busy: close the files and shells using it")
        raise MountPointError(f"cannot unmount {args.mountpoint}: {result.stderr.strip()}")
    if pid:
        deadline = time.monotonic() + 600
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if _running(pid):
            raise SaveFailed(f"{args.mountpoint} is unmounted, but its server (pid {pid}) is still "
                             "saving after 10 minutes: see the mount's log")
    _check_saved(socket_path, args.mountpoint)
    print(f"unmounted {args.mountpoint}")
    return 0


def _check_saved(socket_path: Path, shown: Path) -> None:
    """Never say "unmounted" over data the server could not save."""
    from fusevault.fs.mount import outcome_path

    outcome = outcome_path(socket_path)
    try:
        failures = outcome.read_text().strip()
    except FileNotFoundError:
        return
    outcome.unlink(missing_ok=True)
    raise SaveFailed(f"unmounted {shown}, but {failures} thing(s) could not be saved: "
                     "see the mount's log")


def _check_unmount(path: Path) -> None:
    """Only a fusevault mount, and only its owner's (or root's)."""
    from fusevault import mounts
    from fusevault.errors import PermissionDenied

    found = mounts.find(path)
    if found is None:
        raise MountPointError(f"nothing is mounted at {path}")
    if not found.fusevault:
        raise MountPointError(f"{path} is not a fusevault mount ({found.fstype}): "
                              "fusevault unmounts only its own; use umount or fusermount3 -u")
    if not found.mine():
        if found.owner == 0:
            raise PermissionDenied(f"{path} is root's {'shared ' if found.shared else ''}mount: "
                                   "only root can unmount it")
        raise PermissionDenied(f"{path} is {_user_name(found.owner)}'s mount: "
                               "only they or root can unmount it")


def _user_name(uid: int | None) -> str:
    try:
        return pwd.getpwuid(uid).pw_name if uid is not None else "another user"
    except KeyError:
        return f"uid {uid}"


def _running(pid: int) -> bool:
    """True while the server saves and exits; an exited server may linger as a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as proc:
            return proc.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def cmd_passwd(args: argparse.Namespace) -> int:
    from fusevault.vault.model import users
    from fusevault.vault.services.opening import open_vault

    _, store = open_vault(args.vault)  # before asking for anything
    try:
        user = users.find_user(store, args.user)
        about = _about(args.vault, user["username"])
        if args.recovery or args.recovery_fd is not None or args.recovery_file is not None:
            # Forgotten: the words open the master key (checked before a new passphrase is asked).
            words = cli_recovery.read_secret(args.recovery_fd, args.recovery_file)
            users.recover(user, words)
            new = passphrase.get(args.new_passphrase_fd, args.new_passphrase_file, env=passphrase.ENV_NEW,
                                 confirm=True, prompt="New passphrase: ", about=about)
            users.reset_passphrase(store, user, words, new)
            print(f"passphrase reset with the recovery key for user {user['username']} "
                  "(the recovery key still works)")
            return 0
        old = passphrase.get(args.passphrase_fd, args.passphrase_file, prompt="Current passphrase: ",
                             about=about)
        new = passphrase.get(args.new_passphrase_fd, args.new_passphrase_file, env=passphrase.ENV_NEW,
                             confirm=True, prompt="New passphrase: ", about=about)
        if new == old:
            raise InvalidInput("the new passphrase is the same as the old one")
        users.change_passphrase(store, user, old, new)
    finally:
        store.close()
    print(f"passphrase changed for user {user['username']}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from fusevault.vault.services import info

    facts = info.gather(args.vault)
    if args.json:
        print(json.dumps(facts, indent=1))
    else:
        for key, value in facts.items():
            print(f"{key.replace('_', ' ')}: {value}")
    return 0


COMMANDS = {"init": cmd_init, "mount": cmd_mount, "unmount": cmd_unmount,
            "passwd": cmd_passwd, "info": cmd_info, **cli_history.COMMANDS,
            **cli_transfer.COMMANDS, **cli_links.COMMANDS, **cli_files.COMMANDS,
            **cli_status.COMMANDS, **cli_accounts.COMMANDS, **cli_sharing.COMMANDS,
            **cli_agent.COMMANDS, **cli_sync.COMMANDS, **cli_recovery.COMMANDS, **cli_help.COMMANDS,
            **cli_check.COMMANDS}


def _setup_logging(verbose: bool) -> None:
    from fusevault import systemd

    handler = logging.StreamHandler(sys.stderr)
    if systemd.under_journal():  # the journal adds the unit's name and reads the level
        handler.setFormatter(systemd.JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("fusevault: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])


def main(argv: list[str] | None = None) -> int:
    os.umask(0o077)  # every file and folder fusevault makes is its user's alone (fs/server.py too)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # a mount's server shows them in `ps`
    if not args.command:
        parser.print_help()
        return 2
    _setup_logging(args.verbose)
    logging.getLogger("httpx").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    paths.override("runtime", args.runtime_dir)
    paths.override("state", args.state_dir)
    paths.override("config", args.config_dir)
    return cli_guard.run(lambda: COMMANDS[args.command](args), args.command, args.verbose)
