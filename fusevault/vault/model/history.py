"""The versions of a file: reading their documents, naming them, finding one by time.

Every commit of a changed file writes an immutable FilesMetaData document
(seed 000) with a new id; its sealed part says when it was made, by whom, the
size, and where its manifest is in the file's ``.vf``.  A version is read
through that manifest, so versions share every block they did not change.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fusevault.crypto import aead
from fusevault.crypto.keys import MasterKey
from fusevault.crypto.signing import signer_of
from fusevault.encoding import b64d, loads_untrusted
from fusevault.errors import CorruptData, Forged, InvalidInput, VaultError
from fusevault.store import Store, replica
from fusevault.store.revs import generation
from fusevault.vault.model import names
from fusevault.vault.model.alarms import for_user
from fusevault.vault.model.nodes import (
    MAX_SIZE,
    VERSION,
    doc_dek,
    int_in,
    manifest_ok,
    open_node_doc,
    time_ok,
)

log = logging.getLogger(__name__)

NS = 10**9
# A version whose recorded place is not a path of file names (vault/model/names.py): shown as this.
REFUSED_PATH = "(a refused name)"
# A version that names no path at all: saved (before round 53t (3)) by a file written after its last
# name was removed; nothing forged, so said without a warning.
NO_PATH = "(no name: written after its deletion)"
# Saving by rename a million times would make a chain this long; it stops here.
MAX_LINEAGE = 10_000
NAME_FORMAT = "%Y-%m-%dT%H-%M-%S"
# Whether a version (or replaced node) document may be used: its author's signature and right.
Accept = Callable[[dict], bool]


@dataclass(frozen=True)
class Holder:
    """The mode and owner of a file this one replaced by a rename, as that file's own signed node
    document last said them: a version of it is that file's, and keeps them (attack round 49t (1))."""

    mode: int
    uid: int
    gid: int

    @classmethod
    def of(cls, attrs: dict) -> Holder:
        """From a replaced file's opened attributes (their numbers checked by ``open_node_attrs``);
        one missing is 0: root's, nobody's to read (the safe side)."""
        return cls(attrs.get("mode", 0), attrs.get("uid", 0), attrs.get("gid", 0))


@dataclass(frozen=True)
class Version:
    vid: str
    fid: str
    rev: str
    time: int  # when the version was made (ns since the epoch)
    size: int
    mtime: int
    author: str
    path: str  # where the file was when the version was made
    manifest: tuple[int, int]
    dek: bytes = field(repr=False, default=b"")  # of the node that holds it
    # The file it belongs to, when that is one the file replaced by a rename (``lineage``): its own
    # mode and owner apply to it; None: the file's own version, under the file's mode and owner.
    holder: Holder | None = None


def version_plain(doc: dict, dek: bytes) -> dict:
    """The sealed fields of a FilesMetaData document (docs/FORMAT.md): a JSON object, else CorruptData.
    Any holder of the file's key seals what he likes (``version_ok`` judges the signature only): a
    ``[]``, ``"x"``, ``7`` or ``null`` sealed raised AttributeError at every caller's ``.get``, out of
    the conflicts' settling (attack round 69c (1))."""
    try:
        sealed = b64d(doc["enc"])
        plain = loads_untrusted(aead.unseal(dek, sealed, aead.ad("version", doc["fid"], doc["_id"])))
    except (KeyError, TypeError, ValueError):
        plain = None
    if not isinstance(plain, dict):
        raise CorruptData(f"version document {doc.get('_id')} is malformed")
    return plain


def version_parents(doc: dict, dek: bytes) -> list[str]:
    """The version's parents (ids; anything else in the list passed over), or CorruptData."""
    parents = version_plain(doc, dek).get("parents") or []
    if not isinstance(parents, list):
        raise CorruptData(f"version document {doc.get('_id')} is malformed")
    return [p for p in parents if isinstance(p, str)]


