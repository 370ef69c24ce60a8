"""Capability links: their keys, their text, and how a version is sealed. Pure: no I/O.

A link names an item on a link store (seed 001) and carries, after ``#``,
the keys its holder gets.  HTTP clients never send the part after ``#``, so
the server learns only what a request presents (a key, which it hashes).

- A share link ``<server>/l/<item>#r1.<secret, verify key>``: the 32-byte
  link secret gives, through HKDF, the *read key* (shown to
  the server, which compares its SHA-256) and the *content key* (which opens
  ``private_enc`` and never leaves the clients).  Versions are signed with
  the owner's Ed25519 key; the link carries the verify key, so a server can
  withhold a version or serve an old one but cannot change one unnoticed.
- A drop link ``<server>/l/<item>#a1.<append key, box key>``: the append
  key adds versions; each is sealed to the owner's X25519 box key (ephemeral
  X25519 + HKDF), so whoever drops cannot read what others dropped.

A version: ``public`` says only the format; ``protected`` has the sequence
number and the signature; ``private_enc`` is the sealed manifest: names,
modes, times, sizes, SHA-256 of every file, the ids of its blocks, and the
version's own random data key.  Each block is sealed under that data key
with the item id, the entry's index and the block's index in the associated
data, so the server cannot move blocks between files, places or versions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fusevault.crypto import aead
from fusevault.encoding import b64d, b64e, loads_untrusted
from fusevault.errors import CorruptData, InvalidInput

FORMAT = "fusevault-link/1"
SHARE, DROP = "r1", "a1"
KEY = 32
HASHINFO = {"hash": "sha256", "format": FORMAT}
PUBLIC = {"format": FORMAT}
# The three rights a link's keys give on its item at the link store (each its own key).
READ, APPEND, DELETE = "read", "append", "delete"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def derive(secret: bytes, purpose: str) -> bytes:
    """A key of a link from its secret (random per link, so it names the link too)."""
    info = f"fusevault link {purpose}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=KEY, salt=None, info=info).derive(secret)


def key_hash(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()


def _raw_public(key: Ed25519PublicKey | X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# --- what a link carries


@dataclass(frozen=True)
class Link:
    server: str  # base URL of the link store
    item: str
    kind: str  # SHARE or DROP
    first: bytes  # share: the link secret; drop: the append key
    second: bytes  # share: the verify key; drop: the box public key

    def text(self) -> str:
        return f"{self.server}/l/{self.item}#{self.kind}.{b64url(self.first + self.second)}"

    @property
    def read_key(self) -> bytes:
        return derive(self.first, "read key")

    @property
    def content_key(self) -> bytes:
        return derive(self.first, "content key")


def parse(text: str) -> Link:
    bad = InvalidInput("that is not a fusevault link (it looks like https://HOST/l/ID#r1.KEY)")
    url, _, fragment = text.strip().partition("#")
    parts = urlsplit(url)
    head, sep, item = parts.path.rpartition("/l/")
    kind, _, keys = fragment.partition(".")
    if parts.scheme not in ("http", "https") or not sep or not item or "/" in item:
        raise bad
    if kind not in (SHARE, DROP):
        raise bad
    try:
        raw = unb64url(keys)
    except (binascii.Error, ValueError):
        raise bad from None
    if len(raw) != 2 * KEY:
        raise bad
    return Link(f"{parts.scheme}://{parts.netloc}{head}", item, kind, raw[:KEY], raw[KEY:])


@dataclass(frozen=True)
class OwnerKeys:
    """Everything the owner of an item holds; kept sealed in their vault."""

    secret: bytes
    signing: bytes  # Ed25519 private key (raw)
    append: bytes
    delete: bytes
    box: bytes  # X25519 private key (raw): opens what is dropped

    @classmethod
    def new(cls) -> OwnerKeys:
        return cls(*(os.urandom(KEY) for _ in range(5)))

    @property
    def read_key(self) -> bytes:
        return derive(self.secret, "read key")

    def hashes(self) -> dict:
        """The three key hashes the server keeps."""
        return {"read_key_hash": key_hash(self.read_key), "append_key_hash": key_hash(self.append),
                "delete_key_hash": key_hash(self.delete)}

    def share_link(self, server: str, item: str) -> Link:
        verify = _raw_public(Ed25519PrivateKey.from_private_bytes(self.signing).public_key())
        return Link(server, item, SHARE, self.secret, verify)

    def drop_link(self, server: str, item: str) -> Link:
        box = _raw_public(X25519PrivateKey.from_private_bytes(self.box).public_key())
        return Link(server, item, DROP, self.append, box)

    def as_dict(self) -> dict:
        return {k: b64e(getattr(self, k)) for k in ("secret", "signing", "append", "delete", "box")}

    @classmethod
    def from_dict(cls, fields: dict) -> OwnerKeys:
        return cls(**{k: b64d(fields[k]) for k in ("secret", "signing", "append", "delete", "box")})

    def __repr__(self) -> str:  # never show key bytes
        return "OwnerKeys(...)"


# --- sealing a version


def seal_block(dek: bytes, item: str, entry: int, index: int, data: bytes) -> bytes:
    return aead.seal(dek, data, aead.ad("link block", item, entry, index))


def open_block(dek: bytes, item: str, entry: int, index: int, blob: bytes) -> bytes:
    try:
        return aead.unseal(dek, blob, aead.ad("link block", item, entry, index))
    except CorruptData:
        raise CorruptData("a block of this link was changed or moved on the server") from None


def _canonical(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _signed_bytes(item: str, public: object, protected: dict, private_enc: str) -> bytes:
    unsigned = {k: v for k, v in protected.items() if k != "signature"}
    return aead.ad("link version", item, _canonical(public), _canonical(unsigned),
                   hashlib.sha256(private_enc.encode()).digest())


def seal_share(keys: OwnerKeys, item: str, seq: int, manifest: dict) -> dict:
    """A share version's body for the server: encrypted manifest, signed."""
    content = derive(keys.secret, "content key")
    private_enc = b64e(aead.seal(content, _canonical(manifest), aead.ad("link private", item, seq)))
    protected: dict[str, object] = {"seq": seq}
    signer = Ed25519PrivateKey.from_private_bytes(keys.signing)
    protected["signature"] = b64e(signer.sign(_signed_bytes(item, PUBLIC, protected, private_enc)))
    return {"public": PUBLIC, "protected": protected, "private_enc": private_enc}


