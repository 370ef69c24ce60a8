"""Attack round 69c, in-process (a real vault): the importer's compare-and-place (``write_file``'s
temporary name), and where a conflict copy goes.  The round's holes, controls and what held are in the
docstring of ``tests/unit/test_attack_69c.py``; each hole here is told in its test's docstring.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
from conftest import PASSPHRASE

from fusevault.errors import NameTooLong
from fusevault.imports.importer import Importer
from fusevault.vault.model import names
from fusevault.vault.model.nodes import Node
from fusevault.vault.model.settings import Settings
from fusevault.vault.services import conflict_copies, conflict_rules
from fusevault.vault.services.opening import unlock_vault
from fusevault.vault.services.placing import NoKernel, write_file
from fusevault.vault.tree.arrivals import Absorbed
from fusevault.vault.volume import Caller, Volume

NAME = "report.pdf"
TEMP = f".{NAME}.fvpart"  # placing.write_file's temporary name for NAME


def _takes(vault: Path, tmp_path: Path, folder_first: bool, planted: bool) -> list[str]:
    """Her ``report.pdf`` in the watched folder, and (``planted``) his folder ``.report.pdf.fvpart``
    holding a file beside it, taken in that order or the other; then her next edit of ``report.pdf``,
    taken three times (the watch's retries): the outcomes (an exception's name where a take raised)."""
    source = tmp_path / "inbox"
    source.mkdir()
    settings = Settings(source_dir_to_watch=str(source))
    unlocked = unlock_vault(vault, None, PASSPHRASE.encode())

    async def take(importer: Importer, location: str, outcomes: list[str]) -> None:
        try:
            outcomes.append((await importer.take(location))[0])
        except Exception as err:  # noqa: BLE001 - what the watch sees (and says, retrying)
            outcomes.append(type(err).__name__)

    async def main() -> list[str]:
        volume = Volume.load(unlocked.layout, unlocked.store, unlocked.key, unlocked.user["root"])
        outcomes: list[str] = []
        try:
            importer = Importer(volume, settings, NoKernel())
            await importer.load()
            (source / NAME).write_bytes(b"her first draft")
            if planted:
                (source / TEMP).mkdir()  # his: a folder's name is never ``ignored``
                (source / TEMP / "x").write_bytes(b"his")
            order = [f"{TEMP}/x", NAME] if folder_first else [NAME, f"{TEMP}/x"]
            for location in order if planted else [NAME]:
                await take(importer, location, outcomes)
            (source / NAME).write_bytes(b"her second draft")
            for _ in range(3):
                await take(importer, NAME, outcomes)
            importer.close()
        finally:
            await volume.close()
        return outcomes

    return trio.run(main)


@pytest.mark.parametrize("folder_first", [True, False], ids=["folder_first", "file_first"])
def test_69c_2_a_folder_at_the_temporary_name_does_not_stop_her_import(vault: Path, tmp_path: Path,
                                                                       folder_first: bool) -> None:
    """(2) medium-low (honest data refused for as long as the folder stands; a writer of her watched
    folder sets it off alone, without touching her file).
    Attacker: another local user who may write into her watched folder (a shared inbox; a sticky one
    lets him make names, not remove hers).
    Steps: beside her ``report.pdf`` he makes the folder ``.report.pdf.fvpart`` holding any file: the
    watch walks folders whatever their name (watcher.py:371 applies ``ignored`` to files only), so the
    vault gets the folder ``Imported/.report.pdf.fvpart``.  Then ``report.pdf`` is taken (first, or her
    next edit of it).
    Seen: every take of ``report.pdf`` raises IsADirectory: ``write_file`` (placing.py:144-146) takes
    whatever is at ``"." + name[:200] + ".fvpart"`` for a crash's leftover and unlinks it, and unlink
    refuses a folder (namespace.py:163); the same at every retry, a minute apart, her file never
    imported (a known source's whole contents hashed first each time).  ``[folder_first]``: her file
    never reaches the vault; ``[file_first]``: her first draft does, every later edit does not.
    Expected: her file imported (the temporary name one of its own when something else holds it).
    Cause: placing.py ``write_file``: a fixed temporary name per name, and anything at it taken for the
    importer's own leftover (a file of hers named so is sent to her trash, unsaid: not run here, no
    attacker makes one through the import, ``ignored`` refuses such file names).
    Fix (suggested): a random temporary name (``.NAME.fvpart-<hex>``, as ``remove_if`` and exports do),
    leftovers found by a pattern and dropped only if they are files of the importer's own (or none at
    all: a crash's is in her trash anyway); or pass over a folder at it; or ``ignored`` judged on every
    name of a location, folders too.
    """
    outcomes = _takes(vault, tmp_path, folder_first, planted=True)
    print("outcomes", outcomes)
    assert outcomes == ["new", "new", "new version", "unchanged", "unchanged"]


def test_control_69c_2_without_the_folder_her_edits_are_imported(vault: Path, tmp_path: Path) -> None:
    assert _takes(vault, tmp_path, True, planted=False) == ["new", "new version", "unchanged", "unchanged"]


async def _once(data: bytes):
    yield data


def _shown(volume: Volume, folder: Node) -> set[bytes]:
    """Every name reachable from ``folder`` (the root: what her mount shows)."""
    seen: set[bytes] = set()
    for name, ino in folder.children.items():
        seen.add(name)
        child = volume.get(ino)
        if child is not None and child.is_dir:
            seen |= _shown(volume, child)
    return seen


def _copy_into(vault: Path, removed: bool) -> tuple[bytes, set[bytes]]:
    """A losing edit whose links name the folder P (his edit of P/a.txt: rule 4) copied by the real
    ``conflict_copy`` after she removed P (``removed``) while the kernel still holds P (a shell's
    current folder: its lookup not forgotten): the copy's name and the names her tree shows."""
    unlocked = unlock_vault(vault, None, PASSPHRASE.encode())

    async def main() -> tuple[bytes, set[bytes]]:
        volume = Volume.load(unlocked.layout, unlocked.store, unlocked.key, unlocked.user["root"])
        try:
            caller = Caller(1000, 1000)
            root = volume.resolve(b"")
            edit, _ = await write_file(volume, root, b"x.txt", _once(b"his edit"), mode=0o644, caller=caller,
                                       kernel=NoKernel())  # the losing state's contents
            folder = await volume.mkdir(root.ino, b"P", 0o755, caller)  # its lookup the kernel's
            if removed:
                await volume.rmdir(root.ino, b"P")
            doc = unlocked.store.get(edit.fid)
            loser = conflict_rules.Leaf(doc={"_id": edit.fid, "_rev": doc["_rev"]}, node=edit,
                                   links=[(folder.fid, b"a.txt")], history=[])
            out = Absorbed()
            await conflict_copies.conflict_copy(volume, unlocked.store, loser, out)
            [(_, copy)] = out.entries
            return copy, _shown(volume, volume.resolve(b""))
        finally:
            await volume.close()

    return trio.run(main)


