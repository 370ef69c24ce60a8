"""Attack round 76c (in-process part), at round 74c's fixes (b207a20 ``Links._changing``; de358c1, 2390e43
the conflicts a batch brought, the store's looked at once off the loop, ``LocalStore.reader``; c630c80
the relay's blocks taken by one version).

(1) medium (her own edit made apart dropped from her tree, no conflict copy, a false rollback alarm):
    a regression of 74c (2)'s fix at the sync's start (a personal mount), new at an unlock.
    Attacker: none needed (her own save right after an unlock or a mount); a CouchDB server or peer
    widens the window at will: the look reads every conflicted id of the store and its document on a
    worker thread, 0.6 to 1 s for 50,000 planted ones (74c (2)'s measure), linear.
    Steps: notes.txt edited on her laptop and on this desktop while apart; the desktop locked (her
    `fusevault lock`, the TTL's expiry; or unmounted: the mount's start takes the same path through
    the sync's start, ``arrived([], [])``) when the laptop's branch arrives; CouchDB's rule makes the
    laptop's current (it saved twice), the desktop's own edit a leaf.  She unlocks: ``Arrivals.loaded``
    hands ``_hand(..., [])``, ``_settle_handed`` reads ``to_settle`` on a worker thread and only then
    runs ``note_branches`` (fs/arrivals.py:157-164).  Meanwhile the tree serves: she saves notes.txt
    (the laptop's words shown), a commit of this device over the laptop's revision.
    Seen: ``note_branches`` then finds the desktop's own leaf older than its newest state (its save
    just made): not noted (ledger.py ``branch``: ``older``), so ``_settle_one`` takes it for a replay
    ("rollback: an older state of /notes.txt ... written back as a concurrent edit; it is not taken
    in") and closes it: no conflict copy of the desktop's words, and a rollback alarm blaming the
    server.  Expected (the control, and note_branches' own rule "as they are met (before any await: no
    commit of this device's comes between)"): the desktop's words kept as a conflict copy, unsaid.
    Before the fix the sync's start noted every conflict of the store synchronously (no window at a
    mount); an unlock noted them only at the next batch (a window as long, and unsized).
    Cause: fusevault/fs/arrivals.py:157-164 (the notes made after the ``read_call`` await, in slices
    with the loop served between), fusevault/vault/model/ledger.py:942-951 (``branch`` drops a leaf
    older than seen, and this device's commit meanwhile made it so).
    Impact: an edit of hers made apart on this device vanishes from her tree (its version stays in the
    store, listed by the file's history until gc thins it) with a false rollback alarm.
    Suggested fix: note the store's conflicts on her nodes before the tree serves (the load reads
    ``replica.conflicted`` in ``Ledger.check_loaded`` already, on the loading thread: note their leaves
    there, or have the unlock hold the node's commits of the ids found until they are noted); or judge
    this device's own leaf as a replay only when a state of this device was made over it (its ``over``
    / history holds the leaf), not whenever a newer seq of this device exists.
    Test: ``test_76c_1_her_save_during_the_unlocks_look_keeps_her_desktops_losing_edit`` (deterministic:
    the look's worker read is held until her save ended).
    Control: ``test_control_76c_1_without_a_save_during_the_look_her_losing_edit_is_copied``.

(2) low-medium (an honest conflict left open, her laptop's edit not shown, until some later arrival):
    a regression of 74c (2)'s fix.
    Attacker: none needed (an honest peer's batches, the server's order: a node's branch in one batch,
    its version in the next); a server can time it (and then send nothing more).
    Steps: batch 1 brings her laptop's branch of notes.txt, its version not yet: the settling (the
    first of that id) leaves it for a later arrival (conflicts.py ``_settle_one``: "a version has not
    arrived yet").  Batch 2 brings the version while that settling still runs (any await of it after
    the id: the ``left_open`` read here, held; another conflict of batch 1 compared and copied, up to
    64 MiB read, in real use).
    Seen: batch 2 brought no conflict (the version document is in none), and ``_hand`` adds
    ``state.left``, which does not hold the id yet (``_settle_conflicts`` notes it only at its end,
    fs/arrivals.py:464-465); the running settling's loop finds ``wanted`` empty and ends: nothing hands
    the id again.  The conflict stays open (the laptop's edit shown nowhere) until some later arrival
    of any document, or her next unlock.  Before the fix batch 2 handed every conflict of the store.
    Same with records gc punched (``PunchedAsks``' ``arrived([], [])`` after the records came while
    the first settling runs: read, not run).
    Cause: fusevault/fs/arrivals.py:139-143 (``_hand`` adds what was left, not what the running
    settling is settling), :167-169 (the loop ends on ``wanted`` alone), :464-465.
    Impact: her other device's edit is not settled (no copy, not in her tree) for as long as nothing
    else arrives; with one quiet peer, until her next unlock.
    Suggested fix: count an arrival during a settling as a reason to settle again what it is settling
    (e.g. ``state.again = True`` in ``_hand`` while running, and the loop adding ``state.left`` once
    more after a settling that saw an arrival), or hand the ids a batch's documents complete (its
    version's ``fid`` in conflict) as the pre-fix scan did.
    Test: ``test_76c_2_her_conflict_whose_version_comes_while_its_first_settling_runs_is_settled``.
    Control: ``test_control_76c_2_her_conflict_whose_version_comes_after_the_settling_is_settled``.

(3) medium (her laptop's edit gone from this device for good, the file shown deleted here while every
    other replica shows it), older than 74c's fix (the same before: ``_settle_one`` returns when the
    document has no current revision; 74c's ``settles`` now says so too), found reading ``settles``.
    Attacker: none needed (honest use: a purge on one device, an edit made apart on another); a server
    may pick the order.  On this device the loss depends only on the two revision ids (equal
    generations: one chance in two).
    Steps: notes.txt trashed on this desktop (T); her laptop, apart, edits it (L, over the state before
    the trash); her other device purges T from the trash (gc: a tombstone over T).  The peer holds two
    leaves, L and the tombstone, and sends them in one batch (or while this desktop is locked).
    Seen: L ranks below T (its revision id): kept as a live leaf; the tombstone descends from T, the
    current revision, so ``replica._store_one`` makes the deletion current ("a descendant of what this
    replica has: it moves on") with the live leaf L beside it, where CouchDB's rule makes the live leaf
    the winner.  The batch hands the id (``conflicted_of``: a live leaf), but ``_settle_one`` returns at
    once (``current is None``) and ``left_open``/``to_settle`` drop it (``settles(None)``: False): the
    file is gone from her tree, the laptop's edit never settled, shown nowhere on this device, at
    every later unlock too (the look skips it).  Rule 1 ("edit against delete: the edit is kept") and
    the control (L ranking first: the tombstone closes T's branch, L current) show the file.
    Cause: fusevault/store/replica.py:250-253 (a deletion extending the current branch made current
    whatever live leaf is held), fusevault/vault/services/conflicts.py:256-258 and :231-232
    (``_settle_one``/``settles``: no current revision, nothing to settle).
    Impact: an honest edit of hers lost on one device (the one she may back up, or work on), while
    the server and her other devices hold it; nothing said.
    Suggested fix: in ``_store_one``, a deletion moving the current branch on while a live leaf is
    held makes the highest-ranked live leaf current and keeps the tombstone as a closed leaf (as
    ``over_a_deletion`` does for the other order); or settle a conflict whose current revision is a
    deletion by rule 1 (the live leaf taken).
    Test: ``test_76c_3_her_laptops_edit_beside_her_purged_trash_is_kept[True|False]`` (one batch; two,
    locked between and the unlock's look).
    Control: ``test_control_76c_3_her_laptops_edit_ranking_first_beside_her_purged_trash_is_kept``.

Fixed (docs/SECURITY.md, "Round 76c (1)-(3)"): (1) ``conflicts.note_stored`` as the tree loads; (2)
``_Conflicts.again``; (3) ``replica._deletion_beside_live`` (tests/unit/test_attack_76c.py too).

What held (read, or run, round 76c):
- 74c (1), ``Links._changing``/``_records``: every change of the records (create, push, revoke with
  ``_close_box``, collect with each ``_take``'s save) holds the lock through ``_changing``; a read
  outside it is authoritative only with the lock free at its start and the counter unchanged at its
  end (a change begun and ended inside the read moves it by two); the collector and the control
  requests share one ``Links`` per session (``Session.requests.links``); the offline ``Requests``
  holds the vault's lock.  Not reported again (as before the fix): a record made or revoked on her
  other device reaches this one by sync, where ``has_drops`` is not raised by its arrival, and a
  record revoked there is said missing here (this device's kept copy).
- 74c (3), (4), the relay's blocks: block ids are the relay's (``secrets.token_urlsafe(18)``) and no
  append-key route names them (``latest`` gives ``public`` alone, the list and a version need the
  delete key), so a drop link's holder cannot name, take or delete an honest dropper's blocks;
  ``_take`` against ``_rewrite``: each block is taken once, so the retries end (a taken block conflicts
  one round at most); ``delete_version`` deletes its own blocks and unmarked ones only; the CLI's
  drop and ``_publish`` never post a version twice nor name a block of another version (each push
  uploads its blocks), so the 409 of a block taken meets no honest client.  ``_answered`` counts the
  version as JSON-escaped, at least the route's UTF-8.
- 74c (2), 2390e43: of the callers of ``in_conflict``/``conflicted`` only ``to_settle``/``left_open``
  run inside ``reading`` (a snapshot); the load's (``check_loaded``, ``_her_leaves``) and the loop's
  read the main connection as before.  A batch's conflicts are noted on the loop before any await
  (``arrived``); another owner's conflicts are not handed again by unrelated batches (74c's tests).
  ``left_open`` reads after the settling's commits (nothing grouped is left uncommitted: ``settle``
  commits ``commit_pending`` first).
Not tried: a settling's commits on the unlock's re-keys (``rotation.resume``, run before ``loaded``:
a re-key of the conflicted file there would make her own leaf a replay as in (1), without her save);
the shared mount's seats settling one after another under the one ``_settling`` lock; Couch-store
mounts; the relay under a real CouchDB (the services tests' pouchdb was not run this round).
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import trio
from conftest import PASSPHRASE
from trio.testing import wait_all_tasks_blocked

from fusevault.agent.sessions import Session
from fusevault.fs import arrivals
from fusevault.fs.arrivals import Arrivals
from fusevault.fs.operations import Operations
from fusevault.host_access import Direct
from fusevault.store import replica
from fusevault.sync.replicator import PeerStatus, Replicator
from fusevault.tasks import Tasks
from fusevault.vault.model import alarms
from fusevault.vault.model import ledger as ledger_mod
from fusevault.vault.services.absorbing import absorb
from fusevault.vault.services.placing import NoKernel
from fusevault.vault.volume import Volume
from inprocess.conftest import ME, ROOT, agent_for, make, read_all, rewrite

# --- (1) her device's own losing edit, left in the store while she was locked, judged a replay


def _laptop(fs, monkeypatch, tmp_path: Path) -> tuple[Volume, Operations]:
    """Her laptop: the same tree loaded apart (the same store: synced), a ledger of its own (its own
    device id)."""
    real = ledger_mod.ledger_path
    monkeypatch.setattr(ledger_mod, "ledger_path", lambda root, user: tmp_path / "laptop-ledger")
    try:
        laptop = Volume.load(fs.volume.layout, fs.store, fs.volume.key, fs.volume.tree.root.fid)
    finally:
        monkeypatch.setattr(ledger_mod, "ledger_path", real)
    ops = Operations(None)
    ops.gate.open(Session(laptop, NoKernel(), Tasks(), Direct()))
    return laptop, ops


async def _apart(fs, monkeypatch, tmp_path: Path, heads: list | None = None) -> tuple[str, dict]:
    """notes.txt edited on both of her devices while apart: the laptop twice (its branch ranks first),
    this desktop once.  The laptop's branch, as the peer will send it (not stored yet)."""
    ino = (await make(fs.ops, b"notes.txt", b"as it was")).st_ino
    fid = fs.volume.resolve(b"notes.txt").fid
    store = fs.store
    base, history = store.get(fid), replica.current_history(store, fid)
    laptop, ops = _laptop(fs, monkeypatch, tmp_path)
    theirs = laptop.resolve(b"notes.txt").ino
    await rewrite(ops, theirs, b"the laptop's words")
    await rewrite(ops, theirs, b"the laptop's later words")
    branch = {**store.get(fid), "_revisions": replica.revisions(replica.current_history(store, fid))}
    if heads is not None:
        heads.append(laptop.resolve(b"notes.txt").head)  # the laptop's version of its later words
    with store.transaction():  # this replica never got the laptop's edits: the desktop's own goes on
        store.write_doc(fid, base["_rev"], history, store.next_seq(), base)
    await rewrite(fs.ops, ino, b"the desktop's words")
    # The laptop's branch ranks first (it saved twice).
    assert len(replica.current_history(store, fid)) < branch["_revisions"]["start"]
    return fid, branch


