"""Attack round 64c: round 63c (1)'s fix (7b70cee, 6a1e582: import records hold no path past PATH_MAX,
``load_records`` drops one past it, ``take`` refuses such a source, ``_drop_gone`` drops records whose
vault file and source are both gone), in-process, a real vault.

(1) low (honest data duplicated without bound; a writer of her watched folder can set it off alone):
  a copy beside under a numbered (or random) name passes the bound ``_past_path_max`` counted; its
  record is dropped at every start and the unchanged source imported once more each time
Attacker: none needed (her file at the place, the source saved twice in a minute), or another user who
  writes into her watched folder.
Steps: ``test_64c_1_a_numbered_copy_beside_passes_path_max_and_is_imported_again_at_every_start``: a
  source ``a`` whose vault path plus the " (conflict import <minute>)" tail is exactly 4,096 bytes;
  imported, she edits the vault's file, the source is saved twice in one minute: the second copy goes
  beside as "a (conflict import 2 <minute>)", 2 bytes longer.
  ``test_64c_1_a_writer_of_her_watched_folder_alone_gets_a_copy_made_at_every_start``: he imports
  ``x/f`` (a vault folder ``x``), removes it, then saves a file ``x`` ten times with one minute's
  mtime (his file: he sets it): each goes beside the folder, the tenth as " import 10" (+3 bytes).
Seen: the record names a 4,098 (4,097) byte vault path; every later start drops it ("such files are
  not imported any more", which is not so), finds her file at the place and no record, and imports the
  unchanged source beside once more: copies "import 3", "4", "5" at three starts (13 copies for his 10
  saves), then random names past ``NUMBERED``, for as long as the source stays (the default keeps it).
Expected: the record held (its copy named within the bound), the source "unchanged" at each start.
Cause: imports/importer.py ``_past_path_max`` counts only the first copy name (``copy_name(name,
  "import", 0)``), while ``_copy_names`` (63a (2)) yields " import N" (up to 5 bytes more) and
  " import <8 hex>" (9 more) and ``_save`` writes whatever ``path_of`` gives; ``copy_name``'s "%Y" is
  5 bytes past year 9999 too (a source's mtime on tmpfs can be, e.g. year 14645: not run here);
  import_records.py ``load_records`` then drops the record (``too_long``).
Impact: one more copy of the file in her vault (and store) at every start of the watch (mount,
  unlock), without bound; the "import-record" warning each time.  Paths within ~9 bytes of the bound.
Fix (suggested): count the longest name ``_copy_names`` may give (the random one, a 5-digit year), or
  have ``write_file``'s beside names refuse past the bound (InvalidInput, said), or cut the copy's
  stem to fit PATH_MAX as ``copy_name`` does NAME_MAX; never save a record ``too_long`` would drop.

(2) medium, honest use only (a file she deleted from her vault resurrected, unsaid): a record is
  dropped when its source only looked gone at a start
Attacker: none needed (honest use: the watched folder, or a folder in it, out of sight at a start: a
  disk or network folder not mounted yet, a folder moved away and back); her second device's case is
  the open list's.
Steps: ``test_64c_2_a_file_she_deleted_from_the_vault_comes_back_after_a_start_its_source_out_of_sight``:
  ``docs/a.txt`` imported; she deletes it from her vault (the source stays, the default): "unchanged".
  ``docs`` renamed away, the watch starts (``load``), ``docs`` renamed back (``a.txt`` itself untouched:
  same inode, ctime, mtime).
Seen: ``["new", "unchanged", "new"]``: her deleted file is back in her vault.  Control
  ``[records_kept_as_before_63c]`` (``_drop_gone`` stubbed to keep them): "unchanged", not imported.
Expected: not imported again (the record was the only memory that she deleted it).
Cause: imports/importer.py ``Importer._drop_gone`` (run at ``load``) and ``_gone_of``: a source
  that ENOENT/ENOTDIR at that moment is taken as gone for good, and the record, which still decides
  (an unchanged stamp: not imported again), is deleted from the store.
Impact: files she removed from her vault come back, silently, after a start with the source out of
  sight.  Not new for a writer of her watched folder: renaming her file (or its folder) already
  resurrected it before 63c (1) (a new stamp or location, the vault file gone: imported anew).
Fix (suggested): drop only records whose source was seen gone by the watch itself (a walk that
  no longer finds it, or two looks a while apart), never at ``load``; or keep such records (bounded,
  as they are a few hundred bytes with short names) and drop the oldest past a count, said.

Tried that held: ``test_a_copy_beside_at_exactly_path_max_is_kept_and_not_imported_again`` (the first
copy beside at exactly 4,096 bytes: record held, "unchanged" at the next start; 2 bytes more refused
with "past the 4,096").  Read: records are sealed with their id and kind in the associated data and
filtered by owner (store/sealed.py): a store writer or peer cannot forge one past the bound or for
another location, only delete or replay (40c (4), 41c (1): no record means beside, never over; a
deleted record's place is never written over); ``dropped_docs`` deletes at the revision loaded and
leaves a Conflict (a peer's newer record) alone; ``_drop_gone`` runs between takes (the watch takes
one at a time), so no take holds a record it pops; ``_move`` keeps a short vault path when the file
was moved past the bound (a later save goes beside: ``_changed_in_vault``).  Not tried: a real mount,
a tmpfs source with a 5-digit year, surrogate-escaped names (``too_long`` and the check both use
``os.fsencode``, the same bytes as ``name_to_str``), records past the bound from a second device.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fusevault.errors import InvalidInput
from fusevault.imports.import_records import PATH_MAX
from fusevault.imports.importer import Importer, longest_copy_name
from fusevault.vault.model.settings import Settings
from fusevault.vault.services.conflict_copies import copy_name
from fusevault.vault.services.placing import NoKernel, make_dirs, write_file
from fusevault.vault.volume import Volume
from inprocess.conftest import on_volume


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


def _run(vault: Path, body) -> object:

    async def main(volume: Volume) -> object:
        return await body(volume)

    return on_volume(vault, main)


def _deep(source: Path, length: int, name: str) -> tuple[int, str]:
    """A chain of folders in ``source`` whose location (folders and ``name``) is ``length`` bytes:
    the deepest folder's descriptor (made name by name: the whole path is past PATH_MAX) and the
    location."""
    parts: list[str] = []
    left = length - len(name)
    while left > 0:
        size = min(200, left - 1)
        if 0 < left - 1 - size < 2:  # no folder name shorter than 2 bytes last
            size -= 2
        parts.append(f"{len(parts):02d}" + "d" * (size - 2))
        left -= size + 1
    fd = os.open(source, os.O_RDONLY | os.O_DIRECTORY)
    for part in parts:
        os.mkdir(part, dir_fd=fd)
        deeper = os.open(part, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = deeper
    location = "/".join([*parts, name])
    assert len(location.encode()) == length
    return fd, location


def _write(fd: int, name: str, data: bytes, mtime_ns: int) -> None:
    file = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600, dir_fd=fd)
    os.write(file, data)
    os.close(file)
    os.utime(name, dir_fd=fd, ns=(mtime_ns, mtime_ns))


async def _once(data: bytes) -> AsyncIterator[bytes | int]:
    yield data


async def _taken(importer: Importer, location: str) -> str:
    """The take's outcome, or "refused" when the source is past the bound (said by the watch)."""
    try:
        return (await importer.take(location))[0]
    except InvalidInput as err:
        assert "past the 4,096" in str(err)
        return "refused"


