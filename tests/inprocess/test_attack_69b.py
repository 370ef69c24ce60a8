"""Attack round 69b (an outsider, at a9eefce): a user's own node placed in another user's private folder.

In-process, as tests/inprocess/test_link_grants.py: alice and bob unlocked in one shared mount's
``Drive``; a document bob signs is handed over as the store watcher does (``attack_scenes.planted``).
bob stands for any sync peer holding a user's signing key: a vault user, or a user the server made
(a self-signed user document is pinned at first sight, docs/SECURITY.md "Pinned identities").

(1) bob's own file placed in alice's root.  Attacker: bob (or a server-made user), with no right on
    any of alice's folders.  Steps: bob writes URGENT.txt in his root and shares it READ with alice
    (it shows in her shared/bob/), then signs a node document of HIS OWN file whose ``links`` name
    alice's root folder's fid (``[[<alice root fid>, "URGENT.txt"]]``).  Seen: URGENT.txt is listed
    in alice's root, among her own files, reading bob's bytes; no alarm.  Expected: refused (a name in
    a folder of alice's needs alice, or WRITE on that folder), shown at most under shared/bob/, said.
    Cause: vault/tree/arrivals.py:193 (``if signer == doc.get("owner"): return True``) takes an
    owner-signed state whatever folders its ``links`` name; ``Authorship.may_write`` (and
    ``_names_widen``) judge only a signer who is not the node's owner; at unlock
    ``linking.admit_guests``/``link_loaded`` link a guest node into any held folder, hers included
    (only a parent she cannot open makes it a share root, vault/tree/guests.py).  Impact: a file planted
    among hers, unnoticed (the issue's "planted node" promise), by anyone who can sign as some user.
    Suggested fix: a link from a node to a folder of another owner counts only if the node's signer
    may write that folder (the folder's owner, or WRITE on it by her verified grant); else the name
    is left out (the node shown as a share root under shared/<owner>/) with an alarm, on arrival and
    at unlock.
(2) What she saves there is sealed to bob (high).  Steps: as (1) with a folder Taxes that bob shares
    with alice WRITE and places in her root.  alice creates Taxes/return.txt in what she sees as her
    own folder.  Seen: the new file is owned by bob (a WRITE grantee's new file in the owner's folder
    is wrapped to that owner: ``owner_dek``) and bob holds its key: he reads it.  Expected: nothing she
    saves in her own tree is sealed to someone she did not choose.  Cause and fix: as (1).
(3) His file given her file's name takes her writes (high).  Steps: bob's x.txt, shared WRITE with
    alice; bob signs its node with a second name ``diary.txt`` in alice's root (where her diary.txt
    is).  Seen: the name clash is settled for bob: ``diary.txt`` is now his file, hers is shown as
    ``diary (also <her fid>).txt``; her next save of diary.txt lands in his file and bob reads
    "alice's secret entry".  A ``name-clash`` alarm is raised, but reads "given on two devices
    apart?" and names her own file as the one renamed.  Cause: as (1), and the clash settling
    (vault/tree/) ranks a foreign node's name equal to her own.  Fix: as (1).
(4) The same at her next unlock (the plant made while she is away): URGENT.txt in her root
    (``Volume.load``).  Cause: the loading path admits the owner's own node's names as (1) does.

Tried and held (kept as nothing: covered by existing tests): a grantee's link of the owner's file
into her private folder (tests/mount/test_trust_attack_round7.py), bob's node naming a folder he
may not write under the owner's own node.  End to end through real mounts, with a user the vault-folder
writer adds himself (``user add`` needs no key): tests/mount/test_attack_69b.py (5).  Not tried
(time): the same through pouchdb-server between two devices (the same documents; the arrival path is
the one ``planted`` drives).
"""

from __future__ import annotations

import os
import stat

import pyfuse3
import pytest
import trio
from attack_scenes import ALICE, BOB, ask, bobs_node_doc, names_found, planted

from fusevault.vault.model import groups
from fusevault.vault.model.nodes import Node
from fusevault.vault.volume import Volume
from inprocess.conftest import (  # noqa: F401  (fixtures)
    ALICE_UID,
    BOB_UID,
    ROOT,
    shared,
    template_vault,
    vault_copy,
)
from inprocess.test_two_users import _read, _walk, _write


async def _bob_shares(shared, path: str, perm: str = "READ") -> None:  # noqa: F811
    requests = shared.drive.seat_of(BOB_UID).ops.session.requests
    answer = await requests.handle({"cmd": "share", "path": path, "with": "alice", "perm": perm})
    assert "error" not in answer, answer


