"""Names a sender, a link's owner or a dropper chooses (attack round 22b holes 1, 2, 6, 9):
``encoding.shown``, ``transfer.output.check_new_tops``, the resume state's claimed tops and
``links.content.write_local`` with ``--overwrite``."""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

import pytest

from fusevault.crypto import aead
from fusevault.encoding import b64e, shown
from fusevault.errors import AlreadyExists, CorruptData
from fusevault.links import capability, content
from fusevault.transfer.output import check_new_tops
from fusevault.transfer.resume import ResumeState, _tag


def test_shown_keeps_a_printable_name_and_quotes_any_other() -> None:
    assert shown("report 2026 (final).pdf") == "report 2026 (final).pdf"
    for name in ("\x1b]52;c;eA==\x07x", "a\rb", "tab\there", "new\nline", "bad\udcffbyte"):
        assert shown(name) == repr(name)
        assert shown(name).isprintable()


def test_a_top_that_exists_is_refused_unless_this_session_made_it(tmp_path: Path) -> None:
    (tmp_path / ".ssh").mkdir()
    with pytest.raises(AlreadyExists) as refused:
        check_new_tops(tmp_path, ["photos/a.jpg", ".ssh/authorized_keys2"], set(), ": move it away")
    assert refused.value.exit_code == 11 and ".ssh exists: move it away" in str(refused.value)
    assert check_new_tops(tmp_path, ["photos/a.jpg", "photos/b.jpg", "x"], set(), "") == ["photos", "x"]
    assert check_new_tops(tmp_path, [".ssh/k"], {".ssh"}, "") == []  # an earlier run's own


def test_the_tops_a_session_claims_survive_a_new_run(tmp_path: Path) -> None:
    state = ResumeState(tmp_path, "sid")
    state.save()
    odd = "two\nlines \udcff"  # a name is any bytes: one per line, whatever it holds
    state.claim(["photos", odd])
    state.finished("0")
    again = ResumeState(tmp_path, "sid")
    assert again.tops == {"photos", odd} and again.done == {"0"}
    assert ResumeState(tmp_path, "another session").tops == set()


def test_a_resume_file_this_users_fusevault_did_not_write_is_refused_not_trusted(tmp_path: Path) -> None:
    # Round 23b hole 1: a sender's file under the resume file's name claimed her ~/.ssh.
    state = ResumeState(tmp_path, "sid")
    state.save()
    state.claim(["photos"])
    genuine = state.path.read_bytes()
    with open(state.path, "ab") as torn:  # an append cut short: its line is dropped, the rest kept
        torn.write(b"top 2e737368")
    assert ResumeState(tmp_path, "sid").tops == {"photos"}
    planted = genuine.replace(b"top " + b"photos".hex().encode(), b"top " + b".ssh".hex().encode())
    for text in (f"fusevault-receive 1 {'00' * 32}\ntop {b'.ssh'.hex()}\n".encode(), planted):
        state.path.write_bytes(text)
        with pytest.raises(AlreadyExists, match="not a resume file"):
            ResumeState(tmp_path, "sid")
    other = tmp_path / f".fusevault-receive-{_tag('other')}"
    other.write_bytes(genuine)  # one session's state under another session's name
    other.chmod(0o600)
    with pytest.raises(AlreadyExists):
        ResumeState(tmp_path, "other")
    state.path.write_bytes(genuine)
    os.chmod(state.path, 0o644)  # others may read or write it: not state of hers
    with pytest.raises(AlreadyExists):
        ResumeState(tmp_path, "sid")
    state.path.unlink()
    os.symlink(tmp_path / "elsewhere", state.path)
    with pytest.raises(AlreadyExists):
        ResumeState(tmp_path, "sid")


class _Blocks:
    def __init__(self, dek: bytes, files: dict[int, bytes]) -> None:
        self.sealed = {f"b{i}": capability.seal_block(dek, "item", i, 0, data) for i, data in files.items()}

    def block(self, block_id: str, read_key: bytes) -> bytes:
        return self.sealed[block_id]


def _manifest(dek: bytes, top: str, data: bytes, top_mode: int, file_mode: int) -> dict:
    return {"name": top, "key": b64e(dek), "entries": [
        {"path": top, "type": "dir", "mode": top_mode, "mtime_ns": 0},
        {"path": f"{top}/sub", "type": "dir", "mode": top_mode, "mtime_ns": 0},
        {"path": f"{top}/sub/f", "type": "file", "mode": file_mode, "mtime_ns": 0, "size": len(data),
         "sha256": hashlib.sha256(data).hexdigest(), "blocks": ["b2"]}]}


def test_link_get_with_overwrite_keeps_her_folders_modes_and_gives_safe_ones_to_what_it_made(
        tmp_path: Path) -> None:
    dek, data = aead.new_key(), b"#!/bin/sh\n"
    (tmp_path / "top").mkdir(mode=0o700)
    os.chmod(tmp_path / "top", 0o700)
    manifest = _manifest(dek, "top", data, 0o3777, 0o6755)
    with pytest.raises(AlreadyExists):  # without --overwrite: her folder is not written into
        content.write_local(_Blocks(dek, {2: data}), b"r" * 32, "item", manifest, tmp_path)  # type: ignore[arg-type]
    assert os.listdir(tmp_path / "top") == []
    old = os.umask(0o022)
    try:
        content.write_local(_Blocks(dek, {2: data}), b"r" * 32, "item", manifest, tmp_path,  # type: ignore[arg-type]
                            overwrite=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "top").st_mode) == 0o700  # hers, as it was
    # Made: no sticky, setgid, setuid, and her umask (022) as tar applies it (attack round 26b2 (5)).
    assert stat.S_IMODE(os.stat(tmp_path / "top" / "sub").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(tmp_path / "top" / "sub" / "f").st_mode) == 0o755


@pytest.mark.parametrize("top", ["a/b", "", ".", "..", "x\0y"])
def test_a_links_top_that_is_not_one_name_is_refused(top: str) -> None:
    manifest = {"name": top, "key": b64e(b"k" * 32), "entries": [
        {"path": top, "type": "dir", "mode": 0o755, "mtime_ns": 0}]}
    with pytest.raises(CorruptData):
        content.entries(manifest)
