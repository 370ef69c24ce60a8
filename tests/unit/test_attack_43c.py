"""Round 43c: attack on the fixes of round 42b (a WRITE member's edit kept as his conflict copy when she
moves the file out of his share; her metadata merged between her devices by signed change stamps):
tree/her_leaves.py ``hers_beside_copies``/``_her_leaf``, services/conflict_rules.py ``decide`` (rule 2 keeps
the higher key epoch), model/nodes.py ``taken_stamps``/``stamp_ok``.

Attacker: a WRITE member (signs his own commits of her file), the CouchDB server (writes any revision
tree, any unsigned or badly signed body), and ordinary use (clocks that are off).

1. **A member's stamp less than a day ahead still turns her changes into a count (medium-low).**
   Attack: bob (WRITE) commits her file carrying ``changed: {"mode": now + 23 h}`` (one commit a day
   keeps it fresh).  Both her devices take it in (under ``STAMP_AHEAD_NS``: kept).  Apart, the desktop
   chmods twice (640, 644), a little later the laptop once (600).  Seen (unit): the merge gives 644 on
   both devices: each ``note_change`` is his stamp + 1, the device that changed it more often wins, her
   later chmod undone unsaid.  Cause: nodes.py ``taken_stamps`` only drops stamps past now + a day;
   42b (2)'s count of changes holds for any stamp ahead of her clocks.  Impact: 42b (2) for a day after
   each commit of his, renewable.  Fix (suggested): a member's (not her own devices') stamp taken in is
   held down to the arrival time (or not taken at all: only her signed states carry stamps that count),
   or ``note_change`` stamps max(now, old + 1) only for stamps not ahead of now.  Test:
   ``test_her_later_chmod_stands_over_a_members_stamp_just_under_a_day_ahead``.
2. **A device whose clock runs more than a day behind drops every honest stamp (low-medium, ordinary
   use).**  Her laptop's clock is two days behind (no RTC, NTP not yet synced, a VM restored).  It
   chmods 600; later the desktop (right clock) chmods 640.  Settled on the laptop: the desktop's stamp
   is more than a day past the laptop's clock, taken as none (``taken_stamps``): the laptop's earlier
   600 wins there; the desktop picks 640.  Seen (unit): 600 on the laptop, 640 on the desktop.  Before
   the fix both picked the later 640.  Cause: ``taken_stamps`` judges "ahead" against the clock of the
   device taking the state in; a slow clock makes every other clock "ahead".  Impact: her later change
   undone by whichever device settles with the slow clock; the two devices disagree (the one that
   commits its merge wins).  Fix: bound stamps against something not local (the member's stamps only;
   or only stamps of states not signed by her), or keep stamps and hold them down rather than drop.
   Test: ``test_a_device_whose_clock_runs_two_days_behind_keeps_her_later_chmod``.
3. **A server buries her leaf under 16 badly signed leaves (medium: 42b (3)/(4) back).**  ``_her_leaf``
   looks at the ``HER_LEAVES`` leaves CouchDB's rule ranks first among those that *say* owner alice; a
   server puts 16 bodies saying owner alice with a bad signature at higher generations: none verifies,
   hers (17th) is never opened, ``hers_beside_copies`` does nothing: his copy branch is placed where his
   document says, judged as his move (a false forged-write naming bob) and, his version withheld, her
   file reads EIO in his folder, hers hidden (42b (3)).  Seen (unit, ``_her_leaf``): None.  Cause: the
   cap counts leaves before their signature is checked.  Fix: verify (cheap: cached) or filter by
   ``said_signer`` before the cap; count only leaves that verify; or cap the leaves a replica keeps per
   document.  Tests: ``test_her_leaf_is_found_under_sixteen_badly_signed_leaves``; at a mount
   tests/mount/test_trust_attack_43c.py::test_her_leaf_under_sixteen_badly_signed_leaves_is_shown
   (seen: only team/plan.txt, EIO).
4. **Her leaf with more saves but an older key hides her moved-out leaf (medium; honest or server).**
   Three-way: her desktop moves the file out of bob's share (epoch 2), her laptop apart chmods/edits it
   several times in the share (epoch 1), bob saves many times (current).  Or a server serves one of her
   pre-move states as a leaf with a high generation.  ``_her_leaf`` returns the first of hers by
   generation only (the laptop's, epoch 1); ``loaded_copy`` is then false (his epoch is not below it)
   and no other leaf of hers is tried: the load is as before the fix (42b (3)/(4)).  Seen (unit):
   ``_her_leaf`` returns the epoch-1 leaf beside her epoch-2 one.  Fix: try each of her leaves with
   ``loaded_copy`` (highest epoch first), not only the first.  Tests:
   ``test_her_leaf_chosen_is_the_one_beside_which_his_is_a_copy``; at a mount (the server's variant)
   tests/mount/test_trust_attack_43c.py::test_her_leaf_beside_her_older_state_served_above_it_is_shown
   (seen: only team/plan.txt, EIO, a false forged-write naming bob).
5. **Rule 2's higher epoch undoes her later move on her other device (low-medium).**  The desktop
   re-keys an empty file (or a folder) in place (``unshare`` of its folder: a rotation, epoch 1, same
   folder); apart, later, the laptop moves it proj/blank -> archive/blank (epoch 0).  Rule 2 keeps the
   desktop's key (right), but ``apart`` gives it the desktop's names: "not over a re-keyed move into
   another folder" looks only at the folders differing, not at which side moved; her later move is
   undone unsaid.  Seen (unit): links proj.  (For a non-empty file rule 3's 41b (2) guard does the
   same.)  Fix: keep the keeper's names only if the keeper moved (its ``links`` stamp is the later);
   else the later move's names, the node re-keyed away as a move taken in is.  Test:
   ``test_rule_2_keeps_her_later_move_beside_a_re_key_in_place``.
6. **Rule 2's higher epoch drops a WRITE member's later rename, unsaid (low-medium, honest use).**  team/
   shared WRITE with bob and carol; she unshares carol: team/sub (a folder: no head, rule 2; or an empty
   file) re-keyed in place, epoch 1.  Apart, later, bob renames team/sub to team/sub2: his state, where
   he writes (``leaf_verdict`` KEPT).  Rule 2 keeps her epoch-1 state whole (right for the key); ``apart``
   merges names only between two states of hers: his rename is lost, nothing said.  (A non-empty file
   goes by rule 3, which keeps his names in one folder.)  Before 42b (6) his later state was kept whole
   (carol's old key): the fix traded that for his lost rename.  Seen (unit): links team/sub.  Fix: when
   the lower-epoch side is a member's KEPT state, keep the higher epoch's key and contents with his names
   if they changed later (judged by ``leaf_ok`` as ``_adopt`` does for ``named``), the node re-keyed away
   from shares it leaves.  Tests: ``test_rule_2_keeps_a_members_later_rename_beside_her_re_key_in_place``;
   at a mount tests/mount/test_trust_attack_43c.py::test_bobs_rename_beside_her_unshare_is_kept (seen:
   team/sub, nothing said).
7. See tests/mount/test_trust_attack_43c.py (a document the server plants at his copy's id).
8. **Rule 2's "newer key" is the epoch a member claims (medium; seen at a mount too:
   tests/mount/test_trust_attack_43c.py (8)).** The epoch is his to seal into his state; the key he carries
   is her older wrapping (``writers_copy``'s premise). bob (WRITE on team) seals epoch 99 (2**62 will do, at
   every commit of his) into a chmod or rename of team/sub made while she unshares carol (team/sub re-keyed
   in place, epoch 1): his state is KEPT (``leaf_verdict``: where he writes, no ``owner_dek``) and rule 2
   keeps it whole, ``max`` by epoch: the key she just took back from carol stands as the folder's (or the
   empty file's, whose next contents carol reads). (Read only: before 42b (6) a ctime he set ahead likely
   did the same.) The fix's "the newer key stands" does not hold against a member. Seen (unit): keeper's key
   is the old one. Fix: rule 2 by epoch only between two states of hers (``is_hers``); a member's state beside
   her higher epoch keeps her key and epoch (his names/mode merged if judged), or refuse a member's state
   whose epoch is not the held one's (he cannot re-key: only a move, by her device, does). Test:
   ``test_rule_2_keeps_her_new_key_over_a_members_state_claiming_a_higher_epoch``.

Run 05:54 UTC: 7 strict xfails, each failing at its own assertion under --runxfail; controls pass.
Fixed since: (3), (4) (their tests here pass); (1), (2) and (8), whose fixes turn on who signed a state
(``taken_stamps(by_owner)``, ``conflict_rules._newer_key``): the attacker's tests of them took states in with
no signer known, where every state counts as hers by design (a vault with no key pairs; 42b's day bound
for unsigned states), so they could never pass; they are replaced by the same scenes through the signed
path: tests/unit/test_stamps_by_signer_43c.py (1, 2) and tests/unit/test_conflicts_rule2_43c.py (8).
(5) is fixed too (conflict_rules.py ``_rekeyed_by_a_move``: told by the signed placement stamps, not the
change stamps): its test here passes, with tests/unit/test_conflicts_rekey_in_place_43c.py and at a
mount tests/mount/test_trust_attack_43c.py
(``test_her_later_move_beside_her_unshare_on_her_other_device_is_kept``).
"""

