"""Attack round 78a, at the conflict settling's and re-keying's newest fixes: 77a (1) (72486c1:
conflicts.py ``_hers_over_refused``), 77b (1) (66d70a2: ``rekeying._held_record`` reads ``Guests.below``
first), 76a (2) (a988e26: ``Ledger.committed``'s ``alone``, ``Inodes._put``) and 75a (2)'s device-held
grants (left_kept, now device_file.py).

(1) high (her laptop's edit made apart lost on every replica, unsaid; with her desktop's trash, her
    live edit lost to a deletion).  A control of 77a's fix codifies the loss:
    ``test_77a_control_1_a_refused_current_stacked_on_her_laptops_leaf_keeps_her_desktops_edit``.
    Attacker: the CouchDB server or any peer (no key, no signature; ``new_edits: false``).
    Steps: notes.txt edited while apart on her laptop (L: new words) and on this desktop (S: new words,
    or moved to her trash), both over one state.  The server takes L, stacks an unsigned state F of its
    own on it (history [F, L, base], longer than S, so F current) and sends F alone (as CouchDB's
    replication sends only leaves: L's body never comes).  Her desktop refuses F as it arrives (said)
    and stands on it holding S (vault/tree/arrivals.py ``keep``); S, her own leaf, is the other leaf of
    a conflict.
    Seen: nothing asks for L: ``keep``'s 39a (5) fetch (``_unseen_under``) lists the revisions under a
    refused one only when the tree's revision lies in its history, and S is not in F's.  The settling's
    ``_hers_over_refused`` (77a's fix) commits S over F (history [S', F, L, base]) and closes S's leaf as
    the same state: her laptop's words are in no state, no copy, nothing said but F's refusal; her
    laptop, taking S' (over its L), fast-forwards (by reading): its words gone on every replica.
    Before 77a's fix ``_beside_refused_current`` adopted S whole over F: the same end.
    Expected (the control, L sent as the leaf it is, no F:
    ``test_78a_1_control_her_laptops_edit_sent_as_a_leaf_is_settled_against_her_desktops[edit|trash]``):
    rule 4, both words kept, one as a conflict copy (rule 1 with her trash: the edit kept, live);
    failing that, at least L fetched (39a (5)) or its loss said (``withheld``).
    Cause: fusevault/vault/tree/arrivals.py:163-165 (``keep``: ``_unseen_under`` needs ``node.rev`` in
    the refused document's history, so a refused revision stacked on a CONCURRENT branch notes nothing
    beneath) and fusevault/vault/services/conflicts.py:291-298/396-412 (``_hers_over_refused`` commits
    her state over the refused current, so over the other branch's revisions under it, without asking
    for them; a refused current's parent is taken for hers when it is a concurrent edit).
    Impact: the server chooses which of her two devices' concurrent edits survives, and erases the other
    unsaid, on every replica, by stacking one unsigned revision on it.
    Suggested fix: for a refused revision whose history does not pass the tree's revision, note in
    ``tree.beneath`` the revisions under it down to the common ancestor with the held branch (its
    parent at least) and have the settling wait for them (leave the conflict open, ``left``), then
    settle S against the fetched L by the rules; what the peer does not send: ``withheld`` said.
    With S her desktop's trash the trash is committed over F (its history passing L): her laptop's live
    edit is lost to a deletion on every replica (rule 1 keeps the edit).
    Test: ``test_78a_1_her_laptops_edit_under_a_refused_current_beside_her_desktops_change_is_kept``
    ``[edit|trash]``
    (deterministic: the batch stored, every task run to rest, the revisions the mount asks for served
    as the replicator's ``_take_beneath`` does, every task run to rest again).

(2) high (her laptop's edit lost on every replica, unsaid: 39a (5)'s fetch undone by the settling).
    Attacker: the CouchDB server or any peer, as in (1).
    Steps: both devices hold S; her laptop edits notes.txt (L, over S) while this desktop is away.  The
    server stacks its unsigned F on L (history [F, L, S, ...]) and sends it with one more leaf beside,
    anything that makes a conflict (here her own S served again as a branch [S*, ...]: a replay).
    Her desktop refuses F (said), stands on it holding S and notes L in ``tree.beneath`` for the sync to
    fetch (``keep``, 39a (5)); the batch's conflict is settled at once (``Arrivals._hand``), while the
    replicator's ``_take_beneath`` waits on the server's ``bulk_get`` (which the server answers when it
    likes: the order is the attacker's, the test makes it certain by serving the fetch after the
    settling ran to rest).
    Seen: the settling finds F refused with her state standing on it (``_hers_over_refused``) and
    commits S over F (history [S', F, L, S]); the fetched L then finds the node past F
    (``absorb_beneath``: "taken past since", skipped, nothing said).  notes.txt shows "as it was"; the
    laptop, taking S' (a descendant of its L), loses them too (by reading).  Only F's refusal said.
    Expected (the control, F alone: no conflict, nothing settles, L fetched and taken under F:
    ``test_78a_2_control_her_laptops_edit_under_a_refused_state_is_fetched_and_taken``): L taken.
    Cause: fusevault/vault/services/conflicts.py:292/396-412 (``_hers_over_refused``, and
    ``_held_over_refused`` at 447 on the path before 77a's fix) commits over a refused revision whose
    ``tree.beneath`` entry is still waiting; fusevault/vault/services/absorbing.py:160-161 drops the
    fetched revisions without a word once the node moved past the refused one.
    Impact: with one stale leaf beside, any unsigned revision stacked on her other device's edit erases
    that edit on every replica (39a (5)'s fix bypassed), no user action needed.
    Suggested fix: the settling leaves a conflict open (``left``) while ``tree.beneath`` holds its id (the
    fetch settles it again once taken in: ``take_beneath`` -> ``follow_up``); and ``absorb_beneath``
    says ``withheld`` (or settles) instead of skipping silently when her own commit went over the top.
    Test: ``test_78a_2_her_laptops_edit_under_a_refused_state_is_kept_when_the_batch_brings_a_conflict``.

(3) high (her laptop's rename or trash undone on every replica at her next save, a WRITE member's
    change lost: 39a (5) undone by the unlock; her laptop's new words kept only through her version
    documents).  Attacker: the CouchDB server or any peer, as in (1).
    Steps: both devices hold S; her laptop renames notes.txt to plan.txt, or moves it to her trash (L,
    over S).  While this desktop's seat is locked (the shared mount's sync goes on; or any store her
    tree is not loaded on), the server stores its unsigned F stacked on L (history [F, L, S, ...], no
    conflict, L's body never sent).  She unlocks.
    Seen: the load refuses F (said) and rebuilds notes.txt from her own material as this device last
    saw it (``rebuilt_in_place`` -> ``_as_seen``: its name where it was, live), standing on F; nothing
    notes L beneath (``tree.beneath`` stays empty: the sync's next pull asks for nothing).  Her root
    shows notes.txt again; her next save of it commits that over F and L (run with a write in the edit
    case: [S', F, L, ...]): the rename, or the trash, undone on every replica.  Said only: F refused,
    "rebuilt from what its owner signed".
    (New words in L survive only because the rebuild takes her newest version document when the
    server sends it; a withheld version, a chmod, a move: lost the same way, by reading.)
    Expected (the control, F arriving while her tree is unlocked:
    ``test_78a_3_control_the_same_refused_state_arriving_while_unlocked_keeps_her_laptops_change``):
    L noted beneath (``keep``), fetched and taken under F (39a (5)): plan.txt, or the file in her trash.
    Cause: fusevault/vault/tree/loading.py:576-628 (``rebuilt_in_place``/``_as_seen`` stand on the
    refused revision and never note the revisions under it the device did not take, as
    fusevault/vault/tree/arrivals.py:155-166 ``keep`` does on arrival).  Related to, not the same as,
    56b (3)'s limit (a member's revision over her version, its signature failing, at unlock).
    Impact: a server stacks one unsigned revision on her other device's change while she is locked and
    her unlock undoes it, on every replica at her next save; a trash undone, a rename undone.
    Suggested fix: the load notes ``tree.beneath`` for a refused current (or any refused leaf it stands
    on) whose history passes revisions past the one this device last took (the ledger's seq/rev seen;
    at least its parent when unseen), so the first pull fetches them and ``absorb_beneath`` takes the
    newest admissible one under it; ``withheld`` said when not sent.
    The same with a WRITE member's change (39a (5)'s own scene, through the unlock): bob's signed chmod
    of her team/plan.txt under F stored while she is locked: her unlock rebuilds her own state (0644),
    asks for nothing; the same F arriving at her loaded seat has bob's chmod fetched and taken (0600).
    Tests: ``test_78a_3_her_laptops_change_under_a_refused_state_stored_while_locked_is_kept[rename|trash]``,
    ``test_78a_3_a_write_members_change_under_a_refused_state_stored_while_she_is_locked_is_kept``;
    controls ``..._arriving_while_unlocked_keeps_her_laptops_change``,
    ``test_78a_3_control_a_write_members_change_under_a_refused_state_arriving_is_kept``.

Fixed (all three, the strict xfails now passing tests): ``keep`` notes the revisions under a refused
one stacked on a branch never held, down to the one the held branch shares (``_unseen_under``), and the
load notes those under a refused current it rebuilds over (``note_beneath``); the settling leaves a
conflict open while its id waits in ``tree.beneath`` (``_settle_one``), the fetch hands it again
(fs/arrivals.py ``take_beneath``), and an edit fetched beside the held branch is settled against hers
by the rules (``tree.came_beneath``), not taken over it; a save over revisions still awaited is said
(``withheld``, inodes.py ``_over_beneath``).  Abuse:
``test_78a_abuse_a_server_that_never_answers_the_fetch_keeps_her_from_saving_nothing``.

Both (1) and (2) go through ``_hers_over_refused`` (checked with a spy on it and on
``_beside_refused_current``: one call, True, in each case; not kept).

What held (run): the 77a tests and controls (edit, trash, chmod; her own replay as F); the controls
kept here: L sent as the leaf it is beside her desktop's edit or trash (rule 4, rule 1), and F alone
stacked on L with no conflict (39a (5): L fetched and taken under F).  Run once, not kept: F stacked
on S (the state both devices held) beside her laptop's L over S, sent in one batch: S committed over F,
then L settled against it: the laptop's words shown, nothing lost (the 77a fix's path held there).
Read, not run (held as far as read): ``_hers_over_refused`` asks ``held_signers`` for her as the signer
of the state stood on (a writer's state, or the refused one taken before it was refused, is not
recommitted as hers there; ``_held_over_refused`` on the older path does not ask, but recommits only
what her tree already shows); one commit per revision the server stacks (no flood beyond one for one);
``note_branches`` notes only her signed leaves (an unsigned state naming a huge count of another
device cannot be made "seen" and then superseded by 76a (2)'s ``alone``); ``Ledger.supersedes`` asks
the store only while a seen state is not covered; 77b's ``_held_record`` (the kept-aside record of a
later key first; ``sealed_for.below`` replaces it by the held record of any epoch not lower, so her
share again taken in on the node (a higher count at the same epoch) is what a later member's state
keeps aside); ``Guests._judged`` (a kept grant released only by her signed key at the kept epoch or
later, her record sealing to that grant, or a newer Group body).
Not tried: (1)/(2) at an unlock beside a leaf of her desktop's (the load's path: (3)'s cause first), and
with a WRITE member's edit as L (the same code, by reading: his edit lost); 77b with her share again made on
another device while the re-key is owed here; left_kept's release through a group that also reaches
the recipient; the device file (the state folder is the device's own).
"""

