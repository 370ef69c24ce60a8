"""Signed grants: which Share, Group and ``.vfkey`` a reader acts on.

- A ``Share`` counts only if it verifies as signed by its ``owner`` (under
  the key this user pinned for them, vault/model/trust.py); that the owner also
  owns the node it names is checked where the node is known
  (``Guests.covering`` and ``perm``, vault/tree/guests.py).
- A ``Group`` counts (its memberships reach anyone) only if signed by the
  group's ``owner``, and that owner is the one this user pinned for the
  group when they first met it (``Trust.admit_groups``): a member, or a user
  the store writer planted, cannot re-sign it in their own name.
- A ``.vfkey`` (and its ``FileKey`` mirror document) carries the file
  owner's signature over ``{"_id": "vfkey:<owner>:<fid>:<recipient>",
  "epoch", "key", "owner", "fid", "recipient"[, "group", "group_owner"[,
  "group_owner_key"[, "signed_at_us"]]]}``:
  the sealed key, its epoch and for whom, so a key sealed by anyone else
  (a server, another recipient) is not used, and a forged key with a higher
  epoch never replaces the genuine one.  A key sealed for a member of a
  group also names the group (it is used only at that group's place: a
  copy at another place is refused) and the group's owner and her signing
  key as the file's owner pinned them, the root the key mirror (no pins)
  checks a removal of the member from the group by (attack round 44b (1),
  46c (1): never the store's user document of that owner).  A key signed
  before these were (none named) still verifies, at any place, but is no
  reason to re-key a file when met at a group's place (46c (2): it may be a
  user's share's key copied there).  Since attack round 50c (1) such a key also signs in when she signed
  it (``signed_at_us``, above the record it replaced): of one epoch, the key mirror keeps the record
  signed last, so her older record naming the group owner's older key never wins over her re-signed one.

Refusals are alarms (``Trust.checked`` / ``Alarms.warn``): in the log and
in ``fusevault status``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Iterable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fusevault.crypto.signing import verify_doc
from fusevault.encoding import SAFE_INTEGER, b64d, b64e
from fusevault.errors import Forged, VaultError
from fusevault.store import Store
from fusevault.vault.model import freshness, shapes, sharing
from fusevault.vault.model.groups import GROUP
from fusevault.vault.model.sharing import Grant, KeyRecord
from fusevault.vault.model.trust import Trust, self_signed

log = logging.getLogger(__name__)


def signed_by_owner(trust: Trust | None, doc: dict, what: str) -> bool:
    """Whether ``doc`` (a Share or Group) is signed by the user it names as its owner."""
    if trust is None:
        return True  # no key pairs: nothing is sealed by this user anyway
    owner = doc.get("owner")
    signer = trust.checked(doc, owner if isinstance(owner, str) else None, what)
    if signer is None:
        return False
    if signer != owner:
        trust.alarms.warn("forged", str(doc.get("_id")), f"refused {what} {doc.get('_id')}: signed by "
                          f"{signer}, not by its owner {owner}")
        return False
    return True


class SharesChecked:
    """The Share documents of the store, each with what checking it gave (its grant, or None: refused),
    kept between reloads of one user's grants (``Guests.checked``): a reload given what changed reads and
    checks again only those, and the Shares of an owner whose pin (or legacy standing) changed since.

    Read whole at every change of any Share, Group or user document, for every unlocked seat, on the
    loop that serves every user's files, 2,000 Shares cost a shared mount ~0.25 s a `config set` (attack
    round 69d (2)).  Each body's check depends on that body, on its owner's pin (``Trust.pin``,
    ``Trust.legacy``: the signature) and on this device's memory of its id (``Freshness``: changed only
    by a commit or an arrival of that id, or a sweep of it once deleted): so a body checked stays checked
    while none of these changes."""

    def __init__(self) -> None:
        self.filled = False  # read whole once (``verified_grants`` without ``changed``)
        self.by_id: dict[str, tuple[str, Grant | None]] = {}  # id -> (owner, grant or None)
        self._owned: dict[str, set[str]] = {}  # owner -> ids of her Shares
        self._under: dict[str, object] = {}  # owner -> her standing (pin, legacy) they were checked under
        self.admitted_by: object = None  # the Freshness they were admitted by

    def clear(self) -> None:
        self.by_id.clear()
        self._owned.clear()
        self._under.clear()

    def drop(self, doc_id: str) -> None:
        owner = self.by_id.pop(doc_id, (None, None))[0]
        if owner is not None and (ids := self._owned.get(owner)) is not None:
            ids.discard(doc_id)
            if not ids:
                del self._owned[owner], self._under[owner]

    def fetched(self, store: Store, ids: Iterable[str], alarms) -> dict[str, dict]:
        """The live, well-formed Share bodies the store holds now at ``ids`` (each dropped from the book
        meanwhile: it is checked again, or gone)."""
        bodies = {}
        for doc_id in ids:
            self.drop(doc_id)
            try:
                doc = store.get(doc_id)
            except VaultError as err:  # a row that does not read: no Share
                log.warning("share %s is left out: %s", doc_id, err)
                continue
            if doc is not None and not doc.get("_deleted") and doc.get("type") == sharing.SHARE \
                    and shapes.ok(doc, alarms, sharing.SHARE):
                bodies[doc_id] = doc
        return bodies

    def standing_changed(self, trust: Trust | None) -> list[str]:
        """Ids of the Shares whose owner's standing is not the one they were checked under."""
        return [doc_id for owner, then in list(self._under.items()) if _standing(trust, owner) != then
                for doc_id in list(self._owned.get(owner, ()))]

    def check(self, doc: dict, trust: Trust | None, fresh: freshness.Freshness | None) -> None:
        """``doc``'s signature and freshness checked, the outcome kept."""
        grant = None
        if signed_by_owner(trust, doc, "share") and freshness.admitted(fresh, [doc], "share"):
            try:
                grant = sharing.grant_of(doc)
            except VaultError:
                grant = None
        doc_id, owner = doc["_id"], doc["owner"]
        self.by_id[doc_id] = (owner, grant)
        self._owned.setdefault(owner, set()).add(doc_id)
        self._under[owner] = _standing(trust, owner)

    def grants(self) -> list[Grant]:
        return [grant for _, grant in self.by_id.values() if grant is not None]


