"""Authenticated encryption with AES-256-GCM and fresh random nonces.

Every sealed value is ``nonce(12) || ciphertext || tag(16)``.  Associated data
always starts with a domain label so that a value sealed for one purpose can
never be opened as another; callers add the identity it belongs to (file id,
block index, version id ...).
"""

from __future__ import annotations

import functools
import os
import struct
from typing import cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fusevault.errors import CorruptData

NONCE_SIZE = 12
TAG_SIZE = 16
KEY_SIZE = 32
OVERHEAD = NONCE_SIZE + TAG_SIZE


@functools.lru_cache(maxsize=4096)
def _cipher(key: bytes) -> AESGCM:
    # Building an AESGCM object costs about as much as sealing a small value,
    # and the same DEK is used for every block of a file.
    return AESGCM(key)


def forget_keys() -> None:
    """Drop every cached cipher, and with it the keys it holds (a user locks)."""
    _cipher.cache_clear()


def new_key() -> bytes:
    return os.urandom(KEY_SIZE)


def ad(label: str, *parts: bytes | str | int) -> bytes:
    """Unambiguous associated data: a label then length-prefixed parts."""
    out = [b"fusevault/1:" + label.encode() + b"\0"]
    for part in parts:
        if type(part) is str:
            part = part.encode()
        elif type(part) is int:
            part = _INT.pack(part)
        data = cast(bytes, part)  # bytes by now (a bool is refused, as any other type)
        out.append(_LEN.pack(len(data)))
        out.append(data)
    return b"".join(out)


_LEN = struct.Struct("<I")
_INT = struct.Struct("<q")


def seal(key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    nonce = os.urandom(NONCE_SIZE)
    return nonce + _cipher(key).encrypt(nonce, plaintext, associated)


def seal_with_nonce(key: bytes, nonce: bytes, plaintext: bytes, associated: bytes) -> bytes:
    """Seal under a nonce the caller drew fresh from os.urandom (it names the block)."""
    return nonce + _cipher(key).encrypt(nonce, plaintext, associated)


def unseal(key: bytes, sealed: bytes, associated: bytes) -> bytes:
    if len(sealed) < OVERHEAD:
        raise CorruptData("sealed value is truncated")
    try:
        return _cipher(key).decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], associated)
    except InvalidTag:
        raise CorruptData("authentication failed") from None
