"""Attack round 58a (1) through the mount's own ``export`` request (tests/unit/test_attack_58a.py's
docstring gives the hole): a user's vault folder of 300 empty folders, exported to an ordinary folder
of his, holds one more of root's descriptors per folder until the export ends.  Control: 300 files
in one folder hold a few."""

from __future__ import annotations

import os
import stat

import trio

from fusevault.agent.sessions import Session
from fusevault.host_access import Direct
from fusevault.host_access.threads import HostThreads
from fusevault.tasks import Tasks
from fusevault.vault.services.placing import NoKernel
from inprocess.conftest import ME, ROOT, make

COUNT = 300


def _descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _most_held(fs, tmp_path, folders: bool) -> int:
    top = await fs.ops.mkdir(ROOT, b"many", stat.S_IFDIR | 0o700, ME)
    for n in range(COUNT):
        if folders:
            await fs.ops.mkdir(top.st_ino, b"d%05d" % n, stat.S_IFDIR | 0o700, ME)
        else:
            await make(fs.ops, b"f%05d" % n, b"", parent=top.st_ino)
    dest = tmp_path / "his-folder"
    dest.mkdir()
    before, most = _descriptors(), [0]

    class _Counting(Direct):  # his rights; counts root's descriptors at each call of his helper
        def call(self, op, *args, fd=None):
            most[0] = max(most[0], _descriptors() - before)
            return super().call(op, *args, fd=fd)

    session = Session(fs.volume, NoKernel(), Tasks(), _Counting(), HostThreads())
    with trio.fail_after(120):
        answer = await session.requests.handle({"cmd": "export", "path": "/many", "dest": str(dest)})
    assert "error" not in answer, answer
    assert len(os.listdir(dest / "many")) == COUNT
    return most[0]


async def test_58a_1_his_export_of_many_folders_holds_a_descriptor_of_root_s_per_folder(fs, tmp_path):
    held = await _most_held(fs, tmp_path, folders=True)
    assert held < 64, f"{held} descriptors held at once by the mount's process"


async def test_control_58a_1_his_export_of_many_files_holds_few(fs, tmp_path):
    assert await _most_held(fs, tmp_path, folders=False) < 64