def _standing(trust: Trust | None, owner: str) -> object:
    return None if trust is None else (trust.pin(owner), trust.legacy(owner))


def verified_grants(store: Store, trust: Trust | None, book: SharesChecked | None = None,
                    changed: Collection[str] | None = None) -> tuple[list[Grant], dict[str, dict]]:
    """The Shares and Groups (id -> document) of the store that their owners
    signed, less the older bodies of ones this device saw (vault/model/freshness.py).

    ``book``: the Shares checked at the last call (``SharesChecked``); with ``changed`` (the ids of the
    documents committed since), only those of them and the Shares of an owner whose standing changed are
    read and checked again: the cost of a change is what changed (attack round 69d (2)).  The Groups are
    read whole (as the users are, ``Guests.reload``): their checks are over the whole set (a group's
    name pinned against the others', ``Trust.admit_groups``), and a vault holds few."""
    alarms = trust.alarms if trust is not None else None
    fresh = trust.fresh if trust is not None else None
    book = book if book is not None else SharesChecked()
    if changed is None or not book.filled or book.admitted_by is not fresh:
        book.clear()
        bodies = {d["_id"]: d for d in shapes.well_formed(store, sharing.SHARE, alarms)}
    else:
        bodies = book.fetched(store, changed, alarms)
    groups = list(shapes.well_formed(store, GROUP, alarms))
    if fresh is not None:
        fresh.sweep(book.by_id.keys() | bodies.keys() | {d["_id"] for d in groups})
    if book.filled:
        again = [doc_id for doc_id in book.standing_changed(trust) if doc_id not in bodies]
        bodies.update(book.fetched(store, again, alarms))
    for doc in bodies.values():
        book.check(doc, trust, fresh)
    book.filled, book.admitted_by = True, fresh
    signed = [g for g in groups if signed_by_owner(trust, g, "group")]
    if trust is not None:  # the owner it names must be the one pinned for the group (vault/model/trust.py)
        signed = trust.admit_groups(signed)
    return book.grants(), {g["_id"]: g for g in freshness.admitted(fresh, signed, "group")}


# What a key sealed through a group signs in: (the group, its owner[, her signing key as the file's owner
# pinned it: base64 of the raw Ed25519 public key]).  The key is the root the key mirror checks that
# owner's bodies by (attack round 46c (1)); a record of 67f51c6 names the two ids only.
GroupBinding = tuple[str, str] | tuple[str, str, str]
_BINDING = ("group", "group_owner", "group_owner_key")