def _copies(volume: Volume) -> list[bytes]:
    return sorted(name for name in volume.tree.root.children if b"(conflict" in name)


def _rollbacks(user_id: str) -> list[dict]:
    return [e for e in alarms.for_user(user_id).as_list() if e["kind"] == "rollback"]


async def _unlocked_with_the_branch(fs, monkeypatch, tmp_path: Path, save_in_the_look: bool,
                                    via: str = "unlock") -> dict:
    """She locks her desktop; the laptop's branch arrives meanwhile (a conflict, the laptop's current);
    she unlocks: the mount's first look at the store's conflicts (``_settle_handed``) runs on a worker
    thread, held here as a long one is (a server's planted conflicts).  ``save_in_the_look``: she saves
    notes.txt meanwhile (the laptop's words shown), as any program may right after an unlock.  ``via``:
    the look asked by the unlock (``Arrivals.loaded``), or by the sync's start with her tree unlocked
    already (a personal mount's start: sync/service.py ``run``, ``arrived([], [])``)."""
    monkeypatch.setattr(alarms, "_BY_USER", {})
    fid, branch = await _apart(fs, monkeypatch, tmp_path)
    user_id = fs.volume.key.user_id
    read, go = threading.Event(), threading.Event()
    real_to_settle = arrivals.to_settle

    def held_to_settle(store, user):
        found = real_to_settle(store, user)
        read.set()
        go.wait(30)
        return found

    monkeypatch.setattr(arrivals, "to_settle", held_to_settle)
    agent = agent_for(fs)
    mount = Arrivals(fs.store, lambda: [agent])
    if via == "unlock":
        agent.loaded = functools.partial(mount.loaded, agent)  # as fs/personal.py
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(agent.run, fs.volume, 3600)
            assert await agent.lock("a test") is True
            arrival = replica.store_revisions(fs.store, [branch])  # the pull, while she is locked
            assert arrival.conflicts == [fid]
            async with trio.open_nursery() as running:  # the mount's
                mount.nursery = running
                await agent.unlock(PASSPHRASE.encode())
                if via == "sync_start":
                    mount.arrived([], [])
                assert await trio.to_thread.run_sync(read.wait, 30), "the store's conflicts not looked at"
                volume = agent.session.volume
                ino = volume.resolve(b"notes.txt").ino
                shown = await read_all(fs.ops, ino)
                if save_in_the_look:
                    await rewrite(fs.ops, ino, b"her save after the unlock")
                go.set()
            volume = agent.session.volume
            names = _copies(volume)
            copies = [await read_all(fs.ops, volume.resolve(name).ino) for name in names]
            seen = {"shown": shown, "copies": copies, "rollbacks": _rollbacks(user_id),
                    "leaves": replica.other_leaves(fs.store, fid),
                    "notes": await read_all(fs.ops, volume.resolve(b"notes.txt").ino)}
            nursery.cancel_scope.cancel()
    finally:
        go.set()
    return seen


