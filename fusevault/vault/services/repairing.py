"""``fusevault check --repair``: the tree loaded as a mount loads it, and damaged files mended.

``repair`` works through a loaded Volume, as ``restore`` does: a file whose
newest version is damaged gets a new version whose manifest is that of its
newest intact one (no block copied, nothing destroyed); a file with no
intact version goes to the trash.  Contents whose version document is
missing or does not open are never signed again (nothing vouches for them):
the newest version that verifies is restored, else the file is left as it
is and the line says why.  A folder or file whose node document
does not open gets a new revision of it, made from what its children or
its versions say.  Damaged records and documents stay where they are: the
history keeps them until the retention policy lets them go.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator

from fusevault.crypto import aead
from fusevault.crypto.keys import MasterKey
from fusevault.encoding import name_to_str, str_to_name
from fusevault.errors import VaultError
from fusevault.store import Store
from fusevault.vault.files.content import Content
from fusevault.vault.format.layout import Layout
from fusevault.vault.model import names
from fusevault.vault.model.history import iso_time
from fusevault.vault.model.nodes import NODE, Node
from fusevault.vault.services.check_report import FileState, Report
from fusevault.vault.services.placing import make_dirs
from fusevault.vault.volume import Caller, Volume


class _Without:
    """The store, less the node documents that do not open: ``Volume.load`` stops
    at the first such document, and the rest of the tree is still worth loading
    (for its paths, and to repair it).  Everything else goes to the store."""

    def __init__(self, store: Store, hidden: set[str]) -> None:
        self._store = store
        self._hidden = hidden

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    def iter_type(self, doc_type: str) -> Iterator[dict]:
        for doc in self._store.iter_type(doc_type):
            if doc_type != NODE or doc.get("_id") not in self._hidden:
                yield doc


def load_tree(layout: Layout, store: Store, key: MasterKey, root_fid: str, broken: set[str],
              report: Report) -> Volume | None:
    """The user's tree as a mount loads it (its checks apply), without the documents that
    do not open; None (and said) when even that does not load."""
    # Entries of a folder whose document did not open dangle: the report says so, by path.
    quiet = [logging.getLogger(f"fusevault.vault.tree.{step}")
             for step in ("loading", "linking", "rebuilding", "her_leaves")]  # the load's steps
    levels = [each.level for each in quiet]
    for each in quiet:
        each.setLevel(logging.ERROR)
    try:
        volume = Volume.load(layout, _Without(store, broken) if broken else store, key, root_fid)
    except VaultError as err:
        report.notes.append(f"the tree does not load ({err}): paths come from the version documents, "
                            "and nothing can be repaired")
        return None
    finally:
        for each, level in zip(quiet, levels, strict=True):
            each.setLevel(level)
    if volume.trust is not None:
        report.alarms = volume.trust.alarms.as_list()
    return volume


def tree_paths(volume: Volume | None) -> tuple[Callable[[str], str | None], list]:
    """A node's path in the tree, and the others' nodes shared with the user (with their paths)."""
    if volume is None:
        return (lambda fid: None), []

    def path(fid: str) -> str | None:
        node = volume.find(fid)
        if node is None or (not node.links and node.ino != 1):
            return None
        return name_to_str(volume.path_of(node)) or "/"

    guests = [(node, path(node.fid) or node.fid) for node in volume.nodes()
              if node.owner != volume.key.user_id and node.dek and not node.fid.startswith("virtual:")]
    return path, guests


async def rebuild_folders(volume: Volume, report: Report) -> set[str]:
    """Folders whose node document does not open, made again where their children say
    they were (shallowest first); return the ids of those made again (the tree is to be
    loaded again, so that their entries hang in them)."""
    lost = [s for s in report.files if s.where == "lost" and s.kind == "dir"]
    done = set()
    for state in sorted(lost, key=lambda s: s.path.count("/")):
        try:
            state.repair = await _rebuild_folder(volume, state)
            done.add(state.fid)
        except VaultError as err:
            state.repair = f"failed: {err}"
    return done


async def _place_of(volume: Volume, fid: str, location: str, caller: Caller) -> Node:
    """Where a file or folder made again goes: the folder this device last saw it
    in (the rollback ledger's ``where``), else ``location`` (where its newest
    version or its children say it was).  Either way it is kept ``behind``
    there: nothing says the owner keeps it there now (another device of hers
    may have moved it out of a folder shared since), so no share there seals
    its key (the repair gives it a new one), nor those of what is under it,
    until she moves it herself."""
    ledger = volume.ledger
    parent = None
    for parent_fid in (ledger.was_at(fid) if ledger is not None else None) or ():
        found = volume.find(parent_fid)
        if found is not None and found.is_dir and found.owner == volume.key.user_id:
            parent = volume.check(found, write=True)
            break
    if parent is None:
        parent = await make_dirs(volume, str_to_name(location), caller)
    if ledger is not None:
        ledger.hold_back(fid, [parent.fid])
    return parent


async def _rebuild_folder(volume: Volume, state: FileState) -> str:
    named = not state.path.startswith("(unnamed")
    location, _, name = state.path.rpartition("/") if named else ("", "", f"lost+found {state.fid[:8]}")
    caller = Caller(os.getuid(), os.getgid())
    parent = await _place_of(volume, state.fid, location, caller)
    wanted = str_to_name(name)
    if wanted in parent.children:
        wanted = names.ending(wanted, b" (recovered %s)" % state.fid[:8].encode())
    # Its key sealed only its own document: a new one if that is lost too.
    dek = state.dek or aead.new_key()
    node = Node(0, state.fid, volume.key.user_id, dek, stat.S_IFDIR | 0o700, caller.uid, caller.gid)
    node.rev, node.epoch = state.rev, state.epoch
    if not state.dek and node.epoch:
        # A key her device gives it now, above the first epoch: her proof of it with it, as her re-key
        # writes one (vault/files/rekeying.py).  Without, a member's honest state over the folder was
        # judged by derivation alone, which never finds a random key: his claim, said, and a new key
        # of hers.  A key taken back from the damaged document gets none: nothing here tells it from
        # an older key of hers a member put there (docs/SECURITY.md, 51b (5)).
        node.key_proof = volume.key.key_proof(state.fid, node.epoch, dek)
    volume.tree.add(node)
    await volume.relink(node, parent.ino, wanted)
    return (f"its node document was made again: the folder is back at {name_to_str(volume.path_of(node))} "
            f"with its {len(state.children)} entries (mode 0700: its mode and times were only in the "
            "damaged document)")


async def repair(volume: Volume, report: Report) -> None:
    """Point each damaged file at its newest intact version, or put it in the trash."""
    for state in report.damaged:
        if state.where == "lost" and state.kind == "dir":
            continue  # rebuild_folders did it
        try:
            state.repair = await _repair_one(volume, state)
        except VaultError as err:
            state.repair = f"failed: {err}"


async def _repair_one(volume: Volume, state: FileState) -> str | None:
    if state.where == "shared":
        return "not repaired: the file is another user's; they can check and repair it"
    if state.where == "lost":
        return await _rebuild(volume, state)
    if state.where == "trash" or state.kind != "file":
        return None  # nothing in the tree reads it
    node = volume.find(state.fid)
    if node is None:
        return "not repaired: the file is not in the loaded tree (its folder does not open)"

    done = []
    if state.sidecar_damaged:
        Content(volume.layout, node.owner, node.fid, node.dek, None, None, acl=volume.acl(node),
                epoch=node.epoch).write_sidecar()
        done.append("wrote its sidecar again from the documents")
    if state.head_intact:
        return "; ".join(done) or "its current version is intact: older damaged versions stay in its history"
    # Contents whose version document is missing or does not open are never
    # signed again: nothing says they are what their author wrote (a holder of
    # the file's key may have resealed them: docs/SECURITY.md).  They stay in
    # the file's history; the newest version that verifies becomes current.
    unverified = not any("its current version is damaged" in p for p in state.problems)
    newest = state.newest_intact()
    if newest is not None and newest.vid == state.head:
        newest = None  # its own document does not open: not intact as the current version
    if newest is not None and newest.version is not None:
        # The damaged current manifest is never read again: the restore starts from the intact one.
        node.head, node.manifest = newest.vid, newest.version.manifest
        await volume.restore_contents(node, newest.version.manifest, newest.vid)
        aside = "its current contents could not be verified (their version document is missing or " \
            "does not open) and were not signed again; " if unverified else ""
        return "; ".join(done + [f"{aside}restored version {newest.vid[:12]} of {iso_time(newest.time or 0)} "
                                 "as its newest version"])
    if unverified:
        return "; ".join(done + ["not repaired: its current contents could not be verified (their version "
                                 "document is missing or does not open) and no older version verifies; "
                                 "they are not signed again (`fusevault history` shows its versions)"])
    for parent_ino, name in list(node.links):
        await volume.unlink(parent_ino, name)
    return "; ".join(done + ["moved to the trash: no version of it is intact (`fusevault trash` lists it, "
                             "`fusevault history` shows its versions)"])


async def _rebuild(volume: Volume, state: FileState) -> str:
    """A file whose node document does not open: a new revision of that document, made
    from its newest intact version (where it was, its size, time and manifest), so the
    tree loads again and the file keeps its id, key and history.  What only the damaged
    document held (mode, owner ids, other times, xattrs) cannot come back: the file is
    the user's, mode 0600.  With no intact version it goes to the trash the same way."""
    named = [v for v in state.versions if v.version is not None]
    if not state.dek or not named:
        if state.dek and state.versions:  # check.py: versions not signed by this user are not used
            return ("not repaired: its node document does not open and no version of it is signed by "
                    "you, so nothing says it is yours")
        return ("not repaired: neither its node document nor its key or version documents open, so "
                "its name is unknown")
    newest = state.newest_intact()
    source = (newest or named[-1]).version
    location, _, name = source.path.rpartition("/")
    caller = Caller(os.getuid(), os.getgid())
    parent = await _place_of(volume, state.fid, location, caller)
    wanted = str_to_name(name)
    if wanted in parent.children:
        wanted = names.ending(wanted, b" (recovered %s)" % state.fid[:8].encode())
    node = Node(0, state.fid, volume.key.user_id, state.dek, stat.S_IFREG | 0o600, caller.uid, caller.gid)
    node.rev, node.epoch = state.rev, state.epoch
    if newest is not None:
        node.size = node.stored_size = source.size
        node.mtime = node.ctime = source.mtime
        node.head, node.manifest = newest.vid, source.manifest
    volume.tree.add(node)
    await volume.relink(node, parent.ino, wanted)
    where = name_to_str(volume.path_of(node))
    if state.deleted:  # the user deleted it: it goes back to the trash, never into the tree
        await volume.unlink(parent.ino, wanted)
        return (f"its node document was made again and the file put back in the trash as {where}, "
                "where its damaged document said it was (`fusevault trash` lists it)")
    if newest is None:
        await volume.unlink(parent.ino, wanted)
        return (f"its node document was made again and the file moved to the trash as {where}: no "
                "version of it is intact")
    # The damaged document may be an older revision put back, with a key taken back
    # from a recipient since (an unshare), and nothing left here may tell: the file
    # is given a new key, as an unshare does, so nothing is sealed under that one again.
    try:
        await volume.rekey(node)
        keyed = f"; given a new key (epoch {node.epoch}), as the damaged document's may be an older one"
    except VaultError as err:
        keyed = f"; it could not be given a new key ({err}): run `fusevault check --repair` again"
    return (f"its node document was made again from version {newest.vid[:12]} of "
            f"{iso_time(newest.time or 0)}: the file is back at {where} (mode 0600: its mode, owner and "
            f"extended attributes were only in the damaged document){keyed}")