def open_version_doc(doc: dict, dek: bytes) -> Version:
    vid, fid = doc["_id"], doc["fid"]
    plain = version_plain(doc, dek)
    try:
        location, name = plain["file_location"], plain["file_name"]
        if not isinstance(location, str) or not isinstance(name, str):
            raise ValueError("a name that is not a string")
        path = f"{location}/{name}" if location else name
        if not path:  # a file written after its last name went, by a version before 53t (3): honest
            path = NO_PATH
        elif names.problem(name) or names.path_problem(location):
            log.warning("version %s names a path that is not one: shown as %r", vid, REFUSED_PATH)
            path = REFUSED_PATH
        if not (time_ok(plain["file_entry_ts"]) and time_ok(plain["mtime"])
                and int_in(plain["size"], 0, MAX_SIZE) and manifest_ok(plain["manifest"])):
            raise ValueError("a number out of range")  # as a node's (nodes.check_numbers)
        if not isinstance(plain["author"], str) or not isinstance(vid, str):
            raise ValueError("an author that is not a user id")  # history shows it, and keys sets by it
        return Version(vid, fid, doc["_rev"], plain["file_entry_ts"], plain["size"], plain["mtime"],
                       _author(doc, plain["author"]), path, tuple(plain["manifest"]), dek)
    except (KeyError, TypeError, ValueError):
        raise CorruptData(f"version document {vid} is malformed") from None


def _author(doc: dict, said: str) -> str:
    """Who made a version: its sealed ``author`` is the signer's to write, so it
    is believed only from that author, or from the file's owner (who signed
    her own and her grantees' documents from before signatures: migrate.py);
    a writer naming another is shown as himself.  (The signature itself is
    checked by the caller's ``accept``: vault/tree/authorship.py.)"""
    try:
        signer = signer_of(doc)
    except Forged:
        return said  # refused by ``accept`` before it gets here
    if signer is None or signer in (said, doc.get("owner")):
        return said
    log.warning("version %s names %s as its author but was signed by %s: shown as %s's",
                doc.get("_id"), said, signer, signer)
    return signer


def made_over(store: Store, key: MasterKey, fid: str, dek: bytes, head: str | None,
              ancestor: str, first_only: bool = False) -> list[dict] | None:
    """The version documents in ``head``'s history made directly over ``ancestor`` (a version id of
    file ``fid``); None when ``ancestor`` is not in that history (empty when it is ``head``).

    Each version is opened under the key it was sealed with: one before a re-key is under the
    file's older key (her wrapping of it, ``en_file_dek``, tells which; else ``dek``).  One that does
    not open ends that line of the walk: not proven to descend.  The caller judges the documents
    returned (their signers): nothing here is verified.  ``first_only``: a version document that is
    not the first and only revision of its id ends its line too (a version is written once: another
    revision is a writer's, or the server's, rewrite of it, its parents of their choosing: attack
    round 41a (3); her own re-signing of her documents from before signatures makes one too, so
    only where a false "not proven" costs no more than an alarm)."""
    todo, seen, over = [head], set(), []
    reached = False
    while todo and len(seen) < MAX_LINEAGE:
        vid = todo.pop()
        if vid is None or vid in seen:
            continue
        if vid == ancestor:
            reached = True
            continue
        seen.add(vid)
        doc = store.get(vid)
        if doc is None or doc.get("fid") != fid or (first_only and not _written_once(store, doc)):
            continue
        try:
            wrapped = doc.get("en_file_dek")
            parents = version_parents(doc, dek if wrapped is None else key.unwrap_dek(fid, b64d(wrapped)))
        except (VaultError, KeyError, TypeError, ValueError):
            continue
        if ancestor in parents:
            over.append(doc)
        todo += [p for p in parents if isinstance(p, str)]
    return over if reached else None


def _written_once(store: Store, doc: dict) -> bool:
    """Whether ``doc`` is the first revision of its id and no other branch of it is kept, live or
    closed (a branch put beside it, and the one CouchDB's rule did not pick closed since)."""
    if generation(doc.get("_rev")) != 1:
        return False
    local = replica.local_of(store)
    return local is None or len(replica.leaves(local, doc["_id"])) == 1


def versions_of(store: Store, fid: str, dek: bytes, key: MasterKey | None = None,
                epoch: int = 0, accept: Accept | None = None) -> list[Version]:
    """Every version of one node, oldest first.

    Versions from before the file's key changed (a revoked share) hold the
    DEK of their own epoch, which the owner's ``key`` unwraps."""
    def key_of(doc: dict) -> bytes:
        if doc.get("epoch", 0) == epoch or key is None:
            return dek
        return doc_dek(doc, key, fid)

    versions = []
    for doc in store.by_file(VERSION, fid):
        if accept is not None and not accept(doc):
            continue
        try:  # each on its own: one that does not open is left out (and said), the rest lists
            versions.append(open_version_doc(doc, key_of(doc)))
        except VaultError as err:
            text = f"refused version {doc.get('_id')} of file {fid}: {err}"
            if key is not None:
                for_user(key.user_id).warn("bad-version", str(doc.get("_id")), text)
            else:
                log.warning("%s", text)
    return sorted(versions, key=lambda v: (v.time, v.vid))


