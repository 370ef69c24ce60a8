"""Attack round 56b, in-process: 56b (1) run through a member's unlock and an arrival (the unit test,
tests/unit/test_attack_56b.py, gives the steps, cause, impact and a suggested fix).

- Attacker: bob, a WRITE member of alice's team/plan.txt, who can write the vault folder (53c (2)'s and
  55r (1)'s attacker); alice's versions kept from carol's device a while (here: their rows made unreadable,
  then put back; a server withholding them, or a replication handing bob's state first, does the same).
- Steps: 53c's scene (bob's signed state carrying another wrapping stored); alice's versions of the file
  unreadable; carol's device unlocks (bob's wrapping carried: the documented limit, none of hers held);
  alice's versions readable again; bob commits the file again (a new state of his arrives at carol's).
- Seen: carol's node still carries bob's wrapping after the arrival (``held.wrapped`` taken first), while
  an unlock now would find alice's (the control in the same test).  Expected: alice's.

56b (3), medium (55a (1)'s hole again, by one write instead of 65): bob puts ONE new revision over alice's
version document of the file, at its own id (her signature left, failing; his wrapping text in it).

- Attacker: bob, a WRITE member who can write the vault folder (or the server feeding carol's device),
  as in 55a (1).  Victims: carol (her edits said forgeries), alice (carol's edit refused at her unlock).
- Steps (``test_56b_3_a_revision_of_his_over_her_version_hides_her_wrapping``): 53c's scene (bob's
  signed state carrying another wrapping stored; its ``head`` names alice's version); bob's revision over
  her version handed to every seat (alice's device, up, does not put hers back); alice's devices away
  (her ledger saved); carol's device unlocks and chmods the file 0600; alice's device unlocks.
- Seen: carol's unlock carries bob's wrapping; alice's unlock leaves carol's chmod out (mode 0644, 0600
  expected: measured with the first assert taken out).  Expected: alice's wrapping found.
- Cause: vault/tree/guests.py:464-481 (``_signed_wrapping``) and :485 (``_head_version``): the head, the
  versions checked before and ``by_file`` all read each version's winning revision only; a revision
  stacked over hers by someone else is refused (its signature fails) and the one under it, hers, is never
  looked at (39a (5) fetches and keeps the edit under a refused revision for states, not for versions);
  ``verified_before`` misses too, since the body changed.  55a (1)'s "look first where a flood cannot
  push back" is pushed back by replacing that very document.
- Impact: as 55a (1): every honest member's edit made while alice's devices are away is left out at her
  unlock, and said as a forgery while she is up; one document write, and nothing puts her version back.
- Suggested fix: keep per file, on the member's device (device state, sealed), the wrapping last found
  under her verified signature at the epoch, and carry it whatever the store says since; or, for a
  version whose winning revision fails her signature, look at the revision under it (``_revisions``)
  as 39a (5) does for states, and have the owner's device put back a version of hers so replaced.
- Maybe read as 53c (2)'s limit ("a device that holds no wrapping its owner signed"): here her signed
  version was stored, named by the head, until one write replaced it; the lead judges.
"""

from __future__ import annotations

import stat
from pathlib import Path

from attack_scenes import bobs_node_doc
from mount.test_trust_attack_39a import three  # noqa: F401  (fixture)

from fusevault.crypto.signing import sign_doc, signer_of
from fusevault.store import replica
from fusevault.vault.model.nodes import VERSION
from fusevault.vault.services.absorbing import absorb_arrivals
from fusevault.vault.volume import Volume
from inprocess.test_attack_53c import _bobs_wrapping, _in_scene, _plan_shared


