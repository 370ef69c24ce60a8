"""``fusevault check``: read and verify everything a user can open, file by file.

Every node document, every version document, the sidecar, the ``.vf``
header, every manifest and every block of every version is opened with the
functions the mount itself uses (nodes.py, history.py, content.py), so any
check they make (authentication, structure, signatures through loading)
applies here too.  What does not open is reported under the file's
decrypted path; what no version references in a ``.vf`` is counted.

A node document that does not open cannot give its name: its path is taken
from its newest version document that opens (where the file was then).

What it finds is vault/services/check_report.py's; mending it is
vault/services/repairing.py's (both named here too, as the CLI calls them).
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import struct
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from fusevault.crypto.keys import MasterKey
from fusevault.encoding import shown
from fusevault.errors import CorruptData, VaultError
from fusevault.store import Store
from fusevault.vault.files.content import Content
from fusevault.vault.files.sidecar import check_vfmeta
from fusevault.vault.format import inside
from fusevault.vault.format import manifest_tree as tree
from fusevault.vault.format.block_hashes import BlockHashes
from fusevault.vault.format.layout import Layout, is_id
from fusevault.vault.format.vf import HEADER, header_for
from fusevault.vault.model.alarms import Alarms
from fusevault.vault.model.history import open_version_doc, version_plain
from fusevault.vault.model.nodes import NODE, VERSION, doc_dek, open_node_doc
from fusevault.vault.services.check_report import FileState, Report, VersionState, describe
from fusevault.vault.services.gc import allocated
from fusevault.vault.services.repairing import load_tree, rebuild_folders, repair, tree_paths

if TYPE_CHECKING:
    from fusevault.vault.volume import Volume

__all__ = ["Checker", "FileState", "Report", "VersionState", "describe", "load_tree", "rebuild_folders",
           "repair", "tree_paths"]

log = logging.getLogger(__name__)


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
        # Whether a document carries this user's own signature (``trusting``); None until the
        # tree is loaded, and then nothing is vouched for by it.
        self.signed_by_me: Callable[[dict], bool] | None = None

    def trusting(self, volume: Volume | None) -> None:
        """Check signatures with the loaded tree's pinned keys (``vault/model/trust.py``)."""
        trust = volume.trust if volume is not None else None
        if trust is not None:
            me = self.key.user_id
            self.signed_by_me = lambda doc: trust.checked(doc, author=me, what="version") == me

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
            state.deleted = bool(doc.get("delete"))
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
        if (head := self._head_by_id(state, key)) is not None:
            state.versions.append(head)
        state.versions.sort(key=lambda v: (v.time is None, v.time or 0, v.vid))
        if state.where == "lost":
            self._newest_key(state)
        if not state.path:  # a node document that does not open: where its newest version was
            named = [v.version.path for v in state.versions if v.version is not None]
            state.path = named[-1] if named else self._folder_path(state)
        if not (is_id(state.owner) and is_id(state.fid)):  # a planted document's: no path is made of it
            state.problems.append("its id is no name fusevault makes: its files are not looked for")
            return
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
            state.problems.append(self._head_unlisted(state.head))
        elif head.problem:
            state.head_intact = False  # readable, but its version document does not open

    def _head_by_id(self, state: FileState, key: MasterKey | None) -> VersionState | None:
        """The current version, read by its id, when the file's versions (``by_file``, by the store's
        index) left it out: a document naming this file, of a version, that passes the checks every
        listed one passes (``_version_doc``: it opens, signed as it must be) is the current version, as
        the mount reads it.  An index entry a writer of the vault folder's schema left at another kind
        or file made ``check`` call her intact newest version "not its file's", and ``--repair`` put
        the older one back over it (attack round 80b (4c)); the store now rebuilds those indexes at
        each open, and a repair never goes by them alone."""
        if state.head is None or any(v.vid == state.head for v in state.versions):
            return None
        try:
            doc = self.store.get(state.head)
        except CorruptData:
            return None  # said by ``_head_unlisted``
        if doc is None or doc.get("type") != VERSION or doc.get("fid") != state.fid:
            return None
        found = self._version_doc(state, doc, key)
        if found.problem is not None:
            return None  # not genuine: the file's head is unlisted, said
        log.warning("file %s: its current version %s was not among its versions the store selected "
                    "(an index entry the vault folder's writer left?): taken by its id",
                    state.fid, state.head)
        return found

    def _head_unlisted(self, vid: str) -> str:
        """Why the current version is not among the file's: none at its id, or one that does not read
        (a name given twice, not JSON: a writer of the vault folder's), said as it is (attack round 79a)."""
        try:
            found = self.store.get(vid)
        except CorruptData as err:
            return f"the document of its current version does not read ({err})"
        return ("the document of its current version is missing" if found is None
                else "the document of its current version is not its file's")

    def _folder_path(self, state: FileState) -> str:
        """A lost folder's path: where the newest version of a file under it was, less
        the names below the folder; else unknown."""
        level, depth = list(state.children), 1
        walked = set(level)  # each once: a folder a document names twice is not walked twice (round 28c (1))
        while level and depth <= 64:
            for child in level:
                for doc in self.store.by_file(VERSION, child):
                    try:
                        parts = open_version_doc(doc, doc_dek(doc, self.key, child)).path.split("/")
                    except (VaultError, KeyError, TypeError, ValueError):
                        continue
                    if len(parts) > depth:
                        return "/".join(parts[:-depth])
            level = list(dict.fromkeys(g for c in level for g in self.children.get(c, []) if g not in walked))
            walked.update(level)
            depth += 1
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
        if state.where == "lost":
            # Its node document does not open, so nothing says who may write the file: only a
            # version signed by this user (the node's owner) names it, else a store writer who
            # plants a node that does not open and an unsigned version gets a file into the
            # user's tree, signed by `check --repair` in their name.
            if self.signed_by_me is None or not self.signed_by_me(doc):
                return VersionState(vid, problem="its version document is not signed by you (a file whose "
                                    "node document does not open is rebuilt only from versions you signed)")
        elif self.layout.places is not None and self.layout.places.admit is not None \
                and not self.layout.places.admit(doc):  # the loaded tree's check (vault/tree/authorship.py)
            return VersionState(vid, problem="its version document is not signed by who may write the file")
        digests = {k: plain[k] for k in ("records", "records_n", "manifest_sha256") if k in plain}
        epoch = doc.get("epoch", 0)
        return VersionState(vid, version.time, version.size, None, version, digests or None,
                            epoch if isinstance(epoch, int) else 0)

    def _newest_key(self, state: FileState) -> None:
        """A node document that does not open may be an older revision put back (its
        clear epoch and wrapped key are whatever that revision held): one from before an
        unshare brings back the key the recipient kept.  An unshare seals the contents
        again under the new key as a version this user signs (files/rekeying.py), so a
        version of a later epoch than the document's tells: the file is rebuilt under
        that version's key, never the older one."""
        signed = [v for v in state.versions if v.problem is None and v.version is not None]
        newest = max(signed, key=lambda v: v.epoch, default=None)
        if newest is None or newest.version is None or newest.epoch <= state.epoch:
            return
        state.problems.append(f"its stored node document is of key epoch {state.epoch}, older than its "
                              f"version {newest.vid[:12]} (epoch {newest.epoch}, signed by you): an older "
                              "revision put back? it is rebuilt under the newer key only")
        state.dek, state.epoch = newest.version.dek, newest.epoch

    def _vf_and_sidecar(self, state: FileState, vf) -> str | None:
        """The .vf's presence and header, the sidecar's tag; what makes every version unreadable."""
        # Opened as the mount opens them (vault/format/inside.py): a link or a pipe put in the vault
        # folder is reported, never followed nor waited on.
        own = self.layout.own_names(state.owner)
        try:
            fd = inside.open_file(self.layout.root, own, vf.name, os.O_RDONLY)
        except FileNotFoundError:
            state.problems.append("its content file (.vf) is missing")
            return "the content file is missing"
        except CorruptData:
            state.problems.append("its content file (.vf) is no regular file (a link, a pipe, a folder)")
            return "the content file is no regular file"
        try:
            header = os.pread(fd, HEADER.size, 0)
        finally:
            os.close(fd)
        if header != header_for(state.fid):
            state.problems.append("its content file (.vf) has a damaged header")
            return "the content file's header is damaged"
        try:
            name = self.layout.vfmeta_path(state.owner, state.fid).name
            sidecar = inside.read_file(self.layout.root, own, name)
            if sidecar is None:
                raise FileNotFoundError
            check_vfmeta(sidecar, state.fid, state.owner, state.dek, state.epoch,
                         alarms=Alarms())  # reported below, not logged
        except FileNotFoundError:
            self.report.notes.append(f"{shown(state.path)}: no sidecar (.vfmeta), or no regular file in its "
                                     "place; the next open writes it")
        except (VaultError, ValueError) as err:
            state.problems.append(f"its sidecar (.vfmeta) is damaged ({_why(err)})")
            state.sidecar_damaged = True
        return None

    def _version_contents(self, reader: Content, place: tuple[int, int], vid: str, dek: bytes,
                          size: int | None, cache: dict, used: list,
                          digests: dict | None = None) -> str | None:
        """Why one version's manifest or blocks do not open, or do not match what
        its signed document says of the records it wrote (``digests``), or None.

        Its inherited blocks are compared with the hashes its own Merkle tree
        holds, never with another version's: the reader's hashes start empty
        for each version, so a root no signature vouches for (a version from
        before digests, resealed by a holder of the file's key) cannot speak
        for the blocks of any other (docs/SECURITY.md)."""
        reader._hashes = BlockHashes()
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
        verified_root = digests is not None and "manifest_sha256" in digests
        written: list[tuple[int, bytes]] = []  # (index, SHA-256) of each record this version wrote
        for (level, pos), ((node_offset, node_length, writer), *_) in (manifest.tree or {}).items():
            if writer == vid:  # a node of its manifest tree it wrote (vault/format/manifest_tree.py)
                index = tree.node_index(level, pos)
                try:
                    node_offset, node_length = reader.where(node_offset, node_length, vid, index)
                except CorruptData as err:  # its place here is damaged (attack round 78c (1))
                    return f"its manifest tree's node {index} is damaged ({_why(err)})"
                record = os.pread(reader.fd, node_length, node_offset)
                written.append((index, hashlib.sha256(record).digest()))
        for index, offset, length, vidx, last in manifest.blocks.blocks():
            if vidx >= len(vids):
                return "its manifest names a version it does not list"
            try:
                offset, length = reader.where(offset, length, vids[vidx], index,
                                              sha=reader.block_sha(vids[vidx], index))  # its copy (46a (3))
            except CorruptData as err:  # its place here is damaged (attack round 78c (1))
                return f"block {index} is damaged ({_why(err)})"
            used.append((offset, offset + length))
            entry = (index, offset, length, vids[vidx], last, dek)
            if entry not in cache:
                cache[entry] = self._block(reader, index, offset, length, vids, vidx, last, dek)
            problem, sha = cache[entry]
            if problem:
                return problem
            inherited = vids[vidx] != vid
            if verified_root and inherited and reader._hashes.get(vids[vidx], index) not in (None, sha):
                # An inherited block (its own are checked against its digest below) that is not
                # the record its Merkle tree (vault format 5), whose root its signed document
                # names, holds: resealed in place, though its writer's document may be gone.
                return f"block {index} is not the record its manifest tree names"
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
            try:
                fd = inside.open_file(self.layout.root, self.layout.own_names(self.key.user_id), name,
                                         os.O_RDONLY)
            except (OSError, CorruptData):
                continue  # gone, or no regular file (a link, a pipe): nothing of ours to count
            try:
                size = os.fstat(fd).st_size
                self.report.orphans.append({"file": name, "bytes": size, "on_disk": allocated(fd, 0, size)})
            finally:
                os.close(fd)