def test_69c_3_a_conflict_copy_is_not_made_in_a_folder_she_removed(vault: Path) -> None:
    """(3) low (an edit hidden from her for the session, its branch closed as copied).
    Attacker: none needed (a concurrent edit of a file in a folder she then emptied and removed on this
    device); her other device or a WRITE member whose edit of P/a.txt loses (rule 4).
    Steps: she moves a.txt out of P and removes P (rmdir) while the kernel holds P (a shell's current
    folder, a file manager's view: no FORGET yet); his concurrent edit arrives and loses.
    Seen: ``conflict_copy`` (conflicts.py:766-770) takes ``volume.find(P)``: a removed folder with no
    name is kept in the tree while the kernel holds it (inodes.py:514 ``purge_if_unused``), its
    ``children`` a dict, so it passes 67a (1)'s check; the copy is made in it, reachable from no name
    of hers, the loser closed as copied; at the next unlock the copy's link revives P (linking.py
    ``revive_for_orphans``: "skipping a dangling link" then P back with the copy, run by hand).
    Expected: the copy shown now, as for a folder gone from the tree: at the root, or P revived.
    Fix (suggested): take a parent with no links (and not the root) as gone:
    ``if parent is None or parent.children is None or (not parent.links and parent is not volume.root)``.
    """
    copy, shown = _copy_into(vault, removed=True)
    assert copy in shown


def test_control_69c_3_a_conflict_copy_in_a_folder_she_kept_is_shown(vault: Path) -> None:
    copy, shown = _copy_into(vault, removed=False)
    assert copy in shown and copy.startswith(b"a (conflict ")


LOOK_ALIKE = "shared" + "." * 249  # 255 bytes: ``skeleton`` takes the dots off its end, "shared"


