"""Shares: who may read or write whose files, and the sealed file keys that let them.

A ``Share`` document per (shared file or folder, grantee) is the truth: the
grantee is a user or a group, the permission ``READ`` or ``READ,WRITE``.
A folder share reaches everything under the folder, also what is made in it
later.  Each file key a grantee needs is sealed to their X25519 public key
(``crypto.identity.seal_file_key``) in a ``.vfkey`` at seed 003's places:

    users/<recipient>/shared/<owner>_<fid>.vfkey        a share with a user
    groups/<gid>/own/<fid>/keys/<recipient>.vfkey       a share with a group

A ``.vfkey`` is JSON ``{"epoch": n, "key": base64, "owner", "fid",
"recipient"[, "group", "group_owner"[, "group_owner_key"]], "sig"}``; the epoch
is the file key's generation (it changes when a share is revoked) and is bound into
the sealed key's associated data;
``sig`` is the file owner's signature over the rest (``vault/model/grants.py``):
a reader uses a key only if the file's owner signed it.  A key at a group's place
also names (signed) the group, its owner and her signing key as the file's owner
pinned them when she sealed it: the key mirror, which has no pins, takes that
owner's removal of the recipient from the group, signed under that key, as the
key's end (sync/key_mirror.py).  Keys are written before the document that
makes them needed and removed after the one that ends the need, so a crash
leaves at most a key nobody uses, never a share without its keys.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import secrets
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from fusevault.encoding import SAFE_INTEGER, b64d, b64e, loads_untrusted
from fusevault.errors import CorruptData
from fusevault.store import Store
from fusevault.vault.format import inside
from fusevault.vault.format.atomic import write_aside, write_in
from fusevault.vault.format.layout import Layout, checked_id, is_id
from fusevault.vault.model.groups import can_write, parse_perm

log = logging.getLogger(__name__)

SHARE = "Share"
# A ``.vfkey`` as a document, so peers replicate it (sync/key_mirror.py).
FILE_KEY = "FileKey"
# A key file is a few hundred bytes (a sealed key and a signature); a bigger one is no key file.
KEY_LIMIT = 64 << 10

# Key files this process wrote or removed: the sync mirror's cue to look at
# them again (other processes' are found by its slower full rescan).
_key_writes = 0
# Re-keys under way in this process: each commits the node's new epoch before the key files
# sealing it to the recipients are written, so until it ends a peer may hold the node and not
# its keys: work a push still owes (sync/key_mirror.py ``unmirrored``), never "nothing pending".
_keys_owed = 0


@dataclass(frozen=True)
class Grant:
    """One share: ``grantee`` is a user id, or a group id when ``group``."""

    owner: str
    fid: str
    grantee: str
    group: bool
    perm: str

    @property
    def writable(self) -> bool:
        return can_write(self.perm)


@dataclass(frozen=True)
class Reach:
    """What a share gives one recipient: the grant, and where their keys are."""

    grant: Grant
    recipient: str
    perm: str  # a group member gets no more than their membership allows

    def key_path(self, layout: Layout, fid: str) -> Path:
        return key_path(layout, self.grant, self.recipient, fid)


def gives_as_much(have: Grant, other: Grant) -> bool:
    """Whether the share ``have`` gives the same grantee (a user, or a group) all that ``other``
    gives (WRITE includes READ)."""
    return (have.grantee == other.grantee and have.group == other.group
            and _rights(other.perm) <= _rights(have.perm))


def _rights(perm: str) -> set[str]:
    return set(perm.split(",")) | ({"READ"} if can_write(perm) else set())


def share_perm(text: str) -> str:
    """``--perm``: READ, or WRITE (which includes READ: nobody writes blind)."""
    perm = parse_perm(text)
    return "READ,WRITE" if can_write(perm) else "READ"


def doc_id(fid: str, grantee: str) -> str:
    return f"share-{fid}-{grantee}"


def share_doc(grant: Grant) -> dict:
    return {"_id": doc_id(grant.fid, grant.grantee), "type": SHARE, "owner": grant.owner,
            "fid": grant.fid, "grantee": grant.grantee, "group": grant.group,
            "perm": grant.perm, "created_at": int(time.time())}


def grant_of(doc: dict) -> Grant:
    from fusevault.vault.model.shapes import share_ok

    try:
        if not share_ok(doc):
            raise KeyError
        # "group" may be absent (share_ok: False), as in a Share from before groups
        return Grant(doc["owner"], doc["fid"], doc["grantee"], bool(doc.get("group", False)), doc["perm"])
    except KeyError:
        raise CorruptData(f"share document {doc.get('_id')} is malformed") from None


def all_grants(store: Store) -> list[Grant]:
    from fusevault.vault.model.shapes import well_formed

    return [grant_of(d) for d in well_formed(store, SHARE)]


def reaches(grant: Grant, groups: dict[str, dict[str, str]]) -> list[Reach]:
    """Every recipient of a grant (a group's members but the file's owner);
    ``groups`` is group id -> {member: membership permission}."""
    if not grant.group:
        return [Reach(grant, grant.grantee, grant.perm)]
    users = groups.get(grant.grantee, {})
    return [Reach(grant, uid, grant.perm if can_write(perm) else "READ")
            for uid, perm in sorted(users.items()) if uid != grant.owner]


def key_path(layout: Layout, grant: Grant, recipient: str, fid: str) -> Path:
    if grant.group:
        return group_key_path(layout, grant.grantee, fid, recipient)
    return user_key_path(layout, recipient, grant.owner, fid)


def user_key_path(layout: Layout, recipient: str, owner: str, fid: str) -> Path:
    # Each id checked (layout.py ``checked_id``): grants and key documents come from the store.
    name = f"{checked_id('user', owner)}_{checked_id('file', fid)}.vfkey"
    return layout.user_dir(recipient) / "shared" / name


def group_keys_dir(layout: Layout, group_id: str, fid: str) -> Path:
    return layout.group_dir(group_id) / "own" / checked_id("file", fid) / "keys"


def group_key_path(layout: Layout, group_id: str, fid: str, recipient: str) -> Path:
    return group_keys_dir(layout, group_id, fid) / f"{checked_id('user', recipient)}.vfkey"


def key_writes() -> int:
    """How many times this process wrote or removed a key file."""
    return _key_writes


def _wrote_key() -> None:
    global _key_writes
    _key_writes += 1


def keys_owed() -> int:
    """How many re-keys this process has under way (their key files may not be written yet)."""
    return _keys_owed


@contextlib.contextmanager
def owing_keys() -> Iterator[None]:
    """A re-key under way: from before its commit until its key files are written (or it failed)."""
    global _keys_owed
    _keys_owed += 1
    try:
        yield
    finally:
        _keys_owed -= 1


class KeyRecord(NamedTuple):
    """A ``.vfkey``: the epoch and sealed key, and who signed them for whom (and, for a key at a
    group's place, through which group and whose: ``group``, ``group_owner``, and since attack round
    46c (1) that owner's signing key as the file's owner pinned it, ``group_owner_key`` (base64 of the
    raw Ed25519 public key); None in a key signed before they were, or at a user's place)."""

    epoch: int
    key: bytes
    owner: str | None = None
    fid: str | None = None
    recipient: str | None = None
    sig: dict | None = None
    group: str | None = None
    group_owner: str | None = None
    group_owner_key: str | None = None
    # When the file's owner signed this record (microseconds, above the record it replaced: attack round
    # 50c (1)): of one epoch and binding, the later-signed one is the one the key mirror keeps.  Signed, at a
    # group's place only; None in records from before it.
    signed_at_us: int | None = None

    def signed_fields(self) -> dict:
        if self.sig is None:
            return {}
        return {"owner": self.owner, "fid": self.fid, "recipient": self.recipient, **self.group_fields(),
                "sig": self.sig}

    def group_fields(self) -> dict:
        """The group, its owner and her key the signature names (none: a key without them)."""
        if self.group is None:
            return {}
        keyed = {} if self.group_owner_key is None else {"group_owner_key": self.group_owner_key}
        stamped = {} if self.signed_at_us is None else {"signed_at_us": self.signed_at_us}
        return {"group": self.group, "group_owner": self.group_owner, **keyed, **stamped}


def _key_folder(folder: Path, make: bool = False) -> int:
    """An fd of a key file's folder, reached from the vault root with no link followed
    (vault/format/inside.py): a writer of the vault folder (no key) who made users/<id>/shared a link to
    /etc would have root's shared mount write (or remove) key files there.  The fd is what the key file
    is then written, read or removed relative to, so no link made meanwhile is followed either."""
    for place in folder.parents:
        if place.name in ("users", "groups"):
            return inside.open_dir(place.parent, folder.relative_to(place.parent).parts, make=make)
    raise CorruptData(f"refused a key file under {folder}: not a place of the vault folder")


def write_key(path: Path, epoch: int, sealed: bytes, replace: bool = True,
              signed: dict | None = None, *, mirrored: bool = False) -> bool:
    """Write a ``.vfkey``; ``replace=False``: only if there is none (else False);
    ``signed``: the owner's signature and what it names (vault/model/grants.py);
    ``mirrored``: written from its document by the sync's mirror, which records the
    two as agreeing: no cue to look at it again (``key_writes``)."""
    data = json.dumps({"epoch": epoch, "key": b64e(sealed), **(signed or {})}).encode()
    folder = _key_folder(path.parent, make=True)
    try:
        if replace:
            write_in(folder, path.name, data, durable=False)
        else:
            # Written aside, then linked into place: never over a key written meanwhile.
            temp = write_aside(folder, path.name, data, durable=False)
            try:
                os.link(temp, path.name, src_dir_fd=folder, dst_dir_fd=folder)
            except FileExistsError:
                return False
            finally:
                os.unlink(temp, dir_fd=folder)
    finally:
        os.close(folder)
    if not mirrored:
        _wrote_key()
    return True


def read_key(path: Path) -> KeyRecord | None:
    """The (epoch, sealed key, signature) of a ``.vfkey``, or None when there is none.

    Whoever may write the vault folder can put anything at the name: only a
    regular file of at most KEY_LIMIT bytes is read (no link followed, no pipe
    waited on, no socket or device opened); anything else is CorruptData, which
    every caller handles (the key sealed again, or the name skipped with a log
    line), never an OSError that stops a mount or the key mirror (attack round
    16 (2))."""
    try:
        folder = _key_folder(path.parent)
    except FileNotFoundError:
        return None
    try:
        kind = os.stat(path.name, dir_fd=folder, follow_symlinks=False).st_mode
        data = inside.read_in(folder, path.name, KEY_LIMIT) if stat.S_ISREG(kind) else None
    except FileNotFoundError:
        return None
    finally:
        os.close(folder)
    if data is None:
        raise CorruptData(f"{path.name} is no key file fusevault wrote (a link, a folder, a pipe, a socket, "
                          "or too big)")
    try:
        return key_record(loads_untrusted(data))
    except (ValueError, KeyError, TypeError):
        raise CorruptData(f"{path.name} is damaged") from None


def read_keys(paths: list[Path]) -> list[KeyRecord | None]:
    """Each key file's record, or None: none there, or no key file fusevault wrote."""
    out: list[KeyRecord | None] = []
    for path in paths:
        try:
            out.append(read_key(path))
        except CorruptData:
            out.append(None)
    return out


def key_record(data: dict) -> KeyRecord:
    """A key record from a ``.vfkey``'s JSON or a FileKey document (ValueError etc. if malformed)."""
    sig = data.get("sig") if "recipient" in data else None
    if sig is not None and not isinstance(sig, dict):
        raise ValueError("malformed signature")
    owner, fid, recipient = (data.get(k) for k in ("owner", "fid", "recipient"))
    if sig is not None and not all(isinstance(v, str) for v in (owner, fid, recipient)):
        raise ValueError("malformed signed fields")
    group, group_owner, owner_key = _group_fields(data) if sig else (None, None, None)
    stamp = _signed_at(data, group) if sig else None
    return KeyRecord(int(data["epoch"]), b64d(data["key"]), owner if sig else None, fid if sig else None,
                     recipient if sig else None, sig, group, group_owner, owner_key, stamp)


def _signed_at(data: dict, group: str | None) -> int | None:
    """A signed record's ``signed_at_us`` (attack round 50c (1)): a positive integer a CouchDB server keeps
    exactly (a whole float reads as the integer it equals, as the signature reads it), only in a record
    naming a group; absent: None.  Anything else is malformed."""
    value = data.get("signed_at_us")
    if value is None:
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if group is None or not isinstance(value, int) or isinstance(value, bool) \
            or not 0 < value <= SAFE_INTEGER:
        raise ValueError("malformed signing time")
    return value


def _group_fields(data: dict) -> tuple[str | None, str | None, str | None]:
    """A signed record's group, group owner and her signing key: both ids (32 hex digits) and the key
    (``owner_key_ok``) or no key (a key signed before 46c), or none of them (a key signed before they
    were bound, or one of a user's share); anything else is malformed (from the store or a peer: never a
    path, never a long string kept)."""
    group, group_owner, owner_key = data.get("group"), data.get("group_owner"), data.get("group_owner_key")
    if group is None and group_owner is None and owner_key is None:
        return None, None, None
    if not (is_id(group) and is_id(group_owner) and (owner_key is None or owner_key_ok(owner_key))):
        raise ValueError("malformed group fields")
    return group, group_owner, owner_key


def owner_key_ok(value: object) -> bool:
    """Whether ``value`` is a signing key as a key record names it: the canonical base64 of a raw
    Ed25519 public key (32 bytes, so 44 characters: bounded before it is decoded)."""
    if not isinstance(value, str) or len(value) != 44:
        return False
    try:
        return len(raw := b64d(value)) == 32 and b64e(raw) == value
    except (ValueError, TypeError):
        return False


def key_group(path: Path) -> str | None:
    """The group whose place a key file's path is (``groups/<gid>/own/<fid>/keys/<recipient>.vfkey``),
    or None (a user's place: ``users/<recipient>/shared/<owner>_<fid>.vfkey``)."""
    parts = path.parts
    if len(parts) >= 6 and parts[-2] == "keys" and parts[-4] == "own" and parts[-6] == "groups" \
            and is_id(parts[-5]):
        return parts[-5]
    return None


def remove_key(path: Path, keep_folder: bool = False, *, mirrored: bool = False) -> None:
    """Remove a ``.vfkey``.  A group file's folder goes with its last key, unless ``keep_folder``: a
    member's removal (``drop_group_keys``, and its deletion mirrored from a peer) leaves it, the trace
    that the group held keys of the file, which its owner's re-key follows to a file moved out of the
    group's share since (rotation.py ``_moved_out``)."""
    try:
        folder = _key_folder(path.parent)
    except FileNotFoundError:
        return
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path.name, dir_fd=folder)
    except OSError as err:
        # A folder (or anything unlink refuses) planted at a key's name is no key: CorruptData, as a
        # link on the way is, which the callers that remove many say and go on past (round 31a (1)).
        raise CorruptData(f"{path.name} is no key file fusevault wrote ({err.strerror or err})") from None
    finally:
        os.close(folder)
    if path.parent.name == "keys" and not keep_folder:
        drop_key_folder(path.parent)
    if not mirrored:  # as ``write_key``'s
        _wrote_key()