from __future__ import annotations

import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
import trio
from attack_scenes import bobs_node_doc
from mount.test_trust_attack_39a import three  # noqa: F401  (fixture)
from trio.testing import wait_all_tasks_blocked

from fusevault.errors import CorruptData
from fusevault.fs import arrivals
from fusevault.fs.arrivals import Arrivals
from fusevault.store import replica
from fusevault.vault.services import conflicts
from fusevault.vault.services.absorbing import absorb_arrivals
from fusevault.vault.services.conflicts import note_stored
from fusevault.vault.services.placing import NoKernel
from fusevault.vault.tree.arrivals import Absorbed
from fusevault.vault.volume import Volume
from inprocess.conftest import ME, ROOT, make, read_all, rewrite
from inprocess.test_attack_53c import _in_scene, _plan_shared
from inprocess.test_attack_76c import _laptop, _peer
from inprocess.test_attack_77a import _apart, _forged_over, _shown


async def _settled_fetching(fs, docs: list[dict], server: dict[tuple[str, str], dict]) -> dict:
    """The batch stored as the replicator stores it, the settling it hands run to rest, then the
    revisions under refused ones the mount asks for served from ``server`` (``Replicator._take_beneath``,
    which the replicator runs right after the batch) until it asks for nothing more; what her tree
    shows then: {name: words}."""
    agent = SimpleNamespace(session=SimpleNamespace(volume=fs.volume), missed=None, kernel=NoKernel(),
                            user_id=fs.volume.key.user_id)
    mount = Arrivals(fs.store, lambda: [agent])

    async def rest() -> None:
        await wait_all_tasks_blocked()
        with trio.fail_after(30):  # the settling's end (a task of the mount's nursery), not a race
            while any(state.running for state in mount._conflicts.values()):
                await trio.sleep(0.01)
        await wait_all_tasks_blocked()

    async with trio.open_nursery() as nursery:
        mount.nursery = nursery
        mount._conflicts.setdefault(fs.volume, arrivals._Conflicts()).looked = True
        peer = _peer(fs, mount)
        assert all(peer._takes(doc) for doc in docs), "the replicator refuses the batch"
        peer._store(docs, [], [], 1)
        await rest()
        for _ in range(5):
            if not (wanted := mount.beneath_wanted()):
                break
            mount.take_beneath([server[key] for key in wanted if key in server])
            await rest()
        nursery.cancel_scope.cancel()
    return {name: await read_all(fs.ops, fs.volume.resolve(name).ino) for name in _shown(fs.volume)}