@pytest.mark.parametrize("via", ["unlock", "sync_start"])
async def test_76c_1_her_save_during_the_unlocks_look_keeps_her_desktops_losing_edit(
        fs, monkeypatch, tmp_path, via):
    seen = await _unlocked_with_the_branch(fs, monkeypatch, tmp_path, save_in_the_look=True, via=via)
    assert seen["shown"] == b"the laptop's later words"  # the laptop's branch current, hers a leaf
    assert seen["notes"] == b"her save after the unlock"
    assert not seen["leaves"], "the conflict left open"
    assert b"the desktop's words" in seen["copies"], (
        f"her desktop's edit made apart is lost (no conflict copy: {seen['copies']}), said as a "
        f"rollback: {[e.get('message', e) for e in seen['rollbacks']]}")
    assert not seen["rollbacks"]


@pytest.mark.parametrize("via", ["unlock", "sync_start"])
async def test_control_76c_1_without_a_save_during_the_look_her_losing_edit_is_copied(
        fs, monkeypatch, tmp_path, via):
    seen = await _unlocked_with_the_branch(fs, monkeypatch, tmp_path, save_in_the_look=False, via=via)
    assert seen["shown"] == b"the laptop's later words"
    assert not seen["leaves"]
    # Rule 4: the later edit (the desktop's) keeps the name, the other is copied beside it.
    assert seen["notes"] == b"the desktop's words"
    assert seen["copies"] == [b"the laptop's later words"]
    assert not seen["rollbacks"]


