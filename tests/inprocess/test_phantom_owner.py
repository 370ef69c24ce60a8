"""A phantom's owner (vault/tree/phantoms.py): unknown until its own document says it (attack round 70a).

The scenes of tests/inprocess/test_attack_70a.py, pushed further: a phantom judged against no owner
(no grant on it counts, no writer's move into it is taken), the owner its real document names taken
whoever that is, and what was named in it judged again by that owner's grants; her restore of a file
at a phantom's id, in place and ``--to``.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import trio
from attack_scenes import ALICE, BOB, ask, bobs_node_doc, planted
from mount.test_trust_attack_39a import _ask, three  # noqa: F401  (fixture)

from fusevault.crypto.signing import sign_doc
from fusevault.vault.model.sharing import Grant, share_doc
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
from inprocess.test_attack_53c import CAROL, CAROL_UID, _in_scene
from inprocess.test_attack_70a import HERS, _laptop, _read_node, _signed_by
from inprocess.test_two_users import _read, _walk, _write


async def _phantom_of_bobs(shared, monkeypatch) -> tuple[Volume, str]:  # noqa: F811
    """Her laptop's folder Secret (id P) held back from her desktop; bob's x.txt named in P and
    shared with her: P a phantom on the desktop.  (the laptop, P)."""
    drive, alice, bob = shared.drive, shared.volumes["alice"], shared.volumes["bob"]
    laptop = _laptop(shared, monkeypatch)
    p = (await laptop.mkdir(ROOT, b"Secret", stat.S_IFDIR | 0o700, HERS)).fid
    await _write(drive, ROOT, b"x.txt", b"bob's\n", BOB)
    his = bob.resolve(b"x.txt")
    both = {"links": [[bob.tree.node(ROOT).fid, "x.txt"], [p, "x.txt"]]}
    planted(shared, bobs_node_doc(shared, his.fid, both))
    answer = await drive.seat_of(BOB_UID).ops.session.requests.handle(
        {"cmd": "share", "path": "x.txt", "with": "alice", "perm": "READ"})
    assert "error" not in answer, answer
    held = alice.find(p)
    assert held is not None and held.ino in alice.sharing.phantoms, "the scene: P a phantom on the desktop"
    return laptop, p


def test_a_phantom_has_no_owner_and_takes_the_one_its_document_names(shared, monkeypatch) -> None:  # noqa: F811
    """While a phantom, P is nobody's: bob's Share of it (any user signs a Share of any id) gives
    her nothing there; once her own document of P comes, P is hers and bob's name in it is left
    out, said, his x.txt still shown in shared/bob/."""
    async def scene() -> dict:
        drive, alice, bob = shared.drive, shared.volumes["alice"], shared.volumes["bob"]
        _, p = await _phantom_of_bobs(shared, monkeypatch)
        grant = share_doc(Grant(bob.key.user_id, p, alice.key.user_id, False, "READ,WRITE"))
        planted(shared, sign_doc(bob.key.user_id, bob.key.identity.sign, grant))
        ghost = alice.find(p)
        seen: dict = {"phantom's owner": ghost.owner, "perm": alice.tree.perm(ghost)}
        absorb_arrivals(alice, [shared.store.get(p)])
        folder = alice.find(p)
        seen["owner"] = folder.owner == alice.key.user_id
        seen["lists"] = sorted(folder.children)
        seen["said"] = any("x.txt" in a["text"] and p in a["text"] for a in alice.trust.alarms.as_list())
        seen["his still shared"] = await _read(drive, (await _walk(drive, b"shared/bob/x.txt", ALICE)).st_ino,
                                               ALICE)
        return seen

    seen = trio.run(scene)
    assert seen == {"phantom's owner": "", "perm": None, "owner": True, "lists": [], "said": True,
                    "his still shared": b"bob's\n"}, seen


@pytest.mark.parametrize("bob_writes", [False, True], ids=["no_grant", "carol_gives_bob_write"])
def test_a_phantoms_document_naming_a_third_owner_judges_its_names_by_her_grants(
        three: Path, bob_writes: bool) -> None:  # noqa: F811
    """bob's x.txt named in carol's folder C (a phantom on alice's seat); carol then shares C with
    alice: C is carol's there, and bob's name in it never counts, carol's WRITE grant to him or not
    (round 71a: a node is named only in its own owner's folders)."""
    async def scene(shared) -> tuple[bool, bool, bytes]:  # noqa: F811
        drive = shared.drive
        alice, bob, carol = shared.volumes["alice"], shared.volumes["bob"], shared.volumes["carol"]
        folder = await drive.mkdir(ROOT, b"C", stat.S_IFDIR | 0o755, CAROL)
        await _write(drive, folder.st_ino, b"carols.txt", b"carol's\n", CAROL)
        c = carol.resolve(b"C").fid
        if bob_writes:
            answer = await drive.seat_of(CAROL_UID).ops.session.requests.handle(
                {"cmd": "share", "path": "C", "with": "bob", "perm": "WRITE"})
            assert "error" not in answer, answer
        await _write(drive, ROOT, b"x.txt", b"bob's\n", BOB)
        links = {"links": [[bob.tree.node(ROOT).fid, "x.txt"], [c, "x.txt"]]}
        planted(shared, _signed_by(shared, "bob", bob.resolve(b"x.txt").fid, links))
        answer = await drive.seat_of(BOB_UID).ops.session.requests.handle(
            {"cmd": "share", "path": "x.txt", "with": "alice", "perm": "READ"})
        assert "error" not in answer, answer
        assert alice.find(c).ino in alice.sharing.phantoms, "the scene: C a phantom on alice's seat"
        answer = await drive.seat_of(CAROL_UID).ops.session.requests.handle(
            {"cmd": "share", "path": "C", "with": "alice", "perm": "READ"})
        assert "error" not in answer, answer
        await trio.sleep(0.3)
        held = alice.find(c)
        data = await _read(drive, (await _walk(drive, b"shared/carol/C/carols.txt", ALICE)).st_ino, ALICE)
        return held.owner == carol.key.user_id, b"x.txt" in held.children, data

    carols, listed, data = _in_scene(three, scene)
    assert carols and data == b"carol's\n"
    assert not listed, f"bob's name in carol's folder counts (carol gives him WRITE: {bob_writes})"


def test_a_writers_move_of_her_file_into_a_phantom_is_refused(shared, monkeypatch) -> None:  # noqa: F811
    """bob, a writer of her docs, moves her docs/f.txt into P, a phantom on her desktop (whose folder
    is not known there): refused, said; her file stays in docs (taken, it was shown nowhere)."""
    async def scene() -> tuple[list[bytes], bool]:
        drive, alice = shared.drive, shared.volumes["alice"]
        docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
        await _write(drive, docs.st_ino, b"f.txt", b"alice's f\n", ALICE)
        await ask(shared, "share", "docs", "WRITE")
        await _walk(drive, b"shared/alice/docs/f.txt", BOB)
        mine = alice.resolve(b"docs/f.txt")
        _, p = await _phantom_of_bobs(shared, monkeypatch)
        planted(shared, bobs_node_doc(shared, mine.fid, {"links": [[p, "f.txt"]]}))
        said = any(a["subject"] == mine.fid and "not held here" in a["text"]
                   for a in alice.trust.alarms.as_list())
        return sorted(alice.resolve(b"docs").children), said

    listed, said = trio.run(scene)
    assert listed == [b"f.txt"] and said, (listed, said)


@pytest.mark.parametrize("to", [None, b"copy.txt"], ids=["in_place", "to"])
def test_her_restore_at_a_phantoms_id(shared, to: bytes | None) -> None:  # noqa: F811
    """70a (3)'s scene: her a.txt in her trash, its id named as his folder by bob's shared x.txt (a
    phantom at her unlock): restored in place (the phantom gives way) and ``--to``."""
    async def scene() -> tuple[bytes, bytes, bool]:
        drive, alice, bob = shared.drive, shared.volumes["alice"], shared.volumes["bob"]
        await _write(drive, ROOT, b"a.txt", b"alice's a\n", ALICE)
        fid = alice.resolve(b"a.txt").fid
        await drive.unlink(ROOT, b"a.txt", ALICE)
        await trio.sleep(0.3)
        await _write(drive, ROOT, b"x.txt", b"bob's\n", BOB)
        his = bob.resolve(b"x.txt")
        planted(shared, bobs_node_doc(shared, his.fid, {"links": [[bob.tree.node(ROOT).fid, "x.txt"],
                                                                  [fid, "x.txt"]]}))
        answer = await drive.seat_of(BOB_UID).ops.session.requests.handle(
            {"cmd": "share", "path": "x.txt", "with": "alice", "perm": "READ"})
        assert "error" not in answer, answer
        again = Volume.load(alice.layout, alice.store, alice.key, alice.tree.get(1).fid)  # her unlock
        try:
            assert again.find(fid).ino in again.sharing.phantoms, "the scene: a phantom at her file's id"
            where, _, node = await recovery.restore(again, b"a.txt", to=to)
            data = await _read_node(again, again.resolve(where))
            x = again.find(his.fid)
            return where, data, x is not None and x.dek != b"" and not any(
                again.tree.get(ino) is None for ino, _ in x.links)
        finally:
            await again.close()

    where, data, his_kept = trio.run(scene)
    assert where == (to or b"a.txt") and data == b"alice's a\n" and his_kept, (where, data, his_kept)
