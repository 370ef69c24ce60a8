"""The owner's signed wrapping looked for among a file's versions (vault/tree/guests.py
``_signed_wrapping``, attack round 53c (2)'s fix): only versions naming her as their signer are checked.
Review of round 53's fixes: a member's versions carry her wrapping too, so 64 honest ones of his at that
epoch hid hers, and his wrapping was carried again.  Round 55a (1): versions merely naming her (altered
copies of hers) hid hers past the bound; the bound now counts signatures checked, and the version the
state's ``head`` names and those checked before on this device are looked at first."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

from fusevault.errors import Forged
from fusevault.vault.model.nodes import VERSION
from fusevault.vault.tree import guests

HERS = {"en_file_dek": "A" * 80}


class Versions:
    """A store's versions of one file, in the order given (what ``by_file`` answers)."""

    def __init__(self, versions: list[dict], others: list[dict] = ()) -> None:  # type: ignore[assignment]
        self.versions = versions
        self.docs = {each["_id"]: each for each in [*versions, *others]}

    def by_file(self, kind: str, fid: str) -> list[dict]:
        return self.versions

    def get(self, doc_id: str) -> dict | None:
        return self.docs.get(doc_id)


class Trust:
    """Verifies by the document's own word (the signatures are not what is tested here); counts the
    signatures it checks (``checked``: ids), and knows the ids in ``before`` as checked before."""

    def __init__(self, before: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.before = before
        self.checked: list[str] = []

    def verify(self, doc: dict, author: str | None = None) -> str:
        self.checked.append(doc["_id"])
        if doc.get("forged"):
            raise Forged("forged")
        return doc["sig"]["by"]

    def verified_before(self, doc: dict, signer: str) -> bool:
        return doc["_id"] in self.before and doc["sig"]["by"] == signer


FID = "f" * 32


def _version(signer: str, wrapping: dict, **extra: object) -> dict:
    return {"_id": uuid.uuid4().hex, "type": VERSION, "fid": FID, "owner": "alice", "epoch": 2, **wrapping,
            "sig": {"by": signer, "ed25519": "x"}, **extra}


def _found(versions: list[dict], head: str | None = None, trust: Trust | None = None,
           others: list[dict] = ()) -> dict | None:  # type: ignore[assignment]
    fresh = SimpleNamespace(fid=FID, owner="alice", epoch=2, head=head)
    return guests._signed_wrapping({}, fresh, trust or Trust(), Versions(versions, others))  # type: ignore[arg-type]


def _copies(n: int = guests.WRAPPING_VERSIONS + 1) -> list[dict]:
    """``n`` altered copies of her version: each naming her, none verifying."""
    return [_version("alice", {"en_file_dek": "B" * 80}, forged=True) for _ in range(n)]


def test_her_wrapping_is_found_past_more_member_versions_than_the_bound() -> None:
    members = [_version("bob", HERS) for _ in range(guests.WRAPPING_VERSIONS + 5)]
    assert _found([*members, _version("alice", HERS)]) == HERS


def test_versions_forged_in_her_name_still_count_towards_the_bound() -> None:
    """Control: the bound still holds for what names her (each costs a verification)."""
    forged = [_version("alice", HERS, forged=True) for _ in range(guests.WRAPPING_VERSIONS + 1)]
    assert _found([*forged, _version("alice", HERS)]) is None


def test_a_malformed_signature_is_passed_over() -> None:
    assert _found([{**_version("bob", HERS), "sig": "garbage"}, _version("alice", HERS)]) == HERS


def test_the_version_the_head_names_is_looked_at_first() -> None:
    """55a (1): her version named by the state's ``head``, after more copies naming her than the bound."""
    hers = _version("alice", HERS)
    trust = Trust()
    assert _found([*_copies(), hers], head=hers["_id"], trust=trust) == HERS
    assert trust.checked == [hers["_id"]], "more than her version checked"


def test_a_head_naming_another_file_or_kind_or_epoch_is_not_taken() -> None:
    """The head is the state writer's word: a version of hers of another file (its wrapping wraps another
    key), another kind of document of hers, or one at another epoch is no version of this file's."""
    for other in ({"fid": "e" * 32}, {"type": "Node"}, {"epoch": 1}):
        head = {**_version("alice", {"en_file_dek": "C" * 80}), **other}
        trust = Trust()
        assert _found(_copies(), head=head["_id"], trust=trust, others=[head]) is None, other
        assert head["_id"] not in trust.checked, other


def test_a_version_checked_before_is_found_past_any_number_of_copies() -> None:
    """55a (1): a version of hers this device checked before, after more copies naming her than the
    bound: found with no signature checked."""
    hers = _version("alice", HERS)
    trust = Trust(before={hers["_id"]})
    assert _found([*_copies(3 * guests.WRAPPING_VERSIONS), hers], trust=trust) == HERS
    assert trust.checked == []


def test_a_flood_of_copies_costs_at_most_the_bound_in_signatures_each_once() -> None:
    """The work bound: a flood naming her (and a head naming one of them) costs at most
    ``WRAPPING_VERSIONS`` signatures checked, none twice."""
    flood = _copies(10 * guests.WRAPPING_VERSIONS)
    trust = Trust()
    assert _found(flood, head=flood[-1]["_id"], trust=trust) is None
    assert len(trust.checked) == guests.WRAPPING_VERSIONS == len(set(trust.checked))
    assert trust.checked[0] == flood[-1]["_id"], "the head not looked at first"
