"""The owner's wrapping of her shared file's key kept by a member's device (vault/tree/guests.py
``carried_wrapping``, vault/model/ledger.py ``wrappings``; attack round 56b (1), (3)): hers, found under
her verified signature, is carried whatever the store says since; a member's, carried for want of hers,
is marked and hers looked for again, once per change of the versions stored.  The scenes are in
tests/unit/test_attack_56b.py and tests/inprocess/test_attack_56b.py."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from fusevault.crypto.keys import MasterKey
from fusevault.errors import Forged
from fusevault.vault.model.ledger import Ledger
from fusevault.vault.model.nodes import VERSION, key_fields
from fusevault.vault.tree import guests

FID = "f" * 32
HERS = {"en_file_dek": "A" * 80}
HIS = {"en_file_dek": "B" * 80}


class Store:
    def __init__(self) -> None:
        self.versions: list[dict] = []

    def by_file(self, kind: str, fid: str) -> list[dict]:
        return [v for v in self.versions if v["fid"] == fid]

    def get(self, doc_id: str) -> dict | None:
        return next((v for v in self.versions if v["_id"] == doc_id), None)


class Trust:
    """A signature holds when the document says ``good``; each check counted."""

    def __init__(self) -> None:
        self.checks = 0

    def verify(self, doc: dict, author: str | None = None) -> str:
        self.checks += 1
        if doc["sig"]["ed25519"] != "good":
            raise Forged("fails")
        return doc["sig"]["by"]

    def verified_before(self, doc: dict, signer: str) -> bool:
        return False


class Memory:
    """A ledger's ``wrapping_signed``/``saw_wrapping``/``wrapping_looked`` in memory."""

    def __init__(self) -> None:
        self.kept: dict[str, tuple[str, int, dict]] = {}
        self.looked: dict[str, tuple[str, bytes]] = {}

    def wrapping_signed(self, fid: str, owner: str, epoch: int) -> dict | None:
        held = self.kept.get(fid)
        return dict(held[2]) if held is not None and held[:2] == (owner, epoch) else None

    def saw_wrapping(self, fid: str, owner: str, epoch: int, wrapping: dict) -> None:
        self.kept.setdefault(fid, (owner, epoch, dict(wrapping)))

    def wrapping_looked(self, fid: str, owner: str, seen: bytes) -> bool:
        was, self.looked[fid] = self.looked.get(fid), (owner, seen)
        return was == (owner, seen)


def _doc(signer: str, wrapping: dict, kind: str = VERSION, sig: str = "good") -> dict:
    return {"_id": uuid.uuid4().hex, "_rev": "1-a", "type": kind, "fid": FID, "owner": "alice", "epoch": 2,
            **wrapping, "sig": {"by": signer, "ed25519": sig}}


def _opened(state: dict, store: Store, held, trust: Trust, memory: Memory | None) -> SimpleNamespace:
    fresh = SimpleNamespace(fid=FID, owner="alice", epoch=2, head=state.get("head"), wrapped=None)
    fresh.wrapped = guests.carried_wrapping(state, fresh, trust, store, held, memory)  # type: ignore[arg-type]
    return fresh


def test_hers_found_once_is_carried_after_her_version_is_replaced() -> None:
    """56b (3) in small: her version found (and kept), then a revision of his over it (her signature
    failing): the next opening (an unlock: nothing held) carries hers, no version looked at."""
    store, trust, memory = Store(), Trust(), Memory()
    version = _doc("alice", HERS)
    store.versions.append(version)
    state = {**_doc("bob", HIS, kind="Node"), "_id": FID, "head": version["_id"]}
    assert _opened(state, store, None, trust, memory).wrapped == HERS
    store.versions[0] = {**version, **HIS, "_rev": "2-b"}  # his over hers, her signature left
    checks = trust.checks
    assert _opened(state, store, None, trust, memory).wrapped == HERS
    assert trust.checks == checks, "kept: the store not looked at"
    assert _opened(state, store, None, trust, None).wrapped == HIS, "control: from the store alone, his"


def test_her_own_state_is_kept_only_when_her_signature_holds() -> None:
    store, trust, memory = Store(), Trust(), Memory()
    forged = {**_doc("alice", HIS, kind="Node", sig="bad"), "_id": FID}
    assert _opened(forged, store, None, trust, memory).wrapped == HIS  # its own (never admitted as is)
    assert memory.kept == {}, "a signature naming her that fails is not kept"
    hers = {**_doc("alice", HERS, kind="Node"), "_id": FID}
    _opened(hers, store, None, trust, memory)
    assert memory.kept == {FID: ("alice", 2, HERS)}
    bobs = {**_doc("bob", HIS, kind="Node"), "_id": FID}
    assert _opened(bobs, store, None, trust, memory).wrapped == HERS


