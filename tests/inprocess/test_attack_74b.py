"""Attack round 74b (at 7690b84: round 73d's fixes of the naming rule: ``names._marks``, ``relink``
with sets and ``Tree.unlink_entries``, ``_link_beside``/``place_taken``, ``Authorship.settle(beside=)``,
``Guests.writes_at``, ``phantoms.placed_as_a_guest`` in ``absorb_node``, the beside notes
(vault/tree/beside.py, ``give_back``), ``tree.held_signers`` / ``stand_on`` / ``signed_state``).

In-process: the ``shared`` fixture (alice's desktop seat and bob's seat of one shared mount), her
laptop as a second Volume over the raw store (tests/inprocess/test_attack_70a.py ``_laptop``: its
commits reach the desktop only when handed), documents planted or handed in batches as a server or
peer sends them (``absorb_arrivals``), her unlock as ``Volume.load``.

(1) Her name in a phantom of her folder is not given back when bob's clashing name there is refused
    (low-medium: her file renamed, or a hard link of hers dropped, for good by her next save, on
    every device; 73d (4) again through two gaps of its fix).  Attacker: bob, any user sharing a
    file with her who replicates the id of her new folder (a server may hold that folder back from
    her desktop).  Steps: her laptop makes Secret/plan.txt and (a) links it into Secret2 as plan.txt,
    or (b) links it into Secret as copy.txt; bob's own x.txt named also ``plan.txt`` in (a) both
    folders (ctime late), (b) Secret, and shared with her: her folders are phantoms on her desktop;
    her file, then her folders, reach the desktop.  Seen: (a) her file loses both clashes and is
    shown ``plan (also ID).txt`` in both; Secret made real refuses bob's name, but only the folder
    clashed last gives her name back: Secret keeps ``plan (also ID).txt``; (b) ``relink`` shows no
    clash in a folder the node holds another name in (73d (5)), so plan.txt is dropped there and no
    note is made: Secret made real lists only copy.txt.  Her next save commits what is shown: her
    unlock and every device show the made name (a), lose her name plan.txt (b).  Expected: her
    names, as her unlock shows them before that save.  Control: bob names ``x.txt`` there.
    Cause: vault/tree/beside.py:29-35 (``note`` drops the node's earlier note: "one note per node"),
    vault/tree/arrivals.py:441-450 (``relink``: a clash in a folder in ``shown_in`` is skipped, with
    no note), read by ``give_back`` (arrivals.py:493-511) only.  Fix: a note per name lost (the
    node and folder and name), also for a name skipped because the node shows in the folder already
    (then ``give_back`` links the name, removes nothing); bounded by the names a node holds.
    Test: ``test_74b_1_her_names_in_her_phantom_folders_come_back_when_bobs_are_refused``.
(2) Her own name in her folder judged by a replayed writer's state (medium-high: her file taken out of
    her folder on the desktop, and her desktop's recommit of it, asked by the very replay, signs that
    for good: her hard link gone, or, her file moved there, her file committed deleted (to her trash)
    on every device; 73d (7) again: its fix covers ``keep``, not the ledger's refusal of a replay).
    Attacker: a CouchDB server or peer (or bob, who can put a document of his back), with bob a WRITE
    member of her file plan.txt (a file share).
    Steps: bob edits plan.txt twice (his states S1, S2, her desktop takes both); her laptop links
    plan.txt into her new folder Secret (held back from the desktop,
    a phantom there by bob's x.txt naming it); the desktop takes her laptop's state; then one batch:
    S1 again (its body at a new revision, a replay) and Secret's document.  Seen: the ledger refuses
    S1 as older (said, "offered by a peer or the server") and sets the node's revision to the replay's
    (ledger.py:816-819 ``held.rev = doc["_rev"]``, not ``stand_on``), no signer noted; Secret made real,
    ``_signer_held`` (phantoms.py:122-138) finds no note and reads the stored document at the node's
    revision, the replay, signed by bob, who holds no WRITE on Secret: her Secret/plan.txt is taken
    out, said as a forged-write by bob; the recommit the replay asked commits plan.txt without it (her
    unlock: Secret empty).  Moved (bob WRITE on docs too, her laptop moves docs/plan.txt into Secret):
    plan.txt is in no folder on the desktop, and the recommit commits it deleted, signed by her: gone
    from her unlock and from her laptop.  Expected: judged by her signature (the state held is her
    laptop's).  Control: no replay: Secret lists plan.txt.  Fix: the ledger's refusal (and every other
    place that moves ``node.rev`` onto a state not taken: ``under_older_key`` ledger.py:809,
    ``reopen``'s Unreadable arrivals.py:329, the load's rebuilt nodes, rebuilding.py ``rebuilt_in_place``,
    which stand on the refused writer's revision with no note) through ``stand_on``; or
    ``_signer_held`` never falls back to the stored document for a node of the folder's owner (note
    every state taken, owner's included, and default to the owner).
    Tests: ``test_74b_2_her_name_in_her_folder_is_not_judged_by_a_replayed_writers_state``,
    ``test_74b_2_her_file_moved_into_her_folder_is_not_deleted_by_a_replayed_writers_state``.
(3) Phantoms made for a member's names on arrival are never dropped (low: memory and walks a member
    sizes, kept until her lock; new with 73d (6)'s ``placed_as_a_guest`` on every arrival).  Attacker:
    bob, any user sharing a folder P with her (READ will do).  Steps: his P/x.txt; R revisions of his
    document of it, each naming it in K folder ids of no folder she holds, fresh each time.  Seen: each
    revision's names go (``relink``), but the K phantoms ``placed_as_a_guest`` made stay in her tree
    and in ``sharing.phantoms`` (nothing purges a phantom: ``purge_if_unused`` is called on named
    nodes; ``_drop_unreached`` skips phantoms): R x K after R revisions (2,000 for K = 400, R = 5),
    each walked by every later ``_drop_unreached`` (``tree.nodes()``, at each change of shares), for
    what his current document names K.  Before 2cb12cb only a share's admission made them (once a
    share).  Expected: at most K (those his current document names).  Control: the same K folders at
    each revision.  Cause: vault/services/absorbing.py:424-430 (``placed_as_a_guest`` after
    ``relink``), vault/tree/phantoms.py:74-85 (a phantom a name of his made, never dropped when the
    name goes).  Fix: drop a phantom left with no child and no share root under it when a name in it
    goes (``relink``'s ``gone``, ``unlink_entries``), or bound a guest's names in folders not held.
    Test: ``test_74b_3_a_members_names_in_folders_not_held_cost_what_his_current_document_names``.
(4) The name freed goes to the first of her files noted beside it, not the one her rule gives it (low:
    two of her files named alike on two devices apart swap names on her desktop; what she saves there
    next commits the swap).  Attacker: bob, as in (1).  Steps: her laptop's Secret/plan.txt (a) and
    Secret/b.txt (b, made after); her other device, apart, names b ``plan.txt`` too; bob's x.txt named
    ``plan.txt`` in Secret (ctime late), shared: Secret a phantom on her desktop; a, then b, then
    Secret reach it.  Seen: a and b each lose to bob's name and are noted beside; his name refused,
    ``give_back`` gives plan.txt to the first noted, a; her unlock (and the desktop without bob's
    name) gives it to b, named last (``link_clashing``'s rule), a shown beside.  Cause: arrivals.py
    ``give_back`` (493-511: the first noted, ``Beside.waiting`` in note order).  Fix: give the name
    to the waiting node ``link_clashing``'s rule ranks first (her own, then named last), then the
    others beside it.  Test: ``test_74b_4_the_name_freed_goes_to_the_file_her_rule_gives_it``.

Tried and held (controls kept as the passing params): bob's names ``x.txt`` (no clash) in (1), (4); no
replay in (2); the same folder ids at each revision in (3).  Read, not run: ``names._marks`` (the
whole id past 16, linear; a planted ``NAME (also WHOLEID n)`` costs one look a name he plants);
``relink`` with sets and ``unlink_entries`` (one pass; duplicates removed at once, as the lists held
none); ``settle(beside=)`` only adds folders to a walk that needs a grant on every way up (never
lets more through); ``Guests.writes_at`` on the seat (grants via groups and folders above a READ
share count; a name in a folder the seat cannot see refuses, as decided in 73d (6)); ``give_back``
to a node refused in the same pass (held: its shown name is gone); ``stand_on`` over ``keep``,
awaiting a key, ``absorb_beneath`` (held).
Not tried (time): the load's rebuilt nodes standing on a refused writer's revision with no note (read:
``_signer_held`` then reads his document, as in (2), if a phantom of her folder is made real after
her unlock); ``conflicts.py`` setting ``node.rev`` to the current revision after ``absorb_node`` noted
the settled one; ``reopen``'s Unreadable path; ``held_signers`` and beside notes left for nodes that
left (one per fid or inode a member's documents name: bounded by what he sends, kept until her lock);
real mounts; groups.
"""

