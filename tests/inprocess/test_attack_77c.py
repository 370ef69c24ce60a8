"""Attack round 77c, at 07d2f69 (round 76b's fixes of the naming rule: 0f29e04 the load drops the
``taken`` names of nodes the settling rebuilt from her material; 8e0a0bd ``Beside.moved``/``made``,
``give_back``'s rank; 94d50f2, 3b5ca97 ``phantoms.placed_as_a_guest`` following the guest's current
document).

In-process: the ``shared`` fixture (alice's and bob's seats of one shared mount), bob READ on her
folder D; bob's states of her files signed with his own key and sealed under the key he holds
(``attack_scenes.bobs_node_doc``), planted as a server or peer stores them (her seat refuses each on
arrival: READ); her lock as ``save_all`` (her ledger saved), her unlock as ``Volume.load``; her next
save as a write through that Volume; then a second ``Volume.load`` shows what the save committed.
0f29e04's comment says the rule: "A node rebuilt from her own material has the names she gave it, no
other".  Two ways it does not; and (3), of 3b5ca97:

(1) low-medium (her file renamed ``h.txt (recovered ID8)`` at her unlock, by a READ member, or by the
    server alone; her next save commits it on every device).  Attackers: bob, READ on her folder D (any
    member who reads two of her files); or a CouchDB server or peer replaying her own older states.
    Steps: D holds her h.txt and g.txt; [swap] bob signs a state of each swapping their names (h named
    (D, g.txt), g named (D, h.txt)); [delete_h_and_g_onto_h] bob signs a deletion of h and a state of g
    naming it (D, h.txt); [server_replays_...] she swaps their names herself (three renames), the server
    serves both older states of hers again.  Mounted, each state is refused on arrival (no WRITE) or not
    handed: D lists g.txt, h.txt.  Seen at her unlock (after a lock: her ledger saved): D lists
    ``h.txt (recovered H8)`` and g.txt (the replay: ``g.txt (recovered ..)``, h.txt); her saves commit
    it.  Expected: D as mounted.  Cause: vault/tree/authorship.py:611 ``settle`` rebuilds the refused
    nodes one by one (``keep`` -> loading.py:564 ``rebuilt_in_place`` -> ``_as_seen`` -> loading.py:735
    ``_where_it_was``), each put back at the name this device last saw while the others, not rebuilt
    yet, still hold the names their refused documents gave (a swap: the first rebuilt finds its name
    held by the second, whatever the order); ``keep_undeleted`` (loading.py:224, before the settling)
    rebuilds a refused deletion while a refused rename still holds its name; ``replays_refused``
    (loading.py:270) likewise node by node.  ``_where_it_was`` then makes ``(recovered ID)``.  Suggested
    fix: take every refused node's names out first, then rebuild them all (a refused document never
    holds a name a rebuilt node wants); a rebuilt node whose name is still held after that goes through
    ``taken`` / ``_link_beside`` (the clash rule), not ``(recovered)``.  Test:
    ``test_77c_1_a_readers_refused_renames_of_two_files_rename_neither_at_her_unlock``.
(2) low-medium (her hard link removed, or her file moved out of her shared folder into her private
    one, for good; her next save commits it on every device).  Attackers: bob, READ on D; or the server
    alone.  Steps: her h.txt in D also linked as S/h2.txt (S private, not shared) or as D/h2.txt; bob
    signs a state of h changing only its mtime (every name as hers) [touch_...], or a deletion of it
    [delete_...]; or the server serves her own older state of h (after her edit) again [server_...].
    Mounted: refused or not handed, h keeps both names.  Seen at her unlock: h rebuilt with ONE name:
    D/h.txt only, or S/h.txt only (h gone from the folder D she shared with bob, the name from D put in
    S: which of D and S comes first in the ledger's ``where`` follows the folders' ids); her save of h
    commits it.  Expected: both names, where they were.  Cause: loading.py:735 ``_where_it_was`` returns
    one link (the first held folder of ``was`` under ``Ledger.name_seen``, which keeps only
    ``node.links[0]``'s name: ledger.py:730, FORMAT.md ``names``), for every rebuild (``settle``'s
    ``keep``, ``keep_undeleted``, ``replays_refused``).  0f29e04's rule ("a node rebuilt from her own
    material has the names she gave it") is not met.  Suggested fix: the ledger keeps every (folder,
    name) this device last saw the node under (bounded as the node's names are), and ``_where_it_was``
    puts each back (those held through ``taken``, as in (1)).  Test:
    ``test_77c_2_a_refused_state_of_her_hard_linked_file_drops_no_name_at_her_unlock``.

(3) low (a file of a share hidden in its folder on her seat until her unlock, or its next revision
    there; 3b5ca97's change).  Attacker: none needed (bob's two devices apart), or bob, or any user
    whose file clashes in a folder id not held here.  Steps: bob's folder P (not shared) holds x.txt and
    y.txt, each shared with her alone (P a phantom on her seat); his other device named y ``x.txt`` too
    (named last: y holds x.txt in the phantom, x shown ``x (also X8).txt``); she lists shared/bob/x.txt
    (the kernel holds x); bob's next save of x (names as they were); he shares P with her.  Seen: her
    seat's P lists y only; x has no name left anywhere but shared/bob/ (her unlock: both, x beside).
    Without her lookup x is purged (no name, no reference) and the batch's admission of shares brings
    it back, so the control and that case hold.  Cause: vault/tree/phantoms.py:87-91 (3b5ca97 removed the
    made-name exemption): ``relink`` has just shown x beside y in the phantom (``clash``), then
    ``placed_as_a_guest`` drops every name in a phantom its document does not give, the made name too.
    Suggested fix: drop only names ``relink`` did not decide (it kept its place: every held name
    refused), or keep a made name whose note's wanted name the document gives.  Test:
    ``test_77c_3_a_file_shown_beside_in_a_phantom_is_listed_once_its_folder_is_shared``.

Tried and held (controls kept as passing params): (1) bob's rename of g onto h.txt alone, h's own
document hers: both names kept at her unlock, the refused node's ``taken`` dropped (0f29e04) and h's
placed; (2) a file with one name: rebuilt under it.  (Without ``save_all`` before the load, her
ledger on disk is stale in-process and the server's replay of her swapped states is taken as current:
no real unlock runs without a lock or a start saving it; not reported.)
Read, held: ``Beside.moved`` keeps ``_by_name`` and ``_of`` in step (it only rewrites values); a
swapped-out holder whose lost name was a made name gets no new note and its notes follow (one a name it
wants); ``give_back`` with ``replaced`` from ``made`` re-anchors the node's other notes at the name given
(a hard link's note then adds beside it), for any order of the names freed; in a real folder of hers
only her own nodes can wait (other owners' names are refused before ``give_back``), so the rank's
``replaced`` first never puts another owner's node before hers; ``placed_as_a_guest``'s drop touches
only a guest's own names and a phantom only when empty (a phantom holding her file, a share root or
any other name stays), and a phantom dropped is made again by a later name or becomes a new node when
its folder's document comes.
Also: a share root whose every held name is refused (its owner's document naming it only in her
root) loses its phantom name the same way and has no name left (purged unless the kernel holds it):
its owner's own share, not tried further.
Not reported: her file shown beside a guest's name that the guest's later document drops
(``relink``'s gone names, or now ``placed_as_a_guest`` when every held name is refused) keeps its
made name (40b (7)'s design, 74b's "Unchanged" note).  Not tried: real mounts (there
``_put_back_over_replays`` commits a replay's rebuilt state at unlock, before any save of hers: (1),
(2) with no save, likely); groups.
"""

