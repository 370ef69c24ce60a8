"""For whom her re-key made a file's key (vault/model/sealed_for.py, attack round 71d (1)): a grant in force
on her other device that her newer re-key left out is never sealed to, and said; a group's member added
since, a share on a folder she moved the file under since, are; a node without a record is sealed as
before; a document's record of another shape is refused."""

from __future__ import annotations

import uuid

import pytest

from fusevault.vault.model import nodes, sealed_for, sharing
from fusevault.vault.model.alarms import Alarms
from fusevault.vault.model.nodes import Node
from fusevault.vault.model.sharing import Grant
from fusevault.vault.tree.guests import Guests

ME, BOB, CAROL, FOLDER, FILE, TEAM = (uuid.uuid4().hex for _ in range(6))


class _Trust:
    def __init__(self) -> None:
        self.alarms = Alarms()


def _node() -> Node:
    node = Node(7, FILE, ME, b"k" * 32, 0o100600, 0, 0)
    node.epoch = 1
    return node


def _record(to: list[str], groups: dict | None = None) -> dict:
    found = sealed_for.record(1, to, groups or {}, [FILE, FOLDER])
    assert found is not None and sealed_for.shaped(found)
    return found


def _guests(groups: dict | None = None) -> tuple[Guests, _Trust]:
    trust = _Trust()
    return Guests(ME, [], groups or {}, {}, trust=trust), trust  # type: ignore[arg-type]


def test_a_share_her_newer_rekey_left_out_is_not_sealed_to_and_said() -> None:
    """Her Share to bob, served again over her unshare on the laptop: its re-key sealed to nobody."""
    here, trust = _guests()
    share = Grant(ME, FOLDER, BOB, False, "READ")
    assert here._left_out(_record([]), _node(), share, BOB)
    assert "replayed-grant" in trust.alarms
    assert (sharing.doc_id(FOLDER, BOB), BOB) in here.left  # taken back here: no new file sealed to it
    # The control: a share the re-key sealed to (whatever its permission since) is sealed as before.
    kept = _record([f"{sealed_for.entry(ME, FOLDER, BOB, BOB)}READ"])
    assert not here._left_out(kept, _node(), Grant(ME, FOLDER, BOB, False, "READ,WRITE"), BOB)


def test_a_share_on_a_folder_she_moved_the_file_under_since_is_sealed_to() -> None:
    here, _ = _guests()
    elsewhere = uuid.uuid4().hex  # not over the file at its re-key: her move of it since
    assert not here._left_out(_record([]), _node(), Grant(ME, elsewhere, BOB, False, "READ"), BOB)


@pytest.mark.parametrize(("here_vector", "sealed"), [
    ({"d1": 3}, True),  # signed after the body the re-key saw: carol added since
    ({"d1": 2}, False),  # the body the re-key saw, naming a member it left out
    ({"d1": 1}, False),  # an older body served again (her removal of bob undone)
    ({"d2": 1}, False),  # made apart: not known to be newer
])
def test_a_groups_member_outside_the_rekey_is_sealed_to_only_under_a_newer_body(
        here_vector: dict, sealed: bool) -> None:
    here, trust = _guests({TEAM: {"owner": ME, "users": {CAROL: "READ"}, "version_vector": here_vector}})
    record = _record([], {TEAM: {"d1": 2}})
    assert here._left_out(record, _node(), Grant(ME, FOLDER, TEAM, True, "READ"), CAROL) is not sealed
    assert ("replayed-grant" in trust.alarms) is not sealed


def test_a_record_of_another_epoch_is_not_in_force() -> None:
    """A later re-key of older code keeps the record of an earlier key in the node: not this key's."""
    found = _record([])
    assert sealed_for.in_force(found, 1) == found
    assert sealed_for.in_force(found, 2) is None and sealed_for.in_force(None, 1) is None


@pytest.mark.parametrize("bad", [
    [], {"epoch": 1, "to": [], "groups": {}},  # a field short
    {"epoch": 1, "to": ["x"] * (sealed_for.MAX_TO + 1), "groups": {}, "above": []},
    {"epoch": 1, "to": ["x" * (sealed_for.MAX_ENTRY + 1)], "groups": {}, "above": []},
    {"epoch": True, "to": [], "groups": {}, "above": []},
    {"epoch": 1, "to": [3], "groups": {}, "above": []},
    {"epoch": 1, "to": [], "groups": {"g": {"d": -1}}, "above": []},
    {"epoch": 1, "to": [], "groups": {}, "above": "x"},
    {"epoch": 1, "to": [], "groups": {}, "above": [], "more": 1},
])
def test_a_documents_record_of_another_shape_is_refused(bad: object) -> None:
    assert not sealed_for.shaped(bad)
    with pytest.raises(ValueError):
        nodes.check_texts({"sealed_for": bad})


