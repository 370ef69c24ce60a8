"""``fusevault check VAULT [--repair]``: the CLI side of vault/services/check.py (fsck)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from fusevault import passphrase
from fusevault.cli.options import Command, passphrase_options
from fusevault.encoding import one_line
from fusevault.errors import Damaged, VaultInUse


def add_commands(command: Command) -> None:
    p = command("check", "verify every document and block of an unmounted vault (fsck); --repair",
                "fusevault check ~/vault\n  fusevault check ~/vault --repair --json")
    p.add_argument("vault", type=Path)
    p.add_argument("--user", help="which user (default: the only one)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--repair", action="store_true",
                   help="give each file whose newest version is damaged a new version with the contents "
                        "of its newest intact one; move files with no intact version to the trash "
                        "(nothing is deleted)")
    passphrase_options(p)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{int(n)} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def cmd_check(args: argparse.Namespace) -> int:
    import trio

    from fusevault.vault.format.layout import open_layout
    from fusevault.vault.services.opening import hold, unlock_vault

    layout = open_layout(args.vault)  # a missing vault is said before a passphrase is asked
    # What loading and reading refuse is in the report, by path: not said twice on stderr.
    for name in ("fusevault.alarms", "fusevault.vault.files.content"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        lock = hold(layout)
    except VaultInUse:
        raise VaultInUse(f"{args.vault} is mounted (or watched): unmount it, then check it") from None
    try:
        secret = passphrase.get(args.passphrase_fd, args.passphrase_file,
                                about=f"vault {os.path.abspath(args.vault)}")
        unlocked = unlock_vault(args.vault, args.user, secret)
        try:
            started = time.monotonic()
            report = trio.run(_run, unlocked, args.repair, not args.json and sys.stderr.isatty())
            seconds = time.monotonic() - started
        finally:
            unlocked.store.close()
    finally:
        os.close(lock)
    answer = report.as_dict()
    answer["user"] = unlocked.user["username"]
    answer["seconds"] = round(seconds, 3)
    answer["repaired"] = args.repair
    if args.json:
        print(json.dumps(answer, indent=1))
    else:
        _text(report, answer)
    if not report.clean:
        if not args.json:
            raise Damaged(f"{len(report.damaged)} damaged file(s)"
                          + (f" and {len(report.alarms)} refused document(s)" if report.alarms else "")
                          + ("" if args.repair else ": `fusevault check --repair` points them at their "
                             "last intact version"))
        return Damaged.exit_code
    return 0


async def _run(unlocked, repair: bool, bar: bool):
    import trio

    from fusevault.vault.services import check

    checker = check.Checker(unlocked.layout, unlocked.store, unlocked.key)
    broken = await trio.to_thread.run_sync(checker.read_nodes)
    volume = check.load_tree(unlocked.layout, unlocked.store, unlocked.key, unlocked.root(), broken,
                             checker.report)
    checker.trusting(volume)
    try:
        paths, guests = check.tree_paths(volume)
        steps = list(checker.files(paths, guests))
        await trio.to_thread.run_sync(_steps, steps, bar)
        if repair and volume is not None:
            rebuilt = await check.rebuild_folders(volume, checker.report)
            if rebuilt:
                await volume.save_all()  # loaded again: the rebuilt folders' entries hang in them now
                volume = check.load_tree(unlocked.layout, unlocked.store, unlocked.key, unlocked.root(),
                                         broken - rebuilt, checker.report)
            if volume is not None:
                await check.repair(volume, checker.report)
    finally:
        if volume is not None:
            await volume.close()
    return checker.report


def _steps(steps: list, bar: bool) -> None:
    if not bar:
        for step in steps:
            step()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("checking"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("check", total=len(steps))
        for step in steps:
            step()
            progress.advance(task)


def _text(report, answer: dict) -> None:
    from fusevault.vault.services.check import describe

    for state in report.damaged:
        print("\n".join(describe(state)))
    for alarm in report.alarms:
        print(f"refused: {one_line(alarm['text'])}")
    for note in report.notes:
        print(f"note: {one_line(note)}")
    counts = answer["checked"]
    print(f"checked {counts['nodes']} node(s), {counts['versions']} version(s), {counts['blocks']} block(s) "
          f"({_size(counts['bytes'])}) in {answer['seconds']:.1f} s; {len(report.damaged)} damaged file(s); "
          f"unreferenced in .vf files: {_size(answer['unreferenced_bytes'])} "
          f"({_size(answer['unreferenced_on_disk'])} on disk; `fusevault gc` frees what old versions held)")


COMMANDS = {"check": cmd_check}
