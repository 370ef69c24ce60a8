"""A vault user's own links: create, publish again, list, revoke, and collect drops.

Runs where the vault is loaded (the mount, or the CLI with --vault).  The
network and the crypto run in worker threads (the synchronous LinkClient);
they read vault files back through trio (``trio.from_thread``), so a link
publishes exactly what the vault holds, decrypted and verified.

Collecting a drop is crash-safe and at most once: a dropped version is
written under a hidden name, its final name is saved in the link's record,
the hidden name is renamed to it, and only then is the version deleted from
the server.  After a crash the record says how far it got.

A shared mount (``--allow-other``) runs as root for many users: a link
request there would make root reach whatever server a user names, so links
are refused there (``refused``), and made from the user's personal mount.
"""

from __future__ import annotations

import contextlib
import logging
import re
import stat
import time
from collections.abc import AsyncIterator, Callable, Container, Iterable, Iterator
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import trio

from fusevault.encoding import bytes_start, name_to_str, shown, str_to_name
from fusevault.errors import (
    CorruptData,
    DropsWaiting,
    FsError,
    InvalidInput,
    LinkGone,
    LinkRefused,
    NotFound,
    VaultError,
)
from fusevault.host_access import Direct, HostAccess
from fusevault.links import LONGEST_EXPIRY, capability, content, link_records
from fusevault.links.capability import READ
from fusevault.links.link_records import LinkRecord, load_records, record_doc
from fusevault.modes import given_mode
from fusevault.tasks import TaskState
from fusevault.transfer.offer import link_stays_inside
from fusevault.vault.model import names
from fusevault.vault.model.alarms import for_user
from fusevault.vault.model.nodes import ROOT_INODE, Node
from fusevault.vault.services.exporting import tree
from fusevault.vault.services.placing import KernelCache, make_dirs, make_durable, split, write_file
from fusevault.vault.volume import Caller, Volume

if TYPE_CHECKING:
    from fusevault.links.client import LinkClient

log = logging.getLogger(__name__)
_T = TypeVar("_T")

REFUSED = ("links are made from a personal mount: a shared mount (--allow-other) runs as root "
           "and reaches no link server for a user")


def _client(server: str) -> LinkClient:
    """A client of the link store at ``server``.  Its module (httpx with it) is loaded here, once a link
    is used, not with every mount: a fifth of a mount's start, for what most mounts never do."""
    from fusevault.links.client import LinkClient

    return LinkClient(server)


def _item_of(link_or_id: str) -> str:
    return capability.parse(link_or_id).item if "#" in link_or_id else link_or_id.strip()


NAME_MAX = 255  # bytes in one name, on every Linux file system and in the vault


def unique_name(taken: Container[bytes], name: bytes) -> bytes:
    """``name``, or ``name (2).ext``, ``name (3).ext`` ... whichever is free, each at most NAME_MAX
    bytes: the stem is shortened to make room (a second drop of a 255-byte name was refused by
    the vault and discarded: attack round 26b2 (4))."""
    if name not in taken:
        return name
    stem, dot, ext = name.rpartition(b".")
    if not stem or not dot:
        stem, ext = name, b""
    tail = b"." + ext if ext else b""
    if len(tail) > NAME_MAX // 2:  # an "extension" that is most of the name: numbered as a whole
        stem, tail = name, b""
    n = 2
    while True:
        mark = f" ({n})".encode()
        candidate = bytes_start(stem, NAME_MAX - len(mark) - len(tail)) + mark + tail
        if candidate not in taken:
            return candidate
        n += 1


