"""Keys and sealing for send/receive: pure functions, no I/O.

For each file a receiver asks for:

1. The receiver makes an X25519 key pair and starts SPAKE2 (side A) with the
   session code as password, its public key as its identity and the session
   id and file name as the other identity.  It sends its public key and
   PAKE message through the relay.
2. The sender runs SPAKE2 side B with the public key *as the relay handed it
   over*, makes an ephemeral X25519 key pair, and derives the file key from
   both the PAKE key and the X25519 shared secret.  It sends its public key,
   its PAKE message and the file's size, chunk count and SHA-256 sealed under
   the file key.
3. The receiver finishes SPAKE2, derives the same file key and opens the
   sealed description.  If the code was wrong, or the relay replaced either
   public key or PAKE message, the keys differ and that opening fails: the
   transfer stops before a byte is written.

The relay sees the SHA-256 of the code (seed 002), which a short code does
not protect against guessing offline; the PAKE does not rely on it: a guess
can only be tested by taking part in the exchange, once per request.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from spake2 import SPAKE2_A, SPAKE2_B
from spake2.spake2 import SPAKEError

from fusevault.crypto import aead
from fusevault.encoding import b64d, b64e
from fusevault.errors import CorruptData
from fusevault.transfer.words import WORDS

PROTOCOL = b"fusevault-send/1"
CHUNK = 512 * 1024  # plaintext bytes per chunk


class KeyMismatch(CorruptData):
    """The key exchange did not agree: a wrong code, or someone on the way changed it."""


def make_code() -> str:
    """Two words and a number, easy to read aloud: ``7-orbit-lantern`` (~26 bits)."""
    return f"{secrets.randbelow(1000)}-{secrets.choice(WORDS)}-{secrets.choice(WORDS)}"


def normalize_code(code: str) -> str:
    return "-".join(code.strip().lower().replace(" ", "-").split("-"))


def code_hash(code: str) -> str:
    """What the relay stores and compares (seed 002: the code as SHA-256)."""
    return hashlib.sha256(normalize_code(code).encode()).hexdigest()


def context(sid: str, filename: str) -> bytes:
    return PROTOCOL + b"|" + sid.encode() + b"|" + filename.encode("utf-8", "surrogateescape")


def public_bytes(key: X25519PrivateKey) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


class ReceiverSide:
    """Step 1 and 3, for one file."""

    def __init__(self, code: str, sid: str, filename: str) -> None:
        self.ctx = context(sid, filename)
        self._x25519 = X25519PrivateKey.generate()
        self.public = public_bytes(self._x25519)
        self._pake = SPAKE2_A(normalize_code(code).encode(), idA=self.public, idB=self.ctx)
        self.message = self._pake.start()

    def finish(self, sender_public: bytes, sender_message: bytes, sealed_meta: bytes) -> tuple[bytes, dict]:
        """The file key and the sender's description of the file, or KeyMismatch."""
        try:
            pake_key = self._pake.finish(sender_message)
            shared = self._x25519.exchange(X25519PublicKey.from_public_bytes(sender_public))
        except (SPAKEError, ValueError, TypeError, AssertionError):
            raise KeyMismatch("the key exchange failed") from None
        key = file_key(pake_key, shared, self.ctx)
        try:
            meta = json.loads(aead.unseal(key, sealed_meta, aead.ad("meta", self.ctx)))
        except CorruptData:
            raise KeyMismatch("the key exchange failed") from None
        return key, meta


def sender_side(code: str, sid: str, filename: str, receiver_public: bytes,
                receiver_message: bytes) -> tuple[bytes, bytes, bytes]:
    """Step 2: (file key, sender public key, sender PAKE message)."""
    ctx = context(sid, filename)
    pake = SPAKE2_B(normalize_code(code).encode(), idA=receiver_public, idB=ctx)
    message = pake.start()
    ephemeral = X25519PrivateKey.generate()
    try:
        pake_key = pake.finish(receiver_message)
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(receiver_public))
    except (SPAKEError, ValueError, TypeError, AssertionError):
        raise KeyMismatch("a receiver sent a malformed key exchange") from None
    return file_key(pake_key, shared, ctx), public_bytes(ephemeral), message


def file_key(pake_key: bytes, shared: bytes, ctx: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt=None, info=ctx + b"|file key").derive(pake_key + shared)


def seal_meta(key: bytes, ctx: bytes, meta: dict) -> bytes:
    return aead.seal(key, json.dumps(meta).encode(), aead.ad("meta", ctx))


def chunk_ad(ctx: bytes, nr: int, last: bool) -> bytes:
    return aead.ad("chunk", ctx, nr, int(last))


def seal_chunk(key: bytes, ctx: bytes, nr: int, last: bool, data: bytes) -> tuple[str, bytes]:
    """(IV as base64, ciphertext): a fresh random IV for every chunk."""
    iv = os.urandom(aead.NONCE_SIZE)
    sealed = aead.seal_with_nonce(key, iv, data, chunk_ad(ctx, nr, last))
    return b64e(iv), sealed[aead.NONCE_SIZE:]


def open_chunk(key: bytes, ctx: bytes, nr: int, last: bool, iv: str, data: bytes) -> bytes:
    return aead.unseal(key, b64d(iv) + data, chunk_ad(ctx, nr, last))


def chunk_count(size: int) -> int:
    return max(1, -(-size // CHUNK))

