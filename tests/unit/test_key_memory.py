"""vault/model/key_memory.py: the newest key fields this device saw decide, never an older body, nor a
body whose ``keys_seq`` someone other than her raised."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fusevault.crypto.signing import sign_doc
from fusevault.vault.model import key_memory

HER = "a" * 32
SIGNING = Ed25519PrivateKey.generate()
PUBLIC = base64.b64encode(SIGNING.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))


def _body(seq: object, salt: str, signed: bool = True, **extra) -> dict:
    doc = {"_id": HER, "username": "alice", "salt": salt, "kdf": {"t": 1}, "iv": "iv",
           "en_master_kek": "kek-" + salt, "en_validation_string": "v", "checksum": "c-" + salt,
           "root": "r", "public_sign": PUBLIC, **extra}
    if seq is not None:
        doc[key_memory.SEQ] = seq
    return sign_doc(HER, SIGNING, doc) if signed else doc


def test_an_older_body_is_given_the_newer_key_fields_and_said_a_replay(tmp_path: Path) -> None:
    key_memory.remember(tmp_path, _body(2, "new"))
    older = _body(1, "old", recovery_key="words", source_dir_to_watch="x")
    used, replayed = key_memory.newest(tmp_path, older)
    assert replayed and used["salt"] == "new" and used["en_master_kek"] == "kek-new"
    assert "recovery_key" not in used  # revoked in the newer body: not brought back
    assert used["source_dir_to_watch"] == "x"  # the rest is the store's (settings have their own order)


def test_a_newer_or_equal_body_of_hers_is_used_as_it_is(tmp_path: Path) -> None:
    key_memory.remember(tmp_path, _body(1, "old"))
    newer = _body(2, "new")
    assert key_memory.newest(tmp_path, newer) == (newer, False)
    same = _body(1, "old")
    assert key_memory.newest(tmp_path, same) == (same, False)


@pytest.mark.parametrize("raised", [5, 2**53 - 1])
def test_her_older_body_with_a_keys_seq_raised_by_another_is_a_replay(tmp_path: Path, raised: int) -> None:
    """Round 19 (1), (4): the store writer raises ``keys_seq`` on her body from before ``passwd``; her
    signature no longer holds (or was stripped): the newer keys still decide, and the next change
    signs a sequence above the one remembered, not above the forged one."""
    key_memory.remember(tmp_path, _body(2, "new"))
    before = _body(1, "old")
    for forged in ({**before, key_memory.SEQ: raised}, _body(raised, "old", signed=False)):
        used, replayed = key_memory.newest(tmp_path, forged)
        assert replayed and used["salt"] == "new" and key_memory.seq(used) == 2
        assert key_memory.next_seq(tmp_path, used) == 3


def test_a_body_signed_by_another_key_is_not_hers(tmp_path: Path) -> None:
    key_memory.remember(tmp_path, _body(1, "one"))
    unsigned = _body(9, "x", signed=False)
    other = sign_doc(HER, Ed25519PrivateKey.generate(), unsigned)
    used, replayed = key_memory.newest(tmp_path, other)
    assert replayed and used["salt"] == "one"


def test_the_recovery_field_is_the_one_crypto_writes() -> None:
    from fusevault.crypto import recovery

    assert key_memory.RECOVERY == recovery.FIELD


def test_nothing_remembered_a_body_from_before_keys_seq_and_the_next_seq(tmp_path: Path) -> None:
    legacy = _body(None, "first")
    assert key_memory.newest(tmp_path, legacy) == (legacy, False)
    assert key_memory.next_seq(tmp_path, legacy) == 1
    key_memory.remember(tmp_path, _body(5, "five"))
    assert key_memory.next_seq(tmp_path, legacy) == 6  # above what this device saw, not the store's


def test_remember_never_goes_back(tmp_path: Path) -> None:
    key_memory.remember(tmp_path, _body(3, "three"))
    key_memory.remember(tmp_path, _body(2, "two"))
    assert key_memory.remembered(tmp_path, HER)["salt"] == "three"


@pytest.mark.parametrize("seq", [-1, True, 2**53, 1.5, "9", float("nan")])
def test_a_malformed_or_huge_seq_counts_as_zero(tmp_path: Path, seq: object) -> None:
    key_memory.remember(tmp_path, _body(1, "one"))
    doc = {**_body(None, "forged", signed=False), key_memory.SEQ: seq}
    used, replayed = key_memory.newest(tmp_path, doc)
    assert replayed and used["salt"] == "one"


@pytest.mark.parametrize("content", [b"", b"not json", b"[]", b'{"_id": "someone else"}', b'{"_id": "'
                                     + HER.encode() + b'", "salt": 5}'])
def test_a_damaged_record_is_not_used(tmp_path: Path, content: bytes) -> None:
    key_memory.remember(tmp_path, _body(4, "four"))
    path = next((tmp_path / "state").rglob("*.keys"))
    path.write_bytes(content)
    doc = _body(1, "store")
    assert key_memory.newest(tmp_path, doc) == (doc, False)