def _record_length(importer: Importer, location: str) -> list[int]:
    known = importer.records.get(location)
    return [] if known is None else [len(os.fsencode(known[0].vault_path))]


# The depth of the attack's scene (its copy beside at PATH_MAX with the first copy name: refused since
# the fix) and the deepest the fix lets in (the longest copy name at PATH_MAX: every record held).
DEPTHS = pytest.mark.parametrize("longest", [False, True], ids=["first_copy_name_at_the_bound",
                                                                 "longest_copy_name_at_the_bound"])


def _tail(name: bytes, longest: bool) -> int:
    return len(longest_copy_name(name) if longest else copy_name(name, "import", 0)) - len(name)


@DEPTHS
def test_64c_1_a_numbered_copy_beside_passes_path_max_and_is_imported_again_at_every_start(
        vault: Path, source: Path, longest: bool) -> None:
    """Her file at the place, the source saved twice in a minute: the second copy beside is numbered
    (" import 2"), two bytes longer than ``_past_path_max`` counted; its record was past PATH_MAX, dropped
    at the next start, and the unchanged source imported beside once more, at every start.  Since the
    fix the bound counts the longest copy name: at the attack's depth the source is refused (said), and
    as deep as the longest name allows, it is imported and every record held."""
    settings = Settings(source_dir_to_watch=str(source))
    into = len(b"Imported/")
    fd, location = _deep(source, PATH_MAX - _tail(b"a", longest) - into, "a")  # a copy beside at PATH_MAX
    minute = 1_700_000_040 * 10**9
    _write(fd, "a", b"first", minute - 600 * 10**9)

    async def body(volume: Volume) -> tuple[list[str], list[int], list[bool], list[str]]:
        importer = Importer(volume, settings, NoKernel())
        await importer.load()
        outcomes = [await _taken(importer, location)]
        folder = os.path.dirname(b"Imported/" + os.fsencode(location))
        parent = await make_dirs(volume, folder, importer.caller)
        await write_file(volume, parent, b"a", _once(b"her edit"), mode=0o600, caller=importer.caller,
                         kernel=NoKernel())  # her edit of the imported file (her file there), in the vault
        _write(fd, "a", b"second", minute)
        outcomes.append(await _taken(importer, location))
        _write(fd, "a", b"third", minute + 10**9)  # saved again within the minute
        outcomes.append(await _taken(importer, location))
        lengths = _record_length(importer, location)
        held = []
        importer.close()
        for _ in range(3):  # three later starts of the watch: the source is unchanged
            fresh = Importer(volume, settings, NoKernel())
            await fresh.load()
            held.append(location in fresh.records)
            outcomes.append(await _taken(fresh, location))
            lengths += _record_length(fresh, location)
            fresh.close()
        copies = sorted(name.decode() for name in parent.children if b"conflict import" in name)
        print("outcomes", outcomes, "lengths", lengths, "held at load", held, "copies", copies)
        return outcomes, lengths, held, copies

    try:
        outcomes, lengths, held, copies = _run(vault, body)
    finally:
        os.close(fd)
    if not longest:  # seen before the fix: imported, then once more at every start
        assert outcomes == ["refused"] * 6 and not lengths and not copies
        return
    assert outcomes[:3] == ["new", "new version", "new version"] and len(copies) == 2
    # Expected: the record of the third save held (its copy's name within the bound), and the
    # unchanged source not imported again at each start.
    assert max(lengths) <= PATH_MAX and all(held) and outcomes[3:] == ["unchanged"] * 3


