"""Two edits of one file made apart: a conflict copy only when their bytes differ (conflicts.py rule 2
by contents, ``same_bytes``; attack round 40b (3) is the restore from the trash on both devices)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import laptop_and_desktop, mounted, settled, wait_for


@pytest.mark.parametrize("same", [True, False])
def test_two_edits_made_apart_make_a_copy_only_when_their_bytes_differ(tmp_path: Path, same: bool) -> None:
    with laptop_and_desktop(tmp_path, ("plan.txt",)) as (server, laptop, a, desktop):
        b = tmp_path / "b"
        with mounted(desktop, b):
            wait_for(lambda: (b / "plan.txt").exists() and settled(b), "the desktop's first pull")
            server.kill()
            (a / "plan.txt").write_bytes(b"written on the laptop")
            # The same length either way: only the bytes tell the two apart.
            (b / "plan.txt").write_bytes(b"written on the laptop" if same else b"written on the deskto")
            server.start()
            wait_for(lambda: settled(a) and settled(b) and sorted(os.listdir(a)) == sorted(os.listdir(b))
                     and (same or len(os.listdir(a)) == 2),
                     lambda: f"both to agree: {os.listdir(a)} {os.listdir(b)}")
            for _ in range(2):
                wait_for(lambda: settled(a) and settled(b), "both to settle")
            shown = {n: (a / n).read_bytes() for n in os.listdir(a)}
            assert {n: (b / n).read_bytes() for n in os.listdir(b)} == shown
    if same:
        assert shown == {"plan.txt": b"written on the laptop"}, shown
    else:
        assert sorted(shown.values()) == [b"written on the deskto", b"written on the laptop"], shown
        assert any("(conflict " in n for n in shown), shown
