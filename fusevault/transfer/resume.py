"""What a receive leaves in its output folder so that the same command resumes it.

``.fusevault-receive-<tag>`` (mode 0600, one per session): the receiver's
resume token on the first line, then one line per top-level name the session
made (``top HEX``: a new run may go on writing into it, output.py
``check_new_tops``) and one per file received whole.  The
token proves to the sender that a new run is the same receiver as before
(anyone else with the code is a second receiver, refused).  It is worth
nothing without the code and the session, and it sits beside the partial
files, whose plaintext is worth more.  Each partial file has a name fixed by
the session and the file, so a new run finds it and asks only for the chunks
after the whole ones it holds.  All of it goes when the receive ends: done,
or beyond resuming (a failed confirmation, the session gone).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from fusevault.encoding import name_to_str, str_to_name
from fusevault.transfer import crypto
from fusevault.vault.format.atomic import atomic_write

HEADER = "fusevault-receive 1"


def _tag(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _name(hexed: str) -> str:
    return name_to_str(bytes.fromhex(hexed))  # a name is any bytes: hex keeps newlines out of the file


def partial_path(target: Path, sid: str, fid: str) -> Path:
    return target.parent / f".{target.name[:200]}.fvpart-{_tag(sid, fid)}"


class ResumeState:
    def __init__(self, output: Path, sid: str) -> None:
        self.path = output / f".fusevault-receive-{_tag(sid)}"
        self.token: bytes | None = None
        self.done: set[str] = set()
        self.tops: set[str] = set()  # top-level names this session made in the output folder
        self.saved = False
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError):
            lines = []
        if lines and lines[0].startswith(HEADER + " "):
            try:
                self.token = bytes.fromhex(lines[0].split()[-1])
                self.done = {line.split(" ", 1)[1] for line in lines[1:] if line.startswith("done ")}
                self.tops = {_name(line.split(" ", 1)[1]) for line in lines[1:] if line.startswith("top ")}
                self.saved = True
            except ValueError:
                self.token = None

    def token_for_run(self) -> bytes:
        if self.token is None:
            self.token = crypto.new_token()
        return self.token

    def save(self) -> None:
        """Write the token before the sender can learn it (so a crash after that still resumes)."""
        if self.saved:
            return
        atomic_write(self.path, f"{HEADER} {self.token_for_run().hex()}\n".encode())
        self.saved = True

    def finished(self, fid: str) -> None:
        """One more file is under its name: a new run must not ask for it again."""
        self.done.add(fid)
        self._append(f"done {fid}\n")

    def claim(self, tops: list[str]) -> None:
        """Top-level names this session is about to make (none exists yet): a new run may go on
        writing into them.  Saved before the first is made, so a crash never leaves one unclaimed."""
        if tops:
            self.tops.update(tops)
            self._append("".join(f"top {str_to_name(top).hex()}\n" for top in tops))

    def _append(self, lines: str) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
        try:
            os.write(fd, lines.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        self.saved = False
