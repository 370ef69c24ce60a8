"""Pure crypto: known-answer vectors, tamper detection, the key hierarchy."""

from __future__ import annotations

import os

import pytest

from fusevault.crypto import aead, recovery
from fusevault.crypto.kdf import WEAK_FOR_TESTS, KdfParams, derive_kek
from fusevault.crypto.keys import (
    MasterKey,
    checksum,
    new_wrapped_master,
    open_master,
    unwrap_master,
    wrap_master,
)
from fusevault.errors import CorruptData, WrongPassphrase


def test_aes_gcm_known_answer() -> None:
    # AES-256-GCM, zero key and nonce, 16 zero bytes (McGrew & Viega test case 14).
    sealed = aead.seal_with_nonce(bytes(32), bytes(12), bytes(16), b"")
    assert sealed[12:].hex() == "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"
    assert aead.unseal(bytes(32), sealed, b"") == bytes(16)


def test_argon2id_known_answers() -> None:
    # Cross-checked once against the reference implementation (argon2-cffi,
    # hash_secret_raw); a change here would lock every existing vault.
    assert derive_kek(b"password", b"somesalt" * 2, WEAK_FOR_TESTS).hex() == (
        "05b6ca8f8038b683887ad4916533858b49cb52040126c134f4c6e9d8711b8c09")
    stronger = KdfParams(iterations=2, lanes=1, memory_kib=64)
    assert derive_kek(b"password", b"somesalt" * 2, stronger).hex() == (
        "1a98fba8e6394425c9bdc333a9c750aaf811df070f5fb4a5788e1cf4db5793a1")


def test_associated_data_is_unambiguous() -> None:
    assert aead.ad("block", "f", 3, "v", 1).hex() == (
        "667573657661756c742f313a626c6f636b0001000000660800000003000000000000000100000076"
        "080000000100000000000000")
    assert aead.ad("x", "ab", "c") != aead.ad("x", "a", "bc")
    assert aead.ad("x", 1) != aead.ad("x", "1")


def test_nonces_are_fresh() -> None:
    key = aead.new_key()
    assert len({aead.seal(key, b"same", b"")[:12] for _ in range(1000)}) == 1000


@pytest.mark.parametrize("position", [0, 5, 12, 20, -1])
def test_any_flipped_bit_is_detected(position: int) -> None:
    key = aead.new_key()
    sealed = bytearray(aead.seal(key, b"plaintext" * 10, b"ad"))
    sealed[position] ^= 0x80
    with pytest.raises(CorruptData):
        aead.unseal(key, bytes(sealed), b"ad")


def test_wrong_associated_data_and_truncation_are_detected() -> None:
    key = aead.new_key()
    sealed = aead.seal(key, b"data", aead.ad("block", "fid", 1))
    with pytest.raises(CorruptData):
        aead.unseal(key, sealed, aead.ad("block", "fid", 2))
    with pytest.raises(CorruptData):
        aead.unseal(key, sealed[:20], aead.ad("block", "fid", 1))


def test_master_key_wrap_unwrap_and_rewrap() -> None:
    fields, master = new_wrapped_master("user1", b"pass one", WEAK_FOR_TESTS)
    assert unwrap_master("user1", fields, b"pass one") == master
    with pytest.raises(WrongPassphrase):
        unwrap_master("user1", fields, b"pass two")
    with pytest.raises(WrongPassphrase):  # bound to the user id
        unwrap_master("user2", fields, b"pass one")
    rewrapped = wrap_master("user1", master, b"pass two", WEAK_FOR_TESTS, pairs=True)
    assert unwrap_master("user1", rewrapped, b"pass two") == master
    assert rewrapped["salt"] != fields["salt"] and checksum(rewrapped) != checksum(fields)


def test_the_wrapping_says_whether_its_user_has_key_pairs() -> None:
    """Attack rounds 80b (5), 81a (4): a user made now says so in the one field her passphrase seals (the
    AD of her master key under it); one from before pairs (the older AD) still opens, and says nothing;
    no other field of her wrapping, an older validation string put in, changes what it says."""
    fields, master = new_wrapped_master("user1", b"pass", WEAK_FOR_TESTS)
    assert open_master("user1", fields, b"pass") == (master, True)
    older = wrap_master("user1", master, b"pass", WEAK_FOR_TESTS, pairs=False)
    assert open_master("user1", older, b"pass") == (master, False)
    assert unwrap_master("user1", older, b"pass") == master
    swapped = {**fields, "en_validation_string": older["en_validation_string"]}
    assert open_master("user1", swapped, b"pass") == (master, True)
    with pytest.raises(WrongPassphrase):
        open_master("user2", fields, b"pass")
    with pytest.raises(WrongPassphrase):
        open_master("user1", fields, b"other")


