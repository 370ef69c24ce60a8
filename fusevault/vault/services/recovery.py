"""History, restore and the trash, on a loaded Volume.

A restore never destroys anything: bringing back an older version makes it
the newest version (the versions after it stay in the history), and taking a
file out of the trash gives its node a name again, with all its versions.
"""

from __future__ import annotations

import functools
import re
import stat
import time
from dataclasses import dataclass

from fusevault.encoding import name_to_str, str_to_name
from fusevault.errors import Exists, InvalidInput, NotFound, ReservedName, VaultError
from fusevault.store import Store
from fusevault.vault.files.content import Content
from fusevault.vault.model import names
from fusevault.vault.model.history import Version, file_history, pick
from fusevault.vault.model.nodes import NODE, Node, detached_node, open_node_doc
from fusevault.vault.model.trash_seen import TrashSeen, deleted_at
from fusevault.vault.services.placing import make_dirs, split
from fusevault.vault.tree.authorship import said_signer
from fusevault.vault.volume import Caller, Volume

COPY_CHUNK = 1024 * 1024


@dataclass
class Trashed:
    doc: dict
    path: bytes
    deleted_at: int  # the time the trash counts from (vault/model/trash_seen.py)
    size: int
    dated: int  # the time its deleter sealed in it

    def as_dict(self) -> dict:
        return {"id": self.doc["_id"], "path": name_to_str(self.path),
                "deleted_at": self.deleted_at, "dated": self.dated, "size": self.size}


# Names programs give their temporary files, deleted again within moments:
# listed in the trash only when asked for (they stay restorable by path).
TEMPORARY = re.compile(
    r"""(?x) ^(?:
        .+\.lock                                  # git index.lock, HEAD.lock, ...
      | .+-(?:journal|wal|shm)                     # SQLite
      | .*\.sw[a-px]                               # vim swap files (.swp, .swo, ..., .swx)
      | 4913                                       # vim's probe for a writable folder
      | .+~                                        # backups (emacs, gedit, ...)
      | \.\#.* | \#.+\#                             # emacs lock and auto-save files
      | \.~lock\..*\#                               # LibreOffice locks
      | ~\$.+                                      # Microsoft Office owner files
      | .+\.(?:part|crdownload|partial|download)   # downloads in progress
      | \.goutputstream-.*                         # GLib's atomic saves
      | .+\.kate-swp                               # Kate
      | .+___jb_(?:tmp|old)___                     # JetBrains' safe write
      | \.fuse_hidden.* | .*\.fvpart.*              # FUSE, fusevault's own temporaries
    )$""")


# git's own probes and half-written objects inside a repository.
GIT_TEMPORARY = re.compile(r"(?:^|.*/)\.git/(?:.*/)?(?:t[0-9A-Za-z]{6}|tmp_(?:obj|pack|idx)_.*)$")


def temporary(path: bytes) -> bool:
    """True for a file programs use for their temporary files (by its path)."""
    text = name_to_str(path)
    return TEMPORARY.match(text.rpartition("/")[2]) is not None or GIT_TEMPORARY.match(text) is not None


def within(path: bytes, place: bytes) -> bool:
    """True when ``path`` is ``place`` or under it (both relative to the root)."""
    place = place.strip(b"/")
    return not place or path == place or path.startswith(place + b"/")


def trash(volume: Volume, remember: bool = True) -> list[Trashed]:
    """Deleted files still recoverable, most recently deleted first (by the
    time the trash counts from: a deleter's own date is not taken as it is,
    vault/model/trash_seen.py).  ``remember``: note the deletions seen for
    the first time (a small write: not on the trio loop)."""
    entries = []
    accept = volume.authorship.accepts(volume) if volume.authorship is not None else None
    seen = TrashSeen.open(volume.key, volume.layout.root)
    now = time.time_ns()
    docs = deleted_nodes(volume.store, volume.key.user_id)
    for doc in docs:
        if (doc := signed_deletion(volume, doc)) is None:
            continue  # another's document its clear fields were made to name hers (said at admit)
        if accept is not None and not accept(doc):
            continue  # refused, and said (vault/tree/authorship.py)
        if (live := volume.find(doc["_id"])) is not None and live.links:
            # A deletion refused at unlock (vault/tree/undeleting.py): the file is
            # still in its folder, never in the trash (nor restorable at the
            # deleter's ``trashed`` path: a second name for it).
            continue
        try:
            _, attrs = open_node_doc(doc, volume.key)
        except VaultError as err:  # one that does not open is left out, never the whole trash
            names.refuse(volume, doc["_id"], f"refused the trash entry of {doc['_id']}: {err}")
            continue
        if attrs.get("trashed") and not stat.S_ISDIR(attrs["mode"]):
            path, when = attrs["trashed"]
            why = names.path_problem(path) if isinstance(path, str) else "a malformed path"
            if why is not None:
                names.refuse(volume, doc["_id"], f"refused the trash entry of {doc['_id']}: {why}")
                continue
            first = seen.first_seen(doc, now, remember)
            entries.append(Trashed(doc, str_to_name(path), deleted_at(doc, when, volume.key.user_id, first),
                                   attrs["size"], when))
    if remember:
        seen.save(keep=[d["_id"] for d in docs])
    return sorted(entries, key=lambda t: t.deleted_at, reverse=True)