from __future__ import annotations

import json
import stat

import pytest
import trio
from attack_scenes import ALICE, BOB, ask, bobs_node_doc, planted

from fusevault.crypto import aead
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64e
from fusevault.vault.model.nodes import open_node_attrs
from fusevault.vault.services.absorbing import admit_new
from fusevault.vault.volume import Volume
from inprocess.conftest import ROOT, shared  # noqa: F401  (fixture)
from inprocess.test_attack_73d import _bob_shares
from inprocess.test_names_beside_bounds_74b import _hand
from inprocess.test_two_users import _walk, _write


def _by_name(volume: Volume, fid: str) -> dict[bytes, str]:
    return {name: volume.get(ino).fid for name, ino in volume.find(fid).children.items()}


def _bobs_deletion(shared, fid: str) -> dict:  # noqa: F811
    """bob's signed deletion of her ``fid`` (sealed under the key he holds): refused, READ."""
    bob = shared.volumes["bob"]
    dek = bob.find(fid).dek
    doc = shared.store.get(fid)
    attrs = {**open_node_attrs(doc, dek), "links": [], "trashed": ["D/h.txt", 1]}
    body = {k: v for k, v in doc.items() if k not in ("_rev", "sig")}
    body["delete"] = True
    plain = json.dumps(attrs, separators=(",", ":")).encode()
    body["enc"] = b64e(aead.seal(dek, plain, aead.ad("node", fid)))
    return sign_doc(bob.key.user_id, bob.key.identity.sign, body)


