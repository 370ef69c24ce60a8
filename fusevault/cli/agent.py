"""``fusevault unlock`` and ``fusevault lock``: the keys a running mount holds.

The passphrase goes to the mount over its control socket (a UNIX socket in
the runtime directory, which checks the caller with SO_PEERCRED), never on a
command line.  The mount keeps the keys for the user's
``passphrase_expiry_ttl`` and wipes them when it runs out or on ``lock``.
"""

from __future__ import annotations

import argparse
import base64

from fusevault import passphrase
from fusevault.cli.options import Command, passphrase_options
from fusevault.encoding import shown, shown_time
from fusevault.target import ask


def add_commands(command: Command) -> None:
    p = command("unlock", "give a mount your passphrase again (after its TTL ran out or a lock)",
                "fusevault unlock ~/Private")
    p.add_argument("place", nargs="?", metavar="MOUNTPOINT",
                   help="the mount (default: the one here, or the only one)")
    passphrase_options(p)
    p = command("lock", "wipe your keys from a mount now; files stay mounted but unreadable",
                "fusevault lock ~/Private")
    p.add_argument("place", nargs="?", metavar="MOUNTPOINT",
                   help="the mount (default: the one here, or the only one)")


def cmd_unlock(args: argparse.Namespace) -> int:
    secret = passphrase.get(args.passphrase_fd, args.passphrase_file)
    answer = ask(args, {"cmd": "unlock", "passphrase": base64.b64encode(secret).decode()}, timeout=120)
    # The unlock is done: a TTL beyond what time_t holds (kept from an older version, or confirmed from
    # another device's) is shown as "never", never an exit 70 over a success (49t (3)).
    print(f"unlocked {shown(answer['user'])} until {shown_time(answer.get('expires'))}")
    return 0


def cmd_lock(args: argparse.Namespace) -> int:
    answer = ask(args, {"cmd": "lock"})
    print("locked" if answer["was_unlocked"] else "it was already locked")
    return 0


COMMANDS = {"unlock": cmd_unlock, "lock": cmd_lock}
