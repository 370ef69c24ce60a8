"""``fusevault history | restore | trash | gc | retention | upgrade``: the CLI side of version history."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from pathlib import Path

from fusevault.cli.options import Command, passphrase_options
from fusevault.encoding import shown
from fusevault.target import ask, named_vault


def _where(p: argparse.ArgumentParser) -> None:
    p.add_argument("--vault", type=Path,
                   help="a vault that is not mounted (paths are then relative to its root; "
                        "default: $FUSEVAULT_VAULT)")
    p.add_argument("--user", help="with --vault: which user")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    passphrase_options(p)


def add_commands(command: Command) -> None:
    p = command("history", "list the versions of a file (also of a deleted one)",
                "fusevault history ~/Private/report.odt")
    p.add_argument("path")
    _where(p)

    p = command("restore", "bring back an older version, or a deleted file, as the newest version",
                "fusevault restore ~/Private/report.odt --at 2026-11-20T18:00Z\n"
                "  fusevault restore ~/Private/old.txt            (out of the trash)\n"
                "  fusevault restore ~/Private/a.txt --at 2d --to ~/Private/a-before.txt")
    p.add_argument("path")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--at", metavar="TIME",
                      help="the newest version at TIME (2026-11-21T10:04:05Z, 2026-11-21, a "
                           ".versions name, or an age: 3h, 2d); default: the previous version")
    when.add_argument("--version", metavar="ID", help="a version id from `fusevault history`")
    p.add_argument("--to", metavar="DEST", help="write it as a new file here instead")
    _where(p)

    p = command("trash", "list deleted files that can still be restored",
                "fusevault trash ~/Private\n  fusevault trash ~/Private/projects --all")
    p.add_argument("place", nargs="?",
                   help="a folder in the mount: only what was deleted there (default: the whole vault)")
    p.add_argument("--all", action="store_true",
                   help="also programs' temporary files (*.lock, *.swp, *~, *-journal, *.part, ...)")
    _where(p)

    p = command("gc", "apply the retention policy now and free the space it releases",
                "fusevault gc ~/Private --dry-run")
    p.add_argument("place", nargs="?", help="any path in the mount (default: here)")
    p.add_argument("--dry-run", action="store_true",
                   help="only say what would be removed and how much space that would free")
    p.add_argument("--as-of", metavar="TIME", help="apply the policy as if it were TIME")
    _where(p)

    p = command("upgrade", "rewrite your files' manifests in the newest format now (not at their next edit)",
                "fusevault upgrade ~/Private\n  fusevault upgrade ~/vault      (a vault that is not mounted)")
    p.add_argument("place", nargs="?", help="the mount point or any path in it, or a vault that is not "
                                            "mounted (default: here)")
    _where(p)

    p = command("retention", "show or change your retention policy (or, --default, the vault's)",
                "fusevault retention ~/Private --keep-all 14 --daily 60 --weekly forever\n"
                "  sudo fusevault retention --default --keep-all 30 --vault /srv/vault")
    p.add_argument("place", nargs="?", help="any path in the mount (default: here)")
    whose = p.add_mutually_exclusive_group()
    whose.add_argument("--default", action="store_true",
                       help="the vault's default, for users without their own policy: set on the vault "
                            "directory (--vault) by whoever may write it (root for a shared mount)")
    whose.add_argument("--follow-default", action="store_true",
                       help="forget your own policy: follow the vault's default again")
    p.add_argument("--keep-every", type=int, metavar="MINUTES",
                   help="keep every version this many minutes (then one per minute; 1000000000 at most)")
    p.add_argument("--keep-all", type=int, metavar="DAYS",
                   help="keep one version per minute this many days (all of the last --keep-every minutes; "
                        "each number of days or weeks is 1000000 at most)")
    p.add_argument("--daily", type=int, metavar="DAYS", help="then one per day for this many days")
    p.add_argument("--weekly", metavar="WEEKS", help="then one per week this many weeks, or 'forever'")
    p.add_argument("--trash", type=int, metavar="DAYS", help="keep deleted files this many days")
    _where(p)


def _show(args: argparse.Namespace, answer: dict, text: Callable[[dict], None]) -> int:
    if args.json:
        print(json.dumps(answer, indent=1))
    else:
        text(answer)
    return 0


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def cmd_history(args: argparse.Namespace) -> int:
    from fusevault.vault.model.history import iso_time

    answer = ask(args, {"cmd": "history", "path": args.path}, ("path",))

    def text(a: dict) -> None:
        print(f"{'TIME':<24} {'SIZE':>10}  {'AUTHOR':<12} VERSION")
        for v in a["versions"]:
            # The author is a store writer's user name, a path any name a sender gave: shown().
            print(f"{iso_time(v['time']):<24} {_size(v['size']):>10}  {shown(v['author']):<12} "
                  f"{shown(v['id'][:12])}")

    return _show(args, answer, text)


def cmd_restore(args: argparse.Namespace) -> int:
    from fusevault.vault.model.history import iso_time

    request = {"cmd": "restore", "path": args.path, "at": args.at, "version": args.version,
               "to": args.to}
    answer = ask(args, request, ("path", "to"))

    def text(a: dict) -> None:
        v = a["version"]
        if v is None:
            print(f"restored {shown(a['restored'])} (an empty file)")
        else:
            print(f"restored {shown(a['restored'])} as it was at {iso_time(v['time'])} "
                  f"(version {v['id'][:12]})")

    return _show(args, answer, text)


def cmd_trash(args: argparse.Namespace) -> int:
    from fusevault.vault.model.history import iso_time

    answer = ask(args, {"cmd": "trash", "place": args.place, "all": args.all}, ("place",))

    def text(a: dict) -> None:
        if a["trash"]:
            print(f"{'DELETED':<24} {'SIZE':>10}  PATH")
        elif not a.get("hidden"):
            print("the trash is empty")
        for t in a["trash"]:
            # The date the trash counts from; a deleter's own date that differs is only said.
            dated = t.get("dated", t["deleted_at"])
            differs = abs(dated - t["deleted_at"]) >= 60 * 10**9
            said = f"  (dated {iso_time(dated)} by its deleter)" if differs else ""
            print(f"{iso_time(t['deleted_at']):<24} {_size(t['size']):>10}  {shown(t['path'])}{said}")
        if a.get("hidden"):
            print(f"({a['hidden']} temporary file(s) not shown: --all shows them)")

    return _show(args, answer, text)


def cmd_gc(args: argparse.Namespace) -> int:
    answer = ask(args, {"cmd": "gc", "dry_run": args.dry_run, "as_of": args.as_of}, timeout=None)

    def text(a: dict) -> None:
        verb, freed = ("would remove", "would be freed") if args.dry_run else ("removed", "freed")
        print(f"policy ({a.get('policy_source', 'yours')}): {a['policy']}")
        print(f"{verb} {a['versions_dropped']} old version(s) and {a['files_purged']} file(s) "
              f"from the trash; {_size(a['bytes_freed'])} {freed}; "
              f"{a['kept_open']} version(s) kept because they are open")
        if a.get("kept_unverified"):
            print(f"{a['kept_unverified']} file(s) kept whole: a block failed its check (`fusevault check`)")
        if a.get("kept_replayed"):
            print(f"{a['kept_replayed']} deleted file(s) kept whole: this device saw a newer state of them "
                  "than their deletion (a rollback: `fusevault status`)")
        if a.get("kept_changed"):
            print(f"{a['kept_changed']} file(s) left for the next run: they changed while they were "
                  "collected (sync brought another device's changes)")
        if a.get("unnamed_removed"):  # attack round 80c (1): a peer's records for no version of hers
            gone = "would be removed" if args.dry_run else "removed"
            print(f"{a['unnamed_removed']} content file(s) no document names {gone}: "
                  "records a peer sent for no version")

    return _show(args, answer, text)


def cmd_upgrade(args: argparse.Namespace) -> int:
    if args.vault is None and args.place is not None and (Path(args.place) / "vault.json").is_file():
        args.vault = Path(args.place)  # a vault directory, not a path in a mount
    answer = ask(args, {"cmd": "upgrade"}, timeout=None)

    def text(a: dict) -> None:
        failed = f" ({a['files_failed']} could not be read: `fusevault check`)" if a["files_failed"] else ""
        print(f"{a['files_rewritten']} file(s) rewritten in the newest format{failed}; "
              f"{a['digests_filled']} record digest(s) filled in")
        if a.get("blocks_unchecked"):
            print(f"{a['blocks_unchecked']} block(s) had no signed digest left to check them against "
                  "(versions from before digests, or whose documents an older gc dropped): taken as they are")

    _show(args, answer, text)
    return 5 if answer["files_failed"] else 0  # as CorruptData: some file is damaged


def cmd_retention(args: argparse.Namespace) -> int:
    changes: dict = {}
    if args.keep_all is not None:
        changes["keep_all_days"] = args.keep_all
    if args.keep_every is not None:
        changes["keep_all_minutes"] = args.keep_every
    if args.daily is not None:
        changes["daily_days"] = args.daily
    if args.weekly is not None:
        changes["weekly_weeks"] = None if args.weekly == "forever" else _whole(args.weekly)
    if args.trash is not None:
        changes["trash_days"] = args.trash
    if args.default:
        answer = _default_policy(named_vault(args), changes)  # --vault or $FUSEVAULT_VAULT
    else:
        answer = ask(args, {"cmd": "retention", "set": changes, "follow_default": args.follow_default})
    return _show(args, answer, lambda a: print(f"retention ({a['source']}): {a['text']}"))


def _default_policy(vault: Path | None, changes: dict) -> dict:
    """The vault's default policy, shown or set on the vault directory itself
    (as `user add` is): whoever may write it administers the vault."""
    from fusevault.errors import InvalidInput, PermissionDenied, VaultNotFound
    from fusevault.vault.model import retention
    from fusevault.vault.services.opening import open_vault

    if vault is None:
        raise InvalidInput("the vault's default is set on the vault itself: add --vault VAULT "
                           "(or set $FUSEVAULT_VAULT)")
    try:
        os.stat(vault)
    except PermissionError:
        raise PermissionDenied(f"you may not enter {vault}: its default retention is its "
                               "administrator's (root's, for a shared mount)") from None
    except FileNotFoundError:
        raise VaultNotFound(f"no vault at {vault}") from None
    if changes and not os.access(vault, os.W_OK | os.X_OK):
        raise PermissionDenied(f"only whoever may write {vault} sets its default retention "
                               "(root, for a shared mount)")
    layout, store = open_vault(vault)
    try:
        policy = retention.load_default(store)
        if changes:
            policy = retention.changed(policy or retention.Policy(), changes)
            retention.save_default(store, policy)
    finally:
        store.close()
    return retention.answer(policy or retention.Policy(),
                            retention.DEFAULT if policy is not None else retention.BUILT_IN)


def _whole(text: str) -> int:
    from fusevault.errors import InvalidInput

    if not text.isdigit():
        raise InvalidInput("--weekly takes a number of weeks or 'forever'")
    return int(text)


COMMANDS = {"history": cmd_history, "restore": cmd_restore, "trash": cmd_trash, "gc": cmd_gc,
            "retention": cmd_retention, "upgrade": cmd_upgrade}
