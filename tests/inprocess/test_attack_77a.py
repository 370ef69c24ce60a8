"""Attack round 77a, at the conflict settling's fixes of rounds 75b (50fdea5, 2645d0c, fb730fb:
``_current_verdict``, ``_beside_refused_current``, ``_held_over_refused``, ``_owner_here``) and 76c
(7044d04: ``replica._live_winner``/``_deletion_beside_live``, ``note_stored``, ``_hand``'s ``again``).

(1) high (her edit made apart lost, no conflict copy; with her other device's trash: the trash wins
    over her live edit).  A regression of 75b's fix.
    Attacker: the CouchDB server or any peer (no key, no signature): it stores revisions as it likes
    (``_bulk_docs``, ``new_edits: false``).
    Steps: notes.txt edited while apart on her laptop (L: new words, or moved to her trash) and on this
    desktop (S: new words), both over the same state.  The server takes S, stacks an unsigned state F
    of its own on it (history [F, S, ...], one generation longer than L, so F is current) and sends F
    with L in one batch.  Her desktop refuses F as it arrives (said): its tree keeps S, standing on F
    (vault/tree/arrivals.py ``keep``).  L is a live leaf beside F: a conflict, settled.
    Seen: ``_settle_one`` finds the current revision refused (``_current_verdict``) and hands it to
    ``_beside_refused_current``, which takes L (admitted, no replay) WHOLE over F (``_adopt(volume,
    current, kept, kept, ...)``): the state her tree holds, S, is never settled against L.  Her desktop's
    words are gone from her tree and from what she commits (no conflict copy; S's version is named by no
    state of the file any more), and with L her laptop's trash, the file goes to her trash with the
    laptop's older contents: a deletion winning over her live edit (rule 1 says the edit is kept).
    Nothing said of S; the only alarm is F's refusal.
    Expected (the control: the same batch without F, S current): settled by the rules: rule 4 (both
    words kept, one as a conflict copy) or rule 1 (the edit kept, the file live with her desktop's words).
    Cause: fusevault/vault/services/conflicts.py:286-292, 390-414 (``_beside_refused_current`` adopts
    the other leaf whole; its docstring: "``other`` ... is made current again ... over the refused
    one"), which assumes the refused current displaced the other leaf as a sibling; stacked on her own
    revision S, the refused current hides S, the state her tree holds and the one the leaf is concurrent
    with.
    Impact: the server chooses which of her two devices' concurrent edits survives, and drops the other
    unsaid, on every replica (her settling commits L's state signed by her, ``over`` her S); with her
    other device's trash it puts her edited file in the trash with its older contents.
    Suggested fix: with a tree standing on the refused current (``node.rev == current['_rev']``, hers),
    commit that held state over the refused one first (``_held_over_refused``, awaited: ``save_node``),
    then settle ``other`` against it by the rules (read ``current`` again: the loop's next turn); adopt
    ``other`` whole only where the tree holds no state of hers on the refused revision.
    Also (read, not run): a READ member who syncs with her server can stack F himself (his signed state,
    refused for his READ: ``keep``, no recommit), the same path, whenever her devices edited apart.
    Test: ``test_77a_1_her_desktops_edit_under_a_refused_current_is_settled_not_dropped[edit|trash]``
    (deterministic: an unsigned F is refused with no recommit, so nothing races the settling).
    Controls: ``test_77a_control_1_without_the_refused_current_both_edits_are_settled[edit|trash]``;
    ``test_77a_control_1_a_replay_of_hers_stacked_on_her_edit_is_settled_against_it`` (her own older
    state as F: the ledger refuses it and her tree commits S over it first, then the rules; held).

What held (read, and where said run):
- ``_owner_here``: a held node, else the ledger's ``owner_seen``, else both leaves agreeing; a winning
  sibling naming another owner or type is refused by ``_current_verdict`` (said) on her device and
  left alone on his (75b's tests).
- ``_current_verdict``: a replay of her own older state as the current revision is KEPT by the verdict
  (signed by her) and then met by ``replayed(mine, ...)`` in the rules' path; a writer's copy is met
  first by ``current_copy``.
- ``_beside_refused_current`` with a refused or replayed other leaf: closed, her held state committed
  over the refused current (``_held_over_refused``, one commit per refused revision the server makes:
  one for one, no flood).
- 76c (3), ``_deletion_beside_live``: a leaf that does not parse is never made current; a deletion with
  nothing live beside it stays current; the tombstone is kept as a closed leaf (its revisions known: a
  replay of it is no news).
- 76c (3) with a server's leaf: its unsigned live state of her trashed file (ranking below the trash)
  sent in one batch with her other device's purge is made current over the purge (CouchDB's rule):
  refused, the file shown nowhere (a trashed file is held by no tree here, so nothing is recommitted
  over it), gc finds nothing of hers to collect; the same end as that leaf sent after the purge
  (``over_a_deletion``, 49a (2)).  Run once (no test kept: it ends as the control does for her).
Not tried: a READ member through a real shared mount; folders and symlinks under (1); her own
settling's commit meeting a second refused state stacked on it in the next batch (one commit per
refused revision, by reading).
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from fusevault.crypto import aead
from fusevault.crypto.identity import public_box, seal_file_key
from fusevault.encoding import b64e
from fusevault.fs import arrivals
from fusevault.fs.arrivals import Arrivals
from fusevault.store import replica
from fusevault.vault.services.placing import NoKernel
from fusevault.vault.volume import Volume
from inprocess.conftest import ME, ROOT, Fields, make, read_all, rewrite
from inprocess.test_attack_51a import _mode
from inprocess.test_attack_76c import _laptop, _peer

ACTIONS = ["edit", "trash", "chmod"]  # chmod: the fix's abuse test (her own two devices' states merged)


def _forged_over(store, volume: Volume, fid: str) -> dict:
    """The server's state of her file, made from what it holds in clear (her public key, the file's id,
    epoch and head version id), mode 0777, sealed under a DEK of its own sealed to her public key,
    unsigned (as 75b's ``_unsigned_state``): refused by every device of hers."""
    hers = store.get(fid)
    now = time.time_ns()
    attrs = {"mode": stat.S_IFREG | 0o777, "uid": 2202, "gid": 2202, "rdev": 0, "size": 0, "atime": now,
             "mtime": now, "ctime": now, "btime": now, "links": [[volume.tree.root.fid, "notes.txt"]],
             "xattrs": {}, "target": None, "head": volume.find(fid).head, "manifest": None, "trashed": None,
             "previous": None, "epoch": hers["epoch"], "changed": {"mode": now}, "seq": ["server", 1]}
    dek, owner = os.urandom(32), hers["owner"]
    return {"_id": fid, "type": "node", "owner": owner, "epoch": hers["epoch"], "delete": False,
            "owner_dek": b64e(seal_file_key(public_box(store.get(owner)), owner, owner, fid, hers["epoch"],
                                            dek)),
            "enc": b64e(aead.seal(dek, json.dumps(attrs).encode(), aead.ad("node", fid)))}


async def _apart(fs, monkeypatch, tmp_path: Path, action: str) -> tuple[str, dict]:
    """notes.txt changed on both of her devices while apart, over one state: her laptop's ``action``
    (new words, or notes.txt moved to her trash), this desktop's new words (its store's current
    revision).  The laptop's branch, as the peer will send it (not stored here yet)."""
    ino = (await make(fs.ops, b"notes.txt", b"as it was")).st_ino
    fid = fs.volume.resolve(b"notes.txt").fid
    store = fs.store
    base, history = store.get(fid), replica.current_history(store, fid)
    laptop, ops = _laptop(fs, monkeypatch, tmp_path)
    if action == "edit":
        await rewrite(ops, laptop.resolve(b"notes.txt").ino, b"the laptop's words")
    elif action == "chmod":  # her laptop's metadata change only (its contents the state both came from)
        await ops.setattr(laptop.resolve(b"notes.txt").ino, _mode(0o600), Fields(mode=True), None, ME)
        await laptop.flush_pending()
        assert store.get(fid)["_rev"] != base["_rev"] and stat.S_IMODE(laptop.find(fid).mode) == 0o600, (
            "scene: the laptop's chmod not committed")
    else:
        await ops.unlink(ROOT, b"notes.txt", ME)
        await laptop.flush_pending()
        assert store.get(fid).get("delete"), "scene: the laptop's trash not committed"
    branch = {**store.get(fid), "_revisions": replica.revisions(replica.current_history(store, fid))}
    with store.transaction():  # this replica never got the laptop's change: the desktop's own goes on
        store.write_doc(fid, base["_rev"], history, store.next_seq(), base)
    await rewrite(fs.ops, ino, b"the desktop's words")
    assert branch["_rev"] not in replica.current_history(store, fid), "scene: the desktop's own edit"
    return fid, branch


def _shown(volume: Volume) -> list[bytes]:
    """The names notes.txt's words show under in her root (the file and its conflict copies)."""
    return sorted(name for name in volume.tree.root.children if name.startswith(b"notes"))


async def _settled(fs, docs: list[dict]) -> dict:
    """The batch through her mount's path (the peer's replicator stores it, ``Arrivals.arrived`` takes it
    in and settles what it brought), then what her tree shows: {name: words}."""
    agent = SimpleNamespace(session=SimpleNamespace(volume=fs.volume), missed=None, kernel=NoKernel(),
                            user_id=fs.volume.key.user_id)  # as sessions.Agent
    mount = Arrivals(fs.store, lambda: [agent])
    async with trio.open_nursery() as nursery:
        mount.nursery = nursery
        mount._conflicts.setdefault(fs.volume, arrivals._Conflicts()).looked = True  # unlocked before
        peer = _peer(fs, mount)
        assert all(peer._takes(doc) for doc in docs), "the replicator refuses the batch"
        peer._store(docs, [], [], 1)
        await wait_all_tasks_blocked()
        with trio.fail_after(30):  # the settling's end (a task of the mount's nursery), not a race
            while any(state.running for state in mount._conflicts.values()):
                await trio.sleep(0.01)
        await wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    return {name: await read_all(fs.ops, fs.volume.resolve(name).ino) for name in _shown(fs.volume)}


def _expected(seen: dict, action: str, fid: str, fs) -> None:
    words = sorted(seen.values())
    if action == "edit":
        # Rule 4: both edits kept, the later one (the desktop's) as notes.txt, the other as a copy.
        assert words == [b"the desktop's words", b"the laptop's words"], (
            f"her desktop's edit made apart is lost: {seen}")
    elif action == "chmod":
        # Rule 3 and the metadata merge of her two devices' states: the desktop's words, the laptop's mode.
        mode = stat.S_IMODE(fs.volume.resolve(b"notes.txt").mode)
        assert seen == {b"notes.txt": b"the desktop's words"} and mode == 0o600, (
            f"her two devices' changes not both kept: {seen}, mode {mode:o}")
    else:
        # Rule 1: edit against delete, the edit is kept: notes.txt live, with her desktop's words.
        assert seen.get(b"notes.txt") == b"the desktop's words", (
            f"her laptop's trash won over her desktop's live edit: {seen} (stored delete: "
            f"{fs.store.get(fid).get('delete')})")
    assert not replica.other_leaves(fs.store, fid), "the conflict left open"


@pytest.mark.parametrize("action", ACTIONS)
async def test_77a_1_her_desktops_edit_under_a_refused_current_is_settled_not_dropped(
        fs, monkeypatch, tmp_path, action):
    fid, branch = await _apart(fs, monkeypatch, tmp_path, action)
    store = fs.store
    held = replica.current_history(store, fid)  # the desktop's edit S on top
    generation = int(held[0].split("-")[0])
    forged_rev = f"{generation + 1}-" + "f" * 32  # one longer than the laptop's branch: current
    assert int(branch["_rev"].split("-")[0]) <= generation
    forged = {**_forged_over(store, fs.volume, fid), "_rev": forged_rev,
              "_revisions": replica.revisions([forged_rev, *held])}
    seen = await _settled(fs, [forged, branch])
    said = [a["text"] for a in fs.volume.tree.trust.alarms.as_list() if a["subject"] == fid]
    assert any("refused" in text for text in said), f"the server's state not said refused: {said}"
    assert forged_rev in replica.current_history(store, fid)[1:], "scene: her settling committed over it"
    _expected(seen, action, fid, fs)
    node = fs.volume.resolve(b"notes.txt")  # nothing of the refused state merged into hers
    assert stat.S_IMODE(node.mode) != 0o777 and node.uid != 2202, f"the server's state merged: {node.mode:o}"


@pytest.mark.parametrize("action", ACTIONS)
async def test_77a_control_1_without_the_refused_current_both_edits_are_settled(
        fs, monkeypatch, tmp_path, action):
    """The same laptop branch beside her desktop's edit, with no refused state stacked on it: settled by
    the rules (rule 4: both words; rule 1: the edit kept, live)."""
    fid, branch = await _apart(fs, monkeypatch, tmp_path, action)
    seen = await _settled(fs, [branch])
    _expected(seen, action, fid, fs)


async def test_77a_control_1_a_replay_of_hers_stacked_on_her_edit_is_settled_against_it(
        fs, monkeypatch, tmp_path):
    """Her own older state (signed by her) stacked on her desktop's edit S instead of an unsigned one,
    beside her laptop's edit: the ledger refuses it as a replay and her tree commits S over it
    (``out.recommit``); S is then settled against her laptop's edit by the rules: both words kept."""
    ino = (await make(fs.ops, b"notes.txt", b"as it was")).st_ino
    fid = fs.volume.resolve(b"notes.txt").fid
    store = fs.store
    base, history = store.get(fid), replica.current_history(store, fid)
    laptop, ops = _laptop(fs, monkeypatch, tmp_path)
    await rewrite(ops, laptop.resolve(b"notes.txt").ino, b"the laptop's words")
    branch = {**store.get(fid), "_revisions": replica.revisions(replica.current_history(store, fid))}
    with store.transaction():
        store.write_doc(fid, base["_rev"], history, store.next_seq(), base)
    await rewrite(fs.ops, ino, b"the desktop's words")
    held = replica.current_history(store, fid)
    rev = f"{int(held[0].split('-')[0]) + 1}-" + "f" * 32
    replay = {**{k: v for k, v in base.items() if k != "_rev"}, "_rev": rev,
              "_revisions": replica.revisions([rev, *held])}
    _expected(await _settled(fs, [replay, branch]), "edit", fid, fs)


async def test_77a_control_1_a_refused_current_stacked_on_her_laptops_leaf_keeps_her_desktops_edit(
        fs, monkeypatch, tmp_path):
    """The server's state stacked on her laptop's leaf instead (history [F, L, ...]), her desktop's edit S
    the other leaf: her tree stands on F holding S.  Changed with round 78a's fix: this control asserted
    that S was committed over F at once, so over L, unfetched and unsaid (78a (1)).  Now L is asked for
    first (``keep`` notes what lies under F down to the branch held) and the settling waits for it; the
    server answering with nothing, that is said (``withheld``), once, and only then is S committed over
    F and S's own leaf, beside that commit of the same state, closed: her desktop's words kept, no replay
    said of her own leaf, the conflict closed.  (L sent: tests/inprocess/test_attack_78a.py.)"""
    from inprocess.test_attack_78a import _settled_fetching  # it imports this module

    fid, branch = await _apart(fs, monkeypatch, tmp_path, "edit")
    store = fs.store
    laptops = replica.history_from(branch)
    forged_rev = f"{int(laptops[0].split('-')[0]) + 5}-" + "f" * 32  # current over her desktop's S
    forged = {**_forged_over(store, fs.volume, fid), "_rev": forged_rev,
              "_revisions": replica.revisions([forged_rev, *laptops])}
    seen = await _settled_fetching(fs, [forged], {})  # the fetch of L answered with nothing
    assert forged_rev in replica.current_history(store, fid)[1:], "scene: her settling committed over it"
    said = [a for a in fs.volume.tree.trust.alarms.as_list() if a["subject"] == fid]
    assert seen == {b"notes.txt": b"the desktop's words"}, seen
    texts = [a["text"] for a in said]
    assert sorted(a["kind"] for a in said if not a["text"].startswith("refused a change")) == ["withheld"], (
        f"not the refusal and the withheld edit alone: {texts}")
    assert all(a["count"] == 1 for a in said if a["kind"] == "withheld"), f"said more than once: {said}"
    assert not replica.other_leaves(store, fid), "the conflict left open"
