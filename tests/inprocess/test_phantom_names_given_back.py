"""Names refused when a phantom of her folder is made real go back only to a node still in it (attack
round 73d (4)'s fix, vault/tree/arrivals.py ``give_back``; the scene: tests/inprocess/test_attack_73d.py
``test_73d_4_...``)."""

from __future__ import annotations

import stat

import trio
from attack_scenes import BOB, bobs_node_doc, planted

from fusevault.vault.services.absorbing import absorb_arrivals
from inprocess.conftest import BOB_UID, ROOT, shared  # noqa: F401  (fixture)
from inprocess.test_attack_70a import HERS, _laptop
from inprocess.test_two_users import _write


def test_two_files_of_his_named_alike_in_her_phantom_are_both_left_out(shared, monkeypatch) -> None:  # noqa: F811
    """bob names two files of his ``plan.txt`` in the id of her new folder: one is shown beside the
    other in the phantom.  Her folder made real refuses both names: the one beside, refused too, is
    not given the name its holder lost (judged all first, given back after)."""
    async def scene() -> tuple[list[bytes], list[bytes]]:
        drive, alice, bob = shared.drive, shared.volumes["alice"], shared.volumes["bob"]
        laptop = _laptop(shared, monkeypatch)
        p = (await laptop.mkdir(ROOT, b"Secret", stat.S_IFDIR | 0o700, HERS)).fid
        for k, name in enumerate((b"x.txt", b"y.txt")):
            await _write(drive, ROOT, name, b"bob's\n", BOB)
            his = bob.tree.node(bob.tree.node(ROOT).children[name])
            named = {"links": [[bob.tree.node(ROOT).fid, name.decode()], [p, "plan.txt"]], "ctime": k + 1}
            planted(shared, bobs_node_doc(shared, his.fid, named))
            answer = await drive.seat_of(BOB_UID).ops.session.requests.handle(
                {"cmd": "share", "path": name.decode(), "with": "alice", "perm": "READ"})
            assert "error" not in answer, answer
        phantom = sorted(alice.find(p).children)
        absorb_arrivals(alice, [shared.store.get(p)])  # her folder's own document
        shown = sorted(alice.find(p).children)
        await laptop.close()
        return phantom, shown

    phantom, shown = trio.run(scene)
    assert len(phantom) == 2 and b"plan.txt" in phantom, f"the scene: one shown beside the other ({phantom})"
    assert shown == [], f"her Secret once it came: {shown}"
