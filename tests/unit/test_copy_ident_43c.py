"""Round 43c (3), (7), beside tests/unit/test_attack_43c.py and tests/mount/test_trust_attack_43c.py.

(7): services/conflict_copies.py ``_copy_ident``: a conflict copy's derived id holding a document that is not
that copy (one a server planted: the id is a hash of clear values) is said, and the copy made under the
next id derived from it (the same on her every device); her copy there (signed by her, opening under
the copy's derived key) is the copy made already.  (3): tree/her_leaves.py ``_her_leaves`` checks at most
``HER_LEAVES_CHECKED`` signatures and keeps at most ``HER_LEAVES`` leaves that verify."""

from __future__ import annotations

import stat
from types import SimpleNamespace

import pytest

from fusevault.errors import CorruptData, Forged
from fusevault.vault.model.alarms import Alarms
from fusevault.vault.model.nodes import NODE, Node
from fusevault.vault.services import conflict_copies
from fusevault.vault.services.conflict_copies import COPY_IDENTS, copy_ident, edit_copy_ident
from fusevault.vault.services.conflict_rules import Leaf
from fusevault.vault.tree import her_leaves

FID, TEAM, ALICE, BOB, CAROL = "f" * 32, "t" * 32, "alice", "bob", "carol"
OLD = b"o" * 32


class _Trust:
    def verify(self, doc: dict, author: str | None = None) -> str:
        sig = doc.get("sig")
        if not isinstance(sig, dict) or sig.get("good") is not True:
            raise Forged("bad signature")
        return str(sig["by"])


def _volume(held: dict[str, bytes] | None = None, seen: dict[str, str] | None = None) -> SimpleNamespace:
    """``held``: the nodes this device holds (fid -> its key), none stored yet (made here); ``seen``: the
    owner the ledger first saw each id under (``Ledger.owner_seen``)."""
    held, seen = held or {}, seen or {}
    return SimpleNamespace(holds=lambda fid: fid in held, authorship=SimpleNamespace(trust=_Trust()),
                           find=lambda fid: Node(9, fid, ALICE, held[fid], stat.S_IFREG | 0o644, 1000, 1000),
                           key=SimpleNamespace(user_id=ALICE), trust=SimpleNamespace(alarms=Alarms()),
                           ledger=SimpleNamespace(owner_seen=seen.get))


def _his_edit() -> Leaf:
    node = Node(2, FID, ALICE, OLD, stat.S_IFREG | 0o644, 1000, 1000, when=1)
    node.head = "9" * 32
    doc = {"_id": FID, "_rev": "3-b", "owner": ALICE, "sig": {"by": BOB, "good": True}}
    return Leaf(doc, node, [(TEAM, b"plan.txt")], ["3-b", "2-a"])


def _copy_doc(fid: str, dek: bytes, signer: str = ALICE) -> dict:
    """A node document at ``fid`` sealed under ``dek`` (as the copy's is), signed by ``signer``."""
    return {"_id": fid, "_rev": "1-c", "type": NODE, "owner": ALICE, "sealed_with": dek,
            "sig": {"by": signer, "good": True}}


@pytest.fixture(autouse=True)
def _opens(monkeypatch) -> None:
    def open_node_attrs(doc: dict, dek: bytes) -> dict:
        if doc.get("sealed_with") != dek:
            raise CorruptData("fails authentication")
        return {}
    monkeypatch.setattr(conflict_copies, "open_node_attrs", open_node_attrs)


def _ident(volume: SimpleNamespace, stored: dict[str, dict]) -> tuple[str, bytes] | None:
    leaf = _his_edit()
    store = SimpleNamespace(get=stored.get)
    return conflict_copies._copy_ident(volume, store, leaf, edit_copy_ident(FID, str(leaf.node.head), OLD))  # type: ignore[arg-type]


def test_control_nothing_at_the_copy_id_makes_it_there() -> None:
    assert _ident(_volume(), {}) == edit_copy_ident(FID, "9" * 32, OLD)


def test_her_copy_at_its_id_is_made_already() -> None:
    fid, dek = edit_copy_ident(FID, "9" * 32, OLD)
    assert _ident(_volume(), {fid: _copy_doc(fid, dek)}) is None
    assert _ident(_volume({fid: dek}), {}) is None  # made here, its document not stored yet


