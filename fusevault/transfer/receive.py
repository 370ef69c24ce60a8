"""``fusevault receive``: join a session, fetch files, verify, then name them.

Each file is written to a hidden temporary name in its final folder, checked
(every chunk authenticated, in order, the last one marked; the whole file's
size and SHA-256 as the sender sealed them) and fsynced before it is linked
under its real name.  A failure at any point removes the temporary file: no
partial file ever appears under the real name.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path

from fusevault.encoding import b64d, b64e
from fusevault.errors import AlreadyExists, CorruptData, InvalidInput, NotFound, PermissionDenied, VaultError
from fusevault.transfer import crypto
from fusevault.transfer.client import RelayClient
from fusevault.transfer.progress import transfer_progress
from fusevault.vault.atomic import fsync_dir

STALL = 120.0  # seconds without a chunk before giving up on the sender


def safe_target(output: Path, name: str) -> Path:
    """Where ``name`` (from the sender) lands inside ``output``; never outside it."""
    parts = name.split("/")
    if not name or name.startswith("/") or "\0" in name or any(
            p in ("", ".", "..") or len(p.encode("utf-8", "surrogateescape")) > 255 for p in parts):
        raise CorruptData(f"the sender offered an unsafe file name: {name!r}")
    return output.joinpath(*parts)


def inside(output: Path, path: Path) -> bool:
    """Whether ``path``, symlinks resolved, is ``output`` or under it."""
    root = os.path.realpath(output)
    real = os.path.realpath(path)
    return real == root or real.startswith(root.rstrip("/") + "/")


def check_output(output: Path) -> None:
    """Refuse, before anything is asked or joined, a folder files could not be written to.
    One that does not exist yet is made later, as ``mkdir -p`` would."""
    existing = output
    while not os.path.lexists(existing) and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise InvalidInput(f"{existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        doing = "write into" if existing == output else "make"
        raise PermissionDenied(f"cannot {doing} {output}: {existing} is not writable for you")


def _make_output(output: Path) -> None:
    try:
        output.mkdir(parents=True, exist_ok=True)  # mode 0777 less the umask, as mkdir -p
    except OSError as err:
        raise InvalidInput(f"cannot make {output}: {err.strerror}") from None


def receive(relay_url: str, name: str, code: str, output: Path, *, only: list[str] | None = None,
            list_only: bool = False, say=print) -> int:
    if not list_only:
        check_output(output)
    client = RelayClient(relay_url)
    try:
        session = client.join(name, crypto.code_hash(code))
        files = session["files"]
        if list_only:
            for f in files:
                say(f"{f['size']:>12}  {f['name']}")
            return 0
        chosen = [f for f in files if not only or any(
            f["name"] == o.rstrip("/") or f["name"].startswith(o.rstrip("/") + "/") for o in only)]
        if not chosen:
            raise InvalidInput("none of the session's files match: see --list")
        targets = {f["name"]: safe_target(output, f["name"]) for f in chosen}
        _make_output(output)  # only now: a wrong code or session leaves no empty folder behind
        for f in chosen:
            if os.path.lexists(targets[f["name"]]):
                raise AlreadyExists(f"{targets[f['name']]} exists: move it away or use --output")
        sid = session["id"]
        sides = {f["name"]: crypto.ReceiverSide(code, sid, f["name"]) for f in chosen}
        client.request(sid, [{"filename": n, "public_key": b64e(s.public), "pake": b64e(s.message)}
                             for n, s in sides.items()])
        remaining = set(sides)
        with transfer_progress() as progress:
            while remaining:
                try:
                    acks = client.acknowledgements(sid, wait=10)
                except NotFound:
                    raise VaultError("the sender ended the session") from None
                for ack in acks:
                    if ack["filename"] in remaining:
                        _receive_one(client, output, sides[ack["filename"]], ack,
                                     targets[ack["filename"]], progress)
                        remaining.discard(ack["filename"])
                        say(f"received {targets[ack['filename']]}")
    finally:
        client.close()
    return 0


def _receive_one(client: RelayClient, output: Path, side: crypto.ReceiverSide, ack: dict,
                 target: Path, progress) -> None:
    try:
        key, meta = side.finish(b64d(ack["public_key"]), b64d(ack["pake"]), b64d(ack["meta"]))
    except crypto.KeyMismatch:
        raise crypto.KeyMismatch(
            "the key exchange failed: the code is wrong, or the relay (or someone on the way) "
            "tampered with the keys; nothing was written") from None
    chunks, size = int(meta["chunks"]), int(meta["size"])
    if chunks != int(ack["chunks"]) or meta.get("name") != ack["filename"]:
        raise CorruptData("the relay changed the description of the file")
    target.parent.mkdir(parents=True, exist_ok=True)
    if not inside(output, target.parent):
        raise CorruptData(f"{target} would land outside {output}")
    temp = target.parent / f".{target.name[:200]}.fvpart-{uuid.uuid4().hex[:8]}"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    task = progress.add_task(f"receiving {ack['filename']}", total=size)
    try:
        digest, written, nr, last_seen = hashlib.sha256(), 0, 0, time.monotonic()
        while nr < chunks:
            got = client.pop(ack["request_id"], wait=10)
            if got is None:
                if time.monotonic() - last_seen > STALL:
                    raise VaultError("the sender stopped sending")
                continue
            got_nr, iv, data = got
            if got_nr != nr:
                raise CorruptData("chunks arrived out of order or twice")
            plain = crypto.open_chunk(key, side.ctx, nr, nr == chunks - 1, iv, data)
            os.write(fd, plain)
            digest.update(plain)
            written += len(plain)
            nr += 1
            last_seen = time.monotonic()
            progress.advance(task, len(plain))
        if written != size or digest.hexdigest() != meta["sha256"]:
            raise CorruptData(f"{ack['filename']} did not arrive intact")
        os.fchmod(fd, 0o666 & ~_umask())
        os.fsync(fd)
        os.close(fd)
        fd = -1
        try:
            os.link(temp, target)  # never replaces a file that appeared meanwhile
        except FileExistsError:
            raise AlreadyExists(f"{target} appeared while receiving: not replaced") from None
        fsync_dir(target.parent)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        raise
    finally:
        temp.unlink(missing_ok=True)
    client.finish(ack["request_id"])


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
