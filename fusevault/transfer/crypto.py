"""Keys and sealing for send/receive: pure functions, no I/O.

One SPAKE2 exchange per receiver, on the code, before anything else:

1. The receiver starts SPAKE2 (side A) and posts its message.  Both sides
   bind into SPAKE2's identities the session id, the sender's random salt
   and the receiver's id, as the relay handed them over.
2. The sender answers with side B's message.
3. The receiver derives the session keys and posts its confirmation value
   with its resume token, sealed (``hello``).
4. The sender checks that confirmation.  A wrong one ends the session for
   both (a wrong code, or someone in the middle); only after a right one
   does the sender post its own confirmation and the list of files, sealed.
5. The receiver checks the sender's confirmation before it opens the list.

The code is used nowhere else: the relay stores no function of it (the
session's ``code`` field holds the salt, which is random and independent of
the code), so it has nothing to test a guess against offline.  Taking part
in the exchange tests one guess, and the first failed confirmation ends the
session.

Each file request then runs an X25519 exchange whose public keys are
authenticated with the session keys (HMAC), so a relay that swaps one is
caught before a byte is sent; the file key comes from that exchange.  Chunks
are AES-256-GCM under the file key, a fresh random IV each, with the session
id, the direction, the file id, the chunk number and the last-chunk mark in
the associated data.  The last chunk carries the SHA-256 of the whole file.

The receiver's ``done`` (what ends a sender's wait, or frees the session for
the next receiver after a ``--list``) is HMACed with the session keys over the
session id, the receiver's id, its resume token's id (who it proved to be in
its hello), how it ended and the ids of the files this run asked for.  The
sender checks it against the files it answered for that receiver, so a relay
cannot forge one, move one from another receiver or session, or claim files
that never went.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fusevault.crypto import aead
from fusevault.encoding import b64d, b64e, loads_untrusted
from fusevault.errors import CorruptData, WrongCode
from fusevault.transfer.words import WORDS

PROTOCOL = "fusevault-send/2"
CHUNK = 1024 * 1024  # plaintext bytes per chunk (the last one also carries the file's SHA-256)
DIGEST = 32
DEFAULT_WORDS = 2
MAX_WORDS = 8
NUMBERS = 1000  # the number before the words
VERIFY_WORDS = 4
SALT_BYTES = 32
TOKEN_BYTES = 32
MISMATCH = "wrong code, or someone in the middle: nothing was sent"
FORGED_DONE = ("the receiver's end-of-transfer message does not verify: someone in the middle (the relay?) "
               "forged or replayed it; the transfer is not confirmed")
DONE_HOW = ("all", "list")


class KeyMismatch(WrongCode):
    """A confirmation or a key's authentication failed: a wrong code, or someone changed a message."""

    def __init__(self, message: str = MISMATCH) -> None:
        super().__init__(message)


class ForgedDone(WrongCode):
    """A receiver's ``done`` whose MAC does not hold: the sender believes no end it did not see."""

    def __init__(self) -> None:
        super().__init__(FORGED_DONE)


def decode(value: object) -> bytes:
    """Base64 from the relay; anything else is a message someone changed."""
    try:
        return b64d(value)  # type: ignore[arg-type]
    except (ValueError, TypeError, AttributeError):
        raise KeyMismatch() from None


# --- codes


def make_code(words: int = DEFAULT_WORDS) -> str:
    """A number and ``words`` words, easy to read aloud: ``7-orbit-lantern``."""
    if not 1 <= words <= MAX_WORDS:
        raise ValueError(f"a code has 1 to {MAX_WORDS} words")
    return "-".join([str(secrets.randbelow(NUMBERS)), *(secrets.choice(WORDS) for _ in range(words))])


def code_space(words: int) -> int:
    return NUMBERS * len(WORDS) ** words


def normalize_code(code: str) -> str:
    return "-".join(p for p in code.strip().lower().replace(" ", "-").split("-") if p)


def new_salt() -> str:
    return secrets.token_hex(SALT_BYTES)


def new_token() -> bytes:
    return os.urandom(TOKEN_BYTES)


def token_id(token: bytes) -> str:
    """What the sender keeps to recognise a receiver that comes back."""
    return hashlib.sha256(b"fusevault resume token|" + token).hexdigest()


# --- the session's key exchange


def _identities(sid: str, salt: str, uid: str) -> tuple[bytes, bytes]:
    bound = aead.ad(PROTOCOL, sid, salt, uid)
    return b"receiver|" + bound, b"sender|" + bound


