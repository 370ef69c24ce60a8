"""A WRITE grantee's concurrent branch (vault/services/conflicts.py): the names it gives are judged as his
(authorship.py ``leaf_ok``: ``may_write`` with its links), so where he may write them they are kept
(rule 3), as before attack round 22b (7); the refusals are that round's tests
(tests/mount/test_trust_attack_round22b.py, hole 7)."""

from __future__ import annotations

import os
from pathlib import Path

import adversary
from attack_scenes import add_users, recipients_dek, share
from conftest import mounted

from fusevault.vault.model.nodes import open_node_attrs
from mount.test_trust_attack_round22b import _bobs_branch, _settled
from mount.test_trust_writes import BOB, _node_fid


def test_a_write_grantees_concurrent_rename_in_his_folder_is_kept_with_her_contents(
        vault: Path, tmp_path: Path) -> None:
    add_users(vault, "bob")
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "team").mkdir()
        (mnt / "team" / "plan.txt").write_text("the plan, first draft\n")
        assert share(mnt, "team", "bob", "WRITE") is not None
    fid, team = _node_fid(vault, "alice", "plan.txt"), _node_fid(vault, "alice", "team")
    first = open_node_attrs(adversary.get(vault, fid), recipients_dek(vault, "bob", BOB, fid))
    with mounted(vault, tmp_path / "mnt") as mnt:
        (mnt / "team" / "plan.txt").write_text("the plan, final\n")
    # bob renamed it in team (he writes team) while she edited it: rule 3 keeps her text under his name.
    _bobs_branch(vault, fid, {"links": [[team, "plan-v2.txt"]], **{
        k: first[k] for k in ("head", "manifest", "size", "allocated")}})
    with mounted(vault, tmp_path / "mnt") as mnt:
        _settled(mnt / "team" / "plan.txt")
        names = sorted(os.listdir(mnt / "team"))
        text = (mnt / "team" / names[0]).read_text() if names else None
    assert names == ["plan-v2.txt"] and text == "the plan, final\n", (names, text)
