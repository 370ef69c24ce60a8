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
    older = _body(1, "old", recovery_key="words", source_dir_to_watch="x")
    key_memory.remember(tmp_path, older)  # seen here before the newer one came
    key_memory.remember(tmp_path, _body(2, "new"))
    used, verdict = key_memory.newest(tmp_path, older)
    assert verdict == key_memory.REPLAY and used["salt"] == "new" and used["en_master_kek"] == "kek-new"
    assert "recovery_key" not in used  # revoked in the newer body: not brought back
    assert used["source_dir_to_watch"] == "x"  # the rest is the store's (settings have their own order)


def test_a_newer_or_equal_body_of_hers_is_used_as_it_is(tmp_path: Path) -> None:
    key_memory.remember(tmp_path, _body(1, "old"))
    newer = _body(2, "new")
    assert key_memory.newest(tmp_path, newer) == (newer, key_memory.CURRENT)
    same = _body(1, "old")
    assert key_memory.newest(tmp_path, same) == (same, key_memory.CURRENT)


@pytest.mark.parametrize("raised", [5, 2**53 - 1])
def test_her_older_body_with_a_keys_seq_raised_by_another_is_a_replay(tmp_path: Path, raised: int) -> None:
    """Round 19 (1), (4): the store writer raises ``keys_seq`` on her body from before ``passwd``; her
    signature no longer holds (or was stripped): the newer keys still decide, and the next change
    signs a sequence above the one remembered, not above the forged one."""
    key_memory.remember(tmp_path, _body(2, "new"))
    before = _body(1, "old")
    for forged in ({**before, key_memory.SEQ: raised}, _body(raised, "old", signed=False)):
        used, verdict = key_memory.newest(tmp_path, forged)
        assert verdict == key_memory.REPLAY and used["salt"] == "new" and key_memory.seq(used) == 2
        assert key_memory.next_seq(tmp_path, used) == 3


def test_a_body_signed_by_another_key_is_not_hers(tmp_path: Path) -> None:
    key_memory.remember(tmp_path, _body(1, "one"))
    unsigned = _body(9, "x", signed=False)
    other = sign_doc(HER, Ed25519PrivateKey.generate(), unsigned)
    used, verdict = key_memory.newest(tmp_path, other)
    assert verdict == key_memory.REPLAY and used["salt"] == "one"


def test_the_recovery_field_is_the_one_crypto_writes() -> None:
    from fusevault.crypto import recovery

    assert key_memory.RECOVERY == recovery.FIELD


def test_nothing_remembered_a_body_from_before_keys_seq_and_the_next_seq(tmp_path: Path) -> None:
    legacy = _body(None, "first")
    assert key_memory.newest(tmp_path, legacy) == (legacy, key_memory.CURRENT)
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
    used, verdict = key_memory.newest(tmp_path, doc)
    assert verdict == key_memory.REPLAY and used["salt"] == "one"


@pytest.mark.parametrize("content", [b"", b"not json", b"[]", b'{"_id": "someone else"}', b'{"_id": "'
                                     + HER.encode() + b'", "salt": 5}'])
def test_a_damaged_record_is_not_used(tmp_path: Path, content: bytes) -> None:
    key_memory.remember(tmp_path, _body(4, "four"))
    path = next((tmp_path / "state").rglob("*.keys"))
    path.write_bytes(content)
    doc = _body(1, "store")
    assert key_memory.newest(tmp_path, doc) == (doc, key_memory.CURRENT)


def test_a_body_of_hers_made_apart_is_a_fork_that_the_higher_seq_wins_on_every_device(tmp_path: Path) -> None:
    """Round 19 (5): her laptop changed her keys twice, her desktop once, apart.  Each device, whatever
    it holds, ends with the same winner (the higher sequence; then the digest)."""
    laptop, desktop = tmp_path / "laptop", tmp_path / "desktop"
    twice, once = _body(2, "laptop"), _body(1, "desktop", settings_at_us=7)
    key_memory.remember(laptop, twice)
    key_memory.remember(desktop, once)
    used, verdict = key_memory.newest(laptop, once)
    assert verdict == key_memory.FORK and used["salt"] == "laptop" and used["settings_at_us"] == 7
    assert key_memory.newest(desktop, twice) == (twice, key_memory.CURRENT)
    a, b = _body(3, "a"), _body(3, "b")
    key_memory.remember(laptop, a)
    key_memory.remember(desktop, b)
    assert key_memory.newest(laptop, b)[0]["salt"] == key_memory.newest(desktop, a)[0]["salt"]


def test_a_recovery_key_revoked_here_stays_revoked_in_a_body_made_apart(tmp_path: Path) -> None:
    """Round 19 (2): revoked on this device; a newer body made on a device that never saw the revocation
    still carries the wrapping: taken, without it."""
    words = {"v": 1, "en_master": "sealed"}
    with_key = _body(0, "first", recovery_key=words)
    key_memory.remember(tmp_path, with_key)
    key_memory.remember(tmp_path, _body(1, "first"), revoking=key_memory.recovery_digest(with_key))
    apart = _body(2, "second", recovery_key=words)
    used, verdict = key_memory.newest(tmp_path, apart)
    assert verdict == key_memory.REVOKED and "recovery_key" not in used and used["salt"] == "second"
    key_memory.remember(tmp_path, apart)
    assert "recovery_key" not in key_memory.remembered(tmp_path, HER)
    fresh = _body(3, "second", recovery_key={"v": 1, "en_master": "a new one"})
    assert key_memory.newest(tmp_path, fresh) == (fresh, key_memory.CURRENT)  # a new key is not revoked