class Links:
    def __init__(self, volume: Volume, kernel: KernelCache, host: HostAccess | None = None) -> None:
        self.vol = volume
        self.kernel = kernel
        host = host or Direct()
        self.caller = Caller(host.uid, host.gid)
        # Acting for another user (a shared mount): no network request at all.
        self.refused = REFUSED if host.on_behalf else None
        self.lock = trio.Lock()  # one change of the records at a time (``_changing``)
        self._changes = 0  # changes of the records begun or ended (``_changing``, ``_records``)
        self.has_drops: bool | None = None  # unknown until the records are first read
        self.marked: set[str] = set()  # drop boxes told to keep their drops past expiry (this run)

    def _allowed(self) -> None:
        if self.refused:
            raise InvalidInput(self.refused)

    @contextlib.asynccontextmanager
    async def _changing(self) -> AsyncIterator[None]:
        """The links' lock, held for a change of the records (saved, revoked, collected), counted as it
        begins and ends: a read of them outside the lock tells whether one ran meanwhile (``_records``)."""
        async with self.lock:
            self._changes += 1
            try:
                yield
            finally:
                self._changes += 1

    async def _records(self) -> dict[str, tuple[LinkRecord, str]]:
        """Every link record of the store (every user's), read on a worker thread from a snapshot, never
        on the loop that serves every user's files (store/short_calls.py, attack round 73b (1)).

        What the read says of this device's records (no drop box left: ``has_drops`` lowered; a record
        it kept missing from the store: said) counts only if no change of them ran while it read: made
        under the links' lock, or the lock free from its start and no change begun or ended by its end.
        A read outside the lock (the collector's first look, ``link list``) crossed by her ``link create
        --drop`` landed the snapshot from before her record: ``has_drops`` set False, every collect of the
        session returned at once with her box's drops waiting unsaid, and her new record said missing,
        a false tamper alarm (attack round 74c (1)).  Crossed, a read only ever raises ``has_drops``."""
        held = self.lock.statistics().owner is trio.lowlevel.current_task()
        changes, busy = self._changes, self.lock.locked()
        found = await self.vol.read_call(load_records, self.vol.store, self.vol.key)
        kept = await self._kept()
        drops = any(record.kind == "drop" for record, _ in found.values())
        if not (held or (not busy and self._changes == changes)):
            if drops:
                self.has_drops = True
            return found
        self.has_drops = drops
        for item in kept.keys() - found.keys():
            self._say_missing(item)
        return found

    async def _kept(self) -> dict[str, LinkRecord]:
        return await self.vol.in_thread(link_records.kept_records, self.vol.layout.root, self.vol.key)

    def _say_missing(self, item: str) -> None:
        for_user(self.vol.key.user_id).warn(
            "link-record", item, f"the record of link {item} this device made is missing from the store "
            "(removed by whoever writes it?): `fusevault link revoke` still revokes it with this "
            "device's copy")

    async def _save(self, record: LinkRecord, rev: str | None) -> str:
        """Save ``record`` at ``rev``; with none (this device's copy, the store's record missing or
        refused), over whatever the store holds at its id, which this device's copy replaces."""
        if rev is None:
            rev = await self.vol.store_call(link_records.stored_rev, self.vol.store, self.vol.key,
                                            record.item)
        [new_rev] = await self.vol.store_call(self.vol.store.put_many,
                                              [record_doc(self.vol.key, record, rev)])
        await self.vol.in_thread(link_records.keep, self.vol.layout.root, self.vol.key, record)
        return new_rev

    async def _record(self, link_or_id: str) -> tuple[LinkRecord, str | None]:
        """The record of a link, from the store, else (said) this device's copy of it (no revision)."""
        item = _item_of(link_or_id)
        found = (await self._records()).get(item)
        if found is not None:
            return found
        if (kept := (await self._kept()).get(item)) is not None:
            return kept, None
        raise NotFound("you made no such link (see `fusevault link list`)")

    # --- create and publish

    async def create(self, path: bytes, server: str, drop: bool, expires_in: float | None) -> dict:
        self._allowed()
        if expires_in is not None and not 0 < expires_in <= LONGEST_EXPIRY:  # the command bounds it too
            raise InvalidInput(f"a link lives {LONGEST_EXPIRY // 86400} days at most (about ten years)")
        async with self._changing():
            if drop:
                node = await make_dirs(self.vol, path, self.caller)
            else:
                node = self.vol.resolve(path)
                if not (node.is_dir or node.is_reg):
                    raise InvalidInput("only files and folders can be shared by link")
            keys = capability.OwnerKeys.new()
            with _client(server) as client:
                item = await _network(partial(client.create, drop_box=drop), keys.hashes(),
                                      capability.HASHINFO, expires_in)
            record = LinkRecord(item, server.rstrip("/"), "drop" if drop else "share", name_to_str(path),
                                keys, time.time_ns(), time.time() + expires_in if expires_in else None)
            # Saved before anything is published: whatever happens next, it can be revoked.
            rev = await self._save(record, None)
            self.has_drops = self.has_drops or drop
            if not drop:
                await self._publish(record, rev, node)
        return self._describe(record)

    async def push(self, link_or_id: str, path: bytes | None) -> dict:
        self._allowed()
        async with self._changing():
            record, rev = await self._record(link_or_id)
            if record.kind != "share":
                raise InvalidInput("that is a drop box: others push into it, with its link")
            node = self.vol.resolve(path if path is not None else str_to_name(record.path))
            await self._publish(record, rev, node)
        return self._describe(record)

    async def _publish(self, record: LinkRecord, rev: str | None, node: Node) -> None:
        base = name_to_str(self.vol.path_of(node).rpartition(b"/")[2]) or "vault"
        sources = [self._source(rel, n) for rel, n in _not_held_back(self.vol, tree(self.vol, node, base))
                   if n.is_dir or n.is_reg or stat.S_ISLNK(n.mode)]  # not fifos, devices
        keys, seq = record.keys, record.seq + 1

        def publish(client: LinkClient) -> None:
            manifest, blocks = content.upload(client, record.item, keys.append, sources)
            trio.from_thread.check_cancelled()  # abandoned: no version made of what was sent
            body = capability.seal_share(keys, record.item, seq, manifest)
            client.add_version(record.item, keys.append, {**body, "blocks": blocks})

        # Abandoned on a cancel as every link store call (``_network``): a store holding its answers
        # held this thread, and the links' lock behind it, as long as it liked (attack round 54b (1)).
        with _client(record.server) as client:
            await _network(publish, client)
        record.seq = seq
        await self._save(record, rev)

    def _source(self, rel: str, node: Node) -> content.Source:
        if stat.S_ISLNK(node.mode):
            return content.Source(rel, "symlink", 0o777, node.mtime, name_to_str(self.vol.readlink(node.ino)))
        kind = "dir" if node.is_dir else "file"
        read = (lambda: _vault_blocks(self.vol, node)) if node.is_reg else None
        return content.Source(rel, kind, stat.S_IMODE(node.mode), node.mtime, read=read)

    @staticmethod
    def _describe(record: LinkRecord) -> dict:
        return {"item": record.item, "link": record.link, "kind": record.kind, "path": record.path,
                "created_at": record.created_at, "expires_at": record.expires_at, "seq": record.seq,
                "collected": record.collected, "server": record.server}

    # --- list and revoke

    async def listing(self) -> list[dict]:
        self._allowed()
        found = []
        for record, _ in sorted((await self._records()).values(), key=lambda r: r[0].created_at):
            found.append({**self._describe(record), **await _network(_server_view, record)})
        return found

    async def revoke(self, link_or_id: str) -> dict:
        self._allowed()
        async with self._changing():
            record, rev = await self._record(link_or_id)
            notes: list[str] = []
            files = 0
            if record.kind == "drop":
                files, rev = await self._close_box(record, rev, notes)

            def revoke() -> None:
                client = _client(record.server)
                try:
                    # First make every key that was handed out useless (one request),
                    # then delete the item with all its versions and blocks.
                    fresh = capability.OwnerKeys.new().hashes()
                    del fresh["delete_key_hash"]
                    client.change(record.item, record.keys.delete, fresh)
                    client.delete(record.item, record.keys.delete)
                except LinkGone:
                    pass  # expired or deleted on the server already
                finally:
                    client.close()

            await _network(revoke)  # abandoned (an unmount), the revoke still ends in its thread
            if rev is None:  # this device's copy: the store's refused record (if any) goes too
                rev = await self.vol.store_call(link_records.stored_rev, self.vol.store, self.vol.key,
                                                record.item)
            if rev is not None:
                await self.vol.store_call(self.vol.store.put_many,
                                          [{**record_doc(self.vol.key, record, rev), "_deleted": True}])
            await self.vol.in_thread(link_records.forget, self.vol.layout.root, self.vol.key, record.item)
        return {**self._describe(record), "files": files, "notes": notes}

    async def _close_box(self, record: LinkRecord, rev: str | None, notes: list[str]) -> tuple[int, str]:
        """A drop box about to be revoked: closed to new drops (its append key made useless, on any
        link store), then every drop made before taken in.  Deleted with the item, they were lost
        to the vault after their droppers were told "dropped" (attack round 53t (2)).  Raises
        DropsWaiting, the box kept, when some are still on the server: the revoke is done again
        once a collect took them.  The files taken in, and the record's revision then."""
        keys = record.keys
        useless = {"append_key_hash": capability.OwnerKeys.new().hashes()["append_key_hash"]}

        def close() -> None:
            with _client(record.server) as client, contextlib.suppress(LinkGone):
                # Expired (a store of round 53 keeps an expired box's drops, for the delete key only)
                # or gone: nobody appends any more either way.
                client.change(record.item, keys.delete, useless)

        await _network(close)
        if rev is None:  # this device's copy only: saved again, so the collection can note its progress
            rev = await self._save(record, None)
        files = 0
        try:
            files, rev = await self._collect_one(record, rev, notes)
        except VaultError as err:
            notes.append(f"{shown(record.path)}: {shown(str(err))}")

        def waiting() -> int:
            with _client(record.server) as client:
                try:
                    return sum(1 for v in client.versions(record.item, keys.delete) if not v["deleted"])
                except LinkGone:
                    return 0

        if left := await _network(waiting):
            why = "; ".join(notes) or "its folder is not there now"
            raise DropsWaiting(f"the drop box /{shown(record.path)} is closed to new drops, but {left} "
                               f"drop(s) made before could not be taken in now ({why}): they stay on the "
                               f"server; `fusevault link revoke {record.item}` again once `fusevault link "
                               "collect` took them")
        return files, rev

    # --- drop boxes

    async def drop_boxes(self) -> set[str]:
        """The items of the drop boxes there are now."""
        return {item for item, (record, _) in (await self._records()).items() if record.kind == "drop"}

    async def collect(self, only: set[str] | None = None) -> dict:
        """Take everything dropped into every drop box (of ``only``, if given) into its vault folder."""
        self._allowed()
        files = 0
        errors: list[str] = []
        if self.has_drops is False:
            return {"files": files, "errors": errors}
        async with self._changing():
            for item, (record, rev) in list((await self._records()).items()):
                if record.kind != "drop" or (only is not None and item not in only):
                    continue
                try:
                    files += (await self._collect_one(record, rev, errors))[0]
                except VaultError as err:  # one box's server away, or garbage: the others still arrive
                    errors.append(f"{shown(record.path)}: {shown(str(err))}")
                except Exception:  # a defect met in what a stranger or the link store sent
                    log.exception("drop box %s", shown(record.path))
                    errors.append(f"{shown(record.path)}: internal error (see the log); the others go on")
        return {"files": files, "errors": errors}

    async def _collect_one(self, record: LinkRecord, rev: str, errors: list[str]) -> tuple[int, str]:
        """The files taken in from one box, and its record's revision then."""
        keys, taken = record.keys, 0
        if self._share_gone(record):
            return 0, rev
        with _client(record.server) as client:
            if record.item not in self.marked and await _network(_keep_drops, client, record):
                self.marked.add(record.item)
            versions = await _network(client.versions, record.item, keys.delete)
            for version in [v for v in versions if not v["deleted"]]:
                vid = version["id"]
                # Outside the item's ``try``: a box folder that cannot take drops now is no
                # defect of the item; it postpones the whole box (attack round 25b (4)).
                folder = await self._box_folder(record)
                try:
                    try:  # read alone (73c (2)): one drop too long for this client is one discarded
                        whole = await _network(client.whole, record.item, keys.delete, version)
                    except LinkGone:
                        continue  # collected meanwhile (another device of hers): nothing to take
                    files, rev = await self._take(client, record, rev, whole, folder, errors)
                except (CorruptData, FsError) as err:
                    # Anyone with the drop link can post garbage (or a name the vault refuses): it
                    # must not block what comes after it.  Nobody can read it, so it goes.
                    # Its text may hold the dropper's names: shown, never raw (`link collect`, status).
                    errors.append(f"{shown(record.path)}: a dropped item could not be opened "
                                  f"and was discarded ({shown(str(err))})")
                    files = 0
                except VaultError:
                    raise  # the link store or the vault away: this box waits for the next run
                except Exception:
                    # A defect met in one item: it stays on the server (nothing of hers is lost)
                    # and the items after it still arrive.
                    log.exception("drop box %s: dropped version %s", shown(record.path), shown(vid))
                    errors.append(f"{shown(record.path)}: internal error on a dropped item (see the log); "
                                  "it stays on the server")
                    continue
                # The server forgets it only once the vault holds it for good.
                with contextlib.suppress(LinkGone):
                    await _network(client.delete_version, record.item, keys.delete, vid)
                record.pending.pop(vid, None)
                record.collected += files
                taken += files
                rev = await self._save(record, rev)
        return taken, rev

    def _share_gone(self, record: LinkRecord) -> bool:
        """Whether the box lies under a view of the root (``shared/``, ``groups/``) that is not there
        now (the share taken from her, or she left the group): its drops wait on the server, said in
        the log.  Made anew, the box's folder would be a private folder of hers that hides the
        share's view when it comes back (attack round 52t (4))."""
        top = names.reserved_at_root(str_to_name(record.path))
        if top is None or top in (self.vol.resolve(b"").children or {}):
            return False
        log.warning("drop box %s: %s is not in this drive now (no share there): what is dropped into "
                    "it waits on the link server", shown(record.path), shown(name_to_str(top)))
        return True

    async def _box_folder(self, record: LinkRecord) -> Node:
        """The box's own folder, made where missing, writable for her.  When it cannot be had (moved
        away with a file in its place, not writable, a folder document the vault refuses), every
        item waits on the server for the next run: raised as BoxWaits, which is neither FsError nor
        CorruptData, so no item is discarded for it (attack round 25b (4))."""
        try:
            return await make_dirs(self.vol, str_to_name(record.path), self.caller)
        except (FsError, CorruptData) as err:
            raise BoxWaits(f"its folder cannot take drops now ({err}); every dropped item stays "
                           "on the server for the next run") from None

    async def _take(self, client: LinkClient, record: LinkRecord, rev: str, version: dict, folder: Node,
                    notes: list[str]) -> tuple[int, str]:
        """One dropped version into the box's ``folder``, unless a crash left it there already:
        (files, rev).  What of it was not kept (a symlink leading out) is said in ``notes``."""
        vid, keys = version["id"], record.keys
        assert folder.children is not None  # a folder
        temp = f".fvdrop-{vid}".encode()
        final = record.pending.get(vid)
        if final is not None and temp not in folder.children and str_to_name(final) in folder.children:
            return 0, rev  # renamed into place just before a crash
        if temp in folder.children:
            await self._remove(folder, temp)
        try:
            manifest = capability.open_drop(keys, record.item, version)
            found = content.entries(manifest)
            await self._write_drop(client, keys.read_key, record.item, manifest, found, folder, temp)
            dropped_links = await self._drop_links_leading_out(folder, temp, found)
        except Exception:  # nothing of an item that does not arrive stays behind, hidden
            if temp in folder.children:
                await self._remove(folder, temp)
            raise
        final = name_to_str(unique_name(_taken_in(folder), str_to_name(found[0]["path"])))
        record.pending[vid] = final
        rev = await self._save(record, rev)
        try:
            await self.vol.rename(folder.ino, temp, folder.ino, str_to_name(final),
                                  noreplace=True, exchange=False)
        except FsError as err:
            # The name is the collector's choice, not the dropper's: no defect of the item, which
            # stays on the server and is taken at the next run under a name free then.
            await self._remove(folder, temp)
            record.pending.pop(vid, None)
            await self._save(record, rev)
            raise BoxWaits(f"a dropped item could not be put in place as {shown(final)} ({err}); it "
                           "stays on the server for the next run") from None
        await self.kernel.entry(folder.ino, temp)
        await self.kernel.inode(folder.ino)
        await self.vol.fsyncdir()
        notes.extend(f"{shown(record.path)}: did not keep the dropped symlink {shown(e['path'])} -> "
                     f"{shown(e['target'])}: it leads outside the dropped folder" for e in dropped_links)
        return sum(1 for e in found if e["type"] == "file"), rev

    async def _write_drop(self, client: LinkClient, read_key: bytes, item: str, manifest: dict,
                          found: list[dict], folder: Node, temp: bytes) -> None:
        """A dropped file or folder, whole and durable, under the hidden name ``temp``."""
        top = found[0]["path"]
        if found[0]["type"] == "symlink":
            # A drop of one link has no folder to stay in: whatever it names is outside the drop
            # (her ~/.ssh/id_ed25519 as "invoice.pdf", attack round 25b (7)).
            raise CorruptData("it is a symlink, and a dropped symlink must stay inside a dropped folder")
        for index, entry in enumerate(found):
            rel = temp + str_to_name(entry["path"][len(top):])
            where, name = split(self.vol.path_of(folder) + b"/" + rel)
            if entry["type"] == "dir":
                await make_dirs(self.vol, where + b"/" + name, self.caller)
                continue
            parent = await make_dirs(self.vol, where, self.caller)
            if entry["type"] == "symlink":
                if not link_stays_inside(entry["path"], entry["target"]):
                    continue  # by its text it leads out: never made (said by _drop_links_leading_out)
                made = await self.vol.symlink(parent.ino, name, str_to_name(entry["target"]), self.caller)
                self.vol.forget(made.ino, 1)
                continue
            blocks = content.verified(_held(content.contents(client, read_key, item, manifest, index)), entry)
            node, _ = await write_file(self.vol, parent, name, _pull(blocks),
                                       mode=given_mode(entry["mode"]), caller=self.caller,
                                       kernel=self.kernel, mtime_ns=entry["mtime_ns"])  # entries(): ints
            await make_durable(self.vol, node)

    async def _drop_links_leading_out(self, folder: Node, temp: bytes, found: list[dict]) -> list[dict]:
        """The dropped symlinks that lead out of the dropped folder, by their text or resolved in
        the vault with every link in place (a chain of them, ``d -> .`` and ``l -> d/..``, or a
        dangling one a later drop could give a meaning), removed: as ``link get`` and ``receive``
        keep only the links that stay inside (content.py ``_drop_links_leading_out``, output.py
        ``make_links``).  Checked again until none is removed: removing one may change another."""
        assert folder.children is not None  # a folder
        top = found[0]["path"]
        links = [e for e in found if e["type"] == "symlink"]
        dropped = [e for e in links if not link_stays_inside(e["path"], e["target"])]  # never made
        kept = [e for e in links if e not in dropped]
        while out := [e for e in kept
                      if not self._resolves_inside(folder, [temp, *_parts(e["path"][len(top):])])]:
            for entry in out:
                parts = _parts(entry["path"][len(top):])
                parent = self._walk(self.vol.node(folder.children[temp]), parts[:-1])
                await self.vol.unlink(parent.ino, parts[-1])
                kept.remove(entry)
            dropped += out
        return dropped

    def _walk(self, node: Node, parts: list[bytes]) -> Node:
        """The node at ``parts`` under ``node`` (folders this drop made: no link on the way)."""
        for part in parts:
            assert node.children is not None  # _write_drop made these folders
            node = self.vol.node(node.children[part])
        return node

    def _resolves_inside(self, folder: Node, parts: list[bytes]) -> bool:
        """Whether ``parts`` (``temp`` first) under the box's ``folder`` resolves, following every
        symlink in the vault, to an existing node inside ``temp``.  Dangling, a loop or an absolute
        target count as leading out."""
        stack, todo, hops = [folder], list(parts), 0
        while todo:
            part = todo.pop(0)
            if part in (b"", b"."):
                continue
            if part == b"..":
                if len(stack) <= 2:  # above the dropped folder: the box's own folder, or beyond
                    return False
                stack.pop()
                continue
            here = stack[-1]
            if here.children is None or part not in here.children:
                return False  # dangling, or a name under a file
            node = self.vol.node(here.children[part])
            if stat.S_ISLNK(node.mode):
                hops += 1
                target = self.vol.readlink(node.ino)
                if hops > _MAX_HOPS or target.startswith(b"/"):
                    return False
                todo[:0] = target.split(b"/")  # relative to the folder the link is in
                continue
            stack.append(node)
        return len(stack) >= 2

    async def _remove(self, folder: Node, name: bytes) -> None:
        """A hidden folder a crash left half-written (its version is still on the server)."""
        assert folder.children is not None  # a folder
        node = self.vol.node(folder.children[name])
        if node.is_dir:
            assert node.children is not None
            for child in list(node.children):
                await self._remove(node, child)
            await self.vol.rmdir(folder.ino, name)
        else:
            await self.vol.unlink(folder.ino, name)


