"""``fusevault check``: read and verify everything a user can open, file by file.

Every node document, every version document, the sidecar, the ``.vf``
header, every manifest and every block of every version is opened with the
functions the mount itself uses (nodes.py, history.py, content.py), so any
check they make (authentication, structure, signatures through loading)
applies here too.  What does not open is reported under the file's
decrypted path; what no version references in a ``.vf`` is counted.

A node document that does not open cannot give its name: its path is taken
from its newest version document that opens (where the file was then).

``repair`` works through a loaded Volume, as ``restore`` does: a file whose
newest version is damaged gets a new version whose manifest is that of its
newest intact one (no block copied, nothing destroyed); a file with no
intact version goes to the trash.  Contents whose version document is
missing or does not open are never signed again (nothing vouches for them);
the newest version that verifies is restored, else the file is left as it
is and the line says why.  Damaged records and documents stay
where they are: the history keeps them until the retention policy lets
them go.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from fusevault.crypto import aead
from fusevault.crypto.keys import MasterKey
from fusevault.encoding import name_to_str, str_to_name
from fusevault.errors import CorruptData, VaultError
from fusevault.store import Store
from fusevault.vault.files.content import Content
from fusevault.vault.files.sidecar import check_vfmeta
from fusevault.vault.format import manifest_tree as tree
from fusevault.vault.format.layout import Layout
from fusevault.vault.format.vf import HEADER, header_for
from fusevault.vault.model.alarms import Alarms
from fusevault.vault.model.history import Version, iso_time, open_version_doc, version_plain
from fusevault.vault.model.nodes import NODE, VERSION, Node, doc_dek, open_node_doc
from fusevault.vault.services.gc import allocated
from fusevault.vault.services.placing import make_dirs
from fusevault.vault.volume import Caller, Volume

log = logging.getLogger(__name__)


@dataclass
class VersionState:
    vid: str
    time: int | None = None
    size: int | None = None
    problem: str | None = None  # None: intact
    version: Version | None = field(default=None, repr=False)
    digests: dict | None = field(default=None, repr=False)  # what it signed of its own records

    def as_dict(self) -> dict:
        return {"id": self.vid, "time": self.time, "size": self.size, "intact": self.problem is None,
                "problem": self.problem}


@dataclass
class FileState:
    fid: str
    path: str
    kind: str  # file, dir, symlink, other
    where: str  # tree, trash, shared (another owner's), lost (its document does not open)
    owner: str
    problems: list[str] = field(default_factory=list)
    versions: list[VersionState] = field(default_factory=list)
    head: str | None = None
    head_intact: bool = True
    unreferenced: int = 0  # bytes of the .vf no version uses
    unreferenced_on_disk: int = 0  # of them, what the file system stores (not punched out)
    repair: str | None = None
    sidecar_damaged: bool = False
    rev: str | None = field(default=None, repr=False)  # of the node document
    children: list[str] = field(default_factory=list, repr=False)  # of a folder whose document is lost
    # For a repair: the current manifest and DEK as the node document says.
    manifest: tuple[int, int] | None = field(default=None, repr=False)
    dek: bytes = field(default=b"", repr=False)
    epoch: int = 0

    @property
    def damaged(self) -> bool:
        return bool(self.problems) or not self.head_intact or any(v.problem for v in self.versions)

    def newest_intact(self) -> VersionState | None:
        """The newest intact version readable with the node's current key."""
        for state in reversed(self.versions):
            if state.problem is None and state.version is not None and state.version.dek == self.dek:
                return state
        return None

    def as_dict(self) -> dict:
        newest = self.newest_intact()
        return {"path": self.path, "fid": self.fid, "kind": self.kind, "where": self.where,
                "damaged": self.damaged, "problems": self.problems, "head": self.head,
                "head_intact": self.head_intact,
                "versions": [v.as_dict() for v in self.versions],
                "intact_versions": [v.vid for v in self.versions if v.problem is None],
                "newest_intact": newest.vid if newest else None,
                "unreferenced_bytes": self.unreferenced, "unreferenced_on_disk": self.unreferenced_on_disk,
                "repair": self.repair}


