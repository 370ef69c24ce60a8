"""The mounted file tree of one user: the domain behind the FUSE operations.

All nodes are held in memory (loaded and decrypted once at mount), so lookups,
getattr and readdir never touch the disk.  Changes are committed as documents:
metadata operations at once (one store transaction each, undone in memory if
the commit fails), file contents when a changed file is flushed, closed or
fsynced, each such commit being a new version.
"""

from __future__ import annotations

import gc
import logging
import os
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from fusevault.crypto import aead
from fusevault.crypto.identity import seal_file_key
from fusevault.crypto.keys import MasterKey
from fusevault.encoding import b64e, name_to_str, str_to_name
from fusevault.errors import (
    BadHandle,
    Conflict,
    CorruptData,
    CrossOwner,
    Exists,
    FileTooLarge,
    InvalidArgument,
    IsADirectory,
    NameTooLong,
    NoAttribute,
    NotADirectory,
    NotEmpty,
    NotFound,
    NotSupported,
    PermissionDenied,
    VaultError,
)
from fusevault.store import Store
from fusevault.vault.files.content import BLOCK_SIZE, MAX_FILE_SIZE, Content
from fusevault.vault.format.layout import Layout, os_error
from fusevault.vault.model import names
from fusevault.vault.model.freshness import Freshness
from fusevault.vault.model.groups import can_write
from fusevault.vault.model.ledger import Ledger, at_load
from fusevault.vault.model.migrate import sign_own
from fusevault.vault.model.nodes import (
    NODE,
    Node,
    detached_node,
    new_id,
    node_doc,
    node_from_doc,
    now_ns,
    open_node_doc,
    version_doc,
)
from fusevault.vault.model.sharing import acl_lines
from fusevault.vault.model.trust import USER, Trust
from fusevault.vault.services.absorbing import reload_contents
from fusevault.vault.tree.authorship import Authorship, Foreign, said_signer
from fusevault.vault.tree.guests import (
    GROUPS_DIR,
    LIST,
    SHARED_DIR,
    Sharing,
    key_files,
    open_guest,
    phantom,
    virtual_dir,
)
from fusevault.vault.tree.tx import Tx

log = logging.getLogger(__name__)

ROOT_INODE = 1
NAME_MAX = 255
XATTR_PREFIX = b"user."
# Past this much dirty data in one file, full blocks are sealed and appended
# (in a worker thread), which bounds the memory a large write holds.
FLUSH_AT = 8 * 1024 * 1024
# Sealing a file again under a new key, when other writers' versions keep
# coming in meanwhile: each try seals the newest; after this many the key
# change fails (it never commits over a version it did not seal).
RESEAL_TRIES = 20
# Sealing this much is quicker on the loop than a hop to a worker thread.
INLINE_SEAL = 2 * BLOCK_SIZE
DAY_NS = 86400 * 10**9
FALLOC_FL_KEEP_SIZE = 0x01


class _Stale(Exception):
    """Another writer committed the node while this version was sealed."""


@dataclass
class Caller:
    uid: int
    gid: int


