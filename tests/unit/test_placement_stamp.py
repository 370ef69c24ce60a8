"""The owner's placement stamp (vault/model/placement.py) and how a reader takes it
(vault/tree/authorship.py ``was_placed``), in-process: what the stamp's signature binds, and
which stamps that hold a reader still does not follow.  The mount-level scenes are in
tests/mount/test_trust_stamps.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fusevault.crypto.keys import MasterKey
from fusevault.vault.model import placement
from fusevault.vault.model.alarms import Alarms
from fusevault.vault.model.ledger import Ledger
from fusevault.vault.model.nodes import Node
from fusevault.vault.tree.authorship import Authorship
from unit.test_ledger_writers import Loaded

ALICE, BOB = "a" * 32, "b" * 32
VAULT = "v" * 32
HERS = Ed25519PrivateKey.generate()
TEAM, PRIVATE, BOBS, FILE = "team" + "0" * 28, "priv" + "0" * 28, "bobs" + "0" * 28, "f" * 32


def test_a_stamp_holds_only_for_its_vault_owner_file_seq_and_parents() -> None:
    made = placement.stamp(HERS, VAULT, ALICE, FILE, [TEAM], ("desktop", 7))
    public = HERS.public_key()
    assert placement.holds(public, VAULT, ALICE, FILE, made) == ([TEAM], ("desktop", 7))
    assert placement.holds(public, "w" * 32, ALICE, FILE, made) is None  # another vault
    assert placement.holds(public, VAULT, BOB, FILE, made) is None  # another owner
    assert placement.holds(public, VAULT, ALICE, "e" * 32, made) is None  # lifted into another file
    assert placement.holds(Ed25519PrivateKey.generate().public_key(), VAULT, ALICE, FILE, made) is None
    for changed in ({"seq": ["desktop", 2**53 - 1]}, {"seq": ["laptop", 7]}, {"parents": [PRIVATE]},
                    {"parents": [TEAM, PRIVATE]}, {"parents": []}, {"sig": made["sig"][:-4] + "AAAA"}):
        assert placement.holds(public, VAULT, ALICE, FILE, {**made, **changed}) is None, changed


def test_a_stamp_read_from_a_document_keeps_its_three_fields_and_shares_its_names() -> None:
    """What a mount keeps per node (nodes.py ``apply_attrs``): only the stamp (a writer's extra
    field is not carried on into memory or the next document), its parent and device strings one
    object across nodes (100,000 nodes: ~34 MB less, docs/PERFORMANCE.md)."""
    import json

    made = placement.stamp(HERS, VAULT, ALICE, FILE, [TEAM], ("desktop", 7))
    text = json.dumps({**made, "junk": "x" * 1000})
    one, two = placement.shaped(json.loads(text)), placement.shaped(json.loads(text))
    assert one == two == made and set(one) == {"parents", "seq", "sig"}
    assert one["parents"][0] is two["parents"][0] and one["seq"][0] is two["seq"][0]
    assert placement.holds(HERS.public_key(), VAULT, ALICE, FILE, one) == ([TEAM], ("desktop", 7))


@pytest.mark.parametrize("odd", [None, [], "x", {"parents": "team", "seq": ["d", 1], "sig": ""},
                                 {"parents": [TEAM], "seq": ["d", -1], "sig": ""},
                                 {"parents": [TEAM], "seq": ["d", True], "sig": ""},
                                 {"parents": [TEAM], "seq": ["d", 2**53], "sig": ""},
                                 {"parents": [TEAM], "seq": ["d", 1, 2], "sig": ""},
                                 {"parents": [TEAM], "seq": ["d", 1]}])
def test_a_stamp_of_the_wrong_shape_is_none(odd: object) -> None:
    assert placement.shaped(odd) is None


@pytest.mark.parametrize("huge", [{"sig": "A" * 8_000_000}, {"parents": [TEAM] * 1025},
                                  {"parents": ["t" * 8_000_000]}, {"seq": ["d" * 8_000_000, 7]}])
def test_a_stamp_larger_than_hers_is_none(huge: dict) -> None:
    """52c (4): a member's commit carries the stamp over unchanged; one of 8 MB was sealed again at
    each of her commits of the file.  Hers (``stamp``) has the sizes it is read with."""
    made = placement.stamp(HERS, VAULT, ALICE, FILE, [TEAM], ("d" * 16, 7))
    assert placement.shaped(made) == made
    assert placement.shaped({**made, **huge}) is None


class Trust:
    """What ``was_placed`` asks of the user's Trust: her id and her pinned signing key."""

    user_id = ALICE
    alarms = Alarms()

    def sign_key(self, user_id: str):
        return HERS.public_key() if user_id == ALICE else None


class Sharing:
    phantoms: set[int] = set()


