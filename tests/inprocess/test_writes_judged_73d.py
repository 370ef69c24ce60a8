"""Attack round 73d (3) and (6), around their fixes: one rule for a writer's change.

(3) At her unlock a node's names another node held first are judged with it (``Authorship.settle``'s
``beside``, from loading.py's ``taken``): judged from no name, a writer's file given her file's name
left her tree, a writer's edit of her file whose name another took first was rebuilt from her own
material, and a guest a writer signed left hers, each with a false forged-write alarm.  Names in a
folder he cannot write are still refused.  A share admitted while mounted (absorbing.py
``_admit_new_shares``) judges its guests so too, with the names ``admit_guests`` found taken.

(6) A seat's write to another's node through the shared mount asks what her devices ask of his
document (``Guests.writes_at``: WRITE on every folder it sits in, the ones he cannot see too), and a
guest's names in folders not held keep their phantoms on arrival as at the load: the best share over
its first name let bob rename (or edit) her file that sits in her private folder too, or in a folder
of hers he only reads; and a link she made after the share was dropped on his seat, his next commit
taking her name in private/ away.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import pyfuse3
import pytest
import trio
from attack_scenes import ALICE, BOB, ask, planted
from mount.test_trust_attack_39a import three  # noqa: F401  (fixture)

from fusevault.crypto.signing import signer_of
from fusevault.vault.tree import guests, namespace
from fusevault.vault.volume import Volume
from inprocess.conftest import ALICE_UID, BOB_UID, ROOT, shared  # noqa: F401  (fixture)
from inprocess.test_attack_53c import _in_scene
from inprocess.test_attack_70a import _read_node, _signed_by
from inprocess.test_attack_73d import _share
from inprocess.test_two_users import _walk, _write

WARNED = ("forged-write", "rebuilt")


async def _edit(drive, path: bytes, data: bytes, ctx) -> None:
    entry = await _walk(drive, path, ctx)
    info = await drive.open(entry.st_ino, os.O_RDWR, ctx)
    try:
        await drive.write(info.fh, 0, data)
    finally:
        await drive.release(info.fh)


def _unlocked(volume: Volume):
    return Volume.load(volume.layout, volume.store, volume.key, volume.tree.get(1).fid)


def _warned(volume: Volume, *fids: str) -> list[str]:
    return [a["text"][:160] for a in volume.trust.alarms.as_list()
            if a["kind"] in WARNED and a["subject"] in fids]


def test_his_edit_of_her_file_stored_after_his_file_of_its_name_is_kept_at_her_unlock(shared) -> None:  # noqa: F811
    """bob (WRITE on her docs) edits her plan.txt; his other device names his other.txt plan.txt there;
    the store holds his edit's document after it.  At her unlock other.txt takes the name first: her
    plan.txt, judged from no name, was refused and rebuilt ``plan.txt (recovered ID)``, said as his
    forgery.  Judged where it is shown (beside), his edit is kept, as while mounted."""
    async def scene():
        drive, alice, bob = shared.drive, shared.volumes["alice"], shared.volumes["bob"]
        docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
        await _write(drive, docs.st_ino, b"plan.txt", b"alice's plan\n", ALICE)
        await ask(shared, "share", "docs", "WRITE")
        await trio.sleep(0.3)
        d = await _walk(drive, b"shared/alice/docs", BOB)
        await _write(drive, d.st_ino, b"other.txt", b"bob's text\n", BOB)
        await _edit(drive, b"shared/alice/docs/plan.txt", b"bob's edit of her plan\n", BOB)
        await trio.sleep(0.3)
        plan, other = alice.resolve(b"docs/plan.txt").fid, bob.resolve(b"shared/alice/docs/other.txt").fid
        assert signer_of(shared.store.get(plan)) == bob.key.user_id, "the scene: his edit her file's state"
        named = {"links": [[alice.resolve(b"docs").fid, "plan.txt"]]}
        planted(shared, _signed_by(shared, "bob", other, named))
        planted(shared, dict(shared.store.get(plan)))  # his edit's document, stored after (replication order)
        await trio.sleep(0.3)
        live = sorted(alice.resolve(b"docs").children)
        again = _unlocked(alice)
        try:
            unlocked = sorted(again.resolve(b"docs").children)
            read = await _read_node(again, again.find(plan))
            said = _warned(again, plan, other)
        finally:
            await again.close()
        return live, unlocked, read, said

    live, unlocked, read, said = trio.run(scene)
    assert len(live) == 2 and b"plan.txt" in live, f"the scene: both shown while mounted ({live})"
    assert (unlocked, read, said) == (live, b"bob's edit of her plan\n", []), (unlocked, read, said)


def test_her_edit_of_his_file_stored_after_his_file_of_its_name_stays_at_her_unlock(shared) -> None:  # noqa: F811
    """alice (WRITE on bob's P) edits his a.txt; his device names his b.txt a.txt there; the store holds
    her edit's document after it.  At her unlock b.txt takes the name first: a.txt, a guest whose state
    she signed, judged from no name, left her tree, said as her own forgery.  Judged beside: shown."""
    async def scene():
        drive, alice, bob = shared.drive, shared.volumes["alice"], shared.volumes["bob"]
        p = await drive.mkdir(ROOT, b"P", stat.S_IFDIR | 0o755, BOB)
        await _write(drive, p.st_ino, b"a.txt", b"bob's a\n", BOB)
        await _write(drive, p.st_ino, b"b.txt", b"bob's b\n", BOB)
        answer = await drive.seat_of(BOB_UID).ops.session.requests.handle(
            {"cmd": "share", "path": "P", "with": "alice", "perm": "WRITE"})
        assert "error" not in answer, answer
        await trio.sleep(0.3)
        await _edit(drive, b"shared/bob/P/a.txt", b"alice's edit of his a\n", ALICE)
        await trio.sleep(0.3)
        a, b = bob.resolve(b"P/a.txt").fid, bob.resolve(b"P/b.txt").fid
        assert signer_of(shared.store.get(a)) == alice.key.user_id, "the scene: her edit his file's state"
        planted(shared, _signed_by(shared, "bob", b, {"links": [[bob.resolve(b"P").fid, "a.txt"]]}))
        planted(shared, dict(shared.store.get(a)))  # her edit's document, stored after
        await trio.sleep(0.3)
        live = sorted(alice.resolve(b"shared/bob/P").children)
        again = _unlocked(alice)
        try:
            unlocked = sorted(again.resolve(b"shared/bob/P").children)
            node = again.find(a)
            read = None if node is None or not node.links else await _read_node(again, node)
            said = _warned(again, a, b)
        finally:
            await again.close()
        return live, unlocked, read, said

    live, unlocked, read, said = trio.run(scene)
    assert len(live) == 2 and b"a.txt" in live, f"the scene: both shown while mounted ({live})"
    assert (unlocked, read, said) == (live, b"alice's edit of his a\n", []), (unlocked, read, said)


def test_a_writers_file_given_her_files_name_where_he_cannot_write_is_still_refused(shared) -> None:  # noqa: F811
    """Control: the names judged beside are judged: bob's document moving his other.txt (in her docs) to
    plan.txt in her private/, where her own plan.txt holds the name and he holds no WRITE: refused, said,
    at her unlock as while mounted; nothing of his in private/."""
    async def scene():
        drive, alice, bob = shared.drive, shared.volumes["alice"], shared.volumes["bob"]
        await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
        private = await drive.mkdir(ROOT, b"private", stat.S_IFDIR | 0o700, ALICE)
        await _write(drive, private.st_ino, b"plan.txt", b"alice's plan\n", ALICE)
        await ask(shared, "share", "docs", "WRITE")
        await trio.sleep(0.3)
        d = await _walk(drive, b"shared/alice/docs", BOB)
        await _write(drive, d.st_ino, b"other.txt", b"bob's text\n", BOB)
        await trio.sleep(0.3)
        other = bob.resolve(b"shared/alice/docs/other.txt").fid
        planted(shared, _signed_by(shared, "bob", other,
                                   {"links": [[alice.resolve(b"private").fid, "plan.txt"]]}))
        await trio.sleep(0.3)
        live = sorted(alice.resolve(b"private").children)
        again = _unlocked(alice)
        try:
            unlocked = sorted(again.resolve(b"private").children)
            said = _warned(again, other)
        finally:
            await again.close()
        return live, unlocked, said

    live, unlocked, said = trio.run(scene)
    assert live == unlocked == [b"plan.txt"], (live, unlocked)
    assert said, "his name in her private folder refused, and said"


async def _hers_in_docs_and(shared, other: bytes, perm: str | None, first: bytes = b"docs",  # noqa: F811
                            after: bool = False) -> tuple[str, int]:
    """alice's docs (WRITE to bob) and ``other`` (``perm`` to bob, or not shared), her plan.txt made in
    ``first`` and hard-linked into the other (``after``: linked once docs is shared).  (its id, the
    inode of bob's docs on the drive)."""
    drive, alice = shared.drive, shared.volumes["alice"]
    docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
    there = await drive.mkdir(ROOT, other, stat.S_IFDIR | 0o755, ALICE)
    home, second = (docs, there) if first == b"docs" else (there, docs)
    plan = await _write(drive, home.st_ino, b"plan.txt", b"alice's plan\n", ALICE)
    if not after:
        await drive.link(plan.st_ino, second.st_ino, b"plan.txt", ALICE)
    await ask(shared, "share", "docs", "WRITE")
    if perm is not None:
        await ask(shared, "share", other.decode(), perm)
    await trio.sleep(0.3)
    if after:
        await drive.link(plan.st_ino, second.st_ino, b"plan.txt", ALICE)
        await trio.sleep(0.3)
    d = await _walk(drive, b"shared/alice/docs", BOB)
    return alice.resolve(b"docs/plan.txt").fid, d.st_ino


async def _his_mv(shared, docs_ino: int) -> object:  # noqa: F811
    try:
        await shared.drive.rename(docs_ino, b"plan.txt", docs_ino, b"old.txt", 0, BOB)
    except pyfuse3.FUSEError as err:
        return err.errno
    return "renamed"


def _after(shared, other: bytes, fid: str) -> Callable[[], Awaitable[tuple[list, list, list]]]:  # noqa: F811
    """What alice's seat shows in docs and ``other``, what her unlock does, and what it says of ``fid``."""
    async def look() -> tuple[list, list, list]:
        alice = shared.volumes["alice"]
        mounted = [sorted(alice.resolve(b"docs").children), sorted(alice.resolve(other).children)]
        again = _unlocked(alice)
        try:
            unlocked = [sorted(again.resolve(b"docs").children), sorted(again.resolve(other).children)]
            said = [a["text"][:160] for a in again.trust.alarms.as_list() if a["subject"] == fid]
        finally:
            await again.close()
        return mounted, unlocked, said
    return look


def test_his_write_to_her_file_also_in_her_private_folder_is_refused_at_his_seat(shared) -> None:  # noqa: F811
    """73d (6)'s edit: bob's seat opened her plan.txt (in docs and in her private/) for writing; his
    edit, taken live by her seat, was refused at her unlock.  Now EACCES at his seat."""
    async def scene():
        fid, _ = await _hers_in_docs_and(shared, b"private", None)
        try:
            await _edit(shared.drive, b"shared/alice/docs/plan.txt", b"bob's edit\n", BOB)
            outcome: object = "written"
        except pyfuse3.FUSEError as err:
            outcome = err.errno
        await trio.sleep(0.3)
        data = await _read_node(shared.volumes["alice"], shared.volumes["alice"].resolve(b"private/plan.txt"))
        return outcome, data, await _after(shared, b"private", fid)()

    outcome, data, (mounted, unlocked, said) = trio.run(scene)
    assert (outcome, data) == (errno.EACCES, b"alice's plan\n"), (outcome, data)
    assert mounted == unlocked == [[b"plan.txt"], [b"plan.txt"]] and not said, (mounted, unlocked, said)


def test_her_link_into_private_made_after_the_share_is_held_on_his_seat(shared) -> None:  # noqa: F811
    """73d (6) in the other order: she hard-links docs/plan.txt into private/ after sharing docs.  His
    seat took the new name in (a folder it does not hold) as nothing: his mv was allowed, and its
    commit took her name in private/ away, live and at her unlock.  Now held as a phantom, as at the
    load: refused at his seat."""
    async def scene():
        fid, docs_ino = await _hers_in_docs_and(shared, b"private", None, after=True)
        outcome = await _his_mv(shared, docs_ino)
        await trio.sleep(0.3)
        return outcome, await _after(shared, b"private", fid)()

    outcome, (mounted, unlocked, said) = trio.run(scene)
    assert outcome == errno.EACCES, outcome
    assert mounted == unlocked == [[b"plan.txt"], [b"plan.txt"]] and not said, (mounted, unlocked, said)


@pytest.mark.parametrize("first", [b"docs", b"pub"], ids=["made_in_docs", "made_in_pub"])
def test_his_mv_of_her_file_also_in_a_folder_he_only_reads_is_refused_whatever_its_first_name(
        shared, first: bytes) -> None:  # noqa: F811
    """Her plan.txt in docs (WRITE to bob) and in pub (READ to bob): her devices refuse his rename
    (``writes_at``: no WRITE through pub).  His seat judged by the share over its first name only:
    made in docs, his mv went, her unlock undid it.  Now refused either way."""
    async def scene():
        fid, docs_ino = await _hers_in_docs_and(shared, b"pub", "READ", first=first)
        outcome = await _his_mv(shared, docs_ino)
        await trio.sleep(0.3)
        return outcome, await _after(shared, b"pub", fid)()

    outcome, (mounted, unlocked, said) = trio.run(scene)
    assert outcome == errno.EACCES, outcome
    assert mounted == unlocked == [[b"plan.txt"], [b"plan.txt"]] and not said, (mounted, unlocked, said)


@pytest.mark.parametrize("to", [
    pytest.param(b"docs", id="beside_where_he_writes"),
    pytest.param(b"pub", id="control_where_he_only_reads"),
])
def test_his_edit_of_her_file_whose_name_another_holds_is_kept_on_a_share_admitted_while_mounted(
        three: Path, monkeypatch, to: bytes) -> None:  # noqa: F811
    """(3) where a share is admitted while mounted (absorbing.py ``_admit_new_shares``): alice's docs
    (WRITE to bob) and pub (READ to bob); bob edits her docs/plan.txt and his document of it names it
    notes.txt in ``to``, where her own notes.txt holds the name.  alice then shares pub and docs with
    carol, whose seat admits them mounted, notes.txt placed first: her plan.txt, judged from no name,
    left carol's tree, said as bob's forgery.  Judged beside (as the unlock), his edit is kept in docs;
    in pub, where he holds no WRITE, it is still refused and said."""
    async def scene(shared) -> tuple[list[bytes], list[bytes], bytes | None, list[str]]:  # noqa: F811
        drive, alice, bob, carol = (shared.drive, shared.volumes["alice"], shared.volumes["bob"],
                                    shared.volumes["carol"])
        docs = await drive.mkdir(ROOT, b"docs", stat.S_IFDIR | 0o755, ALICE)
        pub = await drive.mkdir(ROOT, b"pub", stat.S_IFDIR | 0o755, ALICE)
        for folder, fid in ((docs, "0" * 31 + "1"), (pub, "0" * 31 + "2")):  # listed before plan.txt
            monkeypatch.setattr(namespace, "new_id", lambda fid=fid: fid)
            await _write(drive, folder.st_ino, b"notes.txt", b"alice's notes\n", ALICE)
        monkeypatch.setattr(namespace, "new_id", lambda: "f" * 32)
        await _write(drive, docs.st_ino, b"plan.txt", b"alice's plan\n", ALICE)
        monkeypatch.undo()
        await ask(shared, "share", "docs", "WRITE")
        await ask(shared, "share", "pub", "READ")
        await trio.sleep(0.3)
        await _edit(drive, b"shared/alice/docs/plan.txt", b"bob's edit of her plan\n", BOB)
        await trio.sleep(0.3)
        plan = alice.resolve(b"docs/plan.txt").fid
        # his document of it named notes.txt in ``to`` (his other device apart named it so: 40b (7))
        planted(shared, _signed_by(shared, "bob", plan, {"links": [[alice.resolve(to).fid, "notes.txt"]]}))
        await trio.sleep(0.3)
        assert signer_of(shared.store.get(plan)) == bob.key.user_id, "the scene: his, her file's state"
        # The key files listed by file id, as a file system may list them: notes.txt takes the name first.
        listed = guests._listdir
        monkeypatch.setattr(guests, "_listdir", lambda path: sorted(listed(path),
                                                                    key=lambda e: e.split("_", 1)[-1]))
        for path in ("pub", "docs"):  # admitted on carol's seat while mounted, one share after the other
            await _share(drive, ALICE_UID, path, "carol", "READ")
        monkeypatch.undo()
        shown = sorted(carol.resolve(b"shared/alice/" + to).children)
        node = carol.find(plan)
        read = await _read_node(carol, node) if node is not None and node.links else None
        said = [a["text"][:160] for a in carol.trust.alarms.as_list()
                if a["kind"] == "forged-write" and a["subject"] == plan]
        return shown, sorted(alice.resolve(to).children), read, said

    shown, hers, read, said = _in_scene(three, scene)
    if to == b"docs":
        assert len(hers) == 2 and b"notes.txt" in hers, f"the scene: both shown on her seat ({hers})"
        assert (shown, read, said) == (hers, b"bob's edit of her plan\n", []), (shown, read, said)
    else:
        assert hers == [b"notes.txt"], f"the scene: refused on her seat ({hers})"
        assert (shown, read) == ([b"notes.txt"], None) and said, (shown, read, said)
