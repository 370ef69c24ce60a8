"""``fusevault link ...``: capability links to files and folders, and drop boxes."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from fusevault.cli.options import Command, offline_options, relay_option
from fusevault.encoding import shown, shown_time
from fusevault.errors import InvalidInput
from fusevault.links import LONGEST_EXPIRY

UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
         "d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800, "weeks": 604800}

LINK_HELP = """\
A link carries its key after '#': whoever has the link has its rights.  On a
machine shared with others, pass a link as '-' and give it on standard input
(command lines are visible to other users)."""


def parse_duration(text: str) -> float:
    """``90s``, ``30 min``, ``8h``, ``7 days``, ``2w`` -> seconds."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*", text.lower())
    if not found or found.group(2) not in UNITS or float(found.group(1)) <= 0:
        raise InvalidInput("a duration is a number and a unit: s, min, h, day or w (like '7 day')")
    seconds = float(found.group(1)) * UNITS[found.group(2)]
    if seconds > LONGEST_EXPIRY:  # a link made, then exit 70, then every `link list` too: 49t (3)
        raise InvalidInput(f"a link lives {LONGEST_EXPIRY // 86400} days at most (about ten years)")
    return seconds


def _link_text(value: str) -> str:
    return sys.stdin.readline().strip() if value == "-" else value


def add_commands(command: Command) -> None:
    p = command("link", "share a file or folder with anyone who has a link, or open a drop box",
                "fusevault link create ~/Private/report.pdf --expires 7d\n"
                "  fusevault link get 'https://relay.example/l/ID#r1.KEY' ~/Downloads\n"
                "  fusevault link create ~/Private/Inbox --append   (a drop box)")
    p.epilog = f"{LINK_HELP}\n\n{p.epilog}"
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, help: str, example: str) -> argparse.ArgumentParser:
        return actions.add_parser(name, help=help, description=help, epilog=f"example:\n  {example}",
                                  formatter_class=argparse.RawDescriptionHelpFormatter)

    q = action("create", "publish the current version of a file or folder, print its link",
               "fusevault link create ~/Private/photos --expires 2w")
    q.add_argument("path", help="a file or folder in the mount (with --vault: relative to its root)")
    q.add_argument("--append", action="store_true",
                   help="a drop box: others add files to this folder without seeing what is in it")
    q.add_argument("--expires", metavar="DURATION",
                   help="the link stops working after this (7d, 12h, 30min; 3653d, ten years, at most)")
    relay_option(q)
    offline_options(q)

    q = action("get", "download what a link shares, verified, into a folder",
               "fusevault link get 'https://relay.example/l/ID#r1.KEY' ~/Downloads")
    q.add_argument("link", help="the link, or - to read it from standard input")
    q.add_argument("dest", nargs="?", type=Path, help="folder to write into (default: here)")
    q.add_argument("--overwrite", action="store_true", help="replace files that exist there")

    q = action("push", "drop a file or folder into a drop box, or publish a new version of your link",
               "fusevault link push ./scan.pdf 'https://relay.example/l/ID#a1.KEY'\n"
               "  fusevault link push ~/Private/report.pdf ID   (your own link: its new version)")
    q.add_argument("path", help="a local file or folder (drop box), or a path in your vault (your link)")
    q.add_argument("link", help="the link (- reads it from standard input), or the id of your own link")
    offline_options(q)

    q = action("list", "your links: what they publish, until when, how often opened",
               "fusevault link list --json")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    offline_options(q)

    q = action("revoke", "end one of your links at once (the server deletes what it holds)",
               "fusevault link revoke ID")
    q.add_argument("link", help="the link's id (see `link list`), or the link itself")
    offline_options(q)

    q = action("collect", "take what was dropped into your drop boxes now (a mount does it every minute)",
               "fusevault link collect")
    offline_options(q)


def cmd_link(args: argparse.Namespace) -> int:
    return {"create": _create, "get": _get, "push": _push, "list": _list,
            "revoke": _revoke, "collect": _collect}[args.action](args)


def _ask(args: argparse.Namespace, request: dict, path_keys: tuple[str, ...] = ()) -> dict:
    from fusevault.target import ask

    return ask(args, request, path_keys, timeout=None)


def _create(args: argparse.Namespace) -> int:
    from fusevault.target import named_vault

    expires_in = parse_duration(args.expires) if args.expires else None
    # A vault named (--vault or $FUSEVAULT_VAULT): the path may be relative to its root (54b (3)).
    path = args.path if named_vault(args) else os.path.abspath(os.path.expanduser(args.path))
    answer = _ask(args, {"cmd": "link_create", "path": path, "server": args.relay,
                         "drop": args.append, "expires_in": expires_in}, ("path",))
    print(answer["link"])
    what = "drop box for" if answer["kind"] == "drop" else "link to"
    until = f", until {_when(answer['expires_at'])}" if answer["expires_at"] else ""
    print(f"({what} {shown(answer['path'] or '/')}, id {answer['item']}{until})", file=sys.stderr)
    return 0