# --- (2) the version of her conflict arriving while the conflict's first settling runs


@pytest.mark.parametrize("asked", [False, True])
async def test_76c_2_her_conflict_whose_version_comes_while_its_first_settling_runs_is_settled(
        fs, monkeypatch, tmp_path, asked):
    """Batch 1 brings her laptop's branch of notes.txt, its version not yet (the next batch: the server's
    changes in the order it took them); the settling leaves it for a later arrival.  Batch 2 brings the
    version while that settling still runs (here: held in its last read, ``left_open``, on its worker
    thread; any other conflict of batch 1 being copied, up to 64 MiB read, keeps it running as long).
    Expected: settled once the version is here (before 74c (2)'s fix, batch 2 handed every conflict of
    the store again).  Seen: batch 2 brought no conflict, and the id was not yet in ``left`` (the
    settling running notes it only at its end), so nothing hands it again: open until some later
    arrival (any document of any peer) or her next unlock.  ``asked``: what completes it comes as the
    records gc punched do (sync/punched_asks.py: stored, then ``arrived([], [])``)."""
    monkeypatch.setattr(alarms, "_BY_USER", {})
    heads: list = []
    fid, branch = await _apart(fs, monkeypatch, tmp_path, heads)
    store = fs.store
    (vid,) = heads
    version = {**store.get(vid), "_revisions": replica.revisions(replica.current_history(store, vid))}
    with store.transaction() as db:  # not come yet: the next batch's
        db.execute("DELETE FROM docs WHERE id = ?", (vid,))
    read, go = threading.Event(), threading.Event()
    real_left_open = arrivals.left_open
    first = [True]

    def held_left_open(st, user, ids):
        found = real_left_open(st, user, ids)
        if first[0]:
            first[0] = False
            read.set()
            go.wait(30)
        return found

    monkeypatch.setattr(arrivals, "left_open", held_left_open)
    agent = SimpleNamespace(session=SimpleNamespace(volume=fs.volume), missed=None, kernel=NoKernel(),
                            user_id=fs.volume.key.user_id)  # as sessions.Agent
    mount = Arrivals(store, lambda: [agent])
    try:
        async with trio.open_nursery() as nursery:
            mount.nursery = nursery
            mount._conflicts.setdefault(fs.volume, arrivals._Conflicts()).looked = True  # unlocked before
            first_batch = replica.store_revisions(store, [branch])
            assert first_batch.conflicts == [fid]
            mount.arrived(first_batch.current, replica.conflicted_of(store, [fid]))
            assert await trio.to_thread.run_sync(read.wait, 30), "the conflict not settled"
            assert replica.in_conflict(store, fid), "settled without its version"
            second_batch = replica.store_revisions(store, [version])  # the version, meanwhile
            assert [doc["_id"] for doc in second_batch.current] == [vid]
            if asked:
                mount.arrived([], [])
            else:
                mount.arrived(second_batch.current, replica.conflicted_of(store, [vid]))
            go.set()
            await wait_all_tasks_blocked()
            with trio.fail_after(30):
                while any(state.running for state in mount._conflicts.values()):
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    finally:
        go.set()
    left = replica.other_leaves(store, fid)
    assert not left, (
        f"her conflict stays open with its version here ({len(left)} leaf left; no copy of her laptop's "
        f"edit: {_copies(fs.volume)}); handed again only by some later arrival")
    assert _copies(fs.volume)


