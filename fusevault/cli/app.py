"""The ``fusevault`` command: the parser, made of every command group's module, and ``main``.

Each module of this package defines one group of commands: ``add_commands``
adds their parsers through the ``command`` factory below, ``COMMANDS`` maps
their names to what runs them.  Options several groups share are in
options.py; what escapes a command becomes one line and an exit code in
guard.py.
"""

from __future__ import annotations

import argparse
import os
import sys

from fusevault import __version__, log_lines, paths
from fusevault.cli import (
    accounts,
    agent,
    check,
    files,
    guard,
    help,
    history,
    links,
    mount,
    recovery,
    sharing,
    status,
    sync,
    transfer,
    vault,
)
from fusevault.cli.terminal import Defused
from fusevault.modes import keep_her_umask

EPILOG = """\
examples:
  fusevault init ~/vault                 create a vault (asks a passphrase twice)
  fusevault mount ~/vault ~/Private      mount it; returns once it is ready
  fusevault history ~/Private/notes.txt  its versions; see also restore, trash
  fusevault send report.pdf              hand a file to someone (they `fusevault receive`)

Passphrases never go on the command line: give them at the prompt, in
FUSEVAULT_PASSPHRASE, or with --passphrase-fd N / --passphrase-file F.
"""

# In this order the commands are offered (argparse's "choose from", the completions).
ADDERS = (vault.add_init, mount.add_commands, vault.add_commands, history.add_commands,
          transfer.add_commands, links.add_commands, files.add_commands, status.add_commands,
          accounts.add_commands, sharing.add_commands, agent.add_commands, sync.add_commands,
          check.add_commands, recovery.add_commands, help.add_commands)


def build_parser() -> argparse.ArgumentParser:
    parser = help.GroupedHelp(
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

    for add in ADDERS:
        add(command)
    return parser


def _completion(args: argparse.Namespace) -> int:
    # The script describes a parser of its own: _mark_paths marks its arguments.
    return help.print_completion(build_parser(), args.shell)


COMMANDS = {**vault.COMMANDS, **mount.COMMANDS, **history.COMMANDS, **transfer.COMMANDS,
            **links.COMMANDS, **files.COMMANDS, **status.COMMANDS, **accounts.COMMANDS,
            **sharing.COMMANDS, **agent.COMMANDS, **sync.COMMANDS, **recovery.COMMANDS,
            **check.COMMANDS, "completion": _completion}


def main(argv: list[str] | None = None) -> int:
    # Every file and folder fusevault makes is its user's alone (fs/server.py too); what it writes
    # for her with modes someone else gave (link get) is masked with hers (fusevault/modes.py).
    keep_her_umask(os.umask(0o077))
    if not isinstance(sys.stdout, Defused):
        sys.stdout = Defused(sys.stdout)  # type: ignore[assignment]  # cli/terminal.py
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # a mount's server shows them in `ps`
    if not args.command:
        parser.print_help()
        return 2
    log_lines.to_stderr(args.verbose)
    paths.override("runtime", args.runtime_dir)
    paths.override("state", args.state_dir)
    paths.override("config", args.config_dir)
    return guard.run(lambda: COMMANDS[args.command](args), args.command, args.verbose)
