"""A WRITE grantee's concurrent branch (vault/services/conflicts.py): the names it gives are judged as his
(authorship.py ``leaf_ok``: ``may_write`` with its links), so where he may write them they are kept
(rule 3), as before attack round 22b (7); the refusals are that round's tests
(tests/mount/test_trust_attack_round22b.py, hole 7)."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import mounted

from mount.test_trust_attack_round22b import _bobs_branch, _settled, her_plan_beside_bobs
from mount.test_trust_writes import _node_fid


def test_a_write_grantees_concurrent_rename_in_his_folder_is_kept_with_her_contents(
        vault: Path, tmp_path: Path) -> None:
    fid, kept = her_plan_beside_bobs(vault, tmp_path, "the plan, final\n")
    team = _node_fid(vault, "alice", "team")
    # bob renamed it in team (he writes team) while she edited it: rule 3 keeps her text under his name.
    _bobs_branch(vault, fid, {"links": [[team, "plan-v2.txt"]], **kept})
    with mounted(vault, tmp_path / "mnt") as mnt:
        _settled(mnt / "team" / "plan.txt")
        names = sorted(os.listdir(mnt / "team"))
        text = (mnt / "team" / names[0]).read_text() if names else None
    assert names == ["plan-v2.txt"] and text == "the plan, final\n", (names, text)