from __future__ import annotations

import json
import stat

import pytest
import trio
from attack_scenes import ALICE, BOB, ask, bobs_node_doc, planted, rewrite

from fusevault.crypto import aead
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64e
from fusevault.vault.model.nodes import open_node_attrs
from fusevault.vault.services.absorbing import absorb_arrivals, admit_new
from fusevault.vault.volume import Volume
from inprocess.conftest import BOB_UID, ROOT, shared  # noqa: F401  (fixture)
from inprocess.test_attack_70a import HERS, _laptop, _signed_by
from inprocess.test_attack_73d import _bob_shares
from inprocess.test_two_users import _walk, _write


async def _bob_shares_x(shared, names: list[list[str]]) -> None:  # noqa: F811
    """bob's own x.txt, named also ``names`` (folder id, name) by his own document, named last, and
    shared with alice READ: the folders are phantoms on her desktop."""
    drive, bob = shared.drive, shared.volumes["bob"]
    await _write(drive, ROOT, b"x.txt", b"bob's\n", BOB)
    his = bob.tree.node(bob.tree.node(ROOT).children[b"x.txt"])
    named = {"links": [[bob.tree.node(ROOT).fid, "x.txt"], *names], "ctime": 1 << 62}
    planted(shared, bobs_node_doc(shared, his.fid, named))
    answer = await drive.seat_of(BOB_UID).ops.session.requests.handle(
        {"cmd": "share", "path": "x.txt", "with": "alice", "perm": "READ"})
    assert "error" not in answer, answer