def test_a_body_numbered_above_her_passwd_does_not_bring_back_the_wrapping_it_retired(tmp_path: Path) -> None:
    """Round 20 (1): ``passwd`` here (wrapping "old" retired, keys_seq 1); apart, her other device made
    two recovery-key changes on the old wrapping (keys_seq 2).  Its body is numbered above, but the
    passphrase she replaced stays replaced: its recovery key is taken, her new wrapping kept, under a
    sequence above both (the same on every device that sees the pair)."""
    base = _body(0, "old")
    key_memory.remember(tmp_path, base)
    changed = _body(1, "new", **{key_memory.RETIRED_FIELD: [key_memory.wrapping_digest(base)]})
    key_memory.remember(tmp_path, changed, retiring=key_memory.wrapping_digest(base))
    apart = _body(2, "old", recovery_key="words")
    used, verdict = key_memory.newest(tmp_path, apart)
    assert verdict == key_memory.MERGED
    assert (used["salt"], used["checksum"], used["recovery_key"], key_memory.seq(used)) == (
        "new", "c-new", "words", 3)
    # Her other device, which remembers the body numbered 2 and is shown the passwd body: the same.
    other = tmp_path / "other"
    key_memory.remember(other, base)
    key_memory.remember(other, apart)
    used, verdict = key_memory.newest(other, changed)
    assert verdict == key_memory.MERGED
    assert (used["salt"], used["recovery_key"], key_memory.seq(used)) == ("new", "words", 3)


@pytest.mark.parametrize("listed", [5, True, 1.5, "abc", {"x": 1}, [None, 3], None])
def test_a_list_of_revocations_of_another_type_counts_as_none(tmp_path: Path, listed: object) -> None:
    """Round 20 (2): ``revoked_recovery`` set to 5 by the store (her signature broken) made every
    unlock end in a TypeError; and a revocation named only in a body she did not sign counts for nothing."""
    mine = _body(1, "one", recovery_key="words")
    key_memory.remember(tmp_path, mine)
    for field in (key_memory.REVOKED_FIELD, key_memory.RETIRED_FIELD):
        used, verdict = key_memory.newest(tmp_path, {**mine, field: listed})
        assert (verdict, used["recovery_key"]) == (key_memory.CURRENT, "words")
        assert key_memory.revoked(None, {field: listed}) == key_memory.retired(None, {field: listed}) == []
    forged = {**mine, key_memory.REVOKED_FIELD: [key_memory.recovery_digest(mine)]}
    used, verdict = key_memory.newest(tmp_path, forged)
    assert (verdict, used["recovery_key"]) == (key_memory.CURRENT, "words")


def test_a_body_she_signs_is_built_on_the_newest_of_hers_this_device_knows(tmp_path: Path) -> None:
    """Round 22a (4), (5): her older body, replayed (the same keys, her old settings, no list of
    revocations), is never the base of one she signs: the record's newer settings and lists are."""
    older = _body(1, "k", passphrase_expiry_ttl={"ttl": "8", "unit": "hr"}, settings_at_us=1)
    newer = _body(1, "k", passphrase_expiry_ttl={"ttl": "2", "unit": "hr"}, settings_at_us=2,
                  revoked_recovery=["d"], retired_wrappings=["w"])
    key_memory.remember(tmp_path, newer)
    base = key_memory.signing_base(tmp_path, older, True)
    assert base["passphrase_expiry_ttl"] == {"ttl": "2", "unit": "hr"} and base["settings_at_us"] == 2
    assert base[key_memory.REVOKED_FIELD] == ["d"] and base[key_memory.RETIRED_FIELD] == ["w"]
    # A list in a body she did not sign never counts (the caller says whether she signed it).
    planted = {**older, key_memory.REVOKED_FIELD: ["x"]}
    assert key_memory.signing_base(tmp_path, planted, False)[key_memory.REVOKED_FIELD] == ["d"]


def test_a_body_she_did_not_sign_is_replaced_by_her_kept_body_or_refused(tmp_path: Path) -> None:
    """Round 22a (6): a store body the store's writer changed is never the base of one she signs: her
    newest body this device keeps is (with the store's revision), and with none kept, ``Forged``."""
    from fusevault.errors import Forged

    forged = {**_body(1, "k"), "en_private_keys": "flipped", "_rev": "9-x"}
    with pytest.raises(Forged):
        key_memory.own_body(tmp_path, forged, False)
    genuine = _body(1, "k", en_private_keys="sealed")
    key_memory.remember(tmp_path, genuine)
    used = key_memory.own_body(tmp_path, forged)
    assert used["en_private_keys"] == "sealed" and used["_rev"] == "9-x" and used["sig"] == genuine["sig"]
    assert key_memory.own_body(tmp_path, genuine) is genuine  # hers: as it is
