"""Attack round 55a, in-process: 54a's fixes (absorbing._epoch_raised, _key_came_first, stale_keys.ahead),
the key proof, guests' signed wrapping (c15c5e8), 53a's claims.

55a (1), medium: her signed wrapping hidden from a member's unlock by altered copies of her version: an
honest member's edits carry the attacker's wrapping, and her unlock refuses them.

- Attacker: bob, a WRITE member who can write the vault folder (or the server that feeds carol's
  device): 53c (2)'s attacker.  Victims: carol, an honest WRITE member (her edits), and alice.
- Steps (``test_55a_1_altered_copies_of_her_version_do_not_hide_her_wrapping``,
  ``test_55a_1_her_unlock_takes_a_members_honest_edit[True]``; ``[False]`` is the control): 53c's scene
  (team/plan.txt WRITE to bob and carol; bob's signed state carrying another wrapping stored); bob puts
  65 (``WRAPPING_VERSIONS`` + 1) copies of alice's version document of the file under new ids, each with
  his wrapping text (well shaped: ``wrapping_ok``) and her signature left as it was (naming her,
  failing), and her genuine version is served again after them (a new revision: last in the local
  store's ``by_file``; CouchDB's ``_find`` with no sort scans by id: ids sorting before hers do).  carol's
  device unlocks (nothing held), then chmods the file; alice's devices are locked meanwhile, then one
  unlocks.
- Seen: carol's unlock carries bob's wrapping (``guests._signed_wrapping`` counts each copy naming her
  towards the bound, fails to verify it, and gives up before reaching hers); carol's commit stores it;
  alice's device, up, says a second ``forged-key`` for the file over carol's honest commit (53c (2)'s
  false accusation, back); alice's unlock refuses carol's state as unreadable and rebuilds the file from
  her own states: carol's chmod is left out (mode 0644; 0600 without the copies).  Expected: her signed
  wrapping found, carol's edit taken (as in the control).
- Cause: vault/tree/guests.py:461-470: ``_names_as_signer`` reads the signature's ``by`` field
  unverified, so c15c5e8's rule (only versions naming her count towards the bound) bounds only what
  anyone may name her in; and ``by_file``'s order is the store's (the feeder's).
- Impact: an honest member's edits made while the owner's devices are away are refused at her unlock
  (53c (2)'s limit, which the open list gives for a folder or an older client only, now at an
  attacker's will for any file), and each of her commits said as a forgery of hers while she is up;
  until carol's device holds a state alice signed at that epoch (alice's next commit of the file).
  Not only at an unlock: after each re-key of hers, a member's state at the new epoch reaching carol's
  device before alice's own (nothing held at that epoch) is looked up the same way (not run).
- Fix: look first at the version the state's ``head`` names (her contents' version, when she signed
  it), or at one already verified (the ``verified`` cache); or count one signature once (65 bodies under
  one copied signature are one forgery), or keep per file the id of the version whose wrapping was hers
  (a local note) so an unlock reads it first.
- Fixed (``guests._signed_wrapping``): the bound counts signatures checked, each version once; the version
  the state's ``head`` names, then her versions this device checked before (``Trust.verified_before``),
  are looked at first (``test_her_version_checked_before_is_found_past_a_head_of_his``).

Held (control kept, committed as a passing test, fails with 53a (6)'s ``_claimed_key_signed`` made to
answer False): ``test_her_desktops_key_at_the_epoch_her_laptop_re_keyed_to_is_not_kept``: 54a's scene,
then her laptop re-keys the file itself to the epoch her desktop sealed to bob (its ``_next_epoch``
counts only the covering grants' key files), after bob's key document came and was passed over; her
desktop's state at that epoch then arrives as the winning branch.  54a's ``_epoch_raised`` asks no
look (same epoch), but her laptop takes it as a claimed key of hers (``her_key_unknown``: the ledger's
digest at epoch 2 is its own key, the desktop's is not derived for the recipients seen here) and asks
her re-key (``Absorbed.rekey``): her write lands at epoch 3.  (Only 53a (6)'s check stands between this
scene and bob reading her writes: a look asked in ``_update`` whenever her key changes would be a
second guard.)

Tried and held (no test kept): ``keys_ahead`` across the look's own waits (a file arriving while
``listed`` runs is found by that look; after it, it is in ``keys_ahead``); ``keys_ahead`` is replaced at
each look, never grown past the key files listed (a server planting key files of files never sent costs
a set of their ids, and no look per file: ``_key_came_first`` asks only for a file of hers); a restart
between key and file (the unlock asks a look, sessions.py:100); a file parked for its folder
(``wait_for_folder``) is added through the same path later; the re-key's ``reopen`` taking her other
device's state mid-reseal seals it under the new key (no key of hers kept); her proof past an unshare
(it proves only the epoch it was made at, and counts only above the held epoch); two devices' keys at
one epoch found by ``her_key_at``'s lists only when one's recipients are a subset of the other's (no
removed member then); the rebuilt folder's proof (``repairing._rebuild_folder``: a random key at the
old epoch, its proof bound to it; her other device takes it as a key change at one epoch).
53a (4)'s ``_claims_as_seen`` read through: a member's revival of her forgotten file at the ledger's
epoch while it is claimed is judged no claim (``known`` None) but re-keyed by ``_claimed_re_keyed``;
below that epoch ``_new_node_judged`` takes it back; ``claims_said`` is kept only for claimed files.
Not tried (time): 53a's claim save window under a failing disk (``Ledger.save`` logs an OSError and her
commit goes on), ``claims_said`` across a damaged ledger.
"""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import pytest
from mount.test_trust_attack_39a import three  # noqa: F401  (fixture)

