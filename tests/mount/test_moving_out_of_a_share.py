"""A file or folder of hers that leaves a shared folder through her mount (moved out, or a hard link's
name in it unlinked) leaves the share's members nothing to read what she writes after: their keys of it
are taken back and it gets a new key at once (vault/services/rotation.py ``keep_moves_rekeyed``), not
only at her next ``unshare``.  Moves inside the share take nothing back.  So does a move of a member who
may write both folders, taken in at her next unlock (vault/tree/authorship.py ``settle``) or while she is
mounted (vault/services/absorbing.py)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import adversary
import pytest
from attack_scenes import recipients_dek
from conftest import PouchServer, first_device, fusevault, mounted, new_device, settled, wait_for

from fusevault.vault.model.nodes import open_node_doc
from mount.test_trust_attack_round22 import docs_shared_with_bob
from mount.test_trust_attack_round28c import _bobs_key_of
from mount.test_trust_attack_round30b import _bobs_group_dek, _plan_shared_with_team
from mount.test_trust_writes import BOB, PASSPHRASE, _admin, _key, _node_fid

CAROL = "carol's own passphrase"


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


def _key_of(vault: Path, name: str, passphrase: str, fid: str) -> bytes | None:
    try:
        return recipients_dek(vault, name, passphrase, fid)
    except AssertionError:  # no key file of theirs for it
        return None


def _docs_and_other(vault: Path, mnt: Path) -> str:
    """bob may write docs and other; carol may read docs; notes.txt is in docs.  Its id."""
    _admin(vault, "user", "add", "bob", "--uid", "2001", passphrase=BOB)
    _admin(vault, "user", "add", "carol", "--uid", "2002", passphrase=CAROL)
    with mounted(vault, mnt) as a:
        for folder in ("docs", "docs/sub", "other"):
            (a / folder).mkdir()
        (a / "docs" / "notes.txt").write_text("first")
        for folder, who, perm in (("docs", "bob", "WRITE"), ("docs", "carol", "READ"),
                                  ("other", "bob", "WRITE")):
            assert fusevault("share", a / folder, "--with", who, "--perm", perm).returncode == 0
    fid = _node_fid(vault, "alice", "notes.txt")
    assert _key_of(vault, "carol", CAROL, fid) == _current_dek(vault, fid)
    return fid


def _bob_moves(b: Path, into: str) -> None:
    hers = b / "shared" / "alice"
    (hers / "docs" / "notes.txt").rename(hers / into / "notes.txt")


def _only_those_granted_hold_its_key(vault: Path, fid: str, kept: bytes, into: str) -> None:
    now = _current_dek(vault, fid)
    assert _key_of(vault, "bob", BOB, fid) == now, "still shared with bob: his key must open it"
    if into == "other":
        assert now != kept, "it left docs and is still under the key carol kept"
        assert _key_of(vault, "carol", CAROL, fid) is None
    else:
        assert now == kept == _key_of(vault, "carol", CAROL, fid)  # no needless re-key


@pytest.mark.parametrize("into", ["other", "docs/sub"])  # the last: a control, a move inside docs
def test_a_file_a_write_member_moves_out_of_a_share_is_re_keyed_at_her_next_unlock(
        vault: Path, tmp_path: Path, into: str) -> None:
    """bob moves notes.txt from docs to other while she is away: at her next unlock carol's key of it
    is taken back and it gets a new key, which bob holds (other shares it with him)."""
    mnt = tmp_path / "mnt"
    fid = _docs_and_other(vault, mnt)
    kept = _current_dek(vault, fid)
    with mounted(vault, tmp_path / "b", "--user", "bob", passphrase=BOB) as b:
        _bob_moves(b, into)
    with mounted(vault, mnt) as a:
        if into == "other":
            wait_for(lambda: _key_of(vault, "carol", CAROL, fid) is None, "carol's key of it taken back")
        (a / into / "notes.txt").write_text("written after bob moved it")
    _only_those_granted_hold_its_key(vault, fid, kept, into)
    with mounted(vault, mnt) as a:
        assert (a / into / "notes.txt").read_text() == "written after bob moved it"


@pytest.mark.parametrize("into", ["other", "docs/sub"])  # the last: a control, a move inside docs
def test_a_file_a_write_member_moves_out_of_a_share_is_re_keyed_as_his_move_arrives(
        tmp_path: Path, into: str) -> None:
    """The same move made on bob's device while her laptop is mounted: taken in there, it re-keys."""
    server = PouchServer(tmp_path / "pouch")
    url = f"{server.start()}/vault"
    try:
        laptop = first_device(url, tmp_path)
        fid = _docs_and_other(laptop, tmp_path / "a")
        kept = _current_dek(laptop, fid)
        with mounted(laptop, tmp_path / "a") as a:
            wait_for(lambda: settled(a), "the laptop's push")
            desktop = new_device(url, tmp_path, "desktop")
            with mounted(desktop, tmp_path / "b", "--user", "bob", passphrase=BOB) as b:
                wait_for(lambda: (b / "shared" / "alice" / "docs" / "notes.txt").exists() and settled(b),
                         "bob's device to take in her share")
                _bob_moves(b, into)
                wait_for(lambda: settled(b), "bob's push")
            wait_for(lambda: (a / into / "notes.txt").exists(), "his move to reach her laptop")
            if into == "other":
                wait_for(lambda: _key_of(laptop, "carol", CAROL, fid) is None, "carol's key of it taken back")
            (a / into / "notes.txt").write_text("written after bob moved it")
        _only_those_granted_hold_its_key(laptop, fid, kept, into)
    finally:
        server.stop()