def deleted_nodes(store: Store, owner: str) -> list[dict]:
    return [d for d in store.iter_type(NODE) if d.get("delete") and d.get("owner") == owner]


def signed_deletion(volume: Volume, doc: dict) -> dict | None:
    """``doc`` as its signer signed it, if that is still a deletion of one of the user's files: the
    clear ``owner`` and ``delete`` are the store's to change (another user's document made to name
    her broke her trash, restore and gc: attack round 41c (3))."""
    gate = volume.authorship
    if gate is None:
        return doc
    admitted = gate.admit(doc)
    if admitted is None:
        return None
    signed = admitted[0]
    return signed if signed.get("delete") and signed.get("owner") == volume.key.user_id else None


def _from_trash(volume: Volume, path: bytes) -> Trashed:
    for entry in trash(volume, remember=False):  # the latest deletion at that path
        if entry.path == path.strip(b"/"):
            return entry
    raise NotFound(f"{name_to_str(path)} is neither in the vault nor in its trash")


async def find_file(volume: Volume, path: bytes) -> tuple[Node, Trashed | None]:
    """The file at ``path``, or the last one deleted there (with its trash entry),
    if this user may read it (its versions need READ)."""
    try:
        node = volume.resolve(path)
    except NotFound:
        # Their own trash only, read off the loop: it parses and judges every deleted document.
        entry = await volume.read_call(_from_trash, volume, path)
        return detached_node(entry.doc, volume.key), entry
    volume.check(node)
    if not node.is_reg:
        raise InvalidInput(f"{name_to_str(path)} is not a file: versions are kept for files")
    return node, None


async def versions(volume: Volume, node: Node) -> list[Version]:
    """The file's versions, and those of the files it replaced by renames."""
    # Read from the store: a rename over the file it replaced (an editor's save)
    # may still wait for its group commit (vault/tree/inodes.py), and until
    # then the store does not say that file was replaced.
    await volume.flush_pending()
    accept = volume.authorship.accepts(volume) if volume.authorship is not None else None
    # Off the loop: every version's document is opened and its signature judged.
    return await volume.read_call(file_history, volume.store, volume.key, node.fid, node.dek,
                                  node.previous, node.epoch, accept)


async def history(volume: Volume, path: bytes) -> list[Version]:
    node, _ = await find_file(volume, path)
    return await versions(volume, node)


async def restore(volume: Volume, path: bytes, *, at: int | None = None, vid: str | None = None,
                  to: bytes | None = None) -> tuple[bytes, Version | None, Node]:
    """Bring back a version of ``path`` (or a deleted file); return (where, which, node).

    A deleted file that was never written (empty since it was made) has no
    version: it comes back empty, and ``which`` is None.  In place, the file
    must be the user's or shared with them with WRITE; ``to`` must be a
    folder they may write (the Volume refuses otherwise, whoever calls)."""
    node, entry = await find_file(volume, path)
    if to is None and entry is None:
        volume.check(node, write=True)  # before anything is read or changed
    found = await versions(volume, node)
    version = None
    if found or entry is None or at is not None or vid is not None:
        version = pick(found, at, vid, latest=entry is not None)
    if to is not None:
        return to, version, await _copy_out(volume, node, version, to)
    if entry is not None:
        node = volume.adopt(entry.doc)
        where, name = split(entry.path)
        parent = await make_dirs(volume, where, Caller(node.uid, node.gid))
        _hold_back_unless_seen_there(volume, entry.doc, parent)
        await volume.relink(node, parent.ino, name)
        path = entry.path
    if version is not None and version.vid != node.head:
        if version.fid == node.fid and version.dek == node.dek:
            await volume.restore_contents(node, version.manifest, version.vid)
        else:  # another file's version (this one replaced it) or another epoch: other key, so copied
            # A version of the file this one replaced comes back as that file was: its owner, the
            # stricter mode, set before its contents are in it (another user's file never gets them).
            mode, uid, gid = kept_as(node, version)
            if (mode, uid, gid) != (stat.S_IMODE(node.mode), node.uid, node.gid):
                await volume.setattr(node.ino, mode=mode, uid=uid, gid=gid)
            fh = await volume.open(node.ino, write=True)
            try:
                await volume.setattr(node.ino, size=0)
                await _copy(volume, node, version, fh)
            finally:
                await volume.release(fh)
    if entry is not None:
        # Its key is the one it had when it was deleted: an unshare since
        # (rotation.rotate) gave new keys to the live files only, and the
        # revoked recipient kept this one.  What is written to it from now on
        # is sealed under a new key, given to whoever may read it now.
        await volume.rekey(node)
    return path, version, node


