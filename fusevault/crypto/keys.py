"""Key hierarchy: passphrase -> KEK -> random master key -> per-file DEKs.

The master key is random; the passphrase only wraps it (borg's design), so
changing the passphrase re-wraps 32 bytes and touches no file.  Sub-keys for
distinct jobs are derived from the master key with HKDF.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fusevault.crypto import aead
from fusevault.crypto.kdf import SALT_SIZE, KdfParams, derive_kek
from fusevault.encoding import b64d, b64e
from fusevault.errors import CorruptData, WrongPassphrase

VALIDATION_TEXT = b"fusevault validation string v1"
# The text a user with key pairs seals (every user made since attack round 80b (5), and each at her next
# passphrase change): her document stripped of its pairs by whoever writes the store is then no user
# from before pairs to give new ones (vault/model/users.py ``ensure_identity``), for only her master
# key seals it, and her passphrase opens nothing without it.  A v1 text says nothing either way.
VALIDATION_PAIRS = b"fusevault validation string v2: this user has key pairs"


def subkey(master: bytes, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(master)


class MasterKey:
    """An unlocked user's master key and the sub-keys derived from it."""

    __slots__ = ("user_id", "_wrap", "_private", "_names", "_device", "_rekey", "_digests", "_proofs",
                 "identity", "pairs_sealed")

    def __init__(self, user_id: str, master: bytes) -> None:
        self.user_id = user_id
        # The user's key pairs (crypto.identity.Identity), opened with this
        # key at unlock: what opens the file keys others sealed to them.
        self.identity = None
        # Whether the validation string her wrapping holds says she has key pairs (VALIDATION_PAIRS).
        self.pairs_sealed = False
        self._wrap = subkey(master, "fusevault dek-wrap v1")
        self._private = subkey(master, "fusevault private-doc v1")
        self._names = subkey(master, "fusevault doc-name v1")
        # What one device keeps for itself, outside the vault: confirmed settings
        # (vault/model/confirmed.py) and the rollback ledger (vault/model/ledger.py).
        self._device = subkey(master, "fusevault device-state v1")
        self._rekey = subkey(master, "fusevault rekey-dek v1")
        self._digests = subkey(master, "fusevault dek-digest v1")
        self._proofs = subkey(master, "fusevault key-proof v1")

    def wrap_dek(self, fid: str, dek: bytes) -> bytes:
        return aead.seal(self._wrap, dek, aead.ad("dek", self.user_id, fid))

    def unwrap_dek(self, fid: str, wrapped: bytes) -> bytes:
        return aead.unseal(self._wrap, wrapped, aead.ad("dek", self.user_id, fid))

    def seal_private(self, kind: str, doc_id: str, plain: bytes) -> bytes:
        """Seal a document only this user reads (bound to its kind and id)."""
        return aead.seal(self._private, plain, aead.ad(kind, self.user_id, doc_id))

    def unseal_private(self, kind: str, doc_id: str, sealed: bytes) -> bytes:
        return aead.unseal(self._private, sealed, aead.ad(kind, self.user_id, doc_id))

    def seal_device(self, kind: str, name: str, plain: bytes) -> bytes:
        """Seal state this device keeps outside the vault (bound to its kind and name)."""
        return aead.seal(self._device, plain, aead.ad(kind, self.user_id, name))

    def unseal_device(self, kind: str, name: str, sealed: bytes) -> bytes:
        return aead.unseal(self._device, sealed, aead.ad(kind, self.user_id, name))

    def rekey_dek(self, fid: str, epoch: int, recipients: list[str]) -> bytes:
        """A file's DEK at a new key epoch: the same on every device of this user that gives the
        file that epoch for the same recipients, so two of her devices re-keying one change at once
        agree (each with random keys, one device's sidecar and its recipients' key files fell to the
        other's key at the same epoch: EIO, attack round 37b (6)).  Another epoch or other
        recipients: another key.  Nobody without this master key can derive it; the old DEK, which
        the revoked hold, is no part of it."""
        info = json.dumps(["fusevault rekey-dek v1", fid, epoch, sorted(recipients)])
        return subkey(self._rekey, info)

    def dek_digest(self, fid: str, epoch: int, dek: bytes) -> str:
        """A keyed digest of a file's DEK at an epoch, kept by her device's ledger to know her own key
        there again (vault/model/ledger.py ``keys``): it tells nothing of the key without this master
        key, and no one without it makes one that matches another key."""
        return hmac.new(self._digests, aead.ad("dek-digest", fid, str(epoch), dek), "sha256").hexdigest()[:32]

    def key_proof(self, fid: str, epoch: int, dek: bytes) -> str:
        """Her proof that her device gave her file ``fid`` the key ``dek`` at ``epoch`` (a re-key): written
        into the node's sealed fields with the key, carried over unchanged by a member's commit under that
        key (vault/model/nodes.py ``key_proof``).  Bound to the file, the epoch and the key, so a member
        who holds one (her key at an epoch, and its proof) proves no other key, epoch or file with it;
        nobody without this master key makes one (vault/model/her_keys.py ``her_key_at``)."""
        return hmac.new(self._proofs, aead.ad("key-proof", fid, str(epoch), dek), "sha256").hexdigest()[:32]

    def proves_key(self, fid: str, epoch: int, dek: bytes, proof: object) -> bool:
        """Whether ``proof`` (a document's, anyone's input) is her ``key_proof`` of ``dek`` at ``epoch``."""
        # compare_digest takes only ASCII text (anything else raises): a document's is checked first.
        return (isinstance(proof, str) and proof.isascii()
                and hmac.compare_digest(proof, self.key_proof(fid, epoch, dek)))

    def record_proof(self, fid: str, epoch: int, dek: bytes, digest: bytes) -> str:
        """Her proof that her re-key wrote the record ``digest`` names (vault/model/sealed_for.py: for whom
        it made ``dek`` at ``epoch``): bound to the file, the epoch, the key and the record, so a member who
        writes the node (who holds the key) makes no record that counts (attack round 73a (1))."""
        return hmac.new(self._proofs, aead.ad("sealed-for", fid, str(epoch), dek, digest),
                        "sha256").hexdigest()[:32]

    def proves_record(self, fid: str, epoch: int, dek: bytes, digest: bytes, proof: object) -> bool:
        """Whether ``proof`` (a document's, anyone's input) is her ``record_proof`` of that record."""
        return (isinstance(proof, str) and proof.isascii()
                and hmac.compare_digest(proof, self.record_proof(fid, epoch, dek, digest)))

    def name_id(self, kind: str, name: str) -> str:
        """A stable document id for a private name, which the id does not reveal."""
        return hmac.new(self._names, aead.ad(kind, name), "sha256").hexdigest()[:32]

    def __repr__(self) -> str:  # never show key bytes
        return f"MasterKey(user_id={self.user_id!r})"