def _size(vault: Path) -> int:
    return sum(f.stat().st_size for f in vault.rglob("*") if f.is_file())


def _into_root(vault: Path, tmp_path: Path, name: str) -> tuple[list[str], list[int]]:
    """A 4 MiB source ``name`` at the top of her watched folder, imported into the vault's root, taken
    three times (the watch's retries): the outcomes and what her vault's folder grew by at each."""
    source = tmp_path / "inbox"
    source.mkdir()
    settings = Settings(source_dir_to_watch=str(source), import_into="")
    unlocked = unlock_vault(vault, None, PASSPHRASE.encode())
    (source / name).write_bytes(os.urandom(4 * 2**20))

    async def main() -> tuple[list[str], list[int]]:
        volume = Volume.load(unlocked.layout, unlocked.store, unlocked.key, unlocked.user["root"])
        outcomes: list[str] = []
        grew: list[int] = []
        try:
            importer = Importer(volume, settings, NoKernel())
            await importer.load()
            for _ in range(3):
                before = _size(vault)
                try:
                    outcomes.append((await importer.take(name))[0])
                except Exception as err:  # noqa: BLE001 - what the watch sees, said once, retried
                    outcomes.append(type(err).__name__)
                grew.append(_size(vault) - before)
            importer.close()
        finally:
            await volume.close()
        return outcomes, grew

    return trio.run(main)


def test_69c_5_a_long_look_alike_of_a_kept_root_name_is_imported_once(vault: Path, tmp_path: Path) -> None:
    """(5) medium (her vault, the store and every peer grow by the whole source at each retry, once a
    minute, for as long as it stays; the source never imported; a writer of her watched folder sets it
    off alone, where her imports go to the vault's root: ``import_into`` empty).  65a (1)'s hole again,
    through another name than a copy's.
    Attacker: another local user who may write into her watched folder.
    Steps: at its top, a big file named ``shared`` followed by 249 dots (255 bytes, a valid name).
    Seen: ``_vault_path`` (importer.py) gives ``names.away_from_reserved``'s ``NAME (2)``: the name looks
    like the kept ``shared`` (its ``skeleton`` drops the dots at its end) and ``(2)`` is added whole
    (names.py ``away_from_reserved``: ``first + b" (2)" + rest``), 259 bytes.  ``_past_path_max`` counts
    PATH_MAX only; ``write_file`` writes the whole source as ``.<name[:200]>.fvpart`` (a name within 255),
    then ``_place``'s rename raises NameTooLong (not Exists: no name beside is tried) and the temporary
    file goes to her trash (``_detach``): every take raises NameTooLong and her vault's folder grew by
    ~4.2 MB a take of a 4 MiB source (printed).  The same with trailing spaces, ``groups``, ``.versions``,
    or 83 zero-width spaces; a folder of that name holding files fails at ``make_dirs`` (no copy written).
    Expected: a name within 255 bytes (the first name cut to make room for `` (2)``, as ``copy_name``
    cuts its stem), imported once, then "unchanged".
    Fix (suggested): ``away_from_reserved`` cuts ``first`` to ``MAX_BYTES - 4`` (at a character's start,
    still not a reserved look-alike) before adding `` (2)``; and ``_past_path_max`` (or ``take``) refuses
    a vault path with a name past ``names.MAX_BYTES`` before reading the source; ``write_file`` could
    check ``name`` before it writes (``Tree.check_name``).  ``transfer/output.py`` ``away_from_views``
    (a receive into the mount's root) takes the same name: the sender's own file refused there (read,
    not run).
    """
    outcomes, grew = _into_root(vault, tmp_path, LOOK_ALIKE)
    print("outcomes", outcomes, "vault grew per take", grew)
    assert outcomes == ["new", "unchanged", "unchanged"]


def test_control_69c_5_a_short_look_alike_is_imported_as_name_2(vault: Path, tmp_path: Path) -> None:
    outcomes, _ = _into_root(vault, tmp_path, "shared...")
    assert outcomes == ["new", "unchanged", "unchanged"]


# --- the fix's abuse tests: write_file's temporary names, and its name checked before any byte