def test_bobs_own_file_placed_in_alices_root_is_not_listed_there(shared) -> None:  # noqa: F811
    async def attack() -> tuple[bool, list[str], bytes]:
        drive = shared.drive
        alice, bob = shared.volumes["alice"], shared.volumes["bob"]
        await _write(drive, ROOT, b"diary.txt", b"alice's own\n", ALICE)
        await _write(drive, ROOT, b"URGENT.txt", b"bob's planted text\n", BOB)
        await _bob_shares(shared, "URGENT.txt")
        await _walk(drive, b"shared/bob/URGENT.txt", ALICE)
        assert await names_found(drive, (ROOT,), b"URGENT.txt", ALICE) == [False]
        urgent = bob.tree.node(bob.tree.node(ROOT).children[b"URGENT.txt"])
        into_her_root = {"links": [[alice.tree.node(ROOT).fid, "URGENT.txt"]]}
        planted(shared, bobs_node_doc(shared, urgent.fid, into_her_root))
        await trio.sleep(0)
        (in_root,) = await names_found(drive, (ROOT,), b"URGENT.txt", ALICE)
        if in_root:  # what she would read as hers
            entry = await drive.lookup(ROOT, b"URGENT.txt", ALICE)
            assert await _read(drive, entry.st_ino, ALICE) == b"bob's planted text\n"
        still = await _read(drive, (await _walk(drive, b"shared/bob/URGENT.txt", ALICE)).st_ino, ALICE)
        return in_root, _said_about(shared, urgent.fid), still

    in_root, said, still = trio.run(attack)
    assert not in_root, f"bob's file is listed in alice's root as hers (alarm raised: {said})"
    assert any("only in folders of its own owner" in text for text in said), said
    assert still == b"bob's planted text\n"  # his share, where shares are shown


def test_what_alice_saves_in_a_folder_bob_placed_in_her_root_is_not_sealed_to_bob(shared) -> None:  # noqa: F811
    async def attack() -> bool:
        drive = shared.drive
        alice, bob = shared.volumes["alice"], shared.volumes["bob"]
        await _write(drive, ROOT, b"diary.txt", b"alice's own\n", ALICE)
        await drive.mkdir(ROOT, b"Taxes", stat.S_IFDIR | 0o755, BOB)
        await _bob_shares(shared, "Taxes", "WRITE")
        await _walk(drive, b"shared/bob/Taxes", ALICE)
        taxes = bob.tree.node(bob.tree.node(ROOT).children[b"Taxes"])
        planted(shared, bobs_node_doc(shared, taxes.fid, {"links": [[alice.tree.node(ROOT).fid, "Taxes"]]}))
        await trio.sleep(0)
        try:
            entry = await drive.lookup(ROOT, b"Taxes", ALICE)
        except pyfuse3.FUSEError:
            return False  # refused: nothing of hers goes there
        await _write(drive, entry.st_ino, b"return.txt", b"alice's secret return\n", ALICE)
        await trio.sleep(0.5)
        node = alice.tree.node(alice.find(taxes.fid).children[b"return.txt"])
        theirs = bob.find(node.fid)
        return theirs is not None and theirs.dek is not None

    assert not trio.run(attack), "bob holds the key of the file alice saved in a folder of her root"


def test_bobs_file_given_the_name_of_her_file_in_her_root_does_not_take_what_she_writes(shared) -> None:  # noqa: F811
    async def attack() -> tuple[bytes, list[bytes]]:
        drive = shared.drive
        alice, bob = shared.volumes["alice"], shared.volumes["bob"]
        await _write(drive, ROOT, b"diary.txt", b"alice's own\n", ALICE)
        await _write(drive, ROOT, b"x.txt", b"bob's bytes\n", BOB)
        await _bob_shares(shared, "x.txt", "WRITE")
        his = bob.tree.node(bob.tree.node(ROOT).children[b"x.txt"])
        both = {"links": [[bob.tree.node(ROOT).fid, "x.txt"], [alice.tree.node(ROOT).fid, "diary.txt"]]}
        planted(shared, bobs_node_doc(shared, his.fid, both))
        await trio.sleep(0)
        entry = await drive.lookup(ROOT, b"diary.txt", ALICE)  # her diary, as she knows it
        info = await drive.open(entry.st_ino, os.O_WRONLY | os.O_TRUNC, ALICE)
        await drive.write(info.fh, 0, b"alice's secret entry\n")
        await drive.release(info.fh)
        await trio.sleep(0.5)
        his_entry = await drive.lookup(ROOT, b"x.txt", BOB)
        return await _read(drive, his_entry.st_ino, BOB), sorted(alice.tree.node(ROOT).children)

    bob_reads, her_root = trio.run(attack)
    assert bob_reads != b"alice's secret entry\n", f"bob reads her diary.txt write; her root: {her_root}"


def test_bobs_own_file_placed_in_alices_root_is_not_listed_there_at_her_unlock(shared) -> None:  # noqa: F811
    async def attack() -> list[bytes]:
        drive = shared.drive
        alice, bob = shared.volumes["alice"], shared.volumes["bob"]
        await _write(drive, ROOT, b"diary.txt", b"alice's own\n", ALICE)
        await _write(drive, ROOT, b"URGENT.txt", b"bob's planted text\n", BOB)
        await _bob_shares(shared, "URGENT.txt")
        urgent = bob.tree.node(bob.tree.node(ROOT).children[b"URGENT.txt"])
        into_her_root = {"links": [[alice.tree.node(ROOT).fid, "URGENT.txt"]]}
        planted(shared, bobs_node_doc(shared, urgent.fid, into_her_root))
        await trio.sleep(0)
        again = Volume.load(alice.layout, alice.store, alice.key, alice.tree.get(1).fid)  # her next unlock
        return sorted(again.tree.node(ROOT).children)

    assert b"URGENT.txt" not in trio.run(attack), "bob's file is in alice's root at her unlock"


