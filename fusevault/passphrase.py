"""Where a passphrase (or a transfer code) comes from: environment, file
descriptor, file, prompt, or (in a systemd service, with no terminal)
systemd-ask-password.

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
ENV_CODE = "FUSEVAULT_CODE"

# What each secret is called in messages, and the options that give it.
NAMES = {
    ENV: ("passphrase", "--passphrase-fd", "--passphrase-file"),
    ENV_NEW: ("new passphrase", "--new-passphrase-fd", "--new-passphrase-file"),
    ENV_CODE: ("code", "--code-fd", "--code-file"),
}
ATTEMPTS = 3  # a mistyped confirmation is asked again this many times in all


def _strip(data: bytes) -> bytes:
    return data[:-1] if data.endswith(b"\n") else data


def _read_fd(fd: int, what: str) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    except OSError as err:
        raise InvalidInput(f"cannot read the {what} from fd {fd}: {err.strerror}") from None
    return _strip(b"".join(chunks))


def _check(passphrase: bytes, what: str) -> bytes:
    if not passphrase:
        raise InvalidInput(f"the {what} is empty")
    return passphrase


def _prompt(prompt: str, what: str) -> bytes:
    try:
        return getpass.getpass(prompt).encode()
    except EOFError:  # Ctrl-D
        print(file=sys.stderr)  # getpass left the cursor after the prompt
        raise InvalidInput(f"no {what} was given") from None
    except UnicodeError:  # bytes the terminal's encoding does not read: one line, never their place in it
        print(file=sys.stderr)
        raise InvalidInput(f"the {what} typed is not text in this terminal's encoding: "
                           "give it from a file or the environment") from None


def get(fd: int | None = None, file: str | None = None, *, env: str = ENV,
        confirm: bool = False, prompt: str = "Passphrase: ", about: str | None = None) -> bytes:
    """The secret ``env`` names, from the first source given.

    ``confirm``: a new secret, typed twice on a terminal (asked again when the
    two differ).  ``about``: what it opens (a vault), for a systemd password
    agent that may be asked by several units at once."""
    what, fd_flag, file_flag = NAMES.get(env, ("passphrase", "--passphrase-fd", "--passphrase-file"))
    if fd is not None:
        return _check(_read_fd(fd, what), what)
    if file is not None:
        try:
            with open(file, "rb") as handle:
                return _check(_strip(handle.read()), what)
        except OSError as err:
            raise InvalidInput(f"cannot read the {what} file {file}: {err.strerror}") from None
    if env in os.environ:
        # As the prompt gives it: the text in UTF-8, whatever the locale (the raw bytes of a Latin-1
        # locale's "é" are not the prompt's: attack round 50d (5)); a byte the locale cannot decode,
        # held as a lone surrogate, given back as that byte (.encode() refused it with an exit 70 and
        # a crash log naming its position in the passphrase: 49t (5)).
        return _check(os.environ[env].encode("utf-8", "surrogateescape"), what)
    if not sys.stdin.isatty():
        # A service has no terminal: systemd's password agents can still ask.
        if systemd.under_systemd():
            asked = systemd.ask_password(_label(prompt, about), f"{env}:{about}" if about else env)
            if asked is not None:
                return _check(asked, what)
        raise InvalidInput(f"no {what}: set {env}, or pass {fd_flag} or {file_flag}")
    if not confirm:
        return _check(_prompt(prompt, what), what)
    for attempt in range(1, ATTEMPTS + 1):
        first = _prompt(prompt, what)
        if first and _prompt("Again: ", what) == first:
            return first
        problem = f"the {what} is empty" if not first else f"the {what}s do not match"
        if attempt == ATTEMPTS:
            raise InvalidInput(problem)
        print(f"{problem}; try again", file=sys.stderr)
    raise AssertionError("unreachable")


def _label(prompt: str, about: str | None) -> str:
    """``Passphrase for vault /home/a/vault:``: which of several units asks."""
    if about is None:
        return prompt
    return f"{prompt.rstrip().rstrip(':')} for {about}:"
