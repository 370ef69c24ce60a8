"""Issue 22: the owner's placement stamp (vault/model/placement.py), attacked through the entry points.

The stamp closes round 10a's holes (1) and (2) (tests/mount/test_trust_attack_round10a.py): alice's
move made on her desktop reaches her laptop signed by her, inside bob's (a WRITE grantee's) later
document.  bob holds the DEK, so he can put any stamp he has ever read into a document he signs;
each test here tries one he should not get followed.  Scene (round 10a's): on her laptop alice keeps
private/diary.txt and team/plan.txt, team is WRITE to bob; bob can write the vault folder.  Each test
asserts the SAFE behaviour.  The in-process checks of what the signature binds (another vault, another
owner, a changed seq or parents, a folder not hers) are tests/unit/test_placement_stamp.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import adversary
import pytest
from attack_scenes import recipients_dek, resigned
from conftest import fusevault, mounted

from fusevault.vault.model.nodes import now_ns, open_node_attrs
from mount.test_trust_attack_round4 import _alice_dek
from mount.test_trust_attack_round7 import _keys_for, _share
from mount.test_trust_attack_round10a import _bob_edits, _bobs_move_of, _on_desktop, _team_and_private
from mount.test_trust_writes import BOB as BOB_SECRET
from mount.test_trust_writes import _node_fid, _user


def _moved_on_the_desktop(vault: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mnt: Path) -> dict:
    """alice moves private/diary.txt into team on her desktop (and its next unlock seals the key to
    bob); returned: the stamp her desktop signed, as bob reads it with his key."""
    _on_desktop(monkeypatch, tmp_path, vault, mnt,
                lambda m: (m / "private" / "diary.txt").rename(m / "team" / "diary.txt"))
    _on_desktop(monkeypatch, tmp_path, vault, mnt, lambda m: None)
    diary = _node_fid(vault, "alice", "diary.txt")
    dek = recipients_dek(vault, "bob", BOB_SECRET, diary)
    stamp = open_node_attrs(adversary.get(vault, diary), dek)["placed"]
    assert stamp["parents"] == [_node_fid(vault, "alice", "team")]
    return stamp


@pytest.mark.parametrize("deletes", [False, True])
def test_a_writer_cannot_carry_an_older_stamp_back_over_a_move_this_device_saw(
        vault: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, deletes: bool) -> None:
    """alice moves diary.txt into team on her desktop (bob reads that document and its stamp).  Her
    laptop sees it there, and she moves it back into private on the laptop.  bob then signs a document
    of diary.txt that puts it in team again (or deletes it from there) carrying the desktop's stamp.
    Safe on the laptop: the stamp is older than her move the laptop saw, so bob's document is judged as
    his own move out of private: an alarm, and team's new reader carol gets no key of diary.txt (or
    the deletion is refused: diary.txt stays in private).  Without the ledger's seq check both fail."""
    mnt = _team_and_private(vault, tmp_path, "carol")
    carol = _user(vault, "carol")["_id"]
    old = _moved_on_the_desktop(vault, tmp_path, monkeypatch, mnt)
    diary, team = _node_fid(vault, "alice", "diary.txt"), _node_fid(vault, "alice", "team")
    with mounted(vault, mnt):
        (mnt / "team" / "diary.txt").rename(mnt / "private" / "diary.txt")
    # Her move out of team took bob's key back and gave diary.txt a new one (rotation.py
    # ``keep_moves_rekeyed``).  Given the new key all the same (the worst case), his document is still
    # judged by the stamp it carries.
    assert not _keys_for(vault, _user(vault, "bob")["_id"], diary)
    dek = _alice_dek(vault, diary)
    if deletes:
        resigned(vault, diary, {"links": [], "trashed": ["team/diary.txt", now_ns()], "placed": old,
                                "seq": ["bobs-device", 1]}, dek, "bob", BOB_SECRET, clear={"delete": True})
    else:
        resigned(vault, diary, {"links": [[team, "diary.txt"]], "placed": old, "seq": ["bobs-device", 1]},
                 dek, "bob", BOB_SECRET)
    with mounted(vault, mnt):
        status = fusevault("status", mnt).stdout
        print(status[-3000:])
        private = sorted(os.listdir(mnt / "private"))
        assert _share(mnt, "team", "carol", "READ") is not None
    assert "WARNING" in status, "bob's document carrying the older stamp was taken as alice's place"
    if deletes:
        assert private == ["diary.txt"], f"bob's deletion was taken: {private}"
    else:
        assert not _keys_for(vault, carol, diary), "carol got the key of the diary alice took out of team"


def test_a_stamp_lifted_from_another_files_document_does_not_place_the_owners_folder(
        vault: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """alice also keeps private/inner/secret.txt.  bob reads the stamp her desktop signed for diary.txt
    in team, and signs a document of her folder inner that moves it into team (a key of his own sealed
    to her: a folder has no versions to show it had another) carrying diary.txt's stamp.  Safe: the
    stamp names another file, so the move is his: inner is kept behind, bob gets no key of secret.txt.
    Without the file id in what the stamp signs, it fails."""
    mnt = _team_and_private(vault, tmp_path)
    bob = _user(vault, "bob")["_id"]
    with mounted(vault, mnt):
        (mnt / "private" / "inner").mkdir()
        (mnt / "private" / "inner" / "secret.txt").write_text("alice's own, never for bob")
    stamp = _moved_on_the_desktop(vault, tmp_path, monkeypatch, mnt)
    team, inner, secret = (_node_fid(vault, "alice", n) for n in ("team", "inner", "secret.txt"))
    _bobs_move_of(vault, inner, [[team, "inner"]], 1, {"placed": stamp})
    with mounted(vault, mnt):
        status = fusevault("status", mnt).stdout
        print(status[-3000:])
    assert "no share there gets its key" in status
    assert not _keys_for(vault, bob, secret), "secret.txt's key was sealed to bob"


def test_a_stamp_whose_seq_was_changed_is_not_followed_nor_counted(
        vault: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Round 10a's scene (1): bob edits team/diary.txt, which alice moved there on her desktop; then he
    signs it again with the stamp's counter changed to 2**53 - 1.  Safe on the laptop: the stamp does
    not hold, so his document is judged against where the laptop saw the file (an alarm: the safe
    side); and the huge counter is not counted as seen from her desktop: her desktop's next edit is no
    rollback on the laptop, and shows there."""
    mnt = _team_and_private(vault, tmp_path)
    stamp = _moved_on_the_desktop(vault, tmp_path, monkeypatch, mnt)
    with mounted(vault, mnt, "--user", "bob", passphrase=BOB_SECRET):
        _bob_edits(mnt)
    diary = _node_fid(vault, "alice", "diary.txt")
    resigned(vault, diary, {"placed": {**stamp, "seq": [stamp["seq"][0], 2**53 - 1]}},
             recipients_dek(vault, "bob", BOB_SECRET, diary), "bob", BOB_SECRET)
    with mounted(vault, mnt):
        first = fusevault("status", mnt).stdout
        print(first[-3000:])
    assert "WARNING" in first, "a stamp that does not hold was followed"
    _on_desktop(monkeypatch, tmp_path, vault, mnt,
                lambda m: (m / "team" / "diary.txt").write_text("alice's edit on her desktop"))
    with mounted(vault, mnt):
        second = fusevault("status", mnt).stdout
        print(second[-3000:])
        text = (mnt / "team" / "diary.txt").read_text()
    assert "rollback" not in second, "the changed stamp's counter was counted as her desktop's"
    assert text == "alice's edit on her desktop"
