"""Nodes (files, directories, symlinks, special files) and their documents.

A node document (``type: "node"``, ``_id`` = the file id) carries the
wrapped DEK of the node in clear and everything else sealed under that DEK:
names and the directories they are in, mode, owner, times, size, xattrs, the
symlink target, and where the current version's manifest is.  Sealing under
the DEK (itself wrapped by the master key) lets a share recipient who is given
the DEK read the node without the owner's master key.
"""

from __future__ import annotations

import json
import stat
import sys
import time
import uuid
from collections.abc import Mapping
from types import MappingProxyType

from fusevault.crypto import aead
from fusevault.crypto.identity import open_file_key
from fusevault.crypto.keys import MasterKey
from fusevault.crypto.signing import sign_doc, signer_of
from fusevault.encoding import b64d, b64e, loads_untrusted, name_to_str, str_to_name
from fusevault.errors import CorruptData, Forged
from fusevault.vault.format.layout import checked_id, is_id
from fusevault.vault.model import sealed_for
from fusevault.vault.model.placement import shaped

# The root directory's inode number (FUSE fixes it at 1).
ROOT_INODE = 1
NODE = "node"
# Shared by every node without extended attributes (nearly all of them);
# setxattr gives a node its own dict.
NO_XATTRS: Mapping[bytes, bytes] = MappingProxyType({})
VERSION = "FilesMetaData"

# What the numbers of a node document may be: what the kernel (FUSE's mode,
# uid_t, gid_t, 32-bit rdev, off_t, 64-bit nanosecond times) and the format
# (aead.ad packs an epoch as a signed 64-bit int; CouchDB keeps integers
# exactly below 2**53) carry.  A document from anyone who holds the DEK can
# say anything: out of range, it is malformed (CorruptData), never an
# OverflowError deep in a mount.
_U32, _I63, _EXACT = 1 << 32, 1 << 63, 1 << 53
# Devices a state names as made over (``Node.over``): one per device of the owner's that wrote the file;
# a state that would name more forgets the newest ones it would add (ledger.py ``made_over``).
MAX_OVER = 32
DEVICE_MAX = 32  # characters of a device id (fusevault's are 16)
PATH_MAX = 4096  # bytes of a symlink's target (Linux's PATH_MAX: the kernel makes none longer)
WRAPPING_MAX = 256  # characters of a clear wrapping of a file's key (fusevault's: 80, 124)
MAX_SIZE = _I63 - 1  # off_t
PROOF_SIZE = 32  # hex digits of a key proof (crypto/keys.py ``MasterKey.key_proof``)
_RANGES = (("mode", 0, 0o177777), ("uid", 0, _U32 - 1), ("gid", 0, _U32 - 1), ("rdev", 0, _U32 - 1),
           ("size", 0, MAX_SIZE), ("allocated", 0, MAX_SIZE), ("epoch", 0, _EXACT - 1),
           ("atime", -_I63, _I63 - 1), ("mtime", -_I63, _I63 - 1), ("ctime", -_I63, _I63 - 1),
           ("btime", -_I63, _I63 - 1))


# The fields of a node a user sets as metadata, each stamped when it changes (``Node.changed``):
# its permission bits, its owner ids (uid and gid: one chown), its extended attributes, its names.
CHANGED = frozenset({"mode", "owner", "xattrs", "links"})


def int_in(value: object, low: int, high: int) -> bool:
    return type(value) is int and low <= value <= high  # a bool is not a number here


def time_ok(value: object) -> bool:
    """A time in nanoseconds the kernel carries (signed 64 bits)."""
    return int_in(value, -_I63, _I63 - 1)


def stamp_ok(value: object) -> bool:
    """A change stamp ``note_change`` can make: never below 1 (it goes above the stamp so far, 0 at
    the least), never past the top of a signed 64-bit time."""
    return int_in(value, 0, _I63 - 1)


def manifest_ok(manifest: object) -> bool:
    """``[offset, length]`` of a manifest record."""
    return (isinstance(manifest, list) and len(manifest) == 2
            and all(int_in(n, 0, MAX_SIZE) for n in manifest))