async def test_control_76c_2_her_conflict_whose_version_comes_after_the_settling_is_settled(
        fs, monkeypatch, tmp_path):
    """The version's batch after the first settling ended: ``left`` hands the id again, settled."""
    heads: list = []
    fid, branch = await _apart(fs, monkeypatch, tmp_path, heads)
    store = fs.store
    (vid,) = heads
    version = {**store.get(vid), "_revisions": replica.revisions(replica.current_history(store, vid))}
    with store.transaction() as db:
        db.execute("DELETE FROM docs WHERE id = ?", (vid,))
    agent = SimpleNamespace(session=SimpleNamespace(volume=fs.volume), missed=None, kernel=NoKernel(),
                            user_id=fs.volume.key.user_id)
    mount = Arrivals(store, lambda: [agent])

    async def quiet() -> None:
        await wait_all_tasks_blocked()
        with trio.fail_after(30):
            while any(state.running for state in mount._conflicts.values()):
                await trio.sleep(0.01)

    async with trio.open_nursery() as nursery:
        mount.nursery = nursery
        mount._conflicts.setdefault(fs.volume, arrivals._Conflicts()).looked = True
        first_batch = replica.store_revisions(store, [branch])
        mount.arrived(first_batch.current, replica.conflicted_of(store, [fid]))
        await quiet()
        assert replica.in_conflict(store, fid)
        second_batch = replica.store_revisions(store, [version])
        mount.arrived(second_batch.current, replica.conflicted_of(store, [vid]))
        await quiet()
        nursery.cancel_scope.cancel()
    assert not replica.other_leaves(store, fid)
    assert _copies(fs.volume)


