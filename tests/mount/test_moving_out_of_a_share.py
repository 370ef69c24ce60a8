"""A file or folder of hers that leaves a shared folder through her mount (moved out, or a hard link's
name in it unlinked) leaves the share's members nothing to read what she writes after: their keys of it
are taken back and it gets a new key at once (vault/services/rotation.py ``keep_moves_rekeyed``), not
only at her next ``unshare``.  Moves inside the share take nothing back."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import adversary
import pytest
from conftest import mounted, wait_for

from fusevault.vault.model.nodes import open_node_doc
from mount.test_trust_attack_round22 import docs_shared_with_bob
from mount.test_trust_attack_round28c import _bobs_key_of
from mount.test_trust_attack_round30b import _bobs_group_dek, _plan_shared_with_team
from mount.test_trust_writes import PASSPHRASE, _key, _node_fid


def _current_dek(vault: Path, fid: str) -> bytes:
    hers, _ = open_node_doc(adversary.get(vault, fid), _key(vault, "alice", PASSPHRASE))
    return hers


def _moves(mnt: Path) -> dict[str, Callable[[], Path]]:
    """Each way notes.txt leaves docs (or stays in it: the controls), giving where it is then."""
    docs, private = mnt / "docs", mnt / "private"

    def moved() -> Path:
        (docs / "notes.txt").rename(private / "notes.txt")
        return private / "notes.txt"

    def folder_moved() -> Path:
        (docs / "sub").mkdir()
        (docs / "notes.txt").rename(docs / "sub" / "notes.txt")
        (docs / "sub").rename(private / "sub")
        return private / "sub" / "notes.txt"

    def link_unlinked() -> Path:
        os.link(docs / "notes.txt", private / "notes.txt")
        (docs / "notes.txt").unlink()
        return private / "notes.txt"

    def renamed_inside() -> Path:
        (docs / "sub").mkdir()
        (docs / "notes.txt").rename(docs / "sub" / "renamed.txt")
        return docs / "sub" / "renamed.txt"

    def linked_out_and_kept() -> Path:
        os.link(docs / "notes.txt", private / "notes.txt")
        return private / "notes.txt"

    return {"moved": moved, "folder_moved": folder_moved, "link_unlinked": link_unlinked,
            "renamed_inside": renamed_inside, "linked_out_and_kept": linked_out_and_kept}


@pytest.mark.parametrize("how", ["moved", "folder_moved", "link_unlinked",
                                 "renamed_inside", "linked_out_and_kept"])  # the last two: controls
def test_a_file_she_moves_out_of_a_share_is_re_keyed_away_from_its_member(vault: Path, tmp_path: Path,
                                                                           how: str) -> None:
    mnt = tmp_path / "mnt"
    docs_shared_with_bob(vault, mnt)
    fid = _node_fid(vault, "alice", "notes.txt")
    kept = _bobs_key_of(vault, fid)
    assert kept is not None and kept == _current_dek(vault, fid)  # sealed to him by the share
    left = how not in ("renamed_inside", "linked_out_and_kept")
    with mounted(vault, mnt):
        where = _moves(mnt)[how]()
        if left:
            wait_for(lambda: _bobs_key_of(vault, fid) is None, "bob's key of it taken back")
        where.write_text("written after it left docs")
    now = _current_dek(vault, fid)
    if left:
        assert now != kept, "the file left the share and is still under the key bob kept"
        assert _bobs_key_of(vault, fid) is None
    else:
        assert _bobs_key_of(vault, fid) == now, "still shared with bob: his key must open it"
        assert now == kept  # no needless re-key
    with mounted(vault, mnt):
        assert where.read_text() == "written after it left docs"


def test_a_file_she_moves_out_of_a_group_share_is_re_keyed_away_from_its_members(vault: Path,
                                                                                  tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    alice, fid, path = _plan_shared_with_team(vault, mnt)
    kept = _bobs_group_dek(vault, path, alice, fid)
    with mounted(vault, mnt):
        (mnt / "proj" / "plan.txt").rename(mnt / "private" / "plan.txt")
        wait_for(lambda: not path.exists(), "the group's key of it taken back")
        (mnt / "private" / "plan.txt").write_text("step two, out of the share")
    assert _current_dek(vault, fid) != kept
    requests = [d for d in adversary.docs(vault, "Rotation") if not d.get("_deleted")]
    assert requests == [], "the re-key's request is done and gone"
