"""Attack round 60a (a short one at round 59's fixes: d0a8cef, ae4ec2c, 6740d06).

(1) A move out of a shared folder, then a lock before its re-key, takes back the folder's Share for good
(medium: honest data refused for good -- her share of the folder is dropped on her own device, no
command of hers asked for it).
Attacker: none needed (an honest lock, crash or unmount right after a move); nothing is forged.
Steps: alice shares docs READ with bob (docs/notes.txt in it); she moves docs/notes.txt to her root;
the move service takes bob's key of notes.txt back and records the re-key as owed
(rotation.py ``_taken_back`` -> ``_requested``: the debt names the Shares LOST by the move, i.e.
``sharing.doc_id(docs, bob)``, the folder's Share, which stays in force); she locks before the re-key
(test_rekeys_owed.py's ``test_a_lock_right_after_a_move_out_...`` scene).  Her next unlock: the load
(vault/tree/loading.py ``_load``, the 59c (1) fix) takes back and marks deleted every Share a debt
names, so the folder's live Share is now "a replayed body" (freshness.py ``_replay``: gone, same tip).
Seen: after that unlock (debt paid by the re-key) and any later one, docs is no longer shared with bob
on her device (``volume.covering(docs)`` empty, a ``replayed-grant`` alarm), a file she writes in docs
gets no key for bob; expected: the folder's Share in force (only the file moved out lost bob's key).
Cause: vault/tree/loading.py:99-101 (``rekeys_owed.owed(...).shares()``) treats every Share a debt names
as one she took back, but rotation.py:251 records in a move-out's debt the Share the file LEFT, not one
taken back; the mark (``deleted``) outlives the debt (freshness keeps the id deleted, so the live body
is a replay at every later load).  Impact: bob silently loses docs (new files, new versions not sealed
to him) and she sees a replay alarm for her own share; it lasts until she runs ``share`` again.
Fix: take back at load only the Shares an ``unshare`` recorded (a kind on the debt: unshare vs move),
or record no Share for a move-out's debt (``_requested(..., shares=())``: its Share was not taken back).
"""

from __future__ import annotations

import pytest
import trio

from fusevault.vault.model import rekeys_owed, sharing
from fusevault.vault.services import rotation
from inprocess.conftest import ME, ROOT, _close, _compose, make
from inprocess.test_rekeys_owed import _bob, _shared_folder, _unlocked


def _move_out_then_lock(vault) -> tuple[str, str]:
    """docs shared with bob, docs/notes.txt moved to her root, its keys taken back and its re-key owed,
    locked before the re-key (the move service's ``finally``): (docs' fid, notes.txt's fid)."""
    folder, fid, _, _ = _shared_folder(vault)
    composed = _compose(vault)
    try:
        volume = composed.volume
        trio.run(composed.ops.rename, volume.resolve(b"docs").ino, b"notes.txt", ROOT, b"notes.txt", 0, ME)

        async def lock() -> None:
            for each, lost in volume.tree.take_moved().items():
                await rotation._taken_back(volume, each, lost)

        trio.run(lock)
        owed = rekeys_owed.owed(volume.layout.root, volume.key)
        assert set(owed) == {fid}
        assert owed[fid].shares == {sharing.doc_id(folder, _bob(volume))}, "the debt names the folder's Share"
    finally:
        trio.run(_close, composed)
    return folder, fid


def _docs_shared(vault, folder: str, rounds: int) -> list[bool]:
    """Whether docs is shared with bob on her device after each of ``rounds`` unlocks."""
    out = []
    for _ in range(rounds):
        composed = _compose(vault)
        try:
            volume = composed.volume
            trio.run(_unlocked, volume)
            out.append(bool(volume.covering(volume.find(folder))))
        finally:
            trio.run(_close, composed)
    return out


@pytest.mark.xfail(strict=True, reason="60a (1): a move out of a shared folder then a lock takes back the "
                                       "folder's Share for good at the next load")
def test_a_move_out_then_a_lock_leaves_the_folder_shared(vault_copy) -> None:
    folder, fid = _move_out_then_lock(vault_copy)
    composed = _compose(vault_copy)
    try:
        volume = composed.volume
        trio.run(_unlocked, volume)
        assert rekeys_owed.owed(volume.layout.root, volume.key) == {}, "the re-key owed is paid"
        docs = volume.find(folder)
        assert "replayed-grant" not in volume.trust.alarms, "her own live Share refused as a replay"
        assert volume.covering(docs), "docs is no longer shared with bob on her device"
        new = trio.run(make, composed.ops, b"later.txt", b"for bob", docs.ino)
        assert new.st_ino
        node = volume.resolve(b"docs/later.txt")
        assert [r for g in volume.covering(node) for r in volume.sharing.reaches(g)], "no key for bob"
    finally:
        trio.run(_close, composed)
    assert _docs_shared(vault_copy, folder, 1) == [True], "refused at the unlocks after, too"


def test_control_a_move_out_re_keyed_before_the_lock_leaves_the_folder_shared(vault_copy) -> None:
    """The same move, its re-key done before the lock (no debt at the next load): docs stays shared."""
    folder, fid, _, _ = _shared_folder(vault_copy)
    composed = _compose(vault_copy)
    try:
        volume = composed.volume
        trio.run(composed.ops.rename, volume.resolve(b"docs").ino, b"notes.txt", ROOT, b"notes.txt", 0, ME)

        async def service() -> None:
            for each, lost in volume.tree.take_moved().items():
                request = await rotation._taken_back(volume, each, lost)
                if request is not None:
                    await rotation._rekey(volume, request)

        trio.run(service)
        assert rekeys_owed.owed(volume.layout.root, volume.key) == {}
    finally:
        trio.run(_close, composed)
    assert _docs_shared(vault_copy, folder, 2) == [True, True]
