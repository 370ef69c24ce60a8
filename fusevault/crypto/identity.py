"""A user's key pairs, and file keys sealed to a user.  Pure: no I/O.

Each user has an X25519 pair (others seal file keys to its public half) and
an Ed25519 pair (to sign what they write).  The public halves are stored in
clear in the user's document; the private halves are sealed together with
the user's private-document key (``MasterKey.seal_private``, kind
``identity``), so only the unlocked user opens them.

A file key for a recipient (a ``.vfkey``) is sealed with an ephemeral
X25519 key: ``HKDF(shared secret, ephemeral public || recipient public)``
gives a one-time AES-256-GCM key, and the associated data names the owner,
the file, the recipient and the key's epoch, so a ``.vfkey`` cannot be
moved to another file, person or epoch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fusevault.crypto import aead
from fusevault.crypto.keys import MasterKey
from fusevault.encoding import b64d, b64e, loads_untrusted
from fusevault.errors import CorruptData

_RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)
_RAW_PRIVATE = (serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                serialization.NoEncryption())
PUBLIC_SIZE = 32


@dataclass(frozen=True)
class Identity:
    """An unlocked user's private keys."""

    user_id: str
    box: X25519PrivateKey
    sign: Ed25519PrivateKey
    # Sealed with the private keys, so only the master key makes it: this user
    # signs their documents (vault format 3).  An unsigned user document whose
    # sealed keys say so is a stripped forgery, never one from before signatures
    # to sign (vault/model/migrate.py).
    signs: bool = False
    # Sealed too: made at an unlock for a user from before pairs (vault format 1, early), who could hold
    # no grant (a share or a group seals keys to public keys): the signing of her documents from before
    # signatures signs her files and none of her grants or settings (vault/model/migrate.py).
    minted: bool = False

    @classmethod
    def new(cls, user_id: str, signs: bool = True, minted: bool = False) -> Identity:
        return cls(user_id, X25519PrivateKey.generate(), Ed25519PrivateKey.generate(), signs, minted)

    def public_fields(self) -> dict:
        return {"public_box": b64e(self.box.public_key().public_bytes(*_RAW)),
                "public_sign": b64e(self.sign.public_key().public_bytes(*_RAW))}

    def __repr__(self) -> str:  # never show key bytes
        return f"Identity(user_id={self.user_id!r})"


def seal_identity(key: MasterKey, identity: Identity) -> dict:
    """The fields of a user document that hold this identity."""
    plain = json.dumps({"box": b64e(identity.box.private_bytes(*_RAW_PRIVATE)),
                        "sign": b64e(identity.sign.private_bytes(*_RAW_PRIVATE)),
                        **({"signs": True} if identity.signs else {}),
                        **({"minted": True} if identity.minted else {})}).encode()
    sealed = key.seal_private("identity", identity.user_id, plain)
    return {**identity.public_fields(), "en_private_keys": b64e(sealed)}


def open_identity(key: MasterKey, user_doc: dict) -> Identity:
    user_id = user_doc["_id"]
    try:
        sealed = b64d(user_doc["en_private_keys"])
        plain = loads_untrusted(key.unseal_private("identity", user_id, sealed))
        identity = Identity(user_id, X25519PrivateKey.from_private_bytes(b64d(plain["box"])),
                            Ed25519PrivateKey.from_private_bytes(b64d(plain["sign"])),
                            plain.get("signs") is True, plain.get("minted") is True)
    except (KeyError, ValueError, TypeError):
        raise CorruptData(f"the key pairs of user {user_doc.get('username')!r} are malformed") from None
    if identity.public_fields() != {k: user_doc.get(k) for k in ("public_box", "public_sign")}:
        raise CorruptData(f"the public keys of user {user_doc.get('username')!r} do not match")
    return identity


def public_box(user_doc: dict) -> X25519PublicKey:
    try:
        return X25519PublicKey.from_public_bytes(b64d(user_doc["public_box"]))
    except (KeyError, ValueError, TypeError):
        raise CorruptData(f"user {user_doc.get('username')!r} has no usable public key") from None


def public_sign(user_doc: dict) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(b64d(user_doc["public_sign"]))
    except (KeyError, ValueError, TypeError):
        raise CorruptData(f"user {user_doc.get('username')!r} has no usable public key") from None


def _seal_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"fusevault vfkey v1" + ephemeral + recipient).derive(shared)


def _vfkey_ad(owner: str, fid: str, recipient: str, epoch: int) -> bytes:
    return aead.ad("vfkey", owner, fid, recipient, epoch)


def seal_file_key(recipient_public: X25519PublicKey, recipient: str, owner: str, fid: str,
                  epoch: int, dek: bytes) -> bytes:
    """``ephemeral public(32) || sealed DEK``: only the recipient opens it."""
    ephemeral = X25519PrivateKey.generate()
    eph_raw = ephemeral.public_key().public_bytes(*_RAW)
    rcpt_raw = recipient_public.public_bytes(*_RAW)
    key = _seal_key(ephemeral.exchange(recipient_public), eph_raw, rcpt_raw)
    return eph_raw + aead.seal(key, dek, _vfkey_ad(owner, fid, recipient, epoch))


def open_file_key(identity: Identity, owner: str, fid: str, epoch: int, blob: bytes) -> bytes:
    if len(blob) < PUBLIC_SIZE + aead.OVERHEAD:
        raise CorruptData("a shared file key is truncated")
    eph_raw, sealed = blob[:PUBLIC_SIZE], blob[PUBLIC_SIZE:]
    rcpt_raw = identity.box.public_key().public_bytes(*_RAW)
    try:
        shared = identity.box.exchange(X25519PublicKey.from_public_bytes(eph_raw))
    except ValueError:
        raise CorruptData("a shared file key is malformed") from None
    key = _seal_key(shared, eph_raw, rcpt_raw)
    return aead.unseal(key, sealed, _vfkey_ad(owner, fid, identity.user_id, epoch))
