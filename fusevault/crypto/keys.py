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


def _kek_ad(user_id: str, pairs: bool) -> bytes:
    """The associated data of her master key sealed under her passphrase's key.  It says whether she has
    key pairs (every user made since attack round 80b (5), and each at her next passphrase change): only
    her passphrase seals it, so her document stripped of its pairs (and of every other sign of them) by
    whoever writes the store is no user from before pairs to give new ones (vault/model/users.py
    ``ensure_identity``); nor does an older piece of her wrapping put in (81a (4)): the claim is in the
    one field her passphrase opens.  The older AD says nothing either way."""
    return aead.ad("master-kek pairs" if pairs else "master-kek", user_id)


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
        # Whether the wrapping her passphrase opened says she has key pairs (``_kek_ad``).
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
    sealed = aead.seal(kek, master, _kek_ad(user_id, pairs))
    validation = aead.seal(subkey(master, "fusevault validation v1"), VALIDATION_TEXT,
                           aead.ad("validation", user_id))
    return {
        "salt": b64e(salt),
        "kdf": params.to_doc(),
        "iv": b64e(sealed[: aead.NONCE_SIZE]),
        "en_master_kek": b64e(sealed[aead.NONCE_SIZE:]),
        "en_validation_string": b64e(validation),
    }


def unwrap_master(user_id: str, fields: dict, passphrase: bytes) -> bytes:
    return open_master(user_id, fields, passphrase)[0]


def open_master(user_id: str, fields: dict, passphrase: bytes) -> tuple[bytes, bool]:
    """Her master key, and whether its wrapping says she has key pairs (``_kek_ad``)."""
    try:
        salt = b64d(fields["salt"])
        params = KdfParams.from_doc(fields["kdf"])
        sealed = b64d(fields["iv"]) + b64d(fields["en_master_kek"])
        validation = b64d(fields["en_validation_string"])
    except (KeyError, ValueError, TypeError):
        raise CorruptData("the user's key material is malformed") from None
    kek = derive_kek(passphrase, salt, params)
    for pairs in (True, False):
        try:
            master = aead.unseal(kek, sealed, _kek_ad(user_id, pairs))
            break
        except CorruptData:
            continue
    else:
        raise WrongPassphrase("wrong passphrase")
    text = aead.unseal(subkey(master, "fusevault validation v1"), validation, aead.ad("validation", user_id))
    if not hmac.compare_digest(text, VALIDATION_TEXT):
        raise CorruptData("the validation string does not match")
    return master, pairs


def check_master(doc: dict, master: bytes) -> bool:
    """Whether ``master`` opens the document's validation string (the recovery key checks with it)."""
    try:
        validation = b64d(doc["en_validation_string"])
        text = aead.unseal(subkey(master, "fusevault validation v1"), validation,
                           aead.ad("validation", doc["_id"]))
    except (KeyError, ValueError, TypeError, CorruptData):
        return False
    return hmac.compare_digest(text, VALIDATION_TEXT)


def checksum(fields: dict) -> str:
    """Integrity check of the clear key fields, to tell damage from a wrong passphrase."""
    keys = ("salt", "kdf", "iv", "en_master_kek", "en_validation_string")
    canon = json.dumps({k: fields.get(k) for k in keys}, sort_keys=True)
    return hashlib.sha256(canon.encode()).hexdigest()