def bound_fields(group: GroupBinding | None) -> dict:
    """A binding's fields as a key record and its signed document hold them."""
    return dict(zip(_BINDING, group, strict=False)) if group is not None else {}


def record_doc(owner: str, fid: str, recipient: str, epoch: int, key: bytes,
               group: GroupBinding | None = None, signed_at_us: int | None = None) -> dict:
    """What a key's signature covers (the ``_id`` names the place, never stored); ``group``: the group
    id, its owner and her signing key, for a key sealed to a member of it (a key signed without them
    verifies as before: they are no fields of its document); ``signed_at_us``: when she signed it (with a
    group only: ``signing_time``)."""
    stamped = {"signed_at_us": signed_at_us} if signed_at_us is not None else {}
    return {"_id": f"vfkey:{owner}:{fid}:{recipient}", "epoch": epoch, "key": b64e(key),
            "owner": owner, "fid": fid, "recipient": recipient, **bound_fields(group), **stamped}


def signing_time(path: Path, now_us: int | None = None) -> int:
    """The ``signed_at_us`` of a record about to be written at ``path``: now, and above the record there (the
    one it replaces, whatever its signer's clock said: her other device's clock ahead of this one's), so of
    one epoch the record signed last ranks above the one it replaced at the key mirror (attack round 50c
    (1)); at most ``SAFE_INTEGER`` (a record there claiming more is answered by that: no later one ranks
    above it, and the mirror keeps either of two equal ones)."""
    now = time.time_ns() // 1000 if now_us is None else now_us
    try:
        there = sharing.read_key(path)
    except VaultError:
        there = None
    before = there.signed_at_us if there is not None and there.signed_at_us is not None else 0
    return min(max(now, before + 1), SAFE_INTEGER)


def group_of(found: KeyRecord) -> GroupBinding | None:
    """The (group, group owner[, her key]) a signed key record names, or None."""
    if found.group is None or found.group_owner is None:
        return None
    if found.group_owner_key is None:
        return found.group, found.group_owner
    return found.group, found.group_owner, found.group_owner_key


def write_signed_key(trust: Trust | None, path: Path, owner: str, fid: str, recipient: str, epoch: int,
                     sealed: bytes, replace: bool = True, group: GroupBinding | None = None) -> bool:
    """``group``: (the group, its owner, her signing key, as this user pinned them) for a key at that
    group's place."""
    signed = None
    if trust is not None:
        stamp = signing_time(path) if group is not None else None
        record = record_doc(owner, fid, recipient, epoch, sealed, group, stamp)
        sig = trust.sign(record)["sig"]
        signed = {k: v for k, v in record.items() if k not in ("_id", "epoch", "key")} | {"sig": sig}
    return sharing.write_key(path, epoch, sealed, replace, signed)


def bound_elsewhere(found: KeyRecord, group: str | None) -> bool:
    """Whether a signed record names a group other than the one whose place it is at (``group``; None: a
    user's place).  One naming none (signed before groups were bound) is at home anywhere, as then."""
    return found.group is not None and found.group != group


def key_signed(trust: Trust, found: KeyRecord, owner: str, fid: str, recipient: str,
               group: str | None) -> bool:
    """Whether a key record was sealed by the file's owner (as this user pinned them) for ``recipient``,
    at the place of ``group`` (None: a user's share's place)."""
    subject = f"vfkey:{owner}:{fid}:{recipient}"
    if found.sig is None:
        if trust.legacy(owner):
            return True  # from before signatures: the owner's next unlock signs it again
        trust.alarms.warn("forged-key", subject, f"refused an unsigned key of file {fid} for {recipient}")
        return False
    if (found.owner, found.fid, found.recipient) != (owner, fid, recipient):
        trust.alarms.warn("forged-key", subject, f"refused a key of file {fid}: it was made for another "
                          "file, owner or recipient")
        return False
    if bound_elsewhere(found, group):
        trust.alarms.warn("forged-key", subject, f"refused a key of file {fid} for {recipient}: it was "
                          f"made for group {found.group}, and is at the place of "
                          f"{'group ' + group if group else 'a share with a user'}")
        return False
    doc = {**record_doc(owner, fid, recipient, found.epoch, found.key, group_of(found), found.signed_at_us),
           "sig": found.sig}
    signer = trust.checked(doc, None, "file key")
    if signer is not None and signer != owner:
        trust.alarms.warn("forged-key", subject, f"refused a key of file {fid} sealed by {signer}, "
                          "not by the file's owner")
    return signer == owner


