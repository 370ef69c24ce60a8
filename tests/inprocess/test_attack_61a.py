"""Attack round 61a (a short one at round 59c (1) and 60a's fixes: d0a8cef, 4122f3f, f5e86c4).

(1) A share re-signed on her other device while this one still owes a re-key of it is taken back here
at the second unlock after, for good (medium: honest data refused for good -- a revocation she undid
on her desktop is carried out again by her laptop, bob re-keyed away from docs; no forgery needed).
Attacker: none (honest use: an ``unshare`` cut short, then one re-key that fails once, or a file
moved out and deleted: the second test).
Steps: alice's laptop (A) shares docs READ with bob (docs/notes.txt in it); her ``unshare docs --with
bob`` on A is killed after the debt is recorded (``rekeys_owed.owe(..., taken=[S])``) and before the
Share's tombstone is put (test_rekeys_owed.py's "before the Share goes" kill); on her desktop (B, a
state folder of its own) she shares docs with bob again, WRITE (a newer signing of S); A's next unlock:
the load takes S back on the body A saw (its own READ one), B's newer body is admitted (docs shared with
bob: right), but the re-key owed fails (a file that cannot be sealed again, as in
``test_a_re_key_owed_that_fails_stays_owed_and_the_unlock_goes_on``): the debt stays, and with it
``Owed.taken`` = {S}.  A's next unlock: the load (loading.py:99-101) marks again ``took_back`` and
``deleted`` S -- now on B's body, the newest A saw -- so her live WRITE Share is "a replayed body"
(``replayed-grant`` alarm for her own share), the re-key owed is paid sealed to nobody through S, and
docs is re-keyed away from bob.  Seen: unlock 1 (shared, bob's key at docs' epoch); unlock 2 and 3 (not
shared, bob's key of docs not at its epoch, ``replayed-grant``).  Expected: B's re-signing, newer than
her unshare, stays in force (what the control shows when unlock 1's re-key does not fail).
Cause: ``Owed.taken`` is per device and dropped only by ``given_again`` on the device that shares, or
when no debt names S; loading.py:99-101 takes back "whatever body of S is newest here" at every load,
not the body her unshare took back, so a newer signing seen in between is taken back too, and
freshness keeps it deleted (``_replay``: gone, same tip) after the debt is paid.  Checked: with the
load's mark off (loading.rekeys_owed.owed answering ``taken`` empty at unlock 2) the test passes.
Impact: a revocation she undid (re-shared on B) is carried out again silently by A: bob loses docs on
A's writes (re-keyed, new files sealed without him) while the Share stays in the store; it lasts until
she runs ``share`` on A.  The same for a debt that stays owed longer (a re-key failing at several
unlocks, a debt whose file is gone from her tree: ``_pay_owed`` skips it, kept owed for good, so the
mark is made at every load): run, the second test.  Fix: record with each taken Share the body
(vector/stamp) the unshare took back, and take back at load only that body or older (``took_back`` on
that entry, not the newest seen); or drop S from ``taken`` once a newer signing of S by her is
admitted (signed after the debt: the test of freshness ``_signed_after_deletion``); and a debt whose
file is gone from her tree for good should stop naming S.
Also run with no re-key failing (a debt owed for good): a file moved out of docs and the laptop
locked before its re-key (60a (1)'s scene), then the unshare killed as above (the moved-out file owed
with docs), and on the desktop that file deleted and docs re-shared: unlock 1 shared, unlocks 2 and 3
not (``_pay_owed`` skips a debt whose file is not in her tree: owed, and S taken back, for good).
Tests: ``test_a_share_re_signed_on_her_desktop_is_not_taken_back_by_the_laptop_that_owes``,
``test_a_share_re_signed_on_her_desktop_is_not_taken_back_for_a_debt_whose_file_is_gone``; control:
``test_control_the_same_with_the_re_key_paid_at_once_leaves_the_re_share_in_force``.

(2) low (a regression of f5e86c4, the 60a (2) fix; honest use): after her editor's save of an imported
file that changed nothing (a new file with the same bytes renamed over it: gedit, vim's rename backup,
``sed -i``, rsync), the source's edits are never imported over it again: each goes beside as a new copy
(``a (conflict import <time>).txt``), without bound, and Imported/a.txt keeps the first version for good.
Steps: a.txt ("version one!") imported to Imported/a.txt (fid F); she saves Imported/a.txt through the
mount as an editor does (``.a.txt.swp`` with the same bytes, renamed over: namespace.py ``rename``
makes the swap file's node the file at the place, fid G, F its ``previous``); the source is edited three
times (a minute apart), each taken.  Seen: three copies beside (4 files in Imported), Imported/a.txt
still "version one!"; expected: each edit a new version of Imported/a.txt (its contents are exactly what
the record imported: nothing of hers to keep), as before f5e86c4 (checked: with ``_changed_in_vault``
as before it, comparing contents only, the test passes).  Cause: importer.py:293 ``node.fid !=
record.fid`` takes any other node at the place for "another file than the record's", but a rename over
it keeps the file's history (``previous``) and is how editors save; then the record names the copy,
whose fid is never the place's, so every later edit goes beside too.  Impact: low (nothing lost: each
edit is in a copy), but the imported file is silently never updated and the folder fills with copies.
Fix: take the place's node for the record's when its history reaches ``record.fid`` (``previous``
chain, bounded) and its contents equal ``record.sha256``; or compare the fid only where ``_move`` put
the record beside (the record's ``vault_path`` not the place).
Test: ``test_edits_after_her_no_op_save_of_the_imported_file_are_imported_over_it``; controls:
``test_control_edits_with_no_save_in_the_vault_are_imported_over_it``,
``test_control_her_real_edit_saved_so_is_never_written_over`` (her save with other bytes: kept, the
edits go beside: as 41c (1) wants; that each later edit then makes one more copy is older than f5e86c4).

Tried and held (read or run, not kept): a crash between the import's write and its record (the record's
fid stale, the place's node the new one): the next take finds the contents there (``_already_there``
resolves the place, a new record with its fid), no copy; an edit before that take goes beside, as
before f5e86c4 (the record's bytes are not the place's).  ``Owed.taken`` growth: ``_write`` keeps only
the Shares an open debt names (bounded by ``KEEP`` debts).  A group share: the same path as (1) (the
group's Share id in ``taken``); not run.  Her ``share`` again on the owing device: ``given_again``
drops S before the put (the xfail's fix on one device).  A replay after the debt is paid: the load's
``took_back``/``deleted`` were saved at that load (``trust.save``), so freshness refuses the old body.
Held on reading: ``given_again`` recorded, then her Share's put failing (S no longer taken back, the
debt still owed): her ``share`` needs a mount, whose load already marked and saved S taken back
(freshness), so the body her unshare took back stays a replay; ``KEEP`` eviction of a taken Share
likewise matters only until the next load.  Not tried: two processes of hers writing the record.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import trio

from fusevault.errors import CorruptData
from fusevault.imports.importer import NEW, VERSION, Importer
from fusevault.vault.model import alarms, rekeys_owed
from fusevault.vault.model.settings import Settings
from fusevault.vault.services import share_ops
from fusevault.vault.services.placing import NoKernel, file_digest, write_file
from fusevault.vault.volume import Volume
from inprocess.conftest import ME, ROOT, _close, _compose, on_volume
from inprocess.test_attack_59a import _one
from inprocess.test_attack_60a import _move_out_then_lock
from inprocess.test_rekeys_owed import Killed, _bobs_key, _dropped, _kill, _shared_folder, _unlocked


def _unshare_killed(composed, monkeypatch) -> None:
    """The laptop's unshare of docs (bob, READ) killed before the Share goes: its debt and ``taken``
    recorded; the laptop's process dropped."""
    with monkeypatch.context() as patched:
        patched.setattr(share_ops, "tombstone", _kill)
        with pytest.raises(Killed):
            trio.run(composed.ops.session.requests.handle,
                     {"cmd": "unshare", "path": "docs", "with": "bob", "perm": "READ"})


