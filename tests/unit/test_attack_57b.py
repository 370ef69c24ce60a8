"""Attack round 57b: round 56b's fix (a member's device keeps the owner's wrapping found under her
verified signature: vault/tree/guests.py ``carried_wrapping``, ``_signed_wrapping``; vault/model/
ledger.py ``wrappings``).

Hole (1), medium: a signature of hers over ANOTHER file's version is kept as her wrapping of this file.
  Attacker: the CouchDB server of a vault made with ``init --couchdb`` (store/couch.py ``by_file`` is
  the server's ``_find`` answer, nothing checks it), or anything that answers ``by_file``.
  Steps: alice (owner) shares files A and X with carol (and bob, WRITE on A); both at epoch 2. Bob
  commits A (the state signed by him). Carol's device opens A (an unlock, nothing kept for A yet):
  ``_signed_wrapping`` asks ``store.by_file(VERSION, A)``; the server answers with alice's own, truly
  signed version of file X (fid X, epoch 2) and no head row.
  Seen: ``_may_be_hers`` checks the version's owner, epoch, signer and shape, never its ``fid`` (nor
  ``_id``); the signature holds (it is hers, over X's body), so X's wrapping is returned, and since
  56b ``Ledger.saw_wrapping`` keeps it for A at epoch 2, sealed, across locks, and
  ``carried_wrapping`` returns it first "whatever the store says since": the server answering
  honestly afterwards (alice's true version of A in the store) changes nothing until alice re-keys A.
  Expected: only a version whose ``fid`` is A (as ``_head_version`` already asks of the head) is a
  candidate; X's is passed over and bob's is carried, marked (MembersWrapping), nothing kept.
  Cause: fusevault/vault/tree/guests.py ``_may_be_hers`` (no ``version.get("fid") == fresh.fid``),
  made lasting by ``_signed_wrapping``'s ``memory.saw_wrapping`` (guests.py ~524) and
  ``carried_wrapping``'s ``memory.wrapping_signed`` first (~476).
  Impact: every commit of A by carol carries the owner's wrapping of X's key (``nodes.key_fields``):
  alice's device cannot open A's key from it and refuses carol's writes as forgeries (53c (2)'s
  impact), for good at that epoch, by one answer of the server; before 56b the next opening looked
  again. Fix: ask ``version.get("fid") == fresh.fid`` in ``_may_be_hers`` (and keep only what that
  found).

Held (controls kept): ``test_control_a_store_that_answers_by_fid_carries_a_members_wrapping`` (a
store filtering by ``fid``, as store/local.py does: bob's carried, marked, nothing kept). The ledger
is sealed with the device key (a local attacker cannot write an entry: the existing
tests/unit/test_guests_wrapping_memory.py covers its shape checks). A replayed older state of hers at a
newer epoch is refused by ``_may_be_hers``'s epoch check (the epoch is signed). The look bound: a
member adding one version naming her (failing) at each write of his makes each arrival look again, at
most 64 checks each (``test_control_a_changed_look_costs_at_most_the_bound_per_change``: bounded, the
cost 56b (1) accepted; a CouchDB server may change a ``_rev`` at each answer for the same). The
MembersWrapping mark: kept across arrivals.py ``CONTENTS``/``_take_held`` and loading's slot copy (the
same object is moved, never copied into a plain dict; read, not run). Ledger entries are keyed by fid
and epoch, replaced only by a newer epoch: a re-key (a new epoch) is never blocked by a kept entry.
Not tried for lack of time: two DEKs signed by her at one epoch (53a (6)'s claimed key landing on her
other device: the first kept would stay carried), an unshare then re-share at one epoch, a real mount.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from fusevault.crypto.keys import MasterKey
from fusevault.errors import Forged
from fusevault.vault.model.ledger import Ledger
from fusevault.vault.model.nodes import VERSION, key_fields
from fusevault.vault.tree import guests

A = "a" * 32
X = "e" * 32
HERS_OF_A = {"en_file_dek": "A" * 80}
HERS_OF_X = {"en_file_dek": "X" * 80}
HIS = {"en_file_dek": "B" * 80}


class Trust:
    """A signature holds when the document says ``good`` (the real check over her body: X's version is
    truly hers)."""

    def verify(self, doc: dict, author: str | None = None) -> str:
        if doc["sig"]["ed25519"] != "good":
            raise Forged("fails")
        return doc["sig"]["by"]

    def verified_before(self, doc: dict, signer: str) -> bool:
        return False


class Server:
    """A CouchDB server's answers (store/couch.py: ``by_file`` is its ``_find``), honest or not."""

    def __init__(self, versions: list[dict], honest: bool) -> None:
        self.versions, self.honest = versions, honest

    def by_file(self, kind: str, fid: str) -> list[dict]:
        return [v for v in self.versions if v["fid"] == fid or not self.honest]

    def get(self, doc_id: str) -> dict | None:
        return None  # no head row


