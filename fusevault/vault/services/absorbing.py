"""Taking into a user's tree what someone else just wrote to the vault.

In a shared mount each unlocked user has a tree of their own over one store.
When one of them commits, the others take the new documents in here, at
once and in memory, before any other request runs:

- a node document of a node the tree holds replaces its attributes, its
  names (links) and its key epoch; contents the reader has open but not
  changed switch to the new version (the old one stays readable to reads
  already under way and is closed at the file's last release); contents
  the reader is changing stay theirs, and their next commit is a version
  after this one (every version is kept);
- a node document whose parent the tree holds, and which the user can open
  (their own, or with a key sealed to them), becomes a new node there;
- a node the user can no longer open (deleted, or its key rotated away from
  them) leaves the tree;
- a change of shares, groups or users reloads the user's Sharing, and guest
  nodes the user no longer reaches leave the tree and lose their keys.

A revoke never loses what the user wrote before it: a guest file holding
their unsaved writes (open, written, not yet closed) loses its permission at
once (no path reaches it, further writes are refused) but keeps its key and
names until those writes are saved as the owner's next version (``save``,
at once; the owner's mount then seals it again under the new key).  Files
open only for reading keep serving what was read so far through their open
handles, and leave the tree at once.

What the kernel may cache about each change is returned, for the caller to
invalidate (from a worker thread).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fusevault.errors import VaultError
from fusevault.vault.model import names
from fusevault.vault.model.groups import GROUP
from fusevault.vault.model.nodes import NODE, Node, node_from_doc, open_node_doc
from fusevault.vault.model.sharing import FILE_KEY, SHARE
from fusevault.vault.model.users import USER
from fusevault.vault.tree.guests import key_files, open_guest

if TYPE_CHECKING:
    from fusevault.vault.volume import Volume

log = logging.getLogger(__name__)
ROOT_INODE = 1  # as in vault/volume.py (not imported: it imports this module)

SHARING_TYPES = frozenset((SHARE, GROUP, USER, FILE_KEY))
# Taken from a newer document; a node's contents and key only when the reader
# has no unsaved changes of their own (those are sealed under the key they
# were opened with, and committed with it).
ATTRS = ("mode", "uid", "gid", "rdev", "atime", "ctime", "btime", "xattrs", "target", "trashed",
         "previous", "rev")
CONTENTS = ("size", "stored_size", "allocated", "mtime", "head", "manifest", "dek", "epoch", "wrapped")


@dataclass
class Absorbed:
    """What the kernel may hold that the change made stale."""

    entries: list[tuple[int, bytes]] = field(default_factory=list)
    inodes: list[int] = field(default_factory=list)
    # The owner's nodes another user committed under an older key than the
    # owner's newest (they were writing during a revoke): to be rotated again.
    rekey: list[Node] = field(default_factory=list)
    # Guest files whose share ended while they held this user's unsaved
    # writes: to be saved now (``save_leaving``), then they leave.
    save: list[Node] = field(default_factory=list)
    # Nodes whose new version could not be taken in while this user was
    # committing (or sealing) theirs: taken in once that is done (``settle_busy``).
    busy: list[Node] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.entries or self.inodes or self.rekey or self.save or self.busy)

    def add(self, other: Absorbed) -> None:
        self.entries += other.entries
        self.inodes += other.inodes
        self.rekey += other.rekey
        self.save += other.save
        self.busy += other.busy


def absorb(volume: Volume, docs: list[dict], *, own: bool, here: bool = False) -> Absorbed:
    """Take ``docs`` (just committed, with their new revs) into ``volume``.

    ``own``: the volume wrote them itself, so its nodes are already right.
    ``here``: another user's volume in this process committed them, having
    checked that user's rights itself (a write saved just after its share
    ended is theirs to save): their signature is checked, not their grant."""
    out = Absorbed()
    if volume.key is None:  # locked meanwhile
        return out
    if volume.sharing is not None and volume.sharing.leaving and not own:
        sweep(volume, out)
    if volume.sharing is not None and volume.sharing.awaiting:
        retry_awaiting(volume, out)
    if volume.sharing is not None and any(d.get("type") in SHARING_TYPES for d in docs):
        volume.sharing.reload(volume.store)
        if volume.trust is not None:
            try:
                volume.trust.save()  # users met just now stay pinned (first use)
            except VaultError as err:
                log.warning("the pinned keys were not saved yet: %s", err)
        _drop_unreached(volume, out)
        _admit_new_shares(volume, out)
    elif volume.sharing is not None and any(d["_id"] in volume.sharing.roots and d["_id"] not in volume.by_fid
                                            for d in docs):
        _admit_new_shares(volume, out)  # a peer sent a share's file after the share
    if own:
        return out
    for doc in docs:
        if doc.get("type") == NODE:
            try:
                absorb_node(volume, doc, out, here=here)
            except VaultError as err:
                log.warning("could not take in a change of %s: %s", doc.get("_id"), err)
    return out


def absorb_arrivals(volume: Volume, docs: list[dict]) -> Absorbed:
    """Take in documents a peer sent: as ``absorb``, again while folders that
    arrived give files that came before them a place to go.

    A folder changed after its files comes after them in the peer's changes
    feed, maybe batches later: such files wait in ``volume.unplaced``."""
    out = absorb(volume, docs, own=False)
    if not any(d.get("type") == NODE for d in docs):
        return out  # no folder came, so nothing waiting finds its place
    while True:
        count = len(volume.nodes)
        waiting = {d["_id"]: d for d in docs if d.get("type") == NODE and d["_id"] not in volume.by_fid}
        for fid in list(volume.unplaced - waiting.keys()):
            if (doc := volume.store.get(fid)) is None or fid in volume.by_fid:
                volume.unplaced.discard(fid)
            else:
                waiting[fid] = doc
        if waiting:
            out.add(absorb(volume, list(waiting.values()), own=False))
        if len(volume.nodes) == count:
            return out


def absorb_node(volume: Volume, doc: dict, out: Absorbed, *, again: bool = False, here: bool = False) -> None:
    ino = volume.by_fid.get(doc["_id"])
    node = volume.nodes.get(ino) if ino is not None else None
    if node is not None and node.rev == doc["_rev"] and not again:
        return
    sharing = volume.sharing
    signer = None
    if not doc.get("_deleted") and (judged := judge(volume, doc, node)) is not False:
        doc, signer = judged or (doc, None)
    elif not doc.get("_deleted"):
        _keep(node, doc)
        return
    opened = None if doc.get("_deleted") else _open(volume, doc)
    if (opened is not None and signer is not None and not here
            and not may_take(volume, doc, signer, node, opened)):
        _keep(node, doc)
        return
    if volume.ledger is not None and not volume.ledger.admit(volume, doc, opened and opened[0]):
        return  # older than this device has seen: reported, what the tree holds stays
    if opened is None:
        if node is None:
            return
        if sharing is not None and node.ino in sharing.phantoms:
            return  # a share root's real parent: its links need it, never shown
        if (sharing is not None and not doc.get("_deleted") and not doc.get("delete") and node.dek
                and sharing.perm(node, volume.nodes) is not None):
            # Still shared with the user, under a key not sealed to them yet
            # (the owner seals it right after committing it): kept as it is,
            # tried again once something else is committed.  Their own
            # writes meanwhile are under the older key, which the owner's
            # mount replaces again.
            node.rev = doc["_rev"]
            sharing.awaiting.add(doc["_id"])
            return
        if (sharing is not None and not node.dek and not doc.get("_deleted") and not doc.get("delete")
                and node.owner != volume.key.user_id and doc.get("owner") in sharing.givers()):
            # It left while open here, and its owner shares with the user
            # again: its key may come right after this document.
            sharing.awaiting.add(doc["_id"])
            return
        if sharing is not None and (node.ino in sharing.leaving or _unsaved(node)):
            # The user's last writes are saved over this revision (edit beats
            # delete), then the node leaves.
            node.rev = doc["_rev"]
            if node.ino not in sharing.leaving:
                sharing.leaving.add(node.ino)
                out.save.append(node)
            return
        _leave(volume, node, out)
        return
    fresh, links = opened
    if sharing is not None:
        sharing.awaiting.discard(doc["_id"])
        if node is not None:
            sharing.phantoms.discard(node.ino)  # a share root's parent the user may open now
    if node is None:
        if not any(parent in volume.by_fid for parent, _ in links):
            if links:
                volume.unplaced.add(doc["_id"])  # its folder may come later
            return
        volume.unplaced.discard(doc["_id"])
        node = volume.add_node(fresh)
    else:
        if node.owner == volume.key.user_id and fresh.epoch < node.epoch:
            # Written under an older key (by a recipient during a revoke):
            # the file takes it back until the owner seals it again.
            out.rekey.append(node)
        _update(volume, node, fresh, out)
    relink(volume, node, links, out)
    out.inodes.append(node.ino)
    if not node.links:
        volume.purge_if_unused(node)


def judge(volume: Volume, doc: dict, node: Node | None) -> tuple[dict, str] | None | bool:
    """A node document's signature (vault/tree/authorship.py): (the document as
    signed, its signer); None when it is not this user's to judge; False
    when refused."""
    gate = volume.authorship
    givers = volume.sharing.givers() if volume.sharing is not None else set()
    if gate is None or (node is None and not gate.concerns(doc, givers)):
        return None
    return gate.admit(doc) or False


def _keep(node: Node | None, doc: dict) -> None:
    """A refused document (said): the node keeps what it had, and its next
    commit goes over the refused revision."""
    if node is not None:
        node.rev = doc["_rev"]


def may_take(volume: Volume, doc: dict, signer: str, node: Node | None, opened: tuple[Node, list]) -> bool:
    """Whether the signer of ``doc`` may make the change it makes (the owner, or a WRITE grantee)."""
    gate, fresh = volume.authorship, opened[0]
    if signer == doc.get("owner"):
        return True
    parents = [p for p, _ in opened[1]]
    if not gate.may_write(volume, signer, doc["owner"], doc["_id"], parents, node):
        gate.deny(doc, f"signed by {signer}, who holds no WRITE on it")
        return False
    return gate.owner_dek_ok(doc, signer, fresh.dek, node)


def _open(volume: Volume, doc: dict) -> tuple[Node, list] | None:
    """The document as a node, if this user can open it."""
    if doc.get("owner") == volume.key.user_id:
        return node_from_doc(doc, *open_node_doc(doc, volume.key))
    sharing = volume.sharing
    if sharing is None or doc.get("owner") not in sharing.givers():
        return None
    paths = sharing.my_key_paths(volume.layout, doc["owner"], doc["_id"])
    return open_guest(doc, volume.key, paths, volume.trust)


def _update(volume: Volume, node: Node, fresh: Node, out: Absorbed | None = None) -> None:
    for name in ATTRS:
        setattr(node, name, getattr(fresh, name))
    content = node.content
    if content is not None and content.changed:
        return  # the reader's own unsaved writes: their commit comes after this one
    if node.lock is not None and node.lock.locked():
        # A version of this user's is being committed (or the file sealed
        # under a new key) with the key and contents it was sealed with:
        # theirs comes after this one.  Looked at again once it is done.
        if volume.sharing is not None:
            volume.sharing.awaiting.add(node.fid)
        if out is not None:
            out.busy.append(node)
        return
    stale = content is not None and (node.head != fresh.head or content.dek != fresh.dek)
    for name in CONTENTS:
        setattr(node, name, getattr(fresh, name))
    if stale:
        # Open contents follow the new version, or the file's new key (an
        # empty file's, which has no version to change).
        volume.switch_content(node)


def retry_awaiting(volume: Volume, out: Absorbed) -> None:
    """Open again the documents whose key was not sealed to the user yet."""
    for fid in list(volume.sharing.awaiting):
        volume.sharing.awaiting.discard(fid)
        if (doc := volume.store.get(fid)) is not None:
            absorb_node(volume, doc, out, again=True)


async def settle_busy(volume: Volume, nodes: list[Node]) -> Absorbed:
    """Once this user's commits of ``nodes`` are done, take in the versions
    others committed meanwhile (``Absorbed.busy``)."""
    for node in nodes:
        async with volume.content_lock(node):
            pass
    out = Absorbed()
    if volume.key is not None and volume.sharing is not None and volume.sharing.awaiting:
        retry_awaiting(volume, out)
    return out


def relink(volume: Volume, node: Node, links: list[tuple[str, bytes]], out: Absorbed) -> None:
    wanted = [(volume.by_fid[p], name) for p, name in links
              if p in volume.by_fid and names.link_ok(volume, node.fid, name)]
    for parent_ino, name in list(node.links):
        if (parent_ino, name) not in wanted:
            if (parent := volume.nodes.get(parent_ino)) is None:  # left and gone before it
                node.links.remove((parent_ino, name))
                continue
            volume.unlink_entry(parent, name, node)
            out.entries.append((parent_ino, name))
    for parent_ino, name in wanted:
        if (parent_ino, name) in node.links:
            continue
        parent = volume.nodes[parent_ino]
        if not parent.is_dir or parent.children.get(name, node.ino) != node.ino:
            log.warning("%s: the name is taken here; it shows at the next unlock", node.fid)
            continue
        volume.link_entry(parent, name, node)
        out.entries.append((parent_ino, name))


def _unsaved(node: Node) -> bool:
    """The user's writes to the node are not all committed: changed contents,
    or a version being committed now (its contents no longer look changed,
    and its document still needs the key)."""
    return (node.content is not None and node.content.changed) or (
        node.lock is not None and node.lock.locked())


def _leave(volume: Volume, node: Node, out: Absorbed) -> None:
    """Take a node out of this user's tree: every name, and (a guest's) its key.

    A parent may have left (and gone) before its child: its links are dropped.
    A guest holding the user's unsaved writes keeps everything until they are
    saved (``save``): a key is never dropped from under them."""
    sharing = volume.sharing
    if sharing is not None and node.owner != volume.key.user_id and _unsaved(node):
        if node.ino not in sharing.leaving:
            sharing.leaving.add(node.ino)
            out.save.append(node)
        return
    for parent_ino, name in list(node.links):
        if (parent := volume.nodes.get(parent_ino)) is not None:
            volume.unlink_entry(parent, name, node)
            out.entries.append((parent_ino, name))
        else:
            node.links.remove((parent_ino, name))
    for virtual in sharing.virtual if sharing else ():
        folder = volume.nodes.get(virtual)
        for name, child in list(folder.children.items()) if folder else ():
            if child == node.ino:
                volume.unlink_entry(folder, name, node)
                out.entries.append((virtual, name))
    out.inodes.append(node.ino)
    if sharing is not None:
        sharing.leaving.discard(node.ino)
    if node.owner != volume.key.user_id:
        volume.forget_key(node)
    volume.purge_if_unused(node)


leave = _leave  # for vault/tree/authorship.py: a node refused at unlock leaves the tree


def sweep(volume: Volume, out: Absorbed) -> None:
    """Leaving nodes whose writes are all saved now leave the tree (all at
    once: a folder stays while a file under it still has writes to save)."""
    sharing = volume.sharing
    nodes = [volume.nodes[ino] for ino in sharing.leaving if ino in volume.nodes]
    if any(_unsaved(node) for node in nodes):
        return
    sharing.leaving = set()
    for node in nodes:
        _leave(volume, node, out)


async def save_leaving(volume: Volume, nodes: list[Node]) -> Absorbed:
    """Save the writes a user made to files before their share ended, then
    let those files leave the tree.  What cannot be saved stays in memory:
    the file's close (and a lock) tries again and reports the error."""
    for node in nodes:
        if volume.key is None:
            return Absorbed()
        if not node.dek or not _unsaved(node):
            continue  # saved meanwhile (its close), or shared again and left since
        try:
            await volume.commit_content(node)
        except VaultError as err:
            log.error("could not save the writes to %s made before its share ended: %s", node.fid, err)
    out = Absorbed()
    if volume.key is not None and volume.sharing is not None:
        sweep(volume, out)
    return out