def check_numbers(attrs: dict) -> None:
    """Raise ValueError if a number of opened node attributes has the wrong type or range
    (one left out is the reader's to miss: the fields a document may lack differ)."""
    for field, low, high in _RANGES:
        if (value := attrs.get(field)) is not None and not int_in(value, low, high):
            raise ValueError(f"{field} out of range")
    if (manifest := attrs.get("manifest")) and not manifest_ok(manifest):
        raise ValueError("bad manifest")
    if (trashed := attrs.get("trashed")) and not (
            isinstance(trashed, list) and len(trashed) == 2 and time_ok(trashed[1])):
        raise ValueError("bad trashed")
    if (seq := attrs.get("seq")) is not None and not (
            isinstance(seq, list) and len(seq) == 2 and int_in(seq[1], 0, _I63 - 1)):
        raise ValueError("bad seq")


def _str_or_none(value: object) -> bool:
    return value is None or isinstance(value, str)


def check_shapes(attrs: dict) -> None:
    """Raise ValueError if a field of opened node attributes other than a number has the
    wrong shape: a signed document of a writer is still a writer's input, and a list where
    a name belongs must be a refusal, not an exception deep in whatever reads it."""
    links = attrs.get("links", [])
    if not isinstance(links, list) or not all(
            isinstance(link, list) and len(link) == 2 and all(isinstance(part, str) for part in link)
            for link in links):
        raise ValueError("bad links")
    xattrs = attrs.get("xattrs")
    if xattrs and not (isinstance(xattrs, dict)
                       and all(isinstance(k, str) and isinstance(v, str) for k, v in xattrs.items())):
        raise ValueError("bad xattrs")
    for field in ("target", "head", "previous", "replaced_by"):
        if not _str_or_none(attrs.get(field)):
            raise ValueError(f"bad {field}")
    check_texts(attrs)
    if (trashed := attrs.get("trashed")) and not isinstance(trashed[0], str):
        raise ValueError("bad trashed")
    if (seq := attrs.get("seq")) is not None and not device_ok(seq[0]):
        raise ValueError("bad seq")
    changed = attrs.get("changed")
    if changed is not None and not (isinstance(changed, dict) and all(
            k in CHANGED and stamp_ok(n) for k, n in changed.items())):
        raise ValueError("bad changed")
    over = attrs.get("over")
    if over is not None and not (isinstance(over, dict) and len(over) <= MAX_OVER and all(
            device_ok(d) and int_in(n, 0, _I63 - 1) for d, n in over.items())):
        raise ValueError("bad over")


def check_texts(attrs: dict) -> None:
    """Raise ValueError if a free text of opened node attributes (strings, ``check_shapes``) is larger
    than any commit of fusevault's makes it: a symlink's ``target`` at most PATH_MAX bytes (the
    kernel's bound on one), and none on any other node; ``head`` (a version id), ``previous`` and
    ``replaced_by`` (file ids) the shape of an id, ``key_proof`` the shape of one (``proof_shaped``).  A
    member's state with an 8 MB ``target`` or ``previous`` of her regular file was taken as it was
    (nothing reads a target on a file, nothing she can do through the mount clears it, and only the
    xattrs had a cap) and sealed again on the loop at each of her later commits of the file, signed by
    her, every seat waiting (attack round 52c (4)).
    Refused as any malformed document is (said; at her unlock her file rebuilt from her own states)."""
    target = attrs.get("target")
    if target is not None and not (stat.S_ISLNK(attrs.get("mode") or 0) and len(target) <= PATH_MAX
                                   and len(str_to_name(target)) <= PATH_MAX):
        raise ValueError("bad target")
    for field in ("head", "previous", "replaced_by"):
        if (value := attrs.get(field)) is not None and not is_id(value):
            raise ValueError(f"bad {field}")
    if (proof := attrs.get("key_proof")) is not None and not proof_shaped(proof):
        raise ValueError("bad key_proof")
    if (record := attrs.get("sealed_for")) is not None and not sealed_for.shaped(record):
        raise ValueError("bad sealed_for")


def proof_shaped(proof: object) -> bool:
    """A key proof as ``MasterKey.key_proof`` makes one: 32 lowercase hex digits, nothing larger (a
    member's document is his input, sealed again at each of her commits that carry it over)."""
    return (isinstance(proof, str) and len(proof) == PROOF_SIZE
            and all(c in "0123456789abcdef" for c in proof))


