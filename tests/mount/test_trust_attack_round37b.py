"""Attack round 37b: the newest code, fresh eyes.

Holes
-----
1. A WRITE member's two moves, judged at her next unlock, leave a file that left a share under the key
   its READ members hold.  bob (WRITE on docs and other; carol READ on docs), while alice is away, moves
   docs/sub/notes.txt to other/notes.txt and then docs/sub to other/sub.  At her next unlock (and the
   one after), carol's key file of notes.txt is still there and notes.txt keeps the DEK carol holds: what
   alice writes to other/notes.txt afterwards, carol (whose grant covers docs only) can read.  No alarm
   (``fusevault status`` lists none).  Seen; the control (only the file moved) is re-keyed.
   Cause: fusevault/vault/tree/authorship.py:473-474 (``settle``): the shares the file left are taken
   as ``volume.covering(folder)`` of each folder it was in (``was``), evaluated where that folder is
   NOW, after the unlock placed every node: sub is in other by then, so its shares are other's, which
   the file still has; ``note_moved`` finds nothing lost.  sub's own move re-keys sub's subtree, which
   no longer holds notes.txt (rotation.py ``_taken_back`` -> ``subtree``).
   Impact: a key reachable by someone whose grant on the file ended; new content readable by carol.
   Fix: judge ``before`` by the shares above the file's place as this device last saw it: the ledger's
   ``was_at`` path (the folders' chain as seen), not the folders' current place; or, when a folder in
   ``was`` itself moved, take the covering of its recorded old place (its own ``was_placed``),
   recursively; at worst take every share that covered the old folder at any point of this settle.
   Test: ``test_a_file_moved_out_of_a_share_then_its_old_folder_after_it_is_re_keyed[True]``.

What held
---------
(none yet)

Not tried
---------
(none yet)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import mounted

from mount.test_moving_out_of_a_share import CAROL, _current_dek, _docs_and_other, _key_of
from mount.test_trust_rollback import alarms
from mount.test_trust_writes import BOB, _node_fid


def _notes_in_docs_sub(vault: Path, mnt: Path) -> tuple[str, bytes]:
    """docs (bob WRITE, carol READ), other (bob WRITE); notes.txt in docs/sub; its id and key."""
    _docs_and_other(vault, mnt)
    with mounted(vault, mnt) as a:
        (a / "docs" / "notes.txt").rename(a / "docs" / "sub" / "notes.txt")  # inside docs: no re-key
    fid = _node_fid(vault, "alice", "notes.txt")
    kept = _current_dek(vault, fid)
    assert _key_of(vault, "carol", CAROL, fid) == kept
    return fid, kept


def _eventually(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    """Whether ``check`` holds within ``seconds`` (no assertion: the caller asserts)."""
    end = time.monotonic() + seconds
    while not check():
        if time.monotonic() > end:
            return False
        time.sleep(0.2)
    return True


def _her_two_unlocks(vault: Path, mnt: Path, where: str, fid: str) -> list[dict]:
    """She unlocks, writes to it, locks; unlocks again, where a re-key left at a lock is done."""
    with mounted(vault, mnt) as a:
        _eventually(lambda: _key_of(vault, "carol", CAROL, fid) is None)
        (a / where).write_text("written after bob moved it: not for carol")
    with mounted(vault, mnt) as a:
        assert (a / where).read_text() == "written after bob moved it: not for carol"
        _eventually(lambda: _key_of(vault, "carol", CAROL, fid) is None)
        return alarms(a)


@pytest.mark.parametrize("then_sub", [False, True])  # False: the control, only the file moved
def test_a_file_moved_out_of_a_share_then_its_old_folder_after_it_is_re_keyed(
        vault: Path, tmp_path: Path, then_sub: bool) -> None:
    """bob (WRITE on docs and other), while she is away: docs/sub/notes.txt -> other/notes.txt, then
    docs/sub -> other/sub.  notes.txt left docs: carol's key of it must be taken back and it re-keyed."""
    mnt = tmp_path / "mnt"
    fid, kept = _notes_in_docs_sub(vault, mnt)
    with mounted(vault, tmp_path / "b", "--user", "bob", passphrase=BOB) as b:
        hers = b / "shared" / "alice"
        (hers / "docs" / "sub" / "notes.txt").rename(hers / "other" / "notes.txt")
        if then_sub:
            (hers / "docs" / "sub").rename(hers / "other" / "sub")
    said = _her_two_unlocks(vault, mnt, "other/notes.txt", fid)
    assert said == []  # nothing said either way
    assert _key_of(vault, "carol", CAROL, fid) is None, "carol, who may read docs only, holds its key"
    assert _current_dek(vault, fid) != kept, "written under the key carol kept"
