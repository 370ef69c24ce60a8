"""The recovery key: a second wrapping of the master key, under 24 words.

The secret is 32 random bytes, shown once as a BIP-39 English mnemonic (24
words, the last carrying an 8-bit checksum).  It is full-entropy, so no
password hashing is needed: ``HKDF-SHA256(secret, info "fusevault
recovery-key v1")`` is the AES-256-GCM key that seals the master key, with
AD ``ad("master-recovery", user_id)``.  Pure: no I/O.

The sealed master key lives in the user's document as ``recovery_key``
(docs/FORMAT.md), with its own checksum (to tell damage from wrong words)
and under the user's signature like every other field.
"""

from __future__ import annotations

import hashlib
import json
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fusevault.crypto import aead
from fusevault.encoding import b64d, b64e
from fusevault.errors import BadRecoveryChecksum, BadRecoveryWord, CorruptData, InvalidInput, WrongRecoveryKey

SECRET_SIZE = 32
WORDS = 24
FIELD = "recovery_key"
VERSION = 1


def _mnemonic():
    from mnemonic import Mnemonic  # imported when needed: the wordlist costs a little to load

    return Mnemonic("english")


def new_secret() -> bytes:
    return os.urandom(SECRET_SIZE)


def to_words(secret: bytes) -> str:
    return _mnemonic().to_mnemonic(secret)


def from_words(text: str) -> bytes:
    """The secret 24 words stand for; one line naming the first word not in the list."""
    words = text.lower().split()
    if len(words) != WORDS:
        raise InvalidInput(f"a recovery key is {WORDS} words; this has {len(words)}")
    mnemonic = _mnemonic()
    known = set(mnemonic.wordlist)
    for position, word in enumerate(words, 1):
        if word not in known:
            raise BadRecoveryWord(f"word {position} of the recovery key, {word!r}, is not in the "
                                  "BIP-39 English word list")
    phrase = " ".join(words)
    if not mnemonic.check(phrase):
        raise BadRecoveryChecksum("the recovery key's words are all in the list but do not fit together "
                                  "(checksum): one is mistyped for another list word, or two are swapped")
    return bytes(mnemonic.to_entropy(phrase))


def _key(secret: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"fusevault recovery-key v1").derive(secret)


def _checksum(field: dict) -> str:
    canon = json.dumps({k: field.get(k) for k in ("v", "created_at", "en_master")}, sort_keys=True)
    return hashlib.sha256(canon.encode()).hexdigest()


def _ad(user_id: str, pairs: bool) -> bytes:
    """As crypto/keys.py ``_kek_ad``: the wrapping says whether she has key pairs (attack round 81a (4): a
    passphrase set with the recovery key over her document stripped of its pairs still says so)."""
    return aead.ad("master-recovery pairs" if pairs else "master-recovery", user_id)


def wrap(user_id: str, master: bytes, secret: bytes, created_at: int, *, pairs: bool) -> dict:
    """The ``recovery_key`` field of a user document; ``pairs``: the user has key pairs."""
    field = {"v": VERSION, "created_at": created_at,
             "en_master": b64e(aead.seal(_key(secret), master, _ad(user_id, pairs)))}
    return {**field, "checksum": _checksum(field)}


def unwrap(user_id: str, field: object, secret: bytes) -> bytes:
    return open_wrapping(user_id, field, secret)[0]


def open_wrapping(user_id: str, field: object, secret: bytes) -> tuple[bytes, bool]:
    """Her master key, and whether this wrapping says she has key pairs."""
    if not isinstance(field, dict) or field.get("checksum") != _checksum(field):
        raise CorruptData("the recovery key's wrapping in the user's document is damaged")
    if field.get("v") != VERSION:
        raise CorruptData(f"unknown recovery key version {field.get('v')!r}")
    try:
        sealed = b64d(field["en_master"])
    except (KeyError, ValueError, TypeError):
        raise CorruptData("the recovery key's wrapping is malformed") from None
    key = _key(secret)
    for pairs in (True, False):
        try:
            return aead.unseal(key, sealed, _ad(user_id, pairs)), pairs
        except CorruptData:
            continue
    raise WrongRecoveryKey("these words are not this user's recovery key (another user's, "
                           "or one that was replaced or revoked)")