def _taken_in(folder: Node) -> Container[bytes]:
    """The names a drop into ``folder`` may not take: its children's, and at the root the names
    kept for the mount's views (``.versions``, ``shared``, ``groups``) and their look-alikes: a dropped
    ``.versions`` would replace her history, a dropped ``shared/bob`` pass for bob's share (attack
    round 52t)."""
    assert folder.children is not None
    if folder.ino != ROOT_INODE:
        return folder.children
    return _TakenAtRoot(folder.children)


class _TakenAtRoot:
    """The root's children, and every name that is or looks like a kept one (``names.looks_reserved``:
    ``\u0455hared``, ``shared\u200b``, ``shared `` read as ``shared``, attack round 53d (4))."""

    def __init__(self, children: Container[bytes]) -> None:
        self.children = children

    def __contains__(self, name: object) -> bool:
        return name in self.children or (isinstance(name, bytes) and names.looks_reserved(name))


class BoxWaits(VaultError):
    """A drop box whose own folder cannot take drops now: the whole box waits for the next run,
    every item kept on the server (never an item's defect, so never a discard)."""


_MAX_HOPS = 40  # symlinks followed in one resolution, as the kernel's ELOOP limit


def _parts(rel: str) -> list[bytes]:
    """A dropped path below its top (``/a/b`` or ``""``) as vault names."""
    return [str_to_name(p) for p in rel.split("/") if p]


