"""Bodies of one document id ordered by what their signer had seen, not by clocks (vault/model/lineage.py,
vault/model/freshness.py; attack round 10b, "clock skew").  Two devices of alice are two records of what
was seen (two state files), sharing one store; a device's clock is made wrong by shifting time.time_ns."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from fusevault.crypto.keys import MasterKey
from fusevault.vault.model import freshness, lineage, retention
from fusevault.vault.model.alarms import Alarms
from fusevault.vault.model.freshness import Freshness, stamp
from unit.test_retention_freshness import _Store

ALICE = "a" * 32
DAY_NS = 86400 * 10**9


class _Device:
    """One of alice's devices: its own record of bodies seen, maybe a wrong clock."""

    def __init__(self, tmp_path: Path, name: str, skew_ns: int = 0) -> None:
        key = MasterKey(ALICE, b"\1" * 32)
        self.fresh = Freshness(key, tmp_path / name, Alarms())
        self.alarms, self.user_id, self.skew_ns = self.fresh.alarms, ALICE, skew_ns

    def checked(self, doc: dict, user_id: str, what: str) -> str:
        return user_id  # signatures hold (forgeries: tests/mount/test_trust_settings.py)

    def sign(self, doc: dict) -> dict:
        real = time.time_ns
        try:
            time.time_ns = lambda: real() + self.skew_ns  # type: ignore[assignment]
            return stamp(self.fresh, doc)
        finally:
            time.time_ns = real  # type: ignore[assignment]


NOTHING = retention.Policy(keep_all_days=0, daily_days=0, weekly_weeks=0, keep_all_minutes=0)
YEAR = retention.Policy(keep_all_days=365)


def test_a_policy_set_on_a_device_whose_clock_is_behind_is_not_outranked_by_an_older_one_withheld(
        tmp_path: Path) -> None:
    store = _Store()
    laptop, desktop = _Device(tmp_path, "laptop"), _Device(tmp_path, "desktop", skew_ns=-DAY_NS)
    retention.save_own(store, ALICE, NOTHING, laptop.sign)
    older = store.docs.pop(retention.own_id(ALICE))  # withheld from the desktop
    retention.save_own(store, ALICE, YEAR, desktop.sign)
    assert store.get(retention.own_id(ALICE))[freshness.FIELD] < older[freshness.FIELD]  # clock behind
    assert retention.policy_for(store, ALICE, desktop) == (YEAR, retention.OWN)
    store.docs[older["_id"]] = older  # served now
    assert retention.policy_for(store, ALICE, desktop) == (retention.KEEP_ALL, retention.CONCURRENT)
    assert "concurrent-retention" in desktop.alarms, desktop.alarms.as_list()
    # She sets it again on the desktop, which has seen both: that one is hers, on both devices.
    retention.save_own(store, ALICE, YEAR, desktop.sign)
    assert retention.policy_for(store, ALICE, desktop) == (YEAR, retention.OWN)
    assert retention.policy_for(store, ALICE, laptop) == (YEAR, retention.OWN)
    store.docs[older["_id"]] = older  # and the laptop's older one is a replay everywhere
    assert retention.policy_for(store, ALICE, desktop)[1] == retention.ROLLED_BACK
    assert retention.policy_for(store, ALICE, laptop)[1] == retention.ROLLED_BACK


def test_sequential_use_of_two_devices_never_alarms_whatever_their_clocks(tmp_path: Path) -> None:
    store = _Store()
    laptop, desktop = _Device(tmp_path, "laptop"), _Device(tmp_path, "desktop", skew_ns=-DAY_NS)
    bodies = []
    for n, device in enumerate([laptop, desktop, laptop, desktop, desktop, laptop]):
        retention.policy_for(store, ALICE, device)  # she sees her policy there, then sets it
        policy = retention.Policy(keep_all_days=n + 1)
        retention.save_own(store, ALICE, policy, device.sign)
        bodies.append(store.get(retention.own_id(ALICE)))
        for each in (laptop, desktop):
            assert retention.policy_for(store, ALICE, each) == (policy, retention.OWN)
    assert not laptop.alarms.as_list() and not desktop.alarms.as_list()
    for body in bodies[:-1]:  # every older one is a replay on both
        store.docs[body["_id"]] = body
        for each in (laptop, desktop):
            assert retention.policy_for(store, ALICE, each)[1] == retention.ROLLED_BACK


def _share(perm: str) -> dict:
    return {"_id": "share-1", "type": "Share", "owner": ALICE, "perm": perm}


