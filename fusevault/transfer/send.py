"""``fusevault send``: offer files in a session and stream each requested one."""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fusevault.encoding import b64d, b64e
from fusevault.errors import InvalidInput, PermissionDenied, VaultError
from fusevault.transfer import crypto
from fusevault.transfer.client import RelayClient
from fusevault.transfer.progress import transfer_progress

log = logging.getLogger(__name__)

DELIVERY_WAIT = 120.0  # seconds for a receiver to confirm the last chunk of a file


@dataclass
class Outgoing:
    name: str  # as the receiver will see it: "report.pdf" or "photos/2026/a.jpg"
    path: Path
    size: int
    sha256: str = ""


def _unreadable(path: Path, err: OSError) -> VaultError:
    if isinstance(err, PermissionError):
        return PermissionDenied(f"cannot read {path}: permission denied")
    return InvalidInput(f"cannot read {path}: {err.strerror}")


def _walk(folder: Path) -> list[Path]:
    """Every regular file under ``folder``; a subfolder it cannot read is an error, not
    silently left out (the receiver would get less than was sent)."""
    found: list[Path] = []

    def refuse(err: OSError) -> None:
        raise _unreadable(Path(err.filename or folder), err)

    for top, dirs, names in os.walk(folder, onerror=refuse):  # symbolic links are not followed
        dirs.sort()
        for name in sorted(names):
            path = Path(top, name)
            try:
                if stat.S_ISREG(path.lstat().st_mode):
                    found.append(path)
            except OSError as err:
                raise _unreadable(path, err) from None
    return found


def _readable(path: Path) -> int:
    """The size of a file this process can read (opened once now, so that a file it
    may not read is refused before the session opens, not in the middle of it)."""
    try:
        with open(path, "rb") as f:
            return os.fstat(f.fileno()).st_size
    except OSError as err:
        raise _unreadable(path, err) from None


def collect(paths: list[Path]) -> list[Outgoing]:
    files: dict[str, Outgoing] = {}
    for given in paths:
        try:
            mode = given.lstat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            mode = 0
        except OSError as err:
            raise _unreadable(given, err) from None
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):  # none, a link, a pipe, a device
            raise InvalidInput(f"{given} is not a file or folder here")
        if stat.S_ISDIR(mode):
            found = _walk(given)
            items = [(f"{given.resolve().name}/{p.relative_to(given).as_posix()}", p) for p in found]
        else:
            items = [(given.name, given)]
        for name, path in items:
            if name in files:
                raise InvalidInput(f"two files would arrive as {name}: send them separately")
            files[name] = Outgoing(name, path, _readable(path))
    if not files:
        raise InvalidInput("nothing to send: the folders are empty")
    return list(files.values())


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def send(relay_url: str, paths: list[Path], announce: Callable[[str, str], None], *,
         code: str | None = None, keep: bool = False) -> int:
    """Offer the files; return after one receiver got all it asked for (or never, with ``keep``)."""
    files = {f.name: f for f in collect(paths)}
    code = crypto.normalize_code(code) if code else crypto.make_code()
    client = RelayClient(relay_url)
    try:
        session = client.open_session(crypto.code_hash(code),
                                      [{"name": f.name, "size": f.size} for f in files.values()])
        try:
            announce(session["name"], code)
            _serve(client, session["id"], code, files, keep)
        finally:
            try:
                client.close_session(session["id"])
            except VaultError:
                pass  # the relay went away: its keys expire by themselves
    finally:
        client.close()
    return 0


def _serve(client: RelayClient, sid: str, code: str, files: dict[str, Outgoing], keep: bool) -> None:
    wanted: dict[str, set[str]] = {}
    delivered: dict[str, set[str]] = {}
    with transfer_progress() as progress:
        while True:
            # Answer every waiting request first, so the receiver learns all
            # its keys in one round trip; then stream the files in order and
            # collect the confirmations at the end.
            requests = [r for r in client.pending(sid, wait=5) if r["filename"] in files]
            answered = [(r, _answer(client, sid, code, files[r["filename"]], r)) for r in requests]
            for request, prepared in answered:
                wanted.setdefault(request["user_id"], set()).add(request["filename"])
                if prepared is not None:
                    _stream(client, files[request["filename"]], *prepared, progress)
            for request, prepared in answered:
                if prepared is not None and client.delivered(prepared[0], DELIVERY_WAIT):
                    delivered.setdefault(request["user_id"], set()).add(request["filename"])
                elif prepared is not None:
                    log.warning("the receiver did not confirm %s", request["filename"])
            if not keep and any(names <= delivered.get(uid, set()) for uid, names in wanted.items()):
                return


def _answer(client: RelayClient, sid: str, code: str, file: Outgoing,
            request: dict) -> tuple[str, bytes, bytes] | None:
    """Answer one request: (request id, file key, context), or None if it is malformed."""
    try:
        key, public, message = crypto.sender_side(code, sid, file.name, b64d(request["public_key"]),
                                                  b64d(request["pake"]))
    except (crypto.KeyMismatch, ValueError):
        log.warning("ignored a malformed request for %s", file.name)
        return None
    file.sha256 = file.sha256 or _digest(file.path)
    ctx = crypto.context(sid, file.name)
    chunks = crypto.chunk_count(file.size)
    meta = {"size": file.size, "sha256": file.sha256, "chunks": chunks, "name": file.name}
    rid = client.acknowledge(sid, {
        "filename": file.name, "user_id": request["user_id"], "public_key": b64e(public),
        "pake": b64e(message), "chunks": chunks, "meta": b64e(crypto.seal_meta(key, ctx, meta))})
    return rid, key, ctx


def _stream(client: RelayClient, file: Outgoing, rid: str, key: bytes, ctx: bytes, progress) -> None:
    chunks = crypto.chunk_count(file.size)
    task = progress.add_task(f"sending {file.name}", total=file.size)
    sent = 0
    with open(file.path, "rb") as f:
        for nr in range(chunks):
            data = f.read(crypto.CHUNK)
            sent += len(data)
            if nr == chunks - 1 and (sent != file.size or f.read(1)):
                raise VaultError(f"{file.path} changed while it was being sent: send it again")
            iv, sealed = crypto.seal_chunk(key, ctx, nr, nr == chunks - 1, data)
            client.push(rid, nr, iv, sealed)
            progress.advance(task, len(data))