def _password(code: str) -> bytes:
    return normalize_code(code).encode()


@dataclass(frozen=True)
class SessionKeys:
    """Everything derived from one receiver's SPAKE2 key."""

    sid: str
    uid: str
    confirm_receiver: bytes
    confirm_sender: bytes
    seal_r2s: bytes
    seal_s2r: bytes
    mac_r2s: bytes
    mac_s2r: bytes
    file_salt: bytes
    verifier: bytes

    @classmethod
    def derive(cls, pake_key: bytes, sid: str, salt: str, uid: str) -> SessionKeys:
        def key(label: str) -> bytes:
            return HKDF(hashes.SHA256(), 32, salt=bytes.fromhex(salt),
                        info=aead.ad(f"{PROTOCOL} {label}", sid, uid)).derive(pake_key)

        return cls(sid, uid, key("confirm receiver"), key("confirm sender"), key("seal r2s"),
                   key("seal s2r"), key("mac r2s"), key("mac s2r"), key("file salt"), key("verify"))

    def words(self) -> str:
        """Verification words: the same on both sides only if both hold the same key."""
        return " ".join(WORDS[b] for b in self.verifier[:VERIFY_WORDS])

    @staticmethod
    def check(expected: bytes, given: object) -> None:
        if not hmac.compare_digest(expected, decode(given)):
            raise KeyMismatch()

    # receiver -> sender

    def seal_hello(self, token: bytes) -> str:
        body = json.dumps({"resume": token.hex()}).encode()
        return b64e(aead.seal(self.seal_r2s, body, aead.ad("hello", self.sid, self.uid)))

    def open_hello(self, sealed: str) -> bytes:
        try:
            ad = aead.ad("hello", self.sid, self.uid)
            body = loads_untrusted(aead.unseal(self.seal_r2s, decode(sealed), ad))
            return bytes.fromhex(body["resume"])
        except (CorruptData, ValueError, TypeError, KeyError):
            raise KeyMismatch() from None

    def done_mac(self, tid: str, how: str, fids: list[str] | set[str]) -> str:
        """Binds ``done`` to this session, this receiver and the token it proved, and the files of its run."""
        ordered = sorted(fids)
        msg = aead.ad("done", self.sid, self.uid, tid, how, len(ordered), *ordered)
        return b64e(hmac.new(self.mac_r2s, msg, hashlib.sha256).digest())

    def seal_done(self, token: bytes, how: str, fids: list[str]) -> str:
        return f"{how} {self.done_mac(token_id(token), how, fids)}"

    def open_done(self, value: object, tid: str, fids: set[str]) -> str:
        """How the receiver ended (``all`` or ``list``), once its MAC holds for ``fids``; else ForgedDone."""
        how, _, mac = value.partition(" ") if isinstance(value, str) else ("", "", "")
        if how not in DONE_HOW or not mac:
            raise ForgedDone()
        try:
            given = b64d(mac)
        except (ValueError, TypeError):
            raise ForgedDone() from None
        if not hmac.compare_digest(b64d(self.done_mac(tid, how, fids)), given):
            raise ForgedDone()
        return how

    # sender -> receiver

    def seal_manifest(self, manifest: dict) -> str:
        body = json.dumps(manifest).encode()
        return b64e(aead.seal(self.seal_s2r, body, aead.ad("manifest", self.sid, self.uid)))

    def open_manifest(self, sealed: str) -> dict:
        try:
            return loads_untrusted(aead.unseal(self.seal_s2r, decode(sealed),
                                          aead.ad("manifest", self.sid, self.uid)))
        except (CorruptData, ValueError, TypeError):
            raise KeyMismatch() from None

    # file requests

    def request_mac(self, fid: str, first: int, public: bytes) -> str:
        msg = aead.ad("request", self.sid, self.uid, fid, first, public)
        return b64e(hmac.new(self.mac_r2s, msg, hashlib.sha256).digest())

    def ack_mac(self, fid: str, first: int, chunks: int, receiver_public: bytes, sender_public: bytes) -> str:
        msg = aead.ad("ack", self.sid, self.uid, fid, first, chunks, receiver_public, sender_public)
        return b64e(hmac.new(self.mac_s2r, msg, hashlib.sha256).digest())

    def file_key(self, shared: bytes, fid: str, first: int, receiver_public: bytes,
                 sender_public: bytes) -> bytes:
        info = aead.ad(f"{PROTOCOL} file", self.sid, self.uid, fid, first, receiver_public, sender_public)
        return HKDF(hashes.SHA256(), 32, salt=self.file_salt, info=info).derive(shared)