# --- (3) her laptop's edit beside a trashed state that the purge's tombstone then extends


async def _edit_beside_a_purge(fs, monkeypatch, tmp_path: Path) -> tuple[str, list[dict], Replicator]:
    """notes.txt trashed here (T); her laptop, which never saw that, edits it (L, over the state before);
    the purge of T made on her other device (a tombstone over T).  The peer's batch: L and the
    tombstone (the two leaves it holds), L ranking below T (equal generations: by revision id)."""
    ino = (await make(fs.ops, b"notes.txt", b"as it was")).st_ino
    fid = fs.volume.resolve(b"notes.txt").fid
    store = fs.store
    base, history = store.get(fid), replica.current_history(store, fid)
    laptop, ops = _laptop(fs, monkeypatch, tmp_path)
    await fs.ops.unlink(ROOT, b"notes.txt", ME)
    await fs.ops.forget([(ino, 1)])
    await fs.volume.flush_pending()
    trashed, trashed_history = store.get(fid), replica.current_history(store, fid)
    assert trashed.get("delete"), "not in the trash"
    with store.transaction():  # the laptop's store: the state before the trash
        store.write_doc(fid, base["_rev"], history, store.next_seq(), base)
    await rewrite(ops, laptop.resolve(b"notes.txt").ino, b"the laptop's words")
    lowest = f"{len(history) + 1}-" + "0" * 32  # the laptop's revision id, ranking below the trash's
    edited = {**store.get(fid), "_rev": lowest, "_revisions": replica.revisions([lowest, *history])}
    with store.transaction():  # this device's store: the trash
        store.write_doc(fid, trashed["_rev"], trashed_history, store.next_seq(), trashed)
    gone = f"{len(trashed_history) + 1}-" + "9" * 32
    purged = {"_id": fid, "_rev": gone, "_deleted": True,
              "_revisions": replica.revisions([gone, *trashed_history])}
    return fid, [edited, purged], store


