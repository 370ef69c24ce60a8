"""Attack round 26b: transfers and links (stop 41: links/content.py write_local, transfer/output.py).

Status: redone the same day as round 26b2 (tests/mount/test_trust_attack_round26b2.py), which found
five holes, all fixed.

Holes
=====

None found. This round was cut short (an interrupted session left about fifteen minutes of the
allotted time), so the search was shallow; the absence of holes here is NOT evidence that stop 41's
write_local / drop-box / receive-output code is sound. The next round on this focus should redo it:
planted symlinks and hardlinks by another uid in a shared output folder before a run, FIFOs and
devices at a top name, huge entry counts and sizes in a signed manifest, and a resume against a
changed offer (partial file keyed by receive.key, ``_check_partial``).

What held
=========

- ``transfer/output.py`` ``safe_target``: a sender's name that is absolute, empty, has an empty,
  ``.`` or ``..`` part, a NUL, or a part over 255 bytes is refused with CorruptData, never joined
  onto the output folder (test_sender_names_leading_out_are_refused).
- ``transfer/output.py`` ``check_new_tops``: a top-level name another local user planted before the
  run (a symlink to her home, a dangling symlink, a FIFO, a hardlink to her file) is refused with
  AlreadyExists before anything is written; a session writes only into what it made
  (test_planted_top_names_are_refused).

Seen, not made a test
=====================

Nothing.
"""

import os
from pathlib import Path

import pytest

from fusevault.errors import AlreadyExists, CorruptData
from fusevault.transfer import output


@pytest.mark.parametrize("name", [
    "/etc/passwd", "", "..", "../x", "a/../../x", "a//b", "./a", "a/.", "a\0b", "a/" + "x" * 256,
])
def test_sender_names_leading_out_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(CorruptData):
        output.safe_target(tmp_path, name)


def test_planted_top_names_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "shared"
    out.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    (home / "secret").write_bytes(b"hers")
    os.symlink(home, out / "link_to_home")
    os.symlink(tmp_path / "nowhere", out / "dangling")
    os.mkfifo(out / "fifo")
    os.link(home / "secret", out / "hardlink")
    for top in ("link_to_home", "dangling", "fifo", "hardlink"):
        with pytest.raises(AlreadyExists):
            output.check_new_tops(out, [f"{top}/f", top], set(), ".")
    assert (home / "secret").read_bytes() == b"hers"
    assert output.check_new_tops(out, ["fresh/f"], set(), ".") == ["fresh"]