from __future__ import annotations

import stat
from types import SimpleNamespace

import pytest

from fusevault.errors import Forged
from fusevault.vault.model import nodes
from fusevault.vault.model.nodes import Node, apply_attrs, attrs_plain, check_shapes, note_change
from fusevault.vault.services.conflict_rules import Leaf, apart, decide
from fusevault.vault.services.metadata_merge import merged
from fusevault.vault.tree import her_leaves

FID, PROJ, ARCHIVE, ROOT = "f" * 32, "p" * 32, "a" * 32, "r" * 32
DAY = 86400 * 10**9
ALICE = "alice"


class Clock:
    """One clock per device: real time moving at each reading, and the device's offset from it."""

    def __init__(self) -> None:
        self.real = 10**18
        self.offset = 0

    def __call__(self) -> int:
        self.real += 1000
        return self.real + self.offset


@pytest.fixture(autouse=True)
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(nodes, "now_ns", c)
    return c


def _node(epoch: int = 0) -> Node:
    node = Node(2, FID, ALICE, b"k" * 32, stat.S_IFREG | 0o644, 1000, 1000, when=1)
    node.epoch = epoch
    return node


def _taken(node: Node) -> Node:
    """The node's document taken in by one of her devices (loaded at a mount, or arrived)."""
    other = _node()
    attrs = attrs_plain(node, lambda p: p)
    check_shapes(attrs)
    apply_attrs(other, attrs)
    return other