def kept_as(node: Node, version: Version | None) -> tuple[int, int, int]:
    """The (mode bits, uid, gid) a version's contents may be written under: the file's own for its
    own version; for a version of a file it replaced by a rename (``Version.holder``), that file's
    owner and the strictest of its last mode and this file's.  So a restore gives no one contents
    the replaced file did not let them read (another user's ``mv`` over her 0600 file, or her
    own ``mv draft.txt diary.txt``: attack round 49t (1))."""
    bits = stat.S_IMODE(node.mode)
    if version is None or version.holder is None:
        return bits, node.uid, node.gid
    holder = version.holder
    return bits & stat.S_IMODE(holder.mode), holder.uid, holder.gid


def _hold_back_unless_seen_there(volume: Volume, doc: dict, parent: Node) -> None:
    """A deletion another user signed names the path it went from (``trashed``)
    in his own words: a file restored there, in a folder this device did not
    last see it in, is kept ``behind`` (vault/model/ledger.py): no share of
    that folder seals its key (the restore gives it a new one) until the owner
    moves it herself."""
    ledger = volume.ledger
    if ledger is None or said_signer(doc) in (None, doc.get("owner")):
        return
    if parent.fid not in (ledger.was_at(doc["_id"]) or ()):
        ledger.hold_back(doc["_id"], [parent.fid])


async def _copy_out(volume: Volume, node: Node, version: Version | None, to: bytes) -> Node:
    """A new file at ``to`` with the version's contents (a new file id, so new blocks), made with the
    mode and owner the version may be read under (``kept_as``)."""
    mode, uid, gid = kept_as(node, version)
    where, name = split(to)
    if not where.strip(b"/") and name in names.RESERVED_AT_ROOT:
        # A real file there would hide the view of that name: her history under ``.versions``, and
        # one she could not remove (attack round 52t (1)).
        raise ReservedName(f"{name_to_str(name)} is kept at the root for a view of the mount: "
                           "choose another --to")
    parent = await make_dirs(volume, where, Caller(uid, gid))
    if name in parent.children:
        raise Exists(f"{name_to_str(to)} exists: choose another --to")
    fh, new = await volume.create(parent.ino, name, mode, Caller(uid, gid))
    volume.forget(new.ino, 1)
    try:
        if version is not None:
            await _copy(volume, node, version, fh)
    finally:
        await volume.release(fh)
    return new


async def _copy(volume: Volume, node: Node, version: Version, fh: int) -> None:
    # Opened in a worker thread: its manifest is read and checked (in a vault
    # kept in CouchDB, with its version document from the server).
    reader = await volume.in_thread(functools.partial(Content, volume.layout, node.owner, version.fid,
                                                      version.dek, version.manifest, version.vid,
                                                      check_sidecar=False))
    await copy_into(volume, fh, reader, version.size)


async def copy_into(volume: Volume, fh: int, reader: Content, size: int) -> None:
    """Write what ``reader`` holds into the open file ``fh`` (sealed anew under
    its key), then close the reader."""
    try:
        for start, end in await volume.in_thread(reader.data_ranges, size):  # holes stay holes
            for offset in range(start, end, COPY_CHUNK):
                data = await volume.in_thread(reader.read, offset, min(COPY_CHUNK, end - offset), size)
                await volume.write(fh, offset, data)
        if size:
            await volume.fallocate(fh, 0, 0, size)  # as long as the original, past its last data
    finally:
        reader.close()