async def _desktop_trashes(fs, monkeypatch, tmp_path) -> tuple[str, dict]:
    """notes.txt changed on both of her devices while apart, over one state: her laptop's new words (L),
    this desktop's trash (S, its store's current revision).  The laptop's branch, not stored here."""
    await make(fs.ops, b"notes.txt", b"as it was")
    fid = fs.volume.resolve(b"notes.txt").fid
    store = fs.store
    base, history = store.get(fid), replica.current_history(store, fid)
    laptop, ops = _laptop(fs, monkeypatch, tmp_path)
    await rewrite(ops, laptop.resolve(b"notes.txt").ino, b"the laptop's words")
    branch = {**store.get(fid), "_revisions": replica.revisions(replica.current_history(store, fid))}
    with store.transaction():  # this replica never got the laptop's change: the desktop's own goes on
        store.write_doc(fid, base["_rev"], history, store.next_seq(), base)
    await fs.ops.unlink(ROOT, b"notes.txt", ME)
    await fs.volume.flush_pending()
    assert store.get(fid).get("delete"), "scene: the desktop's trash not committed"
    return fid, branch


@pytest.mark.parametrize("desktop", ["edit", "trash"])
async def test_78a_1_her_laptops_edit_under_a_refused_current_beside_her_desktops_change_is_kept(
        fs, monkeypatch, tmp_path, desktop):
    if desktop == "edit":
        fid, branch = await _apart(fs, monkeypatch, tmp_path, "edit")
    else:
        fid, branch = await _desktop_trashes(fs, monkeypatch, tmp_path)
    store = fs.store
    laptops = replica.history_from(branch)
    held = replica.current_history(store, fid)
    forged_rev = f"{int(laptops[0].split('-')[0]) + 1}-" + "f" * 32  # on L: current over her S
    assert int(forged_rev.split("-")[0]) > int(held[0].split("-")[0]), "scene: F not current"
    forged = {**_forged_over(store, fs.volume, fid), "_rev": forged_rev,
              "_revisions": replica.revisions([forged_rev, *laptops])}
    server = {(fid, branch["_rev"]): {k: v for k, v in branch.items() if k != "_revisions"}}
    seen = await _settled_fetching(fs, [forged], server)
    said = [a["text"] for a in fs.volume.tree.trust.alarms.as_list() if a["subject"] == fid]
    assert any("refused" in text for text in said), f"the server's state not said refused: {said}"
    words = sorted(seen.values())
    withheld = [text for text in said if "refused" not in text]
    assert b"the laptop's words" in words or withheld, (
        f"her laptop's edit under the server's refused state is lost, unsaid: shown {seen}, said {said}, "
        f"stored history {replica.current_history(store, fid)[:4]}, delete {store.get(fid).get('delete')}")
    if desktop == "edit":  # rule 4: both words kept, one as a conflict copy
        assert words == [b"the desktop's words", b"the laptop's words"], f"not both edits kept: {seen}"
    else:  # rule 1: the edit kept, live
        assert seen.get(b"notes.txt") == b"the laptop's words", f"her trash won over her live edit: {seen}"


