"""A store that says what was written: one view of a shared store per writer.

In a shared mount several unlocked users each hold a Volume over the one
store.  Each gets a ``WatchedStore`` naming them; after every successful
write the listener hears who wrote which documents (with their new revs),
on the trio thread, before the writer goes on.  So the other users' trees
take in a change before anything else can run against their old picture
of it.  Closing a view does nothing: the mount closes the store itself.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence

import trio

from fusevault.store import Store, short_calls

log = logging.getLogger(__name__)
Listener = Callable[[object, list[dict]], None]


class WatchedStore:
    # The other users' trees hear of each write: new files are not held back (vault/tree/inodes.py).
    watched = True

    def __init__(self, inner: Store, writer: object, listener: Listener) -> None:
        self.inner = inner
        self.inline = inner.inline
        self.writer = writer
        self._listener = listener

    def put_many(self, docs: list[dict], places: Sequence[tuple] = ()) -> list[str]:
        revs = self.inner.put_many(docs, places)
        written = [{**doc, "_rev": rev} for doc, rev in zip(docs, revs)]
        try:
            trio.lowlevel.current_task()
        except RuntimeError:  # a worker thread: the listener runs on the loop
            trio.from_thread.run_sync(self._tell, written)
        else:
            self._tell(written)
        return revs

    def _tell(self, written: list[dict]) -> None:
        # The write is done: nothing a listener does may make it look failed.
        try:
            with short_calls.lifted():  # not the committing call's work: the mount's, on its own
                self._listener(self.writer, written)
        except Exception:
            log.exception("taking in a change failed")

    def reading(self) -> contextlib.AbstractContextManager[None]:
        return self.inner.reading()

    def get(self, doc_id: str) -> dict | None:
        return self.inner.get(doc_id)

    def deleted(self, doc_id: str) -> bool:
        return self.inner.deleted(doc_id)

    def iter_type(self, doc_type: str) -> Iterator[dict]:
        return self.inner.iter_type(doc_type)

    def by_file(self, doc_type: str, fid: str) -> list[dict]:
        return self.inner.by_file(doc_type, fid)

    def changes(self, since: int | str = 0) -> tuple[list[dict], int | str]:
        return self.inner.changes(since)

    def sync(self) -> None:
        self.inner.sync()

    def forget_places(self, fid: str, ranges: Sequence[tuple[int, int]] | None) -> None:
        self.inner.forget_places(fid, ranges)

    def unhashed_places(self, after: int, limit: int) -> list:
        return self.inner.unhashed_places(after, limit)

    def set_place_shas(self, shas: Sequence[tuple[str, str, str, int]]) -> int:
        return self.inner.set_place_shas(shas)

    def compact(self, rebuild: bool = False) -> bool:
        return self.inner.compact(rebuild)

    def close(self) -> None:
        pass