@dataclass
class Report:
    user: str
    files: list[FileState] = field(default_factory=list)
    orphans: list[dict] = field(default_factory=list)  # .vf files no node document names
    alarms: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    counts: dict = field(default_factory=lambda: {"nodes": 0, "versions": 0, "manifests": 0, "blocks": 0,
                                                  "bytes": 0})

    @property
    def damaged(self) -> list[FileState]:
        return [f for f in self.files if f.damaged]

    @property
    def clean(self) -> bool:
        return not self.damaged and not self.alarms

    def as_dict(self) -> dict:
        return {"user": self.user, "clean": self.clean, "damaged": len(self.damaged),
                "checked": self.counts,
                "unreferenced_bytes": sum(f.unreferenced for f in self.files)
                + sum(o["bytes"] for o in self.orphans),
                "unreferenced_on_disk": sum(f.unreferenced_on_disk for f in self.files)
                + sum(o["on_disk"] for o in self.orphans),
                "files": [f.as_dict() for f in self.files], "orphans": self.orphans,
                "alarms": self.alarms, "notes": self.notes}


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    return "symlink" if stat.S_ISLNK(mode) else "other"


def _why(err: Exception) -> str:
    return str(err) if isinstance(err, VaultError) else f"unreadable ({type(err).__name__})"