def _keep_drops(client: LinkClient, record: LinkRecord) -> bool:
    """Tell the link store that a box made before round 53 (created without ``keeps_drops``) keeps,
    past its expiry, the drops made before it: else they went at the expiry, however recent (53t (2)).
    Whether the store answered for good: a store before round 53 refuses the field (nothing to
    change, 400), an expired box answers its collection only.  Best effort: a store away or refusing
    is asked again at the next pass, and never keeps the drops from being taken in now."""
    try:
        client.change(record.item, record.keys.delete, {"keeps_drops": True})
    except (InvalidInput, LinkGone):
        return True
    except VaultError:
        return False
    return True


def _server_view(record: LinkRecord) -> dict:
    """What the server says about a link (for `link list`); never raises."""
    with _client(record.server) as client:
        try:
            info = client.describe(record.item, (READ, record.keys.read_key))
            versions = [v for v in client.versions(record.item, record.keys.delete) if not v["deleted"]]
        except LinkGone as err:
            return {"state": "gone", "detail": str(err)}
        except VaultError as err:
            return {"state": "unreachable", "detail": str(err)}
    return {"state": "live", "versions": len(versions), "accessed_at": _stamp(info.get("accessed_at")),
            "updated_at": _stamp(info.get("updated_at"))}


# The link store's timestamps (relay/items.py ``now``).  Anything else is its operator's text, which
# wrote a line of its own in `link list` (attack round 26c (6)): not shown, as if never opened.
_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")


