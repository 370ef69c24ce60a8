"""Attack round 63a (a short one at the fixes of rounds 59 to 62: rekeys_owed.py and its users, the
importer's ``_changed_in_vault``/``_move``/``_find_moved``, the ledger's owner binding).

(1) medium (honest data written over; also a local user who writes the watched folder): her save of an
imported file while the import of the source's edit is under way is written over, unsaid.
Attacker: none (honest use: she edits Imported/a.txt while the watcher imports a.txt's new version; a
large or slow source makes the window long), or whoever writes the watched folder and times a big edit.
Steps: a.txt imported to Imported/a.txt; the source edited; ``Importer.take`` checks the place
(``_changed_in_vault``: the record's bytes, nothing of hers) and copies the source into a temporary file;
meanwhile she saves her edit of Imported/a.txt (an editor's save, or any write); the import's
``write_file`` then renames its temporary file over the place.  Seen: Imported/a.txt holds the source's
v2, her edit only as that file's older version (``.versions``: namespace.py's rename over makes it the
``previous``), no alarm.  Expected: her edit kept at its place, the source beside it (as when her save
comes just before the take: the control).  Cause: importer.py ``take`` judges the place once before
``_copy`` (``_changed_in_vault``, also ``_in_vault`` for a new source), and placing.py ``write_file``
renames over whatever is at the name then (``noreplace=False``), never asking whether it is still the
node judged.  Impact: her edit silently leaves the file's current contents (recoverable from its
history only if she looks).  Fix: pass the node judged (or None) to ``write_file`` and place with
``RENAME_EXCHANGE``/``noreplace`` only if the place still holds it (checked on the trio loop right before
the rename, no await between), else put the copy beside (as ``_move`` does since 59a (1)).
Test: ``test_63a_1_her_save_during_the_imports_copy_is_not_written_over`` (her save made after the
last chunk is read, before the rename: deterministic); control
``test_control_63a_1_her_save_before_the_take_is_kept_and_the_source_goes_beside``.

(2) medium-low (honest data written over; a local user who owns the source sets its mtime at will):
the copy an edit is put beside as is named by the source's mtime to the minute (``copy_name``), and
``_copy(beside=True)`` renames over that name: the source's next edit stamped in the same minute is
written over her edit of that copy (her merge of the conflict), unsaid.
Steps: a.txt imported; she edits Imported/a.txt; the source edited (mtime T) goes beside as
``a (conflict import <T's minute>).txt`` (the record now names it); she saves her merge into that copy;
the source edited again, stamped T + 1 s.  Seen: the copy holds v3, her merge only its older version;
expected: her merge kept, v3 in a copy of its own (what happens when the second edit is stamped in
another minute: the control).  Cause: importer.py ``_copy`` (``copy_name(name, "import",
before.mtime_ns)``, then ``write_file``'s rename over); ``_changed_in_vault`` judges only the place,
never the copy the record names.  By reading, the same for a source with no record put beside a
file of hers (40c (4)) whose copy name is taken.  Impact: as (1).  Fix: never rename over at a beside name
(``noreplace``, and the next free name on ``Exists``), or judge the record's own file as the place is.

(3) low (robustness across builds; honest use): a re-keys-owed record written by the build before
8904923 (``taken`` a list) is read with every listed Share taken back "whatever its body"
(``rekeys_owed.owed``: ``SAFE_INTEGER``) until its debts are paid; a debt owed for good (its file
deleted: ``_pay_owed`` skips it) keeps that for good, so 61a (1) stays for such a device: her re-share
of the folder on her desktop is taken back at the laptop's every load after the first (a
``replayed-grant`` alarm on her own Share, the folder re-keyed away from bob).
Steps: 61a (1)'s second scene (docs/notes.txt moved out and owed, the laptop's ``unshare`` of docs killed
before the Share goes; on the desktop notes.txt deleted and docs shared with bob WRITE), the laptop's
record rewritten in the older format before the desktop's re-share.  Seen: unlocks 1-3 (shared), (not
shared, replayed-grant), (not shared, replayed-grant); expected: shared at each (the control, this
build's record).  Cause: rekeys_owed.py ``owed`` (list -> ``SAFE_INTEGER`` stamps, kept by ``owe``'s
``max`` and ``_write`` while a debt names the Share); loading.py ``newest <= made`` always true.  Fix: at
the first load that reads a list, record for each listed Share the stamp of the newest body seen then
(``Freshness.newest_seen``, as ``unshare`` would have) and write the record back; or drop a debt's
Share names once its file is gone for good.
Test: ``test_63a_3_an_older_builds_record_owed_for_good_does_not_take_back_her_re_share_for_good``;
control ``test_control_63a_3_the_same_with_this_builds_record``.

Tried and held (read, or run where a test is named): the load's taking back (``newest_seen <= made``)
against a newer signing seen then rolled back (v1 replayed after v2 seen: ``_replay``, older than the
tip), a concurrent body of hers raising ``seen``'s stamp after the taking back was saved (the deletion
mark already saved: refused); ``given_again`` then a failed put (61a's reading: the load's mark saved);
``_pay_owed``'s payment without a re-key after a stale device's unshare (read: ``her_key_at`` derives
for the recipients seen here, bob not among them once his Share is taken back at the load); a kill at
each step of ``_move`` (rename / old record's deletion / new record: the next take finds it "moved by hand" or
``_already_there``) and of ``_copy`` (the record's fid stale: ``_already_there``); ``_find_moved`` with
a file of the record's bytes at the freed inode made by the folder's other writer (only a rename in her
vault; the source removed only where the vault file reads back the record's bytes); 710e3ac's
``vault_path != place`` (``import_into`` is normalised by ``settings.parse``, ``path_of`` gives the
place the import wrote; a file of hers at the place with the record's bytes while the record's own
file lives elsewhere is the backup case 62a chose to write over: same bytes, nothing lost); the
ledger's ``saw_owner`` on every path (first owner wins, ``mine`` over ``owners``, ``_bound`` only for
nodes held with their key after the settling), read only: nothing beyond 58b's limits found.
Not tried: two processes of hers writing the re-keys-owed record; a real mount for (1) (in-process,
the save injected between the import's last chunk and its rename).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from fusevault import paths
from fusevault.errors import Exists
from fusevault.imports.importer import NEW, Importer
from fusevault.vault.model import alarms, rekeys_owed
from fusevault.vault.model.settings import Settings
from fusevault.vault.services.conflict_copies import copy_name
from fusevault.vault.services.placing import NoKernel, file_digest, judged, make_dirs, write_file
from fusevault.vault.volume import Caller, Volume
from inprocess.conftest import _compose, on_volume
from inprocess.test_attack_59a import _one
from inprocess.test_attack_60a import _move_out_then_lock
from inprocess.test_attack_61a import _shared_again_on_desktop, _unlock, _unshare_killed
from inprocess.test_rekeys_owed import _dropped

T0 = 10**18  # a source stamp (2001-09-09 01:46:40 UTC), minute-aligned give or take


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _save(volume: Volume, importer: Importer, folder, name: bytes, data: bytes) -> None:
    """Her editor's save of ``folder/name`` through the mount: a new file renamed over it."""
    swap = b"." + name + b".swp"
    await write_file(volume, folder, swap, _one(data), mode=0o600, caller=importer.caller, kernel=NoKernel())
    await volume.rename(folder.ino, swap, folder.ino, name, noreplace=False, exchange=False)