def wrapping_ok(doc: dict) -> bool:
    """Whether a document's clear wrappings of its file's key for the owner (``en_file_dek``,
    ``owner_dek``: ``key_fields``) are texts of a wrapping's size.  Nothing else bounded them: a
    member's 8 MB one was carried and signed again by every member's commit (attack round 53c (2))."""
    return all(isinstance(value := doc[k], str) and len(value) <= WRAPPING_MAX
               for k in ("en_file_dek", "owner_dek") if k in doc)


def device_ok(device: object) -> bool:
    """A replica's id as fusevault names one (ledger.py: 16 hex digits).  Each named in a document is
    kept in the reader's ledger, so a writer's 256 KiB name made it grow without bound (attack round
    33b (2)).  Letters, digits, "-" and "_" only: no "/", which marks a writer's device there
    (ledger.py ``apart``)."""
    return (isinstance(device, str) and 0 < len(device) <= DEVICE_MAX and device.isascii()
            and device.replace("-", "").replace("_", "").isalnum())


def clear_epoch(doc: dict) -> int:
    """The key epoch a document carries in clear, checked as its sealed one is."""
    epoch = doc.get("epoch", 0)
    if not int_in(epoch, 0, _EXACT - 1):
        raise CorruptData(f"document {doc.get('_id')} has a key epoch out of range")
    return epoch


def now_ns() -> int:
    return time.time_ns()


def note_change(node: Node, field: str) -> None:
    """Stamp a change of one of the node's ``CHANGED`` fields: later than the clock's now and than
    the field's stamp so far, so that a state that changed it always carries a greater stamp than
    one that did not (whatever either device's clock says)."""
    stamps = node.changed or {}
    node.changed = {**stamps, field: min(max(now_ns(), stamps.get(field, 0) + 1), _I63 - 1)}


# How far ahead of this device's clock a change stamp taken in may be (``taken_stamps``): a device
# whose clock is hours off (a time zone taken for UTC) is still believed.
STAMP_AHEAD_NS = 86400 * 10**9
# How far ahead of this device's clock a member's stamp is a clock running ahead (held down to now);
# beyond it, none (``taken_stamps``).
MEMBER_STAMP_AHEAD_NS = 3600 * 10**9


def taken_stamps(changed: dict[str, int] | None, by_owner: bool | None = None) -> dict[str, int] | None:
    """The change stamps of a state taken in (loaded, arrived, a branch opened to be settled): a stamp
    past this device's clock plus ``STAMP_AHEAD_NS`` is no time a clock made (a member's commit
    stamped near 2**63, or a clock far off) and is taken as none.  Kept, every change of that field
    made over it was that stamp plus one (``note_change``): a count of changes, not a time, and of two
    of her devices the one that changed it more often won it, her later change undone (attack round
    42b (2)).  Held down to a bound instead, it stays ahead of her changes all the same; as none, any
    change of hers goes above it, and where nobody changed the field the kept state's stands.

    Who signed the state says more (``by_owner``; None: unsigned, or not known here).  Her own
    devices' stamps are taken as they are: judged against this clock, a device whose clock ran more
    than a day behind took every honest stamp of her other devices as none, and her earlier change
    won there (attack round 43c (2)).  A member's stamp ahead of this clock is held down to now, the
    time it is taken in: kept as it was, one just under a day ahead made a count of her changes all
    the same (attack round 43c (1)); held down, each later change of hers is stamped above it.  As
    none, his honest rename beside her re-key lost to her month-old one whenever his clock ran a few
    minutes ahead of hers (attack round 45c (6)).  Beyond ``MEMBER_STAMP_AHEAD_NS`` it is none still:
    held down, a state of his taken in again (a remount) would stand as changed at each taking in."""
    if not changed:
        return None
    if by_owner:
        return changed
    now = now_ns()
    if by_owner is False:
        bound = now + MEMBER_STAMP_AHEAD_NS
        return {field: min(n, now) for field, n in changed.items() if n <= bound} or None
    return {field: n for field, n in changed.items() if n <= now + STAMP_AHEAD_NS} or None


def new_id() -> str:
    return uuid.uuid4().hex


