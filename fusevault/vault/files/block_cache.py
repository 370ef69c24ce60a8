"""Verified, decrypted blocks kept for the reads that follow (issue 25: fewer thread hops).

A read that misses goes to a worker thread (vault/files/open_files.py), which
reads, hash-checks and decrypts the blocks asked for and, when the handle
reads sequentially, a window of blocks after them (``Readahead``).  They are
kept here, so the next requests are answered on the trio loop from memory,
without a round trip to a thread.

Why nothing here is ever stale: a block is kept under the identity of the
record it came from, ``(file id, version id, index, offset, length, last)``
as the file's manifest names it.  Records are only ever appended to a
``.vf`` and never change (vault/files/content.py), and only a block whose
record passed every check (its version's signed digest or Merkle hash, then
AES-GCM with the file id, index, version and last flag in the associated
data) is put here.  A write makes dirty blocks, which a read takes first; a
flush, truncate, fallocate, restore or another writer's version gives the
file a new manifest whose changed blocks are other records (other keys): the
old entries are never asked for again and age out.  Nothing has to be found
and invalidated, so nothing can be missed.

Memory: one LRU per volume, at most ``budget`` bytes of plaintext however
large or many the files are.  A file's entries go when its contents close
(its last handle), all of them when the volume closes its contents (lock,
unmount): plaintext is not kept longer than the mount holds the keys.
"""

from __future__ import annotations

from collections import OrderedDict

import trio

# A key: (file id, version id, block index, record offset, record length, last flag, the SHA-256 the
# reading version's manifest names for it or None: vault/files/content.py ``_key``).
Key = tuple[str, str, int, int, int, int, bytes | None]

# A few MiB: room for a sequential reader's window (MAX_AHEAD) several times over.
CACHE_BYTES = 8 * 1024 * 1024
# The readahead window, in bytes: the first one as large as the kernel's
# requests (128 KiB), then doubled up to the largest, at which one thread hop
# serves eight of them.
MIN_AHEAD = 128 * 1024
MAX_AHEAD = 1024 * 1024


class BlockCache:
    """An LRU of verified plaintext blocks, bounded in bytes; used on the trio loop only."""

    def __init__(self, budget: int = CACHE_BYTES) -> None:
        self.budget = budget
        self.size = 0
        self._blocks: OrderedDict[Key, bytes] = OrderedDict()
        self._by_file: dict[str, set[Key]] = {}

    def __len__(self) -> int:
        return len(self._blocks)

    def get(self, key: Key) -> bytes | None:
        data = self._blocks.get(key)
        if data is not None:
            self._blocks.move_to_end(key)
        return data

    def put(self, key: Key, data: bytes) -> None:
        if len(data) > self.budget or key in self._blocks:
            return
        self._blocks[key] = data
        self._by_file.setdefault(key[0], set()).add(key)
        self.size += len(data)
        while self.size > self.budget:
            old, gone = self._blocks.popitem(last=False)
            self._forget(old, gone)

    def _forget(self, key: Key, data: bytes) -> None:
        self.size -= len(data)
        keys = self._by_file.get(key[0])
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_file[key[0]]

    def drop_file(self, fid: str) -> None:
        """Forget every block of file ``fid`` (its contents closed)."""
        for key in self._by_file.pop(fid, ()):
            self.size -= len(self._blocks.pop(key))

    def clear(self) -> None:
        self._blocks.clear()
        self._by_file.clear()
        self.size = 0


class Readahead:
    """How many blocks past a handle's request to read in the same hop: none
    for random access; on each request that starts where the last one ended,
    the window doubles (from ``MIN_AHEAD``, or the request's size) up to ``MAX_AHEAD``.

    Also the reads of this handle under way in a worker thread, with their
    windows: the kernel sends a sequential reader's next request before the
    last is answered, and that request waits for the window that will hold
    it rather than read and decrypt the same blocks in a hop of its own."""

    __slots__ = ("next", "window", "under_way")

    def __init__(self) -> None:
        self.next = -1
        self.window = 0
        self.under_way: list[tuple[int, int, trio.Event]] = []

    def covering(self, offset: int, size: int) -> trio.Event | None:
        """The read under way whose window holds [offset, offset+size), if any."""
        for start, end, done in self.under_way:
            if start <= offset and offset + size <= end:
                return done
        return None

    def start(self, offset: int, end: int) -> tuple[int, int, trio.Event]:
        entry = (offset, end, trio.Event())
        self.under_way.append(entry)
        return entry

    def finish(self, entry: tuple[int, int, trio.Event]) -> None:
        self.under_way.remove(entry)
        entry[2].set()

    def request(self, offset: int, size: int) -> int:
        """Record a request; the window in bytes to read after it."""
        if offset == self.next:
            self.window = min(max(2 * self.window, size, MIN_AHEAD), MAX_AHEAD)
        else:
            self.window = 0
        self.next = offset + size
        return self.window