@pytest.mark.parametrize("layout,his_name", [
    pytest.param("two_folders", "x.txt", id="control_two_folders"),
    pytest.param("two_folders", "plan.txt", id="linked_in_two_phantoms"),
    pytest.param("one_folder", "x.txt", id="control_one_folder"),
    pytest.param("one_folder", "plan.txt", id="two_names_in_one_phantom"),
])
def test_74b_1_her_names_in_her_phantom_folders_come_back_when_bobs_are_refused(
        shared, monkeypatch, layout: str, his_name: str) -> None:  # noqa: F811
    async def scene() -> tuple[dict, dict, dict]:
        alice = shared.volumes["alice"]
        laptop = _laptop(shared, monkeypatch)  # her laptop: its commits reach her desktop when handed
        s1 = (await laptop.mkdir(ROOT, b"Secret", stat.S_IFDIR | 0o700, HERS)).fid
        s2 = (await laptop.mkdir(ROOT, b"Secret2", stat.S_IFDIR | 0o700, HERS)).fid
        fh, plan = await laptop.create(laptop.find(s1).ino, b"plan.txt", stat.S_IFREG | 0o600, HERS)
        await laptop.write(fh, 0, b"her plan\n")
        await laptop.release(fh)
        if layout == "two_folders":
            await laptop.link(plan.ino, laptop.find(s2).ino, b"plan.txt")
            hers = {s1: [b"plan.txt"], s2: [b"plan.txt"]}
            await _bob_shares_x(shared, [[s1, his_name], [s2, his_name]])
        else:
            await laptop.link(plan.ino, laptop.find(s1).ino, b"copy.txt")
            hers = {s1: [b"copy.txt", b"plan.txt"], s2: []}
            await _bob_shares_x(shared, [[s1, his_name]])
        assert alice.find(s1).ino in alice.sharing.phantoms, "the scene: Secret a phantom on her desktop"
        # Her laptop's file, then each of its folders (a folder changed after its files comes after them)
        absorb_arrivals(alice, [shared.store.get(plan.fid)])
        for fid in (s1, s2):
            absorb_arrivals(alice, [shared.store.get(fid)])
        assert all(alice.find(fid).owner == alice.key.user_id for fid in (s1, s2)), "the scene: hers"
        assert not any(b"x.txt" in alice.find(fid).children for fid in (s1, s2)), "bob's names refused"
        mounted = {fid: sorted(alice.find(fid).children) for fid in (s1, s2)}
        before = Volume.load(alice.layout, alice.store, alice.key, alice.tree.get(1).fid)
        try:
            unlocked = {fid: sorted(before.find(fid).children) for fid in (s1, s2)}
        finally:
            await before.close()
        fh = await alice.open(alice.find(plan.fid).ino, write=True)  # her next save of it, on the desktop
        await alice.write(fh, 0, b"her edit\n")
        await alice.release(fh)  # committed
        after = Volume.load(alice.layout, alice.store, alice.key, alice.tree.get(1).fid)
        try:
            saved = {fid: sorted(after.find(fid).children) for fid in (s1, s2)}
        finally:
            await after.close()
            await laptop.close()
        return hers, mounted, {"unlocked": unlocked, "saved": saved}

    hers, mounted, then = trio.run(scene)
    assert then["unlocked"] == hers, f"the scene: her unlock shows her names ({then['unlocked']})"
    assert (mounted, then["saved"]) == (hers, hers), (
        f"her folders on her desktop once they came: {mounted}; after her save there: {then['saved']}")