def test_58b_1_an_id_seen_here_as_another_owners_file_is_no_place_for_the_copy() -> None:
    """58b (1): nothing stored nor held at the copy's id, but the ledger first saw it as bob's file (his
    own, shared with her once, collected since; the id is a hash of values his replica holds): made
    there, her copy would be refused at her next unlock as another owner's at the id.  Said, and the
    copy made beside; one her own ledger saw there is the place (the control above)."""
    first, _ = edit_copy_ident(FID, "9" * 32, OLD)
    volume = _volume(seen={first: BOB})
    assert _ident(volume, {}) == copy_ident(FID, f"taken\0{first}\0{1}", OLD)
    assert [each["subject"] for each in volume.trust.alarms.as_list()] == [first]
    assert _ident(_volume(seen={first: ALICE}), {}) == (first, edit_copy_ident(FID, "9" * 32, OLD)[1])


def test_a_node_held_at_the_copy_id_under_another_key_is_said_and_the_copy_made_beside() -> None:
    """45c (3): a member's file given the copy's id (its document not here yet, or his own): not the copy."""
    first, dek = edit_copy_ident(FID, "9" * 32, OLD)
    for stored in ({}, {first: _copy_doc(first, b"b" * 32, BOB)}):
        volume = _volume({first: b"b" * 32})
        assert _ident(volume, stored) == copy_ident(FID, f"taken\0{first}\0{1}", OLD)
        assert [a["kind"] for a in volume.trust.alarms.as_list()] == ["forged"]


@pytest.mark.parametrize("planted", ["any", "unsigned node", "her other node", "a reader's"])
def test_a_document_planted_at_the_copy_id_is_said_and_the_copy_made_beside(planted: str) -> None:
    first, dek = edit_copy_ident(FID, "9" * 32, OLD)
    doc = {"any": {"_id": first, "type": "planted"},
           "unsigned node": {**_copy_doc(first, dek), "sig": None},
           "her other node": _copy_doc(first, b"k" * 32),  # hers, signed, but not under the copy's key
           "a reader's": _copy_doc(first, dek, CAROL)}[planted]
    volume = _volume()
    found = _ident(volume, {first: doc})
    assert found is not None and found[0] != first
    assert found == _ident(_volume(), {first: doc})  # her other device makes it under the same id
    assert found == copy_ident(FID, f"taken\0{first}\0{1}", OLD)
    assert [a["kind"] for a in volume.trust.alarms.as_list()] == ["forged"]


def test_the_copy_made_under_the_next_id_is_made_already() -> None:
    first, dek = edit_copy_ident(FID, "9" * 32, OLD)
    second, dek2 = copy_ident(FID, f"taken\0{first}\0{1}", OLD)
    assert _ident(_volume(), {first: {"_id": first}, second: _copy_doc(second, dek2)}) is None


def test_every_derived_id_planted_still_makes_the_copy() -> None:
    first, _ = edit_copy_ident(FID, "9" * 32, OLD)
    ids = [first] + [copy_ident(FID, f"taken\0{first}\0{n}", OLD)[0] for n in range(1, COPY_IDENTS)]
    found = _ident(_volume(), {fid: {"_id": fid, "type": "planted"} for fid in ids})
    assert found is not None and found[0] not in ids


# --- (3): the work bounded