class Volume:
    def __init__(self, layout: Layout, store: Store, key: MasterKey, root: Node) -> None:
        self.layout = layout
        self.store = store
        self.key = key
        self.nodes: dict[int, Node] = {ROOT_INODE: root}
        self.by_fid: dict[str, int] = {root.fid: ROOT_INODE}
        self.next_ino = ROOT_INODE + 1
        # Nodes with changes saved lazily (access times, a directory's times
        # when its entries change): with their next commit, at fsyncdir, or
        # at unmount.  A set, so fsyncdir need not look at every node.
        self.lazy: set[int] = set()
        self.handles: dict[int, Node] = {}
        # Handles opened for writing (WRITE checked then, as open(2) checks
        # modes): a file unlinked while open, whose share no longer reaches
        # it, is still written through them.
        self.writers: set[int] = set()
        self.dir_handles: dict[int, tuple[Node, list[tuple[bytes, int]]]] = {}
        self.next_fh = 1
        self.meta_lock = trio.Lock()
        self.store_lock = trio.Lock()
        self.limiter = trio.CapacityLimiter(max(2, os.cpu_count() or 2))
        # Versions the garbage collector is removing: they can no longer be opened.
        self.retiring: set[str] = set()
        # Nodes a peer sent that this user opens but whose folder has not
        # arrived yet (vault/services/absorbing.py): placed when it comes.
        self.unplaced: set[str] = set()
        # Shares with and by this user (None: opened without key pairs).
        self.sharing: Sharing | None = None
        # Whose keys this user trusts; signs and checks documents (None: no key pairs).
        self.trust: Trust | None = None
        # Judges others' node and version documents by their signatures (None: no key pairs).
        self.authorship: Authorship | None = None
        # Contents replaced by another writer's newer version while open here:
        # closed at the file's last release, after the reads under way.
        self.retired: dict[int, list[Content]] = {}
        # This replica's name, written into each version (None: not synced).
        self.device: str | None = None
        # Open files whose last change is a truncation with nothing written
        # since: ``echo x > f`` and in-place saves truncate at open, and a
        # close of a duplicate descriptor (the shell's redirection) flushes
        # before the write.  Their flush waits, so truncate-then-write is one
        # version; release and fsync still commit a file truncated and closed.
        self.cut: set[int] = set()
        # fid -> the newest key epoch this volume gave the node: a node that
        # took in another writer's version under an older key goes back to
        # it, and its next key must still be new (one DEK per epoch).
        self.top_epochs: dict[str, int] = {}
        # Folders whose keys share_ops is rotating now (not started twice).
        self.rotating: set[str] = set()
        # What this device has seen of each file (rollback detection).
        self.ledger: Ledger | None = None

    # --- loading

    @classmethod
    def load(cls, layout: Layout, store: Store, key: MasterKey, root_fid: str,
             inodes: dict[str, int] | None = None) -> Volume:
        """Load and decrypt a user's tree.  ``inodes`` (fid -> inode) keeps the
        numbers of an earlier load, which the kernel may still hold (unlock
        after a lock)."""
        # The cyclic GC would rescan the growing tree again and again while it
        # loads (a third of the time for 100,000 nodes); once loaded, the
        # nodes are frozen out of future collections, which they outlive anyway.
        gc.disable()
        try:
            volume = cls._load(layout, store, key, root_fid, inodes or {})
        finally:
            gc.enable()
        gc.freeze()
        return volume

    @classmethod
    def _load(cls, layout: Layout, store: Store, key: MasterKey, root_fid: str,
              inodes: dict[str, int]) -> Volume:
        volume: Volume | None = None
        pending: list[tuple[Node, list[tuple[str, bytes]]]] = []
        guests: list[tuple[Node, list[tuple[str, bytes]]]] = []
        owner = sys.intern(key.user_id)
        trust = None
        if key.identity is not None:
            trust = Trust(store, key, root=layout.root)
            trust.fresh = Freshness.open(key, layout.root, layout.vault_id, trust.alarms)  # before signing
            sign_own(store, trust, layout.root)
            trust.observe(store.iter_type(USER))
            trust.save()
        shares = Sharing.read(store, owner, trust) if key.identity is not None else None
        if trust is not None and trust.fresh is not None:
            trust.fresh.save()  # the grants seen at this load (vault/model/freshness.py)
        givers = shares.givers() if shares else set()
        keys = key_files(layout, owner, shares.groups) if givers else {}
        # Checked before use: signed by the owner, or by a WRITE grantee (placed last).
        gate = Authorship(trust, store) if trust is not None else None
        foreign: list[Foreign] = []
        deleted: list[tuple[dict, str]] = []
        # Every file this device saw is judged, whatever its clear owner now says.
        ledger = Ledger.open(key, layout.root, layout.vault_id)
        seen = ledger.fids
        for doc in store.iter_type(NODE):
            signer = None
            if gate is not None and (doc.get("owner") == owner or doc["_id"] in keys
                                     or said_signer(doc) == owner or doc["_id"] in seen):
                if (admitted := gate.admit(doc)) is None:
                    continue
                doc, signer = admitted
            if doc.get("delete"):
                if signer is not None and signer != doc.get("owner"):
                    deleted.append((doc, signer))
                continue
            if doc.get("owner") != owner:
                if doc.get("owner") in givers and doc["_id"] in keys:
                    if (opened := open_guest(doc, key, keys[doc["_id"]], trust)) is not None:
                        guests.append(opened)
                        if signer is not None and signer != doc["owner"]:
                            foreign.append((*opened, signer, True))
                continue
            dek, attrs = open_node_doc(doc, key)
            if signer is not None and not gate.owner_dek_ok(doc, signer, dek):
                continue
            node, links = node_from_doc(doc, dek, attrs)
            node.owner = owner  # interned: shared by every node of the tree
            pending.append((node, links))
            if signer is not None and signer != owner:
                foreign.append((node, links, signer, False))
        for node, _ in pending:
            if node.fid == root_fid:
                node.ino = ROOT_INODE
                volume = cls(layout, store, key, node)
        if volume is None:
            raise CorruptData("the root directory's document is missing")
        volume.sharing = shares
        volume.trust = trust
        if trust is not None and layout.places is not None and trust.alarms not in layout.places.alarms:
            layout.places.alarms.append(trust.alarms)  # refused records (files/placements.py) show in status
        volume.next_ino = max(inodes.values(), default=ROOT_INODE) + 1
        for node, _ in pending:
            if node.ino != ROOT_INODE:
                volume._add(node, inodes)
        for node, links in pending:
            volume._link_loaded(node, links)
        if guests:
            volume.admit_guests(guests, inodes)
        if foreign:
            gate.settle(volume, foreign)
        for doc, signer in deleted:
            gate.deleted(volume, doc, signer)
        volume.authorship = gate
        if gate is not None and layout.places is not None:  # version digests only from admitted documents
            layout.places.admit = lambda doc: gate.version_ok(volume, doc)
        volume.ledger = at_load(volume, store, ledger)
        return volume

    def _link_loaded(self, node: Node, links: list[tuple[str, bytes]], *,
                     guest_inodes: dict[str, int] | None = None) -> None:
        for parent_fid, name in links:
            if not names.link_ok(self, node.fid, name):
                continue
            parent_ino = self.by_fid.get(parent_fid)
            if parent_ino is None and guest_inodes is not None:
                # A guest whose parent this user cannot open: a share's root.
                parent_ino = self._add(phantom(0, parent_fid, node.owner), guest_inodes).ino
                self.sharing.phantoms.add(parent_ino)
            parent = self.nodes.get(parent_ino) if parent_ino else None
            if parent is None or not parent.is_dir or name in parent.children:
                log.warning("skipping a dangling link of node %s", node.fid)
                continue
            self.link_entry(parent, name, node)

    def admit_guests(self, guests: list[tuple[Node, list[tuple[str, bytes]]]],
                     inodes: dict[str, int] | None = None) -> None:
        """Add others' nodes shared with this user (at load, or when a share
        arrives while unlocked), and show each share's root in its folder."""
        inodes = {} if inodes is None else inodes
        fresh = [(node, links) for node, links in guests if node.fid not in self.by_fid]
        for node, _ in fresh:
            self._add(node, inodes)
        for node, links in fresh:
            self._link_loaded(node, links, guest_inodes=inodes)
        self._place_shares(inodes)

    def _add(self, node: Node, inodes: dict[str, int]) -> Node:
        node.ino = inodes.get(node.fid) or self._new_ino()
        self.nodes[node.ino] = node
        self.by_fid[node.fid] = node.ino
        return node

    def _place_shares(self, inodes: dict[str, int]) -> None:
        """Show each share's root not shown yet in ``shared/<owner>/`` or ``groups/<group>/``."""
        shares, root = self.sharing, self.nodes[ROOT_INODE]

        def folder(parent: Node, name: bytes, fid: str) -> Node | None:
            if (ino := parent.children.get(name)) is not None:
                found = self.nodes[ino]
                return found if found.ino in shares.virtual else None
            node = self._add(virtual_dir(0, fid, root), inodes)
            shares.virtual.add(node.ino)
            parent.children[name] = node.ino
            parent.subdirs += 1
            node.links.append((parent.ino, name))
            return node

        for reach in shares.my_reaches():
            grant = reach.grant
            ino = self.by_fid.get(grant.fid)
            if ino is None:
                continue
            if grant.group:
                top, label = GROUPS_DIR, shares.groups.get(grant.grantee, {}).get("groupname", grant.grantee)
            else:
                top, label = SHARED_DIR, shares.users.get(grant.owner, {}).get("username", grant.owner)
            outer = folder(root, top, f"virtual:{top.decode()}")
            if not isinstance(label, str) or not names.valid(label):
                names.refuse(self, f"label:{grant.owner}:{grant.grantee}", "a user or group name that is not "
                             "a file name: its shares are shown under its id")
                label = grant.grantee if grant.group else grant.owner
            inner = outer and folder(outer, str_to_name(label), f"virtual:{top.decode()}:{label}")
            if inner is None:
                log.warning("%s is taken by a file of your own: shares are not shown there", top.decode())
                continue
            node = self.nodes[ino]
            if ino in inner.children.values():
                continue
            name = node.links[0][1] if node.links else grant.fid.encode()
            if name in inner.children:
                name = b"%s (%s)" % (name[:names.MAX_BYTES - 11], grant.fid[:8].encode())  # a name still
            inner.children[name] = ino
            inner.subdirs += int(node.is_dir)

    def _new_ino(self) -> int:
        ino = self.next_ino
        self.next_ino += 1
        return ino

    def fid_of(self, ino: int) -> str:
        return self.nodes[ino].fid

    # --- store access (inline for the local store, a worker thread otherwise)

    async def store_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call the store: inline when it is local and quick, else in a worker thread."""
        try:
            if self.store.inline:
                return fn(*args)
            async with self.store_lock:
                return await trio.to_thread.run_sync(fn, *args)
        except OSError as err:
            raise os_error(err, "committing metadata") from None

    async def _put(self, docs: list[dict], places: list[tuple] = ()) -> list[str]:
        return await self.store_call(self.store.put_many, docs, places)

    async def _commit(self, tx: Tx, extra: list[dict] | None = None, places: list[tuple] = ()) -> None:
        nodes = list(tx.nodes.values())
        if self.ledger is not None:
            self.ledger.stamp(nodes)
        docs = list(extra or [])
        docs += [node_doc(n, self.key, self.fid_of, deleted=self._is_deleted(n)) for n in nodes]
        try:
            revs = await self._put(docs, places)
        except BaseException:
            tx.rollback(self.nodes)
            for node in tx.created:
                self.by_fid.pop(node.fid, None)
            raise
        for node, rev in zip(nodes, revs[len(docs) - len(nodes):]):
            node.rev = rev
            self.lazy.discard(node.ino)
        if self.ledger is not None:
            self.ledger.committed(nodes, [self._is_deleted(n) for n in nodes])

    @staticmethod
    def _is_deleted(node: Node) -> bool:
        return node.ino != ROOT_INODE and not node.links

    async def in_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run CPU or disk work on a worker thread (bounded by the volume's limiter)."""
        try:
            return await trio.to_thread.run_sync(fn, *args, limiter=self.limiter)
        except OSError as err:
            raise os_error(err, "writing file contents") from None

    # --- lookups, attributes and lookup counts (the one place they are kept)

    def node(self, ino: int) -> Node:
        try:
            return self.nodes[ino]
        except KeyError:
            raise NotFound(f"no inode {ino}") from None

    # --- who may do what: the one place every entry point asks (FUSE, the
    # control socket, imports, drop boxes, restore), so none can skip it

    def may(self, node: Node, write: bool = False) -> bool:
        """May this user read ``node`` (``write``: change it: its contents,
        name, mode bits or extended attributes, or, for a folder, what is in
        it)?  Their own nodes: always.  Another's: as the best share on it or
        a folder above it allows (READ reads, WRITE also writes); a share's
        virtual folder is only listed; a phantom parent, nothing."""
        if node.owner == self.key.user_id:
            return True
        perm = self.sharing.perm(node, self.nodes) if self.sharing is not None else None
        return perm is not None and (not write or can_write(perm))

    def may_write(self, node: Node) -> bool:
        """May this user write here: change ``node``, or make or remove names in it."""
        return self.may(node, write=True)

    def check(self, node: Node, write: bool = False) -> Node:
        """``node``, if ``may`` allows it; else PermissionDenied."""
        if not self.may(node, write):
            raise PermissionDenied("not allowed by the file's sharing: "
                                   + ("you may only read it" if write and self.may(node) else "no access"))
        if (node.owner != self.key.user_id and not node.dek and self.sharing is not None
                and self.sharing.perm(node, self.nodes) != LIST):
            # Its share ended while it was open here, and the share made
            # again has not given it back its key yet.
            raise PermissionDenied("the file's key is not shared with you (yet)")
        return node

    def require(self, ino: int, write: bool = False) -> Node:
        """The node of ``ino``, if this user may read it (``write``: change it); else PermissionDenied."""
        return self.check(self.node(ino), write)

    def writable(self, node: Node) -> bool:
        return self.may_write(node)

    def _owned(self, node: Node) -> Node:
        """Only the owner: key rotations and files out of the trash."""
        if node.owner != self.key.user_id:
            raise PermissionDenied("only the file's owner may do that")
        return node

    def _dir(self, ino: int) -> Node:
        node = self.node(ino)
        if not node.is_dir:
            raise NotADirectory("not a directory")
        return node

    @staticmethod
    def _check_name(name: bytes) -> None:
        if len(name) > NAME_MAX:
            raise NameTooLong("file name too long")
        if not name or b"/" in name or b"\0" in name or name in (b".", b".."):
            raise InvalidArgument("invalid file name")

    def lookup(self, parent_ino: int, name: bytes) -> Node:
        parent = self._dir(parent_ino)
        if name == b".":
            node = parent
        elif name == b"..":
            node = self.node(parent.links[0][0]) if parent.links else parent
        else:
            if len(name) > NAME_MAX:
                raise NameTooLong("file name too long")
            ino = parent.children.get(name)
            if ino is None:
                raise NotFound("no such file")
            node = self.nodes[ino]
        self.remember(node)
        return node

    def remember(self, node: Node) -> None:
        node.lookups += 1

    def forget(self, ino: int, count: int) -> None:
        node = self.nodes.get(ino)
        if node is not None:
            node.lookups -= count
            self._maybe_purge(node)

    def _maybe_purge(self, node: Node) -> None:
        if node.ino != ROOT_INODE and not node.links and node.lookups <= 0 and node.opens <= 0:
            if node.content is not None and node.content.changed:
                return  # keep unsaved contents of an unlinked file until unmount
            if node.content is not None:
                node.content.close()
            self.nodes.pop(node.ino, None)
            self.by_fid.pop(node.fid, None)
            self.lazy.discard(node.ino)
            self.cut.discard(node.ino)

    # --- changes another writer made (vault/services/absorbing.py)

    def add_node(self, node: Node) -> Node:
        return self._add(node, {})

    def purge_if_unused(self, node: Node) -> None:
        self._maybe_purge(node)

    @staticmethod
    def link_entry(parent: Node, name: bytes, node: Node) -> None:
        parent.children[name] = node.ino
        parent.subdirs += int(node.is_dir)
        node.links.append((parent.ino, name))

    @staticmethod
    def unlink_entry(parent: Node, name: bytes, node: Node) -> None:
        if parent.children.get(name) == node.ino:
            del parent.children[name]
            parent.subdirs -= int(node.is_dir)
        if (parent.ino, name) in node.links:
            node.links.remove((parent.ino, name))

    def forget_key(self, node: Node) -> None:
        """Drop a node's key (a share that no longer reaches this user)."""
        node.dek = b""
        if node.opens == 0 and node.content is not None:
            node.content.close()
            node.content = None

    def switch_content(self, node: Node) -> None:
        """Open contents follow the node's new version (another writer's)."""
        old, node.content = node.content, None
        if node.opens > 0:
            self.retired.setdefault(node.ino, []).append(old)
            self._content(node)
        else:
            old.close()

    def path_of(self, node: Node) -> bytes:
        parts = []
        while node.ino != ROOT_INODE and node.links:
            parent_ino, name = node.links[0]
            parts.append(name)
            node = self.nodes[parent_ino]
        return b"/".join(reversed(parts))

    # --- creating nodes

    def _make_node(self, tx: Tx, parent: Node, name: bytes, mode: int, caller: Caller,
                   rdev: int = 0, ident: tuple[str, bytes] | None = None) -> Node:
        self._check_name(name)
        self.check(parent, write=True)
        if name in parent.children:
            raise Exists("file exists")
        gid = caller.gid
        if parent.mode & stat.S_ISGID:
            gid = parent.gid
            if stat.S_ISDIR(mode):
                mode |= stat.S_ISGID
        fid, dek = ident or (new_id(), aead.new_key())
        # In a folder someone shared with this user, the file is the folder
        # owner's: sealed to their public key, since only they wrap it.
        owner = parent.owner
        if not owner or not parent.dek:
            raise PermissionDenied("nothing can be made here")
        node = Node(self._new_ino(), fid, owner, dek, mode, caller.uid, gid, rdev)
        if owner != self.key.user_id:
            public = self.sharing.public(owner) if self.sharing else None
            if public is None:
                raise PermissionDenied("the folder's owner has no key pair to receive this file")
            node.wrapped = {"owner_dek": b64e(seal_file_key(public, owner, owner, fid, 0, dek))}
        self.nodes[node.ino] = node
        self.by_fid[fid] = node.ino
        tx.created.append(node)
        tx.attach(parent, name, node)
        self._touch_dir(parent, node.ctime)
        return node

    def _touch_dir(self, parent: Node, when: int) -> None:
        parent.mtime = parent.ctime = when
        self.lazy.add(parent.ino)

    async def mknod(self, parent_ino: int, name: bytes, mode: int, rdev: int, caller: Caller,
                    target: bytes | None = None, ident: tuple[str, bytes] | None = None) -> Node:
        async with self.meta_lock:
            tx = Tx()
            node = self._make_node(tx, self._dir(parent_ino), name, mode, caller, rdev, ident)
            if target is not None:
                node.target = target
                node.size = len(target)
            await self._share_new(node)
            await self._commit(tx)
        self.remember(node)
        return node

    async def _share_new(self, node: Node) -> None:
        """Seal a new node's key for everyone a folder above it is shared with
        (before its document: a crash leaves an unused key, never a file a
        recipient cannot open)."""
        if self.sharing is None or not self.sharing.by_fid:
            return
        grants = self.sharing.covering(node, self.nodes)
        if grants:
            await self.in_thread(self.sharing.seal_keys, self.layout, node, grants, (node.dek, node.epoch))

    def _acl(self, node: Node) -> list[str] | None:
        if self.sharing is None or not self.sharing.by_fid:
            return None
        return acl_lines(self.sharing.covering(node, self.nodes))

    async def mkdir(self, parent_ino: int, name: bytes, mode: int, caller: Caller) -> Node:
        return await self.mknod(parent_ino, name, stat.S_IFDIR | (mode & 0o7777), 0, caller)

    async def symlink(self, parent_ino: int, name: bytes, target: bytes, caller: Caller) -> Node:
        return await self.mknod(parent_ino, name, stat.S_IFLNK | 0o777, 0, caller, target=target)

    def readlink(self, ino: int) -> bytes:
        node = self.node(ino)
        if node.target is None:
            raise InvalidArgument("not a symbolic link")
        return node.target

    # --- removing, renaming, linking

    async def unlink(self, parent_ino: int, name: bytes) -> None:
        async with self.meta_lock:
            parent = self.check(self._dir(parent_ino), write=True)
            node = self.check(self.nodes[self._child(parent, name)], write=True)
            if node.is_dir:
                raise IsADirectory("is a directory")
            tx = Tx()
            now = now_ns()
            self._detach(tx, parent, name, node, now)
            node.ctime = now
            self._touch_dir(parent, now)
            await self._commit(tx)
        self._maybe_purge(node)

    def _detach(self, tx: Tx, parent: Node, name: bytes, node: Node, now: int) -> None:
        """Remove a link; the last link of a file sends it to the trash, noting where it was."""
        if len(node.links) == 1 and not node.is_dir:
            node.trashed = (self.path_of(node), now)
        tx.detach(parent, name, node)

    async def relink(self, node: Node, parent_ino: int, name: bytes) -> None:
        """Give a file back a name (out of the trash)."""
        async with self.meta_lock:
            self._owned(node)
            parent = self.check(self._dir(parent_ino), write=True)
            self._check_name(name)
            if name in parent.children:
                raise Exists(f"{name_to_str(name)} exists")
            tx = Tx()
            tx.attach(parent, name, node)
            now = now_ns()
            node.trashed = None
            node.ctime = now
            self._touch_dir(parent, now)
            try:
                await self._commit(tx)
            finally:
                self._maybe_purge(node)

    def adopt(self, doc: dict) -> Node:
        """A node from the trash, by its document (the one in memory if it is still open)."""
        if doc.get("owner") != self.key.user_id:
            raise PermissionDenied("only its owner brings a file back from the trash")
        ino = self.by_fid.get(doc["_id"])
        if ino is not None:
            return self.nodes[ino]
        node = detached_node(doc, self.key, self._new_ino())
        self.nodes[node.ino] = node
        self.by_fid[node.fid] = node.ino
        return node

    def resolve(self, path: bytes) -> Node:
        """The node at a path relative to the root (no lookup count is taken)."""
        node = self.nodes[ROOT_INODE]
        for part in path.split(b"/"):
            if part in (b"", b"."):
                continue
            node = self.nodes[self._child(self._dir(node.ino), part)]
        return node

    async def rmdir(self, parent_ino: int, name: bytes) -> None:
        async with self.meta_lock:
            parent = self.check(self._dir(parent_ino), write=True)
            node = self.check(self.nodes[self._child(parent, name)], write=True)
            if not node.is_dir:
                raise NotADirectory("not a directory")
            if node.children:
                raise NotEmpty("directory not empty")
            tx = Tx()
            tx.detach(parent, name, node)
            now = now_ns()
            node.ctime = now
            self._touch_dir(parent, now)
            await self._commit(tx)
        self._maybe_purge(node)

    @staticmethod
    def _child(parent: Node, name: bytes) -> int:
        if len(name) > NAME_MAX:
            raise NameTooLong("file name too long")
        ino = parent.children.get(name)
        if ino is None:
            raise NotFound("no such file")
        return ino

    def _is_ancestor(self, node: Node, of: Node) -> bool:
        """True when ``node`` is ``of`` or one of its ancestors."""
        while True:
            if of is node:
                return True
            if of.ino == ROOT_INODE or not of.links:
                return False
            of = self.nodes[of.links[0][0]]

    async def rename(self, old_ino: int, old_name: bytes, new_ino: int, new_name: bytes,
                     noreplace: bool, exchange: bool) -> None:
        async with self.meta_lock:
            old_parent = self.check(self._dir(old_ino), write=True)
            new_parent = self.check(self._dir(new_ino), write=True)
            self._check_name(new_name)
            node = self.check(self.nodes[self._child(old_parent, old_name)], write=True)
            target_ino = new_parent.children.get(new_name)
            target = self.nodes[target_ino] if target_ino is not None else None
            if target is not None:
                self.check(target, write=True)
            if noreplace and target is not None:
                raise Exists("file exists")
            if exchange and target is None:
                raise NotFound("no such file")
            if node.is_dir and self._is_ancestor(node, new_parent):
                raise InvalidArgument("cannot move a directory into itself")
            if node.owner != new_parent.owner or (target is not None and target.owner != node.owner):
                raise CrossOwner("a move between your files and a shared folder copies")
            if target is node:
                return
            now = now_ns()
            tx = Tx()
            if exchange:
                if target.is_dir and self._is_ancestor(target, old_parent):
                    raise InvalidArgument("cannot move a directory into itself")
                tx.detach(old_parent, old_name, node)
                tx.detach(new_parent, new_name, target)
                tx.attach(old_parent, old_name, target)
                target.ctime = now
            elif target is not None:
                if node.is_dir and not target.is_dir:
                    raise NotADirectory("not a directory")
                if not node.is_dir and target.is_dir:
                    raise IsADirectory("is a directory")
                if target.is_dir and target.children:
                    raise NotEmpty("directory not empty")
                self._detach(tx, new_parent, new_name, target, now)
                if node.is_reg and target.is_reg and not target.links and node.previous is None:
                    # Saved by writing a new file and renaming it over the old
                    # one (editors, rsync): the old file's versions become this
                    # one's history instead of a trash entry.
                    tx.touch(node)
                    node.previous, target.trashed = target.fid, None
                target.ctime = now
            if not exchange:
                tx.detach(old_parent, old_name, node)
            tx.attach(new_parent, new_name, node)
            node.ctime = now
            self._touch_dir(old_parent, now)
            self._touch_dir(new_parent, now)
            await self._commit(tx)
        if target is not None and not exchange:
            self._maybe_purge(target)

    async def link(self, ino: int, new_parent_ino: int, new_name: bytes) -> Node:
        async with self.meta_lock:
            node = self.check(self.node(ino), write=True)
            parent = self.check(self._dir(new_parent_ino), write=True)
            self._check_name(new_name)
            if node.is_dir:
                raise NotSupported("hard links to directories are not allowed")
            if node.owner != parent.owner:
                raise CrossOwner("a hard link between your files and a shared folder")
            if new_name in parent.children:
                raise Exists("file exists")
            tx = Tx()
            tx.attach(parent, new_name, node)
            now = now_ns()
            node.ctime = now
            self._touch_dir(parent, now)
            await self._commit(tx)
        self.remember(node)
        return node

    # --- attributes

    async def setattr(self, ino: int, *, mode: int | None = None, uid: int | None = None,
                      gid: int | None = None, size: int | None = None,
                      atime: int | None = None, mtime: int | None = None,
                      ctime: int | None = None) -> Node:
        node = self.require(ino, write=True)
        now = now_ns()
        if size is not None:
            if node.is_dir:
                raise IsADirectory("is a directory")
            _check_size(size)
            await self._truncate(node, size, now)
        if (mode, uid, gid, atime, mtime, ctime) == (None,) * 6:
            return node
        pending = node.content is not None and node.content.changed
        if (mode, uid, gid) == (None,) * 3 and (pending or self._is_deleted(node)):
            # The kernel writing back times it cached: at close(), the version
            # commit that follows saves them with the new contents; for a
            # removed file (rm -rf), there is nothing left to save them in.
            node.atime = atime if atime is not None else node.atime
            node.mtime = mtime if mtime is not None else node.mtime
            node.ctime = ctime if ctime is not None else now
            return node
        async with self.meta_lock:
            tx = Tx()
            tx.touch(node)
            if mode is not None:
                node.mode = stat.S_IFMT(node.mode) | (mode & 0o7777)
            if uid is not None:
                node.uid = uid
            if gid is not None:
                node.gid = gid
            if atime is not None:
                node.atime = atime
            if mtime is not None:
                node.mtime = mtime
            node.ctime = ctime if ctime is not None else now
            await self._commit(tx)
        return node

    async def _truncate(self, node: Node, size: int, now: int) -> None:
        def truncate(content: Content) -> int:
            content.truncate(size)
            return size

        self.cut.add(node.ino)
        await self._change_contents(node, truncate, now)

    async def restore_contents(self, node: Node, place: tuple[int, int], vid: str) -> None:
        """Make an older version's contents the file's newest version (no block copied)."""
        self.check(node, write=True)
        await self.commit_content(node)  # unsaved changes become a version of their own first
        await self._change_contents(node, lambda c: c.reset_to(place, vid), now_ns(), commit=True)

    async def rekey(self, node: Node) -> None:
        """Give the node a new DEK (a new epoch) and seal its current
        contents under it; old versions keep theirs (a revoked share)."""
        self._owned(node)
        if node.is_reg:
            await self.commit_content(node)
        async with self.content_lock(node):
            if node.content is not None and node.content.changed:
                # Written since the commit above: sealing starts from the
                # last version, so this must be one first.
                await self._commit_version(node, node.content)
            dek, epoch = aead.new_key(), await self._next_epoch(node)
            if node.is_reg and node.head:
                if not await self._reseal(node, dek, epoch):
                    return
            else:
                async with self.meta_lock:
                    tx = Tx()
                    tx.touch(node)
                    node.dek, node.epoch = dek, epoch
                    await self._commit(tx)
                if node.content is not None:  # open, nothing stored: nothing sealed under the old key
                    node.content.dek, node.content.epoch = dek, epoch
                    node.content.acl = self._acl(node) or []
            key = (node.dek, node.epoch)
        if self.sharing is not None and (grants := self.sharing.covering(node, self.nodes)):
            await self.in_thread(self.sharing.seal_keys, self.layout, node, grants, key)

    async def _next_epoch(self, node: Node) -> int:
        """An epoch no key of the node had: above its own, above what this
        volume gave it before, above every key its recipients hold."""
        top = max(node.epoch, self.top_epochs.get(node.fid, 0))
        if self.sharing is not None and (grants := self.sharing.covering(node, self.nodes)):
            top = max(top, await self.in_thread(self.sharing.key_epoch, self.layout, node.fid, grants))
        self.top_epochs[node.fid] = top + 1
        return top + 1

    async def _reseal(self, node: Node, dek: bytes, epoch: int) -> bool:
        """Seal the node's newest version again under ``dek`` as a new version
        (the content lock held).  Sealed into a Content of its own: reads
        under way keep the old one, which stays whole, until the commit.
        False when the file went meanwhile (nothing to seal)."""
        for _ in range(RESEAL_TRIES):
            if self.sharing is not None and node.fid in self.sharing.awaiting:
                # Another writer's version came in while this file was busy:
                # that one is the newest, so it is the one to seal.
                self.sharing.awaiting.discard(node.fid)
                if not reload_contents(self, node):
                    return False
            rev = node.rev
            fresh = await self.in_thread(self._sealed_again, node, dek, epoch)
            try:
                await self._commit_version(node, fresh, rev, key=(dek, epoch))
            except _Stale:
                # Another writer's version came in while this one was
                # sealed: seal theirs, so it stays the newest.
                fresh.close()
                if not reload_contents(self, node):
                    return False
                continue
            except BaseException:
                fresh.close()
                raise
            self._use_content(node, fresh)
            await self.in_thread(fresh.write_sidecar)
            return True
        raise Conflict(f"{node.fid} kept changing while it was given a new key: try again")

    def _sealed_again(self, node: Node, dek: bytes, epoch: int) -> Content:
        """The node's current contents in a new Content under ``dek`` (a worker thread's job)."""
        # The sidecar may be of a newer key than this version's (a recipient
        # wrote under the older one during a revoke): not checked by this reader.
        reader = Content(self.layout, node.owner, node.fid, node.dek, node.manifest, node.head,
                         check_sidecar=False)
        try:
            fresh = Content(self.layout, node.owner, node.fid, node.dek, node.manifest, node.head,
                            check_sidecar=False)
            try:
                fresh.rekey(dek, self._acl(node) or [], epoch)
                for start, end in reader.data_ranges(node.size):  # holes stay holes
                    for offset in range(start, end, FLUSH_AT):
                        fresh.write(offset, reader.read(offset, min(FLUSH_AT, end - offset), node.size))
                        fresh.flush_blocks(node.size)
            except BaseException:
                fresh.close()
                raise
            return fresh
        finally:
            reader.close()

    def _use_content(self, node: Node, content: Content) -> None:
        """``content`` (just committed) becomes the node's; the one it replaces
        is closed once no handle reads it."""
        old, node.content = node.content, content
        if old is not None:
            if node.opens > 0:
                self.retired.setdefault(node.ino, []).append(old)
            else:
                old.close()
        self._release_content(node)

    async def _change_contents(self, node: Node, change: Callable[[Content], int], now: int,
                               commit: bool = False) -> None:
        # A change made to a file that is not open is a whole change: it is
        # committed at once.  One made while open waits for close or fsync.
        opened_here = node.content is None
        node.opens += 1
        try:
            async with self.content_lock(node):
                node.size = change(self._content(node))
                node.mtime = node.ctime = now
            if commit or opened_here:
                await self.commit_content(node)
        finally:
            node.opens -= 1
            self._release_content(node)

    # --- xattrs (user.* only; values are sealed with the node document)

    async def save_node(self, node: Node) -> None:
        """Commit a node as it is in memory (a settled conflict: vault/services/conflicts.py)."""
        self.check(node, write=True)
        async with self.meta_lock:
            tx = Tx()
            tx.touch(node)
            await self._commit(tx)

    async def setxattr(self, ino: int, name: bytes, value: bytes) -> None:
        if not name.startswith(XATTR_PREFIX) or name == XATTR_PREFIX:
            raise NotSupported("only user.* extended attributes are supported")
        async with self.meta_lock:
            node = self.require(ino, write=True)
            tx = Tx()
            tx.touch(node)
            node.xattrs = {**node.xattrs, name: bytes(value)}
            node.ctime = now_ns()
            await self._commit(tx)

    def getxattr(self, ino: int, name: bytes) -> bytes:
        try:
            return self.node(ino).xattrs[name]
        except KeyError:
            raise NoAttribute("no such attribute") from None

    def listxattr(self, ino: int) -> list[bytes]:
        return list(self.node(ino).xattrs)

    async def removexattr(self, ino: int, name: bytes) -> None:
        async with self.meta_lock:
            node = self.require(ino, write=True)
            if name not in node.xattrs:
                raise NoAttribute("no such attribute")
            tx = Tx()
            tx.touch(node)
            node.xattrs = {k: v for k, v in node.xattrs.items() if k != name}
            node.ctime = now_ns()
            await self._commit(tx)

    def statfs(self) -> os.statvfs_result:
        return os.statvfs(self.layout.root)

    # --- directories

    def opendir(self, ino: int) -> int:
        node = self._dir(ino)
        parent_ino = node.links[0][0] if node.links else node.ino
        # A snapshot taken at opendir gives stable positions however the
        # directory changes while it is listed (entries gone since are skipped).
        entries = [(b".", node.ino), (b"..", parent_ino), *node.children.items()]
        fh = self.new_fh()
        self.dir_handles[fh] = (node, entries)
        return fh

    def readdir_entry(self, fh: int, index: int) -> tuple[int, bytes, Node] | None:
        """The first live entry at or after ``index``: (its index, name, node), or None."""
        try:
            node, entries = self.dir_handles[fh]
        except KeyError:
            raise BadHandle("bad directory handle") from None
        while index < len(entries):
            name, ino = entries[index]
            if name in (b".", b"..") or node.children.get(name) == ino:
                child = self.nodes.get(ino)
                if child is not None:
                    return index, name, child
            index += 1
        return None

    def releasedir(self, fh: int) -> None:
        self.dir_handles.pop(fh, None)

    def new_fh(self) -> int:
        fh = self.next_fh
        self.next_fh += 1
        return fh

    # --- file contents

    @staticmethod
    def content_lock(node: Node) -> trio.Lock:
        if node.lock is None:
            node.lock = trio.Lock()
        return node.lock

    def _content(self, node: Node) -> Content:
        if node.content is None:
            try:
                node.content = Content(self.layout, node.owner, node.fid, node.dek,
                                       node.manifest, node.head, acl=self._acl(node), epoch=node.epoch,
                                       alarms=names.alarms_of(self))
            except OSError as err:
                raise os_error(err, "opening file contents") from None
        return node.content

    def _release_content(self, node: Node) -> None:
        if node.opens == 0:
            for old in self.retired.pop(node.ino, ()):
                old.close()
            if node.content is not None and not node.content.changed:
                node.content.close()
                node.content = None

    async def create(self, parent_ino: int, name: bytes, mode: int, caller: Caller,
                     ident: tuple[str, bytes] | None = None) -> tuple[int, Node]:
        """A new file, open; ``ident``: a given id and DEK (a conflict copy's are the
        same on every device that makes it)."""
        node = await self.mknod(parent_ino, name, stat.S_IFREG | (mode & 0o7777), 0, caller, ident=ident)
        return self.open(node.ino, write=True), node

    def open(self, ino: int, write: bool = False) -> int:
        """A handle on the file; ``write``: to change it (refused without WRITE)."""
        node = self.require(ino, write)
        if node.is_dir:
            raise IsADirectory("is a directory")
        if not node.is_reg:
            raise InvalidArgument("not a regular file")
        self.content_lock(node)
        self._content(node)
        node.opens += 1
        fh = self.new_fh()
        self.handles[fh] = node
        if write:
            self.writers.add(fh)
        return fh

    def _handle(self, fh: int) -> Node:
        try:
            return self.handles[fh]
        except KeyError:
            raise BadHandle("bad file handle") from None

    async def read(self, fh: int, offset: int, size: int) -> bytes:
        node = self._handle(fh)
        content = node.content
        # No lock: reads run in parallel, with each other and with a flush in
        # a worker thread (Content.read says why that is safe).
        if content.blocks_to_load(offset, size) > 1:
            data = await self.in_thread(content.read, offset, size, node.size)
        else:
            data = content.read(offset, size, node.size)
        now = now_ns()
        # relatime: record an access once per change, or once a day (only
        # in one's own files: reading a shared file writes nothing).
        stale = node.atime <= node.mtime or node.atime <= node.ctime or now - node.atime > DAY_NS
        if stale and node.owner == self.key.user_id:
            node.atime = now
            self.lazy.add(node.ino)
        return data

    def _writing(self, fh: int) -> Node:
        """The node of a handle opened for writing, or one this user may write now."""
        node = self._handle(fh)
        if node.owner != self.key.user_id:
            if not node.dek or not (self.writable(node) or (fh in self.writers and not node.links)):
                # A share revoked (or made READ) while the file was open: refused
                # now, rather than taken and never saved (vault/services/absorbing.py).
                # Also once shared again, until the file has its key back.  A
                # file this user opened to write and then unlinked stays theirs
                # to write, as with open(2).
                raise PermissionDenied("the file's share no longer lets you write it")
            return node
        return node if fh in self.writers else self.check(node, write=True)

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        node = self._writing(fh)
        _check_size(offset + len(data))
        async with node.lock:
            content = node.content
            try:
                content.write(offset, data)
            except OSError as err:
                raise os_error(err, "reading file contents") from None
            node.size = max(node.size, offset + len(data))
            node.mtime = node.ctime = now_ns()
            self.cut.discard(node.ino)
            if content.dirty_bytes() >= FLUSH_AT:
                await self.in_thread(content.flush_blocks, node.size)
        return len(data)

    async def fallocate(self, fh: int, mode: int, offset: int, length: int) -> None:
        """fallocate(2): mode 0 makes the file at least ``offset + length`` long
        (the new bytes read as zeros), never shorter.  Blocks are sealed when
        written, so there is nothing to reserve: FALLOC_FL_KEEP_SIZE does
        nothing, and punching or zeroing ranges is not supported."""
        node = self._writing(fh)
        if mode & ~FALLOC_FL_KEEP_SIZE:
            raise NotSupported("only plain allocation is supported")
        if offset < 0 or length <= 0:
            raise InvalidArgument("invalid range")
        end = offset + length
        _check_size(end)
        if mode & FALLOC_FL_KEEP_SIZE or end <= node.size:
            return

        def grow(content: Content) -> int:
            if end <= node.size:  # written past it meanwhile
                return node.size
            content.truncate(end)
            return end

        self.cut.discard(node.ino)
        await self._change_contents(node, grow, now_ns())

    async def commit_content(self, node: Node, durable: bool = False) -> None:
        """Make a changed file's state a version (on flush, close and fsync)."""
        async with self.content_lock(node):
            content = node.content
            if content is not None and content.changed:
                await self._commit_version(node, content)
            if durable:
                if content is not None:
                    await self.in_thread(content.fsync)
                await self.in_thread(self.store.sync)

    async def _commit_lazy(self) -> None:
        # Access times and directory times are saved lazily (with the node's
        # next commit, at fsyncdir, or at unmount): reading a file or creating
        # one must not cost a second write.  Best effort: a full disk must not
        # stop an unmount.
        nodes = [self.nodes[ino] for ino in self.lazy if ino in self.nodes]
        if not nodes:
            return
        async with self.meta_lock:
            tx = Tx()
            for node in nodes:
                tx.touch(node)
            try:
                await self._commit(tx)
            except VaultError as err:
                log.warning("access and directory times not saved: %s", err)
                return

    async def _commit_version(self, node: Node, content: Content, expect_rev: object = False,
                              key: tuple[bytes, int] | None = None) -> None:
        """``expect_rev``: commit only over that revision of the node, else _Stale;
        ``key``: the node's new DEK and epoch, which sealed ``content`` (a new key)."""
        try:
            if content.seal_bytes(node.size) <= INLINE_SEAL:  # padding may add blocks
                vid, place, nonce = content.seal_version(node.size)
            else:
                vid, place, nonce = await self.in_thread(content.seal_version, node.size)
        except OSError as err:
            content.changed = True
            raise os_error(err, "writing file contents") from None
        except VaultError:
            content.changed = True
            raise
        self.cut.discard(node.ino)
        async with self.meta_lock:
            if expect_rev is not False and node.rev != expect_rev:
                raise _Stale
            tx = Tx()
            tx.touch(node)
            if key is not None:  # only now: until committed, readers open the old version
                node.dek, node.epoch = key
            parent_vid = node.head
            node.head, node.manifest = vid, place
            node.stored_size = node.size
            node.allocated = content.allocated(node.size)
            doc = version_doc(node, self.key, vid, parent_vid, self.path_of(node), nonce, self.device,
                              content.digests)
            places = [(node.fid, vid, idx, node.owner, offset, length, 0)
                      for idx, offset, length in content.sealed]
            try:
                await self._commit(tx, [doc], places)
            except BaseException:
                content.changed = True  # the blocks are written; commit them next time
                raise

    async def flush(self, fh: int) -> None:
        node = self._handle(fh)
        if node.ino not in self.cut:
            await self.commit_content(node)

    async def fsync(self, fh: int) -> None:
        await self.commit_content(self._handle(fh), durable=True)

    async def fsyncdir(self) -> None:
        await self._commit_lazy()
        await self.in_thread(self.store.sync)

    async def release(self, fh: int) -> None:
        node = self.handles.pop(fh, None)
        self.writers.discard(fh)
        if node is None:
            raise BadHandle("bad file handle")
        try:
            await self.commit_content(node)
        finally:
            node.opens -= 1
            self._release_content(node)
            self._maybe_purge(node)

    # --- shutting down

    def wipe(self) -> None:
        """Forget every key and name (after ``save_all``): the user locked."""
        self._close_contents()
        for node in self.nodes.values():
            node.dek = b""
            node.children = None
        self.nodes.clear()
        self.by_fid.clear()
        self.handles.clear()
        self.writers.clear()
        self.dir_handles.clear()
        self.cut.clear()
        self.ledger = None  # saved by save_all; it holds a key of the user's
        self.key = None  # type: ignore[assignment]

    async def close(self) -> int:
        """Commit whatever is still pending (unmount) and close the store;
        how many things could not be saved (each is logged)."""
        try:
            failures = await self.save_all()
        except Exception:  # the store itself failed: nothing more can be saved
            log.exception("saving at unmount failed")
            failures = 1
        self._close_contents()
        self.store.close()
        return failures

    def _close_contents(self) -> None:
        for old in [c for contents in self.retired.values() for c in contents]:
            old.close()
        self.retired.clear()
        for node in self.nodes.values():
            if node.content is not None:
                node.content.close()
                node.content = None

    async def save_all(self) -> int:
        """Commit whatever is still pending and make it durable (unmount, lock).

        Returns how many files could not be saved (each is logged); their
        contents stay in memory, so a lock that fails loses nothing.  One
        file that cannot be saved, whatever the reason, never keeps the
        others from being saved."""
        failures = 0
        for node in list(self.nodes.values()):
            if node.content is not None and node.content.changed:
                try:
                    await self.commit_content(node)
                except VaultError as err:
                    failures += 1
                    log.error("could not save %s: %s", node.fid, err)
                except Exception:
                    failures += 1
                    log.exception("could not save %s", node.fid)
        await self._commit_lazy()
        await self.in_thread(self.store.sync)
        if self.ledger is not None:
            await self.ledger.save_async()
        if failures:
            log.error("%d file(s) could not be saved", failures)
        return failures


def _check_size(size: int) -> None:
    if size > MAX_FILE_SIZE:
        raise FileTooLarge(f"a file can hold at most {MAX_FILE_SIZE} bytes")