def _shared_again_on_desktop(vault, monkeypatch, tmp_path, deleted: bytes | None = None) -> None:
    """docs shared again with bob WRITE on her desktop (a state folder of its own), ``deleted`` (a name
    in her root) deleted there first."""
    with monkeypatch.context() as patched:
        patched.setenv("FUSEVAULT_STATE_DIR", str(tmp_path / "desktop-state"))
        composed = _compose(vault)
        try:
            if deleted is not None:
                trio.run(composed.ops.unlink, ROOT, deleted, ME)
            answer = trio.run(composed.ops.session.requests.handle,
                              {"cmd": "share", "path": "docs", "with": "bob", "perm": "WRITE"})
            assert "error" not in answer, answer
        finally:
            trio.run(_close, composed)


def _unshare_killed_then_shared_on_desktop(vault, monkeypatch, tmp_path) -> None:
    """docs shared READ with bob; the laptop's unshare killed before the Share goes (debt and ``taken``
    recorded); docs shared again with bob WRITE on her desktop (a state folder of its own)."""
    monkeypatch.setattr(alarms, "_BY_USER", {})  # the alarms are per process: none from another test
    _shared_folder(vault)
    composed = _compose(vault)
    _unshare_killed(composed, monkeypatch)
    _dropped(composed)
    _shared_again_on_desktop(vault, monkeypatch, tmp_path)


