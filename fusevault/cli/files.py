"""``fusevault config | watch | export``: the watched source folder and the dump folder."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
from pathlib import Path

from fusevault.cli.options import Command, mount_option, offline_options, passphrase_options
from fusevault.encoding import shown
from fusevault.errors import InvalidInput
from fusevault.target import ask
from fusevault.vault.model.settings import FOLDERS, KEYS

log = logging.getLogger("fusevault")

SETTINGS_HELP = """\
settings:
  source_dir_to_watch      folder whose new and changed files are imported (none: off)
  import_into              folder inside the vault they go to (default: Imported)
  delete_file_from_source  on: remove a source file once its import is safe (default: off)
  settle_seconds           how long a file must stay unchanged before import (default: 2)
  target_dir_to_dump       where export and receive put files by default
  peer_dir_for_storage     where peers' encrypted data is kept
  passphrase_expiry_ttl    how long the passphrase stays unlocked: 30 min, 8 hr, 10 day (3653 day at most)
"""


def _where(p: argparse.ArgumentParser) -> None:
    mount_option(p)
    offline_options(p)


def add_commands(command: Command) -> None:
    p = command("config", "show or change your settings (watched folder, dump folder, TTL)",
                "fusevault config set source_dir_to_watch ~/Inbox\n"
                "  fusevault config set delete_file_from_source on\n"
                "  fusevault config show")
    p.epilog = f"{SETTINGS_HELP}\n{p.epilog}"
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print the settings",
                              epilog="example:\n  fusevault config show --json",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    show.add_argument("--json", action="store_true", help="machine-readable output")
    _where(show)
    change = actions.add_parser("set", help="change one setting",
                                epilog=f"{SETTINGS_HELP}\nexample:\n"
                                       "  fusevault config set target_dir_to_dump ~/Exported",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    change.add_argument("key", choices=KEYS, metavar="KEY")
    change.add_argument("value", metavar="VALUE")
    _where(change)
    confirm = actions.add_parser("confirm", help="apply the settings that arrived from elsewhere "
                                 "(shown by `config show` as pending) on this device",
                                 epilog="example:\n  fusevault config show\n  fusevault config confirm",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    confirm.add_argument("--yes", action="store_true", help="apply them without asking")
    _where(confirm)

    p = command("watch", "import the watched folder into a vault that is not mounted (foreground)",
                "fusevault watch ~/vault       (a mount watches the folder itself)")
    p.add_argument("vault", type=Path)
    p.add_argument("--user", help="which user of the vault")
    passphrase_options(p)

    p = command("export", "write decrypted copies of files or folders to an ordinary folder",
                "fusevault export ~/Private/taxes            (to target_dir_to_dump)\n"
                "  fusevault export ~/Private/photo.jpg /media/usb")
    p.add_argument("path", help="a file or folder in the mount (with --vault: relative to its root)")
    p.add_argument("dest", nargs="?", help="folder to write into (default: target_dir_to_dump)")
    p.add_argument("--overwrite", action="store_true", help="replace files that exist there")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    offline_options(p)


def cmd_config(args: argparse.Namespace) -> int:
    changes = {}
    if args.action == "set":
        value = args.value
        if args.key in FOLDERS and value.strip().lower() not in ("", "none", "off", "-"):
            value = os.path.abspath(os.path.expanduser(value))
        changes[args.key] = value
    if args.action == "confirm":
        return _confirm(args)
    answer = ask(args, {"cmd": "config", "set": changes})
    settings, pending = answer["settings"], answer.get("pending") or {}
    if getattr(args, "json", False):
        print(json.dumps({**settings, "pending": pending}, indent=1))
        return 0
    if args.action == "set":
        print(f"{args.key} = {_show(settings[args.key])}")
        return 0
    for key in KEYS:
        waiting = f"   (pending: {_show(pending[key])})" if key in pending else ""
        print(f"{key:<24} {_show(settings[key])}{waiting}")
    if pending:
        print(_PENDING if answer.get("signed", True) else _UNSIGNED)
    return 0


_PENDING = ("pending: changed elsewhere (another device or a peer), not applied here until you "
            "run `fusevault config confirm`")
_UNSIGNED = ("pending: your user document holds settings NOT signed with your key (someone else "
             "wrote them): check them before `fusevault config confirm`")


def _confirm(args: argparse.Namespace) -> int:
    """Show what waits, ask (unless --yes), then apply it on this device."""
    answer = ask(args, {"cmd": "config"})
    pending = answer.get("pending") or {}
    if not pending:
        print("nothing to confirm")
        return 0
    for key, value in pending.items():
        print(f"{key:<24} {_show(answer['settings'][key])} -> {_show(value)}")
    if not answer.get("signed", True):
        print(_UNSIGNED)
    if not args.yes:
        if not os.isatty(0):
            raise InvalidInput("confirm the settings above with `fusevault config confirm --yes`")
        if input("apply these on this device? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing changed")
            return 0
    answer = ask(args, {"cmd": "config", "confirm": True, "expect": pending})
    print(f"applied: {', '.join(sorted(pending))}")
    return 0


def _show(value: object) -> str:
    """A setting's value: a pending one is a store writer's text until she confirms it, shown on
    its one line (a line break in it forged lines in the list she is asked to check: 26c (9))."""
    if value is None:
        return "(not set)"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, dict):
        return f"{shown(value.get('ttl'))} {shown(value.get('unit'))}"
    return shown(value)


def cmd_export(args: argparse.Namespace) -> int:
    dest = os.path.abspath(os.path.expanduser(args.dest)) if args.dest else None
    # A symbolic link is exported as a link (as cp -a copies it), so its own name is kept.
    answer = ask(args, {"cmd": "export", "path": args.path, "dest": dest, "overwrite": args.overwrite},
                 ("path",), timeout=None, follow=False)
    if args.json:
        print(json.dumps(answer, indent=1))
    else:
        print(f"exported {answer['files']} file(s), {answer['bytes']} bytes, to {answer['exported']}")
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    import trio

    from fusevault import passphrase
    from fusevault.imports.watcher import ImportService
    from fusevault.tasks import TaskState
    from fusevault.vault.services.opening import hold, unlock_vault
    from fusevault.vault.services.placing import NoKernel
    from fusevault.vault.volume import Volume

    secret = passphrase.get(args.passphrase_fd, args.passphrase_file)
    unlocked = unlock_vault(args.vault, args.user, secret)
    hold(unlocked.layout)
    if unlocked.user.get("source_dir_to_watch") is None:
        raise InvalidInput("there is no folder to watch: set one with "
                           f"`fusevault config set source_dir_to_watch FOLDER --vault {args.vault}`")
    volume = Volume.load(unlocked.layout, unlocked.store, unlocked.key, unlocked.root())

    async def run() -> None:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(ImportService(volume, TaskState("import"), NoKernel()).run)
                with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                    async for _ in signals:
                        log.info("stopping")
                        nursery.cancel_scope.cancel()
                        break
        finally:
            with trio.CancelScope(shield=True):
                await volume.close()

    trio.run(run)
    return 0


COMMANDS = {"config": cmd_config, "watch": cmd_watch, "export": cmd_export}
