"""A WRITE member's concurrent branch of her file made under the key of before her move out of his share
(attack round 41b (5)): kept only as a conflict copy where he wrote it (vault/tree/authorship.py
``writers_copy``, vault/services/conflicts.py ``_writers_copy``), and only where he holds WRITE, for a
state of his never seen here.  The scene with real devices is
tests/mount/test_trust_attack_41b.py::test_a_write_members_edit_while_she_moves_the_file_out_is_kept_and_no_forgery;
here bob's branch is made by hand, as the server he runs (or bob himself) could serve it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import adversary
import pytest
from attack_scenes import add_users, recipients_dek, share
from conftest import mounted, wait_for

from mount.test_trust_attack_round22b import _bobs_branch, _settled
from mount.test_trust_rollback import alarms
from mount.test_trust_writes import BOB, _node_fid


def _moved_out_beside_old(vault: Path, tmp_path: Path) -> tuple[str, dict, bytes]:
    """Her team/plan.txt (team shared WRITE with bob; public/ shared with nobody), then moved out of
    team to the top and re-keyed, "private now" written into it: (its id, its node document as it
    was in team, the key bob held of it then)."""
    add_users(vault, "bob")
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "team").mkdir()
        (mnt / "public").mkdir()
        (mnt / "team" / "plan.txt").write_text("the plan, first draft\n")
        assert share(mnt, "team", "bob", "WRITE") is not None
    fid = _node_fid(vault, "alice", "plan.txt")
    before, dek = adversary.get(vault, fid), recipients_dek(vault, "bob", BOB, fid)
    with mounted(vault, tmp_path / "mnt") as mnt:
        os.rename(mnt / "team" / "plan.txt", mnt / "plan.txt")
        (mnt / "plan.txt").write_text("private now")
        wait_for(lambda: adversary.get(vault, fid)["epoch"] > before["epoch"], "her move's re-key")
    return fid, before, dek


def _bobs_old_branch(vault: Path, fid: str, before: dict, dek: bytes, change: dict, rev: str) -> None:
    """A sibling of her current revision (a lower id: hers stays current), signed by bob: her node as it
    was in team (its clear fields, her wrapping of the key of then, its sealed attributes) with
    ``change``, sealed under the key he held then."""
    _bobs_branch(vault, fid, change, before, dek, rev)


def _after(vault: Path, tmp_path: Path) -> tuple[dict[str, bytes], list[dict]]:
    with mounted(vault, tmp_path / "mnt") as mnt:
        _settled(mnt / "no such file", wait=4)
        files = {str(p.relative_to(mnt)): p.read_bytes() for p in sorted(mnt.rglob("*")) if p.is_file()}
        return files, [x for x in alarms(mnt) if x["kind"] != "ledger"]


def _his_old_key_branch_in(vault: Path, tmp_path: Path, folder: str, rev: str = "0"
                           ) -> tuple[Callable[[str], None], dict[str, bytes], list[dict]]:
    """Her plan.txt moved out of team (``_moved_out_beside_old``), then bob's branch beside hers: under the
    key of before her move, as a state of a device of his never seen here, naming plan.txt in her top
    folder ``folder``.  (What puts that very branch again under the revision id ``rev`` * 32, what her next
    mount shows, what it says.)"""
    fid, before, dek = _moved_out_beside_old(vault, tmp_path)
    branch = {"links": [[_node_fid(vault, "alice", folder), "plan.txt"]], "seq": ["b0bdev", 7]}

    def put(rev: str) -> None:
        _bobs_old_branch(vault, fid, before, dek, branch, rev)

    put(rev)
    return put, *_after(vault, tmp_path)


@pytest.mark.parametrize("rev", ["0", "f"])  # beside hers (hers current), or current: judged at the load
def test_his_old_key_branch_into_a_folder_he_cannot_write_is_refused_and_said(
        vault: Path, tmp_path: Path, rev: str) -> None:
    # Under the key of before her move, as a state of a device of his never seen here: but into public/,
    # where he holds nothing.  No copy of it is made there (it would plant a file where he cannot write).
    _, files, said = _his_old_key_branch_in(vault, tmp_path, "public", rev)
    assert files == {"plan.txt": b"private now"}, (files, said)
    kinds = [x["kind"] for x in said]
    if rev == "0":  # refused as the settling meets it
        assert kinds == ["forged-write"] and "concurrent revision" in said[0]["text"], said
    else:  # refused as the load meets it (no copy: her own leaf is not loaded in its place), and rebuilt
        assert kinds == ["rebuilt"] and "holds no WRITE" in said[0]["text"], said


def test_his_old_key_branch_in_his_folder_holding_what_she_had_is_closed_unsaid(
        vault: Path, tmp_path: Path) -> None:
    # Where he writes, made over the state before her move: his edit, no forgery; but its contents are
    # what hers was made over (nothing of his to keep): no copy, her file stays where she put it.
    _, files, said = _his_old_key_branch_in(vault, tmp_path, "team")
    assert files == {"plan.txt": b"private now"} and said == [], (files, said)


def test_his_old_key_branch_put_back_again_is_a_replay_and_said(vault: Path, tmp_path: Path) -> None:
    put, files, said = _his_old_key_branch_in(vault, tmp_path, "team")
    assert files == {"plan.txt": b"private now"} and said == [], (files, said)
    # The same state of his put back under another revision id, once settled: a replay, never a new
    # concurrent edit (no second copy of it, ever), and said.
    put("1")
    files, said = _after(vault, tmp_path)
    assert files == {"plan.txt": b"private now"}, (files, said)
    assert said and all(x["kind"] in ("rollback", "forged-write") for x in said), said