def _doc(fid: str, signer: str, wrapping: dict, kind: str = VERSION) -> dict:
    return {"_id": uuid.uuid4().hex, "_rev": "1-a", "type": kind, "fid": fid, "owner": "alice", "epoch": 2,
            **wrapping, "sig": {"by": signer, "ed25519": "good"}}


def _open(store: Server, ledger: Ledger) -> SimpleNamespace:
    state = {**_doc(A, "bob", HIS, kind="Node"), "_id": A, "head": "gone"}
    fresh = SimpleNamespace(fid=A, owner="alice", epoch=2, head="gone", wrapped=None)
    fresh.wrapped = guests.carried_wrapping(state, fresh, Trust(), store, None, ledger)  # type: ignore[arg-type]
    return fresh


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ledger:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))
    return Ledger.open(MasterKey("c" * 32, b"m" * 32), tmp_path / "vault", "vault-id")


def test_57b_1_her_version_of_another_file_is_kept_as_her_wrapping_of_this_one(
        ledger: Ledger, tmp_path: Path) -> None:
    x_version = _doc(X, "alice", HERS_OF_X)  # truly hers, truly signed: over file X
    opened = _open(Server([x_version], honest=False), ledger)
    leaked = opened.wrapped == HERS_OF_X
    # Later the server answers honestly, her true version of A stored: and a lock, an unlock.
    ledger.save()
    again = Ledger.open(MasterKey("c" * 32, b"m" * 32), tmp_path / "vault", "vault-id")
    honest = Server([x_version, _doc(A, "alice", HERS_OF_A)], honest=True)
    later = _open(honest, again)
    carried = key_fields(later, SimpleNamespace(user_id="carol"))  # type: ignore[arg-type]
    kept = again.wrapping_signed(A, "alice", 2)
    assert not leaked and kept != HERS_OF_X and carried.get("en_file_dek") == \
        HERS_OF_A["en_file_dek"], (opened.wrapped, kept, carried)


def test_control_a_store_that_answers_by_fid_carries_a_members_wrapping(ledger: Ledger) -> None:
    opened = _open(Server([_doc(X, "alice", HERS_OF_X)], honest=True), ledger)
    assert opened.wrapped == HIS and isinstance(opened.wrapped, guests.MembersWrapping)
    assert ledger.wrapping_signed(A, "alice", 2) is None
    found = _open(Server([_doc(A, "alice", HERS_OF_A)], honest=True), ledger)
    assert found.wrapped == HERS_OF_A and ledger.wrapping_signed(A, "alice", 2) == HERS_OF_A


def test_control_a_changed_look_costs_at_most_the_bound_per_change(ledger: Ledger) -> None:
    """The look bound against a member who adds one more version naming her (signature failing) at each
    of his writes, none of hers stored: each change looks again, but never more than the bound's checks
    (a cost per write of his, bounded: not reported as a hole)."""

    class Counting(Trust):
        checks = 0

        def verify(self, doc: dict, author: str | None = None) -> str:
            Counting.checks += 1
            return super().verify(doc, author)

    fakes = [{**_doc(A, "alice", HIS), "sig": {"by": "alice", "ed25519": "bad"}}
             for _ in range(guests.WRAPPING_VERSIONS)]
    store = Server(fakes, honest=True)
    state = {**_doc(A, "bob", HIS, kind="Node"), "_id": A, "head": "gone"}
    for _ in range(3):
        before = Counting.checks
        fresh = SimpleNamespace(fid=A, owner="alice", epoch=2, head="gone", wrapped=None)
        guests.carried_wrapping(state, fresh, Counting(), store, None, ledger)  # type: ignore[arg-type]
        assert Counting.checks - before <= guests.WRAPPING_VERSIONS
        fakes.insert(0, {**_doc(A, "alice", HIS), "sig": {"by": "alice", "ed25519": "bad"}})
    assert ledger.wrapping_signed(A, "alice", 2) is None


class _AnsweringOtherFiles:
    """A CouchDB database whose ``_find`` slips in documents the selector did not ask for: stands in for
    a hostile server (a real pouchdb-server answers honestly; no real part can play this here)."""

    def __init__(self, docs: list[dict]) -> None:
        self.docs = docs

    def find(self, query: dict) -> list[dict]:
        return self.docs


def test_57b_1_a_couch_store_keeps_to_the_file_and_kind_asked_for() -> None:
    from fusevault.store.couch import CouchStore

    store = object.__new__(CouchStore)  # no server to reach: its database is the stand-in above
    store._db = _AnsweringOtherFiles([_doc(X, "alice", HERS_OF_X), _doc(A, "alice", HERS_OF_A, kind="Node"),
                                      _doc(A, "alice", HERS_OF_A)])
    assert [(d["fid"], d["type"]) for d in store.by_file(VERSION, A)] == [(A, VERSION)]
