"""The contents of a user's files while they are open: handles, reads, writes, versions.

Each regular node being read or written holds a Content (vault/files/content.py):
its dirty blocks, sealed as they fill.  A changed file becomes a version when
it is flushed, closed or fsynced: its blocks sealed, then one metadata commit
(through the tree: ``TreePort.commit_node``) records the version document and
where its blocks sit.  Names and attributes are the tree's (vault/tree/).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from fusevault.errors import (
    BadHandle,
    FileTooLarge,
    InvalidArgument,
    IsADirectory,
    NotSupported,
    PermissionDenied,
    VaultError,
)
from fusevault.vault.files.block_cache import BlockCache, Key, Readahead
from fusevault.vault.files.closed import ClosedFiles
from fusevault.vault.files.content import BLOCK_SIZE, MAX_FILE_SIZE, Content
from fusevault.vault.files.ports import TreePort
from fusevault.vault.format.layout import os_error
from fusevault.vault.model import names
from fusevault.vault.model.nodes import Node, now_ns, version_doc

log = logging.getLogger(__name__)

# Past this much dirty data in one file, full blocks are sealed and appended
# (in a worker thread), which bounds the memory a large write holds.
FLUSH_AT = 8 * 1024 * 1024
# Sealing this much is quicker on the loop than a hop to a worker thread.
INLINE_SEAL = 2 * BLOCK_SIZE
DAY_NS = 86400 * 10**9
FALLOC_FL_KEEP_SIZE = 0x01


class Stale(Exception):
    """Another writer committed the node while this version was sealed."""


class Files:
    def __init__(self, tree: TreePort) -> None:
        self.tree = tree
        self.handles: dict[int, Node] = {}
        # Handles opened for writing (WRITE checked then, as open(2) checks
        # modes): a file unlinked while open, whose share no longer reaches
        # it, is still written through them.
        self.writers: set[int] = set()
        # Contents replaced by another writer's newer version while open here:
        # closed at the file's last release, after the reads under way.
        self.retired: dict[int, list[Content]] = {}
        # Open files whose last change is a truncation with nothing written
        # since: ``echo x > f`` and in-place saves truncate at open, and a
        # close of a duplicate descriptor (the shell's redirection) flushes
        # before the write.  Their flush waits, so truncate-then-write is one
        # version; release and fsync still commit a file truncated and closed.
        self.cut: set[int] = set()
        # Blocks recommit_newest_shape hashed with nothing signed to check them against.
        self.unchecked_carried = 0
        # Files whose records were appended and not flushed when their Content
        # closed (a close commits without fsync): fsync(2) through a later
        # handle flushes what any handle wrote, so the next Content takes them
        # over; flushed in small batches as files close (vault/files/closed.py).
        self.unflushed = ClosedFiles()
        # Verified plaintext blocks, and each handle's readahead window.
        self.cache = BlockCache()
        self.readahead: dict[int, Readahead] = {}

    def forget_node(self, node: Node) -> None:
        """The tree dropped ``node`` (no name, no reference, no handle)."""
        self.cut.discard(node.ino)

    # --- a node's Content

    @staticmethod
    def content_lock(node: Node) -> trio.Lock:
        if node.lock is None:
            node.lock = trio.Lock()
        return node.lock

    def content(self, node: Node) -> Content:
        if node.content is None:
            self._adopt(node, self._build(*self._content_args(node)))
        return node.content

    async def load_content(self, node: Node) -> None:
        """Open a stored file's contents in a worker thread, before a handle
        needs them: opening reads and checks its manifest (disk reads, and in
        a vault kept in CouchDB its version document from the server), which
        must not hold up the trio thread.  A version committed meanwhile is
        opened instead; a file that lost its key meanwhile (its share ended) is
        refused, as an open after the revoke would be."""
        while node.content is None and node.manifest is not None:
            if not node.dek:
                raise PermissionDenied("the file's share ended")
            args = self._content_args(node)
            content = await self.tree.in_thread(self._build, *args)
            if node.content is None and self._content_args(node) == args:
                self._adopt(node, content)
            else:
                content.close()

    async def opened(self, node: Node) -> Content:
        """The node's Content, opened in a worker thread if it has none yet
        (``load_content``); a file never written has nothing stored to read
        and gets a new one here."""
        await self.load_content(node)
        return self.content(node)  # no await since: what load_content opened, or a new file's

    def _content_args(self, node: Node) -> tuple:
        return (node.owner, node.fid, node.dek, node.manifest, node.head, tuple(self.tree.acl(node) or ()),
                node.epoch)

    def _build(self, owner: str, fid: str, dek: bytes, manifest: tuple[int, int] | None, head: str | None,
               acl: tuple[str, ...], epoch: int) -> Content:
        try:
            return Content(self.tree.layout, owner, fid, dek, manifest, head, acl=list(acl), epoch=epoch,
                           alarms=names.alarms_of(self.tree))
        except OSError as err:
            raise os_error(err, "opening file contents") from None

    def _adopt(self, node: Node, content: Content) -> None:
        new = self.unflushed.take(content.vf_path)
        if new is not None:
            content.synced = False
            content.new_files = content.new_files or new
        node.content = content

    def close(self, content: Content) -> None:
        """Close ``content``, remembering what of it is not on disk yet (``unflushed``)."""
        if not content.synced or content.new_files:
            self.unflushed.add(content.vf_path, content.new_files)
        self.cache.drop_file(content.fid)
        content.close()

    async def flush_closed(self) -> None:
        """Flush the files of closed contents once a batch of them waits: what
        ``unflushed`` holds stays small, and no large flush is left for later."""
        try:
            await self.unflushed.flush_some()
        except OSError as err:
            raise os_error(err, "flushing closed files") from None

    async def flush_all_closed(self) -> None:
        """Flush every closed file still waiting (unmount, lock): before the
        store's log is flushed, so that no durable document names records
        that a power cut could still take."""
        try:
            await self.unflushed.flush_all()
        except OSError as err:
            raise os_error(err, "flushing closed files") from None

    def release_content(self, node: Node) -> None:
        if node.opens == 0:
            for old in self.retired.pop(node.ino, ()):
                self.close(old)
            if node.content is not None and not node.content.changed:
                self.close(node.content)
                node.content = None

    def use_content(self, node: Node, content: Content) -> None:
        """``content`` (just committed) becomes the node's; the one it replaces
        is closed once no handle reads it."""
        old, node.content = node.content, content
        if old is not None:
            if node.opens > 0:
                self.retired.setdefault(node.ino, []).append(old)
            else:
                self.close(old)
        self.release_content(node)

    def switch_content(self, node: Node) -> None:
        """Open contents follow the node's new version (another writer's).  The
        new version is opened by the next request that needs it (``opened``),
        in a worker thread: opening reads its manifest, and in a vault kept in
        CouchDB asks the server for its version document, which the trio
        thread taking the version in must not wait for."""
        old, node.content = node.content, None
        if old is None:
            return
        if node.opens > 0:
            self.retired.setdefault(node.ino, []).append(old)
        else:
            self.close(old)

    async def change_contents(self, node: Node, change: Callable[[Content], int], now: int,
                              commit: bool = False) -> None:
        # A change made to a file that is not open is a whole change: it is
        # committed at once.  One made while open waits for close or fsync.
        # (Open with no Content: another writer's version came in, not opened yet.)
        opened_here = node.content is None and node.opens == 0
        node.opens += 1
        try:
            async with self.content_lock(node):
                node.size = change(await self.opened(node))
                node.mtime = node.ctime = now
            if commit or opened_here:
                await self.commit_content(node)
        finally:
            node.opens -= 1
            self.release_content(node)

    async def truncate(self, node: Node, size: int, now: int) -> None:
        check_size(size)

        def truncate(content: Content) -> int:
            content.truncate(size)
            return size

        self.cut.add(node.ino)
        await self.change_contents(node, truncate, now)

    async def restore_contents(self, node: Node, place: tuple[int, int], vid: str) -> None:
        """Make an older version's contents the file's newest version (no block copied)."""
        self.tree.check(node, write=True)
        await self.commit_content(node)  # unsaved changes become a version of their own first
        await self.change_contents(node, lambda c: c.reset_to(place, vid), now_ns(), commit=True)

    # --- handles

    def open(self, ino: int, write: bool = False) -> int:
        """A handle on the file; ``write``: to change it (refused without WRITE)."""
        node = self.tree.require(ino, write)
        if node.is_dir:
            raise IsADirectory("is a directory")
        if not node.is_reg:
            raise InvalidArgument("not a regular file")
        self.content_lock(node)
        self.content(node)
        node.opens += 1
        fh = self.tree.new_fh()
        self.handles[fh] = node
        if write:
            self.writers.add(fh)
        return fh

    def handle(self, fh: int) -> Node:
        try:
            return self.handles[fh]
        except KeyError:
            raise BadHandle("bad file handle") from None

    async def read(self, fh: int, offset: int, size: int) -> bytes:
        node = self.handle(fh)
        content = node.content
        if content is None:  # another writer's version came in since (switch_content)
            content = await self.opened(node)
        # No lock: reads run in parallel, with each other and with a flush in
        # a worker thread (Content.read says why that is safe).  Verified
        # blocks a read before it left in the cache are served here, on the
        # loop; a miss reads the blocks and, for a sequential reader, a
        # window after them, in one hop (vault/files/block_cache.py).
        readahead = self.readahead.get(fh)
        if readahead is None:  # not setdefault: no Readahead made and dropped on every read
            readahead = self.readahead[fh] = Readahead()
        ahead = readahead.request(offset, size)
        data = content.cached(offset, size, node.size, self.cache)
        if data is None and (under_way := readahead.covering(offset, size)) is not None:
            await under_way.wait()  # its window holds this request: read once, not twice
            data = content.cached(offset, size, node.size, self.cache)
        if data is None:
            data = await self._read_stored(content, readahead, offset, size, node.size, ahead)
        now = now_ns()
        # relatime: record an access once per change, or once a day (only
        # in one's own files: reading a shared file writes nothing).
        stale = node.atime <= node.mtime or node.atime <= node.ctime or now - node.atime > DAY_NS
        if stale and node.owner == self.tree.key.user_id:
            node.atime = now
            self.tree.lazy.add(node.ino)
        return data

    async def data_ranges(self, fh: int, size: int) -> list[tuple[int, int]]:
        """[start, end) of the byte ranges below ``size`` of the open file that
        hold data, stored or written since: the rest are holes (they read as
        zeros and cost nothing), which a copy seeks over instead of writing."""
        node = self.handle(fh)
        content = node.content
        if content is None:  # another writer's version came in since (switch_content)
            content = await self.opened(node)
        return await self.tree.in_thread(content.data_ranges, size)  # runs of a long history: off the loop

    async def _read_stored(self, content: Content, readahead: Readahead, offset: int, size: int,
                           file_size: int, ahead: int) -> bytes:
        """Read what the cache did not hold, with ``ahead`` bytes of readahead
        (in a worker thread), and keep every block verified on the way."""
        fresh: list[tuple[Key, bytes]] = []
        under_way = None
        try:
            if not (ahead or content.blocks_to_load(offset, size) > 1 or content.asks_server):
                return content.read(offset, size, file_size, fresh)
            under_way = readahead.start(offset, offset + size + ahead)
            return await self.tree.in_thread(content.read, offset, size, file_size, fresh, ahead)
        finally:  # also what was verified before a block further on failed
            for key, block in fresh:
                self.cache.put(key, block)
            if under_way is not None:
                readahead.finish(under_way)

    def _writing(self, fh: int) -> Node:
        """The node of a handle opened for writing, or one this user may write now."""
        node = self.handle(fh)
        if node.owner != self.tree.key.user_id:
            if not node.dek or not (self.tree.writable(node) or (fh in self.writers and not node.links)):
                # A share revoked (or made READ) while the file was open: refused
                # now, rather than taken and never saved (vault/services/absorbing.py).
                # Also once shared again, until the file has its key back.  A
                # file this user opened to write and then unlinked stays theirs
                # to write, as with open(2).
                raise PermissionDenied("the file's share no longer lets you write it")
            return node
        return node if fh in self.writers else self.tree.check(node, write=True)

    async def write(self, fh: int, offset: int, data: bytes, *, times: bool = True) -> int:
        """``times``: the write sets the file's modification and change times.
        Not when the kernel's writeback cache sends them (it keeps its own and
        sends them by SETATTR before the close or fsync that commits): a write
        it sends back after that SETATTR must not put this process's clock
        in the version instead of the time the writer's ``stat`` shows."""
        node = self._writing(fh)
        check_size(offset + len(data))
        async with node.lock:
            content = node.content
            if content is None:  # another writer's version came in since (switch_content)
                content = await self.opened(node)
            try:
                content.write(offset, data)
            except OSError as err:
                raise os_error(err, "reading file contents") from None
            node.size = max(node.size, offset + len(data))
            if times:
                node.mtime = node.ctime = now_ns()
            self.cut.discard(node.ino)
            if content.dirty_bytes() >= FLUSH_AT:
                await self.tree.in_thread(content.flush_blocks, node.size)
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
        check_size(end)
        if mode & FALLOC_FL_KEEP_SIZE or end <= node.size:
            return

        def grow(content: Content) -> int:
            if end <= node.size:  # written past it meanwhile
                return node.size
            content.truncate(end)
            return end

        self.cut.discard(node.ino)
        await self.change_contents(node, grow, now_ns())

    # --- versions

    async def commit_content(self, node: Node, durable: bool = False) -> None:
        """Make a changed file's state a version (on flush, close and fsync)."""
        async with self.content_lock(node):
            content = node.content
            if content is not None and content.changed:
                await self.commit_version(node, content, durable=durable)
            elif durable and content is not None and (not content.synced or content.new_files):
                # Records an earlier commit (a close) appended: on disk before the
                # store's log is flushed, as for a version sealed now.
                await self.tree.in_thread(content.fsync)
            await self.tree.save_new(node)  # a new file with no version to commit it
            if durable:
                await self.tree.flush_pending()  # grouped metadata changes: durable too
                await self.tree.in_thread(self.tree.store.sync)

    async def commit_version(self, node: Node, content: Content, still: Callable[[], bool] | None = None,
                             key: tuple[bytes, int, str, dict | None] | None = None,
                             durable: bool = False) -> None:
        """``still``: commit only while it holds (asked under the metadata lock,
        right before the node changes), else Stale;
        ``key``: the node's new DEK and epoch, which sealed ``content`` (a new key), and her
        proof of it (vault/files/rekeying.py);
        ``durable`` (fsync): the version's records are flushed to disk before the
        store commits the documents that name them, in the same worker thread
        as the sealing (the caller then flushes the store: ``LocalStore.sync``).
        So a power cut never leaves a durable document naming records that
        were lost with the page cache.

        The caller holds the node's content lock from before the seal until this returns: sealing
        clears ``changed`` before the commit waits for the metadata lock, and the lock held is what
        tells that moment from contents committed (arrivals.py ``unsaved``; attack round 64a (1))."""
        assert node.lock is not None and node.lock.locked(), "a version sealed without its content lock"
        try:
            # Padding may add blocks; a manifest of an older shape is written whole (a tree).
            if durable:
                vid, place, nonce = await self.tree.in_thread(content.seal_durably, node.size)
            elif content.seal_bytes(node.size) <= INLINE_SEAL and content.in_newest_shape():
                vid, place, nonce = content.seal_version(node.size)
            else:
                vid, place, nonce = await self.tree.in_thread(content.seal_version, node.size)
        except OSError as err:
            content.changed = True
            raise os_error(err, "writing file contents") from None
        except VaultError:
            content.changed = True
            raise
        self.cut.discard(node.ino)
        tree = self.tree

        def change() -> tuple[list[dict], list[tuple]]:
            if still is not None and not still():
                raise Stale
            if key is not None:  # only now: until committed, readers open the old version
                node.dek, node.epoch, node.key_proof, node.sealed_for = key
            parent_vid = node.head
            node.head, node.manifest = vid, place
            node.stored_size = node.size
            node.allocated = content.allocated(node.size)
            doc = version_doc(node, tree.key, vid, parent_vid, _place_of(tree, node), nonce, tree.device,
                              content.digests)
            places = [(node.fid, vid, idx, node.owner, offset, length, 0)
                      for idx, offset, length in content.sealed]
            return [doc], places

        try:
            await tree.commit_node(node, change)
        except Stale:
            raise
        except BaseException:
            content.changed = True  # the blocks are written; commit them next time
            raise
        tree.vouched.pop(node.fid, None)  # a version of this user's own now: nothing older is vouched for

    async def recommit_newest_shape(self, node: Node) -> bool:
        """Recommit this file's current content in the newest manifest shape (a
        Merkle tree, vault format 5: docs/FORMAT.md) as a new version, if its
        current version is of an older shape (or has changes not committed
        yet); whether it did.  The same path as any commit, so when the
        manifest format changes again this follows with no change.  Nothing of the
        content changes and no block is sealed again: the blocks it keeps are
        read once, checked and hashed into the new tree.  For ``fusevault
        upgrade``; the caller checks that its user may write the file."""
        if node.manifest is None:
            return False  # never written: its first version is written hashed
        node.opens += 1
        try:
            async with self.content_lock(node):
                content = await self.opened(node)
                if not content.changed and content.in_newest_shape():
                    return False
                content.changed = True
                content.unchecked = 0
                await self.commit_version(node, content)
                self.unchecked_carried += content.unchecked
                return True
        finally:
            node.opens -= 1
            self.release_content(node)

    async def flush(self, fh: int) -> None:
        node = self.handle(fh)
        if node.ino not in self.cut:
            await self.commit_content(node)
        else:
            await self.tree.save_new(node)

    async def fsync(self, fh: int) -> None:
        await self.commit_content(self.handle(fh), durable=True)

    async def release(self, fh: int) -> None:
        node = self.handles.pop(fh, None)
        self.writers.discard(fh)
        self.readahead.pop(fh, None)
        if node is None:
            raise BadHandle("bad file handle")
        try:
            await self.commit_content(node)
        finally:
            node.opens -= 1
            self.release_content(node)
            self.tree.purge_if_unused(node)
        await self.flush_closed()

    def abandon(self, fh: int) -> None:
        """Close a handle on a new file whose document was never committed
        (``Tree.unsaved``) and take the file back, in memory only: nothing of
        it is committed.  A conflict copy whose bytes could not all be
        written (vault/services/conflicts.py): none, rather than a short one."""
        node = self.handles.pop(fh, None)
        self.writers.discard(fh)
        if node is None:
            raise BadHandle("bad file handle")
        node.opens -= 1
        if node.content is not None:
            node.content.changed = False  # its records stay unreferenced in the .vf
        self.release_content(node)
        self.tree.take_back(node)

    # --- saving and closing everything

    async def save_changed(self) -> int:
        """Commit every changed file; how many could not be saved (each is
        logged).  One that cannot be saved, whatever the reason, never keeps
        the others from being saved; its contents stay in memory."""
        failures = 0
        for node in self.tree.nodes():
            if node.content is not None and node.content.changed:
                try:
                    await self.commit_content(node)
                except VaultError as err:
                    failures += 1
                    log.error("could not save %s: %s", node.fid, err)
                except Exception:
                    failures += 1
                    log.exception("could not save %s", node.fid)
        return failures

    def close_contents(self) -> None:
        self.cache.clear()  # unmount, lock: no plaintext kept past the keys
        for old in [c for contents in self.retired.values() for c in contents]:
            old.close()
        self.retired.clear()
        for node in self.tree.nodes():
            if node.content is not None:
                node.content.close()
                node.content = None

    def wipe(self) -> None:
        """Close every content and forget every handle (the user locked)."""
        self.close_contents()
        self.handles.clear()
        self.writers.clear()
        self.readahead.clear()
        self.cut.clear()


def check_size(size: int) -> None:
    if size > MAX_FILE_SIZE:
        raise FileTooLarge(f"a file can hold at most {MAX_FILE_SIZE} bytes")


def _place_of(tree: TreePort, node: Node) -> bytes:
    """Where a version says its file was: its path; a file unlinked while still open (sqlite's
    WAL -shm, a program's temporary file) has none, and names the path it had when its last
    name went (``trashed``, as the trash shows it), never an empty one that reads as a
    refused name (attack round 53t (3))."""
    path = tree.path_of(node)
    if not path and not node.links and node.trashed is not None:
        return node.trashed[0]
    return path