@pytest.mark.parametrize("desktop", ["edit", "trash"])
async def test_78a_1_control_her_laptops_edit_sent_as_a_leaf_is_settled_against_her_desktops(
        fs, monkeypatch, tmp_path, desktop):
    """The same two changes, her laptop's sent as the leaf it is (no state stacked on it): rule 4, both
    words kept; rule 1, her edit kept live (the ends the test above expects)."""
    if desktop == "edit":
        fid, branch = await _apart(fs, monkeypatch, tmp_path, "edit")
    else:
        fid, branch = await _desktop_trashes(fs, monkeypatch, tmp_path)
    seen = await _settled_fetching(fs, [branch], {})
    if desktop == "edit":
        assert sorted(seen.values()) == [b"the desktop's words", b"the laptop's words"], seen
    else:
        assert seen.get(b"notes.txt") == b"the laptop's words", seen


async def _laptop_edits_after(fs, monkeypatch, tmp_path, action: str = "edit") -> tuple[str, dict, dict]:
    """notes.txt as both her devices hold it (S: "as it was"), then changed on her laptop (L, over S:
    new words, a rename to plan.txt, or moved to her trash), which this desktop has not had yet.  The
    laptop's branch (not stored here) and S's document."""
    await make(fs.ops, b"notes.txt", b"as it was")
    fid = fs.volume.resolve(b"notes.txt").fid
    store = fs.store
    base, history = store.get(fid), replica.current_history(store, fid)
    laptop, ops = _laptop(fs, monkeypatch, tmp_path)
    if action == "edit":
        await rewrite(ops, laptop.resolve(b"notes.txt").ino, b"the laptop's words")
    elif action == "rename":
        await ops.rename(ROOT, b"notes.txt", ROOT, b"plan.txt", 0, ME)
        await laptop.flush_pending()
    else:
        await ops.unlink(ROOT, b"notes.txt", ME)
        await laptop.flush_pending()
    assert store.get(fid)["_rev"] != base["_rev"], "scene: the laptop's change not committed"
    branch = {**store.get(fid), "_revisions": replica.revisions(replica.current_history(store, fid))}
    with store.transaction():  # this replica never got the laptop's change
        store.write_doc(fid, base["_rev"], history, store.next_seq(), base)
    assert fs.volume.find(fid).rev == base["_rev"], "scene: the desktop stands on S"
    return fid, branch, base