def _chmod(node: Node, mode: int) -> None:
    node.mode = stat.S_IFMT(node.mode) | mode
    note_change(node, "mode")


# --- 1: a member's stamp just under a day ahead

def _her_devices_apart(his_stamp: int | None) -> set[int]:
    """bob's state of her file on both her devices; apart, the desktop chmods twice (640, 644), then
    the laptop once (600, the later change).  The modes the merge gives on either side."""
    his = _node()
    if his_stamp is not None:
        his.changed = {"mode": his_stamp}
    laptop, desktop = _taken(his), _taken(his)
    _chmod(desktop, 0o640)
    _chmod(desktop, 0o644)
    _chmod(laptop, 0o600)
    return {merged(keeper, other, keeper).perm for keeper, other in ((laptop, desktop), (desktop, laptop))}


def test_control_her_later_chmod_stands_over_an_honest_members_state(clock: Clock) -> None:
    assert _her_devices_apart(None) == {0o600}


# --- 2: a device whose clock runs behind

def _slow_laptop_apart(clock: Clock, behind: int) -> tuple[int, int]:
    """Her file (no stamps) on both devices; the laptop, its clock ``behind`` ns slow, chmods 600; a
    minute later the desktop (right clock) chmods 640.  (the mode the laptop's settling gives, the
    desktop's), each taking the other's state in with its own clock."""
    base = _node()
    laptop, desktop = _taken(base), _taken(base)
    clock.offset = -behind
    _chmod(laptop, 0o600)
    clock.offset, clock.real = 0, clock.real + 60 * 10**9
    _chmod(desktop, 0o640)
    # On the desktop (right clock): the laptop's state taken in.
    on_desktop = merged(desktop, _taken_as(laptop), desktop).perm
    # On the laptop (slow clock): the desktop's state taken in.
    clock.offset = -behind
    on_laptop = merged(laptop, _taken_as(desktop), laptop).perm
    clock.offset = 0
    return on_laptop, on_desktop