from fusevault.crypto.signing import signer_of
from fusevault.store import replica
from fusevault.vault.model.nodes import VERSION
from fusevault.vault.services import conflicts, rotation
from fusevault.vault.services.absorbing import absorb, absorb_arrivals
from fusevault.vault.tree.guests import WRAPPING_VERSIONS
from fusevault.vault.volume import Volume
from inprocess.conftest import BOB_UID, Ctx
from inprocess.test_attack_53c import _bobs_wrapping, _in_scene, _plan_shared, _said
from inprocess.test_attack_54a import KEY_ARRIVES, _desktops_re_key_sealed_to_bob
from inprocess.test_two_users import ALICE, _walk


def _branch(history: list[str], marks: str) -> list[str]:
    """``history`` (newest first) continued by one revision per mark (the last mark newest)."""
    top = int(history[0].split("-")[0])
    return [f"{top + n}-{mark * 32}" for n, mark in reversed(list(enumerate(marks, 1)))] + history


async def test_her_desktops_key_at_the_epoch_her_laptop_re_keyed_to_is_not_kept(shared):
    """The control in the docstring: her desktop's key sealed to bob, at the epoch her laptop re-keyed the
    file to itself after his key document came, taken by an arrival: a claim and her re-key asked."""
    seen: list = []
    alice, node, theirs, path = await _desktops_re_key_sealed_to_bob(shared, seen)
    before, history = seen
    local = replica.local_of(shared.store)
    desk, desk_history = local.get(node.fid), replica.current_history(local, node.fid)
    absorb_arrivals(alice, [KEY_ARRIVES])  # bob's key document (epoch 2) first: passed over at epoch 1
    assert alice.tree.take_key_check()
    await rotation._rekey_unreached(alice)
    assert node.epoch == 1 and path.exists()
    # Her laptop re-keys notes itself (another unshare, a move) before her desktop's state comes: on its
    # own branch (its saves apart from the desktop's), epoch 2 too, under a key derived for no bob.
    ahead = _branch(history, "12")
    replica.store_revisions(local, [{**before, "_rev": ahead[0], "_revisions": replica.revisions(ahead)}])
    absorb(alice, [local.get(node.fid)], own=False)
    await alice.rekey(node)
    assert node.epoch == 2 and node.dek != theirs.dek
    assert not alice.tree.take_key_check()
    # Her desktop's state at epoch 2 (under the key sealed to bob) arrives, its branch the winner (the
    # desktop wrote on after its re-key: a longer branch).
    gap = int(replica.current_history(local, node.fid)[0].split("-")[0]) - int(desk_history[0].split("-")[0])
    longer = _branch(desk_history, "d" * (gap + 1))
    replica.store_revisions(local, [{**desk, "_rev": longer[0], "_revisions": replica.revisions(longer)}])
    assert local.get(node.fid)["_rev"] == longer[0]
    out = absorb_arrivals(alice, [local.get(node.fid)])
    assert node.epoch == 2 and node.dek == theirs.dek, "her desktop's state not taken in"
    asked = alice.tree.take_key_check()
    assert asked or node in out.rekey, "her file took the key sealed to bob at its epoch: nothing asked"
    for each in out.rekey:
        await alice.rekey(each)  # what the sync's arrival handling does with ``rekey``
    if asked:
        await rotation._rekey_unreached(alice)  # what the session's service does
    # The settling of the two branches, then her write on her laptop.
    conflicts.note_branches(alice, local, [node.fid])
    await conflicts.settle(alice, local, [node.fid])
    entry = await _walk(shared.drive, b"docs/notes.txt", ALICE)
    info = await shared.drive.open(entry.st_ino, os.O_WRONLY, ALICE)
    await shared.drive.write(info.fh, 0, b"after the unshare")
    await shared.drive.release(info.fh)
    stored = shared.store.get(node.fid)
    assert stored["epoch"] == 3 and node.epoch == 3, "her write sealed under the key her desktop gave bob"
    assert node.dek != theirs.dek  # a bool: the keys are not printed by a failing assert