def _peer(fs, mount: Arrivals) -> Replicator:
    """A peer's replicator as the mount runs it, handing its batches to ``mount``."""
    return Replicator(fs.store, fs.volume.layout, "device", "server", None, mount.arrived,
                      PeerStatus("server", ""))


@pytest.mark.parametrize("same_batch", [True, False])
async def test_76c_3_her_laptops_edit_beside_her_purged_trash_is_kept(fs, monkeypatch, tmp_path, same_batch):
    fid, (edited, purged), store = await _edit_beside_a_purge(fs, monkeypatch, tmp_path)
    agent = SimpleNamespace(session=SimpleNamespace(volume=fs.volume), missed=None, kernel=NoKernel(),
                            user_id=fs.volume.key.user_id)  # as sessions.Agent
    mount = Arrivals(store, lambda: [agent])
    async with trio.open_nursery() as nursery:
        mount.nursery = nursery
        mount._conflicts.setdefault(fs.volume, arrivals._Conflicts()).looked = True  # unlocked before
        peer = _peer(fs, mount)
        assert peer._takes(edited) and peer._takes(purged), "the replicator refuses the batch"
        if same_batch:
            peer._store([edited, purged], [], [], 1)
        else:  # her desktop locked between the two (nobody settles): the same once she unlocks
            agent.session, agent.missed = None, []
            peer._store([edited], [], [], 1)
            peer._store([purged], [], [], 2)
            # Her unlock's tree shows the store as it is (here: the tree taking what came meanwhile,
            # as sessions.py ``unlock`` takes what came during its load), then looks at its conflicts.
            agent.session = SimpleNamespace(volume=fs.volume)
            came, agent.missed = agent.missed, None
            mount._conflicts.clear()
            mount.loaded(agent, absorb(fs.volume, came, own=False))
        await wait_all_tasks_blocked()
        with trio.fail_after(30):
            while any(state.running for state in mount._conflicts.values()):
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    current = store.get(fid)
    leaves = [leaf["_rev"] for leaf in replica.other_leaves(store, fid)]
    assert current is not None and not leaves, (
        f"the store holds the purge's deletion current ({current and current['_rev']}) beside her laptop's "
        f"live edit {leaves} (CouchDB's winner): never settled")
    node = fs.volume.resolve(b"notes.txt")
    assert await read_all(fs.ops, node.ino) == b"the laptop's words"


async def test_control_76c_3_her_laptops_edit_ranking_first_beside_her_purged_trash_is_kept(
        fs, monkeypatch, tmp_path):
    """The same batch with the laptop's edit ranking above the trash: the tombstone closes the trash's
    branch, the edit is current, shown."""
    fid, (edited, purged), store = await _edit_beside_a_purge(fs, monkeypatch, tmp_path)
    history = replica.history_from(edited)
    highest = history[0].split("-")[0] + "-" + "f" * 32
    edited = {**edited, "_rev": highest, "_revisions": replica.revisions([highest, *history[1:]])}
    agent = SimpleNamespace(session=SimpleNamespace(volume=fs.volume), missed=None, kernel=NoKernel(),
                            user_id=fs.volume.key.user_id)
    mount = Arrivals(store, lambda: [agent])
    async with trio.open_nursery() as nursery:
        mount.nursery = nursery
        mount._conflicts.setdefault(fs.volume, arrivals._Conflicts()).looked = True
        _peer(fs, mount)._store([edited, purged], [], [], 1)
        await wait_all_tasks_blocked()
        with trio.fail_after(30):
            while any(state.running for state in mount._conflicts.values()):
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert store.get(fid)["_rev"] == highest and not replica.other_leaves(store, fid)
    assert await read_all(fs.ops, fs.volume.resolve(b"notes.txt").ino) == b"the laptop's words"
