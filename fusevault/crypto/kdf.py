"""Passphrase-based key derivation with Argon2id.

The parameters are stored beside the salt in the user document, so they can
be raised later without breaking existing vaults.

FUSEVAULT_INSECURE_FAST_KDF=1 is the one test-only switch: vaults *created*
while it is set get tiny Argon2id parameters (and the document records them),
so the test suite does not spend minutes in the KDF.  Never set it otherwise.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from cryptography.hazmat.primitives.kdf.argon2 import Argon2id

from fusevault.errors import CorruptData

TEST_SWITCH = "FUSEVAULT_INSECURE_FAST_KDF"
SALT_SIZE = 16


@dataclass(frozen=True)
class KdfParams:
    algorithm: str = "argon2id"
    iterations: int = 3
    lanes: int = 4
    memory_kib: int = 64 * 1024  # RFC 9106 second recommended option

    def to_doc(self) -> dict:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict) -> KdfParams:
        try:
            params = cls(**doc)
        except TypeError:
            raise CorruptData("KDF parameters are malformed") from None
        if params.algorithm != "argon2id" or not (
            1 <= params.iterations <= 64 and 1 <= params.lanes <= 64
            and 8 * params.lanes <= params.memory_kib <= 4 * 1024 * 1024
        ):
            raise CorruptData("KDF parameters are out of range")
        return params


WEAK_FOR_TESTS = KdfParams(iterations=1, lanes=1, memory_kib=8)


def default_params() -> KdfParams:
    if os.environ.get(TEST_SWITCH) == "1":
        return WEAK_FOR_TESTS
    return KdfParams()


def derive_kek(passphrase: bytes, salt: bytes, params: KdfParams) -> bytes:
    kdf = Argon2id(
        salt=salt,
        length=32,
        iterations=params.iterations,
        lanes=params.lanes,
        memory_cost=params.memory_kib,
    )
    return kdf.derive(passphrase)