class Node:
    """In-memory state of one node; the tree owns the links between them."""

    __slots__ = (
        "ino", "fid", "owner", "dek", "rev",
        "mode", "uid", "gid", "rdev", "size", "stored_size", "allocated", "atime", "mtime", "ctime", "btime",
        "links", "children", "subdirs", "xattrs", "target", "head", "manifest",
        "lookups", "opens", "content", "lock", "trashed", "previous", "epoch", "wrapped", "seq",
        "over", "replaced_by", "placed", "changed", "key_proof", "sealed_for",
    )

    def __init__(self, ino: int, fid: str, owner: str, dek: bytes,
                 mode: int, uid: int, gid: int, rdev: int = 0, when: int | None = None) -> None:
        when = now_ns() if when is None else when
        self.ino = ino
        self.fid = fid
        self.owner = owner
        self.dek = dek
        self.rev: str | None = None
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.rdev = rdev
        self.size = 0
        # The size of the committed version: what a node document may record
        # while newer data is still dirty in memory.
        self.stored_size = 0
        # Bytes of data the committed version stores (holes are free): for
        # st_blocks.  None: a document from before it was recorded.
        self.allocated: int | None = None
        self.atime = self.mtime = self.ctime = self.btime = when
        # (parent inode, name) for every hard link; a directory has one.
        self.links: list[tuple[int, bytes]] = []
        self.children: dict[bytes, int] | None = {} if stat.S_ISDIR(mode) else None
        self.subdirs = 0
        self.xattrs: Mapping[bytes, bytes] = NO_XATTRS
        self.target: bytes | None = None
        self.head: str | None = None
        self.manifest: tuple[int, int] | None = None
        self.lookups = 0
        self.opens = 0
        self.content = None
        self.lock = None
        # (path, time) of the last link removed: where the trash puts it back.
        self.trashed: tuple[bytes, int] | None = None
        # The file this one replaced by a rename (an editor's save): its
        # versions are this file's earlier history.
        self.previous: str | None = None
        # The file that replaced this one by a rename (set with its
        # ``previous``): the replaced file's own word, signed with its
        # document, that it belongs to that file's history (history.lineage).
        self.replaced_by: str | None = None
        # The generation of the DEK: a revoked share gives the file a new one.
        self.epoch = 0
        # Another owner's file (shared with this user): its DEK as that
        # owner's document holds it, carried over unchanged at each commit.
        self.wrapped: dict | None = None
        # (writing device, its counter) of the document this state came from
        # or goes to: rollback detection (vault/model/ledger.py).
        self.seq: tuple[str, int] | None = None
        # The newest state of each of the owner's other devices this state was
        # made over ({device: n}, signed with it; None: none): a state of that
        # device up to n is its ancestor, so one put back later is a replay,
        # though no older than that device's newest (attack round 28b).  Taken
        # only from a document its owner signed (``node_from_doc``).
        self.over: dict[str, int] | None = None
        # The owner's signed stamp of where she put it (vault/model/placement.py):
        # made at her commits, carried over unchanged by a grantee's.
        self.placed: dict | None = None
        # When each field the user sets as metadata last changed ({field: ns}, ``CHANGED``; None: none
        # since it was made): two states of hers made apart keep each field from the one that changed
        # it (vault/services/conflicts.py, attack round 41b (4)).  Replaced, never changed in place.
        self.changed: dict[str, int] | None = None
        # The owner's proof that her device gave the node ``dek`` at ``epoch`` (crypto/keys.py
        # ``MasterKey.key_proof``), made at her re-key (vault/files/rekeying.py), carried over unchanged
        # by every commit under that key (hers, a member's); None: none (a first key, a key from before
        # proofs).  Anyone's input: it counts only where her key checks it (vault/model/her_keys.py).
        self.key_proof: str | None = None
        # For whom her re-key made the key of ``epoch`` (vault/model/sealed_for.py ``record``): no device
        # extends that key to a recipient outside it (attack round 71d (1)); carried over unchanged by
        # every commit under that key.  None: none (a first key, a key from before the record).  Anyone's
        # input: it counts, and her commits carry it, only where her proof checks (``_record_carried``).
        self.sealed_for: dict | None = None

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_reg(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def nlink(self) -> int:
        if self.is_dir:
            return 2 + self.subdirs
        return len(self.links)

    # Snapshots let a metadata operation be undone when its commit fails.
    _SAVED = ("mode", "uid", "gid", "size", "stored_size", "allocated", "atime", "mtime", "ctime", "xattrs",
              "head", "manifest", "rev", "trashed", "previous", "dek", "epoch",
              "replaced_by", "changed", "key_proof", "sealed_for")

    def save(self) -> tuple:
        return (tuple(getattr(self, f) for f in self._SAVED), list(self.links))

    def restore(self, saved: tuple) -> None:
        values, links = saved
        for field, value in zip(self._SAVED, values):
            setattr(self, field, value)
        self.links = links

    def __repr__(self) -> str:
        return f"Node(ino={self.ino}, fid={self.fid!r}, mode={self.mode:o})"


def attrs_plain(node: Node, fid_of, record: dict | None = None) -> dict:
    return {
        "mode": node.mode, "uid": node.uid, "gid": node.gid, "rdev": node.rdev,
        "size": node.stored_size if node.is_reg else node.size, "atime": node.atime, "mtime": node.mtime,
        "ctime": node.ctime, "btime": node.btime,
        "links": [[fid_of(p), name_to_str(n)] for p, n in node.links],
        "xattrs": {name_to_str(k): b64e(v) for k, v in node.xattrs.items()},
        "target": None if node.target is None else name_to_str(node.target),
        "head": node.head,
        "manifest": list(node.manifest) if node.manifest else None,
        "trashed": [name_to_str(node.trashed[0]), node.trashed[1]]
        if node.trashed and not node.links else None,
        "previous": node.previous,
        "epoch": node.epoch,
        **({"replaced_by": node.replaced_by} if node.replaced_by is not None else {}),
        **({"allocated": node.allocated} if node.allocated is not None else {}),
        **({"seq": list(node.seq)} if node.seq is not None else {}),
        **({"over": node.over} if node.over else {}),
        **({"placed": node.placed} if node.placed is not None else {}),
        **({"changed": node.changed} if node.changed else {}),
        **({"key_proof": node.key_proof} if node.key_proof is not None else {}),
        **({"sealed_for": record} if record is not None else {}),
    }


def key_fields(node: Node, key: MasterKey) -> dict:
    """How a document carries the node's DEK for its owner.

    The owner wraps it with their master key (afresh at each commit rather
    than kept wrapped in memory: 100 bytes less per node in a vault of
    100,000).  A user writing another's shared file carries the owner's
    wrapping over; one creating a file in another's shared folder seals the
    new DEK to the owner's public key (``owner_dek``), which the owner
    replaces with a wrapping of their own at their next commit of it.
    """
    if node.owner == key.user_id:
        return {"en_file_dek": b64e(key.wrap_dek(node.fid, node.dek))}
    if node.wrapped is None:
        raise CorruptData(f"no key of {node.fid} for its owner")
    return dict(node.wrapped)


def doc_dek(doc: dict, key: MasterKey, fid: str | None = None) -> bytes:
    """The DEK a node or version document holds for its owner (``key``)."""
    fid = fid or doc["_id"]
    try:
        if "en_file_dek" in doc:
            return key.unwrap_dek(fid, b64d(doc["en_file_dek"]))
        blob = b64d(doc["owner_dek"])
    except (KeyError, ValueError, TypeError):
        raise CorruptData(f"document {doc.get('_id')} holds no file key") from None
    if key.identity is None:
        raise CorruptData(f"document {doc.get('_id')} needs the owner's key pair")
    return open_file_key(key.identity, doc["owner"], fid, clear_epoch(doc), blob)


def node_doc(node: Node, key: MasterKey, fid_of, deleted: bool = False) -> dict:
    plain = json.dumps(attrs_plain(node, fid_of, _record_carried(node, key)), separators=(",", ":")).encode()
    doc = {
        "_id": node.fid,
        "type": NODE,
        "owner": node.owner,
        **key_fields(node, key),
        "epoch": node.epoch,
        "delete": deleted,
        "enc": b64e(aead.seal(node.dek, plain, aead.ad("node", node.fid))),
    }
    doc = signed(doc, key)
    if node.rev is not None:
        doc["_rev"] = node.rev  # not covered by the signature
    return doc


def _record_carried(node: Node, key: MasterKey) -> dict | None:
    """The node's ``sealed_for`` as a commit carries it: her commit only one her proof proves for the
    node's key (a member's record taken in by older code, or at load from his state, is dropped: attack
    round 73a (1)); a member's commit hers as it came (he cannot check it; it counts only where it does)."""
    record = node.sealed_for
    if record is None or node.owner != key.user_id:
        return record
    return record if sealed_for.hers(key, node.fid, node.epoch, node.dek, record) else None


def xattr_bytes(xattrs: Mapping[bytes, bytes]) -> int:
    """What a node's extended attributes hold: their names and values, in bytes (as ext4 counts them)."""
    return sum(len(name) + len(value) for name, value in xattrs.items())


def signed(doc: dict, key: MasterKey) -> dict:
    """The document signed by the user who writes it (vault/tree/authorship.py says
    whose signatures count): the last step, every field being final."""
    return doc if key.identity is None else sign_doc(key.user_id, key.identity.sign, doc)


def open_node_doc(doc: dict, key: MasterKey) -> tuple[bytes, dict]:
    """Return (dek, attrs) of a node document, or raise CorruptData."""
    fid = doc["_id"]
    try:
        dek = doc_dek(doc, key)
    except CorruptData:
        raise CorruptData(f"node document {fid} fails authentication") from None
    return dek, open_node_attrs(doc, dek)


def open_node_attrs(doc: dict, dek: bytes) -> dict:
    """The sealed attributes of a node document, with its DEK (owner's or shared);
    its numbers checked (``check_numbers``)."""
    fid = doc["_id"]
    try:
        attrs = loads_untrusted(aead.unseal(dek, b64d(doc["enc"]), aead.ad("node", fid)))
        if not isinstance(attrs, dict):
            raise ValueError("not an object")
        check_numbers(attrs)
        check_shapes(attrs)
        return attrs
    except (KeyError, ValueError, TypeError):
        raise CorruptData(f"node document {fid} is malformed") from None
    except CorruptData:
        raise CorruptData(f"node document {fid} fails authentication") from None


def _place_ids(doc: dict) -> str:
    """The node's fid, once it and its owner are names fusevault makes: both become its files' paths
    (users/<owner>/own/<fid>.vf, key files); another is refused (UnsafeId, a CorruptData: left out)."""
    checked_id("user", doc["owner"])
    return checked_id("file", doc["_id"])


def detached_node(doc: dict, key: MasterKey, ino: int = 0) -> Node:
    """A node from its document, outside any tree (one in the trash or replaced)."""
    dek, attrs = open_node_doc(doc, key)
    try:
        node = Node(ino, _place_ids(doc), doc["owner"], dek, attrs["mode"], 0, 0)
        apply_attrs(node, attrs, _by_owner(doc))  # links are not followed: it has none
    except (KeyError, TypeError, ValueError, OverflowError):
        raise CorruptData(f"node document {doc['_id']} is malformed") from None
    node.rev = doc["_rev"]
    return node


def node_from_doc(doc: dict, dek: bytes, attrs: dict) -> tuple[Node, list[tuple[str, bytes]]]:
    """A node from its opened document, and its links as (parent fid, name)."""
    try:
        node = Node(0, _place_ids(doc), doc["owner"], dek, attrs["mode"], 0, 0)
        links = apply_attrs(node, attrs, _by_owner(doc))
    except (KeyError, TypeError, ValueError, OverflowError):
        raise CorruptData(f"node document {doc['_id']} is malformed") from None
    if not wrapping_ok(doc):
        raise CorruptData(f"node document {doc['_id']} holds a malformed key wrapping")
    if node.epoch != doc.get("epoch", 0):
        # The clear epoch is signed and bound into every key sealed for the file; the sealed one
        # is whatever the writer put there.  A WRITE grantee's document that raised it alone made
        # the owner's re-key (and so her unshare of him) impossible (attack round 27a (1)).
        raise CorruptData(f"node document {doc['_id']} seals another key epoch than it names")
    if any(not is_id(parent) for parent, _ in links):
        # A folder is a node, and a node's id is one fusevault makes: a name in anything else (a view
        # folder's ``virtual:shared``, which a phantom then took, sharing its inode after a lock and
        # unlock: another user's folder shown as ``shared/carol``, attack round 71a (4)) is no name.
        raise CorruptData(f"node document {doc['_id']} names a folder that is no file id")
    if node.children is not None and len(links) > 1:
        # A folder has one name, as the kernel's link(2) insists.  A writer's document naming one of
        # her folders twice made every walk down her tree (export, the re-keys of unshare) go 2**n
        # ways for n documents (attack round 28c (1)).
        raise CorruptData(f"node document {doc['_id']} names a folder more than once")
    if node.over is not None and _signer(doc) != node.owner:
        node.over = None  # a writer's word on what the owner's states were made over counts for nothing
    node.rev = doc["_rev"]
    return node, links


def _by_owner(doc: dict) -> bool | None:
    """Whether a node document is signed by its owner (None: unsigned).  Read from the signature the
    caller has checked already (a document is opened only once admitted)."""
    signer = _signer(doc)
    return None if signer is None else signer == doc.get("owner")


def _signer(doc: dict) -> str | None:
    try:
        return signer_of(doc)
    except Forged:
        return None


def apply_attrs(node: Node, attrs: dict, by_owner: bool | None = None) -> list[tuple[str, bytes]]:
    """Fill a node from decrypted attrs; return its links as (parent fid, name).  ``by_owner``: whether
    the state is signed by its owner (None: unsigned, or not known), for its change stamps."""
    node.mode = attrs["mode"]
    node.uid, node.gid, node.rdev = attrs["uid"], attrs["gid"], attrs["rdev"]
    node.size = node.stored_size = attrs["size"]
    node.atime, node.mtime = attrs["atime"], attrs["mtime"]
    node.ctime, node.btime = attrs["ctime"], attrs["btime"]
    xattrs = attrs["xattrs"]
    node.xattrs = {str_to_name(k): b64d(v) for k, v in xattrs.items()} if xattrs else NO_XATTRS
    node.target = None if attrs["target"] is None else str_to_name(attrs["target"])
    node.head = attrs["head"]
    node.manifest = tuple(attrs["manifest"]) if attrs["manifest"] else None
    node.children = {} if stat.S_ISDIR(node.mode) else None
    trashed = attrs.get("trashed")
    node.trashed = (str_to_name(trashed[0]), trashed[1]) if trashed else None
    node.previous = attrs.get("previous")
    node.replaced_by = attrs.get("replaced_by")
    node.epoch = attrs.get("epoch", 0)
    node.allocated = attrs.get("allocated")
    node.placed = shaped(attrs.get("placed"))
    node.changed = taken_stamps(attrs.get("changed"), by_owner)
    node.key_proof = attrs.get("key_proof")
    node.sealed_for = attrs.get("sealed_for")
    if (seq := attrs.get("seq")) is not None:
        device, n = seq
        if not isinstance(device, str) or not isinstance(n, int):
            raise ValueError("bad seq")
        node.seq = (sys.intern(device), n)
    if over := attrs.get("over"):
        mine = node.seq[0] if node.seq is not None else None  # its own device's: its seq says more
        node.over = {sys.intern(d): n for d, n in over.items() if d != mine} or None
    return [(p, str_to_name(n)) for p, n in attrs["links"]]


def version_doc(node: Node, key: MasterKey, vid: str, parent_vid: str | None, path: bytes,
                manifest_nonce: bytes, device: str | None = None, digests: dict | None = None) -> dict:
    """The seed 000 FilesMetaData document of one version (immutable, new id per change).

    ``digests``: what binds the records this version wrote (Content.digests)."""
    location, _, name = path.rpartition(b"/")
    plain = {
        "file_entry_ts": now_ns(),
        "file_location": name_to_str(location),
        "file_name": name_to_str(name),
        "file_iv": b64e(manifest_nonce),
        "size": node.size,
        "mtime": node.mtime,
        "author": key.user_id,
        "manifest": list(node.manifest),
        "parents": [parent_vid] if parent_vid else [],
    }
    if device:  # the replica that wrote it (names a conflict copy of it)
        plain["device"] = device
    if digests:
        plain.update(digests)
    sealed = aead.seal(node.dek, json.dumps(plain, separators=(",", ":")).encode(),
                       aead.ad("version", node.fid, vid))
    return signed({
        "_id": vid,
        "type": VERSION,
        "fid": node.fid,
        "owner": node.owner,
        **key_fields(node, key),
        "epoch": node.epoch,
        "delete": False,
        "enc": b64e(sealed),
    }, key)