def test_a_write_share_withheld_then_served_is_not_taken_over_a_later_read_share_made_behind(
        tmp_path: Path) -> None:
    laptop, desktop = _Device(tmp_path, "laptop"), _Device(tmp_path, "desktop", skew_ns=-DAY_NS)
    write = laptop.sign(_share("WRITE"))  # never reaches the desktop until later
    read = desktop.sign(_share("READ"))
    assert read[freshness.FIELD] < write[freshness.FIELD]
    assert freshness.admitted(desktop.fresh, [write], "share") == []  # neither is sealed by
    assert "concurrent-grant" in desktop.alarms, desktop.alarms.as_list()
    again = desktop.sign(_share("READ"))  # she shares again where both were seen
    assert freshness.admitted(laptop.fresh, [again], "share") == [again]
    assert freshness.admitted(laptop.fresh, [write], "share") == []
    assert freshness.admitted(desktop.fresh, [again], "share") == [again]


def test_an_unshare_is_not_undone_by_a_body_from_a_device_whose_clock_is_ahead(tmp_path: Path) -> None:
    laptop = _Device(tmp_path, "laptop", skew_ns=DAY_NS)
    desktop = _Device(tmp_path, "desktop")
    shared = laptop.sign(_share("WRITE"))
    assert freshness.admitted(desktop.fresh, [shared], "share") == [shared]
    desktop.fresh.sweep(set())  # unshared on the desktop
    assert freshness.admitted(desktop.fresh, [shared], "share") == []
    again = desktop.sign(_share("READ"))  # shared again there, its clock a day behind the laptop's
    assert again[freshness.FIELD] > shared[freshness.FIELD]  # the stamp still rises over what it saw
    assert freshness.admitted(desktop.fresh, [again], "share") == [again]
    assert freshness.admitted(laptop.fresh, [again], "share") == [again]


def test_bodies_from_before_vectors_keep_the_stamp_rule(tmp_path: Path) -> None:
    device = _Device(tmp_path, "one")
    old = {**_share("READ"), freshness.FIELD: 10}
    assert freshness.admitted(device.fresh, [old], "share") == [old]
    newer = device.sign(_share("WRITE"))
    assert lineage.FIELD in newer
    assert freshness.admitted(device.fresh, [old], "share") == []  # older stamp: a replay, as before
    later_old = {**_share("READ"), freshness.FIELD: newer[freshness.FIELD] + 5}  # older code, re-signed
    assert freshness.admitted(device.fresh, [later_old], "share") == [later_old]
    assert freshness.admitted(device.fresh, [newer], "share") == []  # the vector body it replaced


@pytest.mark.parametrize("vector", [{}, {"d": 0}, {"d": -1}, {"d": 1.5}, {"d": True}, [1], {"d": 2**60}])
def test_a_vector_no_fusevault_writes_is_refused(tmp_path: Path, vector: object) -> None:
    device = _Device(tmp_path, "one")
    body = {**device.sign(_share("READ")), lineage.FIELD: vector}
    assert freshness.admitted(_Device(tmp_path, "two").fresh, [body], "share") == []


def test_a_whole_float_in_a_vector_is_its_integer(tmp_path: Path) -> None:
    device, other = _Device(tmp_path, "one"), _Device(tmp_path, "two")
    first = device.sign(_share("READ"))
    second = device.sign(_share("WRITE"))
    assert freshness.admitted(other.fresh, [second], "share") == [second]
    floated = {**first, lineage.FIELD: {d: float(n) for d, n in first[lineage.FIELD].items()}}
    assert freshness.admitted(other.fresh, [floated], "share") == []  # still older, not vector-less


def test_the_record_keeps_vectors_and_the_device_id(tmp_path: Path) -> None:
    key = MasterKey(ALICE, b"\1" * 32)
    fresh = Freshness.open(key, tmp_path / "vault", "v1", Alarms())
    signed = stamp(fresh, _share("READ"))
    fresh.save()
    again = Freshness.open(key, tmp_path / "vault", "v1", Alarms())
    assert again.device == fresh.device
    assert again.tips == fresh.tips
    assert lineage.compare(again.next_vector("share-1"), signed[lineage.FIELD]) is lineage.Order.NEWER


def test_a_record_from_before_vectors_opens_without_alarm_and_orders_by_stamp_then_vector(
        tmp_path: Path) -> None:
    key = MasterKey(ALICE, b"\1" * 32)
    fresh = Freshness.open(key, tmp_path / "vault", "v1", Alarms())
    plain = json.dumps({"format": 1, "seen": {"share-1": ["Share", 1000, False]}}).encode()
    fresh.path.parent.mkdir(parents=True, exist_ok=True)
    fresh.path.write_bytes(key.seal_device("grants", fresh.path.name, plain))
    alarms = Alarms()
    old = Freshness.open(key, tmp_path / "vault", "v1", alarms)
    assert not len(alarms) and old.tips == {}
    other = _Device(tmp_path, "other")
    before = {**other.sign(_share("WRITE")), freshness.FIELD: 999}  # a vector, but signed before: by stamp
    assert freshness.admitted(old, [before], "share") == []
    after = other.sign(_share("READ"))
    assert freshness.admitted(old, [after], "share") == [after]
    ahead = {**before, freshness.FIELD: 10**17}  # the older vector, a stamp far ahead: by vector now
    assert freshness.admitted(old, [ahead], "share") == []