async def _under_a_refused_state(fs, monkeypatch, tmp_path, second: bool) -> None:
    """F (the server's, unsigned) stacked on her laptop's edit L made over S, the state this desktop
    stands on; with ``second``, one more leaf beside: her own S served again as a branch (a replay the
    settling closes), so the batch is a conflict.  The revisions under F the mount asks for served
    after the settling ran to rest (as the server answers the replicator's fetch last)."""
    fid, branch, base = await _laptop_edits_after(fs, monkeypatch, tmp_path)
    store = fs.store
    laptops = replica.history_from(branch)  # [L, S, ...]
    forged_rev = f"{int(laptops[0].split('-')[0]) + 1}-" + "f" * 32
    forged = {**_forged_over(store, fs.volume, fid), "_rev": forged_rev,
              "_revisions": replica.revisions([forged_rev, *laptops])}
    docs = [forged]
    if second:
        sibling_rev = f"{int(laptops[1].split('-')[0]) + 1}-" + "a" * 32
        docs.append({**{k: v for k, v in base.items() if k != "_rev"}, "_rev": sibling_rev,
                     "_revisions": replica.revisions([sibling_rev, *laptops[1:]])})
    server = {(fid, branch["_rev"]): {k: v for k, v in branch.items() if k != "_revisions"}}
    seen = await _settled_fetching(fs, docs, server)
    said = [a["text"] for a in fs.volume.tree.trust.alarms.as_list() if a["subject"] == fid]
    withheld = [text for text in said if "refused" not in text and "replay" not in text]
    assert seen.get(b"notes.txt") == b"the laptop's words" or withheld, (
        f"her laptop's edit under the server's refused state is lost, unsaid: shown {seen}, said {said}, "
        f"stored history {replica.current_history(store, fid)[:5]}")


