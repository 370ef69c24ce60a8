"""Signatures this device already checked, so a mount verifies only documents it has not seen (issue 25).

Verifying the Ed25519 signature of every node document was most of the time
of a mount of a large vault.  A signature checked once is remembered as the
SHA-256 digest of all its check depended on (``signing.verification_digest``:
the signer's pinned public key, the signed message, the signature), so a
changed key, body or signature is a new digest and is checked afresh; a
document forged after it was remembered is refused as before.

The digests live OUTSIDE the vault folder, which is hostile:
``paths.state_dir()/verified/<hash of vault dir and user>``, sealed with the
user's device-state key (AES-GCM under an HKDF sub-key of the master key,
bound to this kind, the user id and the file's name): a file someone else
wrote or changed, or another user's, does not open and is ignored (every
signature is checked again, and the file rewritten).  Written atomically
(temp file, fsync, rename) off the trio loop at the end of a load (adding
what it checked) and when the volume is saved whole (lock, unmount): then
only the digests used since the load are kept, so the file holds the
documents still present (and read) and no more.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path

from fusevault import paths
from fusevault.crypto.keys import MasterKey
from fusevault.errors import VaultError
from fusevault.vault.model import device_file

log = logging.getLogger(__name__)

KIND = "verified"
MAGIC = b"fusevault verified v1\n"
DIGEST = 32
LIMIT = 4_000_000  # digests kept at most (128 MB): far beyond any vault a mount loads
# This process's counts (all users): reported with FUSEVAULT_OP_STATS (fs/boundary.py).
STATS = {"verified": 0, "cached": 0}


def cache_path(vault_root: Path | str, user_id: str) -> tuple[Path, str]:
    name = hashlib.sha256(f"{os.path.realpath(vault_root)}\0{user_id}".encode()).hexdigest()[:32]
    return paths.state_dir() / KIND / name, name


class Verified:
    """The digests of signatures checked before (``signing.Verified``)."""

    def __init__(self, key: MasterKey, path: Path, name: str, known: frozenset[bytes] = frozenset()) -> None:
        self.key = key
        self.path = path
        self.name = name
        self.known = known  # read from the file
        self._written = known  # what the file holds now
        self.used: set[bytes] = set()  # found or added since: what is written back
        self.verified = 0
        self.cached = 0
        self._lock = threading.Lock()  # one save at a time (a lock and an unmount)

    @classmethod
    def open(cls, key: MasterKey, vault_root: Path | str) -> Verified:
        path, name = cache_path(vault_root, key.user_id)
        try:
            plain = device_file.read_sealed(path, key, KIND)
            if plain is None:
                return cls(key, path, name)
            if not plain.startswith(MAGIC) or (len(plain) - len(MAGIC)) % DIGEST:
                raise device_file.Damaged("its format is unknown")
        except device_file.Damaged as err:
            log.warning("the signatures checked before on this device (%s) were not read (%s): all are "
                        "checked again", path, err)
            return cls(key, path, name)
        body = memoryview(plain)[len(MAGIC):]
        return cls(key, path, name, frozenset(bytes(body[i:i + DIGEST]) for i in range(0, len(body), DIGEST)))

    def __contains__(self, digest: object) -> bool:
        if digest in self.known or digest in self.used:
            self.used.add(digest)  # type: ignore[arg-type]  # in known: bytes
            self.cached += 1
            STATS["cached"] += 1
            return True
        self.verified += 1  # not found: the caller checks it now (and adds it if it holds)
        STATS["verified"] += 1
        return False

    def holds(self, digest: bytes) -> bool:
        """``in``, without counting a miss as a check (the caller checks nothing on a miss)."""
        if digest in self.known or digest in self.used:
            self.used.add(digest)
            self.cached += 1
            STATS["cached"] += 1
            return True
        return False

    def add(self, digest: bytes) -> None:
        if len(self.used) < LIMIT:
            self.used.add(digest)

    def save(self, prune: bool = True) -> None:
        """Write the digests used since opened (off the trio loop), if the file holds others.

        ``prune=False`` (the end of a load) keeps the file's too: the documents
        read only later (a file's versions, when it is opened) are still there
        to be found; the volume's save at lock or unmount drops what went unused."""
        with self._lock:
            used = frozenset(self.used.copy())  # one step under the GIL: others may add meanwhile
            if not prune:
                used |= self.known
            if used == self._written:
                return
            plain = MAGIC + b"".join(sorted(used))
            try:
                device_file.write(self.path, self.key, KIND, plain)
            except (OSError, VaultError) as err:  # only speed is lost: the next mount checks them again
                log.warning("could not save the signatures checked (%s): the next mount checks them again",
                            err)
                return
            self._written = used
