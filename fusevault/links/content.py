"""Files into a link version and out of it again.

Synchronous (httpx, file I/O): the CLI calls it directly, the mount from a
worker thread.  What is published is a list of ``Source`` entries, read
from an ordinary folder here or from the vault by the mount; what is
fetched is written to an ordinary folder here (hidden temporary file,
checked against the manifest's size and SHA-256, fsynced, then renamed), or
into the vault by the mount.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import stat
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from fusevault.crypto import aead
from fusevault.encoding import b64d, b64e, name_start, shown, str_to_name
from fusevault.errors import AlreadyExists, CorruptData, InvalidInput
from fusevault.host_access import SAFE_MODE_BITS  # never a setuid, setgid or sticky bit (as export)
from fusevault.links.capability import open_block, seal_block
from fusevault.modes import her_umask
from fusevault.transfer.offer import link_stays_inside
from fusevault.transfer.output import away_from_views, check_new_tops, resolves_inside, safe_target
from fusevault.vault.model import names

if TYPE_CHECKING:  # loaded by who uses a link (links/owner.py ``_client``)
    from fusevault.links.client import LinkClient

log = logging.getLogger(__name__)

BLOCK = 1024 * 1024  # plaintext bytes per block
UPLOADERS = 4  # blocks sent at once
IN_FLIGHT = 8  # blocks read but not yet stored
KINDS = ("file", "dir", "symlink")
# Each folder on the way to what a link writes: never a link (ELOOP), never anything but a folder.
_FOLDER = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_HEX = frozenset("0123456789abcdef")  # a SHA-256 as hexdigest() writes it


@dataclass(frozen=True)
class Source:
    path: str  # relative; its first part is the published file or folder's name
    kind: str  # one of KINDS
    mode: int
    mtime_ns: int
    target: str | None = None  # a symlink's
    read: Callable[[], Iterator[bytes]] | None = None  # a file's contents, in blocks


def local_sources(path: Path) -> list[Source]:
    """A file or folder on the local disk, symlinks kept as links (never followed)."""
    if not os.path.lexists(path):
        raise InvalidInput(f"{path} does not exist")
    found = []
    top = path.name or path.resolve().name

    def add(p: Path, rel: str) -> None:
        st = p.lstat()
        if stat.S_ISLNK(st.st_mode):
            found.append(Source(rel, "symlink", 0o777, st.st_mtime_ns, os.readlink(p)))
        elif stat.S_ISDIR(st.st_mode):
            found.append(Source(rel, "dir", stat.S_IMODE(st.st_mode), st.st_mtime_ns))
            for child in sorted(p.iterdir()):
                add(child, f"{rel}/{child.name}")
        elif stat.S_ISREG(st.st_mode):
            found.append(Source(rel, "file", stat.S_IMODE(st.st_mode), st.st_mtime_ns,
                                read=lambda: _blocks_of(p)))

    add(path, top)
    return found


def _blocks_of(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        while data := f.read(BLOCK):
            yield data


def upload(client: LinkClient, item: str, append_key: bytes, sources: list[Source],
           advance: Callable[[int], None] = lambda n: None) -> tuple[dict, list[str]]:
    """Seal and store every file's blocks; return the manifest and the block ids.

    Blocks are sealed and sent by a few threads at once (a round trip per
    block would otherwise be the limit), at most IN_FLIGHT blocks in memory."""
    dek = aead.new_key()  # this version's own: nonces are random under a fresh key

    def put(index: int, n: int, data: bytes) -> str:
        return client.add_block(item, append_key, seal_block(dek, item, index, n, data))

    entries, blocks = [], []
    with ThreadPoolExecutor(UPLOADERS) as pool:
        for index, source in enumerate(sources):
            entry: dict = {"path": source.path, "type": source.kind, "mode": source.mode,
                           "mtime_ns": source.mtime_ns}
            if source.kind == "symlink":
                entry["target"] = source.target
            elif source.kind == "file" and source.read is not None:
                digest, size = hashlib.sha256(), 0
                sent: list[Future] = []
                for n, data in enumerate(source.read()):
                    if len(sent) >= IN_FLIGHT:
                        sent[-IN_FLIGHT].result()
                    sent.append(pool.submit(put, index, n, data))
                    digest.update(data)
                    size += len(data)
                    advance(len(data))
                ids = [f.result() for f in sent]
                entry.update(size=size, sha256=digest.hexdigest(), blocks=ids)
                blocks += ids
            entries.append(entry)
    return {"name": sources[0].path, "key": b64e(dek), "entries": entries}, blocks


def entries(manifest: dict) -> list[dict]:
    """The manifest's entries, checked: known kinds, relative names under one top name, which is
    one name (no "/"): whoever signs a link names what it makes, never a path into a folder of hers."""
    try:
        found = list(manifest["entries"])
        top = str(manifest["name"])
        if not names.valid(top):
            raise ValueError(top)
        # The first entry is the top, written first and naming the whole: an empty list (an
        # IndexError in the drop-box collector, at every run) stopped a box for good.
        if not found or found[0]["path"] != top:
            raise ValueError(top)
        # A key of another length failed only at decryption, a ValueError that kept a dropped item
        # on the server, fetched again at every run (attack round 23b (8)).
        if len(b64d(manifest["key"])) != aead.KEY_SIZE:
            raise ValueError("key")
        seen: set[str] = set()
        links = {str(entry["path"]) for entry in found if entry["type"] == "symlink"}
        for entry in found:
            path = str(entry["path"])
            if path in seen:  # a name twice (a symlink, then a folder through it): one thing each
                raise ValueError(path)
            # Nothing under one of the link's own symlinks: written through it, `photos/l -> ../.ssh`
            # put `photos/l/authorized_keys2` into her ~/.ssh (attack round 23b (2)).
            if any(path.startswith(link + "/") for link in links):
                raise ValueError(path)
            seen.add(path)
            safe_target(Path("/"), path)  # no "..", no absolute names
            if entry["type"] not in KINDS or (path != top and not path.startswith(top + "/")):
                raise ValueError(path)
            _check_fields(entry)
    except (KeyError, TypeError, ValueError, CorruptData):
        raise CorruptData("the link's list of files is malformed or unsafe: nothing was written") from None
    return found


def contents(client: LinkClient, read_key: bytes, item: str, manifest: dict, index: int) -> Iterator[bytes]:
    """One file's plaintext, block by block, each block authenticated in its place."""
    dek = b64d(manifest["key"])
    for n, block_id in enumerate(manifest["entries"][index]["blocks"]):
        yield open_block(dek, item, index, n, client.block(block_id, read_key))