async def _unlock_save_unlock(alice: Volume, folders: list[str], saves: list[str],
                              ) -> tuple[list[dict], list[dict]]:
    """Her unlock (its listings of ``folders``), her next save of each of ``saves`` there, and what
    the next unlock lists.  She locks first (``save_all``: her ledger saved, as at every lock)."""
    await alice.save_all()
    again = Volume.load(alice.layout, alice.store, alice.key, alice.tree.get(1).fid)
    try:
        unlocked = [_by_name(again, fid) for fid in folders]
        for fid in saves:
            fh = await again.open(again.find(fid).ino, write=True)
            await again.write(fh, 0, b"her edit\n")
            await again.release(fh)
    finally:
        await again.close()
    after = Volume.load(alice.layout, alice.store, alice.key, alice.tree.get(1).fid)
    try:
        saved = [_by_name(after, fid) for fid in folders]
    finally:
        await after.close()
    return unlocked, saved


@pytest.mark.parametrize("how", [
    pytest.param("control_g_onto_h_alone", id="control_g_onto_h_alone"),
    pytest.param("swap", id="swap"),
    pytest.param("delete_h_and_g_onto_h", id="delete_h_and_g_onto_h"),
    pytest.param("server_replays_her_states_before_her_swap", id="server_replays_her_states_before_her_swap"),
])
def test_77c_1_a_readers_refused_renames_of_two_files_rename_neither_at_her_unlock(
        shared, how: str) -> None:  # noqa: F811
    async def scene() -> tuple[dict, dict, dict]:
        drive, alice = shared.drive, shared.volumes["alice"]
        d = await drive.mkdir(ROOT, b"D", stat.S_IFDIR | 0o755, ALICE)
        await _write(drive, d.st_ino, b"h.txt", b"her h\n", ALICE)
        await _write(drive, d.st_ino, b"g.txt", b"her g\n", ALICE)
        h, g, dfid = alice.resolve(b"D/h.txt").fid, alice.resolve(b"D/g.txt").fid, alice.resolve(b"D").fid
        await ask(shared, "share", "D", "READ")  # bob reads D
        if how == "server_replays_her_states_before_her_swap":
            older = {fid: shared.store.get(fid) for fid in (h, g)}
            # she swaps their names herself (three renames), then the server serves both older states
            await drive.rename(d.st_ino, b"h.txt", d.st_ino, b"t.txt", 0, ALICE)
            await drive.rename(d.st_ino, b"g.txt", d.st_ino, b"h.txt", 0, ALICE)
            await drive.rename(d.st_ino, b"t.txt", d.st_ino, b"g.txt", 0, ALICE)
            for fid, doc in older.items():
                body = {k: v for k, v in doc.items() if k != "_rev"}
                shared.store.put_many([{**body, "_rev": shared.store.get(fid)["_rev"]}])
            mounted = _by_name(alice, dfid)
            (unlocked,), (saved,) = await _unlock_save_unlock(alice, [dfid], [h, g])
            return mounted, unlocked, saved
        if how == "swap":
            planted(shared, bobs_node_doc(shared, h, {"links": [[dfid, "g.txt"]]}))
        elif how == "delete_h_and_g_onto_h":
            planted(shared, _bobs_deletion(shared, h))
        planted(shared, bobs_node_doc(shared, g, {"links": [[dfid, "h.txt"]]}))
        mounted = _by_name(alice, dfid)
        (unlocked,), (saved,) = await _unlock_save_unlock(alice, [dfid], [h, g])
        return mounted, unlocked, saved

    mounted, unlocked, saved = trio.run(scene)
    assert sorted(mounted) == [b"g.txt", b"h.txt"], f"the scene: his states refused on her seat ({mounted})"
    assert (unlocked, saved) == (mounted, mounted), f"D at her unlock: {unlocked}; after her saves: {saved}"