def reload_contents(volume: Volume, node: Node) -> bool:
    """Make the node's contents those of its stored document (another
    writer's version came in while this volume was sealing the file again
    under a new key: that version is the one to seal).  False when the
    document is gone or no longer opens here."""
    doc = volume.store.get(node.fid)
    judged = None if doc is None else judge(volume, doc, node)
    if judged is False:
        return False
    doc, signer = judged or (doc, None)
    opened = None if doc is None or doc.get("delete") else _open(volume, doc)
    if opened is None or (signer is not None and not may_take(volume, doc, signer, node, opened)):
        return False
    fresh, _ = opened
    for name in CONTENTS:
        setattr(node, name, getattr(fresh, name))
    node.rev = doc["_rev"]
    if node.content is not None:
        volume.switch_content(node)
    return True


def _admit_new_shares(volume: Volume, out: Absorbed) -> None:
    """Shares that reached this user just now: their nodes join the tree.

    Their keys were written before the Share document, so listing this
    user's key files finds them (no scan of every node document)."""
    sharing = volume.sharing
    if all(fid in volume.by_fid and not _keyless(volume, volume.by_fid[fid]) for fid in sharing.roots):
        return
    givers = sharing.givers()
    guests = []
    foreign: list = []
    for fid, paths in key_files(volume.layout, volume.key.user_id, sharing.groups).items():
        ino = volume.by_fid.get(fid)
        if ino is not None and not _keyless(volume, ino):
            continue
        doc = volume.store.get(fid)
        if doc is None or doc.get("delete") or doc.get("owner") not in givers:
            continue
        if (judged := judge(volume, doc, None)) is False:
            continue  # refused, and said
        doc, signer = judged or (doc, None)
        try:
            opened = open_guest(doc, volume.key, paths, volume.trust)
        except VaultError as err:
            log.warning("a shared file %s does not open: %s", fid, err)
            continue
        if opened is None:
            continue
        if signer is not None and signer != doc["owner"]:
            foreign.append((*opened, signer, True))  # judged once placed, with its folders
        if ino is None:
            guests.append(opened)
        else:  # shared again while still held (open, or a share root's parent)
            sharing.phantoms.discard(ino)
            node = volume.nodes[ino]
            _update(volume, node, opened[0], out)
            relink(volume, node, opened[1], out)
            out.inodes.append(ino)
    before = {ino: set(volume.nodes[ino].children) for ino in sharing.virtual}
    volume.admit_guests(guests)
    if foreign:
        volume.authorship.settle(volume, foreign)
    # The new names in shared/<owner>/ and groups/<group>/ (the kernel may
    # remember them as missing), and the folders made for them.
    for ino in sharing.virtual:
        folder = volume.nodes[ino]
        if ino not in before:
            out.entries += folder.links
            out.inodes += [parent for parent, _ in folder.links]
        elif added := set(folder.children) - before[ino]:
            out.entries += [(ino, name) for name in added]
            out.inodes.append(ino)