def verified(chunks: Iterator[bytes], entry: dict) -> Iterator[bytes]:
    """``chunks``, then a check that they were the whole file the manifest describes."""
    digest, size = hashlib.sha256(), 0
    for data in chunks:
        digest.update(data)
        size += len(data)
        yield data
    if size != entry["size"] or digest.hexdigest() != entry["sha256"]:
        raise CorruptData(f"{shown(str(entry['path']))} did not arrive intact")


def write_local(client: LinkClient, read_key: bytes, item: str, manifest: dict, dest: Path,
                overwrite: bool = False, advance: Callable[[int], None] = lambda n: None) -> Path:
    """Write a fetched version into the folder ``dest``; return the top file or folder.

    The top must be new in ``dest`` (or ``overwrite``): a link never writes into a folder of hers
    that was there before.  Modes (``& SAFE_MODE_BITS``) and times go only to what this made.

    Every folder is reached from a descriptor of ``dest``, one name at a time, ``O_NOFOLLOW``, and
    every file is made and renamed relative to its folder's descriptor: no symbolic link on disk is
    ever followed, whoever made it.  Checked by path instead (``inside(dest, ...)``, then a write
    by path), ``--overwrite`` of a new version wrote ``photos/l/authorized_keys`` through the
    ``photos/l -> ../.ssh`` its old version had made, into her ~/.ssh (attack round 24b (5))."""
    if not dest.is_dir():
        raise InvalidInput(f"{dest} is not a folder")
    manifest = away_from_root_views(dest, manifest)
    found = entries(manifest)
    targets = [safe_target(dest, e["path"]) for e in found]
    if not overwrite:  # the same refusal (exit 11) as an existing file's, before any block is fetched
        check_new_tops(dest, [e["path"] for e in found], set(), " (use --overwrite to replace it)")
    tops = sorted({e["path"].split("/")[0] for e in found})
    root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # her choice: followed once
    try:
        made: set[str] = set()  # the folders this fetch made: her own keep their modes, --overwrite or not
        placed: set[str] = set()  # the file or symlink tops this fetch put in place
        try:
            # Symlinks last, once every file is whole: a fetch refused half-way (a bad block, Ctrl-C)
            # has made none, so none of them can lead out (attack round 25b (5)).
            for index, entry in enumerate(found):
                if entry["type"] != "symlink":
                    _place(client, read_key, item, manifest, index, root, made, placed, overwrite, advance)
            for index, entry in enumerate(found):
                if entry["type"] == "symlink":
                    _place(client, read_key, item, manifest, index, root, made, placed, overwrite, advance)
        except BaseException:
            with contextlib.suppress(OSError, CorruptData):  # the refusal is what she must see
                _drop_links_leading_out(root, dest, _ours(tops, made | placed, overwrite))
            raise
        _drop_links_leading_out(root, dest, _ours(tops, made | placed, overwrite))
        _set_folder_modes(root, [e for e in found if e["path"] in made])
    finally:
        os.close(root)
    return targets[0]