def test_the_recovery_wrapping_says_whether_its_user_has_key_pairs() -> None:
    master, secret = aead.new_key(), os.urandom(32)
    for pairs in (True, False):
        field = recovery.wrap("user1", master, secret, 1, pairs=pairs)
        assert recovery.open_wrapping("user1", field, secret) == (master, pairs)
        assert recovery.unwrap("user1", field, secret) == master

def test_dek_wrapping_is_bound_to_user_and_file() -> None:
    master = aead.new_key()
    key = MasterKey("u", master)
    dek = aead.new_key()
    wrapped = key.wrap_dek("file-a", dek)
    assert key.unwrap_dek("file-a", wrapped) == dek
    with pytest.raises(CorruptData):
        key.unwrap_dek("file-b", wrapped)
    with pytest.raises(CorruptData):
        MasterKey("v", master).unwrap_dek("file-a", wrapped)
    assert "master" not in repr(key) and master.hex() not in repr(key)


def test_kdf_parameters_are_validated() -> None:
    with pytest.raises(CorruptData):
        KdfParams.from_doc({"algorithm": "argon2id", "iterations": 0, "lanes": 1, "memory_kib": 8})
    with pytest.raises(CorruptData):
        KdfParams.from_doc({"algorithm": "scrypt", "iterations": 1, "lanes": 1, "memory_kib": 8})
    with pytest.raises(CorruptData):
        KdfParams.from_doc({"bogus": 1})


def test_a_re_keys_dek_is_one_per_file_epoch_and_recipients_and_known_to_her_devices_only() -> None:
    """Two of her devices re-keying one change at once derive the same DEK (attack round 37b (6)); any
    other file, epoch, recipients or master key gives another.  A known answer pins the derivation."""
    master = bytes(range(32))
    key = MasterKey("u1", master)
    dek = key.rekey_dek("f1", 2, ["a:f:g:r:READ"])
    assert dek.hex() == KNOWN_REKEY_DEK
    assert MasterKey("u1", master).rekey_dek("f1", 2, ["a:f:g:r:READ"]) == dek  # another device of hers
    others = [key.rekey_dek("f2", 2, ["a:f:g:r:READ"]), key.rekey_dek("f1", 3, ["a:f:g:r:READ"]),
              key.rekey_dek("f1", 2, ["a:f:g:r:READ", "a:f:g:s:READ"]), key.rekey_dek("f1", 2, []),
              MasterKey("u1", bytes(32)).rekey_dek("f1", 2, ["a:f:g:r:READ"])]
    assert dek not in others and len(set(others)) == len(others)


KNOWN_REKEY_DEK = "ba8f1ccd23f6c87bd89c8e42872421e641b9909e9c2db84a7d694515bfe35576"


def test_her_key_proof_is_bound_to_file_epoch_key_and_her_master_key() -> None:
    """Her proof that her device gave a file a key at an epoch (attack round 51b (4)-(6)'s fix): the same
    on every device of hers; any other file, epoch, key or master key gives another, and none of hers
    proves another key, epoch or file.  A known answer pins it (its own subkey: no other digest of hers
    is one)."""
    master, dek = bytes(range(32)), bytes(range(32, 64))
    key = MasterKey("u1", master)
    proof = key.key_proof("f1", 2, dek)
    assert proof == KNOWN_KEY_PROOF
    assert MasterKey("u1", master).proves_key("f1", 2, dek, proof)  # another device of hers
    others = [key.key_proof("f2", 2, dek), key.key_proof("f1", 3, dek), key.key_proof("f1", 2, bytes(32)),
              MasterKey("u1", bytes(32)).key_proof("f1", 2, dek), key.dek_digest("f1", 2, dek)]
    assert proof not in others and len(set(others)) == len(others)
    assert not any(key.proves_key(*each, proof) for each in (("f2", 2, dek), ("f1", 3, dek), ("f1", 1, dek),
                                                            ("f1", 2, bytes(32))))
    assert not MasterKey("u1", bytes(32)).proves_key("f1", 2, dek, proof)
    for garbage in (None, 7, "", proof.upper(), proof + "0", "\u00e9" * 32, b"x"):
        assert not key.proves_key("f1", 2, dek, garbage)


KNOWN_KEY_PROOF = "3c62588dace66f9aefe4c24e0de0df7f"