def discard_key(path: Path, keep_folder: bool = False) -> None:
    """``remove_key`` for one of many: a planted entry at the name (a folder, a link on the way) is no
    key; said and left, never the end of the unshare, re-key or member's removal that removes the
    others (attack round 31a (1), (2))."""
    try:
        remove_key(path, keep_folder)
    except CorruptData as err:
        log.warning("no key removed at %s: %s", path, err)


def drop_key_folder(keys: Path) -> None:
    """A group file's key folder (``groups/<gid>/own/<fid>/keys``), and the one above it, if empty."""
    with contextlib.suppress(OSError, CorruptData):
        for place in (keys, keys.parent):
            above = _key_folder(place.parent)
            try:
                os.rmdir(place.name, dir_fd=above)  # a link there: ENOTDIR, nothing removed
            finally:
                os.close(above)


ROTATION = "Rotation"


def rotation_doc(owner: str, fid: str, epoch: int) -> dict:
    """The request to give ``fid`` (and what is under it) new keys, made while its key epoch is
    ``epoch``: once that epoch is passed the request is done, and a replay of it asks for nothing.

    ``nonce``: random, signed with the rest, so that no two requests are ever the same bytes.  A
    group owner's request is remembered as done by what it signs (vault/model/rotations_done.py);
    without it, a second removal from the same group, made while the store showed him the same
    clear epoch, was byte for byte the first (Ed25519 is deterministic) and looked done: the
    removed member kept the file's key (attack round 21 (1))."""
    return {"_id": f"rotate-{fid}", "type": ROTATION, "owner": owner, "fid": fid, "epoch": epoch,
            "nonce": secrets.token_hex(16)}


