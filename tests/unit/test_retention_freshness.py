"""A user's own retention policy carries made_at_us and this device remembers the newest it saw
(vault/model/retention.py, vault/model/freshness.py): an older signed one put back is a replay."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from fusevault.crypto.keys import MasterKey
from fusevault.vault.model import retention
from fusevault.vault.model.alarms import Alarms
from fusevault.vault.model.freshness import FIELD, Freshness, stamp

ALICE = "a" * 32


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))


class _Store:
    """The one call retention makes of a store to read a policy."""

    def __init__(self) -> None:
        self.docs: dict[str, dict] = {}

    def get(self, doc_id: str) -> dict | None:
        return self.docs.get(doc_id)

    def put_many(self, docs: list[dict]) -> None:
        for doc in docs:
            self.docs[doc["_id"]] = {**doc, "_rev": "1-x"}


class _Trust:
    """Signatures hold (the forged case is tests/mount/test_trust_settings.py); freshness is real."""

    def __init__(self, fresh: Freshness) -> None:
        self.fresh, self.alarms, self.user_id = fresh, fresh.alarms, ALICE

    def checked(self, doc: dict, user_id: str, what: str) -> str:
        return user_id

    def sign(self, doc: dict) -> dict:
        return stamp(self.fresh, doc)


def _trust(tmp_path: Path) -> _Trust:
    key = MasterKey(ALICE, b"\1" * 32)
    return _Trust(Freshness.open(key, tmp_path / "vault", "v1", Alarms()))


NOTHING = retention.Policy(keep_all_days=0, daily_days=0, weekly_weeks=0, keep_all_minutes=0)


def test_an_older_signed_policy_put_back_keeps_everything_and_alarms(tmp_path: Path) -> None:
    store, trust = _Store(), _trust(tmp_path)
    retention.save_own(store, ALICE, NOTHING, trust.sign)
    older = store.get(retention.own_id(ALICE))
    assert isinstance(older[FIELD], int)
    retention.save_own(store, ALICE, retention.Policy(), trust.sign)
    assert store.get(retention.own_id(ALICE))[FIELD] > older[FIELD]
    trust.fresh.save()

    store.docs[older["_id"]] = older  # the replay
    again = _trust(tmp_path)  # the next unlock: what this device saw was kept
    assert retention.policy_for(store, ALICE, again) == (retention.KEEP_ALL, retention.ROLLED_BACK)
    assert "replayed-retention" in again.alarms, again.alarms.as_list()


def test_a_policy_from_before_the_stamp_is_read_until_a_stamped_one_was_seen(tmp_path: Path) -> None:
    store, trust = _Store(), _trust(tmp_path)
    unstamped = {"_id": retention.own_id(ALICE), "_rev": "1-a", "type": "Retention", "user": ALICE,
                 **asdict(NOTHING)}
    store.docs[unstamped["_id"]] = unstamped
    assert retention.policy_for(store, ALICE, trust) == (NOTHING, retention.OWN)  # as before

    retention.save_own(store, ALICE, retention.Policy(), trust.sign)  # she sets it: stamped
    assert retention.policy_for(store, ALICE, trust) == (retention.Policy(), retention.OWN)
    store.docs[unstamped["_id"]] = unstamped  # put back
    assert retention.policy_for(store, ALICE, trust) == (retention.KEEP_ALL, retention.ROLLED_BACK)


def test_setting_it_again_after_a_replay_counts(tmp_path: Path) -> None:
    store, trust = _Store(), _trust(tmp_path)
    retention.save_own(store, ALICE, NOTHING, trust.sign)
    older = store.get(retention.own_id(ALICE))
    retention.save_own(store, ALICE, retention.Policy(), trust.sign)
    store.docs[older["_id"]] = older
    assert retention.policy_for(store, ALICE, trust)[1] == retention.ROLLED_BACK
    retention.save_own(store, ALICE, retention.Policy(daily_days=40), trust.sign)
    assert retention.policy_for(store, ALICE, trust) == (retention.Policy(daily_days=40), retention.OWN)


def test_her_policy_gone_from_the_store_keeps_everything_until_she_sets_it_again(tmp_path: Path) -> None:
    store, trust = _Store(), _trust(tmp_path)
    retention.save_own(store, ALICE, retention.Policy(keep_all_days=365), trust.sign)
    del store.docs[retention.own_id(ALICE)]  # deleted (or withheld) by whoever writes the store
    assert retention.policy_for(store, ALICE, trust) == (retention.KEEP_ALL, retention.MISSING)
    assert "missing-retention" in trust.alarms, trust.alarms.as_list()
    store.docs[retention.own_id(ALICE)] = {"_id": retention.own_id(ALICE), "_rev": "2-y", "_deleted": True}
    assert retention.policy_for(store, ALICE, trust)[1] == retention.MISSING
    retention.save_own(store, ALICE, retention.Policy(), trust.sign)
    assert retention.policy_for(store, ALICE, trust) == (retention.Policy(), retention.OWN)


def test_a_device_that_never_saw_her_policy_reads_none_as_never_set(tmp_path: Path) -> None:
    assert retention.policy_for(_Store(), ALICE, _trust(tmp_path)) == (retention.Policy(), retention.BUILT_IN)


def test_a_whole_float_is_the_integer_and_a_bad_signed_body_is_forged(tmp_path: Path) -> None:
    store, trust = _Store(), _trust(tmp_path)
    retention.save_own(store, ALICE, retention.Policy(keep_all_days=7), trust.sign)
    doc = store.docs[retention.own_id(ALICE)]
    store.docs[doc["_id"]] = {**doc, "keep_all_days": 7.0, "daily_days": 30.0}  # one canonical form
    assert retention.policy_for(store, ALICE, trust) == (retention.Policy(keep_all_days=7), retention.OWN)
    store.docs[doc["_id"]] = {**doc, "keep_all_days": -1}
    assert retention.policy_for(store, ALICE, trust) == (retention.KEEP_ALL, retention.FORGED)
    assert "forged-retention" in trust.alarms, trust.alarms.as_list()