@pytest.mark.parametrize("replayed", [
    pytest.param(False, id="control"),
    pytest.param(True, id="bobs_older_state_replayed"),
])
def test_74b_2_her_name_in_her_folder_is_not_judged_by_a_replayed_writers_state(
        shared, monkeypatch, replayed: bool) -> None:  # noqa: F811
    async def scene() -> tuple[list[bytes], list[str], list[bytes]]:
        drive, alice, bob = shared.drive, shared.volumes["alice"], shared.volumes["bob"]
        store = shared.store
        await _write(drive, ROOT, b"plan.txt", b"her plan\n", ALICE)
        fid = alice.resolve(b"plan.txt").fid
        await ask(shared, "share", "plan.txt", "WRITE")  # bob writes her file (a file share)
        his = await _walk(drive, b"shared/alice/plan.txt", BOB)
        await rewrite(drive, his.st_ino, b"bob's first\n", BOB)
        first = store.get(fid)
        assert first["sig"]["by"] == bob.key.user_id, "the scene: his first state, signed by him"
        absorb_arrivals(alice, [first])  # taken on her desktop (if the seat did not yet)
        await rewrite(drive, his.st_ino, b"bob's second\n", BOB)
        absorb_arrivals(alice, [store.get(fid)])
        assert alice.find(fid).rev == store.get(fid)["_rev"], "the scene: his second state on her desktop"
        laptop = _laptop(shared, monkeypatch)
        secret = (await laptop.mkdir(ROOT, b"Secret", stat.S_IFDIR | 0o700, HERS)).fid
        await laptop.link(laptop.find(fid).ino, laptop.find(secret).ino, b"plan.txt")  # her hard link
        await _bob_shares_x(shared, [[secret, "x.txt"]])
        assert alice.find(secret).ino in alice.sharing.phantoms, "the scene: Secret a phantom on the desktop"
        absorb_arrivals(alice, [store.get(fid)])  # her laptop's state: plan.txt in her root and Secret
        assert b"plan.txt" in alice.find(secret).children, "the scene: her link held in the phantom"
        batch = []
        if replayed:
            # His first state again, at a new revision (a server's replay; or bob puts his own back)
            body = {k: v for k, v in first.items() if k != "_rev"}
            body["_rev"] = store.get(fid)["_rev"]
            (rev,) = store.put_many([body])
            batch.append({**body, "_rev": rev})
        batch.append(store.get(secret))  # her folder's own document, at last
        out = absorb_arrivals(alice, batch)  # one batch: the replay, then her folder
        shown = sorted(alice.find(secret).children)
        said = [a["text"][:160] for a in alice.trust.alarms.as_list() if a["subject"] == fid]
        for node, rev in out.recommit:  # what the mount does next (fs/arrivals.py ``_recommit``)
            if alice.find(node.fid) is node and node.rev == rev:
                await alice.save_node(node)
        again = Volume.load(alice.layout, alice.store, alice.key, alice.tree.get(1).fid)
        try:
            unlocked = sorted(again.find(secret).children)
        finally:
            await again.close()
            await laptop.close()
        return shown, said, unlocked

    shown, said, unlocked = trio.run(scene)
    assert (shown, unlocked) == ([b"plan.txt"], [b"plan.txt"]), (
        f"her Secret on her desktop: {shown}; at her unlock after the desktop's recommit: {unlocked}; "
        f"said {said}")