def test_past_the_bounds_a_rekey_keeps_no_record() -> None:
    assert sealed_for.record(1, ["x"] * (sealed_for.MAX_TO + 1), {}, []) is None


def test_given_again_takes_only_that_share_out_of_taken_and_says_its_members() -> None:
    """Her share command's record (attack round 75a (1)): the Share she gave again out of ``taken``, its
    recipients in ``to``, the group's vector here (a member added since is ``group_newer``); every other
    Share her re-keys took back stays taken; a record that never took it back is left as it is."""
    mine, carols = sharing.doc_id(FOLDER, TEAM), sharing.doc_id(FOLDER, CAROL)
    held = sealed_for.record(1, [], {}, [FILE, FOLDER], [mine, carols])
    assert held is not None
    bob = f"{sealed_for.entry(ME, FOLDER, TEAM, BOB)}READ"
    again = sealed_for.given_again(held, mine, [bob], TEAM, {"d1": 2})
    assert again is not None and sealed_for.shaped(again)
    assert again["taken"] == [carols] and again["to"] == [bob] and again["groups"] == {TEAM: {"d1": 2}}
    here, _ = _guests({TEAM: {"version_vector": {"d1": 3}}})  # carol added to team since
    assert not here._outside(again, Grant(ME, FOLDER, TEAM, True, "READ"), CAROL)
    assert here._outside(again, Grant(ME, FOLDER, CAROL, False, "READ"), CAROL), "her Share to carol given"
    assert sealed_for.given_again(again, mine, [bob], TEAM, {"d1": 2}) is None, "not taken: nothing to do"
    older = {k: v for k, v in held.items() if k != "taken"}  # a record of no build that lists any
    assert sealed_for.given_again(older, mine, [], None, None) is None


def test_given_again_keeps_a_newer_group_vector_of_the_record() -> None:
    """A Group body here older than the one her record saw (a member she removed elsewhere, served again):
    the record keeps the newer vector, as a re-key's does (``rekeying._groups_seen``)."""
    mine = sharing.doc_id(FOLDER, TEAM)
    held = sealed_for.record(1, [], {TEAM: {"d1": 5}}, [FILE, FOLDER], [mine])
    assert held is not None
    again = sealed_for.given_again(held, mine, [], TEAM, {"d1": 4})
    assert again is not None and again["groups"] == {TEAM: {"d1": 5}} and again["taken"] == []


def test_given_again_past_the_bounds_still_takes_the_share_out_of_taken() -> None:
    """More recipients than a record holds: the Share out of ``taken`` all the same, ``to`` as it was."""
    mine = sharing.doc_id(FOLDER, TEAM)
    held = sealed_for.record(1, [], {}, [FILE, FOLDER], [mine])
    assert held is not None
    many = [f"{sealed_for.entry(ME, FOLDER, TEAM, uuid.uuid4().hex)}READ"
            for _ in range(sealed_for.MAX_TO + 1)]
    again = sealed_for.given_again(held, mine, many, TEAM, {"d1": 1})
    assert again is not None and again["taken"] == [] and again["to"] == []
    assert again["groups"] == {TEAM: {"d1": 1}}
    wide = {f"d{i}": 1 for i in range(sealed_for.MAX_DEVICES + 1)}  # a vector no record holds
    again = sealed_for.given_again(held, mine, [], TEAM, wide)
    assert again is not None and again["taken"] == [] and again["groups"] == {}


def test_a_member_added_to_a_group_whose_share_was_taken_back_is_no_member_added_since() -> None:
    """A record naming team's Share in ``taken`` and a body of team (her desktop's re-key, the Share served
    again there): a member under a newer body is left out all the same; once given again, he is not."""
    mine = sharing.doc_id(FOLDER, TEAM)
    held = sealed_for.record(1, [], {TEAM: {"d1": 2}}, [FILE, FOLDER], [mine])
    assert held is not None
    newer = {"version_vector": {"d1": 3}}
    assert not sealed_for.group_newer(held, FOLDER, TEAM, newer)
    here, _ = _guests({TEAM: newer})
    assert here._outside(held, Grant(ME, FOLDER, TEAM, True, "READ"), CAROL)
    again = sealed_for.given_again(held, mine, [], TEAM, {"d1": 2})
    assert again is not None and sealed_for.group_newer(again, FOLDER, TEAM, newer)
    assert not here._outside(again, Grant(ME, FOLDER, TEAM, True, "READ"), CAROL)