def _taken_as(node: Node) -> Node:
    other = _taken(node)
    other.mode = node.mode
    return other


def test_control_a_clock_an_hour_behind_keeps_her_later_chmod(clock: Clock) -> None:
    assert _slow_laptop_apart(clock, 3600 * 10**9) == (0o640, 0o640)


# --- 3, 4: which leaf of hers the load takes in place of his copy branch

class _Trust:
    def verify(self, doc: dict, author: str | None = None) -> str:
        if doc.get("sig") != "good":
            raise Forged("bad signature")
        return ALICE


def _her_leaf_among(monkeypatch, leaves: list[dict]) -> Node | None:
    """``her_leaves._her_leaf`` over these other leaves (each carrying the node and links it opens to)."""
    monkeypatch.setattr(her_leaves, "replica", SimpleNamespace(
        local_of=lambda store: store, in_conflict=lambda local, fid: True,
        other_leaves=lambda local, fid, **reading: list(leaves)))
    monkeypatch.setattr(her_leaves, "open_node_doc", lambda doc, key: (b"k" * 32, doc))
    monkeypatch.setattr(her_leaves, "node_from_doc", lambda doc, dek, attrs: (doc["node"], doc["links"]))
    gate = SimpleNamespace(trust=_Trust())
    key = SimpleNamespace(user_id=ALICE)
    found = her_leaves._her_leaf(object(), key, gate, _node(1))  # type: ignore[arg-type]
    return None if found is None else found[0]


def _leaf(rev: str, epoch: int, parent: str, sig: str = "good") -> dict:
    # A node document names its key epoch in clear (signed; ``node_from_doc`` refuses one that seals another).
    return {"_id": FID, "_rev": rev, "owner": ALICE, "epoch": epoch, "sig": sig, "node": _node(epoch),
            "links": [(parent, b"plan.txt")]}


def test_control_her_leaf_is_found_beside_a_few_badly_signed_leaves(monkeypatch) -> None:
    hers = _leaf("3-hers", 2, ROOT)
    leaves = [_leaf(f"{100 + i}-x{i}", 2, PROJ, sig="bad") for i in range(3)] + [hers]
    assert _her_leaf_among(monkeypatch, leaves) is hers["node"]


def test_her_leaf_is_found_under_sixteen_badly_signed_leaves(monkeypatch) -> None:
    hers = _leaf("3-hers", 2, ROOT)
    leaves = [_leaf(f"{100 + i}-x{i}", 2, PROJ, sig="bad") for i in range(her_leaves.HER_LEAVES)] + [hers]
    assert _her_leaf_among(monkeypatch, leaves) is hers["node"]


def test_her_leaf_chosen_is_the_one_beside_which_his_is_a_copy(monkeypatch) -> None:
    """bob's current branch is epoch 1 (the key before her move).  Her desktop's move out: epoch 2, at
    the top; her laptop's saves in proj apart: epoch 1, more of them.  Only beside the epoch-2 leaf is
    his a copy (``writers_copy``: his epoch below hers); the load takes the first by generation."""
    moved_out = _leaf("3-desktop", 2, ROOT)
    laptop = _leaf("7-laptop", 1, PROJ)
    chosen = _her_leaf_among(monkeypatch, [laptop, moved_out])
    assert chosen is not None and chosen.epoch > 1


