"""Each record this device keeps in her state directory is read only as a file of hers
(vault/format/own_file.py ``read_own``, through vault/model/device_file.py): a link planted at its path
(to a readable file holding a record that would open), a FIFO, another user's file or one larger than
the record's bound gets the module's own damaged path (its alarm, its log line, its fallback), never a
read through the link, a hang on the FIFO, or a read of the whole file."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from fusevault import paths
from fusevault.crypto.keys import MasterKey
from fusevault.encoding import JSON_LIMIT
from fusevault.errors import CorruptData
from fusevault.links import link_records
from fusevault.vault.format import marker_pins
from fusevault.vault.model import (
    confirmed,
    device_file,
    freshness,
    key_memory,
    ledger,
    peers,
    renamed,
    rotations_done,
    trust,
)
from fusevault.vault.model.alarms import Alarms

ALICE, VAULT_ID = "a" * 32, "c" * 32
KEY = MasterKey(ALICE, b"m" * 32)
STORE = {"kind": "local"}
HANG = 5.0  # seconds a read may take before it counts as blocked


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))
    folder = tmp_path / "vault"
    folder.mkdir()
    return folder


def _sealed(kind: str, record: object, name: str | None = None) -> Callable[[Path], bytes]:
    return lambda path: KEY.seal_device(kind, name or path.name, json.dumps(record).encode())


def _clear(record: object) -> Callable[[Path], bytes]:
    return lambda path: json.dumps(record).encode()


def _logged(caplog: pytest.LogCaptureFixture, text: str) -> None:
    assert any(text in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]


# --- each record: where it is, what would open there, and the module's damaged path

def _ledger_damaged(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    alarms = Alarms()
    opened = ledger.Ledger.open(KEY, root, VAULT_ID, alarms)
    assert "ledger" in alarms and opened.counter == 0 and opened.version == 1  # started afresh


def _grants_damaged(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    alarms = Alarms()
    fresh = freshness.Freshness.open(KEY, root, VAULT_ID, alarms)
    assert "grants-state" in alarms and fresh.taken_back == {}


def _pins_path(root: Path) -> Path:
    return paths.state_dir() / "pins" / paths.record_name(root, ALICE)


def _pins_damaged(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Only what reading the device's copy needs (Trust's constructor needs a store and her identity).
    held = trust.Trust.__new__(trust.Trust)
    held._root, held.user_id, held.key, held.alarms = root, ALICE, KEY, Alarms()
    assert held._read_device() == ({}, {}) and "pins" in held.alarms


def _settings_damaged(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    alarms = Alarms()
    assert confirmed.read(root, KEY, alarms) is None and "confirmed-settings" in alarms


def _seen_damaged(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert confirmed._seen(root, KEY)["bodies"] == []  # started afresh, silently


def _legacy(root: Path) -> Path:
    old = renamed.legacy_path("ledger", root, VAULT_ID, ALICE)
    assert old is not None
    return old


def _adopted_as_is(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    old, new = _legacy(root), ledger.ledger_path(root, ALICE)
    planted = os.lstat(old)
    renamed.adopt(KEY, ledger.KIND, old, new)
    moved = os.lstat(new)  # moved as it is (its module raises its alarm), never opened and resealed
    assert not os.path.lexists(old) and (moved.st_ino, moved.st_mode) == (planted.st_ino, planted.st_mode)


def _keys_damaged(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert key_memory.remembered(root, ALICE) is None
    _logged(caplog, "is unreadable")


def _peers_damaged(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert peers._confirmed(root) == set()


def _done_damaged(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert not rotations_done.done(root, ALICE, {"_id": "r", "sig": {"by": ALICE}})
    assert rotations_done._done(root, ALICE) == []
    _logged(caplog, "is unreadable")


def _members_damaged(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert rotations_done.sealed_members(root, ALICE) == {}
    _logged(caplog, "is unreadable")


def _unbound_damaged(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    recent = rotations_done.unbound_rekeys(root, ALICE, time.time())
    assert dict(recent) == {} and recent.full_since is None
    _logged(caplog, "is unreadable")


def _links_damaged(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert link_records._kept_docs(root, ALICE) == {}
    _logged(caplog, "is unreadable")


def _marker_damaged(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(CorruptData, match="is damaged: remove it"):
        marker_pins.check(root, VAULT_ID, STORE)


@dataclass(frozen=True)
class Record:
    name: str
    path: Callable[[Path], Path]
    valid: Callable[[Path], bytes]  # what opens at that path (a link to it must still be damaged)
    limit: int
    damaged: Callable[[Path, pytest.LogCaptureFixture], None]
    clear: bool = False  # clear JSON: an oversize one is the valid record padded (it would parse)


KEYS = {"_id": ALICE, "public_sign": "p", **{k: "x" for k in key_memory.WRAPPING if k != "kdf"}}
RECORDS = [
    Record("ledger", lambda r: ledger.ledger_path(r, ALICE),
           _sealed(ledger.KIND, {"format": ledger.FORMAT, "device": "d" * 16, "counter": 7, "fids": {}}),
           device_file.LIMIT, _ledger_damaged),
    Record("grants", lambda r: freshness.state_path(r, ALICE),
           _sealed(freshness.KIND, {"format": freshness.FORMAT, "seen": {}, "taken_back": {"s": 1}}),
           device_file.LIMIT, _grants_damaged),
    Record("pins", _pins_path, _sealed(trust.PINS, {}), device_file.LIMIT, _pins_damaged),
    Record("confirmed", lambda r: paths.confirmed_file(r, ALICE),
           _sealed(confirmed.KIND, {"delete_file_from_source": False}), device_file.LIMIT, _settings_damaged),
    Record("seen", lambda r: paths.confirmed_file(r, ALICE, ".seen"),
           lambda p: _sealed(confirmed.SEEN, {"bodies": ["d"], "newest": 5}, p.with_suffix("").name)(p),
           device_file.LIMIT, _seen_damaged),
    Record("renamed", _legacy, _sealed(ledger.KIND, {"format": ledger.FORMAT, "device": "d" * 16,
                                                    "counter": 7, "fids": {}}),
           device_file.LIMIT, _adopted_as_is),
    Record("key_memory", lambda r: paths.confirmed_file(r, ALICE, ".keys"), _clear(KEYS),
           key_memory.LIMIT, _keys_damaged, clear=True),
    Record("peers", peers._confirmed_file, _clear(["d" * 64]), peers.CONFIRMED_LIMIT, _peers_damaged,
           clear=True),
    Record("rotations", lambda r: paths.confirmed_file(r, ALICE, ".rotations"),
           _clear([rotations_done.digest({"_id": "r", "sig": {"by": ALICE}})]), rotations_done.DONE_LIMIT,
           _done_damaged, clear=True),
    Record("sealed_members", lambda r: paths.confirmed_file(r, ALICE, ".sealed-members"),
           _clear({"s": ["m"]}), rotations_done.SEALED_LIMIT, _members_damaged, clear=True),
    Record("unbound_rekeys", lambda r: paths.confirmed_file(r, ALICE, ".unbound-rekeys"),
           lambda p: _clear({"places": {"p": time.time()}, "full_since": None})(p),
           rotations_done.UNBOUND_LIMIT, _unbound_damaged, clear=True),
    Record("link_records", lambda r: paths.confirmed_file(r, ALICE, ".links"), _clear({"i": {"_id": "x"}}),
           link_records.KEPT_LIMIT, _links_damaged, clear=True),
    Record("marker_pins", marker_pins.record_path, _clear({"vault_id": VAULT_ID, "store": STORE}),
           marker_pins.LIMIT, _marker_damaged, clear=True),
]


def _place(record: Record, root: Path) -> Path:
    path = record.path(root)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def test_each_record_as_written_is_not_damaged(root: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The plants below are refused for what they are: the same bytes at the path itself open."""
    for record in RECORDS:
        if record.name == "renamed":
            continue  # the move is the damaged path too; the other records show an open one
        path = _place(record, root)
        path.write_bytes(record.valid(path))
        with pytest.raises((AssertionError, pytest.fail.Exception)):
            record.damaged(root, caplog)


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.name)
def test_a_link_is_damaged_and_never_followed(root: Path, tmp_path: Path, record: Record,
                                              caplog: pytest.LogCaptureFixture) -> None:
    path = _place(record, root)
    target = tmp_path / "elsewhere"
    target.write_bytes(record.valid(path))  # would open, read through the link
    before = target.read_bytes()
    path.symlink_to(target)
    with caplog.at_level(logging.ERROR):
        record.damaged(root, caplog)
    assert target.read_bytes() == before


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.name)
def test_a_fifo_is_damaged_and_never_blocked_on(root: Path, record: Record,
                                               caplog: pytest.LogCaptureFixture) -> None:
    path = _place(record, root)
    os.mkfifo(path, 0o600)
    failed: list[BaseException] = []

    def read() -> None:
        try:
            record.damaged(root, caplog)
        except BaseException as err:  # noqa: BLE001 - said on the test's thread
            failed.append(err)

    with caplog.at_level(logging.ERROR):
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(HANG)
        if reader.is_alive():
            # Blocked opening it for a writer: be that writer (and close), so the thread ends.
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            reader.join(HANG)
            pytest.fail(f"{record.name}: the read blocked on a FIFO")
    if failed:
        raise failed[0]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.name)
def test_a_file_larger_than_its_bound_is_damaged_unread(root: Path, record: Record,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    path = _place(record, root)
    with open(path, "wb") as f:
        if record.clear and record.limit < JSON_LIMIT:
            valid = record.valid(path)  # one that would parse, but for its size
            f.write(valid + b" " * (record.limit + 1 - len(valid)))
        else:
            f.truncate(record.limit + 1)  # no block written
    with caplog.at_level(logging.ERROR):
        record.damaged(root, caplog)


@pytest.mark.skipif(os.geteuid() != 0, reason="making another user's file needs root")
@pytest.mark.parametrize("record", RECORDS, ids=lambda r: r.name)
def test_another_users_file_is_damaged(root: Path, record: Record, caplog: pytest.LogCaptureFixture) -> None:
    path = _place(record, root)
    path.write_bytes(record.valid(path))
    os.chown(path, 54321, 54321)
    with caplog.at_level(logging.ERROR):
        record.damaged(root, caplog)