def _edit_during_import(vault: Path, inbox: Path, during: bool) -> tuple[str, dict[str, str]]:
    """a.txt imported; the source edited; while the import reads it (``during``: after its last chunk,
    before the rename; else just before the take) she saves her edit of Imported/a.txt: (the outcome,
    the name -> bytes of each file in Imported)."""
    settings = Settings(source_dir_to_watch=str(inbox), delete_file_from_source=False)
    a = inbox / "a.txt"

    async def main(volume: Volume) -> tuple[str, dict[str, str]]:
        importer = Importer(volume, settings, NoKernel())
        await importer.load()
        a.write_bytes(b"version one!")
        assert (await importer.take("a.txt"))[0] == NEW
        folder = volume.resolve(b"Imported")
        a.write_bytes(b"version 2 of the source")
        os.utime(a, ns=(T0, T0))
        if during:
            chunks = importer._chunks

            async def hers_meanwhile(held):
                async for piece in chunks(held):
                    yield piece
                await _save(volume, importer, folder, b"a.txt", b"her edit")

            importer._chunks = hers_meanwhile  # type: ignore[method-assign]
        else:
            await _save(volume, importer, folder, b"a.txt", b"her edit")
        outcome = (await importer.take("a.txt"))[0]
        folder = volume.resolve(b"Imported")
        held = {}
        for name, ino in sorted(folder.children.items()):
            node = volume.get(ino)
            held[name.decode()] = {_sha(b"her edit"): "hers", _sha(b"version 2 of the source"): "v2",
                                   _sha(b"version one!"): "v1"}.get(await file_digest(volume, node), "?")
        return outcome, held

    return on_volume(vault, main)


