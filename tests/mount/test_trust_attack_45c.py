"""Round 45c, real mount: (1) of tests/unit/test_attack_45c.py seen at a mount.

Attack: 43c (3)'s scene (tests/mount/test_trust_attack_43c.py ``_buried``): her team/plan.txt moved out
of team (shared WRITE with bob) to the top, re-keyed, "private now" written; the server serves bob's
old-key branch (his edit in team, its version withheld) as the current revision.  Beside it, in place of
43c's 16 altered bodies: one genuine body of hers from before the move (team/plan.txt, the old key,
signed by her) stored as ``HER_LEAVES`` (16) leaves one generation above her own, each under a made-up
revision id (``_rev`` is not signed).

Seen / cause / impact / fix: see tests/unit/test_attack_45c.py (1).  Control: 15 copies (her file
shows at the top).  Test: ``test_her_leaf_under_sixteen_copies_of_her_old_state_is_shown``.
"""

from __future__ import annotations

from pathlib import Path

import adversary
import pytest
from conftest import mounted

from fusevault.vault.tree.loading import HER_LEAVES
from mount.test_trust_attack_43c import _bobs_body, _put_above
from mount.test_trust_attack_round22b import _settled
from mount.test_trust_rollback import alarms
from mount.test_trust_writes import _node_fid
from mount.test_writers_copy import _moved_out_beside_old


def _under_old_copies(vault: Path, tmp_path: Path, copies: int) -> tuple[dict[str, object], list[dict]]:
    fid, before, dek = _moved_out_beside_old(vault, tmp_path)
    team = _node_fid(vault, "alice", "team")
    his = _bobs_body(vault, fid, before, dek, {"links": [[team, "plan.txt"]], "seq": ["b0bdev", 7],
                                               "head": "9" * 32})
    old = {k: v for k, v in before.items() if not k.startswith("_")}  # her genuine state of before the move
    leaves = [("f" * 32, his)] + [("d" * 30 + f"{i:02x}", old) for i in range(copies)]
    _put_above(vault, fid, leaves)
    with adversary.store_of(vault) as store:
        current = store.get(fid)
        assert current is not None and current["_rev"].endswith("f" * 32), current
    with mounted(vault, tmp_path / "mnt") as mnt:
        _settled(mnt / "no such file", wait=4)
        files: dict[str, object] = {}
        for p in sorted(mnt.rglob("*")):
            if p.is_file():
                try:
                    files[str(p.relative_to(mnt))] = p.read_bytes()
                except OSError as err:
                    files[str(p.relative_to(mnt))] = f"error {err.errno}"
        return files, [x for x in alarms(mnt) if x["kind"] != "ledger"]


def test_control_her_leaf_under_fifteen_copies_of_her_old_state_is_shown(vault: Path, tmp_path: Path) -> None:
    files, said = _under_old_copies(vault, tmp_path, HER_LEAVES - 1)
    assert files.get("plan.txt") == b"private now", (files, said)


@pytest.mark.xfail(strict=True, reason="45c (1): 16 copies of her genuine old state above her moved-out leaf "
                   "fill HER_LEAVES: her file placed as his copy branch says, hidden")
def test_her_leaf_under_sixteen_copies_of_her_old_state_is_shown(vault: Path, tmp_path: Path) -> None:
    files, said = _under_old_copies(vault, tmp_path, HER_LEAVES)
    assert files.get("plan.txt") == b"private now", (files, said)
