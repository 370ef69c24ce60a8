"""Living under systemd: the notify protocol, journal log levels, systemd-ask-password.

All three are the documented plain interfaces (sd_notify(3): a datagram to
$NOTIFY_SOCKET; sd-daemon(3): ``<N>`` level prefixes on a stderr connected
to the journal, recognised by $JOURNAL_STREAM; systemd-ask-password(1)), so
no libsystemd binding is needed and nothing happens outside systemd.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys

from fusevault.errors import InvalidInput

log = logging.getLogger(__name__)


def notify(*fields: str) -> bool:
    """Send ``READY=1``-style fields to the service manager; False when there is none."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(fields).encode())
    except OSError as err:
        log.warning("cannot notify the service manager: %s", err.strerror)
        return False
    return True


def under_journal() -> bool:
    """True when stderr is the journal stream systemd gave this service."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = stream.partition(":")
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return f"{st.st_dev}:{st.st_ino}" == f"{device}:{inode}"


class JournalFormatter(logging.Formatter):
    """``<N>message``: journald reads N as the syslog priority of the line."""

    PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
                logging.CRITICAL: 2}

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        level = self.PRIORITY.get(record.levelno, 6)
        return "\n".join(f"<{level}>{line}" for line in text.splitlines())


def under_systemd() -> bool:
    return "INVOCATION_ID" in os.environ


def ask_password(prompt: str, ident: str) -> bytes | None:
    """A passphrase through systemd's password agents, or None when that is not possible.

    An agent may show the questions of several units at once: ``prompt`` says
    which vault asks (passphrase.get adds it), ``ident`` tells the requests apart."""
    command = shutil.which("systemd-ask-password")
    if command is None:
        return None
    result = subprocess.run([command, f"--id=fusevault:{ident}", "--timeout=0", prompt],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise InvalidInput("no passphrase was given to systemd-ask-password")
    return result.stdout.removesuffix(b"\n")