def _bobs_next_state(shared, fid: str, at: int) -> dict:
    """bob's next signed state of ``fid`` (its wrapping the stored one, his), stored: as it arrives."""
    bob = shared.volumes["bob"]
    doc = bobs_node_doc(shared, fid, {"seq": ["bobs-device", at]})
    stored = shared.store.get(fid)["en_file_dek"]
    body = {k: v for k, v in doc.items() if k != "sig"} | {"en_file_dek": stored}
    doc = sign_doc(bob.key.user_id, bob.key.identity.sign, body)
    (rev,) = shared.store.put_many([{**doc, "_rev": shared.store.get(fid)["_rev"]}])
    return {**doc, "_rev": rev}


def test_56b_1_his_wrapping_carried_at_an_unlock_stays_after_hers_is_back(three: Path) -> None:  # noqa: F811
    async def scene(shared):
        carol, alice = shared.volumes["carol"], shared.volumes["alice"]
        fid, _ = await _plan_shared(shared)
        others = _bobs_wrapping(shared, fid)
        hers = [v["_id"] for v in shared.store.by_file(VERSION, fid) if signer_of(v) == alice.key.user_id]
        assert hers, "the scene: alice's version of the file is stored"
        db = replica.local_of(shared.store)._db
        kept = {i: db.execute("SELECT body FROM docs WHERE id = ?", (i,)).fetchall() for i in hers}
        for i in hers:
            db.execute("UPDATE docs SET body = '[]' WHERE id = ?", (i,))
        again = Volume.load(carol.layout, carol.store, carol.key, carol.tree.get(1).fid)  # carol's unlock
        at_unlock = again.find(fid).wrapped
        for i, rows in kept.items():
            (body,) = {row[0] for row in rows}
            db.execute("UPDATE docs SET body = ? WHERE id = ?", (body, i))
        arrived = _bobs_next_state(shared, fid, 2)
        absorb_arrivals(again, [arrived])  # bob's next commit arrives
        assert again.find(fid).rev == arrived["_rev"], "the scene: his next state taken by carol's device"
        after = again.find(fid).wrapped
        looked = Volume.load(carol.layout, carol.store, carol.key, carol.tree.get(1).fid).find(fid).wrapped
        return others, at_unlock, after, looked
    others, at_unlock, after, looked = _in_scene(three, scene)
    his = {"en_file_dek": others}
    assert at_unlock == his, "the scene: none of hers readable at the unlock, his carried (the limit)"
    assert looked != his, "control: an unlock now finds hers"
    assert after != his, "his wrapping still carried after hers is back and his next state arrived"


def test_56b_3_a_revision_of_his_over_her_version_hides_her_wrapping(three: Path) -> None:  # noqa: F811
    async def scene(shared):
        carol, alice = shared.volumes["carol"], shared.volumes["alice"]
        fid, _ = await _plan_shared(shared)
        others = _bobs_wrapping(shared, fid)
        (genuine,) = [v for v in shared.store.by_file(VERSION, fid) if signer_of(v) == alice.key.user_id]
        assert carol.find(fid).head == genuine["_id"], "the scene: bob's state names her version as its head"
        altered = {**genuine, "en_file_dek": others}  # her signature left: it fails
        (rev,) = shared.store.put_many([altered])  # a new revision over hers, at its id
        for volume in shared.volumes.values():  # handed to every seat, alice's too
            absorb_arrivals(volume, [{**altered, "_rev": rev}])
        alice.ledger.save()  # what her lock does: her devices away from here on
        carol.ledger.save()  # what carol's lock (or her ledger's timed save) does before her unlock
        again = Volume.load(carol.layout, carol.store, carol.key, carol.tree.get(1).fid)  # carol's unlock
        wrapped = again.find(fid).wrapped
        await again.setattr(again.find(fid).ino, mode=stat.S_IFREG | 0o600)  # carol's honest chmod
        hers = Volume.load(alice.layout, alice.store, alice.key, alice.tree.get(1).fid)  # alice's unlock
        return others, wrapped, stat.S_IMODE(hers.find(fid).mode)
    others, wrapped, mode = _in_scene(three, scene)
    assert wrapped != {"en_file_dek": others}, "carol's unlock carries bob's wrapping"
    assert mode == 0o600, "carol's chmod left out at alice's unlock"
