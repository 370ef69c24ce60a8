"""``fusevault recovery-key create|revoke``, and where recovery words come from and go.

The words are a secret as strong as the passphrase: they are shown on the
terminal, or written to a file descriptor or a new file the user names,
never to a log, argv, the environment or a temporary file.  A run with no
terminal (a script, a test) makes no recovery key at ``init`` unless asked
with ``--recovery-key-fd``/``--recovery-key-file``/``--recovery-key``, so
the words never land in a captured output by surprise.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from fusevault import passphrase
from fusevault.cli.options import Command, about, passphrase_options
from fusevault.errors import AlreadyExists, InvalidInput, NoRecoveryKey, VaultError

NOTE = """\
Your recovery key: write these 24 words down (on paper) and keep them safe.
They open your vault if you forget your passphrase (`fusevault passwd --recovery`);
anyone holding them and a copy of the vault can open it too.  They are shown only now."""


def output_options(parser: argparse.ArgumentParser, *, at_init: bool) -> None:
    group = parser.add_argument_group(
        "the recovery key's words (default: shown on the terminal"
        + (", none made when not run on a terminal)" if at_init else ")"))
    if at_init:
        group.add_argument("--no-recovery-key", action="store_true",
                           help="make no recovery key (`fusevault recovery-key create` makes one later)")
        group.add_argument("--recovery-key", action="store_true",
                           help="make one and print its words on stdout even when not on a terminal")
    group.add_argument("--recovery-key-fd", type=int, metavar="N",
                       help="write the words to file descriptor N")
    group.add_argument("--recovery-key-file", metavar="FILE",
                       help="write the words to FILE, a new file only you can read")


def input_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the recovery key's words (default: a prompt; never argv or env)")
    group.add_argument("--recovery-fd", type=int, metavar="N", help="read the words from file descriptor N")
    group.add_argument("--recovery-file", metavar="FILE", help="read the words from FILE")


class Output:
    """Where new words go, opened before the key is saved (so a bad place changes nothing)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.fd: int | None = args.recovery_key_fd
        self.file = args.recovery_key_file
        self._handle: int | None = None
        if self.fd is not None and self.file is not None:
            raise InvalidInput("give --recovery-key-fd or --recovery-key-file, not both")
        if self.file is not None:
            try:
                self._handle = os.open(self.file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                raise AlreadyExists(f"{self.file} exists: the words go to a new file") from None
            except OSError as err:
                raise InvalidInput(f"cannot create {self.file}: {err.strerror}") from None

    def abandon(self) -> None:
        """Nothing was saved: remove the empty file made for the words."""
        if self._handle is not None:
            os.close(self._handle)
            self._handle = None
            os.unlink(self.file)

    def write(self, secret: bytes) -> str:
        """Hand the words over; return what to tell the user about where they went."""
        from fusevault.crypto import recovery

        words = recovery.to_words(secret)
        if self._handle is None and self.fd is None:
            print(NOTE)
            print()
            listed = words.split()
            for row in range(0, len(listed), 6):
                print("  " + "  ".join(f"{n + 1:>2}. {w:<8}" for n, w in enumerate(listed[row:row + 6], row)))
            print()
            return "recovery key shown above"
        target = self._handle if self._handle is not None else self.fd
        data = (words + "\n").encode()
        try:
            while data:
                data = data[os.write(target, data):]
            if self._handle is not None:
                os.fsync(self._handle)
        except OSError as err:
            raise VaultError(f"the recovery key was made but its words could not be written "
                             f"({err.strerror}): run `fusevault recovery-key create` again, it replaces "
                             "this one") from None
        finally:
            if self._handle is not None:
                os.close(self._handle)
                self._handle = None
        return f"recovery key words written to {self.file or f'fd {self.fd}'}"


def on_terminal() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def wanted_at_init(args: argparse.Namespace) -> bool:
    asked = args.recovery_key or args.recovery_key_fd is not None or args.recovery_key_file is not None
    if args.no_recovery_key:
        if asked:
            raise InvalidInput("--no-recovery-key goes with no other --recovery-key option")
        return False
    return asked or on_terminal()


def read_secret(fd: int | None, file: str | None) -> bytes:
    """The recovery secret from a descriptor, a file or a hidden prompt."""
    from fusevault.crypto import recovery  # cryptography: imported by the commands, not the parser

    if fd is not None and file is not None:
        raise InvalidInput("give --recovery-fd or --recovery-file, not both")
    if fd is not None:
        raw = passphrase._read_fd(fd, "recovery key")
    elif file is not None:
        try:
            with open(file, "rb") as handle:
                raw = handle.read()
        except OSError as err:
            raise InvalidInput(f"cannot read the recovery key file {file}: {err.strerror}") from None
    elif sys.stdin.isatty():
        try:
            raw = getpass.getpass("Recovery key (24 words): ").encode()
        except EOFError:
            print(file=sys.stderr)
            raise InvalidInput("no recovery key was given") from None
    else:
        raise InvalidInput("no recovery key: type it on a terminal, or pass --recovery-fd N "
                           "or --recovery-file F")
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        raise InvalidInput("the recovery key is not text") from None
    # A copy of the numbered listing `init` shows ("1. abandon ...") reads as well.
    words = [w for w in text.split() if not w.rstrip(".").isdigit()]
    return recovery.from_words(" ".join(words))


def add_commands(command: Command) -> None:
    p = command("recovery-key", "make or revoke the 24 words that reset a forgotten passphrase",
                "fusevault recovery-key create ~/vault    (then: fusevault passwd --recovery ~/vault)")
    p.add_argument("action", choices=["create", "revoke"],
                   help="create (replaces an earlier one) or revoke; both ask the passphrase")
    p.add_argument("vault", type=Path)
    p.add_argument("--user", help="which user of the vault (default: the only one, or yours)")
    passphrase_options(p)
    output_options(p, at_init=False)


def cmd_recovery_key(args: argparse.Namespace) -> int:
    from fusevault.crypto import recovery
    from fusevault.vault.model import key_memory, users
    from fusevault.vault.services.opening import open_vault

    _, store = open_vault(args.vault)
    try:
        # Her newest keys this device saw, not an older body the store may offer (key_memory).
        user, _ = key_memory.newest(args.vault, users.find_user(store, args.user))
        name = user["username"]
        if args.action == "revoke":
            if args.recovery_key_fd is not None or args.recovery_key_file is not None:
                raise InvalidInput("revoke writes no words: leave out --recovery-key-fd/--recovery-key-file")
            if not users.has_recovery_key(user):  # said before a passphrase is asked
                raise NoRecoveryKey(f"user {name!r} has no recovery key")
            secret = passphrase.get(args.passphrase_fd, args.passphrase_file, about=about(args.vault, name))
            users.revoke_recovery_key(store, args.vault, user, secret)
            print(f"recovery key of user {name} revoked: its words open nothing from now on")
            return 0
        output = Output(args)
        try:
            secret = passphrase.get(args.passphrase_fd, args.passphrase_file, about=about(args.vault, name))
            new = recovery.new_secret()
            replaced = users.has_recovery_key(user)
            users.create_recovery_key(store, args.vault, user, secret, new)
        except BaseException:
            output.abandon()
            raise
    finally:
        store.close()
    where = output.write(new)
    print(f"{'new ' if replaced else ''}recovery key made for user {name}"
          f"{' (the old one opens nothing now)' if replaced else ''}; {where}")
    return 0


COMMANDS = {"recovery-key": cmd_recovery_key}
