"""vault/model/key_memory.py: the newest key fields this device saw decide, never an older body."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusevault.vault.model import key_memory


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))


def _body(seq: int | None, salt: str, **extra) -> dict:
    doc = {"_id": "a" * 32, "username": "alice", "salt": salt, "kdf": {"t": 1}, "iv": "iv",
           "en_master_kek": "kek-" + salt, "en_validation_string": "v", "checksum": "c-" + salt,
           "root": "r", **extra}
    if seq is not None:
        doc[key_memory.SEQ] = seq
    return doc


def test_an_older_body_is_given_the_newer_key_fields_and_said_a_replay(tmp_path: Path) -> None:
    key_memory.remember(tmp_path, _body(2, "new"))
    older = _body(1, "old", recovery_key="words", source_dir_to_watch="x")
    used, replayed = key_memory.newest(tmp_path, older)
    assert replayed and used["salt"] == "new" and used["en_master_kek"] == "kek-new"
    assert "recovery_key" not in used  # revoked in the newer body: not brought back
    assert used["source_dir_to_watch"] == "x"  # the rest is the store's (settings have their own order)


def test_a_newer_or_equal_body_is_used_as_it_is(tmp_path: Path) -> None:
    key_memory.remember(tmp_path, _body(1, "old"))
    newer = _body(2, "new")
    assert key_memory.newest(tmp_path, newer) == (newer, False)
    assert key_memory.newest(tmp_path, _body(1, "old")) == (_body(1, "old"), False)


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
    assert key_memory.remembered(tmp_path, "a" * 32)["salt"] == "three"


@pytest.mark.parametrize("seq", [-1, True, 2**53, 1.5, "9", float("nan")])
def test_a_malformed_or_huge_seq_counts_as_zero(tmp_path: Path, seq: object) -> None:
    key_memory.remember(tmp_path, _body(1, "one"))
    used, replayed = key_memory.newest(tmp_path, _body(None, "forged", keys_seq=seq))
    assert replayed and used["salt"] == "one"


@pytest.mark.parametrize("content", [b"", b"not json", b"[]", b'{"_id": "someone else"}', b'{"_id": "'
                                     + b"a" * 32 + b'", "salt": 5}'])
def test_a_damaged_record_is_not_used(tmp_path: Path, content: bytes) -> None:
    key_memory.remember(tmp_path, _body(4, "four"))
    path = next((tmp_path / "state").rglob("*.keys"))
    path.write_bytes(content)
    doc = _body(1, "store")
    assert key_memory.newest(tmp_path, doc) == (doc, False)