# Attack round 76a (1): her records at one key are ordered by the count her share command raises, under
# her proof; the later is kept whichever a state carries.  (3): her record of the held key kept aside when
# the node takes a state under an older key, for the re-key it is owed.

def _hers(found: dict | None, key: object = None) -> dict:
    from fusevault.crypto.keys import MasterKey
    master = key if isinstance(key, MasterKey) else MasterKey(ME, b"m" * 32)
    proved = sealed_for.proved(master, FILE, b"k" * 32, found)
    assert proved is not None
    return proved


def _her_records() -> tuple[object, dict, dict, dict]:
    """Her unshare's record (R1: the team Share taken), her share again's (R2) and a second share again
    (R3, of another Share taken) at one key."""
    from fusevault.crypto.keys import MasterKey
    key = MasterKey(ME, b"m" * 32)
    team, bobs = sharing.doc_id(FOLDER, TEAM), sharing.doc_id(FOLDER, BOB)
    unshare = sealed_for.record(1, [], {}, [FILE, FOLDER], [team, bobs])
    assert unshare is not None
    r1 = _hers(unshare, key)
    r2 = _hers(sealed_for.given_again(r1, team, [], None, None), key)
    r3 = _hers(sealed_for.given_again(r2, bobs, [], None, None), key)
    return key, r1, r2, r3


def test_her_share_again_counts_each_record_it_writes_again_at_one_key() -> None:
    _, r1, r2, r3 = _her_records()
    assert (sealed_for.count(r1), sealed_for.count(r2), sealed_for.count(r3)) == (0, 1, 2)
    assert "again" not in r1  # a re-key's record keeps the shape of older builds


def test_a_state_carrying_her_earlier_record_at_the_key_keeps_the_later() -> None:
    key, r1, r2, r3 = _her_records()
    taken = lambda fresh, held: sealed_for.taken(key, ME, FILE, 1, b"k" * 32, fresh, held)  # noqa: E731
    assert taken(r1, r2) == r2 and taken(r2, r3) == r3 and taken(r1, r3) == r3
    assert taken(r3, r1) == r3 and taken(r2, r2) == r2  # a later one of hers is taken
    assert taken(None, r2) == r2 and taken(r1, None) == r1
    # A record of a build before the count ranks first: her share again's wins over it.
    assert sealed_for.later(r2, r1) == r2 and sealed_for.later(r1, r2) == r2


def test_a_count_raised_by_anyone_but_her_counts_for_nothing() -> None:
    """A WRITE member (he holds the key) raising the count of her earlier record, or writing one of his
    own with a high count: her proof does not check, the held record stays."""
    key, r1, r2, _ = _her_records()
    raised = {**r1, "again": 9}
    assert sealed_for.shaped(raised) and not sealed_for.hers(key, FILE, 1, b"k" * 32, raised)
    assert sealed_for.taken(key, ME, FILE, 1, b"k" * 32, raised, r2) == r2
    dropped = {k: v for k, v in r2.items() if k != "again"}  # the count stripped: not her proof's record
    assert not sealed_for.hers(key, FILE, 1, b"k" * 32, dropped)


@pytest.mark.parametrize("again", [0, -1, True, "1", 1.0, 2**31 + 1, None, [1]])
def test_a_documents_count_of_another_shape_is_refused(again: object) -> None:
    assert not sealed_for.shaped({**_record([]), "again": again})


def test_her_record_of_the_held_key_is_kept_aside_for_a_state_under_an_older_key() -> None:
    key, r1, _, _ = _her_records()
    keep = lambda held, fresh_epoch, kept=None: sealed_for.below(  # noqa: E731
        key, ME, FILE, 1, b"k" * 32, held, fresh_epoch, kept)
    assert keep(r1, 0) == r1  # a WRITE member's state under the key he held: her record kept aside
    assert keep(r1, 1) is None and keep(r1, 2) is None  # at or above her epoch: nothing owed
    assert keep({**r1, "taken": []}, 0) is None  # not hers (changed): nothing kept
    assert keep(None, 0, r1) == r1  # the node already below: the record kept before stays
    higher = {**r1, "epoch": 3}
    assert keep(r1, 0, higher) == higher  # one of a higher epoch kept before is not replaced by a lower
    # Not her node (a member's device cannot check her proof): nothing kept.
    assert sealed_for.below(key, BOB, FILE, 1, b"k" * 32, r1, 0, None) is None
