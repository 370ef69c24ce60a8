"""Whose keys a user trusts, and the check every signed document passes first.

The rule: a document that grants, writes or configures is acted on only if
it carries the signature of its author (``crypto/signing.py``) under a key
the reader already trusts:

- the reader's own keys, opened from their UserDetails with their master
  key (so no one else can have made them);
- another user's keys, pinned the first time this user meets them (trust on
  first use) in a ``Pins`` document sealed with the user's private-document
  key, which travels to their other devices.  ``fusevault user show NAME``
  prints the fingerprint to compare out of band; a user document whose keys
  differ from the pinned ones is refused (an alarm naming the user) and the
  pinned keys stay the only ones used, until the person re-pins with
  ``fusevault user trust NAME --fingerprint F``.

Documents from before signatures (vault format 2) are accepted unsigned
from an author who has not signed anything yet: their user document is
unsigned and this user never saw a signed one of theirs (``signs`` in the
pin, which never goes back).  An author's first unlock with this fusevault
signs what was theirs (``vault/model/migrate.py``); from then on an unsigned
document in their name is a forgery.

An unsigned user met for the first time is taken as "from before
signatures" only at this user's first unlock with pins (the one that met
every user of a format-2 vault); one that appears later was made after
signatures came (new users are signed from birth), so its unsigned
documents are refused.

Names and groups are pinned too, since the store's order is its writer's to
choose: a user document that claims the name of a pinned user whose document
is still there (or a name two new documents claim) is not pinned (an alarm),
so ``share --with NAME`` resolves to the pinned one (``trusted_user``); a
group's owner is pinned the first time the group is met (``admit_groups``),
and a Group document naming another owner (a member, or a user the store
writer planted, re-signing it in their own name) is refused, as is a new
group with the name of a pinned one.  A pinned user (group) whose signed
document claims a name another pin holds keeps the pinned name (an alarm),
so deleting the holder's document and renaming oneself does not take it.

Pins document (``_id`` ``pins-<user id>``, ``type`` ``Pins``, ``owner``):
``enc`` seals ``{user id: {"username", "box", "sign", "signs", "pinned_at"
[, "repinned": true]}, "~groups": {group id: {"owner", "name", "pinned_at"
[, "disputed": [user id, ...]]}}}``
with AD ``ad("Pins", owner, _id)``.  The same map is kept, sealed with the
device-state key, outside the vault (``paths.state_dir()/pins/<hash of vault
dir and user>``), since a writer of the store can delete or roll back the
document: both are merged at load and at save (``_merge``), and pins the
store lost are said (alarm) and kept.

The Pins document is the user's own, but what another device of theirs
pinned at first sight is only what the server showed it (a forged user
document, with this device's pins withheld): so a pin this device holds is
replaced by another device's pin with other keys only if that one is an
explicit re-pin (``repinned``: ``fusevault user trust``) and this one is not,
whatever the times (a device's first sight may come after her re-pin), or
both are re-pins and theirs is the later; otherwise this device keeps its
own and says the keys changed.  ``signs`` is never taken back by a merge.
A group has no re-pin: a group pin naming this user as the owner wins (only
her key signs her group, so no device of hers pinned that from a forgery);
two devices naming two other owners leave the group refused (``disputed``,
kept in the pins so every device refuses it) until she settles it, for which
there is no command yet.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from fusevault import paths
from fusevault.crypto.keys import MasterKey
from fusevault.crypto.signing import Verified, checked_before, sign_doc, signer_of, verify_doc
from fusevault.encoding import b64d, b64e, loads_untrusted
from fusevault.errors import CorruptData, Forged, VaultError
from fusevault.store import Store
from fusevault.vault.model import device_file
from fusevault.vault.model.alarms import Alarms, for_user
from fusevault.vault.model.freshness import Freshness, stamp

log = logging.getLogger(__name__)

PINS = "Pins"
USER = "UserDetails"


@dataclass(frozen=True)
class Pin:
    username: str
    box: str  # base64 of the raw X25519 public key
    sign: str  # base64 of the raw Ed25519 public key
    signs: bool  # a signed user document of theirs was seen: unsigned ones are forged since
    pinned_at: int
    # Pinned by `fusevault user trust` after comparing fingerprints (not at first sight):
    # the only pin of other keys another device of this user's takes over its own.
    repinned: bool = False


@dataclass(frozen=True)
class GroupPin:
    owner: str  # the user id that signs the group: never another, whoever the document names
    name: str
    pinned_at: int
    # Owners other devices of this user pinned for the group (none of them her): while any
    # is, the group is refused (``admit_groups``), since no device knows which is right.
    disputed: tuple[str, ...] = ()


GROUPS_KEY = "~groups"  # in the pins' plain text: never a user id (those are hex)


def fingerprint(box_b64: str, sign_b64: str) -> str:
    """What two people compare: SHA-256 of both public keys, 80 bits in groups of four."""
    try:
        raw = b64d(box_b64) + b64d(sign_b64)
    except (ValueError, TypeError):
        return "(malformed keys)"
    digest = hashlib.sha256(b"fusevault fingerprint v1\0" + raw).hexdigest()[:20]
    return " ".join(digest[i:i + 4] for i in range(0, 20, 4))


def doc_fingerprint(user_doc: dict) -> str:
    return fingerprint(str(user_doc.get("public_box")), str(user_doc.get("public_sign")))


def self_signed(user_doc: dict) -> bool:
    """Whether a user document is signed by the signing key it names."""
    try:
        if signer_of(user_doc) != user_doc.get("_id"):
            return False
        verify_doc(Ed25519PublicKey.from_public_bytes(b64d(user_doc["public_sign"])), user_doc)
    except (Forged, KeyError, ValueError, TypeError):
        return False
    return True


class Trust:
    """One unlocked user's trusted keys; signs their documents and checks others'."""

    def __init__(self, store: Store, key: MasterKey, alarms: Alarms | None = None,
                 root: Path | str | None = None) -> None:
        if key.identity is None:
            raise CorruptData("signing needs the user's key pairs")
        self.store = store
        self.key = key
        self.user_id = key.user_id
        self.identity = key.identity
        self.alarms = alarms if alarms is not None else for_user(key.user_id)
        own = self.identity.public_fields()
        self._own = Pin("", own["public_box"], own["public_sign"], True, 0)
        self._pins: dict[str, Pin] = {}
        self._groups: dict[str, GroupPin] = {}
        self._dirty = False
        self._root = root  # the vault's directory: where the device copy of the pins belongs
        # Signatures this device checked before (vault/model/verified.py), set by a load.
        self.verified: Verified | None = None
        self._sign_keys: dict[str, Ed25519PublicKey] = {}
        # Whether this user had pins before this unlock (store or device): then an
        # unsigned user met now is not one from before signatures.
        self.had_pins = False
        # Whether this user's own documents are all signed (vault/model/migrate.py
        # clears it until the unlock that signs them has run).
        self.own_signed = True
        # This device's newest Share/Group bodies seen (vault/model/freshness.py), where known.
        self.fresh: Freshness | None = None
        self._load()

    # --- the pins document

    @property
    def pins_id(self) -> str:
        return f"pins-{self.user_id}"

    def _load(self) -> None:
        doc = self.store.get(self.pins_id)
        stored: dict[str, Pin] | None = None
        stored_groups: dict[str, GroupPin] = {}
        if doc is not None and not doc.get("_deleted"):
            try:
                plain = self.key.unseal_private(PINS, self.pins_id, b64d(doc["enc"]))
                stored, stored_groups = _pins_of(plain), _group_pins_of(plain)
            except (VaultError, KeyError, ValueError, TypeError):
                self.alarms.warn("pins", self.pins_id, "this user's pinned keys of others were damaged or "
                                 "replaced in the store: the copy kept on this device is used")
        device, device_groups = self._read_device()
        self.had_pins = stored is not None or device is not None
        merged = self._merge(device or {}, stored or {})
        groups = self._merge_groups(device_groups, stored_groups)
        if device is not None and (_lost(device, stored or {}) or _lost(device_groups, stored_groups)):
            # The store lost pins this device kept (deleted, rolled back, damaged): ours hold.
            self.alarms.warn("pins-lost", self.pins_id, "pins this device kept are missing or older in "
                             "the store (deleted or rolled back): the ones kept on this device are used")
        self._pins = merged
        self._groups = groups
        self._dirty = (merged != (stored or {}) or device != merged or not self.had_pins
                       or groups != stored_groups or device_groups != groups)

    # --- the copy outside the vault

    def _device_file(self) -> tuple[Path, str] | None:
        if self._root is None:
            return None
        name = hashlib.sha256(f"{os.path.realpath(self._root)}\0{self.user_id}".encode()).hexdigest()[:32]
        return paths.state_dir() / "pins" / name, name

    def _read_device(self) -> tuple[dict[str, Pin] | None, dict[str, GroupPin]]:
        found = self._device_file()
        if found is None:
            return None, {}
        path, name = found
        try:
            # One that does not read (a link, a FIFO, another user's file, one too large) is damaged.
            plain = device_file.read_sealed(path, self.key, PINS, name=name)
            if plain is None:
                return None, {}
            return _pins_of(plain), _group_pins_of(plain)
        except (device_file.Damaged, VaultError, KeyError, ValueError, TypeError):
            self.alarms.warn("pins", str(path), "the pins kept on this device were damaged or replaced: "
                             "the store's are used")
            return {}, {}

    def _write_device(self, plain: bytes) -> None:
        found = self._device_file()
        if found is None:
            return
        path, name = found
        device_file.write(path, self.key, PINS, plain, name=name)

    def save(self) -> None:
        """Write the pins if new ones were made (call off the trio loop)."""
        if self.fresh is not None:
            self.fresh.save()
        if not self._dirty:
            return
        current = self.store.get(self.pins_id)
        merged, groups = dict(self._pins), dict(self._groups)
        if current is not None and not current.get("_deleted"):
            try:  # another device's pins: theirs are added, ours stay (but for its later re-pins)
                plain = self.key.unseal_private(PINS, self.pins_id, b64d(current["enc"]))
                merged = self._merge(self._pins, _pins_of(plain))
                groups = self._merge_groups(self._groups, _group_pins_of(plain))
            except (VaultError, KeyError, ValueError, TypeError):
                pass
        plain = json.dumps({**{uid: _pin_fields(p) for uid, p in merged.items()},
                            GROUPS_KEY: {gid: _group_fields(g) for gid, g in groups.items()}},
                           sort_keys=True).encode()
        doc = {"_id": self.pins_id, "type": PINS, "owner": self.user_id,
               "enc": b64e(self.key.seal_private(PINS, self.pins_id, plain))}
        if current is not None:
            doc["_rev"] = current["_rev"]
        self.store.put_many([self.sign(doc)])
        self._write_device(plain)  # after the store: both hold at least what was pinned
        self._pins = merged
        self._groups = groups
        self._dirty = False

    def _merge(self, ours: dict[str, Pin], theirs: dict[str, Pin]) -> dict[str, Pin]:
        """This device's pins (``ours``) with another copy's (the store's: another device's).

        Theirs are taken for users this device has not pinned.  Of a user pinned in
        both with other keys, theirs replaces ours only if it is an explicit re-pin
        (``fusevault user trust``) and ours is a first-sight pin (whatever the times), or
        both are re-pins and theirs is the later; a pin of theirs made at first sight is
        only what the server showed that device, so ours stays and the change is said.
        With the same keys ours stays, ``signs`` set if either saw the user sign and
        ``repinned`` if theirs is (so the re-pin travels on to her other devices)."""
        merged = dict(ours)
        for uid, pin in theirs.items():
            mine = merged.get(uid)
            if mine is None:
                merged[uid] = pin
            elif (pin.box, pin.sign) == (mine.box, mine.sign):
                if pin.repinned and not mine.repinned:  # the same keys, verified there: say so here too
                    merged[uid] = replace(mine, signs=pin.signs or mine.signs, pinned_at=pin.pinned_at,
                                          repinned=True)
                elif pin.signs and not mine.signs:
                    merged[uid] = replace(mine, signs=True)  # never goes back
            elif pin.repinned and (not mine.repinned or pin.pinned_at > mine.pinned_at):
                # What she verified outranks what a server showed a device first, whatever the
                # times (a device's first sight may come after her re-pin); of two re-pins the later.
                merged[uid] = replace(pin, signs=True) if mine.signs else pin
            else:
                self.alarms.warn("pin-differs", uid, f"the keys of user {mine.username!r} changed: another "
                                 "device of this user pinned other keys for them, "
                                 + ("at first sight, not with `fusevault user trust`: "
                                    if not pin.repinned else "with an earlier `fusevault user trust`: ")
                                 + "the ones pinned on this device are kept, "
                                 "nothing is shared with the others (check with them, then "
                                 f"`fusevault user trust {mine.username} --fingerprint ...`)")
        return merged

    def _merge_groups(self, ours: dict[str, GroupPin], theirs: dict[str, GroupPin]) -> dict[str, GroupPin]:
        """As ``_merge`` for groups, which have no re-pin.  A pin naming this user as the
        owner wins (only her key signs her group: no device of hers pinned it from a forgery);
        of other owners, none wins: the pin keeps this device's owner and lists the others
        (``disputed``), and the group is refused while they differ."""
        merged = dict(ours)
        for gid, pin in theirs.items():
            mine = merged.get(gid)
            if mine is None:
                merged[gid] = pin
                continue
            owners = {mine.owner, *mine.disputed, pin.owner, *pin.disputed}
            if len(owners) == 1:
                continue
            if self.user_id in owners:
                hers = pin if pin.owner == self.user_id and mine.owner != self.user_id else mine
                merged[gid] = GroupPin(self.user_id, hers.name, hers.pinned_at)
                self.alarms.warn("group-owner-changed", gid, "a device of this user pinned "
                                 f"{', '.join(sorted(owners - {self.user_id}))} as the owner of group "
                                 f"{hers.name!r} ({gid}), which is this user's own: it stays hers (a "
                                 "Group document naming another owner is refused)")
                continue
            disputed = tuple(sorted(owners - {mine.owner}))
            if disputed != mine.disputed:
                merged[gid] = replace(mine, disputed=disputed)
            self.alarms.warn("group-owner-changed", gid, f"this user's devices pinned different owners of "
                             f"group {mine.name!r} ({gid}): {', '.join(sorted(owners))}: it is refused "
                             "(nothing is sealed to it) until this is settled")
        return merged

    # --- meeting users

    def observe(self, users: Iterable[dict]) -> None:
        """Pin users met for the first time; refuse (and say) keys that changed."""
        users = [d for d in users if not d.get("_deleted")]
        clashes = self._name_clashes(users)
        for doc in users:
            uid = doc.get("_id")
            if not isinstance(uid, str) or doc.get("_deleted") or uid == self.user_id:
                continue
            box, sign = doc.get("public_box"), doc.get("public_sign")
            if not isinstance(box, str) or not isinstance(sign, str):
                continue  # a user from before key pairs: nothing to pin yet
            signed = self_signed(doc)
            if "sig" in doc and not signed:
                self.alarms.warn("forged-user", uid, f"the document of user {doc.get('username')!r} "
                                 "carries a signature that does not hold: it is ignored")
                continue
            pin = self._pins.get(uid)
            if pin is None and uid in clashes:
                self.alarms.warn("name-taken", uid, f"a new user document ({uid}) claims the name "
                                 f"{doc.get('username')!r}, which {clashes[uid]}: it is not trusted "
                                 "(compare fingerprints, then `fusevault user trust` it if it is genuine)")
                continue
            if pin is None:
                # Unsigned and new to a user who had pins: made after signatures came, so not legacy.
                # Nor to one who signs already (made signed, or migrated on another device): her first
                # unlock here is no migration's, and a user she meets unsigned is a stripped one (a new
                # member's first mount took any store writer's unsigned grants in their name: 40c (3)).
                legacy_ok = signed or not (self.had_pins or self.identity.signs)
                if not legacy_ok:
                    self.alarms.warn("unsigned-user", uid, f"the document of user {doc.get('username')!r}, "
                                     "first met now, is not signed: nothing unsigned is taken in their name")
                self._pins[uid] = Pin(str(doc.get("username")), box, sign, not legacy_ok or signed,
                                      int(time.time()))
                self._dirty = True
            elif (pin.box, pin.sign) != (box, sign):
                self.alarms.warn("key-changed", uid, f"the keys of user {pin.username!r} changed since "
                                 "they were pinned on this device: nothing is shared with the new keys "
                                 f"(check with them, then `fusevault user trust {pin.username} --fingerprint "
                                 "...`)")
            elif pin.signs and not signed:
                self.alarms.warn("unsigned-user", uid, f"an unsigned document of user {pin.username!r} "
                                 "replaced their signed one: it is ignored")
            elif signed and (not pin.signs or pin.username != doc.get("username")):
                name = str(doc.get("username"))
                if name != pin.username and (why := self._rename_clash(uid, name, users)):
                    # Renaming oneself to a name another holds (their document deleted or not)
                    # would make ``share --with`` that name seal to the renamed one.
                    self.alarms.warn("name-taken", uid, f"user {pin.username!r} ({uid}) now claims the name "
                                     f"{name!r}, which {why}: they keep the name {pin.username!r} here")
                    name = pin.username
                if (pin.signs, pin.username) != (True, name):
                    self._pins[uid] = replace(pin, username=name, signs=True)
                    self._dirty = True

    def _rename_clash(self, uid: str, name: str, users: list[dict]) -> str | None:
        """Why the pinned user ``uid`` may not take ``name``: another pinned user holds
        it (whether their document is there or gone), or another document claims it."""
        for other, pin in self._pins.items():
            if other != uid and pin.username == name:
                return f"the pinned user {other} holds"
        for doc in users:
            if doc.get("_id") != uid and doc.get("username") == name:
                return f"the user document {doc.get('_id')} claims too"
        return None

    def _name_clashes(self, users: list[dict]) -> dict[str, str]:
        """Users not pinned yet whose name another user holds: one present, or one
        pinned whose document is gone (deleting it must not free the name for an
        impostor): id -> why.  The store's order is its writer's: a name is never
        given to whichever comes first."""
        by_name: dict[str, list[str]] = {}
        for doc in users:
            if isinstance(doc.get("_id"), str):
                by_name.setdefault(str(doc.get("username")), []).append(doc["_id"])
        out = {}
        present = {doc.get("_id") for doc in users}
        for uid, pin in self._pins.items():
            if uid not in present:
                for new in by_name.get(pin.username, []):
                    if new not in self._pins and new != self.user_id:
                        out[new] = f"the pinned user {uid} held (their document is gone)"
        for ids in by_name.values():
            if len(ids) < 2:
                continue
            held = [i for i in ids if i == self.user_id or i in self._pins]
            for uid in ids:
                if uid not in held:
                    out[uid] = (f"the pinned user {held[0]} holds" if held
                                else f"{len(ids)} new documents claim at once")
        return out

    def name_taken(self, doc: dict) -> str | None:
        """Why a user document that is not pinned may not have its name (a pinned
        user held it), or None."""
        uid = doc.get("_id")
        held = self._pins.get(uid) if isinstance(uid, str) else None
        if uid == self.user_id or (held is not None and held.username == doc.get("username")):
            return None
        # Not pinned, or pinned under another name (a rename refused: ``observe``).
        for other, pin in self._pins.items():
            if pin.username == doc.get("username") and other != uid:
                return f"the name is the pinned user {other}'s"
        return None

    def group_name_taken(self, doc: dict) -> str | None:
        """Why a group document that is not pinned may not have its name (a pinned
        group of another owner held it), or None."""
        held = self._groups.get(str(doc.get("_id")))
        if held is not None and held.name == doc.get("groupname"):
            return None
        # Not pinned, or pinned under another name (a rename refused: ``admit_groups``).
        for gid, pin in self._groups.items():
            if gid != doc.get("_id") and pin.name == doc.get("groupname") and (
                    held is not None or pin.owner != doc.get("owner")):
                return f"the name was the group {gid}'s, whose owner is {pin.owner}"
        return None

    def pinned_user_named(self, name: str) -> str | None:
        """The id of the one other user pinned under ``name`` (or with that id), or None:
        whom ``unshare`` means when the store withholds their document."""
        found = [uid for uid, pin in self._pins.items() if name in (uid, pin.username)]
        return found[0] if len(found) == 1 else None

    def group_dispute(self, name: str) -> str | None:
        """Why the group pinned under ``name`` (or with that id) is refused: the owners this
        user's devices pinned for it differ (``_merge_groups``); or None."""
        gid = self.pinned_group_named(name)
        pin = None if gid is None else self._groups[gid]
        if pin is None or not pin.disputed:
            return None
        return (f"group {pin.name!r} ({gid}) is refused: this user's devices pinned different owners of it "
                f"({', '.join((pin.owner, *pin.disputed))})")

    def pinned_group_named(self, name: str) -> str | None:
        """The id of the one group pinned under ``name`` (or with that id), or None."""
        found = [gid for gid, pin in self._groups.items() if name in (gid, pin.name)]
        return found[0] if len(found) == 1 else None

    def trusted_user(self, matches: list[dict]) -> dict | None:
        """Of several user documents claiming one name, the one whose keys are
        pinned (None: none, or more than one)."""
        pinned = [d for d in matches if (pin := self.pin(d["_id"])) is not None
                  and (pin.box, pin.sign) == (d.get("public_box"), d.get("public_sign"))]
        return pinned[0] if len(pinned) == 1 else None

    # --- groups

    def admit_groups(self, docs: list[dict]) -> list[dict]:
        """The Group documents (signed by the owner they name) whose owner is the
        one pinned for the group; a group met for the first time is pinned,
        unless a pinned group still present has its name."""
        present = {d["_id"] for d in docs}
        taken = {pin.name: gid for gid, pin in self._groups.items() if gid in present}
        # A pinned group whose document is gone keeps its name from a group of another
        # owner (deleting it must not free the name for one a store writer planted).
        gone = {pin.name: (gid, pin.owner) for gid, pin in self._groups.items() if gid not in present}
        fresh_names: dict[str, int] = {}
        for doc in docs:
            if doc["_id"] not in self._groups:
                fresh_names[str(doc.get("groupname"))] = fresh_names.get(str(doc.get("groupname")), 0) + 1
        out = []
        for doc in docs:
            gid, owner, name = doc["_id"], str(doc.get("owner")), str(doc.get("groupname"))
            pin = self._groups.get(gid)
            if pin is None:
                if name in gone and gone[name][1] != owner:
                    was, was_owner = gone[name]
                    self.alarms.warn("name-taken", gid, f"refused group {gid}: its name {name!r} was the "
                                     f"group {was}'s, whose owner was {was_owner}, not {owner}: nothing is "
                                     "sealed by it")
                    continue
                if name in taken or fresh_names.get(name, 0) > 1:
                    self.alarms.warn("name-taken", gid, f"refused group {gid}: its name {name!r} is held by "
                                     f"{'the group ' + taken[name] if name in taken else 'another new group'}"
                                     ": nothing is sealed by it")
                    continue
                self._groups[gid] = GroupPin(owner, name, int(time.time()))
                self._dirty = True
            elif pin.disputed:
                owners = ", ".join((pin.owner, *pin.disputed))
                self.alarms.warn("group-disputed", gid, f"refused group {pin.name!r} ({gid}): this user's "
                                 f"devices pinned different owners of it ({owners}): nothing is sealed to it")
                continue
            elif pin.owner != owner:
                self.alarms.warn("group-owner-changed", gid, f"refused group {name!r} ({gid}): it names "
                                 f"{owner} as its owner, not {pin.owner}, its owner since this user met it "
                                 "(re-signed by someone else): nothing is sealed by it")
                continue
            elif pin.name != name:
                if (was := self._group_rename_clash(gid, owner, name, present)) is not None:
                    # Taking a name another group holds (its document deleted or not) would make
                    # ``share --with @name`` seal to this one: its members count, its new name does not.
                    self.alarms.warn("name-taken", gid, f"group {pin.name!r} ({gid}) now claims the name "
                                     f"{name!r}, which is the group {was}'s: it keeps the name {pin.name!r} "
                                     "here")
                else:
                    self._groups[gid] = GroupPin(owner, name, pin.pinned_at)
                    self._dirty = True
            out.append(doc)
        return out

    def _group_rename_clash(self, gid: str, owner: str, name: str, present: set[str]) -> str | None:
        """The pinned group whose name the pinned group ``gid`` may not take: one still
        present (any owner), or one whose document is gone and whose owner is another."""
        for other, pin in self._groups.items():
            if other != gid and pin.name == name and (other in present or pin.owner != owner):
                return other
        return None

    def group_owner(self, gid: str) -> str | None:
        pin = self._groups.get(gid)
        return None if pin is None else pin.owner

    def repin(self, user_doc: dict, expected: str) -> None:
        """Trust a user's current keys after the person compared ``expected`` out of band."""
        if doc_fingerprint(user_doc) != " ".join(expected.split()).lower():
            raise Forged(f"the fingerprint of {user_doc.get('username')!r} is "
                         f"{doc_fingerprint(user_doc)}, not the one given: nothing changed")
        if not self_signed(user_doc):
            raise Forged(f"the document of user {user_doc.get('username')!r} is not signed with its key")
        self._pins[user_doc["_id"]] = Pin(str(user_doc["username"]), user_doc["public_box"],
                                          user_doc["public_sign"], True, int(time.time()), repinned=True)
        self._dirty = True

    def pin(self, user_id: str) -> Pin | None:
        return self._own if user_id == self.user_id else self._pins.get(user_id)

    def fingerprint_of(self, user_id: str) -> str | None:
        pin = self.pin(user_id)
        return None if pin is None else fingerprint(pin.box, pin.sign)

    def box_key(self, user_id: str) -> X25519PublicKey | None:
        """The key to seal a file key to: the pinned one, never a document's newer one."""
        pin = self.pin(user_id)
        if pin is None:
            return None
        try:
            return X25519PublicKey.from_public_bytes(b64d(pin.box))
        except (ValueError, TypeError):
            return None

    def sign_key(self, user_id: str) -> Ed25519PublicKey | None:
        pin = self.pin(user_id)
        if pin is None:
            return None
        # Made once per pinned key, not once per document (a load asks for each); keyed by
        # the pinned value itself, so a re-pin is a new key.
        if (public := self._sign_keys.get(pin.sign)) is None:
            try:
                public = self._sign_keys[pin.sign] = Ed25519PublicKey.from_public_bytes(b64d(pin.sign))
            except (ValueError, TypeError):
                return None
        return public

    # --- documents

    def sign(self, doc: dict) -> dict:
        signed = sign_doc(self.user_id, self.identity.sign, stamp(self.fresh, doc))
        if self.fresh is not None:
            self.fresh.kept(signed)  # her group's newest body: the copy member changes build on
        return signed

    def verify(self, doc: dict, author: str | None = None) -> str:
        """The id of who signed ``doc``, checked with their trusted key; or Forged.

        ``author`` is whom the document names as its maker (its owner, a
        grant's giver): an unsigned document is taken from them only while
        they have not signed anything (see the module's docstring)."""
        signer = signer_of(doc)
        if signer is None:
            if author is not None and self.legacy(author):
                return author
            raise Forged(f"document {doc.get('_id')!r} is not signed")
        public = self.sign_key(signer)
        if public is None:
            raise Forged(f"document {doc.get('_id')!r} is signed by a user this one does not trust")
        return verify_doc(public, doc, self.verified)

    def verified_before(self, doc: dict, signer: str) -> bool:
        """Whether this device checked ``doc``'s signature by ``signer`` (under the key pinned for her now)
        before: its digest looked up in ``verified``, no signature checked (False when none is kept)."""
        try:
            if self.verified is None or signer_of(doc) != signer or (public := self.sign_key(signer)) is None:
                return False
        except Forged:
            return False  # a malformed signature
        return checked_before(public, doc, self.verified)

    def legacy(self, author: str) -> bool:
        """Whether ``author`` may still have documents from before signatures."""
        if author == self.user_id:
            return not self.own_signed
        pin = self._pins.get(author)
        return pin is not None and not pin.signs

    def checked(self, doc: dict, author: str | None = None, what: str = "document") -> str | None:
        """``verify`` that reports instead of raising: the signer, or None (refused and said)."""
        try:
            return self.verify(doc, author)
        except Forged as err:
            self.alarms.warn("forged", str(doc.get("_id")), f"refused {what} {doc.get('_id')}: {err}")
            return None