def test_63a_1_her_save_during_the_imports_copy_is_not_written_over(vault: Path, inbox: Path) -> None:
    outcome, held = _edit_during_import(vault, inbox, during=True)
    print("63a (1):", outcome, held)
    assert held.get("a.txt") == "hers"
    assert "v2" in held.values()


def test_control_63a_1_her_save_before_the_take_is_kept_and_the_source_goes_beside(vault: Path,
                                                                                inbox: Path) -> None:
    outcome, held = _edit_during_import(vault, inbox, during=False)
    assert held.get("a.txt") == "hers" and sorted(held.values()) == ["hers", "v2"], held


LABELS = {_sha(b"her edit"): "hers", _sha(b"her editone!"): "hers", _sha(b"her file"): "her file",
          _sha(b"version 2 of the source"): "v2", _sha(b"version one!"): "v1"}


def _import_while(vault: Path, inbox: Path, record: bool, before, meanwhile) -> tuple[dict[str, str], list]:
    """a.txt imported first (``record``) or never; the source (version 2) taken with ``before(volume,
    importer)`` done before the take and ``meanwhile(volume, importer)`` after its last chunk is read
    (before its placing): (name -> which bytes each file in Imported holds, the alarms' kinds)."""
    settings = Settings(source_dir_to_watch=str(inbox), delete_file_from_source=False)
    a = inbox / "a.txt"

    async def main(volume: Volume) -> tuple[dict[str, str], list]:
        importer = Importer(volume, settings, NoKernel())
        await importer.load()
        if record:
            a.write_bytes(b"version one!")
            assert (await importer.take("a.txt"))[0] == NEW
        else:
            await make_dirs(volume, b"Imported", importer.caller)
        a.write_bytes(b"version 2 of the source")
        os.utime(a, ns=(T0, T0))
        await before(volume, importer)
        chunks = importer._chunks

        async def hers_meanwhile(held):
            async for piece in chunks(held):
                yield piece
            await meanwhile(volume, importer)

        importer._chunks = hers_meanwhile  # type: ignore[method-assign]
        await importer.take("a.txt")
        held = {}
        for name, ino in sorted(volume.resolve(b"Imported").children.items()):
            held[name.decode()] = LABELS.get(await file_digest(volume, volume.get(ino)), "?")
        return held, [entry["kind"] for entry in alarms.for_user(volume.key.user_id)._seen.values()]

    return on_volume(vault, main)


async def _nothing(volume: Volume, importer: Importer) -> None:
    pass


def test_63a_1_a_new_sources_place_taken_meanwhile_by_a_file_of_hers_is_kept(vault: Path, inbox: Path,
                                                                             monkeypatch) -> None:
    """A source with no record and nothing at its place (judged: a free place), her file made there while
    it is read: hers kept, the source beside it, said."""
    monkeypatch.setattr(alarms, "_BY_USER", {})

    async def hers(volume: Volume, importer: Importer) -> None:
        await _save(volume, importer, volume.resolve(b"Imported"), b"a.txt", b"her file")

    held, kinds = _import_while(vault, inbox, False, _nothing, hers)
    assert held.get("a.txt") == "her file" and sorted(held.values()) == ["her file", "v2"], held
    assert "import-placed" in kinds


