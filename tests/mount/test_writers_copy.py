"""A WRITE member's concurrent branch of her file made under the key of before her move out of his share
(attack round 41b (5)): kept only as a conflict copy where he wrote it (vault/tree/authorship.py
``writers_copy``, vault/services/conflicts.py ``_writers_copy``), and only where he holds WRITE, for a
state of his never seen here.  The scene with real devices is
tests/mount/test_trust_attack_41b.py::test_a_write_members_edit_while_she_moves_the_file_out_is_kept_and_no_forgery;
here bob's branch is made by hand, as the server he runs (or bob himself) could serve it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import adversary
import pytest
from attack_scenes import add_users, recipients_dek, share
from conftest import mounted, wait_for

from fusevault.crypto import aead
from fusevault.crypto.signing import sign_doc
from fusevault.encoding import b64e
from fusevault.store import replica
from fusevault.store.local import LocalStore
from fusevault.vault.model.nodes import open_node_attrs
from mount.test_trust_attack_round22b import _settled
from mount.test_trust_rollback import alarms
from mount.test_trust_writes import BOB, _key, _node_fid


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
    attrs = {**open_node_attrs(before, dek), **change}
    body = {k: v for k, v in before.items() if not k.startswith("_") and k != "sig"} | {"_id": fid}
    plain = json.dumps(attrs, separators=(",", ":")).encode()
    body["enc"] = b64e(aead.seal(dek, plain, aead.ad("node", fid)))
    bob = _key(vault, "bob", BOB)
    branch = sign_doc(bob.user_id, bob.identity.sign, body)
    store = LocalStore(vault / "store.sqlite")
    try:
        history = replica.current_history(store, fid)
        generation = int(history[0].split("-")[0])
        branch["_rev"] = f"{generation}-{rev * 32}"
        ids = [rev * 32] + [h.split("-", 1)[1] for h in history[1:]]
        branch["_revisions"] = {"start": generation, "ids": ids}
        assert replica.store_revisions(store, [branch]).conflicts == [fid]
    finally:
        store.close()


def _after(vault: Path, tmp_path: Path) -> tuple[dict[str, bytes], list[dict]]:
    with mounted(vault, tmp_path / "mnt") as mnt:
        _settled(mnt / "no such file", wait=4)
        files = {str(p.relative_to(mnt)): p.read_bytes() for p in sorted(mnt.rglob("*")) if p.is_file()}
        return files, [x for x in alarms(mnt) if x["kind"] != "ledger"]


@pytest.mark.parametrize("rev", ["0", "f"])  # beside hers (hers current), or current: judged at the load
def test_his_old_key_branch_into_a_folder_he_cannot_write_is_refused_and_said(
        vault: Path, tmp_path: Path, rev: str) -> None:
    fid, before, dek = _moved_out_beside_old(vault, tmp_path)
    public = _node_fid(vault, "alice", "public")
    # Under the key of before her move, as a state of a device of his never seen here: but into public/,
    # where he holds nothing.  No copy of it is made there (it would plant a file where he cannot write).
    _bobs_old_branch(vault, fid, before, dek, {"links": [[public, "plan.txt"]], "seq": ["b0bdev", 7]}, rev)
    files, said = _after(vault, tmp_path)
    assert files == {"plan.txt": b"private now"}, (files, said)
    kinds = [x["kind"] for x in said]
    if rev == "0":  # refused as the settling meets it
        assert kinds == ["forged-write"] and "concurrent revision" in said[0]["text"], said
    else:  # refused as the load meets it (no copy: her own leaf is not loaded in its place), and rebuilt
        assert kinds == ["rebuilt"] and "holds no WRITE" in said[0]["text"], said


def test_his_old_key_branch_in_his_folder_holding_what_she_had_is_closed_unsaid(
        vault: Path, tmp_path: Path) -> None:
    fid, before, dek = _moved_out_beside_old(vault, tmp_path)
    team = _node_fid(vault, "alice", "team")
    # Where he writes, made over the state before her move: his edit, no forgery; but its contents are
    # what hers was made over (nothing of his to keep): no copy, her file stays where she put it.
    _bobs_old_branch(vault, fid, before, dek, {"links": [[team, "plan.txt"]], "seq": ["b0bdev", 7]}, "0")
    files, said = _after(vault, tmp_path)
    assert files == {"plan.txt": b"private now"} and said == [], (files, said)


def test_his_old_key_branch_put_back_again_is_a_replay_and_said(vault: Path, tmp_path: Path) -> None:
    fid, before, dek = _moved_out_beside_old(vault, tmp_path)
    team = _node_fid(vault, "alice", "team")
    branch = {"links": [[team, "plan.txt"]], "seq": ["b0bdev", 7]}
    _bobs_old_branch(vault, fid, before, dek, branch, "0")
    files, said = _after(vault, tmp_path)
    assert files == {"plan.txt": b"private now"} and said == [], (files, said)
    # The same state of his put back under another revision id, once settled: a replay, never a new
    # concurrent edit (no second copy of it, ever), and said.
    _bobs_old_branch(vault, fid, before, dek, branch, "1")
    files, said = _after(vault, tmp_path)
    assert files == {"plan.txt": b"private now"}, (files, said)
    assert said and all(x["kind"] in ("rollback", "forged-write") for x in said), said
