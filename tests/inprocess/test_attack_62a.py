"""Attack round 62a (a very short one at 8904923: 61a (1), (2)).

(1) low (honest use; the 61a (2) regression left for editors that keep a rename backup): after her
editor's save of an imported file that changed nothing, made as Emacs does by default
(``make-backup-files``, ``backup-by-copying`` nil) or vim with ``set backup`` (``backupcopy=auto``:
the original renamed to ``a.txt~``, a new ``a.txt`` written), the source's edits are never imported
over it again: each goes beside as a new copy, without bound, and Imported/a.txt keeps the first
version for good.
Attacker: none.  Steps: a.txt ("version one!") imported to Imported/a.txt (fid F); she saves it as
above: Imported/a.txt renamed to Imported/a.txt~ (F, kept), a new Imported/a.txt (fid G) with the same
bytes; the source is edited three times, each taken.  Seen: each edit a copy beside (a.txt, a.txt~ and
three copies), Imported/a.txt still "version one!"; expected: each edit a new version of
Imported/a.txt (its contents are exactly what the record imported), as the rename-over save does since
8904923 (the control).  Cause: importer.py ``_changed_in_vault`` (``own is not None and own.ino !=
node.ino``): the record's own file F is live elsewhere (the backup ``a.txt~``), so G counts as another's
file; then the record names the copy beside, live elsewhere, so every later edit goes beside too, even
once she deletes ``a.txt~``.  Impact: low (nothing lost: each edit is in a copy), but the imported file
is silently never updated and the folder fills with copies.  Fix: when the place's file holds exactly
the record's bytes AND the record's own file (live elsewhere) holds them too, nothing of hers differs
either way: write over the place (or: compare the fid only where ``_move`` put the record beside,
the record's ``vault_path`` not the place, as 61a (2) suggested).
Test: ``test_edits_after_her_no_op_save_with_a_rename_backup_are_imported_over_it``; control
``test_control_a_no_op_save_renamed_over_is_imported_over`` (8904923's case).

Tried and held: the record's own file removed and her other file (the same bytes) hard-linked at its
place: contents decide since 8904923, yet the source's edit is a new file at the place, never a write
into her file's node (run: ``test_control_an_import_never_writes_through_her_hard_link_at_its_place``;
``test_control_the_imported_file_removed_is_imported_anew``).  Read, not run: 61a (1) -- the stamp
recorded at ``unshare`` is ``newest_seen`` before the debt is written; ``owe`` keeps the max of two
records; a body of hers signed apart with a higher stamp, served after the unshare, raises ``seen``'s
stamp without being admitted (``Freshness.saw``'s ``elif value > entry[1]`` branch), so later loads skip
the taking back, but freshness's own record then already holds the deletion (saved at the load that
took it back), so the replay is still refused; a Share of another owner cannot be unshared here
(``_own``), so ``record_id`` is always the plain id.  Not tried: that stamp raise before the first
load after an ``unshare`` cut short (the record's deletion not saved yet: the body her unshare took
back then not taken back at load, as the skipped branch would need).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from fusevault.imports.importer import NEW, VERSION, Importer
from fusevault.vault.model.settings import Settings
from fusevault.vault.services.placing import NoKernel, file_digest, make_dirs, write_file
from fusevault.vault.volume import Volume
from inprocess.conftest import on_volume
from inprocess.test_attack_59a import _one


def _edits_after_a_save(vault: Path, inbox: Path, backup: bool) -> tuple[list[str], bool, int]:
    """a.txt imported to Imported/a.txt, saved with the same bytes by an editor (``backup``: the original
    renamed to a.txt~ first and kept; else a new file renamed over it), three edits of the source taken:
    (the outcomes, Imported/a.txt holds the last edit, the files in Imported)."""
    settings = Settings(source_dir_to_watch=str(inbox), delete_file_from_source=False)
    a = inbox / "a.txt"

    async def main(volume: Volume) -> tuple[list[str], bool, int]:
        importer = Importer(volume, settings, NoKernel())
        await importer.load()
        a.write_bytes(b"version one!")
        assert (await importer.take("a.txt"))[0] == NEW
        folder = volume.resolve(b"Imported")
        if backup:
            await volume.rename(folder.ino, b"a.txt", folder.ino, b"a.txt~", noreplace=True,
                                exchange=False)
            await write_file(volume, folder, b"a.txt", _one(b"version one!"), mode=0o600,
                             caller=importer.caller, kernel=NoKernel())
        else:
            await write_file(volume, folder, b".a.txt.swp", _one(b"version one!"), mode=0o600,
                             caller=importer.caller, kernel=NoKernel())
            await volume.rename(folder.ino, b".a.txt.swp", folder.ino, b"a.txt", noreplace=False,
                                exchange=False)
        outcomes = []
        for n in range(3):
            a.write_bytes(b"version %d of the source" % (n + 2))
            os.utime(a, ns=(10**18 + n * 60 * 10**9, 10**18 + n * 60 * 10**9))
            outcomes.append((await importer.take("a.txt"))[0])
        node = volume.resolve(b"Imported/a.txt")
        last = hashlib.sha256(b"version 4 of the source").hexdigest()
        files = len(volume.resolve(b"Imported").children)
        return outcomes, await file_digest(volume, node) == last, files

    return on_volume(vault, main)


def test_edits_after_her_no_op_save_with_a_rename_backup_are_imported_over_it(vault: Path,
                                                                             inbox: Path) -> None:
    assert _edits_after_a_save(vault, inbox, backup=True) == ([VERSION] * 3, True, 2)


def test_control_a_no_op_save_renamed_over_is_imported_over(vault: Path, inbox: Path) -> None:
    assert _edits_after_a_save(vault, inbox, backup=False) == ([VERSION] * 3, True, 1)


def _edit_after_a_link(vault: Path, inbox: Path, link: bool) -> tuple[str, bool, bool]:
    """a.txt imported to Imported/a.txt; her own Docs/x.txt holds the same bytes; ``link``: she removes
    Imported/a.txt and hard-links Docs/x.txt there (else: removes it only); the source edited, taken:
    (the outcome, Docs/x.txt holds the source's edit, Imported/a.txt does)."""
    settings = Settings(source_dir_to_watch=str(inbox), delete_file_from_source=False)
    a = inbox / "a.txt"

    async def main(volume: Volume) -> tuple[str, bool, bool]:
        importer = Importer(volume, settings, NoKernel())
        await importer.load()
        a.write_bytes(b"version one!")
        assert (await importer.take("a.txt"))[0] == NEW
        docs = await make_dirs(volume, b"Docs", importer.caller)
        x, _ = await write_file(volume, docs, b"x.txt", _one(b"version one!"), mode=0o600,
                                caller=importer.caller, kernel=NoKernel())
        folder = volume.resolve(b"Imported")
        await volume.unlink(folder.ino, b"a.txt")
        if link:
            await volume.link(x.ino, folder.ino, b"a.txt")
        a.write_bytes(b"version 2 of the source")
        os.utime(a, ns=(10**18, 10**18))
        outcome = (await importer.take("a.txt"))[0]
        edit = hashlib.sha256(b"version 2 of the source").hexdigest()
        return (outcome, await file_digest(volume, volume.resolve(b"Docs/x.txt")) == edit,
                await file_digest(volume, volume.resolve(b"Imported/a.txt")) == edit)

    return on_volume(vault, main)


def test_control_an_import_never_writes_through_her_hard_link_at_its_place(vault: Path, inbox: Path) -> None:
    """The record's file removed, her other file (the same bytes) hard-linked at its place: contents
    decide (8904923), yet the edit is no write into her file's node (``write_file`` puts a new file)."""
    outcome, x_changed, at_place = _edit_after_a_link(vault, inbox, link=True)
    print("62a link:", outcome, x_changed, at_place)
    assert not x_changed


def test_control_the_imported_file_removed_is_imported_anew(vault: Path, inbox: Path) -> None:
    assert _edit_after_a_link(vault, inbox, link=False)[1:] == (False, True)
