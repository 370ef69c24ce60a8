"""``fusevault upgrade``: bring what older versions of fusevault wrote into the newest shape at once.

Two things are otherwise done a little at a time, or again and again:

- each of the user's own files whose current manifest is of an older shape
  is recommitted in the newest one (``Files.recommit_newest_shape``): a new version
  that shares every block, so a format change costs one manifest per file
  now rather than a rewrite of the whole manifest at some later small edit;
- the places kept without their record's SHA-256 (rows from before it was
  kept, store/places.py) get it: read and hashed in a worker thread, written
  back, so no reader hashes them again (vault/files/placements.py hashes a
  row without one each time a process first checks its version).

Idempotent: a second run finds nothing to do.  Versions written by older
formats stay as they are and read as before (history, restore, gc).
"""

from __future__ import annotations

import hashlib
import logging
import os

import trio

from fusevault.errors import CorruptData, VaultError
from fusevault.store.places import PlaceRow
from fusevault.vault.files.placements import vf_for_reading
from fusevault.vault.format.layout import Layout
from fusevault.vault.volume import Volume

log = logging.getLogger(__name__)

BATCH = 512  # place rows hashed per worker-thread call and written per transaction


async def upgrade(volume: Volume) -> dict:
    digests = await fill_digests(volume)
    rewritten = failed = 0
    unchecked_before = volume.files.unchecked_carried
    me = volume.key.user_id
    for node in [n for n in volume.nodes() if n.is_reg and n.head and n.owner == me and n.dek]:
        try:
            rewritten += await volume.files.recommit_newest_shape(node)
        except VaultError as err:
            # A damaged file (EIO to readers too; `fusevault check` tells more) or a full
            # disk: the others are still upgraded, and a later run tries this one again.
            failed += 1
            log.error("upgrade: could not rewrite %s: %s", node.fid, err)
        await trio.sleep(0)  # let file-system requests through between files
    if rewritten or digests:
        await volume.in_thread(volume.store.sync)
    # Blocks no signed document names any more (their version's document
    # dropped by an older gc, or signed before digests): hashed as they are,
    # which is said rather than passed over (docs/SECURITY.md, "Out of reach").
    unchecked = volume.files.unchecked_carried - unchecked_before
    if unchecked:
        log.warning("upgrade: %d block(s) had nothing signed to check them against and were taken as "
                    "they are", unchecked)
    return {"files_rewritten": rewritten, "files_failed": failed, "digests_filled": digests,
            "blocks_unchecked": unchecked}


async def fill_digests(volume: Volume) -> int:
    """Hash the records of place rows kept without their SHA-256 and write it back; how many."""
    store, layout = volume.store, volume.layout
    after, filled = 0, 0
    while True:
        rows = await volume.store_call(store.unhashed_places, after, BATCH)
        if not rows:
            return filled
        after = rows[-1][0]
        shas = await volume.in_thread(_hash_rows, layout, [row for _, row in rows])
        if shas:
            filled += await volume.store_call(store.set_place_shas, shas)


def _hash_rows(layout: Layout, rows: list[PlaceRow]) -> list[tuple[str, str, str, int]]:
    """(sha hex, fid, vid, idx) of each row whose record is whole in its ``.vf`` here."""
    out = []
    fds: dict[tuple[str, str], int | None] = {}
    try:
        for row in rows:
            key = (row.owner, row.fid)
            if key not in fds:
                try:
                    fds[key] = vf_for_reading(layout, row.owner, row.fid)
                except (OSError, CorruptData):
                    # Gone, not readable here, or no file of ours (a link): left for a reader to tell.
                    fds[key] = None
            fd = fds[key]
            if fd is None:
                continue
            record = os.pread(fd, row.length, row.offset)
            if len(record) == row.length:
                out.append((hashlib.sha256(record).hexdigest(), row.fid, row.vid, row.idx))
    finally:
        for fd in fds.values():
            if fd is not None:
                os.close(fd)
    return out
