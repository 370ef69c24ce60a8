"""The re-keys this device owes (vault/model/rekeys_owed.py, attack round 58d): recorded sealed on the
device, paid only by the token of the re-key that began after them, a damaged record said, never
fatal, and set aside (not overwritten) when a new debt is recorded."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from fusevault import paths
from fusevault.crypto.keys import MasterKey
from fusevault.encoding import SAFE_INTEGER
from fusevault.errors import VaultError
from fusevault.vault.model import device_file, rekeys_owed

ALICE = "a" * 32
FID, OTHER = "f" * 32, "e" * 32


def _key(user: str = ALICE, master: bytes = b"m" * 32) -> MasterKey:
    return MasterKey(user, master)


def _place(root: Path, user: str = ALICE) -> Path:
    return paths.confirmed_file(root, user, rekeys_owed.SUFFIX)


def test_a_debt_is_kept_sealed_until_the_token_of_its_re_key_pays_it(tmp_path: Path) -> None:
    root, key = tmp_path / "vault", _key()
    assert rekeys_owed.owed(root, key) == {}
    tokens = rekeys_owed.owe(root, key, [(FID, 3, ["share-1"]), (OTHER, 0, [])])
    owed = rekeys_owed.owed(root, key)
    assert set(owed) == {FID, OTHER} and not owed.damaged
    assert owed[FID].epoch == 3 and owed[FID].shares == {"share-1"} and owed[FID].token == tokens[FID]
    assert FID.encode() not in _place(root).read_bytes()  # sealed: which files she took back does not show
    rekeys_owed.paid(root, key, FID, "not its token")  # a re-key begun before it was recorded
    assert FID in rekeys_owed.owed(root, key)
    rekeys_owed.paid(root, key, FID, tokens[FID])
    assert set(rekeys_owed.owed(root, key)) == {OTHER}


def test_a_debt_recorded_again_keeps_the_lower_epoch_and_every_share_under_a_new_token(
        tmp_path: Path) -> None:
    root, key = tmp_path / "vault", _key()
    first = rekeys_owed.owe(root, key, [(FID, 2, ["share-1"])])
    second = rekeys_owed.owe(root, key, [(FID, 5, ["share-2"])])
    debt = rekeys_owed.owed(root, key)[FID]
    assert debt.epoch == 2 and debt.shares == {"share-1", "share-2"}
    assert debt.token == second[FID] != first[FID]
    rekeys_owed.paid(root, key, FID, first[FID])  # the re-key that began before the second: not paid
    assert FID in rekeys_owed.owed(root, key)


def test_a_record_another_key_sealed_or_a_damaged_one_is_said_not_fatal_and_set_aside(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root, key = tmp_path / "vault", _key()
    rekeys_owed.owe(root, key, [(FID, 1, ["share-1"])])
    other = _key(master=b"n" * 32)  # another master key of the same user id: opens nothing
    with caplog.at_level(logging.ERROR):
        found = rekeys_owed.owed(root, other)
    assert found == {} and found.damaged and "does not open" in caplog.text
    _place(root).write_bytes(b"\x00garbage")
    found = rekeys_owed.owed(root, key)
    assert found == {} and found.damaged
    tokens = rekeys_owed.owe(root, key, [(OTHER, 0, [])])  # a new debt is recorded whatever was there
    assert set(rekeys_owed.owed(root, key)) == {OTHER} and not rekeys_owed.owed(root, key).damaged
    assert _place(root).with_name(_place(root).name + ".damaged").read_bytes() == b"\x00garbage"
    rekeys_owed.paid(root, key, OTHER, tokens[OTHER])
    assert rekeys_owed.owed(root, key) == {}


def test_a_malformed_entry_is_skipped_and_said_the_others_kept(tmp_path: Path) -> None:
    root, key = tmp_path / "vault", _key()
    path = _place(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"fid": "../../x", "epoch": 1, "shares": [], "token": "t"},
            {"fid": FID, "epoch": True, "shares": [], "token": "t"},
            {"fid": OTHER, "epoch": 4, "shares": ["share-1"], "token": "t"}]
    path.write_bytes(key.seal_device(rekeys_owed.KIND, path.name, json.dumps({"owed": rows}).encode()))
    found = rekeys_owed.owed(root, key)
    assert set(found) == {OTHER} and found.damaged


def test_a_debt_that_cannot_be_recorded_stops_the_caller(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, key = tmp_path / "vault", _key()
    rekeys_owed.owe(root, key, [(OTHER, 0, [])])

    def full(path: Path, data: bytes, durable: bool = True) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(device_file, "atomic_write", full)
    with pytest.raises(VaultError, match="nothing taken back"):
        rekeys_owed.owe(root, key, [(FID, 1, [])])
    monkeypatch.undo()
    assert set(rekeys_owed.owed(root, key)) == {OTHER}  # what was owed before is kept


def test_a_folder_at_the_records_name_is_said_and_set_aside(tmp_path: Path) -> None:
    root, key = tmp_path / "vault", _key()
    _place(root).mkdir(parents=True)
    found = rekeys_owed.owed(root, key)
    assert found == {} and found.damaged
    rekeys_owed.owe(root, key, [(FID, 1, [])])
    assert set(rekeys_owed.owed(root, key)) == {FID}


def test_the_shares_taken_back_are_named_until_given_again_and_the_debt_stays(tmp_path: Path) -> None:
    """Each load takes back the Shares an ``unshare`` recorded as taken (loading.py; attack round 59c
    (1)), not every Share a debt names (a file moved out names its folder's, still in force: 60a (1));
    her ``share`` of one again drops it (else her new Share was refused at the next load), the re-key
    owed stays; a Share no debt names any more is dropped with its last debt.  Each with the stamp of
    the newest body of it taken back: a later signing of hers is not taken back (61a (1))."""
    root, key = tmp_path / "vault", _key()
    tokens = rekeys_owed.owe(root, key, [(FID, 3, ["share-1"])], {"share-1": 1000})
    rekeys_owed.owe(root, key, [(OTHER, 0, ["share-2"])])  # a move out of share-2's folder
    assert rekeys_owed.owed(root, key).taken == {"share-1": 1000}
    before = _place(root).read_bytes()
    rekeys_owed.given_again(root, key, "share-2")  # not taken back: nothing written
    assert _place(root).read_bytes() == before
    rekeys_owed.given_again(root, key, "share-1")
    owed = rekeys_owed.owed(root, key)
    assert owed.taken == {} and set(owed) == {FID, OTHER}
    assert owed[FID].token == tokens[FID] and owed[FID].shares == {"share-1"}  # still paid by its re-key
    rekeys_owed.owe(root, key, [(FID, 3, ["share-1"])], {"share-1": 900})
    assert rekeys_owed.owed(root, key).taken == {"share-1": 900}
    rekeys_owed.owe(root, key, [(FID, 3, ["share-1"])], {"share-1": 800})  # the newest body taken back kept
    assert rekeys_owed.owed(root, key).taken == {"share-1": 900}
    rekeys_owed.paid(root, key, FID, rekeys_owed.owed(root, key)[FID].token)
    assert rekeys_owed.owed(root, key).taken == {}  # paid: no longer taken back at each load


def _older(root: Path, key: MasterKey, rows: list, taken: list) -> Path:
    """A record as the build before stamps wrote it (``taken`` a list of Share ids)."""
    path = _place(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = json.dumps({"owed": rows, "taken": taken}).encode()
    path.write_bytes(key.seal_device(rekeys_owed.KIND, path.name, plain))
    return path


def test_an_older_builds_list_is_stamped_once_at_the_first_load_and_written_back(tmp_path: Path) -> None:
    """Each listed Share gets the stamp of the newest body of it seen at the first load that reads it
    (what that build's unshare took back), written back: a later load's newer body (her re-share seen
    meanwhile) is no longer taken back (attack round 63a (3)).  One never seen here is dropped (this
    build's unshare records none); hostile entries (not ids) are not kept; the debts stay as they were."""
    root, key = tmp_path / "vault", _key()
    rows = [{"fid": FID, "epoch": 3, "shares": ["share-1", "share-2", "share-3"], "token": "t1"}]
    _older(root, key, rows, ["share-1", "share-2", 7, None])
    assert rekeys_owed.owed(root, key).taken == {"share-1": SAFE_INTEGER, "share-2": SAFE_INTEGER}
    seen = {"share-1": 1000, "share-3": 5}
    assert rekeys_owed.taken_at_load(root, key, seen.get) == {"share-1": 1000}
    owed = rekeys_owed.owed(root, key)
    assert owed.taken == {"share-1": 1000} and not owed.unstamped  # written back, stamped
    assert owed[FID].token == "t1" and owed[FID].shares == {"share-1", "share-2", "share-3"}
    seen["share-1"] = 2000  # her re-share, seen at this load: stamps stay as the first load set them
    before = _place(root).read_bytes()
    assert rekeys_owed.taken_at_load(root, key, seen.get) == {"share-1": 1000}
    assert _place(root).read_bytes() == before  # a stamped record is not written again


def test_an_older_damaged_record_is_stamped_for_the_load_only_and_a_failed_write_is_said(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A damaged one is left for ``owe`` to set aside (its alarm said first), stamped in memory; a write
    that fails costs the stamping again at the next load, never the load."""
    root, key = tmp_path / "vault", _key()
    good = {"fid": FID, "epoch": 3, "shares": ["share-1"], "token": "t1"}
    path = _older(root, key, [good, {"fid": "../x"}], ["share-1"])
    before = path.read_bytes()
    assert rekeys_owed.taken_at_load(root, key, {"share-1": 10}.get) == {"share-1": 10}
    assert path.read_bytes() == before
    _older(root, key, [good], ["share-1"])

    def full(path: Path, data: bytes, durable: bool = True) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(device_file, "atomic_write", full)
    with caplog.at_level(logging.ERROR):
        assert rekeys_owed.taken_at_load(root, key, {"share-1": 10}.get) == {"share-1": 10}
    assert "No space left" in caplog.text
    monkeypatch.undo()
    assert rekeys_owed.owed(root, key).unstamped == {"share-1"}
