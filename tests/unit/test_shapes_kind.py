"""Round 14 (5): a document is checked as the kind it was asked for, never as its body says.

The local store selects by the row's type column; a writer of the vault folder (no key) sets it apart
from the body.  Each planted row here is one the code indexing a document of that kind would fail on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fusevault.store.local import LocalStore
from fusevault.vault.model import shapes
from fusevault.vault.model.sharing import all_grants

PLANTED = "d" * 32  # an id fusevault could make (layout.checked_id): the row is refused for its body alone
SHARE = {"type": "Share", "owner": "a" * 32, "fid": "f" * 32, "grantee": "b" * 32, "perm": "READ"}
GROUP = {"type": "Group", "owner": "a" * 32, "groupname": "team", "users": {}}
USER = {"type": "UserDetails", "username": "mallory"}
BODIES = {"empty": {}, "deleted": {"_deleted": True}, "share": SHARE, "group": GROUP, "user": USER}


def _plant(store: LocalStore, kind: str, body: dict, doc_id: str = PLANTED) -> None:
    store.db.execute("INSERT INTO docs (id, rev, seq, deleted, type, body) VALUES (?, '1-0', ?, 0, ?, ?)",
                     (doc_id, store.next_seq(), kind, json.dumps(body)))


@pytest.mark.parametrize("kind", [shapes.USER, shapes.GROUP, shapes.SHARE])
@pytest.mark.parametrize("body", list(BODIES), ids=str)
def test_a_row_is_checked_as_the_kind_asked_for(tmp_path: Path, kind: str, body: str) -> None:
    """Typed ``kind`` by its column, its body ``{}``, a body's ``_deleted`` (passed unchecked before),
    or a well-formed document of another kind: left out unless it is one of ``kind``."""
    store = LocalStore(tmp_path / "store.sqlite")
    _plant(store, kind, BODIES[body])
    got = list(shapes.well_formed(store, kind))
    if BODIES[body].get("type") == kind:
        assert [d["_id"] for d in got] == [PLANTED]
    else:
        assert got == []


def test_all_grants_leaves_a_bad_share_out_and_takes_one_without_group(tmp_path: Path) -> None:
    """A Share row that is no Share is left out (it raised CorruptData: every mount stopped); one
    without ``group`` (share_ok: not a group) is taken (grant_of indexed ``group``)."""
    store = LocalStore(tmp_path / "store.sqlite")
    _plant(store, shapes.SHARE, {}, "bad")
    _plant(store, shapes.SHARE, GROUP, "other")
    _plant(store, shapes.SHARE, SHARE, "good")
    (grant,) = all_grants(store)
    assert (grant.fid, grant.group) == ("f" * 32, False)