def owners_key(store: Store, owner: object) -> Ed25519PublicKey | None:
    """The signing key of ``owner`` as their self-signed user document in the store names it
    (the key mirror serves every user, so it has no pins), or None."""
    user = store.get(owner) if isinstance(owner, str) else None
    if user is None or user.get("_deleted") or not self_signed(user):
        return None
    try:
        return Ed25519PublicKey.from_public_bytes(b64d(user["public_sign"]))
    except (KeyError, ValueError, TypeError):
        return None


def signed_under(doc: dict, signer: str, public_b64: str) -> bool:
    """Whether ``doc`` is signed by ``signer`` under exactly the key ``public_b64`` (a key record's
    ``group_owner_key``: the group owner's key as the file's owner pinned it), whatever user document
    the store holds for ``signer`` (the server's to replace: attack round 46c (1))."""
    try:
        return verify_doc(Ed25519PublicKey.from_public_bytes(b64d(public_b64)), doc) == signer
    except (Forged, KeyError, ValueError, TypeError):
        return False


def signed_in_store(store: Store, doc: dict, signer: object) -> bool:
    """Whether ``doc`` is signed by ``signer`` under the key of their self-signed user document."""
    public = owners_key(store, signer)
    if public is None:
        return False
    try:
        return verify_doc(public, doc) == signer
    except (Forged, KeyError, ValueError, TypeError):
        return False


def owner_named(store: Store, found: KeyRecord, fid: str) -> object:
    """Whose a record of file ``fid`` is taken to be: the owner the file's node document names (the
    record's own ``owner`` while no node is here).  The server's to serve: unchecked here."""
    node = store.get(fid)
    return node.get("owner") if node else found.owner


def judged_by(store: Store, found: KeyRecord, fid: str) -> tuple[object, dict | None]:
    """Whom ``genuine_in_store`` judges a record of file ``fid`` under: ``owner_named``, and that owner's
    user document (None: none, or deleted).  Both the server's to serve: unchecked here (the key mirror
    has no pins of users' own)."""
    owner = owner_named(store, found, fid)
    user = store.get(owner) if isinstance(owner, str) else None
    if user is not None and user.get("_deleted"):
        user = None
    return owner, user


def genuine_under(found: KeyRecord, owner: str, public_b64: str, fid: str, recipient: str,
                  group: str | None) -> bool:
    """Whether a signed key record was signed by ``owner`` under exactly the key ``public_b64`` for
    ``recipient`` of file ``fid``, naming no group but ``group`` (the one whose place it is; None: a
    user's place): a key the mirror pinned (``KeyMirror``: the signer and key that made the key held
    there genuine when it was written, attack round 53c (4)), whatever node or user document the store
    holds now.  An unsigned record never is."""
    if found.sig is None or (found.owner, found.fid, found.recipient) != (owner, fid, recipient) \
            or bound_elsewhere(found, group):
        return False
    doc = {**record_doc(owner, fid, recipient, found.epoch, found.key, group_of(found), found.signed_at_us),
           "sig": found.sig}
    return signed_under(doc, owner, public_b64)


def genuine_in_store(store: Store, found: KeyRecord, fid: str, recipient: str, group: str | None) -> bool:
    """The key mirror's check of a key it has no pin for (it serves every user, so it has no pins of
    users): the record is signed by the owner the file's node document names, under the key of that
    owner's self-signed user document (``judged_by``), and names no group but ``group`` (the one whose
    place it is; None: a user's place).  Unsigned only while the owner's user document is from before
    signatures."""
    owner, user = judged_by(store, found, fid)
    if found.sig is None:  # nothing to check it with, or an owner from before signatures
        return user is None or not self_signed(user)
    if user is None or not isinstance(owner, str) or found.owner != owner \
            or (found.fid, found.recipient) != (fid, recipient) or bound_elsewhere(found, group) \
            or not self_signed(user) or not isinstance(user.get("public_sign"), str):
        return False
    return genuine_under(found, owner, user["public_sign"], fid, recipient, group)
