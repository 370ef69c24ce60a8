"""Review of attack round 55's fixes (55r), in-process.

55r (1), medium: one version row that does not read stops a member's unlock (the whole vault).

- Attacker: a writer of the vault folder (the store's file: a member with write access to the folder,
  53c (2)'s and 55a (1)'s attacker), or anything that leaves one row unreadable.
- Steps (``test_55r_1_a_head_row_that_does_not_read_does_not_stop_a_members_unlock``): 53c's scene
  (team/plan.txt WRITE to bob and carol; bob's signed state carrying another wrapping stored, its ``head``
  alice's version); the row of that version given the body ``[]``; carol's device unlocks.
- Seen: ``Volume.load`` raises Unreadable ("document ... is not a JSON object"): carol's vault does not
  open at all.  Expected: it opens (as it did before 55a (1)'s fix: ``b'team/plan.txt'`` listed); a row
  that does not read is left out, as ``LocalStore.by_file`` and ``_readable`` do ("one forged body must
  not hide all the others").
- Cause: vault/tree/guests.py:469 (``_signed_wrapping``, 55a (1)'s fix, commit 7fa7cdb): ``store.get
  (fresh.head)`` raises ``Unreadable`` (a CorruptData) for such a row, and nothing on the way catches it:
  ``carried_wrapping`` <- ``open_guest`` (guests.py:417, after its try) <- loading.py:142 (no try).
- Impact: every member whose state of a shared file is signed by someone else than its owner cannot
  unlock (also arrivals.py ``open_doc`` on a sync, not run); a DoS of the whole mount by one row.
- Suggested fix: in ``_signed_wrapping``, ``store.get`` inside ``try: ... except CorruptData: head =
  None`` (the by_file candidates still looked at).
- Fixed so (guests.py ``_head_version``); the test passes.
"""

from __future__ import annotations

from pathlib import Path

from mount.test_trust_attack_39a import three  # noqa: F401  (fixture)

from fusevault.store import replica
from fusevault.vault.volume import Volume
from inprocess.test_attack_53c import _bobs_wrapping, _in_scene, _plan_shared


def test_55r_1_a_head_row_that_does_not_read_does_not_stop_a_members_unlock(three: Path) -> None:  # noqa: F811
    async def scene(shared):
        carol = shared.volumes["carol"]
        fid, _ = await _plan_shared(shared)
        _bobs_wrapping(shared, fid)  # the stored state is bob's: carol's unlock looks for alice's wrapping
        head = carol.find(fid).head
        local = replica.local_of(shared.store)
        assert local._db.execute("UPDATE docs SET body = '[]' WHERE id = ?", (head,)).rowcount == 1
        again = Volume.load(carol.layout, carol.store, carol.key, carol.tree.get(1).fid)  # carol's unlock
        node = again.find(fid)
        return None if node is None else again.path_of(node)
    assert _in_scene(three, scene) == b"team/plan.txt"