def _unlock(vault, monkeypatch, fail: bool = False) -> tuple[bool, bool, bool]:
    """One unlock of the laptop (its re-keys failing when ``fail``): (docs shared with bob, bob's key of
    docs at its epoch, a ``replayed-grant`` alarm)."""
    composed = _compose(vault)
    try:
        volume = composed.volume
        with monkeypatch.context() as patched:
            if fail:
                async def cannot(node):
                    raise CorruptData("cannot be sealed again")
                patched.setattr(volume, "rekey", cannot)
            trio.run(_unlocked, volume)
        folder = volume.resolve(b"docs")
        record = _bobs_key(volume, folder.fid)
        return (bool(volume.covering(folder)), record is not None and record.epoch == folder.epoch,
                "replayed-grant" in volume.trust.alarms)
    finally:
        trio.run(_close, composed)


def test_a_share_re_signed_on_her_desktop_is_not_taken_back_by_the_laptop_that_owes(
        vault_copy, monkeypatch, tmp_path) -> None:
    _unshare_killed_then_shared_on_desktop(vault_copy, monkeypatch, tmp_path)
    assert _unlock(vault_copy, monkeypatch, fail=True) == (True, True, False), "unlock 1 (its re-key fails)"
    assert _unlock(vault_copy, monkeypatch) == (True, True, False), "unlock 2: her re-share taken back"
    assert _unlock(vault_copy, monkeypatch) == (True, True, False), "unlock 3"


def test_control_the_same_with_the_re_key_paid_at_once_leaves_the_re_share_in_force(
        vault_copy, monkeypatch, tmp_path) -> None:
    """The same scene, the laptop's first unlock paying the debt (a re-key sealed to bob through her
    desktop's newer Share): docs stays shared at the unlocks after (60a's "tried and held")."""
    _unshare_killed_then_shared_on_desktop(vault_copy, monkeypatch, tmp_path)
    assert [_unlock(vault_copy, monkeypatch) for _ in range(3)] == [(True, True, False)] * 3


def test_a_share_re_signed_on_her_desktop_is_not_taken_back_for_a_debt_whose_file_is_gone(
        vault_copy, monkeypatch, tmp_path) -> None:
    """No re-key fails: docs/notes.txt moved to her root and the laptop locked before its re-key (a debt
    naming S, 60a (1)'s scene); the laptop's unshare of docs killed before the Share goes (notes.txt owed
    with docs, S taken); on her desktop notes.txt deleted and docs shared again with bob WRITE.  The
    laptop's first unlock pays docs' debt (sealed to bob through the desktop's Share), notes.txt's debt
    is owed for good (``_pay_owed``: not in her tree), so each later load takes S back."""
    monkeypatch.setattr(alarms, "_BY_USER", {})
    _move_out_then_lock(vault_copy)
    composed = _compose(vault_copy)
    _unshare_killed(composed, monkeypatch)
    assert len(rekeys_owed.owed(composed.volume.layout.root, composed.volume.key).taken) == 1
    _dropped(composed)
    _shared_again_on_desktop(vault_copy, monkeypatch, tmp_path, deleted=b"notes.txt")
    assert [_unlock(vault_copy, monkeypatch) for _ in range(3)] == [(True, True, False)] * 3

def _edits_after_a_save(vault: Path, inbox: Path, save: bytes | None) -> tuple[list[str], bool, int]:
    """a.txt imported to Imported/a.txt; ``save``: her editor's save of Imported/a.txt with those bytes
    (a new file renamed over it, as editors, ``sed -i`` and rsync do; None: not saved); then three edits of
    the source, each taken: (the outcomes, Imported/a.txt holds the last edit, the files in Imported)."""
    settings = Settings(source_dir_to_watch=str(inbox), delete_file_from_source=False)
    a = inbox / "a.txt"

    async def main(volume: Volume) -> tuple[list[str], bool, int]:
        importer = Importer(volume, settings, NoKernel())
        await importer.load()
        a.write_bytes(b"version one!")
        assert (await importer.take("a.txt"))[0] == NEW
        folder = volume.resolve(b"Imported")
        if save is not None:
            await write_file(volume, folder, b".a.txt.swp", _one(save), mode=0o600,
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



def test_edits_after_her_no_op_save_of_the_imported_file_are_imported_over_it(vault: Path,
                                                                              inbox: Path) -> None:
    assert _edits_after_a_save(vault, inbox, b"version one!") == ([VERSION] * 3, True, 1)


def test_control_edits_with_no_save_in_the_vault_are_imported_over_it(vault: Path, inbox: Path) -> None:
    assert _edits_after_a_save(vault, inbox, None) == ([VERSION] * 3, True, 1)


def test_control_her_real_edit_saved_so_is_never_written_over(vault: Path, inbox: Path) -> None:
    """Her save with other bytes (an edit of hers): kept at its place, the source's edits go beside."""
    outcomes, last_at_place, _ = _edits_after_a_save(vault, inbox, b"her edit")
    assert outcomes == [VERSION] * 3 and not last_at_place
