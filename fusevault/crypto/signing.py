"""Ed25519 signatures over documents.  Pure: no I/O.

A signed document carries ``sig: {"by": <user id>, "ed25519": <b64>}``.
The signature covers every field of the document but the ones a store
rewrites on its own (``_rev`` and CouchDB's bookkeeping) and ``sig`` itself,
in one canonical JSON form, behind the label ``doc-sig`` and the signer's
id: so changing any clear field a server needs (``owner``, ``delete``,
``epoch``, ``_deleted``, ``_id``) is detected, and a signature cannot be
moved to another signer or to another kind of signed thing.

A CouchDB-protocol server (pouchdb-server, CouchDB) holds numbers as
JavaScript doubles and sends a whole-valued float back as an integer
(``2.0`` comes back as ``2``): so the canonical form writes a whole-valued
float as that integer, and 2.0 and 2 sign the same.  Documents signed before
that (round 9b) were signed over the plain ``json.dumps`` form (``2.0``):
``verify_doc`` accepts a signature over either form (docs/FORMAT.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fusevault.crypto import aead
from fusevault.encoding import SAFE_INTEGER, b64d, b64e
from fusevault.errors import Forged

SIG = "sig"
SIGNATURE_SIZE = 64
# Fields a store writes by itself; everything else is signed.
_NOT_SIGNED = frozenset({"_rev", "_revisions", "_conflicts", "_deleted_conflicts", "_local_seq", SIG})


def _whole_as_int(value: object) -> object:
    """``value`` with every finite whole-valued float (at any depth) as the integer it equals."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else value  # NaN and infinities are not integers
    if isinstance(value, dict):
        return {k: _whole_as_int(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_as_int(v) for v in value]
    return value


def _dumps(body: object, doc_id: object) -> bytes:
    try:
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                          allow_nan=False).encode()
    except (TypeError, ValueError):
        raise Forged(f"document {doc_id!r} cannot be put in canonical form") from None


def canonical(doc: dict) -> bytes:
    """The bytes a document's signature covers (sorted keys, no spaces, ASCII, whole floats as integers)."""
    body = {k: v for k, v in doc.items() if k not in _NOT_SIGNED}
    return _dumps(_whole_as_int(body), doc.get("_id"))


def canonical_before_9b(doc: dict) -> bytes:
    """The form documents were signed over before round 9b: floats as Python prints them (``2.0``).

    Only verified, never signed: it differs from ``canonical`` only for a document holding a
    whole-valued float."""
    return _dumps({k: v for k, v in doc.items() if k not in _NOT_SIGNED}, doc.get("_id"))


def _message(signer: str, doc: dict) -> bytes:
    return aead.ad("doc-sig", signer, canonical(doc))


def _messages(signer: str, doc: dict) -> Iterator[bytes]:
    """The messages a valid signature of ``doc`` may cover: the current form, then
    (made only if asked for: a mount checks every document) the one before."""
    current = canonical(doc)
    yield aead.ad("doc-sig", signer, current)
    before = canonical_before_9b(doc)
    if before != current:
        yield aead.ad("doc-sig", signer, before)


def _check_portable(value: object, doc_id: object) -> None:
    if isinstance(value, dict):
        for item in value.values():
            _check_portable(item, doc_id)
    elif isinstance(value, list):
        for item in value:
            _check_portable(item, doc_id)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > SAFE_INTEGER:
        raise ValueError(f"document {doc_id!r} holds an integer a CouchDB server would round")
    elif isinstance(value, float) and value.is_integer() and abs(value) > SAFE_INTEGER:
        # JavaScript prints such a double with its shortest digits padded with zeros
        # (2.0**60 as 1152921504606847000): not the integer the canonical form writes.
        raise ValueError(f"document {doc_id!r} holds a number a CouchDB server would print rounded")


def sign_doc(signer: str, key: Ed25519PrivateKey, doc: dict) -> dict:
    """A copy of ``doc`` signed by ``signer`` (any earlier signature replaced)."""
    body = {k: v for k, v in doc.items() if k != SIG}
    _check_portable(body, doc.get("_id"))
    return {**body, SIG: {"by": signer, "ed25519": b64e(key.sign(_message(signer, body)))}}


