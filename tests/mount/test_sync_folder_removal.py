"""A folder removed on one device: gone on the other, unless something was put in it there meanwhile.

vault/tree/revival.py: a removal of a folder holding a live state here is not taken (edit beats
delete), and a live document naming a folder her removal took away brings it back.  These tests hold
its two sides against what they must never do: bring back a folder an ordinary ``rm -r`` removed
while both devices were online (its files' removals may come in the same batch as, or after, the
folder's), and against what they are for when the removal is deep (a folder brought back with the
folders above it).  Attack round 40b (5) and (6) are in tests/mount/test_trust_attack_40b.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import fusevault, laptop_and_desktop, mounted, server_pids, settled, wait_for

from mount.test_trust_rollback import alarms


def _tree(m: Path) -> list[str]:
    return sorted(str(p.relative_to(m)) for p in m.rglob("*"))


def test_a_folder_removed_on_one_device_while_both_are_online_is_gone_on_both(tmp_path: Path) -> None:
    with laptop_and_desktop(tmp_path, ("keep.txt",)) as (server, laptop, a, desktop):
        b = tmp_path / "b"
        with mounted(desktop, b):
            for i in range(3):
                sub = a / "F" / f"sub{i}"
                sub.mkdir(parents=True)
                for j in range(5):
                    (sub / f"f{j}.txt").write_text(f"{i}/{j}")
            wait_for(lambda: settled(a) and settled(b) and _tree(a) == _tree(b), "both to show F")
            shutil.rmtree(a / "F")
            wait_for(lambda: settled(a) and settled(b) and not (b / "F").exists(), "F gone on the desktop")
            # A folder brought back is committed at once: two more rounds of both settling show it.
            for _ in range(2):
                wait_for(lambda: settled(a) and settled(b), "both to settle")
            assert _tree(a) == _tree(b) == ["keep.txt"]
            assert [x for x in alarms(a) + alarms(b) if x["kind"] != "ledger"] == []
        with mounted(desktop, b):
            assert _tree(b) == ["keep.txt"]
        assert fusevault("unmount", a, passphrase=None).returncode == 0
        wait_for(lambda: not server_pids(a), "the laptop's mount process to end")
        with mounted(laptop, a):
            assert _tree(a) == ["keep.txt"]


def test_a_file_saved_deep_in_a_tree_her_other_device_removed_brings_the_folders_back(tmp_path: Path) -> None:
    with laptop_and_desktop(tmp_path, ("keep.txt",)) as (server, laptop, a, desktop):
        (a / "F" / "sub").mkdir(parents=True)
        (a / "F" / "sub" / "old.txt").write_text("old")
        (a / "F" / "other.txt").write_text("other")
        wait_for(lambda: settled(a), "the laptop's push")
        b = tmp_path / "b"
        with mounted(desktop, b):
            wait_for(lambda: (b / "F" / "sub" / "old.txt").exists() and settled(b), "the desktop's pull")
            server.kill()
            shutil.rmtree(a / "F")
            (b / "F" / "sub" / "new.txt").write_text("made while the laptop removed F")
            server.start()
            wait_for(lambda: settled(a) and settled(b) and _tree(a) == _tree(b) and (a / "F").exists(),
                     lambda: f"both to agree: {_tree(a)} {_tree(b)}")
            assert _tree(a) == ["F", "F/sub", "F/sub/new.txt", "keep.txt"], _tree(a)
            assert (a / "F" / "sub" / "new.txt").read_text() == "made while the laptop removed F"
            assert [x for x in alarms(a) + alarms(b) if x["kind"] in ("forged-write", "concurrent")] == []
        assert fusevault("unmount", a, passphrase=None).returncode == 0
        wait_for(lambda: not server_pids(a), "the laptop's mount process to end")
        with mounted(laptop, a):
            assert _tree(a) == ["F", "F/sub", "F/sub/new.txt", "keep.txt"]
