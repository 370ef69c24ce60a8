"""Attack round 47d: 45t (1)'s rule (only the owner adds a name that widens her file's readers) and
46d (1)'s net, from a write member's changed device.

Held (no hole): bob (WRITE in her shares ``proj`` and ``other``; carol READ in ``other``), with a
device that skips ``_may_add_name``, links her ``proj/plan.txt`` into a NEW folder ``other/N`` he
makes in the same commit, or with N's document withheld from her device until after the file's:
``Authorship._names_widen`` skips a folder not held, but the file's document waits for its folder and
is judged when it arrives; her tree keeps one name and seals nothing to carol.  Tests below, with the
control (a held folder).
"""
from __future__ import annotations

import trio
from conftest import PASSPHRASE
from mount import test_domain_permissions as domain
from mount.test_domain_permissions import three  # noqa: F401  (the fixture)


async def _setup(trees):
    from fusevault.vault.services import share_ops
    ME = domain.ME
    alice = trees.load("alice", PASSPHRASE)
    proj = await alice.mkdir(1, b"proj", 0o755, ME)
    await alice.create(proj.ino, b"plan.txt", 0o644, ME)
    await alice.mkdir(1, b"other", 0o755, ME)
    await share_ops.share(alice, b"proj", "bob", "WRITE")
    await share_ops.share(alice, b"other", "bob", "WRITE")
    await share_ops.share(alice, b"other", "carol", "READ")
    await alice.save_all()
    bob = trees.load("bob", domain.BOB)
    bob.tree._may_add_name = lambda *args: None  # his device, changed: no check before it signs
    return alice, bob


def _carol_reads(trees, alice, node) -> bool:
    carol = next(u["_id"] for u in trees.store.iter_type("UserDetails") if u["username"] == "carol")
    return any(line.startswith(carol) for line in alice.acl(node) or [])


def _scene(three, new_folder: bool, withhold: bool = False) -> tuple[int, bool, list]:  # noqa: F811
    trees = domain.Trees(three)
    out: list = []
    hold: set[str] = set()
    held: list[dict] = []
    plain = trees._committed

    def committed(writer, docs):  # the server: the new folder's document reaches alice after the file's
        plain(writer, [d for d in docs if d.get("_id") not in hold])
        held.extend(d for d in docs if d.get("_id") in hold)
    trees._committed = committed

    async def main() -> None:
        alice, bob = await _setup(trees)
        other = bob.resolve(b"shared/alice/other")
        plan = bob.resolve(b"shared/alice/proj/plan.txt")
        into = await bob.mkdir(other.ino, b"N", 0o755, domain.ME) if new_folder else other
        if withhold:
            hold.add(into.fid)
        await bob.link(plan.ino, into.ino, b"plan.txt")
        await bob.save_all()
        if withhold:
            assert held, "the folder's document was committed"
            plain(bob, held)
        mine = alice.resolve(b"proj/plan.txt")
        alarms = [a["text"] for a in alice.tree.trust.alarms.as_list() if a["subject"] == mine.fid]
        out.extend([len(mine.links), _carol_reads(trees, alice, mine), alarms])
        await trees.close()

    trio.run(main)
    return out[0], out[1], out[2]


def test_control_his_link_into_a_held_folder_is_refused(three) -> None:  # noqa: F811
    links, carol_reads, alarms = _scene(three, new_folder=False)
    assert links == 1 and not carol_reads
    assert any("only its owner adds such a name" in a for a in alarms), alarms


def test_her_device_refuses_his_link_into_a_folder_he_makes_with_it(three) -> None:  # noqa: F811
    links, carol_reads, alarms = _scene(three, new_folder=True)
    assert not carol_reads, "carol reads her file through his name in a folder he made with it"
    assert links == 1, "her tree took his name of her file in a folder carol reads"


def test_her_device_refuses_his_link_into_a_folder_withheld_until_after(three) -> None:  # noqa: F811
    links, carol_reads, alarms = _scene(three, new_folder=True, withhold=True)
    assert not carol_reads, "carol reads her file through his name in a folder withheld until after"
    assert links == 1, "her tree took his name of her file in a folder carol reads"