def away_from_root_views(dest: Path, manifest: dict) -> dict:
    """``manifest`` (checked by ``entries``), its top renamed ``NAME (2)`` throughout if ``dest`` is
    the root of a fusevault mount and the top is, or looks like, a name the root keeps for a view
    (transfer/output.py ``away_from_views``, as receive, drops and imports do).  Fetched as it was, a
    stranger's share link of a folder ``shared`` (or ``\u0455hared``) made a real folder of hers
    where bob's shares show, or, with --overwrite, wrote through the view into them (attack round
    55d (1)).  The entries keep their places (a block is sealed under its entry's index, not its
    path); a symlink's text is judged against the name it arrives under (``link_stays_inside``)."""
    found = entries(manifest)
    renamed = away_from_views(dest, [str(entry["path"]) for entry in found])
    if not renamed:
        return manifest
    top = renamed.get(str(manifest["name"]), str(manifest["name"]))
    return {**manifest, "name": top,
            "entries": [{**entry, "path": renamed.get(str(entry["path"]), str(entry["path"]))}
                        for entry in found]}


def _ours(tops: list[str], made: set[str], overwrite: bool) -> list[str]:
    """The tops whose symlinks are checked: all of them under ``overwrite`` (she chose to have the
    link's folder replace hers), else only those this fetch made -- a top that appeared at its name
    meanwhile (refused, exit 11) is not the link's, and nothing in it is touched."""
    return tops if overwrite else [top for top in tops if top in made]


def _place(client: LinkClient, read_key: bytes, item: str, manifest: dict, index: int, root: int,
           made: set[str], placed: set[str], overwrite: bool, advance: Callable[[int], None]) -> None:
    """One entry of the list in its place under ``root``: a folder made (or reached), a file or a
    symlink written.  Without ``overwrite`` a top is only ever made new, never put over anything;
    a file or symlink top put in place is added to ``placed``."""
    entry = manifest["entries"][index]
    parts = entry["path"].split("/")  # safe names (entries): none "", "." or ".."
    if entry["type"] == "dir":
        os.close(_reach(root, parts, made, new_top=not overwrite))  # a link or file there is refused
        return
    if entry["type"] == "symlink" and not link_stays_inside(entry["path"], entry["target"]):
        log.warning("did not make %s: a symlink to %s, outside its folder",
                    shown(entry["path"]), shown(entry["target"]))
        return
    folder = _reach(root, parts[:-1], made, new_top=not overwrite)
    try:
        _write_entry(client, read_key, item, manifest, index, folder, parts[-1], advance,
                     replace=overwrite or len(parts) > 1)
    finally:
        os.close(folder)
    if len(parts) == 1:
        placed.add(entry["path"])


