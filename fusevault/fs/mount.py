"""Before a mount: what the `mount` command checks before it asks for a
passphrase (and the server again), and where a mount that could not save
says so.  The mount's life is fs/lifecycle.py's; its bootstrap
fs/personal.py's and fs/shared.py's.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

from fusevault.errors import MountPointError, PermissionDenied
from fusevault.mounts import is_mounted

log = logging.getLogger(__name__)


def user_allow_other(conf: Path = Path("/etc/fuse.conf")) -> bool:
    """Whether fusermount3 lets a user other than root mount with allow_other:
    a line ``user_allow_other`` in fuse.conf, read as fusermount3 reads it
    (``#`` starts a comment; a last line without its newline does not count)."""
    try:
        lines = conf.read_text(errors="replace").splitlines(keepends=True)
    except OSError:
        return False
    return any(line.endswith("\n") and line.split("#", 1)[0].strip() == "user_allow_other"
               for line in lines)


def check_mountpoint(path: Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise MountPointError(f"mount point {path} does not exist")
    if not path.is_dir():
        raise MountPointError(f"mount point {path} is not a directory")
    if is_mounted(path):
        raise MountPointError(f"{path} is busy: something is already mounted there")
    if any(path.iterdir()):
        raise MountPointError(f"mount point {path} is not empty")
    return path.resolve()


def prepare(vault: Path, mountpoint: Path) -> Path:
    """The `mount` command's checks, before a passphrase is asked: a crashed
    mount of ours cleared, the mount point usable, the vault private and
    writable; the mount point resolved.  The server checks again
    (fs/server.py): its errors come back as the command's one line."""
    from fusevault.vault.format.layout import check_writable, open_layout
    from fusevault.vault.format.modes import check_private

    clear_crashed(mountpoint)
    check_mountpoint(mountpoint)
    if os.geteuid() != 0 and not os.access(mountpoint, os.W_OK):  # fusermount3 would refuse, unseen
        raise PermissionDenied(f"you may not mount on {mountpoint}: it is not writable for you")
    layout = open_layout(vault)
    check_private(layout.root)
    check_writable(layout.root)
    return Path(mountpoint).resolve()


def clear_crashed(path: Path) -> None:
    """A mount point whose server died (``Transport endpoint is not connected``):
    our own dead fusevault mount is cleared (its vault lost nothing it had
    saved); anything else gets one line saying how."""
    from fusevault import mounts

    found = mounts.find(path)
    if found is None:
        return
    state = mounts.probe(mounts.mount_path(path))
    if state == mounts.ALIVE:
        return  # check_mountpoint says it is busy
    if state == mounts.HUNG:
        raise MountPointError(f"the file system mounted at {path} does not answer: "
                              f"`fusevault unmount {path}` or `fusermount3 -uz {path}` clears it")
    if not found.fusevault or found.owner != os.geteuid():
        whose = "" if found.fusevault else f" {found.fstype}"
        raise MountPointError(f"{path} is a crashed{whose} mount: clear it with `fusermount3 -uz {path}`"
                              + ("" if found.owner == os.geteuid() else " as its owner or root"))
    done = subprocess.run(["fusermount3", "-uz", str(mounts.mount_path(path))], capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise MountPointError(f"{path} is a crashed mount that cannot be cleared: {done.stderr.strip()}")
    log.info("cleared the crashed mount at %s", path)


def outcome_path(socket_path: Path) -> Path:
    """Where a mount that could not save everything says so, for ``fusevault
    unmount`` (which is not its parent and cannot see its exit status)."""
    return socket_path.with_name(socket_path.name + ".failed")
