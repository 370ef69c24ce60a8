"""Attack round 31b (draft)."""

from __future__ import annotations

from pathlib import Path

import adversary
from conftest import PASSPHRASE, laptop_and_desktop, mounted, settled, wait_for

from fusevault.vault.model.nodes import open_node_doc
from mount.test_trust_attack_round28b import _ledger_of, _rollbacks
from mount.test_trust_writes import _key


def _seqs(couch: adversary.Server, vault: Path) -> dict:
    key = _key(vault, "alice", PASSPHRASE)
    out = {}
    for d in couch.all("node"):
        try:
            attrs = open_node_doc(d, key)[1]
        except Exception as err:  # noqa: BLE001
            out[d["_id"][:8]] = repr(err)[:40]
            continue
        out[d["_id"][:8]] = (attrs.get("seq"), attrs.get("over"))
    return out


def test_diag(tmp_path: Path) -> None:
    with laptop_and_desktop(tmp_path, ("plan.txt",)) as (server, laptop, a, desktop):
        couch = adversary.Server(f"{server.url}/vault")
        with mounted(desktop, tmp_path / "b") as b:
            wait_for(lambda: (b / "plan.txt").exists() and settled(b), "the desktop's first pull")
        print("after first pull", _seqs(couch, laptop))
        backup = _ledger_of(desktop).read_bytes()
        with mounted(desktop, tmp_path / "b") as b:
            (b / "plan.txt").write_bytes(b"desktop edit")
            wait_for(lambda: settled(b) and (a / "plan.txt").read_bytes() == b"desktop edit", "on the laptop")
        print("after desktop edit", _seqs(couch, laptop))
        (a / "plan.txt").write_bytes(b"laptop over it")
        (a / "new.txt").write_bytes(b"new")
        wait_for(lambda: settled(a), "the laptop's edit pushed")
        print("after laptop edit", _seqs(couch, laptop))
        _ledger_of(desktop).write_bytes(backup)
        with mounted(desktop, tmp_path / "b") as b:
            wait_for(lambda: settled(b) and (b / "plan.txt").read_bytes() == b"laptop over it", "the desktop")
            (b / "plan.txt").write_bytes(b"desktop again")
            wait_for(lambda: settled(b), "the desktop's push")
            print("after desktop again", _seqs(couch, laptop))
            wait_for(lambda: (a / "plan.txt").read_bytes() == b"desktop again" or bool(_rollbacks(a)),
                     "the desktop's edit to reach the laptop (taken, or refused)")
            assert _rollbacks(a) == [], f"a false rollback alarm on the laptop: {_rollbacks(a)}"
            assert (a / "plan.txt").read_bytes() == b"desktop again"