def _reach(root: int, parts: list[str], made: set[str] | None, new_top: bool = False) -> int:
    """A descriptor of the folder ``parts`` under ``root``, each part opened ``O_NOFOLLOW |
    O_DIRECTORY``: a symlink or a file on the way is refused (on disk, whoever made it: an older
    version of the link, or she), never followed.  With ``made``, missing folders are made
    (``mkdir -p``) and their relative names added to it (only those may get the link's mode).
    With ``new_top``, the top folder must be one this fetch made: one that appeared at its name
    since it was checked new (hers, or another user's in a shared folder) is refused, exit 11."""
    here = os.dup(root)
    try:
        for depth, part in enumerate(parts, 1):
            rel = "/".join(parts[:depth])
            if made is not None:
                try:
                    os.mkdir(part, 0o777, dir_fd=here)  # less the umask, as mkdir -p
                    made.add(rel)
                except FileExistsError:
                    if new_top and depth == 1 and rel not in made:
                        raise _appeared(rel) from None
            inner = _open_folder_at(here, part, rel)
            os.close(here)
            here = inner
    except BaseException:
        os.close(here)
        raise
    return here


def _appeared(name: str) -> AlreadyExists:
    return AlreadyExists(f"{shown(name)} appeared while the link was fetched: not replaced "
                         "(use --overwrite to replace it)")


def _open_folder_at(folder: int, name: str, rel: str) -> int:
    try:
        return os.open(name, _FOLDER, dir_fd=folder)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
            raise CorruptData(f"{shown(rel)} is not a folder here (a symbolic link or a file is in its "
                              "place, or it is gone): nothing is written through it, stopped") from None
        raise


def _write_entry(client: LinkClient, read_key: bytes, item: str, manifest: dict, index: int, folder: int,
                 name: str, advance: Callable[[int], None], replace: bool = True) -> None:
    """One file or symlink under a hidden name in ``folder``, then renamed to ``name`` there: the
    rename replaces whatever ``name`` is (a symlink itself, never what it points to).  Not
    ``replace`` (a top without --overwrite): linked to ``name`` instead, which never replaces --
    a file that appeared there during the download (minutes, for a big one) is kept, the fetch
    refused (attack round 25b (2)), as ``receive`` does."""
    entry = manifest["entries"][index]
    temp = f".{name_start(name)}.fvpart-{uuid.uuid4().hex[:8]}"
    try:
        if entry["type"] == "symlink":
            os.symlink(str(entry["target"]), temp, dir_fd=folder)
        else:
            chunks = verified(contents(client, read_key, item, manifest, index), entry)
            _write_file(folder, temp, chunks, entry, advance)
        if replace:
            os.replace(temp, name, src_dir_fd=folder, dst_dir_fd=folder)
        else:
            _link_new(folder, temp, name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp, dir_fd=folder)
    os.fsync(folder)


def _link_new(folder: int, temp: str, name: str) -> None:
    """``temp`` at ``name`` too, only if nothing is there (a symlink linked itself, not followed)."""
    try:
        os.link(temp, name, src_dir_fd=folder, dst_dir_fd=folder, follow_symlinks=False)
    except FileExistsError:
        raise _appeared(name) from None


def _drop_links_leading_out(root: int, dest: Path, tops: list[str]) -> None:
    """Every symlink under the ``tops`` -- made now, by an older version, or by her -- resolved
    with every link in place, must stay inside its top: what one resolves to depends on the links
    beside it (an old ``l -> d/..`` climbs wherever a new ``d`` points, attack round 25b (1)), and
    a dangling one could be given a meaning later.  Those that do not are removed, each said.
    Again until none is: removing one can leave another dangling.  As ``receive`` does
    (transfer/output.py ``make_links``)."""
    while True:
        out = [rel for top in tops for rel in _symlinks_under(root, top)
               if not resolves_inside(dest / top, dest / rel)]
        if not out:
            return
        for rel in out:
            _unlink_at(root, rel)
            log.warning("did not keep %s: through other symlinks it leads outside its folder", shown(rel))


