"""Ed25519 signatures over documents.  Pure: no I/O.

A signed document carries ``sig: {"by": <user id>, "ed25519": <b64>}``.
The signature covers every field of the document but the ones a store
rewrites on its own (``_rev`` and CouchDB's bookkeeping) and ``sig`` itself,
in one canonical JSON form, behind the label ``doc-sig`` and the signer's
id: so changing any clear field a server needs (``owner``, ``delete``,
``epoch``, ``_deleted``, ``_id``) is detected, and a signature cannot be
moved to another signer or to another kind of signed thing.
"""

from __future__ import annotations

import hashlib
import json
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fusevault.crypto import aead
from fusevault.encoding import b64d, b64e
from fusevault.errors import Forged

SIG = "sig"
SIGNATURE_SIZE = 64
# Fields a store writes by itself; everything else is signed.
_NOT_SIGNED = frozenset({"_rev", "_revisions", "_conflicts", "_deleted_conflicts", "_local_seq", SIG})


def canonical(doc: dict) -> bytes:
    """The bytes a document's signature covers (sorted keys, no spaces, ASCII)."""
    body = {k: v for k, v in doc.items() if k not in _NOT_SIGNED}
    try:
        return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                          allow_nan=False).encode()
    except (TypeError, ValueError):
        raise Forged(f"document {doc.get('_id')!r} cannot be put in canonical form") from None


def _message(signer: str, doc: dict) -> bytes:
    return aead.ad("doc-sig", signer, canonical(doc))


# A CouchDB server (and PouchDB) parses numbers as doubles: an integer beyond
# this would come back rounded, and the signature over it would no longer hold.
SAFE_INTEGER = 2**53 - 1


def _check_portable(value: object, doc_id: object) -> None:
    if isinstance(value, dict):
        for item in value.values():
            _check_portable(item, doc_id)
    elif isinstance(value, list):
        for item in value:
            _check_portable(item, doc_id)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > SAFE_INTEGER:
        raise ValueError(f"document {doc_id!r} holds an integer a CouchDB server would round")


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


def verification_digest(public: Ed25519PublicKey, message: bytes, signature: bytes) -> bytes:
    """SHA-256 over all a verification depends on: the key, the signature (both of fixed
    length) and the signed message; a change to any of them is a new digest."""
    raw_key = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(b"fusevault verified-sig v1\0" + raw_key + signature + message).digest()


def verify_doc(public: Ed25519PublicKey, doc: dict, verified: Verified | None = None) -> str:
    """Check a document's signature with its signer's key; return the signer's id.

    ``verified``: the digests (``verification_digest``) of signatures this
    device checked before; one found there is not checked again, one
    checked now is added."""
    signer = signer_of(doc)
    if signer is None:
        raise Forged(f"document {doc.get('_id')!r} is not signed")
    try:
        raw = b64d(doc[SIG]["ed25519"])
        if len(raw) != SIGNATURE_SIZE:
            raise ValueError
        message = _message(signer, doc)
        if verified is None:
            public.verify(raw, message)
            return signer
        digest = verification_digest(public, message, raw)
        if digest not in verified:
            public.verify(raw, message)
            verified.add(digest)
    except (InvalidSignature, KeyError, ValueError, TypeError):
        raise Forged(f"document {doc.get('_id')!r} does not carry a valid signature of its author") from None
    return signer