def _in_root(vault: Path, scene):
    """``scene(volume, root)`` run over her unlocked vault (closed after)."""
    unlocked = unlock_vault(vault, None, PASSPHRASE.encode())

    async def main():
        volume = Volume.load(unlocked.layout, unlocked.store, unlocked.key, unlocked.user["root"])
        try:
            return await scene(volume, volume.resolve(b""))
        finally:
            await volume.close()

    return trio.run(main)


async def _write(volume: Volume, parent: Node, name: bytes, data: bytes) -> Node:
    async def chunks():
        yield data

    node, _ = await write_file(volume, parent, name, chunks(), mode=0o644, caller=Caller(1000, 1000),
                               kernel=NoKernel())
    return node


def _read(volume: Volume, parent: Node, name: bytes) -> bytes:
    async def read() -> bytes:
        fh = await volume.open(parent.children[name])
        try:
            return await volume.read(fh, 0, 1 << 20)
        finally:
            await volume.release(fh)
    return read


@pytest.mark.parametrize("planted", [b".a.txt.fvpart", b".a.txt.fvpart-0123abcd"])
def test_69c_2_a_folder_at_any_temporary_name_is_left_and_the_file_written(vault: Path,
                                                                           planted: bytes) -> None:
    async def scene(volume: Volume, root: Node):
        caller = Caller(1000, 1000)
        folder = await volume.mkdir(root.ino, planted, 0o755, caller)
        await _write(volume, folder, b"his", b"his")  # a folder holding a file: unlink would refuse it
        for data in (b"first", b"second"):
            await _write(volume, root, b"a.txt", data)
        return await _read(volume, root, b"a.txt")(), planted in root.children, sorted(folder.children)

    data, kept, inside = _in_root(vault, scene)
    assert data == b"second" and kept and inside == [b"his"]


def test_control_69c_2_a_crash_leftover_at_the_temporary_name_is_dropped(vault: Path) -> None:
    async def scene(volume: Volume, root: Node):
        await _write(volume, root, b".a.txt.fvpart", b"half a file")  # a crash's leftover
        await _write(volume, root, b"a.txt.fvpart-0123abcd", b"hers")  # no temporary's name: kept
        await _write(volume, root, b"a.txt", b"whole")
        return sorted(root.children)

    assert _in_root(vault, scene) == [b"a.txt", b"a.txt.fvpart-0123abcd"]


def test_69c_2_two_writes_of_one_name_at_once_both_end(vault: Path) -> None:
    """Random temporary names, and a leftover dropped only if no write of this process holds it: a
    second write of a name, begun while the first writes, never removes the first's file mid-write."""
    started, second_done = trio.Event(), trio.Event()

    async def first_chunks():
        yield b"one "
        started.set()
        await second_done.wait()
        yield b"one"

    async def second(volume: Volume, root: Node) -> None:
        await started.wait()
        await _write(volume, root, b"a.txt", b"two two")
        second_done.set()

    async def scene(volume: Volume, root: Node):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(second, volume, root)
            await write_file(volume, root, b"a.txt", first_chunks(), mode=0o644, caller=Caller(1000, 1000),
                             kernel=NoKernel())
        return await _read(volume, root, b"a.txt")(), sorted(root.children)

    assert _in_root(vault, scene) == (b"one one", [b"a.txt"])


def test_69c_5_write_file_refuses_a_name_past_255_bytes_before_a_byte_is_read(vault: Path) -> None:
    read: list[bytes] = []

    async def chunks():
        read.append(b"x")
        yield b"x"

    async def scene(volume: Volume, root: Node):
        with pytest.raises(NameTooLong):
            await write_file(volume, root, b"n" * 256, chunks(), mode=0o644, caller=Caller(1000, 1000),
                             kernel=NoKernel())
        return sorted(root.children)

    assert _in_root(vault, scene) == [] and read == []


def test_69c_5_the_importer_refuses_a_vault_name_past_255_bytes_before_reading(
        vault: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever name-maker gives a name past 255 bytes (here ``away_from_reserved`` as it was before the
    fix), the take refuses it before a byte of the source is read or written: said, not retried at a
    cost of the whole source."""
    def unbounded(path: bytes) -> bytes:
        first = names.like_reserved_at_root(path)
        return path if first is None else first + b" (2)" + path.strip(b"/")[len(first):]

    monkeypatch.setattr(names, "away_from_reserved", unbounded)
    outcomes, grew = _into_root(vault, tmp_path, LOOK_ALIKE)
    assert outcomes == ["InvalidInput"] * 3 and grew == [0, 0, 0]