def test_63a_1_her_write_into_the_judged_file_during_the_copy_is_not_written_over(vault: Path,
                                                                                  inbox: Path) -> None:
    """Not a save by rename: her write into the very file judged (the same node) while the source is read
    is a change too: that file kept as she wrote it, the source beside it."""
    async def hers(volume: Volume, importer: Importer) -> None:
        node = volume.resolve(b"Imported/a.txt")
        fh = await volume.open(node.ino, write=True)
        try:
            await volume.write(fh, 0, b"her edit")
        finally:
            await volume.release(fh)

    held, _ = _import_while(vault, inbox, True, _nothing, hers)
    assert held.get("a.txt") == "hers" and sorted(held.values()) == ["hers", "v2"], held


def test_control_63a_1_nothing_of_hers_meanwhile_the_source_is_placed_over_the_import(vault: Path,
                                                                                    inbox: Path) -> None:
    held, _ = _import_while(vault, inbox, True, _nothing, _nothing)
    assert held == {"a.txt": "v2"}, held


def test_63a_2_a_copys_name_taken_while_the_source_is_read_is_not_written_over(vault: Path,
                                                                               inbox: Path) -> None:
    """Her edit of Imported/a.txt (the source goes beside it), and a file of hers made at the copy's name
    while the source is read: kept, the source at the next free name."""
    copy = copy_name(b"a.txt", "import", T0)

    async def edit(volume: Volume, importer: Importer) -> None:
        await _save(volume, importer, volume.resolve(b"Imported"), b"a.txt", b"her edit")

    async def hers(volume: Volume, importer: Importer) -> None:
        await _save(volume, importer, volume.resolve(b"Imported"), copy, b"her file")

    held, _ = _import_while(vault, inbox, True, edit, hers)
    assert held.get("a.txt") == "hers" and held.get(copy.decode()) == "her file", held
    assert sorted(held.values()) == ["her file", "hers", "v2"], held


def test_63a_1_a_placing_with_no_free_name_beside_leaves_nothing_behind(vault: Path) -> None:
    """``write_file`` judged over a file that changed, with no name beside to go to: Exists, the file
    there untouched, no temporary file left."""

    async def main(volume: Volume) -> None:
        caller = Caller(os.getuid(), os.getgid())
        folder = await make_dirs(volume, b"Imported", caller)
        first, _ = await write_file(volume, folder, b"a.txt", _one(b"version one!"), mode=0o600,
                                    caller=caller, kernel=NoKernel())
        over = judged(first)
        await write_file(volume, folder, b"a.txt", _one(b"her edit"), mode=0o600, caller=caller,
                         kernel=NoKernel())
        with pytest.raises(Exists):
            await write_file(volume, folder, b"a.txt", _one(b"version 2 of the source"), mode=0o600,
                             caller=caller, kernel=NoKernel(), over=over, beside=iter([]))
        assert sorted(folder.children) == [b"a.txt"]
        assert LABELS[await file_digest(volume, volume.resolve(b"Imported/a.txt"))] == "hers"

    on_volume(vault, main)