async def test_78a_2_her_laptops_edit_under_a_refused_state_is_kept_when_the_batch_brings_a_conflict(
        fs, monkeypatch, tmp_path):
    await _under_a_refused_state(fs, monkeypatch, tmp_path, second=True)


async def test_78a_2_control_her_laptops_edit_under_a_refused_state_is_fetched_and_taken(
        fs, monkeypatch, tmp_path):
    """39a (5) as it holds: F alone (no conflict, nothing settles), L fetched and taken under it."""
    await _under_a_refused_state(fs, monkeypatch, tmp_path, second=False)


async def _words(volume: Volume, fid: str) -> bytes:
    fh = await volume.open(volume.find(fid).ino)
    try:
        return await volume.read(fh, 0, 1 << 16)
    finally:
        await volume.release(fh)


@pytest.mark.parametrize("action", ["rename", "trash"])
async def test_78a_3_her_laptops_change_under_a_refused_state_stored_while_locked_is_kept(
        fs, monkeypatch, tmp_path, action):
    fid, branch, _ = await _laptop_edits_after(fs, monkeypatch, tmp_path, action)
    store, alice = fs.store, fs.volume
    laptops = replica.history_from(branch)  # [L, S, ...]
    forged_rev = f"{int(laptops[0].split('-')[0]) + 1}-" + "f" * 32
    forged = {**_forged_over(store, alice, fid), "_rev": forged_rev,
              "_revisions": replica.revisions([forged_rev, *laptops])}
    server = {(fid, branch["_rev"]): {k: v for k, v in branch.items() if k != "_revisions"}}
    await alice.save_all()  # she locks (her ledger saved)
    locked = Arrivals(store, lambda: [])  # the shared mount's sync goes on, no tree of hers unlocked
    async with trio.open_nursery() as nursery:
        locked.nursery = nursery
        _peer(fs, locked)._store([forged], [], [], 1)
        nursery.cancel_scope.cancel()
    assert replica.current_history(store, fid)[:2] == [forged_rev, branch["_rev"]], "scene: F over L stored"
    again = Volume.load(alice.layout, store, alice.key, alice.tree.get(1).fid)  # her unlock
    try:
        note_stored(again)
        agent = SimpleNamespace(session=SimpleNamespace(volume=again), missed=None, kernel=NoKernel(),
                                user_id=again.key.user_id)
        mount = Arrivals(store, lambda: [agent])
        async with trio.open_nursery() as nursery:  # the sync's next pull: what the tree wants, served
            mount.nursery = nursery
            mount.loaded(agent, Absorbed())
            await wait_all_tasks_blocked()
            for _ in range(5):
                if not (wanted := mount.beneath_wanted()):
                    break
                mount.take_beneath([server[key] for key in wanted if key in server])
                await wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        await again.flush_pending()
        root = sorted(again.tree.root.children)
        said = [a["text"] for a in again.tree.trust.alarms.as_list() if a["subject"] == fid]
        withheld = [text for text in said if "refused" not in text]
        stored = store.get(fid)
        expected = [b"plan.txt"] if action == "rename" else []
        assert root == expected or withheld, (
            f"her laptop's {action} under the server's refused state is undone: her root shows {root}, said "
            f"{said}; stored {replica.current_history(store, fid)[:3]} delete {stored.get('delete')}")
    finally:
        await again.close()


@pytest.mark.parametrize("action", ["rename", "trash"])
async def test_78a_3_control_the_same_refused_state_arriving_while_unlocked_keeps_her_laptops_change(
        fs, monkeypatch, tmp_path, action):
    """F stacked on her laptop's rename or trash arriving while her tree is unlocked: refused, L noted
    beneath (``keep``), fetched and taken under it (39a (5)): her laptop's change kept."""
    fid, branch, _ = await _laptop_edits_after(fs, monkeypatch, tmp_path, action)
    laptops = replica.history_from(branch)
    forged_rev = f"{int(laptops[0].split('-')[0]) + 1}-" + "f" * 32
    forged = {**_forged_over(fs.store, fs.volume, fid), "_rev": forged_rev,
              "_revisions": replica.revisions([forged_rev, *laptops])}
    server = {(fid, branch["_rev"]): {k: v for k, v in branch.items() if k != "_revisions"}}
    await _settled_fetching(fs, [forged], server)
    expected = [b"plan.txt"] if action == "rename" else []
    assert sorted(fs.volume.tree.root.children) == expected


