"""Attack round 69c, in-process (a real vault): the importer's compare-and-place (``write_file``'s
temporary name).  Unit-level holes of the round are in ``tests/unit/test_attack_69c.py``.

(2) see the test's docstring.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from conftest import PASSPHRASE

from fusevault.imports.importer import Importer
from fusevault.vault.model.settings import Settings
from fusevault.vault.services.opening import unlock_vault
from fusevault.vault.services.placing import NoKernel
from fusevault.vault.volume import Volume

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


@pytest.mark.xfail(strict=True, reason="69c (2): a folder named like write_file's temporary name beside "
                   "her source stops its import for good (IsADirectory at every retry)")
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
