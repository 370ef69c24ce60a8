"""Attack round 78b, at 5a1722d (round 77c's fixes of the load and naming rule: e494806 ``owed``
places of rebuilt nodes, 4652bac ``placed_as_a_guest``'s ``decided``, 3e53fe6 a phantom its names
leave stays, 0f29e04 a rebuilt node takes none of its refused document's names found taken).

In-process: the ``shared`` fixture (alice's and bob's seats of one shared mount).

(1) low (a flood of her seat's memory and of the walks at every change of shares, for the rest of
    her mount; 74b (3) and 76b (4)'s bound undone by 3e53fe6).  Attacker: bob, any user who shares a
    folder of his with her (or whose file of a share of hers she holds as a guest).  Steps: bob's
    folder P (x.txt in it) shared with her READ; bob's revision of x names it also in K folder ids
    no seat holds (her seat makes K phantoms, as it must while x names them); bob unshares P (x leaves
    her seat: ``leave``), then shares P again (his re-key's commit of x names P/x.txt only).  Each
    round of the three leaves K empty phantoms on her seat, named by no node: after R rounds
    ``sharing.phantoms`` holds 1 + K x R (seen 1, 21, 41, 61 for K = 20), where 74b (3) kept them as
    few as the current documents name (1 here).  Cause: vault/tree/arrivals.py:585-593 ``leave``
    unlinks a guest's names and no longer calls ``drop_phantom_if_empty`` (3e53fe6); nothing else
    drops a phantom no name is in (``relink`` only drops those its own gone names left).  The
    documented "as many as his documents named while he was here" has no bound: one document,
    revised, shared and unshared, names fresh ids each time.  Suggested fix: ``leave`` drops an
    empty phantom again, and the case 3e53fe6 was made for (a guest kept for unsaved writes, its
    share given again while mounted) is met where it is: a node still held (``sharing.leaving``) that
    a share admits again has its names linked again (``admit_guests`` skips ``tree.holds``), or a
    phantom is only kept while a node in ``sharing.leaving`` names it.  Test:
    ``test_78b_1_a_guest_leaving_leaves_no_empty_phantoms_behind``.
"""

from __future__ import annotations

import pytest
import trio

from fusevault.vault.services.absorbing import absorb_arrivals, admit_new
from inprocess.conftest import BOB_UID, shared  # noqa: F401  (fixture)
from inprocess.test_attack_73d import _bob_shares
from inprocess.test_names_beside_bounds_74b import _hand, _his_files


@pytest.mark.xfail(strict=True, reason="78b (1): each guest that leaves her seat leaves its K empty phantoms "
                   "behind for the rest of her mount (3e53fe6): no bound")
def test_78b_1_a_guest_leaving_leaves_no_empty_phantoms_behind(shared) -> None:  # noqa: F811
    k, rounds = 20, 3

    async def scene() -> tuple[list[int], list[int]]:
        alice, bob = shared.volumes["alice"], shared.volumes["bob"]
        pfid, (x,) = await _his_files(shared, b"x.txt")
        requests = shared.drive.seat_of(BOB_UID).ops.session.requests
        counts, empty = [len(alice.sharing.phantoms)], []
        for r in range(rounds):
            qs = [f"{r:08x}{i:08x}" + "e" * 16 for i in range(k)]  # folder ids no seat holds, fresh
            _hand(shared, x, {"links": [[pfid, "x.txt"]] + [[q, "a.txt"] for q in qs], "mtime": r + 1})
            absorb_arrivals(bob, [shared.store.get(x)])  # his seat holds his revision too
            assert alice.find(qs[0]) is not None, "the scene: x named in the phantoms on her seat"
            answer = await requests.handle({"cmd": "unshare", "path": "P", "with": "alice"})
            assert "error" not in answer, answer
            assert alice.find(x) is None, "the scene: x left her seat"
            await _bob_shares(shared, "P")
            admit_new(alice)
            assert alice.find(x) is not None, "the scene: x back on her seat"
            counts.append(len(alice.sharing.phantoms))
            empty.append(sum(1 for ino in alice.sharing.phantoms if not alice.tree.get(ino).children))
        return counts, empty

    counts, empty = trio.run(scene)
    assert empty == [0] * rounds, f"phantoms after each round: {counts}; of them named by no node: {empty}"
