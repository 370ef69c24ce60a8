"""Garbage collection: apply the retention policy and free what no version uses.

For each file, the versions the policy lets go lose their documents; then the
byte ranges of its ``.vf`` that no remaining version references are punched
out (``fallocate(PUNCH_HOLE)``), which frees the disk space while every offset
a manifest records stays valid: nothing is rewritten or moved, so a crash at
any point leaves a vault that mounts (at worst with a hole not yet punched,
which the next run punches).

A file's content lock is held while it is collected, so no version is
committed or restored meanwhile; versions open in ``.versions/`` (``busy``)
are kept for a later run.  Files in the trash longer than the policy allows
are removed with all their versions.

Only ever the collecting user's own files, under their own policy
(vault/model/retention.py): versions of files shared with them, whoever wrote
those versions, are their owner's to keep or let go.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio

from fusevault.errors import Conflict, CorruptData, PermissionDenied, VaultError
from fusevault.shortening import shortened
from fusevault.store import Store
from fusevault.store.places import Places, sealed_here
from fusevault.vault.files.content import Content
from fusevault.vault.format import inside
from fusevault.vault.format.layout import is_id
from fusevault.vault.format.manifest import Manifest
from fusevault.vault.format.manifest_tree import node_index
from fusevault.vault.format.vf import HEADER
from fusevault.vault.model.history import Link, Version, lineage
from fusevault.vault.model.ledger import writer_seq
from fusevault.vault.model.nodes import VERSION, Node, detached_node
from fusevault.vault.model.retention import DAY, Policy, to_drop
from fusevault.vault.model.trash_seen import TrashSeen, deleted_at
from fusevault.vault.services.recovery import deleted_nodes, signed_deletion
from fusevault.vault.volume import Volume

log = logging.getLogger(__name__)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02

# Records no document names (attack round 80c (1): the server planted Record documents at file and
# version ids of its own, and each pull wrote them into her .vf files for good) are garbage once their
# .vf has been left unchanged this long: sync places a version's records before the documents naming
# it come, and a version on its way in is not taken from under its pull.  What goes is noted
# ``punched`` (store/places.py ``forget``): a version that names it later has it fetched again.
UNNAMED_GRACE_SECONDS = 24 * 3600


def unnamed_grace() -> float:
    """``UNNAMED_GRACE_SECONDS``, or shorter (1 s at least) where FUSEVAULT_GC_GRACE_SECONDS says so: the
    tests of round 80c (1) collect what the server planted a moment before, as FUSEVAULT_LONGPOLL_SECONDS
    shortens the pull's longpoll.  Shorter only lets a slow version's records be fetched twice."""
    return float(shortened("FUSEVAULT_GC_GRACE_SECONDS", UNNAMED_GRACE_SECONDS))


@dataclass
class Report:
    versions_dropped: int = 0
    files_purged: int = 0
    bytes_freed: int = 0
    kept_open: int = 0
    kept_unverified: int = 0  # files whose versions stay: a block failed its check (EIO to readers)
    kept_replayed: int = 0  # deleted files kept whole: the ledger saw a newer state than the deletion
    kept_changed: int = 0  # files left for a later run: a document of theirs changed while collected
    unnamed_removed: int = 0  # .vf files no document names, removed (attack round 80c (1))
    dropped: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"versions_dropped": self.versions_dropped, "files_purged": self.files_purged,
                "bytes_freed": self.bytes_freed, "kept_open": self.kept_open,
                "kept_unverified": self.kept_unverified, "kept_replayed": self.kept_replayed,
                "kept_changed": self.kept_changed, "unnamed_removed": self.unnamed_removed,
                "dropped": self.dropped}


def punch_hole(fd: int, offset: int, length: int) -> None:
    if _libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def used_ranges(content: Content, versions: list[Version]) -> list[tuple[int, int]]:
    """(offset, end) of every record the given versions reference, sorted."""
    ranges = []
    for version in versions:
        offset, length = content.where(*version.manifest, version.vid, -1, version.dek)
        ranges.append((offset, offset + length))
        manifest = content.load_manifest(version.manifest, version.vid, version.dek)
        # The nodes of its manifest tree (kind 4), its own and those it shares.
        ranges += [(o, o + n) for o, n in manifest.nodes]
        places = content.layout.places
        if places is None or not places.any_arrived:  # a run's records lie one after the other
            ranges += [(o, o + c * n) for _, c, o, n, _, _ in manifest.blocks.runs]
            continue
        copies = places.copies_of(content.fid)
        for index, o, n, vidx, _ in manifest.blocks.blocks():
            # where it sits here: records from peers are not where the writer put them
            o, n = content.where(o, n, manifest.vids[vidx], index, version.dek)
            ranges.append((o, o + n))
            # Every copy of a record placed again (store/places.py ``copies``): kept while a version
            # names it, whichever copy that version reads (attack round 46a (3)).
            ranges += [(o, o + n) for o, n in copies.get((manifest.vids[vidx], index), {}).values()]
        # Every copy of a tree node this version's tree names (the one it reads is in ``nodes``), as for
        # blocks; a node copy no kept version names is garbage (kept, a member's forged node outlived its
        # version for the file's life, and the file was walked at each unlock: attack round 50a (2)).
        ranges += [(o, o + n) for record in _named_nodes(manifest)
                   for o, n in copies.get(record, {}).values()]
    return sorted(ranges)


def _named_nodes(manifest: Manifest) -> set[tuple[str, int]]:
    """(writer vid, record index) of every node of ``manifest``'s tree (none for a manifest that is no
    tree): the nodes a reader of its version reads."""
    return {(writer, node_index(level, pos)) for (level, pos), ((_, _, writer), *_) in manifest.tree.items()}


def unused_ranges(content: Content, versions: list[Version],
                  unnamed: list[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
    """(offset, end) of the ranges of the ``.vf`` the given versions do not use; ``unnamed``: places of
    records that came from peers and that no version document names (``unnamed_records``)."""
    ranges = used_ranges(content, versions)
    if not ranges:
        return []
    # Only below the newest kept record: what lies past it may be blocks of
    # a version being written right now (or garbage the next append follows).
    limit = max(end for _, end in ranges)
    unused = []
    position = HEADER.size
    for start, end in ranges + [(limit, limit)]:
        if start > position:
            unused.append((position, start))
        position = max(position, end)
    # Past it, records a peer sent that nothing names: a version written here has no such place row
    # until its commit, so none of its blocks is among them (attack round 80c (1): the server's records
    # appended to her file's .vf after her last version stayed, whatever gc was run).
    return unused + _merged([r for r in unnamed or () if r[0] >= limit])


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """``ranges`` sorted, overlapping ones made one (rows are the store's: two may overlap)."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def unnamed_records(store: Store, places: Places, fid: str, head: str | None) -> list[tuple[int, int]]:
    """(offset, end) of the records of ``fid`` that came from peers (``places`` rows) and that no version
    document of the file names, read or not, judged or not (nor its node's head, nor a version this
    process sealed and is committing): the server's own Record documents (attack round 80c (1)).  A
    kept version's manifest may still name one (a block it inherited from a version gc dropped):
    ``unused_ranges`` keeps those, by the ranges the kept versions use."""
    arrived = places.arrived_of(fid)
    if not arrived:
        return []
    try:
        named = {doc["_id"] for doc in store.by_file(VERSION, fid)}
    except VaultError:
        return []  # a document that does not read may name any of them: none is let go
    named.add(head or "")
    return [(place[0], place[0] + place[1]) for (vid, _), place in arrived.items()
            if place is not None and vid not in named and not sealed_here(fid, vid)]


def allocated(fd: int, start: int, end: int) -> int:
    """Bytes on disk that punching [start, end) would free: the file system's
    whole blocks inside it that hold data (SEEK_DATA/SEEK_HOLE)."""
    block = os.fstat(fd).st_blksize or 4096
    position, end = -(-start // block) * block, end // block * block
    total = 0
    while position < end:
        try:
            data = os.lseek(fd, position, os.SEEK_DATA)
        except OSError as err:
            if err.errno == errno.ENXIO:  # no data after position
                break
            raise
        if data >= end:
            break
        hole = os.lseek(fd, data, os.SEEK_HOLE)
        total += min(hole, end) - data
        position = hole
    return total


def free_unused(content: Content, versions: list[Version], dry_run: bool = False,
                unnamed: list[tuple[int, int]] | None = None) -> tuple[int, list[tuple[int, int]]]:
    """Punch out what the kept versions do not use (and the ``unnamed`` records past them); return the
    bytes freed on disk (``dry_run``: that would be freed, nothing punched) and the ranges
    punched (their records' place rows are garbage now)."""
    unused = unused_ranges(content, versions, unnamed)
    fd = content.fd
    if dry_run:
        return sum(allocated(fd, start, end) for start, end in unused), []
    if not unused:
        return 0, []
    before = os.fstat(fd).st_blocks
    try:
        for start, end in unused:
            punch_hole(fd, start, end - start)
    except OSError as err:
        if err.errno not in (errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        log.warning("the file system of the vault cannot punch holes: old versions' "
                    "space is not freed")
        return 0, []
    return max(0, before - os.fstat(fd).st_blocks) * 512, unused


def _deletions(docs: list[tuple[str, str]]) -> list[dict]:
    return [{"_id": doc_id, "_rev": rev, "_deleted": True} for doc_id, rev in docs]


async def _delete(volume: Volume, docs: list[tuple[str, str]]) -> bool:
    """Delete the documents ``docs`` ((id, rev) as read) in one commit.

    Sync writes the store meanwhile: the other device's gc drops the same
    versions, and its deletions may arrive between the read and this write.
    A document deleted here already is done.  One changed otherwise (a file
    restored on the other device) leaves the whole batch, and so the file,
    for a later run (False): nothing is deleted over a state not read."""
    while docs:
        try:
            await volume.store_call(volume.store.put_many, _deletions(docs))
            return True
        except Conflict:
            # A look per document of the batch (a file's versions: as many as were saved): on a worker
            # thread from a snapshot, never on the loop (store/short_calls.py, attack round 73b (1)).
            gone = await volume.read_call(_deleted_here, volume.store, [d for d, _ in docs])
            if not gone:
                log.warning("gc: left %s for a later run: it changed while it was collected", docs[0][0])
                return False
            docs = [(d, rev) for d, rev in docs if d not in gone]
    return True


async def collect(volume: Volume, policy: Policy, now_ns: int, busy: set[str] | frozenset = frozenset(),
                  dry_run: bool = False, rebuild_store: bool = False) -> Report:
    """Apply ``policy``; then give the store's freed pages back to the disk
    (``rebuild_store``: an old store may be rebuilt whole, which holds every
    commit meanwhile: only when nothing is mounted, see LocalStore.compact)."""
    report = Report()
    store, key = volume.store, volume.key
    # Only the user's own files: versions of files shared with them are their owner's to keep.
    mine = [n for n in volume.nodes() if n.is_reg and n.head and _owns(volume, n.owner)]
    # Documents not signed by whom may write them are neither counted nor removed (vault/tree/authorship.py).
    accept = volume.authorship.accepts(volume) if volume.authorship is not None else None
    for node in mine:
        # Off the loop (round 24c (1)): a file's versions are as many as its writers made, each judged.
        links = await volume.read_call(lineage, store, key, node.fid, node.dek, node.previous, node.epoch,
                                       accept)
        if not dry_run and _drops(links, _current(node.head, links), policy, now_ns):
            if not await _hashed_first(volume, node, report):
                continue
            # Under the file's lock, so no version is committed or restored
            # meanwhile; only files with something to drop take it.
            async with volume.content_lock(node):
                links = await volume.read_call(lineage, store, key, node.fid, node.dek, node.previous,
                                               node.epoch, accept)
                await _thin(volume, links, _current(node.head, links), policy, now_ns, busy, dry_run, report)
        else:
            await _thin(volume, links, _current(node.head, links), policy, now_ns, busy, dry_run, report)
        await _free_unnamed(volume, node, accept, dry_run, report)
        await trio.sleep(0)  # let file-system requests through between files
    # The time a deletion counts from is this device's first sight of it unless its owner signed it
    # (a writer chooses the sealed time: vault/model/trash_seen.py); real time, not ``now_ns`` (as_of).
    seen = await volume.in_thread(TrashSeen.open, key, volume.layout.root)
    first_sight = time.time_ns()
    # Off the loop: every node document of the store is parsed (round 24c (1)).
    deleted = await volume.read_call(deleted_nodes, store, key.user_id)
    for doc in deleted:
        await trio.sleep(0)  # one deleted file at a time: file-system requests go through between them
        if not _owns(volume, doc.get("owner")):
            continue
        if volume.holds(doc["_id"]):
            continue  # still open somewhere: not collected yet
        if (doc := signed_deletion(volume, doc)) is None:
            continue  # another's document its clear fields were made to name hers (round 41c (3))
        if accept is not None and not accept(doc):
            continue
        try:
            node = detached_node(doc, key)
        except VaultError as err:  # one that does not open is left, never the whole gc
            log.warning("the trash entry %s is left: %s", doc["_id"], err)
            continue
        if node.trashed is None:
            continue  # replaced by a rename: collected with the file that replaced it
        if _replayed(volume, doc, node):
            report.kept_replayed += 1
            continue
        links = await volume.read_call(lineage, store, key, node.fid, node.dek, node.previous, node.epoch,
                                       accept)
        links[0].doc = doc
        since = deleted_at(doc, node.trashed[1], key.user_id, seen.first_seen(doc, first_sight))
        if since > now_ns - policy.trash_days * DAY:
            # In the trash: thinned like any file, its last version kept.
            keep = {node.head} if node.head else set()
            await _thin(volume, links, keep, policy, now_ns, busy, dry_run, report)
        else:
            await _purge(volume, links, dry_run, report)
    await volume.in_thread(seen.save, [d["_id"] for d in deleted])  # a dry run sees them too
    await _remove_unnamed_files(volume, dry_run, report)
    if not dry_run:
        await volume.in_thread(store.sync)
        if report.versions_dropped:
            # Step by step on the store's own thread (a step is a short commit
            # like any other), letting file-system requests through between.
            while await volume.store_call(store.compact, rebuild_store):
                await trio.sleep(0)
    return report


async def _free_unnamed(volume: Volume, node: Node, accept: Callable[[dict], bool] | None, dry_run: bool,
                        report: Report) -> None:
    """Punch out of ``node``'s ``.vf`` the records a peer sent that no version document names, and
    what its kept versions do not use, though no version of it is dropped (attack round 80c (1): the
    server's records appended to her file stayed, as ``check`` counted them and pointed to gc).
    Only a file with such records, left unchanged for the grace while (``_quiet``), and under its
    content lock as ``_thin`` punches: no version is committed or restored meanwhile."""
    places = volume.layout.places
    if places is None or not await volume.read_call(unnamed_records, volume.store, places, node.fid,
                                                    node.head):
        return
    if not await volume.in_thread(_quiet, volume, node.owner, node.fid):
        return
    if dry_run:
        await _free_unnamed_now(volume, node, accept, True, report)
        return
    async with volume.content_lock(node):
        await _free_unnamed_now(volume, node, accept, False, report)


async def _free_unnamed_now(volume: Volume, node: Node, accept: Callable[[dict], bool] | None, dry_run: bool,
                            report: Report) -> None:
    links = await volume.read_call(lineage, volume.store, volume.key, node.fid, node.dek, node.previous,
                                   node.epoch, accept)
    if not links or not links[0].versions or links[0].fid != node.fid:
        return
    _own_lineage(volume, links)
    # Read again under the lock: a version whose documents came meanwhile names its records now.
    unnamed = await volume.read_call(unnamed_records, volume.store, volume.layout.places, node.fid, node.head)
    freed, punched = await volume.in_thread(_free_file, volume, links[0], links[0].versions, dry_run, unnamed)
    report.bytes_freed += freed
    if punched:  # after the punch, as ``_thin``: a crash between leaves rows pointing at holes
        await volume.store_call(volume.store.forget_places, node.fid, punched)


def _quiet(volume: Volume, owner: str, fid: str) -> bool:
    """Whether ``fid``'s ``.vf`` was left unchanged for the grace while (``unnamed_grace``), by this
    machine's clock, never gc's ``as_of``: a pull appends a version's records before the documents
    naming it come (attack round 80c (1)).  No such file (or no regular one): not quiet."""
    layout = volume.layout
    try:
        folder = inside.open_dir(layout.root, layout.own_names(owner))
    except (OSError, CorruptData):
        return False
    try:
        found = os.stat(layout.vf_path(owner, fid).name, dir_fd=folder, follow_symlinks=False)
    except OSError:
        return False
    finally:
        os.close(folder)
    return stat.S_ISREG(found.st_mode) and time.time() - found.st_mtime >= unnamed_grace()


async def _remove_unnamed_files(volume: Volume, dry_run: bool, report: Report) -> None:
    """Remove the ``.vf`` files (sidecars and place rows with them) in her own folder that nothing
    names: no node of her tree (a new file's document may not be committed yet), no open file, no
    document of the store (a node, live or in the trash or replaced by a rename, read or not, judged
    or not; a version), left unchanged for the grace while (attack round 80c (1): the server's Record
    documents at file ids of its own filled her disk for good).  Only her own folder: files shared
    with her lie in their owner's (``vf_path``), and are their owner's to collect."""
    if volume.layout.store.get("kind", "local") != "local":
        return  # a vault kept in CouchDB: other devices write this folder, their new files not yet named
    owner = volume.key.user_id
    fids = await volume.in_thread(_own_vf_fids, volume, owner)
    named = {node.fid for node in volume.nodes()}
    for fid in fids:
        await trio.sleep(0)  # one file at a time: file-system requests go through between them
        if fid in named or volume.holds(fid):
            continue
        if await volume.read_call(_named_in_store, volume.store, fid):
            continue
        if not await volume.in_thread(_quiet, volume, owner, fid):
            continue
        report.unnamed_removed += 1
        if dry_run:
            report.bytes_freed += await volume.in_thread(_remove_files, volume, owner, fid, True)
        else:
            log.warning("gc: removed %s.vf: no document names it (records a peer sent for no version)", fid)
            report.bytes_freed += await _remove(volume, owner, fid)


def _own_vf_fids(volume: Volume, owner: str) -> list[str]:
    """The file ids of the ``.vf`` files in ``owner``'s own folder, as fusevault names them."""
    layout = volume.layout
    try:
        folder = inside.open_dir(layout.root, layout.own_names(owner))
    except (OSError, CorruptData):
        return []
    try:
        names = os.listdir(folder)
    finally:
        os.close(folder)
    return sorted(name[:-3] for name in names if name.endswith(".vf") and is_id(name[:-3]))


def _named_in_store(store: Store, fid: str) -> bool:
    """Whether a document of the store names ``fid``: its node (whoever's, in the trash too) or a
    version of it.  One that does not read may: kept."""
    try:
        return store.get(fid) is not None or bool(store.by_file(VERSION, fid))
    except (VaultError, ValueError):
        return True


def _replayed(volume: Volume, doc: dict, node: Node) -> bool:
    """Is this deletion older than a state of the file this device saw (the
    ledger, vault/model/ledger.py)?  Then it is a rollback (her own older
    deletion served again after she restored the file, check_loaded says
    so): its date says nothing of the file she has now, so nothing of it is
    collected, neither purged nor thinned (tests/mount/test_trust_attack_round11.py).
    A device whose ledger never saw the file cannot tell: the deletion
    counts as trash_seen dates it (docs/SECURITY.md)."""
    ledger = volume.ledger
    if ledger is None:
        return False
    if ledger.older(node.fid, writer_seq(node.seq, doc, volume.key.user_id)):
        log.warning("gc: kept %s: its deletion is older than a state of it this device saw", node.fid)
        return True
    return False


async def _hashed_first(volume: Volume, node: Node, report: Report) -> bool:
    """Recommit ``node`` as a Merkle tree (vault format 5) if its current
    manifest is of an older shape, before any of its versions' documents go.

    An older manifest's inherited blocks are checked only against the signed
    documents of the versions that wrote them: once gc dropped those, nothing
    signed would name the blocks, and a key holder who can write the vault
    folder could reseal one and have the owner's next commit sign it in.
    Recommitted now, each block is checked while its document is here.  A
    file whose blocks fail that check keeps every version (readers get EIO
    and an alarm; `fusevault check` tells more).  A file being written is
    left to its own commit, which writes the new shape."""
    if node.content is not None and node.content.changed:
        return True
    try:
        await volume.files.recommit_newest_shape(node)
    except VaultError as err:
        report.kept_unverified += 1
        log.error("gc: kept every version of %s: %s", node.fid, err)
        return False
    return True


def _owns(volume: Volume, owner: str | None) -> bool:
    return owner is not None and owner == volume.key.user_id


def _own_lineage(volume: Volume, links: list[Link]) -> None:
    """Every file whose versions may go is the collecting user's (``lineage``
    stops at another's; this is the last word before anything is deleted)."""
    if any(link.doc is not None and not _owns(volume, link.doc.get("owner")) for link in links):
        raise PermissionDenied("garbage collection reached a file of another user: nothing removed")


def _current(head: str | None, links: list[Link]) -> set[str]:
    """What a live file keeps whatever the policy: the version its tree shows,
    and the newest of its own versions (another writer's commit not yet taken
    in may have made that the current one)."""
    own = links[0].versions if links else []
    return {v for v in (head, max(own, key=lambda v: (v.time, v.vid)).vid if own else None) if v}


def _drops(links: list[Link], keep: set[str], policy: Policy, now_ns: int) -> list[Version]:
    versions = sorted((v for link in links for v in link.versions), key=lambda v: (v.time, v.vid))
    return to_drop(versions, now_ns, policy, keep)


async def _thin(volume: Volume, links: list[Link], keep: set[str], policy: Policy, now_ns: int,
                busy: set[str] | frozenset, dry_run: bool, report: Report) -> None:
    drops = _drops(links, keep, policy, now_ns)
    report.kept_open += sum(1 for v in drops if v.vid in busy)
    drops = [v for v in drops if v.vid not in busy]
    while drops:  # a version kept for the check below may itself need older documents
        needed = await volume.in_thread(_checked_with, volume, links, {v.vid for v in drops})
        if needed is None:
            report.kept_unverified += 1
            log.error("gc: kept every version of %s: a kept version's manifest does not open", links[0].fid)
            return
        if not needed & {v.vid for v in drops}:
            break
        drops = [v for v in drops if v.vid not in needed]
    if not drops:
        return
    _own_lineage(volume, links)
    gone = {v.vid for v in drops}
    if dry_run:
        report.bytes_freed += await volume.in_thread(_would_free, volume, links, gone)
        _count_dropped(report, drops)
        return
    volume.retiring.update(gone)
    try:
        if not await _delete(volume, [(v.vid, v.rev) for v in drops]):
            report.kept_changed += 1
            return
        _count_dropped(report, drops)
        older_empty = True
        for link in reversed(links):  # oldest first
            kept = [v for v in link.versions if v.vid not in gone]
            if kept or link.doc is None:
                older_empty = older_empty and not kept
                freed, punched = await volume.in_thread(_free_file, volume, link, kept)
                report.bytes_freed += freed
                if punched:  # after the punch: a crash between leaves rows pointing at holes, as before
                    await volume.store_call(volume.store.forget_places, link.fid, punched)
            elif older_empty:  # nothing left here or before: the chain ends here now
                if await _delete(volume, [(link.doc["_id"], link.doc["_rev"])]):
                    report.bytes_freed += await _remove(volume, link.doc["owner"], link.fid)
                else:
                    report.kept_changed += 1
            else:  # kept as a link to older versions, without contents
                report.bytes_freed += await _remove(volume, link.doc["owner"], link.fid)
    finally:
        volume.retiring.difference_update(gone)


def _deleted_here(store: Store, ids: list[str]) -> set[str]:
    return {doc_id for doc_id in ids if store.deleted(doc_id)}


def _count_dropped(report: Report, drops: list[Version]) -> None:
    report.versions_dropped += len(drops)
    report.dropped += [{"version": v.vid, "path": v.path, "time": v.time} for v in drops]


def _checked_with(volume: Volume, links: list[Link], gone: set[str]) -> set[str] | None:
    """The versions whose signed documents a kept version still needs to check
    its blocks: a manifest of a shape from before vault format 5 (kinds 2 to
    4) names its blocks without hashes, so each inherited block is checked
    against the document of the version that wrote it (vault/files/placements.py).
    Dropping that document would leave the block checked by its AEAD only,
    which a key holder who can write the vault folder can forge, and the next
    commit would sign it in (tests/mount/test_trust_attack_round3.py).  None:
    a kept version's manifest does not open (damaged, or not what its document
    names): nothing of the file is dropped."""
    needed: set[str] = set()
    for link in links:
        kept = [v for v in link.versions if v.vid not in gone]
        if not kept:
            continue
        try:
            content = Content(volume.layout, volume.key.user_id, link.fid, link.dek, None, None)
        except CorruptData:
            continue  # no contents on disk: nothing to check
        try:
            for version in kept:
                manifest = content.load_manifest(version.manifest, version.vid, version.dek)
                if not manifest.hashed:
                    needed.update(manifest.vids)
        except CorruptData:
            return None
        finally:
            content.close()
    return needed


def _would_free(volume: Volume, links: list[Link], gone: set[str]) -> int:
    """What ``_thin`` would free, by the same steps, touching nothing."""
    total = 0
    for link in links:
        kept = [v for v in link.versions if v.vid not in gone]
        if kept or link.doc is None:
            total += _free_file(volume, link, kept, dry_run=True)[0]
        else:
            total += _remove_files(volume, link.doc["owner"], link.fid, dry_run=True)
    return total


def _free_file(volume: Volume, link: Link, kept: list[Version], dry_run: bool = False,
               unnamed: list[tuple[int, int]] | None = None) -> tuple[int, list[tuple[int, int]]]:
    try:
        content = Content(volume.layout, volume.key.user_id, link.fid, link.dek, None, None)
    except CorruptData:
        return 0, []  # no contents on disk (never written, or already removed)
    try:
        return free_unused(content, kept, dry_run, unnamed)
    except CorruptData as err:
        # A kept record's place here is damaged (a row fusevault never writes, attack round 78c (1)):
        # where it lies is not known, so nothing of the file is punched; the next files go on.
        log.warning("gc: the space of %s is left unfreed: %s", link.fid, err)
        return 0, []
    finally:
        content.close()


async def _purge(volume: Volume, links: list[Link], dry_run: bool, report: Report) -> None:
    """Remove a file from the trash for good, with every file it had replaced."""
    _own_lineage(volume, links)
    versions = [v for link in links for v in link.versions]
    if dry_run:
        report.bytes_freed += sum(_remove_files(volume, link.doc["owner"], link.fid, dry_run=True)
                                  for link in links)
    else:
        # Documents first: a crash after them leaves only files nothing points at.
        docs = [(v.vid, v.rev) for v in versions] + [(link.doc["_id"], link.doc["_rev"]) for link in links]
        if not await _delete(volume, docs):
            report.kept_changed += 1
            return
    report.files_purged += 1
    report.versions_dropped += len(versions)
    if dry_run:
        return
    for link in links:
        report.bytes_freed += await _remove(volume, link.doc["owner"], link.fid)


async def _remove(volume: Volume, owner: str, fid: str) -> int:
    """Remove a file's ``.vf`` and sidecar, then the place rows of its records."""
    freed = _remove_files(volume, owner, fid)
    await volume.store_call(volume.store.forget_places, fid, None)
    return freed


def _remove_files(volume: Volume, owner: str, fid: str, dry_run: bool = False) -> int:
    layout = volume.layout
    # Relative to its folder, reached with no link followed (vault/format/inside.py): a folder on the
    # way made a link by whoever may write the vault folder loses nothing where it points.
    try:
        folder = inside.open_dir(layout.root, layout.own_names(owner))
    except FileNotFoundError:
        return 0
    except CorruptData as err:
        log.warning("the files of %s are not removed: %s", fid, err)
        return 0
    freed = 0
    try:
        for name in (layout.vf_path(owner, fid).name, layout.vfmeta_path(owner, fid).name):
            try:
                freed += os.stat(name, dir_fd=folder, follow_symlinks=False).st_blocks * 512
                if not dry_run:
                    os.unlink(name, dir_fd=folder)
            except FileNotFoundError:
                pass
    finally:
        os.close(folder)
    return freed