def admit_new(volume: Volume) -> Absorbed:
    """Shares whose keys were sealed to the user just now (a group they joined)."""
    out = Absorbed()
    if volume.key is not None and volume.sharing is not None:
        _admit_new_shares(volume, out)
    return out


def _keyless(volume: Volume, ino: int) -> bool:
    """A node the user holds without its key: a phantom, or a guest that
    left while open (a new share gives it its key and names again)."""
    node = volume.nodes.get(ino)
    return node is not None and (ino in volume.sharing.phantoms
                                 or (node.owner != volume.key.user_id and not node.dek))


def _drop_unreached(volume: Volume, out: Absorbed) -> None:
    """After a change of shares: guests no longer reached leave the tree.

    Those holding unsaved writes, and the folders above them, stay (no
    longer reachable by path, refusing further writes) until the writes are
    saved: ``out.save``."""
    sharing = volume.sharing
    me = volume.key.user_id
    # Inodes the kernel made this volume forget are nobody's folders any more.
    sharing.virtual.intersection_update(volume.nodes)
    sharing.phantoms.intersection_update(volume.nodes)
    unreached = [node for node in volume.nodes.values()
                 if node.owner not in ("", me) and node.ino not in sharing.phantoms and node.dek
                 and sharing.perm(node, volume.nodes) is None]
    gone = {node.ino for node in unreached}
    keep: set[int] = set()
    for node in unreached:
        if _unsaved(node):
            if node.ino not in sharing.leaving:
                out.save.append(node)
            walk: Node | None = node
            while walk is not None and walk.ino in gone and walk.ino not in keep:
                keep.add(walk.ino)
                walk = volume.nodes.get(walk.links[0][0]) if walk.links else None
    sharing.leaving = keep
    for node in unreached:
        if node.ino not in keep:
            _leave(volume, node, out)
    # Virtual folders left empty go too, inner ones (under shared/ or groups/) first.
    for ino in sorted(sharing.virtual, key=lambda i: _at_root(volume.nodes[i])):
        folder = volume.nodes[ino]
        if not folder.children and folder.links:
            parent_ino, name = folder.links[0]
            if (parent := volume.nodes.get(parent_ino)) is not None:
                volume.unlink_entry(parent, name, folder)
            else:
                folder.links.remove((parent_ino, name))
            out.entries.append((parent_ino, name))
            sharing.virtual.discard(ino)  # a later share makes a new one
            volume.purge_if_unused(folder)


def _at_root(node: Node) -> bool:
    return not node.links or node.links[0][0] == ROOT_INODE
