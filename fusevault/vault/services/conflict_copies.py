"""Conflict copies: a losing edit kept as a file of its own beside the kept one (conflicts.py's rule
4, and a writer's edit kept where he wrote it), named ``NAME (conflict DEVICE DATE).EXT``.

Every device that makes a copy makes the same file: its id and key are derived from the losing
revision (``copy_ident``) or the writer's version (``edit_copy_ident``), tried again under the next
derived id where a document there is not the copy (``_copy_ident``).  The names are also used by
imports (imports/importer.py) for a file beside one of the same name.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import stat
import time
from collections.abc import Iterator

from fusevault.crypto.keys import subkey
from fusevault.errors import VaultError
from fusevault.store.local import LocalStore
from fusevault.vault.files.content import Content
from fusevault.vault.model import names
from fusevault.vault.model.history import version_plain
from fusevault.vault.model.nodes import NODE, Node, open_node_attrs
from fusevault.vault.services.conflict_rules import Leaf
from fusevault.vault.services.recovery import copy_into
from fusevault.vault.tree.arrivals import Absorbed
from fusevault.vault.tree.authorship import said_signer
from fusevault.vault.volume import Caller, Volume

# ``_copy_ident``: how many derived ids a conflict copy is tried under, each taken by a document that
# is not the copy; then a random one.
COPY_IDENTS = 4


def copy_ident(fid: str, rev: str, dek: bytes) -> tuple[str, bytes]:
    """The conflict copy's id and DEK: every device that makes the copy makes
    the same file (its key derived from the original's, which they all hold)."""
    fid = hashlib.sha256(f"fusevault conflict copy\0{fid}\0{rev}".encode()).hexdigest()[:32]
    return fid, subkey(dek, f"fusevault conflict-copy dek v1 {fid}")


def edit_copy_ident(fid: str, head: str, dek: bytes) -> tuple[str, bytes]:
    """A writer's copied edit's id and DEK (conflicts.py ``_writers_copy``): derived from the version it
    holds (its head), not from the revision that carried it.  The same edit served again under another
    revision (re-signed as a later state of his device, each a small document) is then the copy made
    already, here or on her other device: from the revision, each was one more full copy of his
    contents on her storage and her pushes (attack round 42b (5))."""
    return copy_ident(fid, f"head\0{head}", dek)


# The times a copy's name shows: four-digit years (1000-01-01 to 9999-12-31 23:59), whatever the
# mtime (a peer's, a source file's set at will): past them gmtime fails or the year grows a digit.
NAMED_FROM, NAMED_UNTIL = -30_610_224_000 * 10**9, 253_402_300_740 * 10**9


# A copy's label: at most this many bytes of UTF-8 (a device's name, a peer's: ``label_of``).
LABEL_BYTES = 64
# Numbered names a copy is tried under before random ones (``copy_names``), and a random one's hex digits.
NUMBERED = 1000
RANDOM_HEX = 8
KEPT_TAIL = 12  # bytes of a label kept at its end when it is cut (its number: ``copy_names``)


def copy_name(name: bytes, device: str, mtime_ns: int) -> bytes:
    """``notes (conflict DEVICE 2026-12-07 10.30).txt``: a copy's name beside ``name``, always a name
    (at most ``names.MAX_BYTES``).  The stem is cut to make room; an extension of more than half of that
    goes into the stem (as ``names.beside`` does), and the device's label is cut last, in its middle
    (its end is a copy's number): kept whole, a long extension made a 266-byte name, refused only once
    the whole copy was written, at every retry of an import (attack round 65a (1)); cut at its end, the
    numbered names of a long label were all one name (66a (1))."""
    stem, dot, ext = name.rpartition(b".")
    if not dot or not stem or len(ext) > names.MAX_BYTES // 2:  # no extension, a dot file, mostly "extension"
        stem, dot, ext = name, b"", b""
    when = time.strftime("%Y-%m-%d %H.%M", time.gmtime(min(max(mtime_ns, NAMED_FROM), NAMED_UNTIL) / 1e9))
    room = names.MAX_BYTES - 1 - len(f" (conflict  {when})".encode()) - len(dot + ext)
    raw = device.encode("utf-8", "replace")
    if len(raw) > room:
        keep = min(KEPT_TAIL, room // 2)
        raw = raw[:room - keep].decode("utf-8", "ignore").encode() + raw[len(raw) - keep:]
    label = raw.decode("utf-8", "ignore")  # never half a character
    tail = f" (conflict {label} {when})".encode() + dot + ext
    return names.ending(stem, tail)  # the stem cut at a character's start (69c (4))


def copy_names(name: bytes, device: str, mtime_ns: int) -> Iterator[bytes]:
    """The names a copy beside ``name`` is tried under, the first free one taken: ``copy_name``, then
    numbered ``DEVICE 2`` up to ``NUMBERED``, then random: a folder filled with numbered names (a writer
    of a shared folder) costs a bounded look, and the search always ends (66a (1): with a cut label
    every numbered name was one, and the conflict's loop spun the mount's thread for good)."""
    yield copy_name(name, device, mtime_ns)
    for number in range(2, NUMBERED + 1):
        yield copy_name(name, f"{device} {number}", mtime_ns)
    while True:
        yield copy_name(name, f"{device} {secrets.token_hex(RANDOM_HEX // 2)}", mtime_ns)


def label_of(device: object) -> str:
    """A device's name as a copy's label: a peer's own choice (sealed in its version), so a printable
    string of at most ``LABEL_BYTES`` bytes of UTF-8, else ``another device``.  A lone surrogate in it
    raised out of the conflict's settling, the rest of the batch left unsettled (66a (2))."""
    if not isinstance(device, str) or not device.isprintable():
        return "another device"
    try:
        encoded = device.encode("utf-8")
    except UnicodeEncodeError:
        return "another device"
    if len(encoded) > LABEL_BYTES or not names.valid(encoded):
        return "another device"
    return device


async def conflict_copy(volume: Volume, store: LocalStore, loser: Leaf, out: Absorbed,
                         ident: tuple[str, bytes] | None = None) -> None:
    """Make the conflict copy, shown only once it holds all of the loser's bytes.

    Until then no lookup or listing shows it (``Tree.unshown``): with the
    writeback cache the kernel keeps the size it first took of a file it
    knows, and a program that looked at the folder while the copy was still
    empty read it empty for good (tests/services/test_sync.py, the copy looked
    at while it is made).  Its document is committed with its first version
    (``defer``), so no replica ever holds it empty: a peer takes it whole, and
    a ``kill -9`` before that leaves no copy, so the next mount settles the
    conflict again, rather than finding an empty copy "made already".
    ``ident``: the copy's id and DEK, if not the losing revision's (``copy_ident``)."""
    free = _copy_ident(volume, store, loser, ident or copy_ident(loser.doc["_id"], loser.doc["_rev"],
                                                                 loser.node.dek))
    if free is None:
        return  # made already, here or by another device
    fid, dek = free
    node = loser.node
    # Opened first, in a worker thread: its manifest is read and checked (in a
    # vault kept in CouchDB, with its version document from the server).  From
    # here on nothing waits until the copy exists, so its name stays free.
    reader = await volume.in_thread(functools.partial(Content, volume.layout, node.owner, node.fid, node.dek,
                                                      node.manifest, node.head, check_sidecar=False,
                                                      epoch=node.epoch))
    if _copy_there(volume, fid, dek, loser, store.get(fid)):
        reader.close()
        return  # made meanwhile (a document that is not the copy there now: ours is committed over it, below)
    if volume.holds(fid):  # another's node arrived there meanwhile: not the copy, said, the next id
        if (free := _copy_ident(volume, store, loser, ident or copy_ident(
                loser.doc["_id"], loser.doc["_rev"], loser.node.dek))) is None:
            reader.close()
            return
        fid, dek = free
    parent_fid, name = loser.links[0] if loser.links else (None, b"file")
    parent = volume.find(parent_fid)
    if not _home(volume, parent):
        parent = volume.root
    device = label_of(_device_of(store, loser))
    if not names.valid(name):
        names.refuse(volume, loser.doc["_id"], f"a concurrent edit of {loser.doc['_id']} had a name that "
                     "is not a file name: its conflict copy is named 'file'")
        name = b"file"
    copy = next(c for c in copy_names(name, device, loser.node.mtime) if c not in parent.children)
    volume.tree.unshown.add(fid)
    try:
        try:
            fh, made = await volume.create(parent.ino, copy, stat.S_IMODE(node.mode),
                                           Caller(node.uid, node.gid), ident=(fid, dek), defer=True)
        except BaseException:
            reader.close()
            raise
        volume.forget(made.ino, 1)  # made here, not looked up by the kernel
        try:
            await copy_into(volume, fh, reader, node.size)
        except BaseException:
            # Not all of its bytes (unreadable, or the mount stopping): no
            # copy rather than a short one, which would count as made already.
            # The conflict stays open: the next arrival or mount settles it again.
            volume.abandon(fh)
            raise
        if made.rev is None and (stored := store.get(fid)) is not None:
            # The other device's copy of it came meanwhile, its version still
            # on its way (the tree waits for that): the same bytes, and ours
            # is committed as its next revision, not beside it.
            volume.tree.stand_on(made, stored["_rev"])
        await volume.release(fh)
    finally:
        volume.tree.unshown.discard(fid)
    out.entries.append((parent.ino, copy))  # the kernel asks again: nothing it holds says "no such file"


def _home(volume: Volume, parent: Node | None) -> bool:
    """Whether ``parent`` (what a losing branch names as its file's folder) may hold the conflict copy:
    a real folder of her tree, reachable by a name, that she may make a file in.  Else the copy goes to
    her root.  Gone, or not a folder: a branch may name a file of hers as its parent, whose children
    are None (a TypeError out of the settling, the batch left unsettled: attack round 67a (1)); a
    folder she removed that the kernel still holds (no links: kept in the tree until forgotten), where
    the copy was reachable from no name of hers (69c (3)); a view folder (``shared/<owner>``,
    ``groups/<group>``: any string is a link's parent) or a folder she may only read, where the create
    was refused (PermissionDenied) and the conflict stayed open, "could not settle" at every arrival
    (70c (2))."""
    if parent is None or parent.children is None:
        return False
    if parent is volume.root:
        return True
    return bool(parent.links) and volume.may_write(parent)  # a view folder is only listed (``perm``: LIST)


def _copy_ident(volume: Volume, store: LocalStore, loser: Leaf, ident: tuple[str, bytes],
                ) -> tuple[str, bytes] | None:
    """The id and DEK to make ``loser``'s conflict copy under: ``ident`` (derived), or, a document
    there that is not this copy (``_made_copy``), said, the next of ``COPY_IDENTS`` derived from it
    (the same on her every device), then a random one.  None: the copy is made already.  Any document
    at the derived id was "made already": the id is a hash of clear values (the file's id, the
    revision or version head), a server planted one there and his edit was closed uncopied, lost
    unsaid (attack round 43c (7)); so was any node held there (a member's file: 45c (3),
    ``_copy_there``)."""
    first, dek = ident
    fid = first
    for number in range(1, COPY_IDENTS + 1):
        doc = store.get(fid)
        if _copy_there(volume, fid, dek, loser, doc):
            return None
        if doc is None and not volume.holds(fid) and (
                volume.ledger is None or volume.ledger.owner_seen(fid) in (None, volume.key.user_id)):
            return fid, dek  # not another owner's file seen here once (collected since): 58b (1)
        _say_copy_id_taken(volume, loser, fid)
        fid, dek = copy_ident(loser.doc["_id"], f"taken\0{first}\0{number}", loser.node.dek)
    return copy_ident(loser.doc["_id"], f"random\0{secrets.token_hex(16)}", loser.node.dek)


def _copy_there(volume: Volume, fid: str, dek: bytes, loser: Leaf, doc: dict | None) -> bool:
    """Whether ``loser``'s copy is made already at ``fid``: its stored document ``doc`` is the copy
    (``_made_copy``), or, none stored, the node held there is one this device is making under the
    copy's key (its document committed with its first version: ``conflict_copy``'s ``defer``).  A
    node merely held there was the copy made: a WRITE member can give a file of his that id (a hash
    of clear values his replica holds), and her losing edit was closed uncopied, unsaid (attack
    round 45c (3))."""
    if doc is not None:
        return _made_copy(volume, doc, dek, loser)
    held = volume.find(fid) if volume.holds(fid) else None
    return held is not None and held.dek == dek


def _made_copy(volume: Volume, doc: dict | None, dek: bytes, loser: Leaf) -> bool:
    """Whether ``doc``, stored at a conflict copy's id, is that copy: a node document that opens under
    the copy's DEK (derived from the loser's key: no server holds it) signed by this user, the file's
    owner or the loser's signer (one who holds that key: not a reader of the file, nor a server)."""
    if doc is None or doc.get("type") != NODE:
        return False
    gate = volume.authorship
    if gate is None:
        return True  # no signatures to judge by (a vault without key pairs): as any document there
    owner = doc.get("owner")
    try:
        signer = gate.trust.verify(doc, author=owner if isinstance(owner, str) else None)
        open_node_attrs(doc, dek)
    except VaultError:
        return False
    return signer in (volume.key.user_id, loser.node.owner, said_signer(loser.doc))


def _say_copy_id_taken(volume: Volume, loser: Leaf, fid: str) -> None:
    alarms = names.alarms_of(volume)
    if alarms is not None:
        alarms.warn("forged", fid, f"a document at the id of the conflict copy of {loser.doc['_id']}'s "
                    f"revision {str(loser.doc['_rev'])[:40]} is not that copy: the copy is made under "
                    "another id")


def _device_of(store: LocalStore, leaf: Leaf) -> object:
    """What the loser's head version says of the device that wrote it (``label_of`` judges it), or None
    where that version does not open: its copy is still made ("another device"), else the loser was
    never copied, "could not settle" at each arrival (attack round 69c (1))."""
    try:
        doc = store.get(leaf.node.head) if leaf.node.head else None
        return version_plain(doc, leaf.node.dek).get("device") if doc else None
    except VaultError:
        return None