def _a_members_chmod_under_a_refused_state(three: Path, locked: bool) -> tuple[int, list[str]]:  # noqa: F811
    """alice's team/plan.txt, team shared WRITE with bob (tests/inprocess/test_attack_53c.py's scene);
    bob's signed chmod (0600) of it (L) with the server's unsigned F stacked on it, L's body not sent.
    ``locked``: F stored while her seat is locked, then her unlock (a fresh load); else F handed to her
    loaded seat as it arrives.  Then the revisions under refused ones her tree asks for, served (L):
    (the mode her tree shows, what it said of the file)."""
    async def scene(shared):
        alice = shared.volumes["alice"]
        fid, _ = await _plan_shared(shared)
        store = shared.store
        held = replica.current_history(store, fid)
        gen = int(held[0].split("-")[0])
        bobs_rev, forged_rev = f"{gen + 1}-" + "b" * 32, f"{gen + 2}-" + "f" * 32
        bobs = {**bobs_node_doc(shared, fid, {"mode": stat.S_IFREG | 0o600, "seq": ["bobs-device", 1]}),
                "_rev": bobs_rev}
        forged = {**_forged_over(store, alice, fid), "_rev": forged_rev,
                  "_revisions": replica.revisions([forged_rev, bobs_rev, *held])}
        await alice.save_all()
        replica.store_revisions(store, [forged])
        if locked:
            tree = Volume.load(alice.layout, store, alice.key, alice.tree.get(1).fid)  # her unlock
            note_stored(tree)
        else:
            tree = alice
            absorb_arrivals(alice, [forged])  # as the mount hands a batch
        try:
            agent = SimpleNamespace(session=SimpleNamespace(volume=tree), missed=None, kernel=NoKernel(),
                                    user_id=tree.key.user_id)
            mount = Arrivals(store, lambda: [agent])
            async with trio.open_nursery() as nursery:  # the sync's next pull: what the tree wants, served
                mount.nursery = nursery
                mount.loaded(agent, Absorbed())
                await wait_all_tasks_blocked()
                if mount.beneath_wanted():
                    mount.take_beneath([bobs])
                    await wait_all_tasks_blocked()
                nursery.cancel_scope.cancel()
            said = [a["text"] for a in tree.tree.trust.alarms.as_list() if a["subject"] == fid]
            return stat.S_IMODE(tree.find(fid).mode), said
        finally:
            if locked:
                await tree.close()

    return _in_scene(three, scene)


def test_78a_3_a_write_members_change_under_a_refused_state_stored_while_she_is_locked_is_kept(
        three: Path) -> None:  # noqa: F811
    mode, said = _a_members_chmod_under_a_refused_state(three, locked=True)
    withheld = [text for text in said if "refused" not in text]
    assert mode == 0o600 or withheld, f"bob's chmod under the refused state lost, unsaid: {mode:o}, {said}"


def test_78a_3_control_a_write_members_change_under_a_refused_state_arriving_is_kept(
        three: Path) -> None:  # noqa: F811
    """The same F arriving at her loaded seat: L noted beneath, fetched, taken (39a (5))."""
    mode, said = _a_members_chmod_under_a_refused_state(three, locked=False)
    assert mode == 0o600, f"bob's chmod not taken: {mode:o}, {said}"