def _pins_of(plain: bytes) -> dict[str, Pin]:
    return {uid: Pin(**fields) for uid, fields in loads_untrusted(plain).items() if uid != GROUPS_KEY}


def _group_pins_of(plain: bytes) -> dict[str, GroupPin]:
    out = {}
    for gid, fields in loads_untrusted(plain).get(GROUPS_KEY, {}).items():
        out[gid] = GroupPin(**{**fields, "disputed": tuple(fields.get("disputed", ()))})
    return out


def _group_fields(pin: GroupPin) -> dict:
    """A group pin as stored: ``disputed`` only when set (a pins map without one reads as before)."""
    fields = asdict(pin)
    if pin.disputed:
        fields["disputed"] = list(pin.disputed)
    else:
        del fields["disputed"]
    return fields


def _pin_fields(pin: Pin) -> dict:
    """A pin as stored: ``repinned`` only when set (a pins map without one reads as before)."""
    fields = asdict(pin)
    if not pin.repinned:
        del fields["repinned"]
    return fields


def _lost(device: dict, stored: dict) -> bool:
    """Whether the store misses a pin this device kept, or holds an older one (a rollback); a
    re-pin there over a first-sight pin here is no loss, whatever the times (``_merge``)."""
    return any(uid not in stored or (stored[uid].pinned_at < pin.pinned_at
                                     and not (_repinned(stored[uid]) and not _repinned(pin)))
               for uid, pin in device.items())


def _repinned(pin: Pin | GroupPin) -> bool:
    return isinstance(pin, Pin) and pin.repinned
