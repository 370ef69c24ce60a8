"""The owner's placement stamp while mounted (vault/tree/authorship.py ``may_write``): a WRITE
grantee's document arriving over a move the owner made on another device, of which this mount saw
nothing (the store, or the sync, handed over only his later revision).  In-process, as
tests/inprocess/test_link_grants.py: alice and bob unlocked in one shared mount's ``Drive``, the
document handed over as the store watcher does."""

from __future__ import annotations

import pytest
import trio
from attack_scenes import ALICE, bobs_node_doc, names_found, planted, team_with_plan
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fusevault.vault.model import placement
from inprocess.conftest import (  # noqa: F401  (fixtures)
    ROOT,
    shared,
    template_vault,
    vault_copy,
)


@pytest.mark.parametrize("stamp, taken", [
    ("hers", True),
    ("none", False),  # before stamps: judged from where this mount holds it (the safe side)
    ("another key", False),
    ("older", False),  # a state of her device this mount saw already
    ("carried back", False),  # hers, taken; she then moves the file back here; bob carries it again
])
def test_a_writers_edit_over_the_owners_move_on_another_device_is_taken_by_her_stamp(
        shared, stamp: str, taken: bool) -> None:  # noqa: F811
    """alice keeps diary.txt in her root; team is WRITE to bob.  On her desktop (not this mount) she
    moves diary.txt into team: her stamp says so.  bob writes team/diary.txt; only his document (which
    carries her stamp) reaches alice's mount.  Safe and no false alarm: with her stamp diary.txt moves
    into team, no alarm; with none, one signed by another key, or one of a state this mount saw, bob's
    document is judged as his own move out of her root: refused, diary.txt stays there; so is one
    carrying her stamp again after she moved the file back into her root on this mount (the stamp
    taken once is not news any more)."""

    async def scene() -> tuple[bool, bool, bool]:
        drive, alice = shared.drive, shared.volumes["alice"]
        team_entry, _ = await team_with_plan(shared)
        root = alice.tree.node(ROOT)
        diary, team = (alice.tree.node(root.children[name]) for name in (b"diary.txt", b"team"))
        signer = Ed25519PrivateKey.generate() if stamp == "another key" else alice.key.identity.sign
        device = alice.ledger.device if stamp == "older" else "alices-desktop"
        change = {"links": [[team.fid, "diary.txt"]], "seq": ["bobs-device", 1]}
        if stamp != "none":
            change["placed"] = placement.stamp(signer, alice.layout.vault_id, alice.key.user_id, diary.fid,
                                               [team.fid], (device, 1))
        # bob's document, under the key her desktop sealed to him (her DEK: the same key)
        planted(shared, bobs_node_doc(shared, diary.fid, change, diary.dek))
        await trio.sleep(0)
        if stamp == "carried back":
            assert await names_found(drive, (ROOT, team_entry.st_ino), b"diary.txt", ALICE) == [False, True]
            await drive.rename(team_entry.st_ino, b"diary.txt", ROOT, b"diary.txt", 0, ALICE)
            again = {**change, "seq": ["bobs-device", 2]}
            planted(shared, bobs_node_doc(shared, diary.fid, again, diary.dek))
            await trio.sleep(0)
        in_root, in_team = await names_found(drive, (ROOT, team_entry.st_ino), b"diary.txt", ALICE)
        alarmed = any(a["subject"] == diary.fid for a in alice.tree.trust.alarms.as_list())
        return in_root, in_team, alarmed

    in_root, in_team, alarmed = trio.run(scene)
    if taken:
        assert (in_root, in_team, alarmed) == (False, True, False), "alice's own move was alarmed as bob's"
    else:
        assert (in_root, in_team, alarmed) == (True, False, True), "bob moved alice's diary out of her root"