class Checker:
    """One user's check: opened node documents first, then each file's contents."""

    def __init__(self, layout: Layout, store: Store, key: MasterKey) -> None:
        self.layout = layout
        self.store = store
        self.key = key
        self.report = Report(key.user_id)
        # fid -> (document, opened attributes or None, DEK) of this user's own nodes.
        self.own: dict[str, tuple[dict, dict | None, bytes]] = {}
        # parent fid -> its children's fids, as the children's documents say
        # (a folder whose own document does not open is known by them).
        self.children: dict[str, list[str]] = {}

    def read_nodes(self) -> set[str]:
        """Open every node document of the user; return the ids of those that do not open."""
        broken = set()
        for doc in self.store.iter_type(NODE):
            if doc.get("owner") != self.key.user_id:
                continue
            try:
                dek, attrs = open_node_doc(doc, self.key)
                if not isinstance(attrs.get("mode"), int) or not isinstance(attrs.get("links"), list):
                    raise CorruptData(f"node document {doc['_id']} is malformed")
                self.own[doc["_id"]] = (doc, attrs, dek)
                for parent, _ in attrs["links"]:
                    self.children.setdefault(parent, []).append(doc["_id"])
            except (VaultError, KeyError, TypeError, ValueError):
                self.own[doc["_id"]] = (doc, None, b"")
                broken.add(doc["_id"])
        return broken

    def files(self, paths: Callable[[str], str | None], guests: list) -> Iterator[Callable[[], None]]:
        """One step per node (for a progress bar): own nodes, then others' shared with the user."""
        for fid, (doc, attrs, dek) in self.own.items():
            yield lambda fid=fid, doc=doc, attrs=attrs, dek=dek: self._own_node(fid, doc, attrs, dek, paths)
        for node, path in guests:
            yield lambda node=node, path=path: self._guest(node, path)
        yield self._orphans

    def _own_node(self, fid: str, doc: dict, attrs: dict | None, dek: bytes,
                  paths: Callable[[str], str | None]) -> None:
        self.report.counts["nodes"] += 1
        if attrs is None:
            state = FileState(fid, "", "file", "lost", doc.get("owner", ""))
            state.rev = doc.get("_rev")
            try:
                state.dek = doc_dek(doc, self.key)
                state.problems.append("its node document does not open (fails authentication)")
            except VaultError:
                state.problems.append("its node document does not open (its file key is damaged)")
            state.epoch = doc.get("epoch", 0) if isinstance(doc.get("epoch", 0), int) else 0
            state.head_intact = False
            if fid in self.children:
                state.kind = "dir"
                state.children = list(self.children[fid])
        else:
            where = "trash" if doc.get("delete") else "tree"
            path = paths(fid) if where == "tree" else None
            if path is None and attrs.get("trashed"):
                path = attrs["trashed"][0]
            state = FileState(fid, path or "", _kind(attrs["mode"]), where, doc["owner"])
            state.dek = dek
            state.epoch = attrs.get("epoch", 0)
            state.head = attrs.get("head")
            state.manifest = tuple(attrs["manifest"]) if attrs.get("manifest") else None
        self._contents(state, self.key)
        self.report.files.append(state)

    def _guest(self, node, path: str) -> None:
        """Another owner's file shared with this user: checked with its DEK, never repaired."""
        self.report.counts["nodes"] += 1
        state = FileState(node.fid, path, _kind(node.mode), "shared", node.owner)
        state.dek, state.epoch, state.head, state.manifest = node.dek, node.epoch, node.head, node.manifest
        self._contents(state, None)
        self.report.files.append(state)

    # --- contents

    def _contents(self, state: FileState, key: MasterKey | None) -> None:
        """Version documents, sidecar, header, manifests and blocks of one node."""
        for doc in self.store.by_file(VERSION, state.fid):
            state.versions.append(self._version_doc(state, doc, key))
        state.versions.sort(key=lambda v: (v.time is None, v.time or 0, v.vid))
        if not state.path:  # a node document that does not open: where its newest version was
            named = [v.version.path for v in state.versions if v.version is not None]
            state.path = named[-1] if named else self._folder_path(state)
        vf = self.layout.vf_path(state.owner, state.fid)
        needed = state.manifest is not None or any(v.version is not None for v in state.versions)
        if not needed:
            return
        content_problem = self._vf_and_sidecar(state, vf)
        reader = Content(self.layout, state.owner, state.fid, state.dek, None, None, check_sidecar=False,
                         vouch=False)
        cache: dict[tuple, str | None] = {}
        used: list[tuple[int, int]] = []
        try:
            for v in state.versions:
                if v.version is None or v.problem:
                    continue
                self.report.counts["versions"] += 1
                v.problem = content_problem or self._version_contents(
                    reader, v.version.manifest, v.vid, v.version.dek, v.version.size, cache, used,
                    v.digests)
            if state.manifest is not None and state.head is not None:
                self._head(state, reader, content_problem, cache, used)
            if content_problem is None and reader.fd is not None:
                self._unreferenced(state, reader.fd, used)
        finally:
            reader.close()

    def _head(self, state: FileState, reader: Content, content_problem: str | None, cache: dict,
              used: list) -> None:
        """The current contents, as the node document names them (what a mount reads)."""
        head = next((v for v in state.versions if v.vid == state.head), None)
        if head is not None and head.version is not None and head.version.manifest == state.manifest:
            problem = head.problem
        else:
            problem = content_problem or self._version_contents(
                reader, state.manifest, state.head, state.dek, None, cache, used)
        if problem:
            state.head_intact = False
            state.problems.append(f"its current version is damaged: {problem}")
        elif head is None:
            state.head_intact = False
            state.problems.append("the document of its current version is missing")
        elif head.problem:
            state.head_intact = False  # readable, but its version document does not open

    def _folder_path(self, state: FileState) -> str:
        """A lost folder's path: where the newest version of a file under it was, less
        the names below the folder; else unknown."""
        level, depth = list(state.children), 1
        while level and depth <= 64:
            for child in level:
                for doc in self.store.by_file(VERSION, child):
                    try:
                        parts = open_version_doc(doc, doc_dek(doc, self.key, child)).path.split("/")
                    except (VaultError, KeyError, TypeError, ValueError):
                        continue
                    if len(parts) > depth:
                        return "/".join(parts[:-depth])
            level, depth = [g for c in level for g in self.children.get(c, [])], depth + 1
        return f"(unnamed {'folder' if state.children else 'file'} {state.fid})"

    def _version_doc(self, state: FileState, doc: dict, key: MasterKey | None) -> VersionState:
        vid = str(doc.get("_id"))
        try:
            dek = state.dek if doc.get("epoch", 0) == state.epoch or key is None \
                else doc_dek(doc, key, state.fid)
            version = open_version_doc(doc, dek)
            plain = version_plain(doc, dek)
        except (VaultError, KeyError, TypeError, ValueError) as err:
            return VersionState(vid, problem=f"its version document does not open ({_why(err)})")
        admit = self.layout.places.admit if self.layout.places is not None else None
        # The loaded tree's check (vault/tree/authorship.py); a lost node (its document does
        # not open) has no owner to check against: its versions give its path, nothing is signed.
        if admit is not None and state.where != "lost" and not admit(doc):
            return VersionState(vid, problem="its version document is not signed by who may write the file")
        digests = {k: plain[k] for k in ("records", "records_n", "manifest_sha256") if k in plain}
        return VersionState(vid, version.time, version.size, None, version, digests or None)

    def _vf_and_sidecar(self, state: FileState, vf) -> str | None:
        """The .vf's presence and header, the sidecar's tag; what makes every version unreadable."""
        try:
            with open(vf, "rb") as f:
                header = f.read(HEADER.size)
        except FileNotFoundError:
            state.problems.append("its content file (.vf) is missing")
            return "the content file is missing"
        if header != header_for(state.fid):
            state.problems.append("its content file (.vf) has a damaged header")
            return "the content file's header is damaged"
        try:
            with open(self.layout.vfmeta_path(state.owner, state.fid), "rb") as f:
                check_vfmeta(f.read(), state.fid, state.owner, state.dek, state.epoch,
                             alarms=Alarms())  # reported below, not logged
        except FileNotFoundError:
            self.report.notes.append(f"{state.path}: no sidecar (.vfmeta); the next open writes it")
        except (VaultError, ValueError) as err:
            state.problems.append(f"its sidecar (.vfmeta) is damaged ({_why(err)})")
            state.sidecar_damaged = True
        return None

    def _version_contents(self, reader: Content, place: tuple[int, int], vid: str, dek: bytes,
                          size: int | None, cache: dict, used: list,
                          digests: dict | None = None) -> str | None:
        """Why one version's manifest or blocks do not open, or do not match what
        its signed document says of the records it wrote (``digests``), or None."""
        try:
            manifest = reader.load_manifest(place, vid, dek)
        except (VaultError, OSError, ValueError) as err:
            return f"its manifest is damaged ({_why(err)})"
        self.report.counts["manifests"] += 1
        offset, length = reader.where(*place, vid, -1)
        used.append((offset, offset + length))
        used += [(o, o + n) for o, n in manifest.nodes]  # its manifest tree's nodes (format/manifest_tree.py)
        if size is not None and manifest.size != size:
            return f"its manifest says {manifest.size} bytes, its document {size}"
        if digests is not None and "manifest_sha256" in digests and digests["manifest_sha256"] != \
                hashlib.sha256(os.pread(reader.fd, length, offset)).hexdigest():
            return "its manifest record is not the one its version document names"
        vids = manifest.vids
        written: list[tuple[int, bytes]] = []  # (index, SHA-256) of each record this version wrote
        for (level, pos), ((node_offset, node_length, writer), _) in (manifest.tree or {}).items():
            if writer == vid:  # a node of its manifest tree it wrote (vault/format/manifest_tree.py)
                index = tree.node_index(level, pos)
                node_offset, node_length = reader.where(node_offset, node_length, vid, index)
                record = os.pread(reader.fd, node_length, node_offset)
                written.append((index, hashlib.sha256(record).digest()))
        for index, offset, length, vidx, last in manifest.blocks.blocks():
            if vidx >= len(vids):
                return "its manifest names a version it does not list"
            offset, length = reader.where(offset, length, vids[vidx], index)
            used.append((offset, offset + length))
            entry = (index, offset, length, vids[vidx], last, dek)
            if entry not in cache:
                cache[entry] = self._block(reader, index, offset, length, vids, vidx, last, dek)
            problem, sha = cache[entry]
            if problem:
                return problem
            if vids[vidx] == vid:  # a record this version wrote: bound into its document
                written.append((index, sha))
        records = hashlib.sha256()
        for index, sha in sorted(written):  # tree nodes (negative indices) first, as the writer does
            records.update(struct.pack("<q", index) + sha)
        if digests is not None and "records" in digests and (
                digests.get("records_n") != len(written) or digests["records"] != records.hexdigest()):
            # Every record opens with the file's key, yet is not what the version's
            # signed document names: resealed in place by a holder of that key.
            return "its block records are not those its version document names"
        return None

    def _block(self, reader: Content, index: int, offset: int, length: int, vids: list[str], vidx: int,
               last: int, dek: bytes) -> tuple[str | None, bytes]:
        """(why block ``index`` does not open or None, the SHA-256 of its record)."""
        self.report.counts["blocks"] += 1
        self.report.counts["bytes"] += length
        record = os.pread(reader.fd, length, offset)
        sha = hashlib.sha256(record).digest()
        # A version of an older key epoch: its blocks open with its own DEK (one thread: safe).
        saved, reader.dek = reader.dek, dek
        try:
            reader._open_block(index, record, length, vids, vidx, last)
        except (VaultError, ValueError) as err:
            return f"block {index} is damaged ({_why(err)})", sha
        finally:
            reader.dek = saved
        return None, sha

    def _unreferenced(self, state: FileState, fd: int, used: list[tuple[int, int]]) -> None:
        end = os.fstat(fd).st_size
        position = HEADER.size
        for start, stop in sorted(used) + [(end, end)]:
            if start > position:
                state.unreferenced += start - position
                state.unreferenced_on_disk += allocated(fd, position, start)
            position = max(position, stop)

    def _orphans(self) -> None:
        """Content files in the user's own/ that no node document names (left by a crash)."""
        own = self.layout.own_dir(self.key.user_id)
        try:
            names = os.listdir(own)
        except FileNotFoundError:
            return
        for name in sorted(names):
            fid, dot, ext = name.partition(".")
            if ext != "vf" or fid in self.own:
                continue
            path = own / name
            fd = os.open(path, os.O_RDONLY)
            try:
                size = os.fstat(fd).st_size
                self.report.orphans.append({"file": name, "bytes": size, "on_disk": allocated(fd, 0, size)})
            finally:
                os.close(fd)


