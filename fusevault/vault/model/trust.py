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

Pins document (``_id`` ``pins-<user id>``, ``type`` ``Pins``, ``owner``):
``enc`` seals ``{user id: {"username", "box", "sign", "signs", "pinned_at"}}``
with AD ``ad("Pins", owner, _id)``.  The same map is kept, sealed with the
device-state key, outside the vault (``paths.state_dir()/pins/<hash of vault
dir and user>``), since a writer of the store can delete or roll back the
document: both are merged at load (per user, the later ``pinned_at`` wins),
and pins the store lost are said (alarm) and kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from fusevault import paths
from fusevault.crypto.keys import MasterKey
from fusevault.crypto.signing import sign_doc, signer_of, verify_doc
from fusevault.encoding import b64d, b64e, loads_untrusted
from fusevault.errors import CorruptData, Forged, VaultError
from fusevault.store import Store
from fusevault.vault.format.atomic import atomic_write
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
        self._dirty = False
        self._root = root  # the vault's directory: where the device copy of the pins belongs
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
        if doc is not None and not doc.get("_deleted"):
            try:
                plain = self.key.unseal_private(PINS, self.pins_id, b64d(doc["enc"]))
                stored = _pins_of(plain)
            except (VaultError, KeyError, ValueError, TypeError):
                self.alarms.warn("pins", self.pins_id, "this user's pinned keys of others were damaged or "
                                 "replaced in the store: the copy kept on this device is used")
        device = self._read_device()
        self.had_pins = stored is not None or device is not None
        merged = _merge(stored or {}, device or {})
        if device is not None and merged != (stored or {}):
            # The store lost pins this device kept (deleted, rolled back, damaged): ours hold.
            self.alarms.warn("pins-lost", self.pins_id, "pins this device kept are missing or older in "
                             "the store (deleted or rolled back): the ones kept on this device are used")
        self._pins = merged
        self._dirty = merged != (stored or {}) or device != merged or not self.had_pins

    # --- the copy outside the vault

    def _device_file(self) -> tuple[Path, str] | None:
        if self._root is None:
            return None
        name = hashlib.sha256(f"{os.path.realpath(self._root)}\0{self.user_id}".encode()).hexdigest()[:32]
        return paths.state_dir() / "pins" / name, name

    def _read_device(self) -> dict[str, Pin] | None:
        found = self._device_file()
        if found is None:
            return None
        path, name = found
        try:
            sealed = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError:
            sealed = b""
        try:
            return _pins_of(self.key.unseal_device(PINS, name, sealed))
        except (VaultError, KeyError, ValueError, TypeError):
            self.alarms.warn("pins", str(path), "the pins kept on this device were damaged or replaced: "
                             "the store's are used")
            return {}

    def _write_device(self, plain: bytes) -> None:
        found = self._device_file()
        if found is None:
            return
        path, name = found
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write(path, self.key.seal_device(PINS, name, plain))

    def save(self) -> None:
        """Write the pins if new ones were made (call off the trio loop)."""
        if self.fresh is not None:
            self.fresh.save()
        if not self._dirty:
            return
        current = self.store.get(self.pins_id)
        merged = dict(self._pins)
        if current is not None and not current.get("_deleted"):
            try:  # another device's pins: theirs stay, ours are added (the later pin of a user wins)
                plain = self.key.unseal_private(PINS, self.pins_id, b64d(current["enc"]))
                merged = _merge(_pins_of(plain), self._pins)
            except (VaultError, KeyError, ValueError, TypeError):
                pass
        plain = json.dumps({uid: asdict(p) for uid, p in merged.items()}, sort_keys=True).encode()
        doc = {"_id": self.pins_id, "type": PINS, "owner": self.user_id,
               "enc": b64e(self.key.seal_private(PINS, self.pins_id, plain))}
        if current is not None:
            doc["_rev"] = current["_rev"]
        self.store.put_many([self.sign(doc)])
        self._write_device(plain)  # after the store: both hold at least what was pinned
        self._pins = merged
        self._dirty = False

    # --- meeting users

    def observe(self, users: Iterable[dict]) -> None:
        """Pin users met for the first time; refuse (and say) keys that changed."""
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
            if pin is None:
                # Unsigned and new to a user who had pins: made after signatures came, so not legacy.
                legacy_ok = signed or not self.had_pins
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
                self._pins[uid] = Pin(str(doc.get("username")), box, sign, True, pin.pinned_at)
                self._dirty = True

    def repin(self, user_doc: dict, expected: str) -> None:
        """Trust a user's current keys after the person compared ``expected`` out of band."""
        if doc_fingerprint(user_doc) != " ".join(expected.split()).lower():
            raise Forged(f"the fingerprint of {user_doc.get('username')!r} is "
                         f"{doc_fingerprint(user_doc)}, not the one given: nothing changed")
        if not self_signed(user_doc):
            raise Forged(f"the document of user {user_doc.get('username')!r} is not signed with its key")
        self._pins[user_doc["_id"]] = Pin(str(user_doc["username"]), user_doc["public_box"],
                                          user_doc["public_sign"], True, int(time.time()))
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
        try:
            return Ed25519PublicKey.from_public_bytes(b64d(pin.sign))
        except (ValueError, TypeError):
            return None

    # --- documents

    def sign(self, doc: dict) -> dict:
        return sign_doc(self.user_id, self.identity.sign, stamp(self.fresh, doc))

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
        return verify_doc(public, doc)

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
    return {uid: Pin(**fields) for uid, fields in loads_untrusted(plain).items()}


def _merge(older: dict[str, Pin], newer: dict[str, Pin]) -> dict[str, Pin]:
    """Both maps' users; of a user pinned in both, the later pin (a re-pin); ``newer`` on a tie."""
    merged = dict(older)
    for uid, pin in newer.items():
        if uid not in merged or pin.pinned_at >= merged[uid].pinned_at:
            merged[uid] = pin
    return merged