async def test_78a_abuse_a_server_that_never_answers_the_fetch_keeps_her_from_saving_nothing(
        fs, monkeypatch, tmp_path):
    """(1)'s scene, and the server never answers the fetch of her laptop's L (the replicator's
    ``bulk_get`` hangs, or fails at every pull): the settling leaves the conflict open meanwhile, and
    her own save of the file still goes (over F: L not here to keep), said once (``withheld``) and
    asked for no more (no loop of asks); the next arrival settles what was left, nothing said again."""
    fid, branch = await _apart(fs, monkeypatch, tmp_path, "edit")
    store, volume = fs.store, fs.volume
    laptops = replica.history_from(branch)
    forged_rev = f"{int(laptops[0].split('-')[0]) + 1}-" + "f" * 32
    forged = {**_forged_over(store, volume, fid), "_rev": forged_rev,
              "_revisions": replica.revisions([forged_rev, *laptops])}
    agent = SimpleNamespace(session=SimpleNamespace(volume=volume), missed=None, kernel=NoKernel(),
                            user_id=volume.key.user_id)
    mount = Arrivals(store, lambda: [agent])

    async def rest() -> None:
        await wait_all_tasks_blocked()
        with trio.fail_after(30):  # the settling's end (a task of the mount's nursery), not a race
            while any(state.running for state in mount._conflicts.values()):
                await trio.sleep(0.01)
        await wait_all_tasks_blocked()

    async with trio.open_nursery() as nursery:
        mount.nursery = nursery
        mount._conflicts.setdefault(volume, arrivals._Conflicts()).looked = True
        _peer(fs, mount)._store([forged], [], [], 1)
        await rest()
        assert mount.beneath_wanted() == [(fid, branch["_rev"])], "her laptop's edit not asked for"
        assert store.get(fid)["_rev"] == forged_rev and replica.other_leaves(store, fid), (
            "the settling went over the refused state before what lies under it came")
        # The fetch never answered: she saves the file all the same.
        await rewrite(fs.ops, volume.resolve(b"notes.txt").ino, b"her words after")
        assert forged_rev in replica.current_history(store, fid)[1:], "her save did not go"
        assert mount.beneath_wanted() == [], "asked for again after her save went over it"
        mount._hand(agent, volume, [])  # the next arrival (any batch) hands what was left open
        await rest()
        mount._hand(agent, volume, [])
        await rest()
        nursery.cancel_scope.cancel()
    said = [a for a in volume.tree.trust.alarms.as_list() if a["subject"] == fid and a["kind"] == "withheld"]
    assert [a["count"] for a in said] == [1], f"the lost edit not said, or said again: {said}"
    assert await read_all(fs.ops, volume.resolve(b"notes.txt").ino) == b"her words after"
    assert not replica.other_leaves(store, fid), "the conflict left open for good"


async def test_78a_abuse_an_edit_fetched_beside_hers_that_cannot_be_settled_is_dropped_once_said(
        fs, monkeypatch, tmp_path):
    """(1)'s scene, the edit fetched from under F failing to settle (any error a peer's body reaches in
    the rules): dropped and said (``withheld``), never tried again at every arrival, which kept the
    conflict open for good; the next arrival settles what is left (her desktop's edit kept)."""
    fid, branch = await _apart(fs, monkeypatch, tmp_path, "edit")
    store, volume = fs.store, fs.volume
    laptops = replica.history_from(branch)
    forged_rev = f"{int(laptops[0].split('-')[0]) + 1}-" + "f" * 32
    forged = {**_forged_over(store, volume, fid), "_rev": forged_rev,
              "_revisions": replica.revisions([forged_rev, *laptops])}
    server = {(fid, branch["_rev"]): {k: v for k, v in branch.items() if k != "_revisions"}}
    opened = conflicts.open_leaf  # the settling (conflicts.py) looks it up there

    def failing(doc, history, held):
        if doc["_rev"] == branch["_rev"]:
            raise CorruptData("a body the rules cannot read")
        return opened(doc, history, held)

    monkeypatch.setattr(conflicts, "open_leaf", failing)
    await _settled_fetching(fs, [forged], server)
    assert fid not in volume.tree.came_beneath, "kept to fail again at every arrival"
    said = [a for a in volume.tree.trust.alarms.as_list() if a["subject"] == fid and a["kind"] == "withheld"]
    assert [a["count"] for a in said] == [1], f"dropped unsaid, or said again: {said}"
    await conflicts.settle(volume, store, [fid])  # the next arrival's settling
    seen = {name: await read_all(fs.ops, volume.resolve(name).ino) for name in _shown(volume)}
    assert seen == {b"notes.txt": b"the desktop's words"}, seen
    assert not replica.other_leaves(store, fid), "the conflict left open for good"
