"""What a member's names cost her seat once they go: the notes of names lost beside another's (vault/tree/
beside.py: a note per name lost, attack round 74b (1)'s fix) and the phantoms his names in folders
not held made (inodes.py ``drop_phantom_if_empty``, 74b (3)'s fix) stay as few as his current documents
name.  The scenes: tests/inprocess/test_attack_74b.py."""

from __future__ import annotations

import stat

import trio
from attack_scenes import BOB

from fusevault.vault.services.absorbing import absorb_arrivals, admit_new
from inprocess.conftest import BOB_UID, ROOT, shared  # noqa: F401  (fixture)
from inprocess.test_attack_70a import _signed_by
from inprocess.test_attack_73d import _bob_shares
from inprocess.test_two_users import _write


async def _his_files(shared, *names: bytes) -> tuple[str, list[str]]:  # noqa: F811
    """bob's folder P holding ``names``, shared with alice READ: P's id and his files' ids."""
    drive, alice, bob = shared.drive, shared.volumes["alice"], shared.volumes["bob"]
    p = await drive.mkdir(ROOT, b"P", stat.S_IFDIR | 0o755, BOB)
    for name in names:
        await _write(drive, p.st_ino, name, b"bob's\n", BOB)
    await _bob_shares(shared, "P")
    admit_new(alice)  # the share admitted (the seat may have already)
    return bob.resolve(b"P").fid, [bob.resolve(b"P/" + name).fid for name in names]


def _hand(shared, fid: str, change: dict) -> None:  # noqa: F811
    """bob's document of ``fid`` changed so, put as its next revision and handed to her seat."""
    store = shared.store
    doc = _signed_by(shared, "bob", fid, change)
    doc["_rev"] = store.get(fid)["_rev"]
    (rev,) = store.put_many([doc])
    absorb_arrivals(shared.volumes["alice"], [{**doc, "_rev": rev}])


def test_a_file_losing_many_names_in_fresh_folders_keeps_as_few_notes_as_its_document_names(shared) -> None:  # noqa: F811
    """bob's y.txt holds K names in a folder id not held here, his x.txt (named first) wants the same K
    names there: x is shown beside once and each name it lost noted (K).  R revisions, each in a fresh
    folder id: the notes of the names its document no longer gives go at its next arrival (its names
    decided again), the phantoms its names and y's left go too."""
    k, r_max = 60, 4

    async def scene() -> tuple[list[int], list[int]]:
        alice = shared.volumes["alice"]
        pfid, (x, y) = await _his_files(shared, b"x.txt", b"y.txt")
        names = [f"n{i}.txt" for i in range(k)]
        notes, phantoms = [], []
        for r in range(r_max):
            q = f"{r:08x}" + "e" * 24  # a folder id no seat holds, fresh each revision
            for mtime in (2 * r + 1, 2 * r + 2):  # twice: the first places one name, in a phantom it makes
                _hand(shared, y, {"links": [[pfid, "y.txt"]] + [[q, n] for n in names], "ctime": 2,
                                  "mtime": mtime})
            _hand(shared, x, {"links": [[pfid, "x.txt"]] + [[q, n] for n in names], "ctime": 1,
                              "mtime": r + 1})
            assert alice.find(y).links.count((alice.find(q).ino, b"n0.txt")) == 1, "the scene: y holds them"
            notes.append(len(alice.tree.beside))
            phantoms.append(len(alice.sharing.phantoms))
        return notes, phantoms

    notes, phantoms = trio.run(scene)
    assert notes[0] == k, f"the scene: each name x lost noted ({notes[0]})"
    assert notes == [k] * r_max, f"notes after each revision: {notes}"
    assert phantoms == [phantoms[0]] * r_max, f"phantoms after each revision: {phantoms}"


def test_a_phantom_goes_with_its_last_name_and_comes_back_with_a_new_one(shared) -> None:  # noqa: F811
    """bob's x.txt and y.txt named in a folder id not held here: the phantom stays while one holds a
    name in it, goes with the last, and is made again when a name in it comes again."""
    async def scene() -> list[list[bytes] | None]:
        alice = shared.volumes["alice"]
        pfid, (x, y) = await _his_files(shared, b"x.txt", b"y.txt")
        q = "f" * 32
        seen: list[list[bytes] | None] = []

        def look() -> None:
            held = alice.find(q)
            assert held is None or held.ino in alice.sharing.phantoms, "never shown"
            seen.append(None if held is None else sorted(held.children))

        for mtime, (fid, links) in enumerate([
                (x, [[pfid, "x.txt"], [q, "a.txt"]]), (y, [[pfid, "y.txt"], [q, "b.txt"]]),
                (x, [[pfid, "x.txt"]]), (y, [[pfid, "y.txt"]]), (x, [[pfid, "x.txt"], [q, "c.txt"]])], 1):
            _hand(shared, fid, {"links": links, "mtime": mtime})
            look()
        assert (alice.find(pfid).ino, b"x.txt") in alice.find(x).links, "x keeps its name in P"
        return seen

    seen = trio.run(scene)
    assert seen == [[b"a.txt"], [b"a.txt", b"b.txt"], [b"b.txt"], None, [b"c.txt"]], seen