def open_share(link: Link, version: dict) -> tuple[int, dict]:
    """(sequence number, manifest) of a share version, verified against the link."""
    try:
        protected = version["protected"]
        seq = int(protected["seq"])
        verify = Ed25519PublicKey.from_public_bytes(link.second)
        verify.verify(b64d(protected["signature"]),
                      _signed_bytes(link.item, version["public"], protected, version["private_enc"]))
        private = b64d(version["private_enc"])
        plain = aead.unseal(link.content_key, private, aead.ad("link private", link.item, seq))
        return seq, loads_untrusted(plain)
    except (InvalidSignature, CorruptData, KeyError, TypeError, ValueError, binascii.Error):
        raise CorruptData("this link's content on the server is not what its owner published "
                          "(changed or damaged): nothing was written") from None


def _drop_key(shared: bytes, item: str, ephemeral: bytes) -> bytes:
    info = b"fusevault link drop\0" + item.encode() + b"\0" + ephemeral
    return HKDF(algorithm=hashes.SHA256(), length=KEY, salt=None, info=info).derive(shared)


def seal_drop(link: Link, manifest: dict) -> dict:
    """A dropped version's body: the manifest sealed to the owner's box key."""
    ephemeral = X25519PrivateKey.generate()
    eph_public = _raw_public(ephemeral.public_key())
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(link.second))
    key = _drop_key(shared, link.item, eph_public)
    sealed = aead.seal(key, _canonical(manifest), aead.ad("link drop", link.item))
    return {"public": PUBLIC, "protected": {"seq": None}, "private_enc": b64e(eph_public + sealed)}


def open_drop(keys: OwnerKeys, item: str, version: dict) -> dict:
    try:
        raw = b64d(version["private_enc"])
        eph_public = raw[:KEY]
        box = X25519PrivateKey.from_private_bytes(keys.box)
        shared = box.exchange(X25519PublicKey.from_public_bytes(eph_public))
        plain = aead.unseal(_drop_key(shared, item, eph_public), raw[KEY:], aead.ad("link drop", item))
        return loads_untrusted(plain)
    except (CorruptData, KeyError, TypeError, ValueError, binascii.Error):
        raise CorruptData("a dropped file could not be opened (damaged on the server)") from None