def new_wrapped_master(user_id: str, passphrase: bytes, params: KdfParams) -> tuple[dict, bytes]:
    """Create a random master key (for a user made with key pairs); return its stored fields and the key."""
    master = aead.new_key()
    return wrap_master(user_id, master, passphrase, params, pairs=True), master


def wrap_master(user_id: str, master: bytes, passphrase: bytes, params: KdfParams, *, pairs: bool) -> dict:
    """The clear fields that open ``master`` with ``passphrase``; ``pairs``: the user has key pairs."""
    salt = os.urandom(SALT_SIZE)
    kek = derive_kek(passphrase, salt, params)
    sealed = aead.seal(kek, master, aead.ad("master-kek", user_id))
    validation = aead.seal(subkey(master, "fusevault validation v1"),
                           VALIDATION_PAIRS if pairs else VALIDATION_TEXT, aead.ad("validation", user_id))
    return {
        "salt": b64e(salt),
        "kdf": params.to_doc(),
        "iv": b64e(sealed[: aead.NONCE_SIZE]),
        "en_master_kek": b64e(sealed[aead.NONCE_SIZE:]),
        "en_validation_string": b64e(validation),
    }


def unwrap_master(user_id: str, fields: dict, passphrase: bytes) -> bytes:
    try:
        salt = b64d(fields["salt"])
        params = KdfParams.from_doc(fields["kdf"])
        sealed = b64d(fields["iv"]) + b64d(fields["en_master_kek"])
        validation = b64d(fields["en_validation_string"])
    except (KeyError, ValueError, TypeError):
        raise CorruptData("the user's key material is malformed") from None
    kek = derive_kek(passphrase, salt, params)
    try:
        master = aead.unseal(kek, sealed, aead.ad("master-kek", user_id))
    except CorruptData:
        raise WrongPassphrase("wrong passphrase") from None
    if _validation(user_id, validation, master) is None:
        raise CorruptData("the validation string does not match")
    return master


def _validation(user_id: str, sealed: bytes, master: bytes) -> bytes | None:
    """The validation text ``master`` opens (either kind), or None."""
    try:
        text = aead.unseal(subkey(master, "fusevault validation v1"), sealed, aead.ad("validation", user_id))
    except CorruptData:
        return None
    return text if any(hmac.compare_digest(text, t) for t in (VALIDATION_TEXT, VALIDATION_PAIRS)) else None


def check_master(doc: dict, master: bytes) -> bool:
    """Whether ``master`` opens the document's validation string (the recovery key checks with it)."""
    try:
        return _validation(doc["_id"], b64d(doc["en_validation_string"]), master) is not None
    except (KeyError, ValueError, TypeError):
        return False


def pairs_sealed(doc: dict, master: bytes) -> bool:
    """Whether the document's validation string, opened with ``master``, says its user has key pairs."""
    try:
        text = _validation(doc["_id"], b64d(doc["en_validation_string"]), master)
    except (KeyError, ValueError, TypeError):
        return False
    return text is not None and hmac.compare_digest(text, VALIDATION_PAIRS)


def checksum(fields: dict) -> str:
    """Integrity check of the clear key fields, to tell damage from a wrong passphrase."""
    keys = ("salt", "kdf", "iv", "en_master_kek", "en_validation_string")
    canon = json.dumps({k: fields.get(k) for k in keys}, sort_keys=True)
    return hashlib.sha256(canon.encode()).hexdigest()
