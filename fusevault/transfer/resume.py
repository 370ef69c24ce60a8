"""What a receive leaves in its output folder so that the same command resumes it.

``.fusevault-receive-<tag>`` (mode 0600, one per session): the receiver's
resume token on the first line, then one line per top-level name the session
made (``top HEX``: a new run may go on writing into it, output.py
``check_new_tops``) and one per file received whole.  The
token proves to the sender that a new run is the same receiver as before
(anyone else with the code is a second receiver, refused).  It is worth
nothing without the code and the session, and it sits beside the partial
files, whose plaintext is worth more.  Each partial file has a name fixed by
the session, the file and her key (``partial_path``), so a new run finds it and asks only for the chunks
after the whole ones it holds.  All of it goes when the receive ends: done,
or beyond resuming (a failed confirmation, the session gone).

The file sits in a folder a sender writes into, and its lines decide where a new run may write
(``top``): a file a sender delivered under that name (he learns the session id, hence the name, when
he creates the session) claimed her ``~/.ssh`` for his next session (attack round 23b, hole 1).  So
every line carries an HMAC under a key kept in her state folder (``receive.key``, never in the output
folder), bound to the session id, and the file is read only if it is a regular file of hers that no
one else may read or write, opened without following a link.  Anything else at that name is not
state of ours: the run refuses to start (one line, AlreadyExists) rather than trust it or write over
it.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path
from typing import NoReturn

from fusevault import paths
from fusevault.encoding import name_start, name_to_str, shown, str_to_name
from fusevault.errors import AlreadyExists, Unsafe
from fusevault.transfer import crypto
from fusevault.vault.format.atomic import atomic_write

HEADER = "fusevault-receive 1"
KEY_FILE = "receive.key"  # in her state folder: what makes a resume file one her fusevault wrote
KEY_SIZE = 32
MAX_STATE = 64 * 2**20  # a line per file received: far more than any session has
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _tag(*parts: str) -> str:
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _name(hexed: str) -> str:
    return name_to_str(bytes.fromhex(hexed))  # a name is any bytes: hex keeps newlines out of the file


def _fid(hexed: str) -> str:
    return bytes.fromhex(hexed).decode("utf-8", "surrogatepass")


def _receive_key() -> bytes:
    """This user's key for resume files, made on first use (state folder, 0600)."""
    path = paths.state_dir() / KEY_FILE
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    # Written aside and linked into place: two receives starting at once both read one whole key.
    temp = path.with_name(f".{KEY_FILE}.{secrets.token_hex(8)}")
    atomic_write(temp, secrets.token_bytes(KEY_SIZE))
    try:
        os.link(temp, path)
    except FileExistsError:
        pass
    finally:
        temp.unlink()
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    fd = os.open(path, _READ)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise Unsafe(f"{path} is not a private file of yours: remove it (resumable receives "
                         "then start over)")
        key = os.read(fd, KEY_SIZE + 1)
    finally:
        os.close(fd)
    if len(key) != KEY_SIZE:
        raise Unsafe(f"{path} is not a key fusevault made: remove it (resumable receives then start over)")
    return key


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 2**20):
        chunks.append(chunk)
    return b"".join(chunks)


class ResumeState:
    def __init__(self, output: Path, sid: str) -> None:
        self.path = output / f".fusevault-receive-{_tag(sid)}"
        self.sid = sid
        self.key = _receive_key()
        self.token: bytes | None = None
        self.done: set[str] = set()
        self.tops: set[str] = set()  # top-level names this session made in the output folder
        self.saved = False
        lines = self._read()
        if lines is None:
            return
        if not lines or not lines[0].startswith(HEADER + " "):
            self._not_ours()
        try:
            self.token = bytes.fromhex(lines[0].split()[-1])
            self.done = {_fid(line.split(" ", 1)[1]) for line in lines[1:] if line.startswith("done ")}
            self.tops = {_name(line.split(" ", 1)[1]) for line in lines[1:] if line.startswith("top ")}
        except (ValueError, IndexError):
            self._not_ours()
        self.saved = True

    def _read(self) -> list[str] | None:
        """The lines of the resume file, each proved written by this user's fusevault for this
        session; None when there is none.  Anything else at its name is refused."""
        try:
            fd = os.open(self.path, _READ)
        except FileNotFoundError:
            return None
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENXIO):  # a link, a socket
                self._not_ours()
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077 \
                    or st.st_size > MAX_STATE:
                self._not_ours()
            data = _read_all(fd)
        finally:
            os.close(fd)
        whole = data.split(b"\n")[:-1]  # a last line without its newline: an append cut short
        lines = [self._opened(line) for line in whole]
        if any(line is None for line in lines):
            self._not_ours()
        return [line for line in lines if line is not None]

    def _mac(self, line: str) -> str:
        # Bound to the session: a line of one session's state proves nothing in another's.
        message = b"\0".join([b"fusevault resume", self.sid.encode("utf-8", "surrogateescape"),
                              line.encode()])
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()

    def partial_path(self, target: Path, fid: str) -> Path:
        """Where the file ``fid`` of this session is received until it is whole: a name fixed by
        the session and the file (a new run finds it) and keyed by her ``receive.key`` (nobody
        else can foresee it).  Named by the session id and the index alone, any local user who
        may write a shared output folder planted his own file there first, which then received
        her plaintext (attack round 24b (6)); receive.py also makes it O_EXCL and takes an
        existing one only if it is hers, private, with one link."""
        message = b"\0".join([b"fusevault partial", self.sid.encode("utf-8", "surrogateescape"),
                              fid.encode("utf-8", "surrogatepass")])
        tag = hmac.new(self.key, message, hashlib.sha256).hexdigest()[:32]
        return target.parent / f".{name_start(target.name)}.fvpart-{tag}"

    def _sealed(self, line: str) -> str:
        return f"{line} {self._mac(line)}\n"

    def _opened(self, raw: bytes) -> str | None:
        """The line without its MAC, or None if this user's fusevault did not write it for this session."""
        try:
            line, mac = raw.decode("ascii").rsplit(" ", 1)
        except (UnicodeDecodeError, ValueError):
            return None
        return line if hmac.compare_digest(mac, self._mac(line)) else None

    def _not_ours(self) -> NoReturn:
        raise AlreadyExists(f"{shown(str(self.path))} exists and is not a resume file this user's "
                            "fusevault wrote: move it away or use --output")

    def token_for_run(self) -> bytes:
        if self.token is None:
            self.token = crypto.new_token()
        return self.token

    def save(self) -> None:
        """Write the token before the sender can learn it (so a crash after that still resumes)."""
        if self.saved:
            return
        atomic_write(self.path, self._sealed(f"{HEADER} {self.token_for_run().hex()}").encode())
        self.saved = True

    def finished(self, fid: str) -> None:
        """One more file is under its name: a new run must not ask for it again."""
        self.done.add(fid)
        # The sender's id for the file: any text, hex keeps it one line.
        self._append(self._sealed(f"done {fid.encode('utf-8', 'surrogatepass').hex()}"))

    def claim(self, tops: list[str]) -> None:
        """Top-level names this session is about to make (none exists yet): a new run may go on
        writing into them.  Saved before the first is made, so a crash never leaves one unclaimed."""
        if tops:
            self.tops.update(tops)
            self._append("".join(self._sealed(f"top {str_to_name(top).hex()}") for top in tops))

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