def _altered_copies(shared, fid: str, text: str) -> list[str]:
    """bob's 65 copies of alice's version of ``fid`` under new ids, each carrying ``text`` as its wrapping,
    her signature left as it was (naming her, failing); her genuine version served again after them."""
    alice = shared.volumes["alice"]
    (genuine,) = [v for v in shared.store.by_file(VERSION, fid) if signer_of(v) == alice.key.user_id]
    body = {k: v for k, v in genuine.items() if k != "_rev"}
    copies = [{**body, "_id": uuid.uuid4().hex, "en_file_dek": text} for _ in range(WRAPPING_VERSIONS + 1)]
    shared.store.put_many(copies)
    shared.store.put_many([dict(genuine)])  # a new revision of hers, same body: last in ``by_file``
    assert shared.store.by_file(VERSION, fid)[-1]["_id"] == genuine["_id"], "the scene: hers last"
    return [each["_id"] for each in copies]


async def _carols_unlock_and_chmod(shared, altered: bool):
    """53c's scene (bob's state carrying another wrapping stored), bob's altered copies when ``altered``,
    then carol's device unlocked again and her chmod 0600 from it: (her node's wrapping, bob's text,
    the stored state after her chmod).  alice's ledger saved before carol's unlock (her lock)."""
    carol = shared.volumes["carol"]
    fid, _ = await _plan_shared(shared)
    others = _bobs_wrapping(shared, fid)
    if altered:
        _altered_copies(shared, fid, others)
    shared.volumes["alice"].ledger.save()  # what her lock does: her devices away from here on
    again = Volume.load(carol.layout, carol.store, carol.key, carol.tree.get(1).fid)  # carol's unlock
    node = again.find(fid)
    wrapped = node.wrapped
    await again.setattr(node.ino, mode=stat.S_IFREG | 0o600)
    stored = shared.store.get(fid)
    assert signer_of(stored) == carol.key.user_id, "the scene: carol's commit is stored"
    return wrapped, others, stored


def test_55a_1_altered_copies_of_her_version_do_not_hide_her_wrapping(three: Path) -> None:  # noqa: F811
    async def scene(shared):
        wrapped, others, stored = await _carols_unlock_and_chmod(shared, altered=True)
        fid = stored["_id"]
        absorb_arrivals(shared.volumes["alice"], [stored])  # alice's device, up
        return wrapped, others, _said(shared, "alice", fid)
    wrapped, others, said = _in_scene(three, scene)
    assert wrapped != {"en_file_dek": others}, "carol's unlock carries bob's wrapping"
    # bob's own state said once (53c's control); carol's honest commit said nothing more.
    assert [(each["kind"], each["count"]) for each in said] == [("forged-key", 1)], said


@pytest.mark.parametrize("altered", [False, True])
def test_55a_1_her_unlock_takes_a_members_honest_edit(three: Path, altered: bool) -> None:  # noqa: F811
    """alice's devices away (her ledger saved, then her unlock): carol's chmod made meanwhile is hers to
    take; with bob's altered copies, carol's commit carries his wrapping, and alice's unlock refuses it
    as unreadable (53c (2)'s limit: her file rebuilt from her own states, carol's edit left out)."""
    async def scene(shared):
        alice = shared.volumes["alice"]
        _, _, stored = await _carols_unlock_and_chmod(shared, altered)
        hers = Volume.load(alice.layout, alice.store, alice.key, alice.tree.get(1).fid)  # her unlock
        node = hers.find(stored["_id"])
        return hers.path_of(node), stat.S_IMODE(node.mode), _said(shared, "alice", stored["_id"])
    path, mode, said = _in_scene(three, scene)
    assert path == b"team/plan.txt"
    assert mode == 0o600, f"carol's chmod left out at alice's unlock; said {said}"


def test_her_version_checked_before_is_found_past_a_head_of_his(three: Path) -> None:  # noqa: F811
    """55a (1)'s fix, its second look: bob changed the contents (his state's ``head`` names his version,
    none of hers) and stored his state carrying another wrapping; carol's device unlocked then (her
    version's signature checked, kept by ``verified``).  bob's altered copies of her version come after:
    carol's next unlock finds her wrapping among them without checking their signatures."""
    async def scene(shared):
        carol, bob = shared.volumes["carol"], shared.volumes["bob"]
        fid, _ = await _plan_shared(shared)
        his = await _walk(shared.drive, b"shared/alice/team/plan.txt", Ctx(BOB_UID, BOB_UID))
        info = await shared.drive.open(his.st_ino, os.O_WRONLY, Ctx(BOB_UID, BOB_UID))
        await shared.drive.write(info.fh, 0, b"bob's plan\n")
        await shared.drive.release(info.fh)
        head = bob.find(fid).head
        assert signer_of(shared.store.get(head)) == bob.key.user_id, "the scene: the head is his version"
        other = _bobs_wrapping(shared, fid)
        unlocks = [Volume.load(carol.layout, carol.store, carol.key, carol.tree.get(1).fid)]  # hers checked
        _altered_copies(shared, fid, other)
        unlocks.append(Volume.load(carol.layout, carol.store, carol.key, carol.tree.get(1).fid))
        assert all(each.find(fid).head == head for each in unlocks), "the scene: carol holds his contents"
        return [each.find(fid).wrapped for each in unlocks], other
    (before, after), other = _in_scene(three, scene)
    assert before != {"en_file_dek": other}, "the scene: her wrapping found before the copies"
    assert after == before, "carol's unlock after the copies carries bob's wrapping"
