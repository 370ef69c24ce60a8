"""The short, grouped top-level help, and ``fusevault completion bash|zsh``."""

from __future__ import annotations

import argparse

from fusevault.cli.options import Command

GROUPS = {
    "Every day": ["mount", "unmount", "status", "config", "export"],
    "Old versions and deleted files": ["history", "restore", "trash", "retention", "gc"],
    "Hand files to someone": ["send", "receive", "link", "relay"],
    "Other devices": ["peer", "sync"],
    "People and keys": ["user", "group", "share", "unshare", "shares", "unlock", "lock", "passwd",
                        "recovery-key"],
    "Set up": ["init", "info", "check", "upgrade", "watch", "completion"],
}

GLOBAL_OPTIONS = """\
Options before the command: -v (debug log), --version, --runtime-dir,
--state-dir, --config-dir.  `fusevault COMMAND --help` shows a command's
options and examples."""


class GroupedHelp(argparse.ArgumentParser):
    """argparse, with the top-level help listing commands by what they are for."""

    def format_help(self) -> str:
        commands = self._commands()
        lines = [f"usage: {self.prog} COMMAND [ARGS]", "", self.description or "", ""]
        for title, names in GROUPS.items():
            lines.append(f"{title}:")
            lines += [f"  {name:<11} {commands[name]}" for name in names if name in commands]
            lines.append("")
        lines += [GLOBAL_OPTIONS, "", self.epilog or ""]
        return "\n".join(lines).rstrip() + "\n"

    def _commands(self) -> dict[str, str]:
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return {choice.dest: choice.help or "" for choice in action._choices_actions}
        return {}


def add_commands(command: Command) -> None:
    p = command("completion", "print the shell completion script for bash or zsh",
                "fusevault completion bash > ~/.local/share/bash-completion/completions/fusevault\n"
                "  fusevault completion zsh > ~/.zfunc/_fusevault   (with fpath+=(~/.zfunc) in ~/.zshrc)")
    p.add_argument("shell", choices=["bash", "zsh"])


# Arguments that name files or folders complete as paths.
PATHS = {"vault", "mountpoint", "path", "paths", "place", "dest", "output", "to",
         "passphrase_file", "new_passphrase_file", "code_file", "recovery_file", "recovery_key_file"}


def _mark_paths(parser: argparse.ArgumentParser) -> None:
    import shtab

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _mark_paths(child)
        elif action.dest in PATHS:
            action.complete = shtab.FILE  # type: ignore[attr-defined]


def print_completion(parser: argparse.ArgumentParser, shell: str) -> int:
    """``fusevault completion SHELL``: app.py hands the whole parser over (this module
    imports nothing of the command, so the two import no cycle)."""
    import shtab

    _mark_paths(parser)
    print(shtab.complete(parser, shell=shell))
    return 0