def _stamp(value: object) -> str | None:
    return value if isinstance(value, str) and _STAMP.fullmatch(value) else None


def _vault_blocks(volume: Volume, node: Node) -> Iterator[bytes]:
    """A vault file's plaintext from a worker thread, read through the trio loop; the thread abandoned
    (``_network``), nothing more is read (trio.Cancelled)."""
    trio.from_thread.check_cancelled()
    fh = trio.from_thread.run(volume.open, node.ino)
    try:
        for offset in range(0, node.size, content.BLOCK):
            trio.from_thread.check_cancelled()
            yield trio.from_thread.run(volume.read, fh, offset, content.BLOCK)
    finally:
        trio.from_thread.run(volume.release, fh)


def _held(blocks: Iterator[bytes]) -> Iterator[bytes]:
    """A dropped file's blocks; one the link store does not serve to this box makes the item
    CorruptData, discarded, instead of an error that stopped the whole box at every run: 404 "no
    such block" (LinkGone: the dropper named blocks he never stored), 403 "this read key does not
    open this block" (LinkRefused: he named a block of another link's item, which the store cannot
    see in a sealed manifest, attack round 24b (4)), or another 4xx (InvalidInput).  Every such
    answer is about the one block the dropper named.  A store that is away or busy
    (RelayUnavailable, RateLimited) still only postpones the box."""
    try:
        yield from blocks
    except (LinkGone, LinkRefused, InvalidInput) as err:
        raise CorruptData(f"the link store does not serve a block of it to this box ({err})") from None