K = 400  # folder ids bob's document names his x.txt in, none held on her seat
R = 5  # revisions of it


@pytest.mark.parametrize("fresh", [
    pytest.param(False, id="control_the_same_folders"),
    pytest.param(True, id="fresh_folders_each_revision"),
])
def test_74b_3_a_members_names_in_folders_not_held_cost_what_his_current_document_names(
        shared, fresh: bool) -> None:  # noqa: F811
    async def scene() -> tuple[int, int, int]:
        drive, alice, bob = shared.drive, shared.volumes["alice"], shared.volumes["bob"]
        store = shared.store
        p = await drive.mkdir(ROOT, b"P", stat.S_IFDIR | 0o755, BOB)
        await _write(drive, p.st_ino, b"x.txt", b"bob's\n", BOB)
        await _bob_shares(shared, "P")
        admit_new(alice)  # the share admitted (the seat may have already)
        pfid, x = bob.resolve(b"P").fid, bob.resolve(b"P/x.txt").fid
        assert alice.find(x) is not None, "the scene: bob's x.txt on her seat"
        phantoms, nodes = len(alice.sharing.phantoms), len(alice.tree)
        for r in range(R):
            tag = r if fresh else 0
            links = [[pfid, "x.txt"]] + [[f"{tag:08x}{k:024x}", "x.txt"] for k in range(K)]
            doc = _signed_by(shared, "bob", x, {"links": links, "mtime": r + 1})
            doc["_rev"] = store.get(x)["_rev"]
            (rev,) = store.put_many([doc])
            absorb_arrivals(alice, [{**doc, "_rev": rev}])  # a ~30 KB document
            assert len(alice.find(x).links) == K + 1, "the scene: his names held (in P and under phantoms)"
        return len(alice.sharing.phantoms) - phantoms, len(alice.tree) - nodes, len(alice.find(x).links)

    phantoms, nodes, names = trio.run(scene)
    assert names == K + 1
    assert phantoms <= K and nodes <= K, (
        f"{phantoms} phantoms ({nodes} nodes) kept on her seat for a file whose document names {K} folders "
        f"not held, after {R} revisions")


@pytest.mark.parametrize("replayed", [
    pytest.param(False, id="control"),
    pytest.param(True, id="bobs_older_state_replayed"),
])
def test_74b_2_her_file_moved_into_her_folder_is_not_deleted_by_a_replayed_writers_state(
        shared, monkeypatch, replayed: bool) -> None:  # noqa: F811
    """(2), her move: bob WRITE on docs and on docs/plan.txt (two shares); her laptop moves plan.txt
    from docs into her new Secret.  His older state replayed, then Secret: her file in no folder on the
    desktop, whose recommit (asked by the replay) commits it deleted, signed by her."""
    async def scene() -> tuple[list[bytes], list[bytes], bool]:
        drive, alice = shared.drive, shared.volumes["alice"]
        store = shared.store
        docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
        await _write(drive, docs.st_ino, b"plan.txt", b"her plan\n", ALICE)
        fid, dfid = alice.resolve(b"docs/plan.txt").fid, alice.resolve(b"docs").fid
        await ask(shared, "share", "docs", "WRITE")
        await ask(shared, "share", "docs/plan.txt", "WRITE")
        his = await _walk(drive, b"shared/alice/docs/plan.txt", BOB)
        await rewrite(drive, his.st_ino, b"bob's first\n", BOB)
        first = store.get(fid)
        absorb_arrivals(alice, [first])
        await rewrite(drive, his.st_ino, b"bob's second\n", BOB)
        absorb_arrivals(alice, [store.get(fid)])
        laptop = _laptop(shared, monkeypatch)
        secret = (await laptop.mkdir(ROOT, b"Secret", stat.S_IFDIR | 0o700, HERS)).fid
        await laptop.rename(laptop.find(dfid).ino, b"plan.txt", laptop.find(secret).ino, b"plan.txt",
                            False, False)
        await _bob_shares_x(shared, [[secret, "x.txt"]])
        assert alice.find(secret).ino in alice.sharing.phantoms, "the scene: Secret a phantom on the desktop"
        absorb_arrivals(alice, [store.get(fid)])  # her laptop's move
        assert b"plan.txt" in alice.find(secret).children, "the scene: her file held in the phantom"
        batch = []
        if replayed:
            body = {k: v for k, v in first.items() if k != "_rev"}
            body["_rev"] = store.get(fid)["_rev"]
            (rev,) = store.put_many([body])
            batch.append({**body, "_rev": rev})
        batch.append(store.get(secret))
        out = absorb_arrivals(alice, batch)
        shown = sorted(alice.find(secret).children)
        for node, rev in out.recommit:  # what the mount does next (fs/arrivals.py ``_recommit``)
            if alice.find(node.fid) is node and node.rev == rev:
                await alice.save_node(node)
        again = Volume.load(alice.layout, alice.store, alice.key, alice.tree.get(1).fid)
        try:
            unlocked = sorted(again.find(secret).children)
        finally:
            await again.close()
        absorb_arrivals(laptop, [store.get(fid)])  # her laptop takes the desktop's state
        on_laptop = laptop.find(fid) is not None and bool(laptop.find(fid).links)
        await laptop.close()
        return shown, unlocked, on_laptop

    shown, unlocked, on_laptop = trio.run(scene)
    assert (shown, unlocked, on_laptop) == ([b"plan.txt"], [b"plan.txt"], True), (
        f"her Secret on her desktop: {shown}; at her unlock after its recommit: {unlocked}; "
        f"plan.txt in a folder on her laptop: {on_laptop}")


