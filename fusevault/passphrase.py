"""Where a passphrase comes from: environment, file descriptor, file, prompt,
or (in a systemd service, with no terminal) systemd-ask-password.

Never from argv.  A trailing newline (as ``echo`` and editors leave) is
dropped; everything else is the passphrase.
"""

from __future__ import annotations

import getpass
import os
import sys

from fusevault import systemd
from fusevault.errors import InvalidInput

ENV = "FUSEVAULT_PASSPHRASE"
ENV_NEW = "FUSEVAULT_NEW_PASSPHRASE"


def _strip(data: bytes) -> bytes:
    return data[:-1] if data.endswith(b"\n") else data


def _read_fd(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError as err:
        raise InvalidInput(f"cannot read the passphrase from fd {fd}: {err.strerror}") from None
    return _strip(b"".join(chunks))


def _check(passphrase: bytes) -> bytes:
    if not passphrase:
        raise InvalidInput("the passphrase is empty")
    return passphrase


def get(fd: int | None = None, file: str | None = None, *, env: str = ENV,
        confirm: bool = False, prompt: str = "Passphrase: ") -> bytes:
    if fd is not None:
        return _check(_read_fd(fd))
    if file is not None:
        try:
            with open(file, "rb") as handle:
                return _check(_strip(handle.read()))
        except OSError as err:
            raise InvalidInput(f"cannot read the passphrase file {file}: {err.strerror}") from None
    if env in os.environ:
        return _check(os.environ[env].encode())
    if not sys.stdin.isatty():
        # A service has no terminal: systemd's password agents can still ask.
        if systemd.under_systemd() and (asked := systemd.ask_password(prompt, env)) is not None:
            return _check(asked)
        raise InvalidInput(
            f"no passphrase: set {env}, or pass --passphrase-fd or --passphrase-file")
    first = getpass.getpass(prompt).encode()
    if confirm and getpass.getpass("Again: ").encode() != first:
        raise InvalidInput("the passphrases do not match")
    return _check(first)
