"""``grants.SharesChecked`` (attack round 69d (2)): a reload given what changed checks again the Shares
that changed and those of an owner whose standing (pin, legacy) changed since, and no other."""

from __future__ import annotations

from dataclasses import dataclass, field

from fusevault.vault.model import grants
from fusevault.vault.model.sharing import SHARE, Grant, doc_id

CAROL, DAVE, ALICE = "c" * 32, "d" * 32, "a" * 32
FILES = ["1" * 32, "2" * 32, "3" * 32]


def _share(owner: str, fid: str) -> dict:
    return {"_id": doc_id(fid, ALICE), "_rev": "1-a", "type": SHARE, "owner": owner, "fid": fid,
            "grantee": ALICE, "perm": "READ", "group": False}


@dataclass
class _Store:
    docs: dict[str, dict]

    def iter_type(self, kind: str):
        return [d for d in self.docs.values() if d.get("type") == kind]

    def get(self, key: str) -> dict | None:
        return self.docs.get(key)


@dataclass
class _Trust:
    """Pins the test sets; a Share counts when its owner is pinned."""

    pinned: set[str] = field(default_factory=set)
    alarms: None = None
    fresh: None = None

    def pin(self, user: str) -> str | None:
        return f"key of {user}" if user in self.pinned else None

    def legacy(self, user: str) -> bool:
        return False

    def admit_groups(self, docs: list[dict]) -> list[dict]:
        return docs


def test_only_changed_shares_and_those_of_an_owner_whose_pin_changed_are_checked_again(monkeypatch) -> None:
    checked: list[str] = []

    def signed(trust, doc, what) -> bool:
        checked.append(doc["_id"])
        return doc["owner"] in trust.pinned

    monkeypatch.setattr(grants, "signed_by_owner", signed)
    store = _Store({d["_id"]: d for d in (_share(CAROL, FILES[0]), _share(CAROL, FILES[1]),
                                          _share(DAVE, FILES[2]))})
    trust, book = _Trust({DAVE}), grants.SharesChecked()
    found, _ = grants.verified_grants(store, trust, book)
    assert found == [Grant(DAVE, FILES[2], ALICE, False, "READ")] and len(checked) == 3

    checked.clear()  # a user document changed, no pin: nothing checked again
    assert grants.verified_grants(store, trust, book, {ALICE})[0] == found and checked == []

    trust.pinned.add(CAROL)  # carol met now: her Shares, and hers only, checked again (and admitted)
    found, _ = grants.verified_grants(store, trust, book, {CAROL})
    assert sorted(checked) == sorted(doc_id(f, ALICE) for f in FILES[:2])
    assert {g.fid for g in found} == set(FILES)

    checked.clear()  # a Share changed (dave's, made WRITE): that one checked again, the others kept
    store.docs[doc_id(FILES[2], ALICE)] = {**_share(DAVE, FILES[2]), "perm": "WRITE", "_rev": "2-b"}
    found, _ = grants.verified_grants(store, trust, book, {doc_id(FILES[2], ALICE)})
    assert checked == [doc_id(FILES[2], ALICE)]
    assert Grant(DAVE, FILES[2], ALICE, False, "WRITE") in found and len(found) == 3

    checked.clear()  # deleted: gone, nothing checked
    del store.docs[doc_id(FILES[0], ALICE)]
    found, _ = grants.verified_grants(store, trust, book, {doc_id(FILES[0], ALICE)})
    assert checked == [] and {g.fid for g in found} == set(FILES[1:])
