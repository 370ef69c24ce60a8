"""Attack round 71a (at eeee8a6: round 70a's fixes, phantoms.py, ``may_name``, ``relink``, rotation).

In-process, as tests/inprocess/test_attack_70a.py: alice and bob unlocked in one shared mount's
``Drive`` (alice's seat: her desktop); her laptop is a second ``Volume`` of hers with a ledger of its
own (test_attack_70a.py ``_laptop``) over the raw store: what it commits reaches the desktop when the
test hands it over (``absorb_arrivals``), as a sync does.

(1) Her own file, restored on her laptop, is refused on her desktop as a forgery of hers while bob's
    share names it as his folder (medium: her file hidden on that device until its next unlock, a
    false alarm blaming her).  Attacker: bob, any user (no server help, no right of hers).  Steps:
    alice deletes a.txt (to her trash); bob signs a node document of his own x.txt naming
    ``[[<his root>, "x.txt"], [<a.txt's id>, "x.txt"]]`` (ids are in the database he replicates) and
    shares x.txt with her.  Her desktop unlocks: a.txt not held (trashed), its id becomes a phantom
    (a folder, no owner: 70a (1)'s fix).  She restores a.txt on her laptop (``fusevault restore``),
    which syncs to the desktop.  Seen: the desktop refuses her restored a.txt, "refused a change of
    file <a.txt>: signed by <alice>, it changes the file's type" (absorbing.py ``absorb_node``: the
    phantom is a folder, her document a file: ``retyped``), a.txt not in her root there, and every
    later edit from the laptop refused alike, until the desktop's next unlock (the load holds her file
    first, his name in it skipped).  70a (3)'s fix (``Tree.phantom_gives_way``) covers only a restore
    on the device holding the phantom (``Tree.adopt``); the same happens to any file of hers the
    desktop has not taken in yet when bob's share comes (a server holding her laptop's new file back:
    ``test_scratch``-checked, not kept), and to carol's file she shares with alice after bob named it
    (``_admit_new_shares``: "its document changes the file's type: it keeps what it had", read, not
    run).  Expected: a phantom is only a guess (no owner, no type of its own that anyone vouched
    for): a verified document of its id, of any type, takes its place (the phantom gives way, its
    names judged on their next arrival, ``into_a_file``), as ``adopt`` now does.  Cause:
    vault/services/absorbing.py:271-275 (``retyped(node, opened[0])`` against the phantom, before
    ``made_real``), absorbing.py:961-963 (the same in ``_admit_new_shares``).  Suggested fix: in
    both places, a phantom at the id gives way (``tree.phantom_gives_way``) before the document is
    judged as a new node, or ``retyped`` says no for a phantom.
"""

from __future__ import annotations

import pytest
import trio
from attack_scenes import ALICE, BOB, bobs_node_doc, planted

from fusevault.vault.services import recovery
from fusevault.vault.services.absorbing import absorb_arrivals
from fusevault.vault.volume import Volume
from inprocess.conftest import (  # noqa: F401  (fixtures)
    ALICE_UID,
    BOB_UID,
    ROOT,
    shared,
    template_vault,
    vault_copy,
)
from inprocess.test_attack_70a import _laptop, _read_node
from inprocess.test_two_users import _write


@pytest.mark.parametrize("named", [
    pytest.param(False, id="control"),
    pytest.param(True, id="named_by_bob", marks=pytest.mark.xfail(
        strict=True, reason="71a (1): her file restored on her laptop refused on her desktop (a phantom's type)")),
])
def test_71a_1_her_file_restored_on_her_laptop_is_taken_on_her_desktop(shared, monkeypatch, named: bool) -> None:  # noqa: F811
    async def attack() -> tuple[list[bytes], bytes | None, list[str]]:
        drive, alice, bob = shared.drive, shared.volumes["alice"], shared.volumes["bob"]
        await _write(drive, ROOT, b"a.txt", b"alice's a\n", ALICE)
        fid = alice.resolve(b"a.txt").fid
        await drive.unlink(ROOT, b"a.txt", ALICE)
        await trio.sleep(0.3)
        await _write(drive, ROOT, b"x.txt", b"bob's\n", BOB)
        his = bob.resolve(b"x.txt")
        if named:
            planted(shared, bobs_node_doc(shared, his.fid, {"links": [[bob.tree.node(ROOT).fid, "x.txt"],
                                                                      [fid, "x.txt"]]}))
        answer = await drive.seat_of(BOB_UID).ops.session.requests.handle(
            {"cmd": "share", "path": "x.txt", "with": "alice", "perm": "READ"})
        assert "error" not in answer, answer
        desk = Volume.load(alice.layout, alice.store, alice.key, alice.tree.get(1).fid)  # her desktop's unlock
        try:
            assert (desk.find(fid) is not None and desk.find(fid).ino in desk.sharing.phantoms) is named, \
                "the scene: a phantom at her file's id on the desktop"
            laptop = _laptop(shared, monkeypatch)
            await recovery.restore(laptop, b"a.txt")  # on her laptop
            assert laptop.resolve(b"a.txt").fid == fid
            absorb_arrivals(desk, [shared.store.get(fid)])  # the sync brings it to the desktop
            node = desk.find(fid)
            data = await _read_node(desk, node) if node is not None and node.links else None
            return (sorted(desk.tree.node(ROOT).children), data,
                    [a["text"] for a in desk.trust.alarms.as_list() if a["subject"] == fid])
        finally:
            await desk.close()

    listed, data, said = trio.run(attack)
    assert b"a.txt" in listed and data == b"alice's a\n" and not said, (listed, data, said)