async def _her_folder_with_his_file_named_in_it(shared, perm: str, group: bool,  # noqa: F811
                                                 ) -> tuple[Node, Node, Node]:
    """alice's folder docs holding her plan.txt, shared with bob (``perm``; through her group team,
    bob a member with WRITE, if ``group``); bob's own x.txt shared READ with alice; then bob's node
    document of x.txt naming it in docs as x.txt and as plan.txt (her file's name).  (docs, her
    plan.txt, his x.txt), as alice's tree holds them."""
    drive = shared.drive
    alice, bob = shared.volumes["alice"], shared.volumes["bob"]
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    await _write(drive, docs.st_ino, b"plan.txt", b"alice's plan\n", ALICE)
    if group:
        me, him = alice.store.get(alice.key.user_id), alice.store.get(bob.key.user_id)
        team = groups.create_group(alice.store, "team", me, alice.trust.sign)
        groups.set_member(alice.store, alice.store.get(team["_id"]), him, "READ,WRITE", sign=alice.trust.sign)
        for volume in (alice, bob):
            volume.sharing.reload(volume.store)
        requests = drive.seat_of(ALICE_UID).ops.session.requests
        answer = await requests.handle({"cmd": "share", "path": "docs", "with": "@team", "perm": perm})
        assert "error" not in answer, answer
    else:
        await ask(shared, "share", "docs", perm)
    await _write(drive, ROOT, b"x.txt", b"bob's bytes\n", BOB)
    await _bob_shares(shared, "x.txt")
    await _walk(drive, b"shared/bob/x.txt", ALICE)
    his = bob.tree.node(bob.tree.node(ROOT).children[b"x.txt"])
    folder, mine = alice.resolve(b"docs"), alice.resolve(b"docs/plan.txt")
    named = {"links": [[bob.tree.node(ROOT).fid, "x.txt"], [folder.fid, "x.txt"], [folder.fid, "plan.txt"]]}
    planted(shared, bobs_node_doc(shared, his.fid, named))
    await trio.sleep(0)
    return folder, mine, alice.find(his.fid)


def _said_about(shared, fid: str) -> list[str]:  # noqa: F811
    return [a["text"] for a in shared.volumes["alice"].trust.alarms.as_list() if a["subject"] == fid]


@pytest.mark.parametrize("group", [False, True], ids=["user", "group"])
@pytest.mark.parametrize("at_unlock", [False, True], ids=["on_arrival", "at_unlock"])
def test_his_own_file_named_in_her_folder_he_reads_only_is_not_listed_there(shared, group, at_unlock) -> None:  # noqa: F811
    """A folder she shares with him READ (or with a group of his READ): his own node's names in it
    are left out, said naming him, on arrival and at her unlock; her plan.txt keeps its name."""
    async def scene() -> tuple[dict[bytes, int], int, str]:
        alice = shared.volumes["alice"]
        folder, mine, his = await _her_folder_with_his_file_named_in_it(shared, "READ", group)
        if at_unlock:
            alice = Volume.load(alice.layout, alice.store, alice.key, alice.tree.get(1).fid)
            folder = alice.find(folder.fid)
        return dict(folder.children), alice.find(mine.fid).ino, his.fid

    children, mine, his = trio.run(scene)
    assert children == {b"plan.txt": mine}, children
    assert any("only in folders of its own owner" in text for text in _said_about(shared, his))


@pytest.mark.parametrize("group", [False, True], ids=["user", "group"])
@pytest.mark.parametrize("at_unlock", [False, True], ids=["on_arrival", "at_unlock"])
def test_his_own_file_named_in_her_folder_he_writes_is_not_listed_either(
        shared, group, at_unlock) -> None:  # noqa: F811
    """In a folder she shares with him WRITE (or with his group WRITE), his own file's names do not
    count either (round 71a: a node is named only in folders of its own owner; 69b's rule let them,
    and what she then saved in his folder named in hers was sealed to him, 71a (3)); her plan.txt
    keeps its name, his names are left out, said naming him, on arrival and at her unlock."""
    async def scene() -> tuple[dict[bytes, str], str, str]:
        alice = shared.volumes["alice"]
        folder, mine, his = await _her_folder_with_his_file_named_in_it(shared, "WRITE", group)
        if at_unlock:
            alice = Volume.load(alice.layout, alice.store, alice.key, alice.tree.get(1).fid)
            folder = alice.find(folder.fid)
        return {name: alice.tree.node(ino).fid for name, ino in folder.children.items()}, mine.fid, his.fid

    children, mine, his = trio.run(scene)
    assert children == {b"plan.txt": mine}, children
    assert any("only in folders of its own owner" in text for text in _said_about(shared, his))