@dataclass
class Link:
    """One node in a file's lineage: the file itself, or one it replaced."""

    fid: str
    dek: bytes = field(repr=False)
    doc: dict | None  # the node document of a replaced file (None: the file itself)
    versions: list[Version]
    holder: Holder | None = None  # a replaced file's own mode and owner (None: the file itself)


def lineage(store: Store, key: MasterKey, fid: str, dek: bytes, previous: str | None,
            epoch: int = 0, accept: Accept | None = None) -> list[Link]:
    """The node and the files it replaced by renames (newest first), with their versions.

    ``previous`` is the word of whoever signed the node's document, a WRITE
    grantee too: a replaced file is followed only if its own document agrees
    (``replaced``). The chain ends at a replaced file that is gone (its
    history was collected), or one that does not agree."""
    links = [Link(fid, dek, None, versions_of(store, fid, dek, key, epoch, accept))]
    seen = {fid}
    naming: tuple[str, dict | None] = (fid, None)  # the file whose document names ``previous``
    while previous is not None and previous not in seen and len(links) < MAX_LINEAGE:
        try:
            doc = store.get(previous)
        except CorruptData as err:
            # A row that does not read (a store writer's) ends the chain, as a gone one does:
            # never the history of the file she has with it (nor every gc run).
            for_user(key.user_id).warn("malformed", previous, f"file {naming[0]} replaced {previous}, "
                                       f"whose document does not read ({err}): its versions are left out")
            break
        if doc is None or not doc.get("delete") or doc.get("owner") != key.user_id:
            break
        if accept is not None and not accept(doc):
            break  # a replaced file's document not signed by its owner: the chain ends
        dek, attrs = open_node_doc(doc, key)
        if not replaced(store, key.user_id, naming, attrs, accept):
            for_user(key.user_id).warn(
                "bad-previous", naming[0], f"file {naming[0]} names {previous} as the file it replaced, "
                "which does not say so: its versions are not this file's history")
            break
        seen.add(previous)
        holder = Holder.of(attrs)
        links.append(Link(previous, dek, doc, [dataclasses.replace(v, holder=holder) for v in versions_of(
            store, previous, dek, key, attrs.get("epoch", 0), accept)], holder))
        naming = (previous, doc)
        previous = attrs.get("previous")
    return links


def replaced(store: Store, owner: str, naming: tuple[str, dict | None], attrs: dict,
             accept: Accept | None) -> bool:
    """Whether the deleted file whose opened attributes are ``attrs`` was replaced by
    the file ``naming`` (its id, and its document if already read) by a rename.

    A rename over a file records it on both sides (vault/tree/namespace.py):
    the new file's ``previous``, the old file's ``replaced_by``, sealed with
    the old file's key and signed with its document. A writer of a shared
    file can set its ``previous`` to any file id (they are in clear), but
    cannot make the owner's own private file in the trash name his file
    (round 9a). Before ``replaced_by`` was recorded, a replaced file (not one
    in the trash) is followed from a document signed by the owner only."""
    fid, doc = naming
    if (by := attrs.get("replaced_by")) is not None:
        return by == fid
    if attrs.get("trashed"):
        return False  # deleted to the trash, never replaced
    doc = store.get(fid) if doc is None else doc
    if doc is None:
        return False
    try:
        signer = signer_of(doc) or doc.get("owner")  # unsigned: from before signatures, its owner's
    except Forged:
        return False
    return signer == owner and (accept is None or accept(doc))


def carried(store: Store, key: MasterKey, previous: str | None) -> str | None:
    """The ``previous`` a node document of the user's file signed by another (a WRITE
    grantee) leaves her tree holding, which her next commit signs as hers: none when it
    names a file of hers replaced before ``replaced_by`` was recorded (no ``replaced_by``,
    not in the trash), which ``replaced`` follows from a document she signed only; else
    as it is (``replaced`` judges it by that file's own word, whoever signs the naming
    document).  So a writer's ``previous`` is not laundered by her next commit (issue 22)."""
    if previous is None:
        return None
    try:
        doc = store.get(previous)
    except CorruptData:
        return previous
    if doc is None or not doc.get("delete") or doc.get("owner") != key.user_id:
        return previous
    try:
        _, attrs = open_node_doc(doc, key)
    except VaultError:
        return previous  # the lineage stops there anyway
    return previous if attrs.get("replaced_by") is not None or attrs.get("trashed") else None


