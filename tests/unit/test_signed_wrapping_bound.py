"""The owner's signed wrapping looked for among a file's versions (vault/tree/guests.py
``_signed_wrapping``, attack round 53c (2)'s fix): the bound of ``WRAPPING_VERSIONS`` counts only
versions naming her as their signer.  Review of round 53's fixes: a member's versions carry her
wrapping too, so 64 honest ones of his at that epoch hid hers, and his wrapping was carried again."""

from __future__ import annotations

from types import SimpleNamespace

from fusevault.errors import Forged
from fusevault.vault.tree import guests

HERS = {"en_file_dek": "A" * 80}


class Versions:
    """A store's versions of one file, in the order given (what ``by_file`` answers)."""

    def __init__(self, versions: list[dict]) -> None:
        self.versions = versions

    def by_file(self, kind: str, fid: str) -> list[dict]:
        return self.versions


class Trust:
    """Verifies by the document's own word (the signatures are not what is tested here)."""

    def verify(self, doc: dict, author: str | None = None) -> str:
        if doc.get("forged"):
            raise Forged("forged")
        return doc["sig"]["by"]


def _version(signer: str, wrapping: dict, **extra: object) -> dict:
    return {"owner": "alice", "epoch": 2, **wrapping, "sig": {"by": signer, "ed25519": "x"}, **extra}


def _found(versions: list[dict]) -> dict | None:
    fresh = SimpleNamespace(fid="f" * 32, owner="alice", epoch=2)
    return guests._signed_wrapping({}, fresh, Trust(), Versions(versions))  # type: ignore[arg-type]


def test_her_wrapping_is_found_past_more_member_versions_than_the_bound() -> None:
    members = [_version("bob", HERS) for _ in range(guests.WRAPPING_VERSIONS + 5)]
    assert _found([*members, _version("alice", HERS)]) == HERS


def test_versions_forged_in_her_name_still_count_towards_the_bound() -> None:
    """Control: the bound still holds for what names her (each costs a verification)."""
    forged = [_version("alice", HERS, forged=True) for _ in range(guests.WRAPPING_VERSIONS + 1)]
    assert _found([*forged, _version("alice", HERS)]) is None


def test_a_malformed_signature_is_passed_over() -> None:
    assert _found([{**_version("bob", HERS), "sig": "garbage"}, _version("alice", HERS)]) == HERS