async def _pull(blocks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """A blocking iterator (network, decryption) drained from worker threads (abandoned on cancel)."""
    while (data := await _network(next, blocks, None)) is not None:
        yield data


async def _network(fn: Callable[..., _T], *args: object) -> _T:
    """``fn(*args)``, a call of the link store, in a worker thread that a cancel abandons.

    The drop boxes are collected in her session's scope, and her lock (``fusevault lock``, the TTL,
    the unmount) cancels it and waits for it to end: a link store answering a byte every few seconds
    held the thread, and her keys in memory, as long as it liked (attack round 53d (2)).  Abandoned,
    the thread ends on its own, at the latest when its answer's deadline (http_answers.py: every
    read and write of the exchange, the head's too, bounded by it) has passed; what it returns is
    dropped.  (Closing its client as the cancel leaves the ``with`` does not wake a read already
    blocked on the socket: the deadline is what ends it.)
    Nothing of the vault is touched from it but by ``_publish``'s reads (``_vault_blocks``), which
    stop once it is abandoned (a link store holding ``link push`` held the links' lock without end:
    attack round 54b (1))."""
    return await trio.to_thread.run_sync(fn, *args, abandon_on_cancel=True)


async def collect_periodically(links: Links, first: float, every: float, task: TaskState, *,
                               task_status=trio.TASK_STATUS_IGNORED) -> None:
    """The mount's drop-box collector (started with nursery.start, stopped by cancellation): ``first``
    seconds after the mount, the boxes there were then (what was dropped while it was away arrives at
    once; a box made since, its owner is at hand to collect), then every box every ``every``."""
    if links.refused:  # a shared mount: drop boxes are collected by the user's personal mount
        task.set("off (shared mount)")
        task_status.started()
        await trio.sleep_forever()
    task.set("idle")
    task_status.started()
    try:
        boxes: set[str] | None = await links.drop_boxes()
    except VaultError:
        boxes = None  # read at the pass, and said there
    wait = first
    while True:
        await trio.sleep(wait)
        wait = every
        task.set("working")
        only, boxes = boxes, None  # the first pass only, whether or not it went through
        try:
            answer = await links.collect(only)
        except VaultError as err:
            answer = {"files": 0, "errors": [shown(str(err))]}
        except Exception:  # never the mount's end: what a stranger drops is all this reads
            log.exception("drop boxes")
            answer = {"files": 0, "errors": ["internal error (see the log)"]}
        for error in answer["errors"]:
            log.error("drop boxes: %s", error)
            task.failed(error)
        if answer["files"]:
            task.summary = f"{answer['files']} dropped file(s) taken in"
            task.add({"files": answer["files"]})
            log.info("drop boxes: %s", task.summary)
        task.set("idle")


def _not_held_back(volume: Volume, found: Iterable[tuple[str, Node]]) -> list[tuple[str, Node]]:
    """What a link publishes of ``found`` (vault/services/exporting.py ``tree``): not a file an older
    state put there, held back (the ledger's ``behind``: no share seals its key), nor what is under
    it; said in the log.  Published, a draft she had moved out went to everyone with the link (attack
    round 41c (4))."""
    ledger = volume.ledger
    behind = ledger.behind if ledger is not None else {}
    kept: list[tuple[str, Node]] = []
    left: list[str] = []
    for rel, node in found:
        if node.fid in behind or any(rel.startswith(out + "/") for out in left):
            left.append(rel)
            continue
        kept.append((rel, node))
    if left:
        log.warning("a link leaves out %d path(s) an older state put in its folder: %s", len(left),
                    ", ".join(left[:5]))
    return kept