def _get(args: argparse.Namespace) -> int:
    from fusevault.links import capability, content
    from fusevault.links.client import LinkClient
    from fusevault.transfer.progress import transfer_progress

    link = capability.parse(_link_text(args.link))
    if link.kind != capability.SHARE:
        raise InvalidInput("that is a drop-box link: it adds files (`fusevault link push PATH LINK`), "
                           "it cannot read them")
    dest = args.dest or Path.cwd()
    with LinkClient(link.server) as client:
        seq, manifest = capability.open_share(link, client.latest(link.item, ("read", link.read_key)))
        total = sum(int(e.get("size", 0)) for e in content.entries(manifest))
        with transfer_progress() as progress:
            task = progress.add_task(f"fetching {shown(str(manifest['name']))}", total=total)
            top = content.write_local(client, link.read_key, link.item, manifest, dest, args.overwrite,
                                      advance=lambda n: progress.advance(task, n))
    if top.name != str(manifest["name"]):  # a view's name at a mount's root (content.away_from_root_views)
        print(f"{shown(str(manifest['name']))} arrives as {shown(top.name)}: the root of the drive keeps "
              "that name for a view (shares, groups, history)")
    print(f"fetched {shown(str(top))} (version {seq})")
    return 0


def _push(args: argparse.Namespace) -> int:
    from fusevault.links import capability

    text = _link_text(args.link)
    link = capability.parse(text) if "#" in text else None  # without "#": the id of one of yours
    if link is not None and link.kind == capability.DROP:
        return _drop(link, Path(args.path))
    item = link.item if link is not None else text
    answer = _ask(args, {"cmd": "link_push", "link": item, "path": _vault_path(args)}, ("path",))
    print(f"published version {answer['seq']} of {shown(answer['path'])}")
    return 0


def _vault_path(args: argparse.Namespace) -> str:
    return args.path if args.vault else os.path.abspath(os.path.expanduser(args.path))


def _drop(link, path: Path) -> int:
    from fusevault.links import capability, content
    from fusevault.links.client import LinkClient

    sources = content.local_sources(path)
    with LinkClient(link.server) as client:
        manifest, blocks = content.upload(client, link.item, link.first, sources)
        client.add_version(link.item, link.first, {**capability.seal_drop(link, manifest), "blocks": blocks})
    files = sum(1 for s in sources if s.kind == "file")
    print(f"dropped {path.name} ({files} file(s)); only the box's owner can open it")
    return 0


def _list(args: argparse.Namespace) -> int:
    links = _ask(args, {"cmd": "link_list"})["links"]
    if args.json:
        print(json.dumps(links, indent=1))
        return 0
    if not links:
        print("no links (make one with `fusevault link create PATH`)")
    for found in links:
        state = found["state"]
        if state == "live":
            opened = f"last opened {shown(found['accessed_at'])}" if found["accessed_at"] else "never opened"
            state = f"{found['versions']} version(s) on the server, {opened}"
        kind = "drop box" if found["kind"] == "drop" else "share"
        until = f"until {_when(found['expires_at'])}" if found["expires_at"] else "no expiry"
        # A path in her vault may hold a name a sender or a dropper gave: shown().
        print(f"{shown(found['item'])}  {kind:<8}  /{shown(found['path'])}  ({until}; {state})")
        print(f"    {found['link']}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    answer = _ask(args, {"cmd": "link_revoke", "link": _link_text(args.link)})
    if answer.get("files"):  # a drop box takes in what was dropped before it ends (53t (2))
        print(f"took in {answer['files']} dropped file(s) first")
    for note in answer.get("notes", []):  # a mount of before said none
        print(f"fusevault: {shown(str(note))}", file=sys.stderr)
    print(f"revoked {shown(answer['item'])} (/{shown(answer['path'])}): the server no longer opens it")
    return 0


def _collect(args: argparse.Namespace) -> int:
    answer = _ask(args, {"cmd": "link_collect"})
    print(f"took in {answer['files']} dropped file(s)")
    for error in answer["errors"]:  # the mount shows a dropper's names already; a mount of before did not
        print(f"fusevault: {shown(str(error))}", file=sys.stderr)
    return 1 if answer["errors"] else 0


def _when(seconds: float) -> str:
    """An expiry as printed: one beyond what time_t holds (a record from before the bound, 49t (3))
    is "never", never a `link list` that exits 70."""
    return shown_time(seconds)


COMMANDS = {"link": cmd_link}