class ReceiverHandshake:
    """Side A, for one receiver."""

    def __init__(self, code: str, sid: str, salt: str, uid: str) -> None:
        self.sid, self.salt, self.uid = sid, salt, uid
        from spake2 import SPAKE2_A  # here: a mount imports this module and needs no exchange

        id_a, id_b = _identities(sid, salt, uid)
        self._pake = SPAKE2_A(_password(code), idA=id_a, idB=id_b)
        self.message = b64e(self._pake.start())

    def finish(self, sender_message: str) -> SessionKeys:
        try:
            key = self._pake.finish(decode(sender_message))
        except Exception:  # noqa: BLE001 - any failure to finish is a changed or wrong message
            raise KeyMismatch() from None
        return SessionKeys.derive(key, self.sid, self.salt, self.uid)


def sender_handshake(code: str, sid: str, salt: str, uid: str,
                     receiver_message: str) -> tuple[SessionKeys, str]:
    """Side B: (the session keys, the message to answer with)."""
    from spake2 import SPAKE2_B

    id_a, id_b = _identities(sid, salt, uid)
    pake = SPAKE2_B(_password(code), idA=id_a, idB=id_b)
    message = b64e(pake.start())
    try:
        key = pake.finish(decode(receiver_message))
    except Exception:  # noqa: BLE001 - any failure to finish is a changed or wrong message
        raise KeyMismatch() from None
    return SessionKeys.derive(key, sid, salt, uid), message


# --- one file request


def public_bytes(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


class FileRequest:
    """The receiver's side of one file request: from chunk ``first`` on."""

    def __init__(self, keys: SessionKeys, fid: str, first: int) -> None:
        self.keys, self.fid, self.first = keys, fid, first
        self._private = X25519PrivateKey.generate()
        self.public = public_bytes(self._private)
        self.mac = keys.request_mac(fid, first, self.public)

    def key(self, chunks: int, sender_public: str, mac: str) -> bytes:
        """The file key, once the sender's answer proves it came from the sender."""
        try:
            public = decode(sender_public)
            self.keys.check(b64d(self.keys.ack_mac(self.fid, self.first, chunks, self.public, public)), mac)
            shared = self._private.exchange(X25519PublicKey.from_public_bytes(public))
        except (ValueError, TypeError):
            raise KeyMismatch() from None
        return self.keys.file_key(shared, self.fid, self.first, self.public, public)


def answer_request(keys: SessionKeys, fid: str, first: int, chunks: int, receiver_public: str,
                   mac: str) -> tuple[bytes, str, str]:
    """The sender's side: (file key, its public key, its MAC), or KeyMismatch."""
    try:
        public = decode(receiver_public)
        keys.check(b64d(keys.request_mac(fid, first, public)), mac)
        ephemeral = X25519PrivateKey.generate()
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(public))
    except (ValueError, TypeError):
        raise KeyMismatch() from None
    mine = public_bytes(ephemeral)
    mac = keys.ack_mac(fid, first, chunks, public, mine)
    return keys.file_key(shared, fid, first, public, mine), b64e(mine), mac


# --- chunks


def chunk_ad(sid: str, fid: str, nr: int, last: bool) -> bytes:
    return aead.ad("chunk", sid, "sender to receiver", fid, nr, int(last))


def seal_chunk(key: bytes, sid: str, fid: str, nr: int, last: bool, data: bytes) -> tuple[str, bytes]:
    """(IV as base64, ciphertext): a fresh random IV for every chunk."""
    iv = os.urandom(aead.NONCE_SIZE)
    sealed = aead.seal_with_nonce(key, iv, data, chunk_ad(sid, fid, nr, last))
    return b64e(iv), sealed[aead.NONCE_SIZE:]


def open_chunk(key: bytes, sid: str, fid: str, nr: int, last: bool, iv: str, data: bytes) -> bytes:
    try:
        nonce = b64d(iv)
    except ValueError:
        raise CorruptData("a chunk's IV is not base64") from None
    return aead.unseal(key, nonce + data, chunk_ad(sid, fid, nr, last))


def chunk_count(size: int) -> int:
    return max(1, -(-size // CHUNK))