def signature_of(doc: dict) -> str:
    """The signature a document carries (not verified), or "" if it has none."""
    sig = doc.get(SIG)
    value = sig.get("ed25519") if isinstance(sig, dict) else None
    return value if isinstance(value, str) else ""


def signer_of(doc: dict) -> str | None:
    """Who a document says signed it (not yet verified), or None if unsigned."""
    sig = doc.get(SIG)
    if sig is None:
        return None
    if not isinstance(sig, dict) or not isinstance(sig.get("by"), str):
        raise Forged(f"document {doc.get('_id')!r} has a malformed signature")
    return sig["by"]


class Verified(Protocol):
    """What a caller remembers of signatures already checked (vault/model/verified.py)."""

    def __contains__(self, digest: object) -> bool: ...

    def add(self, digest: bytes) -> None: ...

    def holds(self, digest: bytes) -> bool:
        """Whether ``digest`` was remembered (a look-up only: nothing is checked on a miss)."""


def verification_digest(public: Ed25519PublicKey, message: bytes, signature: bytes) -> bytes:
    """SHA-256 over all a verification depends on: the key, the signature (both of fixed
    length) and the signed message; a change to any of them is a new digest."""
    raw_key = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(b"fusevault verified-sig v1\0" + raw_key + signature + message).digest()


def verify_doc(public: Ed25519PublicKey, doc: dict, verified: Verified | None = None) -> str:
    """Check a document's signature with its signer's key; return the signer's id.

    ``verified``: the digests (``verification_digest``) of signatures this
    device checked before; one found there is not checked again, one
    checked now is added.  The signature may cover the canonical form or
    the one before round 9b (``_messages``); the digest is over the message
    it covers."""
    signer = signer_of(doc)
    if signer is None:
        raise Forged(f"document {doc.get('_id')!r} is not signed")
    try:
        raw = b64d(doc[SIG]["ed25519"])
        if len(raw) != SIGNATURE_SIZE:
            raise ValueError
        for message in _messages(signer, doc):
            digest = verification_digest(public, message, raw)
            if verified is not None and digest in verified:
                return signer
            try:
                public.verify(raw, message)
            except InvalidSignature:
                continue
            if verified is not None:
                verified.add(digest)
            return signer
    except (KeyError, ValueError, TypeError):
        pass
    raise Forged(f"document {doc.get('_id')!r} does not carry a valid signature of its author")


def checked_before(public: Ed25519PublicKey, doc: dict, verified: Verified) -> bool:
    """Whether ``verified`` remembers a check of ``doc``'s signature under ``public`` (``verify_doc``'s
    digests): a hash of each message it may cover, no signature checked now.  False for anything
    malformed (an unsigned document, a signature of the wrong shape)."""
    try:
        signer = signer_of(doc)
        raw = b64d(doc[SIG]["ed25519"])
        if signer is None or len(raw) != SIGNATURE_SIZE:
            return False
        return any(verified.holds(verification_digest(public, message, raw))
                   for message in _messages(signer, doc))
    except (KeyError, ValueError, TypeError, Forged):
        return False


def sign_parts(key: Ed25519PrivateKey, label: str, *parts: str | int) -> str:
    """A detached signature (b64) over ``parts`` behind ``label`` (``aead.ad``: length-prefixed,
    so no two lists of parts sign the same bytes): for a signed value that travels inside
    another signer's document (vault/model/placement.py), where no whole document is signed."""
    return b64e(key.sign(aead.ad(label, *parts)))


def parts_hold(public: Ed25519PublicKey, signature: object, label: str, *parts: str | int) -> bool:
    """Whether ``signature`` (b64, as ``sign_parts`` made it) holds over ``parts`` under ``public``."""
    if not isinstance(signature, str):
        return False
    try:
        raw = b64d(signature)
        if len(raw) != SIGNATURE_SIZE:
            return False
        public.verify(raw, aead.ad(label, *parts))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