def _hers_renamed(shared, laptop: Volume, fid: str, links: list[list[str]]) -> dict:  # noqa: F811
    """Her own document of ``fid`` (her key, as her third device signs it) naming it ``links``, put as
    the current revision; not handed to any seat."""
    dek = laptop.find(fid).dek
    doc = shared.store.get(fid)
    attrs = {**open_node_attrs(doc, dek), "links": links}
    body = {k: v for k, v in doc.items() if k != "sig"}
    plain = json.dumps(attrs, separators=(",", ":")).encode()
    body["enc"] = b64e(aead.seal(dek, plain, aead.ad("node", fid)))
    key = shared.volumes["alice"].key
    signed = sign_doc(key.user_id, key.identity.sign, body)
    (rev,) = shared.store.put_many([signed])
    return {**signed, "_rev": rev}


@pytest.mark.parametrize("his_name", [
    pytest.param("x.txt", id="control"),
    pytest.param("plan.txt", id="bobs_name_between"),
])
def test_74b_4_the_name_freed_goes_to_the_file_her_rule_gives_it(shared, monkeypatch, his_name: str) -> None:  # noqa: F811
    async def scene() -> tuple[str | None, str | None, str, str]:
        alice = shared.volumes["alice"]
        laptop = _laptop(shared, monkeypatch)
        s = (await laptop.mkdir(ROOT, b"Secret", stat.S_IFDIR | 0o700, HERS)).fid
        files = []
        for name in (b"plan.txt", b"b.txt"):  # plan.txt made first, b.txt after
            fh, node = await laptop.create(laptop.find(s).ino, name, stat.S_IFREG | 0o600, HERS)
            await laptop.write(fh, 0, name)
            await laptop.release(fh)
            files.append(node.fid)
        a, b = files
        await _bob_shares_x(shared, [[s, his_name]])
        assert alice.find(s).ino in alice.sharing.phantoms, "the scene: Secret a phantom on her desktop"
        # Her other device, apart, names b.txt plan.txt too (two devices gave one name: 40b (7))
        renamed = _hers_renamed(shared, laptop, b, [[s, "plan.txt"]])
        absorb_arrivals(alice, [shared.store.get(a)])
        absorb_arrivals(alice, [renamed])
        absorb_arrivals(alice, [shared.store.get(s)])  # her folder, at last
        folder = alice.find(s)
        held = alice.get(folder.children.get(b"plan.txt"))
        again = Volume.load(alice.layout, alice.store, alice.key, alice.tree.get(1).fid)
        try:
            there = again.find(s)
            unlocked = again.get(there.children.get(b"plan.txt"))
            result = (held and held.fid, unlocked and unlocked.fid, a, b)
        finally:
            await again.close()
            await laptop.close()
        return result

    held, unlocked, a, b = trio.run(scene)
    assert unlocked == b, "the scene: her unlock gives plan.txt to the file named last (b)"
    assert held == unlocked, f"plan.txt on her desktop held by {'a' if held == a else held}, at her unlock: b"
