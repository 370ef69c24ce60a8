"""``fusevault share``, ``unshare`` and ``shares``: files for other users of the vault."""

from __future__ import annotations

import argparse
import json
import os

from fusevault.cli.options import Command, mount_option, offline_options
from fusevault.encoding import shown


def add_commands(command: Command) -> None:
    p = command("share", "let another user or a group of this vault read or change a file or folder",
                "fusevault share ~/Private/report.pdf --with bob --perm READ\n"
                "  fusevault share ~/Private/Team --with @team --perm WRITE")
    p.add_argument("path", help="a file or folder in the mount (with --vault: relative to its root)")
    p.add_argument("--with", dest="grantee", required=True, metavar="USER|@GROUP",
                   help="a user of the vault, or @ and a group")
    p.add_argument("--perm", required=True, help="READ, or WRITE (reading and writing)")
    offline_options(p)

    p = command("unshare", "take a share back: later versions are sealed under a new key",
                "fusevault unshare ~/Private/report.pdf --with bob")
    p.add_argument("path", help="a file or folder in the mount (with --vault: relative to its root)")
    p.add_argument("--with", dest="grantee", required=True, metavar="USER|@GROUP")
    offline_options(p)

    p = command("shares", "what you share, and what others share with you",
                "fusevault shares\n  fusevault shares ~/Private/report.pdf --json")
    p.add_argument("path", nargs="?", help="only the shares of this file or folder")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    mount_option(p)
    offline_options(p)


def _path(args: argparse.Namespace) -> str | None:
    from fusevault.target import named_vault

    if args.path is None:
        return None
    # A vault named (--vault or $FUSEVAULT_VAULT): the path may be relative to its root (54b (3)).
    return args.path if named_vault(args) else os.path.abspath(os.path.expanduser(args.path))


def _ask(args: argparse.Namespace, request: dict) -> dict:
    from fusevault.target import ask

    return ask(args, request, ("path",), timeout=None)


def cmd_share(args: argparse.Namespace) -> int:
    answer = _ask(args, {"cmd": "share", "path": _path(args), "with": args.grantee, "perm": args.perm})
    print(f"shared {shown(answer['path'])} with {shown(answer['with'])} ({answer['perm']}, "
          f"{answer['files']} file(s) and folder(s))")
    for name, fingerprint in sorted((answer.get("fingerprints") or {}).items()):
        # What to compare with them out of band: the keys their files are sealed to.
        print(f"  {shown(name)}: key fingerprint {fingerprint or '(not pinned: nothing sealed to them)'}")
    return 0


def cmd_unshare(args: argparse.Namespace) -> int:
    answer = _ask(args, {"cmd": "unshare", "path": _path(args), "with": args.grantee})
    print(f"{shown(answer['with'])} no longer has {shown(answer['path'])}; its key changed "
          f"({answer['files']} file(s) and folder(s))")
    if answer.get("missing"):
        # Taken back from what this device knows: the store had lost the grant (see fusevault status).
        print(f"note: the store no longer had the share of {shown(answer['path'])} with "
              f"{shown(answer['with'])} (deleted or withheld: the store may have been tampered with); "
              "its keys were taken back anyway")
    return 0


def cmd_shares(args: argparse.Namespace) -> int:
    shares = _ask(args, {"cmd": "shares", "path": _path(args)})["shares"]
    if args.json:
        print(json.dumps(shares, indent=1))
        return 0
    if not shares:
        print("nothing is shared")
    for entry in shares:
        if entry["mine"]:
            # Paths hold names senders gave, grantees and owners are store writers' names: shown().
            print(f"{shown(entry['path'])}  ->  {shown(entry['with'])}  {shown(entry['perm'])}")
        else:
            print(f"{shown(entry['path'])}  <-  {shown(entry['owner'])}  {shown(entry['perm'])}  "
                  f"(via {shown(entry['with'])})")
    return 0


COMMANDS = {"share": cmd_share, "unshare": cmd_unshare, "shares": cmd_shares}