def _her_leaves(monkeypatch, leaves: list[dict], alarms: Alarms | None = None) -> tuple[list, list[dict]]:
    checked: list[dict] = []

    class Trust:
        def __init__(self) -> None:
            self.alarms = Alarms() if alarms is None else alarms

        def verify(self, doc: dict, author: str | None = None) -> str:
            checked.append(doc)
            if doc.get("sig") != "good":
                raise Forged("bad signature")
            return ALICE

    def other_leaves(local: object, fid: str, limit: int = -1, one_per_body: bool = False) -> list[dict]:
        """As the store reads them (store/replica.py): one per stored body if asked, at most ``limit``."""
        read = leaves
        if one_per_body:
            bodies = {repr(sorted((k, v) for k, v in leaf.items() if not k.startswith("_"))): leaf
                      for leaf in reversed(leaves)}
            read = sorted(bodies.values(), key=lambda leaf: leaf["_rev"])
        return list(read)[:limit] if limit >= 0 else list(read)

    monkeypatch.setattr(her_leaves, "replica", SimpleNamespace(
        local_of=lambda store: store, in_conflict=lambda local, fid: True, other_leaves=other_leaves))
    monkeypatch.setattr(her_leaves, "open_node_doc", lambda doc, key: (b"k" * 32, doc))
    monkeypatch.setattr(her_leaves, "node_from_doc", lambda doc, dek, attrs: (doc["node"], doc["links"]))
    node = Node(2, FID, ALICE, OLD, stat.S_IFREG | 0o644, 1000, 1000, when=1)
    found = list(her_leaves._her_leaves(object(), SimpleNamespace(user_id=ALICE),  # type: ignore[arg-type]
                                        SimpleNamespace(trust=Trust()), node))  # type: ignore[arg-type]
    return found, checked


def _leaf(i: int, sig: str, body: int | None = None) -> dict:
    """Leaf ``i``; its body ``body`` (each leaf its own by default: a server alters each)."""
    node = Node(2, FID, ALICE, OLD, stat.S_IFREG | 0o644, 1000, 1000, when=1)
    name = b"plan %d.txt" % (i if body is None else body)
    return {"_id": FID, "_rev": f"{10**6 - i}-x{i}", "owner": ALICE, "sig": sig, "node": node,
            "links": [(TEAM, name)]}


def test_her_leaves_check_a_bounded_number_of_signatures(monkeypatch) -> None:
    alarms = Alarms()
    leaves = [_leaf(i, "bad") for i in range(her_leaves.HER_LEAVES_CHECKED + 50)]
    found, checked = _her_leaves(monkeypatch, leaves, alarms)
    assert found == [] and len(checked) == her_leaves.HER_LEAVES_CHECKED
    assert [x["kind"] for x in alarms.as_list()] == ["forged"]  # her leaf may be among those left: said


def test_her_leaves_keep_a_bounded_number_that_verify(monkeypatch) -> None:
    alarms = Alarms()
    leaves = [_leaf(i, "good") for i in range(her_leaves.HER_LEAVES + 50)]
    found, checked = _her_leaves(monkeypatch, leaves, alarms)
    assert len(found) == len(checked) == her_leaves.HER_LEAVES
    assert alarms.as_list()


def test_her_leaves_check_one_body_once_whatever_its_revisions(monkeypatch) -> None:
    """45c (1), (2): one body under many revision ids (``_rev`` is not signed) is one check."""
    alarms = Alarms()
    bad = [_leaf(i, "bad", body=0) for i in range(3 * her_leaves.HER_LEAVES_CHECKED)]
    good = [_leaf(10**5 + i, "good", body=1) for i in range(3 * her_leaves.HER_LEAVES)]
    found, checked = _her_leaves(monkeypatch, bad + good, alarms)
    assert len(found) == 1 and len(checked) == 2 and not alarms.as_list()


def test_her_leaves_never_check_a_leaf_naming_another_signer(monkeypatch) -> None:
    """45c (2): a member's own commit of her file says owner her too; his name as signer: not checked."""
    his = [{**_leaf(i, "bad"), "sig": {"by": "bob", "ed25519": "x"}}
           for i in range(her_leaves.HER_LEAVES_CHECKED)]
    found, checked = _her_leaves(monkeypatch, his + [_leaf(10**5, "good")])
    assert len(found) == 1 and len(checked) == 1


def test_her_leaves_highest_epoch_first_whatever_the_generations(monkeypatch) -> None:
    """45c (1): distinct old states of hers (genuine, served above) come after her leaf of a later key
    epoch (the clear epoch, signed): they fill no cap before it."""
    old = [{**_leaf(i, "good"), "epoch": 1} for i in range(2 * her_leaves.HER_LEAVES)]
    hers = {**_leaf(10**5, "good"), "epoch": 2}
    found, _ = _her_leaves(monkeypatch, old + [hers])
    assert found[0][0] is hers["node"]