def test_a_members_wrapping_is_never_kept_and_is_marked() -> None:
    store, trust, memory = Store(), Trust(), Memory()
    store.versions.append(_doc("bob", HIS))  # his version, his signature good: not hers
    store.versions.append(_doc("alice", HIS, sig="bad"))  # naming her, failing
    state = {**_doc("bob", HIS, kind="Node"), "_id": FID}
    opened = _opened(state, store, None, trust, memory)
    assert opened.wrapped == HIS and isinstance(opened.wrapped, guests.MembersWrapping)
    assert memory.kept == {}
    carols = SimpleNamespace(user_id="carol")
    assert type(key_fields(opened, carols)) is dict, "the mark is not stored"  # type: ignore[arg-type]


def test_a_look_for_hers_is_made_again_only_when_the_versions_change() -> None:
    """A member's states arriving, none of hers stored: one look (its checks), not one per arrival."""
    store, trust, memory = Store(), Trust(), Memory()
    store.versions += [_doc("alice", HIS, sig="bad") for _ in range(3)]
    state = {**_doc("bob", HIS, kind="Node"), "_id": FID}
    held = _opened(state, store, None, trust, memory)
    assert trust.checks == 3
    for _ in range(5):
        held = _opened({**state, "_rev": uuid.uuid4().hex}, store, held, trust, memory)
    assert trust.checks == 3, "looked again with nothing new"
    store.versions.append(_doc("alice", HERS))
    assert _opened(state, store, held, trust, memory).wrapped == HERS, "a new version: looked again"
    assert trust.checks == 7


def test_a_look_checks_at_most_the_bound() -> None:
    store, trust, memory = Store(), Trust(), Memory()
    store.versions += [_doc("alice", HIS, sig="bad") for _ in range(guests.WRAPPING_VERSIONS + 5)]
    state = {**_doc("bob", HIS, kind="Node"), "_id": FID}
    _opened(state, store, None, trust, memory)
    assert trust.checks == guests.WRAPPING_VERSIONS


# --- the ledger's ``wrappings`` (saved, sealed)


@pytest.fixture
def key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MasterKey:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))
    return MasterKey("c" * 32, b"m" * 32)


def test_the_ledger_keeps_hers_across_a_lock_at_its_epoch(key: MasterKey, tmp_path: Path) -> None:
    ledger = Ledger.open(key, tmp_path / "vault", "vault-id")
    ledger.saw_wrapping("f", "alice", 2, HERS)
    ledger.saw_wrapping("f", "alice", 2, HIS)  # one of hers at the epoch is kept already: no change
    ledger.saw_wrapping("f", "alice", 1, HIS)  # an older epoch's
    ledger.saw_wrapping("g", "alice", 2, {"en_file_dek": "x" * 100_000})  # no wrapping's size: not kept
    ledger.save()
    again = Ledger.open(key, tmp_path / "vault", "vault-id")
    assert again.wrapping_signed("f", "alice", 2) == HERS
    assert again.wrapping_signed("f", "alice", 3) is None and again.wrapping_signed("g", "alice", 2) is None
    assert again.wrapping_signed("f", "bob", 2) is None, "hers answers for her file only"
    again.saw_wrapping("f", "alice", 3, HIS)  # her re-key: the newer epoch's replaces it
    assert again.wrapping_signed("f", "alice", 3) == HIS and again.wrapping_signed("f", "alice", 2) is None


def test_a_ledger_entry_not_shaped_as_a_wrapping_is_dropped(key: MasterKey, tmp_path: Path) -> None:
    ledger = Ledger.open(key, tmp_path / "vault", "vault-id")
    ledger.save()
    data = json.loads(key.unseal_device("ledger", ledger.path.name, ledger.path.read_bytes()))
    data["wrappings"] = {"f": ["alice", 2, HERS], "g": ["alice", 2, {"sig": "x"}],
                         "h": ["alice", 2, {"en_file_dek": 5}], "i": [None, 2, HERS],
                         "j": ["alice", "2", HERS]}
    ledger.path.write_bytes(key.seal_device("ledger", ledger.path.name, json.dumps(data).encode()))
    again = Ledger.open(key, tmp_path / "vault", "vault-id")
    assert again.wrappings == {"f": ("alice", 2, HERS)}
    del data["wrappings"]  # a ledger from before: none
    ledger.path.write_bytes(key.seal_device("ledger", ledger.path.name, json.dumps(data).encode()))
    assert Ledger.open(key, tmp_path / "vault", "vault-id").wrappings == {}