def _symlinks_under(root: int, top: str) -> list[str]:
    """The relative names of the symlinks at or under ``top``, folders walked ``O_NOFOLLOW`` from
    ``root`` (a symlink is listed, never followed)."""
    try:
        st = os.stat(top, dir_fd=root, follow_symlinks=False)
    except FileNotFoundError:
        return []
    if stat.S_ISLNK(st.st_mode):
        return [top]
    if not stat.S_ISDIR(st.st_mode):
        return []
    found: list[str] = []
    pending = [top]
    while pending:
        rel = pending.pop()
        fd = _reach(root, rel.split("/"), None)
        try:
            with os.scandir(fd) as listing:
                for item in listing:
                    if item.is_symlink():
                        found.append(f"{rel}/{item.name}")
                    elif item.is_dir(follow_symlinks=False):
                        pending.append(f"{rel}/{item.name}")
        finally:
            os.close(fd)
    return found


def _unlink_at(root: int, rel: str) -> None:
    parts = rel.split("/")
    folder = _reach(root, parts[:-1], None)
    try:
        if stat.S_ISLNK(os.stat(parts[-1], dir_fd=folder, follow_symlinks=False).st_mode):
            os.unlink(parts[-1], dir_fd=folder)
    finally:
        os.close(folder)


def _set_folder_modes(root: int, folders: list[dict]) -> None:
    """The link's modes and times for the folders this fetch made, deepest first, once everything
    is in them (a read-only one would refuse its files).  Each reached from ``root`` part by part
    O_NOFOLLOW: a link in a folder's place (the sender's own symlink to ../.ssh) never gives the
    folder it names the sender's mode (attack round 17 (4))."""
    for entry in reversed(folders):
        fd = _reach(root, entry["path"].split("/"), None)
        try:
            os.fchmod(fd, entry["mode"] & SAFE_MODE_BITS & ~her_umask())
            os.utime(fd, ns=(entry["mtime_ns"], entry["mtime_ns"]))
        finally:
            os.close(fd)


def _write_file(folder: int, temp: str, chunks: Iterator[bytes], entry: dict,
                advance: Callable[[int], None]) -> None:
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                 dir_fd=folder)
    with open(fd, "wb") as out:
        os.fchmod(out.fileno(), 0o600)
        for data in chunks:
            out.write(data)
            advance(len(data))
        out.flush()
        os.fchmod(out.fileno(), entry["mode"] & SAFE_MODE_BITS & ~her_umask())
        os.utime(out.fileno(), ns=(entry["mtime_ns"], entry["mtime_ns"]))
        os.fsync(out.fileno())


def _check_fields(entry: dict) -> None:
    """The fields writing an entry uses, of the types it uses: whoever signs a link or drops into
    a box writes them (a mode that was no number ended the mount's drop-box collector:
    tests/mount/test_trust_attack_round22b.py, hole 3)."""
    if entry["type"] == "symlink":
        target = entry["target"]
        # A target is written as a file name: text that is no name (a lone surrogate, valid JSON)
        # was a UnicodeEncodeError in the collector, which kept the item on the server for good
        # (attack round 24b (1)); an empty one or one with NUL no file system takes either.
        if not isinstance(target, str) or not target or "\0" in target:
            raise ValueError("target")
        str_to_name(target)  # UnicodeEncodeError, a ValueError: malformed
        return
    if not _whole(entry["mode"], 0, 0o7777) or not _whole(entry["mtime_ns"], -(2**63), 2**63 - 1):
        raise ValueError("mode or mtime_ns")
    if entry["type"] == "file":
        _check_file_fields(entry)


def _check_file_fields(entry: dict) -> None:
    """What checking a fetched file reads after its last block (``verified``): a file entry without
    ``size`` or ``sha256`` was a KeyError there, which kept a dropped item on the server, fetched
    again at every run (attack round 24b (1))."""
    blocks, digest = entry["blocks"], entry["sha256"]
    if not isinstance(blocks, list) or not all(isinstance(b, str) for b in blocks):
        raise ValueError("blocks")
    if not _whole(entry["size"], 0, 2**63 - 1):
        raise ValueError("size")
    if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _HEX:
        raise ValueError("sha256")


def _whole(value: object, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high