def file_history(store: Store, key: MasterKey, fid: str, dek: bytes,
                 previous: str | None, epoch: int = 0, accept: Accept | None = None) -> list[Version]:
    """Every version of a file, those of the files it replaced included, oldest first.

    ``accept`` (vault/tree/authorship.py) leaves out documents not signed by whom may write them."""
    versions = [v for link in lineage(store, key, fid, dek, previous, epoch, accept) for v in link.versions]
    return sorted(versions, key=lambda v: (v.time, v.vid))


def version_names(versions: list[Version], suffix: str = "") -> dict[str, Version]:
    """Name each version by its UTC time to the millisecond plus the file's
    extension: ``2026-11-21T10-04-05.123Z.txt``.  Milliseconds, because people
    and editors save several times a second, and a name must not change when
    the garbage collector removes a neighbour; two versions in one
    millisecond get ``~2``, ``~3``.  The names sort in the order made."""
    names: dict[str, Version] = {}
    for version in versions:
        stem = iso_name(version.time)
        name, n = stem + suffix, 1
        while name in names:
            n += 1
            name = f"{stem}~{n}{suffix}"
        names[name] = version
    return names


def extension(name: str) -> str:
    """``.txt`` of ``notes.txt``; nothing for ``Makefile`` or ``.bashrc``."""
    stem, dot, ext = name.rpartition(".")
    return f".{ext}" if dot and stem and ext and len(ext) <= 16 and "/" not in ext else ""


def iso_name(time_ns: int) -> str:
    second = datetime.fromtimestamp(time_ns // NS, UTC).strftime(NAME_FORMAT)
    return f"{second}.{time_ns % NS // 10**6:03d}Z"


def iso_time(time_ns: int) -> str:
    return datetime.fromtimestamp(time_ns // NS, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


_AGO = re.compile(r"^(\d+)\s*(s|sec|min|m|h|hr|d|day|days|w|week|weeks)$")
_UNIT_S = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600,
           "d": 86400, "day": 86400, "days": 86400, "w": 604800, "week": 604800, "weeks": 604800}


def parse_when(text: str, now_ns: int | None = None) -> int:
    """A point in time: ISO (``2026-11-21T10:04:05Z``, ``2026-11-21``), a version
    file name (``2026-11-21T10-04-05Z``), or an age such as ``3h`` or ``2d``."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    text = text.strip()
    ago = _AGO.match(text)
    if ago:
        return now_ns - int(ago.group(1)) * _UNIT_S[ago.group(2)] * NS
    name = re.match(r"^(\d{4}-\d\d-\d\dT\d\d)-(\d\d)-(\d\d(?:\.\d+)?)Z(~\d+)?(\.[^/]*)?$", text)
    if name:
        text = f"{name.group(1)}:{name.group(2)}:{name.group(3)}Z"
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"cannot read {text!r} as a time: use 2026-11-21T10:04:05Z, "
                           "2026-11-21, a version name, or an age like 3h or 2d") from None
    if when.tzinfo is None:
        when = when.astimezone()  # local time, as a person typing a date means it
    # The end of what was written: 10:04:05 means up to 10:04:05.999999999.
    precision = 10**6 if name and "." in name.group(3) else NS
    return int(when.timestamp()) * NS + when.microsecond * 1000 + precision - 1


def pick(versions: list[Version], at: int | None = None, vid: str | None = None,
         latest: bool = False) -> Version:
    """The version with id ``vid`` (a unique prefix will do), the newest made at or
    before ``at``, else the latest (``latest``) or the one before it."""
    if vid is not None:
        found = [v for v in versions if v.vid.startswith(vid.lower())]
        if len(found) != 1:
            raise InvalidInput(f"no version {vid}" if not found else f"version id {vid} is ambiguous")
        return found[0]
    if at is None:
        if latest and versions:
            return versions[-1]
        if len(versions) < 2:
            raise InvalidInput("there is no older version to restore")
        return versions[-2]
    earlier = [v for v in versions if v.time <= at]
    if not earlier:
        raise InvalidInput(f"no version was made at or before {iso_time(at)}")
    return earlier[-1]