def describe(state: FileState) -> list[str]:
    """The text lines of one damaged file."""
    lines = [f"{state.path}{'  (in the trash)' if state.where == 'trash' else ''}"
             f"{'  (shared with you)' if state.where == 'shared' else ''}"]
    lines += [f"  {p}" for p in state.problems]
    for v in state.versions:
        when = iso_time(v.time) if v.time is not None else "time unknown"
        lines.append(f"  version {v.vid[:12]} {when}: {'intact' if v.problem is None else v.problem}")
    if state.repair:
        lines.append(f"  repair: {state.repair}")
    return lines


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
    quiet = logging.getLogger("fusevault.vault.volume")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        volume = Volume.load(layout, _Without(store, broken) if broken else store, key, root_fid)
    except VaultError as err:
        report.notes.append(f"the tree does not load ({err}): paths come from the version documents, "
                            "and nothing can be repaired")
        return None
    finally:
        quiet.setLevel(level)
    if volume.trust is not None:
        report.alarms = volume.trust.alarms.as_list()
    return volume


def tree_paths(volume: Volume | None) -> tuple[Callable[[str], str | None], list]:
    """A node's path in the tree, and the others' nodes shared with the user (with their paths)."""
    if volume is None:
        return (lambda fid: None), []

    def path(fid: str) -> str | None:
        ino = volume.by_fid.get(fid)
        node = volume.nodes.get(ino) if ino is not None else None
        if node is None or (not node.links and ino != 1):
            return None
        return name_to_str(volume.path_of(node)) or "/"

    guests = [(node, path(node.fid) or node.fid) for node in volume.nodes.values()
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


async def _rebuild_folder(volume: Volume, state: FileState) -> str:
    named = not state.path.startswith("(unnamed")
    location, _, name = state.path.rpartition("/") if named else ("", "", f"lost+found {state.fid[:8]}")
    caller = Caller(os.getuid(), os.getgid())
    parent = await make_dirs(volume, str_to_name(location), caller)
    wanted = str_to_name(name)
    if wanted in parent.children:
        wanted += b" (recovered %s)" % state.fid[:8].encode()
    # Its key sealed only its own document: a new one if that is lost too.
    node = Node(0, state.fid, volume.key.user_id, state.dek or aead.new_key(), stat.S_IFDIR | 0o700,
                caller.uid, caller.gid)
    node.rev, node.epoch = state.rev, state.epoch
    volume.add_node(node)
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
    ino = volume.by_fid.get(state.fid)
    if ino is None:
        return "not repaired: the file is not in the loaded tree (its folder does not open)"
    node = volume.nodes[ino]
    done = []
    if state.sidecar_damaged:
        Content(volume.layout, node.owner, node.fid, node.dek, None, None, acl=volume._acl(node),
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
        return ("not repaired: neither its node document nor its key or version documents open, so "
                "its name is unknown")
    newest = state.newest_intact()
    source = (newest or named[-1]).version
    location, _, name = source.path.rpartition("/")
    caller = Caller(os.getuid(), os.getgid())
    parent = await make_dirs(volume, str_to_name(location), caller)
    wanted = str_to_name(name)
    if wanted in parent.children:
        wanted += b" (recovered %s)" % state.fid[:8].encode()
    node = Node(0, state.fid, volume.key.user_id, state.dek, stat.S_IFREG | 0o600, caller.uid, caller.gid)
    node.rev, node.epoch = state.rev, state.epoch
    if newest is not None:
        node.size = node.stored_size = source.size
        node.mtime = node.ctime = source.mtime
        node.head, node.manifest = newest.vid, source.manifest
    volume.add_node(node)
    await volume.relink(node, parent.ino, wanted)
    where = name_to_str(volume.path_of(node))
    if newest is None:
        await volume.unlink(parent.ino, wanted)
        return (f"its node document was made again and the file moved to the trash as {where}: no "
                "version of it is intact")
    return (f"its node document was made again from version {newest.vid[:12]} of "
            f"{iso_time(newest.time or 0)}: the file is back at {where} (mode 0600: its mode, owner and "
            "extended attributes were only in the damaged document)")
