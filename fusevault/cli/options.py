"""Options several commands share, and the facts they are built from.

A command module imports what it needs from here (never through arguments):
the passphrase options, which vault or mount a command works on, the relay,
a peer's credentials, and how a passphrase prompt names its vault.  What an error means as an exit
code is errors.py's (each VaultError carries its own) and guard.py's (the
OSErrors and crashes no command caught).
"""

from __future__ import annotations

import argparse
import os
import pwd
from collections.abc import Callable
from pathlib import Path

from fusevault.target import VAULT_ENV

# The factory app.py hands each command module: name, one-line help, example.
Command = Callable[[str, str, str], argparse.ArgumentParser]

ENV_RELAY = "FUSEVAULT_RELAY"


def login_name() -> str:
    """The caller's login name: of their uid, else $USER or $LOGNAME (a uid with no
    passwd entry, as in some containers), else "user"."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("USER") or os.environ.get("LOGNAME") or "user"


def about(vault: Path, user: str | None) -> str:
    """Which vault (and user) a passphrase is for, as a systemd password agent shows it."""
    where = f"vault {os.path.abspath(vault)}"
    return f"{where} (user {user})" if user else where


def passphrase_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("passphrase (default: $FUSEVAULT_PASSPHRASE or a prompt)")
    group.add_argument("--passphrase-fd", type=int, metavar="N", help="read it from file descriptor N")
    group.add_argument("--passphrase-file", metavar="FILE", help="read it from FILE")


def vault_option(p: argparse.ArgumentParser) -> None:
    """--vault for the commands that administer a vault (users, groups, peers)."""
    p.add_argument("--vault", type=Path, default=os.environ.get(VAULT_ENV),
                   help=f"the vault (default: ${VAULT_ENV})")


def offline_options(p: argparse.ArgumentParser) -> None:
    """--vault VAULT [--user NAME] and a passphrase: a request answered without a mount."""
    p.add_argument("--vault", type=Path, help=f"a vault that is not mounted (default: ${VAULT_ENV})")
    p.add_argument("--user", help="with --vault: which user")
    passphrase_options(p)


def mount_option(p: argparse.ArgumentParser) -> None:
    """--mount PATH: which mount answers a request (target.py finds it)."""
    p.add_argument("--mount", dest="place", metavar="PATH",
                   help="a path in the mounted vault (default: here, or the only mount)")


def credential_options(p: argparse.ArgumentParser) -> None:
    """A peer database's user:password (``init --join``, ``peer add``)."""
    group = p.add_argument_group("credentials (never on the command line, never shown)")
    group.add_argument("--credentials-file", metavar="FILE", help="a file whose first line is user:password")
    group.add_argument("--credentials-env", metavar="NAME",
                       help="an environment variable of the mount holding user:password")


def relay_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--relay", metavar="URL", default=default_relay(),
                   help=f"the relay (default: ${ENV_RELAY} or {_builtin_relay()})")


def default_relay() -> str:
    return os.environ.get(ENV_RELAY, _builtin_relay())


def _builtin_relay() -> str:
    from fusevault.transfer import DEFAULT_RELAY  # not transfer.client: it imports httpx

    return DEFAULT_RELAY