# --- 5: rule 2's higher epoch and her later move

def _leaf_of(node: Node, rev: str, parent: str) -> Leaf:
    links = [(parent, b"blank")]
    node.links = links
    return Leaf({"_id": FID, "_rev": rev, "delete": False}, node, links, [rev, "1-a"])


def _rekeyed_in_place_and_moved(clock: Clock) -> tuple[Leaf, Leaf]:
    """The desktop's re-key of proj/blank in place (``unshare`` of proj: epoch 1, a new key, same
    folder), then, later, the laptop's move of proj/blank to archive (epoch 0, links stamped)."""
    desktop = Node(2, FID, ALICE, b"n" * 32, stat.S_IFREG | 0o644, 1000, 1000, when=10)
    desktop.epoch = 1
    laptop = Node(2, FID, ALICE, b"o" * 32, stat.S_IFREG | 0o644, 1000, 1000, when=20)
    note_change(laptop, "links")
    return _leaf_of(desktop, "2-d", PROJ), _leaf_of(laptop, "2-l", ARCHIVE)


def test_control_rule_2_keeps_the_new_key(clock: Clock) -> None:
    rekeyed, moved = _rekeyed_in_place_and_moved(clock)
    for mine, theirs in ((rekeyed, moved), (moved, rekeyed)):
        assert decide(None, mine, theirs, None)[0] is rekeyed  # type: ignore[arg-type]


def test_rule_2_keeps_her_later_move_beside_a_re_key_in_place(clock: Clock) -> None:
    rekeyed, moved = _rekeyed_in_place_and_moved(clock)
    for mine, theirs in ((rekeyed, moved), (moved, rekeyed)):
        keeper, named, loser = decide(None, mine, theirs, None)  # type: ignore[arg-type]
        named, _ = apart(SimpleNamespace(authorship=None), mine, theirs, keeper, named, loser)  # type: ignore[arg-type]
        assert named.links == [(ARCHIVE, b"blank")]


# --- 6: rule 2's higher epoch and a member's rename

def _unshared_and_renamed_by_bob(clock: Clock) -> tuple[Leaf, Leaf]:
    """team/sub, a folder (no head: rule 2), shared WRITE with bob and carol.  Her desktop unshares carol:
    team/sub re-keyed in place (epoch 1); apart, later, bob renames team/sub to team/sub2 (epoch 0, his
    state where he writes: KEPT)."""
    hers = Node(2, FID, ALICE, b"n" * 32, stat.S_IFDIR | 0o755, 1000, 1000, when=10)
    hers.epoch = 1
    his = Node(2, FID, ALICE, b"o" * 32, stat.S_IFDIR | 0o755, 1000, 1000, when=20)
    note_change(his, "links")
    mine = Leaf({"_id": FID, "_rev": "2-d", "delete": False, "by": ALICE}, hers, [(PROJ, b"sub")],
                ["2-d", "1-a"])
    theirs = Leaf({"_id": FID, "_rev": "2-b", "delete": False, "by": "bob"}, his, [(PROJ, b"sub2")],
                  ["2-b", "1-a"])
    hers.links, his.links = mine.links, theirs.links
    return mine, theirs


def test_rule_2_keeps_a_members_later_rename_beside_her_re_key_in_place(clock: Clock, monkeypatch) -> None:
    from fusevault.vault.services import conflict_rules
    monkeypatch.setattr(conflict_rules, "is_hers", lambda volume, leaf: leaf.doc.get("by") == ALICE)
    mine, theirs = _unshared_and_renamed_by_bob(clock)
    volume = SimpleNamespace(authorship=object())
    keeper, named, loser = decide(None, mine, theirs, None)  # type: ignore[arg-type]
    assert keeper is mine and loser is None  # her new key stands (right)
    named, _ = apart(volume, mine, theirs, keeper, named, loser)  # type: ignore[arg-type]
    assert named.links == [(PROJ, b"sub2")]  # his rename, made later, where he writes


# --- 8: rule 2's epoch is what a member's sealed attributes claim