@DEPTHS
def test_64c_1_a_writer_of_her_watched_folder_alone_gets_a_copy_made_at_every_start(
        vault: Path, source: Path, longest: bool) -> None:
    """Another user who writes into her watched folder, alone: a folder ``x`` (a file in it, imported,
    then removed), then a file ``x`` saved ten times with one minute's mtime (his file: he sets it):
    each save goes beside the vault's folder ``x``, the tenth as " import 10", three bytes past what
    ``_past_path_max`` counted; from then on every start of the watch imported it once more.  Since the
    fix: refused at the attack's depth; as deep as the longest copy name allows, each record held, a
    copy a save."""
    settings = Settings(source_dir_to_watch=str(source))
    into = len(b"Imported/")
    fd, location = _deep(source, PATH_MAX - _tail(b"x", longest) - into - 2, "x")  # "x/f" within it
    minute = 1_700_000_040 * 10**9

    async def body(volume: Volume) -> tuple[list[str], list[int], list[bool], int]:
        importer = Importer(volume, settings, NoKernel())
        await importer.load()
        os.mkdir("x", dir_fd=fd)
        inner = os.open("x", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        _write(inner, "f", b"f", minute)
        os.close(inner)
        outcomes = [await _taken(importer, location + "/f")]
        os.unlink("x/f", dir_fd=fd)
        os.rmdir("x", dir_fd=fd)
        folder = os.path.dirname(b"Imported/" + os.fsencode(location))
        await make_dirs(volume, folder + b"/x", importer.caller)  # the vault's folder x, in any case
        for save in range(10):
            _write(fd, "x", b"save %d" % save, minute + save * 10**9)
            outcomes.append(await _taken(importer, location))
        lengths = _record_length(importer, location)
        importer.close()
        held = []
        for _ in range(3):  # three later starts of the watch: his file unchanged
            fresh = Importer(volume, settings, NoKernel())
            await fresh.load()
            held.append(location in fresh.records)
            outcomes.append(await _taken(fresh, location))
            lengths += _record_length(fresh, location)
            fresh.close()
        parent = volume.resolve(folder)
        copies = sum(b"conflict import" in name for name in parent.children)
        print("outcomes", outcomes, "lengths", lengths, "held at load", held, "copies", copies)
        return outcomes, lengths, held, copies

    try:
        outcomes, lengths, held, copies = _run(vault, body)
    finally:
        os.close(fd)
    if not longest:  # seen before the fix: 13 copies for his 10 saves, one more at every start
        assert outcomes == ["refused"] * 14 and not lengths and not copies
        return
    assert outcomes[0] == "new"
    # Expected: his unchanged file not imported again at each start (ten copies, one per save).
    assert max(lengths) <= PATH_MAX and all(held) and outcomes[11:] == ["unchanged"] * 3 and copies == 10


def test_a_copy_beside_at_exactly_path_max_is_kept_and_not_imported_again(vault: Path, source: Path) -> None:
    """Control (held): her file at the place, the source's first copy beside (" import") where the
    longest name a copy may get (the one ``_past_path_max`` counts since 64c (1)) is exactly PATH_MAX:
    its record is held at the next start and the unchanged source is not imported again; two bytes
    more and the source is refused, said."""
    settings = Settings(source_dir_to_watch=str(source))
    fd, location = _deep(source, PATH_MAX - _tail(b"a", True) - len(b"Imported/"), "a")
    _write(fd, "a", b"first", 1_700_000_040 * 10**9)
    os.mkdir("b", dir_fd=fd)  # "b/c": the same length as "a", one folder longer than the bound
    inner = os.open("b", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    _write(inner, "c", b"c", 0)
    os.close(inner)
    longer = os.path.dirname(location) + "/b/c"

    async def body(volume: Volume) -> tuple[list[str], bool, int, str]:
        parent = await make_dirs(volume, os.path.dirname(b"Imported/" + os.fsencode(location)),
                                 Importer(volume, settings, NoKernel()).caller)
        importer = Importer(volume, settings, NoKernel())
        await write_file(volume, parent, b"a", _once(b"hers"), mode=0o600, caller=importer.caller,
                         kernel=NoKernel())  # a file of hers at the place, no record names
        await importer.load()
        outcomes = [(await importer.take(location))[0]]
        length = len(os.fsencode(importer.records[location][0].vault_path))
        importer.close()
        fresh = Importer(volume, settings, NoKernel())
        await fresh.load()
        held = location in fresh.records
        outcomes.append((await fresh.take(location))[0])
        try:
            await fresh.take(longer)
            refused = ""
        except InvalidInput as err:
            refused = str(err)
        fresh.close()
        return outcomes, held, length, refused

    try:
        outcomes, held, length, refused = _run(vault, body)
    finally:
        os.close(fd)
    # The first copy's name is the shortest: its path is the bound less what the longest adds (64c (1)).
    shorter = len(longest_copy_name(b"a")) - len(copy_name(b"a", "import", 0))
    assert outcomes == ["new", "unchanged"] and held and length == PATH_MAX - shorter
    assert "past the 4,096" in refused


@pytest.mark.parametrize("drop", [
    pytest.param(True, id="as_is"),
    pytest.param(False, id="records_kept_as_before_63c"),
])
def test_64c_2_a_file_she_deleted_from_the_vault_comes_back_after_a_start_its_source_out_of_sight(
        vault: Path, source: Path, drop: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """She deletes an imported file from her vault, its source stays (``delete_file_from_source`` off,
    the default): unchanged, it is not imported again.  The watch starts while its folder is out of
    sight (renamed away for a while, a disk or network folder not mounted yet), then the folder is
    back, the file in it unchanged (same inode, ctime: only its folder moved): imported again."""
    if not drop:  # control: the same steps with the records kept as before 63c (1)
        async def kept(self: Importer, found: object, passed_over: object) -> None:
            pass

        monkeypatch.setattr(Importer, "drop_unseen", kept)
    settings = Settings(source_dir_to_watch=str(source))
    (source / "docs").mkdir()
    (source / "docs" / "a.txt").write_bytes(b"she deleted this from her vault")

    async def body(volume: Volume) -> list[str]:
        importer = Importer(volume, settings, NoKernel())
        await importer.load()
        outcomes = [(await importer.take("docs/a.txt"))[0]]
        await volume.unlink(volume.resolve(b"Imported/docs").ino, b"a.txt")  # deleted by her
        outcomes.append((await importer.take("docs/a.txt"))[0])
        importer.close()
        os.rename(source / "docs", source.parent / "docs.away")  # out of the watched folder's sight
        fresh = Importer(volume, settings, NoKernel())
        await fresh.load()  # a start meanwhile (mount, unlock)
        os.rename(source.parent / "docs.away", source / "docs")  # back, a.txt unchanged
        outcomes.append((await fresh.take("docs/a.txt"))[0])
        fresh.close()
        return outcomes

    outcomes = _run(vault, body)
    if not drop:
        assert outcomes == ["new", "unchanged", "unchanged"]
        return
    # Seen: ["new", "unchanged", "new"]: her deleted file is back in her vault, unsaid.
    assert outcomes == ["new", "unchanged", "unchanged"]