def rotations(store: Store, grants: list[Grant], sign: Callable[[dict], dict] | None = None) -> list[dict]:
    """``Rotation`` documents for shares someone lost without their owner
    (a member leaving a group, a user removed): the owner's next unlock gives
    those files new keys (``rotation.resume``).  ``sign``: the group owner's
    key (a member's removal), which the file's owner trusts for a file she
    shared with that group; an administrator's (``user remove``) is unsigned:
    its owner is told, and revokes with ``unshare`` (rotation.py ``_request``)."""
    docs = {}
    for grant in grants:
        doc_id_ = f"rotate-{grant.fid}"
        if doc_id_ in docs:
            continue
        pending = store.get(doc_id_)
        if pending is not None and sign is None:
            continue  # one is pending already; an unsigned one adds nothing to it
        doc = rotation_doc(grant.owner, grant.fid, _clear_epoch(store, grant.fid))
        if pending is not None:
            # A signed request replaces whatever stands under its id: an unsigned one there (a store
            # writer's, planted first) is never acted on, and would have kept the removed member's
            # key in force (attack round 19 (7)); a signed one asks for the same re-key.
            doc["_rev"] = pending["_rev"]
        docs[doc_id_] = doc
    return [sign(d) for d in docs.values()] if sign is not None else list(docs.values())


def _clear_epoch(store: Store, fid: str) -> int:
    """The key epoch the file's document shows (0 if it has none that reads)."""
    doc = store.get(fid)
    epoch = doc.get("epoch", 0) if doc is not None else 0
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0 else 0


def drop_group_keys(layout: Layout, group_id: str, user_id: str) -> None:
    """Remove every key of a group's files sealed to one (departing) member."""
    own = layout.group_dir(group_id) / "own"
    try:
        fids = os.listdir(own)
    except FileNotFoundError:
        return
    for fid in fids:
        if is_id(fid):  # only what fusevault names there
            discard_key(group_key_path(layout, group_id, fid, user_id), keep_folder=True)


def acl_lines(grants: list[Grant]) -> list[str]:
    """Seed 003's sidecar ``ACL``: ``<user or group id>:<perm>``."""
    return sorted(f"{g.grantee}:{g.perm}" for g in grants)


def shared_files(grants: list[Grant], user_id: str) -> list[str]:
    """Seed 003's user ``SHARED_FILES``: ``<owner>:<fid>:<perm>`` of each share with them."""
    return sorted(f"{g.owner}:{g.fid}:{g.perm}" for g in grants if not g.group and g.grantee == user_id)
