"""``fusevault status``: the mounted vaults and what their background tasks are doing."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fusevault import mounts as mount_table
from fusevault import paths
from fusevault.cli.options import Command
from fusevault.encoding import one_line, shown
from fusevault.mounts import mount_path, visible_mounts


def add_commands(command: Command) -> None:
    p = command("status", "the mounted vaults, their background tasks and last errors",
                "fusevault status\n  fusevault status ~/Private --json")
    p.add_argument("mountpoint", nargs="?", type=Path, help="only this mount")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def gather(only: Path | None, cmd: str = "status") -> list[dict]:
    """Each mount's answer to ``cmd`` (every mount the caller may ask, or the one at ``only``)."""
    wanted = str(mount_path(only)) if only is not None else None
    found = []
    for mountpoint in visible_mounts():
        if wanted is not None and mountpoint != wanted:
            continue
        from fusevault.fs import control  # imports trio: only when there is a mount to ask

        try:
            answer = control.request(paths.socket_of(Path(mountpoint)), {"cmd": cmd}, timeout=5)
        except (OSError, ValueError):
            answer = {"error": "the mount does not answer"}
        found.append({"mountpoint": mountpoint, **answer})
    return found


def _age(since: float) -> str:
    return span(time.time() - since)


def span(seconds: float) -> str:
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"


def answers(args: argparse.Namespace, cmd: str = "status") -> list[dict] | None:
    """The mounts' answers to ``cmd`` for a text listing; None once printed as JSON."""
    from fusevault.errors import MountPointError

    mounts = gather(args.mountpoint, cmd)
    if args.mountpoint is not None and not mounts:
        there = mount_table.find(args.mountpoint)
        if there is not None and there.fusevault:
            raise MountPointError(f"the vault at {args.mountpoint} is another user's mount: only they "
                                  "(or root) can ask it")
        raise MountPointError(f"no vault is mounted at {args.mountpoint}")
    if args.json:
        print(json.dumps({"mounts": mounts}, indent=1))
        return None
    return mounts


def cmd_status(args: argparse.Namespace) -> int:
    mounts = answers(args)
    if mounts is None:
        return 0
    if not mounts:
        print("no vault is mounted")
    for m in mounts:
        if "error" in m:
            print(f"{shown(m['mountpoint'])}: {one_line(m['error'])}")
            continue
        # A mount point is any local user's choice (his own FUSE mount of type fuse.fusevault, with
        # a line break in its name, is listed too: attack round 26c (3)); none writes a line.
        who = "shared by its users" if m.get("shared") else f"user {shown(m.get('user'))}"
        print(f"{shown(m['mountpoint'])}: vault {shown(m.get('vault'))}, {who}, pid {m['pid']}, "
              f"up {_age(m['since'])}, {m['open_files']} open file(s)")
        if not m.get("unlocked"):
            print("  locked: run `fusevault unlock` to use it again")
        for who in m.get("unlocked", []):
            left = who["expires"]
            until = "until unmounted" if left is None else f"for {span(left - time.time())} more"
            print(f"  unlocked {shown(who['user'])} {_age(who['since'])} ago, {until}")
        for alarm in m.get("alarms", []):
            times = f" ({alarm['count']} times)" if alarm["count"] > 1 else ""
            # An alarm, a summary, an error: one line each, whatever names from outside they hold.
            print(f"  WARNING {_age(alarm['first'])} ago{times}: {one_line(alarm['text'])}")
        for name, task in sorted(m.get("tasks", {}).items()):
            line = f"  {name:<8} {task['state']} for {_age(task['since'])}"
            if task["summary"]:
                line += f"; last: {one_line(task['summary'])}"
            print(line)
            if task["last_error"]:
                error = one_line(task["last_error"])
                print(f"  {'':<8} last error {_age(task['last_error_at'])} ago: {error}")
    return 0


COMMANDS = {"status": cmd_status}
