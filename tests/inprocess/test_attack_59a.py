"""Attack round 59a, at round 58's fixes (58a: host_access/way.py, exporting.Destination; 58c (1)-(3):
imports/locations.py, the walk and the tick; 58c (4), (5): ctime in the stamp, ``_find_moved`` by
contents, log lines cut, FailuresSaid, the capped mount log).  In-process, a real vault.

(1) medium (honest data written over, honest use): a file taken as moved in the watched folder is
  renamed in the vault OVER whatever the vault holds at its new name: her own file there is replaced,
  left only as an old version of the moved file (``.versions/``), never said.
Attacker: none needed (honest use); or anyone who may rename in her watched folder (it may be shared:
  53d (5)), or who drops there a copy of a file she imported with its mtime kept and gets its freed
  inode number (58c (4)'s way, which ``_find_moved`` still takes as a move when the contents match).
Steps: a.txt ("version one!") is imported (Imported/a.txt in the vault, a record); she keeps a file
  of her own at Imported/b.txt in the vault ("her own notes, no record"); a.txt is renamed to b.txt in
  the source; the next take of b.txt.
Seen (``test_59a_1_a_move_in_the_source_never_replaces_her_file_at_the_new_name``): ``take`` says MOVED;
  the vault's Imported/b.txt holds "version one!" and her notes are in no live file of the vault: only
  in ``recovery.versions`` of Imported/b.txt (2 versions, one of them her replaced file's; the rename
  over grafts it as history, namespace.py ``rename``; trashed instead if a.txt had versions already).
Expected: as for a new file at a place no record names (40c (4), ``take``'s ``beside``): her file
  kept, the moved one put beside it (or not moved, imported beside).
Cause: importer.py ``_move``: ``self.vol.rename(..., new_parent.ino, new_name, noreplace=False)`` with
  no look at what is at ``new_name`` (since seed 000; reached by ``_find_moved``, which 58c (4) left
  taking any same-contents file at the freed inode number for a move).
Impact: one of her vault files silently replaced by a rename in the source folder (against 40c (4):
  "never written over: the source goes beside it"); recoverable only from ``.versions`` while the
  versions are kept.  Control: ``test_control_59a_1_a_move_with_nothing_at_the_new_name_still_moves``.
Fix (suggested): in ``_move``, ``noreplace=True`` (or ``_in_vault(location)`` asked first) and, when
  the name is taken, the moved node put under ``copy_name(..., "import", ...)`` beside it, as ``take``
  does for a new file; or refuse the move and import the source beside.

Tried, held (no hole confirmed in the time):
- way.py / Destination (58a): the power-of-two rule (a climb of distance d re-opens at most ~2d
  folders; each climb is paid by as many descents first), ``Held.lent`` across ``_thin``/``_up``/
  ``close`` (deferred, closed once), ``place`` then ``discard`` (idempotent close, ECANCELED
  swallowed), every Destination entry point under ``_in_use``; names are checked by ``tree``
  (``names.valid``), re-opens are O_NOFOLLOW by name from a held folder, each as the caller.  A
  simulation of ``Way.to`` over export orders (``enter`` counted, no file system; not kept): a chain
  2,000 deep with a file at every level 2.77 enters a ``to``, 13 held; combs (a side chain at every
  level of a 300-deep one, before or after it) 1.2 to 1.5; 300 random trees at most 1.55, <= 13 held.
- locations.py / walk / stamps (58c (1)-(3)): a Place is names only (no descriptor), equal by names,
  so a Place taken again from the walk before names a path, never a folder that moved; BAD_PARTS
  refused in ``_reach``; the POLL_SHARE hold is per user's ImportService.  Read only.
- log_lines (58c (5)): the log file is in root's 0700 state dir (no link of his to plant); rotation
  bounds the file.  Read only.
Doubtful, not run: ``FailuresSaid.done`` is called only for a take that ran; a file removed between
  walks is dropped from ``Pending`` unseen, so a new file at its name failing later is not said (low,
  a log line; ``status`` still shows the error).
Fixed after the round: ``_move`` puts the moved file beside a file of hers at the new place
  (``copy_name``, said as an ``import-record`` alarm) and renames with ``noreplace``.
Not tried: real users / a real shared mount; ``_reach`` does not check the device (as
  ``source_paths.lstat`` did not before: not new).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fusevault.imports.importer import MOVED, NEW, Importer
from fusevault.vault.model.settings import Settings
from fusevault.vault.services.placing import NoKernel, file_digest, make_dirs, write_file
from fusevault.vault.services.recovery import versions
from fusevault.vault.volume import Volume
from inprocess.conftest import on_volume

HERS = b"her own notes, no record"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    path.mkdir()
    return path


async def _one(data: bytes) -> AsyncIterator[bytes | int]:
    yield data


async def _contents(volume: Volume) -> list[str]:
    """The SHA-256 of every regular file in the vault."""
    found, todo = [], [volume.resolve(b"")]
    while todo:
        node = todo.pop()
        for ino in node.children.values():
            child = volume.node(ino)
            if child.is_dir:
                todo.append(child)
            elif child.is_reg:
                found.append(await file_digest(volume, child))
    return found


def _run_move(vault: Path, source: Path, hers: bool) -> tuple[str, str, bool]:
    """a.txt imported; (``hers``) her own vault file at Imported/b.txt; a.txt renamed to b.txt in the
    source and taken: (outcome, digest at Imported/b.txt, her notes still in some file of the vault)."""
    settings = Settings(source_dir_to_watch=str(source), delete_file_from_source=False)
    a, b = source / "a.txt", source / "b.txt"

    async def main(volume: Volume) -> tuple[str, str, bool]:
        importer = Importer(volume, settings, NoKernel())
        await importer.load()
        a.write_bytes(b"version one!")
        assert (await importer.take("a.txt"))[0] == NEW
        if hers:  # made in the mount by her: no import record names it
            folder = await make_dirs(volume, b"Imported", importer.caller)
            await write_file(volume, folder, b"b.txt", _one(HERS), mode=0o600, caller=importer.caller,
                             kernel=NoKernel())
        os.rename(a, b)
        outcome, _, _ = await importer.take("b.txt")
        at_b = await file_digest(volume, volume.resolve(b"Imported/b.txt"))
        kept = hashlib.sha256(HERS).hexdigest() in await _contents(volume)
        node = volume.resolve(b"Imported/b.txt")
        # Hers is kept only as the earlier version of the moved file (rename over: namespace.py).
        lineage = await versions(volume, node)
        of_hers = sum(v.fid == node.previous for v in lineage)
        print(f"Imported/b.txt: {len(lineage)} version(s), {of_hers} of her replaced file (.versions)")
        return outcome, at_b, kept

    return on_volume(vault, main)


def test_59a_1_a_move_in_the_source_never_replaces_her_file_at_the_new_name(vault: Path,
                                                                         source: Path) -> None:
    outcome, at_b, kept = _run_move(vault, source, hers=True)
    holds = "hers" if at_b == hashlib.sha256(HERS).hexdigest() else "a.txt's"
    print(f"take: {outcome}; Imported/b.txt holds {holds}; her notes in a live file: {kept}")
    assert kept  # seen: MOVED, Imported/b.txt holds "version one!", her notes in no file
    assert holds == "hers"  # hers stays at its place; the moved file goes beside it
    assert outcome == MOVED


def test_control_59a_1_a_move_with_nothing_at_the_new_name_still_moves(vault: Path, source: Path) -> None:
    outcome, at_b, _ = _run_move(vault, source, hers=False)
    assert outcome == MOVED and at_b == hashlib.sha256(b"version one!").hexdigest()