def _edit_of_the_copy(vault: Path, inbox: Path, second_ns: int) -> dict[str, str]:
    """a.txt imported; she edits Imported/a.txt; the source's edit (stamped T0) goes beside as a copy;
    she edits that copy (her merge); the source edited again, stamped ``second_ns``: name -> which bytes
    each file in Imported holds."""
    settings = Settings(source_dir_to_watch=str(inbox), delete_file_from_source=False)
    a = inbox / "a.txt"
    labels = {_sha(b"version one!"): "v1", _sha(b"her edit"): "her edit", _sha(b"v2 of the source"): "v2",
              _sha(b"her merge of v2"): "her merge", _sha(b"v3 of the source"): "v3"}

    async def main(volume: Volume) -> dict[str, str]:
        importer = Importer(volume, settings, NoKernel())
        await importer.load()
        a.write_bytes(b"version one!")
        assert (await importer.take("a.txt"))[0] == NEW
        folder = volume.resolve(b"Imported")
        await _save(volume, importer, folder, b"a.txt", b"her edit")
        a.write_bytes(b"v2 of the source")
        os.utime(a, ns=(T0, T0))
        await importer.take("a.txt")
        [copy] = [n for n in volume.resolve(b"Imported").children if n != b"a.txt"]
        await _save(volume, importer, volume.resolve(b"Imported"), copy, b"her merge of v2")
        a.write_bytes(b"v3 of the source")
        os.utime(a, ns=(second_ns, second_ns))
        await importer.take("a.txt")
        out = {}
        for name, ino in sorted(volume.resolve(b"Imported").children.items()):
            out[name.decode()] = labels.get(await file_digest(volume, volume.get(ino)), "?")
        return out

    return on_volume(vault, main)


def test_63a_2_her_edit_of_the_import_copy_is_not_written_over_by_the_next_edit(vault: Path,
                                                                               inbox: Path) -> None:
    held = _edit_of_the_copy(vault, inbox, T0 + 10**9)
    print("63a (2):", held)
    assert sorted(held.values()) == ["her edit", "her merge", "v3"], held


def test_control_63a_2_the_next_edit_in_another_minute_goes_to_a_copy_of_its_own(vault: Path,
                                                                                inbox: Path) -> None:
    held = _edit_of_the_copy(vault, inbox, T0 + 120 * 10**9)
    assert sorted(held.values()) == ["her edit", "her merge", "v3"], held


def _as_the_build_before_stamps(root, key) -> None:
    """The device's record rewritten as the build of rounds 59c to 61 wrote it (``taken`` a list of ids),
    its debts as they are."""
    owed = rekeys_owed.owed(root, key)
    path = paths.confirmed_file(root, key.user_id, rekeys_owed.SUFFIX)
    rows = [{"fid": d.fid, "epoch": d.epoch, "shares": sorted(d.shares), "token": d.token}
            for d in owed.values()]
    plain = json.dumps({"owed": rows,
                        "taken": sorted(owed.taken)}).encode()
    path.write_bytes(key.seal_device(rekeys_owed.KIND, path.name, plain))


def _re_share_after_an_older_builds_unshare(vault, monkeypatch, tmp_path, older: bool) -> list:
    """61a (1)'s second scene (notes.txt moved out of docs and owed, the laptop's unshare of docs killed
    before the Share goes, on her desktop notes.txt deleted and docs shared again with bob WRITE), the
    laptop's record as the build before 8904923 wrote it when ``older``: three unlocks of the laptop."""
    monkeypatch.setattr(alarms, "_BY_USER", {})
    _move_out_then_lock(vault)
    composed = _compose(vault)
    _unshare_killed(composed, monkeypatch)
    if older:
        _as_the_build_before_stamps(composed.volume.layout.root, composed.volume.key)
    _dropped(composed)
    _shared_again_on_desktop(vault, monkeypatch, tmp_path, deleted=b"notes.txt")
    return [_unlock(vault, monkeypatch) for _ in range(3)]


def test_63a_3_an_older_builds_record_owed_for_good_does_not_take_back_her_re_share_for_good(
        vault_copy, monkeypatch, tmp_path) -> None:
    seen = _re_share_after_an_older_builds_unshare(vault_copy, monkeypatch, tmp_path, older=True)
    print("63a (3):", seen)
    assert seen == [(True, True, False)] * 3


def test_control_63a_3_the_same_with_this_builds_record(vault_copy, monkeypatch, tmp_path) -> None:
    seen = _re_share_after_an_older_builds_unshare(vault_copy, monkeypatch, tmp_path, older=False)
    assert seen == [(True, True, False)] * 3
