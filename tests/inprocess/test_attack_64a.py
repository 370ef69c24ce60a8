"""Attack round 64a (a short one at round 63a's fixes: the importer's compare-and-place, 4b93216, and the
stamping of an older build's re-keys-owed record, 92d2b3c).

(1) medium (honest data written over): her save of the imported file whose contents are sealed but whose
version is not yet committed when the import places its copy is written over, unsaid.
Attacker: none (honest use: she saves Imported/a.txt while the watcher imports a.txt's new version), as
63a (1).
Steps: a.txt imported to Imported/a.txt; the source edited; the import judges the place
(``_changed_in_vault`` -> ``placing.judged``: fid, head, nothing pending) and copies the source; meanwhile
she writes Imported/a.txt and closes it: ``OpenFiles.commit_version`` seals her contents
(``Content.seal_version`` sets ``content.changed = False``, in a worker thread for a file past
``INLINE_SEAL``) and then waits for the tree's metadata lock in ``Tree.commit_node`` to set ``node.head``;
the import's rename (``Tree.rename(over=)``) holds the lock first (queued before her, or the lock free
as her task waits to be scheduled after the thread: any metadata commit in flight, a sync, orders it
so).  ``judged``'s ``still`` sees the same fid, the same head and ``content.changed`` False: the copy is
renamed over her file.  Her commit then runs on the unlinked node.
Seen: Imported/a.txt holds the source's v2, no file in Imported holds her edit, no ``import-placed``
alarm.  Expected: her edit kept at its place, the source beside it (as 63a (1)'s fix does for a write
still pending: ``test_63a_1_her_write_into_the_judged_file_during_the_copy_is_not_written_over``).
Cause: placing.py ``_pending`` (``content.changed`` only) and ``judged`` (head as of now): between
sealing.py ``seal_version``'s ``self.changed = False`` and open_files.py ``commit_version``'s
``change()`` (``node.head = vid`` under ``commit_node``'s lock) a write is neither pending nor committed.
Impact: her edit silently leaves her tree (at best an orphan version of the replaced file's id, not the
new file's history, which was taken at the rename).  Fix: count a commit under way as pending (a flag or
counter set before the seal and cleared after ``commit_node``, or ``content_lock(node)`` held/asked by
``still``: e.g. ``judged`` refuses a node whose content lock is held), or clear ``changed`` only in
``change()``.
Test: ``test_64a_1_her_save_sealed_but_not_yet_committed_is_not_written_over`` (the pause injected at
``commit_node``'s door for her node: what a held metadata lock does); control
``test_control_64a_1_her_save_committed_before_the_placing_is_kept`` (the same save let through before
the placing: hers kept, v2 beside).

(2) low-medium (honest data refused for good; robustness across builds, as 63a (3)): 92d2b3c's stamping
of an older build's re-keys-owed record takes the newest body seen at the new build's first load for the
body that build's ``unshare`` took back; when the older build loaded even once after her re-share from
another device arrived (what a user who meets 63a (3) does before she upgrades), that newest body is her
re-share: stamped with it, it is taken back at every load of the new build, for good while the debt is
owed (its file deleted: never paid).
Attacker: none (honest use).
Steps: 63a (3)'s scene (docs/notes.txt moved out and owed; the laptop's ``unshare`` of docs killed before
the Share goes, its record a list, as the build before stamps wrote it; on the desktop notes.txt deleted
and docs shared with bob WRITE); the laptop unlocked once by the older build (its load: the list read as
``SAFE_INTEGER`` stamps, nothing written back; its first load admits the re-share, a newer signing after
the deletion mark, ``Freshness.seen`` now at its stamp); then the new build.
Seen: unlocks 1-3 of the new build (not shared, bob's key not at docs' epoch, replayed-grant) each;
expected: shared at each (as with no older load between: the control, = 63a (3)'s fixed case).
Cause: rekeys_owed.py ``taken_at_load`` stamps with ``newest_seen`` (freshness.py ``seen``), which the
older build's loads move past the body its unshare took back; loading.py ``newest <= made`` then holds
for her re-share.  Impact: 63a (3) unfixed on a device that ran the older build after her re-share
(the folder re-keyed away from bob at every load of that device; her re-share refused, said as a replay).
Fix: stamp with the body the unshare took back where it is kept (``Freshness.taken_back[share]``: set by
that build's ``unshare``, moved by its loads only past a load that refused; by reading, one older load
leaves it at the unshare's body; a scratch run of it gave shared at each unlock), ``newest_seen`` only
when none; or drop from ``taken`` a Share named only by debts whose file is gone from her tree.
Test: ``test_64a_2_her_re_share_seen_once_by_the_older_build_is_not_taken_back_for_good``; control
``test_control_64a_2_no_load_by_the_older_build_after_her_re_share``.

Tried and held (read, or run where a test is named): ``judged`` against her save by rename, a new file
of hers, a folder at the place (``nothing``: Exists, then beside), a hard link of the judged file (the
other name keeps it: nothing lost), her rename of the parent folder with another folder put at its path
(``make_dirs`` finds the new one: another fid at the name, beside), a sync's new version (head moves),
a truncate while open (``changed``), a versions restore (``reset_to`` then a commit); ``_place``'s
loop (numbered names skipped with no await, then random ones: bounded in expectation; ``BESIDE_TRIES``
counts only lost races); the callers with ``over`` None (links/owner.py drops, versions, conflicts:
unchanged but for the temporary file now unlinked on a failed rename); ``import-placed`` (one per
(kind, location), as the other import alarms, bounded by ``alarms.LIMIT``); the control
``test_control_64a_1_her_save_committed_before_the_placing_is_kept``.  (b): ``taken_at_load`` against a
Share the older build's record lists with no body seen here (dropped: that build's load did nothing
for it either, ``took_back`` of an unseen id is a no-op), a replayed body before the first load (the
stamping runs before any grant is read; a replay never raises ``seen``), a debt added concurrently (one
process per vault, ``opening.hold``; ``_writing`` in-process), a damaged record (stamped per load, not
written: as (2) when her re-share is seen between two such loads).
Not tried: a real mount; the temporary file left when she lost write access to the folder meanwhile
(the rename and the clean-up's unlink both refused: as before 4b93216).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
import trio.testing

from fusevault.imports.importer import NEW, Importer
from fusevault.vault.model import alarms, rekeys_owed
from fusevault.vault.model.settings import Settings
from fusevault.vault.services.placing import NoKernel, file_digest
from fusevault.vault.volume import Volume
from inprocess.conftest import _compose, on_volume
from inprocess.test_attack_60a import _move_out_then_lock
from inprocess.test_attack_61a import _shared_again_on_desktop, _unlock, _unshare_killed
from inprocess.test_attack_63a import _as_the_build_before_stamps, _sha
from inprocess.test_rekeys_owed import _dropped

T0 = 10**18


HERS = b"her edit " * 20000  # past INLINE_SEAL: sealed in a worker thread, as a real file's save
LABELS = {_sha(HERS): "hers", _sha(b"version 2 of the source"): "v2", _sha(b"version one!"): "v1"}


def _save_committing_during_placing(vault: Path, inbox: Path, let_through: bool,
                                    how: str = "close") -> tuple[dict, list]:
    """a.txt imported; the source edited; after its last chunk is read, she writes Imported/a.txt and
    closes it; her commit is held at ``commit_node``'s door (the metadata lock busy) until the take
    is done, or (``let_through``) let through before the placing.  ``how`` her version is committed:
    at the close, by an fsync or a flush before it, or at a close whose commit then fails (a full disk)."""
    settings = Settings(source_dir_to_watch=str(inbox), delete_file_from_source=False)
    a = inbox / "a.txt"

    async def main(volume: Volume) -> tuple[dict, list]:
        importer = Importer(volume, settings, NoKernel())
        await importer.load()
        a.write_bytes(b"version one!")
        assert (await importer.take("a.txt"))[0] == NEW
        target = volume.resolve(b"Imported/a.txt")
        a.write_bytes(b"version 2 of the source")
        os.utime(a, ns=(T0, T0))
        tree = volume.tree
        original = tree.commit_node
        at_door, go = trio.Event(), trio.Event()

        async def door(node, change):
            if node is target and not go.is_set():
                assert node.content is not None and not node.content.changed  # sealed
                at_door.set()
                await go.wait()
                if how == "failed":
                    raise DiskFull
            await original(node, change)

        tree.commit_node = door  # type: ignore[method-assign]
        async with trio.open_nursery() as nursery:
            async def hers() -> None:
                fh = await volume.open(target.ino, write=True)
                try:
                    await volume.write(fh, 0, HERS)
                    if how == "fsync":
                        await volume.fsync(fh)
                    elif how == "flush":
                        await volume.flush(fh)
                finally:
                    try:
                        await volume.release(fh)
                    except DiskFull:
                        assert how == "failed"

            chunks = importer._chunks

            async def hers_meanwhile(held):
                async for piece in chunks(held):
                    yield piece
                nursery.start_soon(hers)
                await at_door.wait()
                if let_through:
                    go.set()
                    await trio.testing.wait_all_tasks_blocked()

            importer._chunks = hers_meanwhile  # type: ignore[method-assign]
            await importer.take("a.txt")
            go.set()
        held = {}
        for name, ino in sorted(volume.resolve(b"Imported").children.items()):
            held[name.decode()] = LABELS.get(await file_digest(volume, volume.get(ino)), "?")
        return held, [entry["kind"] for entry in alarms.for_user(volume.key.user_id)._seen.values()]

    return on_volume(vault, main)


class DiskFull(Exception):
    """Her commit failing at the store (a full disk, an I/O error)."""


@pytest.mark.parametrize("how", ["close", "fsync", "flush", "failed"])
def test_64a_1_her_save_sealed_but_not_yet_committed_is_not_written_over(vault: Path, inbox: Path,
                                                                        monkeypatch, how: str) -> None:
    """Each way a version of hers is sealed and committed (close, fsync, flush, a commit that then
    fails and keeps her contents pending): held between its seal and its commit, the import's copy
    goes beside, said; hers stays at its place."""
    monkeypatch.setattr(alarms, "_BY_USER", {})
    held, kinds = _save_committing_during_placing(vault, inbox, let_through=False, how=how)
    print("64a (1):", held, kinds)
    assert held.get("a.txt") == "hers" and sorted(held.values()) == ["hers", "v2"], held
    assert "import-placed" in kinds


def test_control_64a_1_her_save_committed_before_the_placing_is_kept(vault: Path, inbox: Path,
                                                                     monkeypatch) -> None:
    monkeypatch.setattr(alarms, "_BY_USER", {})
    held, kinds = _save_committing_during_placing(vault, inbox, let_through=True)
    assert held.get("a.txt") == "hers" and sorted(held.values()) == ["hers", "v2"], held
    assert "import-placed" in kinds


def _re_share_seen_by_the_older_build_then_upgraded(vault, monkeypatch, tmp_path, older_loads: int) -> list:
    """63a (3)'s scene (the laptop's unshare of docs killed, its record as the build before stamps wrote
    it, docs shared again with bob on her desktop), then ``older_loads`` unlocks of the laptop by the
    older build (its load: each listed Share taken back whatever its body, the record left a list), then
    three by this build: (docs shared with bob, bob's key at its epoch, a replayed-grant alarm) each."""
    monkeypatch.setattr(alarms, "_BY_USER", {})
    _move_out_then_lock(vault)
    composed = _compose(vault)
    _unshare_killed(composed, monkeypatch)
    laptop = composed.volume.layout.root, composed.volume.key
    _as_the_build_before_stamps(*laptop)
    _dropped(composed)
    _shared_again_on_desktop(vault, monkeypatch, tmp_path, deleted=b"notes.txt")
    with monkeypatch.context() as patched:
        # The build before 92d2b3c: the list read as SAFE_INTEGER stamps, nothing written back.
        patched.setattr(rekeys_owed, "taken_at_load",
                        lambda root, key, newest: rekeys_owed.owed(root, key).taken)
        for _ in range(older_loads):
            assert _unlock(vault, monkeypatch) == (True, True, False), "the older build's first load"
            _as_the_build_before_stamps(*laptop)  # as that build writes it back (a list), if it did
    return [_unlock(vault, monkeypatch) for _ in range(3)]


def test_64a_2_her_re_share_seen_once_by_the_older_build_is_not_taken_back_for_good(
        vault_copy, monkeypatch, tmp_path) -> None:
    seen = _re_share_seen_by_the_older_build_then_upgraded(vault_copy, monkeypatch, tmp_path, older_loads=1)
    print("64a (2):", seen)
    assert seen == [(True, True, False)] * 3


def test_control_64a_2_no_load_by_the_older_build_after_her_re_share(vault_copy, monkeypatch,
                                                                     tmp_path) -> None:
    seen = _re_share_seen_by_the_older_build_then_upgraded(vault_copy, monkeypatch, tmp_path, older_loads=0)
    assert seen == [(True, True, False)] * 3