@pytest.mark.parametrize("second,how", [
    pytest.param(None, "touch", id="control_one_name"),
    pytest.param("S", "touch", id="touch_hard_link_in_her_private_folder"),
    pytest.param("D", "touch", id="touch_hard_link_in_the_same_folder"),
    pytest.param("S", "delete", id="delete_hard_linked"),
    pytest.param("S", "replay", id="server_replays_her_older_state"),
])
def test_77c_2_a_refused_state_of_her_hard_linked_file_drops_no_name_at_her_unlock(
        shared, second: str | None, how: str) -> None:  # noqa: F811
    async def scene() -> tuple[list[dict], list[dict], list[dict]]:
        drive, alice = shared.drive, shared.volumes["alice"]
        d = await drive.mkdir(ROOT, b"D", stat.S_IFDIR | 0o755, ALICE)
        s = await drive.mkdir(ROOT, b"S", stat.S_IFDIR | 0o700, ALICE)
        entry = await _write(drive, d.st_ino, b"h.txt", b"her h\n", ALICE)
        if second is not None:  # her hard link
            await drive.link(entry.st_ino, (s if second == "S" else d).st_ino, b"h2.txt", ALICE)
        h, dfid, sfid = alice.resolve(b"D/h.txt").fid, alice.resolve(b"D").fid, alice.resolve(b"S").fid
        await ask(shared, "share", "D", "READ")  # bob reads D; S is not shared with him
        if how == "touch":
            planted(shared, bobs_node_doc(shared, h, {"mtime": 7}))  # his "touch": refused, READ
        elif how == "delete":
            planted(shared, _bobs_deletion(shared, h))  # refused, READ
        else:  # her own state, then her edit; the server serves the older one again (not handed)
            older = shared.store.get(h)
            fh = await alice.open(alice.find(h).ino, write=True)
            await alice.write(fh, 0, b"her edit\n")
            await alice.release(fh)
            body = {k: v for k, v in older.items() if k != "_rev"}
            shared.store.put_many([{**body, "_rev": shared.store.get(h)["_rev"]}])
        mounted = [_by_name(alice, dfid), _by_name(alice, sfid)]
        unlocked, saved = await _unlock_save_unlock(alice, [dfid, sfid], [h])
        return mounted, unlocked, saved

    mounted, unlocked, saved = trio.run(scene)
    shown = sum(len(listing) for listing in mounted)
    assert shown == (1 if second is None else 2), f"the scene: his state refused on her seat ({mounted})"
    assert (unlocked, saved) == (mounted, mounted), (
        f"D, S mounted: {mounted}; at her unlock: {unlocked}; after her save of h.txt: {saved}")


LATE = 1 << 62  # bob's other device named y last: it keeps the name