class Tree:
    """A loaded tree of alice's: her folders team and private, and bob's folder shared with her."""

    sharing = Sharing()

    def __init__(self) -> None:
        self._nodes = {fid: _folder(ino, fid, owner)
                       for ino, fid, owner in ((2, TEAM, ALICE), (3, PRIVATE, ALICE), (4, BOBS, BOB))}

    def find(self, fid: str | None) -> Node | None:
        return self._nodes.get(str(fid))


def _folder(ino: int, fid: str, owner: str) -> Node:
    return Node(ino, fid, owner, b"k" * 32, 0o040700, 0, 0)


@pytest.fixture
def gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Authorship:
    monkeypatch.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "state"))
    ledger = Ledger(MasterKey(ALICE, b"m" * 32), tmp_path / "ledger", Alarms())
    ledger.device = "laptop"
    ledger.record(FILE, ("laptop", 3), True)
    ledger.where[FILE] = [PRIVATE]  # the laptop last saw it in private
    made = Authorship(Trust(), None)  # type: ignore[arg-type]  # was_placed asks nothing of the store
    made.seen, made.vault_id = ledger, VAULT
    return made


def test_a_stamp_from_a_device_not_seen_since_gives_her_place_and_is_remembered(gate: Authorship) -> None:
    """Her desktop's stamp (a state of the file the laptop never saw) is where she put it; the
    ledger then counts that state as seen and the place as where she put it, so the same stamp
    carried again later gives the same place (and is no longer news)."""
    stamp = placement.stamp(HERS, VAULT, ALICE, FILE, [TEAM], ("desktop", 7))
    assert gate.was_placed(Tree(), FILE, stamp) == [TEAM]
    assert gate.seen.was_at(FILE) == [TEAM]
    assert not gate.seen.newer(FILE, ("desktop", 7))
    assert gate.was_placed(Tree(), FILE, stamp) == [TEAM]


@pytest.mark.parametrize("why, stamp", [
    ("older than a state this device saw", placement.stamp(HERS, VAULT, ALICE, FILE, [TEAM], ("laptop", 2))),
    ("another vault's", placement.stamp(HERS, "w" * 32, ALICE, FILE, [TEAM], ("desktop", 7))),
    ("another file's", placement.stamp(HERS, VAULT, ALICE, "e" * 32, [TEAM], ("desktop", 7))),
    ("signed by another key", placement.stamp(Ed25519PrivateKey.generate(), VAULT, ALICE, FILE, [TEAM],
                                              ("desktop", 7))),
    ("naming a folder not hers", placement.stamp(HERS, VAULT, ALICE, FILE, [BOBS], ("desktop", 7))),
    ("naming a folder not held", placement.stamp(HERS, VAULT, ALICE, FILE, ["gone" * 8], ("desktop", 7))),
    ("naming no folder", placement.stamp(HERS, VAULT, ALICE, FILE, [], ("desktop", 7))),
])
def test_a_stamp_not_followed_leaves_where_this_device_saw_the_file(gate: Authorship, why: str,
                                                                    stamp: dict) -> None:
    assert gate.was_placed(Tree(), FILE, stamp) == [PRIVATE], why
    assert gate.seen.newer(FILE, ("desktop", 7)), "a stamp not followed was remembered as seen"


def _held_in_team(signer_seq: tuple[str, int]) -> list[Node]:
    team = _folder(2, TEAM, ALICE)
    diary = Node(5, FILE, ALICE, b"k" * 32, 0o100600, 0, 0)
    diary.links, diary.seq = [(2, b"diary.txt")], signer_seq
    return [team, diary]


@pytest.mark.parametrize("stamped, behind", [
    ([TEAM], False),  # her followed stamp puts it where bob's document leaves it: hers
    ([PRIVATE], True),  # his document leaves it elsewhere than she put it
    (None, True),  # no stamp: a writer's document never ends behind
])
def test_a_writers_document_ends_behind_only_where_her_followed_stamp_puts_the_file(
        gate: Authorship, stamped: list[str] | None, behind: bool) -> None:
    """diary.txt was kept behind in bobs' folder on the laptop; bob's newer document puts it in team.
    At the load (``check_loaded``) and while mounted (``arrived``)."""
    ledger = gate.seen
    assert isinstance(ledger, Ledger)
    ledger.behind[FILE] = [BOBS]
    if stamped is not None:
        ledger.saw_placed(FILE, stamped, ("desktop", 7))
    ledger.check_loaded(Loaded(ledger.key, _held_in_team(("bobs-device", 1))), None,  # type: ignore[arg-type]
                        {}, {FILE: BOB})
    assert (FILE in ledger.behind) is behind
    ledger.behind[FILE] = [BOBS]
    ledger.arrived(FILE, [TEAM], by_owner=False)
    assert (FILE in ledger.behind) is behind