@pytest.mark.parametrize("touched", [
    pytest.param(False, id="control_no_revision_of_x"),
    pytest.param(True, id="a_revision_of_x_before_p_is_shared"),
])
def test_77c_3_a_file_shown_beside_in_a_phantom_is_listed_once_its_folder_is_shared(
        shared, touched: bool) -> None:  # noqa: F811
    async def scene() -> tuple[dict, dict, str]:
        drive, alice, bob = shared.drive, shared.volumes["alice"], shared.volumes["bob"]
        p = await drive.mkdir(ROOT, b"P", stat.S_IFDIR | 0o755, BOB)
        for name in (b"x.txt", b"y.txt"):
            await _write(drive, p.st_ino, name, b"bob's\n", BOB)
        pfid, x, y = bob.resolve(b"P").fid, bob.resolve(b"P/x.txt").fid, bob.resolve(b"P/y.txt").fid
        await _bob_shares(shared, "P/x.txt")  # each file shared alone: P a phantom on her seat
        await _bob_shares(shared, "P/y.txt")
        admit_new(alice)
        assert alice.find(pfid).ino in alice.sharing.phantoms, "the scene: P a phantom on her seat"
        # bob's other device, apart, named y x.txt too (named last: it keeps the name, x shown beside)
        _hand(shared, y, {"links": [[pfid, "x.txt"]], "ctime": LATE})
        await _walk(drive, b"shared/bob/x.txt", ALICE)  # her ls of it: the kernel holds x
        if touched:
            _hand(shared, x, {"mtime": 7})  # bob's next save of x, its names as they were
        await _bob_shares(shared, "P")  # then he shares P with her
        admit_new(alice)
        mounted = _by_name(alice, pfid)
        await alice.save_all()
        again = Volume.load(alice.layout, alice.store, alice.key, alice.tree.get(1).fid)
        try:
            unlocked = _by_name(again, pfid)
        finally:
            await again.close()
        return mounted, unlocked, x

    mounted, unlocked, x = trio.run(scene)
    assert x in unlocked.values(), f"the scene: her unlock lists x in P ({unlocked})"
    assert mounted == unlocked, f"P on her seat: {mounted}; at her unlock: {unlocked} (x {x[:8]})"


def test_77c_1_a_rebuilt_file_whose_name_her_own_state_gave_another_is_shown_beside_it(shared) -> None:  # noqa: F811
    """77c (1)'s fix puts a rebuilt file back where it was once every refused node is rebuilt; a name
    still held then (her other device named g ``h.txt``, her own state: taken) goes through the clash
    rule: h shown beside g, never nameless nor left out (taken alone, ``link_loaded`` skipped it)."""
    from inprocess.test_attack_70a import _signed_by

    async def scene() -> tuple[dict, dict, dict, str, str]:
        drive, alice = shared.drive, shared.volumes["alice"]
        d = await drive.mkdir(ROOT, b"D", stat.S_IFDIR | 0o755, ALICE)
        await _write(drive, d.st_ino, b"h.txt", b"her h\n", ALICE)
        await _write(drive, d.st_ino, b"g.txt", b"her g\n", ALICE)
        h, g, dfid = alice.resolve(b"D/h.txt").fid, alice.resolve(b"D/g.txt").fid, alice.resolve(b"D").fid
        await ask(shared, "share", "D", "READ")  # bob reads D
        planted(shared, _bobs_deletion(shared, h))  # refused, READ: h rebuilt at her unlock
        planted(shared, _signed_by(shared, "alice", g, {"links": [[dfid, "h.txt"]], "ctime": LATE}))
        mounted = _by_name(alice, dfid)
        (unlocked,), (saved,) = await _unlock_save_unlock(alice, [dfid], [h, g])
        return mounted, unlocked, saved, h, g

    mounted, unlocked, saved, h, g = trio.run(scene)
    assert sorted(mounted.values()) == sorted([h, g]), f"the scene: both listed in D mounted ({mounted})"
    for listing in (unlocked, saved):
        assert sorted(listing.values()) == sorted([h, g]), f"D at her unlock, then after her saves: {listing}"
        assert not any(b"recovered" in name for name in listing), listing
